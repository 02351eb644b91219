"""``export`` and ``finetune`` as library calls: a checkpoint to a target's bundle (or the float
network as ONNX), and a checkpoint fine-tuned with a target's integer forward in the loop. The
training stages and ``simulate`` are in :mod:`lsg_deploy.pipeline`."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from lsg_deploy.errors import UsageError
from lsg_deploy.outputs import check_bundle_target, check_creatable_dir, check_finetune_target
from lsg_deploy.pipeline import CHECKPOINT_NAME, progress_bar, tqdm_write
from lsg_deploy.results import BundleExport, Finetuned, FloatExport
from lsg_io import files
from training import data

#: the training samples an export calibrates on at most (the readout's range, --calibrate): all of
#: the digits' 1,437, the first 2,048 of CIFAR's 50,000
CALIBRATION_SAMPLES = 2048


def export(checkpoint: Path, target: str, out: Path, clip: bool = False, weight_percentile: float | None = None,
           force: bool = False, profile: str | None = None, unrolled: bool = False,
           calibrate: bool = False, data_dir: str | None = None,
           verify_data: bool = True, testvectors: int | None = None, quiet: bool = False,
           weights: str | None = None, lanes: int | None = None) -> BundleExport | FloatExport:
    """Write ``checkpoint`` for ``target`` (:func:`export.targets.choices`) in the directory ``out``.

    A quantized target (:data:`hardware.targets.TARGETS`) folds and quantizes it in its integer
    ``profile`` (default: the target's first; ``clip`` and ``weight_percentile``, default
    100, set the quantization; ``calibrate``: hidden scales from activation statistics,
    :mod:`export.calibrate`) and writes a bundle; a float target (onnx) writes the folded float
    network (:func:`_export_float`; ``unrolled``: also all T steps) and refuses the quantization
    options. ``out`` may hold an earlier export (replaced atomically); anything else there is
    refused unless ``force`` (see :mod:`lsg_deploy.outputs`).

    ``testvectors``: how many samples of the dataset's test split (the first) a target that
    writes test vectors (fpga: ``testvectors/``, default 20) gets; 0: none. A progress bar shows
    while they are computed, unless ``quiet``.

    ``weights`` and ``lanes``: the build of the FPGA RTL in ``out/rtl/`` (target fpga only;
    :class:`hardware.targets.fpga.rtl.ip.RtlBuild`): ``spram`` (the default, the iCE40 UP5K's
    SPRAM loaded at boot, 1 lane) or ``rom`` (bitstream-initialised ROMs, 32 lanes), and the most
    output channels a layer updates per cycle.
    """
    from export.flow import export_bundle
    from export.fold import FoldError
    from export.quantize import QuantPolicy, RangeError
    from export.targets import FLOAT_EXPORTS, choices
    from hardware.bundle import BundleError
    from hardware.graph import Input
    from hardware.targets import TARGETS, Samples
    from hardware.targets.loihi.netx import NetxError
    from training.checkpoint import CheckpointError, load_checkpoint

    if target not in choices():
        raise UsageError(f"unknown target {target!r}; available: {', '.join(choices())}")
    if target in FLOAT_EXPORTS:
        given = [flag for flag, value in (("--profile", profile is not None), ("--clip", clip),
                                          ("--weight-percentile", weight_percentile is not None),
                                          ("--calibrate", calibrate),
                                          ("--testvectors", testvectors is not None),
                                          ("--weights", weights is not None), ("--lanes", lanes is not None)) if value]
        if given:
            raise UsageError(f"{', '.join(given)}: target {target} writes the float network, which has no integer "
                             f"profile nor quantization; drop {'them' if len(given) > 1 else 'it'}")
        return _export_float(checkpoint, target, out, force, unrolled)
    count = _testvectors_count(TARGETS[target], testvectors)
    options = _writer_options(TARGETS[target], {"weights": weights, "lanes": lanes})
    if unrolled:
        floats = ", ".join(FLOAT_EXPORTS)
        raise UsageError(f"--unrolled: target {target} writes a bundle; only target {floats} writes an unrolled model")
    try:
        model, doc = load_checkpoint(checkpoint)
        record = _finetuned(doc, checkpoint, model)
    except CheckpointError as exc:
        raise UsageError(str(exc)) from None
    pinned = record is not None and record.target == target and profile in (None, record.profile)
    profile = profile or (record.profile if pinned else TARGETS[target].default_profile.name)
    if profile not in TARGETS[target].profile_names:
        raise UsageError(f"--profile {profile}: target {target} offers {', '.join(TARGETS[target].profile_names)}")
    if pinned and (weight_percentile is not None or calibrate):
        flag = "--weight-percentile" if weight_percentile is not None else "--calibrate"
        raise UsageError(f"{flag}: {checkpoint} was fine-tuned at its own scales for {record.profile}, "
                         f"which its export keeps; drop {flag}")
    if calibrate and weight_percentile is not None:
        raise UsageError("--calibrate chooses each layer's weight percentile itself: drop --weight-percentile")
    if record is not None and not pinned:
        print(f"WARNING: {checkpoint} was fine-tuned for {record.target} ({record.profile}); quantizing it afresh "
              f"for {target} ({profile})", file=sys.stderr)
    try:
        # a fine-tuned network clipped what its scales could not hold while it trained: its export does too
        policy = QuantPolicy(on_overflow="clip" if clip or pinned else "error",
                             weight_percentile=100.0 if weight_percentile is None else weight_percentile,
                             pins=record.pins if pinned else None, calibrate=calibrate)
    except ValueError as exc:  # QuantPolicy's range checks
        raise UsageError(f"--weight-percentile: {exc}") from None
    check_bundle_target(out, checkpoint, force)
    try:
        data_spec = data.DataSpec.from_dict(doc["data"])
        train_split, test_split, _ = data.load(data_spec, timesteps=model.timesteps,
                                               files=data.FileSource.from_config(doc["config"], data_dir,
                                                                                 verify_data))
    except data.DataError as exc:
        raise UsageError(str(exc)) from None
    if count > len(test_split.labels):
        raise UsageError(f"--testvectors {count}: the test split of {data_spec.dataset} has "
                         f"{len(test_split.labels)} samples")
    samples = Samples(test_split.pixels[:count], test_split.labels[:count], np.arange(count), data_spec.dataset,
                      channels=data.DATASETS[data_spec.dataset].channels) if count else None
    try:
        spec = Input(tuple(model.input_shape), train_split.encoding, train_split.input_max)
        result = export_bundle(checkpoint, out, TARGETS[target], TARGETS[target].profile(profile),
                               train_split.pixels[:CALIBRATION_SAMPLES], spec, policy, samples,
                               lambda total: progress_bar(total, "test vectors", quiet, "img"), options)
    except (CheckpointError, data.DataError, FoldError, RangeError, BundleError, NetxError) as exc:
        raise UsageError(str(exc)) from None
    for warning in result.warnings:
        # a fine-tuned network was trained with its clipped values clipped: they are no loss
        note = " (as it was fine-tuned)" if pinned and "clipped" in warning else ""
        print(f"WARNING: {warning}{note}", file=sys.stderr)
    return BundleExport(Path(out), profile, tuple(result.warnings), result.bundle.quantization["layers"],
                        result.bundle.quantization.get("calibration"))


def _writer_options(target, requested: dict[str, Any]) -> dict[str, Any]:
    """The options the user gave (not None), each one a writer of ``target`` (a
    :class:`hardware.targets.Target`) takes; the writer checks their values."""
    given = {k: v for k, v in requested.items() if v is not None}
    taken = {o for w in target.writers for o in w.options}
    for name in given:
        if name not in taken:
            raise UsageError(f"--{name}: target {target.name} writes no RTL; it is an option of target fpga")
    if "lanes" in given and (isinstance(given["lanes"], bool) or not isinstance(given["lanes"], int)
                             or given["lanes"] < 1):
        raise UsageError(f"--lanes must be an integer >= 1, got {given['lanes']!r}")
    return given


def _testvectors_count(target, requested: int | None) -> int:
    """How many test vectors ``target`` (a :class:`hardware.targets.Target`) writes for
    ``--testvectors requested`` (None: its writers' default; 0: none)."""
    default = max((w.test_samples for w in target.writers), default=0)
    if requested is None:
        return default
    if isinstance(requested, bool) or not isinstance(requested, int) or requested < 0:
        raise UsageError(f"--testvectors must be an integer >= 0 (0: none), got {requested!r}")
    if requested and not default:
        raise UsageError(f"--testvectors: target {target.name} writes no test vectors")
    return requested


def _finetuned(doc: dict[str, Any], checkpoint: Path, model=None):
    """The checkpoint's fine-tuning record (:class:`export.finetune.QuantizationRecord`) or None;
    with ``model``, its pins must name exactly the model's nodes."""
    from export.finetune import FinetuneError, QuantizationRecord

    try:
        record = QuantizationRecord.from_checkpoint(doc)
        if record is not None and model is not None:
            record.check_nodes(model)
        return record
    except FinetuneError as exc:
        raise UsageError(f"{checkpoint}: {exc}") from None


def finetune(checkpoint: Path, target: str, out: Path, profile: str | None = None, clip: bool = False,
             weight_percentile: float | None = None, epochs: int = 5, lr: float = 3e-4, batch_size: int = 64,
             seed: int = 0, quiet: bool = False, say=print, calibrate: bool = False,
             data_dir: str | None = None, verify_data: bool = True, force: bool = False) -> Finetuned:
    """Fine-tune ``checkpoint`` with ``target``'s integer forward in the loop (:mod:`export.finetune`)
    and write ``out/model.pt`` after every epoch, each proven to export to the integer network it
    trained. The starting scales are the export's (``clip``, ``weight_percentile``, ``calibrate``); a
    checkpoint fine-tuned before for the same target and profile goes on at its own. ``out`` may
    hold an earlier fine-tuning of ``checkpoint``; anything else only with ``force``
    (:func:`lsg_deploy.outputs.check_finetune_target`)."""
    import copy

    from export import finetune as ft
    from export.common import prepare
    from export.flow import quantize_for
    from export.fold import fold
    from export.quantize import QuantPolicy, RangeError, pins_of
    from hardware.bundle import BundleError, sha256_file
    from hardware.graph import Input
    from hardware.targets import TARGETS
    from training.checkpoint import CheckpointError, checkpoint_bytes, checkpoint_document, load_checkpoint
    from training.config import TrainConfig
    from training.loop import predict

    if target not in TARGETS:
        raise UsageError(f"--target {target}: fine-tuning needs a quantized target ({', '.join(TARGETS)})")
    profile = profile or TARGETS[target].default_profile.name
    if profile not in TARGETS[target].profile_names:
        raise UsageError(f"--profile {profile}: target {target} offers {', '.join(TARGETS[target].profile_names)}")
    try:
        config = ft.FinetuneConfig(epochs=epochs, lr=lr, batch_size=batch_size, seed=seed)
        policy = QuantPolicy(on_overflow="clip" if clip else "error",
                             weight_percentile=100.0 if weight_percentile is None else weight_percentile,
                             calibrate=calibrate)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if calibrate and weight_percentile is not None:
        raise UsageError("--calibrate chooses each layer's weight percentile itself: drop --weight-percentile")
    out = Path(out)
    target_file = out / CHECKPOINT_NAME
    check_creatable_dir(out, "--out")
    if target_file.is_dir():
        raise UsageError(f"--out {out}: {target_file} is a directory")
    if target_file.resolve() == Path(checkpoint).resolve():
        raise UsageError(f"--out {out} would overwrite the checkpoint being fine-tuned; choose another directory")
    check_finetune_target(out, Path(checkpoint), force)
    try:
        model, doc = load_checkpoint(checkpoint)
        record = _finetuned(doc, checkpoint, model)
        train_split, test_split, _ = data.load(data.DataSpec.from_dict(doc["data"]), timesteps=model.timesteps,
                                               files=data.FileSource.from_config(doc["config"], data_dir,
                                                                                 verify_data))
    except (CheckpointError, data.DataError) as exc:
        raise UsageError(str(exc)) from None
    arithmetic = TARGETS[target].profile(profile)
    spec = Input(tuple(model.input_shape), train_split.encoding, train_split.input_max)

    def quantizer(graph, bound, policy, calibration=None):
        return quantize_for(TARGETS[target], arithmetic, graph, bound, policy, calibration)[:3]
    try:
        calibration = train_split.pixels[:CALIBRATION_SAMPLES]
        prepared = prepare(Path(checkpoint), calibration, spec)
        if record is not None and (record.target, record.profile) == (target, profile):
            if calibrate or weight_percentile is not None or clip:
                raise UsageError(f"{checkpoint} was fine-tuned for {profile} at its own scales, which a further "
                                 f"fine-tuning keeps; drop --calibrate, --weight-percentile and --clip")
            pins = record.pins  # going on from an earlier fine-tuning, at its scales
            policy = QuantPolicy(on_overflow="clip", weight_percentile=record.weight_percentile, pins=pins)
            start, _, _ = quantizer(prepared.float_graph, prepared.bound, policy)
        else:
            start, _, _ = quantizer(prepared.float_graph, prepared.bound, policy, (calibration, model.timesteps))
            pins = pins_of(start)
        forward = ft.IntegerForward(model, spec, arithmetic, pins)
    except (RangeError, BundleError, ft.FinetuneError) as exc:
        raise UsageError(str(exc)) from None
    differ = ft.graphs_equal(forward.integer_graph(), start)
    if differ:  # the forward must start from exactly what export writes
        raise ft.FinetuneError(f"the fine-tuning forward is not the export's network: {'; '.join(differ[:3])}")
    timesteps = model.timesteps
    train_data = (train_split.pixels, train_split.labels)
    test_data = (test_split.pixels, test_split.labels)
    float_before = float((predict(model, test_split.analog).logits.argmax(1).numpy() == test_split.labels).mean())
    fixed_before = ft.evaluate(forward, *test_data, timesteps)
    say(f"{checkpoint}: {target} ({profile}) fixed point {fixed_before * 100:.2f}%, float {float_before * 100:.2f}% "
        f"on {len(test_split.labels)} test samples; fine-tuning {epochs} epochs")
    pinned_policy = QuantPolicy(on_overflow="clip", pins=pins)
    history: dict[str, Any] = {"fixed_before": fixed_before, "float_before": float_before, "epochs": [],
                               "config": {"epochs": epochs, "lr": lr, "batch_size": batch_size, "seed": seed},
                               "source_sha256": sha256_file(checkpoint)}

    def write(rows) -> None:
        """Snap a copy's decays to the grid, write it with its record, prove its export."""
        final = copy.deepcopy(model)
        ft.snap_decays(final, arithmetic)
        trained = ft.IntegerForward(final, spec, arithmetic, pins).integer_graph()
        float_after = float((predict(final, test_split.analog).logits.argmax(1).numpy() == test_split.labels).mean())
        history.update(epochs=rows, fixed_after=rows[-1]["test_accuracy"], float_after=float_after)
        rec = ft.QuantizationRecord(target, profile, pins, policy.weight_percentile, dict(history))
        new_doc = checkpoint_document(final, TrainConfig.from_saved(doc["config"]), doc["metrics"], doc["classes"],
                                      doc["data"], quantization=rec.to_dict())
        files.write_bytes(target_file, checkpoint_bytes(new_doc))
        exported, _, _ = quantizer(fold(load_checkpoint(target_file)[0], spec), 0.0, pinned_policy)
        differ = ft.graphs_equal(exported, trained)
        if differ:
            target_file.unlink()
            raise ft.FinetuneError(f"the export of the fine-tuned checkpoint is not the network it trained: "
                                   f"{'; '.join(differ[:3])}")

    def on_epoch(row) -> None:
        write(history["epochs"] + [row])
        if not quiet:
            tqdm_write(f"finetune epoch {row['epoch']}/{epochs}: loss {row['loss']:.4f}, train "
                       f"{row['train_accuracy'] * 100:.2f}%, fixed-point test {row['test_accuracy'] * 100:.2f}%")

    start_time = time.perf_counter()
    try:
        ft.train_epochs(forward, config, train_data, test_data, timesteps, on_epoch=on_epoch,
                        progress=lambda total, desc: progress_bar(total, desc, quiet, "img"))
    except ft.FinetuneError as exc:
        raise UsageError(str(exc)) from None
    return Finetuned(target_file, target, profile, history["fixed_before"], history["float_before"],
                     history["fixed_after"], history["float_after"], tuple(history["epochs"]), history["config"],
                     history["source_sha256"], time.perf_counter() - start_time)


def _export_float(checkpoint: Path, target: str, out: Path, force: bool, unrolled: bool) -> FloatExport:
    """The float target ``target``: no calibration data is read, only the checkpoint's data record
    for the input's encoding (so networks trained on the file datasets export too)."""
    from export.fold import FoldError
    from export.targets import FLOAT_EXPORTS
    from hardware.graph import BundleError, Input
    from training.checkpoint import CheckpointError, load_checkpoint

    chosen = FLOAT_EXPORTS[target]
    missing = chosen.missing()
    if missing:
        raise UsageError(f"target {target} needs the {missing} package: pip install -e \".[{chosen.extra}]\"")
    check_bundle_target(out, checkpoint, force)
    try:
        model, doc = load_checkpoint(checkpoint)
        dataset = data.DATASETS[data.DataSpec.from_dict(doc["data"]).dataset]
        # the float graph never reads input_max; a dataset without an integer encoding records 1
        spec = Input(tuple(model.input_shape), dataset.encoding, dataset.input_max or 1)
        result = chosen.load()(checkpoint, out, spec, unrolled=unrolled, input_max=dataset.input_max)
    except (CheckpointError, data.DataError, FoldError, BundleError) as exc:
        raise UsageError(str(exc)) from None
    return FloatExport(Path(out) / result.model, Path(out) / result.unrolled if result.unrolled else None,
                       tuple(result.files), result.lif_layers, result.timesteps)
