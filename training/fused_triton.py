"""The fused LSG neuron's kernels for CUDA: :mod:`training.fused`'s forward and backward in
Triton, every neuron in parallel (blocks of :data:`BLOCK`), each program running its neurons' T
steps in order with the membrane in registers. Triton's interpreter runs the same kernels on the
CPU when ``TRITON_INTERPRET=1`` is set before this module is imported (:data:`INTERPRETED`),
which is how the tests check them without a GPU.

The forward is compiled without floating-point contraction (``enable_fp_fusion=False``): a fused
multiply-add would round ``beta u (1 - o) + x`` once where the step function rounds each
operation, and a membrane one ulp from the threshold would then spike differently. The backward
may contract (its gradients are compared to float tolerance). ``beta`` and ``alpha`` are read on
the device (no host synchronisation per layer). The decay's gradient is reduced per block of
neurons in the kernel and summed in torch (deterministic, no atomics).
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


def forward(x: torch.Tensor, beta: torch.Tensor, v_th: float) -> tuple[torch.Tensor, torch.Tensor]:
    """``(spikes in x's dtype, u)`` of ``x`` (T, n), contiguous, computed in float32; ``u`` is
    float32 (float64 for float64 inputs, as the fake operator says)."""
    steps, n = x.shape
    spikes = torch.empty_like(x)
    u = torch.empty(x.shape, dtype=torch.float64 if x.dtype == torch.float64 else torch.float32, device=x.device)
    _forward[(triton.cdiv(n, BLOCK),)](x, spikes, u, _scalar(beta, x.device), float(v_th), steps, n, BLOCK=BLOCK,
                                       enable_fp_fusion=False)
    return spikes, u


def backward(g: torch.Tensor, u: torch.Tensor, beta: torch.Tensor, alpha: torch.Tensor, v_th: float
             ) -> tuple[torch.Tensor, torch.Tensor]:
    """``(dL/dx in g's dtype, dL/dbeta in u's dtype)``: ``g`` the spikes' gradient, ``u`` the
    membranes, both (T, n) contiguous."""
    steps, n = u.shape
    dx = torch.empty_like(g)
    blocks = triton.cdiv(n, BLOCK)
    partial = torch.empty(blocks, dtype=torch.float32, device=u.device)
    _backward[(blocks,)](g, u, dx, partial, _scalar(beta, u.device), _scalar(alpha, u.device), float(v_th), steps, n,
                         BLOCK=BLOCK)
    return dx, partial.sum().to(u.dtype)
