"""The RTL design (hardware/targets/fpga/rtl, driven under cocotb through its AXI ports: Icarus Verilog
for the random chains here, Verilator for the CLI's default run and in tests/test_rtl_ip.py) against
the integer reference, bit for bit: every layer's spikes, the readout's membranes and the saturation counts.

(a) Seeded random chains in every FPGA profile, drawn at the edges of the arithmetic (membranes
    clamped at +-32767, the readout saturating and resetting, thresholds 0 and 32767, decay codes
    0, the largest and "none", weights at both ends of the profile's width: -128 and 127, or -8
    and 7 in fpga-mul4, whose one-digit words the lanes sign-extend; negative biases, negative
    membranes under both decays) with every lane organisation from fully serial to all channels
    at once; a coverage test checks that the seeds do reach those edges.
(b) The trained digits network, exported with ``lsg-deploy export --target fpga``, on 50 test
    images.

Icarus, Verilator and cocotb are required, not optional: without them these tests fail, saying how to
install them (CI installs them: make rtl).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from hardware import reference
from hardware.graph import INPUT, Graph
from hardware.profile import Profile
from hardware.reference import synaptic_input
from hardware.targets.fpga.profiles import FPGA_MUL, FPGA_MUL4, FPGA_SHIFT
from hardware.targets.fpga.rtl.backend import run_rtl, simulate
from hardware.targets.fpga.rtl.chain import RtlUnsupported, chain_from_tables
from hardware.targets.fpga.tables import read_tables, write_tables
from tests.netgen import FPGA_LIMIT
from tests.netgen_chains import fpga_inputs, random_fpga_chain

PROFILES = {p.name: p for p in (FPGA_MUL, FPGA_SHIFT, FPGA_MUL4)}
SEEDS = range(20)


def _case(seed: int, profile: Profile) -> tuple[Graph, int, np.ndarray, int]:
    graph = random_fpga_chain(seed, profile)
    rng = np.random.default_rng([seed, 5])
    timesteps, batch = int(rng.integers(1, 6)), int(rng.integers(2, 5))
    lanes = int(rng.choice([1, 2, 3, 4, 32]))
    return graph, timesteps, fpga_inputs(seed, graph, timesteps, batch), lanes


def assert_equal_runs(got: reference.IntegerRun, want: reference.IntegerRun, what: str) -> None:
    assert got.spikes.keys() == want.spikes.keys(), what
    for name in want.spikes:
        bad = np.count_nonzero(got.spikes[name] != want.spikes[name])
        assert bad == 0, f"{what}: {bad} spikes of {name} differ from the reference"
    bad = np.count_nonzero(got.readout != want.readout)
    assert bad == 0, f"{what}: {bad} readout membranes differ from the reference"
    assert got.saturation == want.saturation, f"{what}: saturation counts {got.saturation} != {want.saturation}"


def simulate_cases(arithmetic: Profile, cases: dict[int, tuple[Graph, int, np.ndarray, int]], tmp_path: Path,
                   simulator: str, membranes: bool = False) -> list:
    """Seeded ``(graph, timesteps, inputs, max lanes)`` cases (by seed) of one profile, their tables
    written under ``tmp_path`` and simulated in one run of ``simulator``: the RTL's runs, in order."""
    networks = []
    for seed, (graph, timesteps, inputs, _) in cases.items():
        tables = tmp_path / f"seed{seed}"
        tables.mkdir()
        write_tables(graph, arithmetic, timesteps, tables)
        networks.append((tables, inputs))
    start = time.perf_counter()
    runs = simulate(networks, [lanes for *_, lanes in cases.values()], build_root=tmp_path / "build",
                    membranes=membranes, simulator=simulator)
    print(f"{arithmetic.name}: {len(cases)} networks simulated by {simulator} in {time.perf_counter() - start:.1f} s")
    return runs


