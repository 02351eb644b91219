"""Where training runs: the device, mixed precision, and PyTorch's own data parallelism (DDP).

``torchrun --nproc-per-node N lsg-deploy train ...`` (or any launcher that sets ``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``) starts N processes; each
calls :func:`setup`, which joins the process group: NCCL when the processes train on CUDA devices,
gloo on CPU. Every rank trains on its own shard of each epoch (``DistributedSampler``), DDP
averages the gradients, and only rank 0 writes files and prints. tdBN's batch statistics stay per
process, as with plain BatchNorm under DDP; DDP broadcasts rank 0's running statistics.
"""

from __future__ import annotations

import os
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass

import torch
import torch.distributed as dist

DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("fp32", "bf16")


class DeviceError(ValueError):
    """A device or precision this machine cannot give."""


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """``auto``: CUDA where available, else the CPU. ``cuda`` / ``cuda:N``: refused without CUDA.
    Under a launcher each process takes the CUDA device of its local rank."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cpu":
        return torch.device("cpu")
    suffix = name.partition(":")[2]
    if name != "cuda" and not (name.startswith("cuda:") and suffix.isdigit()):
        raise DeviceError(f"device must be one of {', '.join(DEVICES)} or cuda:N, got {name!r}")
    if not torch.cuda.is_available():
        raise DeviceError(f"device {name}: torch {torch.__version__} sees no CUDA device here; use --device cpu")
    index = int(suffix) if suffix else local_rank
    if index >= torch.cuda.device_count():
        raise DeviceError(f"device {name}: only {torch.cuda.device_count()} CUDA device(s) here")
    return torch.device("cuda", index)


def autocast(device: torch.device, precision: str) -> AbstractContextManager:
    """bf16 autocast (convolutions and matrix products in bfloat16, the rest in float32), or nothing."""
    if precision == "fp32":
        return nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


@dataclass(frozen=True)
class Context:
    """This process's place in the run."""

    device: torch.device
    rank: int = 0
    world: int = 1

    @property
    def main(self) -> bool:
        """Rank 0: the process that writes files and prints."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world > 1

    def sum(self, *values: float) -> list[float]:
        """Every rank's ``values`` summed (float64), on every rank; the values themselves when alone."""
        if not self.distributed:
            return list(values)
        total = torch.tensor(values, dtype=torch.float64,
                             device=self.device if dist.get_backend() == "nccl" else "cpu")
        dist.all_reduce(total)
        return total.tolist()

    def share_buffers(self, model: torch.nn.Module) -> None:
        """Give every rank rank 0's buffers (tdBN's running statistics). DDP broadcasts them at
        the start of each training forward, and then each rank updates them from its own batch:
        after an epoch the ranks hold different statistics, and an evaluation split over the
        ranks would measure a mix of networks rather than rank 0's, the one saved."""
        if self.distributed:
            for buffer in model.buffers():
                dist.broadcast(buffer, src=0)


def launched() -> bool:
    """True under torchrun (or another launcher that sets WORLD_SIZE > 1)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def setup(device: str) -> Context:
    """This process's :class:`Context`; under a launcher, join the process group first."""
    if not launched():
        return Context(resolve_device(device))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    chosen = resolve_device(device, local_rank)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if chosen.type == "cuda" else "gloo")
    if chosen.type == "cuda":
        torch.cuda.set_device(chosen)
    return Context(chosen, dist.get_rank(), dist.get_world_size())


def teardown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()
