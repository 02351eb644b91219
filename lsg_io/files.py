"""Writing outputs so that a user's files are never lost or left half-written (stdlib only).

Every file and directory this project writes goes through here:

* a file is written to a temporary sibling ``.NAME.lsg-tmp-XXXX``, flushed and fsynced, then
  renamed over ``NAME`` (POSIX rename is atomic): a reader sees the old or the new file, never
  a mix, and a failure removes the temporary;
* a directory (a bundle) is staged in a sibling ``.NAME.lsg-stage-XXXX`` and swapped in with
  Linux's ``renameat2(RENAME_EXCHANGE)``, so ``NAME`` holds the old or the new directory at
  every instant. Where the kernel or the filesystem lacks the exchange, two renames go through
  a fixed aside name ``.NAME.lsg-old``; a run killed between them leaves the old directory
  there, and the next writer of ``NAME`` puts it back before doing anything else;
* a temporary holds an ``flock`` while its writer lives; one whose lock can be taken was left
  by a killed run, and the next writer of the same name removes it;
* parent directories created for an output are removed again if the write fails;
* permissions follow the user's umask (``mkstemp``/``mkdtemp`` alone would give 0600/0700);
* an OS error while writing names the output (not a temporary, and not nothing, as a full disk
  would), so the CLI's one error line can say which path failed.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import shutil
import signal
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

TMP_TAG, STAGE_TAG, ASIDE_TAG = ".lsg-tmp-", ".lsg-stage-", ".lsg-old"


def umask() -> int:
    """The process umask (read by setting and restoring it)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_DEFERRED = {signal.SIGINT, signal.SIGTERM}
#: the main thread's open sections (:func:`_hold_signals`), and the signals a handler deferred in them
_sections = 0
_deferred: list[int] = []


def defer_signal(signum: int) -> bool:
    """For a signal handler: True (the signal is taken, and raised again when the section ends)
    while the main thread is between creating a temporary and the ``try`` that removes it.

    The thread's mask (:func:`_hold_signals`) keeps a signal sent to the main thread pending, but
    a signal sent to the process may be taken by another thread (torch's, OpenBLAS's), and
    Python then runs the handler in the main thread at its next bytecode, inside the section. A
    handler that raises (the CLI's) asks here first; Python's default SIGINT handler does not, and
    only the mask covers it."""
    if _sections:
        _deferred.append(signum)
        return True
    return False


def _hold_signals() -> tuple[set[int] | None, bool]:
    """Open a section in which SIGINT and SIGTERM wait: blocked in this thread, and deferred by
    handlers that ask :func:`defer_signal` (in the main thread, where Python runs handlers).
    Returns what :func:`_release_signals` needs to close it.

    Python raises ``KeyboardInterrupt`` (and the CLI's SIGTERM exception) between any two
    bytecodes, so a signal between ``mkstemp`` returning and the ``try`` that removes the
    temporary on failure would leave it behind. Held, the signal is raised where
    :func:`_release_signals` is called, inside that ``try``."""
    global _sections
    main = threading.current_thread() is threading.main_thread()
    if main:
        _sections += 1
    try:
        return signal.pthread_sigmask(signal.SIG_BLOCK, _DEFERRED), main
    except (AttributeError, OSError, ValueError):  # a platform without per-thread masks
        return None, main


def _release_signals(held: tuple[set[int] | None, bool]) -> None:
    """Close :func:`_hold_signals`'s section: a signal held by the mask or deferred by a handler
    is raised here."""
    global _sections
    mask, main = held
    if mask is not None:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
    if main:
        _sections -= 1
        if not _sections and _deferred:
            signum = _deferred[0]
            _deferred.clear()
            signal.raise_signal(signum)  # its handler runs (and raises) before this returns


@contextmanager
def signals_held() -> Iterator[None]:
    """SIGINT and SIGTERM wait until the block ends and are raised there: for short work in which
    a C library calls back into Python and prints and drops an exception raised there (h5py's
    type conversions log through ``logging``; a Ctrl-C landing in one printed a traceback and
    was lost)."""
    held = _hold_signals()
    try:
        yield
    finally:
        _release_signals(held)


def _try_lock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False
    return True


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def temporary_of(name: str) -> str | None:
    """The name whose temporary ``name`` is (``.NAME.lsg-tmp-*`` or ``.NAME.lsg-stage-*``), or None."""
    for tag in (TMP_TAG, STAGE_TAG):
        head, found, _ = name.partition(tag)
        if found and head.startswith(".") and len(head) > 1:
            return head[1:]
    return None


def collect_stale(final: Path) -> list[Path]:
    """Remove temporaries of ``final`` left by killed runs (those whose lock can be taken)."""
    final = Path(final)
    removed = []
    if not final.parent.is_dir():
        return removed
    for tag in (TMP_TAG, STAGE_TAG):
        for path in final.parent.glob(f".{final.name}{tag}*"):
            try:
                fd = os.open(path, os.O_RDONLY)
            except OSError:
                continue
            try:
                if _try_lock(fd):  # nobody holds it: its writer is gone
                    _remove(path)
                    removed.append(path)
            finally:
                os.close(fd)
    return removed


