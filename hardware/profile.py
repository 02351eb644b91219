"""Fixed-point profiles: a target's integer arithmetic as one frozen value, and the one integer
LIF step written against it.

A profile holds every width, shift, range, rounding and overflow rule of a target's neuron and
synapse arithmetic. The integer step :meth:`Profile.lif_step` is written once, array-generic: the
numpy integer reference (:mod:`hardware.reference`) and the torch fake-quant path
(:mod:`export.fake_quant`) both call it, so they cannot drift apart; Lava (and later an RTL
design) remain independent oracles that the tests compare against with ``==``.

``LOIHI2`` is Loihi 2 as Lava 0.10.0's bit-accurate ``fixed_pt`` models compute it (the facts and
their sources are in :mod:`hardware.fixed_point`). Other targets add one instance to ``PROFILES``.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from hardware import fixed_point as fp
from hardware.fixed_point import ArrayLike

#: how a value that leaves its width is brought back: ``wrap-once`` is Lava's single-step wrap of
#: the current (see ``fixed_point.wrap_current``), ``wrap`` two's complement, ``saturate`` a clip
OVERFLOW_RULES = ("wrap-once", "wrap", "saturate")
#: how a decay product is brought back to the state's scale
ROUNDING_RULES = ("toward-zero",)


class ProfileError(ValueError):
    """A profile whose fields do not make a consistent arithmetic."""


@dataclass(frozen=True)
class Profile:
    """One target's integer arithmetic. Per neuron and step, with integer activation ``a``::

        u <- overflow_current( D(u, du + 1) + (a << act_shift) )
        v <- overflow_voltage( D(v, dv) + u + bias )            bias = bias_mant << bias_exp
        spike = v > (vth << vth_shift);  v[spike] = 0

    ``D(x, d) = round(x * (2^decay_shift - d) / 2^decay_shift)`` with ``decay_rounding``.
    Conv outputs are brought to ``synapse_bits`` by ``synapse_overflow``.
    """

    name: str
    weight_min: int
    weight_max: int
    weight_step: int  #: integer weights are multiples of this (Loihi's mixed sign drops the LSB)
    bias_mant_min: int
    bias_mant_max: int
    bias_exp_min: int
    bias_exp_max: int
    decay_shift: int  #: decay codes are fractions of 2^decay_shift
    decay_rounding: str
    act_shift: int  #: synaptic input enters the current shifted left by this
    vth_shift: int  #: the threshold compares against vth << vth_shift
    vth_max: int
    state_bits: int  #: width of u and v
    current_overflow: str
    voltage_overflow: str
    synapse_bits: int
    synapse_overflow: str

    def __post_init__(self) -> None:
        for f in fields(self):
            if f.type == "int" and (isinstance(getattr(self, f.name), bool) or
                                    not isinstance(getattr(self, f.name), int)):
                raise ProfileError(f"profile {self.name}: {f.name} must be an integer")
        for rule in (self.current_overflow, self.voltage_overflow, self.synapse_overflow):
            if rule not in OVERFLOW_RULES:
                raise ProfileError(f"profile {self.name}: overflow rule {rule!r} not one of {OVERFLOW_RULES}")
        if self.decay_rounding not in ROUNDING_RULES:
            raise ProfileError(f"profile {self.name}: rounding {self.decay_rounding!r} not one of {ROUNDING_RULES}")
        if not (self.weight_min < 0 < self.weight_max and self.weight_step >= 1 and self.vth_max >= 0
                and self.bias_mant_min < 0 < self.bias_mant_max and 0 <= self.bias_exp_min <= self.bias_exp_max):
            raise ProfileError(f"profile {self.name}: inconsistent ranges")

    @property
    def decay_max(self) -> int:
        return (1 << self.decay_shift) - 1

    @property
    def state_limit(self) -> int:
        return (1 << (self.state_bits - 1)) - 1

    def ranges(self) -> dict[str, tuple[int, int]]:
        """Inclusive integer range of every per-layer field."""
        return {
            "weight": (self.weight_min, self.weight_max),
            "bias_mant": (self.bias_mant_min, self.bias_mant_max),
            "bias_exp": (self.bias_exp_min, self.bias_exp_max),
            "du": (0, self.decay_max),
            "dv": (0, self.decay_max),
            "vth": (0, self.vth_max),
        }

    def _overflow(self, x: ArrayLike, rule: str, bits: int) -> ArrayLike:
        if rule == "wrap-once":
            return fp.wrap_current(x, bits)
        if rule == "wrap":
            return fp.wrap_signed(x, bits)
        return fp.clip_voltage(x, (1 << (bits - 1)) - 1)

    def decay(self, x: ArrayLike, d: int) -> ArrayLike:
        return fp.decay(x, d, self.decay_shift)

    def synapse(self, raw: ArrayLike) -> ArrayLike:
        """A conv layer's exact integer output brought to the synapse width."""
        return self._overflow(raw, self.synapse_overflow, self.synapse_bits)

    def lif_step(self, a: ArrayLike, u: ArrayLike, v: ArrayLike, du: int, dv: int, bias: ArrayLike, vth: int
                 ) -> tuple[ArrayLike, ArrayLike, ArrayLike, dict[str, int]]:
        """One step for int64 arrays or tensors (any shape, ``bias`` broadcast); returns
        ``(spikes, u, v, counts)`` with how many currents overflowed and membranes saturated."""
        u_raw = self.decay(u, du + 1) + (a << self.act_shift)
        u = self._overflow(u_raw, self.current_overflow, self.state_bits)
        v_raw = self.decay(v, dv) + u + bias
        v = self._overflow(v_raw, self.voltage_overflow, self.state_bits)
        counts = {"u_wrap": fp.count(u != u_raw), "v_clip": fp.count(v != v_raw)}
        spikes = v > (int(vth) << self.vth_shift)
        return spikes, u, fp.where(spikes, 0, v), counts


LOIHI2 = Profile(
    name="loihi2-lava-0.10-fixed_pt",
    weight_min=fp.WEIGHT_MIN, weight_max=fp.WEIGHT_MAX, weight_step=fp.WEIGHT_STEP,
    bias_mant_min=fp.BIAS_MANT_MIN, bias_mant_max=fp.BIAS_MANT_MAX,
    bias_exp_min=fp.BIAS_EXP_MIN, bias_exp_max=fp.BIAS_EXP_MAX,
    decay_shift=fp.DECAY_SHIFT, decay_rounding="toward-zero",
    act_shift=fp.ACT_SHIFT, vth_shift=fp.VTH_SHIFT, vth_max=fp.VTH_MAX,
    state_bits=fp.STATE_BITS, current_overflow="wrap-once", voltage_overflow="saturate",
    synapse_bits=fp.CONV_OUT_BITS, synapse_overflow="wrap",
)

PROFILES: dict[str, Profile] = {LOIHI2.name: LOIHI2}
