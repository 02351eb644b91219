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

from hardware.bundle import sha256_file

FORMAT_NAME = "lsg-deploy-onnx"
FORMAT_VERSION = 1
MANIFEST_NAME = "onnx.json"
STEP_NAME = "model.onnx"  #: one time step, state in and out
UNROLLED_NAME = "model.unrolled.onnx"  #: all T steps, input to logits
MODEL_NAMES = (STEP_NAME, UNROLLED_NAME)  #: the files an export lists in its manifest
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
    """Why the ONNX export in ``directory`` may not be replaced by a new export, or None: it may
    when it is one of ours, which means all of: every entry is a regular file that the manifest
    lists, the manifest lists :data:`STEP_NAME` and no name but the models an export writes
    (:data:`MODEL_NAMES`), and every listed file's SHA-256 matches. (The manifest holds no
    digest of itself; the names are what a forged one cannot get past.) Only for directories
    that :func:`is_onnx_export` recognises."""
    directory = Path(directory)
    doc = read_manifest(directory)
    if doc is None or directory.is_symlink():
        return f"{directory} is not an ONNX export of lsg-deploy"
    listed = doc.get("files") if isinstance(doc.get("files"), dict) else {}
    entries = sorted(p.name for p in directory.iterdir())
    foreign = [name for name in entries if name != MANIFEST_NAME and name not in listed]
    if foreign:
        return f"{directory} is an ONNX export, but also holds files that are not part of it: {', '.join(foreign[:4])}"
    odd = [name for name in entries if (directory / name).is_symlink() or not (directory / name).is_file()]
    if odd:
        return f"{directory} is not an ONNX export lsg-deploy wrote: {', '.join(odd[:4])} is not a regular file"
    strange = sorted(name for name in listed if name not in MODEL_NAMES)
    if strange or STEP_NAME not in listed:
        what = f"lists {', '.join(strange[:4])}, which no export writes" if strange else f"does not list {STEP_NAME}"
        return f"{directory} is not an ONNX export lsg-deploy wrote: its {MANIFEST_NAME} {what}"
    changed = [name for name, digest in sorted(listed.items()) if sha256_file(directory / name) != digest]
    if changed:
        return (f"{directory} is an ONNX export, but its checksum does not verify: {', '.join(changed)} changed after "
                f"export")
    return None
