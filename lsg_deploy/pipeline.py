"""The stages as library calls; the CLI is a thin layer over these functions: training
(``train``, ``train_seeds``, ``ablate``) and ``simulate`` here, ``export`` and ``finetune`` in
:mod:`lsg_deploy.deploy`.

Bad input raises :class:`UsageError`: each stage validates its inputs and output paths before
any long work, and catches only the specific exceptions that mean bad input, so a bug still
surfaces as a traceback rather than as a user error.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

from lsg_deploy.errors import UsageError
from lsg_deploy.outputs import (
    check_repeated_runs,
    check_run_target,
)
from lsg_deploy.report.model import Report
from lsg_deploy.results import Trained
from lsg_deploy.simulate import CHECK, CHUNK
from lsg_io import files
from training import data, runlog

CHECKPOINT_NAME, RESUME_NAME = runlog.CHECKPOINT_NAME, runlog.RESUME_NAME


def progress_bar(total: int, desc: str, quiet: bool, unit: str = "it"):
    from tqdm import tqdm

    # disable=None: shown on a terminal only, so logs and error output stay clean
    return tqdm(total=total, desc=desc, disable=True if quiet else None, file=sys.stderr, leave=False,
                dynamic_ncols=True, unit=unit)  # counts as counted: "0/4310 img", not tqdm's "0.00/4.31k"


def _physical_memory() -> int | None:
    """The memory this process may use: the machine's, or less under an address-space limit
    (``ulimit -v``) or a cgroup's ``memory.max``; None where nothing is reported."""
    limits = []
    try:
        limits.append(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):  # not reported on this platform
        pass
    try:
        import resource

        soft = resource.getrlimit(resource.RLIMIT_AS)[0]
        if soft != resource.RLIM_INFINITY:
            limits.append(soft)
    except (ImportError, ValueError, OSError):
        pass
    try:
        text = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if text.isdigit():
            limits.append(int(text))
    except OSError:
        pass
    return min(limits, default=None)


#: the datasets whose images training normalises per channel (``normalize = false`` leaves it out)
NORMALIZED_DATASETS = ("cifar10", "cifar100")


def _training_data(config, spec: data.DataSpec, download: bool):
    """``(train, test, classes)`` as torch datasets (file datasets) or :class:`training.loop.Split`."""
    from training.loop import Split

    if not config.normalize and spec.dataset not in NORMALIZED_DATASETS:
        raise UsageError(f"normalize = false: dataset {spec.dataset} has no normalisation to leave out (only "
                         f"{', '.join(NORMALIZED_DATASETS)} do)")
    if config.dvs_frames != "counts" and spec.dataset != "cifar10-dvs":
        raise UsageError(f"dvs_frames = {config.dvs_frames}: dataset {spec.dataset} is not cifar10-dvs")
    if config.dvs_slice_ms and spec.dataset != "cifar10-dvs":
        raise UsageError(f"dvs_slice_ms = {config.dvs_slice_ms:g}: dataset {spec.dataset} is not cifar10-dvs")
    if data.DATASETS[spec.dataset].files:
        if not config.data_dir:
            raise UsageError(f"dataset {spec.dataset} is read from files: give --data-dir (no download happens "
                             f"without --download)")
        options = data.FileOptions(Path(config.data_dir), config.timesteps, augment=config.augment,
                                   autoaugment=config.autoaugment, cutout=config.cutout,
                                   verify=config.verify_data, download=download, normalize=config.normalize,
                                   dvs_frames=config.dvs_frames, dvs_slice_ms=config.dvs_slice_ms)
        try:
            train_set, test_set = data.build(spec.dataset, options)
        except data.DataFilesError as exc:
            raise UsageError(str(exc)) from None
        return train_set, test_set, data.DATASETS[spec.dataset].classes
    try:
        train_split, test_split, classes = data.load(spec, timesteps=config.timesteps)
    except data.DataError as exc:
        raise UsageError(str(exc)) from None
    return Split(train_split.analog, train_split.labels), Split(test_split.analog, test_split.labels), classes


