"""``simulate --dump DIR``: every hidden layer's spikes, per sample and step, of each fixed-point
backend that ran, one ``DIR/<backend>.npz`` per backend (``reference.npz`` for the integer
reference, ``rtl.npz``, ``lava.npz``), with the keys::

    spikes/<layer>  bool  (N, T, neurons)  the hidden layer's spikes (neurons in C,H,W row-major order)
    readout         int64 (N, T, K)        the readout membranes after every step
    predictions     int64 (N,)             argmax of the final readout, the lowest index on ties
    labels          int64 (N,)             the test samples' labels
    indices         int64 (N,)             their positions in the dataset's test split
    layers          str   (L,)             the hidden layers' names, in the graph's order

``DIR`` is written whole or not at all (staged beside it, swapped in); whether it may be
replaced is :func:`lsg_deploy.outputs.check_dump_target`'s to say, before anything runs.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from hardware.reference import IntegerRun
from lsg_io.files import staged_directory


def dump_arrays(run: IntegerRun, labels: np.ndarray, indices: np.ndarray) -> dict[str, np.ndarray]:
    """One backend's ``.npz`` content (the keys of the module docstring)."""
    return {**{f"spikes/{name}": np.asarray(spikes, bool) for name, spikes in run.spikes.items()},
            "readout": np.asarray(run.readout, np.int64), "predictions": run.predictions().astype(np.int64),
            "labels": np.asarray(labels, np.int64), "indices": np.asarray(indices, np.int64),
            "layers": np.array(list(run.spikes), dtype=str)}


def write_dump(directory: Path, runs: Mapping[str, IntegerRun], labels: np.ndarray, indices: np.ndarray) -> None:
    """Write ``directory/<backend>.npz`` for every run, atomically (see the module docstring)."""
    with staged_directory(Path(directory)) as stage:
        for name, run in runs.items():
            np.savez_compressed(stage / f"{name}.npz", **dump_arrays(run, labels, indices))
