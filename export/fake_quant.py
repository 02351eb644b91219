"""Torch evaluation of a bundle's integer network: integer weights, integer state, Loihi rounding.

It is written independently of ``hardware.reference`` (torch ops, time-major over the whole
batch) and must agree with it bit for bit; the tests compare the two with ``==``. Synaptic sums
run as float64 convolutions/matmuls, exact for integers below 2^53; the neuron arithmetic runs
in int64 (sign-magnitude shift for the decays, single-step current wrap, membrane clip).
"""

from __future__ import annotations

import torch

from hardware import fixed_point as fp
from hardware.bundle import LoihiLayer

_LIM = 1 << (fp.STATE_BITS - 1)


def _decay(x: torch.Tensor, d: int) -> torch.Tensor:
    p = x * (fp.DECAY_UNITY - d)
    return torch.sign(p) * (p.abs() >> fp.DECAY_SHIFT)


def _wrap_conv(x: torch.Tensor) -> torch.Tensor:
    base = 1 << fp.CONV_OUT_BITS
    return torch.remainder(x + base // 2, base) - base // 2


def _synaptic(layer: LoihiLayer, s: torch.Tensor) -> torch.Tensor:
    g = layer.geometry
    w = torch.as_tensor(layer.weight, dtype=torch.float64)
    x = s.to(torch.float64)
    if g.kind == "conv":
        a = torch.nn.functional.conv2d(x.reshape(-1, *g.input_shape), w, stride=g.stride, padding=g.padding)
        return _wrap_conv(torch.round(a).to(torch.int64).flatten(1))
    a = torch.round(x.flatten(1) @ w.T).to(torch.int64)
    exp = int(layer.weight_exp)
    return a << exp if exp > 0 else a >> -exp


@torch.no_grad()
def run_fake_quant(layers: tuple[LoihiLayer, ...], pixels: torch.Tensor, timesteps: int
                   ) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Returns spikes {layer: (B, T, neurons) bool} and readout membranes (B, T, classes) int64."""
    b = pixels.shape[0]
    x = pixels.to(torch.int64).reshape(b, -1)
    state = {layer.name: [torch.zeros(b, layer.geometry.neurons, dtype=torch.int64)] * 2 for layer in layers}
    spikes: dict[str, list[torch.Tensor]] = {layer.name: [] for layer in layers[:-1]}
    readout = []
    for _ in range(timesteps):
        s = x
        for layer in layers:
            u, v = state[layer.name]
            u = _decay(u, layer.du + 1) + (_synaptic(layer, s) << fp.ACT_SHIFT)
            u = torch.where(u > _LIM, u - 2 * _LIM, torch.where(u <= -_LIM, u + 2 * _LIM, u))
            bias = torch.as_tensor(layer.geometry.per_neuron(layer.bias_mant), dtype=torch.int64) << int(layer.bias_exp)
            v = torch.clamp(_decay(v, layer.dv) + u + bias, -fp.STATE_LIMIT, fp.STATE_LIMIT)
            fired = v > (int(layer.vth) << fp.VTH_SHIFT)
            v = torch.where(fired, torch.zeros_like(v), v)
            state[layer.name] = [u, v]
            if layer.readout:
                readout.append(v)
            else:
                spikes[layer.name].append(fired)
                s = fired
    return {k: torch.stack(v, dim=1) for k, v in spikes.items()}, torch.stack(readout, dim=1)
