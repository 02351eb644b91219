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

The top holds the input memory, one ``lif_layer`` per node (its spike buffer is what its
consumers read) and one ``lif_edge`` per edge. A step runs the layers in topological order, and
each layer its edges one after another, every edge reading its source's outputs of the same step
(a spike buffer keeps them until the node's next update, after all its consumers in the order):
the reference's schedule (:mod:`hardware.reference`).

The top's interface (one sample at a time, the host steps it)::

    in_we, in_addr, in_data     write the input memory: one pixel (or 0/1 event) per word, in
                                (C, H, W) row-major order; only while not running a step
    start                       run step 0 of a new sample (state from zero)
    step_done, t, last_step     step t has finished; the buffers hold its spikes and membranes
    proceed                     run step t + 1 (or, after the last step, return to idle)
    rd_sel, rd_what, rd_addr    read (one cycle later, on rd_data) layer rd_sel's word rd_addr:
                                rd_what 0 spikes, 1 membranes, 2 {spike count, clip count} of
                                the sample so far, 3 the layer's cycles in the last step
    step_cycles                 clock cycles of the last step, from its start to its last
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
from hardware.targets.fpga.rtl.network import DEFAULT_MAX_LANES, Chain, Edge, Layer, RtlUnsupported, chain_from_tables
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


def _layer_block(chain: Chain, k: int, files: tuple[str, str], sel_w: int) -> list[str]:
    """Layer ``k``: its ``lif_layer``, one ``lif_edge`` per incoming edge, and their wires."""
    a, layer = chain.arithmetic, chain.layers[k]
    aw, waw, xb, e_n = _clog2(layer.words), _clog2(len(layer.weight_rows())), layer.xbits, len(layer.edges)
    edges = ", ".join(f"{'dense' if e.dense else 'conv'} {e.name} from {e.source}" for e in layer.edges)
    out = [
        "",
        f"    // layer {k}: {layer.name}, fed by {edges}",
        f"    wire l{k}_spk_re;",
        f"    wire [{aw - 1}:0] l{k}_spk_raddr;",
        f"    wire [{layer.lanes - 1}:0] l{k}_spk_rdata;",
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
        f"        .clk(clk), .rst(rst), .go(go_pulse && cur == {sel_w}'d{k}), .first_step(first),",
        f"        .ready(layer_ready[{k}]), .done(layer_done[{k}]),",
        f"        .edge_go(l{k}_edge_go), .edge_active(l{k}_edge_active), .tap_issue(l{k}_tap_issue),",
        f"        .tap_addr_e(l{k}_tap_addr), .tap_w_e(l{k}_tap_w), .tap_val_e(l{k}_tap_val),",
        f"        .spk_re(l{k}_spk_re), .spk_raddr(l{k}_spk_raddr), .spk_rdata(l{k}_spk_rdata),",
        f"        .v_re(step_done), .v_raddr(rd_addr[{aw - 1}:0]), .v_rdata(l{k}_v_rdata),",
        f"        .spike_count(l{k}_spikes), .clip_count(l{k}_clips),",
        f"        .w_re(l{k}_w_re), .w_raddr_out(l{k}_w_raddr), .w_rdata({_w_rdata(chain, k)}));"]))
    for j, e in enumerate(layer.edges):
        e_aw = _clog2(math.prod(e.source_words[:3]))
        src = "in" if e.source == INPUT else f"l{chain.layers.index(_layer(chain, e.source))}_spk"
        value = f"l{k}_e{j}_val" if e.xbits < xb else f"l{k}_tap_val[{j * xb + xb - 1}:{j * xb}]"
        out += [f"    wire l{k}_e{j}_src_re;", f"    wire [{e_aw - 1}:0] l{k}_e{j}_src_raddr;"]
        if e.xbits < xb:  # zero-extended to the layer's widest value
            out += [f"    wire [{e.xbits - 1}:0] {value};",
                    f"    assign l{k}_tap_val[{j * xb + xb - 1}:{j * xb}] = {{{{{xb - e.xbits}{{1'b0}}}}, {value}}};"]
        out += _instance("lif_edge", _edge_params(layer, e), f"u_l{k}_e{j}", "\n".join([
            f"        .clk(clk), .rst(rst), .go(l{k}_edge_go[{j}]), .active(l{k}_edge_active[{j}]),",
            f"        .src_re(l{k}_e{j}_src_re), .src_raddr(l{k}_e{j}_src_raddr), .src_rdata({src}_rdata),",
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


def _layer(chain: Chain, name: str) -> Layer:
    return next(layer for layer in chain.layers if layer.name == name)


def _read_ports(chain: Chain) -> list[str]:
    """Every source buffer's read port, shared by the edges that read it (one at a time: the
    layers run one after another, their edges too) and, for a spike buffer, the host between steps."""
    out = ["", "    // the buffers' read ports: the edge that scans them, or the host between steps"]
    for name, wire in [(INPUT, "in"), *((L.name, f"l{k}_spk") for k, L in enumerate(chain.layers) if not L.readout)]:
        readers = [f"l{k}_e{j}_src" for k, j in chain.readers(name)]
        host = name != INPUT
        addr = f"{readers[-1]}_raddr"
        for r in reversed(readers[:-1]):
            addr = f"{r}_re ? {r}_raddr : {addr}"
        if host:
            aw = _clog2(_layer(chain, name).words)
            addr = f"step_done ? rd_addr[{aw - 1}:0] : {addr}"
        enables = (["step_done"] if host else []) + [f"{r}_re" for r in readers]
        out.append(f"    assign {wire}_re = {' || '.join(enables)};")
        out.append(f"    assign {wire}_raddr = {addr};")
    readout = len(chain.layers) - 1
    out.append(f"    assign l{readout}_spk_re = step_done;")
    out.append(f"    assign l{readout}_spk_raddr = rd_addr[{_clog2(chain.layers[-1].words) - 1}:0];")
    return out


def top_ports(chain: Chain) -> list[tuple[str, str, int]]:
    """The top's ports: (direction, name, width), in order (``t`` and ``step_cycles`` are regs)."""
    a, layers = chain.arithmetic, chain.layers
    rd_w = max(64, *(layer.lanes * a.membrane_bits for layer in layers))
    return [
        ("input", "clk", 1), ("input", "rst", 1),
        ("input", "in_we", 1), ("input", "in_addr", _clog2(chain.input_words)), ("input", "in_data", a.input_bits),
        ("input", "start", 1), ("input", "proceed", 1),
        ("output", "ready", 1), ("output", "step_done", 1), ("output", "last_step", 1),
        ("output", "t", _clog2(chain.timesteps)),
        ("input", "rd_sel", _clog2(len(layers))), ("input", "rd_what", 2),
        ("input", "rd_addr", max(_clog2(layer.words) for layer in layers)), ("output", "rd_data", rd_w),
        ("output", "step_cycles", 32), ("output", "spike_totals", 32 * len(layers)),
    ] + ([("input", "wl_we", 1), ("input", "wl_addr", weight_memory.LOAD_AW), ("input", "wl_data", 16)]
         if chain.weight_memory == weight_memory.SPRAM else [])


SCALAR_PORTS = ("clk", "rst", "in_we", "start", "proceed", "ready", "step_done", "last_step", "wl_we")


def port_range(port: str, width: int) -> str:
    """A port's declared range: none for the control bits, ``[w-1:0]`` for every bus (even of one bit)."""
    return "" if port in SCALAR_PORTS else f"[{width - 1}:0] "


def top_verilog(chain: Chain, files: list[tuple[str, str]], module: str = TOP) -> str:
    """The top module's text; ``files``: each layer's (weight, bias) ``.mem`` file prefixes."""
    a, layers = chain.arithmetic, chain.layers
    n = len(layers)
    in_bits = a.input_bits
    in_aw = _clog2(chain.input_words)
    sel_w = _clog2(n)
    ports = top_ports(chain)
    rd_w = dict((name, w) for _, name, w in ports)["rd_data"]
    regs = ("t", "step_cycles")
    declared = [f"    {d:<6} {'reg ' if name in regs else 'wire'} {port_range(name, w)}{name}" for d, name, w in ports]
    out = [
        "// Generated by lsg-deploy (hardware/targets/fpga/rtl/chain.py) from the FPGA tables' manifest: do not edit.",
        "// " + " -> ".join([f"input{chain.input_shape}"] + [f"{L.name}{L.shape}/{L.lanes} lanes" for L in layers]),
        f"// timesteps {chain.timesteps}, input {'event frames' if chain.per_step else 'direct'} "
        f"(max {chain.input_max})",
        "`timescale 1ns / 1ps",
        "`default_nettype none",
        "",
        f"module {module} (",
        ",\n".join(declared),
        ");",
        "    localparam [1:0] IDLE = 2'd0, RUN = 2'd1, WAIT = 2'd2;",
        "    reg [1:0] state;",
        f"    reg [{sel_w - 1}:0] cur;",
        "    reg go_pulse, first;",
        f"    reg [{sel_w - 1}:0] sel_q;",
        "    reg [1:0] what_q;",
        f"    wire [{n - 1}:0] layer_ready, layer_done;",
        "    assign step_done = state == WAIT;",
        f"    assign last_step = t == {_clog2(chain.timesteps)}'d{chain.timesteps - 1};",
        "    assign ready = state == IDLE && &layer_ready;",
        "",
        "    // the input: one pixel per word, written by the host between steps",
        "    wire in_re;",
        f"    wire [{in_aw - 1}:0] in_raddr;",
        f"    wire [{in_bits - 1}:0] in_rdata;",
        f"    sdp_ram #(.WIDTH({in_bits}), .DEPTH({chain.input_words}), .AW({in_aw})) u_input (",
        "        .clk(clk), .we(in_we && state != RUN), .waddr(in_addr), .wdata(in_data),",
        "        .re(in_re), .raddr(in_raddr), .rdata(in_rdata));",
    ]
    for k in range(n):
        out += _layer_block(chain, k, files[k], sel_w)
    out += _read_ports(chain)
    out += _weight_ports(chain)
    out.append("    assign spike_totals = {" + ", ".join(f"l{k}_spikes" for k in reversed(range(n))) + "};")
    out += [
        "",
        "    // the step sequencer: layers in order, each started when its source has finished the step",
        "    always @(posedge clk) begin",
        "        go_pulse <= 1'b0;",
        "        sel_q <= rd_sel;",
        "        what_q <= rd_what;",
        "        if (rst) begin",
        "            state <= IDLE;",
        "            t <= 0;",
        "            cur <= 0;",
        "            first <= 1'b0;",
        "            step_cycles <= 0;",
        "        end else begin",
        "            case (state)",
        "                IDLE: if (start && &layer_ready) begin",
        "                    t <= 0;",
        "                    first <= 1'b1;",
        "                    cur <= 0;",
        "                    go_pulse <= 1'b1;",
        "                    step_cycles <= 0;",
        *(f"                    l{k}_cycles <= 0;" for k in range(n)),
        "                    state <= RUN;",
        "                end",
        "                RUN: begin",
        "                    step_cycles <= step_cycles + 1;",
        *(f"                    if (cur == {sel_w}'d{k}) l{k}_cycles <= l{k}_cycles + 1;" for k in range(n)),
        "                    if (layer_done[cur]) begin",
        f"                        if (cur == {sel_w}'d{n - 1}) begin",
        "                            state <= WAIT;",
        "                        end else begin",
        "                            cur <= cur + 1'b1;",
        "                            go_pulse <= 1'b1;",
        "                        end",
        "                    end",
        "                end",
        "                WAIT: if (proceed) begin",
        "                    if (last_step) begin",
        "                        state <= IDLE;",
        "                    end else begin",
        "                        t <= t + 1'b1;",
        "                        first <= 1'b0;",
        "                        cur <= 0;",
        "                        go_pulse <= 1'b1;",
        "                        step_cycles <= 0;",
        *(f"                        l{k}_cycles <= 0;" for k in range(n)),
        "                        state <= RUN;",
        "                    end",
        "                end",
        "                default: state <= IDLE;",
        "            endcase",
        "        end",
        "    end",
        "",
        "    // the host's read port: registered select, data one cycle after the address",
        "    assign rd_data =",
    ]
    def wide(expr: str, width: int) -> str:  # zero-extended to rd_data's width
        return expr if width == rd_w else f"{{{{{rd_w - width}{{1'b0}}}}, {expr}}}"

    for k, layer in enumerate(layers):
        spk, v = wide(f"l{k}_spk_rdata", layer.lanes), wide(f"l{k}_v_rdata", layer.lanes * a.membrane_bits)
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
