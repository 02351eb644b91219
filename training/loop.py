"""Training and evaluation loops for the networks of :mod:`training.models` (:class:`training.model.SpikingNet`).

One loop serves every dataset: the embedded ones as in-memory arrays (:class:`ArrayDataset`) and
the file ones (:mod:`training.data.file_datasets`) through a ``DataLoader``. Every epoch is a function of the
weights, the optimizer and scheduler state, the seed and the epoch number alone: the sample order
comes from a ``DistributedSampler`` seeded with the config's seed and set to the epoch (one rank
when not distributed), and torch's global RNG, which draws the augmentations, is reseeded per epoch.
So a run resumed after epoch k (:class:`Resume`) continues bit for bit as if never stopped.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from training.config import TrainConfig
from training.distributed import Context, autocast
from training.model import Forward, SpikingNet
from training.models import build_model
from training.neuron import LIF


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite: the settings (usually the learning rate) do not train."""


def activation_bytes(model: SpikingNet, batch_size: int) -> int:
    """A generous estimate of the memory one training step needs for activations: every
    layer's (T, B, neurons) tensors, about eight of them kept for the backward pass."""
    neurons = sum(math.prod(shape) for shape in model.activation_shapes())
    return 8 * 4 * model.timesteps * batch_size * neurons


def weight_bytes(config: TrainConfig, input_shape: tuple[int, ...], classes: int) -> tuple[int, int]:
    """``(parameters, bytes)``: the network's parameter count and the memory training holds for
    it, weights and buffers plus a gradient and the optimizer's slots per parameter (Adam: two,
    SGD with momentum: one), float32: about 4x the weights under Adam. Counted on a network built
    on the meta device, so a config too large to allocate is measured without allocating it."""
    with torch.device("meta"):
        layout = build_model(config, tuple(input_shape), classes)
    params = sum(p.numel() for p in layout.parameters())
    slots = 2 if config.optimizer == "adam" else 1 if config.momentum else 0
    return params, 4 * (params * (2 + slots) + sum(b.numel() for b in layout.buffers()))


@dataclass(frozen=True)
class Split:
    """One split of a dataset: inputs and labels (N,). Inputs are analog images (N, C, H, W) in
    [0, 1], repeated at every step, or (N, T, C, H, W), a different input at every step."""

    x: np.ndarray
    y: np.ndarray


class ArrayDataset(Dataset):
    """A :class:`Split` held in memory as tensors; a batch is fetched with one index operation."""

    def __init__(self, split: Split):
        self.x = torch.as_tensor(split.x)
        self.y = torch.as_tensor(split.y)

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.x[index], self.y[index]

    def __getitems__(self, indices: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        index = torch.as_tensor(indices)
        return self.x[index], self.y[index]


def as_dataset(data: Split | Dataset) -> Dataset:
    return ArrayDataset(data) if isinstance(data, Split) else data


def input_shape_of(dataset: Dataset) -> tuple[int, int, int]:
    """(C, H, W) of one step's input, read off the first sample."""
    x = dataset.x[0] if isinstance(dataset, ArrayDataset) else dataset[0][0]
    return tuple(int(n) for n in x.shape[-3:])


def _keep(batch):
    return batch


def loader(dataset: Dataset, batch_size: int, sampler=None, workers: int = 0, generator=None) -> DataLoader:
    """Batches of ``dataset``; in-memory arrays skip the per-sample collation."""
    in_memory = isinstance(dataset, ArrayDataset)
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=0 if in_memory else workers,
                      collate_fn=_keep if in_memory else None, generator=generator,
                      worker_init_fn=_seed_worker if workers and not in_memory else None)


def _seed_worker(worker_id: int) -> None:
    """numpy in a loader worker, seeded from the worker's torch seed (which the loader derives
    from the epoch's generator), so transforms drawing from numpy repeat too."""
    np.random.seed(torch.initial_seed() % 2**32)


