"""Repeated runs: ``train --seeds`` and ``ablate``, the seed paper's Tables 1 and 2.

``train --seeds 0,1,2 --out DIR`` trains one run per seed in ``DIR/seed-<s>`` and writes
``DIR/summary.json`` and ``DIR/summary.md``: the final test accuracy of each seed, their mean and
sample standard deviation. ``ablate`` does that for every row of the paper's ablations, each in
``DIR/<row>/seed-<s>``, and writes ``DIR/ablation.md``, ``DIR/ablation.json`` and the figure
``DIR/ablation.png``:

* Table 1, the method's parts: no trainable decay and a fixed width (``fixed``, alpha 1), a
  trainable decay with a fixed width (``trainable-decay``, alpha 1), and LSG;
* Table 2, fixed widths against LSG: ``trainable-decay`` with alpha 0.5, 1, 2.5, 5 and 10 (the
  decay stays trainable so a row differs from LSG only in its width rule), and LSG.

Both are resumable: a seed whose run finished is read back, one with a ``train_state.pt`` resumes.
Either only if it is that seed's run: a seed directory holding a run of another configuration is
refused, naming it, before the first run trains.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lsg_io import files


class AblationError(ValueError):
    """Bad input to the repeated runs (``--seeds``, a seed directory holding another run): the
    CLI prints the message as one line (:mod:`lsg_deploy.pipeline` makes it a ``UsageError``)."""


@dataclass(frozen=True)
class Row:
    name: str  #: the run folder
    label: str  #: the table's words
    mode: str
    alpha: float


ROWS = {
    "fixed-a1": Row("fixed-a1", "no trainable decay, fixed width alpha 1", "fixed", 1.0),
    **{f"decay-a{a:g}": Row(f"decay-a{a:g}", f"trainable decay, fixed width alpha {a:g}", "trainable-decay", a)
       for a in (0.5, 1.0, 2.5, 5.0, 10.0)},
    "lsg": Row("lsg", "LSG: trainable decay, alpha = 2 v_th sqrt(1 + beta^2)", "lsg", 1.0),
}
TABLES = {
    "1": ("Table 1: the method's parts", ("fixed-a1", "decay-a1", "lsg")),
    "2": ("Table 2: fixed widths against LSG",
          ("decay-a0.5", "decay-a1", "decay-a2.5", "decay-a5", "decay-a10", "lsg")),
}
#: the paper's CIFAR-10 ResNet-19 T = 2 numbers (DESIGN.md section 2), shown beside ours for that setting
PAPER_TABLE2 = {"decay-a0.5": 92.12, "decay-a1": 92.68, "decay-a2.5": 90.68, "decay-a5": 61.54, "decay-a10": 30.82,
                "lsg": 94.41}


#: the most runs one ``--seeds`` asks for (each is a whole training run)
MAX_RUNS = 1000


def parse_seeds(text: str) -> list[int]:
    """``"0,1,2"`` -> [0, 1, 2]; ``"5"`` -> the first five seeds, [0 .. 4]. Every seed is checked
    here, before the first run: at most :data:`MAX_RUNS`, each in train's seed range."""
    from training.config import MAX_SEED

    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise AblationError(f"--seeds must be a count or a comma-separated list of integers, "
                            f"got {text!r:.80}") from None
    if "," not in text and len(values) == 1:
        if not 1 <= values[0] <= MAX_RUNS:
            raise AblationError(f"--seeds: a count must lie in [1, {MAX_RUNS}], got {_shown(values[0])}")
        values = list(range(values[0]))
    if not values or len(set(values)) != len(values):
        raise AblationError(f"--seeds must name distinct seeds, got {text!r:.80}")
    if len(values) > MAX_RUNS:
        raise AblationError(f"--seeds names {len(values)} seeds; at most {MAX_RUNS} runs")
    bad = [v for v in values if not 0 <= v <= MAX_SEED]
    if bad:
        raise AblationError(f"--seeds: seed {_shown(bad[0])} is outside [0, {MAX_SEED}] (numpy's seed range)")
    return values


def _shown(n: int) -> str:
    """An integer as text, a long one abbreviated."""
    text = str(n)
    return text if len(text) <= 24 else f"{text[:12]}... ({len(text.lstrip('-'))} digits)"


def spread(values: list[float]) -> dict[str, Any]:
    return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0,
            "min": min(values), "max": max(values), "n": len(values), "values": values}


def seed_config(overrides: dict[str, Any], config_file: Path | None, seed: int):
    """The :class:`training.config.TrainConfig` the run of ``seed`` trains (``overrides``: the
    command line's settings, an ablation row's mode and alpha among them)."""
    from training.config import TrainConfig, read_toml

    try:
        return TrainConfig.layered(read_toml(config_file) if config_file else {}, {**overrides, "seed": seed})
    except ValueError as exc:
        raise AblationError(str(exc)) from None


