"""The place-and-route figures (:mod:`hardware.targets.fpga.synth`, ``bench/fpga_synth.py``): the
summary rows and the table made from yosys's and nextpnr's reports, parsed here from reports
recorded on a tiny design (``tests/synth_goldens.py``), and, in the slow tier, the real flow on
that design with the YoWASP tools."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from hardware.targets.fpga import synth
from tests.synth_goldens import GOLDENS, TOO_SMALL, tiny_design


def _recorded(part: synth.Part) -> tuple[dict, dict]:
    stat = json.loads((GOLDENS / f"{part.key}.stat.json").read_text())
    report = json.loads((GOLDENS / f"{part.key}.report.json").read_text())
    return stat, report


def test_a_placed_design_gives_nextpnrs_resources_and_fmax():
    stat, report = _recorded(synth.ICE40_UP5K)
    r = synth.row(synth.ICE40_UP5K, 1, stat, report, "", cycles_per_step=1000.0, timesteps=4)
    assert r["fits"] and "reason" not in r
    assert r["resources_from"] == "nextpnr (placed)"
    used = report["utilization"]
    assert r["resources"]["logic"] == {"used": used["ICESTORM_LC"]["used"], "available": 5280}
    assert r["resources"]["bram"] == {"used": used["ICESTORM_RAM"]["used"], "available": 30}
    assert r["resources"]["spram"]["available"] == 4 and r["resources"]["dsp"]["available"] == 8
    cells = stat["design"]["num_cells_by_type"]
    assert r["resources"]["luts"]["used"] == cells["SB_LUT4"]  # not in nextpnr's report: yosys's count
    assert r["resources"]["ffs"]["used"] == sum(n for c, n in cells.items() if c.startswith("SB_DFF"))
    fmax = next(iter(report["fmax"].values()))["achieved"]
    assert r["fmax_mhz"] == fmax
    assert r["cycles_per_image"] == 4000.0
    assert r["images_per_second"] == fmax * 1e6 / 4000.0
    assert r["critical_path"]["delay_ns"] > 0 and r["critical_path"]["from"]


def test_the_ecp5_row_takes_luts_ffs_and_block_ram_from_its_own_bels():
    stat, report = _recorded(synth.ECP5_25F)
    r = synth.row(synth.ECP5_25F, 1, stat, report, "", cycles_per_step=500.0, timesteps=2)
    used = report["utilization"]
    assert r["resources"]["logic"] == {"used": used["TRELLIS_COMB"]["used"], "available": 24288}
    assert r["resources"]["ffs"] == {"used": used["TRELLIS_FF"]["used"], "available": 24288}
    assert r["resources"]["bram"]["available"] == 56 and r["resources"]["dsp"]["available"] == 28
    assert r["resources"]["dsp"]["used"] == used["MULT18X18D"]["used"]
    assert "spram" not in r["resources"]
    assert r["images_per_second"] == r["fmax_mhz"] * 1e6 / 1000.0


def test_a_design_that_does_not_place_is_a_row_with_the_reason():
    stat, _ = _recorded(synth.ICE40_UP5K)
    log = (GOLDENS / f"{TOO_SMALL.key}.nextpnr.log").read_text()
    r = synth.row(TOO_SMALL, 1, stat, None, log, cycles_per_step=1000.0, timesteps=4)
    assert not r["fits"]
    luts, ffs = r["yosys"]["luts"], r["yosys"]["ffs"]
    assert r["reason"] == (f"ran out of ICESTORM_LC (the part has 1,280; yosys mapped {luts:,} LUT4s and {ffs:,} "
                           "flip-flops)")
    assert r["resources_from"] == "yosys (mapped, not placed)"
    assert r["fmax_mhz"] is None and r["images_per_second"] is None


@pytest.mark.parametrize(("log", "reason"), [
    ("ERROR: Unable to place cell 'mem.0.0_RAM', no BELs remaining to implement cell type 'ICESTORM_RAM'\n",
     "needs 40 ICESTORM_RAM, the part has 30"),
    ("ERROR: Failed to expand region (0, 0) |_> (25, 31) of 5510 ICESTORM_LCs\n",
     "needs 5510 ICESTORM_LC, the part has 5280"),
    ("Info: x\nERROR: Design uses 80 DP16KD cells, but device only has 56\n", "needs 80 DP16KD, the part has 56"),
    ("ERROR: Unable to place cell 'x', no BELs remaining to implement cell type 'ICESTORM_LC'\n",
     "ran out of ICESTORM_LC (the part has 5,280; yosys mapped 9,000 LUT4s and 7 flip-flops)"),
    ("ERROR: something else went wrong\n1 error\n", "ERROR: something else went wrong"),
])
def test_the_reason_names_the_resource_that_ran_out(log: str, reason: str):
    assert synth.failure_reason(log, synth.ICE40_UP5K, {"luts": 9000, "ffs": 7, "bram": 40}) == reason


def test_reports_that_are_not_the_tools_are_refused():
    with pytest.raises(ValueError, match="yosys stat"):
        synth.yosys_cells({"modules": {}}, synth.ICE40_UP5K)
    with pytest.raises(ValueError, match="nextpnr report"):
        synth.nextpnr_utilization({"fmax": {}}, synth.ICE40_UP5K)


def test_the_table_lists_every_row_and_the_peers_and_replaces_only_its_part_of_a_file():
    stat, report = _recorded(synth.ICE40_UP5K)
    placed = synth.row(synth.ICE40_UP5K, 4, stat, report, "", 2000.0, 4)
    failed = synth.row(TOO_SMALL, 1, stat, None, (GOLDENS / f"{TOO_SMALL.key}.nextpnr.log").read_text(), 8000.0, 4)
    summary = {"rows": [placed, failed]}
    text = synth.table(summary)
    lines = text.splitlines()
    assert len(lines) == 2 + 2 + len(synth.PEERS)
    assert lines[2].startswith(f"| - | {synth.ICE40_UP5K.name} | spram | 4 | ") and "| yes |" in lines[2]
    named = synth.table({"network": {"name": "digits-cnn"}, "rows": [placed, {**failed, "network": "digits-resnet"}]})
    assert named.splitlines()[2].startswith("| digits-cnn | ")
    assert named.splitlines()[3].startswith("| digits-resnet | ")
    assert f"{placed['images_per_second']:,.0f}" in lines[2] and f"{placed['fmax_mhz']:.1f}" in lines[2]
    assert "| no: ran out of ICESTORM_LC" in lines[3] and lines[3].endswith("| - | 32,000 | - |")
    assert "Spiker+" in text and "1,282" in text and "snn-fpga" in text and "1,923" in text
    doc = f"before\n{synth.BEGIN}\nold table\n{synth.END}\nafter\n"
    assert synth.replace_table(doc, summary) == f"before\n{synth.BEGIN}\n{text}{synth.END}\nafter\n"
    with pytest.raises(ValueError, match="markers"):
        synth.replace_table("no markers", summary)


def test_the_shell_puts_the_core_behind_five_pins_with_the_debug_port_tied_off(tmp_path: Path):
    """The tiny design's shell elaborates (Icarus) with every core port connected."""
    if shutil.which("iverilog") is None:
        pytest.fail("iverilog is not installed: make rtl installs it")
    _, sources = tiny_design(tmp_path)
    design = tmp_path / "design"
    shell = (design / f"{synth.SHELL}.v").read_text()
    assert f"module {synth.SHELL} (input wire clk, input wire rst, input wire sdi, input wire load, output wire sdo)" \
        in shell
    proc = subprocess.run(["iverilog", "-g2005", "-Wall", "-Wno-timescale", "-s", synth.SHELL, "-o", "shell.vvp",
                           *sources], cwd=design, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "implicit" not in proc.stderr and "port" not in proc.stderr.lower(), proc.stderr
    assert ".dbg_hold(1'd0)" in shell and ".trace_counts()" in shell and "dbg_rd_data(outs" not in shell


@pytest.mark.slow  # the real flow (minutes); the tests above parse its recorded reports
@pytest.mark.parametrize("part", list(synth.PARTS.values()), ids=list(synth.PARTS))
def test_the_tiny_design_places_and_routes_with_the_yowasp_tools(part: synth.Part, tmp_path: Path):
    _, sources = tiny_design(tmp_path, part.weights)
    design = tmp_path / "design"
    stat, _ = synth.run_yosys(part, design, sources)
    report, log, _ = synth.run_nextpnr(part, design, 100.0)
    assert report is not None, log
    r = synth.row(part, 1, stat, report, log, 100.0, 2)
    assert r["fits"] and r["fmax_mhz"] > 5 and r["resources"]["logic"]["used"] > 100
    memories = r["resources"]["bram"]["used"] + r["yosys"].get("lutram", 0) + r["yosys"].get("spram", 0)
    assert memories > 0  # the weights are in memories
    if part.weights == "spram":
        assert r["resources"]["spram"]["used"] == 4


@pytest.mark.slow  # the real flow (about a minute)
def test_a_residual_graph_places_and_routes_on_the_up5k_with_its_weights_in_spram(tmp_path: Path):
    """A node fed by several edges reads them all from the one weight RAM: the graph's SPRAM
    build fits the UP5K with its four SPRAMs."""
    from hardware.targets.fpga.profiles import FPGA_MUL
    from hardware.targets.fpga.rtl.network import chain_from_tables
    from hardware.targets.fpga.tables import read_tables, write_tables
    from tests.netgen import random_graph

    tables = tmp_path / "tables"
    tables.mkdir()
    write_tables(random_graph(1, FPGA_MUL), FPGA_MUL, 2, tables)
    chain = chain_from_tables(read_tables(tables), max_lanes=1, weights="spram")
    assert any(len(layer.edges) > 1 for layer in chain.layers)
    part = synth.ICE40_UP5K
    sources = synth.write_core(chain, tables, tmp_path / "design")
    stat, _ = synth.run_yosys(part, tmp_path / "design", sources)
    report, log, _ = synth.run_nextpnr(part, tmp_path / "design", 100.0)
    r = synth.row(part, 1, stat, report, log, 100.0, 2)
    assert r["fits"] and r["fmax_mhz"] > 5 and r["resources"]["spram"]["used"] == 4, log


def test_a_dsp_tied_to_the_constant_0_net_is_no_clock_for_fmax():
    """nextpnr-ice40 reports a DSP used without its registers as a clock named after the packer's
    constant-0 net (seen on the UP5K build); Fmax is the design clock's."""
    report = {"fmax": {"$PACKER_GND_NET_$glb_clk": {"achieved": 5.0, "constraint": 100},
                       "clk$SB_IO_IN_$glb_clk": {"achieved": 26.4, "constraint": 100}}}
    assert synth.fmax_mhz(report) == 26.4
    assert synth.fmax_mhz({"fmax": {}}) is None
