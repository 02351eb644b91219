"""The simulate report as text (:func:`format_report`), read from its typed model
(:mod:`lsg_deploy.report.model`, filled by :mod:`lsg_deploy.simulate`)."""

from __future__ import annotations

from lsg_deploy.explain import Explanation
from lsg_deploy.report.model import (
    CALIBRATED,
    FINE_TUNED,
    FLOAT,
    REFERENCE,
    BackendRun,
    CalibratedLayer,
    PerClass,
    Report,
    Scales,
    per_layer,
)

CLASSES_PER_ROW = 10  #: per-class accuracy table: classes per block of lines


def _energy(pj: float) -> str:
    for unit, scale in (("uJ", 1e6), ("nJ", 1e3)):
        if pj >= scale:
            return f"{pj / scale:.3g} {unit}"
    return f"{pj:.3g} pJ"


def _cost_lines(report: Report, shown: str, verbose: bool) -> list[str]:
    """Per-layer ACs and MACs of the float run and the ``shown`` backend's, totals, and the
    energy; its basis and source in full with ``verbose``, else one line."""
    costs = report.costs
    runs = [key for key in (FLOAT, shown) if key in costs.runs]
    head = "".join(f" {'ACs ' + key:>15} {'MACs ' + key:>15}" for key in runs)
    lines = ["synaptic operations per inference (ACs: accumulates driven by events; MACs: multiply-accumulates "
             "on the analog input):", f"  {'layer':<12} {'synapses':>12}{head}"]
    for row in report.layers:
        ops = row.synops
        lines.append(f"  {row.name:<12} {ops.synapses:>12,}"
                     + "".join(f" {ops.runs[key].ac:>15,.0f} {ops.runs[key].mac:>15,.0f}" for key in runs))
    lines.append(f"  {'total':<12} {costs.synapses:>12,}"
                 + "".join(f" {costs.runs[key].ac:>15,.0f} {costs.runs[key].mac:>15,.0f}" for key in runs))
    snn = ", ".join(f"SNN {key} {_energy(costs.runs[key].energy_pj)} "
                    f"({costs.runs[key].energy_vs_ann:.3f} x the ANN's)" for key in runs)
    lines.append(f"energy per inference: {snn}; the same network as an ANN (every synapse one MAC, once) "
                 f"{_energy(costs.ann_energy_pj)}")
    per_op = f"  per operation: AC {costs.pj_per_ac} pJ, MAC {costs.pj_per_mac} pJ"
    if verbose:
        lines += [f"  {costs.basis}", f"{per_op} ({costs.energy_source})"]
    else:
        lines.append(f"{per_op}: an estimate, not a measurement of Loihi or an FPGA (--verbose: its basis and source)")
    return lines


def _per_class_lines(per_class: PerClass) -> list[str]:
    """Per-class accuracy of every model, ten classes per block; '-' for a class without samples."""
    counts = per_class.samples
    classes = list(counts)
    lines = ["per-class accuracy (%):"]
    for start in range(0, len(classes), CLASSES_PER_ROW):
        chunk = classes[start:start + CLASSES_PER_ROW]
        lines.append(f"  {'class':<12}" + "".join(f" {c:>6}" for c in chunk))
        lines.append(f"  {'samples':<12}" + "".join(f" {counts[c]:>6}" for c in chunk))
        for model, values in per_class.accuracy.items():
            lines.append(f"  {model:<12}" + "".join(
                f" {'-':>6}" if values[c] is None else f" {values[c] * 100:6.1f}" for c in chunk))
    return lines


