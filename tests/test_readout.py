"""The readout is a pure integrator: it never fires, and a membrane that reaches the voltage limit
stays there (a LIF readout would fire and reset to 0, and the winning class would lose its
evidence). The reference, its fast path and fake-quant compute it with the profile's one step; the
RTL's golden vectors (tests/test_goldens.py) hold readouts at the limit too. Lava's LIF cannot turn
its threshold off, so the Loihi target refuses, at export and in the Lava backend, a network whose
readout could pass that threshold.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from export.fake_quant import run_fake_quant
from hardware import fast_reference, reference
from hardware.bundle import read_bundle
from hardware.graph import Geometry, Graph, Input, IntegerEdge, IntegerNode
from hardware.targets import TARGETS
from hardware.targets.loihi import readout_refuses
from hardware.targets.loihi.profile import LOIHI2
from lsg_deploy.cli import main
from tests import minimal_target
from tests.netgen import PROFILES, random_graph, random_inputs, rotation, rotation_id


def _loud_readout(profile, fan_in: int, weight: int) -> Graph:
    """input (fan_in pixels of 1) -> dense readout of one neuron, every weight ``weight``."""
    edge = IntegerEdge("in-out", "input", "out", Geometry("dense", (fan_in,), (1,)),
                       np.full((1, fan_in), weight, np.int64), 0, 1.0)
    du = profile.decay_max if profile.current_stage else 0
    node = IntegerNode("out", (1,), np.zeros(1, np.int64), profile.bias_exp_min, du, profile.decay_none,
                       profile.vth_max, 1.0, readout=True)
    return Graph(Input((fan_in,), "direct", 1), (node,), (edge,))


@pytest.mark.parametrize("profile", PROFILES, ids=lambda p: p.name)
def test_the_readout_never_fires_and_holds_at_the_limit(profile):
    graph = _loud_readout(profile, 64, profile.weight_max - profile.weight_max % profile.weight_step)
    limit = (1 << (profile.state_bits - 1)) - 1
    per_step = int(graph.edges[0].weight.sum()) << profile.act_shift
    x, steps = np.ones((2, 64), np.int64), limit // per_step + 4  # a few steps past the limit
    runs = {"reference": reference.run(graph, x, steps, profile),
            "fast path": fast_reference.run(graph, x, steps, profile)}
    v = runs["reference"].readout[:, :, 0]
    assert v[:, -1].tolist() == [limit, limit], "the drive reaches the limit and the readout stays there"
    assert np.all(np.diff(v, axis=1) >= 0), "never reset"
    assert runs["reference"].saturation["out"]["v_clip"] > 0
    for name, run in runs.items():
        assert np.array_equal(run.readout, runs["reference"].readout), name
        assert run.saturation == runs["reference"].saturation, name
    _, membranes = run_fake_quant(graph, torch.as_tensor(x), steps, profile)
    assert np.array_equal(membranes.numpy(), runs["reference"].readout)


@pytest.mark.parametrize("seed, profile", rotation(range(40)), ids=rotation_id)
def test_the_readout_peak_bounds_what_the_readout_reaches(seed, profile):
    """The static bound holds on random graphs driven hard (a bound that could be passed would let
    Lava fire where the specification does not)."""
    graph = random_graph(seed, profile)
    x = random_inputs(seed, graph, 4, batch=8)
    peak = profile.readout_peak(graph, 4)
    assert reference.run(graph, x, 4, profile).readout.max() <= peak


def test_loihi_refuses_a_readout_that_could_pass_lava_s_threshold():
    level = LOIHI2.vth_max << LOIHI2.vth_shift
    per_step = 254 << LOIHI2.act_shift  # one pixel of 1 through the largest weight, per step
    steps = 4
    fits = level // (steps * per_step)  # the most pixels whose worst case stays at or below the threshold
    assert readout_refuses(_loud_readout(LOIHI2, fits, 254), steps) is None
    reason = readout_refuses(_loud_readout(LOIHI2, fits + 1, 254), steps)
    assert reason is not None and reason.startswith("readout out: its membrane can reach")
    assert f"{steps * (fits + 1) * per_step} in {steps} steps, past the threshold {level}" in reason
    assert TARGETS["loihi"].refuses is readout_refuses


def test_the_default_network_s_readout_cannot_reach_lava_s_threshold(default_run):
    """The README's network is proved, not hoped, to run on Lava as specified."""
    bundle = read_bundle(default_run.bundle)
    reach = LOIHI2.readout_peak(bundle.integer_graph, bundle.timesteps)
    assert 0 < reach <= bundle.integer_graph.readout.vth << LOIHI2.vth_shift
    assert readout_refuses(bundle.integer_graph, bundle.timesteps) is None


def test_an_export_its_target_refuses_fails_whole_and_writes_nothing(tiny_model, tmp_path, capsys):
    refusing = dataclasses.replace(minimal_target.TARGET, refuses=lambda graph, steps: f"{graph.readout.name} is loud")
    out = tmp_path / "bundle"
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(TARGETS, "mcu8", refusing)
        assert main(["export", "--target", "mcu8", str(tiny_model), "--out", str(out), "--quiet"]) != 0
    err = capsys.readouterr().err
    assert "target mcu8 cannot compute this network as specified: readout is loud" in err
    assert "Traceback" not in err
    assert not out.exists() and list(tmp_path.iterdir()) == []