def _resumed(out: Path, overrides: dict[str, Any], config_file: Path | None):
    """The run in ``out`` to continue: its state and its own config, with only the settings of
    :data:`training.config.RESUME_MAY_CHANGE` taken from the command line."""
    from training.checkpoint import CheckpointError, load_resume
    from training.config import RESUME_MAY_CHANGE

    if config_file is not None:
        raise UsageError("--resume continues the run with its own config: drop --config")
    changed = sorted(k for k, v in overrides.items() if v is not None and k not in RESUME_MAY_CHANGE)
    if changed:
        flags = ", ".join("--" + k.replace("_", "-") for k in changed)
        raise UsageError(f"--resume continues the run as it was configured; drop {flags}")
    try:
        state, config, classes, data_record = load_resume(out / RESUME_NAME)
    except CheckpointError as exc:
        raise UsageError(str(exc)) from None
    config = config.replace(**{k: overrides.get(k) for k in RESUME_MAY_CHANGE})
    # never carried over from the stored run: it verifies the files unless --no-verify-data is given again
    config = config.replace(verify_data=overrides.get("verify_data") is not False)
    try:  # the data record: the dataset and split the config trains on
        recorded = data.DataSpec.from_dict(data_record)
        expected = data.DataSpec(dataset=config.dataset, test_fraction=config.test_fraction, split_seed=0)
    except data.DataError as exc:
        raise UsageError(f"{out / RESUME_NAME}: data: {exc}") from None
    if recorded != expected:
        raise UsageError(f"{out / RESUME_NAME}: data {recorded.to_dict()} is not its config's {expected.to_dict()}")
    return state, config, classes, data_record


def train(config_overrides: dict[str, Any], config_file: Path | None, out: Path, quiet: bool = False,
          resume: bool = False, download: bool = False, force: bool = False) -> Trained:
    """Train on the configured dataset (``dataset``: a name in :data:`training.data.DATASETS`:
    an embedded one, or a file one read from ``data_dir``); write ``model.pt``, ``train_state.pt``
    and the logs of :mod:`training.runlog` in ``out``.

    Each is rewritten, complete, at the end of every epoch: a run killed at any point leaves the
    last finished epoch's checkpoint, loadable, and ``resume`` continues it from there, bit for bit
    as if it had not stopped. Under torchrun (DDP) only rank 0 writes and prints.

    ``out`` must be new or empty unless ``resume`` or ``force`` (which replaces the run there, and
    keeps what is not a run's); a new run's first epoch is written whole or not at all
    (:func:`lsg_deploy.outputs.check_run_target`).
    """
    from training.checkpoint import checkpoint_bytes, checkpoint_document, resume_document
    from training.config import TrainConfig, read_toml
    from training.distributed import DeviceError, setup, teardown
    from training.loop import TrainingDiverged, fit
    from training.model import ArchitectureError
    from training.neuron import resolve_impl

    out = Path(out)
    state = None
    try:
        if resume:
            state, config, state_classes, _ = _resumed(out, config_overrides, config_file)
        else:
            config = TrainConfig.layered(read_toml(config_file) if config_file else {}, config_overrides)
        spec = data.DataSpec(dataset=config.dataset, test_fraction=config.test_fraction, split_seed=0)
    except ValueError as exc:  # TrainConfig and DataSpec report bad values as ValueError
        raise UsageError(str(exc)) from None
    target = check_run_target(out, force=force, resume=resume)
    for name in (CHECKPOINT_NAME, RESUME_NAME, runlog.METRICS_NAME, runlog.DIAGNOSTICS_NAME, runlog.MEMBRANES_NAME):
        if (out / name).is_dir():
            raise UsageError(f"--out {out}: {out / name} is a directory")
    if state is not None and state.epoch >= config.epochs:
        raise UsageError(f"--resume: the run in {out} already finished its {config.epochs} epochs")
    try:
        ctx = setup(config.device)
    except DeviceError as exc:
        raise UsageError(str(exc)) from None
    try:
        resolve_impl(config.neuron_impl, ctx.device)  # an explicit fused kernel where it cannot run: one line
    except ValueError as exc:
        teardown()
        raise UsageError(f"--neuron-impl: {exc}") from None
    train_set, test_set, classes = _training_data(config, spec, download)
    if state is not None:  # the state fits the network the config builds on this dataset, before any write
        from training.checkpoint import CheckpointError, check_resume
        from training.loop import as_dataset, input_shape_of

        try:
            check_resume(out / RESUME_NAME, state, config, state_classes, input_shape_of(as_dataset(train_set)),
                         classes)
        except CheckpointError as exc:
            teardown()
            raise UsageError(str(exc)) from None
    quiet = quiet or not ctx.main
    log = runlog.RunLog(out, test_set, state.epoch if state else 0) if ctx.main else None
    if log is not None and state is not None and not log.has_diagnostics(state.epoch):
        # killed between train_state.pt and the logs of its epoch: the resumed weights are that
        # epoch's model, so its diagnostics are measured now rather than lost
        log.epoch(_restored(config, state, train_set, classes), state.metrics[-1], state.metrics)

    def on_epoch(epoch) -> None:
        if not ctx.main:
            return
        target.begin_epoch()  # the first one removes a run that --force replaces
        files.write_bytes(out / RESUME_NAME, checkpoint_bytes(resume_document(epoch.resume(), config, classes,
                                                                              spec.to_dict())))
        doc = checkpoint_document(epoch.model, config, epoch.metrics, classes, spec.to_dict())
        files.write_bytes(out / CHECKPOINT_NAME, checkpoint_bytes(doc))
        log.epoch(epoch.model, epoch.row, epoch.metrics)
        target.end_epoch()
        if not quiet:
            row = epoch.row
            tqdm_write(f"epoch {row['epoch']}/{config.epochs}: loss {row['train_loss']:.4f}, train "
                       f"{row['train_accuracy'] * 100:.2f}%, test {row['test_accuracy'] * 100:.2f}%, "
                       f"{row['images_per_s']:,.0f} images/s")

    start = time.perf_counter()
    metrics = None
    try:
        _, metrics = fit(config, train_set, test_set, classes, on_epoch=on_epoch, memory_limit=_physical_memory(),
                         ctx=ctx, resume=state, progress=lambda total, desc: progress_bar(total, desc, quiet, "img"))
    except (ArchitectureError, TrainingDiverged, MemoryError) as exc:
        raise UsageError(str(exc)) from None
    finally:
        teardown()
        try:
            if log is not None:
                log.close(draw=metrics is not None)  # the figures of a finished run
        finally:
            target.finish()  # a new run whose first epoch was not written whole leaves nothing
    return Trained(out / CHECKPOINT_NAME, metrics[-1], time.perf_counter() - start, ctx.world, str(ctx.device),
                   ctx.main)


