"""The fixed-point profile: one integer LIF step, identical on numpy arrays and torch tensors; decay
codes and betas as an inverse pair whose ties go to the smaller code; the input width."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from hardware import fixed_point as fp
from hardware.profile import Profile, ProfileError, round_half_down
from hardware.targets import profiles
from hardware.targets.fpga.profiles import FPGA_MUL, FPGA_MUL4, FPGA_SHIFT, twos_complement_weights
from hardware.targets.loihi.profile import LOIHI2

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
    assert profiles()[LOIHI2.name] is LOIHI2
    assert LOIHI2.ranges()["weight"] == (fp.WEIGHT_MIN, fp.WEIGHT_MAX)
    assert LOIHI2.decay_max == fp.DECAY_MAX and LOIHI2.state_limit == fp.STATE_LIMIT


@pytest.mark.parametrize("change, message", [
    ({"current_overflow": "ignore"}, "overflow rule"),
    ({"decay_rounding": "nearest"}, "rounding"),
    ({"weight_min": 5}, "inconsistent"),
    ({"state_bits": 24.0}, "integer"),
    ({"input_bits": 1}, "inconsistent"),
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


def test_round_half_down_sends_exact_ties_to_the_smaller_integer():
    assert [round_half_down(x) for x in (1.5, 2.5, -0.5, 0.5, 1.4999999999999998, 1.5000000000000002)] == \
        [1, 2, -1, 0, 1, 2]
    assert round(1.5) == 2  # what the rounding replaced: ties to even


@pytest.mark.parametrize("profile, beta, smaller", [
    (LOIHI2, 1 - 3 / 8192, 1),  # (1 - beta) 4096 = 1.5 exactly: code 1, where round() gives 2
    (LOIHI2, 1 - 4094.5 / 4096, 4094),  # 4094.5: the tie below the largest code
    (FPGA_MUL, 3 / 2048, 1),  # beta 1024 = 1.5: code 1
    (FPGA_MUL, 1 - 1 / 2048, 1023),  # 1023.5
    (FPGA_MUL4, 2047 / 2048, 1023),
    (FPGA_SHIFT, 0.625, 1),  # halfway between 1 - 2^-1 and 1 - 2^-2
    (FPGA_SHIFT, 1 - 2.0**-16, 15),  # halfway between 1 - 2^-15 and no decay (1)
])
def test_beta_to_code_sends_an_exact_tie_to_the_smaller_code(profile, beta, smaller):
    """Betas halfway between two codes' decays, exactly, in binary floating point."""
    neighbours = (profile.code_to_beta(smaller), profile.code_to_beta(smaller + 1))
    assert beta - neighbours[0] == neighbours[1] - beta  # an exact tie, no rounding in the check
    assert profile.beta_to_code(beta) == smaller
    assert profile.beta_to_code(np.nextafter(beta, neighbours[1])) == smaller + 1  # just past it


@pytest.mark.parametrize("profile", list(profiles().values()), ids=list(profiles()))
def test_codes_and_betas_are_an_inverse_pair(profile):
    """code -> beta -> code on every code, and beta -> code -> beta lands on the nearest code."""
    codes = range(profile.decay_max + 1)
    assert [profile.beta_to_code(profile.code_to_beta(c)) for c in codes] == list(codes)
    betas = np.array([profile.code_to_beta(c) for c in codes])
    for beta in np.random.default_rng(0).random(200):
        code = profile.beta_to_code(float(beta))
        assert abs(betas[code] - beta) == np.abs(betas - beta).min()


def test_an_input_wider_than_the_profile_carries_is_refused():
    from hardware.graph import BundleError, Input

    assert LOIHI2.input_limit == (1 << 23) - 1 and FPGA_MUL.input_limit == (1 << 23) - 1
    LOIHI2.check_input(Input((1,), "direct", (1 << 23) - 1))
    with pytest.raises(BundleError, match="input_max 8388608 exceeds 8388607"):
        LOIHI2.check_input(Input((1,), "direct", 1 << 23))
