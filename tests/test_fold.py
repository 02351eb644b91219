"""Folding tdBN and pooling: the folded float network is the eval-mode network."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from export.fold import _pool_compose, fold, run_float
from hardware.graph import Input
from training.checkpoint import load_checkpoint
from training.config import TrainConfig
from training.data import DataSpec, load
from training.loop import predict
from training.model import SpikingNet, TdBN
from training.models import build_model
from training.neuron import LIF

DIRECT = Input((1, 8, 8), "direct", 16)


def _randomised_model(seed: int, arch: str = "digits-cnn") -> SpikingNet:
    """Untrained net with non-trivial tdBN statistics, affine parameters and decays."""
    torch.manual_seed(seed)
    model = build_model(TrainConfig(arch=arch), (1, 8, 8), 10).double()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, TdBN):
                c = module.gamma.numel()
                module.norm.running_mean.uniform_(-0.3, 0.3)
                module.norm.running_var.uniform_(0.02, 0.5)
                module.gamma.uniform_(0.5, 2.0)
                module.shift.copy_(torch.linspace(-0.2, 0.3, c))
            if isinstance(module, LIF):
                module.b.fill_(torch.logit(torch.tensor(0.1 + 0.2 * seed)).item())
    return model.eval()


def _compare(model: SpikingNet, x: np.ndarray) -> None:
    x64 = torch.as_tensor(x, dtype=torch.float64)
    ref = predict(model, x64, record=True)
    logits, spikes = run_float(fold(model, DIRECT), x64, model.timesteps)
    assert set(spikes) == set(ref.spikes)
    for name, s in spikes.items():
        assert torch.equal(s, ref.spikes[name]), f"{name}: {(s != ref.spikes[name]).sum()} spikes differ"
    assert torch.allclose(logits, ref.logits, rtol=1e-5, atol=1e-5 * float(ref.logits.abs().max()))


@pytest.mark.parametrize("arch", ["digits-cnn", "digits-resnet"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_folded_equals_unfolded_on_randomised_statistics(seed, arch):
    _, test, _ = load(DataSpec())
    _compare(_randomised_model(seed, arch), test.analog[:200])


def test_a_residual_block_folds_into_two_nodes_and_summing_edges():
    """res1 (identity shortcut) and res2 (1x1 conv shortcut): the block's LIF is fed by its
    second conv and its shortcut; the identity is a 1x1 conv with identity weights."""
    graph = fold(_randomised_model(0, "digits-resnet"), DIRECT)
    assert [n.name for n in graph.nodes] == ["stem", "res1.conv1", "res1", "res2.conv1", "res2", "fc1", "readout"]
    assert {(e.name, e.source, e.target) for e in graph.incoming("res1")} == {
        ("res1.conv2", "res1.conv1", "res1"), ("res1.shortcut", "stem", "res1")}
    assert {(e.name, e.source) for e in graph.incoming("res2")} == {("res2.conv2", "res2.conv1"),
                                                                     ("res2.shortcut", "res1")}
    identity = next(e for e in graph.edges if e.name == "res1.shortcut")
    assert identity.weight.shape[2:] == (1, 1) and np.array_equal(identity.weight[:, :, 0, 0], np.eye(16))
    projection = next(e for e in graph.edges if e.name == "res2.shortcut")
    assert projection.weight.shape == (32, 16, 1, 1)
    assert graph.depths()["res1"] == 3 and not graph.is_chain


def test_per_step_inputs_fold_exactly():
    """Event frames (B, T, C, H, W), one per step, through both architectures."""
    rng = np.random.default_rng(5)
    frames = (rng.random((64, 4, 1, 8, 8)) < 0.3).astype(np.float64)
    for arch in ("digits-cnn", "digits-resnet"):
        _compare(_randomised_model(1, arch), frames)


def test_folded_equals_unfolded_on_the_trained_model(default_run):
    model, _ = load_checkpoint(default_run.model)
    _, test, _ = load(DataSpec())
    _compare(model.double(), test.analog)


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 3), st.integers(1, 3), st.sampled_from([1, 2, 3]), st.integers(0, 2), st.integers(0, 10**6))
def test_pooling_then_conv_is_one_strided_conv(kernel, stride, pool, padding, seed):
    """avgpool(p) then conv(K, q, P) == conv(pK, pq, pP) with weights w[k // p] / p^2."""
    rng = np.random.default_rng(seed)
    size = pool * (kernel + 2 + stride)  # divisible by the pool, big enough for one output
    x = torch.as_tensor(rng.standard_normal((2, 3, size, size)))
    w = torch.as_tensor(rng.standard_normal((4, 3, kernel, kernel)))
    direct = torch.nn.functional.conv2d(torch.nn.functional.avg_pool2d(x, pool), w, stride=stride, padding=padding)
    composed = torch.nn.functional.conv2d(x, _pool_compose(w, pool),
                                          stride=stride * pool, padding=padding * pool)
    assert torch.allclose(direct, composed, atol=1e-12)
