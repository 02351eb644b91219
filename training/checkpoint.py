"""``model.pt``: weights, tdBN statistics, b_n, config, metrics, seed, versions and a checksum.

Only tensors and plain Python values are stored, so ``torch.load(..., weights_only=True)``
opens it: reading a checkpoint never runs code. Reading also refuses what would load but is
wrong: a document whose content does not match its ``sha256`` (flipped bytes), missing or
unknown fields, a config of the wrong types, a state dict that does not fit the architecture,
and NaN, infinite or negative-variance values, each named by layer and field.
"""

from __future__ import annotations

import hashlib
import io
import json
import platform
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from training.config import TrainConfig
from training.loop import Resume
from training.model import ArchitectureError, SpikingNet
from training.models import build_model

FORMAT_NAME = "lsg-deploy-checkpoint"
FORMAT_VERSION = 2  #: 2: content checksum (``sha256``)
FIELDS = ("format", "format_version", "state_dict", "config", "input_shape", "classes", "metrics", "seed",
          "data", "versions", "sha256")
#: fields only some checkpoints hold: ``quantization``, written by ``lsg-deploy finetune``, the
#: target, profile and per-node scales the network was fine-tuned at (``export.finetune`` reads it)
OPTIONAL_FIELDS = ("quantization",)


class CheckpointError(ValueError):
    """A checkpoint that is missing, corrupt or of another format."""


def package_versions() -> dict[str, str]:
    return {"python": platform.python_version(), "torch": str(torch.__version__), "numpy": str(np.__version__)}


def content_digest(doc: dict[str, Any]) -> str:
    """SHA-256 over the checkpoint's content: every field but ``sha256``, tensors by dtype,
    shape and bytes in key order, the rest as canonical JSON."""
    digest = hashlib.sha256()
    rest = {k: v for k, v in doc.items() if k not in ("state_dict", "sha256")}
    digest.update(json.dumps(rest, sort_keys=True, separators=(",", ":")).encode())
    for key in sorted(doc.get("state_dict", {})):
        tensor = doc["state_dict"][key].detach().cpu().contiguous()
        digest.update(f"{key}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.numpy().tobytes())
    return digest.hexdigest()


def checkpoint_document(model: SpikingNet, config: TrainConfig, metrics: list[dict[str, float]], classes: int,
                        data: dict[str, Any], quantization: dict[str, Any] | None = None) -> dict[str, Any]:
    """The checkpoint as a dict of plain values and tensors, sealed with its checksum;
    ``quantization``: see :data:`OPTIONAL_FIELDS`."""
    doc = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "state_dict": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
        "config": config.to_dict(),
        "input_shape": list(model.input_shape),
        "classes": classes,
        "metrics": metrics,
        "seed": config.seed,
        "data": data,
        "versions": package_versions(),
        **({"quantization": quantization} if quantization is not None else {}),
    }
    doc["sha256"] = content_digest(doc)
    return doc


def checkpoint_bytes(doc: dict[str, Any]) -> bytes:
    """A document from :func:`checkpoint_document` as the bytes of ``model.pt``. Writing them
    is the caller's (``hardware.files.write_bytes``: the file appears complete or not at all)."""
    buffer = io.BytesIO()
    torch.save(doc, buffer)
    return buffer.getvalue()


def _layer_field(key: str) -> str:
    """``blocks.conv2.bn.norm.running_var`` -> ``layer conv2: bn.norm.running_var``."""
    parts = key.split(".")
    return f"layer {parts[1]}: {'.'.join(parts[2:])}" if parts[0] == "blocks" and len(parts) > 2 else key


def _check_state(state: Any, expected: dict[str, torch.Tensor], path: Path) -> None:
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path}: state_dict must map names to tensors")
    missing, extra = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
    if missing or extra:
        what = "; ".join(([f"lacks {', '.join(missing[:3])}"] if missing else [])
                         + ([f"has unknown {', '.join(extra[:3])}"] if extra else []))
        raise CheckpointError(f"{path}: state_dict does not fit the architecture in its config: {what}")
    for key, want in expected.items():
        got = state[key]
        if got.shape != want.shape or got.dtype != want.dtype:
            raise CheckpointError(f"{path}: {_layer_field(key)} is {got.dtype} {tuple(got.shape)}, the architecture "
                                  f"needs {want.dtype} {tuple(want.shape)}")
        if got.is_floating_point():
            bad = int((~torch.isfinite(got)).sum())
            if bad:
                raise CheckpointError(f"{path}: {_layer_field(key)} has {bad} non-finite value(s) (NaN or infinity)")
            if key.endswith("running_var") and bool((got < 0).any()):
                raise CheckpointError(f"{path}: {_layer_field(key)} has negative variances")


