"""Quantization to the Loihi profile: ranges, the threshold mapping, overflow handling."""

from __future__ import annotations

import numpy as np
import pytest

from export.quantize import QuantPolicy, RangeError, quantize
from hardware import fixed_point as fp
from hardware.graph import FloatEdge, FloatNode, Geometry, Graph, Input
from hardware.targets.loihi.profile import LOIHI2

INPUT = Input((1, 4, 4), "direct", 16)


def _net(bias_scale: float = 0.1, seed: int = 0) -> Graph:
    """conv c -> dense h -> readout r, a chain."""
    rng = np.random.default_rng(seed)
    nodes = (FloatNode("c", (2, 4, 4), rng.normal(0, bias_scale, 2), 0.3, 0.5),
             FloatNode("h", (5,), rng.normal(0, bias_scale, 5), 0.8, 0.5),
             FloatNode("r", (3,), rng.normal(0, 0.1, 3), 1.0, 0.5, readout=True))
    edges = (FloatEdge("c", "input", "c", Geometry("conv", (1, 4, 4), (2, 4, 4), (1, 1), (1, 1)),
                       rng.normal(0, 0.3, (2, 1, 3, 3))),
             FloatEdge("h", "c", "h", Geometry("dense", (32,), (5,)), rng.normal(0, 0.2, (5, 32))),
             FloatEdge("r", "h", "r", Geometry("dense", (5,), (3,)), rng.normal(0, 0.5, (3, 5))))
    return Graph(INPUT, nodes, edges)


def _residual(shortcut_gain: float) -> Graph:
    """c -> m, then m and c (identity shortcut, scaled) both into s: one node, two edges."""
    rng = np.random.default_rng(3)
    conv = Geometry("conv", (2, 4, 4), (2, 4, 4), (1, 1), (1, 1))
    nodes = (FloatNode("c", (2, 4, 4), np.full(2, 0.05), 0.3, 0.5),
             FloatNode("m", (2, 4, 4), np.full(2, 0.02), 0.4, 0.5),
             FloatNode("s", (2, 4, 4), np.full(2, -0.01), 0.6, 0.5),
             FloatNode("r", (3,), np.zeros(3), 1.0, 0.5, readout=True))
    edges = (FloatEdge("c", "input", "c", Geometry("conv", (1, 4, 4), (2, 4, 4), (1, 1), (1, 1)),
                       rng.normal(0, 0.3, (2, 1, 3, 3))),
             FloatEdge("m", "c", "m", conv, rng.normal(0, 0.2, (2, 2, 3, 3))),
             FloatEdge("s.conv2", "m", "s", conv, rng.normal(0, 0.2, (2, 2, 3, 3))),
             FloatEdge("s.shortcut", "c", "s", Geometry("conv", (2, 4, 4), (2, 4, 4)),
                       shortcut_gain * np.eye(2)[:, :, None, None]),
             FloatEdge("r", "s", "r", Geometry("dense", (32,), (3,)), rng.normal(0, 0.5, (3, 32))))
    return Graph(INPUT, nodes, edges)


def test_integer_tables_dequantize_close_to_the_float_ones():
    graph = _net()
    q, summary, warnings = quantize(graph, readout_bound=10.0, policy=None, profile=LOIHI2)
    assert warnings == []
    for f, i, fe, ie in zip(graph.nodes, q.nodes, graph.edges, q.edges, strict=True):
        w_back = ie.weight * ie.input_scale / i.scale
        step = fp.WEIGHT_STEP * ie.input_scale / i.scale
        assert np.abs(w_back - fe.weight).max() <= step / 2 + 1e-12
        b_back = (i.bias_mant << i.bias_exp) / (64 * i.scale)
        assert np.abs(b_back - f.bias).max() <= (1 << i.bias_exp) / (64 * i.scale)
        assert np.abs(ie.weight).max() >= fp.WEIGHT_MAX - fp.WEIGHT_STEP  # the range is used
    assert [e.input_scale for e in q.edges] == [16.0, 1.0, 1.0]
    conv, hidden, readout = q.nodes
    assert conv.dv == LOIHI2.beta_to_code(0.3) and hidden.dv == LOIHI2.beta_to_code(0.8)
    assert readout.dv == 0 and readout.vth == fp.VTH_MAX
    for layer in (conv, hidden):  # the float threshold lands exactly on the first spiking level
        assert 64 * layer.scale * 0.5 == pytest.approx(LOIHI2.spike_level(layer.vth), rel=1e-12)
    assert summary["layers"]["h"]["beta_quantized"] == LOIHI2.code_to_beta(hidden.dv)


