"""lava-dl netx HDF5 export: the bundle's integer network as ``model.net``.

``write_netx(bundle, path)`` writes the ``loihi`` layers in the format that lava-dl 0.6.0's
``lava.lib.dl.netx.hdf5.Network`` reads (the format slayer's ``export_hdf5`` writes), such
that the Lava network netx builds from it computes *exactly* the integer arithmetic of
:mod:`hardware.reference` (see :mod:`hardware.fixed_point`). Only numpy and h5py are needed.

File layout (torch / bundle order: shapes ``(C, H, W)``, 2-D pairs ``(H, W)``)::

    /simulation/Ts = 1, /simulation/tSample = T
    /layer/0        type 'input'   shape (C, H, W)                  (no 'neuron': see below)
    /layer/i        type 'conv'    shape (O, Ho, Wo)  weight (O, C, kh, kw)  bias (O,)
                                   stride, padding, dilation (1, 1), groups 1, kernelSize, ...
    /layer/i        type 'flatten' shape (C*H*W, 1, 1)               before the first dense
    /layer/i        type 'dense'   shape (N,)  weight (N, fan_in)  bias (N,)
    /layer/i/neuron type 'CUBA'    iDecay, vDecay, vThMant, refDelay, gradedSpike

How netx maps each field onto Lava (read off lava-dl 0.6.0 ``netx/hdf5.py``,
``netx/blocks/process.py``, ``netx/utils.py`` and lava-nc 0.10.0's fixed_pt models), and what
we therefore write for a bundle layer (``du, dv, vth, bias_mant, bias_exp, weight``):

================  ==============================================  =============================
file field        what netx / Lava does with it                   we write
================  ==============================================  =============================
neuron/iDecay     ``LIF.du = iDecay - 1``                          ``du + 1`` (4096 for du=4095)
neuron/vDecay     ``LIF.dv = vDecay``                              ``dv``
neuron/vThMant    ``LIF.vth = vThMant`` (spike on ``v > vth<<6``)  ``vth``
bias              ``LIF.bias_mant = bias``, ``bias_exp = 6``       ``(bias_mant<<bias_exp) >> 6``
                  (fixed); conv: one value per channel, broadcast   (must be exact, see below)
conv weight       flipped in H and W, transposed to Lava's          ``weight`` as is (O, C, kh, kw)
                  ``(O, kx, ky, C)``; Lava's Conv is a true
                  convolution, so the two flips cancel: the file
                  holds torch's cross-correlation kernel. No
                  weight exponent, no truncation; output wrapped
                  to signed 24 bits (as the reference does)
dense weight      ``optimize_weight_bits`` rescales ``W << s`` and  ``weight`` as is (N, fan_in)
                  sets ``weight_exp = -s``; Lava shifts back. Exact
                  for our even 8-bit weights (checked below)
shape             reversed to Lava's ``(X, Y, C) = (W, H, C)``      ``(C, H, W)`` / ``(N,)``
stride, padding   reversed to ``(X, Y)``                            ``(H, W)`` pairs
flatten           the next dense reads ``out.transpose([2,1,0])``   a 'flatten' layer; the dense
                  ``.flatten()``: Lava ``(W, H, C)`` -> ``(C, H, W)``  weight keeps (C, H, W) order
delay (absent)    a plain ``Dense`` (no ``DelayDense``)             nothing
================  ==============================================  =============================

Exactness conditions (``write_netx`` raises :class:`NetxError` when one fails, never writes a
file that computes something else):

* **bias**: netx fixes ``bias_exp = 6``, so the effective bias ``bias_mant << bias_exp`` must be a
  multiple of 64 and ``/64`` must fit Loihi's 13-bit ``bias_mant``. Quantize with
  ``QuantPolicy(bias_exp=6)`` (:mod:`export.quantize`) to get such a bundle: it rounds the
  bias to one activation unit, finer than the weights' step of 2.
* **weight_exp** must be 0: netx has no field for it (Lava's Conv ignores it; for Dense netx
  computes its own).
* **dense weights** that are all zero (netx divides by zero) or all ``<= 0`` with the minimum a
  negative power of two (netx scales it to -256, which Lava's inhibitory clip turns into -255).

The **input** is direct-encoded integer pixels (graded, ``[0, input_max]``), the same every step.
A netx 'input' layer with a 'neuron' would be a LIF fed through its bias, whose output is binary
spikes: it cannot pass graded pixels. So layer 0 has only a 'shape'; netx then makes the first
synaptic layer the network's input port, and the pixels go straight into it as graded spikes.
netx cannot read that from the file: build the network with
``Network(path, input_message_bits=N)``, ``N`` = the file's ``input_message_bits`` attribute
(with 0, Lava's synapse would binarise the pixels). Feed ``(W, H, C)`` arrays (``(fan_in,)`` in
``(C, H, W)`` order when the first layer is dense).

The **readout** (never spikes: ``dv = 0``, ``vth`` maximal) is an exact CUBA dense layer; its
logits are the membrane ``net.layers[-1].neuron.v``, not ``net.out`` (silent unless it saturates).

**Timing**: every Lava synapse delays by one step, so hidden layer ``k`` (0-based) processes input
step ``t`` (0-based) at Lava step ``t + 2 + k`` (1-based). For samples presented back to back
every ``T`` steps, ``Network(..., reset_interval=T, reset_offset=1)`` zeroes ``u`` and ``v`` of layer
``k`` exactly when a sample's first step reaches it (netx adds ``1 + k``), which also discards
the bias integrated while the pipeline fills. ``tests/netx_check.py`` runs this against
:func:`hardware.reference.run` and compares spikes and readout with ``==``.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from hardware import fixed_point as fp
from hardware.bundle import FORMAT_VERSION, Bundle
from hardware.graph import Graph, IntegerEdge, IntegerNode
from lsg_io import files

NETX_NAME = "model.net"
NETX_BIAS_EXP = 6  #: netx gives every CUBA neuron ``bias_exp = 6``; the file holds ``bias_mant``
NETX_RESET_OFFSET = 1  #: ``Network(reset_offset=...)`` that aligns resets with direct input
MESSAGE_BITS = (8, 16, 24)  #: graded-spike widths on Loihi 2
REF_DELAY = 1  #: slayer's default; netx does not read it
GENERATOR = "lsg-deploy hardware.targets.loihi.netx"


class NetxError(ValueError):
    """A bundle layer that netx cannot represent exactly."""


def skip_reason(graph: Graph) -> str | None:
    """Why netx cannot hold ``graph``, or None: a netx file is a chain of layers, so a node with
    several incoming edges (a residual add) or an edge that skips a node has no place in it."""
    if graph.is_chain:
        return None
    for node in graph.nodes:
        sources = [e.source for e in graph.incoming(node.name)]
        if len(sources) > 1:
            return f"lava-dl netx holds chains of layers only, and node {node.name} sums {len(sources)} edges " \
                   f"(from {', '.join(sources)})"
    return "lava-dl netx holds chains of layers only, and an edge of this graph skips a node"


def netx_bias(layer: IntegerNode) -> np.ndarray:
    """The file's ``bias``: ``(bias_mant << bias_exp) >> 6``, exact and within 13 bits, or raise."""
    effective = fp.effective_bias(layer.bias_mant, layer.bias_exp)
    mant, rest = np.divmod(effective, 1 << NETX_BIAS_EXP)
    if np.any(rest):
        bad = int(np.count_nonzero(rest))
        raise NetxError(
            f"layer {layer.name}: {bad} bias value(s) bias_mant << {layer.bias_exp} are not multiples of "
            f"{1 << NETX_BIAS_EXP}; netx fixes bias_exp = {NETX_BIAS_EXP}. Re-quantize with "
            f"QuantPolicy(bias_exp={NETX_BIAS_EXP})"
        )
    if mant.size and (mant.min() < fp.BIAS_MANT_MIN or mant.max() > fp.BIAS_MANT_MAX):
        raise NetxError(
            f"layer {layer.name}: bias / {1 << NETX_BIAS_EXP} spans [{mant.min()}, {mant.max()}], outside "
            f"Loihi's 13-bit bias_mant [{fp.BIAS_MANT_MIN}, {fp.BIAS_MANT_MAX}]"
        )
    return mant.astype(np.int32)


