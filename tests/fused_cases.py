"""The cases of tests/test_fused.py, which runs them in a fresh interpreter once per set of kernels
(``LSG_FUSED_BACKEND``): ``numba``, the CPU's, and ``triton``, on CUDA on a GPU session and
otherwise in Triton's interpreter on the CPU (``TRITON_INTERPRET=1``, which must be chosen
before triton is first imported). The fused LSG neuron (training/fused.py) against the torch
step function, its specification: spikes equal, gradients to float tolerance, for the three
neuron modes, float32 and bfloat16 inputs, odd sizes (masked tails of the neuron blocks), and
through a whole network's training step; and ``--neuron-impl``'s choice and refusals."""

from __future__ import annotations

import os

import pytest
import torch

from training.config import TrainConfig
from training.neuron import LIF, MODES, resolve_impl

BACKEND = os.environ.get("LSG_FUSED_BACKEND", "")  #: the kernels under test: numba or triton
DEVICE = "cuda" if BACKEND == "triton" and torch.cuda.is_available() else "cpu"


@pytest.fixture(scope="module", autouse=True)
def kernels():
    """training.fused, checked to run the kernels this process was started for."""
    from training import fused

    if BACKEND not in ("numba", "triton"):
        pytest.fail("these cases run through tests/test_fused.py, which sets LSG_FUSED_BACKEND")
    assert fused.backend(torch.device(DEVICE)) == BACKEND, "the cases would test other kernels than asked"
    return fused


def _run(lif: LIF, x: torch.Tensor, impl: str, weights: torch.Tensor, out_dtype: torch.dtype | None = None):
    lif.impl = impl
    lif.zero_grad()
    x = x.detach().clone().requires_grad_()
    out = lif(x)
    if out_dtype is not None:  # the spikes as another dtype hands them on: their gradient arrives in it
        out = out.to(out_dtype)
    (out.float() * weights).sum().backward()
    grad_b = lif.b.grad.clone() if isinstance(lif.b, torch.nn.Parameter) else None
    return out.detach(), x.grad.detach(), grad_b


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("shape", [(4, 3, 5, 7, 7), (6, 2, 1029), (1, 8, 33)])
def test_fused_equals_the_step_function(mode, shape):
    torch.manual_seed(len(shape) + shape[0])
    lif = LIF(mode, v_th=0.5, beta_init=0.35, alpha=1.3).to(DEVICE)
    x = (torch.randn(shape, device=DEVICE) * 0.7 + 0.35)
    weights = torch.randn(shape, device=DEVICE)
    spikes_t, grad_t, b_t = _run(lif, x, "torch", weights)
    spikes_f, grad_f, b_f = _run(lif, x, "fused", weights)
    assert torch.equal(spikes_t, spikes_f)
    assert 0.05 < float(spikes_t.mean()) < 0.95  # a test of something: the layer fires, not always
    assert torch.allclose(grad_f, grad_t, rtol=1e-5, atol=1e-6), float((grad_f - grad_t).abs().max())
    if b_t is None:
        assert b_f is None
    else:
        assert torch.allclose(b_f, b_t, rtol=1e-4, atol=1e-6), (float(b_f), float(b_t))


def test_bf16_inputs_are_computed_in_float32():
    """bf16 in, bf16 spikes and input gradients out; inside, the kernel computes in float32. So on
    bf16 inputs it equals the float32 step function run on the same (bf16-representable) values,
    with the spikes' gradient arriving in bf16 as it does for bf16 spikes: spikes exactly, input
    gradients to one bf16 rounding, the decay's gradient (accumulated in float32) to float
    tolerance. (The step function run in bf16 itself rounds every membrane to bf16 and drifts
    from both: its decay gradient differs by ~5% here.)"""
    torch.manual_seed(0)
    lif = LIF("lsg").to(DEVICE)
    x = (torch.randn(4, 64, 200, device=DEVICE) * 0.7 + 0.35).to(torch.bfloat16)
    weights = torch.randn(x.shape, device=DEVICE)
    spikes_t, grad_t, b_t = _run(lif, x.float(), "torch", weights, out_dtype=torch.bfloat16)
    spikes_f, grad_f, b_f = _run(lif, x, "fused", weights)
    assert spikes_f.dtype == grad_f.dtype == torch.bfloat16
    assert torch.equal(spikes_f.float(), spikes_t)
    assert torch.allclose(grad_f.float(), grad_t, rtol=2**-7, atol=1e-6)  # one bf16 rounding
    assert torch.allclose(b_f, b_t, rtol=1e-4)


