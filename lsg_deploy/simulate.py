"""``simulate``: run a bundle's float and fixed-point networks and gather the report's numbers
(accuracies of every model variant, overall and per class, per-layer agreement and health,
synaptic operations per inference and their energy estimate (:mod:`hardware.costs`), the
resources the network needs on its target (:mod:`hardware.resources`), bit-exact
agreement between the fixed-point backends) and, asked for, where each layer's disagreement comes
from (:mod:`lsg_deploy.explain`). Formatting them is :mod:`lsg_deploy.report`'s job.

The fixed-point backends come from the target registry (:mod:`hardware.targets`): the integer
reference runs every bundle, in the profile it stores; each target adds its own (Lava, the RTL)
and says which bundles they can run. ``all`` runs every backend that can run the bundle and
compares each with the integer reference bit for bit.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hardware.bundle import Bundle, BundleError
from hardware.graph import DIRECT
from hardware.reference import IntegerRun
from hardware.targets import REFERENCE as REFERENCE_BACKEND
from hardware.targets import BackendError, backends, resources
from lsg_deploy.errors import UsageError
from training.data import DataError, DataSpec, EncodedSplit


def _accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    return float((np.asarray(logits).argmax(axis=1) == labels).mean())


ALL = "all"  #: every backend that can run the bundle, each compared with the reference bit for bit
REFERENCE = REFERENCE_BACKEND.name


def backends_for(choice: str, bundle: Bundle) -> tuple[str, ...]:
    """The backends a ``--backend`` choice runs on ``bundle`` (``all``: every registered one
    that can run it); a chosen backend that cannot is a :class:`UsageError` saying why."""
    every = backends()  # the reference, then each target's (hardware.targets)
    if choice == ALL:
        return tuple(name for name, b in every.items() if b.refuses(bundle) is None)
    if choice not in every:
        raise UsageError(f"unknown backend {choice!r}; choose one of {', '.join([*every, ALL])}")
    why = every[choice].refuses(bundle)
    if why is not None:
        raise UsageError(f"--backend {choice}: {why}")
    return (choice,)


def _warm_up(backend: str) -> float:
    """A backend's one-time set-up (:attr:`Backend.warm_up`); its seconds."""
    start = time.perf_counter()
    backends()[backend].warm_up()
    return time.perf_counter() - start


def _run_fixed(backend: str, bundle: Bundle, bundle_dir: Path, inputs: np.ndarray,
               progress: Callable[[int, str], Any] | None) -> tuple[IntegerRun, float]:
    bar = progress(len(inputs), backend) if progress else None
    start = time.perf_counter()
    try:
        run = backends()[backend].run(bundle, bundle_dir, inputs, bar.update if bar is not None else None)
    except BundleError as exc:
        raise UsageError(str(exc)) from None
    except BackendError as exc:
        raise UsageError(exc.summary, detail=exc.detail or None) from None
    finally:
        if bar is not None:
            bar.close()
    return run, time.perf_counter() - start


def torch_missing() -> str | None:
    """Why the float side (the source model, folding) cannot run here: None where torch imports."""
    try:
        import torch  # noqa: F401
    except ImportError:
        return "torch is not installed (pip install -e \".[train]\" for the float models)"
    return None


