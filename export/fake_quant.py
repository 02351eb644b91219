"""Torch evaluation of a bundle's integer network: integer weights, integer state, the profile's rounding.

The synapses are computed independently of ``hardware.reference``: one torch matrix product per
edge (a conv as its kernel times the input's windows), in the narrowest type in which it is exact
for the values at hand, chosen per edge by its worst case ``max_o sum_i |W_oi| * max|s|`` as the
reference's fast path chooses (:func:`edge_arithmetic`): float32 below 2^24, float64 below 2^53
(every partial sum is then an integer the type holds exactly, in any order of accumulation, on a
CPU or a GPU), else int64 from exact float64 pieces. The neuron is the profile's one integer step
(:meth:`hardware.profile.Profile.lif_step`), run on int64 tensors. The tests compare the paths
with ``==``; Lava is the independent oracle for the step itself. Quantization-aware fine-tuning
(:mod:`export.finetune`) is this path made differentiable, in float64 (:func:`weighted_sum`).
``simulate --backend fake-quant --device cuda`` runs it on a GPU (:func:`run_integer`).

The network runs node by node, each node over all ``T`` steps (:func:`run_node`): the graph's
edges all go forward and every node reads its sources' values of the same step, so this order
computes exactly what the step-by-step schedule of :mod:`hardware.graph` computes, and it lets a
caller run one node on inputs of its choosing (``simulate --explain`` feeds a node the float
network's spikes, :mod:`lsg_deploy.explain`).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from itertools import pairwise

import numpy as np
import torch

from hardware import fixed_point as fp
from hardware.graph import INPUT, Geometry, Graph, IntegerEdge, IntegerNode, per_neuron
from hardware.profile import Profile
from hardware.reference import EXACT_FLOAT_BITS, SATURATION_KINDS, IntegerRun, exact_arithmetic


def weighted_sum(geometry: Geometry, weight: torch.Tensor, x: torch.Tensor, profile: Profile
                 ) -> torch.Tensor:
    """``W x`` (N, neurons) float64 for integer weights and source values held in float64 (exact
    below 2^53), a conv's sums brought to the profile's synapse width. Differentiable where
    ``weight`` or ``x`` carry gradients: the width's wrap passes the gradient straight through
    (fine-tuning, :mod:`export.finetune`)."""
    if geometry.kind == "conv":
        a = torch.nn.functional.conv2d(x.reshape(-1, *geometry.input_shape), weight, stride=geometry.stride,
                                       padding=geometry.padding).flatten(1)
        wrapped = profile.synapse(torch.round(a.detach()).to(torch.int64)).to(a.dtype)
        return a + (wrapped - a).detach()
    return x.flatten(1) @ weight.T


#: the float types tried for an edge's sums, the narrowest first (hardware.reference.exact_arithmetic)
EXACT_FLOATS = (np.float32, np.float64)
FLOAT64_EXACT = 1 << EXACT_FLOAT_BITS[np.float64]  #: integers below this are exact in float64
TORCH_TYPES = {np.float32: torch.float32, np.float64: torch.float64, np.int64: torch.int64}


def edge_arithmetic(edge: IntegerEdge, bound: int) -> torch.dtype:
    """The type in which an edge's sums are exact for source values ``|s| <= bound``, chosen by
    its worst case ``max_o sum_i |W_oi| * bound`` as the integer reference's fast path chooses it
    (:func:`hardware.reference.exact_arithmetic`): float32 below 2^24, float64 below 2^53, else
    int64 (computed as exact float64 pieces, :func:`_int64_sums`). A ``ValueError`` names the
    edge where no 64-bit arithmetic holds its sums, or where one piece (a dense input, a conv's
    input channel) alone leaves float64's integers."""
    worst = int(edge.worst_sums(bound).max(initial=0))
    try:
        chosen = exact_arithmetic(worst, EXACT_FLOATS)
    except ValueError as exc:
        raise ValueError(f"edge {edge.name}: {exc}") from None
    largest = int(_piece_bounds(edge.weight, bound).max(initial=0))
    if chosen is np.int64 and largest >= FLOAT64_EXACT:
        raise ValueError(f"edge {edge.name}: the products of one input{' channel' * (edge.weight.ndim == 4)} sum up "
                         f"to {largest}, beyond the integers float64 holds exactly (2^53); fake-quant sums in float64 "
                         f"pieces and cannot run it")
    return TORCH_TYPES[chosen]


def _piece_bounds(weight: np.ndarray, bound: int) -> np.ndarray:
    """Per input (a dense edge's) or input channel (a conv's): the largest ``sum |w s|`` it can
    add to one output, ``max_o |W_oi| * bound`` times a conv's taps (a Python-int-safe int64 for
    every profile: weights and inputs are below 2^32)."""
    w = np.abs(weight.astype(np.int64)).reshape(len(weight), weight.shape[1], -1)
    return w.max(axis=(0, 2), initial=0) * w.shape[2] * int(bound)


