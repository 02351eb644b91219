"""Datasets read from a user's files (``--data-dir``): the paper-scale ones, which no machine here downloads.

The registry (:mod:`training.data`) holds them beside the embedded ones (:mod:`training.data.digits`):

* ``cifar10``, ``cifar100``: torchvision's files read by a restricted unpickler, with torchvision's
  transforms (:mod:`training.data.cifar`);
* ``cifar10-dvs``: tonic's files and framing, checked and framed to T x 2 x 48 x 48 before
  training, into a frame cache keyed by each recording's size and modification time
  (:mod:`training.data.cifar10_dvs`).

Each entry's ``build`` makes ``(train, test)`` for training: map-style torch datasets whose items
are ``(x, label)`` with ``x`` a float tensor (C, H, W), the same at every step, or (T, C, H, W), a
different input at every step; its ``loader`` reads the integer encoding every stage shares, where
the training has one. Missing or corrupt files raise :class:`DataFilesError` with what was
expected where; nothing is downloaded unless ``download`` is set. Torch is imported by the modules
that build the torch datasets, not here: the registry loads without it.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from training.data.records import (
    DIRECT,
    EVENT_FRAMES,
    POLARITY_CHANNELS,
    DataError,
    DataFilesError,
    Dataset,
    EncodedSplit,
    FileOptions,
)

if TYPE_CHECKING:
    from training.data.records import DataSpec, FileSource


def missing_ancestors(*paths: Path) -> list[Path]:
    """For each of ``paths``, the topmost of it and its parents that does not exist now: what to
    remove to undo whatever a download or a cache creates there (:func:`remove_all`)."""
    found = []
    for path in paths:
        top = next((p for p in reversed((path, *path.parents)) if not p.exists() and not p.is_symlink()), None)
        if top is not None and top not in found:
            found.append(top)
    return found


def remove_all(paths: list[Path]) -> None:
    """Remove ``paths`` (files or folders, with what they hold), where they exist."""
    import shutil

    for path in paths:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        elif path.exists() or path.is_symlink():
            path.unlink(missing_ok=True)


def _cifar10(options: FileOptions) -> tuple[Any, Any]:
    from training.data.cifar import cifar_datasets

    return cifar_datasets("cifar10", options)


def _cifar100(options: FileOptions) -> tuple[Any, Any]:
    from training.data.cifar import cifar_datasets

    return cifar_datasets("cifar100", options)


def _cifar_integer(name: str):
    def integer(options: FileOptions, train: bool) -> tuple[np.ndarray, np.ndarray, int]:
        from training.data.cifar import integer_split

        return integer_split(name, options, train)

    return integer


def _cifar10_dvs(options: FileOptions) -> tuple[Any, Any]:
    from training.data.cifar10_dvs import cifar10_dvs_datasets

    return cifar10_dvs_datasets(options)


def _cifar10_dvs_integer(options: FileOptions, train: bool) -> tuple[np.ndarray, np.ndarray, int]:
    from training.data.cifar10_dvs import integer_split

    return integer_split(options, train)


_NORMALISED = ("it was trained on normalised images, which have no integer encoding: train with normalize = false "
               "(--no-normalize) to deploy to an integer target (the input is then the image's bytes, 0..255)")

_RESIZED = ("it was trained on event counts resized with bilinear interpolation, which have no integer encoding: "
            "train with dvs_frames = \"spikes\" (--dvs-frames spikes) to deploy to an integer target (the input is "
            "then binary spike frames)")
#: CIFAR10-DVS's frame kinds (``dvs_frames``): TET's resized counts, or binary spikes (integer)
DVS_FRAMES = ("counts", "spikes")


def _load_files(spec: DataSpec, timesteps: int | None, files: FileSource | None
                ) -> tuple[EncodedSplit, EncodedSplit, int]:
    """A file dataset's integer encoding (:attr:`training.data.records.Dataset.integer`), for a
    network trained as ``files`` says; read from the user's files."""
    from training.data import DATASETS

    entry = DATASETS[spec.dataset]
    if entry.integer is None or files is None:
        raise DataError(f"dataset {spec.dataset}: {entry.no_integer}")
    if not files.data_dir:
        raise DataError(f"dataset {spec.dataset} is read from files: give --data-dir")
    options = FileOptions(Path(files.data_dir), timesteps or 1, augment=False, verify=files.verify,
                          normalize=files.normalize, dvs_frames=files.dvs_frames, dvs_slice_ms=files.dvs_slice_ms)
    if not options.root.is_dir():
        raise DataError(f"dataset {spec.dataset}: --data-dir {options.root} is not a directory (the network was "
                        f"trained on files there; give --data-dir where they are now)")
    try:
        splits = [entry.integer(options, train) for train in (True, False)]
    except DataFilesError as exc:
        raise DataError(str(exc)) from None
    (train, train_labels, input_max), (test, test_labels, _) = splits
    return (EncodedSplit(train, train_labels, input_max, entry.encoding),
            EncodedSplit(test, test_labels, input_max, entry.encoding), entry.classes)


#: this module's entries of the registry (:data:`training.data.DATASETS`)
ENTRIES = (
    Dataset("cifar10", DIRECT, "CIFAR-10 from --data-dir (torchvision's cifar-10-batches-py)", _load_files,
            build=_cifar10, classes=10, input_shape=(3, 32, 32), integer=_cifar_integer("cifar10"),
            no_integer=_NORMALISED),
    Dataset("cifar100", DIRECT, "CIFAR-100 from --data-dir (torchvision's cifar-100-python)", _load_files,
            build=_cifar100, classes=100, input_shape=(3, 32, 32), integer=_cifar_integer("cifar100"),
            no_integer=_NORMALISED),
    Dataset("cifar10-dvs", EVENT_FRAMES, "CIFAR10-DVS from --data-dir (tonic's CIFAR10DVS/*.aedat4), T frames of "
            "2x48x48; needs the events extra", _load_files, build=_cifar10_dvs, classes=10, input_shape=(2, 48, 48),
            integer=_cifar10_dvs_integer, no_integer=_RESIZED,
            channels=POLARITY_CHANNELS),
)
