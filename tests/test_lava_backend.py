"""Lava (lava-nc 0.10.0, ``Loihi2SimCfg(select_tag='fixed_pt')``) == the integer reference, bit for bit.

Cross-implementation tests (DESIGN section 4): every hidden node's spikes and the readout
membrane after every step must be equal (``==``, no tolerance) on hand-built chains, a
digits-resnet-shaped residual graph (direct and event-frame inputs), seeded random graphs
(:mod:`tests.netgen`) and a trained digits bundle. Lava runs through the subprocess path (the
Lava interpreter, ``make lava-env``); a missing Lava environment fails these tests with the
message saying how to create it, never skips them. The graphs run in one interpreter start, the
50 random graphs (``make test-all``) in another.
"""

from __future__ import annotations

import dataclasses
import sys

import numpy as np
import pytest

from hardware import fixed_point as fp
from hardware import reference
from hardware.bundle import Bundle, BundleError, write_bundle
from hardware.graph import INPUT, FloatEdge, FloatNode, Geometry, Graph, Input, IntegerEdge, IntegerNode
from hardware.targets.loihi.lava.backend import (
    LavaLimitError,
    check_lava_limits,
    conv_kernel_to_lava,
    delay_pads,
    lava_step,
    layouts,
)
from hardware.targets.loihi.lava.child import read_job, write_job
from hardware.targets.loihi.lava.parent import (
    ENV_VAR,
    LavaEnvironmentError,
    LavaJob,
    find_lava_python,
    run_lava_bundle,
    run_lava_jobs,
)
from hardware.targets.loihi.profile import LOIHI2
from tests import netgen

LAVA_TIMEOUT_S = 600
CHAIN_SEEDS = (0, 1, 2, 3)
RANDOM_SEEDS = range(50)
DIGITS_SAMPLES = 60

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
    # past the largest threshold)
    c1 = make_link(rng, "c1", "conv", (1, 6, 6), 2, k=(3, 3), pad=(1, 1), du=fp.DECAY_MAX, vth=fp.VTH_MAX)
    d1 = make_link(rng, "d1", "dense", (c1[0].geometry.neurons,), 7)
    out = make_link(rng, "out", "dense", (7,), 3, readout=True)
    jobs.append(LavaJob(chain((1, 6, 6), c1, d1, out), rng.integers(0, 1 << 15, size=(4, 1, 6, 6)), 3))
    return jobs


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


# --- helpers and fixtures ------------------------------------------------------------------------


def assert_same(ref: reference.IntegerRun, lava: reference.IntegerRun, what: str) -> None:
    assert set(lava.spikes) == set(ref.spikes), what
    for name, spikes in ref.spikes.items():
        assert lava.spikes[name].dtype == bool and lava.spikes[name].shape == spikes.shape, (what, name)
        diff = np.argwhere(lava.spikes[name] != spikes)
        assert diff.size == 0, f"{what}: node {name} spikes differ at (b, t, n) {diff[:5].tolist()}"
    assert lava.readout.dtype == np.int64 and lava.readout.shape == ref.readout.shape, what
    diff = np.argwhere(lava.readout != ref.readout)
    assert diff.size == 0, f"{what}: readout membranes differ at (b, t, n) {diff[:5].tolist()}"


def _lava(call, *args, **kwargs):
    """Run Lava through the subprocess path; a missing environment fails with how to create it."""
    try:
        return call(*args, in_process=False, timeout=LAVA_TIMEOUT_S, **kwargs)
    except LavaEnvironmentError as exc:
        pytest.fail(f"Lava environment unavailable: {exc}", pytrace=False)


@dataclasses.dataclass
class Runs:
    jobs: dict[str, list[LavaJob]]
    refs: dict[str, list[reference.IntegerRun]]
    lava: dict[str, list[reference.IntegerRun]]
    timing: dict[str, list[dict[str, float]]]


@pytest.fixture(scope="module")
def runs() -> Runs:
    """The Lava jobs of this file but the random graphs', in one interpreter start."""
    groups = {
        "chains": [job for seed in CHAIN_SEEDS for job in chain_jobs(seed)] + [tie_job()],
        "resnet": [resnet_job("direct"), resnet_job("event-frames")],
        "unpadded": [resnet_job("direct", pad_delays=False)],
        "paper": [paper_job("resnet19"), paper_job("vggsnn")],
    }
    flat = [job for jobs in groups.values() for job in jobs]
    results = iter(_lava(run_lava_jobs, flat))
    out = Runs(groups, {}, {}, {})
    for key, jobs in groups.items():
        pairs = [next(results) for _ in jobs]
        out.lava[key] = [run for run, _ in pairs]
        out.timing[key] = [timing for _, timing in pairs]
        out.refs[key] = [reference.run(job.graph, job.inputs, job.timesteps, LOIHI2) for job in jobs]
    return out