def load_checkpoint(path: Path) -> tuple[SpikingNet, dict[str, Any]]:
    """Rebuild the trained network (in eval mode) from the architecture registry by the name its
    config records (``arch``; ``digits-cnn`` where absent) and return it with the checkpoint dict."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} not found" if not path.exists() else f"{path} is not a file")
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
        raise CheckpointError(f"{path} has checkpoint version {doc.get('format_version')}, this lsg-deploy reads "
                              f"version {FORMAT_VERSION}: train it again with this version")
    missing, extra = sorted(set(FIELDS) - set(doc)), sorted(set(doc) - set(FIELDS) - set(OPTIONAL_FIELDS))
    if missing or extra:
        raise CheckpointError(f"{path}: " + "; ".join(([f"missing field(s) {', '.join(missing)}"] if missing else [])
                                                      + ([f"unknown field(s) {', '.join(extra)}"] if extra else [])))
    try:
        intact = doc["sha256"] == content_digest(doc)
    except (AttributeError, TypeError, ValueError, RuntimeError):  # content not of the written types
        intact = False
    if not intact:
        raise CheckpointError(f"{path} is corrupt or was changed after training (its checksum does not match)")
    shape = doc["input_shape"]
    if not (isinstance(shape, list) and len(shape) == 3 and all(isinstance(n, int) and n >= 1 for n in shape)):
        raise CheckpointError(f"{path}: input_shape must be three positive integers, got {shape!r}")
    if not (isinstance(doc["classes"], int) and doc["classes"] >= 2) or not isinstance(doc["metrics"], list):
        raise CheckpointError(f"{path}: classes must be an integer >= 2 and metrics a list")
    if not isinstance(doc["data"], dict):
        raise CheckpointError(f"{path}: data must be a table")
    if not isinstance(doc.get("quantization", {}), dict):
        raise CheckpointError(f"{path}: quantization must be a table")
    try:
        config = TrainConfig.from_dict(doc["config"])
        model = build_model(config, tuple(shape), doc["classes"])
    except (ValueError, ArchitectureError) as exc:
        raise CheckpointError(f"{path}: config: {exc}") from None
    _check_state(doc["state_dict"], model.state_dict(), path)
    model.load_state_dict(doc["state_dict"])
    model.eval()
    return model, doc


# --- resuming an interrupted run ------------------------------------------------------------------

RESUME_FORMAT = "lsg-deploy-train-state"
RESUME_VERSION = 1
RESUME_FIELDS = ("format", "format_version", "epoch", "model", "optimizer", "scheduler", "metrics", "config",
                 "classes", "data", "sha256")


def _digest_tree(value: Any, digest: Any) -> None:
    """Feed ``value`` (dicts, lists, tensors, plain values) into ``digest`` in a canonical order."""
    if isinstance(value, torch.Tensor):
        tensor = value.detach().cpu().contiguous()
        digest.update(f"T|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.numpy().tobytes() if tensor.dtype != torch.bfloat16 else tensor.view(torch.int16)
                      .numpy().tobytes())
    elif isinstance(value, dict):
        digest.update(f"D{len(value)}|".encode())
        for key in sorted(value, key=repr):
            digest.update(f"{key!r}=".encode())
            _digest_tree(value[key], digest)
    elif isinstance(value, (list, tuple)):
        digest.update(f"L{len(value)}|".encode())
        for item in value:
            _digest_tree(item, digest)
    else:
        digest.update(f"V{value!r}|".encode())


def resume_document(resume: Resume, config: TrainConfig, classes: int, data: dict[str, Any]) -> dict[str, Any]:
    """``train_state.pt``: everything ``train --resume`` needs to go on after ``resume.epoch``,
    sealed with its checksum. Only tensors and plain values: ``weights_only`` opens it."""
    doc = {
        "format": RESUME_FORMAT,
        "format_version": RESUME_VERSION,
        "epoch": resume.epoch,
        "model": {k: v.detach().cpu().clone() for k, v in resume.model.items()},
        "optimizer": _to_cpu(resume.optimizer),
        "scheduler": resume.scheduler,
        "metrics": resume.metrics,
        "config": config.to_dict(),
        "classes": classes,
        "data": data,
    }
    digest = hashlib.sha256()
    _digest_tree(doc, digest)
    doc["sha256"] = digest.hexdigest()
    return doc


def _to_cpu(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().clone()
    if isinstance(value, dict):
        return {k: _to_cpu(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_to_cpu(v) for v in value]
    return value


def load_resume(path: Path) -> tuple[Resume, TrainConfig, int, dict[str, Any]]:
    """``(resume, config, classes, data)`` from ``train_state.pt``; refuses what is not one, or
    was changed after it was written."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path} not found: --resume needs the train_state.pt a run writes after every epoch"
                              if not path.exists() else f"{path} is not a file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            doc = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a damaged file; all mean the same here
        first_line = (str(exc).strip().splitlines() or [""])[0]
        raise CheckpointError(f"{path} is not a readable training state ({type(exc).__name__}: {first_line})") \
            from None
    if not isinstance(doc, dict) or doc.get("format") != RESUME_FORMAT:
        raise CheckpointError(f"{path} is not an {RESUME_FORMAT} file")
    if doc.get("format_version") != RESUME_VERSION or set(doc) != set(RESUME_FIELDS):
        raise CheckpointError(f"{path} has training-state version {doc.get('format_version')} or other fields; "
                              f"this lsg-deploy reads version {RESUME_VERSION}")
    digest = hashlib.sha256()
    try:
        _digest_tree({k: v for k, v in doc.items() if k != "sha256"}, digest)
        intact = digest.hexdigest() == doc["sha256"]
    except (AttributeError, TypeError, ValueError, RuntimeError):
        intact = False
    if not intact:
        raise CheckpointError(f"{path} is corrupt or was changed after it was written (its checksum does not match)")
    try:
        config = TrainConfig.from_dict(doc["config"])
    except ValueError as exc:
        raise CheckpointError(f"{path}: config: {exc}") from None
    resume = Resume(doc["epoch"], doc["model"], doc["optimizer"], doc["scheduler"], doc["metrics"])
    return resume, config, doc["classes"], doc["data"]
