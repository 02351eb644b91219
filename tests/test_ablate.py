"""Repeated runs: ``train --seeds`` and ``ablate`` (the paper's Tables 1 and 2): one run per row
and seed, resumable, and tables whose numbers are the runs' own."""

from __future__ import annotations

import json
import statistics

import pytest

from lsg_deploy.cli import main
from training.ablate import ROWS, TABLES, AblationError, parse_seeds
from training.checkpoint import load_checkpoint

TINY = ["--timesteps", "2", "--batch-size", "128", "--epochs", "1", "--quiet"]


def test_seeds_parse_as_a_count_or_a_list():
    assert parse_seeds("3") == [0, 1, 2] and parse_seeds("4,7") == [4, 7] and parse_seeds("5,") == [5]
    assert parse_seeds("1000") == list(range(1000)) and parse_seeds("4294967295,") == [4294967295]
    for bad in ("0", "a", "1,1", "-1,2", "", "1001", "0,4294967296", "1" + "0" * 30, ",".join(map(str, range(1001)))):
        with pytest.raises(AblationError):
            parse_seeds(bad)


def test_the_tables_rows_are_the_papers():
    assert [(ROWS[n].mode, ROWS[n].alpha) for n in TABLES["2"][1][:-1]] == [
        ("trainable-decay", a) for a in (0.5, 1.0, 2.5, 5.0, 10.0)]
    assert [ROWS[n].mode for n in TABLES["1"][1]] == ["fixed", "trainable-decay", "lsg"]


def test_train_seeds_reports_mean_and_std_and_reads_finished_seeds_back(tmp_path, capsys):
    out = tmp_path / "seeds"
    assert main(["train", "--seeds", "0,1", *TINY, "--out", str(out)]) == 0
    finals = [load_checkpoint(out / f"seed-{s}" / "model.pt")[1]["metrics"][-1]["test_accuracy"] for s in (0, 1)]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["test_accuracy"]["mean"] == pytest.approx(statistics.fmean(finals))
    assert summary["test_accuracy"]["std"] == pytest.approx(statistics.stdev(finals))
    assert [load_checkpoint(out / f"seed-{s}" / "model.pt")[1]["config"]["seed"] for s in (0, 1)] == [0, 1]
    stamp = (out / "seed-0" / "model.pt").stat().st_mtime_ns
    capsys.readouterr()
    assert main(["train", "--seeds", "0,1", *TINY[:-1], "--out", str(out)]) == 0
    assert "finished before" in capsys.readouterr().out
    assert (out / "seed-0" / "model.pt").stat().st_mtime_ns == stamp
    assert main(["train", "--seeds", "2", "--seed", "1", *TINY, "--out", str(out)]) == 2


def test_ablate_runs_every_row_of_table_1_and_tabulates_them(tmp_path):
    out = tmp_path / "ablation"
    assert main(["ablate", "--tables", "1", "--seeds", "2", *TINY, "--out", str(out)]) == 0
    result = json.loads((out / "ablation.json").read_text())
    assert list(result["rows"]) == ["fixed-a1", "decay-a1", "lsg"]
    text = (out / "ablation.md").read_text()
    assert (out / "ablation.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for name, row in result["rows"].items():
        docs = [load_checkpoint(out / name / f"seed-{s}" / "model.pt")[1] for s in (0, 1)]
        assert {(d["config"]["mode"], d["config"]["alpha"]) for d in docs} == {(ROWS[name].mode, ROWS[name].alpha)}
        values = [d["metrics"][-1]["test_accuracy"] for d in docs]
        assert row["values"] == values and row["mean"] == pytest.approx(statistics.fmean(values))
        assert f"| {ROWS[name].label} | {row['mean'] * 100:.1f} +- {row['std'] * 100:.1f}" in text
    assert main(["ablate", "--tables", "3", *TINY, "--out", str(out)]) == 2


def test_the_readme_ablation_recipe_builds_its_depth_20_plain_stack():
    from pathlib import Path

    from training.config import TrainConfig
    from training.models import build_model

    config = TrainConfig.from_toml(Path(__file__).parent.parent / "recipes" / "ablation-digits-plain-depth20.toml")
    model = build_model(config, (1, 8, 8), 10)
    assert len(model.lif_layers()) == 21 and config.arch == "digits-plain"
