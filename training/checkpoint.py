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
import math
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
    state = doc.get("state_dict", {})
    if not (isinstance(state, dict) and all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                            for k, v in state.items())):
        raise TypeError("state_dict must map names to tensors")  # load_checkpoint: corrupt
    for key in sorted(state):
        tensor = state[key].detach().cpu().contiguous()
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
    is the caller's (``lsg_io.files.write_bytes``: the file appears complete or not at all)."""
    buffer = io.BytesIO()
    torch.save(doc, buffer)
    return buffer.getvalue()


def _layer_field(key: str) -> str:
    """``blocks.conv2.bn.norm.running_var`` -> ``layer conv2: bn.norm.running_var``."""
    parts = key.split(".")
    return f"layer {parts[1]}: {'.'.join(parts[2:])}" if parts[0] == "blocks" and len(parts) > 2 else key


def _check_state(state: Any, expected: dict[str, torch.Tensor], path: Path, field: str = "state_dict") -> None:
    """``state`` has ``expected``'s names, dtypes and shapes (``expected`` may be a model built on
    the meta device: nothing of its size is allocated) and finite values, non-negative variances."""
    if not isinstance(state, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                              for k, v in state.items()):
        raise CheckpointError(f"{path}: {field} must map names to tensors")
    missing, extra = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
    if missing or extra:
        what = "; ".join(([f"lacks {', '.join(missing[:3])}"] if missing else [])
                         + ([f"has unknown {', '.join(extra[:3])}"] if extra else []))
        raise CheckpointError(f"{path}: {field} does not fit the architecture in its config: {what}")
    where = str(path) if field == "state_dict" else f"{path}: {field}"  # a checkpoint's layers as before
    for key, want in expected.items():
        got = state[key]
        if got.shape != want.shape or got.dtype != want.dtype:
            raise CheckpointError(f"{where}: {_layer_field(key)} is {got.dtype} {tuple(got.shape)}, the architecture "
                                  f"needs {want.dtype} {tuple(want.shape)}")
        if got.is_floating_point():
            bad = int((~torch.isfinite(got)).sum())
            if bad:
                raise CheckpointError(f"{where}: {_layer_field(key)} has {bad} non-finite value(s) (NaN or infinity)")
            if key.endswith("running_var") and bool((got < 0).any()):
                raise CheckpointError(f"{where}: {_layer_field(key)} has negative variances")


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
        config = TrainConfig.from_saved(doc["config"])
        with torch.device("meta"):  # shapes only: a config of absurd sizes allocates nothing
            layout = build_model(config, tuple(shape), doc["classes"])
    except (ValueError, ArchitectureError) as exc:
        raise CheckpointError(f"{path}: config: {exc}") from None
    _check_state(doc["state_dict"], layout.state_dict(), path)
    model = build_model(config, tuple(shape), doc["classes"])  # as large as the state it holds, now read
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


def resume_digest(doc: dict[str, Any]) -> str:
    """SHA-256 over a training state's content: every field but ``sha256`` (:func:`_digest_tree`)."""
    digest = hashlib.sha256()
    _digest_tree({k: v for k, v in doc.items() if k != "sha256"}, digest)
    return digest.hexdigest()


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
    doc["sha256"] = resume_digest(doc)
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
    """``(resume, config, classes, data)`` from ``train_state.pt``; refuses what is not one, was
    changed after it was written, or holds fields of the wrong type or range (an epoch beyond the
    config's, metrics that are not one row of numbers per epoch). What needs the dataset, the
    model, optimizer and schedule against the network they train, :func:`check_resume` checks."""
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
    try:
        intact = resume_digest(doc) == doc["sha256"]
    except (AttributeError, TypeError, ValueError, RuntimeError):
        intact = False
    if not intact:
        raise CheckpointError(f"{path} is corrupt or was changed after it was written (its checksum does not match)")
    try:
        config = TrainConfig.from_saved(doc["config"])
    except ValueError as exc:
        raise CheckpointError(f"{path}: config: {exc}") from None
    _check_resume_fields(doc, config, path)
    resume = Resume(doc["epoch"], doc["model"], doc["optimizer"], doc["scheduler"], doc["metrics"])
    return resume, config, doc["classes"], doc["data"]


#: the columns of every metrics row :func:`training.loop.fit` writes, besides ``beta_<layer>``
METRIC_COLUMNS = ("epoch", "train_loss", "train_accuracy", "test_loss", "test_accuracy", "lr", "seconds",
                  "images_per_s")


