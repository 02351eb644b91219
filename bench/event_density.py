"""Where the fast path's event-driven synapses stop paying: one conv edge, its input spikes at
a range of densities, the event-driven kernel against BLAS's dense product (the conv as a dense
matrix, or windows times the kernel), same values, one run.

    .venv/bin/python bench/event_density.py

Prints, per conv shape and density, microseconds per sample of each and their ratio, and checks
the two sums equal. ``hardware.fast_reference.EVENT_DENSITY`` is the density below which the
fast path runs an edge event-driven: set it near where the ratio crosses 1. Not a test: numbers
depend on the machine and its load.
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

from bench.machine import result, write_json  # noqa: E402
from hardware import fast_reference  # noqa: E402
from hardware.graph import Geometry, IntegerEdge  # noqa: E402
from hardware.targets.loihi.profile import LOIHI2  # noqa: E402

#: (channels in, channels out, size, kernel, stride, padding): the digits nets' and ResNet-19's
SHAPES = ((16, 16, 8, 3, 1, 1), (2, 16, 12, 3, 1, 1), (64, 64, 16, 3, 1, 1), (128, 128, 32, 3, 1, 1),
          (128, 256, 32, 3, 2, 1))


def _edge(rng, c_in, c_out, size, k, stride, pad) -> IntegerEdge:
    out = (size + 2 * pad - k) // stride + 1
    weight = 2 * rng.integers(-127, 128, size=(c_out, c_in, k, k))
    return IntegerEdge("c", "a", "b", Geometry("conv", (c_in, size, size), (c_out, out, out), (stride,) * 2,
                                                (pad,) * 2), weight, 0, 1.0)


def _best(fn, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rows", type=int, default=64, help="samples x steps per product (default 64)")
    p.add_argument("--repeats", type=int, default=5, help="best of this many (default 5)")
    p.add_argument("--densities", default="0.02,0.05,0.1,0.2,0.3,0.5", help="spike densities to time")
    p.add_argument("--shapes", type=int, default=len(SHAPES), help="time the first this many conv shapes")
    p.add_argument("--json", type=Path, help="also write the results there (bench/machine.py's shape)")
    args = p.parse_args(argv)
    if not fast_reference.compiled():
        print("numba is not installed: there is no event-driven kernel to time", file=sys.stderr)
        return 2
    fast_reference.warm_up()
    rng = np.random.default_rng(0)
    agree, results = True, []
    for shape in SHAPES[: args.shapes]:
        edge = _edge(rng, *shape)
        g = edge.geometry
        src, dst = fast_reference.hwc_order(g.input_shape), fast_reference.hwc_order(g.output_shape)
        syn = fast_reference._Synapse(edge, 1, LOIHI2, src, dst)
        rows = max(1, args.rows * 256 // g.neurons) if g.neurons > 4096 else args.rows
        how = "dense matrix" if syn.dense else "im2col"
        print(f"conv {shape[0]}->{shape[1]} on {shape[2]}x{shape[2]}, {shape[3]}x{shape[3]} stride {shape[4]} "
              f"pad {shape[5]} ({rows} rows; BLAS as {how}):")
        for density in map(float, args.densities.split(",")):
            x = (rng.random((rows, g.fan_in)) < density).astype(np.uint8)
            out = np.zeros((rows, g.neurons), np.int32)
            syn.scatter(x, out)
            agree &= bool(np.array_equal(out, syn(x)[0]))
            t_event = _best(lambda x=x, syn=syn, out=out: syn.scatter(x, out), args.repeats) / rows
            t_blas = _best(lambda x=x, syn=syn: syn(x), args.repeats) / rows
            results.append(result(f"conv {shape}, density {density}", "rows/s", 1 / t_event, "BLAS " + how,
                                  1 / t_blas))
            print(f"  density {density:4.2f}: event-driven {t_event * 1e6:9.1f} us/row, BLAS {t_blas * 1e6:9.1f} "
                  f"us/row, BLAS / event-driven {t_blas / t_event:6.2f}")
    print(f"event-driven == BLAS on every product: {'yes' if agree else 'NO'}")
    if args.json:
        write_json(args.json, "event_density", {k: v for k, v in vars(args).items() if k != "json"}, results, agree)
    return 0 if agree else 1


if __name__ == "__main__":
    sys.exit(main())
