"""Bad input corpus, hardware part: a bundle whose hardware files were edited after export, with
every digest recomputed as an attacker (or a well-meaning hand) would, is refused in one line
before anything runs: never simulated as if it were the bundle's network.

* FPGA tables (``--target fpga``): the RTL backend builds its design from ``manifest.json`` and
  the ``.mem`` files, not from the bundle's records; before anything is built, every file must
  be exactly what the bundle's own integer graph gives (``hardware.targets.fpga.tables.check_tables``),
  and the error names the file and the first word or field that differs. ``--backend rtl`` alone
  used to simulate the edited network; ``--backend all`` noticed only by disagreeing.
* The input: a Loihi step carries a 24-bit signed graded spike, so an ``input_max`` beyond
  ``2^23 - 1`` is refused when the bundle is read (the integer reference's float64 sums were
  inexact past 2^53 for such inputs).

The harness and its rules are ``tests/corpus.py``'s (see ``tests/test_bad_input.py``).
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from corpus import Case, Sandbox, _reseal_bundle, check, simulate

from lsg_deploy.cli import main


@pytest.fixture(scope="module")
def fpga_bundle(default_run, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The default model exported once with ``--target fpga`` (its tables: manifest and .mem files)."""
    out = tmp_path_factory.mktemp("fpga") / "digits"
    assert main(["export", "--target", "fpga", str(default_run.model), "--out", str(out), "--quiet"]) == 0
    return out


def _manifest(edit: Callable[[dict], None]) -> Callable[[Path], None]:
    def apply(bundle: Path) -> None:
        path = bundle / "manifest.json"
        doc = json.loads(path.read_text())
        edit(doc)
        path.write_text(json.dumps(doc, indent=2) + "\n")
    return apply


def _mem_word(name: str, index: int, also_manifest_digest: bool = False) -> Callable[[Path], None]:
    """Word ``index`` of a ``.mem`` file changed to another value in range (and, asked, the
    manifest's own digest of that file recomputed too)."""
    def apply(bundle: Path) -> None:
        path = bundle / name
        lines = path.read_text().splitlines()
        word = lines[index + 1]  # after the comment line
        bits = 4 * len(word)
        lines[index + 1] = format((int(word, 16) + 1) % (1 << bits), f"0{len(word)}x")
        path.write_text("\n".join(lines) + "\n")
        if also_manifest_digest:
            _manifest(lambda m: m["files"].__setitem__(name, hashlib.sha256(path.read_bytes()).hexdigest()))(bundle)
    return apply


def fpga(edit: Callable[[Path], None], backend: str = "rtl") -> Callable[[Sandbox], list[str]]:
    """``simulate --backend BACKEND`` on a copy of the FPGA export, edited and re-sealed."""
    def build(sb: Sandbox) -> list[str]:
        path = sb.root / "bundle"
        shutil.copytree(sb.request.getfixturevalue("fpga_bundle"), path)
        edit(path)
        _reseal_bundle(path)  # bundle.json's digests of every file recomputed: the checksums pass
        return ["simulate", "--fixed-point", "bundle", "--backend", backend, "--limit", "5", "--json", "report.json",
                "--quiet"]
    return build


def _bump_vth(doc: dict) -> None:
    node = doc["nodes"][0]
    node["vth"] += 1 if node["vth"] < 32767 else -1


def _reshape_node(doc: dict) -> None:
    c, h, w = doc["nodes"][1]["shape"]  # the same neurons, another layout
    doc["nodes"][1]["shape"] = [c, h // 2, w * 2]


def _transpose_kernel(doc: dict) -> None:
    o, c, kh, kw = doc["edges"][1]["weight"]["shape"]
    doc["edges"][1]["weight"]["shape"] = [c, o, kh, kw]


def _input_max(value: int) -> Callable[[dict], None]:
    return lambda doc: doc["input"].__setitem__("input_max", value)


CASES = [
    # FPGA tables edited after export, bundle.json re-sealed
    Case("fpga-mem-word-resealed", fpga(_mem_word("conv1.weight.mem", 0)), ("conv1.weight.mem", "word 0")),
    Case("fpga-mem-word-and-manifest-digest-resealed",
         fpga(_mem_word("fc1.weight.mem", 777, also_manifest_digest=True)), ("fc1.weight.mem", "word 777")),
    Case("fpga-mem-bias-word-resealed-backend-all", fpga(_mem_word("readout.bias.mem", 3), backend="all"),
         ("readout.bias.mem", "word 3")),
    Case("fpga-manifest-vth-resealed", fpga(_manifest(_bump_vth)), ("manifest.json", "nodes[0].vth")),
    Case("fpga-manifest-node-shape-resealed", fpga(_manifest(_reshape_node)), ("manifest.json", "nodes[1].shape")),
    Case("fpga-manifest-weight-shape-resealed", fpga(_manifest(_transpose_kernel)),
         ("manifest.json", "edges[1].weight.shape")),
    # the input: beyond what a Loihi step carries (24-bit signed graded spikes)
    Case("loihi-input-max-beyond-24-bits-resealed", simulate(doc=_input_max(1 << 24)), ("input_max", "16777216")),
    Case("loihi-input-max-2-to-the-23-resealed", simulate(doc=_input_max(1 << 23)), ("input_max", "8388608")),
    Case("loihi-input-max-past-float64-resealed", simulate(doc=_input_max(2**47 + 1)), ("input_max",)),
    Case("loihi-input-max-lowered-resealed", simulate(doc=_input_max(8)), ("input_max 8", "input_max 16")),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_hardware(case, default_run, cli, request, tmp_path):
    check(case, default_run, cli, request, tmp_path)
