"""The LSG neuron: surrogate, width rule, modes, and where b_n's gradient comes from."""

from __future__ import annotations

import math

import pytest
import torch

from training.model import TdBN
from training.neuron import LIF, LIFParams, RectSpike, beta_logit, initial_state, lif_step, lsg_width


def test_surrogate_is_the_derivative_of_the_clipped_ramp():
    """h(u) = 1/alpha 1(|u - v_th| < alpha/2) is d/du clamp((u - v_th)/alpha + 1/2, 0, 1)."""
    v_th, alpha = 0.5, torch.tensor(0.8, dtype=torch.float64)
    u = torch.linspace(-0.6, 1.6, 203, dtype=torch.float64, requires_grad=True)
    RectSpike.apply(u, v_th, alpha).sum().backward()
    eps = 1e-6
    ramp = lambda x: torch.clamp((x - v_th) / alpha + 0.5, 0.0, 1.0)  # noqa: E731
    numeric = (ramp(u.detach() + eps) - ramp(u.detach() - eps)) / (2 * eps)
    away_from_kinks = ((u.detach() - v_th).abs() - alpha / 2).abs() > 1e-3
    assert torch.allclose(u.grad[away_from_kinks], numeric[away_from_kinks], atol=1e-6)
    assert u.grad.max() == pytest.approx(1 / 0.8)


def test_forward_spikes_at_threshold_inclusive():
    u = torch.tensor([0.4999, 0.5, 0.5001])
    assert RectSpike.apply(u, 0.5, torch.tensor(1.0)).tolist() == [0.0, 1.0, 1.0]


def test_lsg_width_matches_the_paper():
    for beta in (0.0, 0.2, 0.5, 0.9):
        expected = 2 * 0.5 * math.sqrt(1 + beta**2)
        assert float(lsg_width(torch.tensor(beta), 0.5)) == pytest.approx(expected, rel=1e-7)


@pytest.mark.parametrize("mode", ["lsg", "trainable-decay", "fixed"])
def test_modes(mode):
    lif = LIF(mode, v_th=0.5, beta_init=0.2, alpha=2.5)
    assert lif.beta.item() == pytest.approx(0.2)
    params = lif.params()
    assert not params.alpha.requires_grad
    if mode == "lsg":
        assert float(params.alpha) == pytest.approx(2 * 0.5 * math.sqrt(1 + 0.04))
    else:
        assert float(params.alpha) == 2.5
    trainable = [n for n, p in lif.named_parameters()]
    assert trainable == ([] if mode == "fixed" else ["b"])


def test_unknown_mode_is_rejected():
    with pytest.raises(ValueError, match="unknown neuron mode"):
        LIF("plif")


def _run(lif: LIF, x: torch.Tensor) -> torch.Tensor:
    """Loss on spikes *and* membranes, so both gradient paths are exercised."""
    params = lif.params()
    state = initial_state(x[0])
    loss = 0.0
    for x_t in x:
        o, state = lif_step(x_t, state, params)
        loss = loss + (o * torch.linspace(1, 2, x.shape[-1], dtype=x.dtype)).sum() + 0.1 * state.u.sum()
    return loss


def test_b_gets_gradient_only_through_the_dynamics():
    """LSG's grad on b equals that of a constant-width neuron with the same alpha value: the
    width is a stop-gradient, so no d alpha / d beta term reaches b."""
    torch.manual_seed(0)
    x = torch.rand(6, 4, 32, dtype=torch.float64)
    lsg = LIF("lsg").double()
    _run(lsg, x).backward()
    alpha_value = float(lsg.params().alpha)
    const = LIF("trainable-decay", alpha=alpha_value).double()
    _run(const, x).backward()
    assert lsg.b.grad is not None and lsg.b.grad != 0
    assert torch.equal(lsg.b.grad, const.b.grad)


def test_b_gradient_equals_finite_difference_of_the_dynamics():
    """Away from the surrogate window the spikes are locally constant, so autograd's grad on b
    is the exact derivative of the membrane trajectory: du[t+1]/dbeta = u[t](1 - o[t])."""
    x = torch.tensor([[0.3, 0.1, 2.0], [0.2, 0.05, 0.0], [0.1, 0.4, 0.0]], dtype=torch.float64)
    lif = LIF("trainable-decay", alpha=0.01).double()  # tiny window: no u lands inside it

    def membrane_loss(b: torch.Tensor) -> torch.Tensor:
        params = LIFParams(beta=torch.sigmoid(b), v_th=0.5, alpha=torch.tensor(0.01, dtype=torch.float64))
        state = initial_state(x[0])
        total = torch.zeros((), dtype=torch.float64)
        for x_t in x:
            _, state = lif_step(x_t, state, params)
            total = total + state.u.sum()
        return total

    b = lif.b.detach().clone().requires_grad_(True)
    assert torch.autograd.gradcheck(membrane_loss, (b,), eps=1e-6, atol=1e-8)


def test_beta_logit_is_the_inverse_of_sigmoid():
    for beta in (0.01, 0.2, 0.5, 0.99):
        assert float(torch.sigmoid(torch.tensor(beta_logit(beta), dtype=torch.float64))) == pytest.approx(beta)
    with pytest.raises(ValueError):
        beta_logit(1.0)


def test_tdbn_normalises_over_batch_time_and_space():
    torch.manual_seed(1)
    bn = TdBN(3, v_th=0.5)
    with torch.no_grad():
        bn.gamma.copy_(torch.tensor([1.0, 2.0, 0.5]))
        bn.shift.copy_(torch.tensor([0.0, 0.1, -0.2]))
    x = torch.randn(4, 8, 3, 5, 5) * torch.tensor([1.0, 3.0, 0.2]).view(1, 1, 3, 1, 1) + 2.0
    y = bn(x)
    per_channel = y.transpose(0, 2).reshape(3, -1)
    assert torch.allclose(per_channel.mean(1), torch.tensor([0.0, 0.1, -0.2]), atol=1e-5)
    assert torch.allclose(per_channel.std(1, unbiased=False), 0.5 * torch.tensor([1.0, 2.0, 0.5]), rtol=1e-3)
    bn.eval()
    scale, offset = bn.fold_factors()
    assert torch.allclose(bn(x), scale.view(1, 1, 3, 1, 1) * x + offset.view(1, 1, 3, 1, 1), atol=1e-5)
