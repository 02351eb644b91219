"""Reach the Lava backend from any interpreter: in-process where lava-nc imports, else a subprocess.

lava-nc 0.10.0 needs Python 3.10 and numpy<2 (DESIGN section 5), so the main environment runs
it as a subprocess of the Lava interpreter, found as (first that is set or exists):

1. ``$LSG_LAVA_PYTHON``;
2. ``.venv-lava/bin/python`` in the project holding this ``hardware`` package.

Nothing is looked up in the current directory: a program planted there never runs.

Data goes through files in a temporary directory: a job is a network plus an inputs file (a
job directory holding the graph, ``inputs`` and ``T``, see :mod:`hardware.targets.loihi.lava.child`; or the
bundle directory itself plus an ``inputs`` .npz) in, a result .npz out. Every numpy-only check
(inputs, layouts, :func:`hardware.targets.loihi.lava.backend.check_lava_limits`) runs here, before any
interpreter starts.
The child imports this very ``hardware`` package (a link to it is put first on its path).
A missing Lava environment raises :class:`LavaEnvironmentError` saying how to create it.
The child ends with the run (:mod:`hardware.processes`): any exception while it runs, SIGINT's
``KeyboardInterrupt`` and the CLI's SIGTERM included, stops and reaps it, and the temporary
directory goes with it.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from hardware import processes
from hardware.bundle import BundleError, read_bundle
from hardware.graph import Graph
from hardware.reference import IntegerRun
from hardware.targets.loihi.lava import child as lava_run
from hardware.targets.loihi.lava.backend import check_run
from hardware.targets.loihi.lava.child import LavaJob

__all__ = ["ENV_VAR", "LavaEnvironmentError", "LavaJob", "LavaRunError", "find_lava_python", "lava_importable",
           "run_lava", "run_lava_bundle", "run_lava_jobs"]  # LavaJob lives in lava_run (the child reads jobs)

ENV_VAR = "LSG_LAVA_PYTHON"
VENV_DIR = ".venv-lava"
HOW_TO_CREATE = (
    "create it from the project root with `make lava-env` (that is: python3.10 -m venv .venv-lava && "
    ".venv-lava/bin/pip install lava-nc==0.10.0 'numpy<2' scipy h5py 'networkx<=2.8.7' 'asteval<0.10'), "
    f"or set {ENV_VAR} to a Python 3.10 interpreter that has lava-nc 0.10.0"
)


class LavaEnvironmentError(RuntimeError):
    """No usable Lava interpreter: the message says how to create one."""


class LavaRunError(RuntimeError):
    """The Lava interpreter started but the run failed: ``summary`` is one line, ``detail`` the
    end of its output."""

    def __init__(self, summary: str, detail: str = ""):
        super().__init__(f"{summary}\n{detail}" if detail else summary)
        self.summary, self.detail = summary, detail


def lava_importable() -> bool:
    """True when lava-nc imports in this interpreter (then the backend runs in-process)."""
    try:
        import lava.magma.core.run_configs  # noqa: F401
    except Exception:  # on Python 3.11 lava-nc fails at import with assorted errors
        return False
    return True


def _package_dir() -> Path:
    """The ``hardware`` package's directory (this module is ``hardware/targets/loihi/lava/parent.py``)."""
    return Path(__file__).resolve().parents[3]


def _project_root() -> Path:
    return _package_dir().parent


def find_lava_python() -> Path:
    """The Lava interpreter (see the module docstring), or :class:`LavaEnvironmentError`."""
    configured = os.environ.get(ENV_VAR)
    if configured:
        path = Path(configured)
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise LavaEnvironmentError(f"{ENV_VAR}={configured} is not an executable Python; {HOW_TO_CREATE}")
        return path
    path = _project_root() / VENV_DIR / "bin" / "python"
    if path.is_file() and os.access(path, os.X_OK):
        return path
    raise LavaEnvironmentError(f"the Lava environment is missing (looked for {path}); {HOW_TO_CREATE}")


