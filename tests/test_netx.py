"""netx HDF5 export: the file read back with h5py against the bundle, field by field, and the
network it describes, read the way netx and Lava read it, against the integer reference.

The run on Lava itself (lava-dl's own ``Network``) is ``tests/netx_check.py``, in its own
Python 3.10 environment; here a numpy reading of the same file stands in for it.
"""

from __future__ import annotations

import dataclasses
import json

import h5py
import numpy as np
import pytest

from export.quantize import QuantPolicy, quantize
from hardware import fixed_point as fp
from hardware import reference
from hardware.bundle import Bundle
from hardware.graph import FloatEdge, FloatNode, Geometry, Graph, Input, IntegerEdge, IntegerNode
from hardware.targets.loihi.netx import (
    NETX_BIAS_EXP,
    NetxError,
    input_message_bits,
    netx_groups,
    skip_reason,
    write_netx,
)
from hardware.targets.loihi.profile import LOIHI2
from tests.netgen import placeholder_float, random_inputs, random_network

# --- bundles built here ---------------------------------------------------------------------------


def _chain(spec: Input, links) -> Graph:
    """A chain graph from (edge, node) links; each edge reads the node before it."""
    edges, nodes, source = [], [], "input"
    for edge, node in links:
        edges.append(dataclasses.replace(edge, source=source, target=node.name))
        nodes.append(node)
        source = node.name
    return Graph(spec, tuple(nodes), tuple(edges))


def _float_link(rng, name, geometry, kernel, beta, readout=False):
    edge = FloatEdge(name, "", name, geometry, rng.normal(0, 0.4 if geometry.kind == "conv" else 0.3, kernel))
    node = FloatNode(name, geometry.output_shape, rng.normal(0, 0.1 if readout else 0.2, kernel[0]), beta, 0.5,
                     readout=readout)
    return edge, node


def _float_net(seed: int = 0) -> Graph:
    """conv (non-square stride/padding) -> conv -> dense -> readout, on a (2, 7, 6) input."""
    rng = np.random.default_rng(seed)
    return _chain(Input((2, 7, 6), "direct", 16), [
        _float_link(rng, "conv1", Geometry("conv", (2, 7, 6), (3, 4, 7), (2, 1), (1, 1)), (3, 2, 3, 2), 0.3),
        _float_link(rng, "conv2", Geometry("conv", (3, 4, 7), (4, 3, 4), (1, 2), (0, 1)), (4, 3, 2, 3), 0.6),
        _float_link(rng, "fc1", Geometry("dense", (48,), (5,)), (5, 48), 0.2),
        _float_link(rng, "readout", Geometry("dense", (5,), (4,)), (4, 5), 1.0, readout=True),
    ])


def _bundle(float_graph: Graph, integer_graph: Graph, timesteps: int = 3) -> Bundle:
    return Bundle(target="loihi", timesteps=timesteps, float_graph=float_graph, integer_graph=integer_graph,
                  profile=LOIHI2)


def _quantized_bundle(seed: int = 0) -> Bundle:
    graph = _float_net(seed)
    q, _, warnings = quantize(graph, 10.0, QuantPolicy(bias_exp=NETX_BIAS_EXP), LOIHI2)
    assert warnings == []
    return _bundle(graph, q)


def _as_bundle(integer_graph: Graph, timesteps: int = 3) -> Bundle:
    """Wrap an integer graph (e.g. from ``netgen``) in a bundle; the float record is a placeholder."""
    return _bundle(placeholder_float(integer_graph), integer_graph, timesteps)


def _dense_layer(weight, bias_mant=0, bias_exp=NETX_BIAS_EXP, weight_exp=0, readout=False, name="h"):
    weight = np.asarray(weight, np.int64)
    edge = IntegerEdge(name=name, source="", target=name, geometry=Geometry("dense", (weight.shape[1],),
                     (weight.shape[0],)), weight=weight, weight_exp=weight_exp, input_scale=1.0)
    node = IntegerNode(name=name, shape=(weight.shape[0],), bias_mant=np.full(weight.shape[0], bias_mant, np.int64),
                     bias_exp=bias_exp, du=fp.DU_NO_MEMORY, dv=0 if readout else 100,
                     vth=fp.VTH_MAX if readout else 10, scale=1.0, readout=readout)
    return edge, node


def _dense_bundle(links, in_shape) -> Bundle:
    return _as_bundle(_chain(Input(in_shape, "direct", 16), links))


