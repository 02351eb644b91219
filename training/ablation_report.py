"""What ``ablate`` writes for people: ``ablation.md`` (one table per paper table, each row's mean
+- std over seeds, the paper's number and source, the paired comparison with LSG) and the figure
``ablation.png``. Both read only the run record :func:`training.ablate.ablate` builds (the content
of ``ablation.json``)."""

from __future__ import annotations

from typing import Any

from training import ablation_stats
from training.ablate import PAPER_SOURCES, REFERENCE, ROWS, TABLES, paper_number


def _pct(x: float) -> str:
    return f"{x * 100:.1f}"


def counted(n: int, noun: str) -> str:
    """``n`` and ``noun``, plural unless ``n`` is 1: "1 epoch", "8 epochs"."""
    return f"{n} {noun}{'' if n == 1 else 's'}"


def trains(row: dict[str, Any]) -> str:
    """What a row trains, in words: decay and width."""
    if row["mode"] == "fixed":
        return f"fixed decay {row['beta_init']:g}, alpha {row['alpha']:g}"
    if row["mode"] == "trainable-decay":
        return f"trained decay from {row['beta_init']:g}, alpha {row['alpha']:g}"
    return f"trained decay from {row['beta_init']:g}, alpha = 2 v_th sqrt(1 + beta^2)"


def paper_cell(name: str, table: str) -> str:
    found = paper_number(name, table)
    if found is None:
        return "not in the paper"
    value, where = found
    return f"{value:.2f}" + ("" if where == table else f" (Table {where})")


def versus_cell(v: dict[str, Any] | None) -> tuple[str, str, str]:
    """(difference [CI], p, significant?) of a paired comparison; the reference row's own cells."""
    if v is None:
        return "reference", "", ""
    lo, hi = v["ci95"]
    return (f"{v['mean_diff'] * 100:+.1f} [{lo * 100:+.1f}, {hi * 100:+.1f}]", f"{v['p']:.3f}",
            "**yes**" if v["significant"] else "no")


def _width(config: dict[str, Any]) -> str:
    """The heading's note of a width other than 1 (``resnet19 at width 0.125``)."""
    return "" if config.get("width", 1.0) == 1 else f" at width {config['width']:g}"


def _lr_b(config: dict[str, Any]) -> str:
    """The heading's note of the decays' own learning rate, when it is not the weights'."""
    scale = config.get("lr_b_scale", 1.0)
    return "" if scale == 1 else f" (decays b at {scale:g}x)"


def markdown(run: dict[str, Any]) -> str:
    c, seeds, folds = run["config"], run["seeds"], run["folds"]
    unit = (f"pooled accuracy of a {folds}-fold cross-validation over all samples (each tested once), per seed"
            if folds else f"final-epoch test accuracy (test share {c['test_fraction']:g}), per seed")
    lines = [f"# Ablation: {c['arch']}{_width(c)} on {c['dataset']}, T = {c['timesteps']}, "
             f"{counted(c['epochs'], 'epoch')}, {c['optimizer']} lr {c['lr']:g}{_lr_b(c)}, "
             f"seeds {', '.join(map(str, seeds))}", "",
             f"Machine: {run['machine']}. Run time: {run['seconds']:.0f} s (this invocation; runs finished "
             f"before are read back).", "",
             f"Accuracy (%): {unit}; mean +- sample std over {counted(len(seeds), 'seed')} (min-max). Every row trains "
             f"seed s from the same initial weights on the same sample order (paired seeds).", "",
             f"Against LSG (row `{REFERENCE}`): the mean of the per-seed differences (row - LSG, points) with a "
             f"95% paired-bootstrap interval ({ablation_stats.RESAMPLES} resamples, numpy RNG seed "
             f"{ablation_stats.BOOTSTRAP_SEED}), and p of the exact paired sign-flip test (two-sided). "
             f"**Significant** means p < {ablation_stats.ALPHA:g}; with n seeds the smallest p is 2/2^n, so "
             f"fewer than 6 seeds cannot show a significant difference.", ""]
    if REFERENCE not in run["rows"]:
        lines += [f"No comparison: the LSG row `{REFERENCE}` was not run.", ""]
    for t, names in run["tables"].items():
        lines += [f"## {TABLES[t][0]}", "",
                  "| row | trains | accuracy (%) | paper (%) | row - LSG [95% CI] | p | significant |",
                  "|---|---|---:|---:|---:|---:|:---:|"]
        for n in names:
            r = run["rows"][n]
            diff, p, sig = versus_cell(r["vs_lsg"])
            lines.append(f"| `{n}` | {trains(r)} | {_pct(r['mean'])} +- {_pct(r['std'])} "
                         f"({_pct(r['min'])}-{_pct(r['max'])}) | {paper_cell(n, t)} | {diff} | {p} | {sig} |")
        lines.append("")
    significant = [n for n, r in run["rows"].items() if r["vs_lsg"] and r["vs_lsg"]["significant"]]
    lines += ["Significant differences from LSG: " + (", ".join(
        f"`{n}` ({run['rows'][n]['vs_lsg']['mean_diff'] * 100:+.1f} points)" for n in significant) or "none") + ".",
        "", "The paper's numbers are CIFAR-10 ResNet-19 T = 2 results, beside ours for their row, not a setting "
        "this run reproduces unless its config is that one. Sources:", ""]
    lines += [f"* Table {t}: {s}" for t, s in PAPER_SOURCES.items()]
    return "\n".join(lines) + "\n"


