"""``lsg-deploy export --target fpga``: checkpoint in, bundle and FPGA tables out.

The network is quantized to an FPGA profile (:data:`hardware.profile.TARGET_PROFILES` lists them:
a decay multiplier with 8-bit or 4-bit weights, or a multiplier-free shift); the bundle holds it
for our own backends (the integer reference, the RTL simulation), and the tables
(:mod:`hardware.fpga_tables`) hold it for a hardware designer: ``$readmemh`` files, CSV, a C
header and a manifest that states every width and rule. The folded float graph is written as NIR
too, as for every target.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from export.calibrate import calibrated
from export.common import NIR_NAME, SOURCE_MODEL, ExportResult, prepare, source_record
from export.nir_export import write_nir
from export.quantize import QuantPolicy, quantize
from hardware.bundle import Bundle, BundleError, write_bundle
from hardware.fpga_tables import MANIFEST_NAME, write_tables
from hardware.graph import Graph, Input
from hardware.profile import PROFILES, TARGET_PROFILES
from lsg_io.files import staged_directory

TARGET = "fpga"


def _arithmetic(profile: str):
    if profile not in TARGET_PROFILES[TARGET]:
        raise BundleError(f"target fpga has no profile {profile!r}; choose one of {', '.join(TARGET_PROFILES[TARGET])}")
    return PROFILES[profile]


def quantize_graph(graph: Graph, bound: float, policy: QuantPolicy, profile: str = TARGET_PROFILES[TARGET][0],
                   calibration: tuple[np.ndarray, int] | None = None) -> tuple[Graph, dict, list[str]]:
    """The integer graph :func:`export_fpga` writes for a folded graph (the target registry's
    ``quantizer``): ``(graph, ranges, warnings)``; with ``policy.calibrate``, the hidden scales
    come from ``calibration`` = (encoded training inputs, timesteps) (:mod:`export.calibrate`,
    its record in ``ranges["calibration"]``)."""
    arithmetic = _arithmetic(profile)
    policy, record = calibrated(graph, calibration, policy, arithmetic)
    integer_graph, ranges, warnings = quantize(graph, bound, policy, arithmetic)
    if record is not None:
        ranges["calibration"] = record
    return integer_graph, ranges, warnings


def export_fpga(checkpoint: Path, out: Path, calibration_inputs: np.ndarray, spec: Input,
                policy: QuantPolicy | None = None, profile: str = TARGET_PROFILES[TARGET][0]) -> ExportResult:
    """Fold, calibrate, quantize to ``profile`` and write ``out``: the bundle, its tables,
    ``model.nir`` and the checkpoint, whole or not at all (see :func:`export.loihi.export_loihi`)."""
    arithmetic = _arithmetic(profile)
    prepared = prepare(checkpoint, calibration_inputs, spec)
    calibration = (calibration_inputs, prepared.timesteps)
    policy = policy or QuantPolicy()
    integer_graph, quantization, warnings = quantize_graph(prepared.float_graph, prepared.bound, policy, profile,
                                                           calibration)
    bundle = Bundle(
        target=TARGET,
        timesteps=prepared.timesteps,
        float_graph=prepared.float_graph,
        integer_graph=integer_graph,
        profile=profile,
        artifacts={"nir": {"file": NIR_NAME}, "source_model": {"file": SOURCE_MODEL},
                   "fpga_tables": {"file": MANIFEST_NAME}},
        quantization=quantization,
        source=source_record(checkpoint, prepared.doc),
    )
    with staged_directory(out) as stage:
        tables = write_tables(integer_graph, arithmetic, prepared.timesteps, stage)
        write_nir(prepared.float_graph, prepared.timesteps, stage / NIR_NAME)
        shutil.copyfile(checkpoint, stage / SOURCE_MODEL)
        write_bundle(bundle, stage, files=(*tables, NIR_NAME, SOURCE_MODEL))  # last: it lists the others
    return ExportResult(bundle=bundle, warnings=warnings)
