"""The network's RTL top, generated from the FPGA tables (:mod:`hardware.targets.fpga.tables`): a chain
or any graph the integer reference runs (nodes fed by several edges, edges that skip nodes,
event-frame input).

:func:`chain_from_tables` (:mod:`hardware.targets.fpga.rtl.network`) reads what the design needs
from the tables alone, refusing what the RTL does not run with a reason; :func:`write_design`
writes a self-contained source directory: the fixed modules, the generated ``lsg_chain_top.v``
and, per layer and lane, one weight and one bias ``.mem`` file in the lane's memory order
(``lif_layer.v`` and ``lif_edge.v`` state it: a node's edges one after another). With one edge and
one lane that order is the export's own row-major one, and the export's ``.mem`` file is copied
byte for byte.

The top holds one ``lif_layer`` per node, one ``lif_edge`` per edge and, per edge, its own
banked copy of its source's outputs (input frames, or a node's spikes). A sample runs as a
wavefront of T + L - 1 phases (L nodes in topological order): in phase t, layer k runs its step
t - k (where 0 <= t - k < T), each layer its edges one after another, every edge reading its
source's outputs of the step its layer runs from the copy's bank of that step (the banks, and why
copies: :class:`~hardware.targets.fpga.rtl.network.Chain`). The ROM build runs a phase's layers at
once (``pipelined``), so a step costs about the slowest layer's cycles; the SPRAM build one after
another (``serial``: they share its one weight port). Either gives the reference's results
(:mod:`hardware.reference`), step by step.

The top's interface (one sample at a time, the host steps it phase by phase)::

    in_we, in_addr, in_data     write the input: one pixel (or 0/1 event) per word, in (C, H, W)
                                row-major order; frame 0 before start, frame t + 1 (event frames)
                                after phase t; only while no phase runs
    start                       run phase 0 of a new sample (state from zero)
    step_done, t, last_step     phase t has finished: layer k's buffers hold its step t - k
    proceed                     run phase t + 1 (or, after the last phase, return to idle)
    rd_sel, rd_what, rd_addr    read (one cycle later, on rd_data) layer rd_sel's word rd_addr:
                                rd_what 0 spikes, 1 membranes, 2 {spike count, clip count} of
                                the sample so far, 3 the layer's cycles in the last phase
    step_cycles                 clock cycles of the last phase, from its start to its last
                                layer's done
    spike_totals                every layer's spikes of the sample so far, 32 bits each (layer k
                                at [32k +: 32]; the AXI top, :mod:`hardware.targets.fpga.rtl.axi`,
                                takes each step's counts from it)
    wl_we, wl_addr, wl_data     the SPRAM build only: write one 16-bit word of the weight RAM
                                (the load stream of :mod:`hardware.targets.fpga.rtl.weight_memory`,
                                a node's edges at their own addresses); taken only while idle

:mod:`hardware.targets.fpga.rtl.axi` wraps this top in the AXI4-Stream interface (``lsg_axi_top``).
"""

from __future__ import annotations

import math
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from hardware.graph import INPUT
from hardware.targets.fpga.rtl import RTL_DIR, SOURCES, weight_memory
from hardware.targets.fpga.rtl.network import (
    DEFAULT_MAX_LANES,
    PIPELINED,
    Chain,
    Edge,
    Layer,
    RtlUnsupported,
    chain_from_tables,
)
from hardware.targets.fpga.tables import to_words

#: the generator's entry points (the network's reader lives in :mod:`hardware.targets.fpga.rtl.network`)
__all__ = ["DEFAULT_MAX_LANES", "SHARED_WEIGHTS", "TOP", "Chain", "RtlUnsupported", "chain_from_tables", "top_ports",
           "top_verilog", "write_design"]

TOP = "lsg_chain_top"
SHARED_WEIGHTS = ".edges.weight"  #: ``<node>.edges.weight``: the lane memories of a node fed by several edges


# --- the .mem files in lane layout ------------------------------------------------------------------

def lane_file(prefix: str, lane: int) -> str:
    """Lane ``lane``'s ``.mem`` file of a table (``lif_lane.v`` builds the same name)."""
    return f"{prefix}.lane{lane:03d}.mem"


