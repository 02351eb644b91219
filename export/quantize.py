"""Quantize folded float layers to the Loihi profile (widths and rounding in ``hardware.fixed_point``).

Per hidden layer ``n`` with float threshold ``v_th``:

1. the weight range used, ``r = percentile(|W|, p)`` (``p = 100``: the largest weight), sets the
   largest scale whose weights still fit: ``S_max = 254 * input_scale / r``;
2. the integer threshold ``vth = floor((64 v_th S_max - 1) / 64)`` and then the exact scale
   ``S = ((vth << 6) + 1) / (64 v_th)`` (``fixed_point.scale_for_threshold``), so that a float
   membrane exactly at ``v_th`` is exactly the smallest integer membrane that spikes;
3. weights ``2 * round(W S / (2 input_scale))`` (mixed-sign 8-bit, even), ``weight_exp = 0``;
4. bias ``64 S b`` as ``bias_mant << bias_exp`` with the smallest exponent that fits 13 bits, or
   with the policy's fixed ``bias_exp`` (6 makes the bundle exactly representable in lava-dl's
   netx HDF5, which fixes ``bias_exp = 6``: see ``export.netx``);
5. decay ``dv = round((1 - beta) 4096)``, ``du = 4095`` (the current has no memory).

The readout never spikes: ``dv = 0`` (it sums), ``vth`` maximal, and its scale is also bounded
so that ``T`` steps of the calibration set's largest logit stay within half the threshold.

A value outside its integer range is an error naming the layer and the value, unless the policy
says ``clip``: then it is clipped, counted in the record and reported as a warning.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from hardware import fixed_point as fp
from hardware.bundle import FloatLayer, LoihiLayer
from hardware.profile import LOIHI2

ON_OVERFLOW = ("error", "clip")


class RangeError(ValueError):
    """A quantized value does not fit the target's integer range."""


@dataclass(frozen=True)
class QuantPolicy:
    on_overflow: str = "error"  #: error | clip
    weight_percentile: float = 100.0  #: range of |W| mapped onto the full weight range
    readout_headroom: float = 0.5  #: fraction of the readout's range the calibration may use
    bias_exp: int | None = None  #: fixed bias exponent (6: netx-exact); None: smallest that fits

    def __post_init__(self) -> None:
        if self.on_overflow not in ON_OVERFLOW:
            raise ValueError(f"on_overflow must be one of {ON_OVERFLOW}, got {self.on_overflow!r}")
        if not 0 < self.weight_percentile <= 100:
            raise ValueError(f"weight percentile must lie in (0, 100], got {self.weight_percentile}")
        if not 0 < self.readout_headroom <= 1:
            raise ValueError(f"readout headroom must lie in (0, 1], got {self.readout_headroom}")
        if self.bias_exp is not None and not fp.BIAS_EXP_MIN <= self.bias_exp <= fp.BIAS_EXP_MAX:
            raise ValueError(f"bias_exp must lie in [{fp.BIAS_EXP_MIN}, {fp.BIAS_EXP_MAX}], got {self.bias_exp}")


def _to_int(values: np.ndarray) -> np.ndarray:
    """Round to int64, saturating far outside every target range so the sign survives the cast."""
    return np.clip(np.rint(values), -(2.0**62), 2.0**62).astype(np.int64)


def _fit(values: np.ndarray, lo: int, hi: int, what: str, layer: str, policy: QuantPolicy,
         warnings: list[str]) -> tuple[np.ndarray, int]:
    """Check integer ``values`` against ``[lo, hi]``; clip (and count) or raise per policy."""
    bad = (values < lo) | (values > hi)
    n = int(np.count_nonzero(bad))
    if n == 0:
        return values, 0
    worst = values[bad][np.argmax(np.abs(values[bad]))]
    if policy.on_overflow == "error":
        raise RangeError(
            f"layer {layer}: {n} {what} value(s) outside [{lo}, {hi}] (worst {int(worst)}); "
            f"pass --clip to clip and count them"
        )
    warnings.append(f"layer {layer}: clipped {n} {what} value(s) to [{lo}, {hi}] (worst {int(worst)})")
    return np.clip(values, lo, hi), n


def _bias_to_mant_exp(bias_v: np.ndarray, layer: str, policy: QuantPolicy,
                      warnings: list[str]) -> tuple[np.ndarray, int, int]:
    """Membrane-unit bias -> (bias_mant, bias_exp, clipped count), smallest exponent that fits."""
    if policy.bias_exp is not None:
        exp = policy.bias_exp
        mant = _to_int(bias_v / (1 << exp))
        mant, n = _fit(mant, fp.BIAS_MANT_MIN, fp.BIAS_MANT_MAX, f"bias_mant (at bias_exp={exp})", layer, policy,
                       warnings)
        return mant, exp, n
    for exp in range(fp.BIAS_EXP_MIN, fp.BIAS_EXP_MAX + 1):
        mant = _to_int(bias_v / (1 << exp))
        if mant.size == 0 or (mant.min() >= fp.BIAS_MANT_MIN and mant.max() <= fp.BIAS_MANT_MAX):
            return mant, exp, 0
    mant, n = _fit(mant, fp.BIAS_MANT_MIN, fp.BIAS_MANT_MAX, f"bias_mant (at bias_exp={exp})", layer, policy, warnings)
    return mant, exp, n


