"""The simulate report as text (the numbers come from :mod:`lsg_deploy.simulate`)."""

from __future__ import annotations

from typing import Any


def format_report(report: dict[str, Any]) -> str:
    lines = [
        f"bundle {report['bundle']} (target {report['target']}, profile {report['profile']}): "
        f"{report['samples']} test samples, "
        f"{report['timesteps']} timesteps, {report['input_encoding']} input",
    ]
    skipped = {name: entry["skipped"] for name, entry in report.get("artifacts", {}).items() if "skipped" in entry}
    lines += [f"artifact {name} not exported: {why}" for name, why in skipped.items()]
    lines.append("accuracy:")
    lines += [f"  {name:<22} {value * 100:6.2f}%" for name, value in report["accuracy"].items()]
    for backend, info in report["backends"].items():
        rate = info.get("samples_per_second")
        setup = info.get("setup_seconds", 0.0)
        lines.append(
            f"{backend}: {info['seconds_per_sample'] * 1e3:.3f} ms/sample"
            f"{f' ({rate:,.0f} samples/s)' if rate else ''}{f' after {setup:.1f} s of set-up' if setup >= 0.05 else ''}"
            f", predictions equal to float on {info['prediction_agreement_with_float'] * 100:.2f}%"
            + (f", {info['cycles_per_timestep']:,.0f} clock cycles per timestep" if "cycles_per_timestep" in info
               else "")
        )
    if "exact" in report:
        exact = report["exact"]
        verdict = "bit-exact" if exact["equal"] else "MISMATCH"
        lines.append(f"{exact['pair']}: {verdict} (mismatches per layer: {exact['mismatches']})")
    suffix = "fixed" if "reference" in report["backends"] else next(iter(report["backends"]), "fixed")

    def pct(row: dict[str, Any], key: str) -> str:
        return f"{row[key] * 100:9.2f}%" if key in row else f"{'-':>10}"

    lines += ["layers:", f"  {'layer':<12} {'neurons':>7} {'rate float':>10} {'rate ' + suffix:>10} "
                         f"{'agreement':>10}  saturation"]
    for row in report["layers"]:
        sat = row.get("saturation")
        sat_text = "-" if sat is None else ", ".join(f"{k} {v}" for k, v in sat.items() if v) or "none"
        lines.append(
            f"  {row['name']:<12} {row['neurons']:>7} {pct(row, 'firing_rate_float')} "
            f"{pct(row, 'firing_rate_' + suffix)} {pct(row, 'spike_agreement_' + suffix)}  {sat_text}"
        )
    clipped = {k: v for k, v in report.get("export_clipped", {}).items() if any(v.values())}
    if clipped:
        lines.append(f"export clipped values (see bundle.json): {clipped}")
    return "\n".join(lines)
