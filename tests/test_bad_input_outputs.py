"""Bad-input corpus, outputs: no forged manifest, second command or link deletes a user's files.

The harness and its rules are :mod:`corpus`'s (``tests/test_bad_input.py`` describes them): each
case is one line on stderr, exit 2, and the sandbox unchanged byte for byte and mode for mode.

What is "ours" (``lsg_deploy.outputs``): an earlier export whose manifest verifies, lists every
file with its SHA-256 and lists only names an export writes; a run directory holding only the
names a run writes; a fine-tuning output holding only a ``model.pt`` fine-tuned from the same
checkpoint. A forged manifest with a correct digest still names a file no export writes, so
the names are checked too.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from corpus import TINY_ARGS, Case, Sandbox, check, export, flip_middle, in_subdir, symlink, train

from lsg_deploy.cli import build_parser, main

THESIS = b"\\documentclass{article} my thesis\n"


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _forged_bundle(digest_right: bool, listed_right: bool) -> Callable[[Sandbox], None]:
    """``deploy/``: the user's ``thesis.tex`` and a bare ``bundle.json`` listing it, with its
    SHA-256 wrong or right, and the document's own digest wrong or recomputed."""
    from hardware.bundle import FORMAT_NAME, FORMAT_VERSION, document_digest

    def setup(sb: Sandbox) -> None:
        sb.write("deploy/thesis.tex", THESIS)
        doc = {"format": FORMAT_NAME, "format_version": FORMAT_VERSION,
               "files": {"thesis.tex": _sha(THESIS) if listed_right else "0" * 64}}
        doc["sha256"] = document_digest(doc) if digest_right else "0" * 64
        sb.write("deploy/bundle.json", json.dumps(doc))
    return setup


def _real_bundle_listing_thesis(reseal: bool) -> Callable[[Sandbox], None]:
    """A genuine bundle copied to ``bundle/``, with the user's ``thesis.tex`` added to it and to
    its manifest: the digests recomputed (``reseal``), or the file's left wrong."""
    def setup(sb: Sandbox) -> None:
        sb.bundle(doc=lambda d: d["files"].update({"thesis.tex": "0" * 64}),
                  files={"thesis.tex": lambda sb, old: THESIS}, reseal_files=reseal)
    return setup


def _corrupt_bundle(sb: Sandbox) -> None:
    """An earlier bundle of ours whose arrays.npz lost bytes: not replaced without --force."""
    sb.bundle(files={"arrays.npz": lambda sb, old: flip_middle(old)})


def _forged_onnx(digest_right: bool, name: str = "thesis.tex") -> Callable[[Sandbox], None]:
    """``deploy/``: the user's file ``name`` and an ``onnx.json`` listing it."""
    from export.onnx_format import FORMAT_NAME, FORMAT_VERSION

    def setup(sb: Sandbox) -> None:
        sb.write(f"deploy/{name}", THESIS)
        doc = {"format": FORMAT_NAME, "format_version": FORMAT_VERSION,
               "files": {name: _sha(THESIS) if digest_right else "0" * 64}}
        sb.write("deploy/onnx.json", json.dumps(doc))
    return setup


def _onnx_export(edit: Callable[[Path], None]) -> Callable[[Sandbox], None]:
    """A genuine ONNX export in ``deploy/`` (written here, before the snapshot), then ``edit``-ed."""
    def setup(sb: Sandbox) -> None:
        assert main(["export", "--target", "onnx", str(sb.root / "run" / "model.pt"), "--out",
                     str(sb.root / "deploy"), "--quiet"]) == 0
        edit(sb.root / "deploy")
    return setup


def _flip_onnx_model(directory: Path) -> None:
    path = directory / "model.onnx"
    path.write_bytes(flip_middle(path.read_bytes()))


def _list_thesis_in_onnx(directory: Path) -> None:
    (directory / "thesis.tex").write_bytes(THESIS)
    doc = json.loads((directory / "onnx.json").read_text())
    doc["files"]["thesis.tex"] = _sha(THESIS)
    (directory / "onnx.json").write_text(json.dumps(doc))


def force_flags(sb: Sandbox) -> None:
    """Cases passing ``--force`` to train, ablate or finetune mean that option (were it gone, the
    error would be argparse's, which a needle-less case would accept)."""
    parser = build_parser()
    assert parser.parse_args(["train", "--out", "r", "--force"]).force is True
    assert parser.parse_args(["ablate", "--out", "r", "--force"]).force is True
    assert parser.parse_args(["finetune", "m.pt", "--target", "loihi", "--out", "r", "--force"]).force is True


