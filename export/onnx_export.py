"""``lsg-deploy export --target onnx``: the folded float network as ONNX, built node by node.

The graph written is the folded graph every other target quantizes (:func:`export.fold.fold`:
tdBN folded into the weights, pooling into the next synapses, residual blocks into nodes with two
incoming edges), mapped operator by operator with ``onnx.helper`` so that every operator is
visible and the file is the exported graph, not a trace of the torch modules:

* an edge is a ``Conv`` (the folded weight, stride and symmetric padding; a ``Reshape`` first if
  it reads a flat node) or a ``Gemm`` with ``transB = 1`` (weight stored (out, in), as in the
  graph; a ``Flatten`` first if it reads a (C, H, W) node, in torch's C, H, W order);
* a node's input current is its edges' currents added in graph order, then its bias (one value
  per channel, broadcast): ``I = ((W_1 s_1 + W_2 s_2) + ...) + b``, the order of
  :func:`export.fold.run_float`; a residual block is a node with two edges;
* a LIF node is exactly :func:`training.neuron.lif_step`::

      u' = (beta * u) * (1 - o) + I          o' = Cast(GreaterOrEqual(u', v_th))

* the readout has no neuron: its current is the step's output ``readout``; the logits are its
  mean over the T steps (the paper's Eq. 9).

Edges read their source's spikes *of the same step* (the graph's semantics,
:mod:`hardware.graph`; no delay exists in the float graph, Lava's synaptic delays are aligned
elsewhere), so the nodes are written in graph order, each after its sources.

``model.onnx`` is one step: inputs ``x`` and, per LIF node in graph order, ``u.<node>`` and
``o.<node>``; outputs ``readout`` and ``u.<node>.next``, ``o.<node>.next`` (names in
:mod:`export.onnx_format`). A streaming runtime starts from zeros and feeds each step's state
outputs back as the next step's inputs. ``model.unrolled.onnx`` (``--unrolled``) is all T steps:
``x`` (B, C, H, W) for the direct encoding, whose input currents are then computed once and
reused, or (B, T, C, H, W) for event frames (frame t at step t), to ``logits`` (B, classes); its
first step is ``u' = I`` (the zero state makes the decay term exactly 0). Both use opset
:data:`OPSET` with IR version :data:`IR_VERSION` so that runtimes back to ONNX 1.12 read them.

Weights, biases, decays and thresholds are stored in ``dtype`` (float32 for the files: the folded
float64 values rounded to nearest); ``float64`` builds the same graph for runtimes that run it in
double precision (onnxruntime's CPU ``Conv`` does not).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper

from export import onnx_format as fmt
from export.common import source_record
from export.fold import fold
from hardware.bundle import sha256_file
from hardware.graph import INPUT, FloatEdge, FloatNode, Graph, Input
from lsg_io import files
from lsg_io.files import staged_directory
from training.checkpoint import load_checkpoint

OPSET = 17
IR_VERSION = 8  #: the IR version that came with opset 17 (onnx 1.12)
BATCH = "batch"  #: the symbolic batch dimension of every input and output
NEURON_EQUATION = ("u' = (beta * u) * (1 - o) + I; o' = float(u' >= v_th); I = the sum, in graph order, of the "
                   "node's incoming synaptic currents from this step's spikes, plus the node's bias")


@dataclass(frozen=True)
class OnnxExport:
    """What :func:`export_onnx` wrote: the directory's files, its manifest, and a summary."""

    files: tuple[str, ...]
    manifest: dict[str, Any]
    lif_layers: int
    timesteps: int
    model: str = fmt.STEP_NAME  #: the step model's file name
    unrolled: str | None = None  #: the unrolled model's, where written


class _Builder:
    """Collects ONNX nodes and initializers under unique, readable tensor names."""

    def __init__(self, dtype: np.dtype):
        self.dtype = np.dtype(dtype)
        self.onnx_type = helper.np_dtype_to_tensor_dtype(self.dtype)
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self.names: set[str] = set()

    def _fresh(self, name: str) -> str:
        if name in self.names:
            raise ValueError(f"ONNX tensor name {name!r} repeats; node and edge names of the graph must be unique")
        self.names.add(name)
        return name

    def const(self, name: str, value: Any, dtype: Any = None) -> str:
        array = np.asarray(value, dtype=self.dtype if dtype is None else dtype)
        self.initializers.append(numpy_helper.from_array(array, self._fresh(name)))
        return name

    def op(self, op_type: str, inputs: list[str], output: str, **attributes: Any) -> str:
        self.nodes.append(helper.make_node(op_type, inputs, [self._fresh(output)], name=output, **attributes))
        return output

    def value(self, name: str, shape: tuple[Any, ...]) -> onnx.ValueInfoProto:
        return helper.make_tensor_value_info(name, self.onnx_type, list(shape))


