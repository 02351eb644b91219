"""The integer reference's fast path: the same numbers as :func:`hardware.reference.run`, bit for
bit (spikes, readout membranes, saturation counts), several times faster. numpy, plus numba when
it is importable (then the neuron loop is one compiled kernel); without numba it runs numpy only.

:mod:`hardware.reference` stays the specification: one step of every node at a time, written
plainly against the profile's step. This module reorders the same arithmetic for speed; the
tests compare the two with ``==`` on trained networks and on random graphs at the edges of every
range. What it changes, and why each change is exact:

* **Node by node over all steps.** No edge goes backwards (:class:`hardware.graph.Graph`), so a
  node's input currents for every step are known once its sources have run all ``T`` steps: each
  edge is one matrix product over ``T x B`` rows instead of ``T`` small ones, and an edge from a
  direct-encoded input (the same image every step) is computed once, not ``T`` times.
* **Neurons of a (C, H, W) node in (H, W, C) order** (:func:`hwc_order`), so one position's
  channels are contiguous; results are put back in (C, H, W) order. A permutation: exact.
* **Event-driven synapses where sums fit int32.** Each nonzero source value (a spike, or a
  graded pixel) adds its weights to the outputs it reaches: a dense edge's column, a conv's
  kernel slice ``W[:, c, i, j]`` to every output position its taps reach, a kernel row's taps
  as one run (stride and padding as in :func:`hardware.reference.conv2d_int`;
  :func:`scatter_table`). Integer additions in the
  order of the events: exact while every partial sum stays below ``2^31``, which the edge's worst
  case ``max_o sum_i |W_oi| * max|x|`` bounds, and with no wrap to apply (Loihi's conv wrap needs
  the whole sum) nor weight shift. Chosen per edge and chunk while at most :data:`EVENT_DENSITY`
  of the source values are nonzero (measured; above it BLAS is faster), twice that for skinny
  products (fewer than :data:`SKINNY` terms per output, e.g. a conv on 2-channel event frames).
* **Otherwise synapses in float32 BLAS where that is exact.** An integer sum computed in
  floating point is exact while every partial sum is an integer below the format's ``2^p``
  (``p = 24`` for float32, 53 for float64), whatever the order of accumulation. For an edge whose
  worst case stays below ``2^24`` the product runs in float32 (``sgemm``), else in float64 below
  ``2^53``, else in the reference's exact int64 arithmetic
  (:func:`hardware.reference.exact_sum_dtype`). A conv edge runs as the dense matrix it is
  equivalent to when that matrix is small and not much sparser than the convolution, else as
  windows (im2col) times the kernel. Its 24-bit wrap and counts follow, skipped when the worst
  case cannot reach ``2^23``.
* **The neuron loop compiled.** With numba, one kernel runs ``T`` steps of a node's neurons in
  registers (the profile's step: decay toward zero, current overflow, bias, membrane overflow,
  strict threshold, reset) in parallel over samples; without numba, the same step in numpy.
* **Samples in chunks** of :data:`CHUNK`, so a chunk's arrays stay in cache; the tables and the
  chunks' arrays are kept for the next run on the same graph (:func:`_prepared`).
* **One BLAS thread** while the compiled kernels run on several (:func:`_one_blas_thread`): the
  scheduling of the same exact operations, not the arithmetic.
"""

from __future__ import annotations

import math
import threading
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from functools import cache, cached_property

import numpy as np
from numpy.lib.stride_tricks import as_strided, sliding_window_view

from hardware import fixed_point as fp
from hardware.graph import INPUT, Graph, IntegerEdge, activation_bound, per_neuron
from hardware.profile import OVERFLOW_RULES, Profile
from hardware.reference import SATURATION_KINDS, IntegerRun, exact_arithmetic, synaptic_input

CHUNK = 128  #: samples per chunk (the events net runs 1.07x faster than at 256, the others alike)
EXACT_FLOATS = (np.float32, np.float64)  #: BLAS's types, the narrowest that is exact first
DENSE_CONV_LIMIT = 1 << 22  #: largest conv edge run as a dense matrix (entries)
DENSE_CONV_WASTE = 4  #: ... and only while it has at most this many entries per true multiply
#: an edge runs event-driven while at most this share of its source values in a chunk is nonzero
#: (measured per chunk; above it, BLAS's dense products are faster: bench/event_density.py)
EVENT_DENSITY = 0.3
SKINNY = 128  #: ... twice that share where BLAS's product sums fewer terms per output than this

