"""Quantize a folded float graph to a target's integer profile (:mod:`hardware.profile`: Loihi's
widths and rounding, or an FPGA datapath's).

The scale is chosen per *destination node*: every edge into a node adds to the same membrane, so
all of them share the node's scale ``S`` (an identity shortcut, already a 1x1 conv with unit
weights, becomes explicit integer weights ``2 round(S / 2)`` like any other). Per hidden node ``n``
with float threshold ``v_th`` (Loihi's numbers in brackets: ``w_max = 254``, ``2^act_shift = 64``):

1. each incoming edge ``e``'s weight range, ``r_e = percentile(|W_e|, p)`` (``p = 100``: its
   largest weight), bounds the scale at which its weights still fit; the node takes the
   tightest: ``S_max = min_e w_max * input_scale_e / r_e`` (``input_scale_e``: ``input_max`` for
   an edge from the direct-encoded input, 1 for spikes); the node's largest bias bounds it too,
   ``2^act_shift S |b| <= bias_mant_max << bias_exp_max``: with a wide input (CIFAR's bytes,
   ``input_max`` 255) the weights alone would pick a scale whose biases Loihi's 13-bit mantissa
   cannot hold, and a coarser weight grid is a smaller loss than a clipped bias (a bias too large
   even for the smallest threshold's scale is still an error, or clipped);
2. the largest integer threshold ``vth`` whose exact scale ``S = spike_level(vth) / (2^act_shift
   v_th)`` is at most ``S_max`` (:meth:`hardware.profile.Profile.scale_for_threshold`), so that a
   float membrane exactly at ``v_th`` is exactly the smallest integer membrane that spikes
   [Loihi spikes on ``v > vth << 6``: ``S = ((vth << 6) + 1) / (64 v_th)``];
3. weights ``step * round(W_e S / (step input_scale_e))`` (Loihi: mixed-sign 8-bit, even; FPGA:
   two's complement at the profile's width, 8 or 4 bits), ``weight_exp = 0``; with ``p = 100``
   no weight goes past ``+-w_max``, so a two's-complement ``w_min = -w_max - 1`` is reached only
   by clipping (``p < 100`` needs the ``clip`` policy for the weights beyond ``r_e``);
4. bias ``2^act_shift S b`` as ``bias_mant << bias_exp`` with the smallest exponent that fits, or
   with the policy's fixed ``bias_exp`` (6 makes a Loihi bundle exactly representable in lava-dl's
   netx HDF5, which fixes ``bias_exp = 6``: see ``hardware.targets.loihi.netx``);
5. decay: the profile's code nearest ``beta`` (Loihi ``dv = round((1 - beta) 4096)``); a current
   stage, where the profile has one, gets no memory (Loihi ``du = 4095``).

The readout never spikes: its decay code keeps the membrane (it sums), ``vth`` is maximal, and its
scale is also bounded so that ``T`` steps of the calibration set's largest logit stay within half
the threshold. Under a profile whose synapse sums are ``checked`` (the FPGA profiles: no wrap in
the accumulator), a node whose worst-case sum does not fit is an error naming it.

A value outside its integer range is an error naming the layer and the value, unless the policy
says ``clip``: then it is clipped, counted in the record and reported as a warning.

Steps 1-2 and the exponent of step 4 may instead be *pinned* per node (:class:`Pin`, in the
policy's ``pins``): a node's ``vth``, scale and bias exponent chosen beforehand. Quantization-aware
fine-tuning (:mod:`export.finetune`) trains at fixed pins and records them in its checkpoint, so
that exporting it quantizes with exactly the scales it was trained at; steps 3-5 are unchanged.
The rounding of steps 3 and 4 is written once, array-generic (:func:`weight_levels`,
:func:`bias_levels`), for numpy here and for torch in the fine-tuning forward.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from hardware.graph import INPUT, FloatEdge, FloatNode, Graph, IntegerEdge, IntegerNode
from hardware.profile import Profile

ON_OVERFLOW = ("error", "clip")


class RangeError(ValueError):
    """A quantized value does not fit the target's integer range; ``field`` names which
    (``weight``, ``bias_mant``)."""

    def __init__(self, message: str, field: str):
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class Pin:
    """A node's quantization chosen beforehand instead of from its weight range: its integer
    threshold, its membrane scale ``S`` (for a hidden node, :meth:`~hardware.profile.Profile.
    scale_for_threshold` of ``vth``) and its bias exponent (None: the policy's rule; fine-tuning
    always pins it, calibration never does)."""

    vth: int
    scale: float
    bias_exp: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"vth": self.vth, "scale": self.scale, "bias_exp": self.bias_exp}

    @classmethod
    def from_dict(cls, values: Any, where: str, profile: Profile | None = None) -> Pin:
        """A pin from its dict, refusing anything but the three fields with their types; with
        ``profile``, ``vth`` and ``bias_exp`` must also lie in its ranges."""
        if not isinstance(values, dict) or set(values) != {"vth", "scale", "bias_exp"}:
            raise ValueError(f"{where}: a pin holds vth, scale and bias_exp, got {values!r:.120}")
        vth, scale, bias_exp = values["vth"], values["scale"], values["bias_exp"]
        integers = all(isinstance(v, int) and not isinstance(v, bool) for v in (vth, bias_exp))
        if not (integers and isinstance(scale, float) and math.isfinite(scale) and scale > 0 and vth >= 0
                and bias_exp >= 0):
            raise ValueError(f"{where}: vth and bias_exp must be integers >= 0 and scale a positive float, "
                             f"got {values!r:.120}")
        for name, value in (("vth", vth), ("bias_exp", bias_exp)):
            lo, hi = profile.ranges()[name] if profile is not None else (0, value)
            if not lo <= value <= hi:
                raise ValueError(f"{where}: {name} {value} outside [{lo}, {hi}] of profile {profile.name}")
        return cls(vth, scale, bias_exp)


def pins_of(graph: Graph) -> dict[str, Pin]:
    """The pins that reproduce an integer graph's scales (:func:`quantize` with them gives it back
    from the same float graph)."""
    return {n.name: Pin(int(n.vth), float(n.scale), int(n.bias_exp)) for n in graph.nodes}


def weight_levels(weight, scale: float, input_scale: float, step: int):
    """Step 3 before rounding: float weights (numpy or torch) in units of the weight grid's step,
    ``W S / (step input_scale)``; the integer weight is ``step`` times it, rounded."""
    return weight * scale / (input_scale * step)


def bias_levels(bias, scale: float, act_shift: int, bias_exp: int):
    """Step 4 before rounding: float biases (numpy or torch) in units of ``2^bias_exp``,
    ``2^act_shift S b / 2^bias_exp``; ``bias_mant`` is it, rounded."""
    return bias * scale * (1 << act_shift) / (1 << bias_exp)


@dataclass(frozen=True)
class QuantPolicy:
    on_overflow: str = "error"  #: error | clip
    weight_percentile: float = 100.0  #: range of |W| mapped onto the full weight range
    readout_headroom: float = 0.5  #: fraction of the readout's range the calibration may use
    bias_exp: int | None = None  #: fixed bias exponent (Loihi 6: netx-exact); None: smallest that fits
    pins: Mapping[str, Pin] | None = None  #: nodes whose vth, scale and bias exponent are given (module doc)
    calibrate: bool = False  #: the exporters pin hidden scales from activation statistics (export.calibrate)

    def __post_init__(self) -> None:
        if self.on_overflow not in ON_OVERFLOW:
            raise ValueError(f"on_overflow must be one of {ON_OVERFLOW}, got {self.on_overflow!r}")
        if not 0 < self.weight_percentile <= 100:
            raise ValueError(f"weight percentile must lie in (0, 100], got {self.weight_percentile}")
        if not 0 < self.readout_headroom <= 1:
            raise ValueError(f"readout headroom must lie in (0, 1], got {self.readout_headroom}")
        if self.bias_exp is not None and self.bias_exp < 0:
            raise ValueError(f"bias_exp must be >= 0, got {self.bias_exp}")


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


def _bias_to_mant_exp(bias: np.ndarray, scale: float, layer: str, policy: QuantPolicy, profile: Profile,
                      warnings: list[str], fixed_exp: int | None) -> tuple[np.ndarray, int, int]:
    """Float bias -> (bias_mant, bias_exp, clipped count): at ``fixed_exp`` if given, else at the
    smallest exponent that fits."""
    lo, hi = profile.bias_mant_min, profile.bias_mant_max
    if fixed_exp is not None:
        exp = fixed_exp
        if not profile.bias_exp_min <= exp <= profile.bias_exp_max:
            raise ValueError(f"bias_exp {exp} outside [{profile.bias_exp_min}, {profile.bias_exp_max}] "
                             f"of profile {profile.name}")
        mant = _to_int(bias_levels(bias, scale, profile.act_shift, exp))
        mant, n = _fit(mant, lo, hi, "bias_mant", layer, policy, warnings, f"at bias_exp={exp}")
        return mant, exp, n
    for exp in range(profile.bias_exp_min, profile.bias_exp_max + 1):
        mant = _to_int(bias_levels(bias, scale, profile.act_shift, exp))
        if mant.size == 0 or (mant.min() >= lo and mant.max() <= hi):
            return mant, exp, 0
    mant, n = _fit(mant, lo, hi, "bias_mant", layer, policy, warnings, f"at bias_exp={exp}")
    return mant, exp, n


def _edge_weights(edge: FloatEdge, scale: float, input_scale: float, policy: QuantPolicy, profile: Profile,
                  warnings: list[str]) -> tuple[IntegerEdge, int]:
    step = profile.weight_step
    weight_f = step * np.rint(weight_levels(edge.weight, scale, input_scale, step))
    if not np.all(np.isfinite(weight_f)):  # never let NaN or infinity become an integer
        raise RangeError(f"edge {edge.name}: weight is not finite at scale {scale:g}; it cannot be quantized")
    weight, clipped = _fit(_to_int(weight_f), profile.weight_min, profile.weight_max, "weight", edge.name, policy,
                           warnings)
    record = IntegerEdge(name=edge.name, source=edge.source, target=edge.target, geometry=edge.geometry,
                       weight=weight, weight_exp=0, input_scale=float(input_scale))
    return record, clipped


def quantize_node(node: FloatNode, edges: tuple[FloatEdge, ...], input_max: int, readout_limit: float | None,
                  policy: QuantPolicy, profile: Profile
                  ) -> tuple[IntegerNode, tuple[IntegerEdge, ...], dict[str, Any], list[str]]:
    """One float node and its incoming edges -> their integer records, the range record, warnings."""
    warnings: list[str] = []
    input_scales = [float(input_max) if e.source == INPUT else 1.0 for e in edges]
    ranges_used = [float(np.percentile(np.abs(e.weight), policy.weight_percentile)) if e.weight.size else 0.0
                   for e in edges]
    s_max = min((profile.weight_max * c / r for c, r in zip(input_scales, ranges_used, strict=True) if r > 0),
                default=math.inf)
    bias_range = float(np.abs(node.bias).max(initial=0.0))
    s_bias = ((profile.bias_mant_max << profile.bias_exp_max) / ((1 << profile.act_shift) * bias_range)
              if bias_range > 0 else math.inf)
    bound = "weights" if s_max <= s_bias else "biases"
    s_max = min(s_max, s_bias)
    pin = (policy.pins or {}).get(node.name)
    if pin is not None:
        scale = pin.scale
        vth, dv = (profile.vth_max, profile.decay_none) if node.readout else (pin.vth, profile.beta_to_code(node.beta))
    elif node.readout:
        scale = min(s_max, readout_limit if readout_limit is not None else math.inf)
        if not math.isfinite(scale):
            scale = 1.0
        vth, dv = profile.vth_max, profile.decay_none
    else:
        vth = profile.threshold_for_scale(node.v_th, s_max)
        scale = profile.scale_for_threshold(vth, node.v_th)
        dv = profile.beta_to_code(node.beta)
    bias_v = node.bias * scale * (1 << profile.act_shift)
    if not np.all(np.isfinite(bias_v)):
        raise RangeError(f"layer {node.name}: bias is not finite at scale {scale:g}; the layer cannot be "
                         f"quantized (are its weights all near zero?)", "bias_mant")
    records, edge_ranges, w_clipped, worst = [], {}, 0, 0
    for edge, c, r in zip(edges, input_scales, ranges_used, strict=True):
        record, clipped = _edge_weights(edge, scale, c, policy, profile, warnings)
        records.append(record)
        w_clipped += clipped
        worst += int(record.worst_sums(int(c)).max(initial=0))
        edge_ranges[edge.name] = {"source": edge.source, "input_scale": c, "weight_range_used": r,
                                  "clipped_weight": clipped}
    bias_mant, bias_exp, b_clipped = _bias_to_mant_exp(node.bias, scale, node.name, policy, profile, warnings,
                                                       policy.bias_exp if pin is None or pin.bias_exp is None
                                                       else pin.bias_exp)
    du = profile.decay_max if profile.current_stage else 0  # a current without memory: u = a << act_shift
    record = IntegerNode(name=node.name, shape=node.shape, bias_mant=bias_mant, bias_exp=bias_exp,
                         du=du, dv=dv, vth=vth, scale=float(scale), readout=node.readout)
    ranges = {
        "scale": float(scale),
        "scale_bound": "pinned" if pin is not None else "readout range" if node.readout and scale < s_max else bound,
        "pinned": pin is not None,
        "weight_percentile": policy.weight_percentile,
        "edges": edge_ranges,
        "vth": vth,
        "dv": dv,
        "beta": node.beta,
        "beta_quantized": profile.code_to_beta(dv),
        "bias_exp": bias_exp,
        "activation_worst_case": worst,
        "clipped": {"weight": w_clipped, "bias": b_clipped},
    }
    return record, tuple(records), ranges, warnings


def quantize(graph: Graph, readout_bound: float, policy: QuantPolicy | None, profile: Profile
             ) -> tuple[Graph, dict[str, Any], list[str]]:
    """Quantize a folded graph to ``profile``. ``readout_bound``: the calibration's largest
    ``|sum_t I_t|``."""
    policy = policy or QuantPolicy()
    unknown = sorted(set(policy.pins or {}) - {n.name for n in graph.nodes})
    if unknown:
        raise ValueError(f"pins name node(s) the graph does not have: {', '.join(unknown)}")
    readout_limit = None
    if readout_bound > 0:
        readout_limit = (policy.readout_headroom * (profile.vth_max << profile.vth_shift)
                         / ((1 << profile.act_shift) * readout_bound))
    nodes, edges, ranges, warnings = [], {}, {}, []
    for node in graph.nodes:
        record, edge_records, rng, warn = quantize_node(node, graph.incoming(node.name), graph.input.input_max,
                                                        readout_limit, policy, profile)
        nodes.append(record)
        edges.update({e.name: e for e in edge_records})
        ranges[node.name] = rng
        warnings.extend(warn)
    summary = {
        "profile": profile.name,
        "policy": {"on_overflow": policy.on_overflow, "weight_percentile": policy.weight_percentile,
                   "readout_headroom": policy.readout_headroom, "bias_exp": policy.bias_exp,
                   "pinned": sorted(policy.pins or {}), "calibrate": policy.calibrate},
        "readout_calibration_bound": readout_bound,
        "layers": ranges,
    }
    quantized = Graph(graph.input, tuple(nodes), tuple(edges[e.name] for e in graph.edges))
    excess = profile.accumulator_excess(quantized, graph.input.input_max)
    if excess:
        name, worst = excess[0]
        raise RangeError(f"layer {name}: worst-case synaptic sum {worst} does not fit the {profile.synapse_bits}-bit "
                         f"accumulator of profile {profile.name}; lower --weight-percentile", "accumulator")
    return quantized, summary, warnings


def quantized_betas(graph: Graph, profile: Profile) -> dict[str, float]:
    """The decays the hardware applies, per hidden node (for the float-with-quantized-beta run)."""
    return {node.name: profile.code_to_beta(node.dv) for node in graph.hidden}


# --- the inverse: what an integer record stands for in the float network -----------------------
# Each undoes one step of the module docstring at the node's scale S, so that the float network
# run with all of them (and the quantized decays) computes the integer membrane divided by
# 2^act_shift S: it differs from the integer network only by the integer state's rounding and
# overflow (:mod:`lsg_deploy.explain` measures how little that is).

def dequantized_weight(edge: IntegerEdge, target: IntegerNode) -> np.ndarray:
    """Float weights of an integer edge into ``target``: ``W_int 2^weight_exp input_scale / S``.

    The inverse of step 3 (``W_int = step round(W S / (step input_scale))``, ``weight_exp = 0``):
    a source value ``x`` (a spike, or a pixel over ``input_max``) reaches the integer node as
    ``input_scale x`` and adds ``W_int 2^weight_exp input_scale x`` to the activation, which is
    ``2^act_shift S`` times the float current it stands for once shifted into the membrane. A
    negative ``weight_exp`` (never written by :func:`quantize`) floors the sum in the integer
    network; its dequantized weight is the exact quotient."""
    return edge.weight.astype(np.float64) * 2.0 ** int(edge.weight_exp) * edge.input_scale / target.scale


def dequantized_bias(node: IntegerNode, profile: Profile) -> np.ndarray:
    """Float bias per channel of an integer node: ``bias_mant 2^bias_exp / (2^act_shift S)``, the
    inverse of step 4 (``bias_mant << bias_exp = round(2^act_shift S b)``)."""
    return node.bias_mant.astype(np.float64) * 2.0 ** int(node.bias_exp) / ((1 << profile.act_shift) * node.scale)


#: membrane units a threshold that decides as the integer network does is moved past a rounding
#: boundary: far above float64's rounding of a membrane, far below one integer unit
TIE_MARGIN = 2.0**-10


def decay_rounding_offset(profile: Profile) -> tuple[float, bool]:
    """``(r, closed)``: a decayed membrane ``y >= 0`` (``x`` times the decay, before rounding)
    plus an integer ``k`` reaches an integer level ``L`` after the profile's rounding exactly when
    ``y + k >= L - r`` (``closed``) or ``y + k > L - r``: floor and toward-zero (on ``y >= 0``)
    keep ``y``'s integer part (r = 0); half-up adds 1/2 first (r = 1/2); the shift form
    ``x - (x >> code)`` rounds the decayed value up (r = 1, open)."""
    if profile.decay_form == "shift":
        return 1.0, False
    return (0.5, True) if profile.decay_rounding == "half-up" else (0.0, True)


def dequantized_threshold(node: IntegerNode, profile: Profile, decide_as_integer: bool = False) -> float:
    """The float threshold an integer node applies: its smallest spiking membrane over the scale,
    ``spike_level(vth) / (2^act_shift S)`` (Loihi: ``((vth << 6) + 1) / (64 S)``). Step 2 picks
    ``S`` from ``vth`` so that this is the float ``v_th`` again, up to float rounding.

    ``decide_as_integer``: ``(spike_level(vth) - r -+ TIE_MARGIN) / (2^act_shift S)`` instead
    (:func:`decay_rounding_offset`; minus the margin for a closed bound, plus for an open one).
    To an integer membrane every threshold in ``(level - 1, level]`` is the same, but a float
    membrane standing for one (the integer network's state divided by its scale) differs from it
    by the decay's rounding, and by float rounding at an exact tie, frequent when the integers
    are small. This threshold spikes exactly when the integer membrane would after one rounded
    decay from the same state, and breaks ties as the integer comparison does."""
    level = float(profile.spike_level(node.vth))
    if decide_as_integer:
        offset, closed = decay_rounding_offset(profile)
        level = level - offset + (-TIE_MARGIN if closed else TIE_MARGIN)
    return level / ((1 << profile.act_shift) * node.scale)
