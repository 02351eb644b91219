"""Where the CLI may write: every output path is checked before any work starts.

What is "ours" is decided by names and checksums, never by a manifest's word alone:

* an **export** (``export --out PATH``) replaces only nothing, an empty directory, or an earlier
  export of ours: a bundle (:func:`hardware.bundle.replace_refusal`) or an ONNX export
  (:func:`export.onnx_format.replace_refusal`) whose manifest verifies, lists every file with a
  matching SHA-256, and lists only names an export writes. Anything else is an error naming
  it, unless the user passes ``--force``.
* a **run directory** (``train``, ``train --seeds``, ``ablate``) is ours when it holds only the
  names a run writes (:func:`training.runlog.is_run_entry`); ``train`` writes only into an
  absent or empty directory: a run there is continued with ``--resume`` or replaced with
  ``--force`` (which removes the old run's files, figures and event files included, just
  before the new run's first epoch is written, and keeps everything that is not a run's);
  anything else there is refused without ``--force``. A new run's first epoch is written whole
  or not at all: if its writes fail, the run's files and the directories made for it are
  removed (:class:`RunOutput`).
* ``train --seeds`` and ``ablate`` resume their own: a seed directory holding a finished run of
  the requested epochs (its ``model.pt`` verifies) is read back, one holding a verified
  ``train_state.pt`` is resumed, an absent or empty one is trained; all of that is checked for
  every seed before the first trains (:func:`check_repeated_runs`).
* ``finetune --out DIR`` writes ``DIR/model.pt`` only; ours is an absent or empty directory, or
  one holding only a ``model.pt`` fine-tuned from the same checkpoint (its record names the
  checkpoint's SHA-256).
* a report file (``--json``) must not be a directory nor inside the bundle it reports on, and
  its directory must be creatable; ``simulate --dump DIR`` writes only an absent or empty
  directory, anything else only with ``--force`` (replaced whole), never the bundle nor a
  directory inside or around it (:func:`check_dump_target`).

Never, whatever ``--force`` says: an ``--out`` that is a symbolic link (for the commands that
write into a directory: nothing is written through a link into a user's directory), nor the
current directory, the home directory, one of their parents, or (``export``) the checkpoint
being read or a directory holding it (:func:`refuse_protected`); ``finetune`` never writes over
the checkpoint it reads.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Sequence
from pathlib import Path

from lsg_deploy.errors import UsageError
from lsg_io import files
from training import runlog

#: what ``train --seeds`` and ``ablate`` write beside their runs (:mod:`training.ablate`)
SEEDS_FILES, ABLATION_FILES = ("summary.json", "summary.md"), ("ablation.md", "ablation.json", "ablation.png")
_SEED_DIR = re.compile(r"seed-(0|[1-9][0-9]*)")
_FOLD_FILE = re.compile(r"seed-(0|[1-9][0-9]*)-folds([2-9]|[1-9][0-9]+)\.json")  #: ``ablate --folds``' results


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


def _listing(names: Sequence[str]) -> str:
    return ", ".join(names[:4]) + (f" and {len(names) - 4} more" if len(names) > 4 else "")


def refuse_protected(out: Path, output: str, checkpoint: Path | None = None, flag: str = "--out") -> None:
    """Refuse an ``--out`` (``flag``) that is (or holds) the current directory, the home directory or
    ``checkpoint``: no ``--force`` replaces or writes a run into those. ``output`` names what
    was to be written there."""
    real = Path(out).resolve()
    protected = [(Path.cwd().resolve(), "the current directory or one of its parents")]
    if checkpoint is not None:
        protected.append((Path(checkpoint).resolve(), "the checkpoint being read, or a directory holding it"))
    try:
        protected.append((Path.home().resolve(), "your home directory or one of its parents"))
    except RuntimeError:  # no home directory can be determined
        pass
    for inside, what in protected:
        if _is_within(inside, real):
            raise UsageError(f"{flag} {out} is {what}; choose a new directory for {output}")


def _refuse_link(out: Path, output: str) -> None:
    if Path(out).is_symlink():
        raise UsageError(f"--out {out} is a symbolic link; {output} is never written through a link: give a "
                         f"new directory")


def check_bundle_target(out: Path, checkpoint: Path, force: bool) -> None:
    """May a new export (a bundle or an ONNX export) be written at ``out``? (See the module docstring.)"""
    from export import onnx_format
    from hardware.bundle import replace_refusal

    out = Path(out)
    refuse_protected(out, "the export", checkpoint)
    refusal = replace_refusal(out)
    if refusal and not out.is_symlink() and onnx_format.is_onnx_export(out):
        refusal = onnx_format.replace_refusal(out)
    if refusal and not force:
        raise UsageError(f"--out: {refusal}; choose another path, or pass --force to replace it")
    check_creatable_dir(out.parent, "--out")


def check_dump_target(out: Path, bundle: Path, force: bool) -> None:
    """May ``simulate --dump`` write the directory ``out``? An absent or empty directory; anything
    else only with ``force`` (replaced whole, atomically); never a symbolic link, the bundle, a
    directory inside it or holding it, the current or the home directory or their parents."""
    out = Path(out)
    if out.is_symlink():
        raise UsageError(f"--dump {out} is a symbolic link; the dump is never written through a link: give a "
                         f"new directory")
    refuse_protected(out, "the dump", flag="--dump")
    real, held = out.resolve(), Path(bundle).resolve()
    if _is_within(real, held) or _is_within(held, real):
        raise UsageError(f"--dump {out} is the bundle {bundle}, inside it or holds it; write the dump elsewhere")
    if not force and out.exists() and (not out.is_dir() or any(out.iterdir())):
        what = "is not empty" if out.is_dir() else "exists and is not a directory"
        raise UsageError(f"--dump {out} {what}; choose another directory, or pass --force to replace it")
    check_creatable_dir(out.parent, "--dump")


# --- run directories ------------------------------------------------------------------------------


def scan_run(directory: Path) -> tuple[list[str], list[str]]:
    """``(ours, foreign)``: the entries of ``directory`` a run writes and the others, as relative
    paths (``plots/fig4_accuracy_loss.png``); a symbolic link is never a run's, and a folder
    that is not a run's is one foreign entry."""
    ours, foreign = [], []
    for entry in sorted(os.scandir(directory), key=lambda e: e.name):
        is_dir = entry.is_dir(follow_symlinks=False)
        if not (is_dir or entry.is_file(follow_symlinks=False)) or not runlog.is_run_entry(entry.name, is_dir):
            foreign.append(entry.name)
            continue
        if is_dir:
            for inner in sorted(os.scandir(entry.path), key=lambda e: e.name):
                relative = f"{entry.name}/{inner.name}"
                own = inner.is_file(follow_symlinks=False) and runlog.is_run_entry(relative, False)
                (ours if own else foreign).append(relative)
        ours.append(entry.name)  # after its contents: removed in this order
    return ours, foreign


