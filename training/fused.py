"""The LSG neuron's T steps as one fused kernel: forward and backward over all steps of a layer in
one call each, every neuron in parallel. Two sets of kernels run the same algorithm:
:mod:`training.fused_triton` on CUDA (Triton) and :mod:`training.fused_numba` on the CPU (numba).
Triton's interpreter runs the Triton kernels on the CPU instead when ``TRITON_INTERPRET=1`` is set
from the start (:data:`TRITON_INTERPRETED`), which is how the tests check them without a GPU.

The step it fuses is :func:`training.neuron.lif_step`, the specification, with the rectangular
surrogate of :class:`training.neuron.RectSpike`::

    u[t] = beta u[t-1] (1 - o[t-1]) + x[t]          o[t] = H(u[t] - v_th)

Backward, in reverse time, with ``h[t] = 1/alpha 1(|u[t] - v_th| < alpha/2)`` and ``d[t] =
dL/du[t]`` (autograd's own chain through the reset term, where ``o[t]`` carries the surrogate
too)::

    d[t]      = h[t] (g[t] - beta u[t] d[t+1]) + beta (1 - o[t]) d[t+1]
    dL/dx[t]  = d[t]
    dL/dbeta  = sum over t and neurons of d[t] u[t-1] (1 - o[t-1])

The forward saves only the membranes ``u`` (T x neurons, float32): the spikes are ``u >= v_th``
again. Both kernels compute every step's operations in float32 as the step function does, so the
spikes are equal bit for bit; the gradients agree to float tolerance (sums in another order).
Inputs may be float32 or bfloat16 (computed in float32; spikes and input gradients returned in
the input's dtype; numba computes float64 inputs in float64).

The two directions are torch operators (``lsg_deploy::fused_lif`` and its backward, registered
with :mod:`torch.library`, with shape-only "fake" versions), so ``torch.compile`` traces a model
through its LIF layers in one graph and calls the kernels as they are.
"""

import functools
import os
from types import ModuleType

import torch

#: ``TRITON_INTERPRET=1`` was set when this process started: CPU tensors then run through the Triton
#: kernels in Triton's interpreter (slowly: the tests' way to check them without a GPU), not numba
TRITON_INTERPRETED = os.environ.get("TRITON_INTERPRET", "0") == "1"


@functools.cache
def _missing(package: str) -> str | None:
    try:
        __import__(package)
    except ImportError as exc:
        return str(exc)
    return None


def backend(device: torch.device) -> str:
    """The kernels a fused layer runs on ``device``: ``triton`` (CUDA, or the CPU in Triton's
    interpreter) or ``numba`` (the CPU). A :class:`ValueError` says why none can run there."""
    kind = torch.device(device).type
    if kind == "cuda" or (kind == "cpu" and TRITON_INTERPRETED):
        if _missing("triton"):
            raise ValueError(f"the fused LIF kernel needs Triton on {kind} ({_missing('triton')})")
        return "triton"
    if kind == "cpu":
        if _missing("numba"):
            raise ValueError(f"the fused LIF kernel needs numba on the CPU ({_missing('numba')}; the train extra "
                             f"installs it)")
        return "numba"
    raise ValueError(f"the fused LIF kernel runs on CUDA and the CPU, not on {kind}")


def _kernels(device: torch.device) -> ModuleType:
    if backend(device) == "triton":
        from training import fused_triton

        return fused_triton
    from training import fused_numba

    return fused_numba


def _membrane_dtype(x: torch.Tensor) -> torch.dtype:
    return torch.float64 if x.dtype == torch.float64 else torch.float32


def _run_forward(x: torch.Tensor, beta: torch.Tensor, v_th: float) -> tuple[torch.Tensor, torch.Tensor]:
    flat = x.contiguous().reshape(x.shape[0], -1)
    spikes, u = _kernels(x.device).forward(flat, beta, v_th)
    return spikes.reshape(x.shape), u.reshape(x.shape)


