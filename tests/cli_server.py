"""A fork server for the command line: ``lsg_deploy.cli`` imported once, one forked child per run.

The bad-input corpus (``tests/test_bad_input.py``) runs ~120 commands, each judged as a process:
its exit code, its stderr, the files it leaves. A fresh ``python -m lsg_deploy.cli`` spends ~3 s
importing torch before it reads its arguments, so the corpus spent 6 of its 6.5 minutes starting
interpreters. This server pays the import once. Each request forks a child that is, from
``main``'s first line on, the process ``python -m lsg_deploy.cli ARGS`` would be: its own working
directory, environment, ``sys.argv``, file descriptors 0-2 (stdin from /dev/null, stdout and stderr
to the request's files, buffered as a pipe would be), an uncaught exception printed with its
traceback and exit 1, ``SystemExit`` read as the interpreter reads it, non-daemon threads joined
and ``atexit`` handlers run before it ends. Nothing a child does reaches the server or the next
child.

Protocol, one line each way per run: a JSON object ``{"args", "cwd", "env", "stdout", "stderr",
"timeout"}`` on stdin; the exit code on stdout (negative: the signal that ended the child, as
``subprocess`` reports it; a run past ``timeout`` seconds ends by SIGALRM).

Run as ``python tests/cli_server.py`` with the environment the commands should see at import.
"""

from __future__ import annotations

import atexit
import json
import os
import signal
import sys
import threading
import traceback

# this file's folder out, the working directory first: import the CLI as ``python -m lsg_deploy.cli``
# would there (the checkout's code, not whichever copy an editable install points to)
sys.path[0] = os.getcwd()
import lsg_deploy.cli  # noqa: E402  (the import every child inherits)


def _exit_code(code: object) -> int:
    """What the interpreter makes of ``SystemExit(code)``: None is 0, an int itself, else printed and 1."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return 1


def _child(request: dict) -> None:
    """Become ``python -m lsg_deploy.cli ARGS`` and end with its exit code; never returns."""
    code = 1
    try:
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        for fd, path, flags in ((0, os.devnull, os.O_RDONLY),
                                (1, request["stdout"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC),
                                (2, request["stderr"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC)):
            opened = os.open(path, flags, 0o600)
            os.dup2(opened, fd)
            os.close(opened)
        sys.argv = [lsg_deploy.cli.__file__, *request["args"]]
        signal.alarm(int(request["timeout"]))
        try:
            code = _exit_code(lsg_deploy.cli.main(request["args"]))
        except SystemExit as stop:
            code = _exit_code(stop.code)
        except BaseException:  # as the interpreter: the traceback on stderr, exit 1
            traceback.print_exc()
            code = 1
        threading._shutdown()  # the interpreter's own exit path: wait for non-daemon threads
        atexit._run_exitfuncs()
        sys.stdout.flush()
        sys.stderr.flush()
    finally:
        os._exit(code & 0xFF)


def serve() -> None:
    for line in sys.stdin:
        request = json.loads(line)
        sys.stdout.flush()
        pid = os.fork()
        if pid == 0:
            _child(request)
        _, status = os.waitpid(pid, 0)
        print(os.waitstatus_to_exitcode(status), flush=True)


if __name__ == "__main__":
    serve()
