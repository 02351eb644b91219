"""NIR graph of the folded float network (``nir.write`` / ``nir.read``).

The deployment graph (:class:`hardware.graph.Graph`) maps onto NIR node for node:

* every edge becomes a ``Conv2d`` or an ``Affine`` named ``<edge>_synapse``, with a ``Flatten``
  named ``<edge>_flatten`` before a dense edge that reads a (C, H, W) source;
* every hidden node becomes a ``LIF`` named like the node, fed by its edges' synapses;
* the readout becomes one ``Affine`` named like the readout node, into the graph ``Output`` (its
  time average is the logit, recorded in the metadata).

A chain (``conv1 -> conv2 -> fc1 -> readout``) therefore exports as ``conv1_synapse, conv1,
conv2_synapse, conv2, fc1_flatten, fc1_synapse, fc1, readout``, as it always has (the fold names
a chain's edge after the node it feeds).

Several edges into one node (a residual block's ``<block>.conv2`` and ``<block>.shortcut``) are
several NIR edges into that node's ``LIF``. NIR's documents leave the meaning of several inputs
to one node open ("it may render your graph useless for many platforms"); the graph executor
both peers use (nirtorch 2.6, ``nir_interpreter._find_input_nodes``) adds them with
``torch.add``, which is our semantics (the currents sum). The node's bias is on its *first*
incoming synapse and zero on the others, so it is added once. nirtorch's ``Output`` does *not*
add its inputs (it returns them as a tuple), so a readout with several incoming edges is refused.

Names keep their dots (``res1.conv1``): HDF5 accepts them in group names and ``nir.read`` gives
them back unchanged; nirtorch replaces ``.`` by ``_`` in the torch module names it builds
(``nir_interpreter._sanitize_name``; a ``ModuleDict`` key cannot hold a dot), so names that
would collide there are refused here rather than silently merged by a peer.

Inputs (``graph.input``) are recorded in the metadata: ``direct`` means integer pixels divided
by ``input_max``, the same image every step; ``event-frames`` one frame of 0/1 spikes per step.

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
NIR has no unflatten that both peers read, so a conv edge reading a flat (1-D) node is refused.
``tests/test_nir_peer.py`` runs the written graph in both peers against ``run_float``.
"""

from __future__ import annotations

import io
from pathlib import Path

import nir
import numpy as np

from hardware.graph import INPUT, FloatEdge, FloatNode, Graph
from lsg_io import files

DT = 1e-4
NIR_INPUT, NIR_OUTPUT = "input", "output"


def _lif_node(node: FloatNode) -> nir.LIF:
    shape = tuple(node.shape)
    one_minus_beta = max(1.0 - node.beta, 1e-12)  # beta = 1 (no leak) has tau = infinity
    return nir.LIF(
        tau=np.full(shape, DT / one_minus_beta),
        r=np.full(shape, 1.0 / one_minus_beta),
        v_leak=np.zeros(shape),
        v_threshold=np.full(shape, node.v_th),
        v_reset=np.zeros(shape),
    )


def _synapse(graph: Graph, edge: FloatEdge, bias: np.ndarray) -> nir.NIRNode:
    g, source = edge.geometry, graph.shape(edge.source)
    if g.kind == "conv":
        if len(source) != 3:
            raise ValueError(f"edge {edge.name}: a conv edge reading the flat node {edge.source} {source} "
                             f"cannot be written to NIR (it has no unflatten the peers read)")
        return nir.Conv2d(input_shape=tuple(source[1:]), weight=edge.weight, stride=g.stride,
                          padding=g.padding, dilation=(1, 1), groups=1, bias=bias)
    return nir.Affine(weight=edge.weight, bias=bias)


def _encoding(graph: Graph) -> str:
    spec = graph.input
    if spec.encoding == "direct":
        return f"direct: the image (integer pixels / {spec.input_max}) repeated every step"
    return "event-frames: one frame of 0/1 spikes per step, frame t fed at step t"


