"""CIFAR-10 and CIFAR-100 through torchvision, on tiny files in torchvision's real layout: the
files are read as written, augmentation is the recipe's and repeats under a seed, bad files are
one line, resnet19 and vggsnn train on them from the CLI, and a network trained without the
normalisation deploys to Loihi with the image's bytes as its integer input."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from lsg_deploy.cli import main
from tests.datafiles import write_cifar
from training.checkpoint import load_checkpoint
from training.datasets import FILE_DATASETS, DataFilesError, FileOptions, build
from training.datasets.cifar import STATS


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
    assert FILE_DATASETS[name].input_shape == tuple(x.shape)


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
    with pytest.raises(DataFilesError, match="are not CIFAR pickles"):
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
    assert model.input_shape == (3, 32, 32) and doc["classes"] == FILE_DATASETS[dataset].classes
    assert all(np.isfinite(row["train_loss"]) for row in doc["metrics"]) and doc["config"]["normalize"] is normalize
    if normalize:  # export needs an integer encoding of the input, which normalised images do not have
        assert main(["export", "--target", "loihi", str(out / "model.pt"), "--out", str(bundle)]) == 2
        assert "trained on normalised images, which have no integer encoding: train with normalize = false" in \
            capsys.readouterr().err
        assert not bundle.exists()
        return
    assert main(["export", "--target", "loihi", str(out / "model.pt"), "--out", str(bundle), "--quiet"]) == 0
    assert main(["simulate", "--fixed-point", str(bundle), "--backend", "all", "--limit", "4", "--json", str(report),
                 "--quiet"]) == 0
    result = json.loads(report.read_text())
    assert result["exact"]["equal"] is True and len(result["exact"]["mismatches"]) == 19
    assert main(["simulate", str(bundle), "--json", str(report), "--quiet"]) == 0
    assert json.loads(report.read_text())["accuracy"]["float"] == doc["metrics"][-1]["test_accuracy"]
    # the files moved: one line, and --data-dir says where they are now
    moved = tmp_path / "moved"
    cifar_root.rename(moved)
    try:
        assert main(["simulate", str(bundle), "--quiet"]) == 2
        assert "give --data-dir where they are now" in capsys.readouterr().err
        assert main(["simulate", str(bundle), "--data-dir", str(moved), "--limit", "2", "--quiet"]) == 0
    finally:
        moved.rename(cifar_root)


def test_normalize_false_is_for_cifar_only(tmp_path, capsys):
    assert main(["train", "--no-normalize", "--out", str(tmp_path / "run"), "--quiet"]) == 2
    assert "dataset digits has no normalisation to leave out" in capsys.readouterr().err


def test_every_recipe_loads_and_states_the_papers_number():
    import tomllib

    from training.config import TrainConfig

    recipes = sorted((Path(__file__).parent.parent / "recipes").glob("table*.toml"))
    assert len(recipes) == 15  # Table 3's seven LSG rows, Table 2's five widths, Table 1's three modes
    for path in recipes:
        config = TrainConfig.from_toml(path)
        paper = tomllib.loads(path.read_text())["paper"]
        assert path.name.startswith(f"table{paper['table']}-") and config.dataset in FILE_DATASETS
        assert paper["table"] == "1" or 30 < paper["accuracy"] < 100
    anchors = {"table3-cifar10-resnet19-t2.toml": 94.41, "table3-cifar100-resnet19-t6.toml": 77.13,
               "table3-cifar10dvs-vggsnn-t10.toml": 77.90, "table2-cifar10-resnet19-t2-alpha10.toml": 30.82}
    for name, accuracy in anchors.items():
        assert tomllib.loads((recipes[0].parent / name).read_text())["paper"]["accuracy"] == accuracy
