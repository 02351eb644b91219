"""``DIR/rtl/``: the IP core as ``lsg-deploy export --target fpga`` writes it, for a designer who has
the export directory alone (docs/fpga-ip.md).

* every Verilog file the design needs: the fixed modules, ``lsg_chain_top.v`` and ``lsg_axi_top.v``
  (generated from the tables written beside it), and ``files.f``, the list in compile order;
* the memory images as the RTL loads them (``$readmemh``, named relative to ``rtl/``):
  ``<edge>.weight.lanes<P>.laneNNN.mem`` (a node fed by one edge) or
  ``<node>.edges.weight.lanes<P>.laneNNN.mem`` (several edges' weights, one after another), and
  ``<node>.bias.lanes<P>.laneNNN.mem``;
* ``tb_lsg.v``, a self-checking testbench: it streams ``../testvectors/inputs.mem`` through the
  AXI input (with bubbles), takes the result stream (with back-pressure) and checks the class,
  the K readout membranes and every hidden layer's spike count of every step against
  ``../testvectors/expected.mem``; prints ``PASS <n> samples`` or the first mismatch and fails;
* ``lsg_params.vh`` (the network's sizes for the testbench), ``lint.vlt`` (the Verilator lint
  waivers, each with its reason) and a ``Makefile``: ``sim-icarus``, ``sim-verilator``, ``lint``,
  needing no Python. The number of samples is counted from ``expected.mem`` when make runs;
* ``build.json``: the build written (:class:`RtlBuild`: where the weights live, the lanes) and its
  memory plan (:mod:`hardware.targets.fpga.rtl.weight_memory`); ``simulate --backend rtl`` builds
  the same design from it.

Two builds (``export --target fpga --weights``):

* ``spram`` (the default): the weights in the iCE40 UP5K's SPRAM, one lane per layer unless
  ``--lanes`` says more (the build that places and routes on the UP5K, ``make synth``). The SPRAM
  has no bitstream initialisation, so the host writes the weights at boot through the register
  bus's load port (WLOAD_ADDR, WLOAD_DATA); ``weight_load.mem`` is that load stream, one 16-bit
  word per line, made from the tables beside it by the plan in ``build.json``, and ``tb_lsg.v``
  loads it through the port before it streams the first input. ``weight_ram.v`` wraps the four
  SB_SPRAM256KA; ``sb_spram256ka_model.v`` is their simulation model (the Makefile's ``SIM_MODELS``,
  never given to synthesis, which maps the primitive itself).
* ``rom``: the weights in ``$readmemh`` ROMs (block RAM initialised by the bitstream), up to 32
  lanes per layer: for parts whose block RAM holds the weights (the ECP5, 7-series).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hardware.bundle import Bundle
from hardware.graph import BundleError
from hardware.targets.fpga.rtl import RTL_DIR, SOURCES, weight_memory
from hardware.targets.fpga.rtl.axi import AXI_TOP, axi_ports, axi_verilog, hidden, stream_bits
from hardware.targets.fpga.rtl.chain import (
    DEFAULT_MAX_LANES,
    SHARED_WEIGHTS,
    TOP,
    Chain,
    RtlUnsupported,
    chain_from_tables,
    write_design,
)
from hardware.targets.fpga.tables import read_tables

RTL_SUBDIR = "rtl"
MAIN_FILE = f"{RTL_SUBDIR}/lsg_axi_top.v"  #: the writer's main file (the bundle's artifact records it)
TESTBENCH = "tb_lsg"
LINT_WAIVERS = "lint.vlt"  #: beside the fixed modules in the package, copied into rtl/
PARAMS = "lsg_params.vh"
BUILD_FILE = "build.json"
LOAD_FILE = "weight_load.mem"  #: the SPRAM build's load stream


FIXED_FILES = (*(p.name for p in SOURCES), f"{TOP}.v", f"{AXI_TOP}.v", "files.f", PARAMS, f"{TESTBENCH}.v",
               LINT_WAIVERS, "Makefile", BUILD_FILE, LOAD_FILE, weight_memory.WEIGHT_RAM, weight_memory.SPRAM_MODEL)


@dataclass(frozen=True)
class RtlBuild:
    """Which design ``rtl/`` holds: where the weights live (``spram``: the UP5K's SPRAM, loaded at
    boot; ``rom``: bitstream-initialised ROMs) and the most output channels a layer updates per
    cycle. The export's ``--weights`` and ``--lanes``; ``build.json`` records it."""

    weights: str = weight_memory.SPRAM
    max_lanes: int = 1

    def __post_init__(self) -> None:
        if self.weights not in weight_memory.WEIGHT_MEMORIES:
            choices = ", ".join(weight_memory.WEIGHT_MEMORIES)
            raise BundleError(f"weights must be one of {choices}, got {self.weights!r}")
        if isinstance(self.max_lanes, bool) or not isinstance(self.max_lanes, int) or self.max_lanes < 1:
            raise BundleError(f"lanes must be an integer >= 1, got {self.max_lanes!r}")

    @classmethod
    def choose(cls, weights: str | None = None, lanes: int | None = None) -> RtlBuild:
        """The build for the export's options (None: the default). SPRAM is the default because the
        FPGA target's part is the iCE40 UP5K, whose 120 kbit of block RAM cannot hold the weights of
        the networks here (the digits-cnn's 683 kbit): a ROM build would never place there. One lane
        is the SPRAM default because it is the build that places and routes on the UP5K (``make
        synth``); the ROM build defaults to 32 lanes, for larger parts."""
        weights = weight_memory.SPRAM if weights is None else weights
        if lanes is None:
            lanes = 1 if weights == weight_memory.SPRAM else DEFAULT_MAX_LANES
        return cls(weights, lanes)

    def to_json(self) -> dict[str, Any]:
        return {"weights": self.weights, "max_lanes": self.max_lanes}

    @classmethod
    def from_json(cls, doc: Any, where: str) -> RtlBuild:
        if not isinstance(doc, dict) or set(doc) != {"weights", "max_lanes"}:
            raise BundleError(f"{where}: the build must be {{'weights', 'max_lanes'}}, got {doc!r}")
        try:
            return cls(doc["weights"], doc["max_lanes"])
        except BundleError as exc:
            raise BundleError(f"{where}: {exc}") from None


