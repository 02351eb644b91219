"""The simulate report: accuracies of every model variant, per-layer agreement and health, and
bit-exact agreement between the fixed-point backends (integer reference, Lava)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from hardware.bundle import Bundle
from hardware.reference import IntegerRun
from lsg_deploy.data import DataError, DataSpec, EncodedSplit
from lsg_deploy.errors import UsageError

BACKENDS = ("reference", "lava", "all")


def _accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    return float((np.asarray(logits).argmax(axis=1) == labels).mean())


def _run_fixed(backend: str, bundle: Bundle, bundle_dir: Path, pixels: np.ndarray) -> tuple[IntegerRun, float]:
    start = time.perf_counter()
    if backend == "reference":
        from hardware import reference

        run = reference.run(bundle.loihi_layers, pixels, bundle.timesteps)
    else:
        from hardware.bundle import BundleError
        from hardware.lava_backend import LavaLimitError
        from hardware.lava_subprocess import LavaEnvironmentError, LavaRunError, run_lava_bundle

        try:
            run = run_lava_bundle(bundle_dir, pixels)
        except (LavaEnvironmentError, LavaLimitError, BundleError) as exc:
            raise UsageError(str(exc)) from None
        except LavaRunError as exc:
            raise UsageError(exc.summary, detail=exc.detail) from None
    return run, time.perf_counter() - start


def load_for_report(bundle_dir: Path) -> tuple[Bundle, Any, DataSpec]:
    """Read and verify a bundle and its source model, and check that they belong together:
    the copy is the exported checkpoint (SHA-256), and folding it again gives exactly the
    bundle's float layers, names, shapes, timesteps and input."""
    from export.fold import FoldError, fold
    from export.loihi import SOURCE_MODEL
    from hardware.bundle import BundleError, read_bundle
    from training.checkpoint import CheckpointError, load_checkpoint

    try:
        bundle = read_bundle(bundle_dir)
        source = bundle.source
        spec = DataSpec.from_dict(source.get("data"))
        recorded = source.get("checkpoint_sha256")
        if recorded != bundle.files.get(SOURCE_MODEL):
            raise BundleError(f"{bundle_dir / SOURCE_MODEL} is not the checkpoint the bundle was exported from")
        model, _ = load_checkpoint(bundle_dir / SOURCE_MODEL)
        folded = fold(model)
    except (BundleError, DataError) as exc:
        raise UsageError(f"{bundle_dir}: {exc}") from None
    except (CheckpointError, FoldError) as exc:
        raise UsageError(f"{bundle_dir}: bundle's source model: {exc}") from None
    mismatch = None
    if model.timesteps != bundle.timesteps:
        mismatch = f"timesteps {bundle.timesteps}, its source model {model.timesteps}"
    elif tuple(model.input_shape) != bundle.input_shape:
        mismatch = f"input shape {bundle.input_shape}, its source model {tuple(model.input_shape)}"
    elif [f.name for f in folded] != [f.name for f in bundle.float_layers]:
        mismatch = f"layers {[f.name for f in bundle.float_layers]}, its source model {[f.name for f in folded]}"
    else:
        for mine, theirs in zip(bundle.float_layers, folded, strict=True):
            same = mine.geometry == theirs.geometry and all(
                np.array_equal(getattr(mine, k), getattr(theirs, k)) for k in mine.ARRAYS)
            if not same or (mine.beta, mine.v_th, mine.readout) != (theirs.beta, theirs.v_th, theirs.readout):
                mismatch = f"a layer {mine.name} that differs from its source model's"
                break
    if mismatch:
        raise UsageError(f"{bundle_dir}: the bundle has {mismatch}; re-export it")
    return bundle, model, spec


def exact_agreement(a: IntegerRun, b: IntegerRun) -> dict[str, int]:
    """Mismatch counts per layer (spikes) and for the readout membranes, compared with ==."""
    counts = {name: int(np.count_nonzero(a.spikes[name] != b.spikes[name])) for name in a.spikes}
    counts["readout"] = int(np.count_nonzero(a.readout != b.readout))
    return counts


