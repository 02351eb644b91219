"""Run a bundle's ``loihi`` graph on Lava's bit-accurate CPU backend (lava-nc 0.10.0).

Needs the Lava interpreter (Python 3.10, ``make lava-env``); from the main environment use
:mod:`hardware.targets.loihi.lava.parent`. The network is built from lava-nc's own processes and run with
``Loihi2SimCfg(select_tag='fixed_pt')``: every node a ``LIFReset``, every edge a ``Conv`` or
``Dense`` from its source's ``s_out`` (or an ``io.source.RingBuffer`` holding the encoded
input) into its target's ``a_in``. Several edges into one node connect to the same ``a_in``::

    RingBuffer (int32) -> Conv|Dense -> LIFReset -> Conv|Dense ---------------> LIFReset (sum)
                                                \\-> relay ... relay -> Conv|Dense -/
    probes: io.extractor.Extractor on every hidden s_out, io.extractor.VarWire on the readout's v

The probes stream each step's array out while Lava runs. (Sinks read afterwards through
``Var.get()`` cost one runtime message per element, about 20 us each: seconds per hundred
samples.) The VarWire reads ``v`` in the management phase, i.e. after the step's reset.

Arithmetic is Lava's (``hardware.fixed_point`` states it; ``hardware.reference`` replicates it).
An ``InPort`` with several incoming connections adds them (``PyInPortVectorDense.recv`` in
``lava/magma/core/model/py/ports.py``: ``reduce(acc + port.recv(), zeros(shape, int16))``). Each
channel carries its sender's dtype (``channel_builder.py`` takes the source port's ``d_type``):
int32 for Conv and Dense, and int16 zeros + int32 arrays promote to int32, so the sum is an int32
sum (wrapping silently) of per-edge activations, each conv edge already wrapped to 24 bits by its
own Conv. That equals the reference's int64 sum of individually wrapped edges while no partial
sum leaves int32, which :func:`check_lava_limits` guarantees per node.

Inputs. A RingBuffer holds every step's encoded input: the direct encoding's image repeated for
the sample's ``T`` steps, or each step's event frame. Edges reading it have
``num_message_bits = 24`` for the direct encoding (graded: Conv and Dense multiply by the value)
and 0 for event frames (binary: ``s_in.astype(bool)``, so frames must be 0/1, which is checked).

Layouts. Lava's Conv works on (X, Y, C) = (W, H, C) tensors with kernels (out, kx, ky, in) and
computes a true convolution (``scipy.signal.convolve2d``: the kernel is flipped), whereas the
bundle holds (C, H, W) tensors and (O, C, kh, kw) cross-correlation kernels. So::

    K_lava[o, x, y, c] = W[o, c, kh - 1 - y, kw - 1 - x]     stride, padding as (sw, sh), (pw, ph)

A conv-fed node's neurons live in (Wo, Ho, O) order; a 1-D (dense-fed) node's in bundle order,
unless a conv edge reads it (then in the (W, H, C) order that conv reads; two convs reading it
as different shapes are refused). The input is laid out per edge (a RingBuffer per layout and
delay). ``order[j]`` is the bundle's (C, H, W)-flattened index of Lava neuron ``j``; dense
weights are permuted by the orders of their source and target, and recorded spikes are put back
in bundle order.

Alignment. Lava steps are numbered from 1. Every Conv/Dense sends, at step ``s``, what it
computed from its input at step ``s - 1`` (one step of synaptic delay per edge), while a LIF's
spikes reach its outgoing synapses (and the probes) in the same step. Samples run back to back,
``T`` steps each, with no gap: global input step ``t = b T + tau`` (sample ``b``, its step
``tau``). With ``d`` the node's depth (:meth:`hardware.graph.Graph.depths`, the longest path
from the input in edges; the input has depth 0 and its RingBuffer sends slot ``t`` at step
``t + 1``)::

    node n (depth d) processes input step t at Lava step  s = t + d + 1        (chain: d = k + 1)

An edge from a node of depth ``d_s`` into a node of depth ``d`` delivers at step
``t + d_s + 2``: ``p = d - d_s - 1`` steps early, so it is padded by exactly ``p`` steps:

- from a LIF node: ``p`` relay stages before the edge, each a 1x1 identity Conv (identity Dense
  for a 1-D node) of weight 2 into a ``LIFReset`` with ``du = 4095, dv = 0, vth = 0``, bias 0.
  With ``du = 4095`` the current forgets (``D(u, 4096) = 0``, so ``u = a << 6``) and with
  ``dv = 0`` ``D(v, 0) = v``: a spike gives ``a = 2``, ``u = 128``, ``v = 0 + 128 > vth << 6 = 0``,
  a spike, and ``v`` resets to 0; no spike gives ``u = 0``, ``v = 0``. So ``v`` is 0 after every
  step and a relay repeats its input one step later, exactly. Relays are shared: the edges of
  one source with pads ``p1 < p2`` tap one relay chain.
- from the input: the edge reads a RingBuffer whose data are shifted by ``p`` slots (slot ``j``
  holds input step ``j - p``; one RingBuffer per pad and layout): exact for graded pixels and
  for event frames alike.

The run lasts ``B T + D`` steps for a readout of depth ``D`` (the deepest node: every node has a
path to the readout); probe record ``s - 1`` is Lava step ``s``.

State between samples. Each node is a ``LIFReset`` with ``reset_interval = T`` and
``reset_offset = (d + 1) mod T``: at the start of Lava step ``b T + d + 1``, the step in which
the node takes sample b's first input, ``u`` and ``v`` are zeroed before the update. Whatever the
node integrated before (the bias during its ``d`` warm-up steps, the previous sample, early
arrivals of warm-up spikes: all come at steps ``<= b T + d``) is thereby discarded, and the
synapse buffers need no flushing: a buffer holds one step only, and in that step it holds its
source's output for the same sample and step as every other edge into the node. This is exact
with zero gap between samples, so the run costs ``B T + D`` Lava steps in all.

Exactness limits, checked before running (:func:`check_lava_limits`, equations there): Lava's
Dense, InPort sums and LIF models compute in int32 where the reference uses int64; networks
whose worst case could overflow int32 are refused. Lava's fixed-point Conv ignores
``weight_exp``, so a conv edge must have ``weight_exp == 0``. Dense weights go in with
``sign_mode=MIXED``: left to itself Lava infers the sign mode from the matrix, and for an all
non-positive matrix (inhibitory mode) it clips -256 to -255.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from hardware import fixed_point as fp
from hardware.graph import INPUT, Graph, activation_bound, per_neuron
from hardware.reference import IntegerRun

LAVA_RUN_TAG = "fixed_pt"
GRADED_MESSAGE_BITS = 24  #: num_message_bits of synapses reading graded (direct) input
INT32_LIMIT = 1 << 31  #: Lava's source, Dense, InPort and LIF models hold their values in int32
RELAY_WEIGHT = 2  #: smallest mixed-sign weight: a = 2, u = 128 > vth << 6 = 0


class LavaLimitError(ValueError):
    """A network whose Lava run could not be bit-exact (or that Lava cannot express)."""


@dataclass(frozen=True)
class LavaLayout:
    """Where a node's (or an input view's) neurons sit in Lava: its port shape and the order."""

    shape: tuple[int, ...]  #: shape of the LIF process and its ports
    order: np.ndarray  #: order[j] = bundle (C, H, W)-flat index of Lava-flat neuron j


def _whc_order(chw: tuple[int, ...]) -> np.ndarray:
    """Bundle index of each element of a (W, H, C) C-order flattening of a (C, H, W) tensor."""
    return np.arange(int(np.prod(chw))).reshape(chw).transpose(2, 1, 0).ravel()


def _whc_shape(chw: tuple[int, ...]) -> tuple[int, int, int]:
    c, h, w = chw
    return (w, h, c)


def _whc(chw: tuple[int, ...]) -> LavaLayout:
    return LavaLayout(_whc_shape(chw), _whc_order(chw))


def _flat(n: int) -> LavaLayout:
    return LavaLayout((n,), np.arange(n))


def layouts(graph: Graph) -> dict[str, LavaLayout]:
    """The Lava layout of every node (see the module docstring); conflicts raise LavaLimitError."""
    out = {}
    for node in graph.nodes:
        if len(node.shape) == 3:
            out[node.name] = _whc(tuple(node.shape))
            continue
        views = {tuple(e.geometry.input_shape) for e in graph.outgoing(node.name) if e.geometry.kind == "conv"}
        if len(views) > 1:
            raise LavaLimitError(
                f"node {node.name}: conv edges read it as different shapes {sorted(views)}; Lava lays a node "
                f"out in one order, so this graph cannot run on Lava"
            )
        out[node.name] = LavaLayout((node.neurons,), _whc_order(views.pop())) if views else _flat(node.neurons)
    return out


def input_layout(edge) -> LavaLayout:
    """Layout of the encoded input as ``edge`` reads it (conv: (W, H, C); dense: bundle order)."""
    g = edge.geometry
    return _whc(tuple(g.input_shape)) if g.kind == "conv" else _flat(g.fan_in)


def delay_pads(graph: Graph) -> dict[str, int]:
    """Steps each edge must be delayed beyond its synapse's own: ``depth(target) - depth(source) - 1``."""
    depth = graph.depths()
    return {e.name: depth[e.target] - depth[e.source] - 1 for e in graph.edges}


