"""``lsg-deploy export`` for every quantized target: checkpoint in, self-describing bundle out.

One flow, whatever the target (:data:`hardware.targets.TARGETS`): fold the checkpoint, calibrate
the readout range, quantize to the chosen profile, and write the bundle with what every export
holds (``model.nir``, the checkpoint's copy) and what the target's writers add (lava-dl's netx
file, the FPGA tables). A target takes part through its :class:`hardware.targets.Target` value
only:

* its ``profiles`` (the one chosen is stored whole in ``bundle.json``);
* its ``writers``: each writes its files into the staged export; a writer that ``refuses`` the
  folded graph is skipped, and the reason recorded in the bundle's ``artifacts`` and reported as
  a warning. A writer that holds one bias exponent only (``Writer.bias_exp``: netx's 6) makes
  quantization use that exponent where every bias fits it, so that its file is exact; where one
  does not fit, the biases take their own exponents and that writer is skipped, saying why.
  A writer that takes test samples (``Writer.test_samples``: the FPGA test vectors) is handed
  the export's (:class:`hardware.targets.Samples`, or None) and a progress callback.
"""

from __future__ import annotations

import dataclasses
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from export.calibrate import calibrated
from export.common import NIR_NAME, SOURCE_MODEL, ExportResult, prepare, source_record
from export.nir_export import write_nir
from export.quantize import QuantPolicy, RangeError, quantize
from hardware.bundle import Bundle, write_bundle
from hardware.graph import BundleError, Graph, Input
from hardware.profile import Profile
from hardware.targets import Samples, Target, Writer
from lsg_io.files import staged_directory


def _grid_writer(target: Target) -> Writer | None:
    return next((w for w in target.writers if w.bias_exp is not None), None)


def _on_grid(graph: Graph, bound: float, policy: QuantPolicy, profile: Profile, writer: Writer | None,
             reason: str | None) -> tuple[Graph, dict, list[str], str | None]:
    """Quantize on ``writer``'s bias grid where it can hold the network, so that its file is
    exact; else, or where a bias does not fit that grid, with each node's smallest exponent that
    fits. A pinned bias exponent (``policy.pins``: fine-tuning, calibration) is kept as it is; the
    writer is skipped where one is not its exponent. Returns the graph, its ranges, warnings and
    why the writer is skipped (None: it is not); ``reason``: why it refuses the graph, if it does."""
    if writer is None:
        return (*quantize(graph, bound, policy, profile), None)
    grid = writer.bias_exp
    pinned = {name for name, pin in (policy.pins or {}).items() if pin.bias_exp is not None}
    off_grid = sorted(name for name in pinned if policy.pins[name].bias_exp != grid)
    if reason is None and off_grid:
        reason = f"{writer.name} fixes bias_exp = {grid}; the pinned biases of {', '.join(off_grid)} use another"
    if reason is None:
        try:
            result = quantize(graph, bound, dataclasses.replace(policy, bias_exp=grid), profile)
        except RangeError as exc:
            if exc.field != "bias_mant":
                raise
            reason = f"{writer.name} fixes bias_exp = {grid}, where {str(exc).split(';')[0]}"
        else:  # a pinned bias was clipped on this grid when it was chosen: the writer holds it as it is
            clipped = [name for name, r in result[1]["layers"].items() if r["clipped"]["bias"] and name not in pinned]
            if not clipped:
                return (*result, None)
            reason = f"{writer.name} fixes bias_exp = {grid}, where the biases of {', '.join(clipped)} do not fit"
    return (*quantize(graph, bound, dataclasses.replace(policy, bias_exp=None), profile), reason)


def quantize_for(target: Target, profile: Profile, graph: Graph, bound: float, policy: QuantPolicy,
                 calibration: tuple[np.ndarray, int] | None = None
                 ) -> tuple[Graph, dict, list[str], dict[str, str]]:
    """The integer graph the export writes for a folded graph: ``(graph, ranges, warnings,
    skipped)``, ``skipped`` naming each of the target's writers that cannot hold it, with why.
    With ``policy.calibrate`` the hidden scales come from ``calibration`` = (encoded training
    inputs, timesteps) (:mod:`export.calibrate`, its record in ``ranges["calibration"]``);
    fine-tuning trains at exactly this graph."""
    if not target.owns(profile):
        raise ValueError(f"target {target.name} offers {', '.join(target.profile_names)}; got {profile.name}")
    writer = _grid_writer(target)
    # candidates are tried on the writer's grid where it can hold the network, as _on_grid applies
    # it, so that the chosen pins carry the exponent the export uses
    refusals = {w.name: w.refuses(graph) for w in target.writers}  # structural: asked once
    refused = refusals[writer.name] if writer else None
    trial = dataclasses.replace(policy, bias_exp=writer.bias_exp) if writer and refused is None else None
    policy, record = calibrated(graph, calibration, policy, profile, trial)
    integer_graph, ranges, warnings, reason = _on_grid(graph, bound, policy, profile, writer, refused)
    if record is not None:
        ranges["calibration"] = record
    skipped = {name: why for name, why in refusals.items() if why and (writer is None or name != writer.name)}
    if reason is not None:
        skipped[writer.name] = reason
    return integer_graph, ranges, warnings, skipped


