"""NIR graph of the folded float network (``nir.write`` / ``nir.read``).

Each folded layer becomes ``Conv2d`` or ``Affine`` followed by a ``LIF`` node; a ``Flatten``
sits between the conv stack and the first dense layer; the readout is an ``Affine`` into the
graph ``Output`` (its time average is the logit, recorded in the metadata).

Time convention (snnTorch's, also read by SpikingJelly's NIR import): forward Euler with step
``dt``::

    v[t+1] = v[t] + dt / tau * (v_leak - v[t] + r I[t+1])

so ``tau = dt / (1 - beta)``, ``r = tau / dt = 1 / (1 - beta)``, ``v_leak = 0`` reproduces
``u[t+1] = beta u[t] + I[t+1]``; reset to ``v_reset = 0`` after a spike. Both importers
hard-code (snnTorch) or default (SpikingJelly) ``dt = 1e-4``, the value written here.

Our neurons spike on ``u >= v_th``. NIR's text says ``>``; SpikingJelly fires on ``>=`` (it
agrees with us on exact ties), snnTorch on ``>`` (it does not); the metadata records ours.

NIR shapes carry no batch dimension, but importers run modules on batched tensors and disagree
on whether to shift ``Flatten`` dims by one (SpikingJelly does, snnTorch 1.0.0 does not), so the
flatten dims are written counted from the end, which means the same with or without a batch.
``tests/test_nir_peer.py`` runs the written graph in both peers against ``run_float``.
"""

from __future__ import annotations

import io
from pathlib import Path

import nir
import numpy as np

from hardware import files
from hardware.bundle import FloatLayer

DT = 1e-4


def _lif_node(layer: FloatLayer) -> nir.LIF:
    shape = layer.geometry.output_shape
    one_minus_beta = max(1.0 - layer.beta, 1e-12)  # beta = 1 (no leak) has tau = infinity
    tau = np.full(shape, DT / one_minus_beta)
    return nir.LIF(
        tau=tau,
        r=np.full(shape, 1.0 / one_minus_beta),
        v_leak=np.zeros(shape),
        v_threshold=np.full(shape, layer.v_th),
        v_reset=np.zeros(shape),
    )


def to_nir(layers: tuple[FloatLayer, ...], timesteps: int, input_scale: float) -> nir.NIRGraph:
    if not layers or not layers[-1].readout or any(layer.readout for layer in layers[:-1]):
        raise ValueError("a NIR export needs the folded layers ending in exactly one readout layer")
    first = layers[0].geometry
    nodes: dict[str, nir.NIRNode] = {"input": nir.Input(input_type={"input": np.array(first.input_shape)})}
    edges: list[tuple[str, str]] = []
    prev = "input"
    for i, layer in enumerate(layers):
        g = layer.geometry
        if g.kind == "conv":
            node = nir.Conv2d(
                input_shape=tuple(g.input_shape[1:]), weight=layer.weight, stride=g.stride,
                padding=g.padding, dilation=(1, 1), groups=1, bias=layer.bias,
            )
        else:
            feed = layers[i - 1].geometry.output_shape if i else g.input_shape
            if len(feed) > 1:  # the first dense layer after the conv stack
                flat = nir.Flatten(input_type={"input": np.array(feed)}, start_dim=-len(feed), end_dim=-1)
                nodes[f"{layer.name}_flatten"] = flat
                edges.append((prev, f"{layer.name}_flatten"))
                prev = f"{layer.name}_flatten"
            node = nir.Affine(weight=layer.weight, bias=layer.bias)
        syn = f"{layer.name}_synapse" if not layer.readout else layer.name
        nodes[syn] = node
        edges.append((prev, syn))
        prev = syn
        if not layer.readout:
            nodes[layer.name] = _lif_node(layer)
            edges.append((prev, layer.name))
            prev = layer.name
    nodes["output"] = nir.Output(output_type={"output": np.array(layers[-1].geometry.output_shape)})
    edges.append((prev, "output"))
    metadata = {
        "producer": "lsg-deploy",
        "dt": DT,
        "time_convention": "forward Euler, tau = dt / (1 - beta), r = 1 / (1 - beta), hard reset to 0",
        "spike_condition": "v >= v_threshold",
        "reset": "hard: v = v_reset after a spike, the spike decided on the updated v",
        "timesteps": timesteps,
        "input_encoding": f"direct: the image (integer pixels / {input_scale:g}) repeated every step",
        "readout": "the output node's value averaged over the timesteps is the logit vector",
    }
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata=metadata)


def write_nir(layers: tuple[FloatLayer, ...], timesteps: int, input_scale: float, path: Path) -> None:
    image = io.BytesIO()  # built in memory: HDF5 itself must never meet a full disk (it crashes)
    nir.write(image, to_nir(layers, timesteps, input_scale))
    files.write_bytes(path, image.getvalue())
