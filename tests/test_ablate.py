"""Repeated runs: ``train --seeds`` and ``ablate`` (the paper's Tables 1 and 2 and the learned-against-
wider rows): one run per row and seed, resumable, paired seeds, and tables whose numbers are the runs' own."""

from __future__ import annotations

import dataclasses
import json
import math
import statistics

import numpy as np
import pytest
import torch

from lsg_deploy.cli import main
from training import ablation_stats as stats
from training.ablate import (
    PAPER_SOURCES,
    ROWS,
    TABLES,
    AblationError,
    fold_parts,
    paper_number,
    parse_seeds,
    row_overrides,
    seed_config,
)
from training.checkpoint import load_checkpoint

TINY = ["--timesteps", "2", "--batch-size", "128", "--epochs", "1", "--quiet"]
SMALL = ["--width", "0.25", *TINY]  #: a quarter of the channels: ablate's runs in seconds


def test_seeds_parse_as_a_count_or_a_list():
    assert parse_seeds("3") == [0, 1, 2] and parse_seeds("4,7") == [4, 7] and parse_seeds("5,") == [5]
    assert parse_seeds("1000") == list(range(1000)) and parse_seeds("4294967295,") == [4294967295]
    for bad in ("0", "a", "1,1", "-1,2", "", "1001", "0,4294967296", "1" + "0" * 30, ",".join(map(str, range(1001)))):
        with pytest.raises(AblationError):
            parse_seeds(bad)


def test_the_tables_rows_are_the_papers():
    """Which mode, width and decay start each row trains: Table 2 with a FIXED decay (its alpha 1 row is
    Table 1's fixed-decay row), fixed widths inside LSG's reach, LSG from other starts."""
    trains = {n: (r.mode, r.alpha, r.beta_init) for n, r in ROWS.items()}
    assert [trains[n] for n in TABLES["1"][1]] == [("fixed", 1.0, 0.2), ("trainable-decay", 1.0, 0.2),
                                                    ("lsg", 1.0, 0.2)]
    assert [trains[n] for n in TABLES["2"][1]] == [("fixed", a, 0.2) for a in (0.5, 1.0, 2.5, 5.0, 10.0)] + [
        ("lsg", 1.0, 0.2)]
    assert [trains[n] for n in TABLES["reach"][1]] == [("trainable-decay", a, 0.2) for a in (1.0, 1.1, 1.2, 1.414)] + [
        ("lsg", 1.0, b) for b in (0.2, 0.5, 0.8)]
    assert all(n == r.name for n, r in ROWS.items()) and set(ROWS) == {n for t in TABLES.values() for n in t[1]}
    # the fixed widths lie inside the range LSG's width 2 v_th sqrt(1 + beta^2) reaches for beta in (0, 1), v_th 0.5
    for a in (1.1, 1.2, 1.414):
        assert 2 * 0.5 < a < 2 * 0.5 * math.sqrt(2)
    # a row's settings override the config's, a config file's beta_init included
    for name in ROWS:
        config = seed_config({"epochs": 1, **row_overrides(name)}, None, 3)
        assert (config.mode, config.alpha, config.beta_init, config.seed) == (*trains[name][:3], 3)


def test_the_paper_numbers_sit_on_their_rows():
    """Table 1 and Table 2 of Lian et al. 2023 (CIFAR-10, ResNet-19, T = 2), each number on its row."""
    numbers = {(n, t): v for n, r in ROWS.items() for t, v in r.paper}
    assert numbers == {("fixed-a1", "1"): 92.68, ("decay-a1", "1"): 93.16,
                       ("fixed-a0.5", "2"): 92.12, ("fixed-a1", "2"): 92.68, ("fixed-a2.5", "2"): 90.68,
                       ("fixed-a5", "2"): 61.54, ("fixed-a10", "2"): 30.82, ("lsg", "2"): 94.41}
    assert paper_number("lsg", "1") == (94.41, "2")  # Table 1's LSG cell is not in our sources: Table 2's is shown
    assert paper_number("decay-a1.2", "reach") is None and paper_number("lsg-b0.8", "reach") is None
    assert set(PAPER_SOURCES) == {t for r in ROWS.values() for t, _ in r.paper}


def test_the_statistics_on_hand_computed_inputs():
    # sign flips of (1, 2, 3): sums 6, 0, 2, -4, 4, -2, 0, -6; |sum| >= 6 in 2 of 8
    assert stats.sign_flip_p([0.01, 0.02, 0.03]) == 0.25
    assert stats.sign_flip_p([0.0, 0.0]) == 1.0 and stats.sign_flip_p([0.01] * 6) == 2 / 64
    assert stats.sign_flip_p([0.01, -0.01]) == 1.0
    assert stats.sign_flip_p([0.01] * 20) < 1e-3  # beyond EXACT_UP_TO: random flips, fixed RNG
    assert stats.bootstrap_ci([0.005, 0.005, 0.005]) == (0.005, 0.005)
    # (0, 1) resampled: means 0, 0.5, 1 with probabilities 1/4, 1/2, 1/4: the 95% interval is [0, 1]
    assert stats.bootstrap_ci([0.0, 1.0]) == (0.0, 1.0)
    result = stats.paired([0.9, 0.8, 0.7], [0.8, 0.8, 0.8])
    assert result["diffs"] == pytest.approx([0.1, 0.0, -0.1]) and result["mean_diff"] == pytest.approx(0.0)
    assert result["p"] == 1.0 and not result["significant"] and result["n"] == 3
    assert stats.paired([0.9] * 6, [0.8] * 6)["significant"]  # 6 seeds, every one better: p = 2/64
    assert stats.spread([0.5, 0.7]) == {"mean": 0.6, "std": pytest.approx(math.sqrt(0.02)), "min": 0.5, "max": 0.7,
                                        "n": 2, "values": [0.5, 0.7]}
    with pytest.raises(ValueError):
        stats.paired([0.9], [0.8, 0.7])