def _number(value: Any) -> bool:
    """A finite int or float (bool is not a number here)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _check_resume_fields(doc: dict[str, Any], config: TrainConfig, path: Path) -> None:
    """The fields of ``train_state.pt`` that need no dataset: types, the epoch against the
    config's epochs, one metrics row of numbers per finished epoch."""
    epoch, metrics = doc["epoch"], doc["metrics"]
    if not (isinstance(epoch, int) and not isinstance(epoch, bool) and 1 <= epoch <= config.epochs):
        raise CheckpointError(f"{path}: epoch must be an integer in [1, {config.epochs}] (the config's epochs), "
                              f"got {epoch!r}")
    if not (isinstance(doc["classes"], int) and not isinstance(doc["classes"], bool) and doc["classes"] >= 2):
        raise CheckpointError(f"{path}: classes must be an integer >= 2, got {doc['classes']!r}")
    if not isinstance(doc["data"], dict):
        raise CheckpointError(f"{path}: data must be a table, got {type(doc['data']).__name__}")
    for field in ("optimizer", "scheduler"):
        if not isinstance(doc[field], dict):
            raise CheckpointError(f"{path}: {field} must be a table of its state, got {type(doc[field]).__name__}")
    if not isinstance(metrics, list) or len(metrics) != epoch:
        raise CheckpointError(f"{path}: metrics must be a list of one row per finished epoch ({epoch}), got "
                              f"{len(metrics) if isinstance(metrics, list) else type(metrics).__name__}")
    for i, row in enumerate(metrics, 1):
        if not (isinstance(row, dict) and all(isinstance(k, str) and _number(v) for k, v in row.items())):
            raise CheckpointError(f"{path}: metrics row {i} must map names to finite numbers, got {row!r:.80}")
        if row.get("epoch") != i:
            raise CheckpointError(f"{path}: metrics row {i} must be epoch {i}, got {row.get('epoch')!r}")


def check_resume(path: Path, resume: Resume, config: TrainConfig, classes: int, input_shape: tuple[int, ...],
                 dataset_classes: int) -> None:
    """What :func:`load_resume` cannot check without the dataset: ``classes`` is the dataset's,
    and the model, optimizer, schedule and metrics fit the network ``config`` builds for it (on
    the meta device: nothing of the network's size is allocated). Raises :class:`CheckpointError`
    naming the field."""
    from training.loop import make_optimizer

    if classes != dataset_classes:
        raise CheckpointError(f"{path}: classes {classes} is not the dataset's {dataset_classes}")
    try:
        with torch.device("meta"):
            layout = build_model(config, tuple(input_shape), classes)
    except ArchitectureError as exc:
        raise CheckpointError(f"{path}: config: {exc}") from None
    _check_state(resume.model, layout.state_dict(), path, "model")
    columns = {*METRIC_COLUMNS, *(f"beta_{name}" for name in layout.lif_layers())}
    for i, row in enumerate(resume.metrics, 1):
        if set(row) != columns:
            raise CheckpointError(f"{path}: metrics row {i} must hold {', '.join(sorted(columns))}; got "
                                  f"{', '.join(sorted(row))}")
    optimizer = make_optimizer(config, layout)
    _check_optimizer(resume.optimizer, optimizer, config, path)
    _check_scheduler(resume.scheduler, torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.epochs),
                     resume.epoch, [g["lr"] for g in resume.optimizer["param_groups"]], path)


