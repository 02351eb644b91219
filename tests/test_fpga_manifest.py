"""The FPGA manifest and network.h are complete (issue 22, item 6).

* The worked example feeds a stated input through the network: every number of it (the taps,
  the accumulator, the decay, the clamp, the spike, the readout and the class) is recomputed from
  the ``.mem`` files and the manifest's words by a simulator written from the manifest
  (``tests/manifest_sim.py``), which also equals the integer reference on other inputs.
* ``definitions`` say what channel(n), the class, ``scale`` and ``beta`` are; ``beta`` is
  recomputed from each node's code by the rule stated.
* ``network.h`` alone is enough: a C program written against it (``tests/c/network_h_run.c``),
  compiled with the system's ``cc``, gives the reference's spikes, readout and class with ``==``;
  its ``#define``s state the manifest's topology.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from hardware import reference
from hardware.graph import BundleError, Graph
from hardware.profile import Profile
from hardware.targets.fpga.example import example_input
from hardware.targets.fpga.profiles import FPGA_MUL, FPGA_MUL4, FPGA_SHIFT
from hardware.targets.fpga.tables import check_tables, parse_header, read_tables, write_tables
from tests.manifest_sim import Network, c_compiler, check_c_program, check_worked_example
from tests.netgen import random_graph
from tests.netgen_chains import fpga_inputs, random_fpga_chain

PROFILES = (FPGA_MUL, FPGA_SHIFT, FPGA_MUL4)
#: chains in every profile, and graphs with residual adds, skips and dense -> conv reshapes
CASES = [("chain", seed, p) for p in PROFILES for seed in range(4)] + [
    ("graph", seed, PROFILES[seed % 3]) for seed in (1, 2, 4, 5, 11)] + [("tie", 5, FPGA_MUL)]


def _graph(kind: str, seed: int, profile: Profile) -> Graph:
    if kind == "tie":  # every class's readout is the same: the class must be 0, the lowest index
        graph = random_fpga_chain(seed, profile)
        edge, node = graph.edges[-1], graph.readout
        edge = dataclasses.replace(edge, weight=np.repeat(edge.weight[:1], len(edge.weight), axis=0))
        node = dataclasses.replace(node, bias_mant=np.full_like(node.bias_mant, node.bias_mant[0]))
        return Graph(graph.input, (*graph.hidden, node), (*graph.edges[:-1], edge))
    return random_fpga_chain(seed, profile) if kind == "chain" else random_graph(seed, profile)


def _export(tmp_path: Path, kind: str, seed: int, profile: Profile, timesteps: int = 3) -> tuple[Graph, Path]:
    graph = _graph(kind, seed, profile)
    out = tmp_path / f"{kind}{seed}-{profile.name}"
    out.mkdir()
    write_tables(graph, profile, timesteps, out)
    return graph, out


def _case_id(case: tuple) -> str:
    return f"{case[0]}{case[1]}-{case[2].name}"


def test_the_worked_example_is_recomputed_from_the_tables(tmp_path):
    """Every case's example checks out, and together they show every part of the update: a
    spike and a reset, a membrane decayed into step 1, a clamp or a negative membrane, padding
    left out of a conv's taps, a node with several incoming edges, event frames."""
    seen: set[str] = set()
    for kind, seed, profile in CASES:
        graph, out = _export(tmp_path, kind, seed, profile)
        ex = check_worked_example(out)
        check_tables(graph, profile, 3, out)  # byte for byte what the writer writes
        net = Network.load(out)
        for neuron in ex["neurons"]:
            node = net.manifest["nodes"][[n["name"] for n in net.manifest["nodes"]].index(neuron["node"])]
            for step in neuron["steps"]:
                seen |= {"spike"} if step["spike"] else set()
                seen |= {"decay"} if step["d"] not in (0, step["v_before"]) else set()
                seen |= {"negative"} if step["v_sat"] < 0 else set()
                seen |= {"several edges"} if len(step["edges"]) > 1 else set()
                for edge, e in zip(step["edges"], [e for e in net.manifest["edges"] if e["target"] == node["name"]],
                                   strict=True):
                    if e["kind"] == "conv" and len(edge["taps"]) < np.count_nonzero(net.weights[e["name"]][0]):
                        seen.add("fewer taps than the kernel")
                    if e["kind"] == "conv" and any(p for p in e["padding"]) and min(
                            y * s - p for y, s, p in zip(neuron["position"][1:], e["stride"], e["padding"],
                                                         strict=True)) < 0:
                        seen.add("padding")
        seen |= {net.manifest["input"]["encoding"]}
        # the designer's simulator is the reference on other inputs too (channel(n), layouts, decay)
        x = fpga_inputs(seed, graph, 3, 3)
        run = reference.run(graph, x, 3, profile)
        for b in range(len(x)):
            frames = [f.reshape(-1) for f in (x[b] if graph.input.per_step else [x[b]] * 3)]
            sim = net.run(frames)["out"]
            assert np.array_equal(sim[graph.readout.name], run.readout[b]), (kind, seed, profile.name)
            for n in graph.hidden:
                assert np.array_equal(sim[n.name], run.spikes[n.name][b]), (kind, seed, profile.name, n.name)
    assert seen >= {"spike", "decay", "negative", "several edges", "fewer taps than the kernel", "padding",
                    "direct", "event-frames"}, seen


