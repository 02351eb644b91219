"""The three stages as library calls; the CLI is a thin layer over these functions.

Bad input raises :class:`UsageError`: each stage validates its inputs and output paths before
any long work, and catches only the specific exceptions that mean bad input, so a bug still
surfaces as a traceback rather than as a user error.
"""

from __future__ import annotations

import csv
import io
import os
import sys
import time
from pathlib import Path
from typing import Any

from hardware import files
from lsg_deploy import data
from lsg_deploy.errors import UsageError
from lsg_deploy.outputs import check_bundle_target, check_creatable_dir

CHECKPOINT_NAME, METRICS_NAME = "model.pt", "metrics.csv"


def _progress(total: int, desc: str, quiet: bool):
    from tqdm import tqdm

    # disable=None: shown on a terminal only, so logs and error output stay clean
    return tqdm(total=total, desc=desc, disable=True if quiet else None, file=sys.stderr, leave=False,
                dynamic_ncols=True)


def _metrics_csv(rows: list[dict[str, Any]]) -> str:
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    return text.getvalue()


def _physical_memory() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # not reported on this platform
        return None


def train(config_overrides: dict[str, Any], config_file: Path | None, out: Path, quiet: bool = False) -> dict[str, Any]:
    """Train on the configured embedded dataset (``dataset``: a name in :data:`lsg_deploy.data.DATASETS`;
    event datasets are framed for the configured timesteps, one input per step); write ``model.pt``
    and ``metrics.csv`` in ``out``.

    Both are rewritten, complete, at the end of every epoch: a run killed at any point leaves
    the last finished epoch's checkpoint, loadable.
    """
    from training.checkpoint import checkpoint_bytes, checkpoint_document
    from training.config import TrainConfig
    from training.loop import Split, TrainingDiverged, fit
    from training.model import ArchitectureError

    try:
        base = TrainConfig.from_toml(config_file) if config_file else TrainConfig()
        config = base.replace(**config_overrides)
        spec = data.DataSpec(dataset=config.dataset, test_fraction=config.test_fraction, split_seed=0)
    except ValueError as exc:  # TrainConfig and DataSpec report bad values as ValueError
        raise UsageError(str(exc)) from None
    out = Path(out)
    check_creatable_dir(out, "--out")
    for name in (CHECKPOINT_NAME, METRICS_NAME):
        if (out / name).is_dir():
            raise UsageError(f"--out {out}: {out / name} is a directory")
    try:
        train_split, test_split, classes = data.load(spec, timesteps=config.timesteps)
    except data.DataError as exc:
        raise UsageError(str(exc)) from None
    bar = _progress(config.epochs, f"train {config.arch} {config.mode}", quiet)
    metrics_so_far: list[dict[str, float]] = []

    def on_epoch(row: dict[str, float], model) -> None:
        metrics_so_far.append(row)
        doc = checkpoint_document(model, config, metrics_so_far, classes, spec.to_dict())
        files.write_bytes(out / CHECKPOINT_NAME, checkpoint_bytes(doc))
        files.write_text(out / METRICS_NAME, _metrics_csv(metrics_so_far))
        bar.update(1)
        bar.set_postfix(loss=f"{row['train_loss']:.3f}", test=f"{row['test_accuracy']:.3f}")

    start = time.perf_counter()
    try:
        _, metrics = fit(
            config, Split(train_split.analog, train_split.labels), Split(test_split.analog, test_split.labels),
            classes, on_epoch=on_epoch, memory_limit=_physical_memory(),
        )
    except (ArchitectureError, TrainingDiverged, MemoryError) as exc:
        raise UsageError(str(exc)) from None
    finally:
        bar.close()
    return {"checkpoint": str(out / CHECKPOINT_NAME), "metrics": metrics[-1], "seconds": time.perf_counter() - start}


def export(checkpoint: Path, target: str, out: Path, clip: bool = False, weight_percentile: float = 100.0,
           force: bool = False, profile: str | None = None) -> dict[str, Any]:
    """Fold and quantize ``checkpoint`` for ``target`` in its integer ``profile`` (default: the
    target's first, :data:`hardware.profile.TARGET_PROFILES`); write the bundle directory ``out``.

    ``out`` may hold an earlier bundle (replaced atomically); anything else there is refused
    unless ``force`` (see :mod:`lsg_deploy.outputs`).
    """
    from export.fold import FoldError
    from export.netx import NetxError
    from export.quantize import QuantPolicy, RangeError
    from export.targets import TARGETS
    from hardware.bundle import BundleError
    from hardware.graph import Input
    from hardware.profile import TARGET_PROFILES
    from training.checkpoint import CheckpointError, load_checkpoint

    if target not in TARGETS:
        raise UsageError(f"unknown target {target!r}; available: {', '.join(TARGETS)}")
    profile = profile or TARGET_PROFILES[target][0]
    if profile not in TARGET_PROFILES[target]:
        raise UsageError(f"--profile {profile}: target {target} offers {', '.join(TARGET_PROFILES[target])}")
    try:
        policy = QuantPolicy(on_overflow="clip" if clip else "error", weight_percentile=weight_percentile)
    except ValueError as exc:  # QuantPolicy's range checks
        raise UsageError(f"--weight-percentile: {exc}") from None
    check_bundle_target(out, checkpoint, force)
    try:
        model, doc = load_checkpoint(checkpoint)
        train_split, _, _ = data.load(data.DataSpec.from_dict(doc["data"]), timesteps=model.timesteps)
    except (CheckpointError, data.DataError) as exc:
        raise UsageError(str(exc)) from None
    try:
        spec = Input(tuple(model.input_shape), train_split.encoding, train_split.input_max)
        result = TARGETS[target].load()(checkpoint, out, train_split.pixels, spec, policy, profile)
    except (CheckpointError, data.DataError, FoldError, RangeError, BundleError, NetxError) as exc:
        raise UsageError(str(exc)) from None
    for warning in result.warnings:
        print(f"WARNING: {warning}", file=sys.stderr)
    return {"bundle": str(out), "profile": profile, "warnings": result.warnings,
            "layers": result.bundle.quantization["layers"]}


def simulate(bundle_dir: Path, fixed_point: bool, limit: int | None = None, backend: str = "reference",
             quiet: bool = False) -> dict[str, Any]:
    """Evaluate the float, folded and quantized-beta networks and, with ``fixed_point``, the
    integer network on ``backend``: the numpy ``reference``, ``lava`` (bit-accurate CPU
    backend, in its Python 3.10 environment) or ``all`` (both, compared bit for bit).

    The bundle is verified (checksums, types, shapes) and checked against its source model
    before anything runs (:func:`lsg_deploy.simulate.load_for_report`)."""
    from lsg_deploy.simulate import ALL, BACKENDS, backends_for, build_report, load_for_report

    if fixed_point and backend not in (*BACKENDS, ALL):
        raise UsageError(f"unknown backend {backend!r}; choose one of {', '.join([*BACKENDS, ALL])}")
    if limit is not None and limit < 1:
        raise UsageError(f"--limit must be >= 1, got {limit}")
    bundle, model, spec = load_for_report(Path(bundle_dir))
    backends = backends_for(backend, bundle) if fixed_point else ()
    try:
        _, test, _ = data.load(spec, timesteps=model.timesteps)
    except data.DataError as exc:
        raise UsageError(f"{bundle_dir}: {exc}") from None
    return build_report(bundle, model, Path(bundle_dir), test.head(limit), backends,
                        progress=lambda total, name: _progress(total, f"simulate {name}", quiet))