def _restored(config, state, train_set, classes: int):
    """The network of a resumed run's state (the model at the end of its last finished epoch)."""
    from training.loop import as_dataset, input_shape_of
    from training.models import build_model

    model = build_model(config, input_shape_of(as_dataset(train_set)), classes)
    model.load_state_dict(state.model)
    return model


def _resolved(overrides: dict[str, Any], config_file: Path | None):
    from training.config import TrainConfig, read_toml

    try:
        return TrainConfig.layered(read_toml(config_file) if config_file else {}, overrides)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def train_seeds(overrides: dict[str, Any], config_file: Path | None, out: Path, seeds: str, quiet: bool = False,
                resume: bool = False, download: bool = False, say=print, force: bool = False) -> dict[str, Any]:
    """``train`` once per seed of ``seeds`` (:func:`training.ablate.parse_seeds`) in ``out/seed-<s>``;
    returns and writes the summary (:func:`training.ablate.run_seeds`). Every seed's directory
    is checked first (:func:`lsg_deploy.outputs.check_repeated_runs`); ``force`` lets the runs be
    written beside files that are not theirs."""
    from training.ablate import AblationError, parse_seeds, run_seeds

    if overrides.get("seed") is not None:
        raise UsageError("--seed and --seeds exclude each other")
    if resume:
        raise UsageError("--seeds resumes unfinished seeds by itself: drop --resume")
    config = _resolved(overrides, config_file)
    try:
        check_repeated_runs(Path(out), parse_seeds(seeds), config.epochs, force)
        return run_seeds(train, overrides, config_file, Path(out), parse_seeds(seeds), quiet, say,
                         download=download, force=force)
    except AblationError as exc:
        raise UsageError(str(exc)) from None


