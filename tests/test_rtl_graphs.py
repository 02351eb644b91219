"""The RTL design on graphs, against the integer reference bit for bit: nodes fed by several edges
(residual adds, identity and conv shortcuts), edges that skip nodes (from the input or an early
node into a deeper one, several edges into the readout), dense nodes that a conv reads in a
(C, H, W) view, and event-frame input.

(a) Seeded random graphs (:func:`tests.netgen.random_graph`) in every FPGA profile, a few under
    Icarus here and many under Verilator in the slow tier, with every lane organisation; a
    coverage test checks that the fast tier's seeds do hold those cases, and Verilator's lint of
    their designs reports nothing beyond lint.vlt's waivers. The layers' wavefront: each edge's
    buffer has a bank per step in flight, and a graph with skip edges and event frames gives the
    same results and per-layer cycles pipelined as serial, in fewer cycles per step.
(b) The exported networks: digits-resnet and digits-cnn trained on digits-events (the tiny
    networks of tests/conftest.py), a few test images here and 50 in the slow tier; the paper's
    ResNet-19 at width 1/16 on the digits (untrained, its tdBN statistics from its inputs) on 5.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from hardware import reference
from hardware.graph import INPUT, Graph
from hardware.profile import Profile
from hardware.targets.fpga.profiles import FPGA_MUL, FPGA_MUL4, FPGA_SHIFT
from hardware.targets.fpga.rtl.axi import axi_verilog
from hardware.targets.fpga.rtl.backend import run_rtl, simulate
from hardware.targets.fpga.rtl.chain import chain_from_tables, top_verilog, write_design
from hardware.targets.fpga.tables import read_tables, write_tables
from lsg_deploy.cli import main
from tests.netgen import random_graph, random_inputs
from tests.test_rtl import assert_equal_runs, simulate_cases
from tests.test_rtl_ip import _alone, _make, lint
from tests.test_rtl_weight_load import check_exported_spram

PROFILES = {p.name: p for p in (FPGA_MUL, FPGA_SHIFT, FPGA_MUL4)}
FAST_SEEDS = range(8)  #: per profile, under Icarus (make test)
SLOW_SEEDS = range(8, 48)  #: per profile, under Verilator (make test-all)


def _case(seed: int, profile: Profile) -> tuple[Graph, int, np.ndarray, int]:
    graph = random_graph(seed, profile)
    rng = np.random.default_rng([seed, 23])
    timesteps, batch = int(rng.integers(1, 5)), int(rng.integers(2, 4))
    lanes = int(rng.choice([1, 2, 3, 4, 32]))
    return graph, timesteps, random_inputs(seed, graph, timesteps, batch), lanes


def check_random_graphs(profile: str, seeds: range, tmp_path: Path, simulator: str) -> None:
    """The seeded graphs of ``profile``, simulated in one run of ``simulator``: every layer's
    spikes, the readout and the saturation counts equal the integer reference's."""
    arithmetic = PROFILES[profile]
    cases = {seed: _case(seed, arithmetic) for seed in seeds}
    runs = simulate_cases(arithmetic, cases, tmp_path, simulator)
    for (seed, (graph, timesteps, inputs, lanes)), got in zip(cases.items(), runs, strict=True):
        what = f"{profile} graph seed {seed} (max lanes {lanes}) on {simulator}"
        assert_equal_runs(got.run, reference.run(graph, inputs, timesteps, arithmetic), what)


@pytest.mark.parametrize("profile", list(PROFILES))
def test_random_graphs_match_the_reference(profile: str, rtl_tools, tmp_path: Path) -> None:
    check_random_graphs(profile, FAST_SEEDS, tmp_path, "icarus")


@pytest.mark.slow
@pytest.mark.parametrize("profile", list(PROFILES))
def test_random_graphs_match_the_reference_under_verilator(profile: str, rtl_tools, tmp_path: Path) -> None:
    check_random_graphs(profile, SLOW_SEEDS, tmp_path, "verilator")


def _cases_held(graph: Graph, lanes: int) -> set[str]:
    order = [INPUT, *(n.name for n in graph.nodes)]
    found = {"event frames"} if graph.input.per_step else set()
    for node in graph.nodes:
        incoming = graph.incoming(node.name)
        if len(incoming) > 1:
            found.add("several edges into the readout" if node.readout else "residual add")
            if lanes > 1 and node.shape[0] > 1:
                found.add("residual add over several lanes")
        for edge in incoming:
            if edge.source != order[order.index(node.name) - 1]:
                found.add("edge from the input into a deeper node" if edge.source == INPUT else "edge that skips nodes")
            if edge.geometry.kind == "conv" and len(graph.shape(edge.source)) == 1:
                found.add("dense node read by a conv")
            if edge.geometry.kind == "conv" and edge.weight.shape[2:] == (1, 1) and edge.source != INPUT:
                found.add("1x1 shortcut")
    return found


