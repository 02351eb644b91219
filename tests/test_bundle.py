"""Bundle format: round trip, version checks, validation, atomic directories, torch-free reading."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from hardware.bundle import FORMAT_VERSION, BundleError, read_bundle
from hardware.graph import FloatEdge, FloatNode, Geometry, Graph, Input, IntegerEdge, IntegerNode
from hardware.targets.fpga.profiles import FPGA_MUL, FPGA_SHIFT
from hardware.targets.loihi.profile import LOIHI2
from lsg_io.files import staged_directory

ROOT = Path(__file__).resolve().parents[1]


def test_round_trip_is_exact(default_run):
    bundle = read_bundle(default_run.bundle)
    copy_dir = default_run.bundle.parent / "copy"
    copy_dir.mkdir(exist_ok=True)
    from hardware.bundle import write_bundle

    with pytest.raises(BundleError, match="model.nir"):  # its artifacts are not among the files written
        write_bundle(bundle, copy_dir)
    bundle = dataclasses.replace(bundle, artifacts={})
    write_bundle(bundle, copy_dir)
    again = read_bundle(copy_dir)
    for key in ("integer", "float"):
        mine, theirs = bundle.graph(key), again.graph(key)
        for a, b in zip(mine.nodes + mine.edges, theirs.nodes + theirs.edges, strict=True):
            assert type(a) is type(b)
            for field in dataclasses.fields(a):
                x, y = getattr(a, field.name), getattr(b, field.name)
                if field.name in a.ARRAYS:
                    assert x.dtype == y.dtype and np.array_equal(x, y), (a.name, field.name)
                else:
                    assert x == y, (a.name, field.name)
    assert again.quantization == bundle.quantization and again.source == bundle.source
    assert again.input == bundle.input and again.artifacts == bundle.artifacts


def test_bundle_reads_with_numpy_and_json_alone(default_run):
    doc = json.loads((default_run.bundle / "bundle.json").read_text())
    with np.load(default_run.bundle / "arrays.npz") as npz:
        names = set(npz.files)
        for edge in doc["graph"]["integer"]["edges"]:
            w = npz[f"integer/edges/{edge['name']}/weight"]
            assert np.issubdtype(w.dtype, np.integer)
            assert w.min() >= -256 and w.max() <= 254
    assert doc["format_version"] == FORMAT_VERSION
    assert {f"float/edges/{e['name']}/weight" for e in doc["graph"]["float"]["edges"]} <= names
    assert {f"float/nodes/{n['name']}/bias" for n in doc["graph"]["float"]["nodes"]} <= names
    assert set(doc["quantization"]["layers"]) == {n["name"] for n in doc["graph"]["integer"]["nodes"]}
    assert doc["input"] == {"shape": [1, 8, 8], "encoding": "direct", "input_max": 16}
    assert doc["artifacts"]["netx"] == {"file": "model.net"} and doc["artifacts"]["nir"] == {"file": "model.nir"}


def test_other_format_version_is_refused(default_run, tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    doc = json.loads((default_run.bundle / "bundle.json").read_text())
    doc["format_version"] = FORMAT_VERSION + 1
    (other / "bundle.json").write_text(json.dumps(doc))
    (other / "arrays.npz").write_bytes((default_run.bundle / "arrays.npz").read_bytes())
    with pytest.raises(BundleError, match=f"version {FORMAT_VERSION + 1}"):
        read_bundle(other)


def test_corrupt_and_missing_bundles_are_refused(tmp_path):
    with pytest.raises(BundleError, match="not found"):
        read_bundle(tmp_path)
    (tmp_path / "bundle.json").write_text("{not json")
    with pytest.raises(BundleError, match="corrupt"):
        read_bundle(tmp_path)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"weight": np.array([[3]])}, "multiples of 2"),
        ({"weight": np.array([[300]])}, "weight range"),
        ({"weight_exp": 9}, "weight exponent 9 outside"),
    ],
)
def test_loihi_profile_refuses_edges_out_of_its_ranges(change, message):
    fields = dict(name="x", source="input", target="x", geometry=Geometry("dense", (1,), (1,)),
                  weight=np.array([[2]]), weight_exp=0, input_scale=1.0)
    fields.update(change)
    with pytest.raises(BundleError, match=message):
        LOIHI2.check_edge(IntegerEdge(**fields))


@pytest.mark.parametrize(
    "change, message",
    [
        ({"weight": np.array([[2.0]])}, "integer dtype"),
        ({"weight_exp": 1, "geometry": Geometry("conv", (1, 1, 1), (1, 1, 1)),
          "weight": np.array([[[[2]]]])}, "no weight exponent"),
    ],
)
def test_integer_edge_validates_its_form(change, message):
    fields = dict(name="x", source="input", target="x", geometry=Geometry("dense", (1,), (1,)),
                  weight=np.array([[2]]), weight_exp=0, input_scale=1.0)
    fields.update(change)
    with pytest.raises(BundleError, match=message):
        IntegerEdge(**fields)


@pytest.mark.parametrize(
    "profile, change, message",
    [
        (LOIHI2, {"vth": 1 << 17}, "vth range"),
        (LOIHI2, {"dv": 4096}, "dv range"),
        (LOIHI2, {"bias_mant": np.array([5000])}, "bias_mant range"),
        (FPGA_MUL, {"dv": 1025}, "dv range"),
        (FPGA_MUL, {"du": 1}, "du range"),
        (FPGA_SHIFT, {"dv": 17}, "dv range"),
        (FPGA_SHIFT, {"bias_exp": 1}, "bias_exp range"),
    ],
)
def test_profiles_refuse_nodes_out_of_their_ranges(profile, change, message):
    fields = dict(name="x", shape=(1,), bias_mant=np.array([0]), bias_exp=0, du=0, dv=0, vth=1, scale=1.0)
    fields.update(change)
    with pytest.raises(BundleError, match=message):
        profile.check_node(IntegerNode(**fields))


@pytest.mark.parametrize(
    "change, message",
    [
        ({"bias_mant": np.array([1.0])}, "integer dtype"),
        ({"bias_mant": np.array([1, 2])}, "bias_mant shape"),
        ({"scale": float("nan")}, "scale"),
    ],
)
def test_integer_node_validates_its_form(change, message):
    fields = dict(name="x", shape=(1,), bias_mant=np.array([0]), bias_exp=0, du=4095, dv=0, vth=1, scale=1.0)
    fields.update(change)
    with pytest.raises(BundleError, match=message):
        IntegerNode(**fields)


def _float_graph(edges: list[tuple[str, str, str]], names=("a", "b", "readout")) -> Graph:
    """Nodes of 2 neurons each (the readout last) joined by the given dense edges."""
    nodes = tuple(FloatNode(n, (2,), np.zeros(2), 0.5, 0.5, readout=(n == "readout")) for n in names)
    shapes = {"input": (3,), **{n: (2,) for n in names}}
    return Graph(Input((3,), "direct", 4), nodes, tuple(
        FloatEdge(e, src, dst, Geometry("dense", shapes[src], (2,)), np.ones((2, shapes[src][0])))
        for e, src, dst in edges))


def test_graphs_sum_edges_and_know_their_depths():
    g = _float_graph([("a", "input", "a"), ("b", "a", "b"), ("skip", "a", "readout"), ("r", "b", "readout"),
                      ("in2", "input", "b")])
    assert g.depths() == {"input": 0, "a": 1, "b": 2, "readout": 3}
    assert [e.name for e in g.incoming("readout")] == ["skip", "r"] and not g.is_chain
    assert _float_graph([("a", "input", "a"), ("b", "a", "b"), ("r", "b", "readout")]).is_chain


@pytest.mark.parametrize("edges, message", [
    ([("a", "input", "a"), ("b", "a", "b"), ("r", "b", "readout"), ("back", "b", "a")], "goes backwards"),
    ([("a", "input", "a"), ("r", "a", "readout")], "b has no incoming edge"),
    ([("a", "input", "a"), ("b", "a", "b"), ("r", "a", "readout")], "b feeds nothing"),
    ([("a", "input", "a"), ("b", "a", "b"), ("r", "b", "nowhere")], "not a node"),
    ([("a", "input", "a"), ("a", "a", "b"), ("r", "b", "readout")], "edge names repeat"),
    ([("a", "input", "a"), ("b", "a", "b"), ("r", "b", "readout"), ("self", "b", "b")], "goes backwards"),
])
def test_graphs_that_do_not_hold_together_are_refused(edges, message):
    with pytest.raises(BundleError, match=message):
        _float_graph(edges)


def test_edge_shapes_must_fit_their_nodes():
    nodes = (FloatNode("a", (2,), np.zeros(2), 0.5, 0.5), FloatNode("readout", (2,), np.zeros(2), 1.0, 0.5, True))
    edges = (FloatEdge("a", "input", "a", Geometry("dense", (4,), (2,)), np.ones((2, 4))),
             FloatEdge("r", "a", "readout", Geometry("dense", (2,), (2,)), np.ones((2, 2))))
    with pytest.raises(BundleError, match="does not fit input"):
        Graph(Input((3,), "direct", 4), nodes, edges)


@pytest.mark.parametrize("version", [2, 3, 4])
def test_earlier_bundles_are_refused_with_a_request_to_re_export(tmp_path, version):
    old = tmp_path / "old"
    old.mkdir()
    (old / "bundle.json").write_text(json.dumps({"format": "lsg-deploy-bundle", "format_version": version}))
    expected = f"version {version}; this lsg-deploy reads version {FORMAT_VERSION}: re-export"
    with pytest.raises(BundleError, match=expected):
        read_bundle(old)


def test_staged_directory_leaves_nothing_on_failure(tmp_path):
    final = tmp_path / "out"
    with pytest.raises(RuntimeError):
        with staged_directory(final) as stage:
            (stage / "partial").write_text("half")
            raise RuntimeError("boom")
    assert not final.exists() and list(tmp_path.iterdir()) == []
    final.mkdir()
    (final / "old").write_text("kept")
    with pytest.raises(RuntimeError):
        with staged_directory(final) as stage:
            raise RuntimeError("boom")
    assert (final / "old").read_text() == "kept"
    with staged_directory(final) as stage:
        (stage / "new").write_text("new")
    assert sorted(p.name for p in final.iterdir()) == ["new"]
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_hardware_imports_without_torch(default_run):
    code = (
        "import sys; sys.modules['torch'] = None\n"  # any torch import would now fail
        "from hardware import reference, bundle\n"
        f"b = bundle.read_bundle({str(default_run.bundle)!r})\n"
        "import numpy as np\n"
        "r = reference.run(b.integer_graph, np.zeros((2, *b.input.shape), np.int64), b.timesteps, b.profile)\n"
        "print(r.readout.shape)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "(2, 4, 10)"
