"""The export targets: one registry, read by the CLI (choices, help) and the pipeline.

An entry names the function that writes a bundle for the target, as ``module:function``, so
that listing the targets (``lsg-deploy export --help``) imports no torch. Adding a target is one
module and one entry here; the integer profiles a target offers (``--profile``) are listed in
``hardware.profile.TARGET_PROFILES``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Target:
    name: str
    description: str
    exporter: str  #: ``module:function`` with the signature of ``export.loihi.export_loihi``

    def load(self) -> Callable:
        module, function = self.exporter.split(":")
        return getattr(importlib.import_module(module), function)


TARGETS: dict[str, Target] = {t.name: t for t in (
    Target("loihi", "Loihi 2 as Lava 0.10 computes it (bundle, model.nir, lava-dl netx model.net)",
           "export.loihi:export_loihi"),
    Target("fpga", "an FPGA integer datapath (bundle, $readmemh/CSV/C tables and manifest.json, model.nir)",
           "export.fpga:export_fpga"),
)}