def check_random_chains(profile: str, tmp_path: Path, simulator: str) -> None:
    """20 seeded chains of ``profile``, simulated in one run of ``simulator``: every layer's
    spikes, the readout and the saturation counts equal the integer reference's, and every layer's
    membranes after every step equal a replay of the reference's steps."""
    arithmetic = PROFILES[profile]
    cases = {seed: _case(seed, arithmetic) for seed in SEEDS}
    runs = simulate_cases(arithmetic, cases, tmp_path, simulator, membranes=True)
    for (seed, (graph, timesteps, inputs, lanes)), got in zip(cases.items(), runs, strict=True):
        what = f"{profile} seed {seed} (max lanes {lanes}) on {simulator}"
        assert_equal_runs(got.run, reference.run(graph, inputs, timesteps, arithmetic), what)
        for name, (_, _, after) in _membranes(graph, inputs, timesteps, arithmetic).items():
            bad = np.count_nonzero(got.membranes[name] != after)
            assert bad == 0, f"{what}: {bad} membranes of {name} differ from the reference's"
        assert got.run.stats["cycles_per_timestep"] > 0


@pytest.mark.parametrize("profile", list(PROFILES))
def test_random_chains_match_the_reference(profile: str, rtl_tools, tmp_path: Path) -> None:
    """:func:`check_random_chains` under Icarus (Verilator on these chains: tests/test_rtl_ip.py)."""
    check_random_chains(profile, tmp_path, "icarus")


