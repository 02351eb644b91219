"""The bad-input corpus's harness: sandboxes, case builders and the one check every case passes.

A case (:class:`Case`) lays out its input in a fresh sandbox and names the CLI arguments; then
:func:`check` runs the command as a process of its own and asserts what every bad input must
give (the rules are in ``tests/test_bad_input.py``'s docstring). The corpus files
(``test_bad_input*.py``) hold lists of cases; the fork server (fixture ``cli``) and the second
checkpoint (``tiny_model``) are in ``conftest.py``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from lsg_deploy.cli import build_parser, main

TIMEOUT_S = 120
NAN, INF = float("nan"), float("inf")
#: a small, quick configuration: cases that are not about these keys train (if at all) in seconds
TINY = {"epochs": "1", "timesteps": "2", "channels": "[4, 8]", "hidden": "16"}
TINY_ARGS = ("--epochs", "1", "--timesteps", "2")


# --- checksums --------------------------------------------------------------------------------


def _reseal_checkpoint(doc: dict[str, Any]) -> None:
    """Recompute the checkpoint's ``sha256`` after an edit, so a field check (not the checksum)
    is what refuses it."""
    from training.checkpoint import content_digest

    doc["sha256"] = content_digest(doc)


def _reseal_bundle(directory: Path) -> None:
    """Recompute ``bundle.json``'s ``files`` manifest and ``sha256`` after an edit (same purpose)."""
    from hardware.bundle import document_digest, sha256_file

    path = directory / "bundle.json"
    doc = json.loads(path.read_text())
    if isinstance(doc.get("files"), dict):
        doc["files"] = {name: sha256_file(directory / name) if (directory / name).is_file() else digest
                        for name, digest in doc["files"].items()}
    doc["sha256"] = document_digest(doc)
    path.write_text(json.dumps(doc, indent=2) + "\n")


# --- the sandbox --------------------------------------------------------------------------------


@dataclass
class Sandbox:
    root: Path
    pipeline: Any  #: conftest's PipelineRun
    request: pytest.FixtureRequest
    env: dict[str, str] = field(default_factory=dict)
    cwd: str = "."  #: the command's working directory, relative to root

    def write(self, rel: str, content: str | bytes = "keep me\n") -> str:
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content.encode() if isinstance(content, str) else content)
        return rel

    def run_dir(self) -> str:
        shutil.copytree(self.pipeline.run_dir, self.root / "run")
        return "run/model.pt"

    def checkpoint(self, edit: Callable | None = None, raw: Callable | None = None) -> str:
        rel = self.run_dir()
        path = self.root / rel
        if edit is not None:
            doc = torch.load(path, weights_only=True)
            edit(doc)
            _reseal_checkpoint(doc)
            torch.save(doc, path)
        if raw is not None:
            path.write_bytes(raw(path.read_bytes()))
        return rel

    def bundle(self, doc: Callable | None = None, arrays: Callable | None = None,
               files: dict[str, Callable] | None = None, reseal_files: bool = False) -> str:
        path = self.root / "bundle"
        shutil.copytree(self.pipeline.bundle, path)
        if doc is not None:
            d = json.loads((path / "bundle.json").read_text())
            doc(d)
            (path / "bundle.json").write_text(json.dumps(d, indent=2) + "\n")
        if arrays is not None:
            with np.load(path / "arrays.npz", allow_pickle=False) as npz:
                a = {k: npz[k] for k in npz.files}
            np.savez(path / "arrays.npz", **arrays(a))
        if doc is not None or arrays is not None:
            _reseal_bundle(path)
        for name, fn in (files or {}).items():  # byte-level changes: re-sealed only if asked
            target = path / name
            new = fn(self, target.read_bytes() if target.is_file() else None)
            target.unlink(missing_ok=True)
            if new is not None:
                target.write_bytes(new)
        if reseal_files:
            _reseal_bundle(path)
        return "bundle"


