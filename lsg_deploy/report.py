"""The simulate report as text and as one figure (the numbers come from :mod:`lsg_deploy.simulate`)."""

from __future__ import annotations

import io
from typing import Any

import numpy as np

CLASSES_PER_ROW = 10  #: per-class accuracy table: classes per block of lines


def _energy(pj: float) -> str:
    for unit, scale in (("uJ", 1e6), ("nJ", 1e3)):
        if pj >= scale:
            return f"{pj / scale:.3g} {unit}"
    return f"{pj:.3g} pJ"


def _cost_lines(report: dict[str, Any], suffix: str, verbose: bool) -> list[str]:
    """Per-layer ACs and MACs of the float run and the ``suffix`` run, totals, and the energy; its
    basis and source in full with ``verbose``, else one line."""
    costs = report["costs"]
    runs = [key for key in ("float", suffix) if key in costs]
    head = "".join(f" {'ACs ' + key:>14} {'MACs ' + key:>14}" for key in runs)
    lines = ["synaptic operations per inference (ACs: accumulates driven by events; MACs: multiply-accumulates "
             "on the analog input):", f"  {'layer':<12} {'synapses':>12}{head}"]
    for row in report["layers"]:
        ops = row["synops"]
        lines.append(f"  {row['name']:<12} {ops['synapses']:>12,}"
                     + "".join(f" {ops[key]['ac']:>14,.0f} {ops[key]['mac']:>14,.0f}" for key in runs))
    lines.append(f"  {'total':<12} {costs['synapses']:>12,}"
                 + "".join(f" {costs[key]['ac']:>14,.0f} {costs[key]['mac']:>14,.0f}" for key in runs))
    snn = ", ".join(f"SNN {key} {_energy(costs[key]['energy_pj'])} ({costs[key]['energy_vs_ann']:.3f} x the ANN's)"
                    for key in runs)
    lines.append(f"energy per inference: {snn}; the same network as an ANN (every synapse one MAC, once) "
                 f"{_energy(costs['ann']['energy_pj'])}")
    per_op = f"  per operation: AC {costs['pj_per_ac']} pJ, MAC {costs['pj_per_mac']} pJ"
    if verbose:
        lines += [f"  {costs['basis']}", f"{per_op} ({costs['energy_source']})"]
    else:
        lines.append(f"{per_op}: an estimate, not a measurement of Loihi or an FPGA (--verbose: its basis and source)")
    return lines


def _per_class_lines(per_class: dict[str, Any]) -> list[str]:
    """Per-class accuracy of every model, ten classes per block; '-' for a class without samples."""
    counts = per_class["samples"]
    models = [key for key in per_class if key != "samples"]
    classes = list(counts)
    lines = ["per-class accuracy (%):"]
    for start in range(0, len(classes), CLASSES_PER_ROW):
        chunk = classes[start:start + CLASSES_PER_ROW]
        lines.append(f"  {'class':<12}" + "".join(f" {c:>6}" for c in chunk))
        lines.append(f"  {'samples':<12}" + "".join(f" {counts[c]:>6}" for c in chunk))
        for model in models:
            values = per_class[model]
            lines.append(f"  {model:<12}" + "".join(
                f" {'-':>6}" if values[c] is None else f" {values[c] * 100:6.1f}" for c in chunk))
    return lines


