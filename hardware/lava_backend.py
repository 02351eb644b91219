"""Run a bundle's ``loihi`` layers on Lava's bit-accurate CPU backend (lava-nc 0.10.0).

Needs the Lava interpreter (Python 3.10, ``make lava-env``); from the main environment use
:mod:`hardware.lava_subprocess`. The network is built from lava-nc's own processes and run with
``Loihi2SimCfg(select_tag='fixed_pt')``::

    io.source.RingBuffer (int32) -> Conv|Dense (graded: num_message_bits=24) -> LIFReset
      -> Conv|Dense (binary spikes) -> LIFReset -> ... -> Conv|Dense -> LIFReset (readout)
    probes: io.extractor.Extractor on every hidden s_out, io.extractor.VarWire on the readout's v

The probes stream each step's array out while Lava runs. (Sinks read afterwards through
``Var.get()`` cost one runtime message per element, about 20 us each: seconds per hundred
samples.) The VarWire reads ``v`` in the management phase, i.e. after the step's reset.

Arithmetic is Lava's (``hardware.fixed_point`` states it; ``hardware.reference`` replicates it).

Layouts. Lava's Conv works on (X, Y, C) = (W, H, C) tensors with kernels (out, kx, ky, in) and
computes a true convolution (``scipy.signal.convolve2d``: the kernel is flipped), whereas the
bundle holds (C, H, W) tensors and (O, C, kh, kw) cross-correlation kernels. So::

    K_lava[o, x, y, c] = W[o, c, kh - 1 - y, kw - 1 - x]     stride, padding as (sw, sh), (pw, ph)

A conv layer's neurons live in (Wo, Ho, O) order; a dense layer's in bundle order, unless a
conv follows it (then in the (W, H, C) order that conv reads). ``order[j]`` is the bundle's
(C, H, W)-flattened index of Lava neuron ``j``; dense weights are permuted by the orders of the
layers on both sides, and recorded spikes are put back in bundle order.

Alignment. Lava steps are numbered from 1. Every Conv/Dense sends, at step ``s``, what it
computed from its input at step ``s - 1`` (one step of synaptic delay per layer), while a
LIF's spikes reach the next synapse (and the sinks) in the same step. Samples run back to back,
``T`` steps each, with no gap: global input step ``t = b T + tau`` (sample ``b``, its step
``tau``) leaves the source at Lava step ``t + 1`` and::

    layer k (0-based) processes input step t at Lava step  s = t + k + 2

(the first LIF sees input step t at t + 2, as DESIGN section 4 says). The run lasts
``B T + L`` steps for ``L`` layers; probe record ``s - 1`` is Lava step ``s``.

State between samples. Each layer is a ``LIFReset`` with ``reset_interval = T`` and
``reset_offset = (k + 2) mod T``: at the start of Lava step ``b T + k + 2``, the step in which
layer k takes sample b's first input, ``u`` and ``v`` are zeroed before the update. Whatever
the layer integrated before (the bias during the k + 1 warm-up steps, the previous sample)
is thereby discarded, and the synapse buffers need no flushing: a buffer holds one step only,
and in that step it holds the previous layer's output for the same sample. This is exact
with zero gap between samples, so the run costs ``B T + L`` Lava steps in all.

Exactness limits, checked before running (:func:`check_lava_limits`, equations there): Lava's
Conv casts its float64 sums to int32 before its 24-bit wrap, and its Dense and LIF models
compute in int32 where the reference uses int64; networks whose worst case could overflow
int32 are refused. Lava's fixed-point Conv ignores ``weight_exp``, so a conv layer must have
``weight_exp == 0``. Dense weights go in with ``sign_mode=MIXED``: left to itself Lava infers
the sign mode from the matrix, and for an all non-positive matrix (inhibitory mode) it clips
-256 to -255.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from hardware import fixed_point as fp
from hardware.bundle import LoihiLayer
from hardware.reference import IntegerRun

LAVA_RUN_TAG = "fixed_pt"
GRADED_MESSAGE_BITS = 24  #: num_message_bits of the first synapse (graded integer input)
INT32_LIMIT = 1 << 31  #: Lava's source, Conv, Dense and LIF models hold their values in int32


class LavaLimitError(ValueError):
    """A network whose Lava run could not be bit-exact (or that Lava cannot express)."""


@dataclass(frozen=True)
class LavaLayout:
    """Where one layer's neurons sit in Lava: its port shape and the neuron order."""

    shape: tuple[int, ...]  #: shape of the LIF process and its ports
    order: np.ndarray  #: order[j] = bundle (C, H, W)-flat index of Lava-flat neuron j