def conv_kernel_to_lava(weight: np.ndarray) -> np.ndarray:
    """(O, C, kh, kw) cross-correlation kernel -> Lava's (O, kx, ky, C) convolution kernel."""
    return np.ascontiguousarray(weight.transpose(0, 3, 2, 1)[:, ::-1, ::-1, :]).astype(np.int32)


# --- limits (numpy only) -------------------------------------------------------------------------

def check_lava_limits(graph: Graph, input_bound: int, timesteps: int) -> None:
    """Raise :class:`LavaLimitError` where Lava could not run the graph as the reference does.

    Per edge: Lava's Dense sums ``W s`` in int32 before the ``weight_exp`` shift, and its Conv
    (whose ports and buffer are declared int32; its model sums in float64 and wraps to 24 bits)
    is held to the same bound: ``|W s| < 2^31`` (the source also holds the inputs as int32).
    Per node: its ``a_in`` adds the incoming activations in int32, exact while
    ``A_sum = max_n sum_e |a_e[n]| < 2^31`` (``|a_e| <= 2^23`` for a conv edge, after its wrap).
    The LIF model computes in int32 where the reference uses int64; with ``A = A_sum << 6``, the
    current stays within ``U``: ``U = max(A, 2^24)`` when ``du = 4095`` (no memory) or
    ``A <= 2^24`` (the single wrap then keeps ``|u| <= 2^24``), else ``U = T A + 2^24`` (state is
    reset every ``T`` steps). Exact while ``U + max(A, 2^24) < 2^31``. Relays carry ``a = 2``.
    Also refuses layouts Lava cannot hold (:func:`layouts`).
    """
    bound = int(input_bound)
    if bound >= INT32_LIMIT:
        raise LavaLimitError(f"inputs up to {bound} do not fit Lava's int32 source")
    layouts(graph)
    for node in graph.nodes:
        for edge in graph.incoming(node.name):
            raw = int(edge.worst_sums(bound if edge.source == INPUT else 1).max(initial=0))
            if raw >= INT32_LIMIT:
                raise LavaLimitError(
                    f"edge {edge.name}: {edge.geometry.kind} sums up to {raw} reach 2^31, beyond Lava's "
                    f"int32 synapse arithmetic"
                )
        a_sum = activation_bound(graph, node.name, bound, fp.CONV_OUT_BITS)
        if a_sum >= INT32_LIMIT:
            raise LavaLimitError(
                f"node {node.name}: its incoming edges' activations add up to {a_sum}, reaching 2^31, "
                f"beyond the int32 sum of Lava's a_in port"
            )
        big = 1 << fp.STATE_BITS
        drive = a_sum << fp.ACT_SHIFT
        u_max = max(drive, big) if (node.du == fp.DECAY_MAX or drive <= big) else timesteps * drive + big
        if u_max + max(drive, big) >= INT32_LIMIT:
            raise LavaLimitError(
                f"node {node.name}: activations up to {a_sum} (current up to {u_max}) overflow Lava's "
                f"int32 LIF arithmetic (the reference computes in int64); lower the weights or weight_exp"
            )


