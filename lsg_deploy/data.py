"""Embedded datasets (no download). ``digits``: scikit-learn's bundled 8x8 handwritten digits.

Images stay integers (pixels 0..16) so the fixed-point path sees exactly what a sensor or a
host would send; the float models see ``pixels / input_max``. The split is stratified and
seeded, and recorded in checkpoints and bundles so every stage evaluates the same images.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

DATASETS = ("digits",)


class DataError(ValueError):
    """A data specification that names no dataset here or leaves a split without data."""


@dataclass(frozen=True)
class EncodedSplit:
    pixels: np.ndarray  #: (N, C, H, W) integers in [0, input_max]
    labels: np.ndarray  #: (N,) int64
    input_max: int

    @property
    def analog(self) -> np.ndarray:
        """Direct-encoding input of the float model, in [0, 1]."""
        return (self.pixels / self.input_max).astype(np.float32)

    def head(self, n: int | None) -> EncodedSplit:
        return self if n is None else EncodedSplit(self.pixels[:n], self.labels[:n], self.input_max)


@dataclass(frozen=True)
class DataSpec:
    dataset: str = "digits"
    test_fraction: float = 0.2
    split_seed: int = 0

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


def load(spec: DataSpec) -> tuple[EncodedSplit, EncodedSplit, int]:
    """Return ``(train, test, classes)``."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    pixels = digits.images.astype(np.int64)[:, None]  # (1797, 1, 8, 8), values 0..16
    labels = digits.target.astype(np.int64)
    classes = int(labels.max()) + 1
    n_test = math.ceil(len(labels) * spec.test_fraction)  # scikit-learn's rounding
    if min(n_test, len(labels) - n_test) < classes:
        raise DataError(f"test_fraction {spec.test_fraction} leaves {n_test} of {len(labels)} samples for test: "
                        f"each split needs at least one sample per class ({classes})")
    idx_train, idx_test = train_test_split(
        np.arange(len(labels)), test_size=spec.test_fraction, random_state=spec.split_seed, stratify=labels
    )
    input_max = 16
    return (
        EncodedSplit(pixels[idx_train], labels[idx_train], input_max),
        EncodedSplit(pixels[idx_test], labels[idx_test], input_max),
        classes,
    )
