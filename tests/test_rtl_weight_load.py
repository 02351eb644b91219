"""The SPRAM build (hardware/targets/fpga/rtl/weight_memory.py, weight_ram.v): the weights in the
iCE40 UP5K's SPRAM, written at boot through the IP core's load port by the cocotb driver, from the
exported tables. A design that loads its weights and then runs gives the same results as the ROM
build, with ``==`` on every spike, membrane, readout and saturation count, and both equal the
integer reference, for chains and for graphs with residual adds (a node's edges at their own
addresses in its rows); the load stream holds exactly the plan's layout; the plan refuses what does
not fit, and the manifest states it so that check_tables verifies it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from hardware import reference
from hardware.graph import BundleError
from hardware.targets.fpga.profiles import FPGA_MUL, FPGA_MUL4, FPGA_SHIFT
from hardware.targets.fpga.rtl import weight_memory
from hardware.targets.fpga.rtl.backend import run_rtl, simulate
from hardware.targets.fpga.rtl.chain import RtlUnsupported, chain_from_tables
from hardware.targets.fpga.rtl.network import PIPELINED, SERIAL
from hardware.targets.fpga.tables import MANIFEST_NAME, check_tables, read_tables, write_tables
from tests.netgen import random_graph, random_inputs
from tests.netgen_chains import fpga_inputs, random_fpga_chain
from tests.test_rtl import assert_equal_runs, digits_fpga  # noqa: F401 (a fixture)

PROFILES = (FPGA_MUL, FPGA_SHIFT, FPGA_MUL4)
#: (seed, max lanes): serial, lane counts that pad a row's slot group (3, 5) and a full row (8)
CASES = ((0, 1), (1, 3), (2, 5), (5, 8))


def _tables(tmp_path: Path, seed: int, profile, timesteps: int = 3) -> Path:
    directory = tmp_path / f"{profile.name}-seed{seed}"
    directory.mkdir()
    write_tables(random_fpga_chain(seed, profile), profile, timesteps, directory)
    return directory


def check_spram_against_rom(profile, cases: list[tuple[str, object, Path, np.ndarray, int]], tmp_path: Path) -> None:
    """``(what, graph, tables directory, inputs, max lanes)`` cases, each build in one Icarus run:
    the SPRAM build equals the ROM build of its schedule (serial: every spike, readout, saturation
    count, membrane and the cycles per step) and the integer reference."""
    networks, lanes = [(tables, inputs) for _, _, tables, inputs, _ in cases], [c[-1] for c in cases]
    rom = simulate(networks, lanes, tmp_path / "build", membranes=True, simulator="icarus", schedule=SERIAL)
    spram = simulate(networks, lanes, tmp_path / "build", membranes=True, simulator="icarus", weights="spram")
    for (what, graph, _, inputs, _), a, b in zip(cases, rom, spram, strict=True):
        assert_equal_runs(b.run, a.run, f"{what}: SPRAM build against the ROM build")
        assert b.membranes.keys() == a.membranes.keys()
        for name in a.membranes:
            assert np.array_equal(b.membranes[name], a.membranes[name]), f"{what}: membranes of {name}"
        assert_equal_runs(b.run, reference.run(graph, inputs, 3, profile), f"{what}: SPRAM build against the reference")
        assert b.run.stats["cycles_per_timestep"] == a.run.stats["cycles_per_timestep"]


@pytest.mark.parametrize("profile", PROFILES, ids=[p.name for p in PROFILES])
def test_loading_the_weights_then_running_equals_the_rom_build(profile, rtl_tools, tmp_path: Path):
    cases = []
    for seed, max_lanes in CASES:
        graph = random_fpga_chain(seed, profile)
        cases.append((f"{profile.name} seed {seed}, max lanes {max_lanes}", graph, _tables(tmp_path, seed, profile),
                      fpga_inputs(seed, graph, 3, 3), max_lanes))
    check_spram_against_rom(profile, cases, tmp_path)


def test_the_spram_build_is_lint_clean(tmp_path: Path):
    """Verilator -Wall on the SPRAM build (the weight RAM and the SB_SPRAM256KA model included) of
    chains and of residual graphs: nothing beyond lint.vlt's waivers."""
    from hardware.targets.fpga.rtl.axi import axi_verilog
    from hardware.targets.fpga.rtl.chain import write_design
    from tests.test_rtl_ip import lint

    designs = [(f"chain seed {seed}", _tables(tmp_path, seed, FPGA_MUL), lanes) for seed, lanes in CASES[:3]]
    designs += [(f"graph seed {seed}", _graph_tables(tmp_path, seed, FPGA_MUL), lanes) for seed, lanes in GRAPH_CASES]
    for i, (what, tables, max_lanes) in enumerate(designs):
        chain = chain_from_tables(read_tables(tables), max_lanes, weights="spram")
        design = tmp_path / f"design{i}"
        design.mkdir()
        write_design(chain, tables, design)
        (design / "lsg_axi_top.v").write_text(axi_verilog(chain))
        found = lint(design, tuple(weight_memory.sources("spram", simulation=True)))
        assert found == "", f"{what}, {max_lanes} lanes:\n{found}"