def finetune(*extra: str, out: str = "ft", setup: Callable[[Sandbox], object] = lambda sb: None) -> Callable:
    def build(sb: Sandbox) -> list[str]:
        ckpt = sb.run_dir()
        setup(sb)
        return ["finetune", ckpt, "--target", "loihi", "--out", out, "--epochs", "1", "--quiet", *extra]
    return build


def _another_model(rel: str) -> Callable[[Sandbox], None]:
    """``rel/model.pt``: another run's checkpoint (the tiny model), nothing else."""
    def setup(sb: Sandbox) -> None:
        sb.write(f"{rel}/model.pt", sb.request.getfixturevalue("tiny_model").read_bytes())
    return setup


def _run_copy(rel: str) -> Callable[[Sandbox], None]:
    """``rel/``: a copy of another finished run directory (checkpoints, logs, figures, events)."""
    def setup(sb: Sandbox) -> None:
        shutil.copytree(sb.pipeline.run_dir, sb.root / rel)
    return setup


def _linked_run(sb: Sandbox) -> None:
    """``link`` -> ``work``, a copy of a run directory (a run to resume, reached through a link)."""
    shutil.copytree(sb.pipeline.run_dir, sb.root / "work")
    (sb.root / "link").symlink_to("work")


def _with(*steps: Callable[[Sandbox], object]) -> Callable[[Sandbox], None]:
    def setup(sb: Sandbox) -> None:
        for step in steps:
            step(sb)
    return setup


def _link(sb: Sandbox) -> None:
    force_flags(sb)
    symlink(sb)


def seeds(*extra: str, out: str = "runs", setup: Callable[[Sandbox], object] = lambda sb: None) -> Callable:
    def build(sb: Sandbox) -> list[str]:
        setup(sb)
        return ["train", "--seeds", "0,1", "--out", out, "--quiet", *TINY_ARGS, *extra]
    return build


def ablate(*extra: str, out: str = "ablation", setup: Callable[[Sandbox], object] = lambda sb: None) -> Callable:
    def build(sb: Sandbox) -> list[str]:
        setup(sb)
        return ["ablate", "--tables", "1", "--seeds", "1", "--out", out, "--quiet", *TINY_ARGS, *extra]
    return build


def resume(out: str, setup: Callable[[Sandbox], object]) -> Callable:
    def build(sb: Sandbox) -> list[str]:
        setup(sb)
        return ["train", "--out", out, "--resume", "--quiet"]
    return build


def _state_only(rel: str) -> Callable[[Sandbox], None]:
    """``rel/train_state.pt``: a run's training state alone (as a run killed in its first epoch's writes)."""
    def setup(sb: Sandbox) -> None:
        sb.write(f"{rel}/train_state.pt", (sb.pipeline.run_dir / "train_state.pt").read_bytes())
    return setup


def _corrupt_state(rel: str) -> Callable[[Sandbox], None]:
    """``rel``: an unfinished run whose train_state.pt lost bytes (the seed would resume from it)."""
    def setup(sb: Sandbox) -> None:
        state = sb.pipeline.run_dir / "train_state.pt"
        sb.write(f"{rel}/train_state.pt", flip_middle(state.read_bytes()))
    return setup