@pytest.mark.parametrize("profile", list(PROFILES))
def test_the_fast_seeds_hold_the_graph_cases(profile: str) -> None:
    """So that the fast tier could fail on each case the RTL adds to chains."""
    wanted = {"event frames", "residual add", "residual add over several lanes", "several edges into the readout",
              "edge from the input into a deeper node", "edge that skips nodes", "dense node read by a conv",
              "1x1 shortcut"}
    found = set()
    for seed in FAST_SEEDS:
        graph, _, _, lanes = _case(seed, PROFILES[profile])
        found |= _cases_held(graph, lanes)
    assert wanted <= found, f"the fast {profile} seeds never hold: {sorted(wanted - found)}"


def test_each_edge_reads_its_own_copy_with_a_bank_per_step_in_flight(tmp_path: Path) -> None:
    """The wavefront's buffers: an edge from node i into node k keeps k - i + 1 banks of i's spikes
    (2 for a chain edge, more for a skip edge), one from the input k + 1 frames (event frames) or
    one image; the top has one buffer per edge (the readers of a source run at the same time)."""
    seen = set()
    for seed in range(8):
        graph = random_graph(seed, FPGA_MUL)
        tables = tmp_path / f"t{seed}"
        tables.mkdir()
        write_tables(graph, FPGA_MUL, 3, tables)
        chain = chain_from_tables(read_tables(tables), 4)
        assert chain.phases == 3 + len(chain.layers) - 1
        for k, layer in enumerate(chain.layers):
            for e in layer.edges:
                i = -1 if e.source == INPUT else chain.index(e.source)
                want = (k + 1 if chain.per_step else 1) if i < 0 else k - i + 1
                assert chain.banks(e.source, k) == want
                seen.add("skip" if i >= 0 and k - i > 1 else "input frames" if i < 0 and chain.per_step else "")
        top = top_verilog(chain, [("w", "b")] * len(chain.layers))
        readers = sum(len(layer.edges) for layer in chain.layers)
        alone = sum(1 for layer in chain.layers[:-1] if not chain.readers(layer.name))
        assert top.count("    sdp_ram #(") == readers + alone
    assert {"skip", "input frames"} <= seen


def test_the_pipelined_schedule_equals_the_serial_one_in_fewer_cycles(rtl_tools, tmp_path: Path) -> None:
    """Residual graphs in both schedules, one Icarus run each: the same spikes, membranes after
    every step, readout and saturation counts (and == the reference), each layer the same cycles
    per step, and a step fewer cycles pipelined (the layers of a phase at once) than serial."""
    graphs = {seed: random_graph(seed, FPGA_MUL) for seed in (3,)}  # 6 nodes, skip edges, event frames
    cases = {seed: (graph, 3, random_inputs(seed, graph, 3, 2)) for seed, graph in graphs.items()}
    runs = {}
    for schedule in ("serial", "pipelined"):
        networks = []
        for seed, (graph, timesteps, inputs) in cases.items():
            tables = tmp_path / f"{schedule}{seed}"
            tables.mkdir()
            write_tables(graph, FPGA_MUL, timesteps, tables)
            networks.append((tables, inputs))
        runs[schedule] = simulate(networks, 4, build_root=tmp_path / "build", membranes=True, simulator="icarus",
                                  schedule=schedule)
    for (seed, (graph, timesteps, inputs)), a, b in zip(cases.items(), runs["serial"], runs["pipelined"], strict=True):
        assert_equal_runs(b.run, a.run, f"seed {seed}: pipelined against serial")
        assert_equal_runs(b.run, reference.run(graph, inputs, timesteps, FPGA_MUL), f"seed {seed}: pipelined")
        for name in a.membranes:
            assert np.array_equal(b.membranes[name], a.membranes[name]), f"seed {seed}: membranes of {name}"
        assert b.run.stats["cycles_per_layer"] == a.run.stats["cycles_per_layer"]
        assert b.run.stats["cycles_per_timestep"] < a.run.stats["cycles_per_timestep"]
        assert (b.run.stats["schedule"], a.run.stats["schedule"]) == ("pipelined", "serial")


def test_graph_designs_are_lint_clean(tmp_path: Path) -> None:
    """Verilator's -Wall on the designs of residual graphs (one and several lanes) reports nothing
    beyond lint.vlt's waivers."""
    for seed in (1, 2):
        for lanes in (1, 4):
            graph = random_graph(seed, FPGA_MUL)
            tables, design = tmp_path / f"t{seed}-{lanes}", tmp_path / f"d{seed}-{lanes}"
            tables.mkdir()
            design.mkdir()
            write_tables(graph, FPGA_MUL, 3, tables)
            chain = chain_from_tables(read_tables(tables), lanes)
            assert any(len(layer.edges) > 1 for layer in chain.layers)
            write_design(chain, tables, design)
            (design / "lsg_axi_top.v").write_text(axi_verilog(chain))
            assert lint(design) == "", f"seed {seed}, {lanes} lanes:\n{lint(design)}"


# --- the exported networks ----------------------------------------------------------------------------