def netx_neuron(layer: IntegerNode) -> dict[str, Any]:
    """CUBA neuron parameters under slayer's names (netx: ``du = iDecay - 1``, ``dv = vDecay``)."""
    return {
        "type": "CUBA",
        "iDecay": int(layer.du) + 1,
        "vDecay": int(layer.dv),
        "vThMant": int(layer.vth),
        "refDelay": REF_DELAY,
        "gradedSpike": False,
    }


def _check_synapse(layer: IntegerEdge) -> None:
    if layer.weight_exp != 0:
        raise NetxError(f"layer {layer.name}: weight_exp {layer.weight_exp} != 0 has no netx field")
    if layer.geometry.kind != "dense":
        return
    w = layer.weight
    if not np.any(w):
        raise NetxError(f"layer {layer.name}: all-zero dense weights (netx's weight scaling divides by zero)")
    # netx scales non-positive weights so that the minimum lands in (-256, -128] (or exactly -256
    # when it is a negative power of two); Lava then clips an all-inhibitory matrix to >= -255.
    low = int(w.min())
    if w.max() <= 0 and (-low & (-low - 1)) == 0:
        raise NetxError(
            f"layer {layer.name}: dense weights are all <= 0 with minimum {low}; netx + Lava turn it "
            f"into {low} * 255/256"
        )