def _held(ours: list[str]) -> list[str]:
    """The run's own entries at the top of its directory, its temporaries left out."""
    return [name for name in ours if "/" not in name and files.temporary_of(name) is None]


def _remove(directory: Path, entries: Sequence[str]) -> None:
    """Remove the run entries ``entries`` of ``directory`` (as :func:`scan_run` lists them: a
    folder after its contents, and only if nothing else is left in it)."""
    for relative in entries:
        path = directory / relative
        if path.is_dir() and not path.is_symlink():
            try:
                path.rmdir()
            except OSError:  # it holds something that is not the run's: kept, and so is it
                pass
        else:
            path.unlink(missing_ok=True)


class RunOutput:
    """A run directory checked by :func:`check_run_target`: call :meth:`begin_epoch` before an
    epoch's writes, :meth:`end_epoch` after them and :meth:`finish` when training ends, however
    it ends. A forced run removes the run it replaces at its first :meth:`begin_epoch`; a new
    run whose first epoch's writes did not all succeed leaves nothing of its own at
    :meth:`finish` (its files, and the directories made for it)."""

    def __init__(self, out: Path, new: bool, previous: Sequence[str] = (), missing: Sequence[Path] = ()):
        self.out, self.new, self.previous, self.missing = Path(out), new, tuple(previous), tuple(missing)
        self.state = "before"  # -> "writing" (the first epoch's writes begun) -> "written"

    def begin_epoch(self) -> None:
        if self.state == "before":
            _remove(self.out, self.previous)
            self.state = "writing"

    def end_epoch(self) -> None:
        self.state = "written"

    def finish(self) -> None:
        if self.state != "writing" or not self.new:
            return
        if self.out.is_dir() and not self.out.is_symlink():
            ours, _ = scan_run(self.out)
            _remove(self.out, [e for e in ours if files.temporary_of(Path(e).name) is None])
        for directory in self.missing:  # innermost first
            try:
                directory.rmdir()
            except OSError:
                break


