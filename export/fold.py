"""Fold a trained network into a graph of synaptic edges and LIF nodes, and run it in float.

Folding turns every block into edges and nodes (``I = sum_e W_e x_e + b`` feeding a LIF):

* tdBN (running statistics) into the weights: ``W' = W * s``, ``b' = o`` with ``tdBN(I) = s I + o``;
* average pooling into the *next* synaptic edges, since both are linear: pooling by ``p`` then a
  conv (kernel K, stride q, padding P) is one conv with kernel ``pK``, stride ``pq``, padding
  ``pP`` and weights ``w[k // p] / p^2``; pooling then flatten then linear is one linear edge;
* a residual block into two nodes: its inner LIF ``<block>.conv1`` and the block's LIF ``<block>``,
  fed by two edges that sum, ``<block>.conv2`` and ``<block>.shortcut``. An identity shortcut
  becomes a 1x1 conv whose weights are the identity matrix, so every edge is a conv or a dense
  synapse and a target quantizes it like any other; a projection shortcut folds like a conv
  block's conv, and its tdBN offset joins the node's bias.

So the folded network has no pooling or normalisation left: each edge maps onto a Lava Conv/Dense
process and each node onto a LIF process. A chain of blocks folds into a chain graph.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from hardware.graph import INPUT, FloatEdge, FloatNode, Geometry, Graph, Input, per_neuron
from training.model import ConvBlock, ConvBN, DenseBlock, Flatten, Pool, Readout, ResidualBlock, SpikingNet
from training.neuron import LIFParams, LIFState, lif_step


class FoldError(ValueError):
    """A network this exporter cannot fold into synaptic edges."""


def _pool_compose(weight: torch.Tensor, p: int) -> torch.Tensor:
    """Weights (O, C, kh, kw) of a conv preceded by ``p x p`` average pooling."""
    return weight.repeat_interleave(p, dim=2).repeat_interleave(p, dim=3) / (p * p)


def _float64(t: torch.Tensor) -> torch.Tensor:
    """A parameter (or a value computed from parameters in their own dtype) as float64, keeping
    its gradient: the folding arithmetic itself is float64."""
    return t.double()


@dataclass(frozen=True)
class FoldedTensors:
    """A folded network as torch values that keep their gradient to the model's parameters:
    what :func:`fold` computes before it detaches them into a :class:`~hardware.graph.Graph`.
    Quantization-aware fine-tuning (:mod:`export.finetune`) runs on these, so the values it
    trains with are, bit for bit, the ones an export of the same model folds."""

    graph: Graph  #: the folded float graph (detached numpy copies)
    weights: dict[str, torch.Tensor]  #: edge name -> float64 weights
    biases: dict[str, torch.Tensor]  #: node name -> float64 bias per channel
    betas: dict[str, torch.Tensor]  #: hidden node name -> its LIF's decay (the model's dtype)


class _Folder:
    """Walks the blocks, keeping the current spiking source and the pooling still to compose."""

    def __init__(self, model: SpikingNet):
        self.source, self.shape = INPUT, tuple(model.input_shape)
        self.pool, self.flat = 1, False
        self.nodes: list[tuple[str, tuple[int, ...], torch.Tensor, torch.Tensor | None, float, bool]] = []
        self.edges: list[tuple[str, str, str, Geometry, torch.Tensor]] = []

    def conv_edge(self, name: str, target: str, unit: ConvBN | None, channels: int | None = None
                  ) -> tuple[tuple[str, str, str, Geometry, torch.Tensor], torch.Tensor]:
        """Edge from the current source through ``unit`` (conv + tdBN), or the identity if
        ``unit`` is None; returns it and its per-channel offset."""
        if unit is None:
            weight = torch.eye(channels, dtype=torch.float64)[:, :, None, None]
            offset = torch.zeros(channels, dtype=torch.float64)
            stride, padding = (1, 1), (0, 0)
        else:
            conv = unit.conv
            if conv.dilation != (1, 1) or conv.groups != 1:
                raise FoldError(f"{name}: dilated or grouped convolutions are not supported")
            scale, offset = (_float64(t) for t in unit.bn.fold_factors())
            weight = _float64(conv.weight) * scale[:, None, None, None]
            if conv.bias is not None:
                offset = offset + scale * _float64(conv.bias)
            stride, padding = conv.stride, conv.padding
        p = self.pool
        weight = _pool_compose(weight, p)
        stride, padding = (stride[0] * p, stride[1] * p), (padding[0] * p, padding[1] * p)
        kh, kw = weight.shape[2:]
        out = (weight.shape[0], (self.shape[1] + 2 * padding[0] - kh) // stride[0] + 1,
               (self.shape[2] + 2 * padding[1] - kw) // stride[1] + 1)
        geometry = Geometry("conv", self.shape, out, stride, padding)
        return (name, self.source, target, geometry, weight), offset

    def lif_node(self, name: str, shape: tuple[int, ...], bias: torch.Tensor, lif) -> None:
        self.nodes.append((name, shape, bias, lif.beta, lif.v_th, False))

    def advance(self, source: str, shape: tuple[int, ...]) -> None:
        self.source, self.shape, self.pool = source, shape, 1

    def block(self, name: str, block) -> None:
        if isinstance(block, Pool):
            h, w = self.shape[1] // self.pool, self.shape[2] // self.pool
            if h % block.kernel or w % block.kernel:
                raise FoldError(f"{name}: pooling {block.kernel} does not divide ({h}, {w}); cannot fold it")
            self.pool *= block.kernel
        elif isinstance(block, Flatten):
            self.flat = True
        elif isinstance(block, ConvBlock):
            edge, offset = self.conv_edge(name, name, block)
            self.edges.append(edge)
            self.lif_node(name, edge[3].output_shape, offset, block.lif)
            self.advance(name, edge[3].output_shape)
        elif isinstance(block, ResidualBlock):
            self.residual(name, block)
        elif isinstance(block, (DenseBlock, Readout)):
            self.dense(name, block)
        else:
            raise FoldError(f"{name}: cannot fold a {type(block).__name__}")

    def residual(self, name: str, block: ResidualBlock) -> None:
        inner = f"{name}.conv1"
        first, inner_offset = self.conv_edge(inner, inner, block.conv1)
        shortcut, short_offset = self.conv_edge(f"{name}.shortcut", name, block.shortcut,
                                                channels=self.shape[0])
        inner_shape = first[3].output_shape
        self.edges.append(first)
        self.lif_node(inner, inner_shape, inner_offset, block.conv1.lif)
        self.advance(inner, inner_shape)
        second, second_offset = self.conv_edge(f"{name}.conv2", name, block.conv2)
        if second[3].output_shape != shortcut[3].output_shape:
            raise FoldError(f"{name}: the shortcut gives {shortcut[3].output_shape}, the main branch "
                            f"{second[3].output_shape}; they cannot be added")
        self.edges += [second, shortcut]
        self.lif_node(name, second[3].output_shape, second_offset + short_offset, block.lif)
        self.advance(name, second[3].output_shape)

    def dense(self, name: str, block: DenseBlock | Readout) -> None:
        if not self.flat:
            raise FoldError(f"{name}: a linear layer must follow a flatten")
        weight = _float64(block.linear.weight)
        out = weight.shape[0]
        if len(self.shape) == 3:  # first linear layer after the conv stack: undo flatten, compose pool
            c, h, w = self.shape
            p = self.pool
            weight = _pool_compose(weight.reshape(out, c, h // p, w // p), p).reshape(out, -1)
        geometry = Geometry("dense", (weight.shape[1],), (out,))
        if isinstance(block, DenseBlock):
            scale, offset = (_float64(t) for t in block.fold_factors())
            self.edges.append((name, self.source, name, geometry, weight * scale[:, None]))
            self.lif_node(name, (out,), offset, block.lif)
        else:
            self.edges.append((name, self.source, name, geometry, weight))
            v_th = self.nodes[-1][4] if self.nodes else 0.5
            self.nodes.append((name, (out,), _float64(block.linear.bias), None, v_th, True))
        self.advance(name, (out,))


def _numpy(t: torch.Tensor) -> np.ndarray:
    return t.detach().numpy().copy()


def fold_tensors(model: SpikingNet, spec: Input) -> FoldedTensors:
    """Fold tdBN, pooling and residual blocks into float64 values that keep their gradient to the
    model's parameters, with the graph they make; the model is not modified. ``spec``: the input
    node (shape, encoding, input_max) the network is deployed with."""
    if tuple(spec.shape) != tuple(model.input_shape):
        raise FoldError(f"the input {tuple(spec.shape)} is not the model's {tuple(model.input_shape)}")
    folder = _Folder(model)
    for name, block in model.blocks.items():
        folder.block(name, block)
    nodes = tuple(FloatNode(name, shape, _numpy(bias), 1.0 if beta is None else beta.item(), v_th, readout=readout)
                  for name, shape, bias, beta, v_th, readout in folder.nodes)
    edges = tuple(FloatEdge(name, source, target, geometry, _numpy(weight))
                  for name, source, target, geometry, weight in folder.edges)
    try:
        graph = Graph(spec, nodes, edges)
    except ValueError as exc:
        raise FoldError(f"the folded network does not form a graph: {exc}") from None
    return FoldedTensors(graph, weights={e[0]: e[4] for e in folder.edges},
                         biases={n[0]: n[2] for n in folder.nodes},
                         betas={n[0]: n[3] for n in folder.nodes if n[3] is not None})


def fold(model: SpikingNet, spec: Input) -> Graph:
    """Fold tdBN, pooling and residual blocks into a float64 graph; the model is not modified.
    ``spec``: the input node (shape, encoding, input_max) the network is deployed with."""
    with torch.no_grad():
        return fold_tensors(model, spec).graph


def synaptic_float(edge: FloatEdge, x: torch.Tensor) -> torch.Tensor:
    """``W x`` for a batch (N, ...) -> (N, neurons)."""
    g = edge.geometry
    w = torch.as_tensor(edge.weight, dtype=x.dtype)
    if g.kind == "conv":
        return torch.nn.functional.conv2d(x.reshape(-1, *g.input_shape), w, stride=g.stride,
                                          padding=g.padding).flatten(1)
    return x.flatten(1) @ w.T


def steps_float(spec: Input, x: torch.Tensor, timesteps: int) -> torch.Tensor:
    """Analog inputs as (T, B, ...): a (B, C, H, W) image repeated, or (B, T, C, H, W) frames."""
    if tuple(x.shape[-len(spec.shape):]) != tuple(spec.shape) or x.dim() not in (len(spec.shape) + 1,
                                                                                  len(spec.shape) + 2):
        raise ValueError(f"inputs must be (B, *{spec.shape}) or (B, T, *{spec.shape}), got {tuple(x.shape)}")
    if x.dim() == len(spec.shape) + 1:
        return x.unsqueeze(0).expand(timesteps, *x.shape)
    if x.shape[1] != timesteps:
        raise ValueError(f"per-step inputs must have {timesteps} steps, got {x.shape[1]}")
    return x.transpose(0, 1)


@torch.no_grad()
def run_float(
    graph: Graph,
    x: torch.Tensor,
    timesteps: int,
    betas: dict[str, float] | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Run a folded graph on analog inputs ((B, C, H, W) repeated, or (B, T, C, H, W) frames);
    returns logits (B, classes) and spikes {node: (T, B, neurons)}. ``betas`` overrides decays
    (e.g. the quantized ones). Nodes run in order over all steps at once, which is the graph's
    same-step semantics since no edge goes backwards."""
    betas = betas or {}
    h = steps_float(graph.input, x, timesteps)
    t, b = h.shape[:2]
    out = {INPUT: h.reshape(t * b, -1)}
    spikes: dict[str, torch.Tensor] = {}
    for node in graph.nodes:
        bias = torch.as_tensor(per_neuron(node.shape, node.bias), dtype=x.dtype)
        current = sum(synaptic_float(e, out[e.source]) for e in graph.incoming(node.name)) + bias
        current = current.reshape(t, b, -1)
        if node.readout:
            return current.mean(0), spikes
        beta = torch.tensor(betas.get(node.name, node.beta), dtype=x.dtype)
        params = LIFParams(beta=beta, v_th=node.v_th, alpha=torch.tensor(1.0, dtype=x.dtype))
        state = LIFState(u=torch.zeros_like(current[0]), o=torch.zeros_like(current[0]))
        steps = []
        for c_t in current:
            o, state = lif_step(c_t, state, params)
            steps.append(o)
        spikes[node.name] = torch.stack(steps)
        out[node.name] = spikes[node.name].reshape(t * b, -1)
    raise ValueError("the graph has no readout")  # Graph guarantees one; kept for type checkers


def readout_bound(graph: Graph, x: torch.Tensor, timesteps: int, batch: int = 512) -> float:
    """Largest ``|sum_t I_t|`` of the readout over calibration inputs (for its integer range)."""
    worst = 0.0
    for i in range(0, len(x), batch):
        logits, _ = run_float(graph, x[i : i + batch], timesteps)
        worst = max(worst, float(logits.abs().max()) * timesteps)
    return worst
