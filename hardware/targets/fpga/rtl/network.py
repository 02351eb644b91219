"""The network as the RTL design runs it, read from the FPGA tables' manifest and ``.mem`` files
alone (widths, rules, shapes, strides, codes, thresholds, weights, biases), as a hardware
designer would read them: :func:`chain_from_tables` gives a :class:`Chain` (a chain, or any
graph: nodes fed by several edges, edges that skip nodes, event-frame input) and refuses what the
RTL does not run with :class:`RtlUnsupported`. :mod:`hardware.targets.fpga.rtl.chain` writes its Verilog.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from hardware.graph import INPUT, BundleError
from hardware.targets.fpga.rtl import weight_memory
from hardware.targets.fpga.tables import Tables

DEFAULT_MAX_LANES = 32
#: how a phase runs its layers (:class:`Chain`): all at once, or one after another (the SPRAM
#: build, whose one weight RAM port the layers share)
PIPELINED, SERIAL = "pipelined", "serial"
SCHEDULES = (PIPELINED, SERIAL)


class RtlUnsupported(BundleError):
    """A network or profile the RTL design does not run (the message says why)."""


@dataclass(frozen=True)
class Arithmetic:
    """The profile's widths and rules, as the manifest states them."""

    weight_bits: int
    bias_bits: int
    membrane_bits: int
    accumulator_bits: int
    input_bits: int
    decay_multiply: bool
    fraction_bits: int  #: multiply: beta = code / 2^fraction_bits
    half_up: bool  #: multiply: round half up (else floor)
    no_decay_code: int


@dataclass(frozen=True)
class Edge:
    """One synaptic edge into a layer, as its ``lif_edge`` scans it."""

    name: str
    source: str  #: ``input`` or a node's name
    dense: bool
    kernel: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int]
    #: (groups, H, W, lanes, bits per lane) of the source's words, as this edge reads them (a conv
    #: reading a 1-D node reads it in its (C, H, W) view, one neuron per word)
    source_words: tuple[int, int, int, int, int]
    weight: np.ndarray  #: (O, C, KH, KW) or (N, F)
    weight_file: str  #: the export's .mem file of the weights
    base: int  #: the first of its words in each lane's weight memory

    @property
    def xbits(self) -> int:
        return self.source_words[4]

    def weight_rows(self, lanes: int) -> np.ndarray:
        """The weights as (words, lanes) in the lane memories' order (``lif_edge.v`` states it)."""
        g, w = self.weight.shape[0] // lanes, self.weight
        if self.dense:
            return w.reshape(g, lanes, w.shape[1]).transpose(0, 2, 1).reshape(-1, lanes)
        return w.reshape(g, lanes, *w.shape[1:]).transpose(0, 2, 3, 4, 1).reshape(-1, lanes)


