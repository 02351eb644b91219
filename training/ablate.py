"""Repeated runs: ``train --seeds`` and ``ablate``, the seed paper's Tables 1 and 2.

``train --seeds 0,1,2 --out DIR`` trains one run per seed in ``DIR/seed-<s>`` and writes
``DIR/summary.json`` and ``DIR/summary.md``: the final test accuracy of each seed, their mean and
sample standard deviation. ``ablate`` does that for every row of the paper's ablations, each in
``DIR/<row>/seed-<s>``, and writes ``DIR/ablation.md``, ``DIR/ablation.json`` and the figure
``DIR/ablation.png``:

* Table 1, the method's parts: a fixed decay and width (``fixed-a1``), a trainable decay with a
  fixed width (``decay-a1``), and LSG;
* Table 2, fixed widths against LSG: a FIXED decay with alpha 0.5, 1, 2.5, 5 and 10 (the paper's
  alpha 1 row, 92.68, is Table 1's fixed-decay row), and LSG;
* ``reach`` (ours): a trainable decay with fixed widths inside the range LSG's width can reach,
  alpha 1.1, 1.2 and 1.414 (at v_th 0.5 LSG's width lies in [1, sqrt 2]), and LSG started from
  beta_0 0.5 and 0.8: a learned width against a slightly wider fixed one.

:data:`ROWS` is the one table of what each row trains and the paper's number for it. Every row of
seed ``s`` trains from the same initial weights on the same sample order (paired seeds); each row is
compared with LSG by :mod:`training.ablation_stats`; :mod:`training.ablation_report` writes the
table and the figure. ``--folds K`` replaces the one test split of an embedded dataset by a K-fold
cross-validation over all its samples (:func:`run_folds`).

Both are resumable: a seed whose run finished is read back, one with a ``train_state.pt`` resumes.
Either only if it is that seed's run: a seed directory holding a run of another configuration is
refused, naming it, before the first run trains.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from lsg_io import files
from training.ablation_stats import spread


class Trained(Protocol):
    """What a run's ``train`` returns as far as the seeds need it (lsg_deploy.results.Trained):
    its last epoch's row and its seconds."""

    metrics: Any
    seconds: float


class AblationError(ValueError):
    """Bad input to the repeated runs (``--seeds``, a seed directory holding another run): the
    CLI prints the message as one line (:mod:`lsg_deploy.pipeline` makes it a ``UsageError``)."""


@dataclass(frozen=True)
class Row:
    """One run configuration of the ablation: what it trains and what the paper reports for it."""

    name: str  #: the run folder
    label: str  #: the table's words
    mode: str  #: :data:`training.neuron.MODES`
    alpha: float  #: the fixed surrogate width (unused by ``lsg``, whose width follows beta)
    beta_init: float  #: the decay's start (fixed for ever in ``fixed`` mode)
    paper: tuple[tuple[str, float], ...] = ()  #: (paper table, its number in %) for each table reporting it


#: where the paper's numbers come from (Lian et al., IJCAI 2023; CIFAR-10, ResNet-19, T = 2)
PAPER_SOURCES = {
    "1": "Lian et al. 2023, Table 1 (CIFAR-10, ResNet-19, T = 2), as quoted in issue 24: fixed decay 92.68, "
         "trainable decay 93.16 (the LSG cell of Table 1 is not in our sources; its Table 2 number is shown)",
    "2": "Lian et al. 2023, Table 2 (CIFAR-10, ResNet-19, T = 2, fixed decay), as quoted in DESIGN.md section 2",
}
BETA0 = 0.2  #: the paper's initial decay (DESIGN.md section 2)


def _fixed(a: float, paper: tuple[tuple[str, float], ...]) -> Row:
    return Row(f"fixed-a{a:g}", f"fixed decay {BETA0:g}, fixed width alpha {a:g}", "fixed", a, BETA0, paper)


def _decay(a: float, paper: tuple[tuple[str, float], ...] = ()) -> Row:
    return Row(f"decay-a{a:g}", f"trainable decay from {BETA0:g}, fixed width alpha {a:g}", "trainable-decay", a,
               BETA0, paper)


def _lsg(beta0: float, paper: tuple[tuple[str, float], ...] = ()) -> Row:
    return Row("lsg" if beta0 == BETA0 else f"lsg-b{beta0:g}",
               f"LSG from beta_0 {beta0:g}: trainable decay, alpha = 2 v_th sqrt(1 + beta^2)", "lsg", 1.0, beta0, paper)