def _write_lanes(directory: Path, prefix: str, rows: np.ndarray, bits: int, what: str) -> None:
    """One ``$readmemh`` file per lane (column of ``rows``), hex two's complement at ``bits``."""
    for p in range(rows.shape[1]):
        head = f"// {what}, lane {p} of {rows.shape[1]}: {rows.shape[0]} words, {bits}-bit two's complement\n"
        (directory / lane_file(prefix, p)).write_text(head + "\n".join(to_words(rows[:, p], bits)) + "\n")


# --- the top ------------------------------------------------------------------------------------------

def _clog2(n: int) -> int:
    return max(1, (n - 1).bit_length())


def _layer_params(chain: Chain, layer: Layer, weight_prefix: str, bias_prefix: str) -> dict[str, Any]:
    a = chain.arithmetic
    plane = (1, 1) if layer.dense else layer.shape[1:]
    return {
        "W_BITS": a.weight_bits, "ACC_BITS": a.accumulator_bits, "V_BITS": a.membrane_bits,
        "BIAS_BITS": a.bias_bits, "DECAY_MULTIPLY": int(a.decay_multiply), "FRAC": max(a.fraction_bits, 1),
        "HALF_UP": int(a.half_up), "NO_DECAY_CODE": a.no_decay_code,
        "DECAY_CODE": layer.decay_code, "VTH": layer.vth, "READOUT": int(layer.readout),
        "OC": layer.channels, "OH": plane[0], "OW": plane[1], "LANES": layer.lanes,
        "EDGES": len(layer.edges), "XB": layer.xbits, "W_WORDS": len(layer.weight_rows()),
        "WEIGHT_PREFIX": f'"{weight_prefix}"', "BIAS_PREFIX": f'"{bias_prefix}"',
        "WEIGHT_EXT": int(chain.weight_memory != weight_memory.ROM),
    }


def _edge_params(layer: Layer, edge: Edge) -> dict[str, Any]:
    groups, h, w, lanes, bits = edge.source_words
    plane = (1, 1) if layer.dense else layer.shape[1:]
    return {
        "OC": layer.channels, "OH": plane[0], "OW": plane[1], "LANES": layer.lanes,
        "OUT_AW": _clog2(layer.words), "W_AW": _clog2(len(layer.weight_rows())), "W_BASE": edge.base,
        "DENSE": int(edge.dense), "SRC_GROUPS": groups, "SRC_H": h, "SRC_W": w, "SRC_LANES": lanes,
        "SRC_XBITS": bits, "KH": edge.kernel[0], "KW": edge.kernel[1], "SH": edge.stride[0],
        "SW": edge.stride[1], "PH": edge.padding[0], "PW": edge.padding[1],
    }


def _instance(module: str, params: dict[str, Any], name: str, ports: str) -> list[str]:
    return [f"    {module} #(", ",\n".join(f"        .{key}({value})" for key, value in params.items()),
            f"    ) {name} (", ports]


