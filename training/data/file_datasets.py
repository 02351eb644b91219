"""Datasets read from a user's files (``--data-dir``), as torch datasets for training.

The embedded datasets (digits, digits-events) live in :mod:`training.data`, as integer arrays
every stage shares. These are the paper-scale ones, which no machine here downloads:

* ``cifar10``, ``cifar100``: torchvision's files read by a restricted unpickler, with torchvision's
  transforms (:mod:`training.data.cifar`);
* ``cifar10-dvs``: tonic's files and framing, checked and framed to T x 2 x 48 x 48 before
  training, into a frame cache keyed by each recording's size and modification time
  (:mod:`training.data.cifar10_dvs`).

Each entry of :data:`FILE_DATASETS` builds ``(train, test)``: map-style datasets whose items are
``(x, label)`` with ``x`` a float tensor (C, H, W), the same at every step, or (T, C, H, W), a
different input at every step. Missing or corrupt files raise :class:`DataFilesError` with what
was expected where; nothing is downloaded unless ``download`` is set.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

import numpy as np
from torch.utils.data import Dataset


class DataFilesError(ValueError):
    """A dataset's files are missing, corrupt, or not the published ones (and not accepted)."""


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


@dataclass(frozen=True)
class FileOptions:
    """What a file dataset's builder needs besides its name."""

    root: Path  #: the user's ``--data-dir``
    timesteps: int  #: the network's T (event datasets make one frame per step)
    augment: bool = True  #: the recipe's training augmentation (never applied to the test split)
    autoaugment: bool = True  #: CIFAR: AutoAugment's CIFAR10 policy on top of crop and flip
    cutout: int = 0  #: CIFAR: side of the Cutout square in pixels (DeVries & Taylor 2017), 0 for none
    verify: bool = True  #: check the published MD5 sums (CIFAR); False accepts other files of the format
    download: bool = False  #: let the underlying library download what is missing
    normalize: bool = True  #: CIFAR: per-channel normalisation (False: pixels / 255, the integer encoding's)
    dvs_frames: str = "counts"  #: CIFAR10-DVS: "counts" (TET's resized event counts) or "spikes" (binary, integer)


Builder = Callable[[FileOptions], "tuple[Dataset, Dataset]"]


@dataclass(frozen=True)
class FileDataset:
    name: str
    classes: int
    input_shape: tuple[int, int, int]  #: (C, H, W) of one step's input
    per_step: bool  #: True: items are (T, C, H, W), one frame per step
    description: str
    build: Builder
    #: the integer encoding of a network trained on the files, ``(options, train) -> (pixels, labels,
    #: input_max)`` with ``pixels`` an integer array of the float input times ``input_max``; None: none
    integer: Callable[[FileOptions, bool], tuple[np.ndarray, np.ndarray, int]] | None = None
    no_integer: str = ""  #: why there is no integer encoding (or when there is none for a training)


def _cifar10(options: FileOptions) -> tuple[Dataset, Dataset]:
    from training.data.cifar import cifar_datasets

    return cifar_datasets("cifar10", options)


def _cifar100(options: FileOptions) -> tuple[Dataset, Dataset]:
    from training.data.cifar import cifar_datasets

    return cifar_datasets("cifar100", options)


def _cifar_integer(name: str):
    def integer(options: FileOptions, train: bool) -> tuple[np.ndarray, np.ndarray, int]:
        from training.data.cifar import integer_split

        return integer_split(name, options, train)

    return integer


def _cifar10_dvs(options: FileOptions) -> tuple[Dataset, Dataset]:
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

FILE_DATASETS: Mapping[str, FileDataset] = MappingProxyType({d.name: d for d in (
    FileDataset("cifar10", 10, (3, 32, 32), False,
                "CIFAR-10 from --data-dir (torchvision's cifar-10-batches-py)", _cifar10, _cifar_integer("cifar10"),
                no_integer=_NORMALISED),
    FileDataset("cifar100", 100, (3, 32, 32), False,
                "CIFAR-100 from --data-dir (torchvision's cifar-100-python)", _cifar100, _cifar_integer("cifar100"),
                no_integer=_NORMALISED),
    FileDataset("cifar10-dvs", 10, (2, 48, 48), True,
                "CIFAR10-DVS from --data-dir (tonic's CIFAR10DVS/*.aedat4), T frames of 2x48x48; needs the "
                "events extra", _cifar10_dvs, _cifar10_dvs_integer, no_integer=_RESIZED),
)})


def build(name: str, options: FileOptions) -> tuple[Dataset, Dataset]:
    """``(train, test)`` of the file dataset ``name``."""
    if name not in FILE_DATASETS:
        raise DataFilesError(f"unknown file dataset {name!r}; available: {', '.join(FILE_DATASETS)}")
    if not options.download and not options.root.is_dir():
        raise DataFilesError(f"--data-dir {options.root} is not a directory" if options.root.exists()
                             else f"--data-dir {options.root} does not exist")
    return FILE_DATASETS[name].build(options)