try:  # optional: a compiled neuron loop
    import numba
except ImportError:  # the numpy loop below computes the same
    numba = None

try:  # optional (it comes with scikit-learn, in the train extra, as numba does)
    from threadpoolctl import ThreadpoolController
except ImportError:
    ThreadpoolController = None


@cache
def _blas_pool():
    """The process's BLAS thread pools, found once (None without threadpoolctl)."""
    return ThreadpoolController() if ThreadpoolController is not None else None


def _one_blas_thread():
    """A context in which BLAS runs on one thread, where numba's kernels run on several: OpenBLAS's
    idle threads spin after every product and take the cores from the parallel kernels that
    follow (measured with OPENBLAS_NUM_THREADS=1 against 2 on a quiet machine: the events net
    1.8x, ResNet-19 1.15-1.25x faster); elsewhere nothing changes."""
    pool = _blas_pool()
    if numba is None or pool is None or numba.get_num_threads() < 2:
        return nullcontext()
    return pool.limit(limits=1, user_api="blas")


@contextmanager
def _all_numba_threads() -> Iterator[None]:
    """numba's kernels on all its threads (``NUMBA_NUM_THREADS``) whatever this thread set last
    (the fused training neuron sets fewer for small layers), restored afterwards."""
    if numba is None:
        yield
        return
    before = numba.get_num_threads()
    numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
    try:
        yield
    finally:
        numba.set_num_threads(before)


def compiled() -> bool:
    """True when the neuron loop runs as a numba kernel."""
    return numba is not None


def warm_up() -> None:
    """Compile the kernels (or load them from numba's cache) for the argument types a run uses,
    so that timing a run measures the run: a second or so, once per process."""
    if numba is None:
        return
    for weights in (np.int16, np.int32):
        table = (np.arange(3), np.zeros(2, np.int64), np.arange(2) * 2, np.full(2, 2), np.ones((2, 2), weights))
        for x in (np.ones((2, 2), np.uint8), np.ones((2, 2), np.int64)):
            for acc in (np.int32, np.int64):
                _scatter(x, *table, np.zeros((2, 2), acc))
    for acc in (np.int32, np.int64):
        _lif_kernel(np.ones((1, 1, 1), acc), np.zeros(1, np.int64), 0, 0, 0, 12, 6, 24, 0, 2,
                    np.empty((1, 1, 1), np.uint8), np.empty((1, 1, 1), bool), np.empty((1, 1, 1), np.int64),
                    True, np.zeros((1, 3), np.int64))


# --- the fast path's order and the synapses -----------------------------------------------------

def hwc_order(shape: tuple[int, ...]) -> np.ndarray | None:
    """The order the fast path keeps a node's neurons in: for a (C, H, W) node, the (C, H, W)
    index of its k-th neuron in (H, W, C) order, so that one position's channels (what one kernel
    tap of a conv adds to) are contiguous; None for an (N,) node, kept in its own order."""
    if len(shape) != 3:
        return None
    c, h, w = shape
    return np.arange(c * h * w).reshape(c, h, w).transpose(1, 2, 0).ravel()


def _to_spec_order(values: np.ndarray, order: np.ndarray | None) -> np.ndarray:
    """Rows ``(M, n)`` in the fast path's order, reordered to the specification's (C, H, W)."""
    if order is None:
        return values
    out = np.empty_like(values)
    out[:, order] = values
    return out


