"""What the pipeline's stages return (:mod:`lsg_deploy.pipeline`): frozen records the CLI reads
by attribute. ``simulate`` returns the report (:class:`lsg_deploy.report.model.Report`); ``train
--seeds`` and ``ablate`` return the summaries they write as JSON (:mod:`training.ablate`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Trained:
    """A training run: the checkpoint written, its last epoch's row (``epoch``, ``train_loss``,
    ``train_accuracy``, ``test_accuracy``, ``images_per_s``, ... as in ``metrics.csv``), the
    seconds it took, the processes it ran on (torchrun's world size), the device, and whether
    this process is the one that wrote (rank 0)."""

    checkpoint: Path
    metrics: Mapping[str, Any]
    seconds: float
    world: int
    device: str
    main: bool


@dataclass(frozen=True)
class BundleExport:
    """A quantized target's export: the bundle directory, the profile it was quantized in, the
    warnings export printed, and the bundle's quantization record per node (scale, pins, clip
    counts) and, for ``--calibrate``, its calibration record."""

    bundle: Path
    profile: str
    warnings: tuple[str, ...]
    layers: Mapping[str, Any]
    calibration: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class FloatExport:
    """A float target's export (ONNX): the model file, the unrolled one (``--unrolled``) or None,
    the files written, the LIF layers and the time steps."""

    model: Path
    unrolled: Path | None
    files: tuple[str, ...]
    lif_layers: int
    timesteps: int


@dataclass(frozen=True)
class Finetuned:
    """A fine-tuning: the checkpoint written, the target and profile, the test accuracies of the
    fixed-point and the float network before and after, each epoch's row, the settings, the
    SHA-256 of the checkpoint it started from and the seconds it took."""

    checkpoint: Path
    target: str
    profile: str
    fixed_before: float
    float_before: float
    fixed_after: float
    float_after: float
    epochs: tuple[Mapping[str, Any], ...]
    config: Mapping[str, Any]
    source_sha256: str
    seconds: float
