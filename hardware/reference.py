"""Integer LIF reference for the Loihi profile: numpy only, vectorised over a batch of samples.

It runs a bundle's ``loihi`` graph exactly as Lava's bit-accurate CPU models would, one time
step at a time and every node within the step, in topological order (no synaptic delay: the
Lava backend aligns its per-edge delays to this schedule, see :mod:`hardware.graph`). The neuron
arithmetic is the profile's one integer step (:meth:`hardware.profile.Profile.lif_step`, shared
with the torch fake-quant path); per node and step, for the Loihi profile::

    a_e = (W_e s) << weight_exp      dense edge (a negative weight_exp shifts right, toward -inf)
    a_e = wrap24(W_e * s)            conv edge: Lava's fixed-point Conv ignores weight_exp
    a = sum of a_e over the node's incoming edges
    u = wrap_current(D(u, du + 1) + (a << 6))
    v = clip(D(v, dv) + u + (bias_mant << bias_exp))
    s = v > (vth << 6);  v[s] = 0

Synapse sums are exact: through float64 BLAS where the edge's worst case for the values at hand,
``max_o sum_i |W_oi| * max|s|``, stays below 2^53 (then every partial sum is an integer that
float64 holds exactly, in any order of accumulation), else in int64 arithmetic (checked to stay
below 2^63); node sums are int64. Lava holds them in int32, so ``hardware.targets.loihi.lava.backend`` refuses
networks whose worst case could overflow int32 (``check_lava_limits``). Inputs are checked first:
``[0, input_max]`` (0/1 frames), with ``input_max`` within the profile's input width
(:meth:`hardware.graph.Input.check_encoded`, :meth:`hardware.profile.Profile.check_input`).

Saturation is counted per node, never hidden: conv outputs that wrapped (on any incoming edge),
currents that wrapped and membranes that hit the clip. The readout never fires (a pure
integrator: :meth:`hardware.profile.Profile.lif_step`); its ``v_clip`` counts membranes held at the
limit, where the argmax may tie.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from hardware import fixed_point as fp
from hardware.graph import Graph, IntegerEdge, per_neuron
from hardware.profile import Profile

SATURATION_KINDS = ("a_wrap", "u_wrap", "v_clip")
INT64_EXACT = 1 << 63  #: every integer of magnitude below this is exact in int64


@dataclass
class IntegerRun:
    """Result of a run: spikes per hidden layer, readout membranes, saturation counts."""

    spikes: dict[str, np.ndarray]  #: hidden node -> (B, T, neurons) bool
    readout: np.ndarray  #: (B, T, classes) int64: readout membrane after every step
    saturation: dict[str, dict[str, int]] = field(default_factory=dict)
    #: what a backend measured besides the numbers, e.g. the RTL's ``cycles_per_timestep``
    stats: dict[str, Any] = field(default_factory=dict)

    @property
    def final_readout(self) -> np.ndarray:
        return self.readout[:, -1]

    def predictions(self) -> np.ndarray:
        return self.final_readout.argmax(axis=1)


#: integers of magnitude below ``2^p`` are exact in these formats (``p`` their significand's bits)
EXACT_FLOAT_BITS = {np.float32: 24, np.float64: 53}


def exact_arithmetic(worst: int, floats: tuple[type, ...] = (np.float64,)) -> type:
    """The arithmetic in which integer sums whose every partial sum is at most ``worst`` in
    magnitude are exact: the first of ``floats`` whose significand holds them (an integer sum
    computed in floating point is exact while every partial sum is an integer below ``2^p``,
    whatever the order of accumulation: BLAS's and a GPU's alike), else int64 below 2^63; beyond
    that a ``ValueError``. The reference uses float64 only; its fast path and the fake-quant path
    try float32 first."""
    for dtype in floats:
        if worst < 1 << EXACT_FLOAT_BITS[dtype]:
            return dtype
    if worst < INT64_EXACT:
        return np.int64
    raise ValueError(f"synaptic sums up to {worst} do not fit 64-bit integers")


def exact_sum_dtype(weight: np.ndarray, x: np.ndarray) -> type:
    """The arithmetic in which ``sum_i W_oi x_i`` is exact for these weights (output first) and
    source values (:func:`exact_arithmetic` for the worst case ``max_o sum_i |W_oi| * max|x|``):
    float64 (BLAS) below 2^53, else int64, below 2^63; beyond that a ``ValueError``."""
    bound = int(np.max(np.abs(np.asarray(x, np.int64)), initial=0))
    rows = np.abs(np.asarray(weight, np.int64)).reshape(len(weight), -1).sum(axis=1)
    return exact_arithmetic(int(np.max(rows, initial=0)) * bound)  # a Python int: no overflow here


def conv2d_int(x: np.ndarray, weight: np.ndarray, stride: tuple[int, int], padding: tuple[int, int]) -> np.ndarray:
    """Exact integer 2-D cross-correlation, (B, C, H, W) x (O, C, kh, kw) -> (B, O, Ho, Wo), in
    the arithmetic :func:`exact_sum_dtype` proves exact."""
    dtype = exact_sum_dtype(weight, x)
    ph, pw = padding
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw))).astype(dtype)
    kh, kw = weight.shape[2:]
    win = sliding_window_view(xp, (kh, kw), axis=(2, 3))[:, :, :: stride[0], :: stride[1]]
    out = np.tensordot(win, weight.astype(dtype), axes=([1, 4, 5], [1, 2, 3])).transpose(0, 3, 1, 2)  # (B, O, Ho, Wo)
    return np.rint(out).astype(np.int64) if dtype is np.float64 else out.astype(np.int64)


def dense_int(x: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """Exact integer ``x @ W.T``, (B, F) x (N, F) -> (B, N), in the arithmetic
    :func:`exact_sum_dtype` proves exact."""
    dtype = exact_sum_dtype(weight, x)
    out = x.astype(dtype) @ weight.T.astype(dtype)
    return np.rint(out).astype(np.int64) if dtype is np.float64 else out.astype(np.int64)


def synaptic_input(edge: IntegerEdge, s: np.ndarray, profile: Profile) -> tuple[np.ndarray, int]:
    """Activation ``a`` (B, neurons) of one edge for source values ``s``, and how many wrapped."""
    g = edge.geometry
    b = s.shape[0]
    if g.kind == "conv":
        raw = conv2d_int(s.reshape(b, *g.input_shape), edge.weight, g.stride, g.padding).reshape(b, -1)
        a = profile.synapse(raw)
        return a, int(np.count_nonzero(a != raw))
    acc = dense_int(s.reshape(b, -1), edge.weight)
    exp = int(edge.weight_exp)
    return (np.left_shift(acc, exp) if exp > 0 else np.right_shift(acc, -exp)), 0


def run(graph: Graph, inputs: np.ndarray, timesteps: int, profile: Profile) -> IntegerRun:
    """Run the integer graph on encoded inputs (``(B, C, H, W)`` direct, ``(B, T, C, H, W)``
    event frames: :meth:`hardware.graph.Input.steps`, which checks them); the neuron arithmetic is
    ``profile``'s, whose input width must hold the graph's ``input_max``."""
    profile.check_input(graph.input)
    steps = graph.input.steps(inputs, timesteps)
    b = steps.shape[0]
    state = {n.name: (np.zeros((b, n.neurons), np.int64),) * 2 for n in graph.nodes}
    spikes = {n.name: np.zeros((b, timesteps, n.neurons), bool) for n in graph.hidden}
    readout = np.zeros((b, timesteps, graph.readout.neurons), np.int64)
    saturation = {n.name: dict.fromkeys(SATURATION_KINDS, 0) for n in graph.nodes}
    biases = {n.name: fp.effective_bias(per_neuron(n.shape, n.bias_mant), n.bias_exp) for n in graph.nodes}
    incoming = {n.name: graph.incoming(n.name) for n in graph.nodes}
    for t in range(timesteps):
        out = {"input": steps[:, t].astype(np.int64).reshape(b, -1)}
        for node in graph.nodes:
            sat = saturation[node.name]
            a = np.zeros((b, node.neurons), np.int64)
            for edge in incoming[node.name]:
                a_e, wrapped = synaptic_input(edge, out[edge.source], profile)
                a += a_e
                sat["a_wrap"] += wrapped
            u, v = state[node.name]
            fired, u, v, counts = profile.lif_step(a, u, v, node.du, node.dv, biases[node.name], node.vth,
                                                   readout=node.readout)
            state[node.name] = (u, v)
            sat["u_wrap"] += counts["u_wrap"]
            sat["v_clip"] += counts["v_clip"]
            if node.readout:
                readout[:, t] = v
            else:
                spikes[node.name][:, t] = fired
                out[node.name] = fired.astype(np.int64)
    return IntegerRun(spikes=spikes, readout=readout, saturation=saturation)