def _run_backward(g: torch.Tensor, u: torch.Tensor, beta: torch.Tensor, alpha: torch.Tensor, v_th: float
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    flat_u = u.reshape(u.shape[0], -1)
    dx, dbeta = _kernels(u.device).backward(g.contiguous().reshape(flat_u.shape), flat_u, beta, alpha, v_th)
    return dx.reshape(u.shape), dbeta


@torch.library.custom_op("lsg_deploy::fused_lif", mutates_args=())
def _forward(x: torch.Tensor, beta: torch.Tensor, alpha: torch.Tensor, v_th: float
             ) -> tuple[torch.Tensor, torch.Tensor]:
    return _run_forward(x, beta, v_th)


@_forward.register_fake
def _(x, beta, alpha, v_th):
    return torch.empty_like(x), torch.empty(x.shape, dtype=_membrane_dtype(x), device=x.device)


@torch.library.custom_op("lsg_deploy::fused_lif_backward", mutates_args=())
def _backward(g: torch.Tensor, u: torch.Tensor, beta: torch.Tensor, alpha: torch.Tensor, v_th: float
              ) -> tuple[torch.Tensor, torch.Tensor]:
    return _run_backward(g, u, beta, alpha, v_th)


@_backward.register_fake
def _(g, u, beta, alpha, v_th):
    return torch.empty_like(g), torch.empty((), dtype=u.dtype, device=u.device)


def _save(ctx, u: torch.Tensor, beta: torch.Tensor, alpha: torch.Tensor, v_th: float) -> None:
    """What the backward needs: the membranes (the spikes are ``u >= v_th`` again), beta, alpha."""
    ctx.save_for_backward(u, beta, alpha)
    ctx.v_th = v_th
    ctx.mark_non_differentiable(u)


def _input_gradients(ctx, grad_spikes: torch.Tensor, backward):
    """Gradients to ``(x, beta, alpha, v_th)`` through ``backward`` (the operator or its body)."""
    u, beta, alpha = ctx.saved_tensors
    dx, dbeta = backward(grad_spikes, u, beta.detach(), alpha.detach(), ctx.v_th)
    return dx, dbeta.to(beta.dtype), None, None


def _setup_context(ctx, inputs, output) -> None:
    x, beta, alpha, v_th = inputs
    _save(ctx, output[1], beta, alpha, v_th)


def _gradients(ctx, grad_spikes: torch.Tensor, grad_u: torch.Tensor):
    return _input_gradients(ctx, grad_spikes, _backward)


_forward.register_autograd(_gradients, setup_context=_setup_context)


class _Eager(torch.autograd.Function):
    """The same kernels, called without the operators' dispatch where nothing is being compiled:
    ``torch.library``'s Python operators cost ~50 us a call each way, ~10% of a digits training
    step on the CPU (measured)."""

    @staticmethod
    def forward(ctx, x, beta, alpha, v_th):
        spikes, u = _run_forward(x, beta.detach(), v_th)
        _save(ctx, u, beta, alpha, v_th)
        return spikes, u

    @staticmethod
    def backward(ctx, grad_spikes, grad_u):
        return _input_gradients(ctx, grad_spikes, _run_backward)


def fused_lif(x: torch.Tensor, beta: torch.Tensor, v_th: float, alpha: torch.Tensor
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """Spikes (in ``x``'s dtype) and membranes (float32) of a LIF layer over all steps of ``x``
    (T, ...), in one kernel call each way; gradients to ``x`` and ``beta``, none to ``alpha``
    (the surrogate's width is a stop-gradient). ``torch.compile`` traces the operators, eager
    code calls the kernels directly (:class:`_Eager`)."""
    if torch.compiler.is_compiling():
        return _forward(x, beta, alpha.detach(), float(v_th))
    return _Eager.apply(x, beta, alpha.detach(), float(v_th))
