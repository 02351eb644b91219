"""CIFAR10-DVS (Li et al. 2017) from a user's files: tonic's dataset, framed and split as in TET.

:func:`cifar10_dvs_datasets` gives ``(train, test)`` with items ``(frames, label)``: ``frames``
float32 (T, 2, 48, 48), each step's event counts per polarity, resized (or binary spike frames,
``dvs_frames = "spikes"``, whose integers :func:`integer_split` gives a deployment); ``label``
0..9 in tonic's class order (airplane, automobile, ..., truck). Facts it rests on, and their sources:

* **Files.** tonic 1.7's ``tonic.datasets.CIFAR10DVS(save_to)`` reads
  ``save_to/CIFAR10DVS/<class>/*.aedat4`` (published as ``cifar10_<class>_<i>.aedat4``,
  ``i = 0..999``) with ``tonic.io.read_aedat4``, which needs the ``aedat`` package. It downloads and
  extracts the archive unless ``CIFAR10DVS.zip`` is a file there and >= 1000 ``*.aedat4`` files lie
  below (``_check_exists``), so that is checked first unless downloading is allowed. It labels a
  file by its folder's name and lists files with ``os.walk``, in the file system's order.
* **Split** (TET, Deng et al. ICLR 2022, and the LSG paper's lineage after it): per class, the
  files in the order of the number ending their names; the first 9/10 train, the last 1/10 test
  (samples 0-899 and 900-999 of the published data).
* **Frames** (``dvs_frames = "counts"``, the default). ``tonic.transforms.ToFrame(n_time_bins=T)``
  counts events in bins of
  ``w = (t_last - t_first) // T`` microseconds, ``[t_first + k w, t_first + (k + 1) w)``
  (tonic's ``SliceByTimeBins``): events from ``t_first + T w`` on, the last event always among
  them, are not counted. Then ``torchvision.transforms.Resize((48, 48), antialias=True)``
  (bilinear), as TET resizes its frames. ``dvs_frames = "spikes"`` gives binary frames with an
  integer encoding instead (:class:`SpikeFrames`), cached apart (``T{T}-48-spikes/``).
* **Cache.** Framing a recording takes far longer than a training step needs, so the resized
  frames are cached with ``tonic.DiskCachedDataset`` in ``CIFAR10DVS/lsg-deploy-cache/T{T}-48/``,
  one HDF5 file per recording (``<index>_0.hdf5``, ``index`` in the split order above). tonic
  only checks that a file of that index exists, so ``files.txt`` there lists the recordings the
  cache was made from, and a different list clears it. A cache folder that cannot be written
  (read-only data) means no cache, with a warning.
* **Augmentation** (training split, ``augment``; TET's ``DVSCifar10``): a horizontal flip with
  p = 0.5, then ``torch.roll`` by ``(dy, dx)`` uniform in -5..5 pixels, drawn from torch's global
  RNG, which the training loop seeds every epoch.
"""

from __future__ import annotations

import os
import re
import warnings
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset
from torchvision import transforms

from training.datasets import DataFilesError, FileOptions

FOLDER = "CIFAR10DVS"  #: tonic's ``location_on_system``: ``save_to`` / the dataset class's name
ARCHIVE = "CIFAR10DVS.zip"
MIN_FILES = 1000  #: tonic downloads unless this many ``*.aedat4`` files are there
FRAME_SIDE = 48
TRAIN_TENTHS = 9  #: the first 9/10 of each class train
MAX_SHIFT = 5  #: pixels of the training roll, either way
CACHE_FOLDER = "lsg-deploy-cache"
MANIFEST = "files.txt"
_NUMBER = re.compile(r"(\d+)\.aedat4$")


def _import_tonic():
    """tonic, or :class:`DataFilesError` naming what to install (tonic reads AEDAT4 with aedat)."""
    try:
        import aedat  # noqa: F401  (imported by tonic.io.read_aedat4 at every read)
        import tonic
    except ImportError as exc:
        raise DataFilesError(f"CIFAR10-DVS needs tonic and aedat (both in the events extra) to read its AEDAT4 files, "
                             f"and "
                             f"{exc.name or exc} does not import: pip install -e \".[events]\"") from exc
    return tonic


