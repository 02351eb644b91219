"""The ONNX target: ``export --target onnx`` writes the folded float network, and onnxruntime
running it reproduces our float model.

Three small untrained networks with calibrated tdBN statistics (no training: a few seconds in
all): digits-cnn (a chain), digits-resnet (residual adds: nodes with two incoming edges) and
vggsnn at width 1/16 on event frames (a different input every step, four foldings of pooling).
Each is saved through the real checkpoint path, exported through the CLI, and ``model.onnx`` is
run step by step in onnxruntime with its state fed back, as a streaming runtime would.

Two comparisons, because onnxruntime computes in float32 and has no float64 ``Conv``:

* the exported float32 model against :func:`export.fold.run_float` (float64) and the unfolded
  torch model (float32): spikes equal except at ties, logits to 1e-5 relative. A spike differs
  only where a membrane lies within float32 rounding (~1e-7 relative) of the threshold, where
  the two summation orders may fall on either side; one such tie also changes that neuron's later
  steps and its targets, so the test counts mismatches and requires their fraction to be tiny;
* the same graph built in float64 and run by onnx's reference evaluator against ``run_float``:
  there no tie occurs (the orders differ by ~1e-16), so spikes must be equal everywhere.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx.reference import ReferenceEvaluator

from export import onnx_format as fmt
from export.fold import fold, run_float
from export.onnx_export import OPSET, step_model
from export.targets import FLOAT_EXPORTS, choices
from hardware.graph import EVENT_FRAMES, Input
from hardware.targets import TARGETS
from lsg_deploy.cli import main
from lsg_io import files
from training.checkpoint import checkpoint_bytes, checkpoint_document, load_checkpoint
from training.config import TrainConfig
from training.data import DATASETS, DataSpec, load
from training.loop import predict
from training.model import TdBN
from training.models import build_model

#: arch -> (input shape, width, timesteps, the dataset recorded in the checkpoint)
NETS = {"digits-cnn": ((1, 8, 8), 1.0, 3, "digits"), "digits-resnet": ((1, 8, 8), 1.0, 4, "digits"),
        "vggsnn": ((2, 16, 16), 1 / 16, 5, "cifar10-dvs")}
SAMPLES = 48
TIE_FRACTION = 1e-4  #: largest share of spikes that may differ in float32 (ties, see the module docstring)
LOGIT_RTOL = 1e-5


def _inputs(arch: str) -> np.ndarray:
    """The float input of ``SAMPLES`` samples: digits test images (pixels / 16), or 0/1 event frames."""
    shape, _, timesteps, dataset = NETS[arch]
    if DATASETS[dataset].encoding == EVENT_FRAMES:
        rng = np.random.default_rng(3)
        return (rng.random((SAMPLES, timesteps, *shape)) < 0.3).astype(np.float32)
    return load(DataSpec(dataset))[1].head(SAMPLES).analog


def _checkpoint(root: Path, arch: str) -> Path:
    """An untrained ``arch`` whose tdBN running statistics are those of its own inputs (an
    untrained network's defaults leave the layers silent), saved as ``train`` saves it."""
    shape, width, timesteps, dataset = NETS[arch]
    torch.manual_seed(5)
    config = TrainConfig(arch=arch, width=width, timesteps=timesteps, channels=(4, 8), hidden=16, dataset=dataset)
    model = build_model(config, shape, 10)
    for module in model.modules():
        if isinstance(module, TdBN):
            module.norm.momentum = 1.0
    x = torch.as_tensor(_inputs(arch))
    with torch.no_grad():
        model.train()(x if x.dim() == 5 else x.unsqueeze(1).expand(len(x), timesteps, *shape))
    model.eval()
    path = root / arch / "model.pt"
    files.write_bytes(path, checkpoint_bytes(checkpoint_document(model, config, [], 10, DataSpec(dataset).to_dict())))
    return path


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Path, str]]:
    """arch -> (checkpoint, ONNX directory with --unrolled, the CLI's stdout)."""
    root = tmp_path_factory.mktemp("onnx")
    done = {}
    for arch in NETS:
        checkpoint, out = _checkpoint(root, arch), root / arch / "onnx"
        assert main(["export", "--target", "onnx", str(checkpoint), "--out", str(out), "--unrolled"]) == 0
        done[arch] = (checkpoint, out)
    return done