def _membranes(graph: Graph, inputs: np.ndarray, timesteps: int, profile: Profile
               ) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Per node, (B, T, neurons): the membrane each step's decay finds, the unclamped ``v_raw``
    and the membrane after the step; a replay of the reference's steps through the profile's own
    decay and LIF step."""
    steps = graph.input.steps(inputs, timesteps)
    b = len(steps)
    v = {n.name: np.zeros((b, n.neurons), np.int64) for n in graph.nodes}
    seen: dict[str, list] = {n.name: [] for n in graph.nodes}
    for t in range(timesteps):
        out = {INPUT: steps[:, t].reshape(b, -1).astype(np.int64)}
        for edge, node in graph.chain():
            a, _ = synaptic_input(edge, out[edge.source], profile)
            bias = np.repeat(node.bias_mant, node.neurons // node.shape[0])
            before = v[node.name]
            raw = profile.decay(before, node.dv) + a + bias
            fired, _, v[node.name], _ = profile.lif_step(a, 0, before, 0, node.dv, bias, node.vth, readout=node.readout)
            seen[node.name].append((before, raw, v[node.name]))
            out[node.name] = fired.astype(np.int64)
    return {k: tuple(np.stack([x[i] for x in s], 1) for i in range(3)) for k, s in seen.items()}


@pytest.mark.parametrize("profile", list(PROFILES))
def test_random_chains_reach_the_edges(profile: str) -> None:
    """The seeds of the test above do visit what they are meant to (so that it could fail)."""
    arithmetic = PROFILES[profile]
    w_min, w_max = f"weight {arithmetic.weight_min}", f"weight {arithmetic.weight_max}"
    found = dict.fromkeys(["clip+", "clip-", "readout held at the limit", "vth 0", "vth max", "decay 0", "decay max",
                           "decay none (hidden)", w_min, w_max, "negative bias",
                           "negative membrane decayed with rounding", "event frames", "stride > 1", "padding",
                           "serial (1 lane)", "several lane groups"], False)
    for seed in SEEDS:
        graph, timesteps, inputs, lanes = _case(seed, arithmetic)
        run = reference.run(graph, inputs, timesteps, arithmetic)
        found["readout held at the limit"] |= run.saturation["out"]["v_clip"] > 0
        found["event frames"] |= graph.input.per_step
        found["serial (1 lane)"] |= lanes == 1
        used = [max(d for d in range(1, min(n.shape[0], lanes) + 1) if n.shape[0] % d == 0) for n in graph.nodes]
        found["several lane groups"] |= any(1 < u < n.shape[0] for u, n in zip(used, graph.nodes, strict=True))
        membranes = _membranes(graph, inputs, timesteps, arithmetic)
        for (edge, node) in graph.chain():
            found[w_min] |= bool((edge.weight == arithmetic.weight_min).any())
            found[w_max] |= bool((edge.weight == arithmetic.weight_max).any())
            if edge.geometry.kind == "conv":
                found["stride > 1"] |= max(edge.geometry.stride) > 1
                found["padding"] |= max(edge.geometry.padding) > 0
            found["negative bias"] |= bool((node.bias_mant < 0).any())
            v, raw, _ = membranes[node.name]
            found["clip+"] |= bool((raw > FPGA_LIMIT).any())
            found["clip-"] |= bool((raw < -FPGA_LIMIT).any())
            if not node.readout:
                found["vth 0"] |= node.vth == 0
                found["vth max"] |= node.vth == FPGA_LIMIT
                found["decay 0"] |= node.dv == 0
                found["decay max"] |= node.dv == arithmetic.decay_max
                found["decay none (hidden)"] |= node.dv == arithmetic.decay_none
                if node.dv not in (0, arithmetic.decay_none):  # the shift or the rounding is not exact
                    neg = v[v < 0]
                    if arithmetic.decay_form == "shift":
                        inexact = (neg >> node.dv) != np.trunc(neg / 2.0**node.dv)
                    else:
                        inexact = arithmetic.decay(neg, node.dv) != np.trunc(neg * node.dv / 2**arithmetic.decay_shift)
                    found["negative membrane decayed with rounding"] |= bool(inexact.any())
    missing = [k for k, v in found.items() if not v]
    assert not missing, f"the {profile} seeds never reach: {missing}"


# --- refusals and set-up -----------------------------------------------------------------------------

def test_an_arithmetic_the_rtl_lacks_is_refused_with_the_reason(tmp_path: Path) -> None:
    """What the RTL still does not run (every graph of the FPGA profiles it does: tests/test_rtl_graphs.py)
    is an arithmetic other than theirs: tables stating one are refused, naming the rule."""
    import json

    write_tables(random_fpga_chain(1, FPGA_MUL), FPGA_MUL, 2, tmp_path)
    manifest = tmp_path / "manifest.json"
    doc = json.loads(manifest.read_text())
    doc["profile"]["threshold"]["compare"] = "spike when v > vth"
    manifest.write_text(json.dumps(doc))
    with pytest.raises(RtlUnsupported, match="the RTL compares v >= vth"):
        chain_from_tables(read_tables(tmp_path))


def test_tables_are_checked_against_the_graph_they_claim_to_hold(tmp_path: Path) -> None:
    """``check_tables`` (run by the RTL backend on a bundle's tables before it builds anything):
    the writer's own tables pass; a changed word, manifest value or header line is named."""
    import json

    from hardware.graph import BundleError
    from hardware.targets.fpga.tables import check_tables

    graph = random_fpga_chain(5, FPGA_MUL4)
    names = write_tables(graph, FPGA_MUL4, 3, tmp_path)
    check_tables(graph, FPGA_MUL4, 3, tmp_path)
    pristine = {name: (tmp_path / name).read_bytes() for name in names}
    edge, node = graph.edges[0], graph.nodes[0]

    def refused(name: str, edit, match: str) -> None:
        path = tmp_path / name
        path.write_bytes(edit(pristine[name]))
        with pytest.raises(BundleError, match=match):
            check_tables(graph, FPGA_MUL4, 3, tmp_path)
        path.write_bytes(pristine[name])

    def word(data: bytes) -> bytes:  # word 1: one hex digit in fpga-mem4
        lines = data.decode().splitlines()
        lines[2] = format((int(lines[2], 16) + 1) % 16, "x")
        return ("\n".join(lines) + "\n").encode()

    def manifest(edit):
        def apply(data: bytes) -> bytes:
            doc = json.loads(data)
            edit(doc)
            return json.dumps(doc, indent=2).encode()
        return apply

    refused(f"{edge.name}.weight.mem", word, rf"{edge.name}\.weight\.mem does not hold .*: word 1 \(line 3\)")
    refused(f"{node.name}.bias.mem", lambda d: d + b"0\n", "it has .* words, the bundle's integer graph gives")
    flip_decay = manifest(lambda m: m["nodes"][0].__setitem__("decay_code", m["nodes"][0]["decay_code"] ^ 1))
    refused("manifest.json", flip_decay, r"manifest\.json .*: nodes\[0\]\.decay_code is")
    refused("manifest.json", manifest(lambda m: m["profile"]["membrane"].__setitem__("bits", 17)),
            r"profile\.membrane\.bits is 17, the bundle's integer graph gives 16")
    refused("manifest.json", manifest(lambda m: m["input"].__setitem__("max", True)), r"input\.max is true")
    refused("manifest.json", lambda d: d[:-5], "not valid JSON")
    refused("network.h", lambda d: d.replace(b"#define", b"#define  ", 1), r"network\.h .*: line \d+ is")
    (tmp_path / f"{edge.name}.weight.csv").unlink()
    with pytest.raises(BundleError, match=r"weight\.csv cannot be read"):
        check_tables(graph, FPGA_MUL4, 3, tmp_path)


def test_lanes_divide_the_channels(tmp_path: Path) -> None:
    graph = random_fpga_chain(3, FPGA_MUL)
    write_tables(graph, FPGA_MUL, 2, tmp_path)
    for max_lanes in (1, 2, 5, 32):
        chain = chain_from_tables(read_tables(tmp_path), max_lanes)
        for layer in chain.layers:
            assert layer.channels % layer.lanes == 0 and 1 <= layer.lanes <= max_lanes
            assert sorted(layer.neuron_index().ravel()) == list(range(layer.neurons))


def test_missing_icarus_is_an_error_that_says_how_to_install_it(monkeypatch) -> None:
    from hardware.targets.fpga.rtl import backend as rtl_backend

    monkeypatch.setattr(rtl_backend.shutil, "which", lambda tool: None)
    with pytest.raises(rtl_backend.RtlEnvironmentError, match="apt-get install iverilog"):
        rtl_backend.check_tools("icarus")


def test_missing_cocotb_is_an_error_that_says_how_to_install_it(monkeypatch) -> None:
    from hardware.targets.fpga.rtl import backend as rtl_backend

    monkeypatch.setattr(rtl_backend.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(rtl_backend.RtlEnvironmentError, match=r"pip install -e \.\[rtl\]"):
        rtl_backend.check_tools()


# --- an interrupted run ends its simulator -------------------------------------------------------------

_INTERRUPTED_CHILD = """
import signal, sys
from pathlib import Path
from hardware.targets.fpga.tables import write_tables
from hardware.targets.fpga.profiles import FPGA_MUL
from hardware.targets.fpga.rtl.backend import run_rtl
from tests.netgen_chains import fpga_inputs, random_fpga_chain

if sys.argv[2] == "SIGTERM":  # as the CLI does: SIGTERM raised like SIGINT, so clean-ups run
    def terminated(signum, frame):
        raise KeyboardInterrupt()
    signal.signal(signal.SIGTERM, terminated)
root = Path(sys.argv[1])
graph = random_fpga_chain(3, FPGA_MUL)
(root / "tables").mkdir()
write_tables(graph, FPGA_MUL, 4, root / "tables")
try:
    run_rtl(root / "tables", fpga_inputs(3, graph, 4, 20000), build_root=root / "build", simulator="icarus")
except KeyboardInterrupt:
    print("interrupted")
    sys.exit(130)
print("finished")
"""


def _children(pid: int, name: str) -> list[int]:
    """Processes named ``name`` whose parent is ``pid`` (from /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            comm = stat.read_text().split("(", 1)[1].rsplit(")", 1)[0]
        except OSError:
            continue
        if comm == name and int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def _state(pid: int) -> str | None:
    """A process's state letter (``Z``: a zombie), or None when there is no such process."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return None


@pytest.mark.parametrize("signum, to_group", [(signal.SIGINT, True), (signal.SIGTERM, False)],
                         ids=["SIGINT-to-the-process-group", "SIGTERM-to-the-process"])
def test_an_interrupted_run_leaves_no_simulator_and_no_temporaries(signum, to_group, rtl_tools, tmp_path: Path
                                                                   ) -> None:
    """``run_rtl`` in a child process, interrupted while ``vvp`` simulates: SIGINT to the whole
    process group (Ctrl-C: vvp gets it too), or SIGTERM to the Python process alone, turned into
    an exception as the CLI does. The simulator is ended and reaped (its PID is gone, not a
    zombie), and neither the run's temporary directory nor a build scratch directory is left."""
    root, tmp = tmp_path / "run", tmp_path / "tmp"
    root.mkdir()
    tmp.mkdir()
    script = tmp_path / "child.py"
    script.write_text(_INTERRUPTED_CHILD)
    repo = Path(__file__).resolve().parent.parent
    env = {**os.environ, "PYTHONPATH": str(repo), "TMPDIR": str(tmp)}
    child = subprocess.Popen([sys.executable, str(script), str(root), signum.name], cwd=repo, env=env,
                             stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                             start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while not (vvp := _children(child.pid, "vvp")) and child.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert vvp, f"no vvp started: {child.poll()}"
        time.sleep(1.0)  # simulating
        assert child.poll() is None and _state(vvp[0]) not in (None, "Z"), "the simulation ended by itself"
        (os.killpg if to_group else os.kill)(child.pid, signum)
        out, _ = child.communicate(timeout=60)
    finally:
        if child.poll() is None:
            os.killpg(child.pid, signal.SIGKILL)
            child.wait()
    assert child.returncode == 130 and "interrupted" in out, out[-3000:]
    assert _state(vvp[0]) is None, f"vvp {vvp[0]} is still there (state {_state(vvp[0])})"
    assert not any(tmp.iterdir()), f"temporaries left: {sorted(p.name for p in tmp.iterdir())}"
    left = [p.name for p in (root / "build").iterdir()
            if not re.fullmatch(r"(icarus-|verilator-)?[0-9a-f]{24}", p.name)]
    assert not left, f"build scratch left: {left}"


@pytest.mark.parametrize("ignores_sigterm", [False, True], ids=["stops-on-SIGTERM", "ignores-SIGTERM"])
def test_a_child_is_ended_and_reaped_when_its_wait_raises(ignores_sigterm, tmp_path: Path, monkeypatch) -> None:
    """``hardware.processes.run`` (vvp, iverilog, the Lava interpreter): an exception while it
    waits (here SystemExit from a timer) stops the child, with SIGKILL after the grace period if
    SIGTERM is ignored, and reaps it before the exception goes on."""
    from hardware import processes

    monkeypatch.setattr(processes, "GRACE_S", 0.5)
    pid_file = tmp_path / "pid"
    trap = 'trap "" TERM; ' if ignores_sigterm else ""
    cmd = ["sh", "-c", f'echo $$ > {pid_file}; {trap}exec sleep 60']

    def stop(signum, frame):
        raise SystemExit(3)

    previous = signal.signal(signal.SIGALRM, stop)
    signal.setitimer(signal.ITIMER_REAL, 1.0)
    start = time.monotonic()
    try:
        with pytest.raises(SystemExit):
            processes.run(cmd)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert time.monotonic() - start < 10
    assert _state(int(pid_file.read_text())) is None  # gone: ended and reaped, not a zombie


# --- the exported digits network -----------------------------------------------------------------------

@pytest.fixture(scope="session")
def digits_fpga(default_run, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from lsg_deploy.cli import main

    out = tmp_path_factory.mktemp("fpga") / "digits"
    # the ROM build at 32 lanes, the fast one to simulate (the SPRAM default: tests/test_fpga_export_build.py)
    assert main(["export", "--target", "fpga", str(default_run.model), "--out", str(out), "--quiet",
                 "--weights", "rom"]) == 0
    return out


# slow: 50 images through the design (make test-all). make test covers it by
# test_simulate_reports_the_rtl_beside_the_reference (the same bundle, 5 images, through simulate
# --backend all) and tests/test_goldens.py's live RTL run on a chain per profile
@pytest.mark.slow
def test_exported_digits_network_matches_the_reference_on_50_images(digits_fpga: Path, rtl_tools) -> None:
    from hardware.bundle import read_bundle
    from training import data

    bundle = read_bundle(digits_fpga)
    _, test, _ = data.load(data.DataSpec.from_dict(bundle.source["data"]), timesteps=bundle.timesteps)
    inputs = test.pixels[:50]
    want = reference.run(bundle.integer_graph, inputs, bundle.timesteps, bundle.profile)
    start = time.perf_counter()
    got = run_rtl(digits_fpga, inputs)
    print(f"digits: 50 images in {time.perf_counter() - start:.1f} s, "
          f"{got.stats['cycles_per_timestep']:.0f} cycles per timestep")
    assert_equal_runs(got, want, "digits")
    assert got.stats["cycles_per_timestep_max"] >= got.stats["cycles_per_timestep"] > 0


def test_the_design_is_written_for_a_designer(digits_fpga: Path, tmp_path: Path) -> None:
    """The written sources are self-contained: the fixed modules, the top, one .mem per lane."""
    from hardware.targets.fpga.rtl.chain import TOP, write_design

    chain = chain_from_tables(read_tables(digits_fpga), max_lanes=1)
    write_design(chain, digits_fpga, tmp_path)
    names = {p.name for p in tmp_path.iterdir()}
    assert {f"{TOP}.v", "lif_layer.v", "lif_edge.v", "lif_lane.v", "lif_neuron.v", "sdp_ram.v"} <= names
    for layer in chain.layers:  # one edge, one lane: the export's own .mem files, byte for byte
        (edge,) = layer.edges
        export = digits_fpga / edge.weight_file
        assert (tmp_path / f"{edge.name}.weight.lanes1.lane000.mem").read_bytes() == export.read_bytes()


def test_simulate_reports_the_rtl_beside_the_reference(digits_fpga: Path, rtl_tools, tmp_path: Path) -> None:
    """``simulate --backend all`` on an FPGA bundle runs the RTL, compares it with the reference
    bit for bit and reports the design's cycles per timestep."""
    import json

    from lsg_deploy.cli import main

    out = tmp_path / "report.json"
    assert main(["simulate", "--fixed-point", "--backend", "all", str(digits_fpga), "--limit", "5",
                 "--json", str(out), "--quiet"]) == 0
    report = json.loads(out.read_text())
    assert set(report["backends"]) == {"reference", "rtl"}
    assert report["exact"]["equal"] is True
    rtl = report["backends"]["rtl"]
    assert rtl["cycles_per_timestep_min"] <= rtl["cycles_per_timestep"] <= rtl["cycles_per_timestep_max"]
    assert set(rtl["cycles_per_layer"]) == {row["name"] for row in report["layers"]}


def test_simulate_refuses_the_rtl_for_a_loihi_bundle(default_run, capsys) -> None:
    from lsg_deploy.cli import main

    assert main(["simulate", "--fixed-point", "--backend", "rtl", str(default_run.bundle), "--limit", "2"]) == 2
    assert "FPGA profiles" in capsys.readouterr().err


@pytest.mark.parametrize("arithmetic", [FPGA_SHIFT, FPGA_MUL4], ids=lambda p: p.name)
def test_yosys_elaborates_the_design_with_its_memories(arithmetic: Profile, tmp_path: Path) -> None:
    """Synthesis reads the same sources: yosys elaborates a random chain's design (Verilog-2005,
    every lane's $readmemh file found, 4-bit weight words of one hex digit included) into
    memories, one per lane and table."""
    import subprocess

    assert shutil.which("yosys") is not None, "yosys is not installed: apt-get install yosys (make test does)"
    from hardware.targets.fpga.rtl.chain import TOP, write_design

    graph = random_fpga_chain(4, arithmetic)
    tables, design = tmp_path / "tables", tmp_path / "design"
    tables.mkdir()
    design.mkdir()
    write_tables(graph, arithmetic, 3, tables)
    chain = chain_from_tables(read_tables(tables), max_lanes=2)
    write_design(chain, tables, design)
    sources = " ".join(p.name for p in sorted(design.glob("*.v")))
    proc = subprocess.run(["yosys", "-q", "-p", f"read_verilog {sources}; hierarchy -check -top {TOP}; proc; "
                           "memory -nomap; opt -fast; flatten; tee -o stat.txt stat"], cwd=design,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "warning" not in (proc.stdout + proc.stderr).lower()
    memories = re.search(r"\$mem_v2\s+(\d+)", (design / "stat.txt").read_text())
    # at least the input memory and every lane's accumulator, weights and membranes (yosys folds
    # one-word tables into registers)
    assert memories and int(memories.group(1)) >= 1 + 3 * sum(layer.lanes for layer in chain.layers)