def _explain_lines(explain: Explanation) -> list[str]:
    """The ``explain`` block (:mod:`lsg_deploy.explain`): per layer the spike agreement with the
    float network of the integer reference, of the layer alone on float inputs ("own"), and of
    the float network with one ingredient quantized; the accuracies; one verdict line per layer."""
    agreement = {name: run.agreement for name, run in explain.ran.items()}
    accuracy = {name: run.accuracy for name, run in explain.ran.items()}
    agreement["all"], accuracy["all"] = explain.every.agreement, explain.every.accuracy
    lines = ["explain: spike agreement with the float network per layer: the integer network (reference), the layer "
             "alone on the float network's spikes (own), the float network with one ingredient quantized (decay, "
             "weights, biases, thresholds) and with all of them (all)",
             f"  {'layer':<12} {REFERENCE:>9} {'own':>8} {'inherited':>9}" + "".join(f" {c:>8}" for c in agreement)]
    for row in explain.layers:
        share = row.inherited_share
        lines.append(f"  {row.name:<12} {row.agreement_reference * 100:8.3f}% {row.agreement_own * 100:7.3f}% "
                     f"{'-' if share is None else f'{share * 100:.0f}%':>9}"
                     + "".join(f" {a[row.name] * 100:7.3f}%" for a in agreement.values()))
    lines.append(f"  {'accuracy':<12} {explain.accuracy_reference * 100:8.2f}% "
                 f"{explain.accuracy_readout_own * 100:7.2f}% {'':>9}"
                 + "".join(f" {a * 100:7.2f}%" for a in accuracy.values())
                 + f"   (float {explain.accuracy_float * 100:.2f}%; own: the readout alone on float spikes)")
    for row in explain.layers:
        loss, share = 1.0 - row.agreement_reference, row.inherited_share
        if loss == 0.0:
            lines.append(f"  {row.name}: agrees with the float network exactly")
            continue
        origin = (f"{share * 100:.0f}% inherited from its inputs, {(1 - share) * 100:.0f}% its own" if share >= 0
                  else "its own; its inputs' errors partly cancel it")
        cause = (f"alone, the {row.dominant} cost most ({row.dominant_loss * 100:.3g}% of its spikes)"
                 if row.dominant else "no ingredient alone changes a spike")
        lines.append(f"  {row.name}: {loss * 100:.3g}% of spikes differ, {origin}; {cause}")
    for name, entry in explain.ingredients.items():
        if name not in explain.ran:
            lines.append(f"  {name}: skipped, {entry.why} (largest relative difference "
                         f"{entry.largest_relative_difference:.1e})")
    lines.append(f"  check: with every ingredient dequantized the float network equals the integer reference on "
                 f"{explain.every.agreement_with_reference_overall * 100:.3f}% of spikes and "
                 f"{explain.every.prediction_agreement_with_reference * 100:.2f}% of predictions (the rest: integer "
                 f"state rounding and overflow)")
    return lines


def _calibrated_line(name: str, layer: CalibratedLayer) -> str:
    """A calibrated layer's choice: the percentile, its scale against the weight range's, the
    weights it clips and the own agreement it bought."""
    chosen, full = layer.choice, layer.weight_range
    ratio = f"{chosen.scale / full.scale:.2f}x" if full else "-"
    before = f"{full.own_agreement * 100:.2f}%" if full else "-"
    return (f"  {name:<12} {'p' + format(layer.chosen, 'g'):>8} {ratio:>8} {chosen.clipped_weights:>8}  "
            f"{before} -> {chosen.own_agreement * 100:.2f}%")


def _scale_lines(scales: Scales) -> list[str]:
    """How the scales were chosen; for a calibrated export, each layer's choice and what it bought."""
    if scales.rule == FINE_TUNED:
        return ["scales: pinned by quantization-aware fine-tuning (lsg-deploy finetune)"]
    if scales.rule != CALIBRATED:
        percentile = scales.weight_percentile
        return ["scales from the weight ranges" + (f", percentile {percentile:g}" if percentile is not None else "")]
    return [f"scales: calibrated on {scales.samples} training samples (own agreement: the integer layer alone "
            f"on the float network's spikes, vs the float layer)",
            f"  {'layer':<12} {'chosen':>8} {'scale':>8} {'clipped':>8}  own agreement: weight range -> chosen",
            *(_calibrated_line(name, layer) for name, layer in scales.layers.items())]


def _rate(per_second: float) -> str:
    """A speed as measured: whole numbers from 100 up, three significant digits below (the RTL's)."""
    return f"{per_second:,.0f}" if per_second >= 100 else f"{per_second:.3g}"


def accuracy_line(report: Report) -> str:
    """The report in one line: each model's test accuracy (``simulate --quiet``)."""
    return f"accuracy on {report.header.samples} test samples: " + ", ".join(
        f"{name} {value * 100:.2f}%" for name, value in report.accuracy.items())


#: what the accuracy rows are, in one line
ACCURACY_LEGEND = (" (folded_float: tdBN in the weights; float_quantized_beta: the target's decays; reference: "
                   "the integer reference)")