def _whc_order(chw: tuple[int, ...]) -> np.ndarray:
    """Bundle index of each element of a (W, H, C) C-order flattening of a (C, H, W) tensor."""
    return np.arange(int(np.prod(chw))).reshape(chw).transpose(2, 1, 0).ravel()


def _whc_shape(chw: tuple[int, ...]) -> tuple[int, int, int]:
    c, h, w = chw
    return (w, h, c)


def layouts(layers: tuple[LoihiLayer, ...]) -> list[LavaLayout]:
    """The Lava layout of every layer (see the module docstring)."""
    out = []
    for k, layer in enumerate(layers):
        g = layer.geometry
        if g.kind == "conv":
            out.append(LavaLayout(_whc_shape(g.output_shape), _whc_order(g.output_shape)))
            continue
        nxt = layers[k + 1].geometry if k + 1 < len(layers) else None
        if nxt is not None and nxt.kind == "conv":
            out.append(LavaLayout((g.neurons,), _whc_order(nxt.input_shape)))
        else:
            out.append(LavaLayout((g.neurons,), np.arange(g.neurons)))
    return out


def input_layout(first: LoihiLayer, input_shape: tuple[int, ...]) -> LavaLayout:
    """Layout of the encoded input, as the first synapse reads it."""
    if first.geometry.kind == "conv":
        return LavaLayout(_whc_shape(first.geometry.input_shape), _whc_order(first.geometry.input_shape))
    n = int(np.prod(input_shape))
    return LavaLayout((n,), np.arange(n))


def conv_kernel_to_lava(weight: np.ndarray) -> np.ndarray:
    """(O, C, kh, kw) cross-correlation kernel -> Lava's (O, kx, ky, C) convolution kernel."""
    return np.ascontiguousarray(weight.transpose(0, 3, 2, 1)[:, ::-1, ::-1, :]).astype(np.int32)


def _activation_bound(layer: LoihiLayer, input_bound: int) -> tuple[int, int]:
    """Largest ``|W s|`` (``max_o sum_i |W_oi| * input_bound``) and largest ``|a|`` (shifted)."""
    w = np.abs(layer.weight.astype(np.int64)).reshape(layer.weight.shape[0], -1)
    worst = int(w.sum(axis=1).max()) * int(input_bound) if w.size else 0
    if layer.geometry.kind == "conv":
        return worst, worst
    exp = int(layer.weight_exp)
    return worst, (worst << exp if exp >= 0 else worst >> -exp)


def check_lava_limits(layers: tuple[LoihiLayer, ...], input_bound: int, timesteps: int) -> None:
    """Raise :class:`LavaLimitError` where Lava could not run the layers as the reference does.

    Lava's Conv sums in float64 and casts to int32 before its 24-bit wrap, its Dense sums in
    int32 before the ``weight_exp`` shift: both exact while ``|W s| < 2^31`` (the source also
    holds the inputs as int32). Its LIF model computes in int32 where the reference uses int64;
    with ``A = |a| << 6`` bounded from the weights (conv: at most ``2^23`` after the wrap),
    the current stays within ``U``: ``U = max(A, 2^24)`` when ``du = 4095`` (no memory) or
    ``A <= 2^24`` (the single wrap then keeps ``|u| <= 2^24``), else ``U = T A + 2^24``
    (state is reset every ``T`` steps). Exact while ``U + max(A, 2^24) < 2^31``.
    """
    bound = int(input_bound)
    if bound >= INT32_LIMIT:
        raise LavaLimitError(f"inputs up to {bound} do not fit Lava's int32 source")
    for layer in layers:
        raw, a_max = _activation_bound(layer, bound)
        if raw >= INT32_LIMIT:
            raise LavaLimitError(
                f"layer {layer.name}: {layer.geometry.kind} sums up to {raw} reach 2^31, beyond Lava's "
                f"int32 synapse arithmetic"
            )
        if layer.geometry.kind == "conv":
            a_max = min(a_max, 1 << (fp.CONV_OUT_BITS - 1))
        big = 1 << fp.STATE_BITS
        drive = a_max << fp.ACT_SHIFT
        u_max = max(drive, big) if (layer.du == fp.DECAY_MAX or drive <= big) else timesteps * drive + big
        if u_max + max(drive, big) >= INT32_LIMIT:
            raise LavaLimitError(
                f"layer {layer.name}: activations up to {a_max} (current up to {u_max}) overflow Lava's "
                f"int32 LIF arithmetic (the reference computes in int64); lower the weights or weight_exp"
            )
        bound = 1


