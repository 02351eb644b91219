"""What calibration and quantization-aware fine-tuning buy, per target profile, over training seeds.

    python bench/finetune_gain.py [--seeds 3] [--profiles loihi2-lava-0.10-fixed_pt fpga-mul4 fpga-shift]
                                  [--epochs 5] [--lr 3e-4] [--out runs/finetune-gain]

For each seed: ``lsg-deploy train`` (the default digits net, that seed), then per profile four
deployments of it, each ``export`` + ``simulate --fixed-point`` over the 360 test images:

* ``range``: the export's scales from the weight ranges (the default);
* ``calibrated``: ``export --calibrate`` (scales from activation statistics);
* ``finetuned``: ``finetune`` from the weight-range scales, then its export;
* ``calibrated+finetuned``: ``finetune --calibrate``, then its export.

It prints, per profile and deployment, the float and fixed-point test accuracies, their gap and
each hidden layer's float-vs-fixed spike agreement, as mean +- sample std over the seeds, and
writes ``finetune_gain.json`` in ``--out``. Every number comes from the reports of this run.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hardware.targets import TARGETS  # noqa: E402
from lsg_deploy.cli import main  # noqa: E402


def _run(argv: list[str]) -> None:
    with contextlib.redirect_stdout(io.StringIO()):
        code = main(argv)
    if code != 0:
        raise SystemExit(f"lsg-deploy {' '.join(argv)} exited {code}")


def _report(model: Path, target: str, profile: str, out: Path, flags: list[str]) -> dict:
    bundle, report = out / "bundle", out / "report.json"
    _run(["export", "--target", target, "--profile", profile, *flags, str(model), "--out", str(bundle), "--force",
          "--quiet"])
    _run(["simulate", "--fixed-point", str(bundle), "--json", str(report), "--quiet"])
    doc = json.loads(report.read_text())
    return {"float": doc["accuracy"]["float"], "fixed": doc["accuracy"]["reference"],
            "agreement": {layer["name"]: layer["spike_agreement_reference"] for layer in doc["layers"]
                          if not layer["readout"]}}


def _stat(values: list[float]) -> str:
    mean = statistics.fmean(values) * 100
    std = statistics.stdev(values) * 100 if len(values) > 1 else 0.0
    return f"{mean:6.2f} +- {std:4.2f}"


VARIANTS = ("range", "calibrated", "finetuned", "calibrated+finetuned")


def main_bench() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--profiles", nargs="+", default=["loihi2-lava-0.10-fixed_pt", "fpga-mul4", "fpga-shift"])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument("--out", type=Path, default=Path("runs/finetune-gain"))
    args = parser.parse_args()
    targets = {p: name for name, t in TARGETS.items() for p in t.profile_names}
    unknown = [p for p in args.profiles if p not in targets]
    if unknown:
        parser.error(f"unknown profile(s) {', '.join(unknown)}; choose among {', '.join(targets)}")
    start = time.perf_counter()
    results: dict[str, dict[str, list[dict]]] = {p: {v: [] for v in VARIANTS} for p in args.profiles}
    for seed in range(args.seeds):
        run = args.out / f"seed-{seed}"
        model = run / "train" / "model.pt"
        _run(["train", "--seed", str(seed), "--out", str(run / "train"), "--quiet"])
        for profile in args.profiles:
            where, target = run / profile, targets[profile]
            for variant in VARIANTS:
                flags = ["--calibrate"] if variant.startswith("calibrated") else []
                deployed = model
                if variant.endswith("finetuned"):
                    deployed = where / variant / "ft" / "model.pt"
                    _run(["finetune", str(model), "--target", target, "--profile", profile, *flags, "--out",
                          str(deployed.parent), "--epochs", str(args.epochs), "--lr", str(args.lr), "--seed",
                          str(seed), "--quiet"])
                    flags = []  # the fine-tuned checkpoint exports at its own scales
                row = _report(deployed, target, profile, where / variant, flags)
                results[profile][variant].append({"seed": seed, **row})
                print(f"seed {seed} {profile} {variant}: fixed {row['fixed'] * 100:.2f}%, "
                      f"float {row['float'] * 100:.2f}%", file=sys.stderr)
    elapsed = time.perf_counter() - start
    print(f"calibration and fine-tuning: digits-cnn (default training), seeds 0-{args.seeds - 1}, finetune "
          f"{args.epochs} epochs at lr {args.lr}, 360 test images; mean +- std over seeds ({elapsed:.0f} s)")
    for profile, variants in results.items():
        print(f"\n{profile}")
        print(f"  {'':22s}" + "".join(f"{v:>22s}" for v in VARIANTS))
        rows = {"float accuracy %": {v: [r["float"] for r in variants[v]] for v in VARIANTS},
                "fixed accuracy %": {v: [r["fixed"] for r in variants[v]] for v in VARIANTS},
                "float - fixed, points": {v: [r["float"] - r["fixed"] for r in variants[v]] for v in VARIANTS}}
        for layer in variants["range"][0]["agreement"]:
            rows[f"agreement {layer} %"] = {v: [r["agreement"][layer] for r in variants[v]] for v in VARIANTS}
        for label, values in rows.items():
            print(f"  {label:22s}" + "".join(f"{_stat(values[v]):>22s}" for v in VARIANTS))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "finetune_gain.json").write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()},
                                                             "seconds": elapsed, "results": results}, indent=2))


if __name__ == "__main__":
    main_bench()
