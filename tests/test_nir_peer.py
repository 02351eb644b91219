"""The exported NIR graph, read back by ``nir.read`` and run in peer libraries.

Peers: snnTorch 1.0.0 (``snntorch.import_nir.import_from_nir``, on nirtorch 2.6) and
SpikingJelly 2.0.0 (``spikingjelly.activation_based.nir_exchange.import_from_nir``). Each turns
``tau, r, v_leak, v_threshold, v_reset`` back into its own LIF with ``dt = 1e-4`` (see
``export/nir_export.py``) and is stepped once per timestep with the image repeated, as ours is.

What they compute, read from their code:

* snnTorch: ``Leaky(beta = 1 - dt/tau, threshold = v_th, reset_mechanism="zero",
  reset_delay=False)``; ``u = beta u + I``, spike on ``u - v_th > 0`` (strict), then ``u = 0``.
  nirtorch casts the whole module to float32.
* SpikingJelly: ``LIFNode(tau = tau/dt, decay_input=False, v_reset=0)``; ``h = v - v/tau + I``,
  spike on ``h - v_th >= 0`` (as ours), then ``v = 0``. Imported here in float64.

Hidden spikes must equal ours exactly. The only legitimate difference is a membrane at (or, for
float32, within rounding of) the threshold, so the random networks are certified free of those
first (:func:`_assert_no_near_ties`); the tie itself is pinned by its own test.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import io
from pathlib import Path

import nir
import numpy as np
import pytest
import torch

from export.fold import run_float
from export.nir_export import DT, to_nir, write_nir
from hardware.bundle import FloatLayer, Geometry

SNNTORCH_INSTALL = "pip install snntorch==1.0.0 nirtorch==2.6"
# --no-deps: its declared torchvision/torchaudio would replace torch 2.13.0; the NIR import needs only loguru
SPIKINGJELLY_INSTALL = "pip install --no-deps spikingjelly==2.0.0 && pip install 'loguru>=0.7,<1'"
TIMESTEPS = 6
# No membrane of ours lies within TIE_MARGIN of the threshold. snnTorch's float32 currents differ
# from our float64 ones by <= 8e-7 on these networks, its membranes by that / (1 - beta) < 3e-6.
TIE_MARGIN = 1e-5
F32_ROUNDOFF, F64_ROUNDOFF = 2.0**-24, 2.0**-53


def _layer(rng: np.random.Generator, name: str, geometry: Geometry, kernel: tuple[int, ...], beta: float,
           readout: bool = False) -> FloatLayer:
    fan_in = int(np.prod(kernel[1:]))
    weight = rng.normal(0.0, 1.4 / np.sqrt(fan_in), size=kernel)
    bias = rng.uniform(-0.1, 0.3, size=kernel[0])
    return FloatLayer(name, geometry, weight, bias, beta, 0.5, readout=readout)


def _network(seed: int) -> tuple[FloatLayer, ...]:
    """conv 3x3 -> LIF, conv 4x4 stride 2 -> LIF, flatten, dense -> LIF, readout: every node kind."""
    rng = np.random.default_rng(seed)
    return (
        _layer(rng, "conv1", Geometry("conv", (1, 8, 8), (4, 8, 8), (1, 1), (1, 1)), (4, 1, 3, 3), 0.21),
        _layer(rng, "conv2", Geometry("conv", (4, 8, 8), (8, 4, 4), (2, 2), (1, 1)), (8, 4, 4, 4), 0.37),
        _layer(rng, "fc1", Geometry("dense", (128,), (32,)), (32, 128), 0.64),
        _layer(rng, "readout", Geometry("dense", (32,), (10,)), (10, 32), 1.0, readout=True),
    )


def _images(seed: int, batch: int = 32) -> torch.Tensor:
    rng = np.random.default_rng(seed + 1000)
    return torch.as_tensor(rng.integers(0, 17, size=(batch, 1, 8, 8)) / 16.0)


def _assert_no_near_ties(layers: tuple[FloatLayer, ...], x: torch.Tensor, margin: float) -> None:
    """Certificate that no membrane lies in [v_th - margin, v_th + margin).

    If thresholds ``v_th - margin`` and ``v_th + margin`` give the same spikes, both runs follow
    the same membrane trajectory, and at every step ``u >= v_th - margin`` iff ``u >= v_th + margin``.
    """
    def shifted(d: float) -> dict[str, torch.Tensor]:
        return run_float(tuple(dataclasses.replace(la, v_th=la.v_th + d) for la in layers), x, TIMESTEPS)[1]

    low, high = shifted(-margin), shifted(margin)
    for name in low:
        assert torch.equal(low[name], high[name]), f"{name}: a membrane lies within {margin} of v_th; reseed"


def _readout_tolerance(layers: tuple[FloatLayer, ...], roundoff: float) -> float:
    """Bound on a peer's readout error given identical spikes (inputs in {0, 1}).

    A length-n dot product in precision ``u`` errs by at most ``n u sum|w x|`` (Higham's gamma_n);
    the bias add and storing the weights in that precision add ``2 u``: ``(n + 2) u max_i
    (sum_j |W_ij| + |b_i|)``. The time average does not increase it."""
    readout = layers[-1]
    n = readout.weight.shape[1]
    return (n + 2) * roundoff * float((np.abs(readout.weight).sum(1) + np.abs(readout.bias)).max())


def _record(net: torch.nn.Module, names: list[str]) -> dict[str, list[torch.Tensor]]:
    """Forward hooks on the peer's neuron modules (named as our layers); they keep every step."""
    record: dict[str, list[torch.Tensor]] = {n: [] for n in names}

    def hook(name: str):
        def keep(_module, _inputs, out):  # SpikingJelly's stateful wrapper returns (spikes, state)
            record[name].append((out[0] if isinstance(out, tuple) else out).detach().double().flatten(1))
        return keep

    for name in names:
        getattr(net, name).register_forward_hook(hook(name))
    return record


def _require(module: str, install: str):
    """The peers are part of the test set-up (``make test``): missing is a failure, not a skip."""
    try:
        return importlib.import_module(module)
    except ImportError:
        pytest.fail(f"peer {module} is not installed: {install} (make test installs it)")


@torch.no_grad()
def _run_snntorch(graph: nir.NIRGraph, x: torch.Tensor, names: list[str]):
    snntorch = _require("snntorch", SNNTORCH_INSTALL)
    from snntorch.import_nir import import_from_nir

    with contextlib.redirect_stdout(io.StringIO()):  # the importer prints progress
        net = import_from_nir(graph)
    for module in net.modules():
        if isinstance(module, snntorch.Leaky):
            module.reset_mem()  # state lives in the modules (init_hidden=True): one call = one step
    record = _record(net, names)
    outputs = [net(x.float())[0] for _ in range(TIMESTEPS)]
    return torch.stack(outputs).double().mean(0), {n: torch.stack(v) for n, v in record.items()}


@torch.no_grad()
def _run_spikingjelly(graph: nir.NIRGraph, x: torch.Tensor, names: list[str]):
    _require("spikingjelly", SPIKINGJELLY_INSTALL)
    from spikingjelly.activation_based.nir_exchange import import_from_nir

    net = import_from_nir(graph, dtype=torch.float64)
    record = _record(net, names)
    state, outputs = None, []
    for _ in range(TIMESTEPS):  # explicit state: pass back what the last step returned
        out, state = net(x, state)
        outputs.append(out)
    return torch.stack(outputs).mean(0), {n: torch.stack(v) for n, v in record.items()}


PEERS = {
    "snntorch": (_run_snntorch, F32_ROUNDOFF),
    "spikingjelly": (_run_spikingjelly, F64_ROUNDOFF),
}


@pytest.mark.parametrize("peer", sorted(PEERS))
@pytest.mark.parametrize("seed", [1, 2])  # seeds 0 and 3 fail the near-tie certificate
def test_peer_reproduces_float_spikes_and_readout(peer: str, seed: int, tmp_path: Path) -> None:
    layers, x = _network(seed), _images(seed)
    logits, spikes = run_float(layers, x, TIMESTEPS)
    for name, s in spikes.items():  # neither silent nor saturated, or equality proves little
        assert 0.05 < float(s.mean()) < 0.95, f"{name} spike rate {float(s.mean()):.3f}"
    _assert_no_near_ties(layers, x, TIE_MARGIN)

    write_nir(layers, TIMESTEPS, 16.0, tmp_path / "model.nir")
    run, roundoff = PEERS[peer]
    peer_logits, peer_spikes = run(nir.read(tmp_path / "model.nir"), x, list(spikes))

    for name, ours in spikes.items():
        theirs = peer_spikes[name]
        assert theirs.shape == ours.shape, name
        mismatches = int((theirs != ours).sum())
        assert mismatches == 0, f"{peer} {name}: {mismatches} of {ours.numel()} spikes differ"
    tolerance = _readout_tolerance(layers, roundoff)
    np.testing.assert_allclose(peer_logits.numpy(), logits.numpy(), rtol=0, atol=tolerance)


def _tie_network() -> tuple[FloatLayer, ...]:
    """One neuron whose input current is exactly v_th = 0.5 every step (all values dyadic)."""
    return (
        FloatLayer("lif", Geometry("dense", (1,), (1,)), np.array([[0.25]]), np.array([0.25]), 0.5, 0.5),
        FloatLayer("readout", Geometry("dense", (1,), (1,)), np.array([[1.0]]), np.array([0.0]), 1.0, 0.5,
                   readout=True),
    )


def test_exact_tie_spikes_in_ours_and_spikingjelly_not_in_snntorch() -> None:
    """u = 0.5 exactly: ours and SpikingJelly fire (>=), snnTorch does not (>) and fires a step later."""
    layers, x = _tie_network(), torch.ones(1, 1, dtype=torch.float64)
    _, spikes = run_float(layers, x, TIMESTEPS)
    graph = to_nir(layers, TIMESTEPS, 1.0)
    _, sj = _run_spikingjelly(graph, x, ["lif"])
    _, st = _run_snntorch(graph, x, ["lif"])
    ours = spikes["lif"].flatten().tolist()
    assert ours == [1.0] * TIMESTEPS
    assert sj["lif"].flatten().tolist() == ours
    # snnTorch: 0.5 (no spike), 0.5 * 0.5 + 0.5 = 0.75 (spike, reset), 0.5 (no spike), ...
    assert st["lif"].flatten().tolist() == [0.0, 1.0] * (TIMESTEPS // 2)


def _assert_same(a, b, where: str) -> None:
    if isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for key in a:
            _assert_same(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b), err_msg=where)
    else:
        assert a == b, where


def test_nir_read_round_trips_the_graph(tmp_path: Path) -> None:
    layers = _network(0)
    graph = to_nir(layers, TIMESTEPS, 16.0)
    write_nir(layers, TIMESTEPS, 16.0, tmp_path / "model.nir")
    back = nir.read(tmp_path / "model.nir")

    assert {k: type(v) for k, v in back.nodes.items()} == {k: type(v) for k, v in graph.nodes.items()}
    assert sorted(back.edges) == sorted(graph.edges)
    chain = ["input", "conv1_synapse", "conv1", "conv2_synapse", "conv2", "fc1_flatten", "fc1_synapse", "fc1",
             "readout", "output"]
    assert sorted(back.edges) == sorted(zip(chain[:-1], chain[1:], strict=True))
    for name, node in graph.nodes.items():
        _assert_same(node.to_dict(), back.nodes[name].to_dict(), name)
    for layer in layers:  # the file holds exactly the folded float64 parameters
        synapse = back.nodes[layer.name if layer.readout else f"{layer.name}_synapse"]
        assert synapse.weight.dtype == np.float64
        np.testing.assert_array_equal(synapse.weight, layer.weight)
        np.testing.assert_array_equal(synapse.bias, layer.bias)
        if not layer.readout:
            lif = back.nodes[layer.name]
            np.testing.assert_allclose(1.0 - DT / lif.tau, layer.beta, rtol=1e-12)  # snnTorch's inverse
            np.testing.assert_allclose(lif.r * DT / lif.tau, 1.0, rtol=1e-12)  # input scale 1
            assert (lif.v_threshold == layer.v_th).all() and (lif.v_reset == 0).all() and (lif.v_leak == 0).all()
    _assert_same(back.nodes["fc1_flatten"].output_type, {"output": np.array([128])}, "flatten")
    assert back.metadata["dt"] == DT and back.metadata["spike_condition"] == "v >= v_threshold"
    assert int(back.metadata["timesteps"]) == TIMESTEPS


def test_to_nir_rejects_a_stack_without_a_final_readout() -> None:
    layers = _network(1)
    with pytest.raises(ValueError, match="readout"):
        to_nir(layers[:-1], TIMESTEPS, 16.0)
    with pytest.raises(ValueError, match="readout"):
        to_nir((layers[-1], *layers[:-1]), TIMESTEPS, 16.0)
