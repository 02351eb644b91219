"""``digits-events``: the saccade DVS emulation (training/data/events.py), its framing with tonic, the
dataset registry and ``lsg-deploy train --dataset digits-events``."""

from __future__ import annotations

import math
import sys

import numpy as np
import pytest

from lsg_deploy.cli import main
from training.checkpoint import load_checkpoint
from training.data import DATASETS, DataError, DataSpec, load
from training.data.events import EVENT_DTYPE, SaccadeSensor, frame_window_us, spike_frames
from training.loop import activation_bytes, predict

T = 4
SENSOR = SaccadeSensor()
SIZE = SENSOR.sensor_size((8, 8))  # tonic's (W, H, P)
W, H = SIZE[0], SIZE[1]


@pytest.fixture(scope="module")
def digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    d = load_digits()
    return d.images.astype(np.int64), d.target.astype(np.int64)


@pytest.fixture(scope="module")
def streams(digits) -> list[np.ndarray]:
    """The events of every digit image (keys: dataset indices, seed 0)."""
    images, _ = digits
    return SENSOR.events(images, 16, keys=np.arange(len(images)), seed=0)


@pytest.fixture(scope="module")
def event_data():
    return load(DataSpec("digits-events"), timesteps=T)


def test_event_dtype_is_tonics():
    import tonic.io

    assert EVENT_DTYPE == tonic.io.events_struct
    assert EVENT_DTYPE.names == ("x", "y", "t", "p")


def test_events_fields_and_ranges(streams):
    counts = np.array([len(e) for e in streams])
    assert counts.min() > 100  # every digit makes events
    for events in streams:
        assert events.dtype == EVENT_DTYPE
        assert events["x"].min() >= 0 and events["x"].max() < W
        assert events["y"].min() >= 0 and events["y"].max() < H
        assert set(np.unique(events["p"]).tolist()) == {False, True}  # ON and OFF in every sample
        t = events["t"]
        assert t.min() >= 0 and t.max() <= SENSOR.duration_us
        assert bool((np.diff(t) >= 0).all())  # sorted by time, as tonic's slicers need


def test_closed_saccades_balance_on_and_off(streams):
    """The path returns to its start, so every pixel's log intensity does too: its ON and OFF
    events cancel exactly, mismatched thresholds included."""
    for events in streams[::7]:
        net = np.zeros((H, W), dtype=np.int64)
        np.add.at(net, (events["y"], events["x"]), np.where(events["p"], 1, -1))
        assert not net.any()


def test_events_are_deterministic_and_per_image(digits, streams):
    images, _ = digits
    again = SENSOR.events(images[:50], 16, keys=np.arange(50), seed=0)
    assert all(np.array_equal(a, b) for a, b in zip(again, streams[:50], strict=True))
    # an image's events depend on its key and the seed, not on the other images converted with it
    (alone,) = SENSOR.events(images[17:18], 16, keys=np.array([17]), seed=0)
    assert np.array_equal(alone, streams[17])
    other_seed = SENSOR.events(images[:50], 16, keys=np.arange(50), seed=1)
    assert not all(np.array_equal(a, b) for a, b in zip(other_seed, streams[:50], strict=True))


def test_render_places_and_interpolates():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 17, (1, 8, 8)) / 16
    centred = SENSOR.render(image, (0.0, 0.0))
    assert np.array_equal(centred[0, 2:10, 2:10], image[0]) and centred.sum() == pytest.approx(image.sum())
    shifted = SENSOR.render(image, (1.0, -2.0))  # whole pixels: right 1, up 2
    assert np.array_equal(shifted[0, 0:8, 3:11], image[0])
    half = SENSOR.render(image, (0.5, 0.0))  # halfway between two whole-pixel positions
    assert np.allclose(half, (SENSOR.render(image, (0.0, 0.0)) + SENSOR.render(image, (1.0, 0.0))) / 2)
    times, xy = SENSOR.offsets()
    assert times[-1] == SENSOR.duration_us and np.array_equal(xy[0], xy[-1])  # closed path
    assert np.abs(xy).max() <= SENSOR.margin  # the image stays on the sensor


def test_blank_image_gives_no_events():
    blank = np.zeros((2, 8, 8), dtype=np.int64)
    streams = SENSOR.events(blank, 16, keys=np.arange(2), seed=0)
    assert [len(e) for e in streams] == [0, 0] and streams[0].dtype == EVENT_DTYPE
    frames = spike_frames(streams, SIZE, T, SENSOR.duration_us)
    assert frames.shape == (2, T, 2, H, W) and not frames.any()