def _decode(words: np.ndarray, bits: int) -> np.ndarray:
    """(rows, slots) signed weights from the load stream: 4 words a row, block 0 the low bits."""
    rows = words.astype(np.int64).reshape(-1, weight_memory.SPRAM_BLOCKS)
    value = sum(rows[:, b] << (16 * b) for b in range(weight_memory.SPRAM_BLOCKS))  # < 2^64: python ints
    slots = 64 // bits
    out = np.array([[(int(v) >> (s * bits)) & ((1 << bits) - 1) for s in range(slots)] for v in value], np.int64)
    return np.where(out >= 1 << (bits - 1), out - (1 << bits), out)


@pytest.mark.parametrize(("profile", "max_lanes"), [(FPGA_MUL, 1), (FPGA_MUL, 3), (FPGA_MUL4, 5), (FPGA_MUL4, 16)])
def test_the_load_stream_holds_each_lanes_weight_where_the_plan_says(profile, max_lanes, tmp_path: Path):
    chain = chain_from_tables(read_tables(_tables(tmp_path, 1, profile)), max_lanes, weights="spram")
    rows = _decode(weight_memory.load_words(chain), chain.arithmetic.weight_bits)
    placed = weight_memory.plan(chain)
    assert placed[0].base == 0 and len(rows) == placed[-1].base + placed[-1].rows
    for p, layer in zip(placed, chain.layers, strict=True):
        assert p.base + p.rows <= len(rows) and p.group >= layer.lanes and p.group & (p.group - 1) == 0
        want = layer.weight_rows()  # (addresses, lanes): lif_layer.v's lane layout
        for a in range(p.words):
            row, slot = p.base + a // p.per_row, (a % p.per_row) * p.group
            assert list(rows[row, slot:slot + layer.lanes]) == list(want[a]), f"{layer.name} address {a}"
            assert not rows[row, slot + layer.lanes:slot + p.group].any(), "padding slots are 0"


def test_the_plan_refuses_weights_that_do_not_fit_and_rows_too_narrow_for_the_lanes(tmp_path: Path):
    wide = read_tables(_tables(tmp_path, 0, FPGA_MUL))  # h0: 11 neurons, 11 lanes at max_lanes 32
    with pytest.raises(RtlUnsupported, match="h0 has 11 lanes, a row holds 8 8-bit weights"):
        chain_from_tables(wide, max_lanes=32, weights="spram")
    assert chain_from_tables(wide, max_lanes=8, weights="spram").layers[0].lanes == 1  # (11 is prime)
    tables = read_tables(_tables(tmp_path, 1, FPGA_MUL))
    big = tables.manifest["edges"][1]["name"]
    huge = {**tables.weights, big: np.zeros((6, 200_000), np.int64)}
    with pytest.raises(RtlUnsupported, match="the UP5K's SPRAM holds 16,384"):
        weight_memory.plan(chain_from_tables(type(tables)(tables.manifest, huge, tables.biases), 1))
    with pytest.raises(ValueError, match="weights must be one of rom, spram"):
        chain_from_tables(tables, 1, weights="flash")
    assert chain_from_tables(tables, 1, weights="spram").schedule == SERIAL  # its layers share one port
    with pytest.raises(RtlUnsupported, match="share one weight RAM port"):
        chain_from_tables(tables, 1, weights="spram", schedule=PIPELINED)
    with pytest.raises(ValueError, match="schedule must be one of pipelined, serial"):
        chain_from_tables(tables, 1, schedule="parallel")


def test_the_manifest_states_the_plan_and_check_tables_verifies_it(tmp_path: Path):
    graph = random_fpga_chain(1, FPGA_MUL)
    directory = _tables(tmp_path, 1, FPGA_MUL)
    manifest = json.loads((directory / MANIFEST_NAME).read_text())
    plan = manifest["memory_plan"]
    chain = chain_from_tables(read_tables(directory), 1, weights="spram")
    assert plan["spram"]["weights"]["load_words"] == len(weight_memory.load_words(chain))
    assert [p["base_row"] for p in plan["spram"]["weights"]["layers"]] == [p.base for p in weight_memory.plan(chain)]
    assert "ROM" in plan["rom"]["build"]
    check_tables(graph, FPGA_MUL, 3, directory)  # as written: accepted
    plan["spram"]["weights"]["layers"][1]["base_row"] += 1
    (directory / MANIFEST_NAME).write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match=r"memory_plan\.spram\.weights\.layers\[1\]\.base_row"):
        check_tables(graph, FPGA_MUL, 3, directory)


