"""Embedded datasets (no download). ``digits``: scikit-learn's bundled 8x8 handwritten digits.

Images stay integers (pixels 0..16) so the fixed-point path sees exactly what a sensor or a
host would send; the float models see ``pixels / input_max``. The split is stratified and
seeded, and recorded in checkpoints and bundles so every stage evaluates the same images.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

DATASETS = ("digits",)


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

    def to_dict(self) -> dict:
        return {"dataset": self.dataset, "test_fraction": self.test_fraction, "split_seed": self.split_seed}


def load(spec: DataSpec) -> tuple[EncodedSplit, EncodedSplit, int]:
    """Return ``(train, test, classes)``."""
    if spec.dataset != "digits":
        raise ValueError(f"unknown dataset {spec.dataset!r}; available: {', '.join(DATASETS)}")
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    pixels = digits.images.astype(np.int64)[:, None]  # (1797, 1, 8, 8), values 0..16
    labels = digits.target.astype(np.int64)
    idx_train, idx_test = train_test_split(
        np.arange(len(labels)), test_size=spec.test_fraction, random_state=spec.split_seed, stratify=labels
    )
    input_max = 16
    return (
        EncodedSplit(pixels[idx_train], labels[idx_train], input_max),
        EncodedSplit(pixels[idx_test], labels[idx_test], input_max),
        int(labels.max()) + 1,
    )
