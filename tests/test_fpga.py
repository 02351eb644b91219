"""The FPGA target: its integer profiles, the export and its tables, the report.

The RTL design's equality with the integer reference is tested in ``tests/test_rtl.py``; here the
profiles' arithmetic is pinned by hand-computed values, the three software executors (reference,
its fast path, torch fake-quant) are compared with ``==`` on random FPGA networks of every profile
(8-bit and 4-bit weights), and the tables are parsed back and compared with the bundle's integers,
at each profile's word width.
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
from hardware.graph import BundleError, FloatEdge, FloatNode, Geometry, Graph, Input
from hardware.profile import Profile
from hardware.targets import TARGETS, profiles
from hardware.targets.fpga.example import example_input
from hardware.targets.fpga.profiles import FPGA_MUL, FPGA_MUL4, FPGA_SHIFT
from hardware.targets.fpga.tables import from_words, parse_header, read_mem, read_tables, to_words
from hardware.targets.loihi.profile import LOIHI2
from lsg_deploy.cli import main
from tests.manifest_sim import c_compiler, check_c_program, check_worked_example
from tests.netgen_chains import fpga_inputs, random_fpga_chain

ROOT = Path(__file__).resolve().parents[1]
FPGA = (FPGA_MUL, FPGA_SHIFT, FPGA_MUL4)


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
    assert {name: t.profile_names for name, t in TARGETS.items()} == {
        "loihi": (LOIHI2.name,), "fpga": ("fpga-mul", "fpga-shift", "fpga-mul4")}
    assert profiles() == {p.name: p for t in TARGETS.values() for p in t.profiles}


def test_the_4_bit_profile_is_fpga_mul_but_for_its_weights():
    differ = [f.name for f in dataclasses.fields(Profile) if getattr(FPGA_MUL, f.name) != getattr(FPGA_MUL4, f.name)]
    assert differ == ["name", "description", "weight_min", "weight_max"]
    assert FPGA_MUL4.ranges()["weight"] == (-8, 7) and FPGA_MUL.ranges()["weight"] == (-128, 127)


def test_export_help_lists_the_4_bit_profile_after_the_default(monkeypatch, capsys):
    monkeypatch.setenv("COLUMNS", "10000")  # no line wrapping
    with pytest.raises(SystemExit):
        main(["export", "--help"])
    out = capsys.readouterr().out
    assert f"fpga-mul4 (target fpga): {FPGA_MUL4.description}" in out and "4-bit weights [-8, 7]" in out
    assert out.index("fpga-mul (target fpga, default)") < out.index("fpga-mul4 (target fpga)")


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
    q, summary, warnings = quantize(_dense_net(8, 0.2, bias=0.05), 10.0, None, profile)
    h, r = q.nodes
    assert warnings == [] and summary["profile"] == profile.name
    assert h.du == 0 and h.bias_exp == 0 and h.dv == profile.beta_to_code(0.3)
    assert r.dv == profile.decay_none and r.vth == profile.vth_max
    assert np.abs(q.edges[0].weight).max() == profile.weight_max  # the largest weight takes the largest integer
    assert h.scale == pytest.approx(h.vth / 0.5) and h.bias_mant[0] == round(0.05 * h.scale)
    profile.check(q)


def test_4_bit_weights_reach_minus_8_only_by_clipping_an_outlier():
    """At percentile 100 the largest |W| maps to +7, so the grid is symmetric ([-7, 7]); below it a
    negative outlier is an error, or with ``clip`` it takes the extra level -8 and is counted."""
    net = _dense_net(8, 0.2)
    weight = np.full((4, 8), 0.2)
    weight[0, :3] = (-1.0, -0.1, 0.05)
    net = Graph(net.input, net.nodes, (dataclasses.replace(net.edges[0], weight=weight), net.edges[1]))
    q, _, _ = quantize(net, 10.0, None, FPGA_MUL4)
    w = q.edges[0].weight
    assert w.min() == -7 and w[1].tolist() == [1] * 8  # 0.2 of a largest 1.0: 7 * 0.2 = 1.4 -> 1
    with pytest.raises(RangeError, match=r"layer h: 1 weight value\(s\) outside \[-8, 7\] \(worst -35\)"):
        quantize(net, 10.0, QuantPolicy(weight_percentile=50), FPGA_MUL4)
    q, summary, warnings = quantize(net, 10.0, QuantPolicy(on_overflow="clip", weight_percentile=50), FPGA_MUL4)
    w = q.edges[0].weight
    assert w[0, :3].tolist() == [-8, -4, 2] and w[1].tolist() == [7] * 8  # the percentile's 0.2 maps to 7
    assert summary["layers"]["h"]["edges"]["h"]["clipped_weight"] == 1 and "clipped 1 weight" in warnings[0]
    FPGA_MUL4.check(q)


def test_an_accumulator_that_could_overflow_is_an_error_naming_the_layer():
    with pytest.raises(RangeError, match=r"layer h: worst-case synaptic sum \d+ does not fit the 24-bit"):
        quantize(_dense_net(5000, 0.2), 10.0, None, FPGA_MUL)


def test_a_bias_out_of_range_is_an_error_or_clipped_and_counted():
    """A bias the weights' scale cannot hold lowers the scale; one too large even for the smallest
    (vth 1 under >=: S = 1 / v_th = 2) is an error, or clipped."""
    q, summary, _ = quantize(_dense_net(8, 1e-4, bias=5.0), 10.0, None, FPGA_SHIFT)
    assert summary["layers"]["h"]["scale_bound"] == "biases" and summary["layers"]["h"]["clipped"]["bias"] == 0
    with pytest.raises(RangeError, match=r"layer h: 4 bias_mant .*outside \[-32767, 32767\] \(worst 200000\)"):
        quantize(_dense_net(8, 1e-4, bias=1e5), 10.0, None, FPGA_SHIFT)
    q, summary, warnings = quantize(_dense_net(8, 1e-4, bias=1e5), 10.0, QuantPolicy(on_overflow="clip"), FPGA_SHIFT)
    assert summary["layers"]["h"]["clipped"]["bias"] == 4 and q.nodes[0].bias_mant.max() == 32767
    assert "clipped 4 bias_mant" in warnings[0]


# --- the export, its tables and the report ------------------------------------------------------------

@pytest.fixture(scope="module")
def fpga_bundles(default_run, tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("fpga")
    out = {}
    for name in TARGETS["fpga"].profile_names:
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
        assert bundle.profile.name == name and tables.manifest["profile"]["name"] == name
        for e in graph.edges:
            assert np.array_equal(tables.weights[e.name], e.weight), e.name
            assert np.array_equal(arrays[f"{e.name}_WEIGHT".upper()], e.weight.ravel())
        for n in graph.nodes:
            assert np.array_equal(tables.biases[n.name], n.bias_mant)
            assert np.array_equal(arrays[f"{n.name}_BIAS".upper()], n.bias_mant)
            assert defines[f"{n.name.upper()}_VTH"] == n.vth and defines[f"{n.name.upper()}_DECAY_CODE"] == n.dv
        digits = len(to_words(np.array([0]), tables.manifest["profile"]["weight"]["bits"])[0])
        words = (path / "conv1.weight.mem").read_text().splitlines()[1:]
        assert {len(w) for w in words} == {digits} and digits == {"fpga-mul4": 1}.get(name, 2)
        csv = (path / "conv1.weight.csv").read_text().splitlines()
        assert csv[0] == "o,c,i,j,weight" and csv[1] == f"0,0,0,0,{graph.edges[0].weight[0, 0, 0, 0]}"
        assert len(csv) == graph.edges[0].weight.size + 1


def test_mem_words_are_twos_complement_at_the_declared_width():
    assert to_words(np.array([-1, 127, -128, 0]), 8) == ["ff", "7f", "80", "00"]
    assert to_words(np.array([-32767, 5]), 16) == ["8001", "0005"]
    assert from_words(["ff", "80", "7f"], 8).tolist() == [-1, -128, 127]
    assert to_words(np.array([-1, 7, -8, 0, -3]), 4) == ["f", "7", "8", "0", "d"]  # one digit per 4-bit word
    assert from_words(["f", "7", "8", "0", "d"], 4).tolist() == [-1, 7, -8, 0, -3]
    with pytest.raises(BundleError, match="do not fit 4-bit"):
        to_words(np.array([8]), 4)
    with pytest.raises(BundleError, match=r"word 1 \('ff'\) does not fit 4 bits"):  # an 8-bit table read at 4 bits
        from_words(["7", "ff"], 4)
    with pytest.raises(BundleError, match="not hexadecimal"):
        from_words(["g"], 4)


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_mem_words_round_trip_at_every_width(data):
    bits = data.draw(st.sampled_from([2, 3, 4, 5, 8, 12, 16, 24]))
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    values = np.array(data.draw(st.lists(st.integers(lo, hi), min_size=1, max_size=40)), np.int64)
    words = to_words(values, bits)
    assert {len(w) for w in words} == {(bits + 3) // 4}
    assert from_words(words, bits).tolist() == values.tolist()


def test_a_4_bit_table_round_trips_through_the_mem_file_and_the_header(tmp_path):
    """Random 4-bit chains, negative weights and -8 included: the .mem words (one hex digit) and
    the header's int8_t arrays parse back to exactly the integers."""
    from hardware.targets.fpga.tables import write_tables

    for seed in range(3):
        graph = random_fpga_chain(seed, FPGA_MUL4)
        out = tmp_path / str(seed)
        out.mkdir()
        write_tables(graph, FPGA_MUL4, 2, out)
        tables = read_tables(out)
        arrays, _ = parse_header(out / "network.h")
        header = (out / "network.h").read_text()
        for e in graph.edges:
            assert np.array_equal(tables.weights[e.name], e.weight), e.name
            assert np.array_equal(arrays[f"{e.name}_WEIGHT".replace("-", "_").upper()], e.weight.ravel())
        entry = tables.manifest["profile"]["weight"]
        assert entry["bits"] == 4 and entry["hex_digits"] == 1 and entry["c_type"] == "int8_t"
        assert "4-bit values sign-extended" in entry["c_storage"] and "4-bit values sign-extended" in header
    every = np.concatenate([e.weight.ravel() for s in range(3) for e in random_fpga_chain(s, FPGA_MUL4).edges])
    assert every.min() == -8 and every.max() == 7 and (every < 0).any()
    assert read_mem(out / f"{graph.edges[0].name}.weight.mem", 4).tolist() == graph.edges[0].weight.ravel().tolist()


