"""``lsg-deploy``: train -> export -> simulate. Each subcommand is one library call."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import weakref
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from export.targets import choices as export_choices
from hardware.targets import TARGETS, backends, profiles
from lsg_deploy.errors import UsageError
from lsg_deploy.fake_quant_backend import DESCRIPTION as FAKE_QUANT_DESCRIPTION
from lsg_deploy.fake_quant_backend import FAKE_QUANT
from lsg_deploy.simulate import ALL, CHECK, CHUNK
from lsg_io.files import defer_signal

#: train's flags that override config keys of the same name
TRAIN_FLAGS = ("dataset", "arch", "width", "mode", "alpha", "timesteps", "epochs", "batch_size", "lr", "lr_b_scale",
               "seed", "loss", "optimizer", "weight_decay", "data_dir", "verify_data", "cutout", "normalize", "device",
               "precision", "workers", "neuron_impl", "dvs_frames", "dvs_slice_ms")


DATA_DIR_HELP = "where a file dataset's files are now, if not where the model was trained on them"
#: export, finetune and simulate verify the files unless told so themselves (never from the checkpoint)
NO_VERIFY_HELP = "accept CIFAR files that do not match the published MD5 sums (a subset, another copy)"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line and exit 2, like every other bad input
        print(f"lsg-deploy: error: {message}", file=sys.stderr)
        raise SystemExit(2)


def _version() -> str:
    """The installed distribution's version (pyproject.toml's, for an editable install)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("lsg-deploy")
    except PackageNotFoundError:  # run from a checkout that was never installed
        return "(not installed)"