def load_for_report(bundle_dir: Path, float_models: bool = True) -> tuple[Bundle, Any, DataSpec]:
    """Read and verify a bundle and, with ``float_models``, its source model, and check that they
    belong together: the copy is the exported checkpoint (SHA-256), and folding it again gives
    exactly the bundle's float layers, names, shapes, timesteps and input. Without
    ``float_models`` the model is None and only numpy is needed: the bundle carries its integer
    network and arithmetic, and its checksums cover the copy of the checkpoint."""
    from hardware.bundle import SOURCE_MODEL, BundleError, read_bundle

    try:
        bundle = read_bundle(bundle_dir)
        source = bundle.source
        spec = DataSpec.from_dict(source.get("data"))
        recorded = source.get("checkpoint_sha256")
        if recorded != bundle.files.get(SOURCE_MODEL):
            raise BundleError(f"{bundle_dir / SOURCE_MODEL} is not the checkpoint the bundle was exported from")
    except (BundleError, DataError) as exc:
        raise UsageError(f"{bundle_dir}: {exc}") from None
    if not float_models:
        return bundle, None, spec
    from export.fold import FoldError, fold
    from training.checkpoint import CheckpointError, load_checkpoint

    try:
        model, _ = load_checkpoint(bundle_dir / SOURCE_MODEL)
        folded = fold(model, bundle.input)
    except (CheckpointError, FoldError) as exc:
        raise UsageError(f"{bundle_dir}: bundle's source model: {exc}") from None
    mismatch = None
    mine_g, theirs_g = bundle.float_graph, folded
    if model.timesteps != bundle.timesteps:
        mismatch = f"timesteps {bundle.timesteps}, its source model {model.timesteps}"
    elif tuple(model.input_shape) != bundle.input.shape:
        mismatch = f"input shape {bundle.input.shape}, its source model {tuple(model.input_shape)}"
    elif [n.name for n in mine_g.nodes] != [n.name for n in theirs_g.nodes]:
        mismatch = f"nodes {[n.name for n in mine_g.nodes]}, its source model {[n.name for n in theirs_g.nodes]}"
    elif [(e.name, e.source, e.target) for e in mine_g.edges] != [(e.name, e.source, e.target) for e in theirs_g.edges]:
        mismatch = "edges that differ from its source model's"
    else:
        for mine, theirs in zip(mine_g.nodes + mine_g.edges, theirs_g.nodes + theirs_g.edges, strict=True):
            scalars = [f.name for f in dataclasses.fields(mine) if f.name not in mine.ARRAYS]
            same = all(getattr(mine, k) == getattr(theirs, k) for k in scalars) and all(
                np.array_equal(getattr(mine, k), getattr(theirs, k)) for k in mine.ARRAYS)
            if not same:
                mismatch = f"a {'node' if mine in mine_g.nodes else 'edge'} {mine.name} that differs from its " \
                           f"source model's"
                break
    if mismatch:
        raise UsageError(f"{bundle_dir}: the bundle has {mismatch}; re-export it")
    return bundle, model, spec


def exact_agreement(a: IntegerRun, b: IntegerRun) -> dict[str, int]:
    """Mismatch counts per layer (spikes) and for the readout membranes, compared with ==."""
    counts = {name: int(np.count_nonzero(a.spikes[name] != b.spikes[name])) for name in a.spikes}
    counts["readout"] = int(np.count_nonzero(a.readout != b.readout))
    return counts


def _scales(quantization: dict[str, Any]) -> dict[str, Any]:
    """How the export chose its scales: from the weight ranges, calibrated (with every candidate's
    own agreement, :mod:`export.calibrate`) or pinned by fine-tuning."""
    layers = quantization.get("layers", {})
    if "calibration" in quantization:
        return {"rule": "calibrated", **quantization["calibration"]}
    if layers and all(r.get("pinned") for r in layers.values() if isinstance(r, dict)):
        return {"rule": "fine-tuned"}
    return {"rule": "weight range", "weight_percentile": quantization.get("policy", {}).get("weight_percentile")}


def per_class_accuracy(predictions: np.ndarray, labels: np.ndarray, classes: int) -> dict[str, float | None]:
    """Accuracy on the samples of each class ``0 .. classes-1`` (keys are the class as text, as
    JSON has them); None for a class without samples. Weighted by the class counts, the values
    average to the overall accuracy."""
    predictions, labels = np.asarray(predictions), np.asarray(labels)
    return {str(c): float((predictions[labels == c] == c).mean()) if np.any(labels == c) else None
            for c in range(classes)}


def _suffix(backend: str) -> str:
    """A backend's name in per-layer keys: ``fixed`` for the reference, else the backend's."""
    return "fixed" if backend == REFERENCE else backend


