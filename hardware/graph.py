"""The deployed network as a graph: an input, LIF nodes and synaptic edges (numpy only).

A network is one :class:`Input` (the encoded sensor data), a tuple of nodes in topological order
(LIF neurons, the last one the readout) and a tuple of edges (synapses: a conv or dense geometry,
its weights, a source and a destination). Every edge into a node adds its current to the node's
input current, so a residual block is a node with two incoming edges: the main branch's conv and
the shortcut (an identity shortcut is a 1x1 conv whose weights are the identity). A chain is the
special case with one edge per node, from the node before it.

Two records describe the same graph, with the same names, topology and geometry: ``float``
(tdBN and pooling folded, float64: :class:`FloatNode`, :class:`FloatEdge`) and ``integer`` (the
integer network in a target profile's formats: :class:`IntegerNode`, :class:`IntegerEdge`). Each
record class declares its arrays in ``ARRAYS``; the bundle writer and reader walk the dataclass
fields, so these classes are the one definition of the format.

Semantics (every executor implements exactly this; Lava aligns its synaptic delays to it): at
each step ``t`` the input node holds the step's encoded input, and nodes are updated in order,
each from what its sources hold *in the same step*::

    I_n[t] = sum over edges e into n of  W_e * out_{source(e)}[t]     (+ the node's bias)
    out_n[t] = LIF_n(I_n[t])        (the readout has no spike: its membrane is the output)

Inputs are ``(B, C, H, W)`` for the ``direct`` encoding (the same image every step) and
``(B, T, C, H, W)`` for ``event-frames`` (one frame of spikes per step); :meth:`Input.steps` gives
both as ``(B, T, ...)``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

INPUT = "input"  #: the input node's name, the source of the first edges
KINDS = ("conv", "dense")
DIRECT, EVENT_FRAMES = "direct", "event-frames"
ENCODINGS = (DIRECT, EVENT_FRAMES)


class BundleError(ValueError):
    """A bundle (or graph) that cannot be read or does not hold together."""


def check_finite(values: np.ndarray, where: str) -> None:
    """Refuse NaN and infinities (and non-numeric arrays) with the place named."""
    values = np.asarray(values)
    if not (np.issubdtype(values.dtype, np.number) and not np.issubdtype(values.dtype, np.complexfloating)):
        raise BundleError(f"{where} must be a real numeric array, got dtype {values.dtype}")
    bad = np.count_nonzero(~np.isfinite(values))
    if bad:
        raise BundleError(f"{where} has {bad} non-finite value(s) (NaN or infinity)")


def per_neuron(shape: tuple[int, ...], per_channel: np.ndarray) -> np.ndarray:
    """Expand a per-channel vector to every neuron of ``shape``, in (C, H, W) flattening order."""
    return np.repeat(per_channel, math.prod(shape) // shape[0])


@dataclass(frozen=True)
class Geometry:
    """Synaptic operation of an edge. Shapes are channel-first (C, H, W) or (N,)."""

    kind: str
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise BundleError(f"unknown synapse kind {self.kind!r}; expected one of {KINDS}")
        if self.kind == "conv" and (len(self.input_shape) != 3 or len(self.output_shape) != 3):
            raise BundleError(f"conv shapes must be (C, H, W), got {self.input_shape} -> {self.output_shape}")
        if self.kind == "dense" and len(self.output_shape) != 1:
            raise BundleError(f"a dense synapse's output shape must be (N,), got {self.output_shape}")
        if min(self.input_shape + self.output_shape) < 1:
            raise BundleError(f"shapes must be positive, got {self.input_shape} -> {self.output_shape}")
        if len(self.stride) != 2 or len(self.padding) != 2 or min(self.stride) < 1 or min(self.padding) < 0:
            raise BundleError(f"bad stride {self.stride} or padding {self.padding}")

    def per_neuron(self, per_channel: np.ndarray) -> np.ndarray:
        return per_neuron(self.output_shape, per_channel)

    @property
    def fan_in(self) -> int:
        return math.prod(self.input_shape)

    @property
    def neurons(self) -> int:
        return math.prod(self.output_shape)

    def check_weight(self, weight: np.ndarray, name: str) -> None:
        out_c = self.output_shape[0]
        if self.kind == "dense":
            expected = (self.neurons, self.fan_in)
            ok = weight.shape == expected
        else:
            ok = weight.ndim == 4 and weight.shape[:2] == (out_c, self.input_shape[0])
            expected = f"({out_c}, {self.input_shape[0]}, kh, kw)"
        if not ok:
            raise BundleError(f"edge {name}: weight shape {weight.shape}, expected {expected}")
        if self.kind == "conv":
            size = tuple((n + 2 * p - k) // s + 1 for n, p, k, s in
                         zip(self.input_shape[1:], self.padding, weight.shape[2:], self.stride, strict=True))
            if size != self.output_shape[1:]:
                raise BundleError(f"edge {name}: a {weight.shape[2:]} kernel on {self.input_shape} gives "
                                  f"{size}, not the recorded {self.output_shape[1:]}")


@dataclass(frozen=True)
class Input:
    """The input node: what one step of encoded input is. ``direct``: integer pixels in
    ``[0, input_max]``, the same every step (the float model sees ``pixels / input_max``);
    ``event-frames``: one frame of 0/1 spikes per step (``input_max = 1``)."""

    shape: tuple[int, ...]
    encoding: str
    input_max: int

    def __post_init__(self) -> None:
        if self.encoding not in ENCODINGS:
            raise BundleError(f"unknown input encoding {self.encoding!r}; expected one of {ENCODINGS}")
        if not self.shape or min(self.shape) < 1:
            raise BundleError(f"input shape must be positive, got {self.shape}")
        if self.input_max < 1 or (self.per_step and self.input_max != 1):
            raise BundleError(f"input_max must be >= 1 (1 for event frames), got {self.input_max}")

    @property
    def neurons(self) -> int:
        return math.prod(self.shape)

    @property
    def per_step(self) -> bool:
        """True when every step has its own input (event frames), false for a repeated image."""
        return self.encoding == EVENT_FRAMES

    def check_encoded(self, shape: tuple[int, ...], dtype: str, integer: bool, low: int, high: int,
                      timesteps: int) -> None:
        """Refuse a batch of encoded inputs (numpy or torch: described by its ``shape``, ``dtype``,
        whether that is an integer type, and its smallest and largest value) that is not
        ``(B, C, H, W)`` integers in ``[0, input_max]`` (direct) or ``(B, T, C, H, W)`` 0/1
        frames (event frames): every executor computes exactly only on what this allows."""
        expected = ((timesteps,) if self.per_step else ()) + tuple(self.shape)
        if len(shape) != 1 + len(expected) or tuple(shape[1:]) != expected:
            raise ValueError(f"{self.encoding} inputs must be (B, {', '.join(map(str, expected))}), got {tuple(shape)}")
        if not integer:
            raise ValueError(f"encoded inputs must be integers, got dtype {dtype}")
        if low < 0 or high > self.input_max:
            if self.per_step:
                raise ValueError(f"event-frame inputs must be 0/1 spikes, got values in [{low}, {high}]")
            raise ValueError(f"direct inputs must lie in [0, {self.input_max}] (the input's input_max), "
                             f"got values in [{low}, {high}]")

    def steps(self, inputs: np.ndarray, timesteps: int) -> np.ndarray:
        """Encoded inputs as ``(B, T, ...)`` (a broadcast view for the direct encoding), checked
        by :meth:`check_encoded`."""
        inputs = np.asarray(inputs)
        integer = np.issubdtype(inputs.dtype, np.integer) or inputs.dtype == bool
        low, high = (int(inputs.min()), int(inputs.max())) if integer and inputs.size else (0, 0)
        self.check_encoded(inputs.shape, str(inputs.dtype), integer, low, high, timesteps)
        if self.per_step:
            return inputs
        return np.broadcast_to(inputs[:, None], (inputs.shape[0], timesteps, *self.shape))


# --- the two records -----------------------------------------------------------------------------

@dataclass(frozen=True)
class FloatEdge:
    """Folded float synapse: adds ``W x`` (conv or dense) from ``source`` to ``target``'s current."""

    ARRAYS = ("weight",)
    name: str
    source: str
    target: str
    geometry: Geometry
    weight: np.ndarray

    def __post_init__(self) -> None:
        self.geometry.check_weight(self.weight, self.name)
        check_finite(self.weight, f"edge {self.name}: weight")