def input_message_bits(input_max: int) -> int:
    """Smallest Loihi graded-spike width holding ``[0, input_max]`` as a signed value."""
    for bits in MESSAGE_BITS:
        if input_max < 1 << (bits - 1):
            return bits
    raise NetxError(f"input_max {input_max} does not fit a {MESSAGE_BITS[-1]}-bit graded spike")


def netx_groups(bundle: Bundle) -> list[tuple[str, dict[str, Any]]]:
    """The file's layer groups in order: ``(name, {dataset: value})``; neuron keys are ``neuron/...``."""
    groups: list[tuple[str, dict[str, Any]]] = [
        ("input", {"type": "input", "shape": np.asarray(bundle.input.shape, np.int64)})
    ]
    reason = skip_reason(bundle.integer_graph)
    if reason:
        raise NetxError(reason)
    shape = tuple(bundle.input.shape)
    for edge, node in bundle.integer_graph.chain():
        _check_synapse(edge)
        g = edge.geometry
        expected = shape if g.kind == "conv" else (int(np.prod(shape)),)
        if tuple(g.input_shape) != expected:
            raise NetxError(f"layer {node.name}: input shape {g.input_shape} does not follow {shape}")
        ds: dict[str, Any] = {"type": g.kind, "shape": np.asarray(g.output_shape, np.int64)}
        if g.kind == "conv":
            sizes = zip(g.input_shape[1:], g.padding, edge.weight.shape[2:], g.stride, strict=True)
            out_hw = [(n + 2 * p - k) // st + 1 for n, p, k, st in sizes]
            if list(g.output_shape[1:]) != out_hw:
                raise NetxError(f"layer {node.name}: output shape {g.output_shape} does not match its kernel, "
                                f"stride and padding (expected {(g.output_shape[0], *out_hw)})")
            ds.update({
                "inChannels": g.input_shape[0],
                "outChannels": g.output_shape[0],
                "kernelSize": np.asarray(edge.weight.shape[2:], np.int64),
                "stride": np.asarray(g.stride, np.int64),
                "padding": np.asarray(g.padding, np.int64),
                "dilation": np.ones(2, np.int64),
                "groups": 1,
            })
        else:
            if len(shape) > 1:
                groups.append(("flatten", {"type": "flatten", "shape": np.asarray([int(np.prod(shape)), 1, 1])}))
            ds.update({"inFeatures": g.fan_in, "outFeatures": g.neurons})
        ds["weight"] = np.asarray(edge.weight, np.int16)
        ds["bias"] = netx_bias(node)
        ds.update({f"neuron/{k}": v for k, v in netx_neuron(node).items()})
        groups.append((node.name, ds))
        shape = tuple(g.output_shape)
    return groups


def _write_dataset(group: h5py.Group, key: str, value: Any) -> None:
    if isinstance(value, str):  # slayer's string layout: shape (1,), fixed-length ASCII
        group.create_dataset(key, (1,), "S10", [value.encode("ascii")])
    else:
        group.create_dataset(key, data=value)


def write_netx(bundle: Bundle, path: Path) -> None:
    """Write ``bundle``'s Loihi network as a netx HDF5 file at ``path`` (whole or not at all)."""
    path = Path(path)
    groups = netx_groups(bundle)  # every check runs before anything is written
    image = io.BytesIO()  # built in memory: HDF5 itself must never meet a full disk (it crashes)
    # in milliseconds, with signals held: h5py's conversion callbacks drop what a signal raises there
    with files.signals_held(), h5py.File(image, "w") as f:
        f.attrs["generator"] = GENERATOR
        f.attrs["bundle_format_version"] = FORMAT_VERSION
        f.attrs["target"] = bundle.target
        f.attrs["timesteps"] = bundle.timesteps
        f.attrs["input_max"] = bundle.input.input_max
        f.attrs["input_encoding"] = bundle.input.encoding
        f.attrs["input_message_bits"] = input_message_bits(bundle.input.input_max)
        f.attrs["reset_interval"] = bundle.timesteps
        f.attrs["reset_offset"] = NETX_RESET_OFFSET
        f.attrs["readout"] = "membrane v of the last layer, summed over the timesteps"
        f.attrs["layer_names"] = json.dumps([name for name, _ in groups])
        sim = f.create_group("simulation")
        sim.create_dataset("Ts", data=1)
        sim.create_dataset("tSample", data=bundle.timesteps)
        layers = f.create_group("layer")
        for i, (name, datasets) in enumerate(groups):
            g = layers.create_group(str(i))
            g.attrs["name"] = name
            for key, value in datasets.items():
                _write_dataset(g, key, value)
    files.write_bytes(path, image.getvalue())
