"""Shared fixtures: one default end-to-end run through the CLI, and tiny trained networks, each
trained once per test run and reused by every module whose needs agree.

``make test`` runs the suite on two pytest-xdist workers (``-n 2 --dist loadfile``: a module's
tests stay on one worker, so its module fixtures are built once). The session fixtures below
are built once per run, not once per worker: :func:`once` builds each in a directory the
workers share, under a lock, and the other worker waits for it and reads it. What they
build is read-only to the tests (a test that changes a file copies it first)."""

from __future__ import annotations

import contextlib
import fcntl
import io
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import pytest
from corpus import environment

from lsg_deploy.cli import main


def once(factory: pytest.TempPathFactory, name: str, build: Callable[[Path], None]) -> Path:
    """A directory ``name`` that ``build`` fills, once per test run: without xdist a fresh
    temporary directory; under xdist one that every worker of the run shares (the run's base
    temporary directory), built by the first worker to take its lock, read by the rest."""
    if "PYTEST_XDIST_WORKER" not in os.environ:
        root = factory.mktemp(name)
        build(root)
        return root
    root = factory.getbasetemp().parent / f"shared-{name}"
    done = root / ".built"
    with open(f"{root}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, even if build raises
        if not done.is_file():
            if root.exists():  # a worker that failed half-way: build afresh
                shutil.rmtree(root)
            root.mkdir()
            build(root)
            done.touch()
    return root


@dataclass(frozen=True)
class PipelineRun:
    run_dir: Path
    model: Path
    bundle: Path
    report: dict


@pytest.fixture(scope="session")
def default_run(tmp_path_factory: pytest.TempPathFactory) -> PipelineRun:
    """The README's main job with default options: train -> export --target loihi -> simulate."""
    def build(root: Path) -> None:
        run_dir, bundle = root / "runs" / "digits", root / "deploy" / "digits"
        assert main(["train", "--out", str(run_dir), "--quiet"]) == 0
        assert main(["export", "--target", "loihi", str(run_dir / "model.pt"), "--out", str(bundle), "--quiet"]) == 0
        assert main(["simulate", "--fixed-point", str(bundle), "--json", str(root / "report.json"), "--quiet"]) == 0

    root = once(tmp_path_factory, "pipeline", build)
    run_dir, bundle, report = root / "runs" / "digits", root / "deploy" / "digits", root / "report.json"
    return PipelineRun(run_dir, run_dir / "model.pt", bundle, json.loads(report.read_text()))


@pytest.fixture(scope="session")
def rtl_tools() -> None:
    """Both RTL simulators and cocotb: a missing one is an RtlEnvironmentError (a failure, not a
    skip) that says how to install it."""
    from hardware.targets.fpga.rtl.backend import check_tools
    from hardware.targets.fpga.rtl.tools import SIMULATORS

    for simulator in SIMULATORS:
        check_tools(simulator)


class Finetuned(NamedTuple):
    model: Path
    printed: str  #: what finetune printed (its "fixed point a% -> b%" line among it)


@pytest.fixture(scope="session")
def finetuned(default_run: PipelineRun, tmp_path_factory: pytest.TempPathFactory) -> Finetuned:
    """The default run fine-tuned for loihi, one epoch at the default lr 3e-4, through the CLI."""
    def build(root: Path) -> None:
        with contextlib.redirect_stdout(io.StringIO()) as printed:
            assert main(["finetune", str(default_run.model), "--target", "loihi", "--out", str(root / "ft"),
                         "--epochs", "1", "--lr", "3e-4"]) == 0
        (root / "printed.txt").write_text(printed.getvalue())

    root = once(tmp_path_factory, "finetuned", build)
    return Finetuned(root / "ft" / "model.pt", (root / "printed.txt").read_text())


@pytest.fixture(scope="module")
def cli():
    """``python -m lsg_deploy.cli`` as a fork server (tests/cli_server.py: each run a forked child
    with its own directory, environment, stdio and exit code; the torch import paid once)."""
    here = Path(__file__).parent
    server = subprocess.Popen([sys.executable, str(here / "cli_server.py")], cwd=here.parent, env=environment(),
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    yield server
    server.stdin.close()
    server.wait(timeout=60)


def _train_tiny(factory: pytest.TempPathFactory, name: str, *args: str) -> Path:
    """``lsg-deploy train`` with channels [4, 8], hidden 16, T = 2 and ``args``: the checkpoint
    (its run directory holds everything train writes)."""
    def build(root: Path) -> None:
        (root / "c.toml").write_text("[train]\nchannels = [4, 8]\nhidden = 16\n")
        assert main(["train", "--out", str(root / "run"), "--timesteps", "2", "--config", str(root / "c.toml"),
                     "--quiet", *args]) == 0

    return once(factory, name, build) / "run" / "model.pt"


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A second, different checkpoint: the tiny digits-cnn, two epochs."""
    return _train_tiny(tmp_path_factory, "tiny", "--epochs", "2")


@pytest.fixture(scope="session")
def tiny_resnet(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny digits-resnet (residual adds), one epoch in batches of 256."""
    return _train_tiny(tmp_path_factory, "tiny-resnet", "--arch", "digits-resnet", "--epochs", "1",
                       "--batch-size", "256")


@pytest.fixture(scope="session")
def tiny_events(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny digits-cnn on digits-events (event frames, 2 x 12 x 12), three epochs."""
    return _train_tiny(tmp_path_factory, "tiny-events", "--dataset", "digits-events", "--epochs", "3")
