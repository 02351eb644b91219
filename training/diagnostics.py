"""The seed paper's diagnostics of the surrogate width, measured after every epoch.

On a fixed batch (the first test samples, the network in evaluation mode, so measuring changes
nothing), every LIF layer's membranes ``u`` (before reset, all steps and neurons) give:

* ``in_window``: the fraction inside the surrogate's gradient window ``|u - v_th| < alpha / 2``
  (Fig. 5: where the window is too narrow, few membranes pass gradient);
* ``alpha`` and ``beta`` of the layer (Figs. 6 and 7: LSG's width follows its decay);
* ``u_mean``, ``u_std`` against Theorem 1's ``sigma = v_th sqrt(1 + beta^2)`` (``theory_std``), and a
  histogram of ``u`` over fixed edges (Fig. 3).
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch

from training.model import SpikingNet
from training.neuron import LIF

BATCH = 256  #: samples in the diagnostic batch
EDGES_IN_VTH = np.linspace(-4.0, 4.0, 161)  #: histogram edges in units of v_th; outliers go to the end bins


@dataclass(frozen=True)
class LayerStats:
    layer: str
    beta: float
    alpha: float
    in_window: float
    u_mean: float
    u_std: float
    theory_std: float  #: Theorem 1: v_th sqrt(1 + beta^2)
    counts: np.ndarray  #: histogram of u over ``EDGES_IN_VTH * v_th``

    def row(self) -> dict[str, float | str]:
        return {k: getattr(self, k) for k in ("layer", "beta", "alpha", "in_window", "u_mean", "u_std", "theory_std")}


@contextmanager
def recorded_membranes(model: SpikingNet):
    """Collect every LIF layer's membranes of the forward passes run inside the block."""
    seen: dict[LIF, list[torch.Tensor]] = {}
    layers = model.lif_layers()
    for lif in layers.values():
        lif.probe = lambda layer, u: seen.setdefault(layer, []).append(u.float().cpu())
    try:
        yield layers, seen
    finally:
        for lif in layers.values():
            lif.probe = None


@torch.no_grad()
def measure(model: SpikingNet, x: torch.Tensor) -> list[LayerStats]:
    """Per-layer statistics of the membranes on the batch ``x`` (already on the model's device)."""
    was_training = model.training
    model.eval()
    try:
        with recorded_membranes(model) as (layers, seen):
            model(x)
    finally:
        model.train(was_training)
    stats = []
    for name, lif in layers.items():
        u = torch.cat([m.flatten() for m in seen[lif]])
        params = lif.params()
        beta, alpha = float(params.beta), float(params.alpha)
        edges = EDGES_IN_VTH * lif.v_th
        counts = torch.histc(u.clamp(edges[0], edges[-1]), bins=len(edges) - 1, min=edges[0], max=edges[-1])
        wide = u.double()
        stats.append(LayerStats(
            layer=name, beta=beta, alpha=alpha,
            in_window=float(((u - lif.v_th).abs() < alpha / 2).double().mean()),
            u_mean=float(wide.mean()), u_std=float(wide.std(unbiased=False)),
            theory_std=lif.v_th * float(np.sqrt(1.0 + beta * beta)),
            counts=counts.numpy().astype(np.int64),
        ))
    return stats
