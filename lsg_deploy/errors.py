"""The error a user can act on: the CLI prints it as one line and exits with code 2."""

from __future__ import annotations


class UsageError(Exception):
    """Bad input from the user (a missing file, a value out of range, a wrong format).

    ``detail``: more lines (a subprocess's output, say), printed only with ``--verbose``.
    """

    def __init__(self, message: str, detail: str | None = None):
        super().__init__(message)
        self.detail = detail
