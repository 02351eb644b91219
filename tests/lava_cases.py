"""The Lava cases of tests/test_lava_backend.py: hand-built chains at the edges of Loihi's
arithmetic, a digits-resnet-shaped residual graph, seeded random graphs and the paper's networks,
each a :class:`~hardware.targets.loihi.lava.parent.LavaJob` (graph, inputs, timesteps)."""

from __future__ import annotations

import dataclasses

import numpy as np

from hardware import fixed_point as fp
from hardware.graph import INPUT, Geometry, Graph, Input, IntegerEdge, IntegerNode
from hardware.targets.loihi.lava.parent import LavaJob
from hardware.targets.loihi.profile import LOIHI2
from tests import netgen

# --- hand-built chains (the chain-era cases, as graphs) ------------------------------------------


def _conv_geometry(in_shape, out_c, k, stride, pad) -> Geometry:
    return Geometry("conv", tuple(in_shape), netgen.conv_out(in_shape, out_c, k, stride, pad), tuple(stride),
                    tuple(pad))


def _weights(rng, shape, sign: str) -> np.ndarray:
    """Even weights in [-256, 254] with both extremes present; optionally of one sign."""
    w = 2 * rng.integers(-128, 128, size=shape)
    flat = w.reshape(-1)
    idx = rng.choice(flat.size, size=min(flat.size, max(2, flat.size // 16)), replace=False)
    flat[idx[0::2]] = fp.WEIGHT_MIN
    flat[idx[1::2]] = fp.WEIGHT_MAX
    if sign == "nonpositive":  # Lava's inferred (inhibitory) sign mode would clip -256 to -255
        w = -np.abs(w)
        w.reshape(-1)[0] = fp.WEIGHT_MIN
    elif sign == "nonnegative":
        w = np.minimum(np.abs(w), fp.WEIGHT_MAX)
    return w.astype(np.int64)


def _pick(rng, choices):
    return choices[int(rng.integers(len(choices)))]


def make_link(rng, name, kind, in_shape, out, *, k=(3, 3), stride=(1, 1), pad=(0, 0), readout=False,
              sign="mixed", **fixed) -> tuple[IntegerEdge, IntegerNode]:
    """An edge and its target node, parameters drawn at and inside the edges of their ranges
    (the edge's source is set by :func:`chain`)."""
    if kind == "conv":
        g = _conv_geometry(in_shape, out, k, stride, pad)
        wshape = (out, in_shape[0], *k)
    else:
        g = Geometry("dense", tuple(in_shape), (out,))
        wshape = (out, int(np.prod(in_shape)))
    bias = rng.integers(fp.BIAS_MANT_MIN, fp.BIAS_MANT_MAX + 1, size=out)
    bias[rng.integers(out)] = _pick(rng, [fp.BIAS_MANT_MIN, fp.BIAS_MANT_MAX])
    params = dict(
        weight=_weights(rng, wshape, sign),
        weight_exp=0 if kind == "conv" else _pick(rng, [0, 0, -2, 1]),
        bias_mant=bias,
        bias_exp=_pick(rng, [0, 0, 1, 3, fp.BIAS_EXP_MAX]),
        du=_pick(rng, [0, fp.DECAY_MAX, fp.DECAY_MAX, int(rng.integers(1, fp.DECAY_MAX))]),
        dv=_pick(rng, [0, fp.DECAY_MAX, int(rng.integers(1, fp.DECAY_MAX))]),
        vth=_pick(rng, [0, 1, fp.VTH_MAX] + [int(rng.integers(2, 600)) for _ in range(4)]),
    )
    params.update(fixed)
    edge = IntegerEdge(name=name, source=INPUT, target=name, geometry=g, weight=params.pop("weight"),
                     weight_exp=params.pop("weight_exp"), input_scale=1.0)
    return edge, IntegerNode(name=name, shape=g.output_shape, scale=1.0, readout=readout, **params)


def chain(in_shape, *links, input_max: int = 1 << 15) -> Graph:
    edges, nodes, source = [], [], INPUT
    for edge, node in links:
        edges.append(dataclasses.replace(edge, source=source))
        nodes.append(node)
        source = node.name
    return Graph(Input(tuple(in_shape), "direct", input_max), tuple(nodes), tuple(edges))


def chain_jobs(seed: int) -> list[LavaJob]:
    """Four seeded chains covering the layouts and the arithmetic edges Lava must get right."""
    rng = np.random.default_rng(seed)
    jobs = []
    # conv (non-square kernel, strides, padding) -> conv -> dense -> readout, odd image 5x7
    c1 = make_link(rng, "c1", "conv", (2, 5, 7), 3, k=(3, 2), stride=(1, 2), pad=(1, 0))
    c2 = make_link(rng, "c2", "conv", c1[1].shape, 4, k=(2, 3), stride=(2, 1), pad=(0, 1))
    d1 = make_link(rng, "d1", "dense", (c2[0].geometry.neurons,), 13)
    out = make_link(rng, "out", "dense", (13,), 4, readout=True)
    jobs.append(LavaJob(chain((2, 5, 7), c1, c2, d1, out), rng.integers(0, 17, size=(5, 2, 5, 7)), 3))
    # graded dense on an image -> dense feeding a conv (reshaped port) -> conv readout
    d1 = make_link(rng, "d1", "dense", (1, 4, 6), 11)
    d2 = make_link(rng, "d2", "dense", (11,), 36, sign="nonnegative")
    c1 = make_link(rng, "c1", "conv", (4, 3, 3), 2, k=(3, 3), pad=(1, 1))
    out = make_link(rng, "out", "conv", c1[1].shape, 2, k=(2, 1), readout=True)
    jobs.append(LavaJob(chain((1, 4, 6), d1, d2, c1, out), rng.integers(0, 256, size=(4, 1, 4, 6)), 4))
    # a single conv layer at T = 1; an all non-positive readout holding -256
    c1 = make_link(rng, "c1", "conv", (3, 6, 5), 5, k=(3, 3), stride=(2, 2), pad=(2, 1))
    out = make_link(rng, "out", "dense", (c1[0].geometry.neurons,), 3, readout=True, sign="nonpositive")
    jobs.append(LavaJob(chain((3, 6, 5), c1, out), rng.integers(0, 5, size=(6, 3, 6, 5)), 1))
    # huge graded input: conv sums wrap at 24 bits, currents wrap, membranes clip (and spike
    # past the largest threshold, in the hidden layer)
    c1 = make_link(rng, "c1", "conv", (1, 6, 6), 2, k=(3, 3), pad=(1, 1), du=fp.DECAY_MAX, vth=fp.VTH_MAX)
    d1 = make_link(rng, "d1", "dense", (c1[0].geometry.neurons,), 7)
    out = make_link(rng, "out", "dense", (7,), 3, readout=True)
    jobs.append(LavaJob(chain((1, 6, 6), c1, d1, out), rng.integers(0, 1 << 15, size=(4, 1, 6, 6)), 3))
    # readouts quieted until the Loihi target accepts them (Lava's LIF readout must not pass its threshold)
    return [dataclasses.replace(job, graph=netgen.accepted(job.graph, LOIHI2)) for job in jobs]


def tie_job() -> LavaJob:
    """Every step: v == vth << 6 exactly (no spike), one above it (spike), one below (none)."""
    hidden = (IntegerEdge("h", INPUT, "h", Geometry("dense", (1, 1, 1), (3,)), np.full((3, 1), 2), 0, 1.0),
              IntegerNode("h", (3,), np.array([0, 1, -1]), 0, fp.DECAY_MAX, fp.DECAY_MAX, 10, 1.0))
    # a = 2 * 5 = 10, so v = (10 << 6) + bias = 640 + {0, 1, -1}, and D(640, 4095) = 0
    out = (IntegerEdge("out", INPUT, "out", Geometry("dense", (3,), (2,)), np.array([[2, 4, 6], [-2, 0, 254]]), 0, 1.0),
           IntegerNode("out", (2,), np.zeros(2, np.int64), 0, fp.DECAY_MAX, 0, fp.VTH_MAX, 1.0, readout=True))
    return LavaJob(chain((1, 1, 1), hidden, out, input_max=5), np.full((2, 1, 1, 1), 5), 3)


# --- a residual graph: digits-resnet's topology ------------------------------------------------


def resnet_graph(encoding: str) -> Graph:
    """stem conv -> res1 (conv1 LIF, conv2 + identity shortcut) -> res2 (conv1 LIF, conv2 + 1x1
    conv shortcut) -> fc1 (dense) -> readout, on 8x8 inputs; seeded weights, fixed thresholds."""
    rng = np.random.default_rng(7)
    c0, c1, c2, hw = (1, 4, 6, 8) if encoding == "direct" else (2, 4, 6, 8)
    conv3 = lambda src, dst, c_in, c_out: netgen.conv_edge(rng, src, dst, (c_in, hw, hw), c_out, padding=(1, 1))  # noqa: E731
    edges = (conv3(INPUT, "stem", c0, c1),
             conv3("stem", "res1.conv1", c1, c1), conv3("res1.conv1", "res1", c1, c1),
             netgen.identity_shortcut("stem", "res1", (c1, hw, hw), gain=32),
             conv3("res1", "res2.conv1", c1, c2), conv3("res2.conv1", "res2", c2, c2),
             netgen.conv_edge(rng, "res1", "res2", (c1, hw, hw), c2, k=(1, 1)),
             netgen.dense_edge(rng, "res2", "fc1", c2 * hw * hw, 12),
             netgen.dense_edge(rng, "fc1", "readout", 12, 10))
    shapes = {"stem": (c1, hw, hw), "res1.conv1": (c1, hw, hw), "res1": (c1, hw, hw), "res2.conv1": (c2, hw, hw),
              "res2": (c2, hw, hw), "fc1": (12,)}
    vth = 40 if encoding == "direct" else 12
    nodes = tuple(netgen.loihi_node(rng, name, shape, du=fp.DECAY_MAX, dv=600, vth=vth * (1 + (name == "fc1")),
                                    bias_exp=0) for name, shape in shapes.items())
    readout = netgen.loihi_node(rng, "readout", (10,), readout=True, du=fp.DECAY_MAX)
    spec = Input((c0, hw, hw), encoding, 16 if encoding == "direct" else 1)
    return Graph(spec, (*nodes, readout), edges)


def resnet_job(encoding: str, pad_delays: bool = True) -> LavaJob:
    graph, timesteps = resnet_graph(encoding), 4
    return LavaJob(graph, netgen.random_inputs(3, graph, timesteps, batch=5), timesteps, pad_delays)


def random_job(seed: int) -> LavaJob:
    graph, timesteps = netgen.random_graph(seed, LOIHI2), 1 + seed % 4
    return LavaJob(graph, netgen.random_inputs(seed, graph, timesteps, batch=4), timesteps)


def paper_job(arch: str) -> LavaJob:
    """The paper's networks at 1/16 width, untrained (they fire: :mod:`tests.papernets`), folded and
    quantized to Loihi by the exporter's own code: ResNet-19 on a direct 3x8x8 input (19 nodes,
    strided 1x1 projection shortcuts, identity shortcuts), VGGSNN on 2x16x16 event frames (four
    average poolings folded into strided convolutions)."""
    from tests.papernets import loihi_graph, untrained

    net = untrained(arch, *{"resnet19": ((3, 8, 8), "direct", 16), "vggsnn": ((2, 16, 16), "event-frames", 1)}[arch],
                    width=1 / 16, timesteps=3, batch=6, seed=5)
    return LavaJob(loihi_graph(net), net.pixels.numpy(), net.timesteps)
