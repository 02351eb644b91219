"""CIFAR-10 and CIFAR-100 from a user's files, read by a restricted unpickler, with torchvision's transforms.

Files: torchvision's layout under ``--data-dir``, ``cifar-10-batches-py/{data_batch_1..5,
test_batch,batches.meta}`` or ``cifar-100-python/{train,test,meta}``: pickles (``encoding =
"latin1"``) of a dict whose ``data`` is a uint8 N x 3072 array of R/G/B planes and whose
``labels`` (CIFAR-10) or ``fine_labels`` (CIFAR-100) are N class indices; the meta file names the
classes (``label_names`` / ``fine_label_names``). The names, published MD5 sums and download
address are torchvision's (its ``CIFAR10`` / ``CIFAR100`` class attributes).

**Reading.** A pickle runs whatever its globals name, and the MD5 check is skipped by
``--no-verify-data``, so these files are never given to :func:`pickle.load` (nor to torchvision's
class, which does): :class:`_CifarUnpickler` resolves only the globals the format needs (numpy's
array and dtype reconstruction, and the latin-1 ``_codecs.encode`` of byte strings pickled by
Python 3) and refuses every other one before anything runs. What comes out is checked strictly
(:func:`read_batch`, :func:`read_meta`) and held by :class:`CifarSplit`, whose items are
torchvision's ``CIFAR10.__getitem__``'s: ``PIL.Image.fromarray`` of the (32, 32, 3) uint8 image,
then the transform. ``verify`` (the default) also checks the published MD5 sums (hashlib).

Training augmentation (the seed paper's recipe, from the tdBN/TET lineage): RandomCrop(32,
padding 4), horizontal flip, AutoAugment's CIFAR10 policy (optional), normalisation with the
per-channel statistics, then Cutout (optional; DeVries & Taylor 2017: one square of zeros at a
uniformly drawn centre, clipped at the border). The test split is only normalised. Every random
choice comes from torch's global RNG, which the training loop seeds per epoch.

``normalize = false`` leaves the normalisation out: the input is ``pixels / 255``, and
:func:`integer_split` gives a deployment the same images as integers (the files' bytes).
"""

from __future__ import annotations

import hashlib
import http.client
import io
import pickle
import tarfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from training.data.file_datasets import missing_ancestors, remove_all
from training.data.records import DataFilesError, FileOptions

#: per-channel mean and std of the training images (the values the tdBN/TET code uses)
STATS = {
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
}
SIDE, PADDING = 32, 4
PIXELS = 3 * SIDE * SIDE  #: one image's bytes in a file's ``data`` row: the R, G and B planes
CLASSES = {"cifar10": 10, "cifar100": 100}
#: the label and class-name keys of each dataset's batches and meta file (torchvision reads the same)
LABEL_KEY = {"cifar10": "labels", "cifar100": "fine_labels"}
NAMES_KEY = {"cifar10": "label_names", "cifar100": "fine_label_names"}