def build_report(bundle: Bundle, model: Any, bundle_dir: Path, test: EncodedSplit, backends: tuple[str, ...]
                 ) -> dict[str, Any]:
    """``model``: the bundle's source model (see :func:`load_for_report`); ``backends``:
    fixed-point backends to run ("reference", "lava"); empty for float only."""
    import torch

    from export.fold import run_float
    from export.quantize import quantized_betas
    from training.loop import predict

    t = bundle.timesteps
    analog = torch.as_tensor(test.analog, dtype=torch.float64)
    float_run = predict(model, test.analog, record=True)
    float_pred = float_run.logits.numpy().argmax(axis=1)
    folded_logits, _ = run_float(bundle.float_layers, analog, t)
    qbeta_logits, _ = run_float(bundle.float_layers, analog, t, betas=quantized_betas(bundle.loihi_layers))
    report: dict[str, Any] = {
        "bundle": str(bundle_dir),
        "target": bundle.target,
        "samples": int(len(test.labels)),
        "timesteps": t,
        "accuracy": {
            "float": _accuracy(float_run.logits.numpy(), test.labels),
            "folded_float": _accuracy(folded_logits.numpy(), test.labels),
            "float_quantized_beta": _accuracy(qbeta_logits.numpy(), test.labels),
        },
        "export_clipped": {name: rng.get("clipped", {}) for name, rng in bundle.quantization.get("layers", {}).items()
                           if isinstance(rng, dict)},
        "backends": {},
        "layers": [],
    }
    float_spikes = {k: v.numpy().astype(bool).transpose(1, 0, 2) for k, v in float_run.spikes.items()}  # (B,T,N)
    runs: dict[str, IntegerRun] = {}
    for backend in backends:
        runs[backend], seconds = _run_fixed(backend, bundle, bundle_dir, test.pixels)
        report["accuracy"]["fixed_point" if backend == "reference" else backend] = _accuracy(
            runs[backend].final_readout, test.labels)
        report["backends"][backend] = {
            "seconds": seconds,
            "seconds_per_sample": seconds / len(test.labels),
            "prediction_agreement_with_float": float((runs[backend].predictions() == float_pred).mean()),
        }
    if "reference" in runs and "lava" in runs:
        mismatches = exact_agreement(runs["reference"], runs["lava"])
        report["exact"] = {"pair": "reference == lava", "mismatches": mismatches,
                           "equal": not any(mismatches.values())}
    for layer in bundle.loihi_layers:
        row: dict[str, Any] = {"name": layer.name, "neurons": layer.geometry.neurons, "readout": layer.readout}
        if not layer.readout:
            row["firing_rate_float"] = float(float_spikes[layer.name].mean())
        for backend, run in runs.items():
            if backend == "reference":
                row["saturation"] = run.saturation[layer.name]
            if not layer.readout:
                suffix = "fixed" if backend == "reference" else backend
                row[f"firing_rate_{suffix}"] = float(run.spikes[layer.name].mean())
                row[f"spike_agreement_{suffix}"] = float((run.spikes[layer.name] == float_spikes[layer.name]).mean())
        if "exact" in report:
            row["lava_reference_mismatches"] = report["exact"]["mismatches"][layer.name]
        report["layers"].append(row)
    return report


def format_report(report: dict[str, Any]) -> str:
    lines = [
        f"bundle {report['bundle']} (target {report['target']}): {report['samples']} test samples, "
        f"{report['timesteps']} timesteps",
        "accuracy:",
    ]
    lines += [f"  {name:<22} {value * 100:6.2f}%" for name, value in report["accuracy"].items()]
    for backend, info in report["backends"].items():
        lines.append(
            f"{backend}: {info['seconds_per_sample'] * 1e3:.3f} ms/sample, predictions equal to float on "
            f"{info['prediction_agreement_with_float'] * 100:.2f}%"
        )
    if "exact" in report:
        exact = report["exact"]
        verdict = "bit-exact" if exact["equal"] else "MISMATCH"
        lines.append(f"{exact['pair']}: {verdict} (mismatches per layer: {exact['mismatches']})")
    suffix = "fixed" if "reference" in report["backends"] else next(iter(report["backends"]), "fixed")

    def pct(row: dict[str, Any], key: str) -> str:
        return f"{row[key] * 100:9.2f}%" if key in row else f"{'-':>10}"

    lines += ["layers:", f"  {'layer':<10} {'neurons':>7} {'rate float':>10} {'rate ' + suffix:>10} "
                         f"{'agreement':>10}  saturation"]
    for row in report["layers"]:
        sat = row.get("saturation")
        sat_text = "-" if sat is None else ", ".join(f"{k} {v}" for k, v in sat.items() if v) or "none"
        lines.append(
            f"  {row['name']:<10} {row['neurons']:>7} {pct(row, 'firing_rate_float')} "
            f"{pct(row, 'firing_rate_' + suffix)} {pct(row, 'spike_agreement_' + suffix)}  {sat_text}"
        )
    clipped = {k: v for k, v in report.get("export_clipped", {}).items() if any(v.values())}
    if clipped:
        lines.append(f"export clipped values (see bundle.json): {clipped}")
    return "\n".join(lines)