def ablate(overrides: dict[str, Any], config_file: Path | None, out: Path, seeds: str, tables: str,
           quiet: bool = False, download: bool = False, say=print, force: bool = False, rows: str | None = None,
           folds: int | None = None) -> dict[str, Any]:
    """The paper's Tables 1 and 2 and our learned-against-wider rows over ``seeds``
    (:mod:`training.ablate`), only the rows named in ``rows`` when given, with ``folds``: K-fold
    over all samples of an embedded dataset; ``out`` is checked as :func:`train_seeds` checks its own."""
    from training import ablate as ablation

    chosen = [t.strip() for t in tables.split(",") if t.strip()]
    if not chosen or any(t not in ablation.TABLES for t in chosen):
        raise UsageError(f"--tables must list tables among {', '.join(ablation.TABLES)}, got {tables!r}")
    picked = None
    if rows is not None:
        picked = [r.strip() for r in rows.split(",") if r.strip()]
        unknown = [r for r in picked if r not in ablation.ROWS]
        if not picked or unknown:
            raise UsageError(f"--rows must list rows among {', '.join(ablation.ROWS)}, got {rows!r:.80}")
    names = [n for n in dict.fromkeys(n for t in chosen for n in ablation.TABLES[t][1])
             if picked is None or n in picked]
    if not names:
        raise UsageError(f"--rows {rows!r:.80}: none of them is in --tables {tables}")
    config = _resolved(overrides, config_file)
    if folds is not None and not 2 <= folds <= ablation.MAX_FOLDS:
        raise UsageError(f"--folds must lie in [2, {ablation.MAX_FOLDS}], got {folds}")
    if folds and data.DATASETS[config.dataset].files:
        raise UsageError(f"--folds splits an embedded dataset (digits, digits-events), not {config.dataset}, "
                         f"which has its own test split")
    if folds:  # train checks the device of a run; the folds train without it
        from training.distributed import DeviceError, resolve_device

        try:
            resolve_device(config.device)
        except DeviceError as exc:
            raise UsageError(str(exc)) from None

    def fold_data(run_config):
        """All samples of the embedded dataset (the train and test splits together), and the classes."""
        import numpy as np

        from training.loop import Split

        spec = data.DataSpec(dataset=run_config.dataset, test_fraction=run_config.test_fraction, split_seed=0)
        train_split, test_split, classes = _training_data(run_config, spec, download)
        return Split(np.concatenate([train_split.x, test_split.x]), np.concatenate([train_split.y, test_split.y])), \
            classes

    try:
        parsed = ablation.parse_seeds(seeds)
        check_repeated_runs(Path(out), parsed, config.epochs, force, rows=names)
        return ablation.ablate(train, config, overrides, config_file, Path(out), parsed, chosen, picked, quiet, say,
                               folds=folds or 0, fold_data=fold_data, download=download, force=force)
    except ablation.AblationError as exc:
        raise UsageError(str(exc)) from None


def tqdm_write(line: str) -> None:
    from tqdm import tqdm

    tqdm.write(line, file=sys.stderr)