PANEL_TITLES = {"1": "Table 1: the method's parts", "2": "Table 2: fixed widths, fixed decay",
                "reach": "Ours: learned width against wider fixed widths"}


def short(name: str) -> str:
    """A row's tick label."""
    row = ROWS[name]
    if row.mode == "lsg":
        return f"LSG b0={row.beta_init:g}"
    return f"{'fixed' if row.mode == 'fixed' else 'trained'} decay\na={row.alpha:g}"


def figure_png(run: dict[str, Any]) -> bytes:
    """One panel per table: each row's mean over seeds (bar) +- sample std, every seed (dots),
    the paper's number (red bar; its table in the legend), a star over a row that differs
    significantly from LSG."""
    import io

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    tables = list(run["tables"])
    panel = max(5.0, 1.0 * len(max(run["tables"].values(), key=len)))
    fig = Figure(figsize=(max(8.0, panel * len(tables)), 5.0))  # 8 in: the legend and title fit one panel
    FigureCanvasAgg(fig)
    for ax, t in zip(fig.subplots(1, len(tables), squeeze=False).flat, tables, strict=True):
        names = run["tables"][t]
        rows = [run["rows"][n] for n in names]
        for i, r in enumerate(rows):
            color = "tab:orange" if r["mode"] == "lsg" else "tab:blue"
            ax.errorbar([i], [r["mean"] * 100], yerr=[r["std"] * 100], fmt="o", ms=7, capsize=5, color=color,
                        label="ours: mean +- std (LSG orange)" if i == 0 else None)
            jitter = [i + 0.12 + 0.04 * (k % 3) for k in range(len(r["values"]))]
            ax.plot(jitter, [v * 100 for v in r["values"]], "k.", ms=4, label="ours: one seed" if i == 0 else None)
            if r["vs_lsg"] and r["vs_lsg"]["significant"]:
                ax.annotate("*", (i, (r["mean"] + r["std"]) * 100), xytext=(0, 2), textcoords="offset points",
                            ha="center", va="bottom", fontsize=14)
        marked = [(i, paper_number(n, t)) for i, n in enumerate(names) if paper_number(n, t) is not None]
        if marked:
            ax.plot([i for i, _ in marked], [v for _, (v, _) in marked], "r_", ms=22, mew=2.5,
                    label="paper (CIFAR-10 ResNet-19 T=2)")
            for i, (v, where) in marked:
                ax.annotate(f"{v:.2f}" + ("" if where == t else f" (T{where})"), (i, v), xytext=(0, 4),
                            textcoords="offset points", ha="center", va="bottom", fontsize=7, color="tab:red")
        ax.set_xticks(range(len(names)), [short(n) for n in names], fontsize=8)
        shown = [v * 100 for r in rows for v in r["values"]] + [v for _, (v, _) in marked]
        ax.set_ylim(max(0.0, min(shown) - 5), min(105.0, max(shown) + 5))  # points, not bars: no zero baseline
        ax.set_xlim(-0.6, len(names) - 0.4)
        ax.set(ylabel="test accuracy (%)", title=PANEL_TITLES[t])
        ax.grid(axis="y", alpha=0.3)
    handles, labels = fig.axes[0].get_legend_handles_labels()
    for ax in fig.axes[1:]:  # a panel without a paper number has fewer entries
        for h, label in zip(*ax.get_legend_handles_labels(), strict=True):
            if label not in labels:
                handles, labels = [*handles, h], [*labels, label]
    fig.legend(handles, labels, loc="lower center", ncol=len(labels), fontsize=8, frameon=False)
    c = run["config"]
    folds = f", {run['folds']}-fold" if run["folds"] else ""
    fig.suptitle(f"{c['arch']}{_width(c)} on {c['dataset']}, T={c['timesteps']}, {counted(c['epochs'], 'epoch')}, "
                 f"{counted(len(run['seeds']), 'seed')}{_lr_b(c)}"
                 f"{folds}\n* differs from LSG: sign-flip p < {ablation_stats.ALPHA:g}", fontsize=9)
    fig.tight_layout(rect=(0, 0.05, 1, 0.94))
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    return buffer.getvalue()