#: every row, once. The paper's Table 2 rows use a FIXED decay: its alpha 1 row (92.68) is Table 1's
#: fixed-decay row. ``decay-a1.1`` .. ``decay-a1.414`` are fixed widths inside the range LSG's width
#: can reach at v_th 0.5, [1, sqrt 2]; ``lsg-b0.5`` and ``lsg-b0.8`` start LSG wider (alpha 1.118,
#: 1.281): together they tell a learned width from a slightly wider fixed one.
ROWS = {r.name: r for r in (
    _fixed(0.5, (("2", 92.12),)), _fixed(1.0, (("1", 92.68), ("2", 92.68))), _fixed(2.5, (("2", 90.68),)),
    _fixed(5.0, (("2", 61.54),)), _fixed(10.0, (("2", 30.82),)),
    _decay(1.0, (("1", 93.16),)), _decay(1.1), _decay(1.2), _decay(1.414),
    _lsg(BETA0, (("2", 94.41),)), _lsg(0.5), _lsg(0.8),
)}
REFERENCE = "lsg"  #: the row every other is compared with
TABLES = {
    "1": ("Table 1: the method's parts", ("fixed-a1", "decay-a1", "lsg")),
    "2": ("Table 2: fixed widths (fixed decay) against LSG",
          ("fixed-a0.5", "fixed-a1", "fixed-a2.5", "fixed-a5", "fixed-a10", "lsg")),
    "reach": ("Ours: learned against wider (fixed widths inside LSG's range [1, 1.414], LSG from other beta_0)",
              ("decay-a1", "decay-a1.1", "decay-a1.2", "decay-a1.414", "lsg", "lsg-b0.5", "lsg-b0.8")),
}


def paper_number(name: str, table: str) -> tuple[float, str] | None:
    """The paper's number for row ``name`` in ``table`` and which table printed it (another table's
    when ``table`` has none for the row but another does), or None (not in the paper)."""
    numbers = dict(ROWS[name].paper)
    if table in numbers:
        return numbers[table], table
    return next(((v, t) for t, v in ROWS[name].paper), None)


def row_overrides(name: str) -> dict[str, Any]:
    """The config keys a row sets (on top of the command line's)."""
    row = ROWS[name]
    return {"mode": row.mode, "alpha": row.alpha, "beta_init": row.beta_init}


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
            _refuse_other(run, "model.pt", TrainConfig.from_saved(doc["config"]).to_dict(), ours)
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


