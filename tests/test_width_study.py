"""``python -m training.width_study``: the seed paper's Fig. 5 at initialisation, per layer and
ablation row, on a small plain stack of the digits."""

from __future__ import annotations

import json

import pytest
import torch

from training.config import TrainConfig
from training.data import DataSpec, load
from training.width_study import main, study

ROWS = ("fixed-a1", "decay-a1", "fixed-a5", "lsg")


@pytest.fixture(scope="module")
def result():
    train, _, classes = load(DataSpec())
    x, y = torch.as_tensor(train.analog[:32]), torch.as_tensor(train.labels[:32])
    return study(TrainConfig(arch="digits-plain", channels=(8, 8, 8), hidden=16, timesteps=2), ROWS, x, y, classes)


def test_every_row_reports_every_lif_layer(result):
    assert list(result["rows"]) == list(ROWS)
    for rows in result["rows"].values():
        assert [r["layer"] for r in rows] == ["conv1", "conv2", "conv3", "fc1"]
        assert all(r["grad_norm"] > 0 and 0 <= r["in_window"] <= 1 for r in rows)


def test_rows_differ_only_in_the_window(result):
    """Same seed, same decay at initialisation: a trainable decay changes nothing before the first
    step (equal, not close), and LSG's width is 2 v_th sqrt(1 + 0.2^2)."""
    fixed, decay, wide, lsg = (result["rows"][n] for n in ROWS)
    assert fixed == decay
    assert [r["alpha"] for r in wide] == [5.0] * 4
    assert all(r["alpha"] == pytest.approx((1 + 0.2**2) ** 0.5) for r in lsg)
    assert all(w["in_window"] >= f["in_window"] for w, f in zip(wide, fixed, strict=True))
    assert fixed[-1]["grad_norm"] != wide[-1]["grad_norm"]


def test_the_command_writes_its_table_and_figure(tmp_path, capsys):
    assert main(["--out", str(tmp_path), "--depth", "2", "--channels", "4", "--batch", "16", "--timesteps", "2",
                 "--rows", "fixed-a1,lsg"]) == 0
    doc = json.loads((tmp_path / "width_study.json").read_text())
    assert list(doc["rows"]) == ["fixed-a1", "lsg"] and doc["batch"] == 16
    assert "| conv1 |" in (tmp_path / "width_study.md").read_text() and "gradient" in capsys.readouterr().out
    assert (tmp_path / "width_study.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(SystemExit):
        main(["--out", str(tmp_path), "--rows", "lsg,decay-a7"])