def encoded_steps(graph: Graph, inputs: np.ndarray, timesteps: int) -> np.ndarray:
    """Validate encoded inputs for Lava and return them as ``(B, T, ...)`` int64 (numpy only)."""
    inputs = np.asarray(inputs)
    if timesteps < 1:
        raise ValueError(f"timesteps must be >= 1, got {timesteps}")
    if inputs.ndim < 1 or inputs.shape[0] == 0:
        raise ValueError(f"encoded inputs must be a non-empty batch, got shape {inputs.shape}")
    steps = graph.input.steps(inputs, timesteps).astype(np.int64)
    if graph.input.per_step and not np.isin(steps, (0, 1)).all():
        raise ValueError("event-frame inputs must be 0/1 spikes (Lava sends them as binary events)")
    return steps


def check_run(graph: Graph, inputs: np.ndarray, timesteps: int) -> np.ndarray:
    """All numpy-only checks of a Lava run (inputs, limits, layouts); the encoded steps."""
    steps = encoded_steps(graph, inputs, timesteps)
    check_lava_limits(graph, int(np.abs(steps).max(initial=0)), timesteps)
    return steps


# --- the Lava process graph -----------------------------------------------------------------------

def _conv(weight: np.ndarray, in_chw: tuple[int, ...], stride, padding, bits: int, name: str):
    from lava.proc.conv.process import Conv

    return Conv(weight=conv_kernel_to_lava(weight), input_shape=_whc_shape(in_chw), padding=(padding[1], padding[0]),
                stride=(stride[1], stride[0]), num_message_bits=bits, name=name)