def _layer_block(chain: Chain, k: int, files: tuple[str, str]) -> list[str]:
    """Layer ``k``: its ``lif_layer``, one ``lif_edge`` per incoming edge, and their wires."""
    a, layer = chain.arithmetic, chain.layers[k]
    aw, waw, xb, e_n = _clog2(layer.words), _clog2(len(layer.weight_rows())), layer.xbits, len(layer.edges)
    edges = ", ".join(f"{'dense' if e.dense else 'conv'} {e.name} from {e.source}" for e in layer.edges)
    out = [
        "",
        f"    // layer {k}: {layer.name}, fed by {edges}",
        f"    wire l{k}_spk_we;",
        f"    wire [{aw - 1}:0] l{k}_spk_waddr;",
        f"    wire [{layer.lanes - 1}:0] l{k}_spk_wdata;",
        f"    wire [{layer.lanes * a.membrane_bits - 1}:0] l{k}_v_rdata;",
        f"    wire [31:0] l{k}_spikes, l{k}_clips;",
        f"    reg  [31:0] l{k}_cycles;",
        f"    wire [{e_n - 1}:0] l{k}_edge_go, l{k}_edge_active, l{k}_tap_issue;",
        f"    wire [{e_n * aw - 1}:0] l{k}_tap_addr;",
        f"    wire [{e_n * waw - 1}:0] l{k}_tap_w;",
        f"    wire [{e_n * xb - 1}:0] l{k}_tap_val;",
        f"    wire l{k}_w_re;",
        f"    wire [{waw - 1}:0] l{k}_w_raddr;",
    ]
    out += _instance("lif_layer", _layer_params(chain, layer, *files), f"u_l{k}", "\n".join([
        f"        .clk(clk), .rst(rst), .go(layer_go[{k}]), .first_step(t == {_clog2(chain.phases)}'d{k}),",
        "        .clear(sample_start),",
        f"        .ready(layer_ready[{k}]), .done(layer_done[{k}]),",
        f"        .edge_go(l{k}_edge_go), .edge_active(l{k}_edge_active), .tap_issue(l{k}_tap_issue),",
        f"        .tap_addr_e(l{k}_tap_addr), .tap_w_e(l{k}_tap_w), .tap_val_e(l{k}_tap_val),",
        f"        .spk_we(l{k}_spk_we), .spk_waddr(l{k}_spk_waddr), .spk_wdata(l{k}_spk_wdata),",
        f"        .v_re(step_done), .v_raddr(rd_addr[{aw - 1}:0]), .v_rdata(l{k}_v_rdata),",
        f"        .spike_count(l{k}_spikes), .clip_count(l{k}_clips),",
        f"        .w_re(l{k}_w_re), .w_raddr_out(l{k}_w_raddr), .w_rdata({_w_rdata(chain, k)}));"]))
    for j, e in enumerate(layer.edges):
        e_aw = _clog2(math.prod(e.source_words[:3]))
        value = f"l{k}_e{j}_val" if e.xbits < xb else f"l{k}_tap_val[{j * xb + xb - 1}:{j * xb}]"
        out += [f"    wire l{k}_e{j}_src_re;", f"    wire [{e_aw - 1}:0] l{k}_e{j}_src_raddr;",
                f"    wire [{e.source_words[3] * e.xbits - 1}:0] l{k}_e{j}_src_rdata;"]
        if e.xbits < xb:  # zero-extended to the layer's widest value
            out += [f"    wire [{e.xbits - 1}:0] {value};",
                    f"    assign l{k}_tap_val[{j * xb + xb - 1}:{j * xb}] = {{{{{xb - e.xbits}{{1'b0}}}}, {value}}};"]
        out += _instance("lif_edge", _edge_params(layer, e), f"u_l{k}_e{j}", "\n".join([
            f"        .clk(clk), .rst(rst), .go(l{k}_edge_go[{j}]), .active(l{k}_edge_active[{j}]),",
            f"        .src_re(l{k}_e{j}_src_re), .src_raddr(l{k}_e{j}_src_raddr), .src_rdata(l{k}_e{j}_src_rdata),",
            f"        .issue(l{k}_tap_issue[{j}]), .tap_addr(l{k}_tap_addr[{j * aw + aw - 1}:{j * aw}]),",
            f"        .w_addr(l{k}_tap_w[{j * waw + waw - 1}:{j * waw}]), .val({value}));"]))
    return out


def _w_rdata(chain: Chain, k: int) -> str:
    """Layer ``k``'s weights from the top: the SPRAM build's lanes of the row read, or none (its
    ROMs answer inside)."""
    if chain.weight_memory == weight_memory.SPRAM:
        return f"l{k}_w_rdata"
    layer = chain.layers[k]
    return f"{{{layer.lanes * chain.arithmetic.weight_bits}{{1'b0}}}}"


def _weight_ports(chain: Chain) -> list[str]:
    """The SPRAM build's weight RAM, which the layers read in turn; in the ROM build the layers'
    weight-read ports go nowhere."""
    w_aw = [_clog2(len(layer.weight_rows())) for layer in chain.layers]
    if chain.weight_memory == weight_memory.SPRAM:
        return weight_memory.top_lines(chain, w_aw)
    return ["    wire unused_weight_ports = &{1'b0, "
            + ", ".join(f"l{k}_w_re, l{k}_w_raddr" for k in range(len(chain.layers))) + "};"]