def _refuse_other(run: Path, name: str, theirs: dict[str, Any], ours: dict[str, Any]) -> None:
    """A run in ``run`` (its file ``name`` holds config ``theirs``) is read back or resumed only as
    the run of config ``ours``: they may differ only where a resumed run may (``RESUME_MAY_CHANGE``)."""
    from training.config import RESUME_MAY_CHANGE

    differ = [f"{k} {theirs.get(k)!r} (not {ours.get(k)!r})" for k in sorted(set(theirs) | set(ours))
              if k not in RESUME_MAY_CHANGE and theirs.get(k) != ours.get(k)]
    if differ:
        raise AblationError(f"{run} holds a run of another configuration ({name}: {', '.join(differ[:4])}"
                         f"{', ...' if len(differ) > 4 else ''}); move it away or choose another --out")


def _finished(run: Path, config: Any) -> dict[str, Any] | None:
    """The last metrics row of the run in ``run`` if it finished ``config`` (a TrainConfig), else
    None (trained afresh, or resumed from its ``train_state.pt``). A ``model.pt`` or
    ``train_state.pt`` there of another configuration is refused (:func:`_refuse_other`): it
    would be reported, or resumed, as this row's run."""
    from training.checkpoint import CheckpointError, load_checkpoint, load_resume
    from training.config import TrainConfig

    ours = config.to_dict()
    if (run / "model.pt").is_file():
        try:
            _, doc = load_checkpoint(run / "model.pt")
        except CheckpointError:
            doc = None  # not read back; whether it may be replaced is lsg_deploy.outputs' to say
        if doc is not None:
            _refuse_other(run, "model.pt", TrainConfig.from_dict(doc["config"]).to_dict(), ours)
            if len(doc["metrics"]) == config.epochs:
                return doc["metrics"][-1]
    if (run / "train_state.pt").is_file():
        try:
            _, theirs, _, _ = load_resume(run / "train_state.pt")
        except CheckpointError as exc:
            raise AblationError(str(exc)) from None
        _refuse_other(run, "train_state.pt", theirs.to_dict(), ours)
    return None


def check_seed_runs(overrides: dict[str, Any], config_file: Path | None, out: Path, seeds: list[int]) -> None:
    """Before the first run: every seed directory holding a run holds one of its seed's config."""
    for seed in seeds:
        _finished(Path(out) / f"seed-{seed}", seed_config(overrides, config_file, seed))


def run_seeds(train: Callable[..., dict[str, Any]], overrides: dict[str, Any], config_file: Path | None, out: Path,
              seeds: list[int], quiet: bool, say: Callable[[str], None], **train_args: Any) -> dict[str, Any]:
    """One run per seed in ``out/seed-<s>`` (finished ones read back, interrupted ones resumed);
    returns the spread of the final test accuracies and writes ``summary.json`` / ``summary.md``.
    Every seed directory is checked (:func:`check_seed_runs`) before the first run."""
    from training.config import RESUME_MAY_CHANGE  # what a resumed run may take from the command line

    check_seed_runs(overrides, config_file, out, seeds)
    finals: dict[int, dict[str, Any]] = {}
    for seed in seeds:
        run = Path(out) / f"seed-{seed}"
        row = _finished(run, seed_config(overrides, config_file, seed))
        if row is None:
            resume = (run / "train_state.pt").is_file()
            result = train({**overrides, "seed": seed} if not resume else
                           {k: overrides.get(k) for k in RESUME_MAY_CHANGE},
                           None if resume else config_file, run, quiet=quiet, resume=resume, **train_args)
            row = result["metrics"]
            say(f"  seed {seed}: test accuracy {row['test_accuracy'] * 100:.2f}% ({result['seconds']:.0f} s)")
        else:
            say(f"  seed {seed}: finished before, test accuracy {row['test_accuracy'] * 100:.2f}%")
        finals[seed] = row
    summary = {"seeds": seeds, "test_accuracy": spread([finals[s]["test_accuracy"] for s in seeds]),
               "final": {str(s): finals[s] for s in seeds}}
    files.write_text(Path(out) / "summary.json", json.dumps(summary, indent=2) + "\n")
    acc = summary["test_accuracy"]
    lines = ["| seed | test accuracy (%) |", "|---:|---:|"]
    lines += [f"| {s} | {finals[s]['test_accuracy'] * 100:.2f} |" for s in seeds]
    lines += [f"| mean +- std | {acc['mean'] * 100:.2f} +- {acc['std'] * 100:.2f} |"]
    files.write_text(Path(out) / "summary.md", "\n".join(lines) + "\n")
    return summary


