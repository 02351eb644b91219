"""Training and evaluation loops for the networks of :mod:`training.models` (:class:`training.model.SpikingNet`)."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from training.config import TrainConfig
from training.model import Forward, SpikingNet
from training.models import build_model


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite: the settings (usually the learning rate) do not train."""


def activation_bytes(model: SpikingNet, batch_size: int) -> int:
    """A generous estimate of the memory one training step needs for activations: every
    layer's (T, B, neurons) tensors, about eight of them kept for the backward pass."""
    neurons = sum(math.prod(shape) for shape in model.activation_shapes())
    return 8 * 4 * model.timesteps * batch_size * neurons


@dataclass(frozen=True)
class Split:
    """One split of a dataset: inputs and labels (N,). Inputs are analog images (N, C, H, W) in
    [0, 1], repeated at every step, or (N, T, C, H, W), a different input at every step."""

    x: np.ndarray
    y: np.ndarray


def seed_everything(seed: int) -> torch.Generator:
    torch.manual_seed(seed)
    np.random.seed(seed)
    return torch.Generator().manual_seed(seed)


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


def make_optimizer(config: TrainConfig, model: nn.Module) -> torch.optim.Optimizer:
    """Adam, or SGD with (non-Nesterov) momentum as in the seed paper's CIFAR recipe."""
    if config.optimizer == "sgd":
        return torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum,
                               weight_decay=config.weight_decay)
    return torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)


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


def accuracy(model: SpikingNet, split: Split) -> float:
    logits = predict(model, split.x).logits
    return float((logits.argmax(1).numpy() == split.y).mean())


def fit(
    config: TrainConfig,
    train: Split,
    test: Split,
    classes: int,
    on_epoch: Callable[[dict[str, float], SpikingNet], None] = lambda row, model: None,
    memory_limit: int | None = None,
) -> tuple[SpikingNet, list[dict[str, float]]]:
    """Train with the configured optimizer (Adam or SGD) and a cosine schedule; returns the model
    and one metrics row per epoch.

    ``on_epoch(row, model)`` runs after every epoch (the caller saves checkpoints there).
    Raises :class:`TrainingDiverged` on a non-finite loss, and ``MemoryError`` before training
    when :func:`activation_bytes` exceeds ``memory_limit``.
    """
    gen = seed_everything(config.seed)
    model = build_model(config, train.x.shape[-3:], classes)
    need = activation_bytes(model, min(config.batch_size, len(train.x)))
    if memory_limit is not None and need > memory_limit:
        raise MemoryError(f"timesteps {config.timesteps} x batch_size {config.batch_size} need about "
                          f"{need / 2**30:,.1f} GiB for activations, more than the {memory_limit / 2**30:,.1f} GiB "
                          f"this machine has; lower them")
    optimizer = make_optimizer(config, model)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.epochs)
    x_all, y_all = torch.as_tensor(train.x), torch.as_tensor(train.y)
    metrics: list[dict[str, float]] = []
    for epoch in range(1, config.epochs + 1):
        start = time.perf_counter()
        model.train()
        order = torch.randperm(len(x_all), generator=gen)
        loss_sum, correct = 0.0, 0
        for i in range(0, len(order), config.batch_size):
            idx = order[i : i + config.batch_size]
            out = model(x_all[idx])
            loss = loss_fn(out, y_all[idx], config.loss, config.tet_lambda, config.v_th)
            if not torch.isfinite(loss):
                raise TrainingDiverged(f"training diverged in epoch {epoch} (loss {loss.item()}); "
                                       f"lower the learning rate (lr {config.lr})")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            loss_sum += loss.item() * len(idx)
            correct += int((out.logits.argmax(1) == y_all[idx]).sum())
        schedule.step()
        if not all(bool(torch.isfinite(p).all()) for p in model.parameters()):
            raise TrainingDiverged(f"training diverged in epoch {epoch} (non-finite weights); "
                                   f"lower the learning rate (lr {config.lr})")
        row = {
            "epoch": epoch,
            "train_loss": loss_sum / len(order),
            "train_accuracy": correct / len(order),
            "test_accuracy": accuracy(model, test),
            "lr": schedule.get_last_lr()[0],
            "seconds": time.perf_counter() - start,
        }
        for name, lif in model.lif_layers().items():
            row[f"beta_{name}"] = lif.beta.item()
        metrics.append(row)
        on_epoch(row, model)
    model.eval()
    return model, metrics