def _check_files(folder: Path, classes: dict[str, int]) -> None:
    """What tonic needs to read ``folder`` without downloading, or :class:`DataFilesError`."""
    expected = (f"expected {folder}/{ARCHIVE} (the published archive) and its recordings extracted beside it, "
                f"{folder}/<class>/cifar10_<class>_<i>.aedat4 for the classes {', '.join(classes)}")
    if not (folder / ARCHIVE).is_file():
        raise DataFilesError(f"CIFAR10-DVS: {folder / ARCHIVE} is missing; {expected}")
    counts = {name: len(list((folder / name).glob("*.aedat4"))) for name in classes}
    if sum(counts.values()) < MIN_FILES:
        found = ", ".join(f"{name} {n}" for name, n in counts.items())
        raise DataFilesError(f"CIFAR10-DVS: {sum(counts.values())} .aedat4 files in the class folders of {folder} "
                             f"({found}), tonic needs at least {MIN_FILES}; {expected}")


def _split_order(paths: list[str], labels: list[int],
                 classes: dict[str, int]) -> tuple[list[int], list[int], list[int]]:
    """Indices into tonic's lists: all recordings sorted by (label, number in the name), then the
    positions in that order of the train and test recordings (first 9/10 of each class, rest)."""
    numbers = []
    for path in paths:
        match = _NUMBER.search(path)
        if match is None:
            raise DataFilesError(f"CIFAR10-DVS: {path} does not end in a sample number like the published "
                                 f"cifar10_<class>_<i>.aedat4, so its place in the train/test split is unknown")
        numbers.append(int(match.group(1)))
    order = sorted(range(len(paths)), key=lambda i: (labels[i], numbers[i], paths[i]))
    train, test = [], []
    for name, label in classes.items():
        positions = [k for k, i in enumerate(order) if labels[i] == label]
        if not positions:
            raise DataFilesError(f"CIFAR10-DVS: no recordings of class {name!r}; every class folder needs its files")
        n_train = len(positions) * TRAIN_TENTHS // 10
        train += positions[:n_train]
        test += positions[n_train:]
    return order, train, test


@dataclass(frozen=True)
class EventFrames:
    """Events -> T frames of event counts per polarity (tonic's ``ToFrame``), resized to 48x48."""

    sensor_size: tuple[int, int, int]  #: tonic's (W, H, P)
    timesteps: int

    def counts(self, events: np.ndarray) -> np.ndarray:
        """(T, P, H, W) int16 event counts, before resizing."""
        from tonic.transforms import ToFrame

        return ToFrame(sensor_size=self.sensor_size, n_time_bins=self.timesteps)(events)

    def __call__(self, events: np.ndarray) -> np.ndarray:
        counts = torch.from_numpy(self.counts(events).astype(np.float32))
        return transforms.Resize((FRAME_SIDE, FRAME_SIDE), antialias=True)(counts).numpy()


