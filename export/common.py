"""What every export target does before it quantizes: load, fold, calibrate; and what it
records about its source."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from export.fold import fold, readout_bound
from hardware.bundle import NIR_NAME, SOURCE_MODEL, Bundle, sha256_file
from hardware.graph import Graph, Input
from training.checkpoint import load_checkpoint, package_versions

__all__ = ["NIR_NAME", "SOURCE_MODEL", "ExportResult", "Prepared", "prepare", "source_record"]


@dataclass(frozen=True)
class ExportResult:
    bundle: Bundle
    warnings: list[str]


@dataclass(frozen=True)
class Prepared:
    """A checkpoint folded for export, with the readout's calibration bound."""

    doc: dict[str, Any]
    float_graph: Graph
    timesteps: int
    bound: float  #: the calibration set's largest ``|sum_t I_t|`` at the readout


def prepare(checkpoint: Path, calibration_inputs: np.ndarray, spec: Input) -> Prepared:
    """Load ``checkpoint``, fold it for inputs ``spec``, calibrate the readout range on
    ``calibration_inputs`` (encoded as ``spec`` says)."""
    model, doc = load_checkpoint(checkpoint)
    float_graph = fold(model, spec)
    calib = torch.as_tensor(np.asarray(calibration_inputs) / spec.input_max, dtype=torch.float64)
    return Prepared(doc, float_graph, model.timesteps, readout_bound(float_graph, calib, model.timesteps))


def source_record(checkpoint: Path, doc: dict[str, Any], copy: str | None = SOURCE_MODEL) -> dict[str, Any]:
    """An export's provenance: the checkpoint, its digest, data, config, final metrics, versions,
    and the name of its copy in the export (``copy``; None where the export holds none)."""
    return {
        "checkpoint": str(Path(checkpoint).resolve()),
        "checkpoint_sha256": sha256_file(checkpoint),
        **({"copy": copy} if copy is not None else {}),
        "data": doc["data"],
        "train_config": doc["config"],
        "final_metrics": doc["metrics"][-1] if doc["metrics"] else {},
        "exporter_versions": package_versions(),
    }