def synaptic_costs(bundle: Bundle, float_spikes: dict[str, np.ndarray] | None, runs: dict[str, IntegerRun],
                   inputs: np.ndarray) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    """Synaptic operations per inference per node, from the float run's and every fixed-point
    run's spikes, and the totals with the energy estimate (:mod:`hardware.costs`, which has the
    formulas and the source of the per-operation energies). Returns ``(per node, totals)``:
    per node ``{"synapses": N, "float": {"ac", "mac"}, "fixed": {...}, <backend>: {...}}``;
    the totals add the ANN comparison (every synapse one MAC per inference: T = 1)."""
    from hardware import costs

    graph, t = bundle.integer_graph, bundle.timesteps
    spike_sets = {**({"float": float_spikes} if float_spikes is not None else {}),
                  **{_suffix(name): run.spikes for name, run in runs.items()}}
    ops = {key: costs.synaptic_operations(graph, spikes, inputs, t) for key, spikes in spike_sets.items()}
    nodes: dict[str, dict[str, Any]] = {n.name: {"synapses": 0} for n in graph.nodes}
    for op in next(iter(ops.values()), []):  # structural: the same in every run
        nodes[op.target]["synapses"] += op.synapses
    for key, edge_ops in ops.items():
        for name, sums in costs.per_node(graph, edge_ops).items():
            nodes[name][key] = sums
    total_synapses = sum(row["synapses"] for row in nodes.values())
    ann_pj = costs.energy_pj(0.0, float(total_synapses))
    totals: dict[str, Any] = {
        "basis": costs.ESTIMATE_BASIS,
        "energy_source": costs.ENERGY_SOURCE,
        "pj_per_ac": costs.PJ_PER_AC,
        "pj_per_mac": costs.PJ_PER_MAC,
        "fan_out": "structural: every connection counts, zero weights included; padding is no connection",
        "input": ("direct: MACs, every synapse every step" if bundle.input.encoding == DIRECT else
                  "event frames: ACs, a value n counting as n events"),
        "synapses": total_synapses,
        "ann": {"mac": total_synapses, "energy_pj": ann_pj},
    }
    for key, edge_ops in ops.items():
        acs = sum(op.operations for op in edge_ops if op.kind == costs.AC)
        macs = sum(op.operations for op in edge_ops if op.kind == costs.MAC)
        energy = costs.energy_pj(acs, macs)
        totals[key] = {"ac": acs, "mac": macs, "synops": acs + macs, "energy_pj": energy,
                       "energy_vs_ann": energy / ann_pj}
    return nodes, totals


@dataclass(frozen=True)
class FloatModels:
    """The float side of a report: the accuracies of the source model, the folded graph and the
    folded graph with the quantized decays, the source model's predictions and spikes (B, T, N)."""

    accuracy: dict[str, float]
    predictions: np.ndarray
    spikes: dict[str, np.ndarray]


def _float_models(bundle: Bundle, model: Any, test: EncodedSplit) -> FloatModels:
    import torch

    from export.fold import run_float
    from export.quantize import quantized_betas
    from training.loop import predict

    t = bundle.timesteps
    analog = torch.as_tensor(test.analog, dtype=torch.float64)
    float_run = predict(model, test.analog, record=True)
    folded_logits, _ = run_float(bundle.float_graph, analog, t)
    qbeta_logits, _ = run_float(bundle.float_graph, analog, t,
                                betas=quantized_betas(bundle.integer_graph, bundle.profile))
    return FloatModels(
        accuracy={"float": _accuracy(float_run.logits.numpy(), test.labels),
                  "folded_float": _accuracy(folded_logits.numpy(), test.labels),
                  "float_quantized_beta": _accuracy(qbeta_logits.numpy(), test.labels)},
        predictions=float_run.logits.numpy().argmax(axis=1),
        spikes={k: v.numpy().astype(bool).transpose(1, 0, 2) for k, v in float_run.spikes.items()})


