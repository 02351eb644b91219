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
from hardware.graph import INPUT, Graph, IntegerEdge, per_neuron
from hardware.profile import LOIHI2, Profile


def _synaptic(edge: IntegerEdge, s: torch.Tensor, profile: Profile) -> torch.Tensor:
    g = edge.geometry
    w = torch.as_tensor(edge.weight, dtype=torch.float64)
    x = s.to(torch.float64)
    if g.kind == "conv":
        a = torch.nn.functional.conv2d(x.reshape(-1, *g.input_shape), w, stride=g.stride, padding=g.padding)
        return profile.synapse(torch.round(a).to(torch.int64).flatten(1))
    a = torch.round(x.flatten(1) @ w.T).to(torch.int64)
    exp = int(edge.weight_exp)
    return a << exp if exp > 0 else a >> -exp


@torch.no_grad()
def run_fake_quant(graph: Graph, inputs: torch.Tensor, timesteps: int, profile: Profile = LOIHI2
                   ) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Encoded ``inputs`` ((B, C, H, W) direct, (B, T, C, H, W) event frames) -> spikes
    {hidden node: (B, T, neurons) bool} and readout membranes (B, T, classes) int64."""
    inputs = torch.as_tensor(inputs)
    per_step = graph.input.per_step
    b = inputs.shape[0]
    state = {n.name: [torch.zeros(b, n.neurons, dtype=torch.int64)] * 2 for n in graph.nodes}
    spikes: dict[str, list[torch.Tensor]] = {n.name: [] for n in graph.hidden}
    readout = []
    biases = {n.name: torch.as_tensor(fp.effective_bias(per_neuron(n.shape, n.bias_mant), n.bias_exp))
              for n in graph.nodes}
    incoming = {n.name: graph.incoming(n.name) for n in graph.nodes}
    for t in range(timesteps):
        out = {INPUT: (inputs[:, t] if per_step else inputs).to(torch.int64).reshape(b, -1)}
        for node in graph.nodes:
            a = sum(_synaptic(e, out[e.source], profile) for e in incoming[node.name])
            u, v = state[node.name]
            fired, u, v, _ = profile.lif_step(a, u, v, node.du, node.dv, biases[node.name], node.vth)
            state[node.name] = [u, v]
            if node.readout:
                readout.append(v)
            else:
                spikes[node.name].append(fired)
                out[node.name] = fired.to(torch.int64)
    return {k: torch.stack(v, dim=1) for k, v in spikes.items()}, torch.stack(readout, dim=1)