def test_frames_are_tonic_counts_binarized(streams):
    """Against an independent binning: frame k holds the events with k w <= t < (k + 1) w."""
    for timesteps in (1, 3, T, 7):
        window = frame_window_us(SENSOR.duration_us, timesteps)
        assert timesteps * window > SENSOR.duration_us  # every event lands in a frame
        frames = spike_frames(streams[:40], SIZE, timesteps, SENSOR.duration_us)
        want = np.zeros_like(frames)
        for i, events in enumerate(streams[:40]):
            want[i, events["t"] // window, events["p"].astype(int), events["y"], events["x"]] = 1
        assert np.array_equal(frames, want), timesteps


def test_digits_events_split(event_data):
    train, test, classes = event_data
    assert classes == 10 and DATASETS["digits-events"].encoding == "event-frames"
    for split, n in ((train, 1437), (test, 360)):
        assert split.pixels.shape == (n, T, 2, H, W) and split.pixels.dtype == np.int64
        assert split.encoding == "event-frames" and split.per_step and split.input_shape == (2, H, W)
        assert split.input_max == 1 and set(np.unique(split.pixels).tolist()) == {0, 1}
        assert np.array_equal(split.analog, split.pixels.astype(np.float32))
        on, off = split.pixels[:, :, 1].sum(axis=(1, 2, 3)), split.pixels[:, :, 0].sum(axis=(1, 2, 3))
        assert (on > 0).all() and (off > 0).all()
        for t in range(T - 1):  # the input differs from step to step in (nearly) every sample
            differs = (split.pixels[:, t] != split.pixels[:, t + 1]).any(axis=(1, 2, 3))
            assert differs.mean() > 0.99
    assert train.head(5).encoding == "event-frames" and train.head(5).pixels.shape == (5, T, 2, H, W)
    # the same stratified split of the same images as digits
    d_train, d_test, _ = load(DataSpec("digits"))
    assert np.array_equal(d_train.labels, train.labels) and np.array_equal(d_test.labels, test.labels)
    assert d_train.encoding == "direct" and d_train.pixels.shape == (1437, 1, 8, 8) and d_train.input_max == 16


def test_digits_events_is_deterministic(event_data):
    train, test, _ = event_data
    train2, test2, _ = load(DataSpec("digits-events"), timesteps=T)
    assert np.array_equal(train.pixels, train2.pixels) and np.array_equal(test.pixels, test2.pixels)


@pytest.mark.parametrize("timesteps", [None, 0, -3, True, 2.0])
def test_event_dataset_needs_timesteps(timesteps):
    with pytest.raises(DataError, match="digits-events has one frame per timestep"):
        load(DataSpec("digits-events"), timesteps=timesteps)


def test_missing_tonic_is_a_one_line_data_error(monkeypatch):
    for name in [m for m in sys.modules if m == "tonic" or m.startswith("tonic.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "tonic", None)  # import tonic now raises ImportError
    with pytest.raises(DataError) as info:
        load(DataSpec("digits-events"), timesteps=2)
    message = str(info.value)
    assert len(message.splitlines()) == 1 and 'pip install -e ".[events]"' in message


def test_unknown_dataset_lists_the_registry(capsys, tmp_path):
    assert list(DATASETS) == ["digits", "digits-events", "cifar10", "cifar100", "cifar10-dvs"]
    with pytest.raises(DataError, match="available: digits, digits-events, cifar10, cifar100, cifar10-dvs"):
        DataSpec("mnist")
    (tmp_path / "bad.toml").write_text('[train]\ndataset = "mnist"\n')  # a config file is checked the same way
    assert main(["train", "--config", str(tmp_path / "bad.toml"), "--out", str(tmp_path / "r")]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert "unknown dataset 'mnist'; available: digits, digits-events, cifar10" in line
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--dataset", "mnist", "--out", str(tmp_path / "r")])
    assert exit_info.value.code == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert "--dataset" in line and "digits-events" in line
    assert not (tmp_path / "r").exists()


def test_train_cli_on_digits_events(tiny_events):
    """A tiny run through the CLI (conftest's, shared): the checkpoint records the dataset and the
    (2, 12, 12) input, and the loaded network scores on the frames exactly what training recorded."""
    model, doc = load_checkpoint(tiny_events)
    assert doc["data"] == {"dataset": "digits-events", "test_fraction": 0.2, "split_seed": 0}
    assert doc["config"]["dataset"] == "digits-events" and doc["input_shape"] == [2, H, W]
    # the loop's memory estimate counts one (2, H, W) input per step, as the network is fed
    neurons = sum(math.prod(shape) for shape in model.activation_shapes())
    assert model.activation_shapes()[0] == (2, H, W) and activation_bytes(model, 1) == 32 * 2 * neurons
    _, test, _ = load(DataSpec.from_dict(doc["data"]), timesteps=model.timesteps)
    assert test.pixels.shape[1] == 2
    accuracy = float((predict(model, test.analog).logits.argmax(1).numpy() == test.labels).mean())
    assert accuracy == doc["metrics"][-1]["test_accuracy"]
    assert accuracy > 0.3  # three tiny epochs learn something (chance is 0.1; 40 epochs of the default: 96%)
