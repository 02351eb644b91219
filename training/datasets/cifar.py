"""CIFAR-10 and CIFAR-100 through torchvision's own dataset classes and transforms.

Files: torchvision's layout under ``--data-dir``, ``cifar-10-batches-py/{data_batch_1..5,
test_batch,batches.meta}`` or ``cifar-100-python/{train,test,meta}`` (pickles of uint8 N x 3072 R/G/B
planes). torchvision checks the published MD5 sums of every file; ``verify=False`` accepts other
files of the same format (a subset, a relabelled copy, the tests' tiny fixtures) through subclasses
whose sums are unset, which torchvision's ``check_integrity`` reads as "the file exists".

Training augmentation (the seed paper's recipe, from the tdBN/TET lineage): RandomCrop(32,
padding 4), horizontal flip, AutoAugment's CIFAR10 policy (optional), normalisation with the
per-channel statistics, then Cutout (optional; DeVries & Taylor 2017: one square of zeros at a
uniformly drawn centre, clipped at the border). The test split is only normalised. Every random
choice comes from torch's global RNG, which the training loop seeds per epoch.

``normalize = false`` leaves the normalisation out: the input is ``pixels / 255``, and
:func:`integer_split` gives a deployment the same images as integers (the files' bytes).
"""

from __future__ import annotations

import os
import pickle

import numpy as np
import torch
from torch.utils.data import Dataset

from training.datasets import DataFilesError, FileOptions

#: per-channel mean and std of the training images (the values the tdBN/TET code uses)
STATS = {
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
}
SIDE, PADDING = 32, 4


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


def _classes(name: str):
    from torchvision import datasets

    return datasets.CIFAR10 if name == "cifar10" else datasets.CIFAR100


def _unverified(cls):
    """``cls`` with every MD5 sum unset: torchvision then only checks that the files exist."""
    return type(f"Unverified{cls.__name__}", (cls,), {
        "train_list": [[name, None] for name, _ in cls.train_list],
        "test_list": [[name, None] for name, _ in cls.test_list],
        "meta": {**cls.meta, "md5": None},
    })


def _check_files(name: str, cls, options: FileOptions) -> None:
    """Say what is missing or altered before torchvision says 'not found or corrupted'."""
    from torchvision.datasets.utils import check_integrity

    folder = options.root / cls.base_folder
    listed = [*cls.train_list, *cls.test_list, [cls.meta["filename"], cls.meta["md5"]]]
    missing = [file for file, _ in listed if not (folder / file).is_file()]
    if missing:
        raise DataFilesError(f"{name}: {folder} lacks {', '.join(missing)} (torchvision's layout, from "
                             f"{cls.filename}); no download happens without --download")
    if options.verify:
        altered = [file for file, md5 in listed if not check_integrity(os.fspath(folder / file), md5)]
        if altered:
            raise DataFilesError(f"{name}: {', '.join(altered)} in {folder} do not match the published MD5 sums; "
                                 f"pass --no-verify-data to use these files anyway (a subset or another copy "
                                 f"in the same format)")


def cifar_datasets(name: str, options: FileOptions) -> tuple[Dataset, Dataset]:
    """``(train, test)`` of ``cifar10`` or ``cifar100``: (3, 32, 32) float tensors and int labels."""
    cls = _classes(name)
    if not options.download:
        _check_files(name, cls, options)
    if not options.verify:
        cls = _unverified(cls)
    try:
        return tuple(cls(os.fspath(options.root), train=train, transform=transforms_for(name, options, train),
                         download=options.download) for train in (True, False))
    except (pickle.UnpicklingError, EOFError, KeyError, ValueError, TypeError, AttributeError) as exc:
        raise DataFilesError(f"{name}: the files under {options.root / cls.base_folder} are not CIFAR pickles "
                             f"({type(exc).__name__}: {exc})") from None
    except RuntimeError as exc:  # torchvision: not found or corrupted (after a download attempt)
        raise DataFilesError(f"{name}: {exc}") from None


#: a CIFAR image's integer encoding: its bytes, the float input times 255 (``normalize = false``)
PIXEL_MAX = 255


def integer_split(name: str, options: FileOptions, train: bool) -> tuple[np.ndarray, np.ndarray, int]:
    """The integer encoding of one split of ``cifar10`` or ``cifar100`` for a network trained with
    ``normalize = false``: ``(pixels (N, 3, 32, 32) uint8, labels (N,) int64, 255)``, the files'
    bytes in torchvision's order (the float model's test input is exactly ``pixels / 255``)."""
    from training.datasets import _NORMALISED

    if options.normalize:
        raise DataFilesError(f"{name}: {_NORMALISED}")
    cls = _classes(name)
    _check_files(name, cls, options)
    if not options.verify:
        cls = _unverified(cls)
    try:
        split = cls(os.fspath(options.root), train=train, download=False)
    except (pickle.UnpicklingError, EOFError, KeyError, ValueError, TypeError, AttributeError) as exc:
        raise DataFilesError(f"{name}: the files under {options.root / cls.base_folder} are not CIFAR pickles "
                             f"({type(exc).__name__}: {exc})") from None
    except RuntimeError as exc:
        raise DataFilesError(f"{name}: {exc}") from None
    return (np.ascontiguousarray(split.data.transpose(0, 3, 1, 2)), np.asarray(split.targets, dtype=np.int64),
            PIXEL_MAX)