def _entry(path: Path) -> tuple:
    st = os.lstat(path)
    if stat.S_ISREG(st.st_mode):
        return ("file", hashlib.sha256(path.read_bytes()).hexdigest(), st.st_mode)
    if stat.S_ISLNK(st.st_mode):
        return ("link", os.readlink(path), st.st_mode)
    return ("dir" if stat.S_ISDIR(st.st_mode) else "other", None, st.st_mode)


def _snapshot(root: Path) -> dict[str, tuple]:
    tree = {".": _entry(root)}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath, name)
            tree[path.relative_to(root).as_posix()] = _entry(path)
    return tree


def _diff(before: dict[str, tuple], after: dict[str, tuple]) -> str:
    created = sorted(set(after) - set(before))
    removed = sorted(set(before) - set(after))
    changed = sorted(k for k in set(before) & set(after) if before[k] != after[k])
    return f"created {created}, removed {removed}, changed {changed}"


def environment() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "PYTHONWARNINGS"}


def _run(cli: subprocess.Popen, sandbox: Sandbox, args: list[str], logs: Path) -> subprocess.CompletedProcess:
    """Run the command as a process of its own in the sandbox; its stdout and stderr go to files
    outside it (``logs``), so that they are not part of what it must leave untouched."""
    request = {"args": args, "cwd": str(sandbox.root / sandbox.cwd), "env": {**environment(), **sandbox.env},
               "stdout": str(logs / "stdout"), "stderr": str(logs / "stderr"), "timeout": TIMEOUT_S}
    cli.stdin.write(json.dumps(request) + "\n")
    cli.stdin.flush()
    answer = cli.stdout.readline()
    assert answer, f"the CLI server ended (exit {cli.poll()})"
    read = lambda name: (logs / name).read_text(errors="replace")  # noqa: E731
    return subprocess.CompletedProcess(args, int(answer), read("stdout"), read("stderr"))


# --- case builders ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    id: str
    build: Callable[[Sandbox], list[str]]
    needles: tuple[str, ...] = ()  #: in the error line


def train(*extra: str, setup: Callable[[Sandbox], Any] = lambda sb: None, out: str = "run") -> Callable:
    def build(sb: Sandbox) -> list[str]:
        setup(sb)
        return ["train", "--out", out, "--quiet", *TINY_ARGS, *extra]
    return build


def toml(text: str | None = None, **bad: str) -> Callable:
    """A ``[train]`` table: TINY with ``bad`` merged in (values are TOML literals), or raw ``text``."""
    body = text if text is not None else "[train]\n" + "".join(f"{k} = {v}\n" for k, v in {**TINY, **bad}.items())

    def build(sb: Sandbox) -> list[str]:
        return ["train", "--out", "run", "--quiet", "--config", sb.write("c.toml", body)]
    return build


def export(*extra: str, edit: Callable | None = None, raw: Callable | None = None, model: str | None = None,
           out: str = "bundle", setup: Callable[[Sandbox], Any] = lambda sb: None, target: str = "loihi") -> Callable:
    def build(sb: Sandbox) -> list[str]:
        ckpt = sb.checkpoint(edit, raw)
        setup(sb)
        return ["export", "--target", target, model or ckpt, "--out", out, "--quiet", *extra]
    return build


def onnx_export(sb: Sandbox) -> list[str]:
    """``simulate`` on an ONNX export (written here, before the snapshot) instead of a bundle."""
    ckpt = sb.checkpoint()
    assert main(["export", "--target", "onnx", str(sb.root / ckpt), "--out", str(sb.root / "onnx"), "--quiet"]) == 0
    return ["simulate", "onnx", "--quiet"]


def simulate(*extra: str, bundle: str | None = None, env: dict[str, str] | None = None, json_out: str = "report.json",
             setup: Callable[[Sandbox], Any] = lambda sb: None, **edits: Any) -> Callable:
    def build(sb: Sandbox) -> list[str]:
        path = sb.bundle(**edits)
        setup(sb)
        sb.env.update(env or {})
        return ["simulate", "--fixed-point", bundle or path, "--json", json_out, "--quiet", *extra]
    return build


