"""End to end through the CLI on the embedded digits: quality, artifacts, and bad input."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import nir
import numpy as np
import pytest
import torch

from export.fake_quant import run_fake_quant
from hardware import reference
from hardware.bundle import read_bundle
from hardware.targets.loihi.profile import LOIHI2
from lsg_deploy.cli import main
from training.checkpoint import content_digest
from training.data import DataSpec, load

ROOT = Path(__file__).resolve().parents[1]


def test_default_run_quality(default_run):
    acc = default_run.report["accuracy"]
    assert acc["float"] >= 0.95
    assert abs(acc["reference"] - acc["float"]) <= 0.01
    assert acc["folded_float"] == acc["float"]
    assert default_run.report["samples"] == 360 and default_run.report["timesteps"] == 4


def test_report_has_per_layer_agreement_rates_and_saturation(default_run):
    layers = {row["name"]: row for row in default_run.report["layers"]}
    assert list(layers) == ["conv1", "conv2", "fc1", "readout"]
    for name in ("conv1", "conv2", "fc1"):
        row = layers[name]
        assert 0.9 <= row["spike_agreement_reference"] <= 1.0
        assert 0.0 < row["firing_rate_reference"] < 1.0 and 0.0 < row["firing_rate_float"] < 1.0
        assert set(row["saturation"]) == {"a_wrap", "u_wrap", "v_clip"}
    assert layers["readout"]["saturation"]["v_clip"] == 0  # the readout's scale keeps it off the limit


def test_checkpoint_contents(default_run):
    doc = torch.load(default_run.model, weights_only=True)
    assert doc["config"]["mode"] == "lsg" and doc["seed"] == 0
    state = doc["state_dict"]
    assert "blocks.conv1.lif.b" in state and "blocks.conv1.bn.norm.running_var" in state
    assert {"torch", "numpy", "python"} <= set(doc["versions"])
    with open(default_run.run_dir / "metrics.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == len(doc["metrics"]) == doc["config"]["epochs"]
    assert {"train_loss", "test_accuracy", "beta_conv1"} <= set(rows[0])


def test_fake_quant_equals_integer_reference_on_the_test_split(default_run):
    """>= 200 test images: every layer's spikes and the readout identical (==)."""
    bundle = read_bundle(default_run.bundle)
    _, test, _ = load(DataSpec())
    assert len(test.labels) >= 200
    ref = reference.run(bundle.integer_graph, test.pixels, bundle.timesteps, LOIHI2)
    spikes, readout = run_fake_quant(bundle.integer_graph, torch.as_tensor(test.pixels), bundle.timesteps, LOIHI2)
    for name, s in ref.spikes.items():
        assert np.array_equal(spikes[name].numpy(), s), name
        assert s.any()
    assert np.array_equal(readout.numpy(), ref.readout)


def test_nir_graph_reads_back(default_run):
    graph = nir.read(str(default_run.bundle / "model.nir"))
    kinds = {name: type(node).__name__ for name, node in graph.nodes.items()}
    assert kinds["conv1_synapse"] == "Conv2d" and kinds["conv1"] == "LIF" and kinds["readout"] == "Affine"
    bundle = read_bundle(default_run.bundle)
    fc1 = next(e for e in bundle.float_graph.edges if e.name == "fc1")
    assert np.array_equal(graph.nodes["fc1_synapse"].weight, fc1.weight)
    assert graph.metadata["dt"] > 0


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lsg_deploy.cli", *args], cwd=ROOT, capture_output=True, text=True)


def _one_line_error(proc: subprocess.CompletedProcess, *needles: str) -> None:
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("lsg-deploy: error:"), proc.stderr
    for needle in needles:
        assert needle in lines[0]


def test_missing_checkpoint(tmp_path):
    proc = _cli("export", "--target", "loihi", str(tmp_path / "nope.pt"), "--out", str(tmp_path / "b"))
    _one_line_error(proc, "not found")
    assert not (tmp_path / "b").exists()


def test_corrupt_checkpoint(tmp_path):
    bad = tmp_path / "model.pt"
    bad.write_bytes(b"\x80\x04this is not a checkpoint")
    proc = _cli("export", "--target", "loihi", str(bad), "--out", str(tmp_path / "b"))
    _one_line_error(proc, "not a readable checkpoint")
    assert not (tmp_path / "b").exists()


