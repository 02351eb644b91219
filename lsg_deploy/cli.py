"""``lsg-deploy``: train -> export -> simulate. Each subcommand is one library call."""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from lsg_deploy.errors import UsageError


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line and exit 2, like every other bad input
        print(f"lsg-deploy: error: {message}", file=sys.stderr)
        raise SystemExit(2)


def build_parser() -> argparse.ArgumentParser:
    common = _Parser(add_help=False)
    common.add_argument("--quiet", action="store_true", help="no progress bars or report on stdout")
    parser = _Parser(prog="lsg-deploy", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    tr = sub.add_parser("train", parents=[common], help="train an LSG spiking network on the embedded digits")
    tr.add_argument("--out", type=Path, required=True, help="run directory (model.pt, metrics.csv)")
    tr.add_argument("--config", type=Path, help="TOML file with a [train] table")
    tr.add_argument("--mode", choices=("lsg", "trainable-decay", "fixed"))
    tr.add_argument("--alpha", type=float, help="surrogate width for fixed / trainable-decay")
    tr.add_argument("--timesteps", type=int)
    tr.add_argument("--epochs", type=int)
    tr.add_argument("--batch-size", type=int)
    tr.add_argument("--lr", type=float)
    tr.add_argument("--seed", type=int)
    tr.add_argument("--loss", choices=("ce", "tet"))

    ex = sub.add_parser("export", parents=[common], help="fold, quantize and write a deployment bundle")
    ex.add_argument("model", type=Path, help="model.pt from lsg-deploy train")
    ex.add_argument("--target", required=True, help="loihi")
    ex.add_argument("--out", type=Path, required=True, help="bundle directory")
    ex.add_argument("--clip", action="store_true",
                    help="clip values outside the target's integer ranges (counted, with a warning) "
                         "instead of failing")
    ex.add_argument("--weight-percentile", type=float, default=100.0,
                    help="percentile of |W| mapped to the largest integer weight (default 100)")

    si = sub.add_parser("simulate", parents=[common], help="compare float and fixed-point runs of a bundle")
    si.add_argument("bundle", type=Path)
    si.add_argument("--fixed-point", action="store_true", help="run the integer network too")
    si.add_argument("--backend", choices=("reference", "lava", "all"), default="reference",
                    help="fixed-point backend: the numpy integer reference (default), Lava's bit-accurate "
                         "CPU backend, or all of them compared bit for bit")
    si.add_argument("--json", type=Path, help="also write the report as JSON")
    si.add_argument("--limit", type=int, help="use only the first N test samples")
    return parser


def _write_json(path: Path, doc: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(fd, "w") as fh:
        json.dump(doc, fh, indent=2)
        fh.write("\n")
    os.replace(tmp, path)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from lsg_deploy import pipeline

    say = (lambda *a: None) if args.quiet else print
    try:
        if args.command == "train":
            overrides = {k: getattr(args, k) for k in ("mode", "alpha", "timesteps", "epochs", "batch_size",
                                                       "lr", "seed", "loss")}
            result = pipeline.train(overrides, args.config, args.out, quiet=args.quiet)
            m = result["metrics"]
            say(f"wrote {result['checkpoint']}: test accuracy {m['test_accuracy'] * 100:.2f}% after "
                f"{m['epoch']} epochs ({result['seconds']:.1f} s)")
        elif args.command == "export":
            result = pipeline.export(args.model, args.target, args.out, clip=args.clip,
                                     weight_percentile=args.weight_percentile)
            say(f"wrote bundle {result['bundle']} ({len(result['layers'])} layers"
                f"{', ' + str(len(result['warnings'])) + ' warnings' if result['warnings'] else ''})")
        elif args.command == "simulate":
            from lsg_deploy.report import format_report

            report = pipeline.simulate(args.bundle, args.fixed_point, args.limit, backend=args.backend)
            if args.json:
                _write_json(args.json, report)
            say(format_report(report))
            if not report.get("exact", {}).get("equal", True):
                print(f"lsg-deploy: {report['exact']['pair']} do not agree bit for bit: "
                      f"{report['exact']['mismatches']}", file=sys.stderr)
                return 1
    except UsageError as exc:
        print(f"lsg-deploy: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
