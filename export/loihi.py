"""``lsg-deploy export --target loihi``: checkpoint in, self-describing bundle out."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import numpy as np

from export.calibrate import calibrated
from export.common import NIR_NAME, SOURCE_MODEL, ExportResult, prepare, source_record
from export.netx import NETX_BIAS_EXP, NETX_NAME, skip_reason, write_netx
from export.nir_export import write_nir
from export.quantize import QuantPolicy, RangeError, quantize
from hardware.bundle import Bundle, BundleError, write_bundle
from hardware.graph import Graph, Input
from hardware.profile import LOIHI2
from lsg_io.files import staged_directory

#: lava-dl's netx fixes bias_exp = 6; quantizing with it keeps model.net exact (export/netx.py)
LOIHI_BIAS_EXP = NETX_BIAS_EXP


def _quantize(graph: Graph, bound: float, policy: QuantPolicy) -> tuple[Graph, dict, list[str], str | None]:
    """Quantize on netx's bias grid (``bias_exp = 6``) where netx can hold the network, so that
    ``model.net`` is exact; else, or where a bias does not fit that grid, with each node's
    smallest exponent that fits. A pinned bias exponent (``policy.pins``: fine-tuning,
    calibration) is kept as it is; netx is skipped where one is not 6. Returns the graph, its
    ranges, warnings and why netx is skipped."""
    reason = skip_reason(graph)
    pinned = {name for name, pin in (policy.pins or {}).items() if pin.bias_exp is not None}
    off_grid = sorted(name for name in pinned if policy.pins[name].bias_exp != LOIHI_BIAS_EXP)
    if reason is None and off_grid:
        reason = f"netx fixes bias_exp = {LOIHI_BIAS_EXP}; the pinned biases of {', '.join(off_grid)} use another"
    if reason is None:
        try:
            on_grid = quantize(graph, bound, dataclasses.replace(policy, bias_exp=LOIHI_BIAS_EXP))
        except RangeError as exc:
            if exc.field != "bias_mant":
                raise
            reason = f"netx fixes bias_exp = {LOIHI_BIAS_EXP}, where {str(exc).split(';')[0]}"
        else:  # a pinned bias was clipped on this grid when it was chosen: netx holds it as it is
            clipped = [name for name, r in on_grid[1]["layers"].items() if r["clipped"]["bias"] and name not in pinned]
            if not clipped:
                return (*on_grid, None)
            reason = f"netx fixes bias_exp = {LOIHI_BIAS_EXP}, where the biases of {', '.join(clipped)} do not fit"
    return (*quantize(graph, bound, dataclasses.replace(policy, bias_exp=None)), reason)


def quantize_graph(graph: Graph, bound: float, policy: QuantPolicy, profile: str = LOIHI2.name,
                   calibration: tuple[np.ndarray, int] | None = None) -> tuple[Graph, dict, list[str]]:
    """The integer graph :func:`export_loihi` writes for a folded graph (the target registry's
    ``quantizer``): ``(graph, ranges, warnings)``; with ``policy.calibrate``, the hidden scales
    come from ``calibration`` = (encoded training inputs, timesteps) (:mod:`export.calibrate`,
    its record in ``ranges["calibration"]``)."""
    return _quantize_calibrated(graph, bound, policy, profile, calibration)[:3]


def _quantize_calibrated(graph: Graph, bound: float, policy: QuantPolicy, profile: str,
                         calibration: tuple[np.ndarray, int] | None) -> tuple[Graph, dict, list[str], str | None]:
    if profile != LOIHI2.name:
        raise BundleError(f"target loihi has one profile, {LOIHI2.name}; got {profile!r}")
    # candidates tried on netx's bias grid where netx can hold the network, as _quantize applies
    # it, so that the chosen pins carry the exponent the export uses
    trial = dataclasses.replace(policy, bias_exp=LOIHI_BIAS_EXP) if skip_reason(graph) is None else policy
    policy, record = calibrated(graph, calibration, policy, LOIHI2, trial)
    integer_graph, ranges, warnings, reason = _quantize(graph, bound, policy)
    if record is not None:
        ranges["calibration"] = record
    return integer_graph, ranges, warnings, reason


def export_loihi(checkpoint: Path, out: Path, calibration_inputs: np.ndarray, spec: Input,
                 policy: QuantPolicy | None = None, profile: str = LOIHI2.name) -> ExportResult:
    """Fold, calibrate the readout range on ``calibration_inputs`` (encoded as ``spec`` says),
    quantize, write ``out``: the bundle, ``model.nir`` (folded float graph), ``model.net`` (lava-dl
    netx, for chains: a graph netx cannot hold is skipped, recorded in the bundle's ``artifacts``
    and reported as a warning) and the checkpoint. Biases are always quantized at
    ``LOIHI_BIAS_EXP`` where netx is written, so that ``model.net`` is exact (:func:`_quantize`).

    ``out`` is written whole or not at all (staged in a sibling directory, swapped in atomically);
    whether ``out`` may be replaced is decided before this is called (``lsg_deploy.outputs``).
    """
    if profile != LOIHI2.name:
        raise BundleError(f"target loihi has one profile, {LOIHI2.name}; got {profile!r}")
    prepared = prepare(checkpoint, calibration_inputs, spec)
    calibration = (calibration_inputs, prepared.timesteps)
    integer_graph, quantization, warnings, netx_skipped = _quantize_calibrated(
        prepared.float_graph, prepared.bound, policy or QuantPolicy(), profile, calibration)
    artifacts = {"nir": {"file": NIR_NAME}, "source_model": {"file": SOURCE_MODEL},
                 "netx": {"skipped": netx_skipped} if netx_skipped else {"file": NETX_NAME}}
    bundle = Bundle(
        target="loihi",
        timesteps=prepared.timesteps,
        float_graph=prepared.float_graph,
        integer_graph=integer_graph,
        profile=LOIHI2.name,
        artifacts=artifacts,
        quantization=quantization,
        source=source_record(checkpoint, prepared.doc),
    )
    written = [NIR_NAME, SOURCE_MODEL]
    with staged_directory(out) as stage:
        write_nir(prepared.float_graph, prepared.timesteps, stage / NIR_NAME)
        if not netx_skipped:
            write_netx(bundle, stage / NETX_NAME)
            written.append(NETX_NAME)
        shutil.copyfile(checkpoint, stage / SOURCE_MODEL)
        write_bundle(bundle, stage, files=tuple(written))  # last: it lists the others
    if netx_skipped:
        warnings.append(f"skipped {NETX_NAME}: {netx_skipped}")
    return ExportResult(bundle=bundle, warnings=warnings)
