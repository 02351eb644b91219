"""Every dataset, in one registry, :data:`DATASETS`: a dataset's module contributes its entries.

* embedded (no download, :mod:`training.data.digits`): ``digits``, scikit-learn's 8x8 digits,
  the image at every step; ``digits-events``, the same images seen by an emulated event camera
  (:mod:`training.data.events`), one binary frame per step;
* read from the user's files (``--data-dir``, :mod:`training.data.file_datasets`): ``cifar10``,
  ``cifar100`` and ``cifar10-dvs``, as torch datasets for training (:func:`build`).

:func:`load` gives every dataset's integer encoding (:class:`EncodedSplit`): inputs stay integers
(``input_max`` 16 for the digits' pixels, 1 for spikes) so the fixed-point path sees exactly what a
sensor or a host would send; the float models see ``pixels / input_max``. The split is recorded
(:class:`DataSpec`) in checkpoints and bundles so every stage evaluates the same samples.
``TrainConfig.dataset``, ``lsg-deploy train --dataset`` and :class:`DataSpec` take their choices
from :data:`DATASETS`. The registry, the embedded datasets and the integer encodings load with numpy
alone (scikit-learn for the digits, tonic for the events); torch only where a file dataset builds
its training sets.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from training.data import digits, file_datasets
from training.data.file_datasets import DVS_FRAMES
from training.data.records import (
    DIRECT,
    ENCODINGS,
    EVENT_FRAMES,
    DataError,
    DataFilesError,
    Dataset,
    DataSpec,
    EncodedSplit,
    FileOptions,
    FileSource,
)

__all__ = ["DATASETS", "DIRECT", "DVS_FRAMES", "ENCODINGS", "EVENT_FRAMES", "DataError", "DataFilesError", "DataSpec",
           "Dataset", "EncodedSplit", "FileOptions", "FileSource", "build", "load"]

DATASETS: Mapping[str, Dataset] = MappingProxyType({d.name: d for d in (*digits.ENTRIES, *file_datasets.ENTRIES)})


def load(spec: DataSpec, timesteps: int | None = None, files: FileSource | None = None
         ) -> tuple[EncodedSplit, EncodedSplit, int]:
    """Return ``(train, test, classes)`` of ``spec``'s dataset.

    ``timesteps``, the network's T, is required for ``event-frames`` datasets (their samples
    are (T, C, H, W)) and ignored for ``direct`` ones; ``files``: where a file dataset is and how
    the network was trained on it (its integer encoding depends on it). Raises
    :class:`DataError` on a missing or bad T, a file dataset without an integer encoding or
    without its files, and when the ``events`` extra (tonic) an event dataset needs is not
    installed."""
    dataset = DATASETS[spec.dataset]
    if dataset.needs_timesteps and (isinstance(timesteps, bool) or not isinstance(timesteps, int) or timesteps < 1):
        what = "no timesteps" if timesteps is None else f"timesteps {timesteps!r}"
        raise DataError(f"dataset {spec.dataset} has one frame per timestep: load it with the network's timesteps "
                        f"(a positive integer), got {what}")
    return dataset.loader(spec, timesteps, files)


def build(name: str, options: FileOptions) -> tuple:
    """``(train, test)`` of the file dataset ``name``, torch datasets for training."""
    if name not in DATASETS or not DATASETS[name].files:
        available = ", ".join(d.name for d in DATASETS.values() if d.files)
        raise DataFilesError(f"unknown file dataset {name!r}; available: {available}")
    if not options.download and not options.root.is_dir():
        raise DataFilesError(f"--data-dir {options.root} is not a directory" if options.root.exists()
                             else f"--data-dir {options.root} does not exist")
    return DATASETS[name].build(options)