def _synapse(layer: LoihiLayer, prev: LavaLayout, here: LavaLayout, graded: bool):
    """Lava Conv or Dense process for one layer, weights converted to Lava's layout."""
    from lava.proc.conv.process import Conv
    from lava.proc.dense.process import Dense
    from lava.utils.weightutils import SignMode

    g = layer.geometry
    bits = GRADED_MESSAGE_BITS if graded else 0
    if g.kind == "conv":
        conv = Conv(
            weight=conv_kernel_to_lava(layer.weight),
            input_shape=_whc_shape(g.input_shape),
            padding=(g.padding[1], g.padding[0]),
            stride=(g.stride[1], g.stride[0]),
            num_message_bits=bits,
            name=f"{layer.name}.conv",
        )
        if tuple(conv.output_shape) != here.shape:
            raise LavaLimitError(
                f"layer {layer.name}: Lava's Conv gives output {tuple(conv.output_shape)} (W, H, C), "
                f"the bundle says {here.shape}"
            )
        return conv, conv.s_in, conv.a_out
    weights = layer.weight[here.order][:, prev.order].astype(np.int32)
    dense = Dense(
        weights=weights,
        weight_exp=int(layer.weight_exp),
        num_message_bits=bits,
        sign_mode=SignMode.MIXED,
        name=f"{layer.name}.dense",
    )
    return dense, dense.s_in, dense.a_out


def _neuron(layer: LoihiLayer, k: int, here: LavaLayout, timesteps: int):
    """LIFReset for layer ``k``: reset at the step it takes each sample's first input."""
    from lava.proc.lif.process import LIFReset

    bias = layer.geometry.per_neuron(layer.bias_mant)[here.order].reshape(here.shape)
    return LIFReset(
        shape=here.shape,
        du=int(layer.du),
        dv=int(layer.dv),
        vth=int(layer.vth),
        bias_mant=bias.astype(np.int64),
        bias_exp=int(layer.bias_exp),
        reset_interval=timesteps,
        reset_offset=(k + 2) % timesteps,
        name=f"{layer.name}.lif",
    )


def _connect(out_port, in_port, out_shape: tuple[int, ...], in_shape: tuple[int, ...]) -> None:
    if out_shape == in_shape:
        out_port.connect(in_port)
    elif len(in_shape) == 1:
        out_port.flatten().connect(in_port)
    else:
        out_port.reshape(in_shape).connect(in_port)


def lava_step(sample, tau, layer_index: int, timesteps: int):
    """Lava step (1-based) in which layer ``layer_index`` takes step ``tau`` of ``sample``."""
    return sample * timesteps + tau + layer_index + 2


@dataclass
class LavaNetwork:
    """The built process graph and its probes."""

    root: object  #: any process of the graph (compiles and runs all of it)
    layouts: list[LavaLayout]
    spike_probes: dict[str, object]  #: hidden layer -> Extractor on its s_out
    readout_probe: object  #: VarWire on the readout LIF's v
    steps: int


def build(layers: tuple[LoihiLayer, ...], pixels: np.ndarray, timesteps: int) -> LavaNetwork:
    """Build source, synapses, LIFReset neurons and probes for ``B T + L`` Lava steps."""
    from lava.proc.io.extractor import Extractor, VarWire
    from lava.proc.io.source import RingBuffer as Source

    b, n_layers = pixels.shape[0], len(layers)
    lay = layouts(layers)
    src_layout = input_layout(layers[0], pixels.shape[1:])
    steps = b * timesteps + n_layers
    # Source slot t (sent at Lava step t + 1) holds global input step t = b T + tau.
    flat = pixels.reshape(b, -1).astype(np.int64)[:, src_layout.order]
    data = np.zeros((flat.shape[1], steps), np.int64)
    data[:, : b * timesteps] = np.repeat(flat, timesteps, axis=0).T
    source = Source(data=data.reshape(*src_layout.shape, steps))
    prev_port, prev_layout = source.s_out, src_layout
    spike_probes, readout_probe = {}, None
    for k, layer in enumerate(layers):
        _, s_in, a_out = _synapse(layer, prev_layout, lay[k], graded=(k == 0))
        _connect(prev_port, s_in, prev_layout.shape, tuple(s_in.shape))
        lif = _neuron(layer, k, lay[k], timesteps)
        a_out.connect(lif.a_in)
        if k == n_layers - 1:
            readout_probe = VarWire()
            readout_probe.connect_var(lif.v)
        else:
            spike_probes[layer.name] = Extractor(shape=lay[k].shape)
            lif.s_out.connect(spike_probes[layer.name].in_port)
        prev_port, prev_layout = lif.s_out, lay[k]
    return LavaNetwork(source, lay, spike_probes, readout_probe, steps)