CASES = [
    # export: a forged manifest never makes a user's file part of an earlier export
    Case("export-forged-bundle-json-wrong-digest", export(out="deploy", setup=_forged_bundle(False, False)),
         ("thesis.tex", "--force")),
    Case("export-forged-bundle-json-recomputed-digest", export(out="deploy", setup=_forged_bundle(True, True)),
         ("thesis.tex", "no export writes", "--force")),
    Case("export-bundle-listing-thesis-wrong-digest", export(setup=_real_bundle_listing_thesis(False)),
         ("thesis.tex", "--force")),
    Case("export-bundle-listing-thesis-resealed", export(setup=_real_bundle_listing_thesis(True)),
         ("thesis.tex", "no export writes", "--force")),
    Case("export-corrupt-earlier-bundle", export(setup=_corrupt_bundle), ("checksum does not verify", "--force")),
    Case("export-forged-onnx-json-wrong-digest", export(target="onnx", out="deploy", setup=_forged_onnx(False)),
         ("thesis.tex", "--force")),
    Case("export-forged-onnx-json-recomputed-digest", export(target="onnx", out="deploy", setup=_forged_onnx(True)),
         ("thesis.tex", "no export writes", "--force")),
    Case("export-forged-onnx-json-user-model-onnx", export(target="onnx", out="deploy",
                                                           setup=_forged_onnx(False, "model.onnx")),
         ("checksum does not verify", "--force")),
    Case("export-onnx-listing-thesis-resealed", export(target="onnx", out="deploy",
                                                       setup=_onnx_export(_list_thesis_in_onnx)),
         ("thesis.tex", "no export writes")),
    Case("export-corrupt-earlier-onnx-export", export(target="onnx", out="deploy",
                                                      setup=_onnx_export(_flip_onnx_model)),
         ("model.onnx", "checksum does not verify", "--force")),
    Case("export-loihi-over-forged-onnx-json", export(out="deploy", setup=_forged_onnx(True)), ("thesis.tex",)),
    # finetune: only an earlier fine-tuning of the same checkpoint is replaced
    Case("finetune-out-another-runs-model", finetune(out="other", setup=_another_model("other")),
         ("other", "not a fine-tuning of", "--force")),
    Case("finetune-out-another-run-directory", finetune(out="other", setup=_run_copy("other")),
         ("other", "metrics.csv", "--force")),
    Case("finetune-out-symlink", finetune(out="link", setup=symlink), ("link", "symbolic link")),
    Case("finetune-out-symlink-force", finetune("--force", out="link", setup=_link), ("link", "symbolic link")),
    Case("finetune-out-current-directory-force", finetune("--force", out=".", setup=force_flags),
         ("current directory",)),
    # train: a run directory holds one run, continued with --resume or replaced with --force
    Case("train-out-finished-run", train(setup=_run_copy("run")), ("run", "holds a run", "--resume", "--force")),
    Case("train-out-run-state-only", train(setup=_state_only("run")), ("holds a run", "train_state.pt", "--resume")),
    Case("train-out-foreign-files", train(setup=lambda sb: sb.write("run/thesis.tex")),
         ("thesis.tex", "not a run's", "--force")),
    Case("train-out-foreign-file-in-plots", train(setup=lambda sb: sb.write("run/plots/mine.png")),
         ("plots/mine.png", "--force")),
    Case("train-out-symlink", train(out="link", setup=symlink), ("link", "symbolic link")),
    Case("train-out-symlink-force", train("--force", out="link", setup=_link), ("link", "symbolic link")),
    Case("train-resume-out-symlink", resume(out="link", setup=_linked_run), ("link", "symbolic link")),
    Case("train-out-current-directory", train(out="."), ("current directory",)),
    Case("train-out-current-directory-force", train("--force", out=".", setup=force_flags), ("current directory",)),
    Case("train-out-parent-directory-force", train("--force", out="..", setup=_with(in_subdir, force_flags)),
         ("current directory",)),
    # train --seeds and ablate: every seed directory is checked before the first one trains
    Case("train-seeds-out-foreign-files", seeds(setup=lambda sb: sb.write("runs/thesis.tex")),
         ("thesis.tex", "--force")),
    Case("train-seeds-seed-directory-foreign-files", seeds(setup=lambda sb: sb.write("runs/seed-1/thesis.tex")),
         ("seed-1", "thesis.tex", "--force")),
    Case("train-seeds-seed-directory-model-only", seeds(setup=lambda sb: sb.write(
        "runs/seed-1/model.pt", (sb.pipeline.run_dir / "model.pt").read_bytes())),
         ("seed-1", "neither read back nor resumed", "--force")),
    Case("train-seeds-corrupt-train-state-force", seeds("--force", setup=_with(force_flags,
                                                                               _corrupt_state("runs/seed-1"))),
         ("train_state.pt", "seed-1")),
    Case("train-seeds-out-symlink", seeds(out="link", setup=symlink), ("link", "symbolic link")),
    Case("train-seeds-out-current-directory", seeds(out="."), ("current directory",)),
    Case("ablate-out-foreign-files", ablate(setup=lambda sb: sb.write("ablation/thesis.tex")),
         ("thesis.tex", "--force")),
    Case("ablate-row-foreign-files", ablate(setup=lambda sb: sb.write("ablation/lsg/notes.txt")),
         ("lsg", "notes.txt", "--force")),
    Case("ablate-seed-directory-symlink-force", ablate("--force", setup=_with(
        force_flags, symlink, lambda sb: (sb.root / "ablation" / "lsg").mkdir(parents=True),
        lambda sb: (sb.root / "ablation" / "lsg" / "seed-0").symlink_to(sb.root / "work"))),
        ("seed-0", "symbolic link")),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_outputs(case, default_run, cli, request, tmp_path):
    check(case, default_run, cli, request, tmp_path)