def _ext(expr: str, width: int, to: int) -> str:
    """``expr`` of ``width`` bits zero-extended to ``to`` bits."""
    return expr if width >= to else f"{{{to - width}'d0, {expr}}}"


def _advance(base: str, aw: int, banks: int, words: int) -> str:
    """The next bank's base address after ``base`` (the banks in a ring)."""
    return f"{base} == {aw}'d{(banks - 1) * words} ? {aw}'d0 : {base} + {aw}'d{words}"


def _copies(chain: Chain) -> list[tuple[str, int, int, str | None]]:
    """Every spike or input buffer copy: (source, its index among the source's copies, banks,
    the edge that reads it or None: a copy the host alone reads, of a layer no edge reads)."""
    out = []
    for name in [INPUT, *(L.name for L in chain.layers if not L.readout)]:
        readers = chain.readers(name)
        if not readers and name != INPUT:
            out.append((name, 0, 1, None))
        for c, (k, j) in enumerate(readers):
            out.append((name, c, chain.banks(name, k), f"l{k}_e{j}_src"))
    return out


def _banks(name: str, source: int | None, banks: int, words: int, aw: int) -> tuple[list[str], list[str], list]:
    """A copy's bank registers (base addresses): the declaration, the lines that set them at a
    sample's start, and ``(line, line at the sample's end or None)`` at each later phase's start.
    A layer's copy (``source`` its index) has a write and a read base; the input's (None) one base,
    the bank of frame p + 1 in and after phase p, where the host writes and the reader reads."""
    ring = [f"{name}_wbase", f"{name}_rbase"] if source is not None else [f"{name}_base"]
    first = ([-source % banks, (1 - source) % banks] if source is not None else [1 % banks])
    note = (f"banks of steps p - {source}, p - {source + banks - 1}" if source is not None
            else "frame p + 1's bank in and after phase p (0: idle)")
    declare = [f"    reg [{aw - 1}:0] {', '.join(ring)};  // {note}"]
    start = [f"{reg} <= {aw}'d{bank * words};" for reg, bank in zip(ring, first, strict=True)]
    proceed = [(f"{reg} <= {_advance(reg, aw, banks, words)};", None if source is not None else f"{reg} <= {aw}'d0;")
               for reg in ring]
    return declare, start, proceed


def _buffers(chain: Chain) -> tuple[list[str], list[str], list]:
    """The buffers between the layers: for every edge, its own copy of its source's outputs
    (spikes of a layer, or input frames), in as many banks as :meth:`Chain.banks` says, one bank
    per step in a ring. Layer i's copy for layer k is written, in phase p, at the bank of step
    p - i and read at the bank of step p - k (the one written next); the input's, in phase p and
    after it, at the bank of frame p + 1 (the host writes it) and read at the same bank (frame p -
    k). Copy 0 of a layer also answers the host between phases, at the bank just written.
    Returns the lines, the sequencer's lines at a sample's start, and at each later phase's start."""
    out = ["", "    // the buffers: each edge reads its own copy of its source, one bank per step in a ring"]
    start, proceed = [], []
    for source, c, banks, reader in _copies(chain):
        i = None if source == INPUT else chain.index(source)
        if i is None:
            words, width, name, port = chain.input_words, chain.arithmetic.input_bits, f"in_b{c}", "in"
            we, waddr, wdata = "in_we && state != RUN", "in_addr", "in_data"
        else:
            words, width, name, port = chain.layers[i].words, chain.layers[i].lanes, f"l{i}_b{c}", f"l{i}_spk"
            we, waddr, wdata = f"{port}_we", f"{port}_waddr", f"{port}_wdata"
        aw_in, aw = _clog2(words), _clog2(banks * words)
        wbase = rbase = ""
        if banks > 1:
            declare, first, later = _banks(name, i, banks, words, aw)
            out += declare
            start += first
            proceed += later
            wbase, rbase = (f"{name}_base + ",) * 2 if i is None else (f"{name}_wbase + ", f"{name}_rbase + ")
        host = f"{wbase}{_ext(f'rd_addr[{aw_in - 1}:0]', aw_in, aw)}"  # copy 0 of a layer: the bank just written
        read = f"{rbase}{_ext(f'{reader}_raddr', aw_in, aw)}" if reader else host
        re, raddr = f"{reader}_re", read
        if i is not None and c == 0:
            re = " || ".join(["step_done", *([re] if reader else [])])
            raddr = f"step_done ? {host} : {read}" if reader else host
        rdata = f"{reader}_rdata" if reader else f"{name}_rdata"
        if not reader:
            out.append(f"    wire [{width - 1}:0] {rdata};")
        out += [f"    sdp_ram #(.WIDTH({width}), .DEPTH({banks * words}), .AW({aw})) u_{name} (",
                f"        .clk(clk), .we({we}), .waddr({wbase}{_ext(waddr, aw_in, aw)}), .wdata({wdata}),",
                f"        .re({re}), .raddr({raddr}), .rdata({rdata}));"]
        if i is not None and c == 0:
            out.append(f"    wire [{width - 1}:0] l{i}_host_spikes = {rdata};")
    k = len(chain.layers) - 1
    out.append(f"    wire unused_readout_spikes = &{{1'b0, l{k}_spk_we, l{k}_spk_waddr, l{k}_spk_wdata}};  "
               "// (it never fires)")
    return out, start, proceed


