"""Where the weights live in the design: ROMs in each lane (``$readmemh``, initialised by the
bitstream: the default, for parts with the block RAM to hold them), or one RAM in the iCE40 UP5K's
four SPRAM blocks (``weight_ram.v``), written at boot through the IP core's load port.

The SPRAM plan (:func:`plan`), in rows of 64 bits (the four 16-bit blocks side by side, block b
holding bits ``[16b +: 16]``), S = 64 / weight bits slots per row (8 at 8 bits):

* each layer owns the rows ``[base, base + rows)``, in the manifest's node order from row 0;
* a layer's addresses are its lane layout (``lif_layer.v``): the words of the edges into it one
  after another, edge e from its first address (``lif_edge.v``'s ``W_BASE``), so a node fed by
  several edges (a residual add) keeps them all in its rows, each edge at its own base;
* a layer of L lanes reads the L weights of one address in one row: an address takes G slots (G
  the power of two >= L; lanes beyond L are padding, 0), a row holds S / G consecutive addresses,
  so address a sits in row ``base + a div (S/G)`` at slot ``(a mod (S/G)) * G + p`` for lane p;
* slot s of a row is bits ``[s*w +: w]`` (w: the weight width, two's complement).

The load stream (:func:`load_words`) is every row's four 16-bit words, block 0 first, row 0
first: the host writes word i at load address i. Biases stay ROMs in block RAM (the bitstream
initialises block RAM), as do the accumulators, membranes and spikes (the design clears them).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

ROM, SPRAM = "rom", "spram"
WEIGHT_MEMORIES = (ROM, SPRAM)
SPRAM_BLOCKS, SPRAM_WORDS, SPRAM_WORD_BITS = 4, 16384, 16  #: the UP5K's SPRAM: 4 x 16,384 x 16 bits
ROW_BITS = SPRAM_BLOCKS * SPRAM_WORD_BITS
ROW_AW = 14  #: row address bits
LOAD_AW = 16  #: load-port word address bits (row, block)
SPRAM_MODEL = "sb_spram256ka_model.v"  #: the simulation model of SB_SPRAM256KA (never synthesized)
WEIGHT_RAM = "weight_ram.v"


@dataclass(frozen=True)
class EdgePlacement:
    """One edge's weights among its layer's addresses."""

    edge: str
    address: int  #: its first address in the layer's lane layout (lif_edge.v's W_BASE)
    addresses: int


@dataclass(frozen=True)
class Placement:
    """One layer's weights in the SPRAM rows."""

    layer: str
    edges: tuple[EdgePlacement, ...]  #: the edges into the layer, in the order it scans them
    words: int  #: addresses of the layer's lane layout (weights per lane, every edge's)
    lanes: int
    group: int  #: slots per address (the power of two >= lanes)
    per_row: int  #: addresses per row
    base: int  #: first row
    rows: int

    @property
    def shift(self) -> int:
        """log2(per_row): address a is in row base + (a >> shift)."""
        return self.per_row.bit_length() - 1

    def place(self, address: int) -> tuple[int, int]:
        """(row, first slot) of one of the layer's addresses."""
        return self.base + address // self.per_row, (address % self.per_row) * self.group


def slots(weight_bits: int) -> int:
    return ROW_BITS // weight_bits


def plan(chain) -> tuple[Placement, ...]:
    """Each layer's rows in the SPRAM; :class:`~hardware.targets.fpga.rtl.chain.RtlUnsupported`
    where the weights do not fit it or a layer has more lanes than a row has slots."""
    from hardware.targets.fpga.rtl.network import RtlUnsupported

    bits = chain.arithmetic.weight_bits
    if ROW_BITS % bits or bits & (bits - 1):
        raise RtlUnsupported(f"weights in SPRAM need a power-of-two weight width dividing {ROW_BITS}, not {bits}")
    s = slots(bits)
    out, base = [], 0
    for layer in chain.layers:
        if layer.lanes > s:
            raise RtlUnsupported(f"weights in SPRAM: layer {layer.name} has {layer.lanes} lanes, a row holds {s} "
                                 f"{bits}-bit weights (choose max_lanes <= {s})")
        group = 1 << (layer.lanes - 1).bit_length()
        edges = tuple(EdgePlacement(e.name, e.base, len(e.weight_rows(layer.lanes))) for e in layer.edges)
        words = edges[-1].address + edges[-1].addresses
        per_row = s // group
        rows = math.ceil(words / per_row)
        out.append(Placement(layer.name, edges, words, layer.lanes, group, per_row, base, rows))
        base += rows
    if base > SPRAM_WORDS:
        raise RtlUnsupported(f"weights in SPRAM: {base:,} rows of {ROW_BITS} bits, the UP5K's SPRAM holds "
                             f"{SPRAM_WORDS:,}")
    return tuple(out)