class _Network:
    """The graph's parameters as initializers, shared by every step, and one step's operators."""

    def __init__(self, b: _Builder, graph: Graph):
        self.b, self.graph = b, graph
        self.weights = {e.name: b.const(f"{e.name}.weight", e.weight) for e in graph.edges}
        self.biases = {n.name: b.const(f"{n.name}.bias", self._bias_shape(n)) for n in graph.nodes}
        self.betas = {n.name: b.const(f"{n.name}.beta", n.beta) for n in graph.hidden}
        self.thresholds = {n.name: b.const(f"{n.name}.v_th", n.v_th) for n in graph.hidden}
        self.one = b.const("one", 1.0)
        self.flat_shapes: dict[str, str] = {}  # conv edges reading a flat source: their Reshape target

    @staticmethod
    def _bias_shape(node: FloatNode) -> np.ndarray:
        """The per-channel bias shaped to broadcast over (B, *shape): (C, 1, 1) or (N,)."""
        return np.asarray(node.bias).reshape(node.shape[0], *([1] * (len(node.shape) - 1)))

    def edge_current(self, edge: FloatEdge, source: str, tag: str) -> str:
        """``W s`` of ``edge`` applied to the tensor ``source`` (B, *source shape)."""
        b, g = self.b, edge.geometry
        source_shape = self.graph.shape(edge.source)
        if g.kind == "conv":
            if len(source_shape) != 3:  # a conv reading a flat node: (B, N) -> (B, C, H, W)
                if edge.name not in self.flat_shapes:
                    self.flat_shapes[edge.name] = b.const(f"{edge.name}.input_shape", [-1, *g.input_shape], np.int64)
                source = b.op("Reshape", [source, self.flat_shapes[edge.name]], f"{tag}{edge.name}.input")
            kh, kw = edge.weight.shape[2:]
            (ph, pw), (sh, sw) = g.padding, g.stride
            return b.op("Conv", [source, self.weights[edge.name]], f"{tag}{edge.name}.synapse",
                        kernel_shape=[kh, kw], strides=[sh, sw], pads=[ph, pw, ph, pw], dilations=[1, 1], group=1)
        if len(source_shape) > 1:
            source = b.op("Flatten", [source], f"{tag}{edge.name}.input", axis=1)
        return b.op("Gemm", [source, self.weights[edge.name]], f"{tag}{edge.name}.synapse", transB=1)

    def step(self, x: str, state: dict[str, tuple[str, str]] | None, tag: str,
             names: dict[str, tuple[str, str]] | None = None, readout: str | None = None,
             input_currents: dict[str, str] | None = None) -> tuple[dict[str, tuple[str, str]], str]:
        """One time step: every node in graph order from ``x`` and ``state`` ({node: (u, o)}; None
        for the zero state). ``names`` fixes the output names of the new state (else ``tag``
        prefixes them), ``readout`` the readout's; ``input_currents`` caches the currents of edges
        from the input (a direct input is the same every step). Returns the new state and the
        readout's current."""
        b = self.b
        spikes = {INPUT: x}
        new_state: dict[str, tuple[str, str]] = {}
        for node in self.graph.nodes:
            currents = []
            for edge in self.graph.incoming(node.name):
                if edge.source == INPUT and input_currents is not None:
                    if edge.name not in input_currents:
                        input_currents[edge.name] = self.edge_current(edge, x, "")
                    currents.append(input_currents[edge.name])
                else:
                    currents.append(self.edge_current(edge, spikes[edge.source], tag))
            total = currents[0]
            for i, current in enumerate(currents[1:], start=1):
                total = b.op("Add", [total, current], f"{tag}{node.name}.synaptic{i}")
            if node.readout:
                return new_state, b.op("Add", [total, self.biases[node.name]], readout or f"{tag}{node.name}.current")
            current = b.op("Add", [total, self.biases[node.name]], f"{tag}{node.name}.current")
            u_out, o_out = names[node.name] if names else (f"{tag}u.{node.name}", f"{tag}o.{node.name}")
            if state is None:  # zero state: beta * 0 * (1 - 0) + I is exactly I
                u_new = b.op("Identity", [current], u_out)
            else:
                u, o = state[node.name]
                kept = b.op("Mul", [self.betas[node.name], u], f"{tag}{node.name}.decayed")
                not_fired = b.op("Sub", [self.one, o], f"{tag}{node.name}.not_fired")
                reset = b.op("Mul", [kept, not_fired], f"{tag}{node.name}.kept")
                u_new = b.op("Add", [reset, current], u_out)
            fired = b.op("GreaterOrEqual", [u_new, self.thresholds[node.name]], f"{tag}{node.name}.fired")
            spikes[node.name] = b.op("Cast", [fired], o_out, to=b.onnx_type)
            new_state[node.name] = (u_new, spikes[node.name])
        raise ValueError("the graph has no readout")  # Graph guarantees one; kept for type checkers


