"""Torch evaluation of a bundle's integer network: integer weights, integer state, Loihi rounding.

The synapses are computed independently of ``hardware.reference`` (torch float64 convolutions and
matmuls, exact for integers below 2^53); the neuron is the profile's one integer step
(:meth:`hardware.profile.Profile.lif_step`), run on int64 tensors. The tests compare the two
paths with ``==``; Lava is the independent oracle for the step itself. Being torch, this path
is what quantization-aware fine-tuning will build on.
"""

from __future__ import annotations

import torch

from hardware import fixed_point as fp
from hardware.bundle import LoihiLayer
from hardware.profile import LOIHI2, Profile


def _synaptic(layer: LoihiLayer, s: torch.Tensor, profile: Profile) -> torch.Tensor:
    g = layer.geometry
    w = torch.as_tensor(layer.weight, dtype=torch.float64)
    x = s.to(torch.float64)
    if g.kind == "conv":
        a = torch.nn.functional.conv2d(x.reshape(-1, *g.input_shape), w, stride=g.stride, padding=g.padding)
        return profile.synapse(torch.round(a).to(torch.int64).flatten(1))
    a = torch.round(x.flatten(1) @ w.T).to(torch.int64)
    exp = int(layer.weight_exp)
    return a << exp if exp > 0 else a >> -exp


@torch.no_grad()
def run_fake_quant(layers: tuple[LoihiLayer, ...], pixels: torch.Tensor, timesteps: int, profile: Profile = LOIHI2
                   ) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Returns spikes {layer: (B, T, neurons) bool} and readout membranes (B, T, classes) int64."""
    b = pixels.shape[0]
    x = pixels.to(torch.int64).reshape(b, -1)
    state = {layer.name: [torch.zeros(b, layer.geometry.neurons, dtype=torch.int64)] * 2 for layer in layers}
    spikes: dict[str, list[torch.Tensor]] = {layer.name: [] for layer in layers[:-1]}
    readout = []
    biases = {layer.name: torch.as_tensor(fp.effective_bias(layer.geometry.per_neuron(layer.bias_mant),
                                                            layer.bias_exp)) for layer in layers}
    for _ in range(timesteps):
        s = x
        for layer in layers:
            u, v = state[layer.name]
            fired, u, v, _ = profile.lif_step(_synaptic(layer, s, profile), u, v, layer.du, layer.dv,
                                              biases[layer.name], layer.vth)
            state[layer.name] = [u, v]
            if layer.readout:
                readout.append(v)
            else:
                spikes[layer.name].append(fired)
                s = fired
    return {k: torch.stack(v, dim=1) for k, v in spikes.items()}, torch.stack(readout, dim=1)