class _Node:
    """What both node records share: a shape, and one bias value per output channel."""

    name: str
    shape: tuple[int, ...]

    @property
    def neurons(self) -> int:
        return math.prod(self.shape)

    def _check_bias(self, bias: np.ndarray, what: str) -> None:
        if bias.shape != (self.shape[0],):
            raise BundleError(f"node {self.name}: {what} shape {bias.shape}, expected ({self.shape[0]},)")


@dataclass(frozen=True)
class FloatNode(_Node):
    """Folded float LIF: ``u = beta u (1 - o) + I + bias``, ``o = u >= v_th``. The ``readout``
    has no neuron: its current, averaged over time, is the logit vector."""

    ARRAYS = ("bias",)
    name: str
    shape: tuple[int, ...]
    bias: np.ndarray  #: per output channel
    beta: float
    v_th: float
    readout: bool = False

    def __post_init__(self) -> None:
        n = self.name
        self._check_bias(self.bias, "bias")
        check_finite(self.bias, f"node {n}: bias")
        if not (math.isfinite(self.beta) and 0.0 <= self.beta <= 1.0):
            raise BundleError(f"node {n}: beta {self.beta} outside [0, 1]")
        if not (math.isfinite(self.v_th) and self.v_th > 0):
            raise BundleError(f"node {n}: v_th must be positive and finite, got {self.v_th}")


