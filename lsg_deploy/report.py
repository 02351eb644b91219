"""The simulate report: accuracies of every model variant, and per-layer agreement and health."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from hardware.bundle import Bundle
from lsg_deploy.data import EncodedSplit
from lsg_deploy.errors import UsageError


def _accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    return float((np.asarray(logits).argmax(axis=1) == labels).mean())


def build_report(bundle: Bundle, bundle_dir: Path, test: EncodedSplit, fixed_point: bool, quiet: bool
                 ) -> dict[str, Any]:
    import torch

    from export.fold import run_float
    from export.loihi import SOURCE_MODEL
    from export.quantize import quantized_betas
    from training.checkpoint import CheckpointError, load_checkpoint
    from training.loop import predict

    try:
        model, _ = load_checkpoint(bundle_dir / SOURCE_MODEL)
    except CheckpointError as exc:
        raise UsageError(f"{bundle_dir}: bundle's source model: {exc}") from None
    t = bundle.timesteps
    analog = torch.as_tensor(test.analog, dtype=torch.float64)
    float_run = predict(model, test.analog, record=True)
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
        "export_clipped": {name: rng["clipped"] for name, rng in bundle.quantization.get("layers", {}).items()},
        "layers": [],
    }
    float_spikes = {k: v.numpy().astype(bool).transpose(1, 0, 2) for k, v in float_run.spikes.items()}  # (B,T,N)
    fixed = None
    if fixed_point:
        from hardware import reference

        start = time.perf_counter()
        fixed = reference.run(bundle.loihi_layers, test.pixels, t)
        seconds = time.perf_counter() - start
        report["accuracy"]["fixed_point"] = _accuracy(fixed.final_readout, test.labels)
        report["fixed_point"] = {
            "backend": "reference",
            "seconds": seconds,
            "seconds_per_sample": seconds / len(test.labels),
            "float_fixed_prediction_agreement": float(
                (fixed.predictions() == float_run.logits.numpy().argmax(axis=1)).mean()
            ),
        }
    for layer in bundle.loihi_layers:
        row: dict[str, Any] = {"name": layer.name, "neurons": layer.geometry.neurons, "readout": layer.readout}
        if not layer.readout:
            row["firing_rate_float"] = float(float_spikes[layer.name].mean())
        if fixed is not None:
            row["saturation"] = fixed.saturation[layer.name]
            if not layer.readout:
                row["firing_rate_fixed"] = float(fixed.spikes[layer.name].mean())
                row["spike_agreement"] = float((fixed.spikes[layer.name] == float_spikes[layer.name]).mean())
        report["layers"].append(row)
    return report


def format_report(report: dict[str, Any]) -> str:
    acc = report["accuracy"]
    lines = [
        f"bundle {report['bundle']} (target {report['target']}): {report['samples']} test samples, "
        f"{report['timesteps']} timesteps",
        "accuracy:",
    ]
    lines += [f"  {name:<22} {value * 100:6.2f}%" for name, value in acc.items()]
    if "fixed_point" in report:
        fx = report["fixed_point"]
        lines.append(
            f"fixed point ({fx['backend']}): {fx['seconds_per_sample'] * 1e3:.3f} ms/sample, "
            f"predictions equal to float on {fx['float_fixed_prediction_agreement'] * 100:.2f}%"
        )
    header = f"  {'layer':<10} {'neurons':>7} {'rate float':>10} {'rate fixed':>10} {'agreement':>10}  saturation"
    lines += ["layers:", header]
    def pct(row: dict[str, Any], key: str) -> str:
        return f"{row[key] * 100:9.2f}%" if key in row else f"{'-':>10}"

    for row in report["layers"]:
        sat = row.get("saturation")
        sat_text = "-" if sat is None else ", ".join(f"{k} {v}" for k, v in sat.items() if v) or "none"
        lines.append(
            f"  {row['name']:<10} {row['neurons']:>7} {pct(row, 'firing_rate_float')} "
            f"{pct(row, 'firing_rate_fixed')} {pct(row, 'spike_agreement')}  {sat_text}"
        )
    clipped = {k: v for k, v in report.get("export_clipped", {}).items() if any(v.values())}
    if clipped:
        lines.append(f"export clipped values (see bundle.json): {clipped}")
    return "\n".join(lines)
