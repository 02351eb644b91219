"""The embedded datasets (no download): scikit-learn's bundled 8x8 handwritten digits.

* ``digits``: direct encoding: the image (N, 1, 8, 8), pixels 0..16, is the input at every step.
* ``digits-events``: the same images seen by an emulated event camera making three small
  saccades (:mod:`training.data.events`), framed with tonic into T binary spike frames per image,
  (N, T, 2, 12, 12): a different input at every step, channel ``p`` (tonic's polarity index:
  0 OFF, 1 ON) 1 where the pixel had an event of that polarity in the step's bin. The frames depend
  on the network's timesteps, so loading needs them; nothing is cached on disk.

The split is stratified and seeded over the digit images (the same for both datasets).
"""

from __future__ import annotations

import math

import numpy as np

from training.data.records import (
    DIRECT,
    EVENT_FRAMES,
    POLARITY_CHANNELS,
    DataError,
    Dataset,
    DataSpec,
    EncodedSplit,
    FileSource,
)


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


#: this module's entries of the registry (:data:`training.data.DATASETS`)
ENTRIES = (
    Dataset("digits", DIRECT, "scikit-learn's 8x8 digits, the image at every step", _load_digits,
            input_max=DIGITS_MAX),
    Dataset("digits-events", EVENT_FRAMES, "the digits seen by an emulated event camera in three saccades: "
            "T binary ON/OFF frames of 12x12 (needs the events extra, tonic)", _load_digits_events, input_max=1,
            channels=POLARITY_CHANNELS),
)