@contextmanager
def ieee_float32() -> Iterator[None]:
    """Float32 matrix products in IEEE single precision, never TF32 or bfloat16 (which a user may
    have allowed: their 10- or 8-bit significands would round integer sums)."""
    backends = (torch.backends.cuda.matmul, torch.backends.mkldnn.matmul)
    before = [b.fp32_precision for b in backends]
    for b in backends:
        b.fp32_precision = "ieee"
    try:
        yield
    finally:
        for b, value in zip(backends, before, strict=True):
            b.fp32_precision = value


def _products(geometry: Geometry, weight: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``W x`` (N, neurons) as one matrix product in ``x``'s float type: a conv as the kernel
    (O, C kh kw) times the input's windows (im2col; ``x``'s channels are those of ``weight``),
    its rows in (C, H, W) order. A plain product of integers, exact under the bound
    :func:`edge_arithmetic` checks (cuDNN's convolutions are avoided: its Winograd and FFT
    algorithms do not add the integer products themselves)."""
    if geometry.kind == "dense":
        return x @ weight.T
    return torch.matmul(weight.reshape(len(weight), -1), _windows(geometry, x, tuple(weight.shape[2:]))).flatten(1)


def _windows(geometry: Geometry, x: torch.Tensor, kernel: tuple[int, int]) -> torch.Tensor:
    """The conv's input windows (N, C kh kw, Ho Wo) of ``x`` (N, C H W), zero-padded: strided views
    copied once (50x torch's CPU ``im2col`` on the digits net, measured; the same values)."""
    (ph, pw), (sh, sw) = geometry.padding, geometry.stride
    padded = torch.nn.functional.pad(x.reshape(len(x), -1, *geometry.input_shape[1:]), (pw, pw, ph, ph))
    views = padded.unfold(2, kernel[0], sh).unfold(3, kernel[1], sw)  # (N, C, Ho, Wo, kh, kw)
    n, c, ho, wo = views.shape[:4]
    return views.permute(0, 1, 4, 5, 2, 3).reshape(n, c * kernel[0] * kernel[1], ho * wo)


def _int64_sums(geometry: Geometry, weight: np.ndarray, x: torch.Tensor, bound: int) -> torch.Tensor:
    """``W x`` in int64 for sums past float64's 2^53: the fan-in cut into consecutive pieces (of
    inputs, or a conv's input channels) whose own worst case (the sum of their
    :func:`_piece_bounds`) stays below 2^53, each piece one exact float64 product, the pieces
    added in int64 (:func:`edge_arithmetic` has checked that every single input fits)."""
    cuts, total = [0], 0
    for i, piece in enumerate(_piece_bounds(weight, bound).tolist()):
        if total + piece >= FLOAT64_EXACT:
            cuts.append(i)
            total = 0
        total += piece
    cuts.append(weight.shape[1])
    channels = x.reshape(len(x), weight.shape[1], -1)  # inputs, or a conv's channels of H W values
    out = torch.zeros((), dtype=torch.int64, device=x.device)
    for lo, hi in pairwise(cuts):
        w = torch.as_tensor(weight[:, lo:hi], dtype=torch.float64, device=x.device)
        out = out + _products(geometry, w, channels[:, lo:hi].flatten(1).to(torch.float64)).to(torch.int64)
    return out


def synaptic(edge: IntegerEdge, s: torch.Tensor, profile: Profile) -> tuple[torch.Tensor, int]:
    """One edge's integer activation ``a`` (N, neurons) int64 for source values ``s`` (N, ...),
    and how many of its conv outputs wrapped: conv ``W * s`` brought to the profile's synapse
    width, dense ``(W s) << weight_exp``; exact in the arithmetic :func:`edge_arithmetic` picks
    for the values at hand."""
    bound = int(s.abs().max()) if s.numel() else 0
    dtype = edge_arithmetic(edge, bound)
    if dtype == torch.int64:
        raw = _int64_sums(edge.geometry, edge.weight, s, bound)
    else:
        w = torch.as_tensor(edge.weight, device=s.device).to(dtype)
        with ieee_float32():
            raw = _products(edge.geometry, w, s.to(dtype)).to(torch.int64)  # integers: the cast is exact
    if edge.geometry.kind == "conv":
        a = profile.synapse(raw)
        return a, fp.count(a != raw)
    exp = int(edge.weight_exp)
    return (raw << exp if exp > 0 else raw >> -exp), 0


@torch.no_grad()
def run_node(node: IntegerNode, edges: Sequence[IntegerEdge], sources: Mapping[str, torch.Tensor],
             profile: Profile, saturation: dict[str, int] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """One integer node over all steps from zero state. ``edges``: its incoming edges;
    ``sources``: each edge's source values (B, T, neurons) integers (spikes, or the encoded
    input); a source that holds one value for every step (stride 0 over T: a direct input, as
    :func:`encoded_steps` gives it) is summed once. Returns ``(spikes (B, T, neurons) bool,
    membranes v after each step (B, T, neurons) int64)``; the readout's membranes are its
    output. ``saturation``, if given, gets the node's counts added (the reference's kinds:
    :data:`hardware.reference.SATURATION_KINDS`)."""
    any_source = sources[edges[0].source]
    b, t = any_source.shape[:2]
    device = any_source.device
    a = torch.zeros(b, t, node.neurons, dtype=torch.int64, device=device)
    counts = dict.fromkeys(SATURATION_KINDS, 0)
    for edge in edges:
        src = sources[edge.source]
        if t > 1 and src.stride(1) == 0:  # the same values every step: one sum, T steps of it
            a_e, wrapped = synaptic(edge, src[:, 0], profile)
            a, counts["a_wrap"] = a + a_e[:, None], counts["a_wrap"] + wrapped * t
        else:
            a_e, wrapped = synaptic(edge, src.reshape(b * t, -1), profile)
            a, counts["a_wrap"] = a + a_e.reshape(b, t, -1), counts["a_wrap"] + wrapped
    bias = torch.as_tensor(fp.effective_bias(per_neuron(node.shape, node.bias_mant), node.bias_exp), device=device)
    u = v = torch.zeros(b, node.neurons, dtype=torch.int64, device=device)
    spikes, membranes = [], []
    for step in range(t):
        fired, u, v, step_counts = profile.lif_step(a[:, step], u, v, node.du, node.dv, bias, node.vth,
                                                    readout=node.readout)
        counts["u_wrap"] += step_counts["u_wrap"]
        counts["v_clip"] += step_counts["v_clip"]
        spikes.append(fired)
        membranes.append(v)
    if saturation is not None:
        for kind, n in counts.items():
            saturation[kind] = saturation.get(kind, 0) + n
    return torch.stack(spikes, dim=1), torch.stack(membranes, dim=1)


def encoded_steps(graph: Graph, inputs: torch.Tensor, timesteps: int) -> torch.Tensor:
    """Encoded inputs ((B, C, H, W) direct, (B, T, C, H, W) event frames) as (B, T, neurons) int64,
    checked as the integer reference checks them (:meth:`hardware.graph.Input.check_encoded`)."""
    inputs = torch.as_tensor(inputs)
    integer = not (inputs.is_floating_point() or inputs.is_complex())
    low, high = (int(inputs.min()), int(inputs.max())) if integer and inputs.numel() else (0, 0)
    graph.input.check_encoded(tuple(inputs.shape), str(inputs.dtype), integer, low, high, timesteps)
    inputs = inputs.to(torch.int64)
    b = inputs.shape[0]
    if graph.input.per_step:
        return inputs.reshape(b, timesteps, -1)
    return inputs.reshape(b, 1, -1).expand(b, timesteps, -1)


@torch.no_grad()
def run_fake_quant(graph: Graph, inputs: torch.Tensor, timesteps: int, profile: Profile,
                   saturation: dict[str, dict[str, int]] | None = None
                   ) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Encoded ``inputs`` ((B, C, H, W) direct, (B, T, C, H, W) event frames) -> spikes
    {hidden node: (B, T, neurons) bool} and readout membranes (B, T, classes) int64, on the
    inputs' device (a GPU runs the same integers: ``simulate --device cuda``,
    :func:`run_integer`). The profile's input width must hold the graph's ``input_max``
    (:meth:`hardware.profile.Profile.check_input`). ``saturation``, if given, gets each node's
    counts (node -> kind -> count, as :class:`hardware.reference.IntegerRun` holds them)."""
    profile.check_input(graph.input)
    out = {INPUT: encoded_steps(graph, inputs, timesteps)}
    spikes: dict[str, torch.Tensor] = {}
    for node in graph.nodes:
        counts = saturation.setdefault(node.name, {}) if saturation is not None else None
        fired, v = run_node(node, graph.incoming(node.name), out, profile, counts)
        if node.readout:
            return spikes, v
        spikes[node.name] = fired
        out[node.name] = fired.to(torch.int64)
    raise ValueError("the graph has no readout")  # Graph guarantees one; kept for type checkers


def warm_up(device: torch.device) -> None:
    """Pay the one-time costs of the first run on ``device`` before a run is timed: the CUDA
    context and kernels' first load, the CPU's thread pool (seconds on a loaded machine)."""
    conv = Geometry("conv", (2, 4, 4), (3, 4, 4), padding=(1, 1))
    for dtype in (torch.float32, torch.float64):
        x = torch.ones(2, 32, dtype=dtype, device=device)
        with ieee_float32():
            _products(conv, torch.ones(3, 2, 3, 3, dtype=dtype, device=device), x)
    (torch.ones(2, 3, dtype=torch.int64, device=device) >> 1).sum().item()


def run_integer(graph: Graph, inputs: np.ndarray, timesteps: int, profile: Profile,
                device: torch.device) -> IntegerRun:
    """:func:`hardware.reference.run` computed by :func:`run_fake_quant` on ``device``: the same
    arguments and result (spikes, readout membranes and saturation counts, on the host), which
    the tests compare with ``==``. ``simulate --backend fake-quant`` runs it chunk by chunk."""
    saturation: dict[str, dict[str, int]] = {}
    spikes, readout = run_fake_quant(graph, torch.as_tensor(np.asarray(inputs)).to(device), timesteps, profile,
                                     saturation)
    return IntegerRun(spikes={name: s.cpu().numpy() for name, s in spikes.items()}, readout=readout.cpu().numpy(),
                      saturation=saturation)