def test_readout_scale_keeps_the_calibrated_sum_in_range():
    q, _, _ = quantize(_net(), readout_bound=5000.0, policy=None, profile=LOIHI2)
    readout = q.readout
    assert 64 * readout.scale * 5000.0 <= 0.5 * (fp.VTH_MAX << fp.VTH_SHIFT) * (1 + 1e-12)


def test_a_bias_too_large_for_the_weights_scale_lowers_the_scale():
    """The biases bound the scale as the weights do: with biases 1e4 times larger, layer c takes a
    smaller scale (a coarser weight grid) and its biases fit, unclipped."""
    small, _, _ = quantize(_net(bias_scale=0.1), readout_bound=10.0, policy=None, profile=LOIHI2)
    large, summary, warnings = quantize(_net(bias_scale=1e3), readout_bound=10.0, policy=None, profile=LOIHI2)
    assert summary["layers"]["c"]["scale_bound"] == "biases" and not warnings
    assert summary["layers"]["h"]["scale_bound"] == "biases"
    assert large.nodes[0].scale < small.nodes[0].scale
    assert summary["layers"]["c"]["clipped"] == {"weight": 0, "bias": 0}
    assert quantize(_net(bias_scale=0.1), 10.0, None, LOIHI2)[1]["layers"]["c"]["scale_bound"] == "weights"


def test_bias_out_of_range_names_the_layer_and_value():
    """Too large even for the smallest threshold's scale (vth 0: S = 1 / (64 v_th))."""
    layers = _net(bias_scale=1e7)
    with pytest.raises(RangeError, match=r"layer c: .*bias_mant.*worst"):
        quantize(layers, readout_bound=10.0, policy=None, profile=LOIHI2)


def test_clip_policy_clips_counts_and_warns():
    layers = _net(bias_scale=1e7)
    q, summary, warnings = quantize(layers, 10.0, QuantPolicy(on_overflow="clip"), LOIHI2)
    assert q.nodes[0].bias_mant.max() <= fp.BIAS_MANT_MAX and q.nodes[0].bias_exp == fp.BIAS_EXP_MAX
    assert summary["layers"]["c"]["clipped"]["bias"] > 0
    assert any("layer c: clipped" in w for w in warnings)


def test_weight_percentile_below_100_needs_clipping():
    layers = _net()
    with pytest.raises(RangeError, match="weight value"):
        quantize(layers, 10.0, QuantPolicy(weight_percentile=90), LOIHI2)
    _, summary, _ = quantize(layers, 10.0, QuantPolicy(on_overflow="clip", weight_percentile=90), LOIHI2)
    assert summary["layers"]["h"]["clipped"]["weight"] > 0


def test_policy_is_validated():
    with pytest.raises(ValueError):
        QuantPolicy(on_overflow="wrap")
    with pytest.raises(ValueError):
        QuantPolicy(weight_percentile=0)


@pytest.mark.parametrize("gain", [1.0, 3.0])
def test_edges_into_one_node_share_its_scale(gain):
    """The residual node s quantizes both incoming edges at its one scale: the identity shortcut
    becomes explicit integer weights 2 round(gain S / 2) on the diagonal, zero elsewhere, and the
    tighter of the two edges' ranges sets S."""
    graph = _residual(gain)
    q, summary, _ = quantize(graph, readout_bound=10.0, policy=None, profile=LOIHI2)
    s = q.node("s")
    conv2, shortcut = (next(e for e in q.edges if e.name == n) for n in ("s.conv2", "s.shortcut"))
    diagonal = 2 * round(gain * s.scale / 2)
    assert np.array_equal(shortcut.weight[:, :, 0, 0], diagonal * np.eye(2, dtype=np.int64))
    limits = [fp.WEIGHT_MAX / np.abs(e.weight).max() for e in graph.edges if e.target == "s"]
    s_max = min(limits)
    assert s.scale <= s_max * (1 + 1e-12)
    assert LOIHI2.scale_for_threshold(s.vth + 1, 0.5) > s_max  # the largest threshold that fits
    assert max(np.abs(conv2.weight).max(), np.abs(shortcut.weight).max()) >= fp.WEIGHT_MAX - fp.WEIGHT_STEP
    assert set(summary["layers"]["s"]["edges"]) == {"s.conv2", "s.shortcut"}