def simulate(bundle_dir: Path, fixed_point: bool, limit: int | None = None, backend: str = "reference",
             quiet: bool = False, explain: bool = False, data_dir: str | None = None,
             verify_data: bool = True, dump: Path | None = None, force: bool = False,
             simulator: str | None = None, chunk: int = CHUNK, device: str | None = None,
             check: int | None = CHECK, float_models: bool = True) -> Report:
    """Evaluate the float, folded and quantized-beta networks and, with ``fixed_point``, the
    integer network on ``backend``: the numpy ``reference``, ``lava`` (bit-accurate CPU
    backend, in its Python 3.10 environment), ``rtl``, ``fake-quant`` (torch, on ``device``:
    ``auto`` when not given) or ``all`` (every one that fits, fake-quant only with a ``device``;
    each compared bit for bit with the reference). ``check``: how many samples, spread over the
    set, the reference reruns to check fake-quant run without it (None: every one;
    :func:`lsg_deploy.simulate.checked_samples`). ``float_models=False``: skip the float models
    (their accuracies and spike agreement), as where torch is missing.
    ``explain`` (needs ``fixed_point``) attributes each layer's disagreement to its causes
    (:mod:`lsg_deploy.explain`; the bundle's own profile, whatever the backend). ``dump``
    (needs ``fixed_point``): write every backend's spikes per sample and step there
    (:mod:`lsg_deploy.dump`); a non-empty directory only with ``force``. ``simulator``: the one
    the chosen backends that simulate run on (``rtl``: ``verilator``, the default, or ``icarus``).
    ``chunk``: the float models and the backends run that many samples at a time, the report
    counted as they go (:func:`lsg_deploy.simulate.build_report`).

    The bundle is verified (checksums, types, shapes) and checked against its source model
    before anything runs (:func:`lsg_deploy.simulate.load_for_report`). Returns the report
    (:class:`lsg_deploy.report.model.Report`)."""
    from export.onnx_format import MANIFEST_NAME, STEP_NAME, is_onnx_export
    from hardware.targets import backends
    from lsg_deploy.fake_quant_backend import AUTO, FAKE_QUANT, resolve
    from lsg_deploy.simulate import ALL, backends_for, build_report, load_for_report, registry, torch_missing

    if is_onnx_export(Path(bundle_dir)):
        raise UsageError(f"{bundle_dir} is an ONNX export, not a bundle: run {STEP_NAME} with onnxruntime "
                         f"({MANIFEST_NAME} names its inputs, state and outputs); simulate reads the bundles of "
                         f"the quantized targets")
    if explain and not fixed_point:
        raise UsageError("--explain explains the fixed-point network's disagreement with the float one: add "
                         "--fixed-point")
    if fixed_point and backend not in (*backends(), FAKE_QUANT, ALL):
        raise UsageError(f"unknown backend {backend!r}; choose one of {', '.join([*backends(), FAKE_QUANT, ALL])}")
    if device is not None and not fixed_point:
        raise UsageError("--device runs the fixed-point network in torch: add --fixed-point")
    if device is not None and backend not in (FAKE_QUANT, ALL):
        raise UsageError(f"--device is where --backend {FAKE_QUANT} runs; --backend {backend} does not run in torch")
    if backend == FAKE_QUANT and device is None:
        device = AUTO
    if device is not None:
        resolve(device)  # an unknown device, or CUDA where there is none: one line, before anything runs
    if check is not None and check < 1:
        raise UsageError(f"--check must be >= 1 (or all), got {check}")
    if limit is not None and limit < 1:
        raise UsageError(f"--limit must be >= 1, got {limit}")
    if chunk < 1:
        raise UsageError(f"--chunk must be >= 1, got {chunk}")
    if dump is not None and not fixed_point:
        raise UsageError("--dump writes the fixed-point backends' spikes: add --fixed-point")
    if dump is not None:
        from lsg_deploy.outputs import check_dump_target

        check_dump_target(Path(dump), Path(bundle_dir), force)
    no_torch = torch_missing()
    if (no_torch or not float_models) and not fixed_point:
        raise UsageError(f"simulate without --fixed-point runs the float models, but "
                         f"{no_torch or '--no-float leaves them out'}")
    if no_torch and explain:
        raise UsageError(f"--explain reruns the float network with each quantization step, but {no_torch}")
    if not float_models and explain:
        raise UsageError("--explain compares with the float network, which --no-float leaves out")
    bundle, model, spec = load_for_report(Path(bundle_dir), float_models=no_torch is None and float_models)
    chosen = backends_for(backend, bundle, device) if fixed_point else ()
    if simulator is not None:
        every = registry(device)
        simulating = [b for b in chosen if every[b].simulators]
        if not simulating:
            raise UsageError(f"--simulator {simulator}: none of the backends run ({', '.join(chosen) or 'none'}) "
                             f"simulates; it applies to {', '.join(b for b in every if every[b].simulators)}")
        for b in simulating:
            if simulator not in every[b].simulators:
                raise UsageError(f"--simulator {simulator}: backend {b} runs on "
                                 f"{', '.join(every[b].simulators)}")
    try:
        _, test, _ = data.load(spec, timesteps=bundle.timesteps,
                               files=data.FileSource.from_config(bundle.source.get("train_config", {}), data_dir,
                                                                 verify_data))
    except data.DataError as exc:
        raise UsageError(f"{bundle_dir}: {exc}") from None
    recorded = bundle.input
    if (test.encoding, test.input_max) != (recorded.encoding, recorded.input_max):
        raise UsageError(f"{bundle_dir}: its input is {recorded.encoding} with input_max {recorded.input_max}, but "
                         f"dataset {spec.dataset} gives {test.encoding} with input_max {test.input_max}: the bundle "
                         f"was edited, or exported from another data set; export it again")
    test = test.head(limit)

    def write_dump(runs) -> None:
        import numpy as np

        from lsg_deploy.dump import write_dump

        write_dump(Path(dump), runs, test.labels, np.arange(len(test.labels)))  # the split's first samples

    return build_report(bundle, model, Path(bundle_dir), test, chosen,
                        progress=lambda total, name: progress_bar(total, f"simulate {name}", quiet), explain=explain,
                        float_missing=no_torch or (None if float_models else "--no-float: not asked for"),
                        on_runs=write_dump if dump is not None else None, simulator=simulator, chunk=chunk,
                        device=device, check=check)