def build_report(bundle: Bundle, model: Any, bundle_dir: Path, test: EncodedSplit, backends: tuple[str, ...],
                 progress: Callable[[int, str], Any] | None = None, explain: bool = False,
                 float_missing: str | None = None) -> dict[str, Any]:
    """``model``: the bundle's source model (see :func:`load_for_report`), or None: the float
    models are not run (``float_missing`` says why) and only numpy is needed; ``backends``:
    fixed-point backends to run ("reference", "lava"); empty for float only. ``progress(total,
    name)``, if given, makes a progress bar (``update(n)``, ``close()``) for a backend's run.
    ``explain``: add the ``explain`` block, where each layer's disagreement comes from
    (:mod:`lsg_deploy.explain`)."""
    t = bundle.timesteps
    floats = _float_models(bundle, model, test) if model is not None else None
    float_pred, float_spikes = (floats.predictions, floats.spikes) if floats else (None, None)
    report: dict[str, Any] = {
        "bundle": str(bundle_dir),
        "target": bundle.target,
        "profile": bundle.profile.name,
        "input_encoding": bundle.input.encoding,
        "artifacts": bundle.artifacts,
        "samples": int(len(test.labels)),
        "timesteps": t,
        "accuracy": dict(floats.accuracy) if floats else {},
        **({} if floats else {"float_missing": float_missing or "the float models were not asked for"}),
        "export_clipped": {name: rng.get("clipped", {}) for name, rng in bundle.quantization.get("layers", {}).items()
                           if isinstance(rng, dict)},
        "scales": _scales(bundle.quantization),
        "backends": {},
        "layers": [],
    }
    runs: dict[str, IntegerRun] = {}
    for backend in backends:
        setup = _warm_up(backend)
        runs[backend], seconds = _run_fixed(backend, bundle, bundle_dir, test.pixels, progress)
        report["accuracy"]["fixed_point" if backend == REFERENCE else backend] = _accuracy(
            runs[backend].final_readout, test.labels)
        report["backends"][backend] = {
            "seconds": seconds,
            "setup_seconds": setup,  #: before the timed run (compiling or loading kernels)
            "seconds_per_sample": seconds / len(test.labels),
            "samples_per_second": len(test.labels) / seconds if seconds > 0 else None,
        }
        if floats:
            report["backends"][backend]["prediction_agreement_with_float"] = float(
                (runs[backend].predictions() == float_pred).mean())
        report["backends"][backend].update(runs[backend].stats)  # e.g. the RTL's cycles per timestep
    others = [name for name in runs if name != REFERENCE]
    if REFERENCE in runs and others:
        mismatches = {name: exact_agreement(runs[REFERENCE], runs[name]) for name in others}
        # one backend besides the reference (today: lava) keeps the report's flat shape
        report["exact"] = {"pair": " == ".join([REFERENCE, *others]),
                           "mismatches": mismatches[others[0]] if len(others) == 1 else mismatches,
                           "equal": not any(v for counts in mismatches.values() for v in counts.values())}
    classes = bundle.integer_graph.readout.neurons
    report["per_class"] = {
        "samples": {str(c): int(np.count_nonzero(test.labels == c)) for c in range(classes)},
        **({"float": per_class_accuracy(float_pred, test.labels, classes)} if floats else {}),
        **{"fixed_point" if name == REFERENCE else name: per_class_accuracy(run.predictions(), test.labels, classes)
           for name, run in runs.items()},
    }
    synops, report["costs"] = synaptic_costs(bundle, float_spikes, runs, test.pixels)
    report["resources"] = resources(bundle)  # what the network needs on its target (hardware.resources)
    for layer in bundle.integer_graph.nodes:
        row: dict[str, Any] = {"name": layer.name, "neurons": layer.neurons, "readout": layer.readout,
                               "inputs": [e.source for e in bundle.integer_graph.incoming(layer.name)],
                               "synops": synops[layer.name]}
        if floats and not layer.readout:
            row["firing_rate_float"] = float(float_spikes[layer.name].mean())
        for backend, run in runs.items():
            if backend == REFERENCE:
                row["saturation"] = run.saturation[layer.name]
            if not layer.readout:
                suffix = _suffix(backend)
                row[f"firing_rate_{suffix}"] = float(run.spikes[layer.name].mean())
                if floats:
                    row[f"spike_agreement_{suffix}"] = float(
                        (run.spikes[layer.name] == float_spikes[layer.name]).mean())
        if REFERENCE in runs:
            for name in others:
                row[f"{name}_reference_mismatches"] = mismatches[name][layer.name]
        report["layers"].append(row)
    if explain:
        from lsg_deploy.explain import explain as explain_block

        report["explain"] = explain_block(bundle, test, float_spikes, progress)
    return report
