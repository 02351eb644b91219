"""Shared fixtures: one default end-to-end run through the CLI, reused by many tests."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from corpus import environment

from lsg_deploy.cli import main


@dataclass(frozen=True)
class PipelineRun:
    run_dir: Path
    model: Path
    bundle: Path
    report: dict


@pytest.fixture(scope="session")
def default_run(tmp_path_factory: pytest.TempPathFactory) -> PipelineRun:
    """The README's main job with default options: train -> export --target loihi -> simulate."""
    root = tmp_path_factory.mktemp("pipeline")
    run_dir, bundle, report = root / "runs" / "digits", root / "deploy" / "digits", root / "report.json"
    assert main(["train", "--out", str(run_dir), "--quiet"]) == 0
    assert main(["export", "--target", "loihi", str(run_dir / "model.pt"), "--out", str(bundle), "--quiet"]) == 0
    assert main(["simulate", "--fixed-point", str(bundle), "--json", str(report), "--quiet"]) == 0
    return PipelineRun(run_dir, run_dir / "model.pt", bundle, json.loads(report.read_text()))


@pytest.fixture(scope="module")
def cli():
    """``python -m lsg_deploy.cli`` as a fork server (tests/cli_server.py: each run a forked child
    with its own directory, environment, stdio and exit code; the torch import paid once)."""
    server = subprocess.Popen([sys.executable, str(Path(__file__).with_name("cli_server.py"))], env=environment(),
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    yield server
    server.stdin.close()
    server.wait(timeout=60)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A second, different checkpoint (channels [4, 8], hidden 16, T = 2, one epoch)."""
    root = tmp_path_factory.mktemp("tiny")
    (root / "c.toml").write_text("[train]\nchannels = [4, 8]\nhidden = 16\n")
    assert main(["train", "--out", str(root / "run"), "--epochs", "1", "--timesteps", "2",
                 "--config", str(root / "c.toml"), "--quiet"]) == 0
    return root / "run" / "model.pt"