def top_ports(chain: Chain) -> list[tuple[str, str, int]]:
    """The top's ports: (direction, name, width), in order (``t`` and ``step_cycles`` are regs)."""
    a, layers = chain.arithmetic, chain.layers
    rd_w = max(64, *(layer.lanes * a.membrane_bits for layer in layers))
    return [
        ("input", "clk", 1), ("input", "rst", 1),
        ("input", "in_we", 1), ("input", "in_addr", _clog2(chain.input_words)), ("input", "in_data", a.input_bits),
        ("input", "start", 1), ("input", "proceed", 1),
        ("output", "ready", 1), ("output", "step_done", 1), ("output", "last_step", 1),
        ("output", "t", _clog2(chain.phases)),
        ("input", "rd_sel", _clog2(len(layers))), ("input", "rd_what", 2),
        ("input", "rd_addr", max(_clog2(layer.words) for layer in layers)), ("output", "rd_data", rd_w),
        ("output", "step_cycles", 32), ("output", "spike_totals", 32 * len(layers)),
    ] + ([("input", "wl_we", 1), ("input", "wl_addr", weight_memory.LOAD_AW), ("input", "wl_data", 16)]
         if chain.weight_memory == weight_memory.SPRAM else [])


SCALAR_PORTS = ("clk", "rst", "in_we", "start", "proceed", "ready", "step_done", "last_step", "wl_we")


def port_range(port: str, width: int) -> str:
    """A port's declared range: none for the control bits, ``[w-1:0]`` for every bus (even of one bit)."""
    return "" if port in SCALAR_PORTS else f"[{width - 1}:0] "


def _active(chain: Chain, k: int, pw: int) -> str:
    """Whether layer ``k`` runs in phase ``t`` (its step t - k in [0, T)), as Verilog."""
    terms = ([f"t >= {pw}'d{k}"] if k > 0 else []) + (
        [f"t < {pw}'d{k + chain.timesteps}"] if k + chain.timesteps < chain.phases else [])
    return " && ".join(terms) or "1'b1"


def _go(chain: Chain, k: int) -> str:
    """Layer ``k``'s go: at the phase's start (pipelined: every active layer; serial: the first),
    or (serial) as the layer before it is done."""
    if chain.schedule == PIPELINED or k == 0:
        return f"launch && active[{k}]"
    return f"active[{k}] && (launch && !active[{k - 1}] || layer_done[{k - 1}])"