def epoch_seed(seed: int, epoch: int) -> int:
    """The seed of torch's global RNG during ``epoch`` (augmentation draws)."""
    return (seed * 1_000_003 + epoch) % 2**63


def seed_everything(seed: int) -> None:
    """The seed of the weight initialisation (and of anything drawing from numpy before training)."""
    torch.manual_seed(seed)
    np.random.seed(seed)


def loss_fn(out: Forward, y: torch.Tensor, kind: str, tet_lambda: float = 0.0, v_th: float = 0.5) -> torch.Tensor:
    """``ce``: cross-entropy of the time-averaged readout (Eq. 9). ``tet`` (Deng et al. 2022):
    ``(1 - lambda) mean_t CE(O_t, y) + lambda MSE(O, v_th)``, the per-step CE plus TET's
    regulariser that pulls every step's output toward a constant (here the threshold)."""
    if kind == "tet":
        t = out.outputs.shape[0]
        per_step = nn.functional.cross_entropy(out.outputs.flatten(0, 1), y.repeat(t))
        if tet_lambda == 0:
            return per_step
        mse = nn.functional.mse_loss(out.outputs, torch.full_like(out.outputs, v_th))
        return (1 - tet_lambda) * per_step + tet_lambda * mse
    return nn.functional.cross_entropy(out.logits, y)


def param_groups(config: TrainConfig, model: nn.Module) -> list[dict[str, Any]]:
    """The optimizer's parameter groups: every parameter with the config's weight decay, except
    the LIF decay parameters ``b``, which form a second group without weight decay when
    ``weight_decay_b`` is off (the default; why: :class:`training.config.TrainConfig`) and with the
    learning rate ``lr * lr_b_scale``. One group when ``weight_decay_b`` is on and ``lr_b_scale``
    is 1 (as every run before the keys existed, so their optimizer states resume)."""
    decays = {id(m.b) for m in model.modules() if isinstance(m, LIF) and isinstance(m.b, nn.Parameter)}
    if not decays or (config.weight_decay_b and config.lr_b_scale == 1):
        return [{"params": list(model.parameters()), "weight_decay": config.weight_decay}]
    return [{"params": [p for p in model.parameters() if id(p) not in decays], "weight_decay": config.weight_decay},
            {"params": [p for p in model.parameters() if id(p) in decays],
             "weight_decay": config.weight_decay if config.weight_decay_b else 0.0,
             "lr": config.lr * config.lr_b_scale}]


def make_optimizer(config: TrainConfig, model: nn.Module) -> torch.optim.Optimizer:
    """Adam, or SGD with (non-Nesterov) momentum as in the CIFAR recipe (from the authors' related
    ASGL code; the paper does not state its optimizer), over :func:`param_groups`."""
    groups = param_groups(config, model)
    if config.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum)
    return torch.optim.Adam(groups, lr=config.lr)


@torch.no_grad()
def predict(model: SpikingNet, x: np.ndarray, batch_size: int = 512, record: bool = False) -> Forward:
    """Evaluation-mode forward over a whole split, batched; spikes are concatenated over B."""
    was_training = model.training
    model.eval()
    parts = [model(torch.as_tensor(x[i : i + batch_size]), record=record) for i in range(0, len(x), batch_size)]
    model.train(was_training)
    return Forward(
        logits=torch.cat([p.logits for p in parts]),
        outputs=torch.cat([p.outputs for p in parts], dim=1),
        spikes={k: torch.cat([p.spikes[k] for p in parts], dim=1) for k in parts[0].spikes},
    )


