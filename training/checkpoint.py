"""``model.pt``: weights, tdBN statistics, b_n, config, metrics, seed and versions.

Only tensors and plain Python values are stored, so ``torch.load(..., weights_only=True)``
opens it: reading a checkpoint never runs code.
"""

from __future__ import annotations

import os
import platform
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from training.config import TrainConfig
from training.model import SpikingConvNet

FORMAT_NAME = "lsg-deploy-checkpoint"
FORMAT_VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint that is missing, corrupt or of another format."""


def package_versions() -> dict[str, str]:
    return {"python": platform.python_version(), "torch": str(torch.__version__), "numpy": str(np.__version__)}


def save_checkpoint(
    path: Path,
    model: SpikingConvNet,
    config: TrainConfig,
    metrics: list[dict[str, float]],
    classes: int,
    data: dict[str, Any],
) -> None:
    """Write atomically: the file appears complete or not at all."""
    doc = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "config": config.to_dict(),
        "input_shape": list(model.input_shape),
        "classes": classes,
        "metrics": metrics,
        "seed": config.seed,
        "data": data,
        "versions": package_versions(),
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    try:
        torch.save(doc, tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_checkpoint(path: Path) -> tuple[SpikingConvNet, dict[str, Any]]:
    """Rebuild the trained network (in eval mode) and return it with the checkpoint dict."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} not found")
    try:
        with warnings.catch_warnings():  # torch warns about odd pickle protocols before failing
            warnings.simplefilter("ignore")
            doc = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a damaged file; all mean the same here
        first_line = (str(exc).strip().splitlines() or [""])[0]
        raise CheckpointError(f"{path} is not a readable checkpoint ({type(exc).__name__}: {first_line})") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT_NAME:
        raise CheckpointError(f"{path} is not an {FORMAT_NAME} file")
    if doc.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"{path} has checkpoint version {doc.get('format_version')}, expected {FORMAT_VERSION}")
    try:
        config = TrainConfig.from_dict(doc["config"])
        model = SpikingConvNet(config, tuple(doc["input_shape"]), int(doc["classes"]))
        model.load_state_dict(doc["state_dict"])
    except (KeyError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{path} does not describe a valid network: {exc}") from None
    model.eval()
    return model, doc
