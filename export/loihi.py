"""``lsg-deploy export --target loihi``: checkpoint in, self-describing bundle out."""

from __future__ import annotations

import dataclasses
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from export.fold import fold, readout_bound
from export.netx import NETX_BIAS_EXP, NETX_NAME, write_netx
from export.nir_export import write_nir
from export.quantize import QuantPolicy, quantize_loihi
from hardware.bundle import Bundle, sha256_file, write_bundle
from hardware.files import staged_directory
from training.checkpoint import load_checkpoint, package_versions

#: lava-dl's netx fixes bias_exp = 6; quantizing with it keeps model.net exact (export/netx.py)
LOIHI_BIAS_EXP = NETX_BIAS_EXP
SOURCE_MODEL = "source_model.pt"
NIR_NAME = "model.nir"


@dataclass(frozen=True)
class ExportResult:
    bundle: Bundle
    warnings: list[str]


def export_loihi(checkpoint: Path, out: Path, calibration_pixels: np.ndarray, input_max: int,
                 policy: QuantPolicy | None = None) -> ExportResult:
    """Fold, calibrate the readout range on ``calibration_pixels``, quantize, write ``out``:
    the bundle, ``model.nir`` (folded float), ``model.net`` (lava-dl netx) and the checkpoint.
    Biases are always quantized at ``LOIHI_BIAS_EXP``, so that ``model.net`` is exact.

    ``out`` is written whole or not at all (staged in a sibling directory, swapped in atomically);
    whether ``out`` may be replaced is decided before this is called (``lsg_deploy.outputs``).
    """
    policy = dataclasses.replace(policy or QuantPolicy(), bias_exp=LOIHI_BIAS_EXP)
    model, doc = load_checkpoint(checkpoint)
    float_layers = fold(model)
    timesteps = model.timesteps
    calib = torch.as_tensor(calibration_pixels / input_max, dtype=torch.float64)
    bound = readout_bound(float_layers, calib, timesteps)
    loihi_layers, quantization, warnings = quantize_loihi(float_layers, input_max, bound, policy)
    bundle = Bundle(
        target="loihi",
        timesteps=timesteps,
        input_shape=tuple(model.input_shape),
        input_max=int(input_max),
        float_layers=float_layers,
        loihi_layers=loihi_layers,
        quantization=quantization,
        source={
            "checkpoint": str(Path(checkpoint).resolve()),
            "checkpoint_sha256": sha256_file(checkpoint),
            "copy": SOURCE_MODEL,
            "data": doc["data"],
            "train_config": doc["config"],
            "final_metrics": doc["metrics"][-1] if doc["metrics"] else {},
            "exporter_versions": package_versions(),
        },
    )
    with staged_directory(out) as stage:
        write_nir(float_layers, timesteps, float(input_max), stage / NIR_NAME)
        write_netx(bundle, stage / NETX_NAME)
        shutil.copyfile(checkpoint, stage / SOURCE_MODEL)
        write_bundle(bundle, stage, files=(NIR_NAME, NETX_NAME, SOURCE_MODEL))  # last: it lists the others
    return ExportResult(bundle=bundle, warnings=warnings)