def _write(writer: Writer, bundle: Bundle, stage: Path, samples: Samples | None,
           progress: Callable[[int], Any] | None, options: dict[str, Any]) -> tuple[str, ...]:
    """One writer's files, with the export ``options`` it takes; a writer that takes test samples
    gets ``samples`` and, while it writes them, a progress bar from ``progress(total)``
    (``update(n)``, ``close()``)."""
    given = {k: v for k, v in options.items() if k in writer.options}
    if not writer.test_samples:
        return writer.write(bundle, stage, **given)
    bar = progress(len(samples)) if progress is not None and samples is not None and len(samples) else None
    try:
        return writer.write(bundle, stage, samples, bar.update if bar is not None else None, **given)
    finally:
        if bar is not None:
            bar.close()


def export_bundle(checkpoint: Path, out: Path, target: Target, profile: Profile, calibration_inputs: np.ndarray,
                  spec: Input, policy: QuantPolicy | None = None, samples: Samples | None = None,
                  progress: Callable[[int], Any] | None = None,
                  options: dict[str, Any] | None = None) -> ExportResult:
    """Fold, calibrate the readout range on ``calibration_inputs`` (encoded as ``spec`` says),
    quantize to ``profile`` and write ``out``: the bundle, ``model.nir`` (the folded float graph),
    the checkpoint's copy and every writer's files (a writer that cannot hold the network is
    skipped, recorded in the bundle's ``artifacts`` and reported as a warning). ``samples``: the
    test samples of the writers that take them (None: none); ``progress(total)``: a progress bar
    for them; ``options``: the export options the target's writers take (:attr:`Writer.options`;
    one no writer takes is a ValueError).

    ``out`` is written whole or not at all (staged in a sibling directory, swapped in atomically);
    whether ``out`` may be replaced is decided before this is called (``lsg_deploy.outputs``).
    """
    options = options or {}
    unknown = sorted(set(options) - {o for w in target.writers for o in w.options})
    if unknown:
        raise ValueError(f"target {target.name} takes no option {', '.join(unknown)}")
    prepared = prepare(checkpoint, calibration_inputs, spec)
    integer_graph, quantization, warnings, skipped = quantize_for(
        target, profile, prepared.float_graph, prepared.bound, policy or QuantPolicy(),
        (calibration_inputs, prepared.timesteps))
    refusal = target.refuses(integer_graph, prepared.timesteps)
    if refusal is not None:
        raise BundleError(f"target {target.name} cannot compute this network as specified: {refusal}")
    artifacts = {"nir": {"file": NIR_NAME}, "source_model": {"file": SOURCE_MODEL},
                 **{w.name: {"skipped": skipped[w.name]} if w.name in skipped else {"file": w.file}
                    for w in target.writers}}
    bundle = Bundle(
        target=target.name,
        timesteps=prepared.timesteps,
        float_graph=prepared.float_graph,
        integer_graph=integer_graph,
        profile=profile,
        artifacts=artifacts,
        quantization=quantization,
        source=source_record(checkpoint, prepared.doc),
    )
    written = [NIR_NAME, SOURCE_MODEL]
    with staged_directory(out) as stage:
        write_nir(prepared.float_graph, prepared.timesteps, stage / NIR_NAME)
        shutil.copyfile(checkpoint, stage / SOURCE_MODEL)
        for writer in target.writers:
            if writer.name not in skipped:
                written += _write(writer, bundle, stage, samples, progress, options)
        write_bundle(bundle, stage, files=tuple(written))  # last: it lists the others
    warnings += [f"skipped {w.file}: {skipped[w.name]}" for w in target.writers if w.name in skipped]
    return ExportResult(bundle=bundle, warnings=warnings)
