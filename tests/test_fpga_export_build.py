"""The build of the FPGA export's ``rtl/`` (``export --target fpga --weights spram|rom --lanes N``,
:class:`hardware.targets.fpga.rtl.ip.RtlBuild`): the SPRAM build by default, its load stream
(``rtl/weight_load.mem``) equal to the plan's words of the exported tables, ``build.json`` naming
the build; what the SPRAM refuses (a layer wider than a row's weights, weights beyond the UP5K's
1 Mbit) and the options on a target without RTL are one-line errors with nothing written; and the
bundle's RTL, its weights loaded through the load port, == the integer reference under Icarus, both
through ``simulate --backend rtl`` and through the exported testbench from ``rtl/`` alone."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from hardware.targets.fpga.rtl import ip, weight_memory
from hardware.targets.fpga.tables import read_tables
from lsg_deploy.cli import main
from tests.test_rtl_ip import _alone, _make


def _export(model: Path, out: Path, *extra: str) -> int:
    return main(["export", "--target", "fpga", str(model), "--out", str(out), "--quiet", *extra])


def _words(path: Path) -> np.ndarray:
    lines = [line for line in path.read_text().splitlines() if re.fullmatch(r"[0-9a-f]{4}", line)]
    return np.array([int(w, 16) for w in lines], np.uint16)


def test_the_default_build_is_spram_at_one_lane_with_its_load_stream(tiny_model: Path, tmp_path: Path) -> None:
    out = tmp_path / "default"
    assert _export(tiny_model, out, "--testvectors", "0") == 0
    rtl = out / "rtl"
    record = json.loads((rtl / "build.json").read_text())
    assert record["build"] == {"weights": "spram", "max_lanes": 1} and set(record["lanes"].values()) == {1}
    assert ip.read_build(out) == ip.RtlBuild("spram", 1)
    files = (rtl / "files.f").read_text().split()
    assert "weight_ram.v" in files and weight_memory.SPRAM_MODEL not in files  # (synthesis maps the primitive)
    assert f"SIM_MODELS := {weight_memory.SPRAM_MODEL}" in (rtl / "Makefile").read_text()
    chain = ip.build_chain(read_tables(out), ip.RtlBuild("spram", 1))
    want = weight_memory.load_words(chain)
    assert np.array_equal(_words(rtl / ip.LOAD_FILE), want)
    assert f"`define LSG_WLOAD_WORDS {len(want)}" in (rtl / ip.PARAMS).read_text()
    assert record["memory_plan"]["weights"]["load_words"] == len(want)
    assert not list(rtl.glob("*.weight.*.mem"))  # the weights are in the load stream, not in ROM images


def test_the_rom_build_is_an_option_for_larger_parts(tiny_model: Path, tmp_path: Path) -> None:
    out = tmp_path / "rom"
    assert _export(tiny_model, out, "--testvectors", "0", "--weights", "rom") == 0
    assert ip.read_build(out) == ip.RtlBuild("rom", 32)
    assert not (out / "rtl" / ip.LOAD_FILE).exists() and list((out / "rtl").glob("*.weight.*.mem"))
    assert "`define LSG_WLOAD_WORDS 0" in (out / "rtl" / ip.PARAMS).read_text()


def test_what_the_spram_refuses_is_a_one_line_error_with_nothing_written(tiny_model: Path, tmp_path: Path,
                                                                          capsys, monkeypatch) -> None:
    """fc1's 16 channels: 16 lanes of 8-bit weights do not fit a 64-bit row (4-bit ones do); a
    network beyond the SPRAM (here an SPRAM shrunk to 16 rows) says to take fewer lanes or ROMs;
    --weights and --lanes on a target without RTL, and --lanes 0, are refused."""
    wide = tmp_path / "wide"
    assert _export(tiny_model, wide, "--lanes", "16") == 2
    err = capsys.readouterr().err
    assert "fc1 has 16 lanes, a row holds 8 8-bit weights" in err and "--weights rom" in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not wide.exists()
    assert _export(tiny_model, tmp_path / "mul4", "--lanes", "16", "--profile", "fpga-mul4", "--clip",
                   "--testvectors", "0") == 0
    assert ip.read_build(tmp_path / "mul4") == ip.RtlBuild("spram", 16)
    monkeypatch.setattr(weight_memory, "SPRAM_WORDS", 16)
    small = tmp_path / "small"
    assert _export(tiny_model, small) == 2
    err = capsys.readouterr().err
    assert "the UP5K's SPRAM holds 16" in err and "--weights rom" in err and not small.exists()
    for args, message in ((["--target", "loihi", "--weights", "rom"], "--weights: target loihi writes no RTL"),
                          (["--target", "loihi", "--lanes", "4"], "--lanes: target loihi writes no RTL"),
                          (["--target", "fpga", "--lanes", "0"], "--lanes must be an integer >= 1, got 0"),
                          (["--target", "onnx", "--weights", "spram"], "--weights: target onnx writes the float")):
        assert main(["export", str(tiny_model), "--out", str(tmp_path / "x"), "--quiet", *args]) == 2
        assert message in capsys.readouterr().err
        assert not (tmp_path / "x").exists()


def test_the_spram_bundle_loads_its_weights_and_equals_the_reference(tiny_model: Path, rtl_tools,
                                                                      tmp_path: Path) -> None:
    """The tiny digits-cnn exported with --lanes 8 (the SPRAM build) and 3 test vectors:
    ``simulate --backend all`` runs the RTL in the same build (its stats say so) and equals the reference
    on every layer; from rtl/ and testvectors/ alone the testbench loads the weights through the
    port and passes, and fails once the load stream is zeroed."""
    bundle = tmp_path / "bundle"
    assert _export(tiny_model, bundle, "--lanes", "8", "--testvectors", "3") == 0
    report = tmp_path / "report.json"
    assert main(["simulate", "--fixed-point", str(bundle), "--backend", "all", "--simulator", "icarus", "--limit", "3",
                 "--json", str(report), "--quiet"]) == 0  # (an FPGA bundle's all: the reference and the RTL)
    doc = json.loads(report.read_text())
    assert set(doc["backends"]) == {"reference", "rtl"}
    assert doc["exact"]["pair"] == "reference == rtl" and doc["exact"]["equal"] is True, doc["exact"]
    assert not any(doc["exact"]["mismatches"].values())
    stats = doc["backends"]["rtl"]
    assert stats["weights"] == "spram" and max(stats["lanes"].values()) == 8
    alone = _alone(bundle, tmp_path / "alone")
    done = _make(alone, "sim-icarus")
    words = len(_words(bundle / "rtl" / ip.LOAD_FILE))
    assert done.returncode == 0 and f"loaded {words} weight words" in done.stdout, done.stdout + done.stderr
    assert "PASS 3 samples" in done.stdout
    load = alone / "rtl" / ip.LOAD_FILE
    load.write_text("\n".join(["0000"] * words) + "\n")
    failed = _make(alone, "sim-icarus")
    assert failed.returncode != 0 and "FAIL sample 0" in failed.stdout and "PASS" not in failed.stdout, failed.stdout


@pytest.mark.slow  # the default build (one lane: ~240,000 cycles per image); the test above runs 8 lanes
def test_the_default_digits_export_passes_its_testbench(default_run, rtl_tools, tmp_path: Path) -> None:
    bundle = tmp_path / "bundle"
    assert _export(default_run.model, bundle, "--testvectors", "2") == 0
    assert ip.read_build(bundle) == ip.RtlBuild("spram", 1)
    done = _make(_alone(bundle, tmp_path / "alone"), "sim-icarus", timeout=1800)
    assert done.returncode == 0 and "PASS 2 samples" in done.stdout, done.stdout + done.stderr