def run_seeds(train: Callable[..., Trained], overrides: dict[str, Any], config_file: Path | None, out: Path,
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
            row = result.metrics
            say(f"  seed {seed}: test accuracy {row['test_accuracy'] * 100:.2f}% ({result.seconds:.0f} s)")
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


#: how many folds ``--folds`` may ask for (the digits' smallest class has 174 images)
MAX_FOLDS = 20


def fold_file(row_dir: Path, seed: int, folds: int) -> Path:
    """Where ``--folds`` keeps the fold results of one row and seed (``outputs`` accepts the name)."""
    return Path(row_dir) / f"seed-{seed}-folds{folds}.json"


def fold_parts(labels: np.ndarray, folds: int) -> list[np.ndarray]:
    """The test indices of each fold: a stratified partition of all samples, the same for every
    row and seed (scikit-learn's StratifiedKFold, shuffled with random_state 0)."""
    from sklearn.model_selection import StratifiedKFold

    split = StratifiedKFold(n_splits=folds, shuffle=True, random_state=0)
    return [test for _, test in split.split(np.zeros(len(labels)), labels)]


def fold_record(path: Path, config: Any, folds: int) -> dict[str, Any]:
    """The fold results in ``path`` if they are ``config``'s with ``folds`` folds (a fresh record
    when there is none); another configuration's, or an unreadable file, is an :class:`AblationError`."""
    from training.config import RESUME_MAY_CHANGE

    ours = {k: v for k, v in config.to_dict().items() if k not in RESUME_MAY_CHANGE}
    if not path.is_file():
        return {"config": ours, "folds": folds, "done": {}}
    try:
        theirs = json.loads(path.read_text())
        ok = theirs["config"] == ours and theirs["folds"] == folds and isinstance(theirs["done"], dict)
    except (OSError, ValueError, KeyError, TypeError):
        ok = False
    if not ok:
        raise AblationError(f"{path} holds fold results of another configuration or is not readable; move it away "
                            f"or choose another --out")
    return theirs


def run_folds(overrides: dict[str, Any], config_file: Path | None, row_dir: Path, seeds: list[int], folds: int,
              fold_data: Callable[[Any], tuple[Any, int]], say: Callable[[str], None]) -> dict[str, Any]:
    """``--folds K``: per seed, K runs, each testing on one fold of all samples and training on
    the rest; a seed's score is its pooled accuracy (every sample tested once). Each fold's result
    is written as it finishes (``fold_file``) and read back on a rerun of the same config."""
    from training.distributed import setup, teardown
    from training.loop import Split, fit

    finals: dict[int, float] = {}
    for seed in seeds:
        config = seed_config(overrides, config_file, seed)
        path = fold_file(row_dir, seed, folds)
        doc = fold_record(path, config, folds)
        split, classes = fold_data(config)
        for k, test in enumerate(fold_parts(split.y, folds)):
            if str(k) in doc["done"]:
                continue
            train = np.setdiff1d(np.arange(len(split.y)), test)
            ctx = setup(config.device)
            try:
                _, metrics = fit(config, Split(split.x[train], split.y[train]), Split(split.x[test], split.y[test]),
                                 classes, ctx=ctx)
            finally:
                teardown()
            acc = metrics[-1]["test_accuracy"]
            doc["done"][str(k)] = {"correct": round(acc * len(test)), "count": len(test), "test_accuracy": acc,
                                   "seconds": sum(m["seconds"] for m in metrics)}
            files.write_text(path, json.dumps(doc, indent=2) + "\n")
        done = doc["done"].values()
        finals[seed] = sum(d["correct"] for d in done) / sum(d["count"] for d in done)
        say(f"  seed {seed}: {folds}-fold accuracy over {sum(d['count'] for d in done)} samples "
            f"{finals[seed] * 100:.2f}%")
    return spread([finals[s] for s in seeds])


def machine_text(device: str) -> str:
    """The machine a run trained on, in words: the CPU, its count, the torch device."""
    import os
    import platform

    import torch

    from training.distributed import resolve_device

    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    where = resolve_device(device)
    gpu = f", {torch.cuda.get_device_name(where)}" if where.type == "cuda" else ""
    return f"{cpu}, {os.cpu_count()} CPUs{gpu}; torch {torch.__version__} on {where.type}"


def ablate(train: Callable[..., dict[str, Any]], base: Any, overrides: dict[str, Any], config_file: Path | None,
           out: Path, seeds: list[int], tables: list[str], rows: list[str] | None, quiet: bool,
           say: Callable[[str], None], folds: int = 0, fold_data: Callable[[Any], tuple[Any, int]] | None = None,
           **train_args: Any) -> dict[str, Any]:
    """Run every row of ``tables`` (only those in ``rows`` when given) over ``seeds`` (with
    ``folds``: K-fold over all samples per seed); compare each with LSG on paired seeds
    (:mod:`training.ablation_stats`); write ``ablation.md``, ``ablation.json`` and ``ablation.png``.
    ``base`` is the resolved config (for the heading); ``overrides`` the command line's."""
    from training import ablation_report, ablation_stats

    start = time.perf_counter()
    names = [n for n in dict.fromkeys(name for t in tables for name in TABLES[t][1]) if rows is None or n in rows]
    for name in names:  # every row's seed directories (fold results), before the first run
        if folds:
            for seed in seeds:
                fold_record(fold_file(Path(out) / name, seed, folds),
                            seed_config({**overrides, **row_overrides(name)}, config_file, seed), folds)
        else:
            check_seed_runs({**overrides, **row_overrides(name)}, config_file, Path(out) / name, seeds)
    results: dict[str, Any] = {}
    for name in names:
        say(f"{name}: {ROWS[name].label}")
        settings = {**overrides, **row_overrides(name)}
        if folds:
            results[name] = run_folds(settings, config_file, Path(out) / name, seeds, folds, fold_data, say)
        else:
            results[name] = run_seeds(train, settings, config_file, Path(out) / name, seeds, quiet, say,
                                      **train_args)["test_accuracy"]
    versus = {n: ablation_stats.paired(results[n]["values"], results[REFERENCE]["values"])
              for n in names if n != REFERENCE and REFERENCE in results}
    run = {"config": base.to_dict(), "seeds": seeds, "folds": folds, "machine": machine_text(base.device),
           "seconds": time.perf_counter() - start,
           "tables": {t: [n for n in TABLES[t][1] if n in names] for t in tables},
           "rows": {n: {**dataclasses.asdict(ROWS[n]), "paper": dict(ROWS[n].paper), **results[n],
                        "vs_lsg": versus.get(n)} for n in names}}
    run["tables"] = {t: v for t, v in run["tables"].items() if v}
    text = ablation_report.markdown(run)
    files.write_text(Path(out) / "ablation.md", text)
    files.write_text(Path(out) / "ablation.json", json.dumps(run, indent=2) + "\n")
    files.write_bytes(Path(out) / "ablation.png", ablation_report.figure_png(run))
    return {"markdown": text, "rows": results, "versus": versus}