def _model(b: _Builder, name: str, inputs: list, outputs: list, doc: str, props: dict[str, str]) -> onnx.ModelProto:
    graph = helper.make_graph(b.nodes, name, inputs, outputs, b.initializers, doc_string=doc)
    model = helper.make_model(graph, producer_name="lsg-deploy", opset_imports=[helper.make_opsetid("", OPSET)],
                              ir_version=IR_VERSION, doc_string=doc)
    helper.set_model_props(model, props)
    onnx.checker.check_model(model, full_check=True)  # our own builder's mistakes surface here, not in a runtime
    return model


def _props(graph: Graph, timesteps: int) -> dict[str, str]:
    return {"timesteps": str(timesteps), "input_encoding": graph.input.encoding,
            "neuron": NEURON_EQUATION, "readout": f"logits = mean over the {timesteps} steps of {fmt.READOUT_NAME}"}


def step_model(graph: Graph, timesteps: int, dtype: Any = np.float32) -> onnx.ModelProto:
    """One time step of ``graph`` with its LIF state as explicit inputs and outputs (module docstring)."""
    b = _Builder(dtype)
    net = _Network(b, graph)
    state = {n.name: (fmt.state_names(n.name)["membrane"][0], fmt.state_names(n.name)["spikes"][0])
             for n in graph.hidden}
    names = {n.name: (fmt.state_names(n.name)["membrane"][1], fmt.state_names(n.name)["spikes"][1])
             for n in graph.hidden}
    net.step(fmt.INPUT_NAME, state, "", names=names, readout=fmt.READOUT_NAME)
    shape = {n.name: (BATCH, *n.shape) for n in graph.nodes}
    inputs = [b.value(fmt.INPUT_NAME, (BATCH, *graph.input.shape))]
    outputs = [b.value(fmt.READOUT_NAME, shape[graph.readout.name])]
    for n in graph.hidden:
        inputs += [b.value(name, shape[n.name]) for name in state[n.name]]
        outputs += [b.value(name, shape[n.name]) for name in names[n.name]]
    doc = (f"One time step of a folded LIF network (lsg-deploy). {NEURON_EQUATION}. Start from zero state and feed "
           f"u.<node>.next / o.<node>.next back as u.<node> / o.<node>; logits = mean of {fmt.READOUT_NAME} over "
           f"the {timesteps} steps.")
    return _model(b, "lsg_deploy_step", inputs, outputs, doc, _props(graph, timesteps))


def unrolled_model(graph: Graph, timesteps: int, dtype: Any = np.float32) -> onnx.ModelProto:
    """All ``timesteps`` steps of ``graph`` from zero state: ``x`` to ``logits`` (module docstring)."""
    b = _Builder(dtype)
    net = _Network(b, graph)
    per_step = graph.input.per_step
    cache: dict[str, str] | None = None if per_step else {}
    state, readouts = None, []
    for t in range(timesteps):
        tag = f"t{t}/"
        x = fmt.INPUT_NAME
        if per_step:  # frame t of (B, T, C, H, W)
            x = b.op("Gather", [fmt.INPUT_NAME, b.const(f"{tag}index", t, np.int64)], f"{tag}x", axis=1)
        state, readout = net.step(x, state, tag, input_currents=cache)
        readouts.append(b.op("Unsqueeze", [readout, b.const(f"{tag}axis", [0], np.int64)], f"{tag}readout"))
    stacked = b.op("Concat", readouts, "readouts", axis=0)
    b.op("ReduceMean", [stacked], fmt.LOGITS_NAME, axes=[0], keepdims=0)
    x_shape = (BATCH, timesteps, *graph.input.shape) if per_step else (BATCH, *graph.input.shape)
    doc = (f"A folded LIF network (lsg-deploy) unrolled over {timesteps} steps from zero state; {NEURON_EQUATION}; "
           f"logits = mean over the steps of the readout current.")
    return _model(b, "lsg_deploy_unrolled", [b.value(fmt.INPUT_NAME, x_shape)],
                  [b.value(fmt.LOGITS_NAME, (BATCH, *graph.readout.shape))], doc, _props(graph, timesteps))