def load_words(chain) -> np.ndarray:
    """The load stream: uint16 words, word i for load address i (:func:`plan`'s layout)."""
    bits = chain.arithmetic.weight_bits
    s = slots(bits)
    placements = plan(chain)
    total = placements[-1].base + placements[-1].rows if placements else 0
    slot_values = np.zeros((total, s), np.int64)
    for p, layer in zip(placements, chain.layers, strict=True):
        grid = np.zeros((p.rows * p.per_row, p.group), np.int64)
        grid[:p.words, :p.lanes] = layer.weight_rows()
        slot_values[p.base:p.base + p.rows] = grid.reshape(p.rows, s)
    raw = slot_values & ((1 << bits) - 1)
    per_word = SPRAM_WORD_BITS // bits
    shifts = np.arange(per_word, dtype=np.int64) * bits
    words = (raw.reshape(total, SPRAM_BLOCKS, per_word) << shifts).sum(axis=2)
    return words.reshape(-1).astype(np.uint16)


def manifest_plan(chain) -> dict[str, Any]:
    """The memory plan as the manifest states it, for the SPRAM build of ``chain``."""
    placements = plan(chain)
    bits = chain.arithmetic.weight_bits
    return {
        "build": f"weights in SPRAM (iCE40 UP5K), max_lanes {max(layer.lanes for layer in chain.layers)}",
        "weights": {
            "ram": f"SPRAM: {SPRAM_BLOCKS} x SB_SPRAM256KA ({SPRAM_WORDS} x {SPRAM_WORD_BITS} bits) side by side, "
                   f"one row of {ROW_BITS} bits per address, block b = bits [16b +: 16]",
            "row_layout": f"{slots(bits)} slots of {bits} bits, slot s = bits [s*{bits} +: {bits}], two's complement",
            "address": "a layer's lane-layout address a (lif_layer.v: its edges' words one after another, each "
                       "edge from its address), lane p: row base_row + a div per_row, slot (a mod per_row) * group "
                       "+ p; slots of lanes >= lanes are 0",
            "load": "after configuration, before the first sample: WLOAD_ADDR = 0, then every word to WLOAD_DATA, "
                    "word i = row i div 4, block i mod 4 (rows from 0, block 0 first)",
            "load_words": int(SPRAM_BLOCKS * (placements[-1].base + placements[-1].rows)),
            "layers": [{"node": p.layer, "base_row": p.base, "rows": p.rows, "lanes": p.lanes, "group": p.group,
                        "per_row": p.per_row, "addresses": p.words, "edges": [_edge_plan(p, e) for e in p.edges]}
                       for p in placements],
        },
        "biases": "ROMs in block RAM, one per layer and lane ($readmemh of <node>.bias lane files)",
        "state": "accumulators, membranes and spike buffers in block RAM, cleared by the design",
    }


def _edge_plan(placement: Placement, edge: EdgePlacement) -> dict[str, Any]:
    """One edge in the memory plan: its addresses in its layer's layout and where the first sits."""
    row, slot = placement.place(edge.address)
    return {"edge": edge.edge, "address": edge.address, "addresses": edge.addresses, "row": row, "slot": slot}


def sources(weight_memory: str, simulation: bool) -> list[str]:
    """The fixed Verilog files a build adds to ``rtl.SOURCES``: the SPRAM build's weight RAM and,
    for simulation, the SB_SPRAM256KA model (synthesis maps the primitive)."""
    if weight_memory == ROM:
        return []
    return [SPRAM_MODEL, WEIGHT_RAM] if simulation else [WEIGHT_RAM]