def _exported(model: Path, out: Path) -> Path:
    """The ROM build (its lane memory images; the SPRAM build is checked from the same tables)."""
    assert main(["export", "--target", "fpga", str(model), "--out", str(out), "--quiet", "--weights", "rom"]) == 0
    return out


def _check_exported(bundle_dir: Path, count: int, simulator: str) -> None:
    from hardware.bundle import read_bundle
    from training import data

    bundle = read_bundle(bundle_dir)
    _, test, _ = data.load(data.DataSpec.from_dict(bundle.source["data"]), timesteps=bundle.timesteps)
    inputs = test.pixels[:count]
    want = reference.run(bundle.integer_graph, inputs, bundle.timesteps, bundle.profile)
    start = time.perf_counter()
    got = run_rtl(bundle_dir, inputs, simulator=simulator)
    print(f"{bundle_dir.name}: {count} images in {time.perf_counter() - start:.1f} s on {simulator}, "
          f"{got.stats['cycles_per_timestep']:.0f} cycles per timestep")
    assert_equal_runs(got, want, f"{bundle_dir.name} on {simulator}")


@pytest.fixture(scope="module")
def resnet_fpga(tiny_resnet: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _exported(tiny_resnet, tmp_path_factory.mktemp("fpga") / "digits-resnet")


@pytest.fixture(scope="module")
def events_fpga(tiny_events: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _exported(tiny_events, tmp_path_factory.mktemp("fpga") / "digits-events")


def test_digits_resnet_matches_the_reference(resnet_fpga: Path, rtl_tools) -> None:
    from hardware.bundle import read_bundle

    assert not read_bundle(resnet_fpga).integer_graph.is_chain  # residual adds
    _check_exported(resnet_fpga, 4, "icarus")


def test_digits_resnet_loads_its_weights_into_spram_and_runs_as_the_rom_build(resnet_fpga: Path, rtl_tools) -> None:
    """The UP5K build of a residual network: its residual nodes' edges loaded at their own
    addresses through the load port, == the ROM build and the reference on 2 test images."""
    check_exported_spram(resnet_fpga, 2, "digits-resnet")


def test_the_ip_core_of_a_residual_network_passes_its_testbench(resnet_fpga: Path, tmp_path: Path) -> None:
    """The export writes rtl/ for digits-resnet too: a node fed by several edges loads one lane
    memory image of all their weights; from rtl/ and testvectors/ alone, make sim-icarus prints
    PASS on the export's test vectors."""
    from hardware.bundle import read_bundle

    assert read_bundle(resnet_fpga).artifacts["fpga_rtl"] == {"file": "rtl/lsg_axi_top.v"}
    assert list((resnet_fpga / "rtl").glob("*.edges.weight.lanes*.lane000.mem"))
    alone = _alone(resnet_fpga, tmp_path)
    done = _make(alone, "sim-icarus")
    count = len(np.load(resnet_fpga / "testvectors" / "inputs.npz")["inputs"])
    assert done.returncode == 0 and f"PASS {count} samples" in done.stdout, done.stdout + done.stderr


def test_digits_events_matches_the_reference(events_fpga: Path, rtl_tools) -> None:
    from hardware.bundle import read_bundle

    assert read_bundle(events_fpga).integer_graph.input.per_step  # T frames a sample
    _check_exported(events_fpga, 4, "icarus")


@pytest.mark.slow
@pytest.mark.parametrize("network", ["resnet", "events"])
def test_exported_graphs_match_the_reference_on_50_images(network: str, request, rtl_tools) -> None:
    _check_exported(request.getfixturevalue(f"{network}_fpga"), 50, "verilator")


@pytest.mark.slow
def test_resnet19_at_a_sixteenth_matches_the_reference(rtl_tools, tmp_path: Path) -> None:
    """The paper's ResNet-19 at width 1/16 (stem 8 channels, blocks of 8, 16 and 32; 19 nodes, 8
    of them residual adds) on the 8x8 digits' shape, untrained with its tdBN statistics from its
    own inputs, quantized to fpga-mul: 5 samples == the reference."""
    from tests.papernets import fpga_graph, untrained

    net = untrained("resnet19", (1, 8, 8), width=1 / 16, timesteps=2, batch=5)
    graph = fpga_graph(net, FPGA_MUL)
    assert sum(len(graph.incoming(n.name)) > 1 for n in graph.nodes) >= 8
    (tmp_path / "tables").mkdir()
    write_tables(graph, FPGA_MUL, net.timesteps, tmp_path / "tables")
    inputs = net.pixels.numpy()
    start = time.perf_counter()
    got = run_rtl(tmp_path / "tables", inputs, build_root=tmp_path / "build", simulator="verilator")
    print(f"resnet19/16: {len(inputs)} samples in {time.perf_counter() - start:.1f} s, "
          f"{got.stats['cycles_per_timestep']:.0f} cycles per timestep")
    want = reference.run(graph, inputs, net.timesteps, FPGA_MUL)
    assert sum(s.sum() for s in want.spikes.values()) > 0  # it fires
    assert_equal_runs(got, want, "resnet19 at width 1/16")
