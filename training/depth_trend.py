"""Does the learned width grow with depth? The seed paper's Figs. 6 and 7 read against layer depth.

The paper shows each layer's decay beta and LSG width alpha over training and says the deeper
layers learn larger decays, hence wider windows. Every run records both per LIF layer after every
epoch in ``diagnostics.csv`` (:mod:`training.diagnostics`); this module reads them back by epoch
and depth (the layers' order is the forward order, input to output) and answers with numbers:

* per epoch, each quantity's first and last layer, its range over layers, and Spearman's rank
  correlation of the value with depth (+1: it grows with every layer; about 0: no trend; None
  when every layer holds the same value, as a fixed width does);
* the figure ``fig67_depth.png`` (:func:`figure`, drawn into every run's ``plots/``): beta and
  alpha against depth, one line per epoch (a sequential colour map, early epochs pale).

``python -m training.depth_trend RUN [RUN ...]`` prints the table of each run's diagnostics.
"""

from __future__ import annotations

import argparse
import csv
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

QUANTITIES = ("beta", "alpha")  #: the columns of diagnostics.csv read here


def by_epoch(rows: list[dict[str, str]]) -> dict[int, dict[str, dict[str, float]]]:
    """``{epoch: {layer: {"beta": .., "alpha": ..}}}`` from diagnostics.csv's rows, layers in the
    order the file lists them (forward order)."""
    epochs: dict[int, dict[str, dict[str, float]]] = {}
    for row in rows:
        epochs.setdefault(int(row["epoch"]), {})[row["layer"]] = {q: float(row[q]) for q in QUANTITIES}
    return dict(sorted(epochs.items()))


def spearman(values: Sequence[float]) -> float | None:
    """Spearman's rank correlation of ``values`` with their position (ties get average ranks);
    None when fewer than 3 values or all are equal (no order to correlate)."""
    from scipy.stats import spearmanr

    v = np.asarray(values, dtype=np.float64)
    if len(v) < 3 or np.ptp(v) == 0:
        return None
    return float(spearmanr(np.arange(len(v)), v).statistic)


def trend(rows: list[dict[str, str]]) -> list[dict[str, Any]]:
    """One record per epoch and quantity: first and last layer's value, min, max, and
    :func:`spearman` against depth."""
    out = []
    for epoch, layers in by_epoch(rows).items():
        for q in QUANTITIES:
            v = [layer[q] for layer in layers.values()]
            out.append({"epoch": epoch, "quantity": q, "first": v[0], "last": v[-1], "min": min(v), "max": max(v),
                        "spearman": spearman(v)})
    return out


def shown_epochs(epochs: Sequence[int], most: int = 6) -> list[int]:
    """At most ``most`` of ``epochs``, evenly spread, the first and last always among them."""
    if len(epochs) <= most:
        return list(epochs)
    picks = np.unique(np.round(np.linspace(0, len(epochs) - 1, most)).astype(int))
    return [epochs[i] for i in picks]


def markdown(name: str, rows: list[dict[str, str]], most: int = 6) -> str:
    """The table of :func:`trend` for the epochs of :func:`shown_epochs`."""
    records = trend(rows)
    layers = list(next(iter(by_epoch(rows).values())))
    keep = set(shown_epochs(sorted({r["epoch"] for r in records}), most))
    lines = [f"## {name}: {len(layers)} LIF layers, {layers[0]} (input side) to {layers[-1]}", "",
             "| epoch | quantity | first layer | last layer | min | max | Spearman rho with depth |",
             "|---:|---|---:|---:|---:|---:|---:|"]
    for r in records:
        if r["epoch"] in keep:
            rho = "n/a (all equal)" if r["spearman"] is None else f"{r['spearman']:+.2f}"
            lines.append(f"| {r['epoch']} | {r['quantity']} | {r['first']:.4f} | {r['last']:.4f} | {r['min']:.4f} | "
                         f"{r['max']:.4f} | {rho} |")
    return "\n".join(lines) + "\n"


def figure(plt, rows: list[dict[str, str]], title: str):
    """Two panels, LIF layer (input to output) on x: beta and alpha, one line per shown epoch."""
    from matplotlib import colormaps

    epochs = by_epoch(rows)
    shown = shown_epochs(list(epochs))
    colours = colormaps["viridis"](np.linspace(0.9, 0.0, len(shown)))  # early pale yellow-green, late dark
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, q, label in zip(axes, QUANTITIES, ("decay beta", "surrogate width alpha"), strict=True):
        for colour, epoch in zip(colours, shown, strict=True):
            values = [layer[q] for layer in epochs[epoch].values()]
            rho = spearman(values)
            tag = f"epoch {epoch}" + ("" if rho is None else f" (rho {rho:+.2f})")
            ax.plot(np.arange(1, len(values) + 1), values, marker=".", color=colour, label=tag)
        ax.set(xlabel="LIF layer (input to output)", ylabel=label, title=f"{label} against depth")
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.legend(fontsize=7, title="Spearman rho with depth", title_fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout(rect=(0, 0, 1, 0.94))
    return fig


def read(run: Path) -> list[dict[str, str]]:
    with open(Path(run) / "diagnostics.csv", newline="") as f:
        return list(csv.DictReader(f))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.depth_trend", description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path, help="run directories (each with a diagnostics.csv)")
    parser.add_argument("--epochs", type=int, default=6, help="at most this many epochs per table (default 6)")
    args = parser.parse_args(argv)
    tables = []
    for run in args.runs:
        rows = read(run) if (run / "diagnostics.csv").is_file() else []
        if not rows:
            parser.error(f"{run} holds no diagnostics.csv with rows (a run directory of lsg-deploy train)")
        tables.append(markdown(str(run), rows, max(2, args.epochs)))
    print("\n".join(tables), end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
