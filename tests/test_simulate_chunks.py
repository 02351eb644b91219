"""``simulate --chunk N``: the float models and the backends run N samples at a time and the
report is counted chunk by chunk; it must equal the one-chunk report number for number (times
apart), and the memory the runs hold must not grow with the test set."""

from __future__ import annotations

import dataclasses
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from lsg_deploy import pipeline
from lsg_deploy.cli import main
from lsg_deploy.simulate import build_report, load_for_report
from lsg_deploy.tally import merge_stats
from training import data


def _export(model: Path, out: Path) -> Path:
    assert main(["export", "--target", "loihi", str(model), "--out", str(out), "--quiet"]) == 0
    return out


def _untimed(report):
    """The report with its wall-clock figures zeroed: everything else must match exactly."""
    timed = tuple(dataclasses.replace(b, seconds=0.0, setup_seconds=0.0, seconds_per_sample=0.0,
                                      samples_per_second=None) for b in report.backends)
    return dataclasses.replace(report, backends=timed)


@pytest.mark.parametrize("fixture", ["tiny_model", "tiny_events"])
def test_chunked_report_equals_the_whole_run(fixture, request, tmp_path):
    """Chunks of 7 (not dividing the 40 samples) give the report of one chunk, every number:
    accuracies, predictions, firing rates, spike agreement, saturation, costs."""
    bundle = _export(request.getfixturevalue(fixture), tmp_path / "bundle")
    whole = pipeline.simulate(bundle, True, limit=40, quiet=True, chunk=1000)
    chunked = pipeline.simulate(bundle, True, limit=40, quiet=True, chunk=7)
    assert _untimed(chunked) == _untimed(whole)
    assert _untimed(chunked).to_json() == _untimed(whole).to_json()
    assert len(chunked.predictions.labels) == 40


def test_chunked_dump_holds_every_sample(tiny_model, tmp_path):
    bundle = _export(tiny_model, tmp_path / "bundle")
    for chunk in ("7", "1000"):
        assert main(["simulate", "--fixed-point", str(bundle), "--limit", "20", "--chunk", chunk,
                     "--dump", str(tmp_path / chunk), "--quiet"]) == 0
    with np.load(tmp_path / "7" / "reference.npz") as chunked, np.load(tmp_path / "1000" / "reference.npz") as whole:
        assert sorted(chunked.files) == sorted(whole.files)
        for key in whole.files:
            assert np.array_equal(chunked[key], whole[key]), key
        assert len(chunked["predictions"]) == 20


def test_chunk_below_one_is_a_usage_error(tiny_model, tmp_path, capsys):
    bundle = _export(tiny_model, tmp_path / "bundle")
    assert main(["simulate", "--fixed-point", str(bundle), "--chunk", "0", "--quiet"]) == 2
    assert "--chunk must be >= 1, got 0" in capsys.readouterr().err


def _peak_bytes(bundle: Path, samples: int, chunk: int, floats: bool = False) -> int:
    """tracemalloc's peak above the start while the reference runs ``samples`` samples (or, with
    ``floats``, the float models alone: their spikes come to numpy chunk by chunk)."""
    loaded, model, spec = load_for_report(bundle, float_models=floats)
    _, test, _ = data.load(spec, timesteps=loaded.timesteps,
                           files=data.FileSource.from_config(loaded.source.get("train_config", {}), None, True))
    test = test.head(samples)
    backends = () if floats else ("reference",)
    build_report(loaded, model, bundle, test, backends, chunk=chunk)  # warm: kernels compiled, caches filled
    tracemalloc.start()
    try:
        start = tracemalloc.get_traced_memory()[0]
        build_report(loaded, model, bundle, test, backends, chunk=chunk)
        return tracemalloc.get_traced_memory()[1] - start
    finally:
        tracemalloc.stop()


