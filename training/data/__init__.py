"""Embedded datasets (no download), in one registry, :data:`DATASETS`.

* ``digits``: scikit-learn's bundled 8x8 handwritten digits, direct encoding: the image
  (N, 1, 8, 8), pixels 0..16, is the input at every step.
* ``digits-events``: the same images seen by an emulated event camera making three small
  saccades (:mod:`training.data.events`), framed with tonic into T binary spike frames per image,
  (N, T, 2, 12, 12): a different input at every step, channel ``p`` (tonic's polarity index:
  0 OFF, 1 ON) 1 where the pixel had an event of that polarity in the step's bin. The frames depend
  on the network's timesteps, so :func:`load` needs them; nothing is cached on disk.

Inputs stay integers (``input_max`` 16 for pixels, 1 for spikes) so the fixed-point path sees
exactly what a sensor or a host would send; the float models see ``pixels / input_max``. The
split is stratified and seeded over the digit images (the same for both datasets), and recorded
in checkpoints and bundles so every stage evaluates the same samples. ``TrainConfig.dataset``,
``lsg-deploy train --dataset`` and :class:`DataSpec` take their choices from :data:`DATASETS`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import numpy as np

from hardware.graph import DIRECT, ENCODINGS, EVENT_FRAMES  # the bundle's names for them


class DataError(ValueError):
    """A data specification that names no dataset here or leaves a split without data."""


@dataclass(frozen=True)
class EncodedSplit:
    """One split, encoded as the network's input layer receives it.

    ``direct``: ``pixels`` (N, C, H, W), the same input at every step; ``event-frames``:
    ``pixels`` (N, T, C, H, W), frame ``t`` at step ``t``. Integers in ``[0, input_max]``."""

    pixels: np.ndarray  #: (N, C, H, W) or (N, T, C, H, W) int64 in [0, input_max]
    labels: np.ndarray  #: (N,) int64
    input_max: int
    encoding: str = DIRECT  #: one of ENCODINGS

    def __post_init__(self) -> None:
        if self.encoding not in ENCODINGS:
            raise ValueError(f"encoding must be one of {', '.join(ENCODINGS)}, got {self.encoding!r}")
        want = 4 if self.encoding == DIRECT else 5
        if self.pixels.ndim != want or len(self.pixels) != len(self.labels):
            raise ValueError(f"{self.encoding} pixels must be {want}-d with one label per sample, got "
                             f"{self.pixels.shape} for {len(self.labels)} labels")

    @property
    def per_step(self) -> bool:
        """True when every step has its own input (``pixels`` is (N, T, C, H, W))."""
        return self.encoding == EVENT_FRAMES

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of one step's input: the network's ``input_shape``."""
        return tuple(self.pixels.shape[-3:])

    @property
    def analog(self) -> np.ndarray:
        """The float model's input, ``pixels / input_max`` in [0, 1], of the same shape."""
        return (self.pixels / self.input_max).astype(np.float32)

    def head(self, n: int | None) -> EncodedSplit:
        return self if n is None else EncodedSplit(self.pixels[:n], self.labels[:n], self.input_max, self.encoding)


@dataclass(frozen=True)
class FileSource:
    """Where a file dataset's files are, and how the network was trained on them: what loading its
    integer encoding needs beyond the :class:`DataSpec` (from the checkpoint's config). ``verify``
    (check the published MD5 sums) is the command's own choice, never the checkpoint's: a training
    run's ``--no-verify-data`` does not carry over to the commands that read its files later."""

    data_dir: str = ""
    verify: bool = True
    normalize: bool = True
    dvs_frames: str = "counts"

    @classmethod
    def from_config(cls, config: Mapping[str, Any], data_dir: str | None = None, verify: bool = True) -> FileSource:
        """From a checkpoint's ``config`` record; ``data_dir`` (a ``--data-dir``) overrides its own;
        ``verify``: the command's (its ``--no-verify-data``), whatever the config's ``verify_data``."""
        return cls(str(data_dir or config.get("data_dir", "")), bool(verify), bool(config.get("normalize", True)),
                   str(config.get("dvs_frames", "counts")))


Loader = Callable[["DataSpec", "int | None", "FileSource | None"], tuple[EncodedSplit, EncodedSplit, int]]


@dataclass(frozen=True)
class Dataset:
    """A registry entry: ``loader(spec, timesteps, files)`` returns ``(train, test, classes)``."""

    name: str
    encoding: str  #: one of ENCODINGS; ``event-frames`` datasets need the timesteps
    description: str
    loader: Loader
    files: bool = False  #: read from the user's --data-dir for training (training.data.file_datasets), not embedded
    #: full scale of the integer encoding (the float input is ``pixels / input_max``); None: the
    #: dataset has none of its own (the file datasets: it depends on how the network was trained)
    input_max: int | None = None

    @property
    def needs_timesteps(self) -> bool:
        return self.encoding == EVENT_FRAMES