def _count(text: str) -> int:
    """An argument that counts things: an integer >= 0 (argparse reports anything else)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer >= 0, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be an integer >= 0, got {value}")
    return value


def _check_count(text: str) -> int | None:
    """``simulate --check``: an integer >= 1, or ``all`` (None: every sample)."""
    if text == "all":
        return None
    value = _count(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1 or all, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    common = _Parser(add_help=False)
    common.add_argument("--quiet", action="store_true",
                        help="no progress bars or report on stdout (simulate: only its accuracy line; nothing with "
                             "--json)")
    common.add_argument("--verbose", action="store_true",
                        help="after an error, print its details too; simulate: the sources of the energy and resource "
                             "figures")
    parser = _Parser(prog="lsg-deploy", description=__doc__)
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    from training.data import DATASETS, DVS_FRAMES
    from training.models import ARCHITECTURES

    # the settings train and ablate share: what to train on and how
    setting = _Parser(add_help=False)
    setting.add_argument("--config", type=Path, help="TOML file with a [train] table (recipes/ holds the paper's)")
    setting.add_argument("--dataset", choices=tuple(DATASETS), help="; ".join(
        f"{d.name}: {d.description}" for d in DATASETS.values()) + " (default: digits; cifar10, cifar100 and "
        "cifar10-dvs bring the paper's recipe as their defaults)")
    setting.add_argument("--arch", choices=tuple(ARCHITECTURES), help="network architecture (default: digits-cnn)")
    setting.add_argument("--width", type=float, help="multiplies the architecture's channel and hidden counts "
                         "(default 1; e.g. 0.0625 runs resnet19 on the digits in seconds)")
    setting.add_argument("--timesteps", type=int, help="simulation steps T per sample (default 4; CIFAR 2, "
                         "CIFAR10-DVS 10)")
    setting.add_argument("--epochs", type=int, help="training epochs (default 40; the paper's recipes 300)")
    setting.add_argument("--batch-size", type=int, help="samples per step (default 64; CIFAR 128)")
    setting.add_argument("--lr", type=float, help="learning rate, cosine-annealed (default 2e-3 with Adam; CIFAR "
                         "0.1 with SGD); at most 10")
    setting.add_argument("--lr-b-scale", type=float, help="the LIF decay parameters b train at lr times this "
                         "(default 1: one lr for all); larger lets beta, and LSG's width, move in a short run")
    setting.add_argument("--loss", choices=("ce", "tet"), help="ce: cross-entropy of the readout averaged over T "
                         "(default); tet: per-step cross-entropy plus 1e-3 MSE (Deng et al. 2022)")
    setting.add_argument("--optimizer", choices=("adam", "sgd"), help="default adam; sgd uses momentum (config key)")
    setting.add_argument("--weight-decay", type=float, help="L2 weight decay (default 1e-4; CIFAR 5e-4)")
    setting.add_argument("--data-dir", help="where the file datasets are (cifar10: DIR/cifar-10-batches-py, "
                         "cifar100: DIR/cifar-100-python, cifar10-dvs: DIR/CIFAR10DVS)")
    setting.add_argument("--download", action="store_true",
                         help="let torchvision / tonic download a missing file dataset into --data-dir "
                              "(needs internet)")
    setting.add_argument("--no-verify-data", dest="verify_data", action="store_false", default=None,
                         help="accept CIFAR files that do not match the published MD5 sums (a subset, another copy)")
    setting.add_argument("--cutout", type=int, help="CIFAR: Cutout square side in pixels (default 0: none)")
    setting.add_argument("--dvs-frames", choices=DVS_FRAMES,
                         help="CIFAR10-DVS: counts (default, TET's event counts resized to 48x48) or spikes (binary "
                              "frames from events binned onto 48x48 by their coordinates, which the integer targets "
                              "receive)")
    setting.add_argument("--dvs-slice-ms", type=float,
                         help="CIFAR10-DVS: frame by fixed time slices of this many ms from a recording's first event "
                              "(the paper's 'a slice every 5 ms'; T slices, later events left out) instead of T equal "
                              "bins of the whole recording (default 0: TET's equal bins)")
    setting.add_argument("--no-normalize", dest="normalize", action="store_false", default=None,
                         help="CIFAR: train on pixels / 255 without the per-channel normalisation, so that the network "
                              "deploys to the integer targets (its input is then the image's bytes)")
    setting.add_argument("--device", help="auto (default: CUDA where available), cpu, cuda or cuda:N")
    setting.add_argument("--precision", choices=("fp32", "bf16"), help="bf16: autocast (default fp32)")
    setting.add_argument("--workers", type=int, help="DataLoader worker processes for file datasets (default 0)")
    setting.add_argument("--neuron-impl", choices=("auto", "torch", "fused"),
                         help="how a LIF layer runs its T steps: the torch step function, or one fused kernel per "
                              "layer each way (Triton on CUDA, numba on the CPU); default auto: fused where its "
                              "kernel can run, else the step function")

    tr = sub.add_parser("train", parents=[common, setting], help="train an LSG spiking network")
    tr.add_argument("--out", type=Path, required=True,
                    help="run directory (model.pt, train_state.pt, metrics.csv, diagnostics, plots/, tensorboard/)")
    tr.add_argument("--mode", choices=("lsg", "trainable-decay", "fixed"),
                    help="lsg (default): each layer's decay beta is trained and the surrogate width follows it, "
                         "alpha = 2 v_th sqrt(1 + beta^2) (Lian et al. 2023); trainable-decay: beta trained, "
                         "alpha fixed (--alpha); fixed: both fixed (the paper's baselines)")
    tr.add_argument("--alpha", type=float, help="surrogate width for fixed / trainable-decay")
    tr.add_argument("--seed", type=int, help="initialisation and sample order, 0 to 2^32 - 1 (default 0)")
    tr.add_argument("--seeds", help="repeat the run per seed in --out/seed-<s> and report mean and std: a count "
                    "(5: seeds 0-4) or a list (0,1,2); unfinished seeds resume")
    tr.add_argument("--resume", action="store_true",
                    help="continue the run in --out from its last finished epoch (train_state.pt), with its own "
                         "config; only --data-dir, --no-verify-data, --device, --precision, --workers, --neuron-impl "
                         "may change")
    tr.add_argument("--force", action="store_true",
                    help="--out may hold an earlier run, which is replaced (its files, figures and event files "
                         "removed when the new run's first epoch is written), or files that are not a run's, which "
                         "are kept; never the current directory, the home directory or their parents. With --seeds: "
                         "finished seeds are still read back and unfinished ones resumed")

    ab = sub.add_parser("ablate", parents=[common, setting],
                        help="rerun the paper's Tables 1 and 2 (decay and width ablations) and fixed widths inside "
                             "LSG's range over paired seeds; compare every row with LSG")
    ab.add_argument("--out", type=Path, required=True, help="directory: one folder per row and seed, ablation.md")
    ab.add_argument("--seeds", default="6", help="a count (6: seeds 0-5, the default, the fewest with which a "
                    "difference from LSG can be significant) or a list (0,1,2)")
    ab.add_argument("--tables", default="1,2,reach",
                    help="which tables: 1 (the method's parts), 2 (fixed widths, fixed decay), reach (fixed widths "
                         "inside LSG's range, LSG from beta_0 0.5 and 0.8); default all three")
    ab.add_argument("--rows", help="only these rows of the tables, comma-separated (e.g. fixed-a1,lsg; the names "
                    "are in ablation.md and training/ablate.py)")
    ab.add_argument("--folds", type=int, help="K-fold cross-validation over all samples of an embedded dataset "
                    "(digits: all 1,797) per seed and row, instead of the one test split (K in [2, 20])")
    ab.add_argument("--force", action="store_true",
                    help="write beside files in --out that an ablation does not write (they are kept) and replace "
                         "seed directories that hold no run of their own; finished seeds are still read back and "
                         "unfinished ones resumed")

    ex = sub.add_parser("export", parents=[common], help="fold, quantize and write a deployment bundle "
                        "(or, --target onnx, the folded float network as ONNX)")
    ex.add_argument("model", type=Path, help="model.pt from lsg-deploy train")
    ex.add_argument("--target", required=True,
                    help="; ".join(f"{name}: {description}" for name, description in export_choices().items()))
    ex.add_argument("--out", type=Path, required=True,
                    help="output directory; it may hold an earlier export (a bundle or an ONNX export), which is "
                         "replaced atomically, but nothing else (see --force)")
    ex.add_argument("--data-dir", help=DATA_DIR_HELP)
    ex.add_argument("--no-verify-data", dest="verify_data", action="store_false", help=NO_VERIFY_HELP)
    ex.add_argument("--unrolled", action="store_true",
                    help="target onnx only: also write model.unrolled.onnx, all T steps from the input to the logits")
    ex.add_argument("--force", action="store_true",
                    help="replace whatever is at --out, except the checkpoint's own directory, the current "
                         "directory and their parents")
    ex.add_argument("--clip", action="store_true",
                    help="clip values outside the target's integer ranges (counted, with a warning) "
                         "instead of failing")
    ex.add_argument("--weight-percentile", type=float,
                    help="percentile of |W| mapped to the largest integer weight (default 100)")
    ex.add_argument("--calibrate", action="store_true",
                    help="choose each hidden layer's scale from activation statistics on training data: the weight "
                         "percentile (100 down to 90, weights beyond it clipped) whose integer layer, fed the float "
                         "network's spikes, agrees best with the float layer; the bundle and report show each choice")
    ex.add_argument("--testvectors", type=_count, metavar="N",
                    help="targets that write test vectors (fpga: testvectors/, the inputs as the hardware receives "
                         "them and what the integer reference computes for each): the first N samples of the "
                         "dataset's test split (default 20; 0: none)")
    ex.add_argument("--weights", choices=("spram", "rom"),
                    help="target fpga: where rtl/'s design keeps the weights: spram (default): the iCE40 UP5K's "
                         "SPRAM, written at boot through the register bus's load port (rtl/weight_load.mem; the "
                         "testbench loads it), since the UP5K's block RAM cannot hold them; rom: ROMs initialised "
                         "by the bitstream, for larger parts (ECP5, 7-series)")
    ex.add_argument("--lanes", type=_count, metavar="N",
                    help="target fpga: the most output channels a layer of rtl/'s design updates per cycle (default "
                         "1 with --weights spram, the build that fits the UP5K; 32 with rom); spram takes at most "
                         "the weights one 64-bit SPRAM row holds (8 at 8-bit weights, 16 at 4-bit)")
    ex.add_argument("--profile", choices=tuple(profiles()),
                    help="the target's integer arithmetic (default: the target's first): " + "; ".join(
                        f"{name} (target {t}{', default' if i == 0 else ''}): {profiles()[name].description}"
                        for t, target in TARGETS.items() for i, name in enumerate(target.profile_names)))

    quantized = tuple(TARGETS)
    fi = sub.add_parser("finetune", parents=[common],
                        help="fine-tune a checkpoint with a target's exact integer forward in the loop "
                             "(straight-through rounding, the surrogate at the integer threshold, decays on the "
                             "target's grid); its export is bit-exact with the network it trained")
    fi.add_argument("model", type=Path, help="model.pt from lsg-deploy train (or an earlier finetune)")
    fi.add_argument("--target", required=True, choices=quantized, help="the target whose integer network to train")
    fi.add_argument("--profile", choices=tuple(profiles()), help="the target's integer arithmetic (default: its first)")
    fi.add_argument("--out", type=Path, required=True,
                    help="directory for the fine-tuned model.pt (rewritten after every epoch)")
    fi.add_argument("--epochs", type=int, default=5, help="default 5")
    fi.add_argument("--lr", type=float, default=3e-4, help="Adam learning rate (default 3e-4)")
    fi.add_argument("--batch-size", type=int, default=64, help="default 64")
    fi.add_argument("--seed", type=int, default=0, help="sample order (default 0)")
    fi.add_argument("--weight-percentile", type=float,
                    help="the starting scales, as export's option (default 100); fine-tuning keeps them")
    fi.add_argument("--data-dir", help=DATA_DIR_HELP)
    fi.add_argument("--no-verify-data", dest="verify_data", action="store_false", help=NO_VERIFY_HELP)
    fi.add_argument("--clip", action="store_true", help="let the starting scales clip values, as export's option")
    fi.add_argument("--calibrate", action="store_true", help="the starting scales from activation statistics, as "
                    "export's option")
    fi.add_argument("--force", action="store_true",
                    help="replace a model.pt in --out that is not a fine-tuning of MODEL, and write beside other "
                         "files there (they are kept); never the current directory, the home directory or their "
                         "parents")

    si = sub.add_parser("simulate", parents=[common], help="compare float and fixed-point runs of a bundle")
    si.add_argument("bundle", type=Path, help="a bundle directory from lsg-deploy export (--target loihi or fpga)")
    si.add_argument("--fixed-point", action="store_true", help="run the integer network too")
    si.add_argument("--backend", choices=(*backends(), FAKE_QUANT, ALL),
                    help="fixed-point backend: " + "; ".join(f"{b.name}: {b.description}" for b in backends().values())
                         + f"; {FAKE_QUANT}: {FAKE_QUANT_DESCRIPTION}; {ALL}: every one (fake-quant only with "
                           f"--device), compared with the reference bit for bit (default: reference, or fake-quant "
                           f"with --device)")
    si.add_argument("--device", help=f"with --fixed-point: where --backend {FAKE_QUANT} runs: auto (CUDA where "
                    f"available), cpu, cuda or cuda:N; given without --backend it picks {FAKE_QUANT}")
    si.add_argument("--check", type=_check_count, default=CHECK, metavar="N|all",
                    help=f"the samples the reference reruns to check a {FAKE_QUANT} run with ==: every k-th, k = "
                         f"ceil(samples / N), so N spread over the set; all: every one (default {CHECK}: every sample "
                         f"of a test set up to {CHECK:,})")
    si.add_argument("--no-float", dest="float_models", action="store_false",
                    help="with --fixed-point: leave out the float models (their accuracies and the spike agreement), "
                         "e.g. for a large network over a whole test set")
    si.add_argument("--json", type=Path, help="also write the report as JSON, and beside it (the suffix .png) a "
                    "figure of the per-layer spike agreement and firing rates; '-': the JSON alone, on stdout")
    si.add_argument("--limit", type=int, help="use only the first N test samples")
    si.add_argument("--chunk", type=int, default=CHUNK, metavar="N",
                    help=f"run the float models and the backends N samples at a time, counting the report as "
                         f"they go, so memory does not grow with the test set (--dump and --explain hold "
                         f"their whole runs); the report is the same for any N (default: {CHUNK})")
    si.add_argument("--simulator", help="the HDL simulator of --backend rtl: verilator (the default) or icarus")
    si.add_argument("--dump", type=Path, metavar="DIR",
                    help="with --fixed-point: write every hidden layer's spikes per sample and step, the readout "
                         "membranes and the predictions of each backend to DIR/<backend>.npz (keys in docs/report.md); "
                         "DIR must be absent or empty (see --force)")
    si.add_argument("--force", action="store_true", help="replace a non-empty --dump DIR (whole, atomically)")
    si.add_argument("--data-dir", help=DATA_DIR_HELP)
    si.add_argument("--no-verify-data", dest="verify_data", action="store_false", help=NO_VERIFY_HELP)
    si.add_argument("--explain", action="store_true",
                    help="with --fixed-point: attribute each layer's disagreement to its causes (the float network "
                         "rerun with only the decays, weights, biases or thresholds quantized; each layer run alone "
                         "on the float network's spikes: its own error vs what it inherits)")
    return parser


def counted(n: int, noun: str) -> str:
    """``1 epoch``, ``2 epochs``: a count in words that agree with it."""
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _error(message: str, detail: str | None, verbose: bool) -> int:
    """Print one line (more only with ``--verbose``) and return exit code 2."""
    first, *rest = str(message).strip().splitlines() or [""]
    detail = "\n".join([*rest, detail or ""]).strip()
    hint = " (--verbose for details)" if detail and not verbose else ""
    print(f"lsg-deploy: error: {first}{hint}", file=sys.stderr)
    if verbose and detail:
        print(detail, file=sys.stderr)
    return 2


class Terminated(BaseException):
    """SIGTERM, raised like ``KeyboardInterrupt`` is for SIGINT: a ``BaseException``, so that only
    ``finally`` blocks and ``except BaseException`` clean-ups (staged directories, temporaries,
    child processes) run on the way out, and no ``except Exception`` takes it for bad input."""


#: the exit codes of a command ended by a signal: 128 + the signal's number, as a shell reports it
SIGNAL_EXIT = {KeyboardInterrupt: (128 + signal.SIGINT, "interrupted"),
               Terminated: (128 + signal.SIGTERM, "terminated")}


#: code whose exceptions Python prints ("Exception ignored in ...") and drops: a weakref's callback
#: run by the garbage collector, an object's ``__del__``
_FINALIZER_FILES = {weakref.__file__}
RETRY_S = 0.01  #: how soon a signal that arrived inside a finalizer is raised again


def _in_finalizer(frame) -> bool:
    return frame is not None and (frame.f_code.co_name == "__del__" or frame.f_code.co_filename in _FINALIZER_FILES)


@contextmanager
def _signals_raise() -> Iterator[None]:
    """SIGINT raises ``KeyboardInterrupt`` and SIGTERM :class:`Terminated` while the command runs;
    the previous handlers come back afterwards (``main`` runs in-process in tests). A signal that
    arrives while a finalizer runs (where Python would print the exception as "ignored" and go
    on) is raised RETRY_S later, in the code the finalizer interrupted; one still waiting when the
    command ends is raised then, so that no signal is lost (a command that ended within RETRY_S of
    it returned 0 as if never signalled). Only the main thread can set handlers; elsewhere the
    defaults stay."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    retries: list[threading.Timer] = []
    pending: list[int] = []  #: signals deferred out of a finalizer and not raised yet

    def raise_for(signum: int):
        pending.clear()
        raise KeyboardInterrupt() if signum == signal.SIGINT else Terminated()

    def stop(signum, frame):
        if defer_signal(signum):  # a temporary is being made: raised again inside its clean-up's try
            return
        if _in_finalizer(frame):  # again soon, from a thread: no SIGALRM, which callers may use
            pending.append(signum)
            retry = threading.Timer(RETRY_S, os.kill, (os.getpid(), signum))
            retry.daemon = True
            retries.append(retry)
            retry.start()
            return
        raise_for(signum)

    previous = {signum: signal.signal(signum, stop) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        try:
            for retry in retries:
                retry.cancel()
                retry.join()  # a retry that fired has sent its signal: ``stop`` raises it here
            if pending:
                raise_for(pending[0])
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; 0 on success, 2 on bad input (one line), 1 when backends disagree, and
    130 / 143 when SIGINT / SIGTERM ends it (one line; what it was writing is removed, its
    children are ended)."""
    try:
        with _signals_raise():
            return _main(argv)
    except (KeyboardInterrupt, Terminated) as stop:
        code, what = SIGNAL_EXIT[type(stop)]
        print(f"lsg-deploy: {what}", file=sys.stderr)
        return code


def _main(argv: Sequence[str] | None) -> int:
    args = build_parser().parse_args(argv)
    from lsg_deploy import deploy, pipeline
    from lsg_deploy.outputs import check_file_target
    from lsg_deploy.results import BundleExport
    from lsg_io import files

    say = (lambda *a: None) if args.quiet else print
    try:
        if args.command == "train":
            overrides = {k: getattr(args, k) for k in TRAIN_FLAGS}
            if args.seeds is not None:
                summary = pipeline.train_seeds(overrides, args.config, args.out, args.seeds, quiet=args.quiet,
                                               resume=args.resume, download=args.download, say=say,
                                               force=args.force)
                acc = summary["test_accuracy"]
                say(f"wrote {args.out}/summary.md: test accuracy {acc['mean'] * 100:.2f} +- {acc['std'] * 100:.2f}% "
                    f"over {counted(acc['n'], 'seed')}")
                return 0
            result = pipeline.train(overrides, args.config, args.out, quiet=args.quiet, resume=args.resume,
                                    download=args.download, force=args.force)
            m = result.metrics
            if result.main:
                say(f"wrote {result.checkpoint}: test accuracy {m['test_accuracy'] * 100:.2f}% after "
                    f"{counted(m['epoch'], 'epoch')} ({result.seconds:.1f} s on {result.device}"
                    f"{' x ' + str(result.world) + ' processes' if result.world > 1 else ''})")
        elif args.command == "ablate":
            overrides = {k: getattr(args, k, None) for k in TRAIN_FLAGS if k not in ("mode", "alpha", "seed")}
            result = pipeline.ablate(overrides, args.config, args.out, args.seeds, args.tables, quiet=args.quiet,
                                     download=args.download, say=say, force=args.force, rows=args.rows,
                                     folds=args.folds)
            say(result["markdown"])
            say(f"wrote {args.out}/ablation.md and ablation.png")
        elif args.command == "export":
            result = deploy.export(args.model, args.target, args.out, clip=args.clip,
                                     weight_percentile=args.weight_percentile, force=args.force,
                                     profile=args.profile, unrolled=args.unrolled, calibrate=args.calibrate,
                                     data_dir=args.data_dir, verify_data=args.verify_data,
                                     testvectors=args.testvectors, quiet=args.quiet, weights=args.weights,
                                     lanes=args.lanes)
            if isinstance(result, BundleExport):
                say(f"wrote bundle {result.bundle} (profile {result.profile}, {counted(len(result.layers), 'layer')}"
                    f"{', ' + counted(len(result.warnings), 'warning') if result.warnings else ''})")
            else:
                say(f"wrote ONNX model {result.model} ({result.lif_layers} LIF layers, {result.timesteps} "
                    f"steps){f'; unrolled: {result.unrolled}' if result.unrolled else ''}")
        elif args.command == "finetune":
            result = deploy.finetune(args.model, args.target, args.out, profile=args.profile, clip=args.clip,
                                       weight_percentile=args.weight_percentile, epochs=args.epochs, lr=args.lr,
                                       batch_size=args.batch_size, seed=args.seed, quiet=args.quiet, say=say,
                                       calibrate=args.calibrate, data_dir=args.data_dir,
                                       verify_data=args.verify_data, force=args.force)
            say(f"wrote {result.checkpoint}: {result.target} ({result.profile}) fixed point "
                f"{result.fixed_before * 100:.2f}% -> {result.fixed_after * 100:.2f}%, float "
                f"{result.float_before * 100:.2f}% -> {result.float_after * 100:.2f}% ({result.seconds:.0f} s); "
                f"export it with: lsg-deploy export --target {result.target} {result.checkpoint} --out DIR")
        elif args.command == "simulate":
            from lsg_deploy.report import accuracy_line, figure_png, format_report

            to_stdout = args.json is not None and str(args.json) == "-"  # the JSON is the output: no figure
            figure = args.json.with_suffix(".png") if args.json and not to_stdout else None
            if figure is not None:
                if figure == args.json:
                    raise UsageError(f"--json {args.json}: the figure is written beside it as {figure.name}; give "
                                     f"the report another suffix (e.g. .json)")
                check_file_target(args.json, "--json", not_inside=args.bundle)
                check_file_target(figure, "--json's figure", not_inside=args.bundle)
            backend = args.backend or (FAKE_QUANT if args.device is not None else "reference")
            report = pipeline.simulate(args.bundle, args.fixed_point, args.limit, backend=backend,
                                       quiet=args.quiet, explain=args.explain, data_dir=args.data_dir,
                                       verify_data=args.verify_data, dump=args.dump, force=args.force,
                                       simulator=args.simulator, chunk=args.chunk, device=args.device,
                                       check=args.check, float_models=args.float_models)
            if to_stdout:
                print(json.dumps(report.to_json(), indent=2))
            elif figure is not None:
                png = figure_png(report)  # drawn first: a figure that fails leaves neither file
                files.write_text(args.json, json.dumps(report.to_json(), indent=2) + "\n")
                files.write_bytes(figure, png)
            if not args.quiet and not to_stdout:
                print(format_report(report, verbose=args.verbose))
            elif args.quiet and args.json is None:  # --quiet alone still says the result, in one line
                print(accuracy_line(report))
            if report.exact is not None and not report.exact.equal:
                print(f"lsg-deploy: {report.exact.pair} do not agree bit for bit: {report.exact.in_words()}",
                      file=sys.stderr)
                return 1
    except UsageError as exc:
        return _error(str(exc), exc.detail, args.verbose)
    except OSError as exc:  # the environment's, not a bug: a path we cannot read or write, a full disk
        where = " -> ".join(str(f) for f in (exc.filename, exc.filename2) if f is not None)
        return _error(f"{where + ': ' if where else ''}{exc.strerror or exc}", None, args.verbose)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
