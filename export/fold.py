"""Fold a trained network into plain synaptic layers, and run folded layers in float.

Folding turns every block into one ``FloatLayer`` (``I = W x + b`` feeding a LIF):

* tdBN (running statistics) into the weights: ``W' = W * s``, ``b' = o`` with ``tdBN(I) = s I + o``;
* average pooling into the *next* synaptic layer, since both are linear: pooling by ``p`` then a
  conv (kernel K, stride q, padding P) is one conv with kernel ``pK``, stride ``pq``, padding
  ``pP`` and weights ``w[k // p] / p^2``; pooling then flatten then linear is one linear layer.

So the folded network has no pooling or normalisation left: each layer maps one-to-one onto a
Lava Conv/Dense process followed by a LIF process.
"""

from __future__ import annotations

import numpy as np
import torch

from hardware.bundle import FloatLayer, Geometry
from training.model import ConvBlock, DenseBlock, Flatten, Pool, Readout, SpikingNet
from training.neuron import LIFParams, LIFState, lif_step


class FoldError(ValueError):
    """A network this exporter cannot fold into synaptic layers."""


def _pool_compose(weight: np.ndarray, p: int) -> np.ndarray:
    """Weights (O, C, kh, kw) of a conv preceded by ``p x p`` average pooling."""
    return np.repeat(np.repeat(weight, p, axis=2), p, axis=3) / (p * p)


def fold(model: SpikingNet) -> tuple[FloatLayer, ...]:
    """Fold tdBN and pooling; float64 copies, the model is not modified."""
    layers: list[FloatLayer] = []
    shape = tuple(model.input_shape)  # shape of the last spiking output (or the input)
    pool = 1  # pending average pooling, composed into the next synaptic layer
    flat = False
    for name, block in model.blocks.items():
        if isinstance(block, Pool):
            c, h, w = shape[0], shape[1] // pool, shape[2] // pool
            if h % block.kernel or w % block.kernel:
                raise FoldError(f"{name}: pooling {block.kernel} does not divide ({h}, {w}); cannot fold it")
            pool *= block.kernel
        elif isinstance(block, Flatten):
            flat = True
        elif isinstance(block, ConvBlock):
            conv = block.conv
            if conv.dilation != (1, 1) or conv.groups != 1:
                raise FoldError(f"{name}: dilated or grouped convolutions are not supported")
            scale, offset = (t.detach().double().numpy() for t in block.bn.fold_factors())
            weight = conv.weight.detach().double().numpy() * scale[:, None, None, None]
            if conv.bias is not None:
                offset = offset + scale * conv.bias.detach().double().numpy()
            weight = _pool_compose(weight, pool)
            stride = (conv.stride[0] * pool, conv.stride[1] * pool)
            padding = (conv.padding[0] * pool, conv.padding[1] * pool)
            kh, kw = weight.shape[2:]
            out_shape = (
                weight.shape[0],
                (shape[1] + 2 * padding[0] - kh) // stride[0] + 1,
                (shape[2] + 2 * padding[1] - kw) // stride[1] + 1,
            )
            geometry = Geometry("conv", shape, out_shape, stride, padding)
            lif = block.lif
            layers.append(FloatLayer(name, geometry, weight, offset, lif.beta.item(), lif.v_th))
            shape, pool = out_shape, 1
        elif isinstance(block, (DenseBlock, Readout)):
            if not flat:
                raise FoldError(f"{name}: a linear layer must follow a flatten")
            weight = block.linear.weight.detach().double().numpy()
            out = weight.shape[0]
            if len(shape) == 3:  # first linear layer after the conv stack: undo flatten, compose pool
                c, h, w = shape
                weight = _pool_compose(weight.reshape(out, c, h // pool, w // pool), pool).reshape(out, -1)
            if isinstance(block, DenseBlock):
                scale, offset = (t.detach().double().numpy() for t in block.bn.fold_factors())
                weight = weight * scale[:, None]
                lif = block.lif
                layers.append(FloatLayer(name, Geometry("dense", (weight.shape[1],), (out,)), weight, offset,
                                         lif.beta.item(), lif.v_th))
            else:
                bias = block.linear.bias.detach().double().numpy()
                v_th = layers[-1].v_th if layers else 0.5
                layers.append(FloatLayer(name, Geometry("dense", (weight.shape[1],), (out,)), weight, bias,
                                         1.0, v_th, readout=True))
            shape, pool = (out,), 1
        else:
            raise FoldError(f"{name}: cannot fold a {type(block).__name__}")
    return tuple(layers)


def synaptic_float(layer: FloatLayer, x: torch.Tensor) -> torch.Tensor:
    """``W x + b`` for a batch (N, ...) -> (N, neurons)."""
    g = layer.geometry
    w = torch.as_tensor(layer.weight, dtype=x.dtype)
    b = torch.as_tensor(layer.bias, dtype=x.dtype)
    if g.kind == "conv":
        y = torch.nn.functional.conv2d(x.reshape(-1, *g.input_shape), w, b, stride=g.stride, padding=g.padding)
        return y.flatten(1)
    return x.flatten(1) @ w.T + b


@torch.no_grad()
def run_float(
    layers: tuple[FloatLayer, ...],
    x: torch.Tensor,
    timesteps: int,
    betas: dict[str, float] | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Run folded layers on analog inputs (B, C, H, W); returns logits (B, classes) and
    spikes {layer: (T, B, neurons)}. ``betas`` overrides decays (e.g. the quantized ones)."""
    betas = betas or {}
    spikes: dict[str, torch.Tensor] = {}
    h = x.unsqueeze(0).expand(timesteps, *x.shape)
    for layer in layers:
        t, b = h.shape[:2]
        current = synaptic_float(layer, h.reshape(t * b, *h.shape[2:])).reshape(t, b, -1)
        if layer.readout:
            return current.mean(0), spikes
        beta = torch.tensor(betas.get(layer.name, layer.beta), dtype=x.dtype)
        params = LIFParams(beta=beta, v_th=layer.v_th, alpha=torch.tensor(1.0, dtype=x.dtype))
        state = LIFState(u=torch.zeros_like(current[0]), o=torch.zeros_like(current[0]))
        out = []
        for c_t in current:
            o, state = lif_step(c_t, state, params)
            out.append(o)
        h = spikes[layer.name] = torch.stack(out)
    raise ValueError("layers have no readout")


def readout_bound(layers: tuple[FloatLayer, ...], x: torch.Tensor, timesteps: int, batch: int = 512) -> float:
    """Largest ``|sum_t I_t|`` of the readout over calibration inputs (for its integer range)."""
    worst = 0.0
    for i in range(0, len(x), batch):
        logits, _ = run_float(layers, x[i : i + batch], timesteps)
        worst = max(worst, float(logits.abs().max()) * timesteps)
    return worst
