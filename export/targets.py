"""The export targets: one registry, read by the CLI (choices, help) and the pipeline.

An entry names the function that writes the target's output, as ``module:function``, so that
listing the targets (``lsg-deploy export --help``) imports no torch. Adding a target is one
module and one entry here. Two kinds exist:

* quantized targets (``loihi``, ``fpga``) write a bundle in one of their integer profiles
  (``--profile``; ``hardware.profile.TARGET_PROFILES`` lists them), with the signature of
  ``export.loihi.export_loihi``;
* float targets (``onnx``) write the folded float network; they have no profile, no bundle and
  no quantization options, and their exporter has the signature of ``export.onnx_export.export_onnx``.

``requires`` names the packages a target imports beyond the base install, and ``extra`` the
pyproject extra that brings them, so a missing one is one line that says what to install.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Target:
    name: str
    description: str
    exporter: str  #: ``module:function``, with the signature of its kind (module docstring)
    #: quantized targets: ``module:function`` giving the integer graph the exporter writes for a folded
    #: graph, ``(graph, bound, policy, profile, calibration) -> (graph, ranges, warnings)`` (fine-tuning
    #: trains at it; ``calibration``: (encoded training inputs, timesteps) for ``policy.calibrate``)
    quantizer: str | None = None
    quantized: bool = True  #: writes an integer bundle (else the float network)
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
        return _function(self.exporter)

    def load_quantizer(self) -> Callable:
        if self.quantizer is None:
            raise ValueError(f"target {self.name} does not quantize")
        return _function(self.quantizer)


def _function(path: str) -> Callable:
    module, function = path.split(":")
    return getattr(importlib.import_module(module), function)


TARGETS: dict[str, Target] = {t.name: t for t in (
    Target("loihi", "Loihi 2 as Lava 0.10 computes it (bundle, model.nir, lava-dl netx model.net)",
           "export.loihi:export_loihi", quantizer="export.loihi:quantize_graph"),
    Target("fpga", "an FPGA integer datapath (bundle, $readmemh/CSV/C tables and manifest.json, model.nir)",
           "export.fpga:export_fpga", quantizer="export.fpga:quantize_graph"),
    Target("onnx", "the folded float network as ONNX, one step with explicit LIF state (model.onnx, onnx.json; "
           "--unrolled adds all T steps, model.unrolled.onnx); no quantization",
           "export.onnx_export:export_onnx", quantized=False, requires=("onnx",), extra="onnx"),
)}