def test_a_wrong_number_in_the_example_is_found(tmp_path):
    """The check is not vacuous: any one number of the example changed, or a tap left out, fails it."""
    _, out = _export(tmp_path, "chain", 1, FPGA_MUL)
    path = out / "manifest.json"
    pristine = path.read_text()

    def first_tap(ex):
        return next(e["taps"] for n in ex["neurons"] for s in n["steps"] for e in s["edges"] if e["taps"])

    edits = {
        "d": lambda ex: ex["neurons"][0]["steps"][-1].__setitem__("d", ex["neurons"][0]["steps"][-1]["d"] + 1),
        "w": lambda ex: first_tap(ex)[0].__setitem__("w", first_tap(ex)[0]["w"] + 1),
        "tap left out": lambda ex: first_tap(ex).pop(),
        "v_after": lambda ex: ex["neurons"][-1]["steps"][0].__setitem__("v_after", 7),
        "readout": lambda ex: ex["readout"][-1].__setitem__(0, ex["readout"][-1][0] - 1),
        "class": lambda ex: ex.__setitem__("class", (ex["class"] + 1) % len(ex["readout"][-1])),
    }
    for what, edit in edits.items():
        doc = json.loads(pristine)
        edit(doc["worked_example"])
        path.write_text(json.dumps(doc))
        with pytest.raises(AssertionError):
            check_worked_example(out)
            pytest.fail(f"a changed {what} passed")  # not reached when the check fails
    path.write_text(pristine)
    check_worked_example(out)


def test_definitions_state_channel_class_scale_and_beta(tmp_path):
    for profile in PROFILES:
        graph, out = _export(tmp_path, "chain", 2, profile)
        m = read_tables(out).manifest
        d = m["definitions"]
        assert "n div (H*W)" in d["channel(n)"] and "channel(n) = n" in d["channel(n)"]
        assert "lowest" in d["class"] and "2^act_shift * S" in d["scale"]
        decay = m["profile"]["decay"]
        for n, node in zip(m["nodes"], graph.nodes, strict=True):
            code = n["decay_code"]
            if decay["form"] == "multiply":
                assert f"code / 2^{decay['fraction_bits']}" in d["beta"]
                beta = code / 2 ** decay["fraction_bits"]
            else:
                assert "1 - 2^-code" in d["beta"] and f"code {decay['no_decay_code']} is 1" in d["beta"]
                beta = 1.0 if code == decay["no_decay_code"] else 1 - 2.0**-code
            assert n["beta"] == beta and n["scale"] == node.scale
    tie = reference.IntegerRun(spikes={}, readout=np.array([[[3, 7, 7, -1]]]))
    assert tie.predictions().tolist() == [1]  # the reference's argmax: the lowest index of a tie


