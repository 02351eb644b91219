"""The simulate report as one figure (``report.png`` beside ``--json``), read from its typed model
(:mod:`lsg_deploy.report.model`)."""

from __future__ import annotations

import io

import numpy as np

from lsg_deploy.explain import Explanation
from lsg_deploy.report.model import FLOAT, REFERENCE, Report

#: one colour per implementation, the same in every panel and figure
IMPLEMENTATION_COLOURS = {FLOAT: "tab:gray", REFERENCE: "tab:blue", "lava": "tab:orange", "rtl": "tab:green"}


def colour(implementation: str) -> str:
    return IMPLEMENTATION_COLOURS.get(implementation, "tab:purple")


#: the explain panel's runs: the integer reference, and the float network with one ingredient quantized
EXPLAIN_COLOURS = {"decay": "tab:brown", "weights": "tab:pink", "biases": "tab:olive", "thresholds": "tab:cyan",
                   "all": "tab:purple"}


def _explain_panel(ax, explain: Explanation, names: list[str], x: np.ndarray) -> None:
    """``--explain`` in a picture: per layer, the share of spikes that differ from the float
    network's, for the integer reference (its own part hatched) and for the float network with
    one ingredient quantized at a time."""
    own = {row.name: 1 - row.agreement_own for row in explain.layers}
    reference = {row.name: 1 - row.agreement_reference for row in explain.layers}
    runs = {k: v.agreement for k, v in explain.ran.items()}
    runs["all"] = explain.every.agreement
    width = 0.8 / (len(runs) + 1)
    offsets = (np.arange(len(runs) + 1) - len(runs) / 2) * width
    ax.bar(x + offsets[0], [reference[n] * 100 for n in names], width, color=colour(REFERENCE), label=REFERENCE)
    ax.bar(x + offsets[0], [own[n] * 100 for n in names], width, color="none", edgecolor="black", hatch="//",
           linewidth=0, label=f"{REFERENCE}: its own part")
    for offset, (name, agreement) in zip(offsets[1:], runs.items(), strict=True):
        ax.bar(x + offset, [(1 - agreement[n]) * 100 for n in names], width, color=EXPLAIN_COLOURS.get(name),
               label=f"only {name}" if name != "all" else "all, in float")
    ax.set(ylabel="spikes differing from float (%)", title="causes of disagreement (--explain)")
    ax.set_xlabel("layer", fontsize=8)
    ax.legend(fontsize=7)


def figure_png(report: Report) -> bytes:
    """One PNG figure of the report's hidden layers: spike agreement with the float run per
    fixed-point backend (left) and firing rates, float and fixed-point (right).

    Drawn on matplotlib's Agg canvas without pyplot (no global state, no backend switch) and
    saved without a tight bounding box or layout engine, which keeps it fast."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    rows = [row for row in report.layers if not row.readout]
    names = [row.name for row in rows]
    fixed = report.backend_names
    x = np.arange(len(rows))
    explain = report.explain
    panels = 3 if explain else 2
    fig = Figure(figsize=(max(4.0 * panels, 0.3 * panels * len(rows) + 2 * panels), 4.2))
    FigureCanvasAgg(fig)
    agree_ax, rate_ax, *more = fig.subplots(1, panels)
    compared = fixed if report.has_float else []  # agreement with the float run, where there is one
    width = 0.8 / max(1, len(compared))
    lowest = 1.0
    for i, key in enumerate(compared):
        values = np.array([row.spike_agreement[key] for row in rows]) * 100
        lowest = min(lowest, float(values.min(initial=100)) / 100)
        bars = agree_ax.bar(x + (i - (len(compared) - 1) / 2) * width, values, width, label=key,
                            color=colour(key))
        if len(rows) * len(compared) <= 8:  # room for the values on the bars
            agree_ax.bar_label(bars, fmt="%.2f", fontsize=7)
    if compared:
        bottom = max(0.0, lowest * 100 - 5)
        agree_ax.set_ylim(bottom, 100.5)
        if bottom > 0:
            agree_ax.set_xlabel(f"layer (the y axis starts at {bottom:.0f}%)", fontsize=8)
        else:
            agree_ax.set_xlabel("layer", fontsize=8)
        agree_ax.legend(fontsize=7, loc="lower right")
    else:
        agree_ax.set_axis_off()
        agree_ax.text(0.5, 0.5, "no fixed-point run\n(simulate --fixed-point)" if report.has_float else
                      "no float run\n(torch not installed)", ha="center", va="center", transform=agree_ax.transAxes)
    agree_ax.set(ylabel="spikes equal to float (%)", title="spike agreement, fixed point vs float")
    runs = [*([FLOAT] if report.has_float else []), *fixed]
    width = 0.8 / len(runs)
    for i, key in enumerate(runs):
        values = [row.firing_rate[key] * 100 for row in rows]
        rate_ax.bar(x + (i - (len(runs) - 1) / 2) * width, values, width, label=key, color=colour(key))
    rate_ax.set(ylabel="firing rate (% of neurons per step)", title="firing rate per layer")
    rate_ax.set_xlabel("layer", fontsize=8)
    rate_ax.legend(fontsize=7)
    rotate = len(rows) > 6
    if explain:
        _explain_panel(more[0], explain, names, x)
    for ax in ((agree_ax, rate_ax) if compared else (rate_ax,)) + tuple(more):
        ax.set_xticks(x, names, rotation=45 if rotate else 0, ha="right" if rotate else "center", fontsize=8)
    h = report.header
    fig.suptitle(f"{h.bundle}: {h.samples} samples, {h.timesteps} steps", fontsize=9)
    fig.subplots_adjust(left=0.2 / panels, right=0.98, top=0.86, bottom=0.28 if rotate else 0.12, wspace=0.3)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    return buffer.getvalue()
