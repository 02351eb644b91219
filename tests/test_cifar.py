"""CIFAR-10 and CIFAR-100 on tiny files in torchvision's real layout: the restricted reader gives
exactly what torchvision's own class gives, augmentation is the recipe's and repeats under a seed,
bad files are one line, resnet19 and vggsnn train on them from the CLI, a network trained without
the normalisation deploys to Loihi with the image's bytes as its integer input, and a training
run's --no-verify-data is never carried into a later command."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from lsg_deploy.cli import main
from tests.datafiles import write_cifar
from training.checkpoint import load_checkpoint
from training.data import DATASETS, DataFilesError, FileOptions, build
from training.data.cifar import STATS


@pytest.fixture(scope="module")
def cifar_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("cifar")
    write_cifar(root, "cifar10", per_file=16)
    write_cifar(root, "cifar100", per_file=40)
    return root


def _options(root: Path, **changes) -> FileOptions:
    return FileOptions(root=root, timesteps=2, verify=False, **changes)


@pytest.mark.parametrize("name, folder, train_files, label_key", [
    ("cifar10", "cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)], "labels"),
    ("cifar100", "cifar-100-python", ["train"], "fine_labels"),
])
def test_test_split_is_the_files_pixels_normalised(cifar_root, name, folder, train_files, label_key):
    train, test = build(name, _options(cifar_root))
    per_file = 16 if name == "cifar10" else 40
    assert (len(train), len(test)) == (per_file * len(train_files), per_file)
    with open(cifar_root / folder / ("test_batch" if name == "cifar10" else "test"), "rb") as f:
        entry = pickle.load(f, encoding="latin1")
    mean, std = (torch.tensor(v).view(3, 1, 1) for v in STATS[name])
    for i in (0, per_file - 1):
        planes = torch.tensor(entry["data"][i].reshape(3, 32, 32), dtype=torch.float32) / 255  # R, G, B planes
        x, label = test[i]
        assert label == entry[label_key][i]
        assert torch.allclose(x, (planes - mean) / std, atol=1e-6)
    assert DATASETS[name].input_shape == tuple(x.shape)


def test_training_augmentation_is_random_and_repeats_under_a_seed(cifar_root):
    train, _ = build("cifar10", _options(cifar_root, cutout=8))
    draws = []
    for seed in (1, 1, 2):
        torch.manual_seed(seed)
        draws.append(torch.stack([train[i][0] for i in range(4)]))
    assert torch.equal(draws[0], draws[1]) and not torch.equal(draws[0], draws[2])
    plain, _ = build("cifar10", _options(cifar_root, augment=False))
    assert not torch.equal(draws[0], torch.stack([plain[i][0] for i in range(4)]))
    # Cutout zeroes a square of the normalised image: some pixel is exactly 0 in all channels
    assert bool(((draws[0] == 0).all(dim=1)).any())


def test_missing_altered_and_broken_files_are_one_line(tmp_path, cifar_root):
    with pytest.raises(DataFilesError, match="lacks data_batch_1, .*no download happens without --download"):
        build("cifar10", _options(tmp_path))
    with pytest.raises(DataFilesError, match="do not match the published MD5 sums; pass --no-verify-data"):
        build("cifar10", FileOptions(root=cifar_root, timesteps=2))
    broken = tmp_path / "broken"
    folder = write_cifar(broken, "cifar10", per_file=4)
    (folder / "data_batch_3").write_bytes(b"not a pickle")
    with pytest.raises(DataFilesError, match=r"data_batch_3 is not a CIFAR pickle"):
        build("cifar10", _options(broken))
    with pytest.raises(DataFilesError, match="does not exist"):
        build("cifar10", _options(tmp_path / "nowhere"))


def test_cli_needs_a_data_dir_for_a_file_dataset(tmp_path, capsys):
    assert main(["train", "--dataset", "cifar10", "--out", str(tmp_path / "run")]) == 2
    assert "give --data-dir" in capsys.readouterr().err
    assert main(["train", "--dataset", "cifar10", "--data-dir", str(tmp_path), "--out", str(tmp_path / "run")]) == 2
    assert "lacks data_batch_1" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("dataset, arch, width, normalize", [("cifar10", "resnet19", 1 / 32, False),
                                                             ("cifar100", "vggsnn", 1 / 16, True)])
def test_resnet19_and_vggsnn_train_on_cifar_from_the_cli(tmp_path, cifar_root, capsys, dataset, arch, width,
                                                         normalize):
    """Both train from the CLI with the recipe's options. The vggsnn, trained on normalised images,
    has no integer input: export says so in one line. The resnet19, trained with
    ``--no-normalize`` (the input is pixels / 255, so the integer input is the image's bytes,
    input_max 255), exports to Loihi at 1/32 width, Lava equals the integer reference on all 19
    layers, and the float model run on the integer encoding is the model training evaluated
    through torchvision's transforms."""
    import json

    out, bundle, report = tmp_path / "run", tmp_path / "bundle", tmp_path / "report.json"
    assert main(["train", "--dataset", dataset, "--data-dir", str(cifar_root), "--no-verify-data", "--arch", arch,
                 "--width", str(width), "--timesteps", "2", "--epochs", "2", "--batch-size", "16", "--optimizer",
                 "sgd", "--lr", "0.05", "--cutout", "8", *([] if normalize else ["--no-normalize"]), "--out", str(out),
                 "--quiet"]) == 0
    model, doc = load_checkpoint(out / "model.pt")
    assert doc["data"]["dataset"] == dataset and doc["config"]["data_dir"] == str(cifar_root)
    assert model.input_shape == (3, 32, 32) and doc["classes"] == DATASETS[dataset].classes
    assert all(np.isfinite(row["train_loss"]) for row in doc["metrics"]) and doc["config"]["normalize"] is normalize
    if normalize:  # export needs an integer encoding of the input, which normalised images do not have
        assert main(["export", "--target", "loihi", str(out / "model.pt"), "--out", str(bundle)]) == 2
        assert "trained on normalised images, which have no integer encoding: train with normalize = false" in \
            capsys.readouterr().err
        assert not bundle.exists()
        return
    # trained with --no-verify-data, which export does not inherit: it checks the MD5 sums unless told
    assert main(["export", "--target", "loihi", str(out / "model.pt"), "--out", str(bundle), "--quiet"]) == 2
    assert "do not match the published MD5 sums; pass --no-verify-data" in capsys.readouterr().err
    assert main(["export", "--target", "loihi", str(out / "model.pt"), "--out", str(bundle), "--quiet",
                 "--no-verify-data"]) == 0
    assert main(["simulate", "--fixed-point", str(bundle), "--limit", "4", "--quiet"]) == 2
    assert "do not match the published MD5 sums" in capsys.readouterr().err
    assert main(["simulate", "--fixed-point", str(bundle), "--backend", "all", "--limit", "4", "--json", str(report),
                 "--quiet", "--no-verify-data"]) == 0
    result = json.loads(report.read_text())
    assert result["exact"]["equal"] is True and len(result["exact"]["mismatches"]) == 19
    assert main(["simulate", str(bundle), "--json", str(report), "--quiet", "--no-verify-data"]) == 0
    assert json.loads(report.read_text())["accuracy"]["float"] == doc["metrics"][-1]["test_accuracy"]
    # the files moved: one line, and --data-dir says where they are now
    moved = tmp_path / "moved"
    cifar_root.rename(moved)
    try:
        assert main(["simulate", str(bundle), "--quiet"]) == 2
        assert "give --data-dir where they are now" in capsys.readouterr().err
        assert main(["simulate", str(bundle), "--data-dir", str(moved), "--limit", "2", "--quiet",
                     "--no-verify-data"]) == 0
    finally:
        moved.rename(cifar_root)


