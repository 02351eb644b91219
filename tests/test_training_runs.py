"""Running training as researchers do: resume after a kill (bit for bit), DDP over two gloo
processes under torchrun, bf16 autocast, and the device choice."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from lsg_deploy.cli import main
from training.checkpoint import load_checkpoint, load_resume
from training.config import TrainConfig
from training.data import DataSpec, load
from training.distributed import PRECISIONS, Context, autocast
from training.loop import ArrayDataset, Split, evaluate, fit

TINY = ["--timesteps", "2", "--batch-size", "128", "--seed", "3"]
TINY_TOML = "[train]\nchannels = [4, 8]\nhidden = 16\n"


@pytest.fixture(scope="module")
def digits() -> tuple[Split, Split, int]:
    train, test, classes = load(DataSpec())
    return Split(train.analog, train.labels), Split(test.analog, test.labels), classes


@pytest.fixture(scope="module")
def tiny_toml(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("config") / "tiny.toml"
    path.write_text(TINY_TOML)
    return path


def _same_state(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _learned(rows: list[dict[str, float]]) -> list[dict[str, float]]:
    """A metrics row without its timings, which differ between runs."""
    return [{k: v for k, v in row.items() if k not in ("seconds", "images_per_s")} for row in rows]


def test_resumed_fit_continues_bit_for_bit(digits):
    train, test, classes = digits
    config = TrainConfig(timesteps=2, channels=(4, 8), hidden=16, epochs=3, batch_size=128, optimizer="sgd", lr=0.05)
    whole, whole_rows = fit(config, train, test, classes)
    saved = []
    fit(config.replace(epochs=3), train, test, classes,
        on_epoch=lambda e: saved.append(e.resume()) if e.row["epoch"] == 1 else None)
    resumed, rows = fit(config, train, test, classes, resume=saved[0])
    assert _same_state(whole.state_dict(), resumed.state_dict())
    assert _learned(rows) == _learned(whole_rows)


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path) as f:
        return list(csv.DictReader(f))


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lsg_deploy.cli", *args], capture_output=True, text=True,
                          timeout=600)


# slow: two runs, one killed and resumed in a child process (make test-all). make test covers it by
# test_resumed_fit_continues_bit_for_bit and the next test (the window a SIGKILL can hit, in-process)
@pytest.mark.slow
def test_a_run_killed_with_sigkill_resumes_and_ends_where_the_whole_run_ends(tmp_path, tiny_toml):
    args = ["train", "--config", str(tiny_toml), "--epochs", "4", *TINY, "--quiet"]
    assert main([*args, "--out", str(tmp_path / "whole")]) == 0
    killed = tmp_path / "killed"
    child = subprocess.Popen([sys.executable, "-m", "lsg_deploy.cli", *args, "--out", str(killed)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 300
    while not ((killed / "metrics.csv").exists() and len(_rows(killed / "metrics.csv")) >= 2):
        assert child.poll() is None, child.stderr.read().decode()
        assert time.monotonic() < deadline
        time.sleep(0.02)
    child.send_signal(signal.SIGKILL)  # in epoch 3 or later: epochs 1-2 are on disk
    child.wait()
    state, _, _, _ = load_resume(killed / "train_state.pt")
    assert state.epoch >= 2
    done = _cli("train", "--out", str(killed), "--resume", "--quiet")
    assert done.returncode == 0, done.stderr
    whole_model, whole_doc = load_checkpoint(tmp_path / "whole" / "model.pt")
    model, doc = load_checkpoint(killed / "model.pt")
    assert _same_state(whole_model.state_dict(), model.state_dict())
    assert _learned(doc["metrics"]) == _learned(whole_doc["metrics"])
    assert len(_rows(killed / "metrics.csv")) == 4
    # the diagnostics of the epochs before the kill are kept, those of the lost epoch redone once
    assert [int(r["epoch"]) for r in _rows(killed / "diagnostics.csv")] == [e for e in (1, 2, 3, 4) for _ in range(3)]


def test_a_run_stopped_between_its_state_and_its_logs_measures_the_lost_diagnostics(tmp_path, tiny_toml,
                                                                                       monkeypatch):
    """The window the SIGKILL test can hit: epoch 2's train_state.pt is written, its logs are not.
    The resumed run measures epoch 2's diagnostics from the resumed weights (that epoch's model),
    so every epoch has its rows once."""
    from training import runlog

    out = tmp_path / "run"
    real = runlog.RunLog.epoch

    def stop_at_two(self, model, row, metrics):
        if row["epoch"] == 2:
            raise KeyboardInterrupt  # as a kill right after train_state.pt
        real(self, model, row, metrics)

    monkeypatch.setattr(runlog.RunLog, "epoch", stop_at_two)
    # the CLI ends an interrupted command with exit 130 (tests/test_signals.py)
    assert main(["train", "--config", str(tiny_toml), "--epochs", "3", *TINY, "--out", str(out), "--quiet"]) == 130
    assert load_resume(out / "train_state.pt")[0].epoch == 2
    assert {int(r["epoch"]) for r in _rows(out / "diagnostics.csv")} == {1}
    monkeypatch.setattr(runlog.RunLog, "epoch", real)
    assert main(["train", "--out", str(out), "--resume", "--quiet"]) == 0
    assert [int(r["epoch"]) for r in _rows(out / "diagnostics.csv")] == [e for e in (1, 2, 3) for _ in range(3)]
    assert [int(r["epoch"]) for r in _rows(out / "metrics.csv")] == [1, 2, 3]


def test_resume_refuses_a_changed_config_a_tampered_state_and_a_finished_run(tmp_path, tiny_toml, capsys):
    out = tmp_path / "run"
    assert main(["train", "--config", str(tiny_toml), "--epochs", "1", *TINY, "--out", str(out), "--quiet"]) == 0
    capsys.readouterr()
    assert main(["train", "--out", str(out), "--resume", "--lr", "0.1"]) == 2
    assert "drop --lr" in capsys.readouterr().err
    assert main(["train", "--out", str(out), "--resume"]) == 2
    assert "already finished its 1 epochs" in capsys.readouterr().err
    assert main(["train", "--out", str(tmp_path / "empty"), "--resume"]) == 2
    assert "train_state.pt" in capsys.readouterr().err
    state = out / "train_state.pt"
    doc = torch.load(state, weights_only=True)
    doc["metrics"][0]["test_accuracy"] = 1.0
    torch.save(doc, state)
    assert main(["train", "--out", str(out), "--resume"]) == 2
    assert "checksum does not match" in capsys.readouterr().err
    assert not (tmp_path / "empty").exists()


def test_ddp_on_two_gloo_processes(tmp_path, tiny_toml, digits):
    """torchrun, 2 CPU processes: one rank writes, the shards cover the data, and the test
    accuracy the ranks computed together is the loaded model's own on the same shards (samples
    ``rank, rank + 2, ...``, one thread each, as the ranks ran): a float sum's last bits depend on
    the batch and the threads, and a membrane at the threshold turns them into a spike, so one
    process over all 360 images in other batches may differ by a few images. Four epochs, so
    that the net is past chance (after two all its readouts nearly tie)."""
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    run = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                          "-m", "lsg_deploy.cli", "train", "--config", str(tiny_toml), "--epochs", "4", *TINY,
                          "--device", "cpu", "--out", str(out)],
                         capture_output=True, text=True, timeout=600, env=env)
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.count("wrote ") == 1 and "x 2 processes" in run.stdout  # rank 0 alone reports
    assert sorted(p.name for p in out.iterdir()) == ["diagnostics.csv", "membranes.npz", "metrics.csv", "model.pt",
                                                     "plots", "tensorboard", "train_state.pt"]
    assert len(list((out / "tensorboard").iterdir())) == 1  # one event file: rank 0's
    model, doc = load_checkpoint(out / "model.pt")
    assert [row["epoch"] for row in doc["metrics"]] == [1, 2, 3, 4]
    _, test, _ = digits
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:  # each rank's shard in fit's evaluation batches (2 x --batch-size)
        shards = [Split(test.x[rank::2], test.y[rank::2]) for rank in (0, 1)]
        correct = sum(round(evaluate(model, ArrayDataset(shard), 256, Context(torch.device("cpu")))[1] * len(shard.y))
                      for shard in shards)
    finally:
        torch.set_num_threads(threads)
    assert doc["metrics"][-1]["test_accuracy"] == correct / len(test.y)


def test_bf16_autocast_trains_on_cpu(digits):
    """bf16 autocast really computes in bfloat16, keeps float32 weights, and learns as fp32 does."""
    train, test, classes = digits
    accuracy = {}
    for precision in PRECISIONS:
        config = TrainConfig(timesteps=2, channels=(4, 8), hidden=16, epochs=3, batch_size=64, lr=5e-3,
                             precision=precision)
        model, rows = fit(config, train, test, classes)
        accuracy[precision] = rows[-1]["test_accuracy"]
        assert all(p.dtype == torch.float32 for p in model.parameters())
    with autocast(torch.device("cpu"), "bf16"):
        assert model(torch.as_tensor(test.x[:4])).logits.dtype == torch.bfloat16
    assert accuracy["bf16"] > 0.6 and abs(accuracy["bf16"] - accuracy["fp32"]) < 0.1, accuracy


def test_device_choice(tmp_path, capsys):
    """A device this machine lacks is one line and exit 2, before any work."""
    if torch.cuda.is_available():
        missing, message = f"cuda:{torch.cuda.device_count()}", "CUDA device(s) here"
    else:
        missing, message = "cuda", "sees no CUDA device"
    assert main(["train", "--device", missing, "--epochs", "1", "--out", str(tmp_path / "run")]) == 2
    assert message in capsys.readouterr().err
    assert main(["train", "--device", "tpu", "--epochs", "1", "--out", str(tmp_path / "run")]) == 2
    assert "device must be one of auto, cpu, cuda or cuda:N" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_a_run_with_its_decays_at_a_scaled_lr_passes_the_resume_checks(digits, tmp_path):
    """The decays' group starts at lr * lr_b_scale: its saved state is accepted as the config's, and
    one whose decay group claims the weights' lr is refused, naming the group."""
    import copy

    from training.checkpoint import CheckpointError, check_resume

    train, test, classes = digits
    config = TrainConfig(timesteps=2, channels=(4, 8), hidden=16, epochs=2, batch_size=256, lr_b_scale=10.0)
    saved = []
    fit(config, train, test, classes, on_epoch=lambda e: saved.append(e.resume()) if e.row["epoch"] == 1 else None)
    path = tmp_path / "train_state.pt"
    check_resume(path, saved[0], config, classes, (1, 8, 8), classes)
    assert [g["initial_lr"] for g in saved[0].optimizer["param_groups"]] == [config.lr, pytest.approx(10 * config.lr)]
    tampered = copy.deepcopy(saved[0])
    tampered.optimizer["param_groups"][1]["initial_lr"] = config.lr
    with pytest.raises(CheckpointError, match="group 1: initial_lr must be the config's lr for the group"):
        check_resume(path, tampered, config, classes, (1, 8, 8), classes)