def test_a_training_step_is_the_same_with_either_neuron():
    """A digits-cnn's loss, every parameter's gradient and the diagnostics probe's membranes:
    torch and fused agree (the probe sees the kernel's own membranes)."""
    from training.loop import set_neuron_impl
    from training.models import build_model

    torch.manual_seed(0)
    model = build_model(TrainConfig(timesteps=3), (1, 8, 8), 10).to(DEVICE)
    x = torch.rand(16, 1, 8, 8, device=DEVICE)
    y = torch.randint(0, 10, (16,), device=DEVICE)
    results, seen = {}, {}
    for impl in ("torch", "fused"):
        set_neuron_impl(model, impl)
        model.zero_grad()
        model.blocks["conv2"].lif.probe = lambda lif, u, impl=impl: seen.setdefault(impl, u.float())
        loss = torch.nn.functional.cross_entropy(model(x).logits, y)
        loss.backward()
        results[impl] = (loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}, seen[impl])
    (loss_t, grads_t, u_t), (loss_f, grads_f, u_f) = results["torch"], results["fused"]
    assert torch.allclose(loss_t, loss_f, rtol=1e-6) and torch.allclose(u_t, u_f, atol=1e-6)
    for name, grad in grads_t.items():
        assert torch.allclose(grads_f[name], grad, rtol=1e-4, atol=1e-6), name


def test_neuron_impl_is_chosen_and_refused_clearly(kernels, monkeypatch, tmp_path, capsys):
    from lsg_deploy.cli import main

    assert resolve_impl("torch", torch.device(DEVICE)) == "torch"
    assert resolve_impl("fused", torch.device(DEVICE)) == "fused"
    assert resolve_impl("auto", torch.device(DEVICE)) == "fused"  # numba on the CPU, Triton on CUDA
    if BACKEND == "numba":  # without numba the CPU has no fused kernel: fused is refused in one line
        monkeypatch.setattr(kernels, "_missing", lambda package: "No module named 'numba'" * (package == "numba"))
        with pytest.raises(ValueError, match="needs numba on the CPU"):
            kernels.backend(torch.device("cpu"))
        with pytest.raises(ValueError, match="needs numba on the CPU"):
            resolve_impl("fused", torch.device("cpu"))
        assert resolve_impl("auto", torch.device("cpu")) == "torch"  # auto falls back to the step function
        assert main(["train", "--neuron-impl", "fused", "--epochs", "1", "--out", str(tmp_path / "run"),
                     "--quiet"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "--neuron-impl: the fused LIF kernel needs numba on the CPU" in err[0]
        assert not (tmp_path / "run" / "model.pt").exists()
    with pytest.raises(ValueError, match="runs on CUDA and the CPU, not on meta"):
        kernels.backend(torch.device("meta"))
    with pytest.raises(ValueError, match="neuron_impl must be one of"):
        TrainConfig(neuron_impl="cuda")


def test_torch_compile_traces_the_fused_layers_in_one_graph():
    """The kernels are torch operators with fake versions: dynamo traces a residual net through its
    LIF layers without a break, and the step compiled through AOTAutograd (the fake operators and
    their autograd) equals the eager one."""
    from training.loop import set_neuron_impl
    from training.models import build_model

    torch.manual_seed(0)
    model = build_model(TrainConfig(arch="digits-resnet", timesteps=2), (1, 8, 8), 10).to(DEVICE)
    set_neuron_impl(model, "fused")
    x = torch.rand(8, 1, 8, 8, device=DEVICE)
    y = torch.randint(0, 10, (8,), device=DEVICE)
    explained = torch._dynamo.explain(model)(x)
    assert (explained.graph_count, explained.graph_break_count) == (1, 0), explained.break_reasons
    losses, grads = [], []
    for forward in (model, torch.compile(model, backend="aot_eager", dynamic=False)):  # fakes + autograd, no codegen
        model.zero_grad()
        loss = torch.nn.functional.cross_entropy(forward(x).logits, y)
        loss.backward()
        losses.append(loss.detach())
        grads.append({n: p.grad.clone() for n, p in model.named_parameters()})
    assert torch.allclose(losses[0], losses[1], rtol=1e-6)
    for name, grad in grads[0].items():
        assert torch.allclose(grads[1][name], grad, rtol=1e-4, atol=1e-6), name
