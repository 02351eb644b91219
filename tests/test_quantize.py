"""Quantization to the Loihi profile: ranges, the threshold mapping, overflow handling."""

from __future__ import annotations

import numpy as np
import pytest

from export.quantize import QuantPolicy, RangeError, quantize_loihi
from hardware import fixed_point as fp
from hardware.bundle import FloatLayer, Geometry


def _net(bias_scale: float = 0.1, seed: int = 0) -> tuple[FloatLayer, ...]:
    rng = np.random.default_rng(seed)
    conv = FloatLayer("c", Geometry("conv", (1, 4, 4), (2, 4, 4), (1, 1), (1, 1)),
                      rng.normal(0, 0.3, (2, 1, 3, 3)), rng.normal(0, bias_scale, 2), 0.3, 0.5)
    hidden = FloatLayer("h", Geometry("dense", (32,), (5,)), rng.normal(0, 0.2, (5, 32)),
                        rng.normal(0, bias_scale, 5), 0.8, 0.5)
    readout = FloatLayer("r", Geometry("dense", (5,), (3,)), rng.normal(0, 0.5, (3, 5)), rng.normal(0, 0.1, 3),
                         1.0, 0.5, readout=True)
    return conv, hidden, readout


def test_integer_tables_dequantize_close_to_the_float_ones():
    layers = _net()
    q, summary, warnings = quantize_loihi(layers, input_max=16, readout_bound=10.0)
    assert warnings == []
    for f, i in zip(layers, q, strict=True):
        w_back = i.weight * i.input_scale / i.scale
        step = fp.WEIGHT_STEP * i.input_scale / i.scale
        assert np.abs(w_back - f.weight).max() <= step / 2 + 1e-12
        b_back = (i.bias_mant << i.bias_exp) / (64 * i.scale)
        assert np.abs(b_back - f.bias).max() <= (1 << i.bias_exp) / (64 * i.scale)
        assert np.abs(i.weight).max() >= fp.WEIGHT_MAX - fp.WEIGHT_STEP  # the range is used
    conv, hidden, readout = q
    assert conv.dv == fp.beta_to_dv(0.3) and hidden.dv == fp.beta_to_dv(0.8)
    assert readout.dv == 0 and readout.vth == fp.VTH_MAX
    for layer in (conv, hidden):  # the float threshold lands exactly on the first spiking level
        assert 64 * layer.scale * 0.5 == pytest.approx(fp.threshold_level(layer.vth), rel=1e-12)
    assert summary["layers"]["h"]["beta_quantized"] == fp.dv_to_beta(hidden.dv)


def test_readout_scale_keeps_the_calibrated_sum_in_range():
    q, _, _ = quantize_loihi(_net(), input_max=16, readout_bound=5000.0)
    readout = q[-1]
    assert 64 * readout.scale * 5000.0 <= 0.5 * (fp.VTH_MAX << fp.VTH_SHIFT) * (1 + 1e-12)


def test_bias_out_of_range_names_the_layer_and_value():
    layers = _net(bias_scale=1e4)
    with pytest.raises(RangeError, match=r"layer c: .*bias_mant.*worst"):
        quantize_loihi(layers, input_max=16, readout_bound=10.0)


def test_clip_policy_clips_counts_and_warns():
    layers = _net(bias_scale=1e4)
    q, summary, warnings = quantize_loihi(layers, 16, 10.0, QuantPolicy(on_overflow="clip"))
    assert q[0].bias_mant.max() <= fp.BIAS_MANT_MAX and q[0].bias_exp == fp.BIAS_EXP_MAX
    assert summary["layers"]["c"]["clipped"]["bias"] > 0
    assert any("layer c: clipped" in w for w in warnings)


def test_weight_percentile_below_100_needs_clipping():
    layers = _net()
    with pytest.raises(RangeError, match="weight value"):
        quantize_loihi(layers, 16, 10.0, QuantPolicy(weight_percentile=90))
    _, summary, _ = quantize_loihi(layers, 16, 10.0, QuantPolicy(on_overflow="clip", weight_percentile=90))
    assert summary["layers"]["h"]["clipped"]["weight"] > 0


def test_policy_is_validated():
    with pytest.raises(ValueError):
        QuantPolicy(on_overflow="wrap")
    with pytest.raises(ValueError):
        QuantPolicy(weight_percentile=0)