def _dense(weights: np.ndarray, weight_exp: int, bits: int, name: str):
    from lava.proc.dense.process import Dense
    from lava.utils.weightutils import SignMode

    return Dense(weights=weights.astype(np.int32), weight_exp=int(weight_exp), num_message_bits=bits,
                 sign_mode=SignMode.MIXED, name=name)


def _synapse(edge, src: LavaLayout, dst: LavaLayout, bits: int):
    """Lava Conv or Dense process for one edge, weights converted to Lava's layout."""
    g = edge.geometry
    if g.kind == "conv":
        conv = _conv(edge.weight, tuple(g.input_shape), g.stride, g.padding, bits, f"{edge.name}.conv")
        if tuple(conv.output_shape) != dst.shape:
            raise LavaLimitError(f"edge {edge.name}: Lava's Conv gives output {tuple(conv.output_shape)} "
                                 f"(W, H, C), the bundle says {dst.shape}")
        return conv
    return _dense(edge.weight[dst.order][:, src.order], edge.weight_exp, bits, f"{edge.name}.dense")


def _lif(name: str, layout: LavaLayout, depth: int, timesteps: int, bias: np.ndarray, **params):
    """LIFReset of a node at ``depth``: reset at the step it takes each sample's first input."""
    from lava.proc.lif.process import LIFReset

    return LIFReset(shape=layout.shape, bias_mant=bias.reshape(layout.shape).astype(np.int64),
                    reset_interval=timesteps, reset_offset=(depth + 1) % timesteps, name=name, **params)


def _relay(port, layout: LavaLayout, depth: int, timesteps: int, name: str):
    """One exact one-step spike relay (module docstring): identity synapse of weight 2 -> LIF."""
    n = int(np.prod(layout.shape))
    if len(layout.shape) == 3:
        w, h, c = layout.shape
        syn = _conv(RELAY_WEIGHT * np.eye(c, dtype=np.int64)[:, :, None, None], (c, h, w), (1, 1), (0, 0), 0,
                    f"{name}.conv")
    else:
        syn = _dense(RELAY_WEIGHT * np.eye(n, dtype=np.int64), 0, 0, f"{name}.dense")
    port.connect(syn.s_in)
    lif = _lif(f"{name}.lif", layout, depth, timesteps, np.zeros(n, np.int64),
               du=fp.DECAY_MAX, dv=0, vth=0, bias_exp=0)
    syn.a_out.connect(lif.a_in)
    return lif.s_out


