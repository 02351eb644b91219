"""Bad records in the files a command reads back: every one is one line on stderr, exit 2, and
touches nothing (the harness and its rules: ``tests/corpus.py``, ``tests/test_bad_input.py``).

The records: a run's ``train_state.pt`` (``train --resume``), a checkpoint's ``state_dict``, a
fine-tuned checkpoint's ``quantization`` record (``export``, ``finetune``), a bundle's
``quantization`` record (``simulate``), the seed directories ``train --seeds`` and ``ablate`` read
back or resume, the seeds and learning rates they are given, and a network too large to allocate.
Each edited file is re-sealed with its own checksum code, so that the field check, not the
checksum, is what refuses it; beside the cases, tests show that the re-sealed but otherwise
unchanged files are accepted, so a case fails for the reason it names.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable

import numpy as np
import pytest
import torch
from corpus import NAN, Case, Sandbox, _reseal_checkpoint, check, simulate, toml, train

from export import finetune as ft
from lsg_deploy.cli import main
from training.checkpoint import content_digest, load_checkpoint, resume_digest
from training.config import TrainConfig
from training.loop import Split, fit, weight_bytes
from training.models import build_model

STATE = "run/train_state.pt"


# --- train --resume: train_state.pt ------------------------------------------------------------------

def _unfinish(doc: dict) -> None:
    """The default run's state (epoch 40 of 40) as if the run had stopped after epoch 39: a state
    ``--resume`` goes on from (the weights stay epoch 40's; nothing checks that)."""
    epoch = doc["epoch"] - 1
    doc.update(epoch=epoch, metrics=doc["metrics"][:epoch])
    doc["scheduler"].update(last_epoch=epoch, _step_count=epoch + 1)


def _resealed_state(sb: Sandbox, edit: Callable[[dict], None]) -> None:
    sb.run_dir()
    path = sb.root / STATE
    doc = torch.load(path, weights_only=True)
    _unfinish(doc)
    edit(doc)
    doc["sha256"] = resume_digest(doc)  # training.checkpoint's own code: the checksum matches
    torch.save(doc, path)


def resume(edit: Callable[[dict], None]) -> Callable[[Sandbox], list[str]]:
    def build(sb: Sandbox) -> list[str]:
        _resealed_state(sb, edit)
        return ["train", "--out", "run", "--resume", "--quiet"]
    return build


def setting(key: str, value) -> Callable[[dict], None]:
    return lambda doc: doc.update({key: value})


def metrics_row(index: int, row) -> Callable[[dict], None]:
    def edit(doc: dict) -> None:
        doc["metrics"][index] = row
    return edit


def adam_slot(slot: str, value) -> Callable[[dict], None]:
    def edit(doc: dict) -> None:
        doc["optimizer"]["state"][0][slot] = value
    return edit


def group(key: str, value) -> Callable[[dict], None]:
    def edit(doc: dict) -> None:
        doc["optimizer"]["param_groups"][0][key] = value
    return edit


def other_width(sb: Sandbox) -> list[str]:
    """The model state of the second, narrower checkpoint (channels [4, 8], hidden 16)."""
    tiny = torch.load(sb.request.getfixturevalue("tiny_model"), weights_only=True)["state_dict"]
    return resume(lambda doc: doc.update(model=tiny))(sb)


# --- export, finetune: a fine-tuned checkpoint's record ---------------------------------------------

def _finetuned_copy(sb: Sandbox, edit: Callable[[dict], None] | None) -> str:
    path = sb.root / "ft.pt"
    shutil.copyfile(sb.request.getfixturevalue("finetuned").model, path)  # conftest's, shared
    if edit is not None:
        doc = torch.load(path, weights_only=True)
        edit(doc["quantization"])
        _reseal_checkpoint(doc)
        torch.save(doc, path)
    return "ft.pt"


def record(edit: Callable[[dict], None], command: str = "export") -> Callable[[Sandbox], list[str]]:
    def build(sb: Sandbox) -> list[str]:
        model = _finetuned_copy(sb, edit)
        if command == "export":
            return ["export", "--target", "loihi", model, "--out", "bundle", "--quiet"]
        return ["finetune", "--target", "loihi", model, "--out", "again", "--epochs", "1", "--quiet"]
    return build


def pin(field: str, value, node: str = "conv1") -> Callable[[dict], None]:
    def edit(rec: dict) -> None:
        rec["pins"][node][field] = value
    return edit


def finetune(*extra: str) -> Callable[[Sandbox], list[str]]:
    def build(sb: Sandbox) -> list[str]:
        return ["finetune", "--target", "loihi", sb.run_dir(), "--out", "ft", "--epochs", "1", "--quiet", *extra]
    return build


# --- export: a checkpoint whose state_dict is not a table ---------------------------------------------

def unsealed_state(value) -> Callable[[Sandbox], list[str]]:
    """``state_dict`` replaced and not re-sealed: no checksum can be computed over it."""
    def build(sb: Sandbox) -> list[str]:
        path = sb.root / sb.run_dir()
        doc = torch.load(path, weights_only=True)
        doc["state_dict"] = value
        torch.save(doc, path)
        return ["export", "--target", "loihi", "run/model.pt", "--out", "bundle", "--quiet"]
    return build


# --- simulate: a bundle's quantization record -------------------------------------------------------

def quantization(edit: Callable[[dict], None]) -> Callable[[Sandbox], list[str]]:
    return simulate(doc=lambda d: edit(d["quantization"]))


def every_layer(key: str, value) -> Callable[[dict], None]:
    def edit(q: dict) -> None:
        for layer in q["layers"].values():
            layer[key] = value
    return edit


# --- train --seeds, ablate: seed directories of another configuration ---------------------------------

def seed_dir(rel: str, unfinished: bool = False) -> Callable[[Sandbox], None]:
    """The default run (seed 0, lsg, 40 epochs) copied to ``rel``; ``unfinished``: only its
    ``train_state.pt``, stopped after epoch 39 (it would be resumed)."""
    def setup(sb: Sandbox) -> None:
        shutil.copytree(sb.pipeline.run_dir, sb.root / rel)
        if unfinished:
            (sb.root / rel / "model.pt").unlink()
            path = sb.root / rel / "train_state.pt"
            doc = torch.load(path, weights_only=True)
            _unfinish(doc)
            doc["sha256"] = resume_digest(doc)
            torch.save(doc, path)
    return setup


def seeds(*args: str, setup: Callable[[Sandbox], None] = lambda sb: None,
          command: str = "train") -> Callable[[Sandbox], list[str]]:
    def build(sb: Sandbox) -> list[str]:
        setup(sb)
        return [command, "--out", "many", "--quiet", *args]
    return build


CASES = [
    # train --resume: train_state.pt re-sealed after an edit
    Case("resume-metrics-string", resume(setting("metrics", "many")), ("metrics",)),
    Case("resume-metrics-short", resume(lambda d: d.update(metrics=d["metrics"][:10])), ("metrics",)),
    Case("resume-metrics-row-not-dict", resume(metrics_row(3, 0.5)), ("metrics row 4",)),
    Case("resume-metrics-row-string-value", resume(metrics_row(3, {"epoch": 4, "train_loss": "low"})),
         ("metrics row 4",)),
    Case("resume-metrics-row-nan", resume(lambda d: d["metrics"][5].update(test_loss=NAN)), ("metrics row 6",)),
    Case("resume-metrics-row-columns", resume(lambda d: d["metrics"][5].pop("lr")), ("metrics row 6",)),
    Case("resume-epoch-negative", resume(setting("epoch", -3)), ("epoch",)),
    Case("resume-epoch-string", resume(setting("epoch", "1")), ("epoch",)),
    Case("resume-epoch-beyond-config", resume(setting("epoch", 41)), ("epoch", "40")),
    Case("resume-classes-not-the-datasets", resume(setting("classes", 3)), ("classes",)),
    Case("resume-data-unknown-dataset", resume(lambda d: d["data"].update(dataset="mnist")), ("mnist",)),
    Case("resume-data-other-dataset", resume(lambda d: d["data"].update(dataset="digits-events")), ("data",)),
    Case("resume-data-not-a-table", resume(setting("data", "digits")), ("data",)),
    Case("resume-model-other-width", other_width, ("model",)),
    Case("resume-model-tensor", resume(setting("model", torch.zeros(3))), ("model",)),
    Case("resume-optimizer-empty", resume(setting("optimizer", {})), ("optimizer",)),
    Case("resume-optimizer-state-empty", resume(lambda d: d["optimizer"].update(state={})), ("optimizer",)),
    Case("resume-optimizer-slot-shape", resume(adam_slot("exp_avg", torch.zeros(3))), ("optimizer", "exp_avg")),
    Case("resume-optimizer-slot-nan", resume(adam_slot("exp_avg_sq", torch.full((16, 1, 3, 3), NAN))),
         ("optimizer", "exp_avg_sq")),
    Case("resume-optimizer-two-groups", resume(lambda d: d["optimizer"]["param_groups"].append(
        dict(d["optimizer"]["param_groups"][0]))), ("optimizer",)),
    Case("resume-optimizer-lr-huge", resume(group("lr", 1e30)), ("optimizer", "lr")),
    Case("resume-optimizer-eps-string", resume(group("eps", "tiny")), ("optimizer", "eps")),
    Case("resume-scheduler-list", resume(setting("scheduler", [1, 2])), ("scheduler",)),
    Case("resume-scheduler-t-max", resume(lambda d: d["scheduler"].update(T_max=5)), ("scheduler", "T_max")),
    Case("resume-scheduler-base-lrs-string", resume(lambda d: d["scheduler"].update(base_lrs="0.002")),
         ("scheduler", "base_lrs")),
    # export: a state_dict that is no table of tensors (no checksum can be computed over it)
    Case("export-state-dict-tensor", unsealed_state(torch.zeros(4, 4)), ("model.pt", "corrupt")),
    Case("export-state-dict-list", unsealed_state([torch.zeros(3)]), ("model.pt", "corrupt")),
    # export and finetune: a fine-tuned checkpoint's quantization record, re-sealed
    Case("export-pin-bias-exp-huge", record(pin("bias_exp", 100000)), ("bias_exp",)),
    Case("finetune-pin-bias-exp-huge", record(pin("bias_exp", 100000), "finetune"), ("bias_exp",)),
    Case("export-pin-vth-beyond-profile", record(pin("vth", 1 << 40)), ("vth",)),
    Case("export-pin-vth-bool", record(pin("vth", True)), ("vth",)),
    Case("export-pin-scale-string", record(pin("scale", "3630.0")), ("scale",)),
    Case("export-pin-unknown-node", record(lambda r: r["pins"].update(conv9=dict(r["pins"]["conv1"]))), ("conv9",)),
    Case("finetune-pin-unknown-node", record(lambda r: r["pins"].update(conv9=dict(r["pins"]["conv1"])),
                                             "finetune"), ("conv9",)),
    Case("export-pin-missing", record(lambda r: r["pins"].pop("fc1")), ("fc1",)),
    Case("export-pins-empty", record(lambda r: r.update(pins={})), ("pins",)),
    Case("export-weight-percentile-word", record(setting("weight_percentile", "ninety")), ("weight_percentile",)),
    Case("finetune-weight-percentile-word", record(setting("weight_percentile", "ninety"), "finetune"),
         ("weight_percentile",)),
    Case("export-weight-percentile-nan", record(setting("weight_percentile", NAN)), ("weight_percentile",)),
    Case("export-weight-percentile-over-100", record(setting("weight_percentile", 250.0)), ("weight_percentile",)),
    Case("export-record-target-unknown", record(setting("target", "spinnaker")), ("target", "spinnaker")),
    Case("export-record-profile-of-other-target", record(setting("profile", "fpga-mul")), ("profile", "fpga-mul")),
    Case("export-record-history-list", record(setting("history", [1, 2])), ("history",)),
    # finetune: options in train's ranges
    Case("finetune-seed-negative", finetune("--seed", "-1"), ("seed",)),
    Case("finetune-seed-beyond-uint64", finetune("--seed", "18446744073709551617"), ("seed",)),
    Case("finetune-lr-huge", finetune("--lr", "1e30"), ("learning rate",)),
    Case("train-lr-huge", train("--lr", "1e30"), ("lr",)),
    # simulate: a bundle's quantization record, re-sealed
    Case("simulate-quantization-layers-not-objects",
         quantization(lambda q: q.update(layers={name: 5 for name in q["layers"]})), ("quantization.layers",)),
    Case("simulate-quantization-layers-list", quantization(lambda q: q.update(layers=[1, 2])),
         ("quantization.layers",)),
    Case("simulate-quantization-layer-missing", quantization(lambda q: q["layers"].pop("fc1")),
         ("quantization.layers",)),
    Case("simulate-quantization-clipped-string", quantization(every_layer("clipped", "none")), ("clipped",)),
    Case("simulate-quantization-pinned-string", quantization(every_layer("pinned", "yes")), ("pinned",)),
    Case("simulate-quantization-policy-missing", quantization(lambda q: q.pop("policy")), ("policy",)),
    Case("simulate-quantization-calibration-foreign", quantization(lambda q: q.update(calibration={
        "samples": 8, "layers": {"conv1": {"chosen": 99.0, "candidates": []}}})), ("calibration",)),
    # train --seeds and ablate: seeds, and seed directories holding another configuration's run
    Case("train-seeds-count-absurd", seeds("--seeds", "1000000000000000000000000000000"), ("--seeds",)),
    Case("ablate-seeds-count-absurd", seeds("--seeds", "100000000000000000000000", command="ablate"), ("--seeds",)),
    Case("train-seeds-seed-beyond-range", seeds("--seeds", "0,4294967296"), ("4294967296",)),
    Case("train-seeds-seed-negative", seeds("--seeds=-1,2"), ("-1",)),
    Case("train-seeds-finished-of-other-seed", seeds("--seeds", "1,2", setup=seed_dir("many/seed-2")),
         ("seed-2", "seed")),
    Case("train-seeds-unfinished-of-other-seed", seeds("--seeds", "1,2", setup=seed_dir("many/seed-2", True)),
         ("seed-2", "train_state.pt")),
    Case("ablate-row-of-other-mode", seeds("--tables", "1", "--seeds", "1", setup=seed_dir("many/fixed-a1/seed-0"),
                                           command="ablate"), ("fixed-a1", "mode")),
    Case("ablate-row-of-other-lr", seeds("--tables", "1", "--seeds", "1", "--lr", "0.01",
                                         setup=seed_dir("many/lsg/seed-0"), command="ablate"), ("lsg/seed-0", "lr")),
    # train: a network whose weights cannot be allocated (~1.25e12 bytes under Adam)
    Case("train-weights-too-large", toml(channels="[4096, 4096]", width="16.0", hidden="65536"), ("parameters",)),
]


def test_corpus_ids_unique():
    assert len({c.id for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_records(case: Case, default_run, cli, request, tmp_path):
    check(case, default_run, cli, request, tmp_path)


# --- the controls: the re-sealed files without the edit are accepted ------------------------------------

def test_a_resealed_unfinished_state_resumes(default_run, tmp_path):
    """The cases' state, unedited, trains its last epoch: the cases fail on their edit alone."""
    sandbox = Sandbox(tmp_path, default_run, None)
    _resealed_state(sandbox, lambda doc: None)
    assert main(["train", "--out", str(tmp_path / "run"), "--resume", "--quiet"]) == 0
    assert torch.load(tmp_path / STATE, weights_only=True)["epoch"] == 40


def test_a_resealed_record_exports(finetuned, tmp_path):
    path = tmp_path / "ft.pt"
    doc = torch.load(finetuned.model, weights_only=True)
    _reseal_checkpoint(doc)
    torch.save(doc, path)
    assert main(["export", "--target", "loihi", str(path), "--out", str(tmp_path / "b"), "--quiet"]) == 0


def test_a_finished_seed_of_the_same_config_is_read_back(default_run, tmp_path, capsys):
    """The default run (seed 0, default settings) as seed 0 of ``train --seeds 1``: read back."""
    shutil.copytree(default_run.run_dir, tmp_path / "many" / "seed-0")
    assert main(["train", "--seeds", "1", "--out", str(tmp_path / "many")]) == 0
    assert "finished before" in capsys.readouterr().out
    summary = json.loads((tmp_path / "many" / "summary.json").read_text())
    assert summary["final"]["0"] == load_checkpoint(default_run.model)[1]["metrics"][-1]


def test_content_digest_refuses_what_is_no_table_of_tensors():
    for state in (torch.zeros(3), [torch.zeros(3)], {"w": 1.0}, {3: torch.zeros(3)}):
        with pytest.raises(TypeError, match="state_dict must map names to tensors"):
            content_digest({"state_dict": state})


# --- memory and divergence ---------------------------------------------------------------------------

def test_weights_are_counted_without_allocating_them():
    small = TrainConfig(channels=(4, 8), hidden=16)
    built = build_model(small, (1, 8, 8), 10)  # the real one, small enough to allocate
    count, buffers = (sum(t.numel() for t in ts) for ts in (built.parameters(), built.buffers()))
    assert weight_bytes(small, (1, 8, 8), 10) == (count, 4 * (4 * count + buffers))  # Adam: 2 slots and a gradient
    assert weight_bytes(small.replace(optimizer="sgd"), (1, 8, 8), 10) == (count, 4 * (3 * count + buffers))
    huge = TrainConfig(width=16.0, hidden=65536)
    params, held = weight_bytes(huge, (1, 8, 8), 10)
    assert params > 2e9 and held >= 16 * params  # 8 GiB of weights: counted, not allocated


def test_fit_refuses_weights_beyond_the_memory_limit_before_building_them():
    x = np.zeros((4, 1, 8, 8), np.float32)
    data = Split(x, np.arange(4) % 2)
    with pytest.raises(MemoryError, match=r"parameters, which need about .* GiB .* more than the 6\.0 GiB"):
        fit(TrainConfig(width=16.0, hidden=65536, epochs=1), data, data, 2, memory_limit=6 << 30)


class _PoisonedForward:
    """A linear 'network' whose weight gradient is infinite: Adam's next step makes it NaN."""

    def __init__(self):
        self.model = torch.nn.Linear(4, 2)
        self.model.weight.register_hook(lambda grad: torch.full_like(grad, float("inf")))

    def __call__(self, inputs: torch.Tensor, timesteps: int) -> ft.Output:
        logits = self.model(inputs.float())
        return ft.Output(logits, logits[:, None], {})


def test_a_diverging_finetuning_stops_before_its_epoch_is_written():
    data = (np.ones((8, 4)), np.zeros(8, dtype=np.int64))
    written = []
    with pytest.raises(ft.FinetuneError, match="NaN or infinite in epoch 1"):
        ft.train_epochs(_PoisonedForward(), ft.FinetuneConfig(epochs=2, batch_size=4), data, data, 1,
                        on_epoch=written.append)
    assert written == []