def test_normalize_false_is_for_cifar_only(tmp_path, capsys):
    assert main(["train", "--no-normalize", "--out", str(tmp_path / "run"), "--quiet"]) == 2
    assert "dataset digits has no normalisation to leave out" in capsys.readouterr().err


def test_every_recipe_loads_and_states_the_papers_number():
    import tomllib

    from training.config import TrainConfig

    recipes = sorted((Path(__file__).parent.parent / "recipes").glob("table*.toml"))
    assert len(recipes) == 16  # Table 3's eight LSG rows (DVS with and without TET), Table 2's five widths,
    # Table 1's three modes
    for path in recipes:
        config = TrainConfig.from_toml(path)
        paper = tomllib.loads(path.read_text())["paper"]
        assert path.name.startswith(f"table{paper['table']}-") and DATASETS[config.dataset].files
        assert paper["table"] == "1" or 30 < paper["accuracy"] < 100
    anchors = {"table3-cifar10-resnet19-t2.toml": 94.41, "table3-cifar100-resnet19-t6.toml": 77.13,
               "table3-cifar10dvs-vggsnn-t10.toml": 77.90, "table2-cifar10-resnet19-t2-alpha10.toml": 30.82}
    for name, accuracy in anchors.items():
        assert tomllib.loads((recipes[0].parent / name).read_text())["paper"]["accuracy"] == accuracy


