"""Time Lava's bit-accurate CPU backend against the numpy integer reference, same samples.

    .venv/bin/python bench/lava_speed.py --bundle deploy/digits --samples 100

Prints seconds per sample for the reference (batched, and one sample at a time), for Lava's
steady state (the steps only: ``run_s / B``) and for Lava end to end (interpreter start,
graph build, compile, run, teardown), the ratios to the batched reference, and whether the two
agreed bit for bit (every hidden node's spikes, the readout membranes). The inputs are the
bundle's own dataset's test split, encoded as the bundle's input says (direct images or event
frames). Not a test: numbers depend on the machine and its load.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from hardware import reference  # noqa: E402
from hardware.bundle import read_bundle  # noqa: E402
from hardware.lava_subprocess import run_lava_bundle  # noqa: E402


def _best_of(repeats: int, fn) -> float:
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--bundle", type=Path, required=True, help="bundle directory (target loihi)")
    p.add_argument("--samples", type=int, default=100, help="test images to run (default 100)")
    args = p.parse_args(argv)

    from lsg_deploy.data import DataSpec, load

    bundle = read_bundle(args.bundle)
    _, test, _ = load(DataSpec(**bundle.source.get("data", {})), bundle.timesteps)
    inputs = test.pixels[: args.samples]
    n, graph, t_steps = len(inputs), bundle.loihi_graph, bundle.timesteps

    ref = reference.run(graph, inputs, t_steps)
    ref_batched = _best_of(3, lambda: reference.run(graph, inputs, t_steps)) / n
    ref_single = _best_of(1, lambda: [reference.run(graph, inputs[i: i + 1], t_steps) for i in range(n)]) / n

    timing: dict[str, float] = {}
    start = time.perf_counter()
    lava = run_lava_bundle(args.bundle, inputs, timing=timing)
    lava_total = (time.perf_counter() - start) / n
    lava_steady = timing["run_s"] / n
    exact = all(np.array_equal(ref.spikes[k], lava.spikes[k]) for k in ref.spikes) and np.array_equal(
        ref.readout, lava.readout)

    print(f"bundle {args.bundle}: {n} samples x T={t_steps} ({graph.input.encoding} input), "
          f"{len(graph.nodes)} nodes, {len(graph.edges)} edges, {int(timing['relays'])} delay relays, "
          f"{int(timing['steps'])} Lava steps")
    rows = [
        ("reference, batched", ref_batched),
        ("reference, one sample at a time", ref_single),
        ("Lava fixed_pt, steps only", lava_steady),
        ("Lava fixed_pt, end to end", lava_total),
    ]
    for name, sec in rows:
        print(f"  {name:34s} {sec * 1e3:10.3f} ms/sample   {sec / ref_batched:10.1f} x reference (batched)")
    print(f"  Lava compile {timing['compile_s']:.2f} s, build {timing['build_s']:.2f} s, "
          f"{timing['run_s'] / timing['steps'] * 1e3:.2f} ms per Lava step")
    print(f"  bit-exact (spikes of every hidden node, readout membranes): {'yes' if exact else 'NO'}")
    return 0 if exact else 1


if __name__ == "__main__":
    sys.exit(main())
