"""Folding tdBN and pooling: the folded float network is the eval-mode network."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from export.fold import _pool_compose, fold, run_float
from lsg_deploy.data import DataSpec, load
from training.checkpoint import load_checkpoint
from training.config import TrainConfig
from training.loop import predict
from training.models.digits_cnn import SpikingConvNet


def _randomised_model(seed: int) -> SpikingConvNet:
    """Untrained net with non-trivial tdBN statistics and affine parameters."""
    torch.manual_seed(seed)
    model = SpikingConvNet(TrainConfig(), (1, 8, 8), 10).double()
    with torch.no_grad():
        for block in model.blocks.values():
            if hasattr(block, "bn"):
                c = block.bn.gamma.numel()
                block.bn.norm.running_mean.uniform_(-0.3, 0.3)
                block.bn.norm.running_var.uniform_(0.02, 0.5)
                block.bn.gamma.uniform_(0.5, 2.0)
                block.bn.shift.copy_(torch.linspace(-0.2, 0.3, c))
                block.lif.b.fill_(torch.logit(torch.tensor(0.1 + 0.2 * seed)).item())
    return model.eval()


def _compare(model: SpikingConvNet, x: np.ndarray) -> None:
    x64 = torch.as_tensor(x, dtype=torch.float64)
    ref = predict(model, x64, record=True)
    logits, spikes = run_float(fold(model), x64, model.timesteps)
    assert set(spikes) == set(ref.spikes)
    for name, s in spikes.items():
        assert torch.equal(s, ref.spikes[name]), f"{name}: {(s != ref.spikes[name]).sum()} spikes differ"
    assert torch.allclose(logits, ref.logits, rtol=1e-5, atol=1e-5 * float(ref.logits.abs().max()))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_folded_equals_unfolded_on_randomised_statistics(seed):
    _, test, _ = load(DataSpec())
    _compare(_randomised_model(seed), test.analog[:200])


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
    composed = torch.nn.functional.conv2d(x, torch.as_tensor(_pool_compose(w.numpy(), pool)),
                                          stride=stride * pool, padding=padding * pool)
    assert torch.allclose(direct, composed, atol=1e-12)
