"""The benchmarks a GPU session runs (bench/gpu_session.sh) work before a GPU spends its minutes
on them: each script, shrunk, on the CPU. Their numbers here mean nothing; their exit codes,
their rows and the fake-quant path's == check do."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _bench(*args: str) -> str:
    proc = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout


def test_the_gpu_training_bench_runs_every_configuration_on_the_cpu():
    out = _bench("bench/train_speed_gpu.py", "--device", "cpu", "--width", "0.0625", "--batch-size", "2",
                 "--steps", "1", "--warm-up", "1", "--timesteps", "2", "--no-compile")
    assert "failed" not in out, out
    rows = [line for line in out.splitlines() if line.startswith("  T=2 ")]
    assert len(rows) == 10, out  # ours torch/fused x fp32/bf16, three peers x fp32/bf16
    assert "fastest peer" in out and "lsg-deploy fused bf16" in out


def _check_json(path: Path, bench: str, rows: int, unit: str, agreed: bool | None) -> dict:
    """The shape every bench's --json shares (bench/machine.py), and the values that can be checked."""
    doc = json.loads(path.read_text())
    assert doc["bench"] == bench and doc["agreed"] is agreed and isinstance(doc["settings"], dict)
    m = doc["machine"]
    assert m["cpu"] and m["cores"] >= 1 and m["usable_cores"] >= 1 and m["device"] == "cpu"
    assert m["versions"]["numpy"] and set(m["versions"]) >= {"numba", "torch"}
    assert len(doc["results"]) == rows
    for r in doc["results"]:
        assert r["unit"] == unit and r["rate"] > 0 and r["configuration"]
        if r["peer"] is not None:
            assert r["peer_rate"] > 0 and r["ratio"] == r["rate"] / r["peer_rate"]
    return doc


def test_the_training_bench_writes_its_ratios_as_json(tmp_path):
    _bench("bench/train_speed.py", "--steps", "1", "--rounds", "1", "--batch-size", "8", "--json",
           str(tmp_path / "t.json"))
    doc = _check_json(tmp_path / "t.json", "train_speed", 5, "images/s", None)
    assert {r["peer"] for r in doc["results"]} == {max((r for r in doc["results"] if not
                                                        r["configuration"].startswith("lsg-deploy")),
                                                       key=lambda r: r["rate"])["configuration"]}


def test_the_event_density_bench_writes_json_and_checks_its_sums(tmp_path):
    _bench("bench/event_density.py", "--shapes", "2", "--densities", "0.1,0.5", "--repeats", "1", "--rows", "4",
           "--json", str(tmp_path / "e.json"))
    _check_json(tmp_path / "e.json", "event_density", 4, "rows/s", True)


def test_the_gpu_fake_quant_bench_checks_its_integers_against_the_reference(tmp_path):
    out = _bench("bench/fake_quant_gpu.py", "--device", "cpu", "--width", "0.0625", "--images", "6",
                 "--batch-size", "4", "--check", "3", "--json", str(tmp_path / "f.json"))
    _check_json(tmp_path / "f.json", "fake_quant_gpu", 1, "images/s", True)
    assert "equal on the 3 checked images: spikes of every layer True (3 images), readout membranes True" in out, out


def test_the_simulate_bench_runs_the_real_commands_with_and_without_the_float_models(tmp_path):
    """bench/simulate_resnet19.py: export and simulate on a CIFAR-shaped bundle it makes, twice."""
    out = _bench("bench/simulate_resnet19.py", "--width", "0.0625", "--images", "6", "--chunk", "4", "--json",
                 str(tmp_path / "s.json"))
    assert "the reference's accuracy the same in both: yes" in out, out
    doc = _check_json(tmp_path / "s.json", "simulate_resnet19", 2, "images/s", True)
    assert [r["configuration"].split(", ")[-1] for r in doc["results"]] == ["with the float models", "--no-float"]
