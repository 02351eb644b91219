"""``simulate --backend fake-quant --device D``: the torch fake-quant path as a backend. On the CPU
(the same torch code a GPU runs) it equals the integer reference bit for bit: spikes, readout
membranes and saturation counts on random residual graphs in every profile, the whole report on
the trained digits bundle; each edge's arithmetic is the narrowest exact one, and forcing float32
where the bound needs float64 is caught; a mismatch with the reference exits 1, bad devices and
arithmetic beyond fake-quant are one line."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from export import fake_quant
from export.fake_quant import edge_arithmetic, run_integer
from hardware import fixed_point as fp
from hardware import reference
from hardware.graph import Geometry, Graph, Input, IntegerEdge, IntegerNode
from hardware.targets.loihi.profile import LOIHI2
from lsg_deploy import fake_quant_backend
from lsg_deploy.cli import main
from lsg_deploy.simulate import backends_for, build_report, checked_samples, load_for_report
from tests.netgen import PROFILES, random_graph, random_inputs, rotation, rotation_id
from tests.test_fast_reference import _assert_same, _conv_edge, _one_edge_graph
from training import data

ROOT = Path(__file__).resolve().parents[1]
CPU = torch.device("cpu")


@pytest.mark.parametrize("seed, profile", rotation(range(8 * len(PROFILES))), ids=rotation_id)
def test_fake_quant_backend_equals_the_reference_on_random_graphs(seed, profile):
    """Residual adds, identity and conv shortcuts, event frames and direct input (summed once for
    all steps, its wraps counted per step), in every profile; saturation counts included."""
    graph = random_graph(seed, profile)
    inputs = random_inputs(seed, graph, 4, batch=5)
    _assert_same(reference.run(graph, inputs, 4, profile), run_integer(graph, inputs, 4, profile, CPU))


def test_the_random_graphs_saturate_somewhere_in_every_profile():
    """So that the saturation comparison above can fail: each profile's seeds clip membranes."""
    for profile in PROFILES:
        clipped = 0
        for seed, p in rotation(range(8 * len(PROFILES))):
            if p == profile:
                graph = random_graph(seed, profile)
                run = run_integer(graph, random_inputs(seed, graph, 4, batch=5), 4, profile, CPU)
                clipped += sum(s["v_clip"] for s in run.saturation.values())
        assert clipped > 0, profile.name


@pytest.mark.parametrize("input_max, dtype", [(16, torch.float32), (1 << 17, torch.float64),
                                              ((1 << 23) - 1, torch.float64)])
def test_each_edge_runs_in_the_narrowest_exact_type(input_max, dtype):
    """float32 below 2^24, float64 beyond (where Loihi's conv sums also wrap at 2^23)."""
    rng = np.random.default_rng(0)
    edge = _conv_edge(rng, (2, 6, 6), 3, (3, 3), (1, 1), (1, 1))
    graph = _one_edge_graph(edge, input_max)
    assert edge_arithmetic(edge, input_max) == dtype
    inputs = rng.integers(0, input_max + 1, size=(9, 2, 6, 6))
    inputs[0] = input_max  # the worst case itself
    ref = reference.run(graph, inputs, 3, LOIHI2)
    assert (ref.saturation["n"]["a_wrap"] > 0) == (input_max > 16)
    _assert_same(ref, run_integer(graph, inputs, 3, LOIHI2, CPU))


def test_float32_where_the_bound_needs_float64_is_caught(monkeypatch):
    """The mutation: every edge in float32 whatever its bound. A conv's sums past 2^24 (inputs up
    to 2^17) lose their low bits, which the readout's membranes show, so the comparison with the
    reference fails: the choice of type is what keeps the path exact."""
    rng = np.random.default_rng(1)
    edge = dataclasses.replace(_conv_edge(rng, (2, 6, 6), 3, (3, 3), (1, 1), (1, 1)), target="out")
    readout = IntegerNode("out", (3, 6, 6), np.zeros(3, np.int64), 0, fp.DU_NO_MEMORY, 0, fp.VTH_MAX, 1.0,
                          readout=True)
    graph = Graph(Input((2, 6, 6), "direct", 1 << 17), (readout,), (edge,))
    inputs = rng.integers(0, (1 << 17) + 1, size=(9, 2, 6, 6))
    ref = reference.run(graph, inputs, 3, LOIHI2)
    _assert_same(ref, run_integer(graph, inputs, 3, LOIHI2, CPU))
    monkeypatch.setattr(fake_quant, "edge_arithmetic", lambda edge, bound: torch.float32)
    mutated = run_integer(graph, inputs, 3, LOIHI2, CPU)
    assert not np.array_equal(mutated.readout, ref.readout)