@dataclass(frozen=True)
class Layer:
    """One node, the edges into it (summed into its current in this order) and its lanes."""

    name: str
    readout: bool
    shape: tuple[int, ...]  #: (C, H, W) or (N,)
    decay_code: int
    vth: int
    lanes: int  #: output channels per word (divides the channel count)
    bias: np.ndarray  #: (channels,)
    bias_file: str
    edges: tuple[Edge, ...]

    @property
    def channels(self) -> int:
        return self.shape[0]

    @property
    def plane(self) -> int:
        """Neurons per channel (H * W; 1 for a dense node)."""
        return math.prod(self.shape[1:])

    @property
    def words(self) -> int:
        return self.channels // self.lanes * self.plane

    @property
    def neurons(self) -> int:
        return math.prod(self.shape)

    @property
    def dense(self) -> bool:
        return len(self.shape) == 1

    @property
    def xbits(self) -> int:
        """The widest event value of its edges (1: spikes only)."""
        return max(e.xbits for e in self.edges)

    def neuron_index(self) -> np.ndarray:
        """(words, lanes): the neuron each lane of each word holds (conv word (og, pos), lane p:
        neuron (og*lanes + p)*H*W + pos; dense word og, lane p: og*lanes + p)."""
        groups = self.channels // self.lanes
        og, pos, p = np.meshgrid(np.arange(groups), np.arange(self.plane), np.arange(self.lanes), indexing="ij")
        return ((og * self.lanes + p) * self.plane + pos).reshape(self.words, self.lanes)

    def weight_rows(self) -> np.ndarray:
        """Every edge's weights as (words, lanes), one edge after another (each from its ``base``)."""
        return np.concatenate([e.weight_rows(self.lanes) for e in self.edges])

    def bias_rows(self) -> np.ndarray:
        return self.bias.reshape(self.channels // self.lanes, self.lanes)


@dataclass(frozen=True)
class Chain:
    """The network as the RTL runs it: a chain or any graph of the manifest (the name is the
    design's first form); its layers are the nodes in topological order.

    The layers run as a wavefront of T + L - 1 phases per sample (L layers): in phase p, layer k
    runs its step p - k (when 0 <= p - k < T), so the layers of consecutive steps work at the same
    time and a phase costs about the slowest layer's cycles (``schedule`` pipelined), or run one
    after another within the phase (serial: the SPRAM build, whose single weight port they share).

    An edge from layer i into layer k reads, in phase p, i's spikes of step p - k, which layer i
    wrote d = k - i phases earlier, while i keeps writing one newer step a phase. So every edge
    reads its own copy of its source's spikes with d + 1 banks (:meth:`banks`): a chain edge
    ping-pongs between two, a skip edge over s nodes keeps s + 2. Copies rather than one shared
    buffer because the readers of one source run at the same time; banks rather than delaying the
    consumer because a spike bank costs one bit per neuron while the wavefront stays one phase per
    layer. Event-frame input works the same way: the host writes frame p + 1 after phase p, so an
    edge from the input into layer k keeps k + 1 frames (a direct image: one).
    """

    arithmetic: Arithmetic
    timesteps: int
    input_shape: tuple[int, ...]
    per_step: bool  #: event frames (a new input every step) rather than one direct image
    input_max: int
    layers: tuple[Layer, ...]
    #: where the weights live: ROMs in the lanes (``rom``) or the UP5K's SPRAM, loaded at boot
    #: (``spram``; :mod:`hardware.targets.fpga.rtl.weight_memory`)
    weight_memory: str = weight_memory.ROM
    schedule: str = PIPELINED

    @property
    def input_words(self) -> int:
        return math.prod(self.input_shape)

    @property
    def phases(self) -> int:
        """Phases per sample: T + L - 1 (the last layer runs step T - 1 in the last)."""
        return self.timesteps + len(self.layers) - 1

    def index(self, name: str) -> int:
        return next(k for k, layer in enumerate(self.layers) if layer.name == name)

    def banks(self, source: str, reader: int) -> int:
        """Banks of the copy of ``source``'s outputs that layer ``reader`` reads (the class's
        docstring says why): its distance in layers plus one; the input's frames: reader + 1,
        a direct image: 1."""
        if source == INPUT:
            return reader + 1 if self.per_step else 1
        return reader - self.index(source) + 1

    def readers(self, source: str) -> list[tuple[int, int]]:
        """``(layer, edge)`` indices of every edge that reads ``source``, in the order they run."""
        return [(k, j) for k, layer in enumerate(self.layers) for j, e in enumerate(layer.edges) if e.source == source]


def lanes_for(channels: int, max_lanes: int) -> int:
    """The most output channels per word: the largest divisor of ``channels`` up to ``max_lanes``."""
    return max(d for d in range(1, min(channels, max_lanes) + 1) if channels % d == 0)


def _get(doc: dict[str, Any], *keys: str) -> Any:
    value: Any = doc
    for k in keys:
        if not isinstance(value, dict) or k not in value:
            raise BundleError(f"FPGA tables manifest: missing {'.'.join(keys)}")
        value = value[k]
    return value


def arithmetic_from_manifest(profile: dict[str, Any]) -> Arithmetic:
    """The widths and rules of the manifest's profile; refuses rules the RTL does not implement."""
    decay = _get(profile, "decay")
    form = _get(decay, "form")
    if form not in ("multiply", "shift"):
        raise RtlUnsupported(f"the RTL implements the multiply and shift decays, not {form!r}")
    rounding = _get(decay, "rounding")
    if (form == "multiply" and rounding not in ("half-up", "floor")) or (form == "shift" and rounding != "floor"):
        raise RtlUnsupported(f"the RTL has no {rounding!r} rounding for the {form} decay")
    compare = _get(profile, "threshold", "compare")
    if not compare.endswith(">= vth"):
        raise RtlUnsupported(f"the RTL compares v >= vth; this profile says {compare!r}")
    membrane = _get(profile, "membrane")
    limit = (1 << (membrane["bits"] - 1)) - 1
    if (membrane["min"], membrane["max"]) != (-limit, limit) or not membrane["overflow"].startswith("saturate"):
        raise RtlUnsupported("the RTL saturates the membrane symmetrically to +-(2^(bits-1) - 1)")
    return Arithmetic(
        weight_bits=int(_get(profile, "weight", "bits")), bias_bits=int(_get(profile, "bias", "bits")),
        membrane_bits=int(membrane["bits"]), accumulator_bits=int(_get(profile, "accumulator", "bits")),
        input_bits=int(_get(profile, "input", "bits")), decay_multiply=form == "multiply",
        fraction_bits=int(decay.get("fraction_bits", 0)), half_up=rounding == "half-up",
        no_decay_code=int(_get(decay, "no_decay_code")))


def _node_lanes(nodes: list[dict[str, Any]], edges: list[dict[str, Any]], max_lanes: int) -> dict[str, int]:
    """Each node's lanes: the most up to ``max_lanes`` that divide its channels, and 1 for a 1-D
    node that a conv edge reads in a (C, H, W) view (its words are then that view's neurons)."""
    viewed = {e["source"] for e in edges if e["kind"] == "conv"}
    return {n["name"]: 1 if len(n["shape"]) == 1 and n["name"] in viewed else lanes_for(int(n["shape"][0]), max_lanes)
            for n in nodes}


def _source_words(e: dict[str, Any], shape: tuple[int, ...], lanes: int, bits: int) -> tuple[int, int, int, int, int]:
    """How edge ``e`` reads its source (of ``shape``, ``lanes`` per word, ``bits`` per value):
    (groups, H, W, lanes, bits)."""
    if e["kind"] == "conv":
        view = tuple(int(n) for n in e["input_shape"])
        if len(view) != 3 or math.prod(view) != math.prod(shape) or (len(shape) == 3 and view != shape):
            raise RtlUnsupported(f"edge {e['name']}: a conv reads a (C, H, W) source laid out as its input; "
                                 f"{e['source']} is {shape}, the edge reads {view}")
        if len(shape) == 1:
            return (view[0], view[1], view[2], 1, bits)  # lanes is 1 (_node_lanes): a word per neuron
        return (view[0] // lanes, view[1], view[2], lanes, bits)
    if len(shape) == 3:
        return (shape[0] // lanes, shape[1], shape[2], lanes, bits)
    return (shape[0] // lanes, 1, 1, lanes, bits)


def _edge(e: dict[str, Any], source_words: tuple[int, int, int, int, int], tables: Tables, base: int) -> Edge:
    return Edge(name=e["name"], source=e["source"], dense=e["kind"] == "dense",
                kernel=tuple(e.get("kernel", (1, 1))), stride=tuple(e.get("stride", (1, 1))),
                padding=tuple(e.get("padding", (0, 0))), source_words=source_words,
                weight=np.asarray(tables.weights[e["name"]], np.int64), weight_file=e["weight"]["file"], base=base)


def chain_from_tables(tables: Tables, max_lanes: int = DEFAULT_MAX_LANES, weights: str = weight_memory.ROM,
                      schedule: str | None = None) -> Chain:
    """The network the manifest describes (a chain or any graph: nodes fed by several edges,
    edges that skip nodes, event-frame input); :class:`RtlUnsupported` for what the RTL cannot run.
    ``weights``: ``rom`` or ``spram`` (:mod:`hardware.targets.fpga.rtl.weight_memory`);
    ``schedule``: ``pipelined`` or ``serial`` (:class:`Chain`; None: pipelined for ROMs, serial
    for the SPRAM, whose one port the layers cannot share at once)."""
    if max_lanes < 1:
        raise ValueError(f"max_lanes must be at least 1, got {max_lanes}")
    if weights not in weight_memory.WEIGHT_MEMORIES:
        raise ValueError(f"weights must be one of {', '.join(weight_memory.WEIGHT_MEMORIES)}, got {weights!r}")
    schedule = schedule or (SERIAL if weights == weight_memory.SPRAM else PIPELINED)
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule must be one of {', '.join(SCHEDULES)}, got {schedule!r}")
    if schedule == PIPELINED and weights == weight_memory.SPRAM:
        raise RtlUnsupported("the SPRAM build runs its layers one after another (serial): they share one weight "
                             "RAM port")
    m = tables.manifest
    arithmetic = arithmetic_from_manifest(_get(m, "profile"))
    spec = _get(m, "input")
    input_shape = tuple(int(n) for n in spec["shape"])
    per_step = spec["encoding"] == "event-frames"
    nodes, edges = _get(m, "nodes"), _get(m, "edges")
    if not nodes or not nodes[-1]["readout"]:
        raise BundleError("FPGA tables manifest: the last node must be the readout")
    lanes = _node_lanes(nodes, edges, max_lanes)
    shapes = {INPUT: input_shape, **{n["name"]: tuple(int(d) for d in n["shape"]) for n in nodes}}
    layers: list[Layer] = []
    for node in nodes:
        name, shape = node["name"], shapes[node["name"]]
        incoming = [e for e in edges if e["target"] == name]
        if not incoming or any(e["source"] not in shapes or e["source"] == name for e in incoming):
            raise BundleError(f"FPGA tables manifest: node {name} is fed by {[e['source'] for e in incoming]}")
        if any(e["kind"] == "dense" for e in incoming) and len(shape) != 1:
            raise RtlUnsupported(f"node {name}: a dense edge's node must be (N,), got {shape}")
        ours, base = [], 0
        for e in incoming:
            src = e["source"]
            words = _source_words(e, shapes[src], 1 if src == INPUT else lanes[src],
                                  arithmetic.input_bits if src == INPUT else 1)
            ours.append(_edge(e, words, tables, base))
            base += len(ours[-1].weight_rows(lanes[name]))
        layers.append(Layer(
            name=name, readout=bool(node["readout"]), shape=shape, decay_code=int(node["decay_code"]),
            vth=int(node["vth"]), lanes=lanes[name], bias=np.asarray(tables.biases[name], np.int64),
            bias_file=node["bias"]["file"], edges=tuple(ours)))
    done = {INPUT}
    for layer in layers:  # topological: every source computed earlier in the step
        late = [e.source for e in layer.edges if e.source not in done]
        if late:
            raise BundleError(f"FPGA tables manifest: node {layer.name} reads {late[0]}, which comes after it")
        done.add(layer.name)
    chain = Chain(arithmetic=arithmetic, timesteps=int(_get(m, "timesteps")), input_shape=input_shape,
                  per_step=per_step, input_max=int(spec["max"]), layers=tuple(layers), weight_memory=weights,
                  schedule=schedule)
    if weights == weight_memory.SPRAM:
        weight_memory.plan(chain)  # refuses weights that do not fit
    return chain