def _torchvision_unverified(name: str):
    """torchvision's own class with its MD5 sums unset (it then only checks that the files exist)."""
    from torchvision import datasets

    cls = datasets.CIFAR10 if name == "cifar10" else datasets.CIFAR100
    return type(f"Unverified{cls.__name__}", (cls,), {
        "train_list": [[file, None] for file, _ in cls.train_list],
        "test_list": [[file, None] for file, _ in cls.test_list],
        "meta": {**cls.meta, "md5": None},
    })


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_the_restricted_reader_gives_what_torchvisions_class_gives(cifar_root, name):
    """The same images (HWC uint8, byte for byte), the same labels (Python ints, in the same
    order) and, under one seed, the same transformed items as torchvision's ``CIFAR10`` /
    ``CIFAR100`` reading the same files with ``pickle.load``; the integer split is its bytes."""
    from training.data.cifar import integer_split, transforms_for

    options = _options(cifar_root)
    ours = build(name, options)
    for train, split in zip((True, False), ours, strict=True):
        reference = _torchvision_unverified(name)(str(cifar_root), train=train,
                                                  transform=transforms_for(name, options, train))
        assert split.data.dtype == np.uint8 and np.array_equal(split.data, reference.data)
        assert split.targets == reference.targets and all(type(v) is int for v in split.targets)
        assert len(split) == len(reference)
        for i in (0, len(split) - 1):
            torch.manual_seed(i)
            x, label = split[i]
            torch.manual_seed(i)
            want, want_label = reference[i]
            assert torch.equal(x, want) and label == want_label
        pixels, labels, input_max = integer_split(name, _options(cifar_root, normalize=False), train)
        assert np.array_equal(pixels, reference.data.transpose(0, 3, 1, 2)) and labels.tolist() == reference.targets
        assert pixels.dtype == np.uint8 and labels.dtype == np.int64 and input_max == 255


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_numpys_pickles_of_any_protocol_and_numpy_1_names_are_read(tmp_path, protocol):
    """The published files are Python 2 pickles naming ``numpy.core.multiarray._reconstruct``
    (numpy 1's module); numpy 2 writes ``numpy._core``, and protocol 5 ``_frombuffer``: all read."""
    from training.data.cifar import read_batch

    data = np.arange(2 * 3072, dtype=np.uint8).reshape(2, 3072)
    raw = pickle.dumps({"data": data, "labels": np.array([3, 9])}, protocol=protocol)
    path = tmp_path / "batch"
    for old in (False, True) if protocol == 2 else (False,):  # protocol 2's GLOBAL: names end at a newline
        body = raw.replace(b"numpy._core.multiarray\n", b"numpy.core.multiarray\n") if old else raw
        assert old is False or body != raw
        path.write_bytes(body)
        got, labels = read_batch("cifar10", path)
        assert np.array_equal(got, data) and labels == [3, 9]


def test_a_failed_download_leaves_nothing_it_created(tmp_path, monkeypatch):
    """torchvision's download helper fails after creating the folder and part of the archive: the
    folders that did not exist are removed, and in an existing --data-dir only what it added."""
    import urllib.error

    import torchvision.datasets.utils as tv_utils

    def partial(url, root, filename, md5):
        Path(root).mkdir(parents=True, exist_ok=True)
        (Path(root) / filename).write_bytes(b"half an archive")
        raise urllib.error.URLError("no network here")  # what urllib raises offline

    monkeypatch.setattr(tv_utils, "download_and_extract_archive", partial)
    with pytest.raises(DataFilesError, match=r"cifar10: downloading https://\S+ into \S+/new/data failed"):
        build("cifar10", FileOptions(tmp_path / "new" / "data", 2, download=True))
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "notes.txt").write_text("mine")
    with pytest.raises(DataFilesError, match="no network here"):
        build("cifar100", FileOptions(tmp_path / "data", 2, download=True))
    assert [p.name for p in (tmp_path / "data").iterdir()] == ["notes.txt"]


def test_a_resumed_run_verifies_the_files_unless_told_again(tmp_path, cifar_root, capsys, monkeypatch):
    """--no-verify-data is not carried from train_state.pt into ``train --resume``."""
    from lsg_deploy import pipeline
    from training import runlog

    out = tmp_path / "run"
    real = runlog.RunLog.epoch

    def stop_at_two(self, model, row, metrics):
        if row["epoch"] == 2:
            raise KeyboardInterrupt  # as a kill after epoch 2's train_state.pt
        real(self, model, row, metrics)

    monkeypatch.setattr(runlog.RunLog, "epoch", stop_at_two)
    with pytest.raises(KeyboardInterrupt):  # the library call: main turns an interrupt into exit 130
        pipeline.train({"dataset": "cifar10", "data_dir": str(cifar_root), "verify_data": False, "width": 0.03125,
                        "timesteps": 2, "epochs": 3, "batch_size": 16}, None, out, quiet=True)
    monkeypatch.setattr(runlog.RunLog, "epoch", real)
    args = ["train", "--out", str(out), "--quiet"]
    capsys.readouterr()
    assert main([*args, "--resume"]) == 2
    assert "do not match the published MD5 sums; pass --no-verify-data" in capsys.readouterr().err
    assert main([*args, "--resume", "--no-verify-data"]) == 0
    _, doc = load_checkpoint(out / "model.pt")
    assert [row["epoch"] for row in doc["metrics"]] == [1, 2, 3] and doc["config"]["verify_data"] is False
