"""Synthesis figures of an exported FPGA network's RTL: yosys for iCE40 and Xilinx 7-series,
nextpnr-ice40 place and route on an iCE40 UP5K for Fmax, and from the RTL's own cycle counter
the time steps and images per second.

    python bench/fpga_synth.py --bundle deploy/fpga [--lanes 1 4 32] [--images 50] [--out runs/synth]

For each lane count (output channels a layer updates per cycle; ``hardware/targets/fpga/rtl/lif_layer.v``) it
writes the design from the bundle's tables, simulates ``--images`` test images in the RTL
(``simulate --backend rtl``'s path) for the cycles per time step, and runs:

* ``yosys synth_ice40 -dsp`` then ``stat``: LUT4s, flip-flops, 4 kbit block RAMs, DSPs;
* ``yosys synth_xilinx -flatten`` then ``stat``: LUTs, flip-flops, RAMB18/36, DSP48;
* ``nextpnr-ice40 --up5k`` on the design that fits (the whole network, else each of its layers
  that fits alone), for the largest clock it closes timing at (Fmax);
* images/s = Fmax / (T x cycles per time step): the steps only, not the host's writing of the
  input and reading of every layer's buffers, which a deployment does not need.

The tools are Debian's packages (``apt-get install yosys nextpnr-ice40 fpga-icestorm``);
``make synth`` installs them and runs this on the digits network. It prints one table and
writes ``synth.json`` in ``--out``. Every figure is measured in this run.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hardware.targets.fpga.rtl import SOURCES  # noqa: E402
from hardware.targets.fpga.rtl import backend as rtl_backend  # noqa: E402
from hardware.targets.fpga.rtl.chain import TOP, chain_from_tables, top_ports, write_design  # noqa: E402
from hardware.targets.fpga.tables import Tables, read_tables  # noqa: E402

UP5K = {"luts": 5280, "bram": 30, "dsp": 8, "spram": 4}  #: Lattice iCE40 UltraPlus UP5K
CELL_KINDS = {  # yosys cell name patterns -> what the table reports
    "ice40": {"luts": r"SB_LUT4", "ffs": r"SB_DFF\w*", "bram": r"SB_RAM40_4K\w*", "dsp": r"SB_MAC16",
              "spram": r"SB_SPRAM256KA", "carry": r"SB_CARRY"},
    "xilinx": {"luts": r"LUT\d", "ffs": r"FD\w+", "bram": r"RAMB(18|36)\w*", "dsp": r"DSP48E1",
               "lutram": r"RAM\d+[SMD]\w*"},
}


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise SystemExit(f"{name} not found: apt-get install yosys nextpnr-ice40 fpga-icestorm (make synth does)")
    return path


def _cells(stat: str, kinds: dict[str, str]) -> dict[str, int]:
    """Sum the cell counts of yosys ``stat`` (top-level totals) by kind."""
    counts = dict.fromkeys(kinds, 0)
    section = stat.split("=== design hierarchy ===")[-1]
    for name, n in re.findall(r"^\s+(\$?\w+)\s+(\d+)\s*$", section, re.M):
        for kind, pattern in kinds.items():
            if re.fullmatch(pattern, name):
                counts[kind] += int(n)
    return counts


SHELL = "pnr_shell"


def write_shell(chain, design: Path) -> None:
    """``pnr_shell.v``: the top behind four pins (clk, rst, sdi, sdo), for place and route on the
    UP5K's 39 I/Os. Its inputs come from a shift register fed by ``sdi``; its outputs are captured
    into one that shifts out on ``sdo``, so nothing is optimised away. The shell adds those two
    registers (flip-flops, no logic on the design's paths)."""
    ports = [p for p in top_ports(chain) if p[1] not in ("clk", "rst")]
    ins = [(n, w) for d, n, w in ports if d == "input"]
    outs = [(n, w) for d, n, w in ports if d == "output"]
    in_w, out_w = sum(w for _, w in ins), sum(w for _, w in outs)
    conns, lo = [], 0
    for name, w in ins:
        conns.append(f".{name}(in_sr[{lo + w - 1}:{lo}])")
        lo += w
    lo = 0
    for name, w in outs:
        conns.append(f".{name}(outs[{lo + w - 1}:{lo}])")
        lo += w
    (design / f"{SHELL}.v").write_text(f"""// place-and-route shell of {TOP} (bench/fpga_synth.py)
module {SHELL} (input wire clk, input wire rst, input wire sdi, input wire load, output wire sdo);
    reg [{in_w - 1}:0] in_sr;
    reg [{out_w - 1}:0] out_sr;
    wire [{out_w - 1}:0] outs;
    always @(posedge clk) begin
        in_sr <= {{in_sr[{in_w - 2}:0], sdi}};
        out_sr <= load ? outs : {{out_sr[{out_w - 2}:0], 1'b0}};
    end
    assign sdo = out_sr[{out_w - 1}];
    {TOP} u_top (.clk(clk), .rst(rst), {", ".join(conns)});
endmodule
""")


def yosys(design: Path, family: str, json_out: Path | None = None, top: str = TOP) -> tuple[dict[str, int], float]:
    sources = " ".join(s.name for s in SOURCES) + f" {TOP}.v" + (f" {SHELL}.v" if top == SHELL else "")
    synth = (f"synth_ice40 -dsp -top {top}" + (f" -json {json_out}" if json_out else "")
             if family == "ice40" else f"synth_xilinx -flatten -top {top}")
    start = time.perf_counter()
    proc = subprocess.run([_tool("yosys"), "-q", "-p", f"read_verilog {sources}; {synth}; tee -q -o stat.txt stat"],
                          cwd=design, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"yosys {family} failed:\n{proc.stderr[-3000:]}{proc.stdout[-3000:]}")
    return _cells((design / "stat.txt").read_text(), CELL_KINDS[family]), seconds


def place_and_route(design: Path, netlist: Path, freq_mhz: float = 100.0) -> tuple[dict, float]:
    """nextpnr-ice40 on an UP5K; returns its JSON report (``fmax``, ``utilization``) and seconds."""
    report = design / "nextpnr.json"
    start = time.perf_counter()
    proc = subprocess.run([_tool("nextpnr-ice40"), "--up5k", "--package", "sg48", "--json", str(netlist),
                           "--pcf-allow-unconstrained", "--freq", str(freq_mhz), "--report", str(report),
                           "--seed", "1", "--timing-allow-fail", "-q"], cwd=design, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        return {"error": (proc.stderr or proc.stdout).strip().splitlines()[-1:]}, seconds
    return json.loads(report.read_text()), seconds


def _fmax(report: dict) -> float | None:
    values = [v.get("achieved") for v in report.get("fmax", {}).values()]
    return min(values) if values else None


def layer_tables(tables: Tables, node: str) -> Tables:
    """The tables of one layer alone: its edge from a 0/1 spike input shaped as its source (the
    network's own input for the first layer), its node as the readout."""
    m = tables.manifest
    n = next(x for x in m["nodes"] if x["name"] == node)
    e = next(x for x in m["edges"] if x["target"] == node)
    first = e["source"] == "input"
    profile = m["profile"] if first else {**m["profile"], "input": {"bits": 1, "signed": False, "min": 0, "max": 1}}
    spec = m["input"] if first else {"shape": e["input_shape"], "encoding": "event-frames", "max": 1, "bits": 1}
    manifest = {**m, "profile": profile, "input": spec, "nodes": [{**n, "readout": True}],
                "edges": [{**e, "source": "input"}]}
    return Tables(manifest=manifest, weights={e["name"]: tables.weights[e["name"]]},
                  biases={node: tables.biases[node]})


def _fits(cells: dict[str, int]) -> bool:
    return all(cells[k] <= UP5K[k] for k in ("luts", "bram", "dsp"))


def test_images(bundle: Path, count: int) -> np.ndarray:
    from hardware.bundle import read_bundle
    from training.data import DataSpec, load

    b = read_bundle(bundle)
    _, test, _ = load(DataSpec.from_dict(b.source["data"]), timesteps=b.timesteps)
    return test.pixels[:count]


def place_and_route_design(chain, design: Path, what: str) -> dict:
    write_shell(chain, design)
    yosys(design, "ice40", design / "shell.json", top=SHELL)
    report, seconds = place_and_route(design, design / "shell.json")
    return {"placed": what, "fmax_mhz": _fmax(report), "seconds": seconds,
            "error": report.get("error"), "utilization": report.get("utilization")}


def place_fitting(tables: Tables, chain, design: Path, lanes: int, whole: dict[str, int]) -> list[dict]:
    """Place and route the whole design on an UP5K where it fits, else each layer that fits alone."""
    if _fits(whole):
        return [place_and_route_design(chain, design, "network")]
    placed = []
    for layer in chain.layers:
        sub = layer_tables(tables, layer.name)
        sub_dir = design / f"layer-{layer.name}"
        sub_dir.mkdir()
        sub_chain = chain_from_tables(sub, max_lanes=lanes)
        write_design(sub_chain, design.parent / "tables", sub_dir)
        cells, _ = yosys(sub_dir, "ice40")
        if _fits(cells):
            placed.append({**place_and_route_design(sub_chain, sub_dir, f"layer {layer.name} alone"), "ice40": cells})
        else:
            placed.append({"placed": f"layer {layer.name} alone", "ice40": cells, "error": "does not fit an UP5K"})
        print(f"  {placed[-1]}", flush=True)
    return placed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bundle", type=Path, required=True, help="an export --target fpga bundle")
    parser.add_argument("--lanes", type=int, nargs="+", default=[1, 4, 32])
    parser.add_argument("--images", type=int, default=20, help="test images simulated for the cycle count")
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "synth")
    parser.add_argument("--no-pnr", action="store_true", help="skip nextpnr (the slowest step)")
    args = parser.parse_args()
    tables = read_tables(args.bundle)
    (args.out / "tables").mkdir(parents=True, exist_ok=True)  # the .mem files a layer alone reads
    for f in args.bundle.glob("*.mem"):
        shutil.copyfile(f, args.out / "tables" / f.name)
    timesteps = tables.manifest["timesteps"]
    images = test_images(args.bundle, args.images)
    results = []
    for lanes in args.lanes:
        chain = chain_from_tables(tables, max_lanes=lanes)
        design = args.out / f"lanes{lanes}"
        shutil.rmtree(design, ignore_errors=True)
        design.mkdir(parents=True)
        write_design(chain, args.bundle, design)
        run = rtl_backend.run_rtl(args.bundle, images, max_lanes=lanes)
        cycles = float(run.stats["cycles_per_timestep"])  # the design's own counter, mean over the steps
        ice40, t_ice40 = yosys(design, "ice40")
        xilinx, t_xilinx = yosys(design, "xilinx")
        row = {"lanes": {layer.name: layer.lanes for layer in chain.layers}, "max_lanes": lanes,
               "cycles_per_timestep": cycles, "cycles_per_layer": run.stats["cycles_per_layer"],
               "ice40": ice40, "xilinx": xilinx,
               "seconds": {"yosys_ice40": t_ice40, "yosys_xilinx": t_xilinx}}
        row["fits_up5k"] = _fits(ice40)
        if not args.no_pnr:
            row["pnr"] = place_fitting(tables, chain, design, lanes, whole=ice40)
            fmax = [p["fmax_mhz"] for p in row["pnr"] if p.get("fmax_mhz")]
            if fmax:  # the slowest clock among what was placed bounds the whole design's
                row["fmax_mhz"] = min(fmax)
                steps = row["fmax_mhz"] * 1e6 / cycles
                row.update(timesteps_per_second=steps, images_per_second=steps / timesteps)
        results.append(row)
        print(json.dumps(row), flush=True)
    (args.out / "synth.json").write_text(json.dumps(results, indent=2) + "\n")
    print(f"\n{'lanes':>5} {'cycles/step':>11} {'iCE40 LUT4':>10} {'FF':>6} {'BRAM':>5} {'DSP':>4} "
          f"{'fits UP5K':>9} {'Fmax MHz':>8} {'images/s':>9} | {'7-series LUT':>12} {'FF':>6} {'RAMB':>5} {'DSP':>4}")
    for r in results:
        i, x = r["ice40"], r["xilinx"]
        fmax = f"{r['fmax_mhz']:.1f}" if r.get("fmax_mhz") else "-"
        ips = f"{r['images_per_second']:,.0f}" if r.get("images_per_second") else "-"
        print(f"{r['max_lanes']:>5} {r['cycles_per_timestep']:>11,.0f} {i['luts']:>10,} {i['ffs']:>6,} {i['bram']:>5} "
              f"{i['dsp']:>4} {str(r['fits_up5k']):>9} {fmax:>8} {ips:>9} | {x['luts']:>12,} {x['ffs']:>6,} "
              f"{x['bram']:>5} {x['dsp']:>4}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
