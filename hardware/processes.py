"""Child processes that end with the run that started them (stdlib only).

The hardware backends start other programs: Icarus Verilog's compiler and simulator (``iverilog``,
``vvp``, :mod:`hardware.targets.fpga.rtl.backend`) and the Lava interpreter (:mod:`hardware.targets.loihi.lava.parent`).
:func:`run` starts one and waits for it; when the wait ends with any exception (a timeout, an
error, ``KeyboardInterrupt`` from SIGINT, the CLI's ``Terminated`` from SIGTERM, ``SystemExit``)
the child is ended before the exception goes on: SIGTERM, then SIGKILL if it is still there after
:data:`GRACE_S` seconds, and reaped, so that no simulator is left running (or left a zombie) after
an interrupted ``simulate``. Its stdin is ``/dev/null``: a child that stops to ask (``vvp`` does,
on SIGINT, unless told not to) reads end of file, never the user's terminal.

``subprocess.run`` kills its child on an exception too, but does not wait for it after a
``KeyboardInterrupt`` (the child stays a zombie until the parent exits) and never asks it to
stop first.
"""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from pathlib import Path

GRACE_S = 2.0  #: how long an ended child may take to stop after SIGTERM before it is killed


def end(proc: subprocess.Popen) -> None:
    """Stop ``proc`` (SIGTERM, then SIGKILL after :data:`GRACE_S`) and reap it; a second signal
    arriving meanwhile still leaves it killed."""
    try:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(GRACE_S)
            except subprocess.TimeoutExpired:
                pass
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


def run(cmd: Sequence[str], *, cwd: Path | str | None = None, env: dict[str, str] | None = None,
        stdout=None, stderr=None, text: bool = False, timeout: float | None = None
        ) -> subprocess.CompletedProcess:
    """``subprocess.run(cmd, ...)`` with stdin from ``/dev/null``, whose child is ended
    (:func:`end`) if waiting for it raises anything, ``subprocess.TimeoutExpired`` included
    (which is raised on)."""
    proc = subprocess.Popen(list(cmd), cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr,
                            text=text)
    try:
        out, err = proc.communicate(timeout=timeout)
    except BaseException:
        end(proc)
        raise
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
