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
from tests.lava_cases import (
    chain,
    chain_jobs,
    make_link,
    paper_job,
    random_job,
    resnet_graph,
    resnet_job,
    tie_job,
)

LAVA_TIMEOUT_S = 600
CHAIN_SEEDS = (0, 1, 2, 3)
RANDOM_SEEDS = range(50)
DIGITS_SAMPLES = 60

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