@torch.no_grad()
def evaluate(model: SpikingNet, dataset: Dataset, batch_size: int, ctx: Context, precision: str = "fp32",
             workers: int = 0) -> tuple[float, float]:
    """``(loss, accuracy)`` of the time-averaged readout (cross-entropy) over ``dataset``. Under
    DDP every rank evaluates samples ``rank, rank + world, ...`` and the sums are combined."""
    was_training = model.training
    model.eval()
    mine = range(ctx.rank, len(dataset), ctx.world)
    loss_sum = correct = count = 0.0
    if len(mine):
        for x, y in loader(dataset, batch_size, sampler=mine, workers=workers):
            x, y = x.to(ctx.device, non_blocking=True), y.to(ctx.device, non_blocking=True)
            with autocast(ctx.device, precision):
                logits = model(x).logits.float()
            loss_sum += float(nn.functional.cross_entropy(logits, y, reduction="sum"))
            correct += int((logits.argmax(1) == y).sum())
            count += len(y)
    model.train(was_training)
    loss_sum, correct, count = ctx.sum(loss_sum, correct, count)
    return loss_sum / count, correct / count


@dataclass
class Resume:
    """Where an interrupted run stopped: the state after its last finished epoch."""

    epoch: int
    model: dict[str, torch.Tensor]
    optimizer: dict[str, Any]
    scheduler: dict[str, Any]
    metrics: list[dict[str, float]] = field(default_factory=list)


@dataclass
class Epoch:
    """What ``on_epoch`` receives after every epoch: the row of metrics and the state to save."""

    row: dict[str, float]
    model: SpikingNet  #: the bare network (not the DDP wrapper), in training mode
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    metrics: list[dict[str, float]]  #: every row so far, this one last

    def resume(self) -> Resume:
        """A copy of the state after this epoch (training goes on changing the live tensors)."""
        return Resume(int(self.row["epoch"]), copy.deepcopy(self.model.state_dict()),
                      copy.deepcopy(self.optimizer.state_dict()), copy.deepcopy(self.scheduler.state_dict()),
                      copy.deepcopy(self.metrics))


class _NoBar:
    """What ``fit`` reports progress to when nobody watches."""

    def __init__(self, total: int = 0, desc: str = ""): ...

    def update(self, n: int) -> None: ...

    def set_postfix(self, **values: Any) -> None: ...

    def close(self) -> None: ...


def set_neuron_impl(model: SpikingNet, impl: str) -> None:
    """Run every LIF layer of ``model`` with ``impl`` (:data:`training.neuron.NEURON_IMPLS`)."""
    for lif in model.lif_layers().values():
        lif.impl = impl