def tensor(key: str, value: float) -> Callable:
    def edit(doc: dict) -> None:
        doc["state_dict"][key].view(-1)[0] = value
    return edit


def layer_field(record: str, index: int, name: str, value: Any) -> Callable:
    def edit(doc: dict) -> None:
        doc["graph"][record]["nodes"][index][name] = value
    return edit


def rename_layer(doc: dict) -> None:
    """Node conv2 and its edge become convX, consistently in both records."""
    for graph in doc["graph"].values():
        for record in graph["nodes"] + graph["edges"]:
            for key in ("name", "source", "target"):
                if record.get(key) == "conv2":
                    record[key] = "convX"


def flip_middle(data: bytes) -> bytes:
    mid = len(data) // 2
    return data[:mid] + bytes(b ^ 0x5A for b in data[mid:mid + 4]) + data[mid + 4:]


def foreign_source(sb: Sandbox, _old: bytes | None) -> bytes:
    return sb.request.getfixturevalue("tiny_model").read_bytes()


def force_flag(sb: Sandbox) -> None:
    """The cases that pass ``--force`` mean export's option: were it gone, their one-line error
    would be argparse's ``unrecognized arguments``, which a case without needles would accept."""
    assert build_parser().parse_args(["export", "m.pt", "--target", "loihi", "--out", "b", "--force"]).force is True


def mkdir(rel: str) -> Callable:
    return lambda sb: (sb.root / rel).mkdir(parents=True)


def in_subdir(sb: Sandbox) -> None:
    """Run from ``deep/er``, so that ``..`` is an ancestor of the current directory."""
    force_flag(sb)
    (sb.root / "deep" / "er").mkdir(parents=True)
    sb.cwd = "deep/er"


def symlink(sb: Sandbox) -> None:
    sb.write("work/thesis.tex")
    (sb.root / "link").symlink_to("work")


class Planted:
    """Unpickling this runs ``touch pwned``: a checkpoint that would execute code if loaded unsafely."""

    def __reduce__(self):
        return (os.system, ("touch pwned",))


def edited_source(sb: Sandbox, old: bytes | None) -> bytes:
    """The bundle's own source model with one weight changed, its checkpoint checksum re-sealed."""
    import io

    doc = torch.load(io.BytesIO(old), weights_only=True)
    tensor("blocks.readout.linear.bias", 3.0)(doc)
    _reseal_checkpoint(doc)
    return torch_bytes(doc)


W1, RV2, B3 = "blocks.conv1.conv.weight", "blocks.conv2.bn.norm.running_var", "blocks.fc1.lif.b"


def torch_bytes(obj: Any) -> bytes:
    import io

    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def check(case: Case, pipeline: Any, cli: subprocess.Popen, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    """Run ``case`` in a fresh sandbox; assert exit 2, one ``lsg-deploy: error:`` line holding the
    case's needles, no traceback, and the sandbox unchanged byte for byte and mode for mode."""
    sandbox = Sandbox(tmp_path / "sandbox", pipeline, request)
    sandbox.root.mkdir()
    args = case.build(sandbox)
    before = _snapshot(sandbox.root)
    proc = _run(cli, sandbox, args, tmp_path)
    after = _snapshot(sandbox.root)
    shown = f"args {args}\nexit {proc.returncode}\nstderr:\n{proc.stderr[-3000:]}\nstdout:\n{proc.stdout[-1000:]}"
    assert "Traceback" not in proc.stderr + proc.stdout, shown
    assert proc.returncode == 2, shown
    lines = proc.stderr.removesuffix("\n").splitlines()
    assert len(lines) == 1 and lines[0].startswith("lsg-deploy: error:"), shown
    for needle in case.needles:
        assert needle in lines[0], f"{needle!r} not in the error line\n{shown}"
    assert before == after, f"sandbox changed: {_diff(before, after)}\n{shown}"
