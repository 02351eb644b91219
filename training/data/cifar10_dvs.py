"""CIFAR10-DVS (Li et al. 2017) from a user's files: tonic's dataset, framed and split as in TET.

:func:`cifar10_dvs_datasets` gives ``(train, test)`` with items ``(frames, label)``: ``frames``
float32 (T, 2, 48, 48), each step's event counts per polarity, resized (or binary spike frames,
``dvs_frames = "spikes"``, whose integers :func:`integer_split` gives a deployment); ``label``
0..9 in tonic's class order (airplane, automobile, ..., truck). Facts it rests on, and their sources:

* **Files.** tonic 1.7's ``tonic.datasets.CIFAR10DVS(save_to)`` lists
  ``save_to/CIFAR10DVS/<class>/*.aedat4`` (published as ``cifar10_<class>_<i>.aedat4``,
  ``i = 0..999``). It downloads and extracts the archive unless ``CIFAR10DVS.zip`` is a file there
  and >= 1000 ``*.aedat4`` files lie below (``_check_exists``), so that is checked first unless
  downloading is allowed (a failed download leaves nothing it created). It labels a file by its
  folder's name and lists files with ``os.walk``, in the file system's order. A recording is read
  as tonic's ``CIFAR10DVS.__getitem__`` reads it (:func:`read_recording`: ``tonic.io.read_aedat4``'s
  steps with the ``aedat`` package, the fields renamed ``t, x, y, p``), and refused, naming the
  file, when it cannot be parsed (truncated), holds no events, or has events off the sensor.
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
* **Fixed time slices** (``dvs_slice_ms > 0``, ``--dvs-slice-ms 5``; the LSG paper frames
  CIFAR10-DVS with "a slice every 5 ms"): frame k counts the events in
  ``[t_first + k s, t_first + (k + 1) s)`` for a slice of ``s`` microseconds, k = 0..T-1 (tonic's
  ``ToFrame(time_window=s)``, its first T frames; :func:`slice_counts`), so the T frames cover the
  first ``T s`` of the recording whatever its length (events later are left out; a shorter
  recording ends in empty frames). Our reading of the paper's sentence: it does not say which
  part of a recording the T slices cover. Cached apart (``...-slice5ms/``).
* **Cache.** Framing a recording takes far longer than a training step needs, so every
  recording is framed once, *before* training (so that a bad file is one line, not an error in a
  DataLoader), into ``CIFAR10DVS/lsg-deploy-cache/T{T}-48/``: ``<index>.npy`` per recording
  (``index`` in the split order above; float32 counts, or uint8 spikes), and ``files.json``, each
  entry's recording as (path, size, mtime_ns). An entry is reused only while its recording's
  identity is the one listed, so an edited or truncated recording is read again (and refused if
  unreadable). New entries are written to a staging folder and moved in only once every recording
  has been read: a refused recording leaves the cache (and the data folder) as it was. An entry
  whose recording is unchanged but whose array is not what is written here (shape, dtype, size) is
  refused in one line naming it, rather than silently replaced: nothing here wrote it. A cache
  folder that cannot be written (read-only data) means no cache, with a warning; the recordings
  are then all read and checked first, and framed again every epoch.
* **Augmentation** (training split, ``augment``; TET's ``DVSCifar10``): a horizontal flip with
  p = 0.5, then ``torch.roll`` by ``(dy, dx)`` uniform in -5..5 pixels, drawn from torch's global
  RNG, which the training loop seeds every epoch.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import warnings
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset
from torchvision import transforms

from training.data.file_datasets import missing_ancestors, remove_all
from training.data.records import DataFilesError, FileOptions

FOLDER = "CIFAR10DVS"  #: tonic's ``location_on_system``: ``save_to`` / the dataset class's name
ARCHIVE = "CIFAR10DVS.zip"
MIN_FILES = 1000  #: tonic downloads unless this many ``*.aedat4`` files are there
FRAME_SIDE = 48
TRAIN_TENTHS = 9  #: the first 9/10 of each class train
MAX_SHIFT = 5  #: pixels of the training roll, either way
CACHE_FOLDER = "lsg-deploy-cache"
MANIFEST = "files.json"
CACHE_FORMAT = 1  #: ``files.json``'s ``format``: what an entry holds
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


def slice_counts(events: np.ndarray, sensor_size: tuple[int, int, int], timesteps: int,
                 slice_us: int) -> np.ndarray:
    """(T, P, H, W) int16 event counts in T consecutive slices of ``slice_us`` microseconds from the
    first event (the fixed-time-slice framing, see the module docstring); what tonic's
    ``ToFrame(time_window=slice_us)`` gives as its first T frames, counted here directly so that a
    recording shorter than T slices still gives T frames (its last ones empty)."""
    width, height, polarities = sensor_size
    t = events["t"].astype(np.int64)
    k = (t - t.min()) // slice_us
    keep = k < timesteps
    frames = np.zeros((timesteps, polarities, height, width), dtype=np.int16)
    np.add.at(frames, (k[keep], events["p"][keep].astype(np.int64), events["y"][keep].astype(np.int64),
                       events["x"][keep].astype(np.int64)), 1)
    return frames


def time_bins(events: np.ndarray, sensor_size: tuple[int, int, int], timesteps: int, slice_us: int) -> np.ndarray:
    """(T, P, H, W) event counts: TET's T equal bins of the recording (tonic's
    ``ToFrame(n_time_bins=T)``) when ``slice_us`` is 0, else :func:`slice_counts`."""
    if slice_us:
        return slice_counts(events, sensor_size, timesteps, slice_us)
    from tonic.transforms import ToFrame

    return ToFrame(sensor_size=sensor_size, n_time_bins=timesteps)(events)


@dataclass(frozen=True)
class EventFrames:
    """Events -> T frames of event counts per polarity (tonic's ``ToFrame``), resized to 48x48."""

    sensor_size: tuple[int, int, int]  #: tonic's (W, H, P)
    timesteps: int
    slice_us: int = 0  #: 0: T equal bins of the recording (TET); else fixed slices of this many microseconds

    def counts(self, events: np.ndarray) -> np.ndarray:
        """(T, P, H, W) int16 event counts, before resizing."""
        return time_bins(events, self.sensor_size, self.timesteps, self.slice_us)

    def __call__(self, events: np.ndarray) -> np.ndarray:
        counts = torch.from_numpy(self.counts(events).astype(np.float32))
        return transforms.Resize((FRAME_SIDE, FRAME_SIDE), antialias=True)(counts).numpy()


@dataclass(frozen=True)
class SpikeFrames:
    """Events -> T binary frames on 48x48 (``dvs_frames = "spikes"``): each event's coordinates
    scaled to the 48x48 grid by integer floor (``x * 48 // W``, ``y * 48 // H``: how an event
    sensor's output is downsampled without interpolation), tonic's ``ToFrame`` on that grid with
    the same time bins as :class:`EventFrames`, then 1 where a pixel had at least one event of
    that polarity in the step (time slices as :class:`EventFrames`'). Integers from the start, so
    a deployment receives exactly these."""

    sensor_size: tuple[int, int, int]  #: tonic's (W, H, P) of the recordings
    timesteps: int
    slice_us: int = 0  #: as :class:`EventFrames`'

    def __call__(self, events: np.ndarray) -> np.ndarray:
        width, height, polarities = self.sensor_size
        moved = events.copy()
        moved["x"] = (events["x"].astype(np.int64) * FRAME_SIDE // width).astype(events["x"].dtype)
        moved["y"] = (events["y"].astype(np.int64) * FRAME_SIDE // height).astype(events["y"].dtype)
        counts = time_bins(moved, (FRAME_SIDE, FRAME_SIDE, polarities), self.timesteps, self.slice_us)
        return (counts > 0).astype(np.float32)


def read_recording(path: str, sensor_size: tuple[int, int, int]) -> np.ndarray:
    """The events of one recording, as tonic's ``CIFAR10DVS.__getitem__`` reads them (its
    ``read_aedat4``: the event stream of smallest id, its packets concatenated; fields renamed
    ``t, x, y, p``), or :class:`DataFilesError` naming the file: unparseable (truncated), no event
    stream or no events, or events off the ``sensor_size`` (W, H, P) that framing would index."""
    import aedat

    try:
        decoder = aedat.Decoder(path)
        streams = [sid for sid, stream in decoder.id_to_stream().items() if stream["type"] == "events"]
        packets = [packet["events"] for packet in decoder if streams and packet["stream_id"] == min(streams)]
    except (RuntimeError, OSError, ValueError, KeyError) as exc:  # aedat: RuntimeError for what it cannot parse
        raise DataFilesError(f"CIFAR10-DVS: reading {path} failed ({exc}); a truncated or corrupt AEDAT4 "
                             f"file?") from None
    if not streams:
        raise DataFilesError(f"CIFAR10-DVS: {path} has no event stream")
    if sum(len(p) for p in packets) == 0:
        raise DataFilesError(f"CIFAR10-DVS: {path} holds no events (a header without packets); every recording "
                             f"needs events to make its frames")
    events = np.concatenate(packets)
    events.dtype.names = ["t", "x", "y", "p"]
    width, height, _ = sensor_size
    if int(events["x"].max()) >= width or int(events["y"].max()) >= height:
        raise DataFilesError(f"CIFAR10-DVS: {path} has events outside the {width}x{height} sensor")
    return events


class _Recordings(Dataset):
    """The recordings in the split order, read (:func:`read_recording`) and framed at every item."""

    def __init__(self, paths: list[str], labels: list[int], to_frames, sensor_size: tuple[int, int, int]):
        self.paths, self.labels, self.to_frames, self.sensor_size = paths, labels, to_frames, sensor_size

    def __len__(self) -> int:
        return len(self.paths)

    def frames(self, position: int) -> np.ndarray:
        return self.to_frames(read_recording(self.paths[position], self.sensor_size))

    def __getitem__(self, position: int):
        return self.frames(position), self.labels[position]


class _CachedFrames(Dataset):
    """The frames of :func:`_cached`'s entries, ``(frames, label)`` by position."""

    def __init__(self, folder: Path, labels: list[int]):
        self.folder, self.labels = folder, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, position: int):
        return np.load(self.folder / f"{position}.npy", allow_pickle=False), self.labels[position]


def _identity(path: str, folder: str) -> list:
    """What keys a recording's cache entry: its path under ``folder``, size and mtime_ns."""
    st = os.stat(path)
    return [os.path.relpath(path, folder), st.st_size, st.st_mtime_ns]


def _listed(cache: Path) -> list:
    """The identities ``files.json`` lists (none where it is missing, unreadable or of another format)."""
    try:
        doc = json.loads((cache / MANIFEST).read_text())
    except (OSError, ValueError):
        return []
    if not isinstance(doc, dict) or doc.get("format") != CACHE_FORMAT or not isinstance(doc.get("recordings"), list):
        return []
    return doc["recordings"]


def _entry_fits(entry: Path, shape: tuple[int, ...], dtype: np.dtype) -> str:
    """'' when ``entry`` is a .npy of exactly ``shape`` and ``dtype``, else what it is instead."""
    try:
        with open(entry, "rb") as f:
            major, _ = np.lib.format.read_magic(f)
            read = np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
            found, fortran, found_dtype = read(f)
            offset, size = f.tell(), os.fstat(f.fileno()).st_size
    except (OSError, ValueError) as exc:
        return f"not a .npy array ({exc})"
    if found != shape or found_dtype != dtype or fortran:
        return f"a {found_dtype} array of shape {found}"
    if size != offset + int(np.prod(shape)) * dtype.itemsize:
        return f"{size - offset} bytes of data instead of {int(np.prod(shape)) * dtype.itemsize}"
    return ""


def _cached(recordings: _Recordings, cache: Path, folder: str, shape: tuple[int, ...], dtype: np.dtype) -> Dataset:
    """Every recording's frames in the cache folder ``cache`` (see the module docstring): entries
    whose recording's identity is unchanged are reused, the others framed now; ``recordings``
    itself, all read first, with a warning, where ``cache`` cannot be written."""
    identities = [_identity(path, folder) for path in recordings.paths]
    created = missing_ancestors(cache)
    try:
        cache.mkdir(parents=True, exist_ok=True)
        if not os.access(cache, os.W_OK):
            raise PermissionError(f"{cache} is not writable")
    except OSError as exc:
        remove_all(created)
        warnings.warn(f"CIFAR10-DVS: no frame cache ({exc}); every recording is framed again every epoch",
                      stacklevel=3)
        for position in range(len(recordings)):  # a bad file is one line now, not an error while training
            read_recording(recordings.paths[position], recordings.sensor_size)
        return recordings
    listed = _listed(cache)
    stale = []
    for position, identity in enumerate(identities):
        entry = cache / f"{position}.npy"
        if position >= len(listed) or listed[position] != identity or not entry.is_file():
            stale.append(position)
            continue
        wrong = _entry_fits(entry, shape, dtype)
        if wrong:
            remove_all(created)
            raise DataFilesError(f"CIFAR10-DVS: the frame cache entry {entry} (of {identity[0]}) is {wrong}, not the "
                                 f"{dtype} frames of shape {shape} written here; delete {cache} to rebuild the cache")
    if stale:
        _fill(recordings, cache, stale, identities, shape, dtype, created)
    return _CachedFrames(cache, recordings.labels)


def _fill(recordings: _Recordings, cache: Path, stale: list[int], identities: list, shape: tuple[int, ...],
          dtype: np.dtype, created: list[Path]) -> None:
    """Frame the ``stale`` recordings into a staging folder, then move them in and list them; on
    any failure the staging folder and the folders ``created`` for the cache are removed."""
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=cache))
    try:
        for position in stale:
            frames = recordings.frames(position)
            if frames.shape != shape:
                raise DataFilesError(f"CIFAR10-DVS: {recordings.paths[position]} framed to {frames.shape}, not {shape}")
            np.save(staging / f"{position}.npy", frames.astype(dtype), allow_pickle=False)
        (cache / MANIFEST).unlink(missing_ok=True)  # no entry is trusted while they are moved in
        for position in stale:
            os.replace(staging / f"{position}.npy", cache / f"{position}.npy")
        (staging / MANIFEST).write_text(json.dumps({"format": CACHE_FORMAT, "recordings": identities}))
        os.replace(staging / MANIFEST, cache / MANIFEST)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        remove_all(created)
        raise
    staging.rmdir()


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
    slice_us = round(options.dvs_slice_ms * 1000)
    to_frames = (SpikeFrames if spikes else EventFrames)(sensor, options.timesteps, slice_us)
    leftovers = missing_ancestors(folder) if options.download else []
    try:
        dataset = tonic.datasets.CIFAR10DVS(save_to=str(options.root))
    except KeyError as exc:  # tonic labels a file by its folder's name
        raise DataFilesError(f"CIFAR10-DVS: .aedat4 files in a folder {exc} under {folder} that is not one of the "
                             f"classes {', '.join(classes)}") from exc
    except BaseException as exc:  # a download that failed: leave nothing it created
        remove_all(leftovers)
        if isinstance(exc, (OSError, RuntimeError)):
            raise DataFilesError(f"CIFAR10-DVS: downloading into {options.root} failed ({exc})") from None
        raise
    order, train, test = _split_order(dataset.data, dataset.targets, classes)
    labels = [dataset.targets[i] for i in order]
    recordings = _Recordings([dataset.data[i] for i in order], labels, to_frames, sensor)
    cache = folder / CACHE_FOLDER / (f"T{options.timesteps}-{FRAME_SIDE}{'-spikes' if spikes else ''}"
                                     f"{f'-slice{slice_us}us' if slice_us else ''}")
    shape = (options.timesteps, sensor[2], FRAME_SIDE, FRAME_SIDE)
    frames = _cached(recordings, cache, dataset.location_on_system, shape, np.dtype(np.uint8 if spikes else np.float32))
    return _Split(frames, train, labels, options.augment), _Split(frames, test, labels, False)


def integer_split(options: FileOptions, train: bool) -> tuple[np.ndarray, np.ndarray, int]:
    """The integer encoding of one split for a network trained with ``dvs_frames = "spikes"``:
    ``(frames (N, T, 2, 48, 48) uint8 in {0, 1}, labels (N,) int64, 1)``, the training input
    itself (unaugmented); counts resized with interpolation have none (:class:`DataFilesError`)."""
    from training.data.file_datasets import _RESIZED

    if options.dvs_frames != "spikes":
        raise DataFilesError(f"cifar10-dvs: {_RESIZED}")
    train_set, test_set = cifar10_dvs_datasets(replace(options, augment=False))
    split = train_set if train else test_set
    frames = np.stack([split[i][0].numpy().astype(np.uint8) for i in range(len(split))])
    return frames, np.asarray(split.targets, dtype=np.int64), 1
