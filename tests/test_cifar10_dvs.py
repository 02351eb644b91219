"""``cifar10-dvs``: AEDAT4 files written by the tests' own writer (tests/datafiles.py) and read by
aedat/tonic, and :mod:`training.data.cifar10_dvs` on a synthetic tree in the published layout:
the TET split, tonic's framing, the frame cache keyed by T and by each recording's identity, the
training augmentation, and the errors for missing, truncated, empty and off-sensor recordings and
for a foreign cache entry (each before any training, leaving the data folder as it was), all
without touching the network."""

from __future__ import annotations

import json
import socket
import sys
from pathlib import Path

import aedat
import numpy as np
import pytest
import tonic
import torch
from torchvision import transforms

from tests.datafiles import (
    CIFAR10_DVS_CLASSES,
    EVENT_DTYPE,
    cifar10_dvs_events,
    write_aedat4,
    write_aedat4_header_only,
    write_cifar10_dvs,
)
from training.data import DataFilesError, FileOptions
from training.data import cifar10_dvs as dvs
from training.data.cifar10_dvs import EventFrames, cifar10_dvs_datasets, flip_and_roll

T = 3
PER_CLASS = 100
SENSOR = tonic.datasets.CIFAR10DVS.sensor_size


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Any download or connection fails the test."""
    def refuse(*args, **kwargs):
        pytest.fail("the network was used")

    monkeypatch.setattr(tonic.dataset.Dataset, "download", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    """A 10 x 100 synthetic CIFAR10-DVS; returns the ``--data-dir``."""
    root = tmp_path_factory.mktemp("cifar10dvs")
    write_cifar10_dvs(root, per_class=PER_CLASS, seed=0)
    return root


def recording(root: Path, name: str, i: int) -> np.ndarray:
    """The events of ``<name>/cifar10_<name>_<i>.aedat4``, as tonic's dataset reads them."""
    events = tonic.io.read_aedat4(str(root / "CIFAR10DVS" / name / f"cifar10_{name}_{i}.aedat4"))
    events.dtype.names = ["t", "x", "y", "p"]
    return events


def expected_frames(events: np.ndarray, timesteps: int = T) -> torch.Tensor:
    return transforms.Resize((48, 48), antialias=True)(torch.from_numpy(EventFrames(SENSOR, timesteps).counts(events)
                                                                         .astype(np.float32)))


def test_write_aedat4_round_trips_through_tonic(tmp_path):
    rng = np.random.default_rng(5)
    events = np.zeros(1000, EVENT_DTYPE)
    events["t"] = np.sort(rng.integers(0, 2**40, len(events)))
    events["x"], events["y"] = rng.integers(0, 128, (2, len(events)))
    events["x"][:2], events["y"][:2] = (0, 127), (127, 0)
    events["p"] = rng.random(len(events)) < 0.5
    path = tmp_path / "sample.aedat4"
    write_aedat4(path, events, packet_size=300)  # four packets, the last one short

    assert path.read_bytes().startswith(b"#!AER-DAT4.0\r\n")
    assert aedat.Decoder(str(path)).id_to_stream() == {0: {"type": "events", "width": 128, "height": 128}}
    back = tonic.io.read_aedat4(str(path))
    assert len(back) == len(events)
    for name, written in (("t", "t"), ("x", "x"), ("y", "y"), ("on", "p")):
        assert (back[name].astype(np.int64) == events[written].astype(np.int64)).all(), name


def test_split_is_tets_in_natural_file_order(tree):
    train, test = cifar10_dvs_datasets(FileOptions(tree, T, augment=False))
    assert (len(train), len(test)) == (900, 100)
    assert train.targets == [c for c in range(10) for _ in range(90)]
    assert test.targets == [c for c in range(10) for _ in range(10)]
    test_labels = [label for _, label in test]
    assert test_labels == test.targets and all(type(label) is int for label in test_labels)
    # samples 0..89 of each class train and 90..99 test, in the order of their numbers (2 before 10)
    for split, position, name, i in ((train, 2, "airplane", 2), (train, 10, "airplane", 10),
                                     (train, 89, "airplane", 89), (train, 90, "automobile", 0),
                                     (test, 0, "airplane", 90), (test, 99, "truck", 99)):
        x, label = split[position]
        assert label == CIFAR10_DVS_CLASSES.index(name)
        assert torch.equal(x, expected_frames(recording(tree, name, i))), (position, name, i)