@pytest.fixture(scope="module")
def random_jobs() -> tuple[list[LavaJob], list[reference.IntegerRun]]:
    """The random graphs' jobs and their reference runs (Lava runs them in the one slow test)."""
    jobs = [random_job(seed) for seed in RANDOM_SEEDS]
    return jobs, [reference.run(job.graph, job.inputs, job.timesteps, LOIHI2) for job in jobs]


# --- tests ---------------------------------------------------------------------------------------


def test_chains_match_bit_for_bit(runs):
    for i, (job, ref, lava) in enumerate(zip(runs.jobs["chains"], runs.refs["chains"], runs.lava["chains"],
                                             strict=True)):
        kinds = "-".join(e.geometry.kind for e in job.graph.edges)
        assert_same(ref, lava, f"chain {i} ({kinds}, T={job.timesteps})")


def test_chains_reach_the_edges(runs):
    """The cases must keep exercising what could differ: else the equality proves little."""
    jobs, refs = runs.jobs["chains"], runs.refs["chains"]
    nodes = [n for job in jobs for n in job.graph.nodes]
    edges = [e for job in jobs for e in job.graph.edges]
    totals = {kind: sum(sat[kind] for ref in refs for sat in ref.saturation.values())
              for kind in reference.SATURATION_KINDS}
    assert all(totals[kind] > 0 for kind in reference.SATURATION_KINDS), totals
    for field, ends in (("vth", (0, fp.VTH_MAX)), ("dv", (0, fp.DECAY_MAX)), ("du", (0, fp.DECAY_MAX)),
                        ("bias_exp", (0, fp.BIAS_EXP_MAX))):
        seen = {int(getattr(n, field)) for n in nodes}
        assert set(ends) <= seen, (field, seen)
    assert any(e.geometry.kind == "dense" and e.weight.max() <= 0 and e.weight.min() == fp.WEIGHT_MIN for e in edges)
    assert {fp.BIAS_MANT_MIN, fp.BIAS_MANT_MAX} <= {int(v) for n in nodes for v in n.bias_mant}
    assert {-2, 0, 1} <= {e.weight_exp for e in edges}
    rates = [ref.spikes[name].mean() for ref in refs for name in ref.spikes]
    assert sum(0.05 < r < 0.95 for r in rates) >= len(rates) // 2, rates


def test_tie_at_threshold_does_not_spike(runs):
    ref, lava = runs.refs["chains"][-1], runs.lava["chains"][-1]
    expected = np.broadcast_to(np.array([False, True, False]), ref.spikes["h"].shape)
    assert np.array_equal(ref.spikes["h"], expected)
    assert np.array_equal(lava.spikes["h"], expected)


@pytest.mark.parametrize("index, encoding", [(0, "direct"), (1, "event-frames")])
def test_residual_graph_matches_bit_for_bit(runs, index, encoding):
    job, ref = runs.jobs["resnet"][index], runs.refs["resnet"][index]
    assert job.graph.input.encoding == encoding
    assert_same(ref, runs.lava["resnet"][index], f"residual graph, {encoding} inputs")
    timing = runs.timing["resnet"][index]
    depth = job.graph.depths()["readout"]
    assert depth == 7 and timing["steps"] == job.inputs.shape[0] * job.timesteps + depth
    assert timing["relays"] == 2  # one per shortcut: stem -> res1 and res1 -> res2 skip one node each
    assert all(0.05 < ref.spikes[name].mean() < 0.95 for name in ref.spikes), "hidden nodes must be active"


def test_unpadded_shortcuts_do_not_match(runs):
    """Without the relays the shortcuts arrive a step early: the nodes up to the first shortcut
    still match, the first node it feeds (res1) does not. So the pad is needed and tested."""
    ref, lava = runs.refs["unpadded"][0], runs.lava["unpadded"][0]
    assert ref.readout.tolist() == runs.refs["resnet"][0].readout.tolist()  # same network and inputs
    for name in ("stem", "res1.conv1"):
        assert np.array_equal(lava.spikes[name], ref.spikes[name]), name
    assert not np.array_equal(lava.spikes["res1"], ref.spikes["res1"])


