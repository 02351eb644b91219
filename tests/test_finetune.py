"""``lsg-deploy finetune`` (export/finetune.py): quantization-aware fine-tuning with the target's
integer forward in the loop.

* the differentiable forward *is* the fake-quant network: at the export's pins its integer
  records equal the export's, and its spikes and readout membranes equal
  :func:`export.fake_quant.run_fake_quant`'s with ``==``, for a chain, a residual net and an
  event-frame VGG, in the Loihi profile and the FPGA ones (4-bit weights, shift decay);
* its gradients are the float model's where the integer grid is fine (Loihi, fpga-mul: same
  direction and size per parameter tensor), so the surrogate sits at the integer threshold with
  the width in integer units;
* end to end through the CLI: the written checkpoint exports (loihi) to the very integer network
  it trained (readout membranes ``==`` over the test set, the reference's accuracy equal to the
  one finetune reported, Lava equal to the reference), its decays lie on the target's grid, its
  record holds the pins and the before/after numbers; a second finetune goes on at the same pins;
* the guard: a checkpoint whose export would differ from what was trained is not left behind;
  bad options are one line.
"""

from __future__ import annotations

import json
import re

import pytest
import torch

from export import finetune as ft
from export.fake_quant import run_fake_quant
from export.flow import quantize_for
from export.fold import fold, readout_bound
from export.quantize import QuantPolicy, pins_of
from hardware.bundle import read_bundle
from hardware.graph import Input
from hardware.targets import TARGETS, profiles
from hardware.targets.loihi.profile import LOIHI2
from lsg_deploy.cli import main
from tests.papernets import untrained
from training.checkpoint import load_checkpoint
from training.data import DataSpec, load

#: (arch, input shape, width, encoding, input_max): a chain, a residual net, event frames
NETS = {"digits-cnn": ((1, 8, 8), 1.0, "direct", 16), "digits-resnet": ((1, 8, 8), 1.0, "direct", 16),
        "vggsnn": ((2, 16, 16), 1 / 16, "event-frames", 1)}
T = 3


@pytest.mark.parametrize("profile", ["loihi2-lava-0.10-fixed_pt", "fpga-mul4", "fpga-shift"])
@pytest.mark.parametrize("arch", list(NETS))
def test_the_forward_is_the_fake_quant_network(arch, profile):
    shape, width, encoding, input_max = NETS[arch]
    net = untrained(arch, shape, encoding, input_max, width=width, timesteps=T, seed=3)
    model, spec, pixels, analog = net.model, net.spec, net.pixels, net.analog
    target = next(t for t in TARGETS.values() if profile in t.profile_names)
    graph = fold(model, spec)
    start, _, _, _ = quantize_for(target, profiles()[profile], graph, readout_bound(graph, analog, T),
                                  QuantPolicy(on_overflow="clip"))
    forward = ft.IntegerForward(model, spec, profiles()[profile], pins_of(start))
    assert ft.graphs_equal(forward.integer_graph(), start) == []
    out = forward(pixels, T)
    spikes, membranes = run_fake_quant(start, pixels, T, profiles()[profile])
    assert torch.equal(out.membranes.to(torch.int64), membranes)
    assert torch.equal(out.membranes, out.membranes.round())  # float64 holding integers
    for name, fired in spikes.items():
        assert torch.equal(out.spikes[name].bool(), fired), name
    rates = [float(s.float().mean()) for s in spikes.values()]
    assert all(0 < r < 1 for r in rates), rates  # a test of something: the layers fire, not all the time


@pytest.fixture(scope="module")
def digits_pixels() -> torch.Tensor:
    train, _, _ = load(DataSpec())
    return torch.as_tensor(train.pixels[:256])