class _Stop(Exception):
    pass


def test_a_seed_starts_every_row_from_the_same_weights_and_sample_order(monkeypatch):
    """Paired seeds, seen inside training.loop.fit: for one seed every row builds the same initial
    weights (all but its decay b, which is its beta_0) and draws the same first batch."""
    from training import loop

    seen = {}
    build, make_loader = loop.build_model, loop.loader

    def recording_build(config, *args):
        model = build(config, *args)
        seen["weights"] = {k: v.clone() for k, v in model.state_dict().items()}
        return model

    def recording_loader(dataset, batch_size, sampler=None, *args):
        seen["first"] = next(iter(make_loader(dataset, batch_size, sampler, *args)))[1].clone()
        raise _Stop

    monkeypatch.setattr(loop, "build_model", recording_build)
    monkeypatch.setattr(loop, "loader", recording_loader)
    rng = np.random.default_rng(0)
    split = loop.Split(rng.random((64, 1, 8, 8), dtype=np.float32), np.arange(64))  # label = index: the order
    starts = {}
    for seed, names in ((5, list(ROWS)), (6, ["lsg"])):
        for name in names:
            config = seed_config({"channels": (4, 8), "hidden": 16, "timesteps": 1, "batch_size": 16, "epochs": 1,
                                  "device": "cpu", **row_overrides(name)}, None, seed)
            with pytest.raises(_Stop):
                loop.fit(config, split, split, 64)
            decays = {k for k in seen["weights"] if k.endswith(".b")}
            assert decays and all(torch.sigmoid(seen["weights"][k]).item() == pytest.approx(ROWS[name].beta_init)
                                  for k in decays)
            starts[seed, name] = ({k: v for k, v in seen["weights"].items() if k not in decays}, seen["first"])
    weights, first = starts[5, "lsg"]
    for name in ROWS:
        theirs, order = starts[5, name]
        assert theirs.keys() == weights.keys() and all(torch.equal(theirs[k], weights[k]) for k in weights), name
        assert torch.equal(order, first), name
    other, other_first = starts[6, "lsg"]  # another seed: other weights, another order (the check can fail)
    assert not torch.equal(other_first, first) and any(not torch.equal(other[k], weights[k]) for k in weights)


def test_the_folds_partition_all_digits_alike_for_every_run():
    from sklearn.datasets import load_digits

    labels = load_digits().target
    parts = fold_parts(labels, 5)
    assert sorted(np.concatenate(parts).tolist()) == list(range(1797)) and len(parts) == 5
    assert all(np.array_equal(a, b) for a, b in zip(parts, fold_parts(labels, 5), strict=True))
    assert all(abs(np.sum(labels[p] == 3) - np.sum(labels == 3) / 5) <= 1 for p in parts)  # stratified


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


def test_ablate_trains_a_row_as_a_run_and_reads_it_back(tmp_path, capsys):
    out = tmp_path / "ablation"
    assert main(["ablate", "--tables", "1,2", "--rows", "fixed-a1", "--seeds", "1", *SMALL, "--out", str(out)]) == 0
    result = json.loads((out / "ablation.json").read_text())
    assert list(result["rows"]) == ["fixed-a1"] and result["tables"] == {"1": ["fixed-a1"], "2": ["fixed-a1"]}
    doc = load_checkpoint(out / "fixed-a1" / "seed-0" / "model.pt")[1]
    assert (doc["config"]["mode"], doc["config"]["alpha"], doc["config"]["beta_init"]) == ("fixed", 1.0, 0.2)
    row, text = result["rows"]["fixed-a1"], (out / "ablation.md").read_text()
    assert row["values"] == [doc["metrics"][-1]["test_accuracy"]] and row["vs_lsg"] is None
    assert f"| `fixed-a1` | fixed decay 0.2, alpha 1 | {row['mean'] * 100:.1f} +- 0.0" in text and "| 92.68 |" in text
    assert "No comparison: the LSG row `lsg` was not run." in text
    capsys.readouterr()
    assert main(["ablate", "--tables", "1", "--rows", "fixed-a1", "--seeds", "1", *SMALL[:-1], "--out", str(out)]) == 0
    assert "finished before" in capsys.readouterr().out
    assert main(["ablate", "--tables", "3", *SMALL, "--out", str(out)]) == 2
    assert main(["ablate", "--rows", "lsg,decay-a7", *SMALL, "--out", str(out)]) == 2
    assert main(["ablate", "--tables", "2", "--rows", "decay-a1.2", *SMALL, "--out", str(out)]) == 2