@pytest.mark.parametrize("kind", ["dense", "conv"])
def test_sums_past_float64_run_in_exact_pieces(kind):
    """Worst cases past 2^53 (32-bit inputs, 16-bit weights): int64 from float64 pieces, equal to
    the reference's int64 sums, at the worst case and on random values."""
    rng = np.random.default_rng(2)
    big = (1 << 31) - 1
    if kind == "dense":
        weight = rng.integers(-(1 << 15), 1 << 15, size=(5, 300))
        geometry = Geometry("dense", (300,), (5,))
    else:
        weight = rng.integers(-(1 << 15), 1 << 15, size=(4, 40, 3, 3))
        geometry = Geometry("conv", (40, 5, 5), (4, 5, 5), padding=(1, 1))
    weight[:, 0] = 1 << 15  # one output's worst case: every input at its largest
    edge = IntegerEdge("e", "input", "n", geometry, weight, 0, 1.0)
    assert int(edge.worst_sums(big).max()) >= 1 << 53 and edge_arithmetic(edge, big) == torch.int64
    x = rng.integers(0, big + 1, size=(6, *geometry.input_shape))
    x[0] = big
    if kind == "dense":
        expected = reference.dense_int(x.reshape(6, -1), weight)
    else:
        expected = reference.conv2d_int(x, weight, geometry.stride, geometry.padding).reshape(6, -1)
    ours = fake_quant._int64_sums(geometry, weight, torch.as_tensor(x).reshape(6, -1), big)
    assert ours.dtype == torch.int64 and np.array_equal(ours.numpy(), expected)


def test_arithmetic_beyond_fake_quant_is_refused_by_name():
    """One input's products past 2^53 (a 2^23 weight on 2^31 inputs): fake-quant says which edge
    and why, the backend refuses the bundle with it."""
    weight = np.full((2, 4), 1 << 23)
    edge = IntegerEdge("wide", "input", "n", Geometry("dense", (4,), (2,)), weight, 0, 1.0)
    with pytest.raises(ValueError, match=r"edge wide: the products of one input sum up to \d+, beyond the integers "
                                         r"float64 holds exactly"):
        edge_arithmetic(edge, (1 << 31) - 1)
    graph = SimpleNamespace(edges=(edge,), input=SimpleNamespace(input_max=(1 << 31) - 1))
    why = fake_quant_backend.refuses(SimpleNamespace(integer_graph=graph))
    assert why.startswith("the bundle's arithmetic is beyond fake-quant: edge wide")


def test_float32_products_stay_ieee_and_the_users_settings_come_back():
    """TF32 (CUDA) and bfloat16 (oneDNN) products would round integer sums: fake-quant turns them
    off around its products and leaves the user's choice as it found it."""
    matmul = (torch.backends.cuda.matmul, torch.backends.mkldnn.matmul)
    before = [m.fp32_precision for m in matmul]
    try:
        torch.backends.cuda.matmul.fp32_precision = "tf32"
        torch.backends.mkldnn.matmul.fp32_precision = "bf16"
        with fake_quant.ieee_float32():
            assert [m.fp32_precision for m in matmul] == ["ieee", "ieee"]
        assert [m.fp32_precision for m in matmul] == ["tf32", "bf16"]
    finally:
        for m, value in zip(matmul, before, strict=True):
            m.fp32_precision = value


def _without_timing(doc: dict) -> dict:
    """A report's JSON with the backend named ``reference`` and its wall-clock figures and its
    comparison with the reference (``exact``, each layer's mismatches) left out: what must equal
    the reference backend's report."""
    text = json.dumps(doc).replace('"fake-quant"', '"reference"').replace('_fake-quant"', '_reference"')
    doc = json.loads(text)
    doc.pop("exact", None)
    for layer in doc["layers"]:
        layer.pop("fake-quant_reference_mismatches", None)
    for run in doc["backends"].values():
        for key in ("seconds", "setup_seconds", "seconds_per_sample", "samples_per_second"):
            run.pop(key)
    return doc


def test_the_digits_report_on_fake_quant_is_the_references(default_run, tmp_path):
    """``simulate --fixed-point --device cpu`` on the default digits bundle: every sample checked
    (360 <= --check's default), bit-exact, and the report, JSON and all, the reference's."""
    out = tmp_path / "report.json"
    assert main(["simulate", "--fixed-point", str(default_run.bundle), "--device", "cpu", "--chunk", "100",
                 "--json", str(out), "--quiet"]) == 0
    doc = json.loads(out.read_text())
    assert set(doc["backends"]) == {"fake-quant"}
    assert doc["exact"] == {"pair": "reference == fake-quant", "equal": True, "samples": 360,
                            "mismatches": {"conv1": 0, "conv2": 0, "fc1": 0, "readout": 0}}
    assert _without_timing(doc) == _without_timing(default_run.report)


