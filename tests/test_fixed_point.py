"""Loihi fixed-point helpers: inverse pairs, Loihi's rounding, wraps, and the threshold tie."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from hardware import fixed_point as fp
from hardware.targets.loihi.profile import LOIHI2


def test_dv_beta_round_trip_is_exact_on_every_code():
    codes = np.arange(fp.DECAY_MAX + 1)
    assert all(LOIHI2.beta_to_code(LOIHI2.code_to_beta(int(d))) == d for d in codes)


@given(st.floats(min_value=0.0, max_value=1.0))
def test_beta_dv_round_trip_within_half_a_step(beta):
    back = LOIHI2.code_to_beta(LOIHI2.beta_to_code(beta))
    assert abs(back - beta) <= 0.5 / fp.DECAY_UNITY + 1e-12 or LOIHI2.beta_to_code(beta) == fp.DECAY_MAX


@given(st.lists(st.integers(min_value=-(2**40), max_value=2**40), min_size=1, max_size=50),
       st.integers(min_value=0, max_value=20))
def test_shift_toward_zero_is_truncating_division(values, shift):
    got = fp.shift_toward_zero(np.array(values, dtype=np.int64), shift)
    expected = [int(v / 2**shift) if abs(v) < 2**52 else (abs(v) >> shift) * (1 if v >= 0 else -1) for v in values]
    assert got.tolist() == expected


def test_decay_rounds_toward_zero_symmetrically():
    x = np.array([1000, -1000, 4095, -4095, 1, -1])
    assert fp.decay(x, 1).tolist() == [999, -999, 4094, -4094, 0, 0]
    assert fp.decay(x, 0).tolist() == x.tolist()
    assert fp.decay(x, 4096).tolist() == [0] * 6


def test_wrap_current_is_lavas_single_step_wrap():
    lim = 2**23
    u = np.array([lim - 1, lim, lim + 1, -lim + 1, -lim, -lim - 1, 3 * lim])
    assert fp.wrap_current(u).tolist() == [lim - 1, lim, -lim + 1, -lim + 1, lim, lim - 1, lim]


def test_wrap_signed_is_twos_complement():
    x = np.array([2**23 - 1, 2**23, -(2**23), -(2**23) - 1, 2**24 + 5])
    assert fp.wrap_signed(x, 24).tolist() == [2**23 - 1, -(2**23), -(2**23), 2**23 - 1, 5]


def test_clip_voltage():
    assert fp.clip_voltage(np.array([2**23, -(2**23), 5])).tolist() == [2**23 - 1, -(2**23) + 1, 5]


@given(st.integers(min_value=0, max_value=fp.VTH_MAX), st.floats(min_value=0.01, max_value=10.0))
def test_float_threshold_maps_exactly_onto_the_first_spiking_level(vth, v_th):
    """Tie: a float membrane exactly at v_th is the integer level that spikes (v > vth << 6)."""
    scale = LOIHI2.scale_for_threshold(vth, v_th)
    level = LOIHI2.spike_level(vth)
    assert round(64 * scale * v_th) == level
    assert level > (vth << fp.VTH_SHIFT) and level - 1 <= (vth << fp.VTH_SHIFT)
