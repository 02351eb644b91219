"""Torch evaluation of a bundle's integer network: integer weights, integer state, Loihi rounding.

The synapses are computed independently of ``hardware.reference`` (torch float64 convolutions and
matmuls, exact while every partial sum is an integer below 2^53: :func:`synaptic` checks the
edge's worst case for the values at hand and refuses beyond it); the neuron is the profile's one integer step
(:meth:`hardware.profile.Profile.lif_step`), run on int64 tensors. The tests compare the two
paths with ``==``; Lava is the independent oracle for the step itself. Quantization-aware
fine-tuning (:mod:`export.finetune`) is this path made differentiable, sharing its synapse sums
(:func:`weighted_sum`).

The network runs node by node, each node over all ``T`` steps (:func:`run_node`): the graph's
edges all go forward and every node reads its sources' values of the same step, so this order
computes exactly what the step-by-step schedule of :mod:`hardware.graph` computes, and it lets a
caller run one node on inputs of its choosing (``simulate --explain`` feeds a node the float
network's spikes, :mod:`lsg_deploy.explain`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch

from hardware import fixed_point as fp
from hardware.graph import INPUT, Geometry, Graph, IntegerEdge, IntegerNode, per_neuron
from hardware.profile import Profile
from hardware.reference import FLOAT64_EXACT


def weighted_sum(geometry: Geometry, weight: torch.Tensor, x: torch.Tensor, profile: Profile
                 ) -> torch.Tensor:
    """``W x`` (N, neurons) float64 for integer weights and source values held in float64 (exact
    below 2^53), a conv's sums brought to the profile's synapse width. Differentiable where
    ``weight`` or ``x`` carry gradients: the width's wrap passes the gradient straight through
    (fine-tuning, :mod:`export.finetune`)."""
    if geometry.kind == "conv":
        a = torch.nn.functional.conv2d(x.reshape(-1, *geometry.input_shape), weight, stride=geometry.stride,
                                       padding=geometry.padding).flatten(1)
        wrapped = profile.synapse(torch.round(a.detach()).to(torch.int64)).to(a.dtype)
        return a + (wrapped - a).detach()
    return x.flatten(1) @ weight.T


def check_float64_exact(edge: IntegerEdge, s: torch.Tensor) -> None:
    """Refuse source values ``s`` for which the edge's float64 sums could be inexact: its worst
    case ``max_o sum_i |W_oi| * max|s|`` must stay below 2^53 (then every partial sum, in any
    order, is an integer float64 holds exactly). Loihi inputs (below 2^23) and weights (``|W| <=
    256``) pass up to a fan-in of 2^22; an FPGA profile's checked accumulator keeps every sum
    below 2^23."""
    bound = int(s.abs().max()) if s.numel() else 0
    rows = np.abs(np.asarray(edge.weight, np.int64)).reshape(len(edge.weight), -1).sum(axis=1)
    worst = int(rows.max(initial=0)) * bound
    if worst >= FLOAT64_EXACT:
        raise ValueError(f"edge {edge.name}: synaptic sums up to {worst} reach 2^53, beyond what float64 "
                         f"holds exactly")


def synaptic(edge: IntegerEdge, s: torch.Tensor, profile: Profile) -> torch.Tensor:
    """One edge's integer activation ``a`` (N, neurons) int64 for source values ``s`` (N, ...):
    conv ``W * s`` brought to the profile's synapse width, dense ``(W s) << weight_exp``; exact
    (:func:`check_float64_exact`)."""
    check_float64_exact(edge, s)
    w = torch.as_tensor(edge.weight, dtype=torch.float64, device=s.device)
    a = torch.round(weighted_sum(edge.geometry, w, s.to(torch.float64), profile)).to(torch.int64)
    exp = int(edge.weight_exp)
    return a << exp if exp > 0 else a >> -exp


@torch.no_grad()
def run_node(node: IntegerNode, edges: Sequence[IntegerEdge], sources: Mapping[str, torch.Tensor],
             profile: Profile) -> tuple[torch.Tensor, torch.Tensor]:
    """One integer node over all steps from zero state. ``edges``: its incoming edges;
    ``sources``: each edge's source values (B, T, neurons) integers (spikes, or the encoded
    input). Returns ``(spikes (B, T, neurons) bool, membranes v after each step (B, T, neurons)
    int64)``; the readout's membranes are its output."""
    any_source = sources[edges[0].source]
    b, t = any_source.shape[:2]
    device = any_source.device
    a = torch.zeros(b * t, node.neurons, dtype=torch.int64, device=device)
    for edge in edges:
        a = a + synaptic(edge, sources[edge.source].reshape(b * t, -1), profile)
    a = a.reshape(b, t, -1)
    bias = torch.as_tensor(fp.effective_bias(per_neuron(node.shape, node.bias_mant), node.bias_exp), device=device)
    u = v = torch.zeros(b, node.neurons, dtype=torch.int64, device=device)
    spikes, membranes = [], []
    for step in range(t):
        fired, u, v, _ = profile.lif_step(a[:, step], u, v, node.du, node.dv, bias, node.vth, readout=node.readout)
        spikes.append(fired)
        membranes.append(v)
    return torch.stack(spikes, dim=1), torch.stack(membranes, dim=1)


def encoded_steps(graph: Graph, inputs: torch.Tensor, timesteps: int) -> torch.Tensor:
    """Encoded inputs ((B, C, H, W) direct, (B, T, C, H, W) event frames) as (B, T, neurons) int64,
    checked as the integer reference checks them (:meth:`hardware.graph.Input.check_encoded`)."""
    inputs = torch.as_tensor(inputs)
    integer = not (inputs.is_floating_point() or inputs.is_complex())
    low, high = (int(inputs.min()), int(inputs.max())) if integer and inputs.numel() else (0, 0)
    graph.input.check_encoded(tuple(inputs.shape), str(inputs.dtype), integer, low, high, timesteps)
    inputs = inputs.to(torch.int64)
    b = inputs.shape[0]
    if graph.input.per_step:
        return inputs.reshape(b, timesteps, -1)
    return inputs.reshape(b, 1, -1).expand(b, timesteps, -1)


@torch.no_grad()
def run_fake_quant(graph: Graph, inputs: torch.Tensor, timesteps: int, profile: Profile
                   ) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Encoded ``inputs`` ((B, C, H, W) direct, (B, T, C, H, W) event frames) -> spikes
    {hidden node: (B, T, neurons) bool} and readout membranes (B, T, classes) int64, on the
    inputs' device (a GPU runs the same integers: ``bench/fake_quant_gpu.py``). The profile's input
    width must hold the graph's ``input_max`` (:meth:`hardware.profile.Profile.check_input`)."""
    profile.check_input(graph.input)
    out = {INPUT: encoded_steps(graph, inputs, timesteps)}
    spikes: dict[str, torch.Tensor] = {}
    for node in graph.nodes:
        fired, v = run_node(node, graph.incoming(node.name), out, profile)
        if node.readout:
            return spikes, v
        spikes[node.name] = fired
        out[node.name] = fired.to(torch.int64)
    raise ValueError("the graph has no readout")  # Graph guarantees one; kept for type checkers
