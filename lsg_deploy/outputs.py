"""Where the CLI may write: every output path is checked before any work starts.

The rules (the mechanics of writing safely are in :mod:`hardware.files`):

* ``export --out PATH`` replaces only what is ours: nothing, an empty directory, or an earlier
  export holding nothing but its own files (a bundle, or an ONNX export, recognised by its
  manifest ``onnx.json``). Anything else is an error naming it, unless the
  user passes ``--force``; even then never the checkpoint, the directory holding it or one of
  its ancestors, the current directory or one of its ancestors, nor the home directory.
* ``train --out DIR`` must be a directory or creatable as one; only ``model.pt`` and
  ``metrics.csv`` in it are written (replacing those of an earlier run).
* a report file (``--json``) must not be a directory nor inside the bundle it reports on, and
  its directory must be creatable.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from lsg_deploy.errors import UsageError


def _nearest_existing(path: Path) -> Path:
    while not os.path.lexists(path):
        path = path.parent
    return path


def check_creatable_dir(path: Path, what: str) -> None:
    """``path`` is a directory, or can be created as one, and files can be made in it."""
    path = Path(path)
    base = _nearest_existing(path.absolute())
    if not base.is_dir():
        shown = path if base == path.absolute() else base
        raise UsageError(f"{what} {path}: {shown} exists and is not a directory")
    try:  # an anonymous file (O_TMPFILE where available) leaves no trace
        with tempfile.TemporaryFile(dir=base):
            pass
    except OSError as exc:
        raise UsageError(f"{what} {path}: cannot write in {base} ({exc.strerror or exc})") from None


def check_file_target(path: Path, what: str, not_inside: Path | None = None) -> None:
    """``path`` can be written as a file: not a directory, not inside ``not_inside`` (the
    bundle being read), and its directory is creatable."""
    path = Path(path)
    if not_inside is not None and _is_within(path.resolve(), Path(not_inside).resolve()):
        raise UsageError(f"{what} {path} is inside the bundle {not_inside}; write the report elsewhere")
    if path.is_dir():
        raise UsageError(f"{what} {path} is a directory; give a file name")
    check_creatable_dir(path.parent, f"{what} {path}: directory")


def _is_within(inner: Path, outer: Path) -> bool:
    return inner == outer or outer in inner.parents


def check_bundle_target(out: Path, checkpoint: Path, force: bool) -> None:
    """May a new export (a bundle or an ONNX export) be written at ``out``? (See the module docstring.)"""
    from export import onnx_format
    from hardware.bundle import replace_refusal

    out = Path(out)
    real = out.resolve()
    protected = [
        (Path.cwd().resolve(), "the current directory or one of its parents"),
        (Path(checkpoint).resolve(), "the checkpoint being exported, or a directory holding it"),
    ]
    try:
        protected.append((Path.home().resolve(), "your home directory or one of its parents"))
    except RuntimeError:  # no home directory can be determined
        pass
    for inside, what in protected:
        if _is_within(inside, real):
            raise UsageError(f"--out {out} is {what}; choose a new directory for the export")
    refusal = replace_refusal(out)
    if refusal and not out.is_symlink() and onnx_format.is_onnx_export(out):
        refusal = onnx_format.replace_refusal(out)
    if refusal and not force:
        raise UsageError(f"--out: {refusal}; choose another path, or pass --force to replace it")
    check_creatable_dir(out.parent, "--out")
