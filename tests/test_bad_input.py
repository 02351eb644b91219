"""Bad input corpus: every kind of bad input is one line on stderr, exit 2, and touches nothing.

The harness (``test_bad_input``, one parametrized test):

1. a case's ``build`` function lays out its input in a fresh sandbox directory (under
   ``tmp_path``): a copy of the session's trained run (``run/model.pt``, ``run/metrics.csv``)
   or exported bundle (``bundle/``), possibly edited, a TOML file, a stray regular file, ...
   and returns the CLI arguments, relative to the sandbox;
2. the sandbox tree is snapshotted (relative path -> (type, SHA-256 of the bytes or link
   target, st_mode));
3. ``python -m lsg_deploy.cli ARGS`` runs with the sandbox (or a subdirectory) as working directory,
   ``PYTHONWARNINGS`` unset and a 120 s timeout (``--quiet`` is always passed: progress bars
   are not errors), as a process of its own forked from ``tests/cli_server.py``, which has
   imported the CLI once (a fresh interpreter spent ~3 s of each case importing torch);
4. asserted: exit code 2; stderr is exactly one line starting ``lsg-deploy: error:``; no
   ``Traceback`` in stdout or stderr; the case's substrings (loose: the bad key, field or path)
   in that line; and the sandbox snapshot unchanged: nothing created (not even the intended
   output), changed (bytes or mode) or removed.

Edited checkpoints and bundles are re-sealed (``_reseal_checkpoint`` / ``_reseal_bundle``) so
that a field-specific check, not the checksum, is what refuses them. Byte-level corruption is
never re-sealed: the checksums must catch it.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from corpus import (
    INF,
    NAN,
    Case,
    Planted,
    _diff,
    _snapshot,
    check,
    edited_source,
    export,
    flip_middle,
    force_flag,
    foreign_source,
    in_subdir,
    layer_field,
    mkdir,
    onnx_export,
    rename_layer,
    simulate,
    symlink,
    tensor,
    toml,
    torch_bytes,
    train,
)

W1, RV2, B3 = "blocks.conv1.conv.weight", "blocks.conv2.bn.norm.running_var", "blocks.fc1.lif.b"

CASES = [
    # train: counts of the wrong type or range, in TOML and on the command line
    Case("train-toml-epochs-float", toml(epochs="1.5"), ("epochs",)),
    Case("train-toml-epochs-negative", toml(epochs="-2"), ("epochs",)),
    Case("train-toml-epochs-bool", toml(epochs="true"), ("epochs",)),
    Case("train-toml-epochs-string", toml(epochs='"3"'), ("epochs",)),
    Case("train-toml-timesteps-zero", toml(timesteps="0"), ("timesteps",)),
    Case("train-toml-timesteps-float", toml(timesteps="2.0"), ("timesteps",)),
    Case("train-toml-timesteps-absurd", toml(timesteps="1000000000"), ("timesteps",)),
    Case("train-toml-batch-size-zero", toml(batch_size="0"), ("batch_size",)),
    Case("train-toml-batch-size-float", toml(batch_size="32.5"), ("batch_size",)),
    Case("train-toml-batch-size-absurd", toml(batch_size="9223372036854775807"), ("batch_size",)),
    Case("train-toml-hidden-negative", toml(hidden="-16"), ("hidden",)),
    Case("train-toml-hidden-bool", toml(hidden="false"), ("hidden",)),
    Case("train-toml-hidden-absurd", toml(hidden="1000000000000"), ("hidden",)),
    Case("train-toml-channels-zero", toml(channels="[4, 0]"), ("channels",)),
    Case("train-toml-channels-float", toml(channels="[4.5, 8]"), ("channels",)),
    Case("train-toml-channels-string", toml(channels='"48"'), ("channels",)),
    Case("train-toml-channels-too-many", toml(channels="[4, 4, 4, 4, 4]"), ("channels",)),
    Case("train-toml-lr-string", toml(lr='"fast"'), ("lr",)),
    Case("train-toml-loss-int", toml(loss="3"), ("loss",)),
    Case("train-toml-mode-unknown", toml(mode='"plif"'), ("mode",)),
    Case("train-toml-seed-too-large", toml(seed=str(2**40)), ("seed",)),
    Case("train-toml-seed-negative", toml(seed="-1"), ("seed",)),
    Case("train-cli-seed-too-large", train("--seed", str(2**40)), ("seed",)),
    Case("train-toml-test-fraction-all", toml(test_fraction="0.999"), ("test_fraction",)),
    Case("train-toml-test-fraction-tiny", toml(test_fraction="0.0001"), ("test_fraction",)),
    # train: non-finite floats
    Case("train-cli-lr-nan", train("--lr", "nan"), ("lr",)),
    Case("train-cli-lr-inf", train("--lr", "inf"), ("lr",)),
    Case("train-cli-lr-b-scale-nan", train("--lr-b-scale", "nan"), ("lr_b_scale",)),
    Case("train-cli-lr-b-scale-zero", train("--lr-b-scale", "0"), ("lr_b_scale must be positive",)),
    Case("train-cli-alpha-nan", train("--alpha", "nan"), ("alpha",)),
    Case("train-toml-v-th-inf", toml(v_th="inf"), ("v_th",)),
    Case("train-toml-alpha-nan", toml(alpha="nan"), ("alpha",)),
    Case("train-toml-weight-decay-inf", toml(weight_decay="inf"), ("weight_decay",)),
    # train: the config file itself
    Case("train-toml-unknown-key", toml(epochz="3"), ("epochz",)),
    Case("train-toml-train-not-a-table", toml("train = 5\n"), ("train",)),
    Case("train-toml-syntax-error", toml("[train\nepochs = \n"), ("c.toml",)),
    Case("train-config-missing", train("--config", "nope.toml"), ("nope.toml",)),
    Case("train-config-is-directory", train("--config", "cfgdir", setup=mkdir("cfgdir")), ("cfgdir",)),
    Case("train-config-not-utf8", train("--config", "c.toml", setup=lambda sb: sb.write("c.toml", b"\xff\xfe[")),
         ("c.toml",)),
    # train: arguments and output paths
    Case("train-cli-mode-unknown", train("--mode", "plif"), ("plif",)),
    Case("train-cli-epochs-not-int", train("--epochs", "abc"), ("--epochs",)),
    Case("train-cli-batch-size-negative", train("--batch-size", "-4"), ("batch",)),
    Case("train-out-is-file", train(setup=lambda sb: sb.write("notes.txt"), out="notes.txt"), ("notes.txt",)),
    Case("train-out-under-file", train(setup=lambda sb: sb.write("notes.txt"), out="notes.txt/sub"),
         ("notes.txt",)),
    # export: the checkpoint file
    Case("export-checkpoint-missing", export(model="run/nope.pt"), ("nope.pt",)),
    Case("export-checkpoint-is-directory", export(model="run"), ("run",)),
    Case("export-checkpoint-empty", export(raw=lambda b: b""), ("model.pt",)),
    Case("export-checkpoint-truncated", export(raw=lambda b: b[: len(b) // 2]), ("model.pt",)),
    Case("export-checkpoint-flipped-bytes", export(raw=flip_middle), ("model.pt",)),
    Case("export-checkpoint-planted-code", export(raw=lambda b: torch_bytes({"x": Planted()})), ("model.pt",)),
    Case("export-checkpoint-not-a-dict", export(raw=lambda b: torch_bytes([1, 2, 3])), ("model.pt",)),
    # export: values in the checkpoint
    Case("export-nan-conv-weight", export(edit=tensor(W1, NAN)), ("conv1",)),
    Case("export-inf-running-var", export(edit=tensor(RV2, INF)), ("conv2",)),
    Case("export-negative-running-var", export(edit=tensor(RV2, -1.0)), ("conv2",)),
    Case("export-nan-lif-b", export(edit=tensor(B3, NAN)), ("fc1",)),
    Case("export-bias-out-of-range", export(edit=tensor("blocks.conv2.bn.shift", 1e7)), ("conv2",)),
    Case("export-clip-nan-weight", export("--clip", edit=tensor(W1, NAN)), ("conv1",)),
    # export: the checkpoint's structure
    Case("export-state-missing-key", export(edit=lambda d: d["state_dict"].pop("blocks.conv2.bn.norm.running_mean")),
         ("running_mean",)),
    Case("export-state-extra-key", export(edit=lambda d: d["state_dict"].update({"blocks.bogus.w": torch.zeros(3)})),
         ("bogus",)),
    Case("export-state-wrong-shape", export(edit=lambda d: d["state_dict"].update({W1: torch.zeros(16, 1, 5, 5)})),
         ("conv1",)),
    Case("export-config-wrong-type", export(edit=lambda d: d["config"].update(hidden="128")), ("hidden",)),
    Case("export-config-bad-channels", export(edit=lambda d: d["config"].update(channels=[4, 4, 4, 4, 4])),
         ("channels",)),
    Case("export-config-missing", export(edit=lambda d: d.pop("config")), ("config",)),
    Case("export-data-bad-test-fraction", export(edit=lambda d: d["data"].update(test_fraction=2.0)),
         ("test_fraction",)),
    Case("export-checkpoint-other-version", export(edit=lambda d: d.update(format_version=99)), ("99",)),
    # export: options
    Case("export-unknown-target", lambda sb: ["export", "--target", "spinnaker", sb.run_dir(), "--out", "bundle",
                                              "--quiet"], ("spinnaker",)),
    Case("export-weight-percentile-zero", export("--weight-percentile", "0"), ("percentile",)),
    Case("export-weight-percentile-nan", export("--weight-percentile", "nan"), ("percentile",)),
    Case("export-weight-percentile-over-100", export("--weight-percentile", "150"), ("percentile",)),
    Case("export-weight-percentile-not-number", export("--weight-percentile", "max"), ("percentile",)),
    # export: options of the other kind of target (onnx: float, no profile; loihi, fpga: no unrolled model)
    Case("export-onnx-profile", export("--profile", "fpga-mul", target="onnx"), ("--profile", "onnx")),
    Case("export-onnx-clip-percentile", export("--clip", "--weight-percentile", "90", target="onnx"),
         ("--clip", "--weight-percentile")),
    Case("export-loihi-unrolled", export("--unrolled"), ("--unrolled", "loihi")),
    Case("export-onnx-out-nonempty-directory", export(target="onnx", out="work",
                                                      setup=lambda sb: sb.write("work/thesis.tex")), ("work",)),
    # export: --out must never destroy anything
    Case("export-out-is-file", export(out="notes.txt", setup=lambda sb: sb.write("notes.txt")), ("notes.txt",)),
    Case("export-out-nonempty-directory", export(out="work", setup=lambda sb: sb.write("work/thesis.tex")),
         ("work",)),
    Case("export-out-checkpoint-directory", export(out="run"), ("run",)),
    Case("export-out-checkpoint-directory-force", export("--force", out="run", setup=force_flag), ("run",)),
    Case("export-out-current-directory", export(out=".")),
    Case("export-out-current-directory-force", export("--force", out=".", setup=force_flag)),
    Case("export-out-ancestor-of-cwd-force", export("--force", model="../../run/model.pt", out="..", setup=in_subdir)),
    Case("export-out-symlink-to-directory", export(out="link", setup=symlink), ("link",)),
    Case("export-out-under-file", export(out="notes.txt/b", setup=lambda sb: sb.write("notes.txt")),
         ("notes.txt",)),
    # simulate: the bundle directory and its files
    Case("simulate-onnx-export", onnx_export, ("onnx", "ONNX export, not a bundle")),
    Case("simulate-bundle-missing", simulate(bundle="nobundle"), ("nobundle",)),
    Case("simulate-bundle-is-file", simulate(bundle="notes.txt", setup=lambda sb: sb.write("notes.txt")),
         ("notes.txt",)),
    Case("simulate-not-a-bundle", simulate(bundle="work", setup=lambda sb: sb.write("work/thesis.tex")), ("work",)),
    Case("simulate-bundle-json-not-json", simulate(files={"bundle.json": lambda sb, b: b"{not json"}),
         ("bundle.json",)),
    Case("simulate-bundle-json-not-object", simulate(files={"bundle.json": lambda sb, b: b"[1, 2]"}),
         ("bundle.json",)),
    Case("simulate-bundle-other-version", simulate(doc=lambda d: d.update(format_version=99)), ("99",)),
    Case("simulate-arrays-truncated", simulate(files={"arrays.npz": lambda sb, b: b[: len(b) // 2]}),
         ("arrays.npz",)),
    Case("simulate-arrays-flipped-bytes", simulate(files={"arrays.npz": lambda sb, b: flip_middle(b)}),
         ("arrays.npz",)),
    Case("simulate-arrays-missing", simulate(files={"arrays.npz": lambda sb, b: None}), ("arrays.npz",)),
    Case("simulate-bundle-json-edited-unsealed", simulate(files={"bundle.json": lambda sb, b: b.replace(
        b'"timesteps": 4', b'"timesteps": 5', 1)}), ("bundle.json",)),
    # simulate: bundle contents that do not hold together
    Case("simulate-layer-vth-float", simulate(doc=layer_field("integer", 0, "vth", 3.5)), ("vth",)),
    Case("simulate-layer-dv-string", simulate(doc=layer_field("integer", 1, "dv", "12")), ("dv",)),
    Case("simulate-layer-beta-nan", simulate(doc=layer_field("float", 0, "beta", NAN)), ("beta",)),
    Case("simulate-layer-renamed", simulate(doc=rename_layer, arrays=lambda a: {
        k.replace("/conv2/", "/convX/"): v for k, v in a.items()}), ("conv",)),
    Case("simulate-graph-missing", simulate(doc=lambda d: d.pop("graph")), ("graph",)),
    Case("simulate-input-max-float", simulate(doc=lambda d: d["input"].update(input_max=16.5)), ("input_max",)),
    Case("simulate-input-encoding-unknown", simulate(doc=lambda d: d["input"].update(encoding="rate")),
         ("encoding",)),
    Case("simulate-edge-source-unknown", simulate(doc=lambda d: d["graph"]["integer"]["edges"][1].update(
        source="nowhere")), ("nowhere",)),
    Case("simulate-artifact-unlisted", simulate(doc=lambda d: d["artifacts"].update(extra={"file": "x.bin"})),
         ("x.bin",)),
    Case("simulate-timesteps-differ", simulate(doc=lambda d: d.update(timesteps=d["timesteps"] + 2)),
         ("timesteps",)),
    Case("simulate-float-weight-nan", simulate(arrays=lambda a: {
        k: (np.full_like(v, NAN) if k == "float/edges/conv1/weight" else v) for k, v in a.items()}), ("conv1",)),
    Case("simulate-source-model-foreign", simulate(files={"source_model.pt": foreign_source}),
         ("source_model.pt",)),
    Case("simulate-source-model-foreign-resealed", simulate(files={"source_model.pt": foreign_source},
                                                            reseal_files=True), ("source",)),
    Case("simulate-source-model-edited-resealed", simulate(files={"source_model.pt": edited_source},
                                                           reseal_files=True), ("source",)),
    Case("simulate-arrays-object-dtype", simulate(arrays=lambda a: {**a, "float/nodes/conv1/bias": np.array(
        [{"x": 1}] * len(a["float/nodes/conv1/bias"]), dtype=object)}), ("arrays.npz",)),
    Case("simulate-source-model-missing", simulate(files={"source_model.pt": lambda sb, b: None}),
         ("source_model.pt",)),
    # simulate: options and outputs
    Case("simulate-limit-zero", simulate("--limit", "0"), ("limit",)),
    Case("simulate-limit-negative", simulate("--limit", "-3"), ("limit",)),
    Case("simulate-limit-not-int", simulate("--limit", "abc"), ("--limit",)),
    Case("simulate-backend-unknown", simulate("--backend", "spinnaker"), ("spinnaker",)),
    Case("simulate-json-is-directory", simulate(setup=lambda sb: sb.write("report.json/keep.txt")),
         ("report.json",)),
    Case("simulate-json-under-file", simulate(json_out="notes.txt/r.json", setup=lambda sb: sb.write("notes.txt")),
         ("notes.txt",)),
    Case("simulate-json-over-bundle-file", simulate(json_out="bundle/bundle.json"), ("bundle.json",)),
    Case("simulate-lava-interpreter-fails", simulate("--backend", "lava", "--limit", "5",
                                                     env={"LSG_LAVA_PYTHON": "/bin/false"}), ("/bin/false",)),
    Case("simulate-lava-interpreter-missing", simulate("--backend", "lava", "--limit", "5",
                                                       env={"LSG_LAVA_PYTHON": "/nonexistent"}), ("/nonexistent",)),
]



def test_the_harness_fails_what_is_not_a_clean_refusal(default_run, cli, request, tmp_path):
    """So that the corpus can fail: a good command (simulate on the intact bundle: exit 0, a report
    written) fails ``check``, and its snapshot sees a file's bytes or mode change. The ids are unique."""
    assert len(CASES) >= 45 and len({c.id for c in CASES}) == len(CASES)
    with pytest.raises(AssertionError, match=r"\nexit 0\n"):
        check(Case("not-bad", simulate("--limit", "2")), default_run, cli, request, tmp_path)
    before = _snapshot(tmp_path)
    (tmp_path / "sandbox" / "report.json").chmod(0o600)
    (tmp_path / "sandbox" / "bundle" / "bundle.json").write_bytes(b"{}")
    assert _diff(before, _snapshot(tmp_path)) == ("created [], removed [], changed ['sandbox/bundle/bundle.json', "
                                                  "'sandbox/report.json']")


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case: Case, default_run, cli, request, tmp_path):
    check(case, default_run, cli, request, tmp_path)