def _connect(out_port, in_port, out_shape: tuple[int, ...], in_shape: tuple[int, ...]) -> None:
    if out_shape == in_shape:
        out_port.connect(in_port)
    elif len(in_shape) == 1:
        out_port.flatten().connect(in_port)
    else:
        out_port.reshape(in_shape).connect(in_port)


def lava_step(sample, tau, depth: int, timesteps: int):
    """Lava step (1-based) in which a node at ``depth`` takes step ``tau`` of ``sample``."""
    return sample * timesteps + tau + depth + 1


@dataclass
class LavaNetwork:
    """The built process graph and its probes."""

    root: object  #: any process of the graph (compiles and runs all of it)
    layouts: dict[str, LavaLayout]
    depths: dict[str, int]
    spike_probes: dict[str, object]  #: hidden node -> Extractor on its s_out
    readout_probe: object  #: VarWire on the readout LIF's v
    steps: int
    relays: int  #: relay stages inserted to pad shortcuts


def build(graph: Graph, steps_in: np.ndarray, timesteps: int, *, _pad_delays: bool = True) -> LavaNetwork:
    """Build sources, synapses, relays, LIFReset neurons and probes for ``B T + D`` Lava steps.

    ``steps_in``: encoded inputs ``(B, T, ...)`` (:func:`encoded_steps`). ``_pad_delays=False``
    leaves shortcuts unpadded (not bit-exact: it exists to show the pad is needed).
    """
    from lava.proc.io.extractor import Extractor, VarWire
    from lava.proc.io.source import RingBuffer

    b = steps_in.shape[0]
    lay, depth = layouts(graph), graph.depths()
    pads = delay_pads(graph) if _pad_delays else dict.fromkeys((e.name for e in graph.edges), 0)
    steps = b * timesteps + depth[graph.readout.name]
    flat = steps_in.reshape(b * timesteps, -1)  # row t: global input step t = b T + tau
    graded = not graph.input.per_step
    sources: dict[tuple, object] = {}  # (pad, shape, order) -> RingBuffer
    taps: dict[str, list] = {}  # node -> [s_out, relay 1's s_out, relay 2's s_out, ...]
    lifs: dict[str, object] = {}
    spike_probes, readout_probe, relays = {}, None, 0
    for node in graph.nodes:
        here = lay[node.name]
        bias = per_neuron(tuple(node.shape), node.bias_mant)[here.order]
        lif = _lif(f"{node.name}.lif", here, depth[node.name], timesteps, bias, du=int(node.du), dv=int(node.dv),
                   vth=int(node.vth), bias_exp=int(node.bias_exp))
        for edge in graph.incoming(node.name):
            pad = pads[edge.name]
            if edge.source == INPUT:
                src = input_layout(edge)
                key = (pad, src.shape, src.order.tobytes())
                if key not in sources:  # slot j (sent at Lava step j + 1) holds input step j - pad
                    data = np.zeros((flat.shape[1], steps), np.int64)
                    data[:, pad: pad + flat.shape[0]] = flat[:, src.order].T
                    sources[key] = RingBuffer(data=data.reshape(*src.shape, steps))
                port = sources[key].s_out
            else:
                src = lay[edge.source]
                chain = taps[edge.source]
                while len(chain) <= pad:
                    chain.append(_relay(chain[-1], src, depth[edge.source] + len(chain), timesteps,
                                        f"{edge.source}.relay{len(chain)}"))
                    relays += 1
                port = chain[pad]
            syn = _synapse(edge, src, here, GRADED_MESSAGE_BITS if edge.source == INPUT and graded else 0)
            _connect(port, syn.s_in, src.shape, tuple(syn.s_in.shape))
            syn.a_out.connect(lif.a_in)
        lifs[node.name] = lif
        taps[node.name] = [lif.s_out]
        if node.readout:
            readout_probe = VarWire()
            readout_probe.connect_var(lif.v)
        else:
            spike_probes[node.name] = Extractor(shape=here.shape)
            lif.s_out.connect(spike_probes[node.name].in_port)
    return LavaNetwork(lifs[graph.readout.name], lay, depth, spike_probes, readout_probe, steps, relays)


