"""The LSG neuron's T steps as one fused kernel: forward and backward over all steps of a layer in
one launch each, every neuron in parallel (Triton, for CUDA; Triton's interpreter runs the same
kernels on the CPU when ``TRITON_INTERPRET=1`` is set before this module is imported, which is
how the tests check them without a GPU).

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
again. The decay's gradient is reduced per block of neurons in the kernel and summed in torch
(deterministic, no atomics). Inputs may be float32 or bfloat16; the kernels compute in float32.
"""

from __future__ import annotations

import os

import torch
import triton
import triton.language as tl

BLOCK = 1024  #: neurons per program
#: the kernels were built for Triton's interpreter (``TRITON_INTERPRET=1`` at import): they run on
#: CPU tensors too (slowly; what the tests use without a GPU)
INTERPRETED = os.environ.get("TRITON_INTERPRET", "0") == "1"


@triton.jit
def _forward(x_ptr, o_ptr, u_ptr, beta_ptr, v_th, steps, n, BLOCK: tl.constexpr):
    offsets = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offsets < n
    beta = tl.load(beta_ptr)
    u = tl.zeros((BLOCK,), dtype=tl.float32)
    o = tl.zeros((BLOCK,), dtype=tl.float32)
    for t in range(steps):
        x = tl.load(x_ptr + t * n + offsets, mask=mask, other=0.0).to(tl.float32)
        u = beta * u * (1.0 - o) + x
        o = (u >= v_th).to(tl.float32)
        tl.store(u_ptr + t * n + offsets, u, mask=mask)
        tl.store(o_ptr + t * n + offsets, o.to(o_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _backward(g_ptr, u_ptr, dx_ptr, dbeta_ptr, beta_ptr, alpha_ptr, v_th, steps, n, BLOCK: tl.constexpr):
    pid = tl.program_id(0)
    offsets = pid * BLOCK + tl.arange(0, BLOCK)
    mask = offsets < n
    beta = tl.load(beta_ptr)
    alpha = tl.load(alpha_ptr)
    d_next = tl.zeros((BLOCK,), dtype=tl.float32)
    dbeta = tl.zeros((BLOCK,), dtype=tl.float32)
    for i in range(steps):
        t = steps - 1 - i
        u = tl.load(u_ptr + t * n + offsets, mask=mask, other=0.0)
        g = tl.load(g_ptr + t * n + offsets, mask=mask, other=0.0).to(tl.float32)
        o = (u >= v_th).to(tl.float32)
        h = tl.where(tl.abs(u - v_th) < alpha * 0.5, 1.0 / alpha, 0.0)
        d = h * (g - beta * u * d_next) + beta * (1.0 - o) * d_next
        tl.store(dx_ptr + t * n + offsets, d.to(dx_ptr.dtype.element_ty), mask=mask)
        if t > 0:
            u_prev = tl.load(u_ptr + (t - 1) * n + offsets, mask=mask, other=0.0)
            o_prev = (u_prev >= v_th).to(tl.float32)
            dbeta += d * u_prev * (1.0 - o_prev)
        d_next = d
    tl.store(dbeta_ptr + pid, tl.sum(tl.where(mask, dbeta, 0.0), axis=0))


def _scalar(value: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A 0-d parameter as a one-element float32 tensor on ``device`` (read by the kernel: no host sync)."""
    return value.detach().to(device=device, dtype=torch.float32).reshape(1)


class FusedLIF(torch.autograd.Function):
    """``(x (T, ...), beta (scalar tensor), v_th, alpha (scalar tensor, no gradient)) -> (spikes
    (T, ...) in x's dtype, membranes u (T, ...) float32)``; gradients to ``x`` and ``beta``."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, beta: torch.Tensor, v_th: float, alpha: torch.Tensor):
        steps = x.shape[0]
        flat = x.contiguous().reshape(steps, -1)
        n = flat.shape[1]
        spikes = torch.empty_like(flat)
        u = torch.empty(flat.shape, dtype=torch.float32, device=x.device)
        beta32, alpha32 = _scalar(beta, x.device), _scalar(alpha, x.device)
        _forward[(triton.cdiv(n, BLOCK),)](flat, spikes, u, beta32, float(v_th), steps, n, BLOCK=BLOCK)
        ctx.save_for_backward(u, beta32, alpha32)
        ctx.v_th, ctx.shape, ctx.dtype, ctx.beta_dtype = float(v_th), x.shape, x.dtype, beta.dtype
        ctx.mark_non_differentiable(u)
        return spikes.reshape(x.shape), u.reshape(x.shape)

    @staticmethod
    def backward(ctx, grad_spikes: torch.Tensor, grad_u: torch.Tensor):
        u, beta32, alpha32 = ctx.saved_tensors
        steps, n = u.shape
        g = grad_spikes.contiguous().reshape(steps, n)
        dx = torch.empty((steps, n), dtype=ctx.dtype, device=u.device)
        blocks = triton.cdiv(n, BLOCK)
        partial = torch.empty(blocks, dtype=torch.float32, device=u.device)
        _backward[(blocks,)](g, u, dx, partial, beta32, alpha32, ctx.v_th, steps, n, BLOCK=BLOCK)
        return dx.reshape(ctx.shape), partial.sum().to(ctx.beta_dtype), None, None


@torch.compiler.disable  # a compiled model calls the kernels as they are: dynamo does not trace Triton launches
def fused_lif(x: torch.Tensor, beta: torch.Tensor, v_th: float, alpha: torch.Tensor
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """Spikes and membranes of a LIF layer over all steps of ``x`` (T, ...), in one launch."""
    return FusedLIF.apply(x, beta, v_th, alpha)