def _check_names(names: list[str]) -> None:
    """NIR node names must be unique, and stay unique once a peer maps '.' to '_' (a repeat
    would silently replace a node here, or merge two modules in the peer)."""
    seen: dict[str, str] = {}
    for name in names:
        key = name.replace(".", "_")
        if key in seen:
            same = "are the same" if seen[key] == name else "collide once nirtorch turns '.' into '_'"
            raise ValueError(f"NIR node names {seen[key]!r} and {name!r} {same}; rename a node or an edge "
                             f"of the graph (synapses are '<edge>_synapse', flattens '<edge>_flatten')")
        seen[key] = name


def to_nir(graph: Graph, timesteps: int) -> nir.NIRGraph:
    """The folded float ``graph`` as a NIR graph (see the module docstring for the mapping)."""
    if not isinstance(graph, Graph):
        raise TypeError(f"to_nir needs a hardware.graph.Graph, got {type(graph).__name__}")
    if timesteps < 1:
        raise ValueError(f"timesteps must be >= 1, got {timesteps}")
    readout = graph.readout
    into_readout = graph.incoming(readout.name)
    if len(into_readout) != 1:
        raise ValueError(f"readout {readout.name} has {len(into_readout)} incoming edges "
                         f"({', '.join(e.name for e in into_readout)}); NIR peers (nirtorch 2.6) do not add "
                         f"the inputs of an Output node, so a NIR readout must have exactly one")
    named: list[tuple[str, nir.NIRNode]] = [(NIR_INPUT, nir.Input(input_type={"input": np.array(graph.input.shape)}))]
    edges: list[tuple[str, str]] = []
    for node in graph.nodes:
        for i, edge in enumerate(graph.incoming(node.name)):
            prev = NIR_INPUT if edge.source == INPUT else edge.source
            source = graph.shape(edge.source)
            if edge.geometry.kind == "dense" and len(source) > 1:
                flat = f"{edge.name}_flatten"
                named.append((flat, nir.Flatten(input_type={"input": np.array(source)}, start_dim=-len(source),
                                                end_dim=-1)))
                edges.append((prev, flat))
                prev = flat
            bias = node.bias if i == 0 else np.zeros_like(node.bias)  # the node's bias, added once
            synapse = node.name if node.readout else f"{edge.name}_synapse"
            named.append((synapse, _synapse(graph, edge, bias)))
            edges.append((prev, synapse))
            if not node.readout:
                edges.append((synapse, node.name))
        if not node.readout:
            named.append((node.name, _lif_node(node)))
    named.append((NIR_OUTPUT, nir.Output(output_type={"output": np.array(readout.shape)})))
    edges.append((readout.name, NIR_OUTPUT))
    _check_names([name for name, _ in named])
    metadata = {
        "producer": "lsg-deploy",
        "dt": DT,
        "time_convention": "forward Euler, tau = dt / (1 - beta), r = 1 / (1 - beta), hard reset to 0",
        "spike_condition": "v >= v_threshold",
        "spike_condition_peers": "NIR's text and snnTorch fire on v > v_threshold, so snnTorch differs from this "
                                 "graph's spikes where v equals v_threshold exactly; SpikingJelly fires on >=",
        "reset": "hard: v = v_reset after a spike, the spike decided on the updated v",
        "timesteps": timesteps,
        "input_encoding": _encoding(graph),
        "input_max": graph.input.input_max,
        "summation": "several edges into one node add (its input current); the node's bias is on its "
                     "first incoming synapse, the others have zero bias",
        "names": "LIF = graph node, '<edge>_synapse' = graph edge (the readout's: the readout node), "
                 "'<edge>_flatten' before a dense edge reading a (C, H, W) source",
        "readout": "the output node's value averaged over the timesteps is the logit vector",
    }
    return nir.NIRGraph(nodes=dict(named), edges=edges, metadata=metadata)


def write_nir(graph: Graph, timesteps: int, path: Path) -> None:
    """Write :func:`to_nir`'s graph to ``path`` (HDF5, ``nir.read`` reads it), atomically."""
    image = io.BytesIO()  # built in memory: HDF5 itself must never meet a full disk (it crashes)
    with files.signals_held():  # h5py's conversion callbacks drop what a signal raises there
        nir.write(image, to_nir(graph, timesteps))
    files.write_bytes(path, image.getvalue())