def tables_plan(tables) -> dict[str, Any]:
    """The manifest's ``memory_plan``: the ROM build, and the SPRAM build at one lane per layer
    (the ``.mem`` files' own order, and the export's default build), or why the weights cannot go
    into the UP5K's SPRAM."""
    from hardware.graph import BundleError
    from hardware.targets.fpga.rtl.network import chain_from_tables

    try:
        spram = manifest_plan(chain_from_tables(tables, max_lanes=1, weights=SPRAM))
    except BundleError as exc:
        spram = {"refused": str(exc)}
    return {
        "rom": {"build": "weights in ROMs (export --weights rom; for parts whose block RAM holds them)",
                "weights": "one ROM per layer and lane, initialised by the bitstream ($readmemh of "
                           "rtl/<edge>.weight.lanes<L>.laneNNN.mem, or rtl/<node>.edges.weight.lanes<L>.laneNNN.mem "
                           "for a node fed by several edges: lif_layer.v's lane layout, its edges one after another)",
                "biases": "one ROM per layer and lane ($readmemh of rtl/<node>.bias.lanes<L>.laneNNN.mem)",
                "state": "accumulators, membranes and spike buffers in block RAM, cleared by the design"},
        "spram": spram,
        "spram_lanes": f"with L lanes per layer (at most {ROW_BITS} / weight bits) the same rule places the lane "
                       "layout: hardware/targets/fpga/rtl/weight_memory.py; rtl/build.json states the plan of the "
                       "build in rtl/ (export --weights spram, the default, and --lanes)",
    }


# --- the top's Verilog ------------------------------------------------------------------------------

def top_lines(chain, w_aw: list[int]) -> list[str]:
    """The chain top's weight RAM (SPRAM build): the running layer's row read and each layer's
    lanes picked from the row; ``w_aw``: each layer's weight address width."""
    placements = plan(chain)
    bits = chain.arithmetic.weight_bits
    out = ["", "    // the weights: one RAM in the UP5K's SPRAM (weight_ram.v), written by the load port while idle",
           "    wire wr_re;", f"    reg [{ROW_AW - 1}:0] wr_row;", f"    wire [{ROW_BITS - 1}:0] wr_rdata;",
           "    wire unused_row_bits = &{1'b0, wr_rdata};  // (a layer of fewer lanes reads part of a row)",
           f"    assign wr_re = {' || '.join(f'l{k}_w_re' for k in range(len(placements)))};",
           "    always @(*) begin", f"        wr_row = {ROW_AW}'d0;"]
    for k, (p, aw) in enumerate(zip(placements, w_aw, strict=True)):
        out.append(f"        if (l{k}_w_re) wr_row = {ROW_AW}'d{p.base}{_row_offset(f'l{k}_w_raddr', aw, p.shift)};")
    out += ["    end",
            "    weight_ram u_weights (.clk(clk), .re(wr_re), .raddr(wr_row), .rdata(wr_rdata),",
            "        .we(wl_we && state == IDLE), .waddr(wl_addr), .wdata(wl_data));"]
    for k, (p, layer, aw) in enumerate(zip(placements, chain.layers, w_aw, strict=True)):
        width, sw = layer.lanes * bits, min(p.shift, aw)  # (fewer addresses than a row holds: fewer slot bits)
        if sw == 0:
            out.append(f"    wire [{width - 1}:0] l{k}_w_rdata = wr_rdata[{width - 1}:0];")
            continue
        out += [f"    reg [{sw - 1}:0] l{k}_slot;  // the address's place in the row read",
                f"    always @(posedge clk) if (l{k}_w_re) l{k}_slot <= l{k}_w_raddr[{sw - 1}:0];",
                # (slot x group x bits, a power of two: the slot shifted by wiring, not a multiplier)
                f"    wire [{width - 1}:0] l{k}_w_rdata = "
                f"wr_rdata[{{l{k}_slot, {(p.group * bits).bit_length() - 1}'d0}} +: {width}];"]
    return out


def _row_offset(addr: str, aw: int, shift: int) -> str:
    """`` + (addr >> shift)`` zero-extended to the row address, or nothing when it is always 0."""
    if shift >= aw:
        return ""
    bits = aw - shift
    part = f"{addr}[{aw - 1}:{shift}]"
    return f" + {part}" if bits == ROW_AW else f" + {{{ROW_AW - bits}'d0, {part}}}"