def _netx_biases(graph: Graph) -> Graph:
    """netgen nodes with their bias moved onto netx's grid: bias_exp = 6 (mant already 13-bit)."""
    return dataclasses.replace(graph, nodes=tuple(dataclasses.replace(n, bias_exp=NETX_BIAS_EXP) for n in graph.nodes))


def _read(path):
    with h5py.File(path, "r") as f:
        groups = f["layer"]
        names = sorted(groups, key=int)
        out = []
        for key in names:
            g = groups[key]
            rec = {k: g[k][()] for k in g if k != "neuron"}
            rec["type"] = rec["type"][0].decode("ascii")
            if "neuron" in g:
                rec["neuron"] = {k: g["neuron"][k][()] for k in g["neuron"]}
                rec["neuron"]["type"] = rec["neuron"]["type"][0].decode("ascii")
            rec["name"] = g.attrs["name"]
            out.append(rec)
        return names, out, dict(f.attrs), {k: f["simulation"][k][()] for k in f["simulation"]}


# --- structure and values -------------------------------------------------------------------------


def test_file_holds_the_bundles_integer_network(tmp_path):
    bundle = _quantized_bundle()
    path = tmp_path / "model.net"
    write_netx(bundle, path)
    keys, recs, attrs, sim = _read(path)
    assert keys == [str(i) for i in range(len(keys))]  # netx indexes groups '0'..'n-1'
    assert [r["type"] for r in recs] == ["input", "conv", "conv", "flatten", "dense", "dense"]
    assert [r["name"] for r in recs] == ["input", "conv1", "conv2", "flatten", "fc1", "readout"]
    assert recs[0]["shape"].tolist() == [2, 7, 6] and "neuron" not in recs[0]  # graded pixels pass through
    assert recs[3]["shape"].tolist() == [48, 1, 1]
    links = {node.name: (edge, node) for edge, node in bundle.integer_graph.chain()}
    for rec in recs[1:3] + recs[4:]:
        edge, layer = links[rec["name"]]
        g = edge.geometry
        assert rec["shape"].tolist() == list(g.output_shape)
        assert np.issubdtype(rec["weight"].dtype, np.integer)
        assert np.array_equal(rec["weight"], edge.weight)  # torch order (O, C, kh, kw) / (N, fan_in)
        assert np.array_equal(rec["bias"].astype(np.int64) << NETX_BIAS_EXP, layer.bias_mant << layer.bias_exp)
        n = rec["neuron"]
        assert n["type"] == "CUBA"
        assert (n["iDecay"] - 1, n["vDecay"], n["vThMant"]) == (layer.du, layer.dv, layer.vth)
        if g.kind == "conv":
            assert rec["stride"].tolist() == list(g.stride) and rec["padding"].tolist() == list(g.padding)
            assert rec["dilation"].tolist() == [1, 1] and rec["groups"] == 1
            assert rec["kernelSize"].tolist() == list(edge.weight.shape[2:])
            assert rec["bias"].shape == (g.output_shape[0],)  # per channel: netx broadcasts it
        else:
            assert (rec["inFeatures"], rec["outFeatures"]) == (g.fan_in, g.neurons)
    ro = recs[-1]["neuron"]
    assert (ro["iDecay"], ro["vDecay"], ro["vThMant"]) == (4096, 0, fp.VTH_MAX)
    assert attrs["timesteps"] == 3 and attrs["input_max"] == 16 and attrs["input_message_bits"] == 8
    assert (attrs["reset_interval"], attrs["reset_offset"]) == (3, 1)
    assert json.loads(attrs["layer_names"])[-1] == "readout"
    assert sim == {"Ts": 1, "tSample": 3}


def test_dense_first_network_gets_a_flatten_after_the_input(tmp_path):
    hidden = _dense_layer(2 * np.arange(-6, 6).reshape(3, 4))
    readout = _dense_layer(np.full((2, 3), 4), readout=True, name="r")
    path = tmp_path / "model.net"
    write_netx(_dense_bundle((hidden, readout), (2, 1, 2)), path)
    _, recs, _, _ = _read(path)
    assert [r["type"] for r in recs] == ["input", "flatten", "dense", "dense"]
    assert recs[1]["shape"].tolist() == [4, 1, 1]
    assert np.array_equal(recs[2]["weight"], hidden[0].weight)  # (C, H, W) flatten order kept


def test_input_message_bits_hold_the_pixel_range():
    assert input_message_bits(16) == 8 and input_message_bits(127) == 8
    assert input_message_bits(128) == 16 and input_message_bits(255) == 16
    assert input_message_bits((1 << 23) - 1) == 24
    with pytest.raises(NetxError):
        input_message_bits(1 << 23)


