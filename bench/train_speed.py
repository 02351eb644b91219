"""Training speed on CPU: the digits network with our LSG neuron beside the same network built
with the peers' LIF neurons, in one process and one run.

    .venv/bin/python bench/train_speed.py [--steps 60] [--batch-size 64] [--timesteps 4]

The network is ``digits-cnn`` (conv-tdBN-LIF x2, pooling, linear-tdBN-LIF, readout); only the
neuron modules differ:

* ``lsg-deploy torch`` and ``lsg-deploy fused``: our :class:`training.neuron.LIF` in ``lsg`` mode
  (trainable decay, width ``alpha = 2 v_th sqrt(1 + beta^2)``), as the per-step torch loop that is
  the specification and as the fused kernel (:mod:`training.fused`: numba on the CPU, what
  ``--neuron-impl fused`` runs here);
* SpikingJelly 2.0 ``neuron.LIFNode`` (fixed decay) and ``neuron.ParametricLIFNode`` (trainable
  decay, PLIF), multi-step mode (2.0 has no backend switch on these classes: torch on CPU),
  ``decay_input=False``, hard reset to 0, threshold 0.5;
* snnTorch 1.0 ``Leaky`` (``learn_beta=True``), stepped over T with explicit membranes.

Each configuration trains ``--steps`` Adam steps on batches of the embedded digits (forward,
cross-entropy, backward, step; the same batches for all) after a few warm-up steps, and the
bench prints images per second (the best of ``--rounds`` interleaved rounds), the activation
memory a training step holds for its backward (:func:`saved_mib`: every tensor autograd saves,
counted once per storage, parameters excluded; the same count on any device) and both as ratios
to the fastest peer. Peers
are imported only here (they are test dependencies, never runtime ones). Not a test: numbers
depend on the machine and its load.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
from torch import nn

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.machine import result, write_json  # noqa: E402
from training.config import TrainConfig  # noqa: E402
from training.data import DataSpec, load  # noqa: E402
from training.loop import set_neuron_impl  # noqa: E402
from training.models import build_model  # noqa: E402
from training.neuron import LIF  # noqa: E402

V_TH, BETA = 0.5, 0.2


class SpikingJellyNeuron(nn.Module):
    """A SpikingJelly multi-step node behind our (T, B, ...) -> (T, B, ...) interface."""

    def __init__(self, parametric: bool):
        super().__init__()
        from spikingjelly.activation_based import neuron, surrogate

        tau = 1.0 / (1.0 - BETA)  # decay_input=False: v = v - v / tau + x = (1 - 1/tau) v + x
        common = dict(v_threshold=V_TH, v_reset=0.0, decay_input=False, step_mode="m",
                      surrogate_function=surrogate.Sigmoid())
        self.node = neuron.ParametricLIFNode(init_tau=tau, **common) if parametric else neuron.LIFNode(
            tau=tau, **common)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.node.reset()
        return self.node(x)


class SnnTorchNeuron(nn.Module):
    """snnTorch's Leaky (trainable beta), stepped over T with an explicit membrane."""

    def __init__(self):
        super().__init__()
        import snntorch

        self.leaky = snntorch.Leaky(beta=BETA, threshold=V_TH, learn_beta=True, reset_mechanism="zero")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mem = torch.zeros_like(x[0])
        out = []
        for x_t in x:
            spk, mem = self.leaky(x_t, mem)
            out.append(spk)
        return torch.stack(out)


def saved_mib(model: nn.Module, x: torch.Tensor, y: torch.Tensor, precision: str = "fp32") -> float:
    """MiB of the tensors autograd keeps from one training forward for its backward (each storage
    once; the parameters, which are kept anyway, excluded): a step's activation memory, the part
    of peak memory that the neuron's implementation decides."""
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    saved: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in params:
            saved[storage.data_ptr()] = storage.nbytes()
        return tensor

    model.train()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
            loss = nn.functional.cross_entropy(model(x).logits.float(), y)
    del loss
    return sum(saved.values()) / 2**20


def _network(neuron: str, config: TrainConfig) -> nn.Module:
    torch.manual_seed(0)
    model = build_model(config, (1, 8, 8), 10)
    if neuron.startswith("lsg-deploy"):
        set_neuron_impl(model, neuron.split()[-1])
    else:
        for block in model.blocks.values():
            if isinstance(getattr(block, "lif", None), LIF):
                block.lif = {"spikingjelly LIFNode": lambda: SpikingJellyNeuron(False),
                             "spikingjelly PLIF": lambda: SpikingJellyNeuron(True),
                             "snntorch Leaky": SnnTorchNeuron}[neuron]()
    return model


def _images_per_second(model: nn.Module, batches: list[tuple[torch.Tensor, torch.Tensor]], warm_up: int = 3
                       ) -> float:
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    model.train()

    def step(x: torch.Tensor, y: torch.Tensor) -> None:
        loss = nn.functional.cross_entropy(model(x).logits, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    for x, y in batches[:warm_up]:
        step(x, y)
    start = time.perf_counter()
    for x, y in batches:
        step(x, y)
    return sum(len(y) for _, y in batches) / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--steps", type=int, default=60, help="timed training steps per configuration (default 60)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--timesteps", type=int, default=4)
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds; the best of each is shown")
    p.add_argument("--json", type=Path, help="also write the results there (bench/machine.py's shape)")
    args = p.parse_args(argv)

    config = TrainConfig(timesteps=args.timesteps)
    train, _, _ = load(DataSpec())
    x, y = torch.as_tensor(train.analog), torch.as_tensor(train.labels)
    gen = torch.Generator().manual_seed(0)
    batches = []
    while len(batches) < args.steps:
        order = torch.randperm(len(x), generator=gen)
        batches += [(x[order[i: i + args.batch_size]], y[order[i: i + args.batch_size]])
                    for i in range(0, len(order) - args.batch_size + 1, args.batch_size)]
    batches = batches[: args.steps]

    print(f"digits-cnn, batch {args.batch_size}, T={args.timesteps}, {args.steps} Adam steps x {args.rounds} rounds, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    models = {}
    for neuron in ("lsg-deploy torch", "lsg-deploy fused", "spikingjelly LIFNode", "spikingjelly PLIF",
                   "snntorch Leaky"):
        try:
            models[neuron] = _network(neuron, config)
        except ImportError as exc:
            print(f"  {neuron:22s} not installed ({exc}); make test installs the peers")
    results: dict[str, float] = {}
    for _ in range(args.rounds):  # interleaved rounds, best of each: load changes hit every one alike
        for neuron, model in models.items():
            results[neuron] = max(results.get(neuron, 0.0), _images_per_second(model, batches))
    memory = {neuron: saved_mib(model, *batches[0]) for neuron, model in models.items()}
    peers = [k for k in results if not k.startswith("lsg-deploy")]
    best = max(peers, key=results.get) if peers else None
    print(f"  {'neuron':22s} {'images/s':>9s} {'saved MiB':>10s}" + (f"   ratios to {best}" if best else ""))
    for neuron, rate in results.items():
        ratios = f"   {rate / results[best]:.2f}x speed, {memory[neuron] / memory[best]:.2f}x memory" if best else ""
        print(f"  {neuron:22s} {rate:9,.0f} {memory[neuron]:10.2f}{ratios}")
    if args.json:
        write_json(args.json, "train_speed", {k: v for k, v in vars(args).items() if k != "json"},
                   [result(neuron, "images/s", rate, best, results.get(best), saved_mib=memory[neuron],
                           memory_ratio=memory[neuron] / memory[best] if best else None)
                    for neuron, rate in results.items()], None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
