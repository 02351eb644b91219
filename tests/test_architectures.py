"""The architecture registry: every entry builds and runs, digits-cnn is unchanged, digits-resnet
sums its shortcut current into the second LIF's input and survives a checkpoint round trip, and
the networks take a (B, T, C, H, W) input that differs at every step."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from lsg_deploy.cli import main
from lsg_io import files
from training.checkpoint import checkpoint_bytes, checkpoint_document, content_digest, load_checkpoint
from training.config import TrainConfig
from training.data import DataSpec, load
from training.loop import Split, activation_bytes, fit, predict
from training.model import ArchitectureError, ConvBlock, ConvBN, ResidualBlock, TdBN
from training.models import ARCHITECTURES, build_model
from training.models.digits_cnn import SpikingConvNet
from training.models.digits_resnet import DigitsResNet

TINY = {"timesteps": 2, "channels": (4, 8), "hidden": 16, "epochs": 1, "width": 1.0}
#: an input each architecture accepts, and the width that keeps it small
SMALL = {"digits-cnn": ((1, 8, 8), 1.0), "digits-resnet": ((1, 8, 8), 1.0), "digits-plain": ((1, 8, 8), 1.0),
         "resnet19": ((1, 8, 8), 1 / 16),
         "vggsnn": ((2, 16, 16), 1 / 16)}
#: today's digits-cnn (before the registry): exported bundles and old checkpoints depend on these names
DIGITS_CNN_KEYS = sorted(
    [f"blocks.{layer}.{p}" for layer in ("conv1", "conv2") for p in ("conv.weight", "lif.b")]
    + ["blocks.fc1.linear.weight", "blocks.fc1.lif.b", "blocks.readout.linear.weight", "blocks.readout.linear.bias"]
    + [f"blocks.{layer}.bn.{p}" for layer in ("conv1", "conv2", "fc1")
       for p in ("gamma", "shift", "norm.running_mean", "norm.running_var", "norm.num_batches_tracked")])


@pytest.fixture(scope="module")
def digits() -> tuple[Split, Split, int]:
    train, test, classes = load(DataSpec())
    return Split(train.analog, train.labels), Split(test.analog, test.labels), classes


@pytest.fixture(scope="module")
def resnet_cli_run(tiny_resnet: Path) -> Path:
    """``lsg-deploy train --arch digits-resnet``, tiny: the checkpoint (conftest's, shared)."""
    return tiny_resnet


def _lines(err: str) -> list[str]:
    return err.strip().splitlines()


@pytest.mark.parametrize("arch", list(ARCHITECTURES))
def test_registry_builds_and_runs_every_architecture(arch):
    torch.manual_seed(0)
    shape, width = SMALL[arch]
    model = build_model(TrainConfig(arch=arch, **{**TINY, "width": width}), shape, 10)
    out = model(torch.rand(3, *shape), record=True)
    assert out.logits.shape == (3, 10) and out.outputs.shape == (2, 3, 10)
    assert bool(torch.isfinite(out.logits).all())
    assert list(out.spikes) == list(model.lif_layers())  # every LIF recorded, under its name, in order
    for name, spikes in out.spikes.items():
        assert spikes.shape[:2] == (2, 3) and set(spikes.unique().tolist()) <= {0.0, 1.0}, name
    out.logits.sum().backward()  # gradients reach every trained parameter, through the surrogate
    assert all(p.grad is not None for p in model.parameters())


def test_registry_is_the_choice_everywhere(capsys, tmp_path):
    assert set(ARCHITECTURES) == set(SMALL)
    assert TrainConfig().arch == "digits-cnn"
    with pytest.raises(ValueError, match="arch must be one of " + ", ".join(ARCHITECTURES)):
        TrainConfig(arch="resnet1000")
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--arch", "resnet1000", "--out", str(tmp_path / "r")])
    assert exit_info.value.code == 2
    (line,) = _lines(capsys.readouterr().err)
    assert line.startswith("lsg-deploy: error:") and "--arch" in line and "digits-resnet" in line
    assert not (tmp_path / "r").exists()


def test_bad_arch_in_config_file_and_bad_resnet_widths_are_one_line(capsys, tmp_path):
    (tmp_path / "a.toml").write_text('[train]\narch = "vgg"\n')
    (tmp_path / "w.toml").write_text("[train]\nchannels = [4, 8, 16]\n")
    assert main(["train", "--config", str(tmp_path / "a.toml"), "--out", str(tmp_path / "a")]) == 2
    (line,) = _lines(capsys.readouterr().err)
    assert "arch must be one of" in line
    assert main(["train", "--arch", "digits-resnet", "--config", str(tmp_path / "w.toml"),
                 "--out", str(tmp_path / "w")]) == 2
    (line,) = _lines(capsys.readouterr().err)
    assert "digits-resnet needs channels" in line
    assert not (tmp_path / "a").exists() and not (tmp_path / "w" / "model.pt").exists()


def test_digits_cnn_is_todays_network():
    torch.manual_seed(0)
    model = build_model(TrainConfig(), (1, 8, 8), 10)
    assert type(model) is SpikingConvNet
    assert sorted(model.state_dict()) == DIGITS_CNN_KEYS
    assert list(model.blocks) == ["conv1", "pool1", "conv2", "pool2", "flatten", "fc1", "readout"]
    neurons = 64 + 16 * 64 + 16 * 16 + 32 * 16 + 32 * 4 + 128 + 128 + 10  # input and every block's output
    assert activation_bytes(model, 64) == 8 * 4 * 4 * 64 * neurons


def test_checkpoint_without_arch_loads_as_digits_cnn(tmp_path):
    """Checkpoints written before the registry have no ``arch`` in their config."""
    torch.manual_seed(0)
    model = build_model(TrainConfig(), (1, 8, 8), 10)
    doc = checkpoint_document(model, TrainConfig(), [], 10, DataSpec().to_dict())
    del doc["config"]["arch"]
    doc["sha256"] = content_digest(doc)
    files.write_bytes(tmp_path / "old.pt", checkpoint_bytes(doc))
    loaded, _ = load_checkpoint(tmp_path / "old.pt")
    assert type(loaded) is SpikingConvNet


def test_digits_resnet_structure():
    model = build_model(TrainConfig(arch="digits-resnet"), (1, 8, 8), 10)
    assert type(model) is DigitsResNet
    assert list(model.blocks) == ["stem", "res1", "res2", "pool", "flatten", "fc1", "readout"]
    res1, res2 = model.blocks["res1"], model.blocks["res2"]
    assert res1.shortcut is None  # identity: 16 -> 16
    assert isinstance(res2.shortcut, ConvBN) and res2.shortcut.conv.kernel_size == (1, 1)
    assert (res2.shortcut.conv.in_channels, res2.shortcut.conv.out_channels) == (16, 32)
    for block in (res1, res2):
        assert block.conv1.bn.eta == 1.0
        assert block.conv2.bn.eta == pytest.approx(2**-0.5)
    assert res2.shortcut.bn.eta == pytest.approx(2**-0.5)
    assert list(model.lif_layers()) == ["stem", "res1.conv1", "res1", "res2.conv1", "res2", "fc1"]


def _lif_inputs(model, x: torch.Tensor, block: ResidualBlock) -> torch.Tensor:
    """What ``block``'s output LIF receives when ``model`` runs on ``x``."""
    seen = []
    handle = block.lif.register_forward_pre_hook(lambda module, args: seen.append(args[0].detach().clone()))
    try:
        model(x)
    finally:
        handle.remove()
    (current,) = seen
    return current


@torch.no_grad()
def test_residual_current_is_added_before_the_second_lif():
    torch.manual_seed(1)
    model = build_model(TrainConfig(arch="digits-resnet", **TINY), (1, 8, 8), 10)
    x = torch.rand(5, 1, 8, 8)
    _calibrate(model, x)
    res1, res2 = model.blocks["res1"], model.blocks["res2"]
    for conv_bn in (res1.conv2, res2.conv2):  # silence the main branches: tdBN(.) = 0 * y + 0
        conv_bn.bn.gamma.zero_()
        conv_bn.bn.shift.zero_()
    spikes = model(x, record=True).spikes
    assert 0 < float(spikes["stem"].mean()) < 1 and 0 < float(spikes["res1"].mean()) < 1
    # identity shortcut: res1's LIF receives exactly the stem's spikes, so it passes them on
    stem_out = spikes["stem"].reshape(2, 5, 4, 8, 8)
    assert torch.equal(_lif_inputs(model, x, res1), stem_out)
    assert torch.equal(spikes["res1"], spikes["stem"])
    # projection shortcut: res2's LIF receives tdBN(conv1x1(res1's spikes)), a non-zero current
    shortcut = res2.shortcut.synaptic(spikes["res1"].reshape(2, 5, 4, 8, 8))
    assert bool(shortcut.abs().sum() > 0)
    assert torch.equal(_lif_inputs(model, x, res2), shortcut)

    # two sub-threshold currents, 0.3 each, sum to 0.6 >= v_th = 0.5 in one membrane: every neuron
    # spikes at every step (summed after two LIFs, neither would spike)
    for conv_bn in (res2.conv2, res2.shortcut):
        conv_bn.bn.gamma.zero_()
        conv_bn.bn.shift.fill_(0.3)
    assert bool((model(x, record=True).spikes["res2"] == 1).all())


def test_digits_resnet_checkpoint_round_trip(digits, tmp_path):
    train, test, classes = digits
    config = TrainConfig(arch="digits-resnet", **TINY)
    model, metrics = fit(config, Split(train.x[:300], train.y[:300]), Split(test.x[:50], test.y[:50]), classes)
    doc = checkpoint_document(model, config, metrics, classes, DataSpec().to_dict())
    files.write_bytes(tmp_path / "model.pt", checkpoint_bytes(doc))
    loaded, loaded_doc = load_checkpoint(tmp_path / "model.pt")
    assert type(loaded) is DigitsResNet and loaded_doc["config"]["arch"] == "digits-resnet"
    assert not loaded.training
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    assert torch.equal(predict(loaded, test.x).logits, predict(model, test.x).logits)


def test_train_cli_digits_resnet(resnet_cli_run, digits):
    model, doc = load_checkpoint(resnet_cli_run)
    assert type(model) is DigitsResNet and doc["config"]["arch"] == "digits-resnet"
    assert doc["config"]["channels"] == [4, 8] and doc["config"]["timesteps"] == 2
    _, test, _ = digits
    accuracy = float((predict(model, test.x).logits.argmax(1).numpy() == test.y).mean())
    assert accuracy == doc["metrics"][-1]["test_accuracy"]  # the loaded network is the one that was evaluated
    assert "beta_res1.conv1" in doc["metrics"][-1]


def test_a_residual_net_exports_everything_but_netx_and_simulates_exactly(resnet_cli_run, capsys, tmp_path):
    """The residual graph goes to the bundle and NIR; netx (chains only) is skipped with one
    line naming it and why, and the bundle records it. Lava equals the reference bit for bit."""
    import json

    from hardware.bundle import read_bundle

    out = tmp_path / "bundle"
    assert main(["export", "--target", "loihi", str(resnet_cli_run), "--out", str(out)]) == 0
    (line,) = _lines(capsys.readouterr().err)
    assert line.startswith("WARNING: skipped model.net:") and "node res1 sums 2 edges" in line
    assert sorted(p.name for p in out.iterdir()) == ["arrays.npz", "bundle.json", "model.nir", "source_model.pt"]
    bundle = read_bundle(out)
    assert "chains" in bundle.artifacts["netx"]["skipped"] and bundle.artifacts["nir"] == {"file": "model.nir"}
    assert not bundle.integer_graph.is_chain
    report = tmp_path / "report.json"
    assert main(["simulate", "--fixed-point", str(out), "--backend", "all", "--limit", "40", "--json", str(report),
                 "--quiet"]) == 0
    doc = json.loads(report.read_text())
    assert doc["exact"]["equal"] is True
    assert set(doc["exact"]["mismatches"]) == {"stem", "res1.conv1", "res1", "res2.conv1", "res2", "fc1", "readout"}
    assert doc["accuracy"]["folded_float"] == doc["accuracy"]["float"]
    rows = {row["name"]: row for row in doc["layers"]}
    assert rows["res1"]["inputs"] == ["res1.conv1", "stem"] and rows["res2"]["inputs"] == ["res2.conv1", "res1"]


@torch.no_grad()
def _calibrate(model, x: torch.Tensor) -> None:
    """Running statistics of ``x`` in every tdBN (an untrained network's leave the layers silent)."""
    for module in model.modules():
        if isinstance(module, TdBN):
            module.norm.momentum = 1.0
    model.train()(x)
    model.eval()


@pytest.mark.parametrize("arch", ["digits-cnn", "digits-resnet"])
@torch.no_grad()
def test_per_step_input(arch):
    torch.manual_seed(2)
    model = build_model(TrainConfig(arch=arch, timesteps=3, channels=(4, 8), hidden=16), (1, 8, 8), 10).eval()
    frames = torch.rand(4, 3, 1, 8, 8)
    _calibrate(model, frames)
    x = torch.rand(4, 1, 8, 8)
    # the same frame at every step is direct encoding
    direct, repeated = model(x, record=True), model(x.unsqueeze(1).expand(4, 3, 1, 8, 8), record=True)
    assert torch.equal(direct.outputs, repeated.outputs)
    assert all(torch.equal(direct.spikes[k], repeated.spikes[k]) for k in direct.spikes)
    # step t sees frame t: changing the last frame changes only the last step
    out = model(frames, record=True)
    assert all(0 < float(spikes.mean()) < 1 for spikes in out.spikes.values())
    changed = frames.clone()
    changed[:, 2] = 1.0 - changed[:, 2]
    out_changed = model(changed)
    assert torch.equal(out.outputs[:2], out_changed.outputs[:2])
    assert not torch.equal(out.outputs[2], out_changed.outputs[2])
    with pytest.raises(ValueError, match="3 timesteps, got 2"):
        model(frames[:, :2])
    with pytest.raises(ValueError, match=r"input must be \(B, 1, 8, 8\)"):
        model(torch.rand(4, 8, 8))


def test_fit_on_per_step_inputs(digits):
    """A dataset with a different input at every step trains without changes to the model."""
    train, test, classes = digits
    rng = np.random.default_rng(0)

    def frames(split: Split, n: int) -> Split:
        x = split.x[:n, None].repeat(2, axis=1)  # (N, T, C, H, W): the image, then a noisy copy
        x[:, 1] = np.clip(x[:, 1] + rng.normal(0, 0.1, x[:, 1].shape), 0, 1).astype(x.dtype)
        return Split(x, split.y[:n])

    config = TrainConfig(arch="digits-resnet", **TINY)
    model, metrics = fit(config, frames(train, 300), frames(test, 50), classes)
    assert model.input_shape == (1, 8, 8) and len(metrics) == 1
    assert np.isfinite(metrics[0]["train_loss"])


def test_resnet19_structure():
    """The tdBN/TET ResNet-19: stem 128, stages 3 x 128, 3 x 256 (stride 2), 2 x 512 (stride 2),
    global pooling, fc 256, readout; projection shortcuts exactly where the shape changes."""
    model = build_model(TrainConfig(arch="resnet19"), (3, 32, 32), 10)
    names = [n for n in model.blocks if n.startswith("s")]
    assert names == ["stem", "s1b1", "s1b2", "s1b3", "s2b1", "s2b2", "s2b3", "s3b1", "s3b2"]
    projections = {n: b.shortcut.conv.stride for n, b in model.blocks.items()
                   if isinstance(b, ResidualBlock) and b.shortcut is not None}
    assert projections == {"s2b1": (2, 2), "s3b1": (2, 2)}
    assert model.blocks["s3b2"].conv2.conv.out_channels == 512 and model.blocks["pool"].kernel == 8
    assert (model.blocks["fc1"].linear.in_features, model.blocks["fc1"].linear.out_features) == (512, 256)
    # fc1 as in the tdBN/TET code: a plain linear layer with a bias before its LIF, no tdBN
    assert model.blocks["fc1"].bn is None and model.blocks["fc1"].linear.bias is not None
    assert model.activation_shapes()[-1] == (10,)
    w = model.blocks["s1b1"].conv1.conv.weight  # Kaiming normal, fan-out: std sqrt(2 / (128 * 9))
    assert float(w.detach().std()) == pytest.approx((2 / (128 * 9)) ** 0.5, rel=0.05)
    with pytest.raises(ArchitectureError, match="square input whose side 4 divides"):
        build_model(TrainConfig(arch="resnet19"), (3, 30, 30), 10)


def test_vggsnn_structure():
    model = build_model(TrainConfig(arch="vggsnn"), (2, 48, 48), 10)
    convs = [b.conv.out_channels for b in model.blocks.values() if isinstance(b, ConvBlock)]
    assert convs == [64, 128, 256, 256, 512, 512, 512, 512]
    assert model.blocks["readout"].linear.in_features == 4608
    assert all(b.conv.bias is None for b in model.blocks.values() if isinstance(b, ConvBlock))
    w = model.blocks["conv5"].conv.weight  # TET's Kaiming normal, fan-out: std sqrt(2 / (512 * 9))
    assert float(w.detach().std()) == pytest.approx((2 / (512 * 9)) ** 0.5, rel=0.05)
    with pytest.raises(ArchitectureError, match="multiples of 16"):
        build_model(TrainConfig(arch="vggsnn"), (2, 12, 12), 10)


def test_width_multiplies_every_count():
    small = build_model(TrainConfig(arch="resnet19", width=0.25), (3, 32, 32), 10)
    assert small.blocks["stem"].conv.out_channels == 32 and small.blocks["fc1"].linear.out_features == 64
    assert build_model(TrainConfig(width=0.5), (1, 8, 8), 10).blocks["conv2"].conv.out_channels == 16
    with pytest.raises(ValueError, match="width must lie in"):
        TrainConfig(width=0)


@pytest.mark.parametrize("arch", ["resnet19", "vggsnn", "digits-plain"])
def test_paper_networks_fold_exactly(arch):
    """Strided residual blocks with projection shortcuts, global pooling, four poolings, a plain stack."""
    from export.fold import fold, run_float
    from hardware.graph import Input

    torch.manual_seed(1)
    shape, width = SMALL[arch]
    model = build_model(TrainConfig(arch=arch, width=width, timesteps=3), shape, 10).double()
    x = torch.rand(32, *shape, dtype=torch.float64)
    _calibrate(model, x.unsqueeze(1).expand(32, 3, *shape))
    ref = predict(model, x, record=True)
    logits, spikes = run_float(fold(model, Input(shape, "direct", 16)), x, 3)
    assert all(0 < float(s.mean()) < 1 for s in spikes.values())
    for name, s in spikes.items():
        assert torch.equal(s, ref.spikes[name]), name
    assert torch.allclose(logits, ref.logits, rtol=1e-5, atol=1e-5 * float(ref.logits.abs().max()))


def test_resnet19_on_digits_end_to_end_with_lava(tmp_path, capsys):
    """A small-width ResNet-19 through the CLI on the digits: 19 nodes, strided shortcuts, delay
    relays; Lava equals the reference bit for bit."""
    import json

    (tmp_path / "r19.toml").write_text('[train]\narch = "resnet19"\nwidth = 0.0625\nepochs = 1\ntimesteps = 2\n')
    run, out, report = tmp_path / "run", tmp_path / "bundle", tmp_path / "report.json"
    assert main(["train", "--config", str(tmp_path / "r19.toml"), "--out", str(run), "--quiet"]) == 0
    assert main(["export", "--target", "loihi", str(run / "model.pt"), "--out", str(out), "--quiet"]) == 0
    assert main(["simulate", "--fixed-point", str(out), "--backend", "all", "--limit", "8", "--json", str(report),
                 "--quiet"]) == 0
    doc = json.loads(report.read_text())
    assert doc["exact"]["equal"] is True and len(doc["exact"]["mismatches"]) == 19
    assert doc["accuracy"]["folded_float"] == doc["accuracy"]["float"]