@dataclass(frozen=True)
class DataSpec:
    dataset: str = "digits"
    test_fraction: float = 0.2
    split_seed: int = 0  #: the stratified split's seed; digits-events also draws its sensor mismatch from it

    def __post_init__(self) -> None:
        if not isinstance(self.dataset, str) or self.dataset not in DATASETS:
            raise DataError(f"unknown dataset {self.dataset!r}; available: {', '.join(DATASETS)}")
        fraction = self.test_fraction
        if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not (
                math.isfinite(fraction) and 0 < fraction < 1):
            raise DataError(f"test_fraction must be a number in (0, 1), got {fraction!r}")
        if isinstance(self.split_seed, bool) or not isinstance(self.split_seed, int) or not (
                0 <= self.split_seed < 2**32):
            raise DataError(f"split_seed must be an integer in [0, 2^32), got {self.split_seed!r}")

    def to_dict(self) -> dict:
        return {"dataset": self.dataset, "test_fraction": self.test_fraction, "split_seed": self.split_seed}

    @classmethod
    def from_dict(cls, values: Any) -> DataSpec:
        """Read a ``data`` record of a checkpoint or bundle; every problem is a :class:`DataError`."""
        if not isinstance(values, dict) or set(values) != {"dataset", "test_fraction", "split_seed"}:
            raise DataError(f"data must hold exactly dataset, test_fraction and split_seed, got {values!r}")
        return cls(**values)


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


def _digits(spec: DataSpec) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int]:
    """``(images (1797, 8, 8) int64 0..16, labels, train indices, test indices, classes)``."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = digits.images.astype(np.int64)
    labels = digits.target.astype(np.int64)
    classes = int(labels.max()) + 1
    n_test = math.ceil(len(labels) * spec.test_fraction)  # scikit-learn's rounding
    if min(n_test, len(labels) - n_test) < classes:
        raise DataError(f"test_fraction {spec.test_fraction} leaves {n_test} of {len(labels)} samples for test: "
                        f"each split needs at least one sample per class ({classes})")
    idx_train, idx_test = train_test_split(
        np.arange(len(labels)), test_size=spec.test_fraction, random_state=spec.split_seed, stratify=labels
    )
    return images, labels, idx_train, idx_test, classes


DIGITS_MAX = 16  #: scikit-learn's digits are 0..16


def _load_digits(spec: DataSpec, timesteps: int | None, files: FileSource | None = None
                 ) -> tuple[EncodedSplit, EncodedSplit, int]:
    images, labels, idx_train, idx_test, classes = _digits(spec)
    pixels = images[:, None]  # (1797, 1, 8, 8)
    return (
        EncodedSplit(pixels[idx_train], labels[idx_train], DIGITS_MAX),
        EncodedSplit(pixels[idx_test], labels[idx_test], DIGITS_MAX),
        classes,
    )


def _load_digits_events(spec: DataSpec, timesteps: int | None, files: FileSource | None = None
                        ) -> tuple[EncodedSplit, EncodedSplit, int]:
    from training.data.events import EventsExtraMissing, SaccadeSensor, spike_frames, tonic_to_frame

    try:
        tonic_to_frame()  # before any work: the events extra may be missing
    except EventsExtraMissing as exc:
        raise DataError(f"dataset {spec.dataset}: {exc}") from None
    images, labels, idx_train, idx_test, classes = _digits(spec)
    sensor = SaccadeSensor()
    size = sensor.sensor_size(images.shape[1:])

    def split(idx: np.ndarray) -> EncodedSplit:
        # keys: the images' indices in the dataset, so an image's events do not depend on the split
        streams = sensor.events(images[idx], DIGITS_MAX, keys=idx, seed=spec.split_seed)
        frames = spike_frames(streams, size, timesteps, sensor.duration_us)
        return EncodedSplit(frames, labels[idx], 1, EVENT_FRAMES)

    return split(idx_train), split(idx_test), classes


def _load_files(spec: DataSpec, timesteps: int | None, files: FileSource | None
                ) -> tuple[EncodedSplit, EncodedSplit, int]:
    """A file dataset's integer encoding (:attr:`training.data.file_datasets.FileDataset.integer`), for a
    network trained as ``files`` says; read from the user's files."""
    from pathlib import Path

    from training.data.file_datasets import FILE_DATASETS, DataFilesError, FileOptions

    entry = FILE_DATASETS[spec.dataset]
    if entry.integer is None or files is None:
        raise DataError(f"dataset {spec.dataset}: {entry.no_integer}")
    if not files.data_dir:
        raise DataError(f"dataset {spec.dataset} is read from files: give --data-dir")
    options = FileOptions(Path(files.data_dir), timesteps or 1, augment=False, verify=files.verify,
                          normalize=files.normalize, dvs_frames=files.dvs_frames)
    if not options.root.is_dir():
        raise DataError(f"dataset {spec.dataset}: --data-dir {options.root} is not a directory (the network was "
                        f"trained on files there; give --data-dir where they are now)")
    try:
        splits = [entry.integer(options, train) for train in (True, False)]
    except DataFilesError as exc:
        raise DataError(str(exc)) from None
    (train, train_labels, input_max), (test, test_labels, _) = splits
    encoding = EVENT_FRAMES if entry.per_step else DIRECT
    return (EncodedSplit(train, train_labels, input_max, encoding),
            EncodedSplit(test, test_labels, input_max, encoding), entry.classes)


def _file_datasets() -> tuple[Dataset, ...]:
    from training.data.file_datasets import FILE_DATASETS

    return tuple(Dataset(d.name, EVENT_FRAMES if d.per_step else DIRECT, d.description, _load_files, files=True)
                 for d in FILE_DATASETS.values())


DATASETS: Mapping[str, Dataset] = MappingProxyType({d.name: d for d in (
    Dataset("digits", DIRECT, "scikit-learn's 8x8 digits, the image at every step", _load_digits,
            input_max=DIGITS_MAX),
    Dataset("digits-events", EVENT_FRAMES, "the digits seen by an emulated event camera in three saccades: "
            "T binary ON/OFF frames of 12x12 (needs the events extra, tonic)", _load_digits_events, input_max=1),
    *_file_datasets(),
)})
