"""Bad input corpus, the user's data files (``--data-dir``): every bad CIFAR or CIFAR10-DVS file is
one line on stderr, exit 2, and leaves the sandbox as it was (the rules and the harness are in
``tests/test_bad_input.py`` and ``tests/corpus.py``).

The CIFAR payloads are real pickles whose ``__reduce__`` runs ``touch pwned`` in the command's
working directory, the sandbox (:class:`corpus.Planted`; :func:`test_the_payloads_are_live` shows
that ``pickle.loads`` runs them): a reader that unpickles them creates ``pwned`` and fails the
sandbox check even where it goes on to refuse the file. The files around them are the tiny
fixtures of :mod:`tests.datafiles`, whose MD5 sums are not the published ones, so a command reaches
the payload only with ``--no-verify-data``; one checkpoint and bundle trained on them with
``--no-verify-data`` serve every export, finetune and simulate case, which must not inherit it.
"""

from __future__ import annotations

import os
import pickle
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from corpus import TINY_ARGS, Case, Planted, check

from lsg_deploy.cli import main
from tests.datafiles import cifar_images, write_aedat4_header_only, write_cifar, write_cifar10_dvs
from training.data import FileOptions

CIFAR_FOLDER = "cifar-10-batches-py"
WIDTH = ("--width", "0.03125")


@dataclass(frozen=True)
class CifarRun:
    data: Path  #: tiny CIFAR-10 fixtures in torchvision's layout (the --data-dir)
    model: Path  #: trained on them with --no-verify-data --no-normalize (so it has an integer input)
    bundle: Path  #: its Loihi export, made with --no-verify-data


@pytest.fixture(scope="module")
def cifar_run(tmp_path_factory: pytest.TempPathFactory) -> CifarRun:
    root = tmp_path_factory.mktemp("cifar-run")
    write_cifar(root / "data", "cifar10", per_file=4)
    assert main(["train", "--dataset", "cifar10", "--data-dir", str(root / "data"), "--no-verify-data",
                 "--no-normalize", *WIDTH, *TINY_ARGS, "--batch-size", "8", "--out", str(root / "run"),
                 "--quiet"]) == 0
    assert main(["export", "--target", "loihi", str(root / "run" / "model.pt"), "--out", str(root / "bundle"),
                 "--data-dir", str(root / "data"), "--no-verify-data", "--quiet"]) == 0
    return CifarRun(root / "data", root / "run" / "model.pt", root / "bundle")