@pytest.mark.parametrize("index, arch", [(0, "resnet19"), (1, "vggsnn")])
def test_the_papers_networks_match_bit_for_bit(runs, index, arch):
    """ResNet-19 and VGGSNN at 1/16 width: Lava == the integer reference == torch fake-quant on
    every layer, and the layers fire (a test of something)."""
    import torch

    from export.fake_quant import run_fake_quant

    job, ref, lava = runs.jobs["paper"][index], runs.refs["paper"][index], runs.lava["paper"][index]
    assert len(job.graph.nodes) == (19 if arch == "resnet19" else 9)
    assert_same(ref, lava, arch)
    spikes, membranes = run_fake_quant(job.graph, torch.as_tensor(job.inputs), job.timesteps, LOIHI2)
    assert np.array_equal(membranes.numpy(), ref.readout)
    for name, fired in spikes.items():
        assert np.array_equal(fired.numpy(), ref.spikes[name]), name
    rates = [float(s.mean()) for s in ref.spikes.values()]
    assert all(0 < r < 1 for r in rates), rates


# slow: Lava on 50 random graphs, about a minute on 2 cores (make test-all). make test covers it by
# tests/test_goldens.py: six of these generator's graphs with Lava's outputs recorded, equal to the
# reference, the fast path and fake-quant, and Lava run on them live
@pytest.mark.slow
def test_random_graphs_match_bit_for_bit(random_jobs):
    jobs, refs = random_jobs
    assert len(jobs) >= 50
    runs = [run for run, _ in _lava(run_lava_jobs, jobs)]
    for seed, job, ref, lava in zip(RANDOM_SEEDS, jobs, refs, runs, strict=True):
        pads = sorted(set(delay_pads(job.graph).values()))
        assert_same(ref, lava, f"random graph {seed} ({len(job.graph.nodes)} nodes, {len(job.graph.edges)} edges, "
                               f"{job.graph.input.encoding}, pads {pads}, T={job.timesteps})")


def test_random_graphs_cover_the_graph_cases(random_jobs):
    """The generator must keep producing the cases the delay pad and the layouts must get right."""
    jobs, refs = random_jobs
    graphs = [job.graph for job in jobs]
    pads = [delay_pads(g) for g in graphs]
    cases = {
        "a pad > 1 behind a node": sum(any(p[e.name] > 1 for e in g.edges if e.source != INPUT)
                                       for g, p in zip(graphs, pads, strict=True)),
        "a shifted input edge": sum(any(p[e.name] > 0 for e in g.edges if e.source == INPUT)
                                    for g, p in zip(graphs, pads, strict=True)),
        "several edges into the readout": sum(len(g.incoming(g.readout.name)) > 1 for g in graphs),
        "a residual add into a conv node": sum(any(len(n.shape) == 3 and len(g.incoming(n.name)) > 1
                                                   for n in g.nodes) for g in graphs),
        "an identity shortcut": sum(any(e.geometry.kind == "conv" and e.weight.shape[2:] == (1, 1)
                                        and np.count_nonzero(e.weight) == e.weight.shape[0] == e.weight.shape[1]
                                        for e in g.edges) for g in graphs),
        "a dense node feeding a conv": sum(any(e.geometry.kind == "conv" and e.source != INPUT
                                               and len(g.shape(e.source)) == 1 for e in g.edges) for g in graphs),
        "event frames": sum(g.input.encoding == "event-frames" for g in graphs),
        "direct input": sum(g.input.encoding == "direct" for g in graphs),
        "a plain chain": sum(g.is_chain for g in graphs),
    }
    assert all(count >= 2 for count in cases.values()), cases
    input_edges = {(g.input.encoding, e.geometry.kind, p[e.name] > 0)
                   for g, p in zip(graphs, pads, strict=True) for e in g.edges if e.source == INPUT}
    assert len(input_edges) == 8, input_edges  # graded and binary, conv and dense, shifted or not
    rates = [ref.spikes[name].mean() for ref in refs for name in ref.spikes]
    assert sum(0.02 < r < 0.98 for r in rates) >= len(rates) // 3, "random graphs must be active"
    edges = {int(e.weight_exp) for g in graphs for e in g.edges}
    assert {-2, 0, 1} <= edges


def test_bundle_directory_runs_through_the_subprocess(tmp_path):
    """``run_lava_bundle`` hands the bundle directory itself to the child, which verifies it."""
    graph = resnet_graph("event-frames")
    floats = Graph(graph.input,
                   tuple(FloatNode(n.name, n.shape, np.zeros(n.shape[0]), 0.5, 0.5, n.readout) for n in graph.nodes),
                   tuple(FloatEdge(e.name, e.source, e.target, e.geometry, e.weight.astype(float))
                         for e in graph.edges))
    write_bundle(Bundle(target="loihi", timesteps=3, float_graph=floats, integer_graph=graph, profile=LOIHI2),
                 tmp_path)
    inputs = netgen.random_inputs(5, graph, 3, batch=2)
    timing: dict[str, float] = {}
    lava = _lava(run_lava_bundle, tmp_path, inputs, timing=timing)
    assert_same(reference.run(graph, inputs, 3, LOIHI2), lava, "bundle directory")
    assert timing["steps"] == 2 * 3 + 7


