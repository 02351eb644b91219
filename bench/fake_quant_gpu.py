"""The paper's ResNet-19, deployed to Loihi's integers, over a CIFAR-10-sized test set on a GPU:
the torch fake-quant path (``export.fake_quant``) on CUDA beside the integer reference's fast
path (``hardware.fast_reference``, numpy/numba on the CPU), in one run, with their spikes and
readouts compared with ``==`` on the images both ran.

    .venv/bin/python bench/fake_quant_gpu.py [--images 10000] [--batch-size 500] [--check 32]
                                             [--width 1.0] [--timesteps 2] [--device cuda]

The network is ``resnet19`` at ``--width`` with tdBN statistics from its own inputs (the tests'
``papernets.untrained``: a firing untrained network, since no CIFAR-10 checkpoint or data can be
fetched here), exported as ``export --target loihi --clip`` does, on 3x32x32 byte images
(``--no-normalize``'s input, input_max 255), random and seeded. The GPU runs all ``--images`` in
batches; the reference runs the first ``--check``. The bench prints both speeds (images/s), the
ratio, the seconds a 10,000-image test set takes on each, and whether every spike and readout
membrane of the checked images is equal. ``--device cpu --width 0.0625 --images 16 --check 4``
smoke-tests the script without a GPU (the fake-quant path on the CPU is not the fast one).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
for path in (ROOT, ROOT / "tests"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

from papernets import loihi_graph, untrained  # noqa: E402

from bench.machine import result, write_json  # noqa: E402
from export.fake_quant import run_fake_quant  # noqa: E402
from hardware import fast_reference  # noqa: E402
from hardware.targets.loihi.profile import LOIHI2  # noqa: E402

SHAPE = (3, 32, 32)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--images", type=int, default=10_000, help="test images on the GPU (default 10,000: CIFAR-10's)")
    p.add_argument("--batch-size", type=int, default=500)
    p.add_argument("--check", type=int, default=32, help="images the reference also runs, compared with == (32)")
    p.add_argument("--width", type=float, default=1.0, help="resnet19's width multiplier (default 1: the paper's)")
    p.add_argument("--timesteps", type=int, default=2)
    p.add_argument("--device", default="cuda")
    p.add_argument("--json", type=Path, help="also write the results there (bench/machine.py's shape)")
    args = p.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        p.error("no CUDA device here; --device cpu --width 0.0625 --images 16 --check 4 smoke-tests the script")
    if not 0 < args.check <= args.images:
        p.error("--check must be between 1 and --images")

    start = time.perf_counter()
    net = untrained("resnet19", SHAPE, input_max=255, width=args.width, timesteps=args.timesteps, batch=16)
    graph = loihi_graph(net)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"resnet19 (width {args.width}), 3x32x32 bytes, T={args.timesteps}, {len(graph.nodes)} nodes, "
          f"{sum(n.neurons for n in graph.nodes):,} neurons; exported in {time.perf_counter() - start:.1f} s; "
          f"fake-quant on {name}, reference on the CPU ({torch.get_num_threads()} threads)")
    images = torch.randint(0, 256, (args.images, *SHAPE), generator=torch.Generator().manual_seed(0))

    def fake_quant(batch: torch.Tensor) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        spikes, readout = run_fake_quant(graph, batch.to(device), args.timesteps, LOIHI2)
        return {k: v.cpu() for k, v in spikes.items()}, readout.cpu()

    fake_quant(images[: min(args.batch_size, 8)])  # warm-up: CUDA context, cuDNN's choices
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    checked_spikes, readouts = None, []
    for first in range(0, args.images, args.batch_size):
        spikes, readout = fake_quant(images[first: first + args.batch_size])
        readouts.append(readout)
        if checked_spikes is None:
            checked_spikes = {k: v[: args.check] for k, v in spikes.items()}
        del spikes
    gpu_seconds = time.perf_counter() - start
    readouts = torch.cat(readouts)
    gpu_rate = args.images / gpu_seconds

    fast_reference.warm_up()
    start = time.perf_counter()
    reference = fast_reference.run(graph, images[: args.check].numpy(), args.timesteps, LOIHI2)
    cpu_seconds = time.perf_counter() - start
    cpu_rate = args.check / cpu_seconds

    if args.check > args.batch_size:
        print(f"  (only the first batch's spikes were kept: the spike check covers {args.batch_size} images)")
    n = min(args.check, args.batch_size)
    spikes_equal = all(np.array_equal(checked_spikes[k][:n].numpy(), reference.spikes[k][:n])
                       for k in reference.spikes)
    readout_equal = np.array_equal(readouts[: args.check].numpy(), reference.readout)
    predictions = readouts[:, -1].argmax(dim=1)
    print(f"  fake-quant ({device.type})   {gpu_rate:10,.1f} images/s   {args.images:,} images in {gpu_seconds:.2f} s "
          f"(10,000 in {10_000 / gpu_rate:.1f} s)")
    print(f"  reference (cpu, fast) {cpu_rate:10,.1f} images/s   {args.check:,} images in {cpu_seconds:.2f} s "
          f"(10,000 in {10_000 / cpu_rate:.0f} s)")
    print(f"  ratio fake-quant / reference: {gpu_rate / cpu_rate:.1f}x")
    print(f"  equal on the {args.check} checked images: spikes of every layer {spikes_equal} ({n} images), "
          f"readout membranes {readout_equal}")
    print(f"  predicted classes over all images: {np.bincount(predictions.numpy(), minlength=10).tolist()}")
    if args.json:
        write_json(args.json, "fake_quant_gpu", {k: v for k, v in vars(args).items() if k != "json"},
                   [result(f"fake-quant ({device.type})", "images/s", gpu_rate, "reference (cpu, fast)", cpu_rate)],
                   bool(spikes_equal and readout_equal), device=str(device))
    return 0 if spikes_equal and readout_equal else 1


if __name__ == "__main__":
    sys.exit(main())
