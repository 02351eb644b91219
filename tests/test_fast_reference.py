"""The integer reference's fast path equals the reference itself, bit for bit: spikes of every
node, readout membranes and saturation counts, with the compiled kernels and numpy-only alike,
on random graphs in every profile of every target (and a test that they reach each profile's
edges)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hardware import fast_reference, reference
from hardware import fixed_point as fp
from hardware.bundle import read_bundle
from hardware.graph import INPUT, Geometry, Graph, Input, IntegerEdge, IntegerNode
from hardware.targets.loihi.profile import LOIHI2
from tests.netgen import PROFILES, random_graph, random_inputs, rotation, rotation_id
from training.data import DataSpec, load


def _assert_same(ref: reference.IntegerRun, fast: reference.IntegerRun) -> None:
    assert set(fast.spikes) == set(ref.spikes)
    for name, spikes in ref.spikes.items():
        assert fast.spikes[name].dtype == bool and np.array_equal(fast.spikes[name], spikes), name
    assert fast.readout.dtype == np.int64 and np.array_equal(fast.readout, ref.readout)
    assert fast.saturation == ref.saturation


@pytest.fixture(params=["events", "blas", "numpy"])
def path(request, monkeypatch):
    """Every way the fast path runs: numba's kernels with every edge event-driven where that is
    exact (``events``), with none (``blas``: BLAS products wherever they are exact), and numpy
    alone (numba not installed). The default picks per edge and chunk by the measured density;
    the trained net's test runs it."""
    if request.param != "numpy" and not fast_reference.compiled():
        pytest.fail("numba is not installed: `pip install -e .[train]` (make test) installs it")
    if request.param == "numpy":
        monkeypatch.setattr(fast_reference, "numba", None)
    else:
        monkeypatch.setattr(fast_reference, "EVENT_DENSITY", 1.0 if request.param == "events" else -1.0)
    return request.param


ROTATION = rotation(range(200))  #: 200 seeds, taking every profile of every target in turn


@pytest.mark.parametrize("seed, profile", ROTATION, ids=rotation_id)
def test_fast_equals_reference_on_random_graphs(seed, profile, path):
    graph = random_graph(seed, profile)
    timesteps = 4
    inputs = random_inputs(seed, graph, timesteps, batch=7)
    ref = reference.run(graph, inputs, timesteps, profile)
    _assert_same(ref, fast_reference.run(graph, inputs, timesteps, profile, chunk=3))  # chunks of 3, 3 and 1


@pytest.mark.parametrize("profile", PROFILES, ids=lambda p: p.name)
def test_random_graphs_reach_the_edges_of_every_profile(profile):
    """The rotation's seeds of each profile visit what the comparisons above (and
    tests/test_reference.py's fake-quant one) must get right, so that they can fail: the graph
    cases, both ends of every range and saturated membranes (and, with a current stage,
    wrapped currents), in networks that fire."""
    found = dict.fromkeys(["event frames", "255-pixel input", "a residual add into a conv node", "an identity shortcut",
                           "a dense node feeding a conv", "several edges into the readout", "weight min",
                           "weight max", "bias min", "bias max", "vth 0", "vth max", "dv 0", "dv max",
                           "v clipped"] + (["u wrapped"] if profile.current_stage else []), False)
    rates = []
    for seed, p in ROTATION:
        if p != profile:
            continue
        graph = random_graph(seed, profile)
        run = fast_reference.run(graph, random_inputs(seed, graph, 4, batch=7), 4, profile)
        rates += [float(s.mean()) for s in run.spikes.values()]
        found["event frames"] |= graph.input.per_step
        found["255-pixel input"] |= graph.input.input_max == 255
        found["several edges into the readout"] |= len(graph.incoming(graph.readout.name)) > 1
        for e in graph.edges:
            found["weight min"] |= bool((e.weight == profile.weight_min).any())
            found["weight max"] |= bool((e.weight == profile.weight_max).any())
            found["an identity shortcut"] |= (e.geometry.kind == "conv" and e.weight.shape[2:] == (1, 1) and
                                              np.count_nonzero(e.weight) == e.weight.shape[0] == e.weight.shape[1])
            found["a dense node feeding a conv"] |= (e.geometry.kind == "conv" and e.source != INPUT
                                                     and len(graph.shape(e.source)) == 1)
        for n in graph.hidden:
            found["a residual add into a conv node"] |= len(n.shape) == 3 and len(graph.incoming(n.name)) > 1
            found["bias min"] |= bool((n.bias_mant == profile.bias_mant_min).any())
            found["bias max"] |= bool((n.bias_mant == profile.bias_mant_max).any())
            found["vth 0"] |= n.vth == 0
            found["vth max"] |= n.vth == profile.vth_max
            found["dv 0"] |= n.dv == 0
            found["dv max"] |= n.dv == profile.decay_max
        found["v clipped"] |= sum(s["v_clip"] for s in run.saturation.values()) > 0
        if profile.current_stage:
            found["u wrapped"] |= sum(s["u_wrap"] for s in run.saturation.values()) > 0
    missing = [k for k, v in found.items() if not v]
    assert not missing, f"the {profile.name} seeds never reach: {missing}"
    assert sum(0.02 < r < 0.98 for r in rates) >= len(rates) // 3, f"{profile.name}: random graphs must be active"


