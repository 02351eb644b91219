"""Time Lava's bit-accurate CPU backend against the integer reference, same samples, one run.

    .venv/bin/python bench/lava_speed.py --bundle deploy/digits deploy/resnet deploy/events [--json PATH]

Prints seconds per sample and samples per second for the reference's fast path
(:mod:`hardware.fast_reference`, what ``simulate --backend reference`` runs: compiled with numba
when it is installed, and again numpy-only), for the plain reference (:mod:`hardware.reference`,
the specification), for Lava's steady state (the steps only: ``run_s / B``) and for Lava end to
end (interpreter start, graph build, compile, run, teardown); then how many times faster the
fast path is than each, and whether all of them agreed bit for bit (every hidden node's spikes,
the readout membranes). Reference timings are the best of ``--repeats`` runs after a warm-up
(the compiled kernels are loaded once per process; the fast path keeps a graph's tables and chunk
arrays from one run to the next, as it does across ``simulate``'s chunks). The inputs are the bundle's own dataset's
test split, encoded as the bundle's input says (direct images or event frames). Not a test:
numbers depend on the machine and its load.
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
from hardware import fast_reference, reference  # noqa: E402
from hardware.bundle import read_bundle  # noqa: E402
from hardware.targets.loihi.lava.parent import run_lava_bundle  # noqa: E402
from hardware.targets.loihi.profile import LOIHI2  # noqa: E402


def _best_of(repeats: int, fn) -> float:
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--bundle", type=Path, nargs="+", required=True, help="bundle directories (target loihi)")
    p.add_argument("--samples", type=int, default=360, help="test images to run (default 360: the split)")
    p.add_argument("--repeats", type=int, default=15, help="best of this many reference runs (default 15)")
    p.add_argument("--json", type=Path, help="also write the results there (bench/machine.py's shape)")
    args = p.parse_args(argv)
    results, agreed = [], True
    for bundle_dir in args.bundle:  # one after another in this process: the ratios of one run
        rows, exact = _bench(bundle_dir, args.samples, args.repeats)
        results += rows
        agreed &= exact
    if len(args.bundle) > 1:
        print("fast path / Lava's steps: " + ", ".join(f"{r['bundle']} {r['ratio']:,.0f}x" for r in results
                                                        if r["configuration"].startswith("reference fast path (")))
    if args.json:
        write_json(args.json, "lava_speed", {"bundles": [str(b) for b in args.bundle], "samples": args.samples,
                                             "repeats": args.repeats, "numba": fast_reference.compiled()},
                   results, agreed)
    return 0 if agreed else 1


def _bench(bundle_dir: Path, samples: int, repeats: int) -> tuple[list[dict], bool]:
    """Time one bundle (the module's docstring says what); its rows for the JSON and whether all agreed."""
    from training.data import DataSpec, load

    bundle = read_bundle(bundle_dir)
    _, test, _ = load(DataSpec(**bundle.source.get("data", {})), bundle.timesteps)
    inputs = test.pixels[: samples]
    n, graph, t_steps = len(inputs), bundle.integer_graph, bundle.timesteps

    ref = reference.run(graph, inputs, t_steps, LOIHI2)
    fast_reference.warm_up()
    fast = fast_reference.run(graph, inputs, t_steps, LOIHI2)
    t_fast = _best_of(repeats, lambda: fast_reference.run(graph, inputs, t_steps, LOIHI2)) / n
    compiled = fast_reference.compiled()
    numba_module = fast_reference.numba
    fast_reference.numba = None  # the same fast path without numba: numpy and BLAS only
    try:
        numpy_only = fast_reference.run(graph, inputs, t_steps, LOIHI2)
        t_numpy = _best_of(repeats, lambda: fast_reference.run(graph, inputs, t_steps, LOIHI2)) / n
    finally:
        fast_reference.numba = numba_module
    ref_batched = _best_of(3, lambda: reference.run(graph, inputs, t_steps, LOIHI2)) / n
    ref_single = _best_of(1, lambda: [reference.run(graph, inputs[i: i + 1], t_steps, LOIHI2) for i in range(n)]) / n

    timing: dict[str, float] = {}
    start = time.perf_counter()
    lava = run_lava_bundle(bundle_dir, inputs, timing=timing)
    lava_total = (time.perf_counter() - start) / n
    lava_steady = timing["run_s"] / n
    runs = {"fast": fast, "fast numpy-only": numpy_only, "Lava": lava}
    exact = {name: all(np.array_equal(ref.spikes[k], r.spikes[k]) for k in ref.spikes)
             and np.array_equal(ref.readout, r.readout) for name, r in runs.items()}

    print(f"bundle {bundle_dir}: {n} samples x T={t_steps} ({graph.input.encoding} input), "
          f"{len(graph.nodes)} nodes, {len(graph.edges)} edges, {int(timing['relays'])} delay relays, "
          f"{int(timing['steps'])} Lava steps")
    rows = [
        (f"reference fast path{' (numba)' if compiled else ' (numba missing)'}", t_fast),
        ("reference fast path, numpy-only", t_numpy),
        ("reference (specification), batched", ref_batched),
        ("reference (specification), one at a time", ref_single),
        ("Lava fixed_pt, steps only", lava_steady),
        ("Lava fixed_pt, end to end", lava_total),
    ]
    for name, sec in rows:
        print(f"  {name:42s} {sec * 1e3:9.3f} ms/sample {1 / sec:12,.0f} samples/s   fast path is "
              f"{sec / t_fast:8.1f} x faster")
    print(f"  Lava compile {timing['compile_s']:.2f} s, build {timing['build_s']:.2f} s, "
          f"{timing['run_s'] / timing['steps'] * 1e3:.2f} ms per Lava step")
    print("  bit-exact with the reference (spikes of every hidden node, readout membranes): "
          + ", ".join(f"{name} {'yes' if ok else 'NO'}" for name, ok in exact.items()))
    return [result(name, "samples/s", 1 / sec, "Lava fixed_pt, steps only", 1 / lava_steady, bundle=str(bundle_dir),
                   ratio_end_to_end=lava_total / sec) for name, sec in rows[:4]], all(exact.values())


if __name__ == "__main__":
    sys.exit(main())