@pytest.mark.parametrize("profile", ["loihi2-lava-0.10-fixed_pt", "fpga-mul"])
def test_gradients_are_the_float_models_where_the_grid_is_fine(default_run, digits_pixels, profile):
    """8-bit weights and a 12/10-bit decay: the integer network's straight-through gradients point
    where the float network's do (cosine >= 0.9 per weight tensor) with the same size (ratio in
    [0.8, 1.25]): the surrogate is centred on the integer spike level with its width in integer
    units.

    The loss is taken against fixed random labels: the trained net classifies its training
    images with a loss of ~0.003, so their true labels' gradient is that of the few images nearest
    a boundary and its size swings with the net (ratios 1.05 to 2.79 over three batches of one
    net; 1.62 for conv1 of the default net trained on an AMD EPYC, where float training takes
    other kernels than on the machine of the README's numbers). Random labels make every image
    pull, so the two backward passes are compared on the same ~256 signals. Measured (default
    net, seeds 1 and 2, batches of 256 to 1,024): cosines 0.94-1.00, ratios 0.89-1.14; a
    surrogate twice as wide gives ratio 0.49 on fc1, one centred at 0.8 of the spike level 0.62,
    one without the activation shift cosine 0.23 on conv1."""
    model, _ = load_checkpoint(default_run.model)
    spec = Input(tuple(model.input_shape), "direct", 16)
    x = digits_pixels
    y = torch.randint(0, 10, (len(x),), generator=torch.Generator().manual_seed(0))
    target = next(t for t in TARGETS.values() if profile in t.profile_names)
    graph = fold(model, spec)
    start, _, _, _ = quantize_for(target, profiles()[profile], graph,
                                  readout_bound(graph, x.double() / 16, model.timesteps), QuantPolicy())
    forward = ft.IntegerForward(model, spec, profiles()[profile], pins_of(start))
    torch.nn.functional.cross_entropy(forward(x, model.timesteps).logits, y).backward()
    integer = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    torch.nn.functional.cross_entropy(model(x.float() / 16).logits, y).backward()
    for name, p in model.named_parameters():
        if not name.endswith("weight"):
            continue
        a, b = integer[name].flatten().double(), p.grad.flatten().double()
        cosine = float(a @ b / (a.norm() * b.norm()))
        ratio = float(a.norm() / b.norm())
        assert cosine >= 0.9 and 0.8 <= ratio <= 1.25, (name, cosine, ratio)
    assert all(integer[f"blocks.{n}.lif.b"] != 0 for n in ("conv1", "conv2", "fc1"))  # the decays learn


def test_finetune_exports_to_the_network_it_trained(finetuned, tmp_path):
    checkpoint, printed = finetuned
    model, doc = load_checkpoint(checkpoint)
    record = ft.QuantizationRecord.from_checkpoint(doc)
    profile = profiles()[record.profile]
    assert (record.target, record.profile) == ("loihi", "loihi2-lava-0.10-fixed_pt")
    assert sorted(record.pins) == ["conv1", "conv2", "fc1", "readout"]
    history = record.history
    assert len(history["epochs"]) == 1 and history["fixed_after"] == history["epochs"][-1]["test_accuracy"]
    assert re.search(r"fixed point \d+\.\d\d% -> \d+\.\d\d%, float \d+\.\d\d% -> \d+\.\d\d%", printed)

    # decays on the target's grid: the float model's beta is the code's decay itself
    for name, lif in model.lif_layers().items():
        code = profile.beta_to_code(lif.beta.item())
        assert abs(lif.beta.item() - profile.code_to_beta(code)) < 1e-6, name

    bundle_dir, report = tmp_path / "bundle", tmp_path / "report.json"
    assert main(["export", "--target", "loihi", str(checkpoint), "--out", str(bundle_dir), "--quiet"]) == 0
    bundle = read_bundle(bundle_dir)
    assert all(r["pinned"] for r in bundle.quantization["layers"].values())
    assert (bundle_dir / "model.net").exists()  # the pins keep netx's bias grid

    # the export computes, bit for bit, what the fine-tuning forward computes
    _, test, _ = load(DataSpec.from_dict(doc["data"]))
    forward = ft.IntegerForward(model, bundle.input, profile, record.pins)
    with torch.no_grad():
        trained = forward(torch.as_tensor(test.pixels), model.timesteps).membranes.to(torch.int64)
    _, exported = run_fake_quant(bundle.graph("integer"), torch.as_tensor(test.pixels), model.timesteps, profile)
    assert torch.equal(trained, exported)

    assert main(["simulate", "--fixed-point", str(bundle_dir), "--json", str(report), "--quiet"]) == 0
    assert json.loads(report.read_text())["accuracy"]["reference"] == history["fixed_after"]
    assert main(["simulate", "--fixed-point", str(bundle_dir), "--backend", "all", "--limit", "8", "--quiet"]) == 0