def test_quant_policy_bias_exp_puts_biases_on_the_netx_grid():
    graph = _float_net(1)
    q, summary, _ = quantize(graph, 10.0, QuantPolicy(bias_exp=NETX_BIAS_EXP), LOIHI2)
    assert all(x.bias_exp == NETX_BIAS_EXP for x in q.nodes)
    assert summary["policy"]["bias_exp"] == NETX_BIAS_EXP
    free, _, _ = quantize(graph, 10.0, None, LOIHI2)
    # the same bias, rounded to one activation unit (64 membrane units)
    for a, b in zip(q.nodes, free.nodes, strict=True):
        assert np.abs((a.bias_mant << a.bias_exp) - (b.bias_mant << b.bias_exp)).max() <= 32 + (1 << b.bias_exp)
    with pytest.raises(ValueError, match="bias_exp 8 outside"):
        quantize(graph, 10.0, QuantPolicy(bias_exp=8), LOIHI2)


# --- what netx cannot represent: refused, nothing written -----------------------------------------


@pytest.mark.parametrize(("hidden", "match"), [
    (dict(weight=[[2, -4]], bias_mant=3, bias_exp=5), "not multiples of 64"),
    (dict(weight=[[2, -4]], bias_mant=4095, bias_exp=7), "13-bit"),
    (dict(weight=[[2, -4]], weight_exp=1), "weight_exp"),
    (dict(weight=[[0, 0]]), "all-zero"),
    (dict(weight=[[-256, -2]]), "all <= 0"),
    (dict(weight=[[0, -8]]), "all <= 0"),
])
def test_unrepresentable_layers_are_refused_and_nothing_is_written(tmp_path, hidden, match):
    bundle = _dense_bundle((_dense_layer(**hidden), _dense_layer([[2]], readout=True, name="r")), (1, 1, 2))
    path = tmp_path / "model.net"
    path.write_bytes(b"old")
    with pytest.raises(NetxError, match=match):
        write_netx(bundle, path)
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["model.net"]


@pytest.mark.parametrize("weight", [[[-254, -2]], [[0, 254]], [[-256, 254]], [[-6, -12]]])
def test_representable_edges_are_written_and_read_back_exactly(tmp_path, weight):
    """At the edges netx can hold (one sign, both extremes, a bias at -4096): the file holds the
    weights and bias, and netx's rescaling plus Lava's clip and truncation give back every weight."""
    hidden = _dense_layer(weight, bias_mant=-4096)
    bundle = _dense_bundle((hidden, _dense_layer([[2]], readout=True, name="r")), (1, 1, 2))
    write_netx(bundle, tmp_path / "model.net")
    _, recs, _, _ = _read(tmp_path / "model.net")
    assert [r["type"] for r in recs] == ["input", "flatten", "dense", "dense"]
    edge, node = hidden
    assert np.array_equal(recs[2]["weight"], edge.weight)
    assert np.array_equal(recs[2]["bias"].astype(np.int64) << NETX_BIAS_EXP, node.bias_mant << node.bias_exp)
    assert np.array_equal(_netx_dense(recs[2]["weight"], np.eye(2, dtype=np.int64)).T, edge.weight)


# --- the file, read the way netx + Lava read it, computes the reference ------------------------------


def _netx_dense(weight: np.ndarray, s: np.ndarray) -> np.ndarray:
    """lava-dl 0.6.0 ``netx.utils.optimize_weight_bits``, then lava 0.10.0's Dense fixed_pt model
    (sign mode from the scaled weights, clip to 8 bits, truncate to ``num_weight_bits``, shift back)."""
    hi, lo = int(weight.max()), int(weight.min())
    if hi < 0:
        signed, scale = 0, -256 / lo
    elif lo >= 0:
        signed, scale = 0, 255 / hi
    else:
        signed, scale = 1, min(127 / hi if hi > 0 else np.inf, -128 / lo)
    shift = int(np.floor(np.log2(scale))) + signed
    n = next((k for k in range(8, 0, -1) if not np.any(weight % (1 << k))), 0) - signed
    num_bits = 8 - shift - n
    w = weight.astype(np.int64) << shift
    mixed = int(w.min() < 0 < w.max())
    sign = -1 if (w.max() <= 0 and w.min() < 0) else 1
    w = np.clip(sign * w, -256 * mixed, 255)
    k = 8 - num_bits + mixed
    w = sign * ((w >> k) << k)
    return (s @ w.T) >> shift