@dataclass(frozen=True)
class IntegerEdge:
    """Integer synapse: dense ``a = (W s) << weight_exp`` (``>>`` for a negative exponent); conv
    ``a = W * s`` brought to the profile's synapse width (Loihi: ``wrap24``; a conv has no weight
    exponent). ``input_scale``: what one unit of the source means (the pixel scale for the input,
    1 for spikes). The ranges of the integers are the profile's (:meth:`hardware.profile.Profile.check`).
    """

    ARRAYS = ("weight",)
    name: str
    source: str
    target: str
    geometry: Geometry
    weight: np.ndarray
    weight_exp: int
    input_scale: float

    def __post_init__(self) -> None:
        n = self.name
        self.geometry.check_weight(self.weight, n)
        if not np.issubdtype(self.weight.dtype, np.integer):
            raise BundleError(f"edge {n}: integer weights must have an integer dtype")
        if self.geometry.kind == "conv" and self.weight_exp != 0:
            raise BundleError(f"edge {n}: conv synapses have no weight exponent (got {self.weight_exp})")
        if not (math.isfinite(self.input_scale) and self.input_scale > 0):
            raise BundleError(f"edge {n}: input_scale must be positive and finite, got {self.input_scale}")

    def worst_sums(self, input_bound: int) -> np.ndarray:
        """Largest ``|W s|`` per output channel (conv) or neuron (dense) for inputs ``|s| <= input_bound``."""
        w = np.abs(self.weight.astype(np.int64)).reshape(self.weight.shape[0], -1)
        return w.sum(axis=1) * int(input_bound)

    def activation_bounds(self, input_bound: int, wrap_bits: int | None = None) -> np.ndarray:
        """Largest ``|a|`` this edge adds to its target, per output channel or neuron: after a
        conv's wrap to ``wrap_bits`` (Loihi's 24; None: no wrap) or the ``weight_exp`` shift
        (dense; shifting ``-|x|`` right rounds its magnitude up)."""
        worst = self.worst_sums(input_bound)
        if self.geometry.kind == "conv":
            return worst if wrap_bits is None else np.minimum(worst, 1 << (wrap_bits - 1))
        exp = int(self.weight_exp)
        return worst << exp if exp >= 0 else -((-worst) >> -exp)


