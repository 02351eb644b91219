"""The seed paper's figures as PNG files, drawn from a run directory's CSV files.

``metrics.csv`` (one row per epoch) and ``diagnostics.csv`` (one row per epoch and LIF layer,
:mod:`training.diagnostics`) hold the numbers; ``membranes.npz`` the last epoch's membrane
histograms. :func:`draw` writes, under ``<run>/plots/``:

* ``fig3_membranes.png``: each layer's membrane distribution at the last epoch against Theorem 1's
  normal density with ``sigma^2 = (1 + beta^2) v_th^2``;
* ``fig4_accuracy_loss.png``: test accuracy and loss per epoch;
* ``fig5_in_window.png``: per layer, the fraction of membranes inside the gradient window;
* ``fig6_alpha.png``, ``fig7_beta.png``: each layer's surrogate width and decay over training;
* ``fig67_depth.png``: the same two against depth, one line per epoch, with the rank correlation
  of each with depth (:mod:`training.depth_trend`: does the width grow with depth?).
"""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from pathlib import Path

import numpy as np

from lsg_io import files
from training import depth_trend

NAMES = ("fig3_membranes.png", "fig4_accuracy_loss.png", "fig5_in_window.png", "fig6_alpha.png", "fig7_beta.png",
         "fig67_depth.png")


def _read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _save(fig, path: Path) -> None:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    files.write_bytes(path, buffer.getvalue())


def _per_layer(rows: list[dict[str, str]], key: str) -> dict[str, tuple[list[int], list[float]]]:
    series: dict[str, tuple[list[int], list[float]]] = defaultdict(lambda: ([], []))
    for row in rows:
        epochs, values = series[row["layer"]]
        epochs.append(int(row["epoch"]))
        values.append(float(row[key]))
    return dict(series)


def layer_colours(n: int) -> list:
    """``n`` colours that tell layers apart: a qualitative palette (tab10, tab20 past ten layers),
    never a sequential one, whose last colour is pale on white and whose neighbours look alike."""
    from matplotlib import colormaps

    palette = colormaps["tab10" if n <= 10 else "tab20"]
    return [palette(i % palette.N) for i in range(n)]


#: more layers than this are coloured by depth (tab20 would repeat colours and the legend not fit)
MOST_NAMED_LAYERS = 20


def layer_lines(plt, rows, key: str, ylabel: str, title: str):
    """One line per layer against epoch: a named colour each and a legend, or, past
    :data:`MOST_NAMED_LAYERS` (deep plain stacks), a sequential colour by depth and a colour bar."""
    from matplotlib import colormaps
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    fig, ax = plt.subplots(figsize=(7, 4))
    series = _per_layer(rows, key)
    deep = len(series) > MOST_NAMED_LAYERS
    depth = colormaps["viridis"].resampled(256)
    colours = [depth(0.92 * i / max(1, len(series) - 1)) for i in range(len(series))] if deep else \
        layer_colours(len(series))
    for colour, (layer, (epochs, values)) in zip(colours, series.items(), strict=True):
        ax.plot(epochs, values, color=colour, label=layer, marker="." if len(epochs) < 30 else None)
    ax.set(xlabel="epoch", ylabel=ylabel, title=title)
    if deep:
        names = list(series)
        bar = fig.colorbar(ScalarMappable(Normalize(1, len(series) / 0.92), depth), ax=ax)
        bar.set_label(f"LIF layer: 1 = {names[0]} (input side) to {len(series)} = {names[-1]}", fontsize=8)
        bar.set_ticks([1, len(series) // 2, len(series)])
    else:
        ax.legend(fontsize=7, ncol=2)
    fig.subplots_adjust(bottom=0.13)  # room for the x label
    return fig


def draw(run: Path) -> list[Path]:
    """Write the six figures of the run in ``run`` (:data:`NAMES`); returns their paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    run = Path(run)
    out = run / "plots"
    metrics = _read_csv(run / "metrics.csv")
    diagnostics = _read_csv(run / "diagnostics.csv")
    paths = [out / name for name in NAMES]

    hist = np.load(run / "membranes.npz")
    layers = [str(name) for name in hist["layers"]]
    cols = min(4, len(layers))
    rows = -(-len(layers) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.4 * rows + 0.4), squeeze=False)
    v_th = float(hist["v_th"])
    edges = hist["edges"]
    widths = np.diff(edges)
    grid = np.linspace(edges[0], edges[-1], 400)
    for ax, name, counts, beta in zip(axes.flat, layers, hist["counts"], hist["beta"], strict=False):
        density = counts / max(1, counts.sum()) / widths
        ax.stairs(density, edges, fill=True, color="tab:blue", alpha=0.6, label="measured")
        sigma = v_th * np.sqrt(1 + beta**2)
        ax.plot(grid, np.exp(-grid**2 / (2 * sigma**2)) / (sigma * np.sqrt(2 * np.pi)), color="tab:red",
                label=f"Theorem 1, sigma {sigma:.3f}")
        ax.axvline(v_th, color="k", lw=0.8, ls="--")
        ax.set_title(f"{name} (beta {beta:.3f})", fontsize=8)
        ax.set_xlabel("membrane potential u", fontsize=7)
        ax.set_ylabel("density", fontsize=7)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=6, loc="upper left")  # every panel: its own sigma
    for ax in list(axes.flat)[len(layers):]:
        ax.axis("off")
    fig.suptitle(f"membrane potentials at epoch {int(hist['epoch'])} against Theorem 1's normal density (dashed: "
                 f"v_th = {v_th:g}; values beyond +-{edges[-1]:g} are counted in the end bins)", fontsize=9)
    fig.subplots_adjust(top=1 - 0.75 / fig.get_figheight(), bottom=0.75 / fig.get_figheight(), hspace=0.7,
                        wspace=0.35, left=0.06, right=0.98)
    _save(fig, paths[0])
    plt.close(fig)

    epochs = [int(r["epoch"]) for r in metrics]
    fig, (acc, loss) = plt.subplots(1, 2, figsize=(10, 3.6))
    acc.plot(epochs, [100 * float(r["test_accuracy"]) for r in metrics], label="test")
    acc.plot(epochs, [100 * float(r["train_accuracy"]) for r in metrics], label="train", alpha=0.7)
    acc.set(xlabel="epoch", ylabel="accuracy (%)", title="accuracy")
    acc.legend()
    loss.plot(epochs, [float(r["test_loss"]) for r in metrics], label="test")
    loss.plot(epochs, [float(r["train_loss"]) for r in metrics], label="train", alpha=0.7)
    loss.set(xlabel="epoch", ylabel="loss", title="loss", yscale="log")
    loss.legend()
    fig.subplots_adjust(bottom=0.15, wspace=0.25)  # room for the x labels
    _save(fig, paths[1])
    plt.close(fig)

    for path, (key, ylabel, title) in zip(paths[2:5], (
            ("in_window", "fraction of membranes", "inside the gradient window |u - v_th| < alpha/2"),
            ("alpha", "alpha", "surrogate width per layer"), ("beta", "beta", "decay per layer")), strict=True):
        fig = layer_lines(plt, diagnostics, key, ylabel, title)
        _save(fig, path)
        plt.close(fig)
    fig = depth_trend.figure(plt, diagnostics, "Figs. 6 and 7 against depth: each layer's decay and surrogate "
                             "width, one line per epoch")
    _save(fig, paths[5])
    plt.close(fig)
    return paths