def test_items_are_float_frames_and_test_items_repeat(tree):
    _, test = cifar10_dvs_datasets(FileOptions(tree, T))
    x, _ = test[7]
    assert x.shape == (T, 2, 48, 48) and x.dtype == torch.float32
    assert x.sum() > 0
    torch.manual_seed(0)
    first = test[7][0]
    torch.manual_seed(1)
    assert torch.equal(test[7][0], first)  # never augmented, whatever the RNG


def test_synthetic_classes_are_separable(tree):
    """The fixture is worth training on: the class means of 10 training samples each classify the test split."""
    train, test = cifar10_dvs_datasets(FileOptions(tree, T, augment=False))
    x_train = torch.stack([train[90 * c + i][0] for c in range(10) for i in range(10)]).flatten(1)
    means = x_train.view(10, 10, -1).mean(1)
    x_test = torch.stack([x for x, _ in test]).flatten(1)
    predicted = torch.cdist(x_test, means).argmin(1)
    assert (predicted == torch.arange(10).repeat_interleave(10)).float().mean() > 0.9


def test_augmentation_is_flip_and_roll_from_torchs_rng(tree):
    plain, _ = cifar10_dvs_datasets(FileOptions(tree, T, augment=False))
    train, _ = cifar10_dvs_datasets(FileOptions(tree, T, augment=True))
    x = plain[3][0]
    seen = []
    for seed in range(4):
        torch.manual_seed(seed)
        augmented = train[3][0]
        torch.manual_seed(seed)
        assert torch.equal(train[3][0], augmented)  # reproducible under the same seed
        torch.manual_seed(seed)
        assert torch.equal(augmented, flip_and_roll(x))
        seen.append(augmented)
    assert any(not torch.equal(a, seen[0]) for a in seen[1:])  # and different under others
    assert any(not torch.equal(a, x) for a in seen)


def test_flip_and_roll_draws():
    """Each draw is one of the 2 x 11 x 11 flips and rolls; flips about half the time, every shift seen."""
    x = torch.arange(2 * 12 * 12, dtype=torch.float32).view(1, 2, 12, 12)
    moves = [(f, dy, dx) for f in (False, True) for dy in range(-5, 6) for dx in range(-5, 6)]
    images = torch.stack([torch.roll(x.flip(-1) if f else x, (dy, dx), (-2, -1)) for f, dy, dx in moves])
    torch.manual_seed(0)
    drawn = []
    for _ in range(400):
        match = (images == flip_and_roll(x)).flatten(1).all(1).nonzero().flatten().tolist()
        assert len(match) == 1
        drawn.append(moves[match[0]])
    assert 150 < sum(f for f, _, _ in drawn) < 250
    assert {dy for _, dy, _ in drawn} == {dx for _, _, dx in drawn} == set(range(-5, 6))


def test_counts_are_tonics_time_bins(tree):
    """Frames count events in T bins of (t_last - t_first) // T us from the first event; the events
    past T whole bins, the last one among them, are not counted (tonic's SliceByTimeBins)."""
    events = recording(tree, "bird", 4)
    counts = EventFrames(SENSOR, T).counts(events)
    t = events["t"].astype(np.int64)
    width = (t[-1] - t[0]) // T
    step = (t - t[0]) // width
    kept = step < T
    reference = np.zeros((T, 2, 128, 128), np.int64)
    np.add.at(reference, (step[kept], events["p"][kept].astype(int), events["y"][kept], events["x"][kept]), 1)
    assert counts.shape == (T, 2, 128, 128)
    assert (counts == reference).all()
    assert not kept[-1] and counts.sum() == kept.sum()
    _, test = cifar10_dvs_datasets(FileOptions(tree, T))
    assert torch.equal(test[20][0], expected_frames(recording(tree, "bird", 90)))