def check_run_target(out: Path, force: bool = False, resume: bool = False) -> RunOutput:
    """May ``train`` write its run in ``out``? (See the module docstring.) ``resume``: the run
    there is continued (its ``train_state.pt`` is verified by the caller); anything else there
    is kept."""
    out = Path(out)
    _refuse_link(out, "a run")
    refuse_protected(out, "the run")
    check_creatable_dir(out, "--out")
    if resume:
        return RunOutput(out, new=False)
    if not out.is_dir():  # absent: it and the parents it lacks are made by the first write
        missing, path = [], out.absolute()
        while not os.path.lexists(path):
            missing.append(path)
            path = path.parent
        return RunOutput(out, new=True, missing=missing)
    ours, foreign = scan_run(out)
    if foreign and not force:
        raise UsageError(f"--out {out} holds files that are not a run's ({_listing(foreign)}): choose another "
                         f"directory, or pass --force to write the run beside them (they are kept)")
    held = _held(ours)
    if held and not force:
        raise UsageError(f"--out {out} holds a run ({_listing(held)}): pass --resume to continue it or --force to "
                         f"replace it, or choose another directory")
    return RunOutput(out, new=True, previous=[e for e in ours if files.temporary_of(Path(e).name) is None])


def _seed_refusals(run: Path, epochs: int) -> list[tuple[str, bool]]:
    """Why ``train --seeds`` / ``ablate`` may not go on in the seed directory ``run`` (it reads a
    finished run back, resumes one with a ``train_state.pt``, else trains afresh): ``(message,
    whether --force overrides it)`` each."""
    from training.checkpoint import CheckpointError, load_checkpoint, load_resume

    if run.is_symlink():
        return [(f"{run} is a symbolic link; a run is never written through a link", False)]
    if not os.path.lexists(run):
        return []
    if not run.is_dir():
        return [(f"{run} is a file, not a run directory", False)]
    ours, foreign = scan_run(run)
    refusals = [(f"{run} holds files that are not a run's ({_listing(foreign)}); choose another directory, or pass "
                 f"--force to write the run beside them (they are kept)", True)] if foreign else []
    model, state = run / runlog.CHECKPOINT_NAME, run / runlog.RESUME_NAME
    broken = None
    if model.is_file() and not model.is_symlink():
        try:
            _, doc = load_checkpoint(model)
        except CheckpointError as exc:
            broken = str(exc)
        else:
            if len(doc["metrics"]) == epochs:
                return refusals  # finished: read back
    if state.is_file() and not state.is_symlink():  # resumed: no --force makes it train afresh
        try:
            resumed, config, _, _ = load_resume(state)
        except CheckpointError as exc:
            return [*refusals, (f"{exc}; remove it to train seed {run.name} afresh", False)]
        if resumed.epoch >= config.epochs:
            return [*refusals, (f"{run} holds a finished run of {config.epochs} epochs, not {epochs}; choose "
                                f"another --out, or remove that run", False)]
        return refusals
    if _held(ours):
        why = f"its {model.name} does not verify ({broken})" if broken else "it can be neither read back nor resumed"
        refusals.append((f"{run} holds a run, but {why}; pass --force to replace it, or choose another directory",
                         True))
    return refusals