@contextmanager
def _parents_created(path: Path) -> Iterator[None]:
    """Create the missing parents of ``path``; remove the ones created here if the block fails."""
    missing = []
    parent = Path(path).parent
    while not parent.exists():
        missing.append(parent)
        parent = parent.parent
    for d in reversed(missing):
        d.mkdir(mode=0o777)  # the umask applies, as for mkdir(1)
    try:
        yield
    except BaseException:
        for d in missing:
            try:
                d.rmdir()
            except OSError:
                break
        raise


def _naming(exc: BaseException, output: Path, temporary: Path) -> BaseException:
    """An OS error raised while writing ``output``, made to name it: a write that fails for a
    full disk names no file, and one that names our temporary should name the output instead."""
    if isinstance(exc, OSError) and (exc.filename is None or Path(exc.filename) == temporary
                                     or temporary in Path(exc.filename).parents):
        return OSError(exc.errno, exc.strerror or str(exc), str(output))
    return exc


@contextmanager
def atomic_file(path: Path, mode: str = "wb") -> Iterator[IO]:
    """Open a temporary sibling of ``path`` for writing; on success it replaces ``path``."""
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(errno.EISDIR, "is a directory, not a file", str(path))
    with _parents_created(path):
        collect_stale(path)
        held = _hold_signals()  # a Ctrl-C between creating the temporary and the try would leak it
        try:
            fd, tmp = tempfile.mkstemp(prefix=f".{path.name}{TMP_TAG}", dir=path.parent)
        except BaseException:
            _release_signals(held)
            raise
        try:
            _release_signals(held)  # a pending signal raises here, inside the clean-up's reach
            fcntl.flock(fd, fcntl.LOCK_EX)
            os.fchmod(fd, 0o666 & ~umask())
            with os.fdopen(os.dup(fd), mode) as fh:
                yield fh
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException as exc:
            Path(tmp).unlink(missing_ok=True)
            named = _naming(exc, path, Path(tmp))
            if named is exc:
                raise
            raise named from None
        finally:
            os.close(fd)


def write_text(path: Path, text: str) -> None:
    with atomic_file(path, "w") as fh:
        fh.write(text)


def write_bytes(path: Path, data: bytes) -> None:
    with atomic_file(path, "wb") as fh:
        fh.write(data)


# --- directories -------------------------------------------------------------------------------

_AT_FDCWD, _RENAME_EXCHANGE = -100, 2


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths atomically (Linux ``renameat2``); False where that is not available."""
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, errno.EOPNOTSUPP):
        return False  # this kernel or filesystem cannot exchange
    raise OSError(err, os.strerror(err), str(a), None, str(b))


def aside_path(final: Path) -> Path:
    return final.parent / f".{final.name}{ASIDE_TAG}"


def recover_aside(final: Path) -> None:
    """Finish or undo a two-rename replacement that a killed run left half done."""
    aside = aside_path(Path(final))
    if not os.path.lexists(aside):
        return
    if os.path.lexists(final):  # the new directory made it in: the aside copy is garbage
        _remove(aside)
    else:  # killed between the two renames: the old directory goes back
        os.rename(aside, final)


@contextmanager
def _locked_directory(directory: Path) -> Iterator[None]:
    fd = os.open(directory, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def swap_in(stage: Path, final: Path, *, exchange: bool = True) -> None:
    """Put the directory ``stage`` at ``final``; whatever was at ``final`` is removed.

    ``final`` holds the old or the new content at every instant (see the module docstring);
    ``exchange=False`` forces the two-rename fallback (used by tests).
    """
    stage, final = Path(stage), Path(final)
    with _locked_directory(final.parent):
        recover_aside(final)
        if not os.path.lexists(final):
            os.rename(stage, final)
            return
        if exchange and _exchange(stage, final):
            _remove(stage)  # it now holds the old content
            return
        aside = aside_path(final)
        os.rename(final, aside)
        try:
            os.rename(stage, final)
        except BaseException:
            os.rename(aside, final)
            raise
        _remove(aside)


@contextmanager
def staged_directory(final: Path) -> Iterator[Path]:
    """Yield a fresh sibling directory of ``final``; it becomes ``final`` if the block succeeds.

    On failure the stage (and any parent directory created for it) is removed and ``final``
    is untouched. Checking that ``final`` may be replaced is the caller's job.
    """
    final = Path(final)
    with _parents_created(final):
        with _locked_directory(final.parent):
            recover_aside(final)
        collect_stale(final)
        held = _hold_signals()  # as in atomic_file: the stage is made and guarded with signals held
        try:
            stage = Path(tempfile.mkdtemp(prefix=f".{final.name}{STAGE_TAG}", dir=final.parent))
            fd = os.open(stage, os.O_RDONLY)
        except BaseException:
            _release_signals(held)
            raise
        try:
            _release_signals(held)
            fcntl.flock(fd, fcntl.LOCK_EX)
            os.chmod(stage, 0o777 & ~umask())
            yield stage
            swap_in(stage, final)
        except BaseException as exc:
            shutil.rmtree(stage, ignore_errors=True)
            named = _naming(exc, final, stage)
            if named is exc:
                raise
            raise named from None
        finally:
            os.close(fd)