def test_frames_are_cached_per_timesteps(tree, monkeypatch):
    cache = tree / "CIFAR10DVS" / "lsg-deploy-cache"
    _, test = cifar10_dvs_datasets(FileOptions(tree, 2))
    first = [test[i][0] for i in range(3)]
    assert first[0].shape == (2, 2, 48, 48)
    assert {"files.json", "0.npy", "90.npy", "999.npy"} <= {p.name for p in (cache / "T2-48").iterdir()}
    assert len(list((cache / "T2-48").glob("*.npy"))) == 1000 and not list((cache / "T2-48").glob(".staging-*"))
    listed = json.loads((cache / "T2-48" / "files.json").read_text())["recordings"]
    path = tree / "CIFAR10DVS" / "airplane" / "cifar10_airplane_0.aedat4"
    assert listed[0] == ["airplane/cifar10_airplane_0.aedat4", path.stat().st_size, path.stat().st_mtime_ns]

    def unread(*args):
        pytest.fail("a cached recording was read again")

    monkeypatch.setattr(dvs, "read_recording", unread)
    _, again = cifar10_dvs_datasets(FileOptions(tree, 2))
    assert all(torch.equal(again[i][0], first[i]) for i in range(3))


def _snapshot(folder: Path) -> dict[str, tuple[int, int] | None]:
    """Every file's (size, mtime_ns) and every folder (None) under ``folder``."""
    return {p.relative_to(folder).as_posix(): (p.stat().st_size, p.stat().st_mtime_ns) if p.is_file() else None
            for p in folder.rglob("*")}


def test_a_changed_recording_is_framed_again_and_only_it(tmp_path):
    """The cache is keyed by each recording's (size, mtime_ns): a recording rewritten with other
    events gets new frames, the other entries stay as they were."""
    write_cifar10_dvs(tmp_path, per_class=PER_CLASS)
    cache = tmp_path / "CIFAR10DVS" / "lsg-deploy-cache" / "T4-48"
    cifar10_dvs_datasets(FileOptions(tmp_path, 4))
    before = _snapshot(cache)
    path = tmp_path / "CIFAR10DVS" / "airplane" / "cifar10_airplane_90.aedat4"  # test position 0
    write_aedat4(path, cifar10_dvs_events(5, np.random.default_rng(7), 400))
    _, test = cifar10_dvs_datasets(FileOptions(tmp_path, 4))
    assert torch.equal(test[0][0], expected_frames(recording(tmp_path, "airplane", 90), 4))
    after = _snapshot(cache)
    assert {k for k in before if before[k] != after[k]} == {"90.npy", "files.json"}


def test_a_truncated_recording_with_a_cache_is_read_again_and_refused(tmp_path):
    write_cifar10_dvs(tmp_path, per_class=PER_CLASS)
    cifar10_dvs_datasets(FileOptions(tmp_path, T))
    before = _snapshot(tmp_path)
    path = tmp_path / "CIFAR10DVS" / "cat" / "cifar10_cat_95.aedat4"
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(DataFilesError, match=r"reading .*cifar10_cat_95\.aedat4 failed.*truncated or corrupt"):
        cifar10_dvs_datasets(FileOptions(tmp_path, T))
    after = _snapshot(tmp_path)
    assert {k for k in before if before[k] != after.get(k)} == {"CIFAR10DVS/cat/cifar10_cat_95.aedat4"}
    assert set(after) == set(before)  # no staging folder left, no entry replaced


