"""Targets as plugins over a self-describing bundle.

* the minimal target of docs/targets.md (``tests/minimal_target``), added with one registry
  entry, exports and simulates through the CLI like the built-in ones;
* a bundle stores its profile whole: one whose target and profile this copy does not know still
  runs on the integer reference and the fake-quant path, equal bit for bit;
* a stored profile that is not a consistent arithmetic, or that borrows a known name with other
  fields, is refused by the reader or by the target's backends;
* no function in ``hardware/`` or ``export/`` defaults to a profile.
"""

from __future__ import annotations

import ast
import dataclasses
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from export.fake_quant import run_fake_quant
from hardware import fast_reference
from hardware.bundle import JSON_NAME, BundleError, document_digest, read_bundle
from hardware.targets import TARGETS, backends, resources
from hardware.targets.loihi.profile import LOIHI2
from lsg_deploy.cli import main
from tests import minimal_target
from tests.minimal_target import MCU8

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def mcu8_bundle(tiny_model, tmp_path_factory) -> Path:
    """``tiny_model`` exported to the minimal target, registered for the export only."""
    out = tmp_path_factory.mktemp("mcu8") / "bundle"
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(TARGETS, "mcu8", minimal_target.TARGET)
        assert main(["export", "--target", "mcu8", str(tiny_model), "--out", str(out), "--quiet"]) == 0
    return out


def _rewrite(bundle_dir: Path, change) -> None:
    """Edit ``bundle.json`` as a forger would, digest recomputed."""
    path = bundle_dir / JSON_NAME
    doc = json.loads(path.read_text())
    change(doc)
    doc["sha256"] = document_digest(doc)
    path.write_text(json.dumps(doc))


def test_a_registered_target_exports_its_profile_and_its_writers_files(mcu8_bundle):
    bundle = read_bundle(mcu8_bundle)
    assert bundle.target == "mcu8" and bundle.profile == MCU8
    assert bundle.artifacts["layers"] == {"file": "layers.csv"} and "layers.csv" in bundle.files
    rows = (mcu8_bundle / "layers.csv").read_text().splitlines()
    assert rows[0] == "node,neurons,decay_code,vth"
    assert rows[1:] == [f"{n.name},{n.neurons},{n.dv},{n.vth}" for n in bundle.integer_graph.nodes]
    assert json.loads((mcu8_bundle / JSON_NAME).read_text())["profile"] == dataclasses.asdict(MCU8)


def test_a_bundle_of_an_unknown_target_and_profile_runs_on_the_reference_and_fake_quant(mcu8_bundle, tmp_path):
    """The registry no longer holds mcu8 here: the bundle brings its arithmetic along."""
    assert "mcu8" not in TARGETS and all(p != MCU8 for t in TARGETS.values() for p in t.profiles)
    bundle = read_bundle(mcu8_bundle)
    x = np.random.default_rng(0).integers(0, bundle.input.input_max + 1, (20, *bundle.input.shape))
    ref = fast_reference.run(bundle.integer_graph, x, bundle.timesteps, bundle.profile)
    spikes, readout = run_fake_quant(bundle.integer_graph, torch.as_tensor(x), bundle.timesteps, bundle.profile)
    assert np.array_equal(readout.numpy(), ref.readout)
    assert all(np.array_equal(spikes[k].numpy(), ref.spikes[k]) for k in ref.spikes)
    assert [name for name, b in backends().items() if b.refuses(bundle) is None] == ["reference"]
    assert resources(bundle) is None  # no known target's model counts it
    report = tmp_path / "report.json"
    assert main(["simulate", "--fixed-point", str(mcu8_bundle), "--backend", "all", "--json", str(report),
                 "--quiet"]) == 0
    doc = json.loads(report.read_text())
    assert doc["target"] == "mcu8" and doc["profile"] == "mcu8" and "reference" in doc["accuracy"]
    assert doc["resources"] is None


@pytest.mark.parametrize("change, message", [
    (lambda p: p.update(decay_form="log"), "decay form 'log'"),
    (lambda p: p.update(weight_min=1), "inconsistent ranges"),
    (lambda p: p.update(state_bits=16.0), "state_bits must be an integer"),
    (lambda p: p.update(threshold=1), "threshold must be text"),
    (lambda p: p.pop("input_bits"), "missing input_bits"),
    (lambda p: p.update(clock_mhz=100), "unknown clock_mhz"),
])
def test_a_stored_profile_that_is_no_arithmetic_is_refused(mcu8_bundle, tmp_path, change, message):
    import shutil

    copy = tmp_path / "b"
    shutil.copytree(mcu8_bundle, copy)
    _rewrite(copy, lambda doc: change(doc["profile"]))
    with pytest.raises(BundleError, match=re.escape(message)):
        read_bundle(copy)


def test_a_profile_that_borrows_a_known_name_is_not_that_target_s(default_run, tmp_path):
    """A Loihi bundle whose stored profile keeps Lava's name but not its arithmetic runs on the
    reference in what it stores; Lava refuses it, and no resource model claims it."""
    import shutil

    copy = tmp_path / "b"
    shutil.copytree(default_run.bundle, copy)
    _rewrite(copy, lambda doc: doc["profile"].update(vth_max=LOIHI2.vth_max + 1))
    bundle = read_bundle(copy)
    assert bundle.profile.name == LOIHI2.name and bundle.profile != LOIHI2
    assert "arithmetic is not Lava's" in backends()["lava"].refuses(bundle)
    assert resources(bundle) is None


def _functions(path: Path):
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield node


def test_no_function_in_hardware_or_export_defaults_to_a_profile():
    offenders = []
    for path in sorted([*(ROOT / "hardware").rglob("*.py"), *(ROOT / "export").rglob("*.py")]):
        for fn in _functions(path):
            args = fn.args
            positional = [*args.posonlyargs, *args.args]
            defaults = dict(zip([a.arg for a in positional[len(positional) - len(args.defaults):]], args.defaults,
                                strict=True))
            defaults.update({a.arg: d for a, d in zip(args.kwonlyargs, args.kw_defaults, strict=True) if d})
            for name, default in defaults.items():
                named = {n.id for n in ast.walk(default) if isinstance(n, ast.Name)}
                if name in ("profile", "arithmetic") and not (isinstance(default, ast.Constant)
                                                              and default.value is None):
                    offenders.append(f"{path.relative_to(ROOT)}:{fn.lineno} {fn.name}({name}=...)")
                elif named & {"LOIHI2", "FPGA_MUL", "FPGA_SHIFT", "FPGA_MUL4", "MCU8"}:
                    offenders.append(f"{path.relative_to(ROOT)}:{fn.lineno} {fn.name}({name}=...)")
    assert offenders == []


def test_the_docs_show_the_minimal_target_as_it_is():
    page = (ROOT / "docs" / "targets.md").read_text()
    source = (ROOT / "tests" / "minimal_target" / "__init__.py").read_text()
    blocks = re.findall(r"```python\n(.*?)```", page, re.S)
    assert source in blocks, "docs/targets.md must quote tests/minimal_target/__init__.py whole"


def test_a_bundle_of_format_4_which_named_its_profile_is_refused_with_re_export(mcu8_bundle, tmp_path):
    import shutil

    copy = tmp_path / "b"
    shutil.copytree(mcu8_bundle, copy)

    def as_format_4(doc):
        doc["format_version"], doc["profile"] = 4, doc["profile"]["name"]

    _rewrite(copy, as_format_4)
    with pytest.raises(BundleError, match="format version 4.*re-export"):
        read_bundle(copy)