def _input_record(graph: Graph, dataset: str, input_max: int | None) -> dict[str, Any]:
    spec = graph.input
    if spec.per_step:
        values = "one frame of 0/1 spikes per step (event frames), as float"
    elif input_max is not None:
        values = f"the image's integer pixels divided by input_max ({input_max}), the same image every step"
    else:
        values = "the float image as training fed it (its normalisation), the same image every step"
    return {"name": fmt.INPUT_NAME, "shape": list(spec.shape), "encoding": spec.encoding, "dataset": dataset,
            "input_max": input_max, "values": values}


def manifest(graph: Graph, timesteps: int, dtype: Any, unrolled: bool, source: dict[str, Any],
             input_max: int | None) -> dict[str, Any]:
    """``onnx.json`` but its ``files``: what a runtime needs to drive the models (module docstring)."""
    dataset = source.get("data", {}).get("dataset")
    state, step_inputs, step_outputs = [], [{"name": fmt.INPUT_NAME, "shape": [BATCH, *graph.input.shape]}], []
    step_outputs.append({"name": fmt.READOUT_NAME, "shape": [BATCH, *graph.readout.shape]})
    for n in graph.hidden:
        names = fmt.state_names(n.name)
        shape = [BATCH, *n.shape]
        state.append({"node": n.name, "shape": shape, "beta": n.beta, "v_th": n.v_th,
                      "membrane": {"input": names["membrane"][0], "output": names["membrane"][1]},
                      "spikes": {"input": names["spikes"][0], "output": names["spikes"][1]}})
        step_inputs += [{"name": names[k][0], "shape": shape} for k in ("membrane", "spikes")]
        step_outputs += [{"name": names[k][1], "shape": shape} for k in ("membrane", "spikes")]
    models = {"step": {"file": fmt.STEP_NAME, "inputs": step_inputs, "outputs": step_outputs}}
    if unrolled:
        per_step = [timesteps] if graph.input.per_step else []  # event frames: all T frames at once
        models["unrolled"] = {"file": fmt.UNROLLED_NAME,
                              "inputs": [{"name": fmt.INPUT_NAME, "shape": [BATCH, *per_step, *graph.input.shape]}],
                              "outputs": [{"name": fmt.LOGITS_NAME, "shape": [BATCH, *graph.readout.shape]}]}
    return {
        "format": fmt.FORMAT_NAME,
        "format_version": fmt.FORMAT_VERSION,
        "producer": "lsg-deploy",
        "opset": OPSET,
        "ir_version": IR_VERSION,
        "dtype": np.dtype(dtype).name,
        "timesteps": timesteps,
        "input": _input_record(graph, dataset, input_max),
        "neuron": NEURON_EQUATION,
        "semantics": "nodes run in graph order; every edge reads its source's spikes of the same step (no delay)",
        "initial_state": "zeros: before the first step every u.<node> and o.<node> is 0",
        "state": state,
        "readout": {"output": fmt.READOUT_NAME, "node": graph.readout.name,
                    "rule": f"logits = mean over the {timesteps} steps of {fmt.READOUT_NAME} (Eq. 9)"},
        "models": models,
        "source": source,
    }


def export_onnx(checkpoint: Path, out: Path, spec: Input, unrolled: bool = False,
                input_max: int | None = None) -> OnnxExport:
    """Fold ``checkpoint`` for inputs ``spec`` and write ``out``: ``model.onnx``, with ``unrolled``
    ``model.unrolled.onnx``, and the manifest ``onnx.json`` (last: it lists the others with their
    SHA-256), whole or not at all. ``input_max``: the integer encoding's scale, recorded for users
    (None where the data has none). Whether ``out`` may be replaced is the caller's decision
    (``lsg_deploy.outputs``)."""
    model, doc = load_checkpoint(checkpoint)
    graph = fold(model, spec)
    timesteps = model.timesteps
    models = {fmt.STEP_NAME: step_model(graph, timesteps)}
    if unrolled:
        models[fmt.UNROLLED_NAME] = unrolled_model(graph, timesteps)
    record = manifest(graph, timesteps, np.float32, unrolled, source_record(checkpoint, doc, copy=None), input_max)
    with staged_directory(out) as stage:
        for name, proto in models.items():
            files.write_bytes(stage / name, proto.SerializeToString())
        record["files"] = {name: sha256_file(stage / name) for name in models}
        files.write_text(stage / fmt.MANIFEST_NAME, json.dumps(record, indent=2) + "\n")
    return OnnxExport(files=(*models, fmt.MANIFEST_NAME), manifest=record, lif_layers=len(graph.hidden),
                      timesteps=timesteps, unrolled=fmt.UNROLLED_NAME if unrolled else None)