@pytest.mark.parametrize("seed", range(40))
def test_write_netx_accepts_exactly_the_dense_weights_netx_keeps(seed):
    """Accepted <=> netx's rescaling plus Lava's clip and truncation give back every weight."""
    rng = np.random.default_rng(seed)
    shape = (int(rng.integers(1, 4)), int(rng.integers(1, 5)))
    lo, hi = sorted(int(v) for v in rng.choice([-256, -128, -64, -10, -2, 0, 2, 6, 128, 254], size=2))
    w = 2 * rng.integers(lo // 2, hi // 2 + 1, size=shape)
    w.flat[0], w.flat[-1] = lo, hi
    readout = _dense_layer(np.full((1, shape[0]), 2), readout=True, name="r")
    bundle = _dense_bundle((_dense_layer(w), readout), (1, 1, shape[1]))
    try:
        netx_groups(bundle)
        accepted = True
    except NetxError:
        accepted = False
    if not np.any(w):  # netx itself fails (255 / 0)
        assert not accepted
        return
    kept = _netx_dense(w, np.eye(shape[1], dtype=np.int64)).T
    assert accepted == np.array_equal(kept, w)


def _lava_conv_xyc(x: np.ndarray, w_oxyc: np.ndarray, stride, padding) -> np.ndarray:
    """Lava's conv: a true convolution on (B, X, Y, C) with kernel (O, kx, ky, C)."""
    kx, ky = w_oxyc.shape[1:3]
    xp = np.pad(x, ((0, 0), (padding[0],) * 2, (padding[1],) * 2, (0, 0)))
    nx = (xp.shape[1] - kx) // stride[0] + 1
    ny = (xp.shape[2] - ky) // stride[1] + 1
    out = np.zeros((x.shape[0], nx, ny, w_oxyc.shape[0]), np.int64)
    flipped = w_oxyc[:, ::-1, ::-1, :]
    for i in range(kx):
        for j in range(ky):
            patch = xp[:, i: i + stride[0] * nx: stride[0], j: j + stride[1] * ny: stride[1], :]
            out += np.einsum("bxyc,oc->bxyo", patch, flipped[:, i, j, :])
    return out


def _run_as_netx(path, pixels: np.ndarray, timesteps: int):
    """Read ``path`` as netx does (shapes reversed, conv kernels flipped and transposed, bias with
    ``bias_exp = 6``, ``du = iDecay - 1``) and run it with the Loihi profile's step, without delays."""
    with h5py.File(path, "r") as f:
        layers = []
        for i in range(len(f["layer"])):
            g = f["layer"][str(i)]
            kind = g["type"][0].decode()
            rec = {"kind": kind}
            if kind in ("conv", "dense"):
                rec.update(shape=tuple(g["shape"][()][::-1]), weight=g["weight"][()].astype(np.int64),
                           bias=g["bias"][()].astype(np.int64), du=int(g["neuron/iDecay"][()]) - 1,
                           dv=int(g["neuron/vDecay"][()]), vth=int(g["neuron/vThMant"][()]))
            if kind == "conv":
                rec["weight"] = rec["weight"][:, :, ::-1, ::-1].transpose(0, 3, 2, 1)  # (O, kx, ky, C)
                rec["stride"], rec["padding"] = g["stride"][()][::-1], g["padding"][()][::-1]
            layers.append(rec)
    synaptic = [r for r in layers if r["kind"] in ("conv", "dense")]
    b = pixels.shape[0]
    for r in synaptic:
        r["u"] = r["v"] = np.zeros((b, *r["shape"]), np.int64)
    spikes = [np.zeros((b, timesteps, int(np.prod(r["shape"]))), bool) for r in synaptic[:-1]]
    readout = np.zeros((b, timesteps, int(np.prod(synaptic[-1]["shape"]))), np.int64)
    for t in range(timesteps):
        s = pixels.transpose(0, 3, 2, 1).astype(np.int64)  # (B, X, Y, C)
        flatten, k = False, 0
        for r in layers:
            if r["kind"] == "flatten":
                flatten = True
            if r["kind"] not in ("conv", "dense"):
                continue
            if r["kind"] == "conv":
                a = LOIHI2.synapse(_lava_conv_xyc(s, r["weight"], r["stride"], r["padding"]))
            else:
                if flatten:  # netx: previous out.transpose([2, 1, 0]).flatten()
                    s, flatten = s.transpose(0, 3, 2, 1).reshape(b, -1), False
                a = _netx_dense(r["weight"], s)
            bias = r["bias"] << NETX_BIAS_EXP  # on the last axis (channels), as netx lays them out
            fired, r["u"], r["v"], _ = LOIHI2.lif_step(a, r["u"], r["v"], r["du"], r["dv"], bias, r["vth"])
            if k == len(synaptic) - 1:
                readout[:, t] = r["v"].reshape(b, -1)
            else:
                flat = fired.transpose(0, 3, 2, 1).reshape(b, -1) if fired.ndim == 4 else fired
                spikes[k][:, t] = flat  # (C, H, W) order, as the reference records it
            s, k = fired.astype(np.int64), k + 1
    return spikes, readout


@pytest.mark.parametrize("seed", range(12))
def test_file_read_as_netx_computes_the_reference(tmp_path, seed):
    bundle = _as_bundle(_netx_biases(random_network(seed)), timesteps=4)
    path = tmp_path / "model.net"
    try:
        write_netx(bundle, path)
    except NetxError as exc:  # netgen visits edges netx cannot hold; those must be the refused kind
        assert "all <= 0" in str(exc) or "all-zero" in str(exc)
        return
    pixels = random_inputs(seed, bundle.integer_graph, 4, batch=5)
    ref = reference.run(bundle.integer_graph, pixels, 4, LOIHI2)
    spikes, readout = _run_as_netx(path, pixels, 4)
    for node, got in zip(bundle.integer_graph.hidden, spikes, strict=True):
        assert np.array_equal(got, ref.spikes[node.name]), node.name
    assert np.array_equal(readout, ref.readout)


def test_quantized_bundle_read_as_netx_computes_the_reference(tmp_path):
    bundle = _quantized_bundle(2)
    path = tmp_path / "model.net"
    write_netx(bundle, path)
    pixels = np.random.default_rng(2).integers(0, 17, size=(8, *bundle.input.shape))
    ref = reference.run(bundle.integer_graph, pixels, bundle.timesteps, LOIHI2)
    spikes, readout = _run_as_netx(path, pixels, bundle.timesteps)
    assert sum(int(s.sum()) for s in spikes) > 0  # the comparison is not of silent networks
    for node, got in zip(bundle.integer_graph.hidden, spikes, strict=True):
        assert np.array_equal(got, ref.spikes[node.name]), node.name
    assert np.array_equal(readout, ref.readout)


def test_graphs_netx_cannot_hold_are_named():
    """A residual add (two edges into a node) has no place in netx's chain of layers."""
    graph = _quantized_bundle(0).integer_graph
    assert skip_reason(graph) is None
    conv2 = graph.node("conv2")
    extra = IntegerEdge("skip", "input", "conv2", Geometry("conv", (2, 7, 6), conv2.shape, (3, 2), (0, 1)),
                      np.zeros((4, 2, 1, 1), np.int64), 0, 16.0)
    residual = dataclasses.replace(graph, edges=(*graph.edges, extra))
    assert "node conv2 sums 2 edges (from conv1, input)" in skip_reason(residual)
    with pytest.raises(NetxError, match="chains of layers only"):
        netx_groups(_as_bundle(residual))



@pytest.mark.parametrize("writer", ["netx", "nir"])
def test_a_signal_while_hdf5_is_built_is_raised_after_it_and_nothing_is_written(tmp_path, monkeypatch, writer):
    """h5py calls back into Python (its type conversions log) and prints and drops an exception
    raised there: a SIGTERM that landed in one printed a traceback from an export. Signals are
    held while an HDF5 image (netx, NIR) is built and raised once it is, before the file is
    written."""
    import signal
    import threading
    import time
    import traceback

    from export.nir_export import write_nir
    from lsg_deploy.cli import Terminated, _signals_raise
    from tests.test_nir_peer import _network as nir_network

    idle = threading.Event()
    other = threading.Thread(target=idle.wait)  # the thread the kernel gives the signal to
    other.start()
    real = h5py.Group.create_dataset

    def signalled_while_writing(group, name, *args, **kwargs):
        made = real(group, name, *args, **kwargs)
        if not signalled:
            signalled.append(name)
            signal.pthread_kill(other.ident, signal.SIGTERM)
            end = time.monotonic() + 0.3
            while time.monotonic() < end:  # bytecodes: an unheld handler runs (and raises) here
                pass
        return made

    signalled = []
    monkeypatch.setattr(h5py.Group, "create_dataset", signalled_while_writing)
    bundle = _quantized_bundle()
    try:
        with pytest.raises(Terminated) as info, _signals_raise():
            if writer == "netx":
                write_netx(bundle, tmp_path / "model.net")
            else:
                write_nir(nir_network(0), bundle.timesteps, tmp_path / "model.nir")
    finally:
        idle.set()
        other.join()
    assert signalled
    assert "signalled_while_writing" not in [f.name for f in traceback.extract_tb(info.value.__traceback__)]
    assert list(tmp_path.iterdir()) == []