def test_bad_recordings_are_refused_before_training_leaving_no_cache(tmp_path):
    """Without a cache, every recording is read and framed up front: a bad one is refused naming
    it, and the cache folders made for the run are gone again."""
    write_cifar10_dvs(tmp_path, per_class=PER_CLASS)
    folder = tmp_path / "CIFAR10DVS"
    for i in range(PER_CLASS):  # a class folder of truncated files
        path = folder / "dog" / f"cifar10_dog_{i}.aedat4"
        path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])
    with pytest.raises(DataFilesError, match=r"cifar10_dog_0\.aedat4 failed.*truncated or corrupt"):
        cifar10_dvs_datasets(FileOptions(tmp_path, T))
    assert not (folder / "lsg-deploy-cache").exists()
    write_cifar10_dvs(tmp_path, per_class=PER_CLASS)
    write_aedat4_header_only(folder / "frog" / "cifar10_frog_3.aedat4")
    with pytest.raises(DataFilesError, match=r"cifar10_frog_3\.aedat4 holds no events"):
        cifar10_dvs_datasets(FileOptions(tmp_path, T))
    write_cifar10_dvs(tmp_path, per_class=PER_CLASS)
    events = cifar10_dvs_events(0, np.random.default_rng(0), 50)
    events["x"][3] = 200  # off the 128x128 sensor (the file says 256x256; framing reads tonic's sensor size)
    write_aedat4(folder / "ship" / "cifar10_ship_7.aedat4", events, width=256, height=256)
    with pytest.raises(DataFilesError, match=r"cifar10_ship_7\.aedat4 has events outside the 128x128 sensor"):
        cifar10_dvs_datasets(FileOptions(tmp_path, T))
    assert not (folder / "lsg-deploy-cache").exists()


def test_a_foreign_cache_entry_is_refused_not_replaced(tmp_path):
    """An entry whose recording is unchanged but which is not the array written here (another
    shape, a short file) was not written by this code: one line naming it, the cache untouched."""
    write_cifar10_dvs(tmp_path, per_class=PER_CLASS)
    cache = tmp_path / "CIFAR10DVS" / "lsg-deploy-cache" / "T3-48"
    cifar10_dvs_datasets(FileOptions(tmp_path, T))
    np.save(cache / "5.npy", np.zeros((T, 2, 32, 32), np.float32))
    before = _snapshot(cache)
    with pytest.raises(DataFilesError, match=r"5\.npy \(of airplane/cifar10_airplane_5\.aedat4\) is a float32 array "
                                             r"of shape \(3, 2, 32, 32\).*delete .*T3-48 to rebuild"):
        cifar10_dvs_datasets(FileOptions(tmp_path, T))
    assert _snapshot(cache) == before
    good = np.load(cache / "6.npy")
    (cache / "5.npy").write_bytes((cache / "6.npy").read_bytes()[:-4])
    with pytest.raises(DataFilesError, match=r"5\.npy .* is .* bytes of data instead of"):
        cifar10_dvs_datasets(FileOptions(tmp_path, T))
    assert good.shape == (T, 2, 48, 48)


def test_a_failed_download_leaves_nothing(tmp_path, monkeypatch):
    def unreachable(self):
        raise OSError("no network here")

    monkeypatch.setattr(tonic.datasets.CIFAR10DVS, "download", unreachable)
    root = tmp_path / "new" / "data"
    with pytest.raises(DataFilesError, match="downloading into .*new/data failed \\(no network here\\)"):
        cifar10_dvs_datasets(FileOptions(root, T, download=True))
    assert list(tmp_path.iterdir()) == []


def test_unwritable_cache_folder_means_no_cache(tmp_path):
    write_cifar10_dvs(tmp_path, per_class=PER_CLASS)
    (tmp_path / "CIFAR10DVS" / "lsg-deploy-cache").write_text("a file where the cache folder would go")
    with pytest.warns(UserWarning, match="no frame cache"):
        _, test = cifar10_dvs_datasets(FileOptions(tmp_path, T))
    assert torch.equal(test[0][0], expected_frames(recording(tmp_path, "airplane", 90)))