def _cell(acc: dict[str, Any]) -> str:
    return (f"{acc['mean'] * 100:.1f} +- {acc['std'] * 100:.1f} "
            f"({acc['min'] * 100:.1f}-{acc['max'] * 100:.1f})")


def ablate(train: Callable[..., dict[str, Any]], base: Any, overrides: dict[str, Any], config_file: Path | None,
           out: Path, seeds: list[int], tables: list[str], quiet: bool, say: Callable[[str], None],
           **train_args: Any) -> dict[str, Any]:
    """Run every row of ``tables`` over ``seeds``; write ``ablation.md``, ``ablation.json`` and
    ``ablation.png``.
    ``base`` is the resolved config (for the heading); ``overrides`` the command line's."""
    names = list(dict.fromkeys(name for t in tables for name in TABLES[t][1]))
    for name in names:  # every row's seed directories, before the first run
        check_seed_runs({**overrides, "mode": ROWS[name].mode, "alpha": ROWS[name].alpha}, config_file,
                        Path(out) / name, seeds)
    results: dict[str, Any] = {}
    for name in names:
        row = ROWS[name]
        say(f"{name}: {row.label}")
        results[name] = run_seeds(train, {**overrides, "mode": row.mode, "alpha": row.alpha}, config_file,
                                  Path(out) / name, seeds, quiet, say, **train_args)["test_accuracy"]
    paper = base.dataset == "cifar10" and base.arch == "resnet19" and base.timesteps == 2
    lines = [f"# Ablation: {base.arch} on {base.dataset}, T = {base.timesteps}, {base.epochs} epochs, "
             f"{base.optimizer} lr {base.lr:g}, seeds {', '.join(map(str, seeds))}", "",
             "Final-epoch test accuracy (%), mean +- sample std over seeds (min-max).", ""]
    for t in tables:
        title, rows = TABLES[t]
        lines += [f"## {title}", "", "| row | accuracy (%) |" + (" paper (%) |" if paper and t == "2" else ""),
                  "|---|---:|" + ("---:|" if paper and t == "2" else "")]
        for name in rows:
            extra = f" {PAPER_TABLE2[name]:.2f} |" if paper and t == "2" else ""
            lines.append(f"| {ROWS[name].label} | {_cell(results[name])} |{extra}")
        lines.append("")
    text = "\n".join(lines)
    files.write_text(Path(out) / "ablation.md", text)
    files.write_text(Path(out) / "ablation.json", json.dumps(
        {"config": base.to_dict(), "seeds": seeds, "tables": {t: TABLES[t][1] for t in tables},
         "rows": {n: {"label": ROWS[n].label, "mode": ROWS[n].mode, "alpha": ROWS[n].alpha, **results[n]}
                  for n in names}}, indent=2) + "\n")
    files.write_bytes(Path(out) / "ablation.png", figure_png(results, tables, PAPER_TABLE2 if paper else None,
                                                             lines[0].removeprefix("# ")))
    return {"markdown": text, "rows": results}


def figure_png(results: dict[str, Any], tables: list[str], paper: dict[str, float] | None, title: str) -> bytes:
    """One panel per table: each row's mean accuracy over seeds (bar), its sample std (error bar)
    and every seed's accuracy (dots); the paper's value where the setting is the paper's."""
    import io

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5.5 * len(tables), 4.6))
    FigureCanvasAgg(fig)
    for ax, t in zip(fig.subplots(1, len(tables), squeeze=False).flat, tables, strict=True):
        names = TABLES[t][1]
        means = [results[n]["mean"] * 100 for n in names]
        stds = [results[n]["std"] * 100 for n in names]
        ax.bar(range(len(names)), means, yerr=stds, capsize=4, color="tab:blue", alpha=0.75, label="mean +- std")
        for i, n in enumerate(names):
            ax.plot([i] * len(results[n]["values"]), [v * 100 for v in results[n]["values"]], "k.", ms=4,
                    label="one seed" if i == 0 else None)
        if paper is not None and t == "2":
            ax.plot(range(len(names)), [paper[n] for n in names], "r_", ms=18, mew=2, label="paper")
        ax.set_xticks(range(len(names)), names, rotation=30, ha="right", fontsize=8)
        ax.set(xlabel="row", ylabel="test accuracy (%)", title=TABLES[t][0])
        ax.legend(fontsize=7, loc="lower left")
    fig.suptitle(title, fontsize=9)
    fig.subplots_adjust(bottom=0.25, top=0.85, wspace=0.3)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    return buffer.getvalue()