def _explain_lines(explain: dict[str, Any]) -> list[str]:
    """The ``explain`` block (:mod:`lsg_deploy.explain`): per layer the spike agreement with the
    float network of the fixed-point network, of the layer alone on float inputs ("own"), and of
    the float network with one ingredient quantized; the accuracies; one verdict line per layer."""
    ingredients = {k: v for k, v in explain["ingredients"].items() if "skipped" not in v}
    columns = [*ingredients, "all"]
    runs = {**ingredients, "all": explain["all"]}
    lines = ["explain: spike agreement with the float network per layer: the fixed-point network (fixed), the layer "
             "alone on the float network's spikes (own), the float network with one ingredient quantized (decay, "
             "weights, biases, thresholds) and with all of them (all)",
             f"  {'layer':<12} {'fixed':>8} {'own':>8} {'inherited':>9}" + "".join(f" {c:>8}" for c in columns)]
    for row in explain["layers"]:
        share = row["inherited_share"]
        lines.append(f"  {row['name']:<12} {row['agreement_fixed'] * 100:7.3f}% {row['agreement_own'] * 100:7.3f}% "
                     f"{'-' if share is None else f'{share * 100:.0f}%':>9}"
                     + "".join(f" {runs[c]['agreement'][row['name']] * 100:7.3f}%" for c in columns))
    acc = explain["accuracy"]
    lines.append(f"  {'accuracy':<12} {acc['fixed'] * 100:7.2f}% {acc['readout_own'] * 100:7.2f}% {'':>9}"
                 + "".join(f" {runs[c]['accuracy'] * 100:7.2f}%" for c in columns)
                 + f"   (float {acc['float'] * 100:.2f}%; own: the readout alone on float spikes)")
    for row in explain["layers"]:
        loss, share = 1.0 - row["agreement_fixed"], row["inherited_share"]
        if loss == 0.0:
            lines.append(f"  {row['name']}: agrees with the float network exactly")
            continue
        origin = (f"{share * 100:.0f}% inherited from its inputs, {(1 - share) * 100:.0f}% its own" if share >= 0
                  else "its own; its inputs' errors partly cancel it")
        cause = (f"alone, the {row['dominant']} cost most ({row['dominant_loss'] * 100:.3g}% of its spikes)"
                 if row["dominant"] else "no ingredient alone changes a spike")
        lines.append(f"  {row['name']}: {loss * 100:.3g}% of spikes differ, {origin}; {cause}")
    for name, entry in explain["ingredients"].items():
        if "skipped" in entry:
            lines.append(f"  {name}: skipped, {entry['skipped']} (largest relative difference "
                         f"{entry['largest_relative_difference']:.1e})")
    every = explain["all"]
    lines.append(f"  check: with every ingredient dequantized the float network equals the fixed-point one on "
                 f"{every['agreement_with_fixed_overall'] * 100:.3f}% of spikes and "
                 f"{every['prediction_agreement_with_fixed'] * 100:.2f}% of predictions (the rest: integer state "
                 f"rounding and overflow)")
    return lines


def _scale_lines(scales: dict[str, Any] | None) -> list[str]:
    """How the scales were chosen; for a calibrated export, each layer's choice and what it bought."""
    if not scales:
        return []
    if scales["rule"] == "fine-tuned":
        return ["scales: pinned by quantization-aware fine-tuning (lsg-deploy finetune)"]
    if scales["rule"] != "calibrated":
        percentile = scales.get("weight_percentile")
        return ["scales from the weight ranges" + (f", percentile {percentile:g}" if percentile is not None else "")]
    lines = [f"scales: calibrated on {scales['samples']} training samples (own agreement: the integer layer alone "
             f"on the float network's spikes, vs the float layer)",
             f"  {'layer':<12} {'chosen':>8} {'scale':>8} {'clipped':>8}  own agreement: weight range -> chosen"]
    for name, layer in scales["layers"].items():
        chosen = next(c for c in layer["candidates"] if c["weight_percentile"] == layer["chosen"])
        full = next((c for c in layer["candidates"] if c["weight_percentile"] == 100.0), None)
        ratio = f"{chosen['scale'] / full['scale']:.2f}x" if full else "-"
        before = f"{full['own_agreement'] * 100:.2f}%" if full else "-"
        lines.append(f"  {name:<12} {'p' + format(layer['chosen'], 'g'):>8} {ratio:>8} {chosen['clipped_weights']:>8}  "
                     f"{before} -> {chosen['own_agreement'] * 100:.2f}%")
    return lines


def _rate(per_second: float) -> str:
    """A speed as measured: whole numbers from 100 up, three significant digits below (the RTL's)."""
    return f"{per_second:,.0f}" if per_second >= 100 else f"{per_second:.3g}"


def per_layer(counts: dict[str, Any]) -> str:
    """``{'conv1': 0, 'fc1': 2}`` as ``conv1 0, fc1 2``: a mapping in words, not a Python dict."""
    return ", ".join(f"{name} {value}" for name, value in counts.items())


def accuracy_line(report: dict[str, Any]) -> str:
    """The report in one line: each model's test accuracy (``simulate --quiet``)."""
    return f"accuracy on {report['samples']} test samples: " + ", ".join(
        f"{name} {value * 100:.2f}%" for name, value in report["accuracy"].items())


#: what the accuracy rows are, in one line
ACCURACY_LEGEND = (" (folded_float: tdBN in the weights; float_quantized_beta: the target's decays; fixed_point: "
                   "the integer network)")