@pytest.fixture(scope="module")
def dvs_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 10 x 100 synthetic CIFAR10-DVS (tonic needs 1000 recordings), without a frame cache."""
    root = tmp_path_factory.mktemp("dvs")
    write_cifar10_dvs(root, per_class=100)
    return root


# --- payloads and bad batches ------------------------------------------------------------------


def planted_batch() -> bytes:
    return pickle.dumps({"data": Planted(), "labels": [0]}, protocol=2)


def planted_meta() -> bytes:
    return pickle.dumps({"label_names": Planted(), "num_vis": 3072}, protocol=2)


def missing_module_batch() -> bytes:
    """A batch naming ``nosuchmodule.Thing`` (protocol 2's GLOBAL opcode, edited in place)."""
    body = planted_batch()
    assert b"cposix\nsystem\n" in body
    return body.replace(b"cposix\nsystem\n", b"cnosuchmodule\nThing\n")


def batch(labels=None, dtype=np.uint8) -> bytes:
    data, drawn = cifar_images(4, 10, seed=3)
    return pickle.dumps({"data": data.astype(dtype), "labels": labels if labels is not None else drawn}, protocol=2)


# --- case builders -------------------------------------------------------------------------------


def cifar_files(sb, files: dict[str, bytes]) -> str:
    """The fixture files in ``data/`` with ``files`` (name -> bytes) in place of theirs."""
    shutil.copytree(sb.request.getfixturevalue("cifar_run").data, sb.root / "data")
    for name, body in files.items():
        (sb.root / "data" / CIFAR_FOLDER / name).write_bytes(body)
    return "data"


def cifar_train(files: dict[str, bytes]):
    def build(sb) -> list[str]:
        return ["train", "--out", "run", "--quiet", *TINY_ARGS, *WIDTH, "--dataset", "cifar10", "--data-dir",
                cifar_files(sb, files), "--no-verify-data"]
    return build


def cifar_later(command: str, files: dict[str, bytes], *extra: str):
    """``export``, ``finetune`` or ``simulate`` of the fixture run, reading ``data/``."""
    def build(sb) -> list[str]:
        run = sb.request.getfixturevalue("cifar_run")
        data = cifar_files(sb, files)
        if command == "simulate":
            shutil.copytree(run.bundle, sb.root / "bundle")
            return ["simulate", "bundle", "--data-dir", data, "--quiet", *extra]
        shutil.copytree(run.model.parent, sb.root / "run")
        out = ["--out", "bundle"] if command == "export" else ["--out", "tuned", "--epochs", "1"]
        return [command, "--target", "loihi", "run/model.pt", *out, "--data-dir", data, "--quiet", *extra]
    return build


def offline_download(sb) -> list[str]:
    """``--download`` into a --data-dir that does not exist, every connection refused at once
    (a proxy on the discard port): no network is needed to fail, nor waited for."""
    proxy = "http://127.0.0.1:9"
    sb.env.update(https_proxy=proxy, http_proxy=proxy, HTTPS_PROXY=proxy, HTTP_PROXY=proxy, no_proxy="", NO_PROXY="")
    return ["train", "--out", "run", "--quiet", *TINY_ARGS, *WIDTH, "--dataset", "cifar10", "--download",
            "--data-dir", "newdir"]


def dvs_train(edit, cache: bool = False):
    """``train`` on a copy of the DVS fixture in ``data/``, with its frame cache for T = 2 made
    first if ``cache``, then ``edit(folder)`` applied to ``data/CIFAR10DVS``."""
    def build(sb) -> list[str]:
        from training.data.cifar10_dvs import cifar10_dvs_datasets

        shutil.copytree(sb.request.getfixturevalue("dvs_data"), sb.root / "data")
        if cache:
            cifar10_dvs_datasets(FileOptions(sb.root / "data", 2))
        edit(sb.root / "data" / "CIFAR10DVS")
        return ["train", "--out", "run", "--quiet", *TINY_ARGS, "--width", "0.0625", "--dataset", "cifar10-dvs",
                "--data-dir", "data"]
    return build


def truncate(path: Path, keep: float) -> None:
    body = path.read_bytes()
    path.write_bytes(body[: int(len(body) * keep)])


def truncate_class(folder: Path) -> None:
    for path in (folder / "dog").glob("*.aedat4"):
        truncate(path, 0.5)


def wrong_shape_entry(folder: Path) -> None:
    entry = folder / "lsg-deploy-cache" / "T2-48" / "5.npy"
    assert entry.is_file()
    np.save(entry, np.zeros((2, 2, 32, 32), np.float32))


CASES = [
    # CIFAR: code in a pickle is refused, never run, whatever the MD5 check says
    Case("cifar-pickle-payload-data-batch", cifar_train({"data_batch_1": planted_batch()}),
         ("data_batch_1", "posix.system", "refused")),
    Case("cifar-pickle-payload-batches-meta", cifar_train({"batches.meta": planted_meta()}),
         ("batches.meta", "posix.system")),
    Case("cifar-pickle-payload-test-batch-export-verifies",
         cifar_later("export", {"test_batch": planted_batch()}), ("test_batch", "MD5", "--no-verify-data")),
    Case("cifar-pickle-payload-test-batch-export-no-verify",
         cifar_later("export", {"test_batch": planted_batch()}, "--no-verify-data"), ("test_batch", "posix.system")),
    Case("cifar-pickle-payload-test-batch-simulate-verifies",
         cifar_later("simulate", {"test_batch": planted_batch()}), ("test_batch", "MD5")),
    Case("cifar-pickle-payload-test-batch-simulate-no-verify",
         cifar_later("simulate", {"test_batch": planted_batch()}, "--no-verify-data"), ("test_batch", "posix.system")),
    Case("cifar-pickle-payload-data-batch-finetune-verifies",
         cifar_later("finetune", {"data_batch_1": planted_batch()}), ("data_batch_1", "MD5")),
    Case("cifar-pickle-payload-data-batch-finetune-no-verify",
         cifar_later("finetune", {"data_batch_1": planted_batch()}, "--no-verify-data"),
         ("data_batch_1", "posix.system")),
    # CIFAR: batches that torchvision's reader turned into tracebacks (or accepted)
    Case("cifar-pickle-missing-module", cifar_train({"data_batch_2": missing_module_batch()}),
         ("data_batch_2", "nosuchmodule.Thing")),
    Case("cifar-label-out-of-range", cifar_train({"data_batch_3": batch(labels=[1, 57, 2, 3])}),
         ("data_batch_3", "57")),
    Case("cifar-pixels-float64", cifar_train({"test_batch": batch(dtype=np.float64)}), ("test_batch", "float64")),
    Case("cifar-labels-too-few", cifar_train({"data_batch_4": batch(labels=[1, 2])}), ("data_batch_4", "labels")),
    Case("cifar-not-a-dict", cifar_train({"data_batch_5": pickle.dumps([1, 2, 3], protocol=2)}),
         ("data_batch_5", "list")),
    # CIFAR: a download that cannot happen leaves no --data-dir behind
    Case("cifar-download-without-network", offline_download, ("download", "newdir")),
    # CIFAR10-DVS: recordings and the frame cache
    Case("dvs-truncated-recording-with-cache", dvs_train(
        lambda folder: truncate(folder / "cat" / "cifar10_cat_95.aedat4", 0.9), cache=True),
         ("cifar10_cat_95.aedat4", "truncated")),
    Case("dvs-class-folder-truncated", dvs_train(truncate_class), ("cifar10_dog_", "truncated")),
    Case("dvs-header-without-events", dvs_train(
        lambda folder: write_aedat4_header_only(folder / "frog" / "cifar10_frog_3.aedat4")),
         ("cifar10_frog_3.aedat4", "no events")),
    Case("dvs-cache-entry-wrong-shape", dvs_train(wrong_shape_entry, cache=True), ("5.npy", "(2, 2, 32, 32)")),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_data(case, cli, request, tmp_path):
    # no case uses the session's digits run (conftest's default_run): nothing to train for it
    check(case, None, cli, request, tmp_path)


def test_the_payloads_are_live(tmp_path, monkeypatch):
    """What the cases plant would run if unpickled: ``pickle.loads`` of each creates ``pwned``."""
    monkeypatch.chdir(tmp_path)
    for payload in (planted_batch(), planted_meta()):
        pickle.loads(payload, encoding="latin1")
        assert (tmp_path / "pwned").is_file()
        os.unlink(tmp_path / "pwned")
    with pytest.raises(ModuleNotFoundError, match="nosuchmodule"):
        pickle.loads(missing_module_batch())
