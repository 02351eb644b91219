"""The fixed-point profile: one integer LIF step, identical on numpy arrays and torch tensors."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from hardware import fixed_point as fp
from hardware.profile import (
    FPGA_MUL,
    FPGA_MUL4,
    FPGA_SHIFT,
    LOIHI2,
    PROFILES,
    Profile,
    ProfileError,
    twos_complement_weights,
)

STATE = st.integers(min_value=-(2**23) - 5, max_value=2**23 + 5)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(-(2**17), 2**17), STATE, STATE, st.integers(-(2**13), 2**13)),
                min_size=1, max_size=40),
       st.integers(0, 4095), st.integers(0, 4095), st.integers(0, fp.VTH_MAX))
def test_lif_step_is_the_same_on_numpy_and_torch(rows, du, dv, vth):
    a, u, v, bias = (np.array(col, dtype=np.int64) for col in zip(*rows, strict=True))
    got_np = LOIHI2.lif_step(a, u, v, du, dv, bias, vth)
    got_t = LOIHI2.lif_step(*(torch.as_tensor(x) for x in (a, u, v)), du, dv, torch.as_tensor(bias), vth)
    for x, y in zip(got_np[:3], got_t[:3], strict=True):
        assert np.array_equal(x, y.numpy())
    assert got_np[3] == got_t[3]


def test_lif_step_golden_values():
    """Hand-computed Loihi steps: decay toward zero, current wrap, membrane clip, strict threshold."""
    a = np.array([1, 0, 2**17, 0, 3, 2**17 + 1])
    u = np.array([0, 1000, 0, 0, 0, 0])
    v = np.array([0, -1000, 0, 2**23 - 1, 63, 0])
    bias = np.array([0, 0, 0, 5, 0, 0])
    spikes, u2, v2, counts = LOIHI2.lif_step(a, u, v, du=4095, dv=1, bias=bias, vth=3)
    # 2^17 << 6 = 2^23 is kept, as Lava does; one more wraps to -2^23 + 64; du = 4095 forgets u
    assert u2.tolist() == [64, 0, 2**23, 0, 192, -(2**23) + 64]
    # -1000 decays toward zero to -999; 2^23 clips to 2^23 - 1 and spikes; 62 + 192 > 3 << 6 spikes
    assert v2.tolist() == [64, -999, 0, 0, 0, -(2**23) + 64]
    assert spikes.tolist() == [False, False, True, True, True, False]
    assert counts == {"u_wrap": 1, "v_clip": 1}


def test_the_loihi_profile_matches_the_fixed_point_facts():
    assert PROFILES[LOIHI2.name] is LOIHI2
    assert LOIHI2.ranges()["weight"] == (fp.WEIGHT_MIN, fp.WEIGHT_MAX)
    assert LOIHI2.decay_max == fp.DECAY_MAX and LOIHI2.state_limit == fp.STATE_LIMIT


@pytest.mark.parametrize("change, message", [
    ({"current_overflow": "ignore"}, "overflow rule"),
    ({"decay_rounding": "nearest"}, "rounding"),
    ({"weight_min": 5}, "inconsistent"),
    ({"state_bits": 24.0}, "integer"),
])
def test_inconsistent_profiles_are_refused(change, message):
    with pytest.raises(ProfileError, match=message):
        dataclasses.replace(LOIHI2, **change)


def test_profile_is_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        LOIHI2.act_shift = 5  # type: ignore[misc]
    assert isinstance(LOIHI2, Profile)


def test_fpga_weights_span_their_whole_twos_complement_word():
    assert twos_complement_weights(8) == {"weight_min": -128, "weight_max": 127}
    assert twos_complement_weights(4) == {"weight_min": -8, "weight_max": 7}
    assert [p.ranges()["weight"] for p in (FPGA_MUL, FPGA_SHIFT, FPGA_MUL4)] == [(-128, 127)] * 2 + [(-8, 7)]
    with pytest.raises(ProfileError, match="weights of 1 bits"):
        twos_complement_weights(1)