def test_unknown_target(default_run, tmp_path):
    proc = _cli("export", "--target", "spinnaker", str(default_run.model), "--out", str(tmp_path / "b"))
    _one_line_error(proc, "unknown target 'spinnaker'")
    assert not (tmp_path / "b").exists()


def test_bundle_of_another_version(default_run, tmp_path):
    import json
    import shutil

    other = tmp_path / "bundle"
    shutil.copytree(default_run.bundle, other)
    doc = json.loads((other / "bundle.json").read_text())
    doc["format_version"] = 99
    (other / "bundle.json").write_text(json.dumps(doc))
    proc = _cli("simulate", "--fixed-point", str(other), "--json", str(tmp_path / "r.json"))
    _one_line_error(proc, "version 99")
    assert not (tmp_path / "r.json").exists()


def _huge_bias_checkpoint(default_run, tmp_path) -> Path:
    doc = torch.load(default_run.model, weights_only=True)
    doc["state_dict"]["blocks.conv2.bn.shift"][3] = 1e7  # beyond even the smallest threshold's scale
    doc["sha256"] = content_digest(doc)  # a valid checkpoint, only with a bias out of range
    path = tmp_path / "model.pt"
    torch.save(doc, path)
    return path


def test_out_of_range_value_is_an_error_naming_layer_and_value(default_run, tmp_path):
    path = _huge_bias_checkpoint(default_run, tmp_path)
    proc = _cli("export", "--target", "loihi", str(path), "--out", str(tmp_path / "b"))
    _one_line_error(proc, "layer conv2", "bias_mant", "--clip")
    assert not (tmp_path / "b").exists()


def test_clip_flag_clips_warns_and_counts(default_run, tmp_path):
    path = _huge_bias_checkpoint(default_run, tmp_path)
    proc = _cli("export", "--target", "loihi", str(path), "--out", str(tmp_path / "b"), "--clip", "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert "WARNING: layer conv2: clipped 1 bias_mant" in proc.stderr
    assert main(["simulate", "--fixed-point", str(tmp_path / "b"), "--json", str(tmp_path / "r.json"), "--quiet",
                 "--limit", "20"]) == 0
    import json

    report = json.loads((tmp_path / "r.json").read_text())
    assert report["export_clipped"]["conv2"]["bias"] == 1 and report["samples"] == 20


def test_bad_config_values_are_one_line_errors(tmp_path):
    proc = _cli("train", "--out", str(tmp_path / "r"), "--epochs", "0")
    _one_line_error(proc, "epochs must lie in [1,")
    cfg = tmp_path / "c.toml"
    cfg.write_text("[train]\nmode = 'plif'\n")
    _one_line_error(_cli("train", "--out", str(tmp_path / "r"), "--config", str(cfg)), "mode must be one of")
    _one_line_error(_cli("train", "--out", str(tmp_path / "r"), "--mode", "plif"), "invalid choice")
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("mode", ["fixed", "trainable-decay"])
def test_baseline_modes_train_from_a_config_file(tmp_path, mode):
    cfg = tmp_path / "c.toml"
    cfg.write_text(f"[train]\nmode = '{mode}'\nalpha = 2.5\nepochs = 2\nchannels = [4, 8]\nhidden = 16\n")
    assert main(["train", "--out", str(tmp_path / "r"), "--config", str(cfg), "--timesteps", "2", "--quiet"]) == 0
    doc = torch.load(tmp_path / "r" / "model.pt", weights_only=True)
    assert doc["config"]["mode"] == mode and doc["config"]["alpha"] == 2.5 and doc["config"]["timesteps"] == 2
    betas = [row["beta_conv1"] for row in doc["metrics"]]
    if mode == "fixed":
        assert betas == [pytest.approx(0.2)] * 2
    else:
        assert betas[-1] != pytest.approx(0.2, abs=1e-7)


def test_simulate_reports_its_throughput(default_run):
    """The reference backend is the fast path; its set-up (compiled kernels) is timed apart."""
    info = default_run.report["backends"]["reference"]
    assert info["samples_per_second"] == pytest.approx(360 / info["seconds"])
    assert info["setup_seconds"] >= 0 and info["seconds_per_sample"] == pytest.approx(info["seconds"] / 360)
