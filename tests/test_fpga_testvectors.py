"""The FPGA export's test vectors (``DIR/testvectors/``, :mod:`hardware.targets.fpga.testvectors`)
and the per-sample outputs of ``simulate`` (``--json``'s predictions, ``--dump``).

Every expected value is compared with ``==`` against a fresh run of the integer reference
(:func:`hardware.reference.run`) on the dataset's test samples, loaded again here; the ``.mem``
files are parsed back word by word as the format states them (docs/fpga.md).
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from hardware import reference
from hardware.bundle import read_bundle
from hardware.graph import BundleError
from hardware.targets.fpga import testvectors as tv
from hardware.targets.fpga.tables import check_tables
from lsg_deploy.cli import main
from lsg_deploy.report.model import Report
from training import data
from training.data.records import POLARITY_CHANNELS


def _export(model: Path, out: Path, *extra: str) -> int:
    return main(["export", "--target", "fpga", str(model), "--out", str(out), "--quiet", *extra])


@pytest.fixture(scope="module")
def fpga_tiny(tiny_model, tmp_path_factory) -> Path:
    """The tiny digits-cnn exported for the FPGA with the default 20 test vectors."""
    out = tmp_path_factory.mktemp("vectors") / "bundle"
    assert _export(tiny_model, out) == 0
    return out


def _test_split(bundle):
    return data.load(data.DataSpec.from_dict(bundle.source["data"]), timesteps=bundle.timesteps)[1]


def _words(path: Path) -> list[str]:
    return path.read_text().splitlines()


def _check_vectors(directory: Path, count: int, load_data: bool = True) -> dict[str, np.ndarray]:
    """The test vectors in ``directory`` are the first ``count`` test samples (``load_data``:
    compared with the dataset, loaded again) and exactly what a fresh reference run computes for
    them, in the .npz and the .mem files; returns the arrays."""
    bundle = read_bundle(directory)
    graph, t = bundle.integer_graph, bundle.timesteps
    got = tv.read(directory)
    assert got["inputs"].dtype == np.uint8 and np.array_equal(got["indices"], np.arange(count))
    if load_data:
        test = _test_split(bundle)
        assert np.array_equal(got["inputs"], test.pixels[:count]) and np.array_equal(got["labels"], test.labels[:count])
    run = reference.run(graph, got["inputs"], t, bundle.profile)
    hidden = [n.name for n in graph.hidden]
    counts = np.stack([run.spikes[name].sum(axis=2) for name in hidden], axis=2)
    assert list(got["layers"]) == hidden
    assert np.array_equal(got["classes"], run.predictions()) and np.array_equal(got["readout"], run.final_readout)
    assert np.array_equal(got["readout_steps"], run.readout) and np.array_equal(got["spike_counts"], counts)
    for key in ("classes", "readout", "readout_steps", "spike_counts", "labels", "indices"):
        assert got[key].dtype == np.int64, key

    manifest = json.loads((directory / "manifest.json").read_text())
    record, k, f = manifest["testvectors"], graph.readout.neurons, int(np.prod(graph.input.shape))
    frames = t if graph.input.per_step else 1
    r = 1 + k + t * len(hidden)
    named = {k: manifest["dataset"][k] for k in ("name", "split")}
    assert named == {"name": bundle.source["data"]["dataset"], "split": "test"}
    assert record == {"count": count, "dataset": manifest["dataset"]["name"], "split": "test",
                      "indices": list(range(count)), "words_per_frame": f, "frames_per_sample": frames,
                      "result_words_per_sample": r, "files": record["files"]}
    folder = directory / "testvectors"
    assert sorted(p.name for p in folder.iterdir()) == sorted(record["files"])
    for name, digest in record["files"].items():
        assert hashlib.sha256((folder / name).read_bytes()).hexdigest() == digest
        assert bundle.files[f"testvectors/{name}"] == digest  # bundle.json lists and verified them

    words = _words(folder / "inputs.mem")
    digits = (manifest["profile"]["input"]["bits"] + 3) // 4
    assert len(words) == count * frames * f and {len(w) for w in words} == {digits}
    assert np.array_equal(np.array([int(w, 16) for w in words]), got["inputs"].ravel())
    words = _words(folder / "expected.mem")
    assert len(words) == count * r and {len(w) for w in words} == {8}
    values = np.array([int(w, 16) for w in words], np.int64)
    values = np.where(values >= 1 << 31, values - (1 << 32), values).reshape(count, r)
    assert np.array_equal(values[:, 0], run.predictions()) and np.array_equal(values[:, 1:1 + k], run.final_readout)
    assert np.array_equal(values[:, 1 + k:].reshape(count, t, len(hidden)), counts)  # t-major
    return got


def test_testvectors_are_a_fresh_reference_run_of_the_test_split(fpga_tiny):
    got = _check_vectors(fpga_tiny, 20)
    assert got["inputs"].shape == (20, *read_bundle(fpga_tiny).input.shape)  # one frame: direct input


def test_tables_check_renders_the_vectors_again(fpga_tiny, tmp_path):
    """Editing an expected value and recomputing its digest in the manifest is still refused:
    the check renders the vectors from their stored inputs through the reference."""
    bundle = read_bundle(fpga_tiny)
    copy = tmp_path / "copy"
    shutil.copytree(fpga_tiny, copy)
    check_tables(bundle.integer_graph, bundle.profile, bundle.timesteps, copy)
    path = copy / "testvectors" / "expected.mem"
    words = _words(path)
    words[1] = format((int(words[1], 16) + 1) % (1 << 32), "08x")  # sample 0's first readout membrane
    path.write_text("\n".join(words) + "\n")
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["testvectors"]["files"]["expected.mem"] = hashlib.sha256(path.read_bytes()).hexdigest()
    (copy / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    with pytest.raises(BundleError, match=r"testvectors/expected.mem does not hold .*: line 2 is"):
        check_tables(bundle.integer_graph, bundle.profile, bundle.timesteps, copy)


def test_no_testvectors_and_bad_counts(tiny_model, fpga_tiny, tmp_path, capsys):
    none = tmp_path / "none"
    assert _export(tiny_model, none, "--testvectors", "0") == 0
    manifest = json.loads((none / "manifest.json").read_text())
    assert not (none / "testvectors").exists() and "testvectors" not in manifest
    assert manifest["dataset"] == {"name": "digits", "split": "test"}
    assert not any(name.startswith("testvectors/") for name in read_bundle(none).files)
    for bad in ("-1", "x", "2.5"):
        with pytest.raises(SystemExit) as stop:
            _export(tiny_model, tmp_path / "bad", "--testvectors", bad)
        assert stop.value.code == 2 and "--testvectors: must be an integer >= 0" in capsys.readouterr().err
    assert _export(tiny_model, tmp_path / "bad", "--testvectors", "100000") == 2
    assert "--testvectors 100000: the test split of digits has 360 samples" in capsys.readouterr().err
    assert main(["export", "--target", "loihi", str(tiny_model), "--out", str(tmp_path / "bad"), "--quiet",
                 "--testvectors", "3"]) == 2
    assert "--testvectors: target loihi writes no test vectors" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()
    # an export with test vectors is replaced by the next without --force; a user's file in its folder is not
    copy = tmp_path / "copy"
    shutil.copytree(fpga_tiny, copy)
    assert _export(tiny_model, copy, "--testvectors", "2") == 0
    assert len(tv.read(copy)["inputs"]) == 2
    (copy / "testvectors" / "notes.txt").write_text("mine")
    assert _export(tiny_model, copy) == 2
    assert "not part of it: testvectors/notes.txt" in capsys.readouterr().err


def test_event_frame_vectors_hold_t_frames(tiny_events, tmp_path):
    out = tmp_path / "events"
    assert _export(tiny_events, out, "--testvectors", "3") == 0
    got = _check_vectors(out, 3, load_data=False)  # the emulator's frames take seconds to make again
    bundle = read_bundle(out)
    assert bundle.input.encoding == "event-frames"
    assert got["inputs"].shape == (3, bundle.timesteps, *bundle.input.shape) and got["inputs"].max() == 1
    # the frames' channels are the polarities, OFF first (tonic's ToFrame), and the manifest says so
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["dataset"]["channels"] == list(POLARITY_CHANNELS) and bundle.input.shape[0] == 2
    assert [c.split(":")[0] for c in POLARITY_CHANNELS] == ["OFF", "ON"]
    check_tables(bundle.integer_graph, bundle.profile, bundle.timesteps, out)  # the channels survive the check


def test_simulate_json_predictions_and_dump(fpga_tiny, tmp_path, capsys):
    report, dump = tmp_path / "r.json", tmp_path / "dump"
    args = ["simulate", "--fixed-point", str(fpga_tiny), "--limit", "25", "--quiet"]
    assert main([*args, "--json", str(report), "--dump", str(dump)]) == 0
    doc = json.loads(report.read_text())
    bundle = read_bundle(fpga_tiny)
    test = _test_split(bundle).head(25)
    run = reference.run(bundle.integer_graph, test.pixels, bundle.timesteps, bundle.profile)
    predictions = doc["predictions"]
    assert predictions["indices"] == list(range(25)) and predictions["labels"] == test.labels.tolist()
    assert predictions["reference"] == run.predictions().tolist() and len(predictions["float"]) == 25
    assert Report.from_json(doc).to_json() == doc

    assert sorted(p.name for p in dump.iterdir()) == ["reference.npz"]
    with np.load(dump / "reference.npz") as npz:
        assert list(npz["layers"]) == [n.name for n in bundle.integer_graph.hidden]
        for name, spikes in run.spikes.items():
            assert npz[f"spikes/{name}"].dtype == bool and np.array_equal(npz[f"spikes/{name}"], spikes)
        assert np.array_equal(npz["readout"], run.readout) and np.array_equal(npz["predictions"], run.predictions())
        assert np.array_equal(npz["labels"], test.labels) and np.array_equal(npz["indices"], np.arange(25))

    assert main([*args, "--dump", str(dump)]) == 2
    assert f"--dump {dump} is not empty" in capsys.readouterr().err
    assert main([*args, "--limit", "3", "--dump", str(dump), "--force"]) == 0
    with np.load(dump / "reference.npz") as npz:
        assert len(npz["predictions"]) == 3
    assert main(["simulate", str(fpga_tiny), "--dump", str(tmp_path / "d2"), "--quiet"]) == 2
    assert "--dump writes the fixed-point backends' spikes: add --fixed-point" in capsys.readouterr().err
    assert main([*args, "--dump", str(fpga_tiny / "spikes")]) == 2
    assert "inside it or holds it" in capsys.readouterr().err
