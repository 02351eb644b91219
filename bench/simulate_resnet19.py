"""``simulate --fixed-point`` end to end on a CIFAR-shaped bundle: the paper's ResNet-19 (3x32x32
bytes, T = 2) at ``--width``, exported by the real ``export`` command and simulated by the real
``simulate`` command over ``--images`` test images, in chunks, as a user runs it.

    .venv/bin/python bench/simulate_resnet19.py [--width 1] [--images 512] [--chunk 256] [--json PATH]

No CIFAR-10 checkpoint or data can be fetched here, so the bench makes both: the network is
untrained but firing (the tests' ``papernets.untrained``: tdBN statistics from its own inputs),
saved as ``train`` saves a checkpoint on ``--dataset cifar10 --no-normalize`` (pixels / 255, the
integer encoding's input), and the data are CIFAR-10 files in torchvision's layout with
``--images`` seeded test images (``tests/datafiles.py``; read with ``--no-verify-data``). Then
``export --target loihi --clip`` and ``simulate --fixed-point --json`` run in a child process, and
the bench prints from the report and the child's clock, for a run with the float models (the
default) and one with ``--no-float``: images/s end to end (load, float models, integer reference,
report), images/s of the integer reference alone (the report's own ``samples_per_second``) and
the child's peak RSS. Not a test:
numbers depend on the machine and its load.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
for path in (ROOT, ROOT / "tests"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

SHAPE = (3, 32, 32)


def make_checkpoint(path: Path, data_dir: Path, width: float, timesteps: int) -> None:
    """An untrained, firing ResNet-19 saved as ``train --dataset cifar10 --no-normalize`` saves one."""
    from papernets import untrained

    from lsg_io.files import write_bytes
    from training.checkpoint import checkpoint_bytes, checkpoint_document
    from training.config import TrainConfig
    from training.data import DataSpec

    net = untrained("resnet19", SHAPE, input_max=255, width=width, timesteps=timesteps, batch=16)
    config = TrainConfig(arch="resnet19", dataset="cifar10", width=width, timesteps=timesteps,
                         data_dir=str(data_dir), normalize=False)
    doc = checkpoint_document(net.model, config, [], 10, DataSpec(dataset="cifar10").to_dict())
    write_bytes(path, checkpoint_bytes(doc))


def write_cifar_test(root: Path, images: int, seed: int = 0) -> None:
    """CIFAR-10 files in torchvision's layout: ``images`` test images, tiny training batches."""
    import pickle

    from datafiles import CIFAR10_FILES, cifar_images, write_cifar

    folder = write_cifar(root, per_file=4, seed=seed)
    data, labels = cifar_images(images, 10, seed + 99)
    test_file = CIFAR10_FILES[-1]  # the test batch
    with open(folder / test_file, "wb") as f:
        pickle.dump({"batch_label": "bench test batch", "labels": labels, "data": data,
                     "filenames": [f"test_{i}.png" for i in range(images)]}, f, protocol=2)


def _cli(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "lsg_deploy.cli", *args], check=True, cwd=ROOT)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--width", type=float, default=1.0)
    p.add_argument("--images", type=int, default=512, help="test images simulated (default 512)")
    p.add_argument("--chunk", type=int, default=256, help="simulate's --chunk (default 256)")
    p.add_argument("--timesteps", type=int, default=2)
    p.add_argument("--json", type=Path, help="also write the results there (bench/machine.py's shape)")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("simulate_args", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:  # simulate in this process, timed, with its peak RSS
        from lsg_deploy.cli import main as cli

        start = time.perf_counter()
        code = cli(["simulate", *[a for a in args.simulate_args if a != "--"]])
        seconds = time.perf_counter() - start
        print(json.dumps({"code": code, "seconds": seconds,
                          "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
        return code
    from bench.machine import result, write_json

    with tempfile.TemporaryDirectory(prefix="lsg-bench-") as tmp:
        tmp = Path(tmp)
        write_cifar_test(tmp / "cifar", args.images)
        make_checkpoint(tmp / "model.pt", tmp / "cifar", args.width, args.timesteps)
        _cli("export", "--target", "loihi", "--clip", str(tmp / "model.pt"), "--out", str(tmp / "bundle"),
             "--no-verify-data", "--quiet")
        runs = {}
        for name, extra in (("with the float models", []), ("--no-float", ["--no-float"])):
            report_path = tmp / "report.json"
            out = subprocess.run([sys.executable, __file__, "--child", "--", "--fixed-point", str(tmp / "bundle"),
                                  "--no-verify-data", "--chunk", str(args.chunk), "--json", str(report_path),
                                  *extra], capture_output=True, text=True, cwd=ROOT)
            if out.returncode != 0:
                sys.stderr.write(out.stdout + out.stderr)
                return out.returncode
            runs[name] = (json.loads(out.stdout.splitlines()[-1]), json.loads(report_path.read_text()))
    n = args.images
    print(f"resnet19 width {args.width:g}, 3x32x32 bytes, T={args.timesteps}: simulate --fixed-point on {n} "
          f"images, chunks of {args.chunk}")
    rows = []
    for name, (child, report) in runs.items():
        backend, accuracy = report["backends"]["reference"], report["accuracy"]["reference"]
        end_to_end = n / child["seconds"]
        print(f"  {name}: end to end {end_to_end:.2f} images/s ({child['seconds']:.1f} s; 10,000 images in "
              f"{10_000 / end_to_end / 60:.1f} min), the integer reference alone {backend['samples_per_second']:.2f} "
              f"images/s ({backend['seconds']:.1f} s), peak RSS {child['peak_rss_mib']:.0f} MiB, reference "
              f"accuracy {accuracy:.4f}")
        rows.append(result(f"simulate --fixed-point end to end, {name}", "images/s", end_to_end,
                           "integer reference alone", backend["samples_per_second"],
                           peak_rss_mib=child["peak_rss_mib"], seconds=child["seconds"]))
    same = runs["with the float models"][1]["accuracy"]["reference"] == runs["--no-float"][1]["accuracy"]["reference"]
    print(f"  the reference's accuracy the same in both: {'yes' if same else 'NO'}")
    if args.json:
        write_json(args.json, "simulate_resnet19",
                   {k: v for k, v in vars(args).items() if k not in ("json", "child", "simulate_args")},
                   rows, same)
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
