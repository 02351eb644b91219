"""The fused LSG neuron (training/fused.py): the cases in tests/fused_cases.py, run in a fresh
Python for each set of kernels. numba's run on the CPU. Triton's run on CUDA on a GPU session;
without a GPU they run in Triton's interpreter, which must be chosen before triton is first
imported (the language's own helpers are compiled then, and other tests import triton through
torch and SpikingJelly), so the cases get a process of their own with ``TRITON_INTERPRET=1``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

CASES = Path(__file__).with_name("fused_cases.py")
ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("backend", ["numba", "triton"])
def test_the_fused_neuron_matches_the_step_function(backend, tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["LSG_FUSED_BACKEND"] = backend
    if backend == "triton" and not torch.cuda.is_available():
        env["TRITON_INTERPRET"] = "1"
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--basetemp",
                           str(tmp_path / "cases"), str(CASES)], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=900)
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-2000:]
    summary = proc.stdout.strip().splitlines()[-1]
    assert " passed" in summary and "failed" not in summary, summary
    assert "skipped" not in summary, summary


def test_numba_threads_follow_the_layer_size_and_the_fast_path_takes_them_all(monkeypatch):
    """A small layer's kernels run on one numba thread (more lose the cores to torch's own
    threads), a large layer's on as many as torch uses; the integer fast path, run afterwards in
    the same thread, still gets all of numba's threads and gives back what it found."""
    import numba

    from hardware import fast_reference
    from training import fused_numba

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        fused_numba._threads(fused_numba.THREAD_ELEMENTS)
        assert numba.get_num_threads() == 1
        fused_numba._threads(fused_numba.THREAD_ELEMENTS + 1)
        assert numba.get_num_threads() == min(2, numba.config.NUMBA_NUM_THREADS)
        fused_numba._threads(10)
        seen = []
        monkeypatch.setattr(fast_reference, "_one_blas_thread", lambda: seen.append(numba.get_num_threads())
                            or fast_reference.nullcontext())
        from tests.netgen import PROFILES, random_graph, random_inputs

        graph = random_graph(1, PROFILES[0])
        fast_reference.run(graph, random_inputs(1, graph, 2, batch=2), 2, PROFILES[0])
        assert seen == [numba.config.NUMBA_NUM_THREADS]
        assert numba.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
