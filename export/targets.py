"""What ``lsg-deploy export --target`` accepts: the quantized targets of
:data:`hardware.targets.TARGETS` (each written by the one flow of :mod:`export.flow`), and the
float exports listed here, which write the folded float network: no profile, no bundle, no
quantization options. Reading this module imports no torch (``lsg-deploy export --help`` lists
the choices).

A float export names the function that writes it, as ``module:function``, with the signature of
``export.onnx_export.export_onnx``; ``requires`` names the packages it imports beyond the base
install and ``extra`` the pyproject extra that brings them, so a missing one is one line that
says what to install.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass

from hardware.targets import TARGETS


@dataclass(frozen=True)
class FloatExport:
    name: str
    description: str
    exporter: str  #: ``module:function``
    requires: tuple[str, ...] = ()  #: importable packages the exporter needs beyond the base install
    extra: str | None = None  #: the pyproject extra that installs ``requires``

    def missing(self) -> str | None:
        """The first package of ``requires`` that cannot be imported, or None."""
        for package in self.requires:
            try:
                importlib.import_module(package)
            except ImportError:
                return package
        return None

    def load(self) -> Callable:
        module, function = self.exporter.split(":")
        return getattr(importlib.import_module(module), function)


FLOAT_EXPORTS: dict[str, FloatExport] = {f.name: f for f in (
    FloatExport("onnx", "the folded float network as ONNX, one step with explicit LIF state (model.onnx, onnx.json; "
                "--unrolled adds all T steps, model.unrolled.onnx); no quantization",
                "export.onnx_export:export_onnx", requires=("onnx",), extra="onnx"),
)}


def choices() -> dict[str, str]:
    """Every ``--target``, quantized then float, with its description."""
    return {**{name: t.description for name, t in TARGETS.items()},
            **{name: f.description for name, f in FLOAT_EXPORTS.items()}}
