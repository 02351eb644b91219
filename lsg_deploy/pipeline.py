"""The three stages as library calls; the CLI is a thin layer over these functions."""

from __future__ import annotations

import csv
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from lsg_deploy import data
from lsg_deploy.errors import UsageError


def _progress(total: int, desc: str, quiet: bool):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, disable=quiet, file=sys.stderr, leave=False, dynamic_ncols=True)


def _write_csv_atomic(path: Path, rows: list[dict[str, Any]]) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(fd, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, path)


def train(config_overrides: dict[str, Any], config_file: Path | None, out: Path, quiet: bool = False) -> dict[str, Any]:
    """Train on the configured embedded dataset; write ``model.pt`` and ``metrics.csv`` in ``out``."""
    from training.checkpoint import save_checkpoint
    from training.config import TrainConfig
    from training.loop import Split, fit

    try:
        base = TrainConfig.from_toml(config_file) if config_file else TrainConfig()
        config = base.replace(**config_overrides)
    except (ValueError, TypeError) as exc:
        raise UsageError(str(exc)) from None
    spec = data.DataSpec(dataset=config.dataset, test_fraction=config.test_fraction, split_seed=0)
    train_split, test_split, classes = data.load(spec)
    bar = _progress(config.epochs, f"train {config.mode}", quiet)

    def on_epoch(row: dict[str, float]) -> None:
        bar.update(1)
        bar.set_postfix(loss=f"{row['train_loss']:.3f}", test=f"{row['test_accuracy']:.3f}")

    start = time.perf_counter()
    model, metrics = fit(
        config, Split(train_split.analog, train_split.labels), Split(test_split.analog, test_split.labels),
        classes, on_epoch=on_epoch,
    )
    bar.close()
    out.mkdir(parents=True, exist_ok=True)
    save_checkpoint(out / "model.pt", model, config, metrics, classes, spec.to_dict())
    _write_csv_atomic(out / "metrics.csv", metrics)
    return {"checkpoint": str(out / "model.pt"), "metrics": metrics[-1], "seconds": time.perf_counter() - start}


def export(checkpoint: Path, target: str, out: Path, clip: bool = False, weight_percentile: float = 100.0
           ) -> dict[str, Any]:
    """Fold and quantize ``checkpoint`` for ``target``; write the bundle directory ``out``."""
    from export.loihi import TARGETS, export_loihi
    from export.quantize import QuantPolicy, RangeError
    from training.checkpoint import CheckpointError, load_checkpoint

    if target not in TARGETS:
        raise UsageError(f"unknown target {target!r}; available: {', '.join(TARGETS)}")
    try:
        policy = QuantPolicy(on_overflow="clip" if clip else "error", weight_percentile=weight_percentile)
        _, doc = load_checkpoint(checkpoint)
        train_split, _, _ = data.load(data.DataSpec(**doc["data"]))
        result = export_loihi(checkpoint, out, train_split.pixels, train_split.input_max, policy)
    except (CheckpointError, RangeError, ValueError) as exc:
        raise UsageError(str(exc)) from None
    for warning in result.warnings:
        print(f"WARNING: {warning}", file=sys.stderr)
    return {"bundle": str(out), "warnings": result.warnings, "layers": result.bundle.quantization["layers"]}


def simulate(bundle_dir: Path, fixed_point: bool, limit: int | None = None, backend: str = "reference"
             ) -> dict[str, Any]:
    """Evaluate the float, folded and quantized-beta networks and, with ``fixed_point``, the
    integer network on ``backend``: the numpy ``reference``, ``lava`` (bit-accurate CPU
    backend, in its Python 3.10 environment) or ``all`` (both, compared bit for bit)."""
    from hardware.bundle import BundleError, read_bundle
    from lsg_deploy.report import BACKENDS, build_report

    if backend not in BACKENDS:
        raise UsageError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")

    try:
        bundle = read_bundle(bundle_dir)
        spec = data.DataSpec(**bundle.source["data"])
    except (BundleError, KeyError, TypeError) as exc:
        raise UsageError(f"{bundle_dir}: {exc}") from None
    if limit is not None and limit < 1:
        raise UsageError(f"--limit must be >= 1, got {limit}")
    _, test, _ = data.load(spec)
    backends = () if not fixed_point else ("reference", "lava") if backend == "all" else (backend,)
    return build_report(bundle, Path(bundle_dir), test.head(limit), backends)