def test_memory_does_not_grow_with_the_samples(tiny_model, tmp_path):
    """8 chunks peak like 2 chunks; one chunk of the same 8 x 32 samples peaks far higher (the
    check can fail: it does when the runs' spikes are kept)."""
    bundle = _export(tiny_model, tmp_path / "bundle")
    two, eight = _peak_bytes(bundle, 64, 32), _peak_bytes(bundle, 256, 32)
    whole = _peak_bytes(bundle, 256, 256)
    assert eight < 1.15 * two, (two, eight)
    assert whole > 2 * eight, (eight, whole)


def test_float_models_run_in_chunks_too(tiny_model, tmp_path):
    """The float side (the source model, the folded graphs) holds one chunk's spikes at a time:
    as the test above, with the float models alone (fails where their spikes are kept whole)."""
    bundle = _export(tiny_model, tmp_path / "bundle")
    two, eight = _peak_bytes(bundle, 64, 32, floats=True), _peak_bytes(bundle, 256, 32, floats=True)
    whole = _peak_bytes(bundle, 256, 256, floats=True)
    assert eight < 1.15 * two, (two, eight)
    assert whole > 2 * eight, (eight, whole)


def test_float_only_report_is_the_same_in_chunks(tiny_model, tmp_path):
    """Without --fixed-point the float models alone run in chunks: the same report for any chunk."""
    bundle = _export(tiny_model, tmp_path / "bundle")
    whole = pipeline.simulate(bundle, False, limit=40, quiet=True, chunk=1000)
    chunked = pipeline.simulate(bundle, False, limit=40, quiet=True, chunk=7)
    assert chunked.to_json() == whole.to_json()
    assert chunked.float_accuracy == whole.float_accuracy and len(chunked.predictions.labels) == 40


def test_stats_of_chunks_merge_into_the_whole_runs():
    """The RTL's cycle figures over two chunks (3 and 1 samples) are the whole run's: counts summed,
    extremes kept, means weighted by samples; what every chunk shares stays as it is."""
    steps = [np.array([[10, 12], [14, 16], [10, 10]]), np.array([[20, 22]])]  # (samples, T) cycles per chunk
    parts = [(len(s), {"cycles_per_timestep": float(s.mean()), "cycles_per_timestep_min": int(s.min()),
                       "cycles_per_timestep_max": int(s.max()), "cycles": int(s.sum()),
                       "cycles_per_layer": {"fc1": float(s.mean())}, "lanes": {"fc1": 4}}) for s in steps]
    whole = np.concatenate(steps)
    assert merge_stats(parts) == {"cycles_per_timestep": float(whole.mean()), "cycles_per_timestep_min": 10,
                                  "cycles_per_timestep_max": 22, "cycles": int(whole.sum()),
                                  "cycles_per_layer": {"fc1": float(whole.mean())}, "lanes": {"fc1": 4}}
    assert merge_stats(parts[:1]) == parts[0][1] and merge_stats([]) == {}


def test_no_float_runs_the_integer_backends_alone(tiny_model, tmp_path, capsys):
    """--no-float: the reference's numbers as with the float models, and no float column; the
    options it cannot go with are one-line errors."""
    bundle = _export(tiny_model, tmp_path / "bundle")
    alone = pipeline.simulate(bundle, True, limit=40, quiet=True, float_models=False)
    full = pipeline.simulate(bundle, True, limit=40, quiet=True)
    assert alone.float_accuracy is None and "--no-float" in alone.float_missing
    assert alone.backends[0].accuracy == full.backends[0].accuracy
    assert alone.predictions.runs["reference"] == full.predictions.runs["reference"]
    assert [layer.saturation for layer in alone.layers] == [layer.saturation for layer in full.layers]
    for args, message in ((["--no-float"], "--no-float leaves them out"),
                          (["--fixed-point", "--no-float", "--explain"], "which --no-float leaves out")):
        assert main(["simulate", str(bundle), *args, "--quiet"]) == 2
        assert message in capsys.readouterr().err
