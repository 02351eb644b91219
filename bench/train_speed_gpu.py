"""Training speed of the paper's ResNet-19 on a GPU: our LSG neuron (the torch step function and
the fused Triton kernel, fp32 and bf16, with and without torch.compile) beside SpikingJelly 2.0's
LIF and PLIF nodes on their fastest CUDA implementation and snnTorch's Leaky, in one process and
one run.

    .venv/bin/python bench/train_speed_gpu.py [--timesteps 2 6] [--batch-size 128] [--steps 30]
                                              [--only NAME ...] [--device cuda] [--width 1.0]
                                              [--no-compile] [--memory-only]

The network is ``resnet19`` on 3x32x32 inputs (CIFAR-10's shape; random images and labels, since
only the speed is measured), SGD with momentum, one full training step per iteration (forward,
cross-entropy on the time-averaged readout, backward, step); only the neuron modules differ
(the peers' adapters are ``bench/train_speed.py``'s). Each configuration runs a few warm-up
steps (compilation, autotuning), then ``--steps`` timed steps between CUDA synchronisations,
and reports images per second, peak allocated memory (``torch.cuda.max_memory_allocated`` over
the timed steps), the activation memory a step keeps for its backward (``train_speed.saved_mib``:
what autograd saves, counted per storage, the same on any device) and the ratios to the fastest
peer configuration. SpikingJelly picks its
CUDA implementation itself; the bench prints which (``neuron_implementation``).

``--device cpu --width 0.0625 --batch-size 4 --steps 1`` runs every configuration on the CPU (the
fused kernel is numba's there; Triton's own run in its interpreter when ``TRITON_INTERPRET=1`` is
set from the start): a smoke test of the script, not a measurement. ``--memory-only`` measures
only the activation memory, one forward per configuration (no compiled ones), which on the CPU
gives the paper-size network's count without a GPU; SpikingJelly's count there is its Torch
reference's (its CUDA kernels save other tensors), as the implementation lines say. Peers are
imported only here, never at run time.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

ROOT = Path(__file__).resolve().parent.parent
for path in (ROOT, ROOT / "bench"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

from train_speed import SnnTorchNeuron, SpikingJellyNeuron, saved_mib  # noqa: E402

from bench.machine import result, write_json  # noqa: E402
from training.config import TrainConfig  # noqa: E402
from training.loop import set_neuron_impl  # noqa: E402
from training.models import build_model  # noqa: E402
from training.neuron import LIF  # noqa: E402

PEERS: dict[str, Callable[[], nn.Module]] = {
    "spikingjelly LIFNode": lambda: SpikingJellyNeuron(False),
    "spikingjelly PLIF": lambda: SpikingJellyNeuron(True),
    "snntorch Leaky": SnnTorchNeuron,
}


def configurations() -> list[tuple[str, str, str, bool]]:
    """``(name, neuron, precision, compiled)``: ours in every combination, the peers in fp32 and bf16."""
    ours = [(f"lsg-deploy {impl} {precision}{' compile' if compiled else ''}", impl, precision, compiled)
            for impl in ("torch", "fused") for precision in ("fp32", "bf16") for compiled in (False, True)]
    peers = [(f"{peer} {precision}", peer, precision, False) for peer in PEERS for precision in ("fp32", "bf16")]
    return peers + ours  # the peers first: each of ours is printed with its ratios as soon as it is measured


def _model(neuron: str, timesteps: int, width: float, device: torch.device) -> nn.Module:
    torch.manual_seed(0)
    model = build_model(TrainConfig(arch="resnet19", timesteps=timesteps, width=width), (3, 32, 32), 10)
    if neuron in PEERS:
        for module in list(model.modules()):
            for name, child in list(module.named_children()):
                if isinstance(child, LIF):
                    setattr(module, name, PEERS[neuron]())
    else:
        set_neuron_impl(model, neuron)
    return model.to(device)


def _measure(model: nn.Module, x: torch.Tensor, y: torch.Tensor, precision: str, compiled: bool, steps: int,
             warm_up: int) -> tuple[float, float, float]:
    """``(images/s, peak MiB, saved MiB)`` over ``steps`` training steps after ``warm_up`` untimed ones."""
    device = x.device
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    forward = torch.compile(model, dynamic=False) if compiled else model
    model.train()

    def step() -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
            loss = nn.functional.cross_entropy(forward(x).logits.float(), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    for _ in range(warm_up):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - start
    peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else float("nan")
    return steps * len(y) / seconds, peak, saved_mib(model, x, y, precision)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--timesteps", type=int, nargs="+", default=[2, 6])
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--steps", type=int, default=30, help="timed steps per configuration (default 30)")
    p.add_argument("--warm-up", type=int, default=5)
    p.add_argument("--width", type=float, default=1.0, help="resnet19's width multiplier (default 1: the paper's)")
    p.add_argument("--device", default="cuda")
    p.add_argument("--json", type=Path, help="also write the results there (bench/machine.py's shape)")
    p.add_argument("--only", nargs="+", help="run only the configurations whose names contain one of these")
    p.add_argument("--no-compile", action="store_true", help="leave out the torch.compile configurations")
    p.add_argument("--memory-only", action="store_true",
                   help="only the activation memory of one forward per configuration, no timing, no compile")
    args = p.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        p.error("no CUDA device here; --device cpu --width 0.0625 --batch-size 4 --steps 1 smoke-tests the script")
    chosen = [c for c in configurations() if (not args.only or any(o in c[0] for o in args.only))
              and not ((args.memory_only or args.no_compile) and c[3])]
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    measured = "activation memory of one forward" if args.memory_only else f"SGD, {args.steps} timed steps"
    print(f"resnet19 (width {args.width}), 3x32x32, batch {args.batch_size}, {measured}, {name}, "
          f"torch {torch.__version__}")
    try:
        from spikingjelly.activation_based.functional.neuron import neuron_implementation

        for kind in ("lif", "plif"):
            print(f"  spikingjelly {kind}: {neuron_implementation(kind, device)['implementation']}")
    except Exception as exc:  # an older or missing SpikingJelly: say so, measure what runs
        print(f"  spikingjelly implementation unknown ({type(exc).__name__}: {exc})")
    gen = torch.Generator().manual_seed(0)
    rows = []
    for timesteps in args.timesteps:
        x = torch.rand(args.batch_size, 3, 32, 32, generator=gen).to(device)
        y = torch.randint(0, 10, (args.batch_size,), generator=gen).to(device)
        results: dict[str, tuple[float, float, float]] = {}
        for config_name, neuron, precision, compiled in chosen:
            try:
                model = _model(neuron, timesteps, args.width, device)
                if args.memory_only:
                    results[config_name] = (float("nan"), float("nan"), saved_mib(model, x, y, precision))
                    continue
                results[config_name] = _measure(model, x, y, precision, compiled, args.steps, args.warm_up)
                rate, peak, saved = results[config_name]
                print(f"  T={timesteps} {config_name:36s} {rate:10,.0f} images/s {peak:10,.0f} MiB peak "
                      f"{saved:10,.1f} MiB saved", flush=True)  # as it comes: a run cut short keeps its rows
            except Exception as exc:  # a configuration that cannot run here is reported, not fatal
                print(f"  T={timesteps} {config_name:36s} failed: {type(exc).__name__}: {str(exc)[:120]}")
            finally:
                if device.type == "cuda":
                    torch.cuda.empty_cache()
        peers = {k: v for k, v in results.items() if not k.startswith("lsg-deploy")}
        best = max(peers, key=lambda k: peers[k][0] if not args.memory_only else -peers[k][2]) if peers else None
        label = "leanest peer" if args.memory_only else "fastest peer"
        print(f"\nT = {timesteps}" + (f" ({label}: {best})" if best else ""))
        print(f"  {'configuration':36s} {'images/s':>10s} {'peak MiB':>10s} {'saved MiB':>10s} {'speed x':>8s} "
              f"{'peak x':>7s} {'saved x':>8s}")
        for config_name, (rate, peak, saved) in results.items():
            speed = f"{rate / peers[best][0]:.2f}" if best else "-"
            memory = f"{peak / peers[best][1]:.2f}" if best and peers[best][1] == peers[best][1] else "-"
            kept = f"{saved / peers[best][2]:.2f}" if best else "-"
            print(f"  {config_name:36s} {rate:10,.0f} {peak:10,.0f} {saved:10,.1f} {speed:>8s} {memory:>7s} {kept:>8s}")
            rows.append(result(config_name, "images/s", rate, best, peers[best][0] if best else None,
                               timesteps=timesteps, peak_mib=peak, saved_mib=saved,
                               saved_ratio=saved / peers[best][2] if best else None))
    if args.json:  # NaN (not measured: --memory-only) is written as null
        rows = [{k: (None if isinstance(v, float) and v != v else v) for k, v in r.items()} for r in rows]
        write_json(args.json, "train_speed_gpu", {k: v for k, v in vars(args).items() if k != "json"}, rows, None,
                   device=str(device))
    return 0


if __name__ == "__main__":
    sys.exit(main())