def _conv_as_dense(edge: IntegerEdge) -> np.ndarray:
    """The (neurons_out, neurons_in) int32 matrix of a conv edge, in (C, H, W) order on both sides.

    Viewed as ``D[o, y, x, c, yi, xj]``, kernel tap ``(i, j)`` fills the entries with
    ``yi = y s_h - p_h + i`` and ``xj = x s_w - p_w + j``: a strided diagonal of ``D``, written in
    one assignment per tap."""
    g = edge.geometry
    (c_in, h_in, w_in), (c_out, h_out, w_out) = g.input_shape, g.output_shape
    (sh, sw), (ph, pw) = g.stride, g.padding
    dense = np.zeros((c_out, h_out, w_out, c_in, h_in, w_in), np.int32)
    st = dense.strides
    for i in range(edge.weight.shape[2]):
        y_lo, y_hi = max(0, -(-(ph - i) // sh)), min(h_out, (h_in - 1 + ph - i) // sh + 1)
        for j in range(edge.weight.shape[3]):
            x_lo, x_hi = max(0, -(-(pw - j) // sw)), min(w_out, (w_in - 1 + pw - j) // sw + 1)
            if y_lo >= y_hi or x_lo >= x_hi:
                continue
            start = dense[:, y_lo:, x_lo:, :, y_lo * sh - ph + i:, x_lo * sw - pw + j:]
            diagonal = as_strided(start, (c_out, y_hi - y_lo, x_hi - x_lo, c_in),
                                  (st[0], st[1] + sh * st[4], st[2] + sw * st[5], st[3]), writeable=True)
            diagonal[...] = edge.weight[:, :, i, j][:, None, None, :]
    return dense.reshape(g.neurons, g.fan_in)


def scatter_table(edge: IntegerEdge, src_order: np.ndarray | None) -> tuple[np.ndarray, ...]:
    """An edge as events: source value ``k`` (in the fast path's order, ``src_order``) adds
    ``x_k * flat[wstarts[t]:][:lengths[t]]`` to ``out[starts[t]:][:lengths[t]]``, for its runs
    ``t = ptr[k] .. ptr[k + 1] - 1``, where ``flat`` is ``wk`` raveled. Returns
    ``(ptr, starts, wstarts, lengths, wk)``.

    ``wk`` is int16 where every weight fits (Loihi's 9-bit weights do), else int32: half the bytes
    each run reads, widened exactly as it is added (1.1-1.5x the event-driven edges, measured).

    A dense edge has one run per input: all its outputs, the weight column ``W[:, k]``. A conv
    edge's output is (H, W, C): the input at ``(c, yi, xj)`` reaches output ``(y, x)`` through
    kernel tap ``(i, j)`` where ``y s_h - p_h + i = yi`` and ``x s_w - p_w + j = xj`` (both inside
    the output), adding the kernel slice ``W[:, c, i, j]`` to that position's ``C_out``
    contiguous channels. Along one kernel row ``i`` the taps it reaches are ``j = j_max, j_max -
    s_w, ...`` (one residue of ``j`` mod ``s_w``), at consecutive output positions ``x`` from
    ``(xj + p_w - j_max) / s_w`` on; ``wk`` keeps each kernel row's slices in that order (by
    residue, ``j`` descending within it), so those taps are one run of contiguous weights into
    contiguous outputs: a 3x3 kernel is 3 runs of 3 slices, not 9 of one (1.3-1.6x, measured)."""
    g, w = edge.geometry, edge.weight
    if g.kind == "dense":
        wk = w if src_order is None else w[:, src_order]
        n, m = g.fan_in, g.neurons
        return (np.arange(n + 1), np.zeros(n, np.int64), np.arange(n) * m, np.full(n, m, np.int64),
                _narrow(np.ascontiguousarray(wk.T)))
    (c_out, h_out, w_out), (sh, sw), (ph, pw) = g.output_shape, g.stride, g.padding
    kh, kw = w.shape[2:]
    j_order = sorted(range(kw), key=lambda j: (j % sw, -j))  # each kernel row's taps in wk
    slot = np.argsort(j_order)  # slot[j]: where tap j sits in its row
    c, yi, xj = np.unravel_index(np.arange(g.fan_in) if src_order is None else src_order, g.input_shape)
    i = np.arange(kh)[None, :]
    ny = yi[:, None] + ph - i  # y s_h, per input and kernel row
    row_reached = (ny >= 0) & (ny < h_out * sh) & (ny % sh == 0)
    nx = xj + pw  # x s_w + j
    residue, j_top, j_bottom = nx % sw, np.minimum(kw - 1, nx), np.maximum(0, nx - (w_out - 1) * sw)
    j_max = j_top - (j_top - residue) % sw  # the largest tap j with x inside the output; the taps:
    taps = np.where(j_max >= j_bottom, (j_max - j_bottom) // sw + 1, 0)  # j_max, j_max - s_w, ... >= j_bottom
    reached = row_reached & (taps > 0)[:, None]
    starts = ((ny // sh) * w_out + ((nx - j_max) // sw)[:, None]) * c_out
    wstarts = ((c[:, None] * kh + i) * kw + slot[np.clip(j_max, 0, kw - 1)][:, None]) * c_out
    lengths = np.broadcast_to((taps * c_out)[:, None], reached.shape)
    ptr = np.concatenate([[0], np.cumsum(reached.sum(axis=1))])
    wk = _narrow(np.ascontiguousarray(w.transpose(1, 2, 3, 0)[:, :, j_order, :].reshape(-1, c_out)))
    return ptr, *(v[reached].astype(np.int64) for v in (starts, wstarts, lengths)), wk


def _narrow(weights: np.ndarray) -> np.ndarray:
    """``weights`` as int16 where they all fit, else int32 (the event-driven sums' own bound
    keeps them below 2^31)."""
    fits = weights.size == 0 or (weights.min() >= np.iinfo(np.int16).min and weights.max() <= np.iinfo(np.int16).max)
    return weights.astype(np.int16 if fits else np.int32)


def _blas_type(worst: int) -> type | None:
    """float32 or float64 where sums up to ``worst`` are exact in it, else None (int64 below 2^63)."""
    try:
        dtype = exact_arithmetic(worst, EXACT_FLOATS)
    except ValueError:  # the reference's own arithmetic refuses it, when it runs
        return None
    return None if dtype is np.int64 else dtype


class _Synapse:
    """One edge, prepared once: its worst case, its arithmetic and its matrix, reading its source
    and writing its target in the fast path's order (:func:`hwc_order`)."""

    def __init__(self, edge: IntegerEdge, input_bound: int, profile: Profile, src_order: np.ndarray | None,
                 dst_order: np.ndarray | None):
        self.edge, self.profile, self.src_order, self.dst_order = edge, profile, src_order, dst_order
        g = edge.geometry
        self.worst = int(edge.worst_sums(input_bound).max(initial=0))
        #: the BLAS product's type (hardware.reference.exact_arithmetic); None: the reference's int64
        self.dtype = _blas_type(self.worst)
        self.conv = g.kind == "conv"
        self.may_wrap = (self.conv and profile.synapse_overflow != "checked"
                         and self.worst >= 1 << (profile.synapse_bits - 1))
        #: event-driven in the compiled kernel: integer sums below 2^31 (int16 or int32 weights,
        #: int32 partial sums), no wrap, no shift
        self.events = numba is not None and not self.may_wrap and edge.weight_exp == 0 and self.worst < 1 << 31
        self.dense = not self.conv or (g.neurons * g.fan_in <= DENSE_CONV_LIMIT
                                       and g.fan_in <= DENSE_CONV_WASTE * edge.weight[0].size)
        #: terms per output of the BLAS product: a skinny one (a conv with few input channels)
        #: runs far below BLAS's peak, so events pay up to a higher density
        self.skinny = (g.fan_in if self.dense else edge.weight[0].size) < SKINNY

    @cached_property
    def table(self) -> tuple[np.ndarray, ...]:
        """The event-driven form (:func:`scatter_table`), built when first used."""
        return scatter_table(self.edge, self.src_order)

    @cached_property
    def matrix_t(self) -> np.ndarray:
        """The (fan_in, out) matrix of the BLAS product in the exact float type, built when first
        used: the weights, the conv as a dense matrix, or the kernel for windows (im2col)."""
        w = self.edge.weight.astype(np.int64)
        if not self.conv:
            matrix = w if self.src_order is None else w[:, self.src_order]
        elif self.dense:
            matrix = _conv_as_dense(self.edge)[self.dst_order]
            matrix = matrix if self.src_order is None else matrix[:, self.src_order]
        else:  # windows in (C, kh, kw) order
            matrix = w.reshape(w.shape[0], -1)
        return np.ascontiguousarray(matrix.T.astype(self.dtype))

    def event_driven(self, s: np.ndarray) -> bool:
        """Whether these source values run event-driven: where that is exact, and while at most
        :data:`EVENT_DENSITY` of them are nonzero (measured on the chunk at hand)."""
        limit = min(1.0, 2 * EVENT_DENSITY) if self.skinny else EVENT_DENSITY
        return self.events and np.count_nonzero(s) <= limit * s.size

    def scatter(self, s: np.ndarray, out: np.ndarray) -> None:
        """``out += W s`` (M, neurons), event-driven: exact integer sums in ``out``'s dtype."""
        _scatter(s, *self.table, out)

    def __call__(self, s: np.ndarray) -> tuple[np.ndarray, int]:
        """Activations (M, neurons) int64 for source values ``s`` (M, fan_in), and the wraps."""
        if self.dtype is None:  # beyond float64's exact range: the reference's own arithmetic
            a, wrapped = synaptic_input(self.edge, _to_spec_order(s.astype(np.int64), self.src_order), self.profile)
            return (a if self.dst_order is None else a[:, self.dst_order]), wrapped
        x = s.astype(self.dtype, copy=False)
        raw = (x @ self.matrix_t if self.dense else self._im2col(x)).astype(np.int64)
        if not self.conv:
            exp = int(self.edge.weight_exp)
            return (np.left_shift(raw, exp) if exp > 0 else np.right_shift(raw, -exp)), 0
        if not self.may_wrap:
            return raw, 0
        a = self.profile.synapse(raw)
        return a, int(np.count_nonzero(a != raw))

    def _im2col(self, x: np.ndarray) -> np.ndarray:
        """The conv as windows times the kernel, in (H, W, C) order: the product's rows are the
        output positions, its columns their channels."""
        g = self.edge.geometry
        m = x.shape[0]
        c, h, w = g.input_shape
        (ph, pw), (kh, kw) = g.padding, self.edge.weight.shape[2:]
        image = x.reshape(m, h, w, c) if self.src_order is not None else x.reshape(m, c, h, w).transpose(0, 2, 3, 1)
        padded = np.pad(image, ((0, 0), (ph, ph), (pw, pw), (0, 0)))
        win = sliding_window_view(padded, (kh, kw), axis=(1, 2))[:, :: g.stride[0], :: g.stride[1]]
        patches = np.ascontiguousarray(win).reshape(-1, c * kh * kw)  # (M Ho Wo, C kh kw)
        return (patches @ self.matrix_t).reshape(m, -1)


# --- the neuron loop ------------------------------------------------------------------------------

def _rule(name: str) -> int:
    return OVERFLOW_RULES.index(name)


if numba is not None:
    @numba.njit(cache=True, inline="always")
    def _overflow(x, rule, bits):
        half = np.int64(1) << (bits - 1)
        if rule == 0:  # wrap-once (fixed_point.wrap_current)
            if x > half:
                return x - 2 * half
            if x <= -half:
                return x + 2 * half
            return x
        if rule == 1:  # two's-complement wrap
            return ((x + half) % (2 * half)) - half
        limit = half - 1  # saturate
        return min(max(x, -limit), limit)

    @numba.njit(cache=True, inline="always")
    def _decay(x, factor, shift, mask):
        p = x * factor
        return (p + ((p >> 63) & mask)) >> shift

    @numba.njit(cache=True, inline="always")
    def _lif_row(u, v, a_t, bias, fu, fv, decay_shift, mask, act_shift, thr, state_bits, cur_rule, volt_rule,
                 spikes_f, spikes_b):
        """One step of one sample's neurons, in place on its membranes ``u``, ``v``; returns its
        (current wraps, voltage clips)."""
        u_wrap = 0
        v_clip = 0
        for n in range(u.shape[0]):
            u_raw = _decay(u[n], fu, decay_shift, mask) + (np.int64(a_t[n]) << act_shift)
            u_n = _overflow(u_raw, cur_rule, state_bits)
            v_raw = _decay(v[n], fv, decay_shift, mask) + u_n + bias[n]
            v_n = _overflow(v_raw, volt_rule, state_bits)
            u_wrap += u_n != u_raw
            v_clip += v_n != v_raw
            s = v_n > thr
            v_n = 0 if s else v_n
            u[n] = u_n
            v[n] = v_n
            spikes_f[n] = s
            spikes_b[n] = s
        return u_wrap, v_clip

    @numba.njit(parallel=True, cache=True)
    def _lif_kernel(a, bias, du, dv, thr, decay_shift, act_shift, state_bits, cur_rule, volt_rule,
                    spikes_f, spikes_b, v_out, keep_v, counts):
        steps, m_total, n_total = a.shape
        unity = np.int64(1) << decay_shift
        mask = unity - 1
        fu, fv = unity - (du + 1), unity - dv
        #: Loihi's rules (wrap-once current, saturating voltage) as constants: the row loop then
        #: has no branch on the rule and vectorises (2.3x the general loop, measured)
        loihi = cur_rule == 0 and volt_rule == 2
        for m in numba.prange(m_total):
            u_wrap = 0
            v_clip = 0
            u = np.zeros(n_total, np.int64)
            v = np.zeros(n_total, np.int64)
            for t in range(steps):
                if loihi:
                    w, c = _lif_row(u, v, a[t, m], bias, fu, fv, decay_shift, mask, act_shift, thr, state_bits,
                                    0, 2, spikes_f[t, m], spikes_b[m, t])
                else:
                    w, c = _lif_row(u, v, a[t, m], bias, fu, fv, decay_shift, mask, act_shift, thr, state_bits,
                                    cur_rule, volt_rule, spikes_f[t, m], spikes_b[m, t])
                u_wrap += w
                v_clip += c
                if keep_v:
                    v_out[m, t] = v
            counts[m, 0] = u_wrap
            counts[m, 1] = v_clip

    @numba.njit(parallel=True, cache=True)
    def _scatter(x, ptr, starts, wstarts, lengths, wk, out):
        """Event-driven synapses (:func:`scatter_table`): for every nonzero ``x[r, k]`` (spikes
        are sparse), ``out[r, starts[t]:][:lengths[t]] += x[r, k] * flat[wstarts[t]:][:lengths[t]]``
        over its runs ``t``; samples in parallel, integer arithmetic in ``out``'s dtype. A row's
        nonzeros are listed first without a branch (a branch per value mispredicts at spike
        densities: 1.1-1.4x, measured). Offsets are unsigned, so the compiled loop has no
        negative-index check and vectorises (1.15x signed views, measured)."""
        n_rows, fan_in = x.shape
        flat = wk.ravel()
        for r in numba.prange(n_rows):
            o_r = out[r]
            x_r = x[r]
            active = np.empty(fan_in, np.int64)
            n_active = 0
            for k in range(fan_in):
                active[n_active] = k
                n_active += x_r[k] != 0
            for q in range(n_active):
                k = active[q]
                xk = x_r[k]
                for t in range(ptr[k], ptr[k + 1]):
                    o0, w0, n = np.uint64(starts[t]), np.uint64(wstarts[t]), np.uint64(lengths[t])
                    if xk == 1:  # a spike: add the weights
                        for o in range(n):
                            o_r[o0 + o] += flat[w0 + o]
                    else:  # a graded input
                        for o in range(n):
                            o_r[o0 + o] += xk * flat[w0 + o]


def _compiled_step(profile: Profile) -> bool:
    """Whether the compiled kernel computes this profile's step (Loihi's form); other profiles run
    the profile's own step, vectorised over the batch."""
    return (profile.decay_form == "complement" and profile.current_stage and profile.threshold == ">"
            and profile.decay_rounding == "toward-zero"
            and "checked" not in (profile.current_overflow, profile.voltage_overflow))


class _Workspace:
    """The large arrays of a chunk, reused from chunk to chunk and run to run (kept with the
    prepared graph). glibc gives large freed blocks back to the OS (its mmap and trim thresholds
    follow the largest block freed so far), so a fresh chunk's arrays were faulted in page by page
    as they were first written: the ResNet net ran 2.4x slower in a process that had not freed a
    larger block before (measured; MALLOC_MMAP_THRESHOLD_=64 MiB gave the same 2.4x, and so did
    running the specification first). One buffer per role serves every node in turn (each node's
    array is used up before the next node's is made), except a role ``own``ed by a node (its
    spikes, which later nodes read); a smaller chunk uses its beginning."""

    def __init__(self):
        self._buffers: dict[tuple, np.ndarray] = {}

    def empty(self, role: str, shape: tuple[int, ...], dtype, own: str | None = None) -> np.ndarray:
        key, size = (role, own, np.dtype(dtype)), math.prod(shape)
        buffer = self._buffers.get(key)
        if buffer is None or buffer.size < size:
            buffer = self._buffers[key] = np.empty(size, dtype)
        return buffer[:size].reshape(shape)


def _lif(a: np.ndarray, bias: np.ndarray, node, profile: Profile, keep_v: bool, work: _Workspace
         ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, dict[str, int]]:
    """``T`` steps of a node from zero state on activations ``a`` (T, M, N): spikes as uint8
    (T, M, N) for the next synapses and bool (M, T, N) for the result, membranes (M, T, N) if
    ``keep_v``, and the saturation counts."""
    steps, m, n = a.shape
    # the readout never fires (Profile.lif_step): no int64 exceeds the largest one
    thr = np.iinfo(np.int64).max if node.readout else int(node.vth) << profile.vth_shift
    if numba is not None and _compiled_step(profile):
        spikes_f = work.empty("spikes", (steps, m, n), np.uint8, own=node.name)  # every element is written
        spikes_b = work.empty("spikes_b", (m, steps, n), bool)
        v_out = work.empty("v", (m, steps, n) if keep_v else (1, 1, 1), np.int64)
        counts = np.zeros((m, 2), np.int64)
        _lif_kernel(a, bias, int(node.du), int(node.dv), thr, profile.decay_shift, profile.act_shift,
                    profile.state_bits, _rule(profile.current_overflow), _rule(profile.voltage_overflow),
                    spikes_f, spikes_b, v_out, keep_v, counts)
        total = counts.sum(axis=0)
        return spikes_f, spikes_b, (v_out if keep_v else None), {
            "u_wrap": int(total[0]), "v_clip": int(total[1])}
    u = v = np.zeros((m, n), np.int64)
    spikes_b = np.empty((m, steps, n), bool)
    v_out = np.empty((m, steps, n), np.int64) if keep_v else None
    counts = {"u_wrap": 0, "v_clip": 0}
    for t in range(steps):
        fired, u, v, c = profile.lif_step(a[t], u, v, node.du, node.dv, bias, node.vth, readout=node.readout)
        counts["u_wrap"] += c["u_wrap"]
        counts["v_clip"] += c["v_clip"]
        spikes_b[:, t] = fired
        if keep_v:
            v_out[:, t] = v
    return spikes_b.transpose(1, 0, 2).astype(np.uint8), spikes_b, v_out, counts


# --- the run --------------------------------------------------------------------------------------

def _currents(node, edges, synapses: dict[str, _Synapse], source_rows: dict[str, np.ndarray], m: int,
              timesteps: int, dtype, sat: dict[str, int], once: bool, work: _Workspace) -> np.ndarray:
    """A node's summed activations (T, M, N) for one chunk. An edge from the direct-encoded
    input is computed once (``once``) and counts its wraps for every step."""
    a = work.empty("a", (timesteps, m, node.neurons), dtype)
    a.fill(0)
    flat = a.reshape(timesteps * m, node.neurons)
    for edge in edges:
        syn, rows = synapses[edge.name], source_rows[edge.source]
        constant = once and edge.source == INPUT  # rows (M, n): the same input every step
        if syn.event_driven(rows):
            if not constant:
                syn.scatter(rows, flat)
                continue
            a_e, wrapped = np.zeros((m, node.neurons), dtype), 0
            syn.scatter(rows, a_e)
        else:
            a_e, wrapped = syn(rows)
        sat["a_wrap"] += wrapped * timesteps if constant else wrapped
        a += a_e.reshape(-1, m, node.neurons).astype(dtype, copy=False)
    return a


def _store(dst: np.ndarray, values: np.ndarray, order: np.ndarray | None, shape: tuple[int, ...]) -> None:
    """``dst[...] = values`` for (M, T, N) arrays, from the fast path's order to the specification's."""
    if order is None:
        dst[...] = values
    else:
        c, h, w = shape
        m, steps = values.shape[:2]
        dst.reshape(m, steps, c, h, w)[...] = values.reshape(m, steps, h, w, c).transpose(0, 1, 4, 2, 3)


#: per thread (a run writes its workspace), the last graph's prepared synapses, for the next run
#: on it (simulate runs a test set chunk by chunk, a bench the same samples again): ``.last`` is
#: (the graph, weakly; input bound; profile; what it holds)
_kept = threading.local()


def _prepared(graph: Graph, bound: int, profile: Profile) -> tuple[dict, dict, dict, dict, _Workspace]:
    """The run's fixed parts for this graph, inputs bounded by ``bound`` and this profile: the
    nodes' orders, the synapses (whose tables and matrices are built when first used and kept),
    the biases, the activations' dtypes and the chunks' arrays (:class:`_Workspace`). Kept for
    the last graph (a graph is immutable: frozen records whose arrays nobody writes), so a run
    over many chunks builds them once (events net, 360 samples: 10% of a run, measured)."""
    graph_ref, kept_bound, kept_profile, prepared = getattr(_kept, "last", (lambda: None, None, None, None))
    if graph_ref() is graph and kept_bound == bound and kept_profile == profile:
        return prepared
    orders = {INPUT: None, **{n.name: hwc_order(n.shape) for n in graph.nodes}}
    synapses = {e.name: _Synapse(e, bound if e.source == INPUT else 1, profile, orders[e.source], orders[e.target])
                for e in graph.edges}
    biases = {n.name: _in_order(fp.effective_bias(per_neuron(n.shape, n.bias_mant), n.bias_exp).astype(np.int64),
                                orders[n.name]) for n in graph.nodes}
    #: int32 activations where every node's summed worst case fits (halves the memory traffic)
    wrap = profile.synapse_bits if profile.synapse_overflow != "checked" else None
    acc_dtype = {n.name: np.int32 if activation_bound(graph, n.name, bound, wrap) < 1 << 31 else np.int64
                 for n in graph.nodes}
    prepared = orders, synapses, biases, acc_dtype, _Workspace()
    _kept.last = weakref.ref(graph), bound, profile, prepared
    return prepared


def run(graph: Graph, inputs: np.ndarray, timesteps: int, profile: Profile, chunk: int = CHUNK,
        progress: Callable[[int], object] | None = None) -> IntegerRun:
    """:func:`hardware.reference.run`, computed faster; the same arguments, the same result.
    ``progress(n)`` is called after every chunk of ``n`` samples. Inputs are checked as there."""
    profile.check_input(graph.input)
    steps_in = graph.input.steps(inputs, timesteps)
    b = steps_in.shape[0]
    per_step = graph.input.per_step
    bound = int(np.abs(steps_in).max(initial=0))
    orders, synapses, biases, acc_dtype, work = _prepared(graph, bound, profile)
    #: the input as the compiled kernel reads it: bytes where the values fit (they are checked)
    in_dtype = np.uint8 if graph.input.input_max <= 255 else np.int64
    incoming = {n.name: graph.incoming(n.name) for n in graph.nodes}
    spikes = {n.name: np.empty((b, timesteps, n.neurons), bool) for n in graph.hidden}
    readout = np.empty((b, timesteps, graph.readout.neurons), np.int64)
    saturation = {n.name: dict.fromkeys(SATURATION_KINDS, 0) for n in graph.nodes}
    with _all_numba_threads(), _one_blas_thread():  # numba's kernels get the cores
        for lo in range(0, b, chunk):
            hi = min(lo + chunk, b)
            m = hi - lo
            if per_step:  # (M, T, ...) -> time-major rows (T * M, n)
                source_rows = {INPUT: steps_in[lo:hi].reshape(m, timesteps, -1).transpose(1, 0, 2).reshape(
                    timesteps * m, -1).astype(in_dtype)}
            else:
                source_rows = {INPUT: np.asarray(inputs)[lo:hi].reshape(m, -1).astype(in_dtype)}
            for node in graph.nodes:
                a = _currents(node, incoming[node.name], synapses, source_rows, m, timesteps, acc_dtype[node.name],
                              saturation[node.name], not per_step, work)
                spikes_u8, spikes_b, v, counts = _lif(a, biases[node.name], node, profile, node.readout, work)
                sat = saturation[node.name]
                sat["u_wrap"] += counts["u_wrap"]
                sat["v_clip"] += counts["v_clip"]
                if node.readout:
                    _store(readout[lo:hi], v, orders[node.name], node.shape)
                else:
                    _store(spikes[node.name][lo:hi], spikes_b, orders[node.name], node.shape)
                    source_rows[node.name] = spikes_u8.reshape(timesteps * m, -1)
            if progress is not None:
                progress(m)
    return IntegerRun(spikes=spikes, readout=readout, saturation=saturation)


def _in_order(values: np.ndarray, order: np.ndarray | None) -> np.ndarray:
    """Per-neuron ``values`` in (C, H, W) order, in the fast path's order."""
    return values if order is None else values[order]


def worst_cases(graph: Graph, input_bound: int, profile: Profile) -> dict[str, tuple[int, str]]:
    """Per edge: its worst-case ``|sum|`` and the arithmetic the fast path gives it (for reports)."""
    out = {}
    orders = {INPUT: None, **{n.name: hwc_order(n.shape) for n in graph.nodes}}
    for e in graph.edges:
        s = _Synapse(e, input_bound if e.source == INPUT else 1, profile, orders[e.source], orders[e.target])
        blas = "int64" if s.dtype is None else np.dtype(s.dtype).name + (" dense" if s.dense else " im2col")
        out[e.name] = (s.worst, f"int32 event-driven, else {blas}" if s.events else blas)
    return out
