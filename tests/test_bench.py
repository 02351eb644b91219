"""The benchmarks a GPU session runs (bench/gpu_session.sh) work before a GPU spends its minutes
on them: each script, shrunk, on the CPU. Their numbers here mean nothing; their exit codes,
their rows and the fake-quant path's == check do."""

from __future__ import annotations

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


def test_the_gpu_fake_quant_bench_checks_its_integers_against_the_reference():
    out = _bench("bench/fake_quant_gpu.py", "--device", "cpu", "--width", "0.0625", "--images", "6",
                 "--batch-size", "4", "--check", "3")
    assert "equal on the 3 checked images: spikes of every layer True (3 images), readout membranes True" in out, out
