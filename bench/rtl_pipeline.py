"""Clock cycles per time step of an exported FPGA network's RTL, its layers pipelined (the ROM
build's schedule: in phase p every layer k runs its step p - k) beside the same design running a
phase's layers one after another (the serial schedule, the SPRAM build's), in one run, on the same
test images: the design's own counter, the ratio, and each layer's cycles per step. Both runs are
checked == the integer reference first.

    python bench/rtl_pipeline.py --bundle deploy/fpga [--images 10] [--lanes 32] [--simulator verilator]

Cycles are a count, not a timing: the machine's load does not move them.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hardware import reference  # noqa: E402
from hardware.bundle import read_bundle  # noqa: E402
from hardware.targets.fpga.rtl.backend import run_rtl  # noqa: E402
from hardware.targets.fpga.rtl.network import PIPELINED, SERIAL  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bundle", type=Path, required=True, help="an export --target fpga bundle")
    parser.add_argument("--images", type=int, default=10)
    parser.add_argument("--lanes", type=int, default=32, help="max_lanes (the default build's)")
    parser.add_argument("--simulator", default="verilator", choices=("verilator", "icarus"))
    args = parser.parse_args()
    from training.data import DataSpec, load

    bundle = read_bundle(args.bundle)
    _, test, _ = load(DataSpec.from_dict(bundle.source["data"]), timesteps=bundle.timesteps)
    inputs = test.pixels[:args.images]
    want = reference.run(bundle.integer_graph, inputs, bundle.timesteps, bundle.profile)
    stats = {}
    for schedule in (SERIAL, PIPELINED):
        got = run_rtl(args.bundle, inputs, max_lanes=args.lanes, simulator=args.simulator, schedule=schedule)
        for name in want.spikes:
            if not np.array_equal(got.spikes[name], want.spikes[name]):
                raise SystemExit(f"{schedule}: the spikes of {name} differ from the reference")
        if not np.array_equal(got.readout, want.readout):
            raise SystemExit(f"{schedule}: the readout differs from the reference")
        stats[schedule] = got.stats
    print(f"{args.bundle}: {len(inputs)} images, T = {bundle.timesteps}, max_lanes {args.lanes}, "
          f"{stats[PIPELINED]['phases_per_sample']} phases a sample; both == the reference")
    print("| schedule | cycles / step | slowest phase | " + " | ".join(stats[SERIAL]["cycles_per_layer"]) + " |")
    print("| --- " * (3 + len(stats[SERIAL]["cycles_per_layer"])) + "|")
    for schedule, s in stats.items():
        layers = " | ".join(f"{c:,.0f}" for c in s["cycles_per_layer"].values())
        print(f"| {schedule} | {s['cycles_per_timestep']:,.0f} | {s['cycles_per_phase_max']:,} | {layers} |")
    ratio = stats[SERIAL]["cycles_per_timestep"] / stats[PIPELINED]["cycles_per_timestep"]
    print(f"pipelined: {ratio:.2f}x fewer cycles per step than serial")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
