"""The error a user can act on: the CLI prints it as one line and exits with code 2."""


class UsageError(Exception):
    """Bad input from the user (a missing file, a value out of range, a wrong format)."""
