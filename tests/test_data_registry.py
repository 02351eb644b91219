"""One dataset registry (training/data/): every dataset in it, the encodings named as the bundle
names them, and the registry with the embedded datasets loading where torch is not installed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from hardware import graph
from training import data

ROOT = Path(__file__).resolve().parents[1]

#: a child that cannot import torch (as where it is not installed), then loads digits' test split
WITHOUT_TORCH = """
import sys

class NoTorch:  # an import of torch or of a torch submodule fails
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] == "torch":
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)

sys.meta_path.insert(0, NoTorch())
import json

import training
from training.data import DataSpec, load

_, test, classes = load(DataSpec("digits"))
print(json.dumps({"pixels": test.pixels.tolist(), "labels": test.labels.tolist(), "classes": classes,
                  "input_max": test.input_max, "encoding": test.encoding,
                  "imported": sorted(m for m in sys.modules if m.partition(".")[0] in ("torch", "hardware", "export",
                                                                                        "lsg_deploy"))}))
"""


def test_the_encodings_are_the_bundles():
    """training names the encodings without importing hardware; they must be the bundle's names."""
    assert (data.DIRECT, data.EVENT_FRAMES, data.ENCODINGS) == (graph.DIRECT, graph.EVENT_FRAMES, graph.ENCODINGS)


def test_the_registry_and_the_digits_load_without_torch():
    # a meta-path block rather than sys.modules["torch"] = None: scipy (under scikit-learn) reads
    # sys.modules["torch"] and fails on a None there, where torch is merely absent it does not
    child = subprocess.run([sys.executable, "-c", WITHOUT_TORCH], cwd=ROOT, capture_output=True, text=True)
    assert child.returncode == 0, child.stderr
    _, test, classes = data.load(data.DataSpec("digits"))
    assert json.loads(child.stdout) == {"pixels": test.pixels.tolist(), "labels": test.labels.tolist(),
                                        "classes": classes, "input_max": 16, "encoding": "direct", "imported": []}


def test_one_registry_holds_the_embedded_and_the_file_datasets():
    assert list(data.DATASETS) == ["digits", "digits-events", "cifar10", "cifar100", "cifar10-dvs"]
    embedded = {n: d for n, d in data.DATASETS.items() if not d.files}
    assert {n: (d.encoding, d.input_max) for n, d in embedded.items()} == {
        "digits": ("direct", 16), "digits-events": ("event-frames", 1)}
    files = {n: (d.encoding, d.classes, d.input_shape) for n, d in data.DATASETS.items() if d.files}
    assert files == {"cifar10": ("direct", 10, (3, 32, 32)), "cifar100": ("direct", 100, (3, 32, 32)),
                     "cifar10-dvs": ("event-frames", 10, (2, 48, 48))}
    assert all(d.input_max is None and d.integer is not None and d.no_integer for d in data.DATASETS.values()
               if d.files)


def test_build_takes_file_datasets_only(tmp_path):
    with pytest.raises(data.DataFilesError, match=r"^unknown file dataset 'digits'; available: cifar10, cifar100, "
                                                  r"cifar10-dvs$"):
        data.build("digits", data.FileOptions(tmp_path, 4))
    with pytest.raises(data.DataError, match="no timesteps"):
        data.load(data.DataSpec("digits-events"))


def test_a_file_dataset_without_its_integer_encoding_says_how_to_get_one(tmp_path):
    spec = data.DataSpec("cifar10")
    with pytest.raises(data.DataError, match="normalize = false"):
        data.load(spec, files=data.FileSource(str(tmp_path), normalize=True))
    with pytest.raises(data.DataError, match="give --data-dir"):
        data.load(spec, files=data.FileSource("", normalize=False))