def _foreign_names(directory: Path, names: Sequence[str], folder) -> list[str]:
    """Entries of ``directory`` that are neither regular files named in ``names`` (or their
    temporaries) nor real directories whose name ``folder`` accepts."""
    foreign = []
    for entry in sorted(os.scandir(directory), key=lambda e: e.name):
        if entry.is_file(follow_symlinks=False):
            own = entry.name in names or files.temporary_of(entry.name) in names
        else:
            own = entry.is_dir(follow_symlinks=False) and bool(folder(entry.name))
        if not own:
            foreign.append(entry.name)
    return foreign


def check_repeated_runs(out: Path, seeds: Sequence[int], epochs: int, force: bool = False,
                        rows: Sequence[str] | None = None) -> None:
    """May ``train --seeds`` (``rows`` None: ``out/seed-<s>``, ``summary.*``) or ``ablate``
    (``out/<row>/seed-<s>``, each row's ``summary.*``, ``ablation.*``) go on in ``out``? Every
    seed directory of the work is checked (:func:`_seed_refusals`) before the first run trains;
    anything in ``out`` that such a command does not write is refused unless ``force`` (then it
    is kept). ``ablate --folds`` keeps each row's fold results in files of its own (``seed-<s>-folds<K>.json``,
    :func:`training.ablate.fold_file`), which it checks itself as it reads them back."""
    from training.ablate import ROWS

    out = Path(out)
    _refuse_link(out, "a run")
    refuse_protected(out, "the runs")
    check_creatable_dir(out, "--out")
    keep = "choose another directory, or pass --force to write beside them (they are kept)"
    refusals: list[tuple[str, bool]] = []
    if out.is_dir() and rows is not None:
        foreign = _foreign_names(out, ABLATION_FILES, lambda name: name in ROWS)
        if foreign:
            refusals.append((f"{out} holds files that an ablation does not write ({_listing(foreign)}); {keep}", True))
    for group in [out] if rows is None else [out / row for row in rows]:
        if group != out and group.is_symlink():
            refusals.append((f"{group} is a symbolic link; a run is never written through a link", False))
            continue
        if group.is_dir():
            foreign = [name for name in _foreign_names(group, SEEDS_FILES, _SEED_DIR.fullmatch)
                       if rows is None or not _FOLD_FILE.fullmatch(files.temporary_of(name) or name)]
            if foreign:
                refusals.append((f"{group} holds files that are not its seeds' ({_listing(foreign)}); {keep}", True))
        for seed in seeds:
            refusals += _seed_refusals(group / f"seed-{seed}", epochs)
    binding = [message for message, forceable in refusals if not (force and forceable)]
    if binding:
        raise UsageError(f"--out: {binding[0]}")


def _finetuned_from(model: Path, checkpoint: Path) -> bool:
    """Whether ``model`` verifies and was fine-tuned from ``checkpoint`` (its record's source SHA-256)."""
    from hardware.bundle import sha256_file
    from training.checkpoint import CheckpointError, load_checkpoint

    try:
        _, doc = load_checkpoint(model)
        return doc["quantization"]["history"]["source_sha256"] == sha256_file(checkpoint)
    except (CheckpointError, OSError, KeyError, TypeError):
        return False


def check_finetune_target(out: Path, checkpoint: Path, force: bool = False) -> None:
    """May ``finetune`` write ``out/model.pt``? Ours: an absent or empty directory, or one holding
    only a ``model.pt`` fine-tuned from ``checkpoint`` (an earlier fine-tuning of it, or this
    one killed); anything else only with ``force``, which replaces ``model.pt`` and keeps the rest."""
    out = Path(out)
    _refuse_link(out, "a fine-tuned model")
    refuse_protected(out, "the fine-tuned model")
    check_creatable_dir(out, "--out")
    if force or not out.is_dir():
        return
    name = runlog.CHECKPOINT_NAME
    foreign = _foreign_names(out, (name,), lambda _: False)
    if foreign:
        raise UsageError(f"--out {out} holds files that are not a fine-tuning's ({_listing(foreign)}): choose another "
                         f"directory, or pass --force to write {name} beside them (they are kept)")
    if (out / name).is_file() and not _finetuned_from(out / name, checkpoint):
        raise UsageError(f"--out {out} holds a {name} that is not a fine-tuning of {checkpoint}: choose another "
                         f"directory, or pass --force to replace it")
