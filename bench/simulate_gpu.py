"""``lsg-deploy simulate --device cuda`` on a ResNet-19-shaped bundle over a CIFAR-10-sized test
set: the integer network through the torch fake-quant path on the GPU, chunk by chunk, checked
``==`` against the integer reference on ``--check`` samples, beside the reference's own
``simulate`` on a few samples of the same bundle (its fast path on the CPU), in one run.

    .venv/bin/python bench/simulate_gpu.py [--images 10000] [--width 1.0] [--device cuda]
                                           [--check 32] [--reference 32] [--chunk 500] [--json PATH]

Every step is the CLI a user runs: CIFAR-10 files in torchvision's layout (``--images`` test
images and 16 per training batch, tests/datafiles.py's seeded generator: no CIFAR-10 can be
fetched here), ``train --arch resnet19 --no-normalize --timesteps 2 --epochs 1`` (a network in
effect untrained, but firing), ``export --target loihi --clip``, then ``simulate --fixed-point
--no-float --device D --check N`` over every image and ``simulate --fixed-point --no-float
--limit R`` (the reference). It prints both speeds (samples/s of the backend runs, as the
reports time them), the ratio, the whole fake-quant command's seconds (data, set-up and the
report's counting too) and whether the check found every checked sample equal; the exit code
is 1 on a mismatch. ``--device cpu --width 0.0625 --images 12 --check 3 --reference 2``
smoke-tests the script without a GPU.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
for path in (ROOT, ROOT / "tests"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

from datafiles import write_cifar  # noqa: E402

from bench.machine import result, write_json  # noqa: E402
from lsg_deploy.cli import main as cli  # noqa: E402


def _run(*args: str) -> None:
    code = cli([*args])
    if code != 0:
        raise SystemExit(f"lsg-deploy {args[0]} exited {code}")


def _report(bundle: Path, data: Path, out: Path, *args: str) -> tuple[dict, float]:
    """``simulate --fixed-point --no-float`` with ``args``; its JSON report and wall-clock seconds."""
    start = time.perf_counter()
    code = cli(["simulate", "--fixed-point", "--no-float", str(bundle), "--data-dir", str(data), "--no-verify-data",
                "--json", str(out), "--quiet", *args])
    seconds = time.perf_counter() - start
    if code not in (0, 1):  # 1: the backends disagree, which the report says
        raise SystemExit(f"lsg-deploy simulate exited {code}")
    return json.loads(out.read_text()), seconds


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--images", type=int, default=10_000, help="test images (default 10,000: CIFAR-10's)")
    p.add_argument("--width", type=float, default=1.0, help="resnet19's width multiplier (default 1: the paper's)")
    p.add_argument("--device", default="cuda")
    p.add_argument("--check", type=int, default=32, help="samples the reference reruns inside simulate (32)")
    p.add_argument("--reference", type=int, default=32, help="samples the reference's own simulate runs (32)")
    p.add_argument("--chunk", type=int, default=500, help="simulate --chunk (500)")
    p.add_argument("--work", type=Path, help="keep the data, run and bundle here (default: a temporary directory)")
    p.add_argument("--json", type=Path, help="also write the results there (bench/machine.py's shape)")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        data, run, bundle = work / "cifar", work / "run", work / "bundle"
        start = time.perf_counter()
        write_cifar(data, per_file=16, test_images=args.images)
        _run("train", "--dataset", "cifar10", "--data-dir", str(data), "--no-verify-data", "--arch", "resnet19",
             "--width", str(args.width), "--no-normalize", "--timesteps", "2", "--epochs", "1", "--batch-size", "16",
             "--device", args.device, "--out", str(run), "--force", "--quiet")
        _run("export", "--target", "loihi", "--clip", str(run / "model.pt"), "--out", str(bundle), "--force",
             "--quiet", "--no-verify-data", "--data-dir", str(data))
        print(f"resnet19 (width {args.width}), 3x32x32 bytes, T=2: {args.images:,} CIFAR-10-format images written, "
              f"trained 1 epoch and exported in {time.perf_counter() - start:.0f} s")
        ours, wall = _report(bundle, data, work / "fake_quant.json", "--device", args.device,
                             "--check", str(args.check), "--chunk", str(args.chunk))
        peer, _ = _report(bundle, data, work / "reference.json", "--limit", str(args.reference))
    run_ours, run_peer = ours["backends"]["fake-quant"], peer["backends"]["reference"]
    rate, peer_rate = run_ours["samples_per_second"], run_peer["samples_per_second"]
    exact = ours["exact"]
    print(f"  simulate --device {args.device}  {rate:10,.1f} samples/s   {ours['samples']:,} images in "
          f"{run_ours['seconds']:.1f} s (the whole command, data and report included: {wall:.1f} s)")
    print(f"  simulate (reference, cpu) {peer_rate:10,.1f} samples/s   {peer['samples']:,} images in "
          f"{run_peer['seconds']:.1f} s (10,000 in {10_000 / peer_rate:.0f} s)")
    print(f"  ratio fake-quant / reference: {rate / peer_rate:.1f}x")
    print(f"  {exact['pair']} on {exact['samples']} checked samples: {'equal' if exact['equal'] else 'MISMATCH'} "
          f"({sum(exact['mismatches'].values())} mismatches over {len(exact['mismatches'])} layers)")
    if args.json:
        write_json(args.json, "simulate_gpu", {k: v for k, v in vars(args).items() if k not in ("json", "work")},
                   [result(f"simulate --device {args.device}", "samples/s", rate, "simulate (reference, cpu)",
                           peer_rate, command_seconds=wall)], bool(exact["equal"]), device=args.device)
    return 0 if exact["equal"] else 1


if __name__ == "__main__":
    sys.exit(main())
