"""``training.depth_trend``: beta and the width read back from diagnostics.csv by epoch and depth,
the rank correlation with depth, the table and the figure (the paper's Figs. 6 and 7 against depth)."""

from __future__ import annotations

import csv

import matplotlib
import pytest

from training import depth_trend
from training.runlog import csv_text

matplotlib.use("Agg")

LAYERS = ("conv1", "conv2", "conv3", "fc1")


def _rows(values_by_epoch: dict[int, list[float]], mode: str = "lsg") -> list[dict[str, str]]:
    """diagnostics.csv rows (as csv.DictReader gives them) with the given betas per layer."""
    rows = []
    for epoch, betas in values_by_epoch.items():
        for layer, beta in zip(LAYERS, betas, strict=True):
            alpha = 2 * 0.5 * (1 + beta**2) ** 0.5 if mode == "lsg" else 1.0
            rows.append({"epoch": epoch, "layer": layer, "beta": beta, "alpha": alpha, "in_window": 0.5})
    return list(csv.DictReader(csv_text(rows).splitlines()))


def test_spearman_against_depth():
    assert depth_trend.spearman([0.1, 0.2, 0.3, 0.9]) == pytest.approx(1.0)
    assert depth_trend.spearman([0.9, 0.3, 0.2, 0.1]) == pytest.approx(-1.0)
    # ties: Pearson's r of the ranks 2.5, 1, 4, 2.5 against 1..4, i.e. 1.5 / sqrt(5 * 4.5)
    assert depth_trend.spearman([0.2, 0.1, 0.3, 0.2]) == pytest.approx(1.5 / 22.5**0.5)
    assert depth_trend.spearman([1.0, 1.0, 1.0]) is None and depth_trend.spearman([0.1, 0.2]) is None


def test_trend_per_epoch_and_quantity():
    rows = _rows({1: [0.2, 0.2, 0.2, 0.2], 2: [0.2, 0.25, 0.3, 0.5]})
    records = {(r["epoch"], r["quantity"]): r for r in depth_trend.trend(rows)}
    assert records[1, "beta"]["spearman"] is None and records[2, "beta"]["spearman"] == pytest.approx(1.0)
    last = records[2, "alpha"]
    assert last["first"] == pytest.approx((1 + 0.04) ** 0.5) and last["last"] == pytest.approx((1 + 0.25) ** 0.5)
    assert last["min"] == last["first"] and last["max"] == last["last"]
    fixed = depth_trend.trend(_rows({1: [0.2, 0.3, 0.4, 0.5]}, mode="fixed"))
    assert [r["spearman"] for r in fixed] == [pytest.approx(1.0), None]  # a fixed width has no trend


def test_shown_epochs_keep_the_first_and_last():
    assert depth_trend.shown_epochs([1, 2, 3]) == [1, 2, 3]
    shown = depth_trend.shown_epochs(list(range(1, 41)), most=5)
    assert shown[0] == 1 and shown[-1] == 40 and len(shown) == 5


def test_the_command_prints_the_table_and_refuses_a_directory_without_diagnostics(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    rows = _rows({1: [0.2, 0.2, 0.2, 0.2], 2: [0.2, 0.25, 0.3, 0.5]})
    (run / "diagnostics.csv").write_text(csv_text(rows))
    assert depth_trend.main([str(run)]) == 0
    text = capsys.readouterr().out
    assert "4 LIF layers, conv1 (input side) to fc1" in text
    assert "| 2 | beta | 0.2000 | 0.5000 | 0.2000 | 0.5000 | +1.00 |" in text
    assert "| 1 | alpha |" in text and "n/a (all equal)" in text
    with pytest.raises(SystemExit):
        depth_trend.main([str(tmp_path)])


def test_the_figure_has_one_line_per_epoch_in_both_panels():
    import matplotlib.pyplot as plt

    fig = depth_trend.figure(plt, _rows({1: [0.2] * 4, 2: [0.2, 0.3, 0.4, 0.5], 3: [0.2, 0.3, 0.5, 0.7]}), "t")
    beta, alpha = fig.axes
    assert [len(ax.get_lines()) for ax in (beta, alpha)] == [3, 3]
    assert list(beta.get_lines()[-1].get_ydata()) == [0.2, 0.3, 0.5, 0.7]
    assert [t.get_text() for t in beta.get_legend().get_texts()] == ["epoch 1", "epoch 2 (rho +1.00)",
                                                                    "epoch 3 (rho +1.00)"]
    plt.close(fig)


def test_a_deep_runs_figures_are_written_with_layers_coloured_by_depth(tmp_path):
    """A 22-layer run (past the 20 layers a legend can name) drawn from its files alone: every
    figure written, the per-layer lines coloured along one sequential map with a colour bar."""
    import io

    import numpy as np

    from training import plots

    layers = [f"conv{i}" for i in range(1, 22)] + ["fc1"]
    diagnostics = [{"epoch": e, "layer": name, "beta": 0.2 + 0.01 * e * i, "alpha": 1.0 + 0.01 * e * i,
                    "in_window": 0.4} for e in (1, 2) for i, name in enumerate(layers)]
    (tmp_path / "diagnostics.csv").write_text(csv_text(diagnostics))
    (tmp_path / "metrics.csv").write_text(csv_text([{"epoch": e, "train_loss": 1.0 / e, "train_accuracy": 0.5,
                                                     "test_loss": 1.1 / e, "test_accuracy": 0.4} for e in (1, 2)]))
    buffer = io.BytesIO()
    edges = np.linspace(-2.0, 2.0, 9)
    np.savez(buffer, layers=np.array(layers), counts=np.ones((len(layers), 8), dtype=np.int64),
             beta=np.full(len(layers), 0.2), edges=edges, v_th=0.5, epoch=2)
    (tmp_path / "membranes.npz").write_bytes(buffer.getvalue())
    paths = plots.draw(tmp_path)
    assert [p.name for p in paths] == list(plots.NAMES) and "fig67_depth.png" in plots.NAMES
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in paths)

    import matplotlib.pyplot as plt

    fig = plots.layer_lines(plt, list(csv.DictReader(csv_text(diagnostics).splitlines())), "beta", "beta", "t")
    main, bar = fig.axes
    colours = [tuple(line.get_color()) for line in main.get_lines()]
    assert len(set(colours)) == len(layers) and main.get_legend() is None
    assert "22 = fc1" in bar.get_ylabel()
    plt.close(fig)
