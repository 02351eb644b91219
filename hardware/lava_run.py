"""Command line of the Lava backend, run in the Lava interpreter (Python 3.10, ``make lava-env``).

Two ways in, one way out::

    python -m hardware.lava_run --bundle DIR --pixels in.npz --out result.npz
    python -m hardware.lava_run --job JOBDIR [--job JOBDIR ...]

``in.npz`` holds ``pixels`` (B, C, H, W) integers; the bundle gives the layers and ``T``. A job
directory (written by :func:`write_job`, used by :mod:`hardware.lava_subprocess`) holds
``job.json`` (``timesteps`` and the ``loihi`` layer records, in the bundle's JSON form) and
``arrays.npz`` (their arrays and ``pixels``); its result goes to ``JOBDIR/result.npz``.
Several jobs share one interpreter start. A result file holds ``spikes/<layer>`` (B, T, n)
bool, ``readout`` (B, T, classes) int64 and ``timing/<key>`` floats.

Exit codes: 0 done, 2 bad input (one line on stderr), 3 lava-nc not importable here.
This module imports lava only inside :func:`main`; its file helpers are numpy-only.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from hardware.bundle import BundleError, LoihiLayer, _layer_from_json, _layer_to_json, read_bundle
from hardware.reference import IntegerRun

JOB_JSON, JOB_ARRAYS, JOB_RESULT = "job.json", "arrays.npz", "result.npz"
EXIT_BAD_INPUT, EXIT_NO_LAVA = 2, 3


def write_job(directory: Path, layers: tuple[LoihiLayer, ...], pixels: np.ndarray, timesteps: int) -> None:
    """Write one Lava job (layers, encoded inputs, ``T``) into an existing directory."""
    directory = Path(directory)
    arrays = {"pixels": np.asarray(pixels)}
    metas = []
    for layer in layers:
        metas.append(_layer_to_json(layer))
        for name in LoihiLayer.ARRAYS:
            arrays[f"loihi/{layer.name}/{name}"] = np.asarray(getattr(layer, name))
    np.savez(directory / JOB_ARRAYS, **arrays)
    (directory / JOB_JSON).write_text(json.dumps({"timesteps": int(timesteps), "layers": metas}, default=int))


def read_job(directory: Path) -> tuple[tuple[LoihiLayer, ...], np.ndarray, int]:
    """Read a job written by :func:`write_job`; problems raise :class:`BundleError`."""
    directory = Path(directory)
    try:
        doc = json.loads((directory / JOB_JSON).read_text())
        with np.load(directory / JOB_ARRAYS, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
        layers = tuple(_layer_from_json(LoihiLayer, meta, arrays, "loihi") for meta in doc["layers"])
        return layers, arrays["pixels"], int(doc["timesteps"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise BundleError(f"{directory} is not a readable Lava job: {exc}") from None


def write_result(path: Path, run: IntegerRun, timing: dict[str, float]) -> None:
    arrays = {f"spikes/{name}": s for name, s in run.spikes.items()}
    arrays["readout"] = run.readout
    arrays.update({f"timing/{key}": np.float64(value) for key, value in timing.items()})
    np.savez(path, **arrays)


def read_result(path: Path) -> tuple[IntegerRun, dict[str, float]]:
    """Read a result file back into the reference's :class:`IntegerRun` layout."""
    with np.load(path, allow_pickle=False) as npz:
        spikes = {k.split("/", 1)[1]: npz[k].astype(bool) for k in npz.files if k.startswith("spikes/")}
        timing = {k.split("/", 1)[1]: float(npz[k]) for k in npz.files if k.startswith("timing/")}
        readout = npz["readout"].astype(np.int64)
    return IntegerRun(spikes=spikes, readout=readout, saturation={}), timing


def _read_pixels(path: Path) -> np.ndarray:
    try:
        with np.load(path, allow_pickle=False) as npz:
            return npz["pixels"]
    except (OSError, ValueError, KeyError) as exc:
        raise BundleError(f"{path}: cannot read 'pixels' ({exc})") from None


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m hardware.lava_run", description=__doc__.split("\n")[0])
    p.add_argument("--bundle", type=Path, help="bundle directory (its loihi layers and timesteps)")
    p.add_argument("--pixels", type=Path, help=".npz with 'pixels' (B, C, H, W) integers (with --bundle)")
    p.add_argument("--out", type=Path, help="result .npz (with --bundle)")
    p.add_argument("--job", type=Path, action="append", default=[], help="job directory (repeatable)")
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if bool(args.bundle) == bool(args.job) or (args.bundle and not (args.pixels and args.out)):
        parser.error("give either --bundle DIR --pixels IN.npz --out OUT.npz, or one or more --job DIR")
    try:  # fail here, not halfway through a build
        import lava.magma.core.run_configs  # noqa: F401

        from hardware import lava_backend
    except Exception as exc:  # lava-nc fails in many ways on the wrong Python; all mean the same
        print(f"lava_run: lava-nc is not importable in {sys.executable}: {exc}", file=sys.stderr)
        return EXIT_NO_LAVA
    try:
        if args.bundle:
            bundle = read_bundle(args.bundle)
            work = [(bundle.loihi_layers, _read_pixels(args.pixels), bundle.timesteps, args.out)]
        else:
            work = [(*read_job(job), job / JOB_RESULT) for job in args.job]
        for layers, pixels, timesteps, out in work:
            timing: dict[str, float] = {}
            run = lava_backend.run(layers, pixels, timesteps, timing)
            write_result(out, run, timing)
    except (BundleError, ValueError) as exc:
        print(f"lava_run: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    return 0


if __name__ == "__main__":
    sys.exit(main())
