"""The manifest's worked example: a stated input fed through the exported network by the integer
reference, and two neurons' updates spelled out in numbers a designer recomputes from the tables.

The input is a rule, not a sample of a data set (``hardware/`` reads no data), with values that
differ from pixel to pixel so that a layout error (H and W swapped, a kernel flipped) changes
the numbers::

    direct:        x[i] = i mod (input_max + 1)       the same image every step
    event-frames:  x[t, i] = (i + t) mod 2            one 0/1 frame per step t

with ``i`` the input's C,H,W row-major index. :func:`worked_example` runs it through
:func:`hardware.reference.run` for the network's ``T`` steps and records:

* for a neuron of the first node and one of the second, the updates of steps 0 and 1: every
  tap whose source value is nonzero (taps on padding are not taps), with the source value, the
  weight and its ``.mem`` address, then the accumulator, the decayed membrane, the bias, the
  saturated membrane, the threshold compare and the spike and reset;
* every hidden node's spike count per step and the readout's membranes after every step, and
  the class (argmax, the lowest index on a tie).

The neurons are chosen by a rule, so the example shows as much of the update as the network
allows: of the first node, the lowest-index neuron that does not spike at step 0 and spikes at
step 1, else one that keeps a nonzero membrane into step 1 (whose decay is then visible), else
one with a nonzero accumulator, preferring in each case one with 1 to :data:`TAP_LIMIT` taps over
the two steps (a list short enough to check by hand); of the second node, the neuron of the best
of these categories with the fewest taps (at least one) over the two steps, the lowest index on
a tie.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from hardware.graph import INPUT, Graph, IntegerEdge
from hardware.profile import Profile
from hardware.reference import IntegerRun, conv2d_int, dense_int, run, synaptic_input

TAP_LIMIT = 32  #: the first node's neuron is chosen among those with at most this many taps over both steps
STEPS = 2  #: the example spells out steps 0 and 1 (or only 0 when T = 1)


def example_input(graph: Graph, timesteps: int) -> np.ndarray:
    """The stated input as one sample: ``(1, C, H, W)`` direct, ``(1, T, C, H, W)`` event frames."""
    spec = graph.input
    index = np.arange(spec.neurons, dtype=np.int64)
    if spec.per_step:
        return np.stack([(index + t) % 2 for t in range(timesteps)]).reshape(1, timesteps, *spec.shape)
    return (index % (spec.input_max + 1)).reshape(1, *spec.shape)


def input_rule(graph: Graph) -> str:
    if graph.input.per_step:
        return "event-frames: x[t, i] = (i + t) mod 2 at step t, i the input's C,H,W row-major index"
    return (f"direct: x[i] = i mod {graph.input.input_max + 1} (i mod (input_max + 1)), i the input's C,H,W "
            f"row-major index; the same image every step")


def _source_values(graph: Graph, result: IntegerRun, x: np.ndarray, t: int) -> dict[str, np.ndarray]:
    """What every source holds at step ``t`` (flat, one sample): the input, every hidden node's spikes."""
    frame = x[0, t] if graph.input.per_step else x[0]
    out = {INPUT: frame.reshape(-1).astype(np.int64)}
    out.update({n.name: result.spikes[n.name][0, t].astype(np.int64) for n in graph.hidden})
    return out


def _acc(graph: Graph, node, values: dict[str, np.ndarray], profile: Profile) -> np.ndarray:
    """Every neuron's accumulator of ``node`` (flat) for these source values."""
    return sum(synaptic_input(e, values[e.source][None], profile)[0][0] for e in graph.incoming(node.name))


def _tap_counts(graph: Graph, node, values: dict[str, np.ndarray]) -> np.ndarray:
    """How many in-range taps with a nonzero source value each neuron of ``node`` has."""
    total = np.zeros(node.neurons, np.int64)
    for e in graph.incoming(node.name):
        g, events = e.geometry, (values[e.source] != 0).astype(np.int64)[None]
        ones = np.ones_like(e.weight)
        if g.kind == "conv":
            total += conv2d_int(events.reshape(1, *g.input_shape), ones, g.stride, g.padding).reshape(-1)
        else:
            total += dense_int(events, ones)[0]
    return total