def test_fast_equals_reference_on_the_trained_net(default_run):
    bundle = read_bundle(default_run.bundle)
    _, test, _ = load(DataSpec(), bundle.timesteps)
    ref = reference.run(bundle.integer_graph, test.pixels, bundle.timesteps, LOIHI2)
    done = []
    _assert_same(ref, fast_reference.run(bundle.integer_graph, test.pixels, bundle.timesteps, LOIHI2,
                                         progress=done.append))
    assert sum(done) == len(test.pixels) == 360 and len(done) == -(-360 // fast_reference.CHUNK)  # one per chunk


def _conv_edge(rng, in_shape, out_c, kernel, stride, padding, weight_max=254) -> IntegerEdge:
    out = (out_c, (in_shape[1] + 2 * padding[0] - kernel[0]) // stride[0] + 1,
           (in_shape[2] + 2 * padding[1] - kernel[1]) // stride[1] + 1)
    weight = 2 * rng.integers(-weight_max // 2, weight_max // 2 + 1, size=(out_c, in_shape[0], *kernel))
    return IntegerEdge("c", "input", "n", Geometry("conv", in_shape, out, stride, padding), weight, 0, 1.0)


def _random_conv(rng: np.random.Generator, weight_max: int = 254) -> tuple[tuple[int, int, int], IntegerEdge]:
    """A conv edge of random input shape, kernel, stride and padding (the kernel fits the input)."""
    in_shape = (int(rng.integers(1, 4)), int(rng.integers(1, 9)), int(rng.integers(1, 9)))
    kernel = (int(rng.integers(1, min(in_shape[1], 4) + 1)), int(rng.integers(1, min(in_shape[2], 4) + 1)))
    stride = (int(rng.integers(1, 4)), int(rng.integers(1, 4)))
    padding = (int(rng.integers(0, 3)), int(rng.integers(0, 3)))
    return in_shape, _conv_edge(rng, in_shape, int(rng.integers(1, 4)), kernel, stride, padding, weight_max)


@pytest.mark.parametrize("seed", range(60))
def test_a_conv_as_a_dense_matrix_is_the_convolution(seed):
    rng = np.random.default_rng(seed)
    in_shape, edge = _random_conv(rng)
    dense = fast_reference._conv_as_dense(edge)
    x = rng.integers(-20, 21, size=(5, *in_shape))
    g = edge.geometry
    expected = reference.conv2d_int(x, edge.weight, g.stride, g.padding).reshape(5, -1)
    assert np.array_equal(x.reshape(5, -1) @ dense.T.astype(np.int64), expected)


@pytest.mark.parametrize("weight_max, weight_type", [(254, np.int16), (1 << 17, np.int32)], ids=["int16", "int32"])
@pytest.mark.parametrize("seed", range(60))
def test_a_conv_as_events_is_the_convolution(seed, weight_max, weight_type):
    """The event-driven conv (scatter table and kernel) in (H, W, C) order, on random
    geometries, strides and paddings, with graded values, spikes and zeros, from a (C, H, W)
    source (the input) and from an (H, W, C) one (a node); its weights in int16 where they fit,
    else int32."""
    if not fast_reference.compiled():
        pytest.fail("numba is not installed: `pip install -e .[train]` (make test) installs it")
    rng = np.random.default_rng(seed)
    in_shape, edge = _random_conv(rng, weight_max)
    assert fast_reference.scatter_table(edge, None)[-1].dtype == weight_type
    g = edge.geometry
    x = rng.integers(0, 3, size=(5, *in_shape)) * (rng.random((5, *in_shape)) < 0.5)
    expected = reference.conv2d_int(x, edge.weight, g.stride, g.padding).reshape(5, -1)
    src_order, dst_order = fast_reference.hwc_order(in_shape), fast_reference.hwc_order(g.output_shape)
    for order in (None, src_order):
        rows = x.reshape(5, -1) if order is None else x.reshape(5, -1)[:, order]
        out = np.zeros((5, g.neurons), np.int32)
        fast_reference._scatter(rows.astype(np.int64), *fast_reference.scatter_table(edge, order), out)
        assert np.array_equal(out, expected[:, dst_order])


def _one_edge_graph(edge: IntegerEdge, input_max: int) -> Graph:
    shape = edge.geometry.output_shape
    node = IntegerNode("n", shape, np.zeros(shape[0], np.int64), 0, fp.DU_NO_MEMORY, 100, 50, 1.0)
    readout = IntegerNode("out", (2,), np.zeros(2, np.int64), 0, fp.DU_NO_MEMORY, 0, fp.VTH_MAX, 1.0, readout=True)
    n = int(np.prod(shape))
    to_readout = IntegerEdge("r", "n", "out", Geometry("dense", (n,), (2,)), np.full((2, n), 2, np.int64), 0, 1.0)
    return Graph(Input(edge.geometry.input_shape, "direct", input_max), (node, readout), (edge, to_readout))


@pytest.mark.parametrize("input_max, arithmetic", [
    (16, "int32 event-driven"),  # every digits edge: exact int32 sums, event-driven
    (1 << 17, "float64"),  # sums past 2^24 (float32) and 2^23 (conv wrap): float64, then the wrap
    ((1 << 23) - 1, "float64"),  # the widest input Loihi carries (24-bit graded): past int32 too
])
def test_each_arithmetic_is_exact_where_it_is_chosen(input_max, arithmetic, path):
    rng = np.random.default_rng(0)
    edge = _conv_edge(rng, (2, 6, 6), 3, (3, 3), (1, 1), (1, 1))
    graph = _one_edge_graph(edge, input_max)
    worst, kind = fast_reference.worst_cases(graph, input_max, LOIHI2)["c"]
    if arithmetic == "int32 event-driven":
        assert worst < 1 << 23 and kind.startswith("int32 event-driven" if path != "numpy" else "float32")
    else:
        assert kind.startswith(arithmetic) and worst >= 1 << 24
    inputs = rng.integers(0, input_max + 1, size=(9, 2, 6, 6))
    inputs[0] = input_max  # the worst case itself, where sums wrap
    ref = reference.run(graph, inputs, 3, LOIHI2)
    if input_max > 16:
        assert ref.saturation["n"]["a_wrap"] > 0
    _assert_same(ref, fast_reference.run(graph, inputs, 3, LOIHI2, chunk=4))


def test_weight_exponents_and_event_frames(path):
    """A dense edge with a weight exponent (shifted, not accumulated) on per-step binary frames."""
    rng = np.random.default_rng(4)
    weight = 2 * rng.integers(-128, 128, size=(6, 18))
    nodes = (IntegerNode("h", (6,), np.full(6, 3, np.int64), 2, 100, 900, 2, 1.0),
             IntegerNode("out", (2,), np.zeros(2, np.int64), 0, fp.DU_NO_MEMORY, 0, fp.VTH_MAX, 1.0, readout=True))
    for exp in (-3, 2):
        edges = (IntegerEdge("h", "input", "h", Geometry("dense", (18,), (6,)), weight, exp, 1.0),
                 IntegerEdge("r", "h", "out", Geometry("dense", (6,), (2,)), np.full((2, 6), 8, np.int64), 0, 1.0))
        graph = Graph(Input((2, 3, 3), "event-frames", 1), nodes, edges)
        frames = (rng.random((5, 6, 2, 3, 3)) < 0.4).astype(np.int64)
        ref = reference.run(graph, frames, 6, LOIHI2)
        assert ref.spikes["h"].any()
        _assert_same(ref, fast_reference.run(graph, frames, 6, LOIHI2, chunk=2))


def test_fast_path_agrees_with_fake_quant_too():
    """The third implementation, torch's, on a random residual graph with event frames."""
    from export.fake_quant import run_fake_quant

    graph = next(g for g in (random_graph(s, LOIHI2) for s in range(50))
                 if not g.is_chain and g.input.encoding == "event-frames")
    inputs = random_inputs(1, graph, 4, batch=6)
    fast = fast_reference.run(graph, inputs, 4, LOIHI2)
    spikes, readout = run_fake_quant(graph, torch.as_tensor(inputs), 4, LOIHI2)
    for name in fast.spikes:
        assert np.array_equal(spikes[name].numpy(), fast.spikes[name]), name
    assert np.array_equal(readout.numpy(), fast.readout)


def test_runs_on_one_graph_share_its_prepared_synapses_and_no_other_graph_does(path):
    """simulate runs a test set chunk by chunk: a run reuses the last run's prepared synapses
    for the same graph, input bound and profile, and prepares afresh for anything else (a new
    graph of the same shapes with other weights included); every run equals the specification."""
    import dataclasses

    profile = PROFILES[0]
    graph = random_graph(5, profile)
    assert fast_reference._prepared(graph, 3, profile) is fast_reference._prepared(graph, 3, profile)
    assert fast_reference._prepared(graph, 4, profile) is not fast_reference._prepared(graph, 3, profile)
    negated = dataclasses.replace(graph, edges=tuple(dataclasses.replace(e, weight=-e.weight) for e in graph.edges))
    inputs = random_inputs(5, graph, 4, batch=5)
    for g in (graph, negated, graph, negated):
        _assert_same(reference.run(g, inputs, 4, profile), fast_reference.run(g, inputs, 4, profile, chunk=2))


def test_threads_running_one_graph_at_once_each_get_the_specifications_numbers(path):
    """A run writes its prepared graph's workspace: threads keep their own."""
    from concurrent.futures import ThreadPoolExecutor

    profile = PROFILES[0]
    graph = random_graph(6, profile)
    inputs = [random_inputs(seed, graph, 4, batch=9) for seed in range(8)]
    with ThreadPoolExecutor(4) as pool:
        runs = list(pool.map(lambda x: fast_reference.run(graph, x, 4, profile, chunk=2), inputs))
    for x, got in zip(inputs, runs, strict=True):
        _assert_same(reference.run(graph, x, 4, profile), got)
