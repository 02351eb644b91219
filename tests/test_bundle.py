"""Bundle format: round trip, version checks, validation, atomic directories, torch-free reading."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from hardware.bundle import (
    FORMAT_VERSION,
    BundleError,
    Geometry,
    LoihiLayer,
    read_bundle,
)
from hardware.files import staged_directory

ROOT = Path(__file__).resolve().parents[1]


def test_round_trip_is_exact(default_run):
    bundle = read_bundle(default_run.bundle)
    copy_dir = default_run.bundle.parent / "copy"
    copy_dir.mkdir(exist_ok=True)
    from hardware.bundle import write_bundle

    write_bundle(bundle, copy_dir)
    again = read_bundle(copy_dir)
    for a, b in zip(bundle.loihi_layers + bundle.float_layers, again.loihi_layers + again.float_layers, strict=True):
        assert a.name == b.name and a.geometry == b.geometry
        for field in a.ARRAYS:
            x, y = getattr(a, field), getattr(b, field)
            assert x.dtype == y.dtype and np.array_equal(x, y)
    assert again.quantization == bundle.quantization and again.source == bundle.source


def test_bundle_reads_with_numpy_and_json_alone(default_run):
    doc = json.loads((default_run.bundle / "bundle.json").read_text())
    with np.load(default_run.bundle / "arrays.npz") as npz:
        names = set(npz.files)
        for layer in doc["layers"]["loihi"]:
            w = npz[f"loihi/{layer['name']}/weight"]
            assert np.issubdtype(w.dtype, np.integer)
            assert w.min() >= -256 and w.max() <= 254
    assert doc["format_version"] == FORMAT_VERSION
    assert {f"float/{layer['name']}/weight" for layer in doc["layers"]["float"]} <= names
    assert set(doc["quantization"]["layers"]) == {layer["name"] for layer in doc["layers"]["loihi"]}


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
        ({"vth": 1 << 17}, "vth range"),
        ({"dv": 4096}, "dv range"),
        ({"bias_mant": np.array([5000])}, "bias_mant range"),
        ({"weight": np.array([[2.0]])}, "integer dtype"),
    ],
)
def test_loihi_layer_validates_ranges(change, message):
    fields = dict(name="x", geometry=Geometry("dense", (1,), (1,)), weight=np.array([[2]]), weight_exp=0,
                  bias_mant=np.array([0]), bias_exp=0, du=4095, dv=0, vth=1, scale=1.0, input_scale=1.0)
    fields.update(change)
    with pytest.raises(BundleError, match=message):
        LoihiLayer(**fields)


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
        "r = reference.run(b.loihi_layers, np.zeros((2, *b.input_shape), np.int64), b.timesteps)\n"
        "print(r.readout.shape)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "(2, 4, 10)"
