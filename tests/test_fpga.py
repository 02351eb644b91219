"""The FPGA target: its integer profiles, the export and its tables, the report.

The RTL design's equality with the integer reference is tested in ``tests/test_rtl.py``; here the
profiles' arithmetic is pinned by hand-computed values, the three software executors (reference,
its fast path, torch fake-quant) are compared with ``==`` on random FPGA networks, and the tables
are parsed back and compared with the bundle's integers.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from export.fake_quant import run_fake_quant
from export.quantize import QuantPolicy, RangeError, quantize
from hardware import fast_reference, reference
from hardware.bundle import read_bundle
from hardware.fpga_tables import from_words, parse_header, read_tables, to_words
from hardware.graph import FloatEdge, FloatNode, Geometry, Graph, Input
from hardware.profile import FPGA_MUL, FPGA_SHIFT, LOIHI2, PROFILES, TARGET_PROFILES
from lsg_deploy.cli import main
from tests.netgen import fpga_inputs, random_fpga_chain

ROOT = Path(__file__).resolve().parents[1]
FPGA = (FPGA_MUL, FPGA_SHIFT)


# --- the profiles' arithmetic ----------------------------------------------------------------------

def test_multiplier_decay_rounds_half_up():
    v = np.array([100, -100, 3, -3, 1, -1, 32767, -32767])
    # code 512 halves: 50, -50, 1.5 -> 2, -1.5 -> -1 (half up), 0.5 -> 1, -0.5 -> 0
    assert FPGA_MUL.decay(v, 512).tolist() == [50, -50, 2, -1, 1, 0, 16384, -16383]
    assert FPGA_MUL.decay(v, FPGA_MUL.decay_none).tolist() == v.tolist()  # code 1024: beta exactly 1
    assert FPGA_MUL.decay(v, 0).tolist() == [0] * len(v)


def test_shift_decay_subtracts_the_floor_shift():
    v = np.array([100, -100, 3, -3, 1, -1])
    # k = 2: v - (v >>> 2): 100 - 25, -100 + 25, 3 - 0, -3 - (-1), 1 - 0, -1 - (-1)
    assert FPGA_SHIFT.decay(v, 2).tolist() == [75, -75, 3, -2, 1, 0]
    assert FPGA_SHIFT.decay(v, 0).tolist() == [0] * len(v)  # k = 0: v - v, beta 0
    assert FPGA_SHIFT.decay(v, FPGA_SHIFT.decay_none).tolist() == v.tolist()
    assert FPGA_SHIFT.code_to_beta(3) == 0.875 and FPGA_SHIFT.code_to_beta(FPGA_SHIFT.decay_none) == 1.0


def test_fpga_step_saturates_and_spikes_at_the_threshold_itself():
    a = np.array([5, 40000, -40000, 0])
    v = np.array([0, 0, 0, 32767])
    bias = np.array([0, 0, 0, 100])
    spikes, u, v2, counts = FPGA_MUL.lif_step(a, 0, v, 0, 1024, bias, vth=5)
    assert spikes.tolist() == [True, True, False, True]  # 5 >= 5: the tie spikes, as in the float model
    assert v2.tolist() == [0, 0, -32767, 0]
    assert counts == {"u_wrap": 0, "v_clip": 3}


@pytest.mark.parametrize("profile", FPGA, ids=lambda p: p.name)
def test_codes_round_trip_and_pick_the_nearest_beta(profile):
    for code in range(profile.decay_max + 1):
        assert profile.beta_to_code(profile.code_to_beta(code)) == code
    betas = np.array([profile.code_to_beta(c) for c in range(profile.decay_max + 1)])
    for beta in np.linspace(0, 1, 97):
        best = np.abs(betas - beta).min()
        assert abs(profile.code_to_beta(profile.beta_to_code(beta)) - beta) == pytest.approx(best)


@pytest.mark.parametrize("profile", FPGA, ids=lambda p: p.name)
@settings(max_examples=80, deadline=None)
@given(data=st.data())
def test_fpga_step_is_the_same_on_numpy_and_torch(profile, data):
    n = data.draw(st.integers(1, 30))
    ints = st.lists(st.integers(-(2**23), 2**23), min_size=n, max_size=n)
    a = np.array(data.draw(ints))
    v = np.array(data.draw(st.lists(st.integers(-32767, 32767), min_size=n, max_size=n)))
    bias = np.array(data.draw(st.lists(st.integers(-32767, 32767), min_size=n, max_size=n)))
    dv = data.draw(st.integers(0, profile.decay_max))
    vth = data.draw(st.integers(0, profile.vth_max))
    got_np = profile.lif_step(a, 0, v, 0, dv, bias, vth)
    got_t = profile.lif_step(torch.as_tensor(a), 0, torch.as_tensor(v), 0, dv, torch.as_tensor(bias), vth)
    assert np.array_equal(got_np[0], got_t[0].numpy()) and np.array_equal(got_np[2], got_t[2].numpy())
    assert got_np[3] == got_t[3]


def test_the_threshold_mapping_puts_the_float_threshold_on_the_integer_one():
    for profile in (*FPGA, LOIHI2):
        vth = profile.threshold_for_scale(0.5, 1234.5)
        scale = profile.scale_for_threshold(vth, 0.5)
        assert scale <= 1234.5 and profile.scale_for_threshold(vth + 1, 0.5) > 1234.5
        # a float membrane exactly at v_th is exactly the smallest integer membrane that spikes
        assert (1 << profile.act_shift) * scale * 0.5 == pytest.approx(profile.spike_level(vth), rel=1e-12)
    assert FPGA_MUL.threshold_for_scale(0.5, 1e-9) == 1  # under >=, 0 would spike on every v >= 0


def test_targets_list_their_profiles():
    assert TARGET_PROFILES == {"loihi": (LOIHI2.name,), "fpga": ("fpga-mul", "fpga-shift")}
    assert all(name in PROFILES for names in TARGET_PROFILES.values() for name in names)


# --- three executors, one arithmetic ------------------------------------------------------------------

@pytest.mark.parametrize("profile", FPGA, ids=lambda p: p.name)
@pytest.mark.parametrize("seed", range(20))
def test_reference_fast_path_and_fake_quant_agree_on_random_fpga_networks(profile, seed):
    graph = random_fpga_chain(seed, profile)
    timesteps = 5
    inputs = fpga_inputs(seed, graph, timesteps, batch=6)
    ref = reference.run(graph, inputs, timesteps, profile)
    fast = fast_reference.run(graph, inputs, timesteps, profile)
    spikes, readout = run_fake_quant(graph, torch.as_tensor(inputs), timesteps, profile)
    for name in ref.spikes:
        assert np.array_equal(fast.spikes[name], ref.spikes[name]), name
        assert np.array_equal(spikes[name].numpy(), ref.spikes[name]), name
    assert np.array_equal(fast.readout, ref.readout) and np.array_equal(readout.numpy(), ref.readout)
    assert fast.saturation == ref.saturation


# --- quantization ----------------------------------------------------------------------------------

def _dense_net(fan_in: int, weight: float, bias: float = 0.0) -> Graph:
    nodes = (FloatNode("h", (4,), np.full(4, bias), 0.3, 0.5), FloatNode("r", (2,), np.zeros(2), 1.0, 0.5, True))
    edges = (FloatEdge("h", "input", "h", Geometry("dense", (fan_in,), (4,)), np.full((4, fan_in), weight)),
             FloatEdge("r", "h", "r", Geometry("dense", (4,), (2,)), np.ones((2, 4))))
    return Graph(Input((fan_in,), "direct", 16), nodes, edges)


@pytest.mark.parametrize("profile", FPGA, ids=lambda p: p.name)
def test_quantization_to_an_fpga_profile(profile):
    q, summary, warnings = quantize(_dense_net(8, 0.2, bias=0.05), 10.0, profile=profile)
    h, r = q.nodes
    assert warnings == [] and summary["profile"] == profile.name
    assert h.du == 0 and h.bias_exp == 0 and h.dv == profile.beta_to_code(0.3)
    assert r.dv == profile.decay_none and r.vth == profile.vth_max
    assert np.abs(q.edges[0].weight).max() == 127  # the largest weight takes the largest integer
    assert h.scale == pytest.approx(h.vth / 0.5) and h.bias_mant[0] == round(0.05 * h.scale)
    profile.check(q)


def test_an_accumulator_that_could_overflow_is_an_error_naming_the_layer():
    with pytest.raises(RangeError, match=r"layer h: worst-case synaptic sum \d+ does not fit the 24-bit"):
        quantize(_dense_net(5000, 0.2), 10.0, profile=FPGA_MUL)


def test_a_bias_out_of_range_is_an_error_or_clipped_and_counted():
    with pytest.raises(RangeError, match=r"layer h: 4 bias_mant .*outside \[-32767, 32767\] \(worst 327670\)"):
        quantize(_dense_net(8, 1e-4, bias=5.0), 10.0, profile=FPGA_SHIFT)
    q, summary, warnings = quantize(_dense_net(8, 1e-4, bias=5.0), 10.0, QuantPolicy(on_overflow="clip"), FPGA_SHIFT)
    assert summary["layers"]["h"]["clipped"]["bias"] == 4 and q.nodes[0].bias_mant.max() == 32767
    assert "clipped 4 bias_mant" in warnings[0]


# --- the export, its tables and the report ------------------------------------------------------------

@pytest.fixture(scope="module")
def fpga_bundles(default_run, tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("fpga")
    out = {}
    for name in TARGET_PROFILES["fpga"]:
        out[name] = root / name
        assert main(["export", "--target", "fpga", str(default_run.model), "--out", str(out[name]),
                     "--profile", name, "--quiet"]) == 0
    return out


def test_tables_parse_back_to_the_bundles_integers(fpga_bundles):
    for name, path in fpga_bundles.items():
        bundle = read_bundle(path)
        graph = bundle.integer_graph
        tables = read_tables(path)
        arrays, defines = parse_header(path / "network.h")
        assert bundle.profile == name and tables.manifest["profile"]["name"] == name
        for e in graph.edges:
            assert np.array_equal(tables.weights[e.name], e.weight), e.name
            assert np.array_equal(arrays[f"{e.name}_WEIGHT".upper()], e.weight.ravel())
        for n in graph.nodes:
            assert np.array_equal(tables.biases[n.name], n.bias_mant)
            assert np.array_equal(arrays[f"{n.name}_BIAS".upper()], n.bias_mant)
            assert defines[f"{n.name.upper()}_VTH"] == n.vth and defines[f"{n.name.upper()}_DECAY_CODE"] == n.dv
        csv = (path / "conv1.weight.csv").read_text().splitlines()
        assert csv[0] == "o,c,i,j,weight" and csv[1] == f"0,0,0,0,{graph.edges[0].weight[0, 0, 0, 0]}"
        assert len(csv) == graph.edges[0].weight.size + 1


def test_mem_words_are_twos_complement_at_the_declared_width():
    assert to_words(np.array([-1, 127, -128, 0]), 8) == ["ff", "7f", "80", "00"]
    assert to_words(np.array([-32767, 5]), 16) == ["8001", "0005"]
    assert from_words(["ff", "80", "7f"], 8).tolist() == [-1, -128, 127]


def test_manifest_states_the_arithmetic_and_a_worked_example(fpga_bundles):
    for name, path in fpga_bundles.items():
        m = json.loads((path / "manifest.json").read_text())
        profile = PROFILES[name]
        assert m["profile"]["weight"] == {"bits": 8, "signed": True, "min": -128, "max": 127}
        assert m["profile"]["membrane"]["bits"] == 16 and m["profile"]["threshold"]["compare"] == "spike when v >= vth"
        assert m["profile"]["decay"]["form"] == profile.decay_form and m["input"]["encoding"] == "direct"
        assert [e["name"] for e in m["edges"]] == ["conv1", "conv2", "fc1", "readout"]
        assert m["edges"][1]["kernel"] == [6, 6] and m["edges"][1]["stride"] == [2, 2]
        ex = m["worked_example"]
        spikes, _, v, _ = profile.lif_step(np.array([ex["acc"]]), 0, np.array([0]), 0, ex["decay_code"],
                                           np.array([ex["bias"]]), ex["vth"])
        assert bool(spikes[0]) == ex["spike"] and int(v[0]) == ex["v_after"]
        bundle = read_bundle(path)
        assert all(f in bundle.files for f in m["files"])  # every table is checksummed by the bundle


def test_simulate_an_fpga_bundle_and_refuse_lava_for_it(fpga_bundles, tmp_path):
    report_path = tmp_path / "r.json"
    assert main(["simulate", "--fixed-point", str(fpga_bundles["fpga-mul"]), "--json", str(report_path),
                 "--quiet"]) == 0
    report = json.loads(report_path.read_text())
    assert report["profile"] == "fpga-mul" and report["target"] == "fpga"
    assert abs(report["accuracy"]["fixed_point"] - report["accuracy"]["float"]) <= 0.01
    proc = subprocess.run([sys.executable, "-m", "lsg_deploy.cli", "simulate", "--fixed-point",
                           str(fpga_bundles["fpga-shift"]), "--backend", "lava", "--quiet"],
                          cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 2 and "Lava computes the Loihi profile only" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_a_profile_of_another_target_is_refused(default_run, tmp_path):
    proc = subprocess.run([sys.executable, "-m", "lsg_deploy.cli", "export", "--target", "loihi",
                           str(default_run.model), "--out", str(tmp_path / "b"), "--profile", "fpga-mul"],
                          cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 2 and "target loihi offers loihi2-lava-0.10-fixed_pt" in proc.stderr
    assert not (tmp_path / "b").exists()


def test_a_bundle_whose_profile_does_not_hold_its_integers_is_refused(fpga_bundles, tmp_path):
    from hardware.bundle import Bundle, BundleError

    bundle = read_bundle(fpga_bundles["fpga-shift"])
    with pytest.raises(BundleError, match="dv range"):  # a shift code read as a multiplier is out of range
        dataclasses.replace(bundle, profile="fpga-mul", integer_graph=dataclasses.replace(
            bundle.integer_graph, nodes=tuple(dataclasses.replace(n, dv=1025) for n in bundle.integer_graph.nodes)))
    with pytest.raises(BundleError, match="not one of target fpga's"):
        Bundle(target="fpga", timesteps=4, float_graph=bundle.float_graph, integer_graph=bundle.integer_graph,
               profile=LOIHI2.name)