def test_digits_bundle_matches_bit_for_bit(default_run):
    """The trained and exported digits bundle (conftest's default run, shared), run as a bundle directory."""
    from hardware.bundle import read_bundle
    from training.data import DataSpec, load

    bundle = read_bundle(default_run.bundle)
    _, test, _ = load(DataSpec(**bundle.source["data"]), bundle.timesteps)
    inputs = test.pixels[:DIGITS_SAMPLES]
    timing: dict[str, float] = {}
    lava = _lava(run_lava_bundle, default_run.bundle, inputs, timing=timing)
    ref = reference.run(bundle.integer_graph, inputs, bundle.timesteps, LOIHI2)
    assert_same(ref, lava, f"digits bundle, {DIGITS_SAMPLES} test images")
    depth = bundle.integer_graph.depths()[bundle.integer_graph.readout.name]
    assert timing["steps"] == DIGITS_SAMPLES * bundle.timesteps + depth
    assert all(0.01 < ref.spikes[name].mean() < 0.9 for name in ref.spikes), "hidden nodes must be active"
    assert np.mean(lava.final_readout.argmax(axis=1) == test.labels[:DIGITS_SAMPLES]) > 0.5


# --- errors ------------------------------------------------------------------------------------


def test_missing_lava_environment_says_how_to_create_it(monkeypatch, tmp_path):
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "no-such-python"))
    with pytest.raises(LavaEnvironmentError, match="make lava-env"):
        find_lava_python()
    with pytest.raises(LavaEnvironmentError, match="make lava-env"):
        run_lava_jobs([tie_job()], in_process=False)


def test_interpreter_without_lava_is_refused_with_how_to_create_one():
    """This (main, 3.11) interpreter cannot import lava-nc: the child exits 3, and that is said."""
    with pytest.raises(LavaEnvironmentError, match="not usable .*make lava-env"):
        run_lava_jobs([tie_job()], in_process=False, python=sys.executable, timeout=LAVA_TIMEOUT_S)


def test_limits_refuse_what_lava_cannot_run_exactly():
    rng = np.random.default_rng(0)
    conv = make_link(rng, "c", "conv", (1, 4, 4), 2, du=fp.DECAY_MAX)
    out = make_link(rng, "out", "dense", (conv[1].neurons,), 2, readout=True, weight_exp=0)
    check_lava_limits(chain((1, 4, 4), conv, out), 16, 4)
    with pytest.raises(BundleError, match="no weight exponent"):  # the graph record itself refuses it
        dataclasses.replace(conv[0], weight_exp=1)
    out2 = make_link(rng, "out", "dense", (2,), 2, readout=True, weight_exp=0)
    wide = make_link(rng, "d", "dense", (1, 4, 4), 2, weight_exp=7, du=0)
    with pytest.raises(LavaLimitError, match="int32 LIF"):
        check_lava_limits(chain((1, 4, 4), wide, out2), 1 << 12, 4)
    with pytest.raises(LavaLimitError, match="conv sums .* reach 2\\^31"):
        check_lava_limits(chain((1, 4, 4), conv, out), 1 << 30, 4)
    shifted_down = make_link(rng, "d", "dense", (1, 4, 4), 2, weight_exp=-8, du=fp.DECAY_MAX)
    with pytest.raises(LavaLimitError, match="dense sums .* reach 2\\^31"):  # summed before the shift
        check_lava_limits(chain((1, 4, 4), shifted_down, out2), 1 << 22, 4)
    with pytest.raises(LavaLimitError, match="int32 source"):
        check_lava_limits(chain((1, 4, 4), conv, out), 1 << 31, 4)
    with pytest.raises(ValueError, match="0/1 spikes"):  # event frames go to Lava as binary events
        run_lava_jobs([LavaJob(resnet_graph("event-frames"), np.full((1, 2, 2, 8, 8), 2), 2)], in_process=False)