def test_finetune_goes_on_at_its_pins_and_export_keeps_them(finetuned, tmp_path, capsys):
    checkpoint, _ = finetuned
    pins = ft.QuantizationRecord.from_checkpoint(load_checkpoint(checkpoint)[1]).pins
    again = tmp_path / "again"
    assert main(["finetune", str(checkpoint), "--target", "loihi", "--out", str(again), "--epochs", "1",
                 "--quiet"]) == 0
    assert ft.QuantizationRecord.from_checkpoint(load_checkpoint(again / "model.pt")[1]).pins == pins
    capsys.readouterr()
    assert main(["finetune", str(checkpoint), "--target", "loihi", "--calibrate", "--out", str(tmp_path / "x"),
                 "--quiet"]) == 2
    assert "fine-tuned for loihi2-lava-0.10-fixed_pt at its own scales" in capsys.readouterr().err

    capsys.readouterr()
    assert main(["export", "--target", "loihi", str(checkpoint), "--out", str(tmp_path / "b"),
                 "--weight-percentile", "99", "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "fine-tuned at its own scales" in err[0]
    # another target quantizes afresh, and says so
    assert main(["export", "--target", "fpga", str(checkpoint), "--out", str(tmp_path / "f"), "--quiet"]) == 0
    assert "fine-tuned for loihi" in capsys.readouterr().err
    assert not any(r["pinned"] for r in read_bundle(tmp_path / "f").quantization["layers"].values())


def test_a_checkpoint_that_would_not_export_as_trained_is_not_left(tiny_model, tmp_path, monkeypatch, capsys):
    """The guard: change what is written (the weights of conv1 doubled after training) and finetune
    refuses in one line, leaving no model.pt."""
    import training.checkpoint as checkpoint_module

    real = checkpoint_module.checkpoint_document

    def altered(model, *args, **kwargs):
        with torch.no_grad():
            model.blocks["conv1"].conv.weight.mul_(2.0)
        return real(model, *args, **kwargs)

    monkeypatch.setattr(checkpoint_module, "checkpoint_document", altered)
    out = tmp_path / "ft"
    assert main(["finetune", str(tiny_model), "--target", "fpga", "--profile", "fpga-mul4", "--out", str(out),
                 "--epochs", "1", "--quiet"]) == 2
    assert "the export of the fine-tuned checkpoint is not the network it trained" in capsys.readouterr().err
    assert not (out / "model.pt").exists()


@pytest.mark.parametrize("flags, message", [
    (["--target", "loihi", "--epochs", "0"], "epochs and batch size must be >= 1"),
    (["--target", "loihi", "--lr", "-1"], "learning rate must be positive"),
    (["--target", "fpga", "--profile", "loihi2-lava-0.10-fixed_pt"], "target fpga offers"),
    (["--target", "fpga", "--profile", "fpga-mul4", "--weight-percentile", "90"], "pass --clip"),
])
def test_bad_finetune_options_are_one_line(default_run, tmp_path, capsys, flags, message):
    assert main(["finetune", str(default_run.model), *flags, "--out", str(tmp_path / "ft"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
    assert not (tmp_path / "ft" / "model.pt").exists()


def test_finetune_never_overwrites_its_source(default_run, capsys):
    assert main(["finetune", str(default_run.model), "--target", "loihi", "--out", str(default_run.run_dir),
                 "--quiet"]) == 2
    assert "would overwrite the checkpoint" in capsys.readouterr().err


def test_a_record_of_another_version_is_refused():
    doc = {"quantization": {"format": 99}}
    with pytest.raises(ft.FinetuneError, match="not version 1"):
        ft.QuantizationRecord.from_checkpoint(doc)
    good = ft.QuantizationRecord("loihi", LOIHI2.name, {"a": ft.Pin(3, 1.5, 6)}).to_dict()
    assert ft.QuantizationRecord.from_checkpoint({"quantization": good}).pins == {"a": ft.Pin(3, 1.5, 6)}
    good["pins"]["a"]["scale"] = -1.0
    with pytest.raises(ft.FinetuneError, match="positive float"):
        ft.QuantizationRecord.from_checkpoint({"quantization": good})
    assert ft.QuantizationRecord.from_checkpoint({}) is None
    with pytest.raises(ValueError, match="learning rate must be positive"):
        ft.FinetuneConfig(lr=float("nan"))
    for bad in ({"seed": -1}, {"seed": 2**64 + 1}, {"lr": 1e30}, {"epochs": True}, {"batch_size": 1 << 20}):
        with pytest.raises(ValueError):
            ft.FinetuneConfig(**bad)
