"""Memory and speed of counting a report chunk by chunk (``simulate --fixed-point --chunk``) against
holding the whole run: ResNet-19 (3x32x32 bytes, T = 2, untrained but firing, as
``bench/resnet19_speed.py`` builds it) on the reference's fast path, same images, one run.

    .venv/bin/python bench/chunked_memory.py [--width 0.25] [--samples 64 256] [--chunk 32] [--json PATH]

Each configuration runs in its own process (peak RSS is per process): ``whole`` runs every image
at once and counts the run (:class:`lsg_deploy.tally.RunTally`), ``chunked`` runs and counts
``--chunk`` images at a time. Printed: samples/s, the process's peak RSS and its RSS before the
run (the network and the images), and whether the counts of both agreed exactly. Not a test:
numbers depend on the machine and its load.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
for path in (ROOT, ROOT / "tests"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

SHAPE = (3, 32, 32)


def _rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def child(width: float, samples: int, chunk: int) -> dict:
    """One configuration in this process: samples/s, RSS before and peak, the counts."""
    from papernets import loihi_graph, untrained

    from hardware import fast_reference
    from hardware.targets.loihi.profile import LOIHI2
    from lsg_deploy.tally import RunTally

    fast_reference.warm_up()
    graph = loihi_graph(untrained("resnet19", SHAPE, input_max=255, width=width, timesteps=2, batch=16))
    images = np.random.default_rng(0).integers(0, 256, size=(samples, *SHAPE), dtype=np.uint8)
    fast_reference.run(graph, images[:1], 2, LOIHI2)  # kernels compiled before the clock and the RSS
    tally, before = RunTally(graph, 2), _rss_mib()
    start = time.perf_counter()
    for lo in range(0, samples, chunk):
        part = images[lo:lo + chunk]
        tally.add_run(fast_reference.run(graph, part, 2, LOIHI2), part, 0.0)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    counts = {"spikes": tally.spikes, "saturation": tally.saturation, "predictions": tally.all_predictions().tolist(),
              "events": {k: v.tolist() for k, v in tally.events.items()}}
    return {"samples_per_s": samples / seconds, "rss_before_mib": before, "peak_rss_mib": peak, "counts": counts}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--width", type=float, default=0.25)
    p.add_argument("--samples", type=int, nargs="+", default=[64, 256])
    p.add_argument("--chunk", type=int, default=32)
    p.add_argument("--json", type=Path, help="also write the results there (bench/machine.py's shape)")
    p.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        print(json.dumps(child(float(args.child[0]), int(args.child[1]), int(args.child[2]))))
        return 0
    from bench.machine import result, write_json

    print(f"resnet19 width {args.width:g}, 3x32x32 bytes, T=2; chunks of {args.chunk}")
    print(f"  {'samples':>7s} {'mode':>8s} {'samples/s':>10s} {'RSS before':>11s} {'peak RSS':>9s}  equal")
    rows, agreed = [], True
    for samples in args.samples:
        got = {}
        for mode, chunk in (("whole", samples), ("chunked", args.chunk)):
            out = subprocess.run([sys.executable, __file__, "--child", str(args.width), str(samples), str(chunk)],
                                 capture_output=True, text=True, check=True).stdout
            got[mode] = json.loads(out.splitlines()[-1])
        equal = got["whole"]["counts"] == got["chunked"]["counts"]
        agreed &= equal
        for mode, r in got.items():
            print(f"  {samples:7d} {mode:>8s} {r['samples_per_s']:10.2f} {r['rss_before_mib']:9.0f} M "
                  f"{r['peak_rss_mib']:7.0f} M  {'yes' if equal else 'NO'}", flush=True)
        whole, chunked = got["whole"], got["chunked"]
        rows.append(result(f"resnet19 width {args.width:g}, {samples} samples: chunked peak RSS", "MiB",
                           chunked["peak_rss_mib"], "whole run", whole["peak_rss_mib"], samples=samples,
                           chunk=args.chunk, chunked_samples_per_s=chunked["samples_per_s"],
                           whole_samples_per_s=whole["samples_per_s"]))
    if args.json:
        write_json(args.json, "chunked_memory", {k: v for k, v in vars(args).items() if k not in ("json", "child")},
                   rows, agreed)
    return 0 if agreed else 1


if __name__ == "__main__":
    sys.exit(main())