def _sequencer(chain: Chain, start: list[str], proceed: list[tuple[str, str | None]]) -> list[str]:
    """The phase sequencer: phase t runs every layer k with 0 <= t - k < T (its step t - k), all
    at once (pipelined) or one after another (serial); the phase ends when they all are done."""
    n, pw = len(chain.layers), _clog2(chain.phases)
    ind = " " * 20
    return [
        "",
        f"    // the phases: in phase t, layer k runs its step t - k ({chain.schedule})",
        f"    wire [{n - 1}:0] active, layer_go;",
        *(f"    assign active[{k}] = {_active(chain, k, pw)};" for k in range(n)),
        *(f"    assign layer_go[{k}] = {_go(chain, k)};" for k in range(n)),
        f"    reg  [{n - 1}:0] fin, running;  // done in this phase; between go and done",
        "    wire phase_end = !launch && &(fin | layer_done);",
        "    always @(posedge clk) begin",
        "        launch <= 1'b0;",
        "        sel_q <= rd_sel;",
        "        what_q <= rd_what;",
        "        if (rst) begin",
        "            state <= IDLE;",
        "            t <= 0;",
        "            step_cycles <= 0;",
        f"            running <= {n}'d0;",
        *(f"            {last}" for _, last in proceed if last),  # (the input's banks: frame 0's at idle)
        "        end else begin",
        "            fin <= launch ? ~active : fin | layer_done;",
        "            running <= (running | layer_go) & ~layer_done;",
        *(f"            if (layer_go[{k}] || running[{k}]) l{k}_cycles <= l{k}_cycles + 1;" for k in range(n)),
        "            case (state)",
        "                IDLE: if (start && &layer_ready) begin",
        "                    t <= 0;",
        "                    launch <= 1'b1;",
        "                    step_cycles <= 0;",
        *(f"{ind}l{k}_cycles <= 0;" for k in range(n)),
        *(f"{ind}{line}" for line in start),
        "                    state <= RUN;",
        "                end",
        "                RUN: begin",
        "                    step_cycles <= step_cycles + 1;",
        "                    if (phase_end) state <= WAIT;",
        "                end",
        "                WAIT: if (proceed) begin",
        "                    if (last_step) begin",
        "                        state <= IDLE;",
        *(f"{ind}    {last}" for _, last in proceed if last),
        "                    end else begin",
        "                        t <= t + 1'b1;",
        "                        launch <= 1'b1;",
        "                        step_cycles <= 0;",
        *(f"{ind}    l{k}_cycles <= 0;" for k in range(n)),
        *(f"{ind}    {line}" for line, _ in proceed),
        "                        state <= RUN;",
        "                    end",
        "                end",
        "                default: state <= IDLE;",
        "            endcase",
        "        end",
        "    end",
    ]


def module_head(writer: str, comments: list[str], module: str, declared: list[str]) -> list[str]:
    """A generated module's first lines: which generator wrote it, ``comments``, its ports."""
    return [f"// Generated by lsg-deploy (hardware/targets/fpga/rtl/{writer}) from the FPGA tables' manifest: "
            "do not edit.", *comments, "`timescale 1ns / 1ps", "`default_nettype none", "", f"module {module} (",
            ",\n".join(declared), ");"]