@dataclass(frozen=True)
class SpikeFrames:
    """Events -> T binary frames on 48x48 (``dvs_frames = "spikes"``): each event's coordinates
    scaled to the 48x48 grid by integer floor (``x * 48 // W``, ``y * 48 // H``: how an event
    sensor's output is downsampled without interpolation), tonic's ``ToFrame`` on that grid with
    the same time bins as :class:`EventFrames`, then 1 where a pixel had at least one event of
    that polarity in the step. Integers from the start, so a deployment receives exactly these."""

    sensor_size: tuple[int, int, int]  #: tonic's (W, H, P) of the recordings
    timesteps: int

    def __call__(self, events: np.ndarray) -> np.ndarray:
        from tonic.transforms import ToFrame

        width, height, polarities = self.sensor_size
        moved = events.copy()
        moved["x"] = (events["x"].astype(np.int64) * FRAME_SIDE // width).astype(events["x"].dtype)
        moved["y"] = (events["y"].astype(np.int64) * FRAME_SIDE // height).astype(events["y"].dtype)
        counts = ToFrame(sensor_size=(FRAME_SIDE, FRAME_SIDE, polarities), n_time_bins=self.timesteps)(moved)
        return (counts > 0).astype(np.float32)


class _Recordings(Dataset):
    """tonic's dataset in the split order, a corrupt file named in a :class:`DataFilesError`."""

    def __init__(self, dataset, order: list[int]):
        self.dataset, self.order = dataset, order

    def __len__(self) -> int:
        return len(self.order)

    def __getitem__(self, index: int):
        i = self.order[index]
        try:
            return self.dataset[i]
        except RuntimeError as exc:  # what aedat raises for a file it cannot parse
            raise DataFilesError(f"CIFAR10-DVS: reading or framing {self.dataset.data[i]} failed ({exc}); "
                                 f"a truncated or corrupt AEDAT4 file?") from exc


def _cached(tonic, recordings: _Recordings, cache: Path, manifest: str) -> Dataset:
    """``recordings`` behind tonic's disk cache in ``cache``, cleared when ``manifest`` (the
    recordings it holds) changed; ``recordings`` itself, with a warning, where it cannot be written."""
    try:
        cache.mkdir(parents=True, exist_ok=True)
        if not os.access(cache, os.W_OK):
            raise PermissionError(f"{cache} is not writable")
        listed = cache / MANIFEST
        stale = not listed.is_file() or listed.read_text() != manifest
        cached = tonic.DiskCachedDataset(recordings, cache_path=str(cache), reset_cache=stale)
        listed.write_text(manifest)
    except OSError as exc:
        warnings.warn(f"CIFAR10-DVS: no frame cache ({exc}); every recording is framed again every epoch",
                      stacklevel=3)
        return recordings
    return cached


class _Split(Dataset):
    """One split: items of the framed recordings as float tensors, augmented if asked; ``targets``
    holds the labels without reading a file (as in tonic's and torchvision's datasets)."""

    def __init__(self, frames: Dataset, positions: list[int], labels: list[int], augment: bool):
        self.frames, self.positions, self.augment = frames, positions, augment
        self.targets = [labels[k] for k in positions]

    def __len__(self) -> int:
        return len(self.positions)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        frames, label = self.frames[self.positions[index]]
        x = torch.as_tensor(frames, dtype=torch.float32)
        return (flip_and_roll(x) if self.augment else x), int(label)


def flip_and_roll(frames: torch.Tensor, max_shift: int = MAX_SHIFT) -> torch.Tensor:
    """TET's CIFAR10-DVS augmentation of (..., H, W) frames: mirror W with p = 0.5, then roll by
    ``(dy, dx)``, each uniform in ``-max_shift..max_shift``; draws from torch's global RNG."""
    if torch.rand(()) < 0.5:
        frames = frames.flip(-1)
    dy, dx = torch.randint(-max_shift, max_shift + 1, (2,)).tolist()
    return torch.roll(frames, shifts=(dy, dx), dims=(-2, -1))


def cifar10_dvs_datasets(options: FileOptions) -> tuple[Dataset, Dataset]:
    """``(train, test)`` of CIFAR10-DVS in ``options.root`` (see the module docstring)."""
    tonic = _import_tonic()
    classes = tonic.datasets.CIFAR10DVS.classes
    folder = options.root / FOLDER
    if not options.download:
        _check_files(folder, classes)
    sensor = tonic.datasets.CIFAR10DVS.sensor_size
    spikes = options.dvs_frames == "spikes"
    to_frames = SpikeFrames(sensor, options.timesteps) if spikes else EventFrames(sensor, options.timesteps)
    try:
        dataset = tonic.datasets.CIFAR10DVS(save_to=str(options.root), transform=to_frames)
    except KeyError as exc:  # tonic labels a file by its folder's name
        raise DataFilesError(f"CIFAR10-DVS: .aedat4 files in a folder {exc} under {folder} that is not one of the "
                             f"classes {', '.join(classes)}") from exc
    order, train, test = _split_order(dataset.data, dataset.targets, classes)
    manifest = "".join(f"{os.path.relpath(dataset.data[i], dataset.location_on_system)}\n" for i in order)
    cache = folder / CACHE_FOLDER / f"T{options.timesteps}-{FRAME_SIDE}{'-spikes' if spikes else ''}"
    frames = _cached(tonic, _Recordings(dataset, order), cache, manifest)
    labels = [dataset.targets[i] for i in order]
    return _Split(frames, train, labels, options.augment), _Split(frames, test, labels, False)


def integer_split(options: FileOptions, train: bool) -> tuple[np.ndarray, np.ndarray, int]:
    """The integer encoding of one split for a network trained with ``dvs_frames = "spikes"``:
    ``(frames (N, T, 2, 48, 48) uint8 in {0, 1}, labels (N,) int64, 1)``, the training input
    itself (unaugmented); counts resized with interpolation have none (:class:`DataFilesError`)."""
    from training.datasets import _RESIZED

    if options.dvs_frames != "spikes":
        raise DataFilesError(f"cifar10-dvs: {_RESIZED}")
    train_set, test_set = cifar10_dvs_datasets(replace(options, augment=False))
    split = train_set if train else test_set
    frames = np.stack([split[i][0].numpy().astype(np.uint8) for i in range(len(split))])
    return frames, np.asarray(split.targets, dtype=np.int64), 1
