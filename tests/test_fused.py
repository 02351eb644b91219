"""The fused LSG neuron (training/fused.py): the cases in tests/fused_cases.py, run in a fresh
Python. Without a GPU the kernels run in Triton's interpreter, which must be chosen before triton
is first imported (the language's own helpers are compiled then, and other tests import triton
through torch and SpikingJelly), so the cases get a process of their own with
``TRITON_INTERPRET=1``; on a GPU session they run on CUDA."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import torch

CASES = Path(__file__).with_name("fused_cases.py")
ROOT = Path(__file__).resolve().parent.parent


def test_the_fused_neuron_matches_the_step_function(tmp_path):
    env = dict(os.environ)
    if not torch.cuda.is_available():
        env["TRITON_INTERPRET"] = "1"
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--basetemp",
                           str(tmp_path / "cases"), str(CASES)], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=900)
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-2000:]
    summary = proc.stdout.strip().splitlines()[-1]
    assert " passed" in summary and "failed" not in summary, summary
    if not torch.cuda.is_available():  # on the CPU every case runs (on CUDA, the CPU's choices are skipped)
        assert "skipped" not in summary, summary