def format_report(report: dict[str, Any], verbose: bool = False) -> str:
    """The report as text, about 40 lines for the digits network; ``verbose`` adds the sources of
    the energy and resource figures (the JSON holds them always)."""
    lines = [
        f"bundle {report['bundle']} (target {report['target']}, profile {report['profile']}): "
        f"{report['samples']} test samples, "
        f"{report['timesteps']} timesteps, {report['input_encoding']} input",
    ]
    skipped = {name: entry["skipped"] for name, entry in report.get("artifacts", {}).items() if "skipped" in entry}
    lines += [f"artifact {name} not exported: {why}" for name, why in skipped.items()]
    lines.append(f"accuracy{ACCURACY_LEGEND if len(report['accuracy']) > 1 else ''}:")
    lines += [f"  {name:<22} {value * 100:6.2f}%" for name, value in report["accuracy"].items()]
    if "float_missing" in report:
        lines.append(f"float models not run: {report['float_missing']}")
    for backend, info in report["backends"].items():
        rate = info.get("samples_per_second")
        setup = info.get("setup_seconds", 0.0)
        lines.append(
            f"{backend}: {info['seconds_per_sample'] * 1e3:.3f} ms/sample"
            f"{f' ({_rate(rate)} samples/s)' if rate else ''}"
            f"{f' after {setup:.1f} s of set-up' if setup >= 0.05 else ''}"
            + (f", predictions equal to float on {info['prediction_agreement_with_float'] * 100:.2f}%"
               if "prediction_agreement_with_float" in info else "")
            + (f", {info['cycles_per_timestep']:,.0f} clock cycles per timestep" if "cycles_per_timestep" in info
               else "")
        )
    if "exact" in report:
        exact = report["exact"]
        verdict = "bit-exact" if exact["equal"] else "MISMATCH"
        lines.append(f"{exact['pair']}: {verdict} (mismatches per layer: {per_layer(exact['mismatches'])})")
    suffix = "fixed" if "reference" in report["backends"] else next(iter(report["backends"]), "fixed")

    def pct(row: dict[str, Any], key: str) -> str:
        return f"{row[key] * 100:9.2f}%" if key in row else f"{'-':>10}"

    scales = _scale_lines(report.get("scales"))
    heading = f"layers ({scales.pop(0)})" if len(scales) == 1 else "layers"  # one line of scales fits the heading
    lines += [f"{heading}:", f"  {'layer':<12} {'neurons':>7} {'rate float':>10} {'rate ' + suffix:>10} "
                         f"{'agreement':>10}  saturation"]
    for row in report["layers"]:
        sat = row.get("saturation")
        sat_text = "-" if sat is None else ", ".join(f"{k} {v}" for k, v in sat.items() if v) or "none"
        lines.append(
            f"  {row['name']:<12} {row['neurons']:>7} {pct(row, 'firing_rate_float')} "
            f"{pct(row, 'firing_rate_' + suffix)} {pct(row, 'spike_agreement_' + suffix)}  {sat_text}"
        )
    lines += scales
    clipped = {k: v for k, v in report.get("export_clipped", {}).items() if any(v.values())}
    if clipped:
        lines.append("export clipped values (see bundle.json): " + "; ".join(
            f"{name} {per_layer(counts)}" for name, counts in clipped.items()))
    if "costs" in report:
        lines += _cost_lines(report, suffix, verbose)
    if report.get("resources"):
        from hardware.resources import format_resources

        shown = format_resources(report["resources"]).splitlines()
        notes = [line for line in shown if line.startswith("note: ")]
        if not verbose and notes:  # the figures' sources: one line here, every one with --verbose
            shown = [line for line in shown if not line.startswith("note: ")]
            shown.append(f"({len(notes)} notes on the limits' sources and the model: --verbose)")
        lines += [shown[0] + ":", *("  " + line for line in shown[1:])]
    if "per_class" in report:
        lines += _per_class_lines(report["per_class"])
    if "explain" in report:
        lines += _explain_lines(report["explain"])
    return "\n".join(lines)


#: one colour per implementation, the same in every panel and figure
IMPLEMENTATION_COLOURS = {"float": "tab:gray", "fixed": "tab:blue", "lava": "tab:orange", "rtl": "tab:green"}


def colour(implementation: str) -> str:
    return IMPLEMENTATION_COLOURS.get(implementation, "tab:purple")


#: the explain panel's runs: the fixed-point network, and the float network with one ingredient quantized
EXPLAIN_COLOURS = {"decay": "tab:brown", "weights": "tab:pink", "biases": "tab:olive", "thresholds": "tab:cyan",
                   "all": "tab:purple"}