def check_exported_spram(bundle_dir: Path, count: int, what: str) -> None:
    """An exported network's UP5K build (8 lanes: a row holds eight 8-bit weights) on ``count``
    test images: == the ROM build of its schedule (serial; cycles too) and the reference."""
    from hardware.bundle import read_bundle
    from training import data

    bundle = read_bundle(bundle_dir)
    _, test, _ = data.load(data.DataSpec.from_dict(bundle.source["data"]), timesteps=bundle.timesteps)
    inputs = test.pixels[:count]
    rom = run_rtl(bundle_dir, inputs, max_lanes=8, simulator="icarus", schedule=SERIAL)
    spram = run_rtl(bundle_dir, inputs, max_lanes=8, simulator="icarus", weights="spram")
    assert_equal_runs(spram, rom, f"{what}: SPRAM build against the ROM build")
    assert spram.stats["cycles_per_timestep"] == rom.stats["cycles_per_timestep"]
    want = reference.run(bundle.integer_graph, inputs, bundle.timesteps, bundle.profile)
    assert_equal_runs(spram, want, f"{what}: SPRAM build against the reference")


def test_the_digits_network_loads_its_weights_and_runs_as_the_rom_build(digits_fpga: Path, rtl_tools):  # noqa: F811 (the fixture)
    """The exported digits network (8 lanes, the UP5K build of make synth) on 2 test images."""
    check_exported_spram(digits_fpga, 2, "digits")


# --- graphs: a node fed by several edges keeps every edge's weights in its rows ---------------------

#: (seed, max lanes) of tests.netgen's random graphs: residual adds at one lane and over several
GRAPH_CASES = ((1, 1), (2, 4))


def _graph_tables(tmp_path: Path, seed: int, profile, timesteps: int = 3) -> Path:
    directory = tmp_path / f"{profile.name}-graph{seed}"
    directory.mkdir()
    write_tables(random_graph(seed, profile), profile, timesteps, directory)
    return directory


@pytest.mark.parametrize(("profile", "max_lanes"), [(FPGA_MUL, 1), (FPGA_MUL, 4), (FPGA_MUL4, 3)])
def test_each_edge_of_a_residual_node_sits_at_its_base_in_the_plan(profile, max_lanes, tmp_path: Path):
    """The plan states every edge into a node at the address its lif_edge scans from (W_BASE), and
    the load stream holds that edge's weights from there on; the manifest says the same."""
    directory = _graph_tables(tmp_path, 1, profile)
    chain = chain_from_tables(read_tables(directory), max_lanes, weights="spram")
    assert any(len(layer.edges) > 1 for layer in chain.layers)
    rows = _decode(weight_memory.load_words(chain), chain.arithmetic.weight_bits)
    for p, layer in zip(weight_memory.plan(chain), chain.layers, strict=True):
        assert [(e.edge, e.address) for e in p.edges] == [(e.name, e.base) for e in layer.edges]
        for placed, edge in zip(p.edges, layer.edges, strict=True):
            want = edge.weight_rows(layer.lanes)
            assert placed.addresses == len(want)
            for a in range(placed.addresses):
                row, slot = p.place(placed.address + a)
                assert list(rows[row, slot:slot + layer.lanes]) == list(want[a]), f"{edge.name} address {a}"
    stated = json.loads((directory / MANIFEST_NAME).read_text())["memory_plan"]["spram"]["weights"]["layers"]
    at_one_lane = weight_memory.plan(chain_from_tables(read_tables(directory), 1, weights="spram"))
    keys = ("edge", "address", "addresses", "row", "slot")
    assert [[tuple(e[k] for k in keys) for e in node["edges"]] for node in stated] \
        == [[(e.edge, e.address, e.addresses, *p.place(e.address)) for e in p.edges] for p in at_one_lane]


@pytest.mark.parametrize("profile", PROFILES, ids=[p.name for p in PROFILES])
def test_graphs_load_their_weights_and_run_as_the_rom_build(profile, rtl_tools, tmp_path: Path):
    cases = []
    for seed, max_lanes in GRAPH_CASES:
        graph, tables = random_graph(seed, profile), _graph_tables(tmp_path, seed, profile)
        assert any(len(layer.edges) > 1 for layer in chain_from_tables(read_tables(tables), max_lanes).layers)
        cases.append((f"{profile.name} graph seed {seed}, max lanes {max_lanes}", graph, tables,
                      random_inputs(seed, graph, 3, 2), max_lanes))
    check_spram_against_rom(profile, cases, tmp_path)