def read_build(directory: Path) -> RtlBuild:
    """The build an export's ``rtl/`` holds (``build.json``); the ROM build at 32 lanes where it has
    no such file (exports written before there was a choice)."""
    path = Path(directory) / RTL_SUBDIR / BUILD_FILE
    if not path.is_file():
        return RtlBuild(weight_memory.ROM, DEFAULT_MAX_LANES)
    try:
        doc = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise BundleError(f"{path} cannot be read: {exc}") from None
    return RtlBuild.from_json(doc.get("build") if isinstance(doc, dict) else None, str(path))


def build_chain(tables, build: RtlBuild) -> Chain:
    """The design of ``build`` for the tables; what it refuses (a layer wider than an SPRAM row,
    weights beyond the SPRAM) as a :class:`RtlUnsupported` that says which option to change."""
    try:
        chain = chain_from_tables(tables, build.max_lanes, build.weights)
        if build.weights == weight_memory.SPRAM:
            weight_memory.plan(chain)
    except RtlUnsupported as exc:
        if build.weights != weight_memory.SPRAM:
            raise
        rom = "--weights rom for a part whose block RAM holds the weights"
        wide = "lanes, a row holds" in str(exc)  # (fewer lanes help there; against the SPRAM's size they do not)
        raise RtlUnsupported(f"{exc}; export with {'fewer --lanes, or ' if wide else ''}{rom}") from None
    return chain
_LANE_FILE = re.compile(r"(?P<table>.+\.(weight|bias))\.lanes[1-9][0-9]*\.lane[0-9]{3}\.mem")


def is_file_name(name: str, tables: set[str]) -> bool:
    """Whether ``name`` is a file this writer writes, for a bundle whose table files are among
    ``tables`` (``<edge>.weight.mem``, ...): a fixed file, or a lane file of one of those tables."""
    folder, _, file = name.partition("/")
    if folder != RTL_SUBDIR:
        return False
    if file in FIXED_FILES:
        return True
    match = _LANE_FILE.fullmatch(file)
    if match is None:
        return False
    table = match["table"]
    if table.endswith(SHARED_WEIGHTS):  # several edges' weights in a node's lane memories
        return f"{table.removesuffix(SHARED_WEIGHTS)}.bias.mem" in tables
    return f"{table}.mem" in tables