def test_limits_bound_the_sum_of_a_nodes_incoming_edges():
    """Each of three input edges stays below 2^31, their sum in the node's int32 a_in does not."""
    weight = np.full((1, 1), fp.WEIGHT_MAX, np.int64)
    edges = tuple(IntegerEdge(f"e{i}", INPUT, "out", Geometry("dense", (1,), (1,)), weight, 0, 1.0) for i in range(3))
    node = IntegerNode("out", (1,), np.zeros(1, np.int64), 0, fp.DECAY_MAX, 0, fp.VTH_MAX, 1.0, readout=True)
    graph = Graph(Input((1,), "direct", 1 << 23), (node,), edges)
    check_lava_limits(Graph(graph.input, (node,), edges[:1]), 1 << 10, 2)
    with pytest.raises(LavaLimitError, match="node out: its incoming edges' activations add up to"):
        check_lava_limits(graph, 1 << 22, 2)  # 3 * 254 * 2^22 > 2^31 > 254 * 2^22


def test_a_node_read_as_two_shapes_is_refused():
    rng = np.random.default_rng(2)
    spec = Input((1, 3, 3), "direct", 1)
    d = netgen.loihi_node(rng, "d", (12,))
    a, b = netgen.loihi_node(rng, "a", (1, 2, 2)), netgen.loihi_node(rng, "b", (1, 1, 1))
    out = netgen.loihi_node(rng, "out", (2,), readout=True)
    edges = (netgen.dense_edge(rng, INPUT, "d", 9, 12),
             netgen.conv_edge(rng, "d", "a", (3, 2, 2), 1, k=(1, 1)),
             netgen.conv_edge(rng, "d", "b", (1, 3, 4), 1, k=(3, 4)),
             netgen.dense_edge(rng, "a", "out", 4, 2), netgen.dense_edge(rng, "b", "out", 1, 2))
    with pytest.raises(LavaLimitError, match="node d: conv edges read it as different shapes"):
        layouts(Graph(spec, (d, a, b, out), edges))


# --- layout and alignment (no Lava needed) -------------------------------------------------------


def test_layouts_map_lava_neurons_back_to_bundle_order():
    rng = np.random.default_rng(1)
    d = make_link(rng, "d", "dense", (5,), 24)
    c = make_link(rng, "c", "conv", (2, 3, 4), 3, k=(2, 2))
    out = make_link(rng, "out", "dense", (c[1].neurons,), 2, readout=True)
    lay = layouts(chain((5,), d, c, out))
    assert lay["d"].shape == (24,) and lay["c"].shape == (3, 2, 3)  # conv neurons as (W, H, C)
    chw = np.arange(24).reshape(2, 3, 4)
    assert np.array_equal(lay["d"].order, chw.transpose(2, 1, 0).ravel())  # dense feeding a conv
    assert np.array_equal(np.sort(lay["c"].order), np.arange(c[1].neurons))
    assert np.array_equal(lay["out"].order, np.arange(2))
    k = np.arange(2 * 3 * 2 * 3).reshape(2, 3, 2, 3)  # (O, C, kh, kw)
    lava_k = conv_kernel_to_lava(k)
    assert lava_k.shape == (2, 3, 2, 3)  # (O, kx=kw, ky=kh, C)
    assert lava_k[1, 0, 0, 2] == k[1, 2, 1, 2]  # flipped: Lava convolves, the bundle correlates


def test_delay_pads_follow_the_depths():
    graph = resnet_graph("direct")
    assert graph.depths() == {INPUT: 0, "stem": 1, "res1.conv1": 2, "res1": 3, "res2.conv1": 4, "res2": 5,
                              "fc1": 6, "readout": 7}
    pads = delay_pads(graph)
    assert {name: p for name, p in pads.items() if p} == {"stem-res1": 1, "res1-res2": 1}
    assert lava_step(0, 0, 1, 4) == 2  # the first LIF sees input step 0 at Lava step 2 (DESIGN section 4)
    assert lava_step(1, 2, 7, 4) == 4 + 2 + 7 + 1


def test_a_job_survives_its_files(tmp_path):
    job = resnet_job("event-frames", pad_delays=False)
    write_job(tmp_path, job)
    back = read_job(tmp_path)
    assert back.timesteps == job.timesteps and back._pad_delays is False
    assert np.array_equal(back.inputs, job.inputs)
    assert back.graph.input == job.graph.input
    assert [(e.name, e.source, e.target, e.geometry) for e in back.graph.edges] == [
        (e.name, e.source, e.target, e.geometry) for e in job.graph.edges]
    for a, b in zip(back.graph.edges, job.graph.edges, strict=True):
        assert np.array_equal(a.weight, b.weight) and a.weight_exp == b.weight_exp
    for a, b in zip(back.graph.nodes, job.graph.nodes, strict=True):
        assert dataclasses.replace(a, bias_mant=b.bias_mant) == b and np.array_equal(a.bias_mant, b.bias_mant)