def _aligned(trace: np.ndarray, layer_index: int, order: np.ndarray, b: int, timesteps: int) -> np.ndarray:
    """(neurons, steps) Lava trace -> (B, T, neurons) in bundle order, delay removed."""
    steps = lava_step(np.arange(b)[:, None], np.arange(timesteps)[None, :], layer_index, timesteps)
    slots = steps.ravel() - 1  # record s - 1 holds Lava step s
    out = np.empty((b * timesteps, trace.shape[0]), trace.dtype)
    out[:, order] = trace[:, slots].T
    return out.reshape(b, timesteps, -1)


def run(layers: tuple[LoihiLayer, ...], pixels: np.ndarray, timesteps: int,
        timing: dict[str, float] | None = None) -> IntegerRun:
    """Run ``pixels`` (B, C, H, W) integers through Lava; same layout as ``reference.run``.

    ``saturation`` is left empty (Lava does not count it; the reference does). ``timing``, if
    given, receives ``build_s`` (process graph), ``compile_s`` (compile, start processes),
    ``run_s`` (all steps, probes streamed out), ``stop_s`` and ``steps``.
    """
    from lava.magma.core.run_conditions import RunSteps
    from lava.magma.core.run_configs import Loihi2SimCfg
    from lava.proc.io.extractor import Extractor, PyLoihiExtractorModel, PyLoihiVarWireModel, VarWire

    pixels = np.asarray(pixels)
    if not np.issubdtype(pixels.dtype, np.integer) or pixels.ndim < 2 or pixels.shape[0] == 0:
        raise ValueError(f"encoded inputs must be a non-empty integer batch, got {pixels.dtype} {pixels.shape}")
    if timesteps < 1:
        raise ValueError(f"timesteps must be >= 1, got {timesteps}")
    if not layers or not layers[-1].readout or any(layer.readout for layer in layers[:-1]):
        raise ValueError("the layers must end in the readout, and only the last layer may be one")
    check_lava_limits(layers, int(np.abs(pixels).max()), timesteps)
    t0 = time.perf_counter()
    net = build(layers, pixels, timesteps)
    t1 = time.perf_counter()
    # The network's models are chosen by tag; the untagged probes need naming explicitly.
    probes = {Extractor: PyLoihiExtractorModel, VarWire: PyLoihiVarWireModel}
    net.root.create_runtime(run_cfg=Loihi2SimCfg(select_tag=LAVA_RUN_TAG, exception_proc_model_map=probes))
    t2 = time.perf_counter()
    try:
        net.root.run(condition=RunSteps(num_steps=net.steps, blocking=False))
        traces = {layer.name: np.empty((layer.geometry.neurons, net.steps)) for layer in layers}
        for s in range(net.steps):  # the probes' channels hold a few steps: drain while running
            for name, probe in net.spike_probes.items():
                traces[name][:, s] = probe.receive().ravel()
            traces[layers[-1].name][:, s] = net.readout_probe.receive().ravel()
        net.root.wait()
        t3 = time.perf_counter()
    finally:
        net.root.stop()
    t4 = time.perf_counter()
    b = pixels.shape[0]
    spikes = {
        layer.name: _aligned(traces[layer.name] != 0, k, net.layouts[k].order, b, timesteps)
        for k, layer in enumerate(layers[:-1])
    }
    k = len(layers) - 1
    readout = _aligned(np.rint(traces[layers[-1].name]).astype(np.int64), k, net.layouts[k].order, b, timesteps)
    if timing is not None:
        timing.update(build_s=t1 - t0, compile_s=t2 - t1, run_s=t3 - t2, stop_s=t4 - t3, steps=float(net.steps))
    return IntegerRun(spikes=spikes, readout=readout, saturation={})