def _check_optimizer(saved: dict[str, Any], fresh: torch.optim.Optimizer, config: TrainConfig, path: Path) -> None:
    """``saved`` is the state of ``fresh`` (the config's optimizer over the network's parameters,
    ``training.loop.param_groups``) after some epochs: its groups, each with the config's settings
    and a learning rate the schedule can have reached, and per trained parameter the optimizer's
    slots, of the parameter's shape, finite."""
    where = f"{path}: optimizer"
    groups = saved.get("param_groups")
    if set(saved) != {"state", "param_groups"} or not isinstance(saved["state"], dict) or not (
            isinstance(groups, list) and len(groups) == len(fresh.param_groups)
            and all(isinstance(g, dict) for g in groups)):
        raise CheckpointError(f"{where} must hold its state and {len(fresh.param_groups)} parameter group(s)")
    params: list[torch.Tensor] = []
    for index, (group, ours) in enumerate(zip(groups, fresh.param_groups, strict=True)):
        _check_group(group, ours, range(len(params), len(params) + len(ours["params"])), config,
                     f"{where}: group {index}")
        params += ours["params"]
    if config.optimizer == "adam":
        slots = {"step": (), "exp_avg": None, "exp_avg_sq": None}
    else:
        slots = {"momentum_buffer": None} if config.momentum else {}
    trained = {i for i, p in enumerate(params) if p.requires_grad} if slots else set()
    state = saved["state"]
    if set(state) - set(range(len(params))) or (slots and set(state) != trained):
        raise CheckpointError(f"{where}: state must hold the {len(trained)} trained parameters' "
                              f"{', '.join(slots) or 'nothing'}; got entries {sorted(state, key=repr)[:5]!r}")
    for index, entry in state.items():
        if not slots:  # SGD without momentum keeps nothing (or an empty buffer)
            if entry not in ({}, {"momentum_buffer": None}):
                raise CheckpointError(f"{where}: parameter {index} must have no state without momentum")
            continue
        if not isinstance(entry, dict) or set(entry) != set(slots):
            raise CheckpointError(f"{where}: parameter {index} must hold {', '.join(slots)}")
        for slot, shape in slots.items():
            value, shape = entry[slot], params[index].shape if shape is None else shape
            if not (isinstance(value, torch.Tensor) and value.dtype == torch.float32 and value.shape == shape):
                got = f"{value.dtype} {tuple(value.shape)}" if isinstance(value, torch.Tensor) else type(value).__name__
                raise CheckpointError(f"{where}: parameter {index}: {slot} must be a float32 tensor of shape "
                                      f"{tuple(shape)}, got {got}")
            if not bool(torch.isfinite(value).all()) or (slot in ("exp_avg_sq", "step") and bool((value < 0).any())):
                raise CheckpointError(f"{where}: parameter {index}: {slot} has non-finite or negative values")


def _check_group(group: dict[str, Any], ours: dict[str, Any], numbers: range, config: TrainConfig, where: str) -> None:
    """One saved parameter group against the fresh optimizer's: the same parameters (by their
    numbers in the state), the config's settings, a learning rate the schedule can have reached."""
    want = {k: v for k, v in ours.items() if k != "params"}
    if group.get("params") != list(numbers):
        raise CheckpointError(f"{where} must list the parameters {numbers.start}..{numbers.stop - 1}")
    unknown = sorted(set(group) - {*want, "params", "initial_lr"})
    if unknown:
        raise CheckpointError(f"{where}: unknown setting(s) {', '.join(map(str, unknown))}")
    start = ours.get("initial_lr", ours["lr"])  # the config's lr (the decays': lr * lr_b_scale)
    if group.get("initial_lr") != start or isinstance(group.get("initial_lr"), bool):
        raise CheckpointError(f"{where}: initial_lr must be the config's lr for the group, {start}, got "
                              f"{group.get('initial_lr')!r}")
    if not (_number(group.get("lr")) and 0 <= group["lr"] <= start):
        raise CheckpointError(f"{where}: lr must be a number in [0, {start}], got {group.get('lr')!r}")
    for key, value in want.items():
        if key != "lr" and key in group and (group[key] != value or type(group[key]) is not type(value)):
            raise CheckpointError(f"{where}: {key} must be {value!r} (the config's), got {group[key]!r}")


def _check_scheduler(saved: dict[str, Any], fresh: torch.optim.lr_scheduler.LRScheduler, epoch: int,
                     lrs: list[float], path: Path) -> None:
    """``saved`` is ``fresh`` (the config's cosine schedule) stepped ``epoch`` times; ``lrs``: the
    saved optimizer's learning rate per group."""
    where = f"{path}: scheduler"
    want = fresh.state_dict()
    want.update(last_epoch=epoch, _step_count=epoch + 1, _last_lr=list(lrs))
    unknown = sorted(set(saved) - set(want), key=repr)
    missing = sorted({"T_max", "eta_min", "base_lrs", "last_epoch", "_last_lr"} - set(saved))
    if unknown or missing:
        raise CheckpointError(f"{where} is not the cosine schedule's state: "
                              + "; ".join(([f"unknown {', '.join(map(repr, unknown))}"] if unknown else [])
                                          + ([f"lacks {', '.join(missing)}"] if missing else [])))
    for key, value in saved.items():
        if type(value) is not type(want[key]) or value != want[key]:
            raise CheckpointError(f"{where}: {key} must be {want[key]!r} after epoch {epoch}, got {value!r}")