def test_network_h_states_the_manifests_topology(tmp_path):
    for kind, seed, profile in CASES[::4]:
        _, out = _export(tmp_path, kind, seed, profile)
        m = read_tables(out).manifest
        _, defines = parse_header(out / "network.h")
        spec = m["input"]
        chw = spec["shape"] if len(spec["shape"]) == 3 else [spec["shape"][0], 1, 1]
        assert [defines[f"LSG_INPUT_{k}"] for k in "CHW"] == chw
        assert (defines["LSG_INPUT_MAX"], defines["LSG_INPUT_BITS"], defines["LSG_TIMESTEPS"]) == (
            spec["max"], spec["bits"], m["timesteps"])
        assert defines["LSG_INPUT_ENCODING"] == defines["LSG_ENCODING_" + spec["encoding"].replace("-", "_").upper()]
        p = m["profile"]
        membrane = (defines["LSG_MEMBRANE_MIN"], defines["LSG_MEMBRANE_MAX"])
        assert membrane == (p["membrane"]["min"], p["membrane"]["max"])
        assert defines["LSG_DECAY_FORM"] == defines[f"LSG_DECAY_FORM_{p['decay']['form'].upper()}"]
        assert defines["LSG_DECAY_ROUNDING"] == defines[f"LSG_ROUND_{p['decay']['rounding'].replace('-', '_').upper()}"]
        assert defines["LSG_DECAY_NONE"] == p["decay"]["no_decay_code"] and defines["LSG_THRESHOLD_GE"] == 1
        assert defines["LSG_CLASSES"] == m["nodes"][-1]["neurons"] and defines["LSG_READOUT"] == len(m["nodes"]) - 1
        index = {"input": -1, **{n["name"]: i for i, n in enumerate(m["nodes"])}}
        for i, n in enumerate(m["nodes"]):
            c = n["name"].upper().replace("-", "_")
            shape = n["shape"] if len(n["shape"]) == 3 else [n["shape"][0], 1, 1]
            assert [defines[f"{c}_{k}"] for k in ("INDEX", "C", "H", "W", "VTH", "DECAY_CODE", "READOUT")] == [
                i, *shape, n["vth"], n["decay_code"], int(n["readout"])]
        for e in m["edges"]:
            c = e["name"].upper().replace("-", "_") + "_EDGE"
            assert (defines[f"{c}_SOURCE"], defines[f"{c}_TARGET"]) == (index[e["source"]], index[e["target"]])
            if e["kind"] == "conv":
                assert [defines[f"{c}_{k}"] for k in ("KH", "KW", "STRIDE_H", "STRIDE_W", "PAD_H", "PAD_W")] == [
                    *e["kernel"], *e["stride"], *e["padding"]]
                assert [defines[f"{c}_IN_{k}"] for k in "CHW"] == e["input_shape"]
            else:
                assert defines[f"{c}_IN_C"] * defines[f"{c}_IN_H"] * defines[f"{c}_IN_W"] == e["weight"]["shape"][1]


def test_two_names_that_become_one_c_identifier_are_refused(tmp_path):
    graph = random_fpga_chain(0, FPGA_MUL)
    first = graph.nodes[0]
    renamed = {first.name: "a-b", graph.nodes[1].name: "a_b"}
    nodes = tuple(dataclasses.replace(n, name=renamed.get(n.name, n.name)) for n in graph.nodes)
    edges = tuple(dataclasses.replace(e, source=renamed.get(e.source, e.source), target=renamed.get(e.target, e.target))
                  for e in graph.edges)
    with pytest.raises(BundleError, match="two names of the network become the C identifier A_B_INDEX"):
        write_tables(Graph(graph.input, nodes, edges), FPGA_MUL, 2, tmp_path)


def test_a_c_program_written_against_network_h_alone_is_the_reference(tmp_path):
    compiler = c_compiler()
    if compiler is None:
        pytest.skip("no C compiler: neither cc nor gcc is on PATH (apt-get install gcc), so network.h is not compiled")
    for kind, seed, profile in CASES:
        graph, out = _export(tmp_path, kind, seed, profile)
        x = np.concatenate([example_input(graph, 3), fpga_inputs(seed, graph, 3, 2)])
        check_c_program(compiler, out, x, reference.run(graph, x, 3, profile))