def test_missing_archive_is_reported_not_downloaded(tmp_path):
    write_cifar10_dvs(tmp_path, per_class=PER_CLASS)
    (tmp_path / "CIFAR10DVS" / "CIFAR10DVS.zip").unlink()
    with pytest.raises(DataFilesError, match=r"CIFAR10DVS\.zip is missing.*cifar10_<class>_<i>\.aedat4"):
        cifar10_dvs_datasets(FileOptions(tmp_path, T))


def test_too_few_recordings_are_reported_not_downloaded(tmp_path):
    write_cifar10_dvs(tmp_path, per_class=99)
    with pytest.raises(DataFilesError, match=r"990 \.aedat4 files .*airplane 99.*at least 1000"):
        cifar10_dvs_datasets(FileOptions(tmp_path, T))


def test_recordings_outside_the_class_folders_are_reported(tmp_path):
    write_cifar10_dvs(tmp_path, per_class=PER_CLASS)
    stray = tmp_path / "CIFAR10DVS" / "extra"
    stray.mkdir()
    write_aedat4(stray / "cifar10_extra_0.aedat4", cifar10_dvs_events(0, np.random.default_rng(0), 10))
    with pytest.raises(DataFilesError, match="'extra'.*not one of the classes"):
        cifar10_dvs_datasets(FileOptions(tmp_path, T))


def test_missing_aedat_names_the_extra(tree, monkeypatch):
    monkeypatch.setitem(sys.modules, "aedat", None)
    with pytest.raises(DataFilesError, match=r'aedat does not import: pip install -e "\.\[events\]"$'):
        cifar10_dvs_datasets(FileOptions(tree, T))


