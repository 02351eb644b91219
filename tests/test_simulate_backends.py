"""``simulate --backend lava|all`` through the CLI: Lava in its own interpreter, compared bit for bit."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from hardware.targets.loihi.profile import LOIHI2
from lsg_deploy.cli import main

ROOT = Path(__file__).resolve().parents[1]


def test_all_backends_agree_bit_for_bit_on_50_digits(default_run, tmp_path):
    out = tmp_path / "report.json"
    assert main(["simulate", "--fixed-point", "--backend", "all", str(default_run.bundle), "--limit", "50",
                 "--json", str(out), "--quiet"]) == 0
    report = json.loads(out.read_text())
    assert report["samples"] == 50
    assert report["exact"]["equal"] is True
    assert report["exact"]["mismatches"] == {"conv1": 0, "conv2": 0, "fc1": 0, "readout": 0}
    assert report["accuracy"]["lava"] == report["accuracy"]["reference"]
    assert set(report["backends"]) == {"reference", "lava"}
    assert report["backends"]["lava"]["seconds_per_sample"] > 0
    for row in report["layers"][:-1]:
        assert row["firing_rate_lava"] == row["firing_rate_reference"] > 0


def test_disagreement_exits_non_zero(default_run, tmp_path, monkeypatch, capsys):
    """--backend all fails when Lava and the reference differ anywhere (here: one spike)."""
    from hardware import reference
    from hardware.bundle import read_bundle
    from hardware.targets.loihi.lava import parent as lava_subprocess

    def corrupted(bundle_dir, pixels, **_):
        bundle = read_bundle(bundle_dir)
        run = reference.run(bundle.integer_graph, pixels, bundle.timesteps, LOIHI2)
        spikes = dict(run.spikes)
        spikes["conv2"] = spikes["conv2"].copy()
        spikes["conv2"][0, 0, 0] ^= True
        return dataclasses.replace(run, spikes=spikes)

    monkeypatch.setattr(lava_subprocess, "run_lava_bundle", corrupted)
    code = main(["simulate", "--fixed-point", "--backend", "all", str(default_run.bundle), "--limit", "5", "--quiet"])
    assert code == 1
    assert "conv2 1" in capsys.readouterr().err  # counts in words, not a dict


def test_missing_lava_environment_says_how_to_create_it(default_run, tmp_path):
    env = dict(os.environ, LSG_LAVA_PYTHON=str(tmp_path / "no-python"))
    proc = subprocess.run(
        [sys.executable, "-m", "lsg_deploy.cli", "simulate", "--fixed-point", "--backend", "lava",
         str(default_run.bundle), "--limit", "2", "--json", str(tmp_path / "r.json")],
        cwd=ROOT, env=env, capture_output=True, text=True,
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "make lava-env" in lines[0]
    assert not (tmp_path / "r.json").exists()


def test_bundle_holds_every_artifact(default_run):
    names = sorted(p.name for p in default_run.bundle.iterdir())
    assert names == ["arrays.npz", "bundle.json", "model.net", "model.nir", "source_model.pt"]
    assert np.load(default_run.bundle / "arrays.npz")["integer/edges/conv1/weight"].dtype == np.int64


#: the CLI in an interpreter where ``import torch`` fails, as on a machine without the training side
#: (a meta-path block, not sys.modules["torch"] = None, on which scipy under scikit-learn fails)
WITHOUT_TORCH = """
import sys

class NoTorch:  # an import of torch or of a torch submodule fails, as where torch is not installed
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] == "torch":
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)

sys.meta_path.insert(0, NoTorch())
from lsg_deploy.cli import main

sys.exit(main(sys.argv[1:]))
"""


def test_simulate_runs_a_bundle_on_the_integer_backends_without_torch(default_run, tmp_path):
    """The bundle carries its integer network and arithmetic: the reference needs numpy, not torch;
    the report says the float models were not run, and its integer numbers are the full report's."""
    out = tmp_path / "report.json"
    proc = subprocess.run([sys.executable, "-c", WITHOUT_TORCH, "simulate", "--fixed-point", str(default_run.bundle),
                           "--json", str(out), "--quiet"], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    report, full = json.loads(out.read_text()), default_run.report
    assert report["accuracy"] == {"reference": full["accuracy"]["reference"]}
    assert "torch is not installed" in report["float_missing"]
    assert report["per_class"]["reference"] == full["per_class"]["reference"]
    for row, whole in zip(report["layers"], full["layers"], strict=True):
        assert row.get("firing_rate_reference") == whole.get("firing_rate_reference") and "firing_rate_float" not in row
    proc = subprocess.run([sys.executable, "-c", WITHOUT_TORCH, "simulate", str(default_run.bundle)],
                          cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 2 and "torch is not installed" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