class Cutout:
    """Zero one ``size`` x ``size`` square of a (C, H, W) tensor at a uniformly drawn centre."""

    def __init__(self, size: int):
        self.size = size

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        h, w = image.shape[-2:]
        cy, cx = (int(torch.randint(n, ())) for n in (h, w))
        y0, y1 = max(0, cy - self.size // 2), min(h, cy + self.size - self.size // 2)
        x0, x1 = max(0, cx - self.size // 2), min(w, cx + self.size - self.size // 2)
        image = image.clone()
        image[..., y0:y1, x0:x1] = 0
        return image

    def __repr__(self) -> str:
        return f"Cutout(size={self.size})"


def transforms_for(name: str, options: FileOptions, train: bool):
    from torchvision import transforms as T

    mean, std = STATS[name]
    steps = []
    if train and options.augment:
        steps += [T.RandomCrop(SIDE, padding=PADDING), T.RandomHorizontalFlip()]
        if options.autoaugment:
            steps.append(T.AutoAugment(T.AutoAugmentPolicy.CIFAR10))
    steps += [T.ToTensor(), *([T.Normalize(mean, std)] if options.normalize else [])]
    if train and options.augment and options.cutout:
        steps.append(Cutout(options.cutout))
    return T.Compose(steps)


# --- the files -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Layout:
    """One dataset's files, as torchvision publishes and checks them."""

    name: str
    folder: str  #: under ``--data-dir``
    train: tuple[tuple[str, str], ...]  #: (file, published MD5), in torchvision's order
    test: tuple[tuple[str, str], ...]
    meta: tuple[str, str]
    url: str
    archive: str
    archive_md5: str

    @property
    def files(self) -> tuple[tuple[str, str], ...]:
        return (*self.train, *self.test, self.meta)


def layout(name: str) -> Layout:
    """torchvision's ``CIFAR10`` / ``CIFAR100`` class attributes, which nothing here instantiates."""
    from torchvision import datasets

    cls = datasets.CIFAR10 if name == "cifar10" else datasets.CIFAR100
    return Layout(name, cls.base_folder, tuple(map(tuple, cls.train_list)), tuple(map(tuple, cls.test_list)),
                  (cls.meta["filename"], cls.meta["md5"]), cls.url, cls.filename, cls.tgz_md5)


def _latin1_encode(text, encoding):
    """``_codecs.encode`` as Python 3 pickles ``bytes`` at protocols < 3, for latin-1 only."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError(f"_codecs.encode({type(text).__name__}, {encoding!r}) is not a byte string")
    return text.encode("latin1")


def _numpy_globals() -> dict[tuple[str, str], object]:
    """The globals a pickled numpy array needs, under the module names numpy 1 and 2 write,
    resolved from the objects themselves (nothing is imported by name)."""
    probe = np.zeros(1, np.uint8)
    reconstruct = probe.__reduce__()[0]  # numpy's multiarray._reconstruct
    frombuffer = probe.__reduce_ex__(5)[0]  # numpy's numeric._frombuffer (protocol 5)
    return {
        ("numpy.core.multiarray", "_reconstruct"): reconstruct,
        ("numpy._core.multiarray", "_reconstruct"): reconstruct,
        ("numpy.core.numeric", "_frombuffer"): frombuffer,
        ("numpy._core.numeric", "_frombuffer"): frombuffer,
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("_codecs", "encode"): _latin1_encode,
    }


class _Refused(pickle.UnpicklingError):
    """A global the CIFAR format never holds."""


class _CifarUnpickler(pickle.Unpickler):
    """An unpickler that resolves only :func:`_numpy_globals` and refuses every other global
    before importing or calling it."""

    allowed = _numpy_globals()

    def find_class(self, module: str, name: str):
        try:
            return self.allowed[(module, name)]
        except (KeyError, TypeError):
            raise _Refused(f"{module}.{name}") from None

    def persistent_load(self, pid):
        raise pickle.UnpicklingError("a persistent id")


#: what an unpickler or numpy's reconstruction raises on bytes that are not a well-formed pickle
_MALFORMED = (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError,
              OverflowError, MemoryError, RecursionError)


def _unpickle(path: Path, what: str) -> dict:
    """The dict pickled in ``path``, read by :class:`_CifarUnpickler`, or :class:`DataFilesError`."""
    data = path.read_bytes()
    try:
        entry = _CifarUnpickler(io.BytesIO(data), encoding="latin1").load()
    except _Refused as exc:
        raise DataFilesError(f"{what}: {path} names the global {exc}, which a CIFAR file never holds (only numpy "
                             f"arrays, lists and strings): refused without running it") from None
    except _MALFORMED as exc:
        raise DataFilesError(f"{what}: {path} is not a CIFAR pickle ({type(exc).__name__}: {exc})") from None
    if not isinstance(entry, dict):
        raise DataFilesError(f"{what}: {path} holds a {type(entry).__name__}, not a CIFAR batch's dict")
    return entry


def read_batch(name: str, path: Path) -> tuple[np.ndarray, list[int]]:
    """``(data (N, 3072) uint8, labels)`` of one batch file of ``name``, checked: the array a
    uint8 (N, 3072), N >= 1, and N integer labels in ``[0, classes)``."""
    entry = _unpickle(path, name)
    key, classes = LABEL_KEY[name], CLASSES[name]
    if "data" not in entry or key not in entry:
        raise DataFilesError(f"{name}: {path} lacks {' and '.join(k for k in ('data', key) if k not in entry)} "
                             f"(a CIFAR batch holds 'data' and '{key}')")
    data = entry["data"]
    if type(data) is not np.ndarray or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != PIXELS \
            or data.shape[0] < 1:
        shown = f"{data.dtype} array of shape {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise DataFilesError(f"{name}: {path}'s data is a {shown}, not uint8 pixels of shape (N, {PIXELS})")
    labels = entry[key]
    if isinstance(labels, np.ndarray) and labels.ndim == 1 and labels.dtype.kind in "iu":
        labels = labels.tolist()
    if not isinstance(labels, list) or any(type(v) is not int for v in labels):
        raise DataFilesError(f"{name}: {path}'s {key} are not a list of integers")
    if len(labels) != len(data):
        raise DataFilesError(f"{name}: {path} holds {len(data)} images and {len(labels)} {key}")
    bad = [v for v in labels if not 0 <= v < classes]
    if bad:
        raise DataFilesError(f"{name}: {path}'s {key} hold {bad[0]}, outside 0..{classes - 1}"
                             f"{f' ({len(bad)} of them)' if len(bad) > 1 else ''}")
    return np.ascontiguousarray(data), labels


def read_meta(name: str, path: Path) -> list[str]:
    """The class names of ``name``'s meta file, checked: ``classes`` strings."""
    entry = _unpickle(path, name)
    key, classes = NAMES_KEY[name], CLASSES[name]
    names = entry.get(key)
    if not isinstance(names, list) or len(names) != classes or any(not isinstance(n, str) for n in names):
        raise DataFilesError(f"{name}: {path}'s {key} is not a list of {classes} class names")
    return names


def _md5(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _check_files(files: Layout, options: FileOptions) -> None:
    """Say what is missing or, with ``verify``, not the published file."""
    folder = options.root / files.folder
    missing = [file for file, _ in files.files if not (folder / file).is_file()]
    if missing:
        raise DataFilesError(f"{files.name}: {folder} lacks {', '.join(missing)} (torchvision's layout, from "
                             f"{files.archive}); no download happens without --download")
    if options.verify:
        altered = [file for file, md5 in files.files if _md5(folder / file) != md5]
        if altered:
            raise DataFilesError(f"{files.name}: {', '.join(altered)} in {folder} do not match the published MD5 "
                                 f"sums; pass --no-verify-data to use these files anyway (a subset or another copy "
                                 f"in the same format)")


def _download(files: Layout, options: FileOptions) -> None:
    """torchvision's download of the archive into ``options.root``, unless every file is there
    (and, with ``verify``, the published one); on failure nothing it created is left: not the root
    and the folders above it that did not exist, the archive, nor the extracted folder."""
    from torchvision.datasets.utils import download_and_extract_archive

    root = options.root
    folder = root / files.folder
    if all((folder / file).is_file() and (not options.verify or _md5(folder / file) == md5)
           for file, md5 in files.files):
        return
    leftovers = missing_ancestors(root / files.archive, folder)
    try:
        download_and_extract_archive(files.url, str(root), filename=files.archive, md5=files.archive_md5)
    except BaseException as exc:
        remove_all(leftovers)
        if isinstance(exc, (OSError, RuntimeError, http.client.HTTPException, tarfile.TarError)):
            raise DataFilesError(f"{files.name}: downloading {files.url} into {root} failed ({exc})") from None
        raise


def read_split(name: str, options: FileOptions, train: bool) -> tuple[np.ndarray, list[int]]:
    """One split's ``(data (N, 3072) uint8, labels)``, its batches concatenated in torchvision's
    order, the files and the meta file checked first (see :func:`read_batch`)."""
    files = layout(name)
    _check_files(files, options)
    folder = options.root / files.folder
    read_meta(name, folder / files.meta[0])
    batches = [read_batch(name, folder / file) for file, _ in (files.train if train else files.test)]
    return np.concatenate([data for data, _ in batches]), [v for _, labels in batches for v in labels]


class CifarSplit(Dataset):
    """One split held in memory: ``data`` (N, 32, 32, 3) uint8 images and ``targets`` (N ints);
    an item is torchvision's ``CIFAR10.__getitem__``'s, ``(transform(Image.fromarray(image)), label)``."""

    def __init__(self, data: np.ndarray, targets: list[int], transform=None):
        self.data, self.targets, self.transform = data, targets, transform

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int):
        from PIL import Image

        image = Image.fromarray(self.data[index])
        return (self.transform(image) if self.transform is not None else image), self.targets[index]


def _hwc(data: np.ndarray) -> np.ndarray:
    """(N, 3072) R/G/B planes -> (N, 32, 32, 3), as torchvision holds them."""
    return data.reshape(-1, 3, SIDE, SIDE).transpose(0, 2, 3, 1)


def cifar_datasets(name: str, options: FileOptions) -> tuple[Dataset, Dataset]:
    """``(train, test)`` of ``cifar10`` or ``cifar100``: (3, 32, 32) float tensors and int labels."""
    if options.download:
        _download(layout(name), options)
    splits = []
    for train in (True, False):
        data, labels = read_split(name, options, train)
        splits.append(CifarSplit(_hwc(data), labels, transforms_for(name, options, train)))
    return tuple(splits)


#: a CIFAR image's integer encoding: its bytes, the float input times 255 (``normalize = false``)
PIXEL_MAX = 255


def integer_split(name: str, options: FileOptions, train: bool) -> tuple[np.ndarray, np.ndarray, int]:
    """The integer encoding of one split of ``cifar10`` or ``cifar100`` for a network trained with
    ``normalize = false``: ``(pixels (N, 3, 32, 32) uint8, labels (N,) int64, 255)``, the files'
    bytes (the float model's test input is exactly ``pixels / 255``)."""
    from training.data.file_datasets import _NORMALISED

    if options.normalize:
        raise DataFilesError(f"{name}: {_NORMALISED}")
    data, labels = read_split(name, options, train)
    return data.reshape(-1, 3, SIDE, SIDE), np.asarray(labels, dtype=np.int64), PIXEL_MAX