def design_files(chain: Chain) -> list[str]:
    """The design's Verilog files in compile order (``files.f``): what synthesis takes."""
    return ([p.name for p in SOURCES] + weight_memory.sources(chain.weight_memory, simulation=False)
            + [f"{TOP}.v", f"{AXI_TOP}.v"])


def simulation_models(chain: Chain) -> list[str]:
    """The simulation models the design needs beside ``files.f`` (the Makefile's ``SIM_MODELS``)."""
    synthesized = set(weight_memory.sources(chain.weight_memory, simulation=False))
    return [s for s in weight_memory.sources(chain.weight_memory, simulation=True) if s not in synthesized]


def sample_cycle_limit(chain: Chain) -> int:
    """The testbench's watchdog: a generous bound on one sample's cycles."""
    from hardware.targets.fpga.rtl.backend import step_cycle_limit

    frames = chain.timesteps if chain.per_step else 1
    return chain.phases * step_cycle_limit(chain) + 8 * frames * chain.input_words + 1000


def params_vh(chain: Chain) -> str:
    k = chain.layers[-1].neurons
    ports = {name: width for _, name, width in axi_ports(chain)}
    values = {"LSG_T": chain.timesteps, "LSG_K": k, "LSG_L": hidden(chain), "LSG_F": chain.input_words,
              "LSG_FRAMES": chain.timesteps if chain.per_step else 1,
              "LSG_TDATA_BITS": stream_bits(chain.arithmetic.input_bits),
              "LSG_SAMPLE_CYCLES": sample_cycle_limit(chain), "LSG_STEP_BITS": ports["trace_step"],
              "LSG_DBG_BITS": ports["dbg_rd_data"], "LSG_SEL_BITS": ports["dbg_rd_sel"],
              "LSG_ADDR_BITS": ports["dbg_rd_addr"],
              # the SPRAM build's load stream (weight_load.mem), 0: the ROM build loads nothing
              "LSG_WLOAD_WORDS": len(weight_memory.load_words(chain)) if chain.weight_memory == weight_memory.SPRAM
              else 0}
    return ("// Generated by lsg-deploy (hardware/targets/fpga/rtl/ip.py): the network's sizes for tb_lsg.v.\n"
            + "".join(f"`define {name} {value}\n" for name, value in values.items()))


def makefile(chain: Chain) -> str:
    k, hid = chain.layers[-1].neurons, hidden(chain)
    r = 1 + k + chain.timesteps * hid
    return MAKEFILE.replace("@R@", str(r)).replace("@SIM_MODELS@", " ".join(simulation_models(chain)))


def build_record(chain: Chain, build: RtlBuild, tables) -> dict[str, Any]:
    """``build.json``: the build and where each table lives in it (the SPRAM plan at the build's
    lanes, whose load stream is ``weight_load.mem``; or the ROM build's files)."""
    if build.weights == weight_memory.SPRAM:
        plan = {**weight_memory.manifest_plan(chain), "load_file": f"{LOAD_FILE}: one 16-bit word per line, hex, "
                "word i for load address i"}
    else:
        plan = weight_memory.tables_plan(tables)["rom"]
    return {"build": build.to_json(), "lanes": {layer.name: layer.lanes for layer in chain.layers},
            "memory_plan": plan}


def write_load_stream(chain: Chain, path: Path) -> None:
    """The SPRAM build's load stream as ``$readmemh`` words (the testbench's, a boot loader's)."""
    words = weight_memory.load_words(chain)
    head = (f"// weight load stream of the SPRAM build: {len(words)} words of 16 bits, word i to WLOAD_DATA after "
            "WLOAD_ADDR = 0 (build.json: the plan)\n")
    path.write_text(head + "\n".join(f"{int(w):04x}" for w in words) + "\n")


def write_rtl(bundle: Bundle, directory: Path, weights: str | None = None, lanes: int | None = None) -> tuple[str, ...]:
    """Write ``directory/rtl/`` from the FPGA tables already written in ``directory``, the build
    the export's ``weights`` and ``lanes`` choose (:meth:`RtlBuild.choose`); returns every file
    written, relative to ``directory``. What the build refuses is a :class:`RtlUnsupported`."""
    directory = Path(directory)
    build = RtlBuild.choose(weights, lanes)
    tables = read_tables(directory)
    chain = build_chain(tables, build)
    out = directory / RTL_SUBDIR
    out.mkdir()
    write_design(chain, directory, out)
    (out / f"{AXI_TOP}.v").write_text(axi_verilog(chain))
    (out / "files.f").write_text("".join(f"{name}\n" for name in design_files(chain)))
    (out / PARAMS).write_text(params_vh(chain))
    (out / BUILD_FILE).write_text(json.dumps(build_record(chain, build, tables), indent=2) + "\n")
    if build.weights == weight_memory.SPRAM:
        write_load_stream(chain, out / LOAD_FILE)
    (out / f"{TESTBENCH}.v").write_text((RTL_DIR / f"{TESTBENCH}.v").read_text())
    (out / LINT_WAIVERS).write_text((RTL_DIR / LINT_WAIVERS).read_text())
    (out / "Makefile").write_text(makefile(chain))
    return tuple(sorted(f"{RTL_SUBDIR}/{p.name}" for p in out.iterdir()))


