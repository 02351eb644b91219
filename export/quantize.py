"""Quantize a folded float graph to the Loihi profile (widths and rounding in ``hardware.fixed_point``).

The scale is chosen per *destination node*: every edge into a node adds to the same membrane, so
all of them share the node's scale ``S`` (an identity shortcut, already a 1x1 conv with unit
weights, becomes explicit integer weights ``2 round(S / 2)`` like any other). Per hidden node ``n``
with float threshold ``v_th``:

1. each incoming edge ``e``'s weight range, ``r_e = percentile(|W_e|, p)`` (``p = 100``: its
   largest weight), bounds the scale at which its weights still fit; the node takes the
   tightest: ``S_max = min_e 254 * input_scale_e / r_e`` (``input_scale_e``: ``input_max`` for an
   edge from the direct-encoded input, 1 for spikes);
2. the integer threshold ``vth = floor((64 v_th S_max - 1) / 64)`` and then the exact scale
   ``S = ((vth << 6) + 1) / (64 v_th)`` (``fixed_point.scale_for_threshold``), so that a float
   membrane exactly at ``v_th`` is exactly the smallest integer membrane that spikes;
3. weights ``2 * round(W_e S / (2 input_scale_e))`` (mixed-sign 8-bit, even), ``weight_exp = 0``;
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
from hardware.graph import INPUT, FloatEdge, FloatNode, Graph, LoihiEdge, LoihiNode
from hardware.profile import LOIHI2

ON_OVERFLOW = ("error", "clip")


class RangeError(ValueError):
    """A quantized value does not fit the target's integer range; ``field`` names which
    (``weight``, ``bias_mant``)."""

    def __init__(self, message: str, field: str):
        super().__init__(message)
        self.field = field


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


def _fit(values: np.ndarray, lo: int, hi: int, field: str, layer: str, policy: QuantPolicy,
         warnings: list[str], note: str = "") -> tuple[np.ndarray, int]:
    """Check integer ``values`` of ``field`` against ``[lo, hi]``; clip (and count) or raise per
    policy. ``note`` qualifies the field in messages."""
    what = f"{field} ({note})" if note else field
    bad = (values < lo) | (values > hi)
    n = int(np.count_nonzero(bad))
    if n == 0:
        return values, 0
    worst = values[bad][np.argmax(np.abs(values[bad]))]
    if policy.on_overflow == "error":
        raise RangeError(
            f"layer {layer}: {n} {what} value(s) outside [{lo}, {hi}] (worst {int(worst)}); "
            f"pass --clip to clip and count them", field
        )
    warnings.append(f"layer {layer}: clipped {n} {what} value(s) to [{lo}, {hi}] (worst {int(worst)})")
    return np.clip(values, lo, hi), n


def _bias_to_mant_exp(bias_v: np.ndarray, layer: str, policy: QuantPolicy,
                      warnings: list[str]) -> tuple[np.ndarray, int, int]:
    """Membrane-unit bias -> (bias_mant, bias_exp, clipped count), smallest exponent that fits."""
    if policy.bias_exp is not None:
        exp = policy.bias_exp
        mant = _to_int(bias_v / (1 << exp))
        mant, n = _fit(mant, fp.BIAS_MANT_MIN, fp.BIAS_MANT_MAX, "bias_mant", layer, policy, warnings,
                       f"at bias_exp={exp}")
        return mant, exp, n
    for exp in range(fp.BIAS_EXP_MIN, fp.BIAS_EXP_MAX + 1):
        mant = _to_int(bias_v / (1 << exp))
        if mant.size == 0 or (mant.min() >= fp.BIAS_MANT_MIN and mant.max() <= fp.BIAS_MANT_MAX):
            return mant, exp, 0
    mant, n = _fit(mant, fp.BIAS_MANT_MIN, fp.BIAS_MANT_MAX, "bias_mant", layer, policy, warnings,
                   f"at bias_exp={exp}")
    return mant, exp, n


def _edge_weights(edge: FloatEdge, scale: float, input_scale: float, policy: QuantPolicy,
                  warnings: list[str]) -> tuple[LoihiEdge, int]:
    step = fp.WEIGHT_STEP
    weight_f = step * np.rint(edge.weight * scale / (input_scale * step))
    if not np.all(np.isfinite(weight_f)):  # never let NaN or infinity become an integer
        raise RangeError(f"edge {edge.name}: weight is not finite at scale {scale:g}; it cannot be quantized")
    weight, clipped = _fit(_to_int(weight_f), fp.WEIGHT_MIN, fp.WEIGHT_MAX, "weight", edge.name, policy, warnings)
    record = LoihiEdge(name=edge.name, source=edge.source, target=edge.target, geometry=edge.geometry,
                       weight=weight, weight_exp=0, input_scale=float(input_scale))
    return record, clipped


def quantize_node(node: FloatNode, edges: tuple[FloatEdge, ...], input_max: int, readout_limit: float | None,
                  policy: QuantPolicy) -> tuple[LoihiNode, tuple[LoihiEdge, ...], dict[str, Any], list[str]]:
    """One float node and its incoming edges -> their Loihi records, the range record, warnings."""
    warnings: list[str] = []
    input_scales = [float(input_max) if e.source == INPUT else 1.0 for e in edges]
    ranges_used = [float(np.percentile(np.abs(e.weight), policy.weight_percentile)) if e.weight.size else 0.0
                   for e in edges]
    s_max = min((fp.WEIGHT_MAX * c / r for c, r in zip(input_scales, ranges_used, strict=True) if r > 0),
                default=math.inf)
    if node.readout:
        scale = min(s_max, readout_limit if readout_limit is not None else math.inf)
        if not math.isfinite(scale):
            scale = 1.0
        vth, dv = fp.VTH_MAX, 0
    else:
        vth = math.floor((64.0 * node.v_th * s_max - 1.0) / 64.0) if math.isfinite(s_max) else fp.VTH_MAX
        vth = min(max(vth, 0), fp.VTH_MAX)
        scale = fp.scale_for_threshold(vth, node.v_th)
        dv = fp.beta_to_dv(node.beta)
    bias_v = node.bias * scale * (1 << fp.ACT_SHIFT)
    if not np.all(np.isfinite(bias_v)):
        raise RangeError(f"layer {node.name}: bias is not finite at scale {scale:g}; the layer cannot be "
                         f"quantized (are its weights all near zero?)", "bias_mant")
    records, edge_ranges, w_clipped, worst = [], {}, 0, 0
    for edge, c, r in zip(edges, input_scales, ranges_used, strict=True):
        record, clipped = _edge_weights(edge, scale, c, policy, warnings)
        records.append(record)
        w_clipped += clipped
        worst += int(record.worst_sums(int(c)).max(initial=0))
        edge_ranges[edge.name] = {"source": edge.source, "input_scale": c, "weight_range_used": r,
                                  "clipped_weight": clipped}
    bias_mant, bias_exp, b_clipped = _bias_to_mant_exp(bias_v, node.name, policy, warnings)
    record = LoihiNode(name=node.name, shape=node.shape, bias_mant=bias_mant, bias_exp=bias_exp,
                       du=fp.DU_NO_MEMORY, dv=dv, vth=vth, scale=float(scale), readout=node.readout)
    ranges = {
        "scale": float(scale),
        "weight_percentile": policy.weight_percentile,
        "edges": edge_ranges,
        "vth": vth,
        "dv": dv,
        "beta": node.beta,
        "beta_quantized": fp.dv_to_beta(dv),
        "bias_exp": bias_exp,
        "activation_worst_case": worst,
        "clipped": {"weight": w_clipped, "bias": b_clipped},
    }
    return record, tuple(records), ranges, warnings


def quantize_loihi(graph: Graph, readout_bound: float, policy: QuantPolicy | None = None
                   ) -> tuple[Graph, dict[str, Any], list[str]]:
    """Quantize a folded graph. ``readout_bound``: the calibration's largest ``|sum_t I_t|``."""
    policy = policy or QuantPolicy()
    readout_limit = None
    if readout_bound > 0:
        readout_limit = policy.readout_headroom * (fp.VTH_MAX << fp.VTH_SHIFT) / ((1 << fp.ACT_SHIFT) * readout_bound)
    nodes, edges, ranges, warnings = [], {}, {}, []
    for node in graph.nodes:
        record, edge_records, rng, warn = quantize_node(node, graph.incoming(node.name), graph.input.input_max,
                                                        readout_limit, policy)
        nodes.append(record)
        edges.update({e.name: e for e in edge_records})
        ranges[node.name] = rng
        warnings.extend(warn)
    summary = {
        "profile": LOIHI2.name,
        "policy": {"on_overflow": policy.on_overflow, "weight_percentile": policy.weight_percentile,
                   "readout_headroom": policy.readout_headroom, "bias_exp": policy.bias_exp},
        "readout_calibration_bound": readout_bound,
        "layers": ranges,
    }
    loihi = Graph(graph.input, tuple(nodes), tuple(edges[e.name] for e in graph.edges))
    return loihi, summary, warnings


def quantized_betas(graph: Graph) -> dict[str, float]:
    """The decays the hardware applies, per hidden node (for the float-with-quantized-beta run)."""
    return {node.name: fp.dv_to_beta(node.dv) for node in graph.hidden}
