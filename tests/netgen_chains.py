"""Seeded random chains in the FPGA profiles, for the RTL: at the edges of their arithmetic
(clamped membranes, saturating readouts, extreme thresholds, decay codes and weights, and a regime
of membranes of a few units where one unit of rounding decides a spike), small enough to simulate
fast. Nodes and weights come from :mod:`tests.netgen` (:func:`~tests.netgen.profile_node`,
:func:`~tests.netgen.fpga_weights`)."""

from __future__ import annotations

import numpy as np

from hardware.graph import INPUT, Geometry, Graph, Input, IntegerEdge
from hardware.profile import Profile
from tests.netgen import fpga_weights, profile_node


def _fpga_conv_geometry(rng: np.random.Generator, shape: tuple[int, int, int]) -> tuple[Geometry, tuple[int, int]]:
    """A conv of random kernel (up to 4), stride (up to 3) and padding (up to 2) per axis."""
    while True:
        k = (int(rng.integers(1, 5)), int(rng.integers(1, 5)))
        stride = (int(rng.integers(1, 4)), int(rng.integers(1, 4)))
        padding = (int(rng.integers(0, 3)), int(rng.integers(0, 3)))
        out = tuple((n + 2 * p - kk) // s + 1 for n, p, kk, s in zip(shape[1:], padding, k, stride, strict=True))
        if min(out) >= 1 and all(n + 2 * p >= kk for n, p, kk in zip(shape[1:], padding, k, strict=True)):
            out_c = int(rng.integers(1, 7))
            return Geometry("conv", shape, (out_c, *out), stride, padding), k


#: each FPGA profile's random stream (a profile added later gets its own, leaving the others' chains as they were)
FPGA_STREAMS = {"fpga-mul": 7, "fpga-shift": 11, "fpga-mul4": 13}


def random_fpga_chain(seed: int, profile: Profile) -> Graph:
    """A chain input -> 1..3 hidden (conv or dense) -> dense readout, small enough to simulate
    fast, its weights over the profile's whole range."""
    rng = np.random.default_rng([seed, FPGA_STREAMS[profile.name]])
    w_range = {"lo": profile.weight_min, "hi": profile.weight_max}
    event = rng.random() < 0.3
    shape: tuple[int, ...] = (int(rng.integers(1, 4)), int(rng.integers(3, 8)), int(rng.integers(3, 8)))
    spec = Input(shape, "event-frames" if event else "direct", 1 if event else int(rng.choice([1, 15, 16, 255])))
    nodes, edges, source = [], [], INPUT
    hidden = int(rng.integers(1, 4))
    small = rng.random() < 0.35
    for i in range(hidden + 1):
        readout = i == hidden
        if len(shape) == 3 and not readout and rng.random() < 0.65:
            geometry, k = _fpga_conv_geometry(rng, shape)
            weight = fpga_weights(rng, (geometry.output_shape[0], shape[0], *k), small, **w_range)
        else:
            n_out = int(rng.integers(1, 7)) if readout else int(rng.integers(1, 13))
            geometry = Geometry("dense", (int(np.prod(shape)),), (n_out,))
            weight = fpga_weights(rng, (n_out, int(np.prod(shape))), small, **w_range)
        name = "out" if readout else f"h{i}"
        nodes.append(profile_node(rng, profile, name, geometry.output_shape, readout, small))
        edges.append(IntegerEdge(name=f"{source}-{name}", source=source, target=name, geometry=geometry,
                                 weight=weight, weight_exp=0, input_scale=1.0))
        shape, source = geometry.output_shape, name
    graph = Graph(spec, tuple(nodes), tuple(edges))
    profile.check(graph)
    return graph


def fpga_inputs(seed: int, graph: Graph, timesteps: int, batch: int) -> np.ndarray:
    """Inputs for :func:`random_fpga_chain`: 0/1 frames, or pixels with a third of them zero."""
    rng = np.random.default_rng([seed, 99])
    spec = graph.input
    if spec.per_step:
        return (rng.random((batch, timesteps, *spec.shape)) < rng.uniform(0.2, 0.6)).astype(np.int64)
    x = rng.integers(0, spec.input_max + 1, size=(batch, *spec.shape))
    x[rng.random(x.shape) < 0.3] = 0  # zero pixels: no events
    return x.astype(np.int64)