def _candidates(graph: Graph, node, profile: Profile, steps: list[dict[str, np.ndarray]]) -> list[tuple]:
    """Per neuron of ``node``: ``(category, taps over the steps, index)``, category 0 (no spike at
    step 0, a spike at step 1) to 3 (nothing happens), for the choice in the module doc."""
    v = np.zeros(node.neurons, np.int64)
    bias = np.repeat(np.asarray(node.bias_mant, np.int64), node.neurons // node.shape[0])
    fired, kept, active = [], None, np.zeros(node.neurons, bool)
    for t, values in enumerate(steps):
        a = _acc(graph, node, values, profile)
        active |= a != 0
        spikes, _, v, _ = profile.lif_step(a, 0, v, 0, node.dv, bias, node.vth)
        fired.append(np.asarray(spikes, bool))
        if t == 0:
            kept = ~fired[0] & (v != 0)
    second = fired[1] if len(fired) > 1 else np.zeros(node.neurons, bool)
    category = np.where(~fired[0] & second, 0, np.where(kept, 1, np.where(active, 2, 3)))
    taps = sum(_tap_counts(graph, node, values) for values in steps)
    return [(int(c), int(k), n) for n, (c, k) in enumerate(zip(category, taps, strict=True))]


def _position(shape: tuple[int, ...], n: int) -> list[int]:
    return [int(i) for i in np.unravel_index(n, shape)]


def _taps(edge: IntegerEdge, values: np.ndarray, n: int) -> list[dict[str, Any]]:
    """The in-range taps of neuron ``n`` (flat, in the edge's output) whose source value is nonzero."""
    g, w = edge.geometry, edge.weight
    taps = []
    if g.kind == "dense":
        for f in np.flatnonzero(values):
            taps.append({"x_at": [int(f)], "x_index": int(f), "x": int(values[f]), "w_at": [n, int(f)],
                         "w_address": n * w.shape[1] + int(f), "w": int(w[n, f])})
        return taps
    o, y, x = _position(g.output_shape, n)
    c_in, h_in, w_in = g.input_shape
    kh, kw = w.shape[2:]
    for c in range(c_in):
        for i in range(kh):
            for j in range(kw):
                h, col = y * g.stride[0] + i - g.padding[0], x * g.stride[1] + j - g.padding[1]
                if not (0 <= h < h_in and 0 <= col < w_in):
                    continue  # padding
                index = (c * h_in + h) * w_in + col
                if values[index]:
                    taps.append({"x_at": [c, h, col], "x_index": index, "x": int(values[index]),
                                 "w_at": [o, c, i, j], "w_address": ((o * c_in + c) * kh + i) * kw + j,
                                 "w": int(w[o, c, i, j])})
    return taps


def _neuron(graph: Graph, node, n: int, profile: Profile, steps: list[dict[str, np.ndarray]]) -> dict[str, Any]:
    """Neuron ``n`` of ``node`` through the example's steps, each number from the one before."""
    channel = n // (node.neurons // node.shape[0])
    bias, lim, v = int(node.bias_mant[channel]), profile.state_limit, 0
    entry: dict[str, Any] = {"node": node.name, "neuron": n, "position": _position(node.shape, n),
                             "channel": channel, "decay_code": int(node.dv), "vth": int(node.vth), "bias": bias,
                             "steps": []}
    for t, values in enumerate(steps):
        edges = []
        for e in graph.incoming(node.name):
            taps = _taps(e, values[e.source], n)
            edges.append({"edge": e.name, "source": e.source, "taps": taps,
                          "sum": sum(tap["x"] * tap["w"] for tap in taps)})
        acc = sum(e["sum"] for e in edges)
        d = int(profile.decay(np.array([v]), node.dv)[0])
        v_raw = d + acc + bias
        v_sat = min(max(v_raw, -lim), lim)
        spike = bool(profile.fires(np.array([v_sat]), node.vth)[0])
        after = 0 if spike else v_sat
        entry["steps"].append({"t": t, "v_before": v, "edges": edges, "acc": acc, "d": d, "v_raw": v_raw,
                               "v_sat": v_sat, "spike": spike, "v_after": after})
        v = after
    return entry


def worked_example(graph: Graph, profile: Profile, timesteps: int) -> dict[str, Any]:
    """The manifest's ``worked_example`` for the integer ``graph`` (module doc)."""
    x = example_input(graph, timesteps)
    result = run(graph, x, timesteps, profile)
    steps = [_source_values(graph, result, x, t) for t in range(min(STEPS, timesteps))]
    first = graph.nodes[0]
    _, _, n_first = min((c, k == 0 or k > TAP_LIMIT, n) for c, k, n in _candidates(graph, first, profile, steps))
    neurons = [_neuron(graph, first, n_first, profile, steps)]
    if len(graph.nodes) > 1:
        second = graph.nodes[1]
        _, _, _, n = min((c, k == 0, k, n) for c, k, n in _candidates(graph, second, profile, steps))
        neurons.append(_neuron(graph, second, n, profile, steps))
    readout = result.readout[0]
    return {
        "input": input_rule(graph),
        "neuron_fields": "per step t: v_before (the membrane after step t-1; 0 at t = 0), per incoming edge every tap "
                  "whose source value x is nonzero (x_at: the source position, x_index its row-major index; "
                  "w_at: the weight's indices, w_address its word in <edge>.weight.mem, on line w_address + 2), "
                  "sum = sum of x*w, acc = sum over edges, d = decay(v_before, decay_code), "
                  f"v_raw = d + acc + bias, v_sat = clamp(v_raw), spike = v_sat {profile.threshold} vth, "
                  "v_after = spike ? 0 : v_sat",
        "neurons": neurons,
        "spike_counts": {n.name: [int(c) for c in result.spikes[n.name][0].sum(axis=1)] for n in graph.hidden},
        "readout": [[int(v) for v in row] for row in readout],
        "readout_meaning": "the readout's membranes after each step t = 0 .. T-1; class = argmax of the last",
        "class": int(np.argmax(readout[-1])),
    }
