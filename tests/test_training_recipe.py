"""The paper's training recipe options: SGD with momentum, and TET's loss with its regulariser."""

from __future__ import annotations

import pytest
import torch

from training.config import TrainConfig
from training.loop import loss_fn, make_optimizer
from training.model import Forward
from training.models import build_model
from training.neuron import LIF


def test_tet_loss_is_per_step_ce_plus_the_mse_regulariser():
    torch.manual_seed(0)
    outputs = torch.randn(3, 5, 4)  # (T, B, classes)
    y = torch.tensor([0, 1, 2, 3, 0])
    out = Forward(logits=outputs.mean(0), outputs=outputs, spikes={})
    per_step = sum(torch.nn.functional.cross_entropy(outputs[t], y) for t in range(3)) / 3
    mse = ((outputs - 0.5) ** 2).mean()
    assert torch.allclose(loss_fn(out, y, "tet", 0.0), per_step)
    assert torch.allclose(loss_fn(out, y, "tet", 1e-3, v_th=0.5), (1 - 1e-3) * per_step + 1e-3 * mse)
    assert torch.allclose(loss_fn(out, y, "ce"), torch.nn.functional.cross_entropy(outputs.mean(0), y))


def test_sgd_with_momentum_is_the_papers_optimizer():
    config = TrainConfig(optimizer="sgd", lr=0.1, momentum=0.9, weight_decay=5e-4)
    optimizer = make_optimizer(config, build_model(config, (1, 8, 8), 10))
    assert isinstance(optimizer, torch.optim.SGD)
    group = optimizer.param_groups[0]
    assert (group["lr"], group["momentum"], group["weight_decay"], group["nesterov"]) == (0.1, 0.9, 5e-4, False)
    assert isinstance(make_optimizer(TrainConfig(), build_model(TrainConfig(), (1, 8, 8), 10)), torch.optim.Adam)


def _decay_params(model):
    return {id(m.b) for m in model.modules() if isinstance(m, LIF)}


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_weight_decay_leaves_the_decay_parameters_b_alone_by_default(optimizer):
    config = TrainConfig(optimizer=optimizer, weight_decay=5e-4)
    model = build_model(config, (1, 8, 8), 10)
    groups = make_optimizer(config, model).param_groups
    assert [g["weight_decay"] for g in groups] == [5e-4, 0.0]
    assert {id(p) for p in groups[1]["params"]} == _decay_params(model)
    assert len(groups[0]["params"]) + len(groups[1]["params"]) == len(list(model.parameters()))
    on = TrainConfig(optimizer=optimizer, weight_decay=5e-4, weight_decay_b=True)
    (group,) = make_optimizer(on, build_model(on, (1, 8, 8), 10)).param_groups
    assert group["weight_decay"] == 5e-4 and len(group["params"]) == len(list(model.parameters()))


def test_without_weight_decay_on_b_the_decay_moves_only_by_its_gradient():
    """A step with a zero gradient: weight decay moves the weights, not b (and b does with the key on)."""
    for on in (False, True):
        config = TrainConfig(optimizer="sgd", lr=0.1, weight_decay=0.1, weight_decay_b=on)
        model = build_model(config, (1, 8, 8), 10)
        optimizer = make_optimizer(config, model)
        before = {n: p.detach().clone() for n, p in model.named_parameters()}
        for p in model.parameters():
            p.grad = torch.zeros_like(p)
        optimizer.step()
        moved = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
        bs = {n for n in before if n.endswith(".b")}
        assert bs and (bs <= moved) == on and any(n not in bs for n in moved)


def test_a_saved_config_without_the_key_trained_with_weight_decay_on_b():
    saved = {k: v for k, v in TrainConfig().to_dict().items() if k != "weight_decay_b"}
    assert TrainConfig.from_saved(saved).weight_decay_b is True
    assert TrainConfig.from_dict(saved).weight_decay_b is False


@pytest.mark.parametrize("change, message", [
    ({"optimizer": "rmsprop"}, "optimizer must be one of adam, sgd"),
    ({"momentum": 1.0}, "momentum"),
    ({"tet_lambda": -0.1}, "tet_lambda"),
])
def test_recipe_values_are_checked(change, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(**change)


def test_train_cli_with_sgd_and_tet(tmp_path):
    from lsg_deploy.cli import main
    from training.checkpoint import load_checkpoint

    out = tmp_path / "run"
    assert main(["train", "--optimizer", "sgd", "--lr", "0.1", "--loss", "tet", "--epochs", "2", "--out", str(out),
                 "--quiet"]) == 0
    _, doc = load_checkpoint(out / "model.pt")
    assert doc["config"]["optimizer"] == "sgd" and doc["config"]["tet_lambda"] == 1e-3
    assert doc["metrics"][-1]["test_accuracy"] > 0.8  # the paper's lr 0.1 learns the digits in two epochs


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_the_decay_parameters_train_at_lr_times_lr_b_scale(optimizer):
    """The b group's learning rate is scaled, also under the cosine schedule; the rest keep lr."""
    config = TrainConfig(optimizer=optimizer, lr=0.01, lr_b_scale=10.0, epochs=4)
    model = build_model(config, (1, 8, 8), 10)
    optimizer_ = make_optimizer(config, model)
    assert [g["lr"] for g in optimizer_.param_groups] == [0.01, pytest.approx(0.1)]
    assert {id(p) for p in optimizer_.param_groups[1]["params"]} == _decay_params(model)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer_, T_max=config.epochs)
    optimizer_.step()  # an epoch's steps first (no gradients: nothing moves), as training does
    schedule.step()
    low, high = (g["lr"] for g in optimizer_.param_groups)
    assert high == pytest.approx(10 * low) and low < 0.01
    on = TrainConfig(optimizer=optimizer, lr=0.01, lr_b_scale=10.0, weight_decay=1e-3, weight_decay_b=True)
    groups = make_optimizer(on, build_model(on, (1, 8, 8), 10)).param_groups
    assert [(g["lr"], g["weight_decay"]) for g in groups] == [(0.01, 1e-3), (pytest.approx(0.1), 1e-3)]


def test_lr_b_scale_is_checked():
    for bad in (0.0, -1.0):
        with pytest.raises(ValueError, match="lr_b_scale must be positive"):
            TrainConfig(lr_b_scale=bad)
    with pytest.raises(ValueError, match="lr_b_scale"):
        TrainConfig(lr=1.0, lr_b_scale=20.0)