def _aligned(trace: np.ndarray, depth: int, order: np.ndarray, b: int, timesteps: int) -> np.ndarray:
    """(neurons, steps) Lava trace -> (B, T, neurons) in bundle order, delay removed."""
    steps = lava_step(np.arange(b)[:, None], np.arange(timesteps)[None, :], depth, timesteps)
    slots = steps.ravel() - 1  # record s - 1 holds Lava step s
    out = np.empty((b * timesteps, trace.shape[0]), trace.dtype)
    out[:, order] = trace[:, slots].T
    return out.reshape(b, timesteps, -1)


def process_models() -> dict[type, type]:
    """The Lava process models this backend runs: the ``fixed_pt`` ones (bit-accurate with Loihi),
    and the untagged probes' Loihi-protocol models."""
    from lava.proc.conv.models import PyConvModelFixed
    from lava.proc.conv.process import Conv
    from lava.proc.dense.models import PyDenseModelBitAcc
    from lava.proc.dense.process import Dense
    from lava.proc.io.extractor import Extractor, PyLoihiExtractorModel, PyLoihiVarWireModel, VarWire
    from lava.proc.io.source import PySendModelFixed, RingBuffer
    from lava.proc.lif.models import PyLifResetModelBitAcc
    from lava.proc.lif.process import LIFReset

    return {RingBuffer: PySendModelFixed, Conv: PyConvModelFixed, Dense: PyDenseModelBitAcc,
            LIFReset: PyLifResetModelBitAcc, Extractor: PyLoihiExtractorModel, VarWire: PyLoihiVarWireModel}


def run(graph: Graph, inputs: np.ndarray, timesteps: int, timing: dict[str, float] | None = None, *,
        _pad_delays: bool = True) -> IntegerRun:
    """Run encoded ``inputs`` through Lava; same layout as ``reference.run(graph, inputs, T)``.

    ``inputs``: ``(B, C, H, W)`` integers for the direct encoding, ``(B, T, C, H, W)`` 0/1 for
    event frames. ``saturation`` is left empty (Lava does not count it; the reference does).
    ``timing``, if given, receives ``build_s`` (process graph), ``compile_s`` (compile, start
    processes), ``run_s`` (all steps, probes streamed out), ``stop_s``, ``steps`` and ``relays``.
    """
    from lava.magma.compiler.compiler_graphs import find_processes
    from lava.magma.core.run_conditions import RunSteps
    from lava.magma.core.run_configs import Loihi2SimCfg

    steps_in = check_run(graph, inputs, timesteps)
    t0 = time.perf_counter()
    net = build(graph, steps_in, timesteps, _pad_delays=_pad_delays)
    t1 = time.perf_counter()
    models = process_models()
    # Lava's compiler looks each process *instance* up in this map before it searches (and
    # re-imports) every model file next to the process's class: listing the instances too
    # takes about two thirds off the compile time, and selects the very same models.
    models.update({proc: models[type(proc)] for proc in find_processes(net.root)})
    net.root.create_runtime(run_cfg=Loihi2SimCfg(select_tag=LAVA_RUN_TAG, exception_proc_model_map=models))
    t2 = time.perf_counter()
    try:
        net.root.run(condition=RunSteps(num_steps=net.steps, blocking=False))
        traces = {n.name: np.empty((n.neurons, net.steps)) for n in graph.nodes}
        readout = graph.readout.name
        for s in range(net.steps):  # the probes' channels hold a few steps: drain while running
            for name, probe in net.spike_probes.items():
                traces[name][:, s] = probe.receive().ravel()
            traces[readout][:, s] = net.readout_probe.receive().ravel()
        net.root.wait()
        t3 = time.perf_counter()
    finally:
        net.root.stop()
    t4 = time.perf_counter()
    b = steps_in.shape[0]
    spikes = {n.name: _aligned(traces[n.name] != 0, net.depths[n.name], net.layouts[n.name].order, b, timesteps)
              for n in graph.hidden}
    out = _aligned(np.rint(traces[readout]).astype(np.int64), net.depths[readout], net.layouts[readout].order,
                   b, timesteps)
    if timing is not None:
        timing.update(build_s=t1 - t0, compile_s=t2 - t1, run_s=t3 - t2, stop_s=t4 - t3, steps=float(net.steps),
                      relays=float(net.relays))
    return IntegerRun(spikes=spikes, readout=out, saturation={})
