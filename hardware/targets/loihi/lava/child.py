"""Command line of the Lava backend, run in the Lava interpreter (Python 3.10, ``make lava-env``).

Two ways in, one way out::

    python -m hardware.targets.loihi.lava.child --bundle DIR --inputs in.npz --out result.npz
    python -m hardware.targets.loihi.lava.child --job JOBDIR [--job JOBDIR ...]

A job is a network plus its inputs. ``--bundle``: the bundle directory itself (its ``loihi``
graph and ``T``, read and verified by :func:`hardware.bundle.read_bundle`) and ``in.npz``
holding ``inputs``, the encoded inputs (``(B, C, H, W)`` direct, ``(B, T, C, H, W)`` event
frames). A job directory (written by :func:`write_job`, used by :mod:`hardware.targets.loihi.lava.parent`)
holds ``job.json`` (``timesteps``, the ``input`` and the ``loihi`` graph in the bundle's JSON
form), ``arrays.npz`` (the graph's arrays, keyed as in a bundle) and ``inputs.npz``; its result
goes to ``JOBDIR/result.npz``. Several jobs share one interpreter start. A result file holds
``spikes/<node>`` (B, T, n) bool, ``readout`` (B, T, classes) int64 and ``timing/<key>`` floats.

Exit codes: 0 done, 2 bad input (one line on stderr), 3 lava-nc not importable here.
This module imports lava only inside :func:`main`; its file helpers are numpy-only.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hardware.bundle import BundleError, graph_from_json, graph_to_json, input_from_json, input_to_json, read_bundle
from hardware.graph import Graph
from hardware.reference import IntegerRun

JOB_JSON, JOB_ARRAYS, JOB_INPUTS, JOB_RESULT = "job.json", "arrays.npz", "inputs.npz", "result.npz"
INPUTS_KEY = "inputs"
RECORD = "integer"  #: the graph record a job holds, keyed in ``arrays.npz`` as in a bundle
EXIT_BAD_INPUT, EXIT_NO_LAVA = 2, 3


@dataclass(frozen=True)
class LavaJob:
    """One network and its inputs: ``graph`` (a ``loihi`` graph) run on ``inputs`` for ``T`` steps.

    ``_pad_delays=False`` leaves shortcut edges unpadded on Lava: not bit-exact, it exists so a
    test can show that the delay pad is needed (:mod:`hardware.targets.loihi.lava.backend`).
    """

    graph: Graph
    inputs: np.ndarray
    timesteps: int
    _pad_delays: bool = True


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"cannot write {type(value).__name__} to {JOB_JSON}")


def write_job(directory: Path, job: LavaJob) -> None:
    """Write one Lava job (graph, encoded inputs, ``T``) into an existing directory."""
    directory = Path(directory)
    arrays: dict[str, np.ndarray] = {}
    doc = {"timesteps": int(job.timesteps), "input": input_to_json(job.graph.input),
           "graph": graph_to_json(job.graph, RECORD, arrays), "pad_delays": bool(job._pad_delays)}
    np.savez(directory / JOB_ARRAYS, **arrays)
    write_inputs(directory / JOB_INPUTS, job.inputs)
    (directory / JOB_JSON).write_text(json.dumps(doc, default=_json_default))


def read_job(directory: Path) -> LavaJob:
    """Read a job written by :func:`write_job`; problems raise :class:`BundleError`."""
    directory = Path(directory)
    try:
        doc = json.loads((directory / JOB_JSON).read_text())
        with np.load(directory / JOB_ARRAYS, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
        where = str(directory / JOB_JSON)
        graph = graph_from_json(doc["graph"], input_from_json(doc["input"], f"{where}: input"), RECORD, arrays,
                                f"{where}: graph")
        return LavaJob(graph, read_inputs(directory / JOB_INPUTS), int(doc["timesteps"]), bool(doc["pad_delays"]))
    except BundleError:
        raise
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise BundleError(f"{directory} is not a readable Lava job: {exc}") from None


def write_inputs(path: Path, inputs: np.ndarray) -> None:
    np.savez(path, **{INPUTS_KEY: np.asarray(inputs)})


def read_inputs(path: Path) -> np.ndarray:
    try:
        with np.load(path, allow_pickle=False) as npz:
            return npz[INPUTS_KEY]
    except (OSError, ValueError, KeyError) as exc:
        raise BundleError(f"{path}: cannot read {INPUTS_KEY!r} ({exc})") from None


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


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m hardware.targets.loihi.lava.child", description=__doc__.split("\n")[0])
    p.add_argument("--bundle", type=Path, help="bundle directory (its loihi graph and timesteps)")
    p.add_argument("--inputs", type=Path, help=f".npz with {INPUTS_KEY!r}, the encoded inputs (with --bundle)")
    p.add_argument("--out", type=Path, help="result .npz (with --bundle)")
    p.add_argument("--job", type=Path, action="append", default=[], help="job directory (repeatable)")
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if bool(args.bundle) == bool(args.job) or (args.bundle and not (args.inputs and args.out)):
        parser.error("give either --bundle DIR --inputs IN.npz --out OUT.npz, or one or more --job DIR")
    try:  # fail here, not halfway through a build
        import lava.magma.core.run_configs  # noqa: F401

        from hardware.targets.loihi.lava import backend as lava_backend
    except Exception as exc:  # lava-nc fails in many ways on the wrong Python; all mean the same
        print(f"lava_run: lava-nc is not importable in {sys.executable}: {exc}", file=sys.stderr)
        return EXIT_NO_LAVA
    try:
        if args.bundle:
            bundle = read_bundle(args.bundle)
            work = [(LavaJob(bundle.integer_graph, read_inputs(args.inputs), bundle.timesteps), args.out)]
        else:
            work = [(read_job(job), job / JOB_RESULT) for job in args.job]
        for job, out in work:
            timing: dict[str, float] = {}
            run = lava_backend.run(job.graph, job.inputs, job.timesteps, timing, _pad_delays=job._pad_delays)
            write_result(out, run, timing)
    except (BundleError, ValueError) as exc:
        print(f"lava_run: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    return 0


if __name__ == "__main__":
    sys.exit(main())