MAKEFILE = """\
# Generated by lsg-deploy (hardware/targets/fpga/rtl/ip.py). Simulates the IP core (lsg_axi_top) on
# the export's test vectors with tb_lsg.v and prints PASS <n> samples, or the first mismatch (and
# fails). Needs Icarus Verilog (iverilog, vvp) or Verilator 5 (with make and a C++20 compiler); no Python.
#   make sim-icarus | make sim-verilator | make lint      (VECTORS=dir to use other test vectors)
VECTORS ?= ../testvectors
IVERILOG ?= iverilog
VVP ?= vvp
VERILATOR ?= verilator
BUILD ?= build
# words of expected.mem per sample: the class, the K readout membranes, T x L spike counts
R := @R@
N = $(shell expr $$(grep -c '^[0-9a-fA-F]' $(VECTORS)/expected.mem) / $(R))
DESIGN := $(shell cat files.f)
# simulation models of the part's primitives (the SPRAM build's SB_SPRAM256KA): never synthesized
SIM_MODELS := @SIM_MODELS@
VECTOR_DEFINES = '-DLSG_INPUTS="$(VECTORS)/inputs.mem"' '-DLSG_EXPECTED="$(VECTORS)/expected.mem"'

.PHONY: sim-icarus sim-verilator lint vectors clean

vectors:
\t@test -f $(VECTORS)/inputs.mem -a -f $(VECTORS)/expected.mem || \\
\t  { echo "no test vectors in $(VECTORS): export with --testvectors N (N > 0)"; exit 2; }
\t@words=$$(grep -c '^[0-9a-fA-F]' $(VECTORS)/expected.mem); test $$((words % $(R))) -eq 0 -a $$words -gt 0 || \\
\t  { echo "$(VECTORS)/expected.mem: $$words words, not a whole number of samples of $(R)"; exit 2; }
\t@test ! -e inputs.mem -a ! -e expected.mem || { echo "remove inputs.mem/expected.mem from rtl/"; exit 2; }

sim-icarus: vectors
\t@mkdir -p $(BUILD)
\t$(IVERILOG) -g2012 -Wall -Wno-timescale -DLSG_N=$(N) $(VECTOR_DEFINES) -s tb_lsg \\
\t  -o $(BUILD)/tb_lsg.vvp $(SIM_MODELS) $(DESIGN) tb_lsg.v
\t@$(VVP) -n $(BUILD)/tb_lsg.vvp > $(BUILD)/icarus.log 2>&1; status=$$?; cat $(BUILD)/icarus.log; \\
\t  test $$status -eq 0 && grep -q '^PASS' $(BUILD)/icarus.log

sim-verilator: vectors
\t@mkdir -p $(BUILD)
\t$(VERILATOR) --binary --timing -j 0 -Wno-lint -Wno-style -DLSG_N=$(N) $(VECTOR_DEFINES) \\
\t  --top-module tb_lsg -Mdir $(BUILD)/verilator-N$(N) -o Vtb_lsg $(SIM_MODELS) $(DESIGN) tb_lsg.v
\t@$(BUILD)/verilator-N$(N)/Vtb_lsg > $(BUILD)/verilator.log 2>&1; status=$$?; cat $(BUILD)/verilator.log; \\
\t  test $$status -eq 0 && grep -q '^PASS' $(BUILD)/verilator.log

# every warning of the design (the tops and their modules); lint.vlt holds the waivers, each with its reason
lint:
\t$(VERILATOR) --lint-only -Wall --top-module lsg_axi_top lint.vlt $(SIM_MODELS) $(DESIGN)

clean:
\trm -rf $(BUILD)
"""
