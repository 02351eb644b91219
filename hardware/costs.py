"""Synaptic operations and an energy estimate per inference (numpy only).

An event-driven accelerator does work on an edge only when its source emits an event: each
spike of a source neuron ``j`` updates every target synapse it reaches, one accumulate (AC) per
synapse. So, per inference (all T steps, averaged over the samples)::

    ACs_e  = (1/B) * sum_b sum_t sum_j  s[b, t, j] * fan_out_e[j]        (source: spikes, or event frames)
    MACs_e = T * synapses_e,   synapses_e = sum_j fan_out_e[j]             (source: the analog, direct input)

``fan_out_e[j]`` is the number of target neurons source neuron ``j`` is connected to by edge
``e`` (:func:`fan_out`): ``out_features`` for a dense edge; for a conv, the number of (output
channel, output position) pairs whose receptive field holds ``j``'s position, fewer at the
borders and depending on stride and padding (:func:`axis_fan_out`). Connections to padding are
not synapses: a conv's ``synapses`` is the number of (input, output) pairs it connects, the
padded ``O Ho Wo C kh kw`` count less the products with padded zeros. Fan-out is structural: a
zero weight (an identity shortcut's off-diagonal, say) counts as a synapse, as in the
operation counts of the SNN literature.

A direct-encoded input is an analog value, the same every step: every synapse multiplies it,
every step, whatever its value. Event frames are events: a value ``n`` counts as ``n`` events
(the embedded event frames hold 0 and 1 only).

The energy figures are the ones SNN papers use, from M. Horowitz's table for a 45 nm process at
0.9 V (:data:`ENERGY_SOURCE`): a 32-bit float add costs 0.9 pJ and a multiply 3.7 pJ, so an AC
costs 0.9 pJ and a MAC 0.9 + 3.7 = 4.6 pJ. The estimate counts arithmetic only, on that
general-purpose reference: no memory access, no data movement, no neuron update, no static
power; it is not a measurement of Loihi, of an FPGA, nor of anything else this project targets.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from hardware.graph import EVENT_FRAMES, INPUT, Graph

UINT16_ROWS = (1 << 16) - 1  #: rows of 0/1 values a uint16 count can sum without leaving its range

PJ_PER_FLOAT32_ADD = 0.9  #: Horowitz 2014, 45 nm, 32-bit float add
PJ_PER_FLOAT32_MULT = 3.7  #: Horowitz 2014, 45 nm, 32-bit float multiply
PJ_PER_AC = PJ_PER_FLOAT32_ADD  #: an accumulate: one add
PJ_PER_MAC = round(PJ_PER_FLOAT32_MULT + PJ_PER_FLOAT32_ADD, 6)  #: a multiply-accumulate: 4.6 pJ
ENERGY_SOURCE = ("M. Horowitz, \"Computing's energy problem (and what we can do about it)\", IEEE ISSCC 2014, "
                 "Digest of Technical Papers, pp. 10-14, doi:10.1109/ISSCC.2014.6757323: 45 nm, 0.9 V, 32-bit float "
                 "add 0.9 pJ, multiply 3.7 pJ; so AC = add = 0.9 pJ, MAC = multiply + add = 4.6 pJ")
ESTIMATE_BASIS = ("an operation-count estimate on Horowitz's 45 nm general-purpose reference (arithmetic only: no "
                  "memory access, data movement, neuron update or static power), not a measurement of Loihi or an "
                  "FPGA")
AC, MAC = "ac", "mac"  #: the two kinds of synaptic operation


def axis_fan_out(n_in: int, n_out: int, kernel: int, stride: int, padding: int) -> np.ndarray:
    """Along one spatial axis of a conv: for every input index ``i``, how many output indices
    ``o`` in ``[0, n_out)`` see it, i.e. ``0 <= i + padding - o * stride < kernel``."""
    tap = np.arange(n_in)[:, None] + padding - np.arange(n_out)[None, :] * stride
    return np.count_nonzero((tap >= 0) & (tap < kernel), axis=1).astype(np.int64)


def fan_out(edge: Any) -> np.ndarray:
    """Number of target neurons each source neuron of ``edge`` (a float or integer edge) reaches,
    ``(fan_in,)`` int64 in the source's (C, H, W) flattening order."""
    g = edge.geometry
    if g.kind == "dense":
        return np.full(g.fan_in, g.neurons, np.int64)
    (kh, kw), (_, h, w) = edge.weight.shape[2:], g.input_shape
    rows = axis_fan_out(h, g.output_shape[1], kh, g.stride[0], g.padding[0])
    cols = axis_fan_out(w, g.output_shape[2], kw, g.stride[1], g.padding[1])
    per_position = g.output_shape[0] * np.outer(rows, cols)
    return np.broadcast_to(per_position, (g.input_shape[0], h, w)).reshape(-1).copy()