def _explain_panel(ax, explain: dict[str, Any], names: list[str], x: np.ndarray) -> None:
    """``--explain`` in a picture: per layer, the share of spikes that differ from the float
    network's, for the fixed-point network (its own part hatched) and for the float network with
    one ingredient quantized at a time."""
    own = {row["name"]: 1 - row["agreement_own"] for row in explain["layers"]}
    fixed = {row["name"]: 1 - row["agreement_fixed"] for row in explain["layers"]}
    runs = {k: v["agreement"] for k, v in explain["ingredients"].items() if "skipped" not in v}
    runs["all"] = explain["all"]["agreement"]
    width = 0.8 / (len(runs) + 1)
    offsets = (np.arange(len(runs) + 1) - len(runs) / 2) * width
    ax.bar(x + offsets[0], [fixed[n] * 100 for n in names], width, color=colour("fixed"), label="fixed point")
    ax.bar(x + offsets[0], [own[n] * 100 for n in names], width, color="none", edgecolor="black", hatch="//",
           linewidth=0, label="fixed point: its own part")
    for offset, (name, agreement) in zip(offsets[1:], runs.items(), strict=True):
        ax.bar(x + offset, [(1 - agreement[n]) * 100 for n in names], width, color=EXPLAIN_COLOURS.get(name),
               label=f"only {name}" if name != "all" else "all, in float")
    ax.set(ylabel="spikes differing from float (%)", title="causes of disagreement (--explain)")
    ax.set_xlabel("layer", fontsize=8)
    ax.legend(fontsize=7)


def figure_png(report: dict[str, Any]) -> bytes:
    """One PNG figure of the report's hidden layers: spike agreement with the float run per
    fixed-point backend (left) and firing rates, float and fixed-point (right).

    Drawn on matplotlib's Agg canvas without pyplot (no global state, no backend switch) and
    saved without a tight bounding box or layout engine, which keeps it fast."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    rows = [row for row in report["layers"] if not row["readout"]]
    names = [row["name"] for row in rows]
    fixed = ["fixed" if b == "reference" else b for b in report["backends"]]
    runs = [*(["float"] if "float" in report["accuracy"] else []), *fixed]
    x = np.arange(len(rows))
    explain = report.get("explain")
    panels = 3 if explain else 2
    fig = Figure(figsize=(max(4.0 * panels, 0.3 * panels * len(rows) + 2 * panels), 4.2))
    FigureCanvasAgg(fig)
    agree_ax, rate_ax, *more = fig.subplots(1, panels)
    compared = fixed if "float" in runs else []  # agreement with the float run, where there is one
    width = 0.8 / max(1, len(compared))
    lowest = 1.0
    for i, key in enumerate(compared):
        values = np.array([row[f"spike_agreement_{key}"] for row in rows]) * 100
        lowest = min(lowest, float(values.min(initial=100)) / 100)
        bars = agree_ax.bar(x + (i - (len(compared) - 1) / 2) * width, values, width, label=key, color=colour(key))
        if len(rows) * len(compared) <= 8:  # room for the values on the bars
            agree_ax.bar_label(bars, fmt="%.2f", fontsize=7)
    if compared:
        bottom = max(0.0, lowest * 100 - 5)
        agree_ax.set_ylim(bottom, 100.5)
        if bottom > 0:
            agree_ax.set_xlabel(f"layer (the y axis starts at {bottom:.0f}%)", fontsize=8)
        else:
            agree_ax.set_xlabel("layer", fontsize=8)
        agree_ax.legend(fontsize=7, loc="lower right")
    else:
        agree_ax.set_axis_off()
        agree_ax.text(0.5, 0.5, "no fixed-point run\n(simulate --fixed-point)" if "float" in runs else
                      "no float run\n(torch not installed)", ha="center", va="center", transform=agree_ax.transAxes)
    agree_ax.set(ylabel="spikes equal to float (%)", title="spike agreement, fixed point vs float")
    width = 0.8 / len(runs)
    for i, key in enumerate(runs):
        values = [row[f"firing_rate_{key}"] * 100 for row in rows]
        rate_ax.bar(x + (i - (len(runs) - 1) / 2) * width, values, width, label=key, color=colour(key))
    rate_ax.set(ylabel="firing rate (% of neurons per step)", title="firing rate per layer")
    rate_ax.set_xlabel("layer", fontsize=8)
    rate_ax.legend(fontsize=7)
    rotate = len(rows) > 6
    if explain:
        _explain_panel(more[0], explain, names, x)
    for ax in ((agree_ax, rate_ax) if compared else (rate_ax,)) + tuple(more):
        ax.set_xticks(x, names, rotation=45 if rotate else 0, ha="right" if rotate else "center", fontsize=8)
    fig.suptitle(f"{report['bundle']}: {report['samples']} samples, {report['timesteps']} steps", fontsize=9)
    fig.subplots_adjust(left=0.2 / panels, right=0.98, top=0.86, bottom=0.28 if rotate else 0.12, wspace=0.3)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    return buffer.getvalue()