def _run_steps(model: Path | bytes, manifest: dict, x: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Run the step model over the T steps from zero state, feeding the state outputs back:
    logits (B, classes) and spikes {node: (T, B, neurons)}."""
    session = ort.InferenceSession(model if isinstance(model, bytes) else str(model),
                                   providers=["CPUExecutionProvider"])
    timesteps, per_step = manifest["timesteps"], manifest["input"]["encoding"] == EVENT_FRAMES
    state = {}
    for layer in manifest["state"]:
        for kind in ("membrane", "spikes"):
            state[layer[kind]["input"]] = np.zeros((len(x), *layer["shape"][1:]), np.float32)
    readouts, spikes = [], {layer["node"]: [] for layer in manifest["state"]}
    for t in range(timesteps):
        feed = {fmt.INPUT_NAME: x[:, t] if per_step else x, **state}
        out = dict(zip([o.name for o in session.get_outputs()], session.run(None, feed), strict=True))
        readouts.append(out[fmt.READOUT_NAME])
        for layer in manifest["state"]:
            for kind in ("membrane", "spikes"):
                state[layer[kind]["input"]] = out[layer[kind]["output"]]
            spikes[layer["node"]].append(out[layer["spikes"]["output"]].reshape(len(x), -1))
    return np.mean(readouts, axis=0), {k: np.stack(v) for k, v in spikes.items()}


def _mismatch(ours: dict[str, np.ndarray], ref: dict[str, torch.Tensor]) -> float:
    assert list(ours) == list(ref)
    differ = sum(int(np.count_nonzero(ours[k] != ref[k].numpy())) for k in ref)
    return differ / sum(v.numel() for v in ref.values())


def _relative(a: np.ndarray, ref: np.ndarray) -> float:
    return float(np.abs(a - ref).max() / np.abs(ref).max())


@pytest.mark.parametrize("arch", list(NETS))
def test_onnx_reproduces_the_float_model(exported, arch):
    checkpoint, out = exported[arch]
    shape, _, timesteps, dataset = NETS[arch]
    manifest = json.loads((out / fmt.MANIFEST_NAME).read_text())
    onnx.checker.check_model(onnx.load(out / fmt.STEP_NAME), full_check=True)
    onnx.checker.check_model(onnx.load(out / fmt.UNROLLED_NAME), full_check=True)

    # the manifest: what a runtime needs, and where the model came from
    assert manifest["format"] == fmt.FORMAT_NAME and manifest["opset"] == OPSET >= 17
    assert manifest["timesteps"] == timesteps and manifest["input"]["encoding"] == DATASETS[dataset].encoding
    assert manifest["source"]["checkpoint_sha256"] == hashlib.sha256(checkpoint.read_bytes()).hexdigest()
    assert sorted(p.name for p in out.iterdir()) == sorted([fmt.MANIFEST_NAME, *manifest["files"]])
    for name, digest in manifest["files"].items():
        assert hashlib.sha256((out / name).read_bytes()).hexdigest() == digest
    session = ort.InferenceSession(str(out / fmt.STEP_NAME), providers=["CPUExecutionProvider"])
    step = manifest["models"]["step"]
    assert [i.name for i in session.get_inputs()] == [i["name"] for i in step["inputs"]]
    assert [o.name for o in session.get_outputs()] == [o["name"] for o in step["outputs"]]
    assert [list(i.shape[1:]) for i in session.get_inputs()] == [i["shape"][1:] for i in step["inputs"]]
    if dataset == "digits":  # the registry's scale is the one the data is loaded with
        assert manifest["input"]["input_max"] == load(DataSpec())[0].input_max == 16

    model, _ = load_checkpoint(checkpoint)
    graph = fold(model, Input(shape, DATASETS[dataset].encoding, DATASETS[dataset].input_max or 1))
    assert [s["node"] for s in manifest["state"]] == [n.name for n in graph.hidden]
    if arch == "digits-resnet":
        assert any(len(graph.incoming(n.name)) == 2 for n in graph.nodes)  # the residual adds are exercised
    x = _inputs(arch)
    ref_logits, ref_spikes = run_float(graph, torch.as_tensor(x, dtype=torch.float64), timesteps)
    assert all(0 < float(s.mean()) < 1 for s in ref_spikes.values())  # every layer spikes, none saturates
    torch_model = predict(model, x, record=True)

    logits, spikes = _run_steps(out / fmt.STEP_NAME, manifest, x)
    assert _mismatch(spikes, ref_spikes) < TIE_FRACTION
    assert _mismatch(spikes, {k: torch_model.spikes[k].flatten(2) for k in ref_spikes}) < TIE_FRACTION
    assert _relative(logits, ref_logits.numpy()) < LOGIT_RTOL
    assert _relative(logits, torch_model.logits.double().numpy()) < LOGIT_RTOL

    unrolled = ort.InferenceSession(str(out / fmt.UNROLLED_NAME), providers=["CPUExecutionProvider"])
    assert list(unrolled.get_inputs()[0].shape[1:]) == manifest["models"]["unrolled"]["inputs"][0]["shape"][1:] \
        == [*([timesteps] if dataset == "cifar10-dvs" else []), *shape]
    (unrolled_logits,) = unrolled.run(None, {fmt.INPUT_NAME: x})
    assert _relative(unrolled_logits, logits) < 1e-6  # the same operators in the same order, one graph

    # the graph itself, in float64: exactly run_float's spikes (no ties at this precision)
    double = step_model(graph, timesteps, np.float64)
    evaluator = ReferenceEvaluator(double)
    state = {i.name: np.zeros((len(x), *[d.dim_value for d in i.type.tensor_type.shape.dim[1:]]))
             for i in double.graph.input[1:]}
    readouts, spikes64 = [], {n.name: [] for n in graph.hidden}
    names = [o.name for o in double.graph.output]
    for t in range(timesteps):
        x_t = x[:, t] if graph.input.per_step else x
        result = dict(zip(names, evaluator.run(None, {fmt.INPUT_NAME: x_t.astype(np.float64), **state}), strict=True))
        state = {name: result[name + fmt.NEXT] for name in state}
        readouts.append(result[fmt.READOUT_NAME])
        for n in graph.hidden:
            spikes64[n.name].append(result[f"o.{n.name}{fmt.NEXT}"].reshape(len(x), -1))
    assert _mismatch({k: np.stack(v) for k, v in spikes64.items()}, ref_spikes) == 0
    assert _relative(np.mean(readouts, axis=0), ref_logits.numpy()) < 1e-12


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("lsg-deploy: error: "), err
    return err[0]


def test_float_and_bundle_options_are_refused_with_one_line(exported, tmp_path, capsys):
    checkpoint = str(exported["digits-cnn"][0])
    out = tmp_path / "out"
    for extra, flag in ((["--profile", "fpga-mul"], "--profile"), (["--clip"], "--clip"),
                        (["--weight-percentile", "90"], "--weight-percentile")):
        assert main(["export", "--target", "onnx", checkpoint, "--out", str(out), *extra]) == 2
        assert flag in _one_error_line(capsys)
    for target in ("loihi", "fpga"):
        assert main(["export", "--target", target, checkpoint, "--out", str(out), "--unrolled"]) == 2
        assert "--unrolled" in _one_error_line(capsys)
    assert not out.exists()


def test_the_float_exports_are_apart_from_the_quantized_targets():
    """A quantized target (the hardware registry) has integer profiles to offer; a float export has
    none (its options are refused) and is no quantized target."""
    assert set(choices()) == set(TARGETS) | set(FLOAT_EXPORTS) and not set(TARGETS) & set(FLOAT_EXPORTS)
    assert all(t.profiles for t in TARGETS.values())
    assert FLOAT_EXPORTS["onnx"].requires == ("onnx",) and FLOAT_EXPORTS["onnx"].missing() is None


def test_missing_onnx_package_is_one_line(exported, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnx", None)  # import onnx now fails, as where it is not installed
    out = tmp_path / "out"
    assert main(["export", "--target", "onnx", str(exported["digits-cnn"][0]), "--out", str(out)]) == 2
    assert 'pip install -e ".[onnx]"' in _one_error_line(capsys)
    assert not out.exists()


def test_an_onnx_export_is_replaced_by_the_next_and_simulate_refuses_it(exported, tmp_path, capsys):
    checkpoint = str(exported["digits-cnn"][0])
    out = tmp_path / "deploy"
    assert main(["export", "--target", "onnx", checkpoint, "--out", str(out), "--unrolled"]) == 0
    assert capsys.readouterr().out.splitlines()[0].startswith(f"wrote ONNX model {out / fmt.STEP_NAME} "
                                                              f"(3 LIF layers, 3 steps)")
    first = json.loads((out / fmt.MANIFEST_NAME).read_text())
    assert main(["export", "--target", "onnx", checkpoint, "--out", str(out)]) == 0  # the earlier one is ours
    assert capsys.readouterr().out.strip() == f"wrote ONNX model {out / fmt.STEP_NAME} (3 LIF layers, 3 steps)"
    second = json.loads((out / fmt.MANIFEST_NAME).read_text())
    assert set(first["files"]) == {fmt.STEP_NAME, fmt.UNROLLED_NAME} and set(second["files"]) == {fmt.STEP_NAME}
    assert sorted(p.name for p in out.iterdir()) == [fmt.STEP_NAME, fmt.MANIFEST_NAME]  # none left behind
    assert sorted(p.name for p in tmp_path.iterdir()) == ["deploy"]  # no stage or aside directory either

    assert main(["simulate", str(out), "--quiet"]) == 2
    assert "is an ONNX export, not a bundle" in _one_error_line(capsys)

    (out / "notes.txt").write_text("mine")  # not part of the export: refused, untouched
    assert main(["export", "--target", "onnx", checkpoint, "--out", str(out)]) == 2
    assert "notes.txt" in _one_error_line(capsys) and (out / "notes.txt").read_text() == "mine"
    (out / "notes.txt").unlink()

    # an ONNX export and a bundle are both ours: each kind replaces the other
    assert main(["export", "--target", "loihi", checkpoint, "--out", str(out), "--quiet"]) == 0
    assert (out / "bundle.json").is_file() and not (out / fmt.MANIFEST_NAME).exists()
    assert main(["export", "--target", "onnx", checkpoint, "--out", str(out), "--quiet"]) == 0
    assert sorted(p.name for p in out.iterdir()) == [fmt.STEP_NAME, fmt.MANIFEST_NAME]
