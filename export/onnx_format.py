"""The ONNX export directory's names and manifest, without onnx or torch (stdlib only).

An ONNX export (``lsg-deploy export --target onnx``) is a directory holding ``model.onnx`` (one
time step, the LIF state as explicit inputs and outputs), optionally ``model.unrolled.onnx`` (all
T steps) and the manifest ``onnx.json``, which lists every file with its SHA-256. The CLI reads
the manifest to recognise such a directory: an export may replace it (:func:`replace_refusal`),
and ``simulate`` refuses it with one line (:func:`is_onnx_export`). The writer is
:mod:`export.onnx_export`.

The state of LIF node ``<node>`` is two tensors, named so a runtime can pair them by name:
``u.<node>`` (membrane) and ``o.<node>`` (the previous step's spikes) in, ``u.<node>.next`` and
``o.<node>.next`` out (:func:`state_names`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

FORMAT_NAME = "lsg-deploy-onnx"
FORMAT_VERSION = 1
MANIFEST_NAME = "onnx.json"
STEP_NAME = "model.onnx"  #: one time step, state in and out
UNROLLED_NAME = "model.unrolled.onnx"  #: all T steps, input to logits
INPUT_NAME = "x"  #: the step's (or, unrolled, the sample's) float input
READOUT_NAME = "readout"  #: the step model's readout current; its mean over the T steps is the logits
LOGITS_NAME = "logits"  #: the unrolled model's output
NEXT = ".next"  #: the suffix of a state output


def state_names(node: str) -> dict[str, tuple[str, str]]:
    """``{"membrane": (in, out), "spikes": (in, out)}``: the step model's tensors of ``node``'s state."""
    return {"membrane": (f"u.{node}", f"u.{node}{NEXT}"), "spikes": (f"o.{node}", f"o.{node}{NEXT}")}


def read_manifest(directory: Path) -> dict[str, Any] | None:
    """The manifest of an ONNX export in ``directory``, or None where there is none (or it is not
    ours: unreadable, or of another format)."""
    path = Path(directory) / MANIFEST_NAME
    if not path.is_file():
        return None
    try:
        doc = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return doc if isinstance(doc, dict) and doc.get("format") == FORMAT_NAME else None


def is_onnx_export(directory: Path) -> bool:
    """Whether ``directory`` holds an ONNX export (its manifest names our format)."""
    return Path(directory).is_dir() and read_manifest(directory) is not None


def replace_refusal(directory: Path) -> str | None:
    """Why the ONNX export in ``directory`` may not be replaced by a new export, or None: it may,
    when it holds nothing but the files its manifest lists. Only for directories that
    :func:`is_onnx_export` recognises."""
    directory = Path(directory)
    doc = read_manifest(directory)
    if doc is None or directory.is_symlink():
        return f"{directory} is not an ONNX export of lsg-deploy"
    listed = doc.get("files") if isinstance(doc.get("files"), dict) else {}
    ours = {MANIFEST_NAME, *(name for name in listed if isinstance(name, str))}
    foreign = sorted(p.name for p in directory.iterdir() if p.name not in ours)
    if foreign:
        return f"{directory} is an ONNX export, but also holds files that are not part of it: {', '.join(foreign[:4])}"
    return None