def test_a_big_run_checks_samples_spread_over_every_chunk(tiny_model, tmp_path):
    """--check N: every k-th sample, k = ceil(samples / N); the reference reruns them chunk by
    chunk, and the progress bar counts them beside the backend's samples."""
    assert list(checked_samples(40, 7)) == [0, 6, 12, 18, 24, 30, 36]
    assert len(checked_samples(10_000, 1000)) == 1000 and list(checked_samples(5, 1000)) == [0, 1, 2, 3, 4]
    assert list(checked_samples(5, None)) == [0, 1, 2, 3, 4]
    bundle = tmp_path / "bundle"
    assert main(["export", "--target", "loihi", str(tiny_model), "--out", str(bundle), "--quiet"]) == 0
    loaded, _, spec = load_for_report(bundle, float_models=False)
    _, test, _ = data.load(spec, timesteps=loaded.timesteps,
                           files=data.FileSource.from_config(loaded.source.get("train_config", {}), None, True))
    bars = []

    class Bar:
        def __init__(self, total: int, name: str):
            self.total, self.name, self.done = total, name, []
            bars.append(self)

        def update(self, n: int) -> None:
            self.done.append(n)

        def close(self) -> None:
            pass

    assert "fake-quant" in backends_for("all", loaded, "cpu") and "fake-quant" not in backends_for("all", loaded)
    report = build_report(loaded, None, bundle, test.head(40), ("fake-quant",), progress=Bar, chunk=9,
                          device="cpu", check=7)
    assert report.exact.equal and report.exact.samples == 7
    (bar,) = bars
    assert bar.name == "fake-quant, reference (check)" and bar.total == sum(bar.done) == 40 + 7
    whole = build_report(loaded, None, bundle, test.head(40), ("reference",), chunk=9)
    assert report.layers[0].saturation == whole.layers[0].saturation
    assert report.predictions.runs["fake-quant"] == whole.predictions.runs["reference"]


def test_a_mismatch_with_the_reference_exits_1(default_run, monkeypatch, capsys):
    def corrupted(graph, inputs, timesteps, profile, device):
        run = reference.run(graph, inputs, timesteps, profile)
        spikes = dict(run.spikes)
        spikes["conv2"] = spikes["conv2"].copy()
        spikes["conv2"][0, 0, 0] ^= True
        return dataclasses.replace(run, spikes=spikes)

    monkeypatch.setattr(fake_quant, "run_integer", corrupted)
    assert main(["simulate", "--fixed-point", str(default_run.bundle), "--device", "cpu", "--limit", "5",
                 "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "reference == fake-quant do not agree bit for bit: conv1 0, conv2 1, fc1 0, readout 0" in err, err


@pytest.mark.parametrize("args, message", [
    (["--device", "cuda"], "sees no CUDA device here; use --device cpu"),
    (["--device", "tpu"], "device must be one of auto, cpu, cuda or cuda:N, got 'tpu'"),
    (["--device", "cuda:x"], "device must be one of auto, cpu, cuda or cuda:N, got 'cuda:x'"),
    (["--device", "cpu", "--backend", "lava"], "--backend lava does not run in torch"),
    (["--device", "cpu", "--no-fixed-point"], "add --fixed-point"),
    (["--device", "cpu", "--no-float", "--explain"], "--no-float leaves out"),
])
def test_bad_devices_are_one_line(default_run, capsys, args, message):
    if torch.cuda.is_available() and args == ["--device", "cuda"]:
        pytest.skip("this machine has CUDA")  # the message is for machines without one
    fixed = [] if "--no-fixed-point" in args else ["--fixed-point"]
    argv = ["simulate", *fixed, str(default_run.bundle), *[a for a in args if a != "--no-fixed-point"], "--quiet"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err, err


def test_the_gpu_session_simulate_command_runs_on_the_cpu(tmp_path):
    """bench/gpu_session.sh simulate, shrunk: CIFAR-10 files, train, export, then simulate
    --device cpu beside the reference's simulate; its JSON says the check found them equal."""
    env = dict(os.environ, OUT=str(tmp_path), PYTHON=sys.executable, PYTHONPATH=str(ROOT))
    proc = subprocess.run(["bash", "bench/gpu_session.sh", "simulate", "--device", "cpu", "--width", "0.0625",
                           "--images", "12", "--check", "3", "--reference", "2", "--chunk", "5"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "reference == fake-quant on 3 checked samples: equal" in proc.stdout, proc.stdout
    doc = json.loads((tmp_path / "simulate_gpu.json").read_text())
    assert doc["agreed"] is True and doc["results"][0]["rate"] > 0 and doc["results"][0]["ratio"] > 0
