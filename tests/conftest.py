"""Shared fixtures: one default end-to-end run through the CLI, reused by many tests."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest

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