def quantize_layer(layer: FloatLayer, input_scale: float, readout_limit: float | None,
                   policy: QuantPolicy) -> tuple[LoihiLayer, dict[str, Any], list[str]]:
    """One float layer -> its Loihi record, its range record, and warnings."""
    warnings: list[str] = []
    absw = np.abs(layer.weight)
    w_range = float(np.percentile(absw, policy.weight_percentile)) if absw.size else 0.0
    s_max = fp.WEIGHT_MAX * input_scale / w_range if w_range > 0 else math.inf
    if layer.readout:
        scale = min(s_max, readout_limit if readout_limit is not None else math.inf)
        if not math.isfinite(scale):
            scale = 1.0
        vth, dv = fp.VTH_MAX, 0
    else:
        vth = math.floor((64.0 * layer.v_th * s_max - 1.0) / 64.0) if math.isfinite(s_max) else fp.VTH_MAX
        vth = min(max(vth, 0), fp.VTH_MAX)
        scale = fp.scale_for_threshold(vth, layer.v_th)
        dv = fp.beta_to_dv(layer.beta)
    step = fp.WEIGHT_STEP
    weight_f = step * np.rint(layer.weight * scale / (input_scale * step))
    bias_v = layer.bias * scale * (1 << fp.ACT_SHIFT)
    for what, values in (("weight", weight_f), ("bias", bias_v)):
        if not np.all(np.isfinite(values)):  # never let NaN or infinity become an integer
            raise RangeError(f"layer {layer.name}: {what} is not finite at scale {scale:g}; the layer cannot be "
                             f"quantized (are its weights all near zero?)")
    weight = _to_int(weight_f)
    weight, w_clipped = _fit(weight, fp.WEIGHT_MIN, fp.WEIGHT_MAX, "weight", layer.name, policy, warnings)
    bias_mant, bias_exp, b_clipped = _bias_to_mant_exp(bias_v, layer.name, policy, warnings)
    record = LoihiLayer(
        name=layer.name, geometry=layer.geometry, weight=weight, weight_exp=0,
        bias_mant=bias_mant, bias_exp=bias_exp, du=fp.DU_NO_MEMORY, dv=dv, vth=vth,
        scale=float(scale), input_scale=float(input_scale), readout=layer.readout,
    )
    fan = np.abs(weight).reshape(weight.shape[0], -1).sum(axis=1)
    ranges = {
        "scale": float(scale),
        "weight_range_used": w_range,
        "weight_percentile": policy.weight_percentile,
        "vth": vth,
        "dv": dv,
        "beta": layer.beta,
        "beta_quantized": fp.dv_to_beta(dv),
        "bias_exp": bias_exp,
        "activation_worst_case": int(fan.max() * input_scale) if fan.size else 0,
        "clipped": {"weight": w_clipped, "bias": b_clipped},
    }
    return record, ranges, warnings


def quantize_loihi(layers: tuple[FloatLayer, ...], input_max: int, readout_bound: float,
                   policy: QuantPolicy | None = None) -> tuple[tuple[LoihiLayer, ...], dict[str, Any], list[str]]:
    """Quantize a folded network. ``readout_bound``: the calibration's largest ``|sum_t I_t|``."""
    policy = policy or QuantPolicy()
    readout_limit = None
    if readout_bound > 0:
        readout_limit = policy.readout_headroom * (fp.VTH_MAX << fp.VTH_SHIFT) / ((1 << fp.ACT_SHIFT) * readout_bound)
    out, ranges, warnings = [], {}, []
    for i, layer in enumerate(layers):
        record, rng, warn = quantize_layer(layer, float(input_max) if i == 0 else 1.0, readout_limit, policy)
        out.append(record)
        ranges[layer.name] = rng
        warnings.extend(warn)
    summary = {
        "profile": LOIHI2.name,
        "policy": {"on_overflow": policy.on_overflow, "weight_percentile": policy.weight_percentile,
                   "readout_headroom": policy.readout_headroom, "bias_exp": policy.bias_exp},
        "readout_calibration_bound": readout_bound,
        "layers": ranges,
    }
    return tuple(out), summary, warnings


def quantized_betas(layers: tuple[LoihiLayer, ...]) -> dict[str, float]:
    """The decays the hardware applies, per hidden layer (for the float-with-quantized-beta run)."""
    return {layer.name: fp.dv_to_beta(layer.dv) for layer in layers if not layer.readout}