@dataclass(frozen=True)
class IntegerNode(_Node):
    """Integer LIF in a profile's formats (:class:`hardware.profile.Profile`): decay codes ``du``
    (current, Loihi only) and ``dv`` (membrane), bias ``bias_mant << bias_exp`` and threshold
    ``vth``. ``scale`` is the node's membrane scale S (integer membrane = 2^act_shift S u_float).
    The ``readout`` never decays and has the largest threshold: its membrane after T steps is
    the summed logit."""

    ARRAYS = ("bias_mant",)
    name: str
    shape: tuple[int, ...]
    bias_mant: np.ndarray  #: per output channel
    bias_exp: int
    du: int
    dv: int
    vth: int
    scale: float
    readout: bool = False

    def __post_init__(self) -> None:
        n = self.name
        self._check_bias(self.bias_mant, "bias_mant")
        if not np.issubdtype(self.bias_mant.dtype, np.integer):
            raise BundleError(f"node {n}: bias_mant must have an integer dtype")
        if not (math.isfinite(self.scale) and self.scale > 0):
            raise BundleError(f"node {n}: scale must be positive and finite, got {self.scale}")


NODE_TYPES = {"float": FloatNode, "integer": IntegerNode}
EDGE_TYPES = {"float": FloatEdge, "integer": IntegerEdge}