def test_ablate_folds_compare_paired_seeds_with_lsg_over_every_digit(tmp_path):
    """Two rows, two seeds, 2-fold over all 1,797 digits: every digit tested once per run, the
    comparison with LSG computed from the runs' own pooled accuracies."""
    out = tmp_path / "folds"
    args = ["ablate", "--rows", "fixed-a1,lsg", "--tables", "2", "--seeds", "2", "--folds", "2", *SMALL,
            "--out", str(out)]
    assert main(args) == 0
    result = json.loads((out / "ablation.json").read_text())
    for name in ("fixed-a1", "lsg"):
        pooled = []
        for seed in (0, 1):
            doc = json.loads((out / name / f"seed-{seed}-folds2.json").read_text())
            assert (doc["config"]["mode"], doc["config"]["seed"], sorted(doc["done"])) == (ROWS[name].mode, seed,
                                                                                          ["0", "1"])
            assert sum(d["count"] for d in doc["done"].values()) == 1797
            pooled.append(sum(d["correct"] for d in doc["done"].values()) / 1797)
        assert result["rows"][name]["values"] == pooled
    fixed, lsg = result["rows"]["fixed-a1"], result["rows"]["lsg"]["values"]
    assert fixed["vs_lsg"] == json.loads(json.dumps(stats.paired(fixed["values"], lsg)))
    text = (out / "ablation.md").read_text()
    assert "2-fold cross-validation" in text and "Machine: " in text and "Run time: " in text
    assert "Significant differences from LSG: none." in text  # 2 seeds can never be significant
    assert (out / "ablation.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    stamp = (out / "lsg" / "seed-0-folds2.json").stat().st_mtime_ns
    assert main(args) == 0  # read back, not trained again
    assert (out / "lsg" / "seed-0-folds2.json").stat().st_mtime_ns == stamp
    assert main([*args, "--lr", "0.003"]) == 2  # fold results of another config: refused before any run
    assert (out / "lsg" / "seed-0-folds2.json").stat().st_mtime_ns == stamp
    assert main(["ablate", "--rows", "lsg", "--folds", "1", *SMALL, "--out", str(tmp_path / "f1")]) == 2
    assert main(["ablate", "--rows", "lsg", "--folds", "2", "--dataset", "cifar10", *SMALL,
                 "--out", str(tmp_path / "f2")]) == 2


def test_the_readme_ablation_recipe_builds_its_depth_20_plain_stack():
    from pathlib import Path

    from training.config import TrainConfig
    from training.models import build_model

    config = TrainConfig.from_toml(Path(__file__).parent.parent / "recipes" / "ablation-digits-plain-depth20.toml")
    model = build_model(config, (1, 8, 8), 10)
    assert len(model.lif_layers()) == 21 and config.arch == "digits-plain"


def test_the_headings_count_epochs_and_seeds_in_words():
    from training.ablation_report import counted, markdown
    from training.config import TrainConfig

    assert (counted(1, "epoch"), counted(8, "epoch"), counted(0, "seed")) == ("1 epoch", "8 epochs", "0 seeds")
    row = {**dataclasses.asdict(ROWS["lsg"]), "paper": dict(ROWS["lsg"].paper), "values": [0.9], "mean": 0.9,
           "std": 0.0, "min": 0.9, "max": 0.9, "vs_lsg": None}
    run = {"config": TrainConfig(epochs=1).to_dict(), "seeds": [0], "folds": 0, "machine": "m", "seconds": 1.0,
           "tables": {"1": ["lsg"]}, "rows": {"lsg": row}}
    text = markdown(run)
    assert ", 1 epoch, adam" in text and "over 1 seed (min-max)" in text
    wide = markdown({**run, "config": TrainConfig(epochs=1, arch="resnet19", width=0.125, lr_b_scale=10.0).to_dict()})
    assert wide.startswith("# Ablation: resnet19 at width 0.125 on digits, T = 4, 1 epoch, adam lr 0.002 (decays b at "
                           "10x), seeds 0")
    assert text.startswith("# Ablation: digits-cnn on digits, T = 4, 1 epoch, adam lr 0.002, seeds 0")


def test_the_beta_moving_recipe_builds_resnet19_at_an_eighth_with_its_decays_at_10x_lr():
    from pathlib import Path

    from training.config import TrainConfig
    from training.loop import make_optimizer
    from training.models import build_model

    config = TrainConfig.from_toml(Path(__file__).parent.parent / "recipes" / "ablation-digits-resnet19-w8-lrb10.toml")
    model = build_model(config, (1, 8, 8), 10)
    assert (config.arch, config.width, len(model.lif_layers())) == ("resnet19", 0.125, 18)
    assert model.blocks["stem"].conv.out_channels == 16
    assert [g["lr"] for g in make_optimizer(config, model).param_groups] == [0.002, pytest.approx(0.02)]
