"""The fused LSG neuron's kernels for the CPU: :mod:`training.fused`'s forward and backward as
numba kernels, the same algorithm as the Triton kernels (:mod:`training.fused_triton`): blocks of
neurons, each block's T steps in order, the blocks spread over up to as many threads as torch uses
(one per :data:`THREAD_ELEMENTS` of the layer: :func:`_threads`).

The blocks run on numba's ``workqueue`` threads (up to as many as torch's), not its default OpenMP
layer: that layer's spinning pool competes with torch's own OpenMP threads, and made a 2-process
torchrun training three times slower than the step function. (Without ``parallel=True`` the
same loops compile several times slower, even on one thread.) ``NUMBA_THREADING_LAYER`` set by
the user is kept; a process whose numba kernels already ran keeps the layer it chose.

The arithmetic is the step function's, operation for operation, in the input's dtype (float32 in
training): ``u[t] = beta u[t-1] + x[t]`` when ``u[t-1]`` did not spike and ``x[t]`` when it did
(``(beta u) (1 - o) + x`` with ``o`` in {0, 1} rounds to the same value), so the spikes equal the
step function's bit for bit. The decay's gradient is summed per neuron over time, then per block
of :data:`BLOCK` neurons in float64 (a fixed order, whatever the thread count: deterministic).
"""

from __future__ import annotations

import os

import numba
import numpy as np
import torch

BLOCK = 4096  #: neurons per block (and per partial sum of the decay's gradient)
THREAD_ELEMENTS = 1 << 20  #: a layer's elements (T x neurons) per numba thread (:func:`_threads`)

if "NUMBA_THREADING_LAYER" not in os.environ:  # the user's choice stands; numba's own default is OpenMP's
    numba.config.THREADING_LAYER = "workqueue"


@numba.njit(parallel=True, cache=True)
def _forward(x, o, u, beta, v_th, zero):  # pragma: no cover - compiled
    steps, n = x.shape
    one = o.dtype.type(1)
    for block in numba.prange((n + BLOCK - 1) // BLOCK):
        lo, hi = block * BLOCK, min(n, (block + 1) * BLOCK)
        x_0, u_0, o_0 = x[0, lo:hi], u[0, lo:hi], o[0, lo:hi]
        for j in range(hi - lo):
            value = x_0[j]
            u_0[j] = value
            o_0[j] = one if value >= v_th else zero
        for t in range(1, steps):
            # one step's rows as 1-D slices, as in _backward: the loop then vectorises (3x the
            # same loop indexing [t, i], measured)
            u_prev, x_t, u_t, o_t = u[t - 1, lo:hi], x[t, lo:hi], u[t, lo:hi], o[t, lo:hi]
            for j in range(hi - lo):  # selects, no branches
                previous = u_prev[j]
                value = (beta * previous if previous < v_th else zero) + x_t[j]  # reset: the carry is 0
                u_t[j] = value
                o_t[j] = one if value >= v_th else zero


@numba.njit(parallel=True, cache=True)
def _backward(g, u, dx, partial, beta, alpha, half_alpha, v_th, zero):  # pragma: no cover - compiled
    steps, n = u.shape
    for block in numba.prange((n + BLOCK - 1) // BLOCK):
        lo, hi = block * BLOCK, min(n, (block + 1) * BLOCK)
        d_next = np.zeros(hi - lo, u.dtype)
        dbeta = np.zeros(hi - lo, u.dtype)
        for k in range(steps):
            t = steps - 1 - k
            u_t, g_t, dx_t = u[t, lo:hi], g[t, lo:hi], dx[t, lo:hi]
            for j in range(hi - lo):
                value = u_t[j]
                carried = d_next[j]
                d_next[j] = ((beta * carried if value < v_th else zero)  # the membrane carried on (no reset)
                             + ((g_t[j] - beta * value * carried) / alpha if abs(value - v_th) < half_alpha else zero))
            dx_t[:] = d_next
            if t > 0:  # the decay's gradient: the membrane it decayed
                u_before = u[t - 1, lo:hi]
                for j in range(hi - lo):
                    dbeta[j] += d_next[j] * u_before[j] if u_before[j] < v_th else zero
        total = 0.0  # float64
        for j in range(hi - lo):
            total += dbeta[j]
        partial[block] = total


def _threads(elements: int) -> None:
    """Up to as many of numba's threads as torch uses (torchrun gives each process one), one per
    :data:`THREAD_ELEMENTS` of the layer: a small layer's kernel is shorter than the time numba's
    threads and torch's spinning OpenMP threads take the cores from each other (the digits
    training step: 1.25-1.28x SpikingJelly's with two threads, 1.43x with one, measured). Set
    only when it changes (setting it costs ~10 us a call, measured)."""
    wanted = max(1, min(torch.get_num_threads(), numba.config.NUMBA_NUM_THREADS, -(-elements // THREAD_ELEMENTS)))
    if numba.get_num_threads() != wanted:
        numba.set_num_threads(wanted)


def forward(x: torch.Tensor, beta: torch.Tensor, v_th: float) -> tuple[torch.Tensor, torch.Tensor]:
    """``(spikes in x's dtype, u)`` of ``x`` (T, n), contiguous on the CPU; ``u`` in float32 (float64
    for float64 inputs: the step function's own dtype there), computed in that dtype."""
    work = x if x.dtype == torch.float64 else x.float()
    dtype = work.numpy().dtype.type
    spikes, u = torch.empty_like(work), torch.empty_like(work)
    _threads(work.numel())
    _forward(work.numpy(), spikes.numpy(), u.numpy(), dtype(beta.item()), dtype(v_th), dtype(0))
    return spikes.to(x.dtype), u


def backward(g: torch.Tensor, u: torch.Tensor, beta: torch.Tensor, alpha: torch.Tensor, v_th: float
             ) -> tuple[torch.Tensor, torch.Tensor]:
    """``(dL/dx in g's dtype, dL/dbeta in u's dtype)``: ``g`` the spikes' gradient, ``u`` the
    membranes, both (T, n) contiguous."""
    dtype = u.numpy().dtype.type
    dx = torch.empty_like(u)
    partial = torch.empty(-(-u.shape[1] // BLOCK), dtype=torch.float64)
    a = float(alpha.item())
    _threads(u.numel())
    _backward(g.to(u.dtype).numpy(), u.numpy(), dx.numpy(), partial.numpy(), dtype(beta.item()), dtype(a),
              dtype(a / 2), dtype(v_th), dtype(0))
    return dx.to(g.dtype), partial.sum().to(u.dtype)