# --- the graph -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Graph:
    """An input, nodes in topological order (the readout last) and the edges between them.

    Construction checks that it holds together: unique names; every edge from the input or an
    earlier node into a later one (so the order is topological and there are no cycles); every
    node fed by at least one edge and feeding at least one (the readout excepted); each edge's
    geometry matching its source's and its target's shapes.
    """

    input: Input
    nodes: tuple[Any, ...]
    edges: tuple[Any, ...]

    def __post_init__(self) -> None:
        names = [n.name for n in self.nodes]
        if not names:
            raise BundleError("a graph needs at least the readout node")
        if len(set(names)) != len(names) or INPUT in names:
            raise BundleError(f"node names must be unique and not {INPUT!r}: {names}")
        edge_names = [e.name for e in self.edges]
        if len(set(edge_names)) != len(edge_names):
            raise BundleError(f"edge names repeat: {edge_names}")
        if not self.nodes[-1].readout or any(n.readout for n in self.nodes[:-1]):
            raise BundleError("the last node, and only the last, must be the readout")
        position = {INPUT: -1, **{name: i for i, name in enumerate(names)}}
        fed, feeding = set(), set()
        for e in self.edges:
            if e.target not in position or e.target == INPUT:
                raise BundleError(f"edge {e.name}: target {e.target!r} is not a node")
            if e.source not in position:
                raise BundleError(f"edge {e.name}: source {e.source!r} is not a node")
            if position[e.source] >= position[e.target]:
                raise BundleError(f"edge {e.name}: {e.source} -> {e.target} goes backwards; nodes must be in "
                                  f"topological order and the graph acyclic")
            g, src = e.geometry, self.shape(e.source)
            reshaped = g.fan_in == math.prod(src) and (g.kind == "dense" or len(src) == 1)
            if g.input_shape != src and not reshaped:
                raise BundleError(f"edge {e.name}: input shape {g.input_shape} does not fit {e.source}'s {src}")
            if g.output_shape != self.node(e.target).shape:
                raise BundleError(f"edge {e.name}: output shape {g.output_shape} is not {e.target}'s "
                                  f"{self.node(e.target).shape}")
            fed.add(e.target)
            feeding.add(e.source)
        for n in self.nodes:
            if n.name not in fed:
                raise BundleError(f"node {n.name} has no incoming edge")
            if not n.readout and n.name not in feeding:
                raise BundleError(f"node {n.name} feeds nothing")
        if INPUT not in feeding:
            raise BundleError("no edge reads the input")

    @cached_property
    def _by_name(self) -> dict[str, Any]:
        return {n.name: n for n in self.nodes}

    def node(self, name: str) -> Any:
        return self._by_name[name]

    def shape(self, name: str) -> tuple[int, ...]:
        return tuple(self.input.shape) if name == INPUT else tuple(self.node(name).shape)

    def neurons(self, name: str) -> int:
        return math.prod(self.shape(name))

    @property
    def readout(self) -> Any:
        return self.nodes[-1]

    @property
    def hidden(self) -> tuple[Any, ...]:
        return self.nodes[:-1]

    def incoming(self, name: str) -> tuple[Any, ...]:
        return tuple(e for e in self.edges if e.target == name)

    def outgoing(self, name: str) -> tuple[Any, ...]:
        return tuple(e for e in self.edges if e.source == name)

    def depths(self) -> dict[str, int]:
        """Longest path from the input, in edges: the input is 0, a node one more than its
        deepest source. Lava delays each edge by one step, so a node at depth d sees input step
        t at Lava step t + d + 1 when every shorter path into it is padded to its depth."""
        depth = {INPUT: 0}
        for n in self.nodes:
            depth[n.name] = 1 + max(depth[e.source] for e in self.incoming(n.name))
        return depth

    @property
    def is_chain(self) -> bool:
        """One edge per node, from the node before it (the input for the first)."""
        order = [INPUT, *(n.name for n in self.nodes)]
        return len(self.edges) == len(self.nodes) and all(
            len(self.incoming(name)) == 1 and self.incoming(name)[0].source == order[i]
            for i, name in enumerate(order[1:]))

    def chain(self) -> Iterator[tuple[Any, Any]]:
        """``(edge, node)`` pairs in order, for a chain (:attr:`is_chain`)."""
        if not self.is_chain:
            raise BundleError("this graph is not a chain (a node has several inputs, or an edge skips)")
        for n in self.nodes:
            yield self.incoming(n.name)[0], n


def activation_bound(graph: Graph, node: str, input_bound: int, wrap_bits: int | None = None) -> int:
    """Largest ``|a|`` a node of an integer graph can receive: the per-channel sum over its
    incoming edges of :meth:`IntegerEdge.activation_bounds` (``input_bound`` for edges from the
    input, 1 for spikes; convs wrapped to ``wrap_bits``, if given)."""
    total = sum(e.activation_bounds(input_bound if e.source == INPUT else 1, wrap_bits)
                for e in graph.incoming(node))
    return int(np.max(total, initial=0))


def same_structure(a: Graph, b: Graph, what: str) -> None:
    """Refuse two records of one network that differ in names, topology, geometry or roles."""
    if a.input != b.input:
        raise BundleError(f"{what}: the records' inputs differ: {a.input} vs {b.input}")
    shape_a = [(n.name, tuple(n.shape), n.readout) for n in a.nodes]
    shape_b = [(n.name, tuple(n.shape), n.readout) for n in b.nodes]
    if shape_a != shape_b:
        raise BundleError(f"{what}: the records' nodes differ: {shape_a} vs {shape_b}")
    edges_a = [(e.name, e.source, e.target, e.geometry) for e in a.edges]
    edges_b = [(e.name, e.source, e.target, e.geometry) for e in b.edges]
    if edges_a != edges_b:
        raise BundleError(f"{what}: the records' edges differ in names, endpoints or geometry")