def synapses(edge: Any) -> int:
    """Connections of ``edge``: its dense MAC count for one step (padding excluded)."""
    return int(fan_out(edge).sum())


@dataclass(frozen=True)
class EdgeOps:
    """One edge's synaptic operations per inference (mean over samples, all steps)."""

    edge: str
    target: str
    kind: str  #: AC (the source sends events) or MAC (the source is the analog input)
    operations: float
    synapses: int  #: the edge's connections (its MAC count for one step)


def synaptic_operations(graph: Graph, spikes: Mapping[str, np.ndarray], inputs: np.ndarray,
                        timesteps: int) -> list[EdgeOps]:
    """Operations per inference of every edge of ``graph`` (see the module docstring).

    ``spikes``: hidden node -> ``(B, T, neurons)`` 0/1 (a float run's or a fixed-point run's);
    ``inputs``: the encoded inputs (:meth:`hardware.graph.Input.steps`: ``(B, C, H, W)`` direct,
    ``(B, T, C, H, W)`` event frames), read only for event frames."""
    if len(inputs) == 0:
        raise ValueError("synaptic operations need at least one sample")
    return operations_from_events(graph, source_events(graph, spikes, inputs, timesteps), len(inputs), timesteps)


def source_events(graph: Graph, spikes: Mapping[str, np.ndarray], inputs: np.ndarray,
                  timesteps: int) -> dict[str, np.ndarray]:
    """Events per source neuron of every edge that counts them, summed over the samples and steps
    (int64, so the sums of a test set's chunks add up to the whole set's exactly): source ->
    ``(neurons,)``. The arguments are :func:`synaptic_operations`'."""
    events: dict[str, np.ndarray] = {}
    for e in graph.edges:
        if e.source in events or (e.source == INPUT and graph.input.encoding != EVENT_FRAMES):
            continue
        if e.source == INPUT:
            steps = graph.input.steps(inputs, timesteps).reshape(len(inputs), timesteps, -1)
            events[e.source] = steps.sum(axis=(0, 1), dtype=np.int64)
        else:
            events[e.source] = spike_counts(np.asarray(spikes[e.source]))
    return events


def spike_counts(spikes: np.ndarray) -> np.ndarray:
    """Per neuron, how many of the (B, T, neurons) 0/1 ``spikes`` are 1, as int64. Bool spikes are
    summed as bytes into uint16 over blocks of at most 65,535 rows, where no count can leave its
    type: the same integers, about 3x faster than numpy's int64 sum (a full-width ResNet-19 over a
    test set counts ~3 MB of spikes a sample, ``simulate --device cuda``'s largest host cost)."""
    rows = spikes.reshape(-1, spikes.shape[-1])
    if rows.dtype != np.bool_:
        return rows.sum(axis=0, dtype=np.int64)
    counts = np.zeros(rows.shape[1], np.int64)
    for lo in range(0, len(rows), UINT16_ROWS):
        counts += np.add.reduce(rows[lo:lo + UINT16_ROWS].view(np.uint8), axis=0, dtype=np.uint16)
    return counts


def operations_from_events(graph: Graph, events: Mapping[str, np.ndarray], samples: int,
                           timesteps: int) -> list[EdgeOps]:
    """:func:`synaptic_operations` from the :func:`source_events` of ``samples`` samples."""
    if samples == 0:
        raise ValueError("synaptic operations need at least one sample")
    out = []
    for e in graph.edges:
        fan, n = fan_out(e), synapses(e)
        if e.source == INPUT and graph.input.encoding != EVENT_FRAMES:
            out.append(EdgeOps(e.name, e.target, MAC, float(n * timesteps), n))
        else:
            out.append(EdgeOps(e.name, e.target, AC, float(events[e.source] @ fan) / samples, n))
    return out


def energy_pj(acs: float, macs: float) -> float:
    """Estimated energy in pJ of ``acs`` accumulates and ``macs`` multiply-accumulates."""
    return acs * PJ_PER_AC + macs * PJ_PER_MAC


def per_node(graph: Graph, ops: list[EdgeOps]) -> dict[str, dict[str, float]]:
    """ACs and MACs summed over each node's incoming edges: node -> {"ac": ..., "mac": ...}."""
    totals = {n.name: {AC: 0.0, MAC: 0.0} for n in graph.nodes}
    for op in ops:
        totals[op.target][op.kind] += op.operations
    return totals
