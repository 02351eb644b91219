"""How the cost grows with the network: ResNet-19 (3x32x32 bytes, T = 2, untrained but firing:
tdBN statistics from its own inputs, exported as ``export --target loihi --clip`` does) at
widths 1/16 to 1, on the integer reference's fast path, the specification and Lava, same
samples, one run.

    .venv/bin/python bench/resnet19_speed.py [--widths 0.0625 0.125 0.25 0.5 1] [--json PATH]

Per width: samples/s of the fast path (``--samples`` random images, best of ``--repeats``), of
the specification (:mod:`hardware.reference`, on ``--check`` of them) and of Lava's steps
(``run_s``, on the same ``--check``; only up to ``--lava-max-width``: beyond it Lava takes
minutes per sample), the fast path's ratio to each, and whether all of them agreed bit for bit
(spikes of every node, readout membranes). Not a test: numbers depend on the machine and its load.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
for path in (ROOT, ROOT / "tests"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

from papernets import loihi_graph, untrained  # noqa: E402

from bench.machine import result, write_json  # noqa: E402
from hardware import fast_reference, reference  # noqa: E402
from hardware.targets.loihi.profile import LOIHI2  # noqa: E402

SHAPE = (3, 32, 32)


def _same(a, b) -> bool:
    return all(np.array_equal(a.spikes[k], b.spikes[k]) for k in a.spikes) and np.array_equal(a.readout, b.readout)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--widths", type=float, nargs="+", default=[0.0625, 0.125, 0.25, 0.5, 1.0])
    p.add_argument("--samples", type=int, default=32, help="images the fast path runs per width (default 32)")
    p.add_argument("--check", type=int, default=2, help="of them, what the specification and Lava run (default 2)")
    p.add_argument("--repeats", type=int, default=3, help="best of this many fast-path runs (default 3)")
    p.add_argument("--timesteps", type=int, default=2)
    p.add_argument("--lava-max-width", type=float, default=0.25, help="widest network Lava runs (default 1/4)")
    p.add_argument("--json", type=Path, help="also write the results there (bench/machine.py's shape)")
    args = p.parse_args(argv)

    from hardware.targets.loihi.lava.parent import run_lava

    fast_reference.warm_up()
    images = np.random.default_rng(0).integers(0, 256, size=(args.samples, *SHAPE), dtype=np.int64)
    t, check = args.timesteps, images[: args.check]
    rows, agreed = [], True
    print(f"resnet19, 3x32x32 bytes, T={t}: fast path on {args.samples} images, specification and Lava on "
          f"{args.check}")
    print(f"  {'width':>6s} {'neurons':>10s} {'fast path':>12s} {'specification':>14s} {'Lava steps':>11s} "
          f"{'fast/spec':>10s} {'fast/Lava':>10s}  equal")
    for width in args.widths:
        graph = loihi_graph(untrained("resnet19", SHAPE, input_max=255, width=width, timesteps=t, batch=16))
        fast = fast_reference.run(graph, images, t, LOIHI2)
        best = float("inf")
        for _ in range(args.repeats):
            start = time.perf_counter()
            fast_reference.run(graph, images, t, LOIHI2)
            best = min(best, time.perf_counter() - start)
        fast_rate = args.samples / best
        start = time.perf_counter()
        spec = reference.run(graph, check, t, LOIHI2)
        spec_rate = args.check / (time.perf_counter() - start)
        first = fast_reference.run(graph, check, t, LOIHI2)
        equal = _same(spec, first) and np.array_equal(fast.readout[: args.check], spec.readout)
        lava_rate = None
        if width <= args.lava_max_width:
            timing: dict[str, float] = {}
            equal &= _same(spec, run_lava(graph, check, t, timing=timing))
            lava_rate = args.check / timing["run_s"]
        agreed &= equal
        neurons = sum(n.neurons for n in graph.nodes)
        lava = f"{lava_rate:11,.2f}" if lava_rate else f"{'-':>11s}"
        ratio = f"{fast_rate / lava_rate:9,.0f}x" if lava_rate else f"{'-':>10s}"
        print(f"  {width:6.4g} {neurons:10,d} {fast_rate:12,.1f} {spec_rate:14,.2f} {lava} "
              f"{fast_rate / spec_rate:9,.1f}x {ratio}  {'yes' if equal else 'NO'}", flush=True)
        rows.append(result(f"resnet19 width {width:g}: reference fast path", "samples/s", fast_rate,
                           "Lava fixed_pt, steps only" if lava_rate else None, lava_rate, width=width,
                           neurons=neurons, specification_rate=spec_rate))
    if args.json:
        write_json(args.json, "resnet19_speed", {k: v for k, v in vars(args).items() if k != "json"}, rows, agreed)
    return 0 if agreed else 1


if __name__ == "__main__":
    sys.exit(main())
