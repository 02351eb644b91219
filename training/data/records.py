"""The records of the dataset registry (:mod:`training.data`), shared by every dataset module.

Numpy only: the registry, the embedded datasets and the integer encodings load without torch
(the integer backends of ``simulate`` need nothing else); the file datasets import torch where they
build their training sets.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

#: the input encodings: the image at every step, or one frame per step; the same names as the
#: bundle's (``hardware.graph``, which training does not import; a test holds them equal)
DIRECT, EVENT_FRAMES = "direct", "event-frames"
ENCODINGS = (DIRECT, EVENT_FRAMES)


class DataError(ValueError):
    """A data specification that names no dataset here or leaves a split without data."""


class DataFilesError(ValueError):
    """A dataset's files are missing, corrupt, or not the published ones (and not accepted)."""


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
    dvs_slice_ms: float = 0.0

    @classmethod
    def from_config(cls, config: Mapping[str, Any], data_dir: str | None = None, verify: bool = True) -> FileSource:
        """From a checkpoint's ``config`` record; ``data_dir`` (a ``--data-dir``) overrides its own;
        ``verify``: the command's (its ``--no-verify-data``), whatever the config's ``verify_data``."""
        return cls(str(data_dir or config.get("data_dir", "")), bool(verify), bool(config.get("normalize", True)),
                   str(config.get("dvs_frames", "counts")), float(config.get("dvs_slice_ms", 0.0)))


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
    dvs_slice_ms: float = 0.0  #: CIFAR10-DVS: 0 (T equal bins of a recording, TET) or the width of each frame in ms


@dataclass(frozen=True)
class DataSpec:
    dataset: str = "digits"
    test_fraction: float = 0.2
    split_seed: int = 0  #: the stratified split's seed; digits-events also draws its sensor mismatch from it

    def __post_init__(self) -> None:
        from training.data import DATASETS

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


#: ``(spec, timesteps, files) -> (train, test, classes)``: a dataset's integer encoding
Loader = Callable[[DataSpec, int | None, FileSource | None], tuple[EncodedSplit, EncodedSplit, int]]
#: ``options -> (train, test)``: map-style torch datasets whose items are ``(x, label)``
Builder = Callable[[FileOptions], tuple[Any, Any]]
#: ``(options, train) -> (pixels, labels, input_max)``: a file dataset's integer encoding, ``pixels``
#: an integer array of the float input times ``input_max``
Integer = Callable[[FileOptions, bool], tuple[np.ndarray, np.ndarray, int]]


#: the channels of event frames framed by tonic's ToFrame: one per polarity, p = 0 first
POLARITY_CHANNELS = ("OFF: events of polarity p = 0 (log intensity fell)", "ON: events of polarity p = 1 (it rose)")


@dataclass(frozen=True)
class Dataset:
    """A registry entry: ``loader(spec, timesteps, files)`` returns ``(train, test, classes)``,
    the integer encoding every stage shares. A file dataset, read from the user's ``--data-dir``,
    also has ``build``, the torch datasets it trains on."""

    name: str
    encoding: str  #: one of ENCODINGS; ``event-frames`` datasets need the timesteps
    description: str
    loader: Loader
    #: full scale of the integer encoding (the float input is ``pixels / input_max``); None: the
    #: dataset has none of its own (the file datasets: it depends on how the network was trained)
    input_max: int | None = None
    # the file datasets' own (None for the embedded ones)
    build: Builder | None = None  #: ``(train, test)`` for training, float tensors (C, H, W) or (T, C, H, W)
    classes: int | None = None
    input_shape: tuple[int, int, int] | None = None  #: (C, H, W) of one step's input
    #: the integer encoding of a network trained on the files; None: none
    integer: Integer | None = None
    no_integer: str = ""  #: why there is no integer encoding (or when there is none for a training)
    #: what each input channel carries, in order (event frames: their polarity); () where that is plain
    channels: tuple[str, ...] = ()

    @property
    def files(self) -> bool:
        """Read from the user's --data-dir for training (:attr:`build`), not embedded."""
        return self.build is not None

    @property
    def needs_timesteps(self) -> bool:
        return self.encoding == EVENT_FRAMES