def test_manifest_states_the_arithmetic_and_a_worked_example(fpga_bundles):
    for name, path in fpga_bundles.items():
        m = json.loads((path / "manifest.json").read_text())
        profile = profiles()[name]
        bits = {"fpga-mul4": 4}.get(name, 8)
        assert m["profile"]["weight"] == {"bits": bits, "signed": True, "min": profile.weight_min,
                                          "max": profile.weight_max, "hex_digits": bits // 4, "c_type": "int8_t",
                                          "c_storage": m["profile"]["weight"]["c_storage"]}
        assert m["profile"]["weight"]["c_storage"].startswith("int8_t" + (", exactly" if bits == 8 else ":"))
        assert all(e["weight"]["bits"] == bits for e in m["edges"])
        assert m["profile"]["membrane"]["bits"] == 16 and m["profile"]["threshold"]["compare"] == "spike when v >= vth"
        assert m["profile"]["decay"]["form"] == profile.decay_form and m["input"]["encoding"] == "direct"
        assert [e["name"] for e in m["edges"]] == ["conv1", "conv2", "fc1", "readout"]
        assert m["edges"][1]["kernel"] == [6, 6] and m["edges"][1]["stride"] == [2, 2]
        ex = check_worked_example(path)  # every number recomputed from the .mem files and the stated input
        assert [n["node"] for n in ex["neurons"]] == ["conv1", "conv2"]
        # with the trained decays (beta about 0.2) a conv1 neuron charges at step 0 and fires at step 1 (fpga-shift
        # rounds such a beta to 0 or 0.5: its membranes may forget each step, the same input giving the same step)
        steps = ex["neurons"][0]["steps"]
        assert name == "fpga-shift" or (steps[0]["spike"], steps[1]["spike"]) == (False, True)
        bundle = read_bundle(path)
        assert all(f in bundle.files for f in m["files"])  # every table is checksummed by the bundle
        if name == "fpga-mul" and c_compiler():  # network.h alone runs the trained network (test_fpga_manifest)
            graph = bundle.integer_graph
            x = np.concatenate([example_input(graph, bundle.timesteps), fpga_inputs(1, graph, bundle.timesteps, 2)])
            check_c_program(c_compiler(), path, x, reference.run(graph, x, bundle.timesteps, bundle.profile))


def test_simulate_an_fpga_bundle_and_refuse_lava_for_it(fpga_bundles, tmp_path):
    report_path = tmp_path / "r.json"
    assert main(["simulate", "--fixed-point", str(fpga_bundles["fpga-mul"]), "--json", str(report_path),
                 "--quiet"]) == 0
    report = json.loads(report_path.read_text())
    assert report["profile"] == "fpga-mul" and report["target"] == "fpga"
    assert abs(report["accuracy"]["reference"] - report["accuracy"]["float"]) <= 0.01
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
        dataclasses.replace(bundle, profile=FPGA_MUL, integer_graph=dataclasses.replace(
            bundle.integer_graph, nodes=tuple(dataclasses.replace(n, dv=1025) for n in bundle.integer_graph.nodes)))
    with pytest.raises(BundleError, match="profile must be a Profile"):  # the arithmetic itself, not a name
        Bundle(target="fpga", timesteps=4, float_graph=bundle.float_graph, integer_graph=bundle.integer_graph,
               profile="fpga-mul")