def _backend_line(run: BackendRun) -> str:
    """A backend's speed, set-up, agreement with the float predictions and clock cycles."""
    rate, setup, cycles = run.samples_per_second, run.setup_seconds, run.cycles_per_timestep
    return (f"{run.name}: {run.seconds_per_sample * 1e3:.3f} ms/sample"
            f"{f' ({_rate(rate)} samples/s)' if rate else ''}"
            f"{f' after {setup:.1f} s of set-up' if setup >= 0.05 else ''}"
            + (f", predictions equal to float on {run.prediction_agreement_with_float * 100:.2f}%"
               if run.prediction_agreement_with_float is not None else "")
            + (f", {cycles:,.0f} clock cycles per timestep" if cycles is not None else ""))


def _layer_lines(report: Report, shown: str) -> list[str]:
    """Per layer: neurons, the float and the ``shown`` backend's firing rates, their spike
    agreement, the reference's saturation counts; the scales (in the heading when one line)."""
    def pct(value: float | None, width: int = 10) -> str:
        return f"{'-':>{width}}" if value is None else f"{value * 100:{width - 1}.2f}%"

    scales = _scale_lines(report.scales)
    heading = f"layers ({scales.pop(0)})" if len(scales) == 1 else "layers"  # one line of scales fits the heading
    lines = [f"{heading}:", f"  {'layer':<12} {'neurons':>7} {'rate float':>10} {'rate ' + shown:>14} "
                            f"{'agreement':>10}  saturation"]
    for row in report.layers:
        sat = row.saturation
        sat_text = "-" if sat is None else ", ".join(f"{k} {v}" for k, v in sat.items() if v) or "none"
        lines.append(f"  {row.name:<12} {row.neurons:>7} {pct(row.firing_rate.get(FLOAT))} "
                     f"{pct(row.firing_rate.get(shown), 14)} {pct(row.spike_agreement.get(shown))}  {sat_text}")
    return lines + scales


def format_report(report: Report, verbose: bool = False) -> str:
    """The report as text, about 40 lines for the digits network; ``verbose`` adds the sources of
    the energy and resource figures (the JSON holds them always)."""
    h = report.header
    lines = [f"bundle {h.bundle} (target {h.target}, profile {h.profile}): {h.samples} test samples, "
             f"{h.timesteps} timesteps, {h.input_encoding} input"]
    lines += [f"artifact {name} not exported: {why}" for name, why in h.skipped.items()]
    accuracy = report.accuracy
    lines.append(f"accuracy{ACCURACY_LEGEND if len(accuracy) > 1 else ''}:")
    lines += [f"  {name:<22} {value * 100:6.2f}%" for name, value in accuracy.items()]
    if report.float_missing is not None:
        lines.append(f"float models not run: {report.float_missing}")
    lines += [_backend_line(run) for run in report.backends]
    if report.exact is not None:
        exact = report.exact
        verdict = "bit-exact" if exact.equal else "MISMATCH"
        subset = f" on {exact.samples:,} of {h.samples:,} samples" if exact.samples not in (None, h.samples) else ""
        lines.append(f"{exact.pair}: {verdict}{subset} (mismatches per layer: {exact.in_words()})")
    names = report.backend_names
    shown = REFERENCE if REFERENCE in names else next(iter(names), REFERENCE)
    lines += _layer_lines(report, shown)
    clipped = {k: v for k, v in report.export_clipped.items() if any(v.values())}
    if clipped:
        lines.append("export clipped values (see bundle.json): " + "; ".join(
            f"{name} {per_layer(counts)}" for name, counts in clipped.items()))
    lines += _cost_lines(report, shown, verbose)
    if report.resources:
        from hardware.resources import format_resources

        shown_lines = format_resources(report.resources).splitlines()
        notes = [line for line in shown_lines if line.startswith("note: ")]
        if not verbose and notes:  # the figures' sources: one line here, every one with --verbose
            shown_lines = [line for line in shown_lines if not line.startswith("note: ")]
            shown_lines.append(f"({len(notes)} notes on the limits' sources and the model: --verbose)")
        lines += [shown_lines[0] + ":", *("  " + line for line in shown_lines[1:])]
    lines += _per_class_lines(report.per_class)
    if report.explain is not None:
        lines += _explain_lines(report.explain)
    return "\n".join(lines)
