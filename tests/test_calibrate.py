"""``export --calibrate`` (export/calibrate.py): hidden scales chosen from activation statistics.

* the record is true: the bundle's integer layers have the chosen candidates' thresholds and
  scales, the chosen one has the best own agreement (ties to the higher percentile), and that
  agreement, recomputed here from the bundle (each layer alone on the float network's spikes,
  through the numpy integer reference), is the recorded one;
* a calibrated bundle stays exact: Lava equals the integer reference bit for bit;
* on the 4-bit profile, where one outlier weight coarsens a whole layer's grid, calibration
  chooses scales above the weight range in every layer and gains own agreement in each;
* the report says how the scales were chosen; bad combinations are one line; finetune
  --calibrate starts from the calibrated scales.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from export import finetune as ft
from export.calibrate import PERCENTILES, SAMPLES
from export.fold import run_float
from hardware import reference
from hardware.bundle import read_bundle
from hardware.graph import INPUT, Graph
from lsg_deploy.cli import main
from training.checkpoint import load_checkpoint
from training.data import DataSpec, load


@pytest.fixture(scope="module")
def calibrated(default_run, tmp_path_factory):
    root = tmp_path_factory.mktemp("calibrate")
    out = {}
    for name, flags in {"loihi": ["--target", "loihi"],
                        "fpga-mul4": ["--target", "fpga", "--profile", "fpga-mul4"]}.items():
        out[name] = root / name
        assert main(["export", *flags, "--calibrate", str(default_run.model), "--out", str(out[name]),
                     "--quiet"]) == 0
    return out


def _own_agreement(bundle, node_name: str, pixels: np.ndarray) -> float:
    """The integer node alone, through the numpy reference, on the float network's spikes."""
    float_graph, integer_graph = bundle.graph("float"), bundle.graph("integer")
    _, spikes = run_float(float_graph, torch.as_tensor(pixels / float_graph.input.input_max), bundle.timesteps)
    node = next(n for n in integer_graph.nodes if n.name == node_name)
    edges = integer_graph.incoming(node_name)
    sources = {e.source for e in edges}
    if sources == {INPUT}:  # the first layer: its input is the input itself
        sub = Graph(integer_graph.input, (node, _readout_stub(integer_graph, node)), (*edges,
                    _stub_edge(integer_graph, node)))
        run = reference.run(sub, pixels, bundle.timesteps, bundle.profile)
        got = run.spikes[node_name]
    else:  # later layers: feed the float spikes as an event-frame input
        (source,) = sources
        frames = spikes[source].transpose(0, 1).numpy().astype(np.int64)
        shape = next(n.shape for n in integer_graph.nodes if n.name == source)
        from hardware.graph import Input

        spec = Input(shape, "event-frames", 1)
        moved = tuple(type(e)(e.name, INPUT, e.target, e.geometry, e.weight, e.weight_exp, e.input_scale)
                      for e in edges)
        sub = Graph(spec, (node, _readout_stub(integer_graph, node)), (*moved, _stub_edge(integer_graph, node)))
        run = reference.run(sub, frames.reshape(len(pixels), bundle.timesteps, *shape), bundle.timesteps,
                            bundle.profile)
        got = run.spikes[node_name]
    want = spikes[node_name].transpose(0, 1).numpy().astype(bool)
    return float((np.asarray(got).astype(bool).reshape(want.shape) == want).mean())


def _readout_stub(graph: Graph, node):
    readout = graph.readout
    from dataclasses import replace

    return replace(readout, name="stub", shape=(1,), bias_mant=np.zeros(1, dtype=readout.bias_mant.dtype))


def _stub_edge(graph: Graph, node):
    from hardware.graph import Geometry, IntegerEdge

    n = int(np.prod(node.shape))
    return IntegerEdge("stub", node.name, "stub", Geometry("dense", (n,), (1,)), np.zeros((1, n), dtype=np.int64), 0,
                       1.0)


@pytest.mark.parametrize("which", ["loihi", "fpga-mul4"])
def test_the_calibration_record_is_true(calibrated, which):
    bundle = read_bundle(calibrated[which])
    record = bundle.quantization["calibration"]
    assert record["samples"] == SAMPLES and record["percentiles"] == list(PERCENTILES)
    train, _, _ = load(DataSpec.from_dict(bundle.source["data"]))
    pixels = train.pixels[:SAMPLES]
    integer = {n.name: n for n in bundle.graph("integer").nodes}
    assert sorted(record["layers"]) == ["conv1", "conv2", "fc1"]  # every hidden node, not the readout
    for name, layer in record["layers"].items():
        tried = layer["candidates"]
        best = max(tried, key=lambda c: (c["own_agreement"], c["weight_percentile"]))
        assert layer["chosen"] == best["weight_percentile"]
        assert (integer[name].vth, integer[name].scale) == (best["vth"], best["scale"])
        assert len({c["vth"] for c in tried}) == len(tried)  # each scale tried once
        assert _own_agreement(bundle, name, pixels) == best["own_agreement"], name
        assert bundle.quantization["layers"][name]["pinned"]


def test_calibration_buys_resolution_where_weights_are_narrow(calibrated):
    """4-bit weights: every layer takes a scale above its weight range's and agrees better alone.
    (Measured on the default digits net: p95/p97/p97, scales 1.14x/1.72x/1.75x, own agreement
    97.7 -> 98.3, 95.3 -> 96.9, 97.9 -> 98.7%.)"""
    layers = read_bundle(calibrated["fpga-mul4"]).quantization["calibration"]["layers"]
    for name, layer in layers.items():
        full = next(c for c in layer["candidates"] if c["weight_percentile"] == 100.0)
        chosen = next(c for c in layer["candidates"] if c["weight_percentile"] == layer["chosen"])
        assert chosen["scale"] > full["scale"] and chosen["own_agreement"] > full["own_agreement"], name


def test_a_calibrated_bundle_is_exact_and_reported(calibrated, tmp_path, capsys):
    report = tmp_path / "r.json"
    capsys.readouterr()
    assert main(["simulate", "--fixed-point", str(calibrated["loihi"]), "--backend", "all", "--limit", "8",
                 "--json", str(report)]) == 0
    doc = json.loads(report.read_text())
    assert doc["exact"]["equal"] is True and doc["scales"]["rule"] == "calibrated"
    assert "scales: calibrated on 256 training samples" in capsys.readouterr().out


def test_finetune_starts_from_the_calibrated_scales(default_run, calibrated, tmp_path):
    out = tmp_path / "ft"
    assert main(["finetune", str(default_run.model), "--target", "fpga", "--profile", "fpga-mul4", "--calibrate",
                 "--out", str(out), "--epochs", "1", "--quiet"]) == 0
    pins = ft.QuantizationRecord.from_checkpoint(load_checkpoint(out / "model.pt")[1]).pins
    integer = {n.name: n for n in read_bundle(calibrated["fpga-mul4"]).graph("integer").nodes}
    assert all((pins[n].vth, pins[n].scale) == (integer[n].vth, integer[n].scale) for n in ("conv1", "conv2", "fc1"))


@pytest.mark.parametrize("flags, message", [
    (["--target", "loihi", "--calibrate", "--weight-percentile", "99"], "drop --weight-percentile"),
    (["--target", "onnx", "--calibrate"], "--calibrate: target onnx writes the float network"),
])
def test_bad_calibrate_options_are_one_line(default_run, tmp_path, capsys, flags, message):
    assert main(["export", *flags, str(default_run.model), "--out", str(tmp_path / "b"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
