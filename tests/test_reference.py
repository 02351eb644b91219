"""Integer reference: exact conv, the threshold tie, saturation counts, and the torch fake-quant
path as an independent second implementation (compared with ==); synapse sums exact beyond
float64's 2^53, and inputs beyond ``input_max`` (or the profile's input width) refused by every
executor."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from export import fake_quant
from export.fake_quant import run_fake_quant
from hardware import fast_reference, reference
from hardware import fixed_point as fp
from hardware.graph import INPUT, BundleError, Geometry, Graph, Input, IntegerEdge, IntegerNode
from hardware.targets.fpga.profiles import FPGA_MUL
from hardware.targets.loihi.profile import LOIHI2
from tests.netgen import random_graph, random_inputs, rotation, rotation_id
from tests.netgen_chains import random_fpga_chain


@pytest.mark.parametrize("seed", range(6))
def test_conv2d_int_equals_torch_conv(seed):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 17, size=(3, 2, 7, 9))
    w = rng.integers(-256, 255, size=(4, 2, 3, 2))
    stride, padding = (int(rng.integers(1, 3)), int(rng.integers(1, 3))), (int(rng.integers(0, 2)), 1)
    ours = reference.conv2d_int(x, w, stride, padding)
    f64 = torch.float64
    theirs = torch.nn.functional.conv2d(torch.as_tensor(x, dtype=f64), torch.as_tensor(w, dtype=f64),
                                        stride=stride, padding=padding)
    assert np.array_equal(ours, theirs.numpy().astype(np.int64))


def _dense(weight, bias_mant=0, bias_exp=0, dv=0, vth=10, readout=False, source="input"
           ) -> tuple[IntegerEdge, IntegerNode]:
    weight = np.asarray(weight, dtype=np.int64)
    name = "readout" if readout else "h"
    edge = IntegerEdge(name=name, source=source, target=name,
                     geometry=Geometry("dense", (weight.shape[1],), (weight.shape[0],)), weight=weight,
                     weight_exp=0, input_scale=1.0)
    node = IntegerNode(name=name, shape=(weight.shape[0],), bias_mant=np.full(weight.shape[0], bias_mant, np.int64),
                     bias_exp=bias_exp, du=fp.DU_NO_MEMORY, dv=dv, vth=vth, scale=1.0, readout=readout)
    return edge, node


def _chain(*links, shape=(1, 1, 1)) -> Graph:
    """A chain graph from (edge, node) links; each edge reads the node before it."""
    edges, nodes, source = [], [], "input"
    for edge, node in links:
        edges.append(dataclasses.replace(edge, source=source))
        nodes.append(node)
        source = node.name
    return Graph(Input(shape, "direct", 1 << 20), tuple(nodes), tuple(edges))


def test_tie_at_threshold_does_not_spike_one_above_does():
    """v == vth << 6 exactly: no spike (Loihi's strict >); one more unit of bias: spike."""
    vth = 10
    net_tie = _chain(_dense([[10]], vth=vth), _dense([[2]], readout=True, vth=fp.VTH_MAX))  # v = 10 << 6 = vth << 6
    net_above = _chain(_dense([[10]], bias_mant=1, vth=vth), _dense([[2]], readout=True, vth=fp.VTH_MAX))
    pixels = np.ones((1, 1, 1, 1), np.int64)
    for net, expect in ((net_tie, False), (net_above, True)):
        run = reference.run(net, pixels, 1, LOIHI2)
        fq_spikes, _ = run_fake_quant(net, torch.as_tensor(pixels), 1, LOIHI2)
        assert bool(run.spikes["h"][0, 0, 0]) is expect
        assert bool(fq_spikes["h"][0, 0, 0]) is expect


def test_reset_and_decay_follow_lavas_arithmetic():
    """Hand-computed trace: v = D(v, dv) + (a << 6) + bias, spike on v > vth << 6, reset to 0."""
    layer = _dense([[2]], bias_mant=5, bias_exp=1, dv=1024, vth=3)  # vth << 6 = 192, a << 6 = 128
    readout = _dense([[2]], readout=True, vth=fp.VTH_MAX)
    run = reference.run(_chain(layer, readout), np.ones((1, 1, 1, 1), np.int64), 4, LOIHI2)
    v, spikes = 0, []
    for _ in range(4):
        v = int(np.sign(v * 3072) * (abs(v * 3072) >> 12)) + 128 + 10
        spikes.append(v > 192)
        v = 0 if v > 192 else v
    assert run.spikes["h"][0, :, 0].tolist() == spikes == [False, True, False, True]


def test_saturation_is_counted_not_hidden():
    """A huge positive bias pins v at the clip; a conv sum beyond 24 bits wraps and is counted."""
    clip = _dense([[0]], bias_mant=fp.BIAS_MANT_MAX, bias_exp=fp.BIAS_EXP_MAX, dv=0, vth=fp.VTH_MAX)
    readout = _dense([[0]], readout=True, vth=fp.VTH_MAX)
    run = reference.run(_chain(clip, readout), np.zeros((2, 1, 1, 1), np.int64), 40, LOIHI2)
    steps_to_clip = -(-fp.STATE_LIMIT // (fp.BIAS_MANT_MAX << fp.BIAS_EXP_MAX))
    assert run.saturation["h"]["v_clip"] > 0
    # v clips at 2^23 - 1 > vth << 6 = 2^23 - 64, so it spikes and resets: every spike is counted
    assert run.spikes["h"].sum() == 2 * (40 // steps_to_clip)

    geometry = Geometry("conv", (1, 1, 1), (1, 1, 1))
    wide = (IntegerEdge(name="c", source="input", target="c", geometry=geometry,
                      weight=np.full((1, 1, 1, 1), 254, np.int64), weight_exp=0, input_scale=1.0),
            IntegerNode(name="c", shape=(1, 1, 1), bias_mant=np.zeros(1, np.int64), bias_exp=0, du=fp.DU_NO_MEMORY,
                      dv=0, vth=0, scale=1.0))
    readout = _dense([[0]], readout=True, vth=fp.VTH_MAX)
    pixels = np.full((1, 1, 1, 1), 2**16, np.int64)  # 254 * 2^16 > 2^23: wraps to signed 24 bits
    run = reference.run(_chain(wide, readout), pixels, 1, LOIHI2)
    assert run.saturation["c"]["a_wrap"] == 1


def test_edges_into_one_node_sum_without_a_second_wrap():
    """Two conv edges into one node: each output is brought to 24 bits by itself (Lava's Conv),
    and their sum enters the current as it is (the LIF's input port adds the messages): two
    currents of 2^23 - 2 make a = 2^24 - 4, a large positive drive, where wrapping the sum
    again would give -4. (Lava adds the messages in int32: ``check_lava_limits`` bounds the sum.)"""
    geometry = Geometry("conv", (1, 1, 1), (1, 1, 1))
    weight = np.full((1, 1, 1, 1), 2, np.int64)
    edges = (IntegerEdge("c1", "input", "readout", geometry, weight, 0, 1.0),
             IntegerEdge("c2", "input", "readout", geometry, weight, 0, 1.0))
    nodes = (IntegerNode("readout", (1, 1, 1), np.zeros(1, np.int64), 0, fp.DU_NO_MEMORY, 0, fp.VTH_MAX, 1.0,
                       readout=True),)
    graph = Graph(Input((1, 1, 1), "direct", (1 << 23) - 1), nodes, edges)
    x = np.full((1, 1, 1, 1), 2**22 - 1, np.int64)  # 2 x = 2^23 - 2: no wrap on either edge
    run = reference.run(graph, x, 1, LOIHI2)
    _, readout = run_fake_quant(graph, torch.as_tensor(x), 1, LOIHI2)
    # a = 2^24 - 4 drives v to the clip, past the readout's threshold: the readout never fires, it
    # holds at the limit and counts the clip (a wrapped sum, -4, would leave v = -256 unclipped)
    assert run.readout[0, 0, 0] == readout[0, 0, 0] == (1 << 23) - 1
    assert run.saturation["readout"] == {"a_wrap": 0, "u_wrap": 1, "v_clip": 1}


@pytest.mark.parametrize("seed, profile", rotation(range(200)), ids=rotation_id)
def test_fake_quant_equals_reference_on_random_graphs(seed, profile):
    """200 seeds, taking every profile of every target in turn (tests/netgen.py's rotation)."""
    graph = random_graph(seed, profile)
    timesteps = 4
    inputs = random_inputs(seed, graph, timesteps, batch=5)
    ref = reference.run(graph, inputs, timesteps, profile)
    spikes, readout = run_fake_quant(graph, torch.as_tensor(inputs), timesteps, profile)
    assert set(spikes) == set(ref.spikes)
    for name in ref.spikes:
        assert np.array_equal(spikes[name].numpy(), ref.spikes[name]), name
    assert np.array_equal(readout.numpy(), ref.readout)


# slow: the full-width networks (make test-all). make test covers them at 1/16 width by
# test_lava_backend.py::test_the_papers_networks_match_bit_for_bit (Lava == reference == fake-quant
# on all 19 and 9 layers)
@pytest.mark.slow
@pytest.mark.parametrize("arch, shape, encoding, input_max", [("resnet19", (3, 32, 32), "direct", 255),
                                                               ("vggsnn", (2, 48, 48), "event-frames", 1)])
def test_fake_quant_equals_reference_on_the_papers_networks_at_full_width(arch, shape, encoding, input_max):
    """ResNet-19 on 32x32 RGB bytes and VGGSNN on 48x48 event frames at full width (19 and 9
    nodes; untrained, firing), T = 2, four samples: the integer reference == torch fake-quant
    (about 1 s each on 2 cores)."""
    from tests.papernets import loihi_graph, untrained

    net = untrained(arch, shape, encoding, input_max, timesteps=2, batch=4)
    graph = loihi_graph(net)
    ref = reference.run(graph, net.pixels.numpy(), net.timesteps, LOIHI2)
    spikes, readout = run_fake_quant(graph, net.pixels, net.timesteps, LOIHI2)
    assert len(graph.nodes) == (19 if arch == "resnet19" else 9)
    for name in ref.spikes:
        assert np.array_equal(spikes[name].numpy(), ref.spikes[name]), name
        assert 0 < ref.spikes[name].mean() < 1, name
    assert np.array_equal(readout.numpy(), ref.readout)


def test_reference_rejects_float_inputs():
    graph = random_graph(0, LOIHI2)
    with pytest.raises(ValueError, match="integers"):
        reference.run(graph, np.zeros((1, *graph.input.shape)) if graph.input.encoding == "direct" else
                      np.zeros((1, 2, *graph.input.shape)), 2, LOIHI2)


# --- exact sums, and inputs no executor can carry ----------------------------------------------------

def _one_by_one_conv(input_max: int) -> Graph:
    """A 1x1 conv with weights [254, 4] from a (2, 1, 1) input into the readout."""
    edge = IntegerEdge("c", INPUT, "out", Geometry("conv", (2, 1, 1), (1, 1, 1)),
                       np.array([254, 4], np.int64).reshape(1, 2, 1, 1), 0, 1.0)
    node = IntegerNode("out", (1, 1, 1), np.zeros(1, np.int64), 0, fp.DU_NO_MEMORY, 0, fp.VTH_MAX, 1.0, readout=True)
    return Graph(Input((2, 1, 1), "direct", input_max), (node,), (edge,))


def test_synapse_sums_past_2_53_are_exact_and_such_inputs_are_refused():
    """Weights [254, 4] on inputs [2^47 + 1, 1]: 254 (2^47 + 1) + 4 = 254 2^47 + 258, which
    float64 rounds to 254 2^47 + 260 (wrapped to 24 bits and shifted into u: 16640, where the
    exact 258 gives 16512). The reference's sums are exact there (int64, past 2^53); and no
    executor accepts such an input: it is far beyond the 24-bit graded spike (2^23 - 1) that a
    Loihi input step carries, so the graph's input_max is refused, and so is the value itself."""
    x = np.array([2**47 + 1, 1], np.int64).reshape(1, 2, 1, 1)
    graph = _one_by_one_conv(2**47 + 1)
    edge = graph.edges[0]
    assert float(254 * (2**47 + 1) + 4) != 254 * (2**47 + 1) + 4  # float64 cannot hold it
    assert reference.conv2d_int(x, edge.weight, (1, 1), (0, 0)).item() == 254 * (2**47 + 1) + 4
    a, wrapped = reference.synaptic_input(edge, x.reshape(1, -1), LOIHI2)
    assert a.tolist() == [[258]] and wrapped == 1 and (int(a[0, 0]) << fp.ACT_SHIFT) == 16512
    order = fast_reference.hwc_order(edge.geometry.output_shape)
    fast, _ = fast_reference._Synapse(edge, 2**47 + 1, LOIHI2, None, order)(x.reshape(1, -1))
    assert fast.tolist() == [[258]]

    with pytest.raises(BundleError, match=r"input_max 140737488355329 exceeds 8388607"):
        LOIHI2.check(graph)
    for run in (reference.run, fast_reference.run):
        with pytest.raises(BundleError, match="input_max"):
            run(graph, x, 1, LOIHI2)
    with pytest.raises(BundleError, match="input_max"):
        run_fake_quant(graph, torch.as_tensor(x), 1, LOIHI2)
    with pytest.raises(ValueError, match="2\\^53"):  # fake-quant's float64 sums refuse what they cannot hold
        fake_quant.synaptic(edge, torch.as_tensor(x.reshape(1, -1)), LOIHI2)
    with pytest.raises(ValueError, match=r"direct inputs must lie in \[0, 8388607\]"):
        reference.run(_one_by_one_conv(LOIHI2.input_limit), x, 1, LOIHI2)


def test_the_largest_admissible_input_is_exact_everywhere():
    """At the profile's input limit, 2^23 - 1, the three executors agree with the exact sum."""
    x = np.array([LOIHI2.input_limit, LOIHI2.input_limit], np.int64).reshape(1, 2, 1, 1)
    graph = _one_by_one_conv(LOIHI2.input_limit)
    exact = 258 * LOIHI2.input_limit
    assert reference.conv2d_int(x, graph.edges[0].weight, (1, 1), (0, 0)).item() == exact
    want = reference.run(graph, x, 2, LOIHI2).readout
    assert np.array_equal(fast_reference.run(graph, x, 2, LOIHI2).readout, want)
    assert np.array_equal(run_fake_quant(graph, torch.as_tensor(x), 2, LOIHI2)[1].numpy(), want)


def _backends():
    from hardware.targets.loihi.lava import backend as lava_backend

    return {
        "reference": lambda g, x, t, p: reference.run(g, x, t, p),
        "fast path": lambda g, x, t, p: fast_reference.run(g, x, t, p),
        "fake-quant": lambda g, x, t, p: run_fake_quant(g, torch.as_tensor(x), t, p),
        "lava checks": lambda g, x, t, p: lava_backend.check_run(g, x, t),
    }


@pytest.mark.parametrize("backend", ["reference", "fast path", "fake-quant", "lava checks"])
@pytest.mark.parametrize("case", ["above input_max", "negative", "event frame of 2"])
def test_every_executor_refuses_inputs_outside_the_encoding(backend, case):
    """An input value above the graph's input_max, below 0, or an event frame that is not 0/1 is
    a ValueError from every executor (the same check: ``Input.check_encoded``), not a number."""
    if case == "event frame of 2":
        graph = next(g for g in (random_graph(s, LOIHI2) for s in range(50)) if g.input.per_step)
        x = random_inputs(0, graph, 3, batch=2)
        x[1, 2].flat[0] = 2
        message = "0/1 spikes"
    else:
        graph = next(g for g in (random_graph(s, LOIHI2) for s in range(50)) if not g.input.per_step)
        x = random_inputs(0, graph, 3, batch=2)
        x[1].flat[-1] = graph.input.input_max + 1 if case == "above input_max" else -1
        message = rf"must lie in \[0, {graph.input.input_max}\]"
    run = _backends()[backend]
    with pytest.raises(ValueError, match=message):
        run(graph, x, 3, LOIHI2)
    x[1] = 0  # the same batch without the bad value runs
    if backend != "lava checks":
        run(graph, x, 3, LOIHI2)


def test_fpga_executors_refuse_inputs_above_input_max_too():
    graph = random_fpga_chain(2, FPGA_MUL)
    steps = 2
    shape = ((steps,) if graph.input.per_step else ()) + graph.input.shape
    x = np.full((1, *shape), graph.input.input_max + 1, np.int64)
    for run in (reference.run, fast_reference.run):
        with pytest.raises(ValueError, match="0/1 spikes|must lie in"):
            run(graph, x, steps, FPGA_MUL)
    with pytest.raises(ValueError, match="0/1 spikes|must lie in"):
        run_fake_quant(graph, torch.as_tensor(x), steps, FPGA_MUL)
