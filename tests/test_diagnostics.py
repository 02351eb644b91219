"""The paper's diagnostics: the membranes the probe sees are the neuron's, the statistics are
computed from them as documented, measuring changes nothing, and a run writes the CSV files,
the TensorBoard scalars and the six figures (beta and width against depth among them)."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from training.config import TrainConfig
from training.data import DataSpec, load
from training.diagnostics import measure
from training.models import build_model
from training.neuron import LIF
from training.plots import NAMES


def test_the_probe_sees_the_membranes_of_the_lif_equation():
    torch.manual_seed(0)
    lif = LIF("lsg", v_th=0.5, beta_init=0.3)
    x = torch.randn(6, 4, 9)
    seen = []
    lif.probe = lambda layer, u: seen.append((layer, u))
    spikes = lif(x)
    beta = float(lif.beta.detach())
    u, o, expected = torch.zeros(4, 9), torch.zeros(4, 9), []
    for x_t in x:
        u = beta * u * (1 - o) + x_t
        o = (u >= 0.5).float()
        expected.append(u)
    assert seen[0][0] is lif and torch.allclose(seen[0][1], torch.stack(expected), atol=1e-6)
    assert torch.equal(spikes, (seen[0][1] >= 0.5).float())


@pytest.mark.parametrize("mode, alpha", [("lsg", None), ("fixed", 2.5)])
def test_measure_counts_the_window_and_changes_nothing(mode, alpha):
    torch.manual_seed(1)
    config = TrainConfig(mode=mode, alpha=alpha or 1.0, timesteps=3, channels=(4, 8), hidden=16)
    model = build_model(config, (1, 8, 8), 10)
    train, _, _ = load(DataSpec())
    x = torch.as_tensor(train.analog[:64])
    model.train()
    model(x)  # running statistics away from their initial values
    before = {k: v.clone() for k, v in model.state_dict().items()}
    recorded = {}
    for name, lif in model.lif_layers().items():
        lif.probe = lambda layer, u, name=name: recorded.__setitem__(name, u.flatten().double())
    model.eval()
    with torch.no_grad():
        model(x)
    for lif in model.lif_layers().values():
        lif.probe = None
    model.train()
    stats = measure(model, x)
    assert model.training and all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    for s in stats:
        u = recorded[s.layer]
        width = 2 * 0.5 * math.sqrt(1 + s.beta**2) if mode == "lsg" else alpha
        assert s.alpha == pytest.approx(width, rel=1e-6)
        assert s.in_window == pytest.approx(float(((u - 0.5).abs() < s.alpha / 2).double().mean()), abs=1e-12)
        assert s.u_std == pytest.approx(float(u.std(unbiased=False)), rel=1e-9)
        assert s.theory_std == pytest.approx(0.5 * math.sqrt(1 + s.beta**2))
        assert int(s.counts.sum()) == u.numel()
    assert [s.layer for s in stats] == list(model.lif_layers())


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_a_run_writes_diagnostics_tensorboard_and_the_figures(tiny_model):
    """A two-epoch run through the CLI (conftest's tiny digits-cnn, shared) wrote them all."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tiny_model.parent
    rows = _rows(out / "diagnostics.csv")
    assert [(r["epoch"], r["layer"]) for r in rows] == [(e, n) for e in ("1", "2") for n in ("conv1", "conv2", "fc1")]
    metrics = _rows(out / "metrics.csv")
    assert [r["beta_conv1"] for r in metrics] == [r["beta"] for r in rows if r["layer"] == "conv1"]
    hist = np.load(out / "membranes.npz")
    assert list(hist["layers"]) == ["conv1", "conv2", "fc1"] and int(hist["epoch"]) == 2
    for name in NAMES:
        assert (out / "plots" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    events = EventAccumulator(str(out / "tensorboard"))
    events.Reload()
    accuracy = events.Scalars("test/accuracy (%)")  # test apart from train, in the console's percent
    assert [e.step for e in accuracy] == [1, 2]
    assert accuracy[-1].value == pytest.approx(float(metrics[-1]["test_accuracy"]) * 100)
    assert {"train/loss", "train/accuracy (%)", "test/loss"} <= set(events.Tags()["scalars"])
    assert [e.step for e in events.Scalars("in_window/fc1")] == [1, 2]