def fit(
    config: TrainConfig,
    train: Split | Dataset,
    test: Split | Dataset,
    classes: int,
    on_epoch: Callable[[Epoch], None] = lambda epoch: None,
    memory_limit: int | None = None,
    ctx: Context | None = None,
    resume: Resume | None = None,
    progress: Callable[[int, str], Any] = _NoBar,
) -> tuple[SpikingNet, list[dict[str, float]]]:
    """Train with the configured optimizer (Adam or SGD) and a cosine schedule; returns the model
    and one metrics row per epoch.

    ``on_epoch`` runs after every epoch on every rank (the caller saves checkpoints there, on rank
    0). ``resume`` continues a run from its last finished epoch. ``progress(total, desc)`` makes a
    tqdm-like bar counting training samples (its rate is the throughput). Raises
    :class:`TrainingDiverged` on a non-finite loss, and ``MemoryError`` before the network is
    built when :func:`weight_bytes` exceeds ``memory_limit``, before training when
    :func:`activation_bytes` does.
    """
    ctx = ctx or Context(torch.device("cpu"))
    train, test = as_dataset(train), as_dataset(test)
    params, held = weight_bytes(config, input_shape_of(train), classes)
    what = "weights, gradients and optimizer state"
    if ctx.device.type != "cpu":  # the host holds the weights while it builds them, the device the rest
        held, what = 4 * params, "weights, while they are built"
    if memory_limit is not None and held > memory_limit:
        raise MemoryError(f"the network has {params:,} parameters, which need about {held / 2**30:,.1f} GiB "
                          f"({held:,} bytes: {what}), more than the {memory_limit / 2**30:,.1f} GiB this machine "
                          f"has; lower width, hidden or channels")
    seed_everything(config.seed)
    model = build_model(config, input_shape_of(train), classes)
    per_rank_batch = max(1, config.batch_size // ctx.world)
    need = activation_bytes(model, min(per_rank_batch, len(train)))
    if memory_limit is not None and ctx.device.type == "cpu" and need > memory_limit:
        raise MemoryError(f"timesteps {config.timesteps} x batch_size {config.batch_size} need about "
                          f"{need / 2**30:,.1f} GiB for activations, more than the {memory_limit / 2**30:,.1f} GiB "
                          f"this machine has; lower them")
    model.to(ctx.device)
    set_neuron_impl(model, config.neuron_impl)
    optimizer = make_optimizer(config, model)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.epochs)
    metrics: list[dict[str, float]] = []
    first = 1
    if resume is not None:
        model.load_state_dict(resume.model)
        optimizer.load_state_dict(resume.optimizer)
        schedule.load_state_dict(resume.scheduler)
        metrics, first = list(resume.metrics), resume.epoch + 1
    net = model
    if ctx.distributed:
        net = nn.parallel.DistributedDataParallel(model, device_ids=[ctx.device.index] if ctx.device.type == "cuda"
                                                  else None)
    sampler = DistributedSampler(train, num_replicas=ctx.world, rank=ctx.rank, shuffle=True, seed=config.seed)
    bar = progress(len(sampler) * (config.epochs - first + 1), f"train {config.arch} {config.mode}")
    try:
        for epoch in range(first, config.epochs + 1):
            start = time.perf_counter()
            sampler.set_epoch(epoch)
            torch.manual_seed(epoch_seed(config.seed, epoch))
            batches = loader(train, per_rank_batch, sampler, config.workers,
                             torch.Generator().manual_seed(epoch_seed(config.seed, epoch)))
            model.train()
            loss_sum = correct = count = 0.0
            for x, y in batches:
                x, y = x.to(ctx.device, non_blocking=True), y.to(ctx.device, non_blocking=True)
                with autocast(ctx.device, config.precision):
                    out = net(x)
                    loss = loss_fn(out, y, config.loss, config.tet_lambda, config.v_th)
                if not torch.isfinite(loss):
                    raise TrainingDiverged(f"training diverged in epoch {epoch} (loss {loss.item()}); "
                                           f"lower the learning rate (lr {config.lr})")
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                loss_sum += loss.item() * len(y)
                correct += int((out.logits.argmax(1) == y).sum())
                count += len(y)
                bar.update(len(y))
            schedule.step()
            if not all(bool(torch.isfinite(p).all()) for p in model.parameters()):
                raise TrainingDiverged(f"training diverged in epoch {epoch} (non-finite weights); "
                                       f"lower the learning rate (lr {config.lr})")
            loss_sum, correct, count = ctx.sum(loss_sum, correct, count)
            seconds = time.perf_counter() - start
            ctx.share_buffers(model)  # every rank evaluates rank 0's network, the one saved
            test_loss, test_accuracy = evaluate(model, test, 2 * config.batch_size, ctx, config.precision,
                                                config.workers)  # no gradients kept: twice the batch fits
            row = {
                "epoch": epoch,
                "train_loss": loss_sum / count,
                "train_accuracy": correct / count,
                "test_loss": test_loss,
                "test_accuracy": test_accuracy,
                "lr": schedule.get_last_lr()[0],
                "seconds": seconds,
                "images_per_s": count / seconds,
            }
            for name, lif in model.lif_layers().items():
                row[f"beta_{name}"] = lif.beta.item()
            metrics.append(row)
            bar.set_postfix(epoch=epoch, loss=f"{row['train_loss']:.3f}", test=f"{test_accuracy:.3f}")
            on_epoch(Epoch(row, model, optimizer, schedule, metrics))
    finally:
        bar.close()
    model.eval()
    return model.cpu(), metrics