def test_spike_frames_are_the_events_binned_onto_48x48(tree):
    """``dvs_frames = "spikes"``: an independent count of each recording's events by time bin
    (tonic's bins: width (t_last - t_first) // T from t_first, the rest dropped), polarity and
    coordinates floored onto 48x48, is 1 exactly where the item is."""
    train, test = cifar10_dvs_datasets(FileOptions(tree, T, augment=False, dvs_frames="spikes"))
    for split, position, name, i in ((train, 0, "airplane", 0), (test, 99, "truck", 99)):
        events = recording(tree, name, i)
        width = (int(events["t"][-1]) - int(events["t"][0])) // T
        step = (events["t"].astype(np.int64) - int(events["t"][0])) // width
        keep = step < T
        want = np.zeros((T, 2, 48, 48), np.float32)
        want[step[keep], events["p"][keep].astype(int), events["y"][keep].astype(int) * 48 // SENSOR[1],
             events["x"][keep].astype(int) * 48 // SENSOR[0]] = 1
        x, _ = split[position]
        assert torch.equal(x, torch.from_numpy(want)), (name, i)
        assert 0 < float(x.mean()) < 1


def test_counts_frames_have_no_integer_encoding(tree):
    from training.data import DataError, DataSpec, FileSource, load

    with pytest.raises(DataError, match='resized with bilinear interpolation.*dvs_frames = "spikes"'):
        load(DataSpec("cifar10-dvs"), T, FileSource(str(tree)))


def test_vggsnn_trains_on_cifar10_dvs_from_the_cli_and_deploys_to_loihi(tree, tmp_path):
    """``--dataset cifar10-dvs`` brings the paper's DVS recipe (vggsnn, SGD lr 0.1, weight decay
    1e-4); the command line overrides it, and the network sees one frame per step. Trained on
    spike frames (``--dvs-frames spikes``) it exports to Loihi: Lava equals the integer reference
    on every layer, and the float model run on the integer frames is the model training
    evaluated."""
    import json

    from lsg_deploy.cli import main
    from training.checkpoint import load_checkpoint

    out, bundle, report = tmp_path / "run", tmp_path / "bundle", tmp_path / "report.json"
    assert main(["train", "--dataset", "cifar10-dvs", "--data-dir", str(tree), "--dvs-frames", "spikes", "--width",
                 "0.0625", "--timesteps", str(T), "--epochs", "1", "--batch-size", "50", "--out", str(out),
                 "--quiet"]) == 0
    model, doc = load_checkpoint(out / "model.pt")
    config = doc["config"]
    assert (config["arch"], config["optimizer"], config["lr"], config["weight_decay"]) == ("vggsnn", "sgd", 0.1, 1e-4)
    assert model.input_shape == (2, 48, 48) and model.timesteps == T and config["dvs_frames"] == "spikes"
    assert np.isfinite(doc["metrics"][0]["train_loss"])
    assert main(["export", "--target", "loihi", str(out / "model.pt"), "--out", str(bundle), "--quiet"]) == 0
    assert main(["simulate", "--fixed-point", str(bundle), "--backend", "all", "--limit", "3", "--json", str(report),
                 "--quiet"]) == 0
    result = json.loads(report.read_text())
    assert result["exact"]["equal"] is True and len(result["exact"]["mismatches"]) == 9
    assert result["input_encoding"] == "event-frames"
    assert main(["simulate", str(bundle), "--json", str(report), "--quiet"]) == 0
    assert json.loads(report.read_text())["accuracy"]["float"] == doc["metrics"][-1]["test_accuracy"]


def test_time_slices_are_tonics_fixed_windows_from_the_first_event(tree):
    """``dvs_slice_ms``: frame k counts the events in [t_first + k s, t_first + (k + 1) s), which are
    tonic's ``ToFrame(time_window=s)`` frames, the first T of them; a recording shorter than T slices
    ends in empty frames instead of fewer frames."""
    from tonic.transforms import ToFrame

    events = recording(tree, "bird", 4)
    slice_us = 100_000
    counts = dvs.slice_counts(events, SENSOR, T, slice_us)
    assert counts.shape == (T, 2, 128, 128) and counts.dtype == np.int16
    assert (counts == ToFrame(sensor_size=SENSOR, time_window=slice_us)(events)[:T]).all()
    assert counts.sum() == int(((events["t"].astype(np.int64) - int(events["t"][0])) < T * slice_us).sum()) > 0
    long = dvs.slice_counts(events, SENSOR, T, 10_000_000)  # one slice holds the whole recording
    assert long[0].sum() == len(events) and not long[1:].any()


def test_time_slice_frames_are_cached_apart_and_reach_both_frame_kinds(tree):
    train, _ = cifar10_dvs_datasets(FileOptions(tree, T, augment=False, dvs_slice_ms=100))
    events = recording(tree, "airplane", 0)
    want = dvs.slice_counts(events, SENSOR, T, 100_000).astype(np.float32)
    assert torch.equal(train[0][0], transforms.Resize((48, 48), antialias=True)(torch.from_numpy(want)))
    assert not torch.equal(train[0][0], expected_frames(events))
    cache = tree / "CIFAR10DVS" / "lsg-deploy-cache"
    assert (cache / f"T{T}-48-slice100000us" / "files.json").is_file()
    spikes, _ = cifar10_dvs_datasets(FileOptions(tree, T, augment=False, dvs_frames="spikes", dvs_slice_ms=100))
    assert (cache / f"T{T}-48-spikes-slice100000us" / "files.json").is_file()
    assert set(np.unique(spikes[0][0].numpy())) <= {0.0, 1.0} and float(spikes[0][0].sum()) > 0


@pytest.mark.parametrize("value, ok", [(0, True), (5, True), (0.001, True), (-5, False), (1e-4, False),
                                       (1e9, False)])
def test_dvs_slice_ms_is_checked(value, ok):
    from training.config import TrainConfig

    if ok:
        assert TrainConfig(dvs_slice_ms=value).dvs_slice_ms == value
    else:
        with pytest.raises(ValueError, match="dvs_slice_ms"):
            TrainConfig(dvs_slice_ms=value)


def test_dvs_slice_ms_is_for_cifar10_dvs_only(tmp_path, capsys):
    from lsg_deploy.cli import main

    assert main(["train", "--dvs-slice-ms", "5", "--out", str(tmp_path / "run"), "--quiet"]) == 2
    assert "dvs_slice_ms = 5: dataset digits is not cifar10-dvs" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