def top_verilog(chain: Chain, files: list[tuple[str, str]], module: str = TOP) -> str:
    """The top module's text; ``files``: each layer's (weight, bias) ``.mem`` file prefixes."""
    a, layers = chain.arithmetic, chain.layers
    n = len(layers)
    sel_w = _clog2(n)
    ports = top_ports(chain)
    rd_w = dict((name, w) for _, name, w in ports)["rd_data"]
    regs = ("t", "step_cycles")
    declared = [f"    {d:<6} {'reg ' if name in regs else 'wire'} {port_range(name, w)}{name}" for d, name, w in ports]
    out = module_head("chain.py", [
        "// " + " -> ".join([f"input{chain.input_shape}"] + [f"{L.name}{L.shape}/{L.lanes} lanes" for L in layers]),
        f"// timesteps {chain.timesteps}, input {'event frames' if chain.per_step else 'direct'} "
        f"(max {chain.input_max}), {chain.phases} phases per sample, {chain.schedule}"], module, declared) + [
        "    localparam [1:0] IDLE = 2'd0, RUN = 2'd1, WAIT = 2'd2;",
        "    reg [1:0] state;",
        "    reg launch;  // a phase starts",
        f"    reg [{sel_w - 1}:0] sel_q;",
        "    reg [1:0] what_q;",
        f"    wire [{n - 1}:0] layer_ready, layer_done;",
        "    assign step_done = state == WAIT;",
        f"    assign last_step = t == {_clog2(chain.phases)}'d{chain.phases - 1};",
        "    assign ready = state == IDLE && &layer_ready;",
        f"    wire sample_start = launch && t == {_clog2(chain.phases)}'d0;  // every layer's counters restart",
    ]
    for k in range(n):
        out += _layer_block(chain, k, files[k])
    buffers, start, proceed = _buffers(chain)
    out += buffers
    out += _weight_ports(chain)
    out.append("    assign spike_totals = {" + ", ".join(f"l{k}_spikes" for k in reversed(range(n))) + "};")
    out += _sequencer(chain, start, proceed)
    out += [
        "",
        "    // the host's read port: registered select, data one cycle after the address",
        "    assign rd_data =",
    ]

    def wide(expr: str, width: int) -> str:  # zero-extended to rd_data's width
        return expr if width == rd_w else f"{{{{{rd_w - width}{{1'b0}}}}, {expr}}}"

    for k, layer in enumerate(layers):
        spk = wide(f"l{k}_host_spikes", layer.lanes) if not layer.readout else f"{rd_w}'d0"
        v = wide(f"l{k}_v_rdata", layer.lanes * a.membrane_bits)
        out += [
            f"        sel_q == {sel_w}'d{k} ? (what_q == 2'd0 ? {spk} : what_q == 2'd1 ? {v} :",
            f"                      what_q == 2'd2 ? {wide(f'{{l{k}_spikes, l{k}_clips}}', 64)} : "
            f"{wide(f'l{k}_cycles', 32)}) :",
        ]
    out += [
        f"        {rd_w}'d0;",
        "endmodule",
        "",
        "`default_nettype wire",
        "",
    ]
    return "\n".join(out)


def table_prefixes(layer: Layer) -> tuple[str, str]:
    """The layer's weight and bias ``.mem`` file prefixes (lane files: :func:`lane_file`): the
    weights named after the edge where there is one, ``<node>.edges.weight`` where several
    edges' weights share the lane memories."""
    weights = f"{layer.edges[0].name}.weight" if len(layer.edges) == 1 else f"{layer.name}{SHARED_WEIGHTS}"
    return f"{weights}.lanes{layer.lanes}", f"{layer.name}.bias.lanes{layer.lanes}"


def write_design(chain: Chain, tables_dir: Path, out_dir: Path) -> Path:
    """Write the design's sources into ``out_dir`` (an existing directory); returns the top's path.

    ``$readmemh`` names the ``.mem`` files relative to ``out_dir``: run the simulator or the
    synthesis there."""
    out_dir = Path(out_dir)
    for source in [*SOURCES, *(RTL_DIR / name for name in weight_memory.sources(chain.weight_memory, True))]:
        shutil.copyfile(source, out_dir / source.name)
    a = chain.arithmetic
    roms = chain.weight_memory == weight_memory.ROM  # (the SPRAM build's weights come through its load port)
    for layer in chain.layers:
        weights, biases = table_prefixes(layer)
        if layer.lanes == 1 and len(layer.edges) == 1:  # the export's row-major layout is the lane's
            if roms:
                shutil.copyfile(Path(tables_dir) / layer.edges[0].weight_file, out_dir / lane_file(weights, 0))
            shutil.copyfile(Path(tables_dir) / layer.bias_file, out_dir / lane_file(biases, 0))
        else:
            if roms:
                _write_lanes(out_dir, weights, layer.weight_rows(), a.weight_bits, "weights of " + ", ".join(
                    f"{e.name} from word {e.base}" for e in layer.edges))
            _write_lanes(out_dir, biases, layer.bias_rows(), a.bias_bits, f"{layer.name} biases")
    top = out_dir / f"{TOP}.v"
    top.write_text(top_verilog(chain, [table_prefixes(layer) for layer in chain.layers]))
    return top
