"""The simulate report's costs and per-class accuracy: fan-out counting against brute force,
synaptic operations on hand-made graphs, and the report's fields, text and figure on a tiny
real export (train 2 epochs -> export loihi -> simulate --fixed-point --limit 40 --json)."""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from hardware import costs
from hardware.graph import INPUT, FloatEdge, FloatNode, Geometry, Graph, Input
from hardware.reference import conv2d_int
from lsg_deploy.cli import main
from lsg_deploy.report import Report, format_report
from lsg_deploy.simulate import per_class_accuracy


def conv_edge(in_shape, out_c, kernel, stride=(1, 1), padding=(0, 0), source=INPUT, target="n1") -> FloatEdge:
    out = (out_c, *((n + 2 * p - k) // s + 1 for n, p, k, s in zip(in_shape[1:], padding, kernel, stride, strict=True)))
    return FloatEdge(f"{source}-{target}", source, target, Geometry("conv", tuple(in_shape), out, stride, padding),
                     np.ones((out_c, in_shape[0], *kernel)))


def brute_force_fan_out(edge: FloatEdge) -> np.ndarray:
    """Walk every synapse (output neuron, input channel, kernel tap) and count it at its source,
    skipping taps on the padding."""
    g = edge.geometry
    (c_in, h, w), (c_out, ho, wo) = g.input_shape, g.output_shape
    kh, kw = edge.weight.shape[2:]
    count = np.zeros(g.input_shape, np.int64)
    for _, oy, ox, c, ky, kx in itertools.product(range(c_out), range(ho), range(wo), range(c_in), range(kh),
                                                  range(kw)):
        y, x = oy * g.stride[0] - g.padding[0] + ky, ox * g.stride[1] - g.padding[1] + kx
        if 0 <= y < h and 0 <= x < w:
            count[c, y, x] += 1
    return count.reshape(-1)


@pytest.mark.parametrize("in_shape, out_c, kernel, stride, padding", [
    ((2, 6, 5), 3, (3, 3), (1, 1), (0, 0)),   # stride 1, no padding: interior 9 taps, borders fewer
    ((1, 7, 7), 2, (3, 3), (1, 1), (1, 1)),   # "same" padding
    ((2, 8, 7), 2, (3, 2), (2, 2), (1, 0)),   # stride 2, padding on one axis, non-square kernel
    ((1, 9, 6), 1, (1, 1), (2, 3), (0, 0)),   # stride beyond the kernel: some inputs reach nothing
    ((3, 5, 5), 4, (5, 5), (2, 1), (2, 2)),   # kernel as large as the input
])
def test_conv_fan_out_equals_brute_force(in_shape, out_c, kernel, stride, padding):
    edge = conv_edge(in_shape, out_c, kernel, stride, padding)
    expected = brute_force_fan_out(edge)
    np.testing.assert_array_equal(costs.fan_out(edge), expected)
    # a conv-transpose of ones, independently: the integer conv of an all-ones image counts the
    # (input, output) pairs that are not padding, which is the synapse count
    ones = conv2d_int(np.ones((1, *in_shape), np.int64), np.ones((out_c, in_shape[0], *kernel), np.int64),
                      stride, padding)
    assert costs.synapses(edge) == int(ones.sum()) == int(expected.sum())


def test_fan_out_has_border_and_stride_structure():
    edge = conv_edge((1, 5, 5), 1, (3, 3), (2, 2), (1, 1))  # outputs at rows -1..1, 1..3, 3..5
    assert costs.fan_out(edge).reshape(5, 5)[:, 0].tolist() == [1, 2, 1, 2, 1]
    assert costs.axis_fan_out(5, 3, 3, 2, 1).tolist() == [1, 2, 1, 2, 1]
    no_padding = conv_edge((2, 6, 6), 3, (3, 3))
    assert costs.synapses(no_padding) == 3 * 4 * 4 * 2 * 3 * 3  # O Ho Wo C kh kw when nothing is padding


@settings(max_examples=40, deadline=None)
@given(c_in=st.integers(1, 2), c_out=st.integers(1, 3), h=st.integers(1, 7), w=st.integers(1, 7),
       kh=st.integers(1, 4), kw=st.integers(1, 4), sh=st.integers(1, 3), sw=st.integers(1, 3),
       ph=st.integers(0, 2), pw=st.integers(0, 2))
def test_conv_fan_out_property(c_in, c_out, h, w, kh, kw, sh, sw, ph, pw):
    assume(h + 2 * ph >= kh and w + 2 * pw >= kw)  # at least one output position
    edge = conv_edge((c_in, h, w), c_out, (kh, kw), (sh, sw), (ph, pw))
    np.testing.assert_array_equal(costs.fan_out(edge), brute_force_fan_out(edge))


def test_dense_fan_out_is_out_features():
    edge = FloatEdge("d", "n1", "out", Geometry("dense", (2, 3, 3), (5,)), np.ones((5, 18)))
    np.testing.assert_array_equal(costs.fan_out(edge), np.full(18, 5))
    assert costs.synapses(edge) == 90


def tiny_graph(encoding: str) -> Graph:
    """input (1, 4, 4) -> conv 3x3 pad 1, 2 channels -> n1 (2, 4, 4) -> dense -> out (3)."""
    conv = conv_edge((1, 4, 4), 2, (3, 3), padding=(1, 1))
    dense = FloatEdge("n1-out", "n1", "out", Geometry("dense", (2, 4, 4), (3,)), np.ones((3, 32)))
    nodes = (FloatNode("n1", (2, 4, 4), np.zeros(2), 0.5, 0.5), FloatNode("out", (3,), np.zeros(3), 1.0, 1.0, True))
    return Graph(Input((1, 4, 4), encoding, 16 if encoding == "direct" else 1), nodes, (conv, dense))


def test_synops_on_a_hand_made_graph():
    graph, t = tiny_graph("direct"), 3
    spikes = np.zeros((2, t, 32), bool)  # sample 0: two spikes, sample 1: none
    spikes[0, 0, 0] = spikes[0, 2, 16 + 5] = True
    pixels = np.zeros((2, 1, 4, 4), np.int64)  # the analog input's values do not matter: every synapse, every step
    ops = {op.edge: op for op in costs.synaptic_operations(graph, {"n1": spikes}, pixels, t)}
    # conv 3x3 pad 1 on 4 positions: each axis reaches 2, 3, 3, 2 outputs, so 10 x 10 per channel pair
    assert ops["input-n1"] == costs.EdgeOps("input-n1", "n1", costs.MAC, 200.0 * t, 200)
    assert ops["n1-out"] == costs.EdgeOps("n1-out", "out", costs.AC, 2 * 3 / 2, 96)  # 2 spikes x 3 targets / 2
    assert costs.per_node(graph, list(ops.values())) == {"n1": {"ac": 0.0, "mac": 600.0},
                                                         "out": {"ac": 3.0, "mac": 0.0}}
    assert costs.energy_pj(3.0, 600.0) == pytest.approx(3 * 0.9 + 600 * 4.6)


def test_direct_input_macs_are_the_conv_mac_count_times_t():
    """With no padding, the conv's textbook MAC count O Ho Wo C kh kw per step, times T."""
    edge = conv_edge((2, 6, 6), 4, (3, 3))
    nodes = (FloatNode("n1", (4, 4, 4), np.zeros(4), 0.5, 0.5), FloatNode("out", (2,), np.zeros(2), 1.0, 1.0, True))
    dense = FloatEdge("n1-out", "n1", "out", Geometry("dense", (4, 4, 4), (2,)), np.ones((2, 64)))
    graph = Graph(Input((2, 6, 6), "direct", 16), nodes, (edge, dense))
    (first, _) = costs.synaptic_operations(graph, {"n1": np.zeros((5, 4, 64), bool)},
                                           np.full((5, 2, 6, 6), 7, np.int64), 4)
    assert first.kind == costs.MAC and first.operations == 4 * 4 * 4 * 2 * 3 * 3 * 4


def test_event_frames_are_accumulates_one_per_event():
    graph, t = tiny_graph("event-frames"), 2
    frames = np.zeros((2, t, 1, 4, 4), np.int64)
    frames[0, 0, 0, 0, 0] = 1  # a corner event reaches 2 x 2 positions x 2 channels
    frames[1, :, 0, 1, 1] = 1  # two events (one a step) at an interior position: 3 x 3 x 2 each
    ops = costs.synaptic_operations(graph, {"n1": np.zeros((2, t, 32), bool)}, frames, t)
    assert ops[0].kind == costs.AC and ops[0].operations == (8 + 2 * 18) / 2


def test_all_spikes_give_the_dense_count():
    """A source that spikes at every neuron and step costs exactly T x its synapse count."""
    graph, t = tiny_graph("direct"), 3
    ops = costs.synaptic_operations(graph, {"n1": np.ones((4, t, 32), bool)}, np.zeros((4, 1, 4, 4), np.int64), t)
    assert ops[1].operations == t * costs.synapses(graph.edges[1])


def test_energy_figures_are_horowitz_45nm():
    assert (costs.PJ_PER_AC, costs.PJ_PER_MAC) == (0.9, 4.6)
    assert costs.PJ_PER_MAC == pytest.approx(costs.PJ_PER_FLOAT32_ADD + costs.PJ_PER_FLOAT32_MULT)
    assert "Horowitz" in costs.ENERGY_SOURCE and "ISSCC 2014" in costs.ENERGY_SOURCE
    assert "not a measurement of Loihi or an FPGA" in costs.ESTIMATE_BASIS


def test_per_class_accuracy():
    acc = per_class_accuracy(np.array([0, 1, 1, 2, 0]), np.array([0, 1, 2, 2, 1]), 4)
    assert acc == {"0": 1.0, "1": 0.5, "2": 0.5, "3": None}


@pytest.fixture(scope="module")
def tiny_report(tmp_path_factory):
    root = tmp_path_factory.mktemp("costs")
    run, bundle, out = root / "run", root / "bundle", root / "report.json"
    assert main(["train", "--epochs", "2", "--timesteps", "2", "--batch-size", "128", "--lr", "0.01", "--out",
                 str(run), "--quiet"]) == 0
    assert main(["export", "--target", "loihi", str(run / "model.pt"), "--out", str(bundle), "--quiet"]) == 0
    assert main(["simulate", "--fixed-point", str(bundle), "--limit", "40", "--json", str(out), "--quiet"]) == 0
    return bundle, out, json.loads(out.read_text())


def test_report_costs_on_a_tiny_export(tiny_report):
    _, _, report = tiny_report
    t, layers, total = report["timesteps"], {row["name"]: row for row in report["layers"]}, report["costs"]
    assert total["basis"] == costs.ESTIMATE_BASIS and total["energy_source"] == costs.ENERGY_SOURCE
    assert total["synapses"] == sum(row["synops"]["synapses"] for row in report["layers"])
    assert total["ann"] == {"mac": total["synapses"], "energy_pj": pytest.approx(4.6 * total["synapses"])}
    first = layers["conv1"]["synops"]  # fed by the direct input: MACs, every synapse every step
    for run in ("float", "reference"):
        assert first[run] == {"ac": 0.0, "mac": t * first["synapses"]}
        assert total[run]["mac"] == t * first["synapses"]
        assert total[run]["ac"] == pytest.approx(sum(row["synops"][run]["ac"] for row in report["layers"]))
        assert total[run]["energy_pj"] == pytest.approx(0.9 * total[run]["ac"] + 4.6 * total[run]["mac"])
        assert total[run]["energy_vs_ann"] == pytest.approx(total[run]["energy_pj"] / total["ann"]["energy_pj"])
        # dense edges reach every target: ACs = rate x source neurons x T x target neurons
        for row in report["layers"][1:]:
            (source,) = row["inputs"]
            src = layers[source]
            if row["synops"]["synapses"] == src["neurons"] * row["neurons"]:
                expected = src[f"firing_rate_{run}"] * src["neurons"] * t * row["neurons"]
                assert row["synops"][run]["ac"] == pytest.approx(expected, rel=1e-9)
                assert row["synops"][run]["ac"] > 0  # the tiny net spikes in every layer
    assert total["reference"]["energy_pj"] < total["ann"]["energy_pj"]


def test_per_class_accuracy_averages_to_the_overall_accuracy(tiny_report):
    _, _, report = tiny_report
    per_class, counts = report["per_class"], report["per_class"]["samples"]
    assert set(per_class) == {"samples", "float", "reference"}
    assert list(counts) == [str(c) for c in range(10)] and sum(counts.values()) == report["samples"] == 40
    for model in ("float", "reference"):
        acc = per_class[model]
        assert all((acc[c] is None) == (counts[c] == 0) for c in counts)
        weighted = sum(acc[c] * counts[c] for c in counts if counts[c]) / report["samples"]
        assert math.isclose(weighted, report["accuracy"][model], abs_tol=1e-12)


def test_text_report_and_figure(tiny_report):
    bundle, out, report = tiny_report
    model = Report.from_json(report)
    text = format_report(model)
    assert "not a measurement of Loihi or an FPGA" in text and "AC 0.9 pJ, MAC 4.6 pJ" in text
    assert "Horowitz" not in text and "Horowitz" in format_report(model, verbose=True)  # sources: --verbose
    total = next(line for line in text.splitlines() if line.strip().startswith("total"))
    assert f"{report['costs']['synapses']:,}" in total
    assert any(line.split()[:1] == ["reference"] and len(line.split()) == 11 for line in text.splitlines())
    png = out.with_suffix(".png").read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 5000
    assert main(["simulate", str(bundle), "--json", str(out.with_suffix(".png")), "--quiet"]) == 2


def test_spike_counts_are_the_int64_sums_across_uint16_blocks():
    """The blocked uint16 count equals numpy's int64 sum, past one block's 65,535 rows and for
    graded (non-bool) values, which take the plain sum."""
    rng = np.random.default_rng(0)
    spikes = rng.random((costs.UINT16_ROWS + 7, 1, 3)) < 0.9
    spikes[:, :, 0] = True  # a neuron that fires every row: its count passes what uint16 holds
    counts = costs.spike_counts(spikes)
    assert counts.dtype == np.int64 and counts[0] == costs.UINT16_ROWS + 7
    assert np.array_equal(counts, spikes.sum(axis=(0, 1), dtype=np.int64))
    graded = rng.integers(0, 3, size=(5, 2, 4))
    assert np.array_equal(costs.spike_counts(graded), graded.sum(axis=(0, 1)))