def _call(args: list[str], work: Path, python: Path | None, timeout: float | None) -> None:
    """Run ``python -m hardware.targets.loihi.lava.child ARGS`` in ``work``, which gets links to the
    ``hardware`` package and ``lsg_io``, the one package it imports besides numpy and h5py."""
    python = python or find_lava_python()
    for package in (_package_dir(), _project_root() / "lsg_io"):  # hardware and what it imports
        (work / package.name).symlink_to(package, target_is_directory=True)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP")}
    env["PYTHONPATH"] = str(work)
    try:
        proc = processes.run([str(python), "-m", "hardware.targets.loihi.lava.child", *args], cwd=work, env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise LavaRunError(f"the Lava run in {python} took longer than {timeout} s") from None
    except OSError as exc:
        raise LavaEnvironmentError(f"cannot start the Lava interpreter {python}: {exc}; {HOW_TO_CREATE}") from None
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or [""]
    if proc.returncode == lava_run.EXIT_NO_LAVA:
        reason = tail[0].removeprefix("lava_run: ")
        raise LavaEnvironmentError(f"the Lava environment {python} is not usable ({reason}); {HOW_TO_CREATE}")
    if proc.returncode == lava_run.EXIT_BAD_INPUT:
        raise BundleError(tail[0].removeprefix("lava_run: error: "))
    if proc.returncode != 0:
        detail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-20:])
        last = f": {tail[0]}" if tail[0] else " with no output"
        raise LavaRunError(f"the Lava run in {python} failed (exit {proc.returncode}){last}", detail)


def _in_process(in_process: bool | None, python: Path | None) -> bool:
    return bool(in_process or (in_process is None and python is None and lava_importable()))


def run_lava_jobs(jobs: list[LavaJob], *, in_process: bool | None = None, python: Path | None = None,
                  timeout: float | None = None) -> list[tuple[IntegerRun, dict[str, float]]]:
    """Run several networks on Lava (one interpreter start); ``(run, timing)`` per job.

    ``in_process``: ``None`` runs in-process exactly when lava-nc imports here; ``False``
    forces the subprocess (``python`` overrides the interpreter search).
    """
    for job in jobs:  # numpy-only checks: fail here, before any interpreter starts
        check_run(job.graph, job.inputs, job.timesteps)
    if _in_process(in_process, python):
        from hardware.targets.loihi.lava import backend as lava_backend

        results = []
        for job in jobs:
            timing: dict[str, float] = {}
            run = lava_backend.run(job.graph, job.inputs, job.timesteps, timing, _pad_delays=job._pad_delays)
            results.append((run, timing))
        return results
    with tempfile.TemporaryDirectory(prefix="lsg-lava-") as tmp:
        work = Path(tmp)
        dirs = []
        for i, job in enumerate(jobs):
            d = work / f"job-{i}"
            d.mkdir()
            lava_run.write_job(d, job)
            dirs.append(d)
        _call([a for d in dirs for a in ("--job", str(d))], work, python, timeout)
        return [lava_run.read_result(d / lava_run.JOB_RESULT) for d in dirs]


def run_lava(graph: Graph, inputs: np.ndarray, timesteps: int, *,
             timing: dict[str, float] | None = None, **kwargs) -> IntegerRun:
    """Lava counterpart of ``reference.run(graph, inputs, timesteps)``; see :func:`run_lava_jobs`."""
    run, t = run_lava_jobs([LavaJob(graph, np.asarray(inputs), int(timesteps))], **kwargs)[0]
    if timing is not None:
        timing.update(t)
    return run


def run_lava_bundle(bundle_dir: Path, inputs: np.ndarray, *, timing: dict[str, float] | None = None,
                    in_process: bool | None = None, python: Path | None = None,
                    timeout: float | None = None) -> IntegerRun:
    """Run a bundle directory's ``loihi`` graph on Lava (the subprocess reads the bundle itself)."""
    bundle = read_bundle(bundle_dir)
    inputs = np.asarray(inputs)
    check_run(bundle.integer_graph, inputs, bundle.timesteps)
    if _in_process(in_process, python):
        return run_lava(bundle.integer_graph, inputs, bundle.timesteps, timing=timing, in_process=True)
    with tempfile.TemporaryDirectory(prefix="lsg-lava-") as tmp:
        work = Path(tmp)
        lava_run.write_inputs(work / lava_run.JOB_INPUTS, inputs)
        out = work / lava_run.JOB_RESULT
        args = ["--bundle", str(Path(bundle_dir).resolve()), "--inputs", str(work / lava_run.JOB_INPUTS),
                "--out", str(out)]
        _call(args, work, python, timeout)
        run, t = lava_run.read_result(out)
    if timing is not None:
        timing.update(t)
    return run
