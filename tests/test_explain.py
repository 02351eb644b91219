"""``simulate --fixed-point --explain`` (lsg_deploy/explain.py) on tiny trained models (2 epochs,
T = 2): digits to loihi and to fpga-mul4 (4-bit weights), digits-events (event frames) to fpga-mul
and fpga-shift, digits-resnet (residual) to loihi:

* the dequantization formulas are the integer record's meaning: re-quantized they give back the
  integers, and the float network run with all of them reproduces the integer reference's spikes
  (>= 99% of the (sample, step, neuron) values; exactly, readout included, in the FPGA profiles at
  T = 2, where one rounded decay separates them);
* with nothing quantized the float run is the float run itself; the decay ingredient is
  run_float's own ``betas=`` route;
* own vs inherited error: the first layer's own agreement is its full agreement exactly, the
  later layers' own agreement is at least their full one (fewer sources of error);
* the report's JSON and text blocks, the thresholds ingredient (skipped with a reason, and run
  when a threshold does differ from the float one) and the CLI's one-line refusal.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from export.fold import run_float
from export.quantize import dequantized_bias, dequantized_threshold, dequantized_weight, quantized_betas
from hardware import reference
from hardware.bundle import Bundle, read_bundle
from hardware.graph import INPUT, Graph
from lsg_deploy.cli import main
from lsg_deploy.explain import INGREDIENTS, THRESHOLD_TOLERANCE, dequantized_graph, explain, threshold_difference
from lsg_deploy.report import Report
from training.data import DataSpec, EncodedSplit, load

LIMIT = 60


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory, tiny_model: Path, tiny_events: Path, tiny_resnet: Path
         ) -> dict[str, Path]:
    """Tiny networks (conftest's, T = 2, shared): a digits-cnn exported to loihi and to fpga-mul4,
    a digits-cnn on digits-events (event-frame input) to fpga (fpga-mul and fpga-shift), a
    digits-resnet (residual) to loihi."""
    root = tmp_path_factory.mktemp("explain")
    runs = {"cnn": tiny_model, "events": tiny_events, "resnet": tiny_resnet}
    exports = {"loihi": ("cnn", ["--target", "loihi"]), "fpga": ("events", ["--target", "fpga"]),
               "fpga-shift": ("events", ["--target", "fpga", "--profile", "fpga-shift"]),
               "fpga-mul4": ("cnn", ["--target", "fpga", "--profile", "fpga-mul4"]),
               "resnet": ("resnet", ["--target", "loihi"])}
    out = {key: root / f"{run}-{key}" for key, (run, _) in exports.items()}
    for key, (run, flags) in exports.items():
        assert main(["export", *flags, str(runs[run]), "--out", str(out[key]), "--quiet"]) == 0
    return out


def _simulate(bundle: Path, tmp: Path, capsys) -> tuple[dict, str]:
    report = tmp / f"{bundle.name}.json"
    capsys.readouterr()
    assert main(["simulate", "--fixed-point", "--explain", str(bundle), "--limit", str(LIMIT), "--json",
                 str(report)]) == 0
    png = report.with_suffix(".png").read_bytes()
    assert int.from_bytes(png[16:20], "big") >= 1200  # IHDR width: the third panel, the causes, is drawn
    return json.loads(report.read_text()), capsys.readouterr().out


def _test_split(bundle: Bundle) -> EncodedSplit:
    return _split(json.dumps(bundle.source["data"], sort_keys=True), bundle.timesteps)


@functools.cache
def _split(data: str, timesteps: int) -> EncodedSplit:
    """The first test samples (cached: framing the events takes a while)."""
    _, test, _ = load(DataSpec.from_dict(json.loads(data)), timesteps=timesteps)
    return test.head(LIMIT)


def _float_spikes(graph: Graph, test: EncodedSplit, t: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    logits, spikes = run_float(graph, torch.as_tensor(test.analog, dtype=torch.float64), t)
    return logits.numpy(), {k: v.numpy().astype(bool).transpose(1, 0, 2) for k, v in spikes.items()}


def test_dequantized_records_requantize_to_the_integers(tiny):
    """Each formula inverts its quantization step: weights ``step round(W S / (step c))``, biases
    ``round(2^act_shift S b / 2^bias_exp)``, and the threshold is the float ``v_th`` again."""
    for key in ("loihi", "fpga", "fpga-shift", "fpga-mul4", "resnet"):
        bundle = read_bundle(tiny[key])
        profile, graph = bundle.profile, bundle.integer_graph
        for edge in graph.edges:
            target = graph.node(edge.target)
            step = profile.weight_step
            back = step * np.rint(dequantized_weight(edge, target) * target.scale / (edge.input_scale * step))
            np.testing.assert_array_equal(back.astype(np.int64), edge.weight)
        for node in graph.nodes:
            back = np.rint(dequantized_bias(node, profile) * (1 << profile.act_shift) * node.scale / 2**node.bias_exp)
            np.testing.assert_array_equal(back.astype(np.int64), node.bias_mant)
        for node, float_node in zip(graph.hidden, bundle.float_graph.hidden, strict=True):
            assert dequantized_threshold(node, profile) == pytest.approx(float_node.v_th, rel=THRESHOLD_TOLERANCE)
            # the threshold that decides as the integer network sits within one integer unit below
            below = float_node.v_th - dequantized_threshold(node, profile, decide_as_integer=True)
            assert 0 < below * (1 << profile.act_shift) * node.scale < 1
        assert threshold_difference(bundle.float_graph, graph, profile) <= THRESHOLD_TOLERANCE


@pytest.mark.parametrize("key", ["loihi", "fpga", "fpga-shift", "fpga-mul4", "resnet"])
def test_all_dequantized_reproduces_the_integer_reference(tiny, key):
    """Measured: the fraction of (sample, step, neuron) spike values of every hidden layer on
    which the float network with every ingredient dequantized equals ``hardware.reference.run``
    (an implementation independent of the fake-quant path the report uses): >= 99%."""
    bundle = read_bundle(tiny[key])
    test = _test_split(bundle)
    graph = dequantized_graph(bundle.float_graph, bundle.integer_graph, bundle.profile, INGREDIENTS,
                              decide_as_integer=True)
    _, spikes = _float_spikes(graph, test, bundle.timesteps)
    ref = reference.run(bundle.integer_graph, test.pixels, bundle.timesteps, bundle.profile)
    equal = sum(int(np.count_nonzero(spikes[k] == ref.spikes[k])) for k in ref.spikes)
    assert equal / sum(v.size for v in ref.spikes.values()) >= 0.99


@pytest.mark.parametrize("key", ["fpga", "fpga-shift", "fpga-mul4"])
def test_all_dequantized_is_exact_after_one_rounded_decay(tiny, key):
    """T = 2: one decay step, from a state both networks hold exactly (the first step's integer
    sum). The thresholds that decide as the integer network does after one rounded decay (half up
    in fpga-mul, the shift form's rounding up in fpga-shift) give exactly the integer spikes, and
    in the readout's units exactly its membranes: the formulas are the integer record's meaning."""
    bundle = read_bundle(tiny[key])
    profile, graph = bundle.profile, bundle.integer_graph
    assert bundle.timesteps == 2 and profile.name == {"fpga": "fpga-mul"}.get(key, key)
    test = _test_split(bundle)
    deq = dequantized_graph(bundle.float_graph, graph, profile, INGREDIENTS, decide_as_integer=True)
    logits, spikes = _float_spikes(deq, test, bundle.timesteps)
    ref = reference.run(graph, test.pixels, bundle.timesteps, profile)
    assert all(int(v[:, 1].sum()) > 0 for v in ref.spikes.values())  # every layer spikes in the decayed step
    for name, fired in ref.spikes.items():
        np.testing.assert_array_equal(spikes[name], fired, err_msg=name)
    units = logits * bundle.timesteps * (1 << profile.act_shift) * graph.readout.scale
    np.testing.assert_array_equal(np.rint(units).astype(np.int64), ref.final_readout)


def test_nothing_quantized_is_the_float_run_and_decay_is_run_floats_betas(tiny):
    bundle = read_bundle(tiny["loihi"])
    test = _test_split(bundle)
    x, t = torch.as_tensor(test.analog, dtype=torch.float64), bundle.timesteps
    profile, fgraph, igraph = bundle.profile, bundle.float_graph, bundle.integer_graph
    logits, spikes = run_float(fgraph, x, t)
    same_logits, same_spikes = run_float(dequantized_graph(fgraph, igraph, profile, ()), x, t)
    assert torch.equal(logits, same_logits)
    assert all(torch.equal(spikes[k], same_spikes[k]) for k in spikes)
    decay_logits, decay_spikes = run_float(dequantized_graph(fgraph, igraph, profile, ("decay",)), x, t)
    beta_logits, beta_spikes = run_float(fgraph, x, t, betas=quantized_betas(igraph, profile))
    assert torch.equal(decay_logits, beta_logits)
    assert all(torch.equal(decay_spikes[k], beta_spikes[k]) for k in spikes)
    with pytest.raises(ValueError, match="unknown ingredients"):
        dequantized_graph(fgraph, igraph, profile, ("scale",))


def _check_block(doc: dict) -> None:
    """What every explain block must satisfy: own vs full, the share's definition, the check."""
    assert Report.from_json(doc).to_json() == doc  # the block reads back whole
    block = doc["explain"]
    assert set(block["ingredients"]) == set(INGREDIENTS)
    assert "skipped" in block["ingredients"]["thresholds"]
    assert block["float_equals_trained"] == 1.0
    assert block["all"]["agreement_with_reference_overall"] >= 0.99
    layers = {row["name"]: row for row in doc["layers"]}
    for row in block["layers"]:
        full, own = row["agreement_reference"], row["agreement_own"]
        # the same comparison as the report's per-layer agreement (float run: the trained model's)
        assert full == layers[row["name"]]["spike_agreement_reference"]
        if row["inputs"] == [INPUT]:
            assert own == full  # exactly: it reads only the input, the same in both runs
        else:
            assert own >= full  # fed float spikes it has fewer sources of error
        if full < 1.0:
            assert row["inherited_share"] == pytest.approx((own - full) / (1 - full))
            assert row["dominant"] in INGREDIENTS
            lone = block["ingredients"][row["dominant"]]["agreement"][row["name"]]
            assert lone == min(v["agreement"][row["name"]] for v in block["ingredients"].values() if "agreement" in v)
        else:
            assert row["inherited_share"] is None
    assert block["accuracy"]["reference"] == doc["accuracy"]["reference"]
    assert block["accuracy"]["float"] == doc["accuracy"]["folded_float"]


def test_report_blocks_on_a_loihi_export(tiny, tmp_path, capsys):
    doc, text = _simulate(tiny["loihi"], tmp_path, capsys)
    _check_block(doc)
    block = doc["explain"]
    assert [row["name"] for row in block["layers"]] == ["conv1", "conv2", "fc1"]
    assert any(row["agreement_reference"] < 1.0 for row in block["layers"])  # something to explain
    assert block["ingredients"]["decay"]["accuracy"] == doc["accuracy"]["float_quantized_beta"]
    section = text[text.index("explain:"):].splitlines()
    assert section[1].split() == ["layer", "reference", "own", "inherited", "decay", "weights", "biases", "all"]
    assert [line.split()[0] for line in section[2:6]] == ["conv1", "conv2", "fc1", "accuracy"]
    assert all(any(line.strip().startswith(f"{name}:") for line in section) for name in ("conv1", "conv2", "fc1"))
    assert any(line.strip().startswith("thresholds: skipped, not quantized separately") for line in section)
    assert section[-1].strip().startswith("check: with every ingredient dequantized")


def test_report_on_an_fpga_event_frame_export_and_a_residual_one(tiny, tmp_path, capsys):
    fpga, _ = _simulate(tiny["fpga"], tmp_path, capsys)
    assert fpga["profile"] == "fpga-mul" and fpga["input_encoding"] == "event-frames"
    _check_block(fpga)
    resnet, text = _simulate(tiny["resnet"], tmp_path, capsys)
    _check_block(resnet)
    rows = {row["name"]: row for row in resnet["explain"]["layers"]}
    assert rows["res1"]["inputs"] == ["res1.conv1", "stem"]  # two incoming edges, both fed float spikes
    verdicts = [line.strip().split(":")[0] for line in text[text.index("explain:"):].splitlines()[1:]]
    assert set(rows) <= set(verdicts)  # one verdict line per layer


def test_report_on_a_4_bit_export(tiny, tmp_path, capsys):
    """The digits network with 4-bit weights (exported through the CLI with ``--profile
    fpga-mul4``): its weights use the 4-bit grid, within [-7, 7] (at percentile 100 the largest
    |W| maps to 7; -8 only comes of clipping), the report's blocks hold, and the weights are an
    ingredient that costs agreement (at 4 bits they are no longer the float ones)."""
    bundle = read_bundle(tiny["fpga-mul4"])
    assert bundle.profile.name == "fpga-mul4"
    weights = np.concatenate([e.weight.ravel() for e in bundle.integer_graph.edges])
    assert weights.min() >= -7 and weights.max() <= 7 and len(np.unique(weights)) >= 13
    doc, text = _simulate(tiny["fpga-mul4"], tmp_path, capsys)
    assert doc["profile"] == "fpga-mul4"
    _check_block(doc)
    weights = doc["explain"]["ingredients"]["weights"]["agreement"]
    assert min(weights.values()) < 1.0
    assert "explain:" in text


def test_thresholds_that_differ_from_the_float_ones_are_an_ingredient(tiny):
    """A bundle whose integer threshold is not the one its scale came from (vth one higher): the
    thresholds ingredient is run and reported, not skipped, and it costs that layer spikes."""
    bundle = read_bundle(tiny["loihi"])
    graph = bundle.integer_graph
    nodes = tuple(dataclasses.replace(n, vth=n.vth + 1) if n.name == "conv2" else n for n in graph.nodes)
    changed = dataclasses.replace(bundle, integer_graph=Graph(graph.input, nodes, graph.edges))
    assert threshold_difference(changed.float_graph, changed.integer_graph, changed.profile) > THRESHOLD_TOLERANCE
    block = explain(changed, _test_split(changed))
    entry = block.ran["thresholds"]  # run, not skipped
    assert entry.agreement["conv1"] == 1.0  # a later threshold cannot change an earlier layer
    assert entry.agreement["conv2"] < 1.0
    assert block.every.agreement_with_reference_overall >= 0.99


def test_explain_needs_fixed_point(tiny, capsys):
    capsys.readouterr()
    assert main(["simulate", "--explain", str(tiny["loihi"]), "--limit", "5"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--explain" in err[0] and "--fixed-point" in err[0]
