"""Loihi 2 fixed-point facts, in one place (Lava 0.10.0, ``fixed_pt`` process models).

Every width, shift and rounding rule used by the quantizer, the integer reference and the
torch fake-quant path comes from here. Read off lava-nc's own code
(``lava/proc/lif/models.py::AbstractPyLifModelFixed``, ``lava/proc/dense/models.py``,
``lava/utils/weightutils.py``, ``lava/proc/conv/models.py``).

One LIF step of a Loihi neuron with input activation ``a`` (integer), per neuron::

    u <- wrap_current( D(u, du + 1) + (a << 6) )
    v <- clip( D(v, dv) + u + (bias_mant << bias_exp), -(2^23 - 1), 2^23 - 1 )
    spike = v > (vth << 6);  v[spike] = 0

with the decay ``D(x, d) = shift_toward_zero(x * (4096 - d), 12)``. With ``du = 4095`` the
current has no memory (``u = a << 6``), which is how this project maps the seed paper's LIF
(``u[t+1] = beta u[t] (1 - o[t]) + I[t+1]``): Lava's ``v`` is the paper's membrane ``u``.
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np

# --- widths and shifts (Loihi 2, as modelled by Lava's bit-accurate CPU models) --------------
DECAY_SHIFT = 12  #: decays are 12-bit fractions of unity
DECAY_UNITY = 1 << DECAY_SHIFT  #: 4096
DECAY_MAX = DECAY_UNITY - 1  #: du, dv are unsigned 12-bit: 0..4095
ACT_SHIFT = 6  #: synaptic input is MSB-aligned by 6 bits before it enters u
VTH_SHIFT = 6  #: threshold is MSB-aligned by 6 bits
STATE_BITS = 24  #: u and v are 24-bit signed
STATE_LIMIT = (1 << (STATE_BITS - 1)) - 1  #: v saturates at +-(2^23 - 1)
VTH_MAX = (1 << 17) - 1  #: vth is unsigned 17-bit
BIAS_MANT_MIN, BIAS_MANT_MAX = -(1 << 12), (1 << 12) - 1  #: bias_mant: signed 13-bit
BIAS_EXP_MIN, BIAS_EXP_MAX = 0, 7  #: bias_exp: unsigned 3-bit
#: Mixed-sign 8-bit weights: clipped to [-256, 255], then the LSB is dropped (even values).
WEIGHT_MIN, WEIGHT_MAX, WEIGHT_STEP = -256, 254, 2
DU_NO_MEMORY = DECAY_MAX  #: du = 4095 (+1 offset) zeroes the current decay: u = a << 6
CONV_OUT_BITS = 24  #: Lava's fixed-point Conv wraps its output to signed 24 bits


ArrayLike = Any  #: a numpy array or a torch tensor of int64: the arithmetic below works on both


def _is_tensor(x: Any) -> bool:
    torch = sys.modules.get("torch")  # never imported here: hardware/ must run without torch
    return torch is not None and isinstance(x, torch.Tensor)


def as_int64(x: ArrayLike) -> ArrayLike:
    """An int64 numpy array of ``x``, or ``x`` itself if it is a tensor."""
    return x if _is_tensor(x) else np.asarray(x, dtype=np.int64)



def where(cond: ArrayLike, x: ArrayLike | int, y: ArrayLike | int) -> ArrayLike:
    """``numpy.where`` or ``torch.where``, whichever fits ``cond``."""
    if _is_tensor(cond):
        return sys.modules["torch"].where(cond, x, y)
    return np.where(cond, x, y)


def shift_toward_zero(x: ArrayLike, shift: int) -> ArrayLike:
    """Sign-magnitude right shift, Loihi's decay rounding: ``sign(x) * (|x| >> shift)``.

    It rounds toward zero, unlike the arithmetic ``>>`` of numpy and torch (toward minus
    infinity): a negative ``x`` gets ``2^shift - 1`` added first (``x >> 63`` is all ones exactly
    when ``x < 0``), the branch-free form of truncating division by ``2^shift``.
    """
    x = as_int64(x)
    return (x + ((x >> 63) & ((1 << shift) - 1))) >> shift


def decay(x: ArrayLike, d: int, shift: int = DECAY_SHIFT) -> ArrayLike:
    """``D(x, d)``: multiply by ``(2^shift - d) / 2^shift`` and round toward zero."""
    return shift_toward_zero(as_int64(x) * ((1 << shift) - int(d)), shift)


def wrap_current(u: ArrayLike, bits: int = STATE_BITS) -> ArrayLike:
    """Lava's single-step wrap of the 24-bit current ``u`` (not a full modulo).

    Values above ``2^23`` lose ``2^24``; values at or below ``-2^23`` gain ``2^24``.
    ``+2^23`` itself is kept, exactly as ``AbstractPyLifModelFixed.subthr_dynamics`` does.
    """
    lim = 1 << (bits - 1)
    u = as_int64(u)
    return where(u > lim, u - 2 * lim, where(u <= -lim, u + 2 * lim, u))


def wrap_signed(x: ArrayLike, bits: int) -> ArrayLike:
    """Two's-complement wrap to ``bits`` (Lava's ``conv.utils.signed_clamp``)."""
    base = 1 << bits
    return (as_int64(x) + base // 2) % base - base // 2


def clip_voltage(v: ArrayLike, limit: int = STATE_LIMIT) -> ArrayLike:
    """Saturate the membrane to ``[-limit, limit]`` (Loihi: ``2^23 - 1``)."""
    v = as_int64(v)
    return v.clamp(-limit, limit) if _is_tensor(v) else np.clip(v, -limit, limit)


def count(mask: ArrayLike) -> int:
    """How many entries of a boolean array or tensor are true."""
    return int(mask.sum()) if _is_tensor(mask) else int(np.count_nonzero(mask))


def effective_bias(bias_mant: ArrayLike, bias_exp: int) -> ArrayLike:
    """Bias as added to ``v`` every step: ``bias_mant << bias_exp`` (bias_exp >= 0 here)."""
    if not BIAS_EXP_MIN <= int(bias_exp) <= BIAS_EXP_MAX:
        raise ValueError(f"bias_exp {bias_exp} outside [{BIAS_EXP_MIN}, {BIAS_EXP_MAX}]")
    return as_int64(bias_mant) << int(bias_exp)


def bits_signed(lo: int, hi: int) -> int:
    """Smallest two's-complement width holding [lo, hi]."""
    return max((-int(lo) - 1).bit_length() if lo < 0 else 0, int(hi).bit_length()) + 1


def bits_unsigned(hi: int) -> int:
    """Smallest unsigned width holding [0, hi] (at least 1)."""
    return max(int(hi).bit_length(), 1)
