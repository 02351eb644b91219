"""A chain network's RTL top, generated from the FPGA tables (:mod:`hardware.targets.fpga.tables`).

:func:`chain_from_tables` reads what the design needs from the tables' manifest and ``.mem``
files alone (widths, rules, shapes, strides, codes, thresholds, weights, biases), refusing what the
RTL does not run with a reason; :func:`write_design` writes a self-contained source directory: the
fixed modules, the generated ``lsg_chain_top.v`` and, per layer and lane, one weight and one bias
``.mem`` file in the lane's memory order (``lif_layer.v`` states it). With one lane that order is
the export's own row-major one, and the export's ``.mem`` files are copied byte for byte.

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

:mod:`hardware.targets.fpga.rtl.axi` wraps this top in the AXI4-Stream interface (``lsg_axi_top``).
"""

from __future__ import annotations

import math
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hardware.graph import INPUT, BundleError
from hardware.targets.fpga.rtl import SOURCES
from hardware.targets.fpga.tables import Tables, to_words

TOP = "lsg_chain_top"
DEFAULT_MAX_LANES = 32


class RtlUnsupported(BundleError):
    """A network or profile the RTL design does not run (the message says why)."""


@dataclass(frozen=True)
class Arithmetic:
    """The profile's widths and rules, as the manifest states them."""

    weight_bits: int
    bias_bits: int
    membrane_bits: int
    accumulator_bits: int
    input_bits: int
    decay_multiply: bool
    fraction_bits: int  #: multiply: beta = code / 2^fraction_bits
    half_up: bool  #: multiply: round half up (else floor)
    no_decay_code: int


@dataclass(frozen=True)
class Layer:
    """One node and the edge into it, with its lane organisation."""

    name: str
    edge: str
    readout: bool
    shape: tuple[int, ...]  #: (C, H, W) or (N,)
    dense: bool
    kernel: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int]
    decay_code: int
    vth: int
    lanes: int  #: output channels per word (divides the channel count)
    source: tuple[int, int, int, int, int]  #: (groups, H, W, lanes, bits per lane) of the source's words
    weight: np.ndarray  #: (O, C, KH, KW) or (N, F)
    bias: np.ndarray  #: (channels,)
    weight_file: str  #: the export's .mem file of the weights
    bias_file: str

    @property
    def channels(self) -> int:
        return self.shape[0]

    @property
    def plane(self) -> int:
        """Neurons per channel (H * W; 1 for a dense node)."""
        return math.prod(self.shape[1:])

    @property
    def words(self) -> int:
        return self.channels // self.lanes * self.plane

    @property
    def neurons(self) -> int:
        return math.prod(self.shape)

    def neuron_index(self) -> np.ndarray:
        """(words, lanes): the neuron each lane of each word holds (conv word (og, pos), lane p:
        neuron (og*lanes + p)*H*W + pos; dense word og, lane p: og*lanes + p)."""
        groups = self.channels // self.lanes
        og, pos, p = np.meshgrid(np.arange(groups), np.arange(self.plane), np.arange(self.lanes), indexing="ij")
        return ((og * self.lanes + p) * self.plane + pos).reshape(self.words, self.lanes)

    def weight_rows(self) -> np.ndarray:
        """The weights as (words, lanes) in the layer's memory order."""
        g, p = self.channels // self.lanes, self.lanes
        w = self.weight
        if self.dense:
            return w.reshape(g, p, w.shape[1]).transpose(0, 2, 1).reshape(-1, p)
        return w.reshape(g, p, *w.shape[1:]).transpose(0, 2, 3, 4, 1).reshape(-1, p)

    def bias_rows(self) -> np.ndarray:
        return self.bias.reshape(self.channels // self.lanes, self.lanes)


@dataclass(frozen=True)
class Chain:
    arithmetic: Arithmetic
    timesteps: int
    input_shape: tuple[int, ...]
    per_step: bool  #: event frames (a new input every step) rather than one direct image
    input_max: int
    layers: tuple[Layer, ...]

    @property
    def input_words(self) -> int:
        return math.prod(self.input_shape)


def lanes_for(channels: int, max_lanes: int) -> int:
    """The most output channels per word: the largest divisor of ``channels`` up to ``max_lanes``."""
    return max(d for d in range(1, min(channels, max_lanes) + 1) if channels % d == 0)


def _get(doc: dict[str, Any], *keys: str) -> Any:
    value: Any = doc
    for k in keys:
        if not isinstance(value, dict) or k not in value:
            raise BundleError(f"FPGA tables manifest: missing {'.'.join(keys)}")
        value = value[k]
    return value


def arithmetic_from_manifest(profile: dict[str, Any]) -> Arithmetic:
    """The widths and rules of the manifest's profile; refuses rules the RTL does not implement."""
    decay = _get(profile, "decay")
    form = _get(decay, "form")
    if form not in ("multiply", "shift"):
        raise RtlUnsupported(f"the RTL implements the multiply and shift decays, not {form!r}")
    rounding = _get(decay, "rounding")
    if (form == "multiply" and rounding not in ("half-up", "floor")) or (form == "shift" and rounding != "floor"):
        raise RtlUnsupported(f"the RTL has no {rounding!r} rounding for the {form} decay")
    compare = _get(profile, "threshold", "compare")
    if not compare.endswith(">= vth"):
        raise RtlUnsupported(f"the RTL compares v >= vth; this profile says {compare!r}")
    membrane = _get(profile, "membrane")
    limit = (1 << (membrane["bits"] - 1)) - 1
    if (membrane["min"], membrane["max"]) != (-limit, limit) or not membrane["overflow"].startswith("saturate"):
        raise RtlUnsupported("the RTL saturates the membrane symmetrically to +-(2^(bits-1) - 1)")
    return Arithmetic(
        weight_bits=int(_get(profile, "weight", "bits")), bias_bits=int(_get(profile, "bias", "bits")),
        membrane_bits=int(membrane["bits"]), accumulator_bits=int(_get(profile, "accumulator", "bits")),
        input_bits=int(_get(profile, "input", "bits")), decay_multiply=form == "multiply",
        fraction_bits=int(decay.get("fraction_bits", 0)), half_up=rounding == "half-up",
        no_decay_code=int(_get(decay, "no_decay_code")))


def chain_from_tables(tables: Tables, max_lanes: int = DEFAULT_MAX_LANES) -> Chain:
    """The chain the manifest describes; :class:`RtlUnsupported` for what the RTL cannot run."""
    if max_lanes < 1:
        raise ValueError(f"max_lanes must be at least 1, got {max_lanes}")
    m = tables.manifest
    arithmetic = arithmetic_from_manifest(_get(m, "profile"))
    spec = _get(m, "input")
    input_shape = tuple(int(n) for n in spec["shape"])
    per_step = spec["encoding"] == "event-frames"
    nodes, edges = _get(m, "nodes"), _get(m, "edges")
    if not nodes or not nodes[-1]["readout"]:
        raise BundleError("FPGA tables manifest: the last node must be the readout")
    into = {n["name"]: [e for e in edges if e["target"] == n["name"]] for n in nodes}
    layers: list[Layer] = []
    source_name, source_shape = INPUT, input_shape
    src_words = (math.prod(input_shape), 1, 1, 1, arithmetic.input_bits)  # one pixel per word
    if len(input_shape) == 3:
        src_words = (input_shape[0], input_shape[1], input_shape[2], 1, arithmetic.input_bits)
    for node in nodes:
        incoming = into[node["name"]]
        if len(incoming) != 1 or incoming[0]["source"] != source_name:
            sources = ", ".join(e["source"] for e in incoming) or "none"
            raise RtlUnsupported(f"the RTL backend runs chains: node {node['name']} reads {sources}, "
                                 f"not just the node before it ({source_name})")
        e = incoming[0]
        shape = tuple(int(n) for n in node["shape"])
        dense = e["kind"] == "dense"
        if not dense and (len(source_shape) != 3 or tuple(e["input_shape"]) != source_shape):
            raise RtlUnsupported(f"the RTL runs a conv edge ({e['name']}) only on a (C, H, W) source laid out "
                                 f"as its input; {source_name} is {source_shape}")
        if dense and len(shape) != 1:
            raise RtlUnsupported(f"edge {e['name']}: a dense edge's node must be (N,), got {shape}")
        lanes = lanes_for(shape[0], max_lanes)
        layers.append(Layer(
            name=node["name"], edge=e["name"], readout=bool(node["readout"]), shape=shape, dense=dense,
            kernel=tuple(e.get("kernel", (1, 1))), stride=tuple(e.get("stride", (1, 1))),
            padding=tuple(e.get("padding", (0, 0))), decay_code=int(node["decay_code"]), vth=int(node["vth"]),
            lanes=lanes, source=src_words, weight=np.asarray(tables.weights[e["name"]], np.int64),
            bias=np.asarray(tables.biases[node["name"]], np.int64), weight_file=e["weight"]["file"],
            bias_file=node["bias"]["file"]))
        source_name, source_shape = node["name"], shape
        if len(shape) == 3:
            src_words = (shape[0] // lanes, shape[1], shape[2], lanes, 1)
        else:
            src_words = (shape[0] // lanes, 1, 1, lanes, 1)
    return Chain(arithmetic=arithmetic, timesteps=int(_get(m, "timesteps")), input_shape=input_shape,
                 per_step=per_step, input_max=int(spec["max"]), layers=tuple(layers))


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
    groups, h, w, lanes, bits = layer.source
    plane = (1, 1) if layer.dense else layer.shape[1:]
    return {
        "W_BITS": a.weight_bits, "ACC_BITS": a.accumulator_bits, "V_BITS": a.membrane_bits,
        "BIAS_BITS": a.bias_bits, "DECAY_MULTIPLY": int(a.decay_multiply), "FRAC": max(a.fraction_bits, 1),
        "HALF_UP": int(a.half_up), "NO_DECAY_CODE": a.no_decay_code,
        "DECAY_CODE": layer.decay_code, "VTH": layer.vth, "READOUT": int(layer.readout),
        "OC": layer.channels, "OH": plane[0], "OW": plane[1], "LANES": layer.lanes,
        "DENSE": int(layer.dense), "SRC_GROUPS": groups, "SRC_H": h, "SRC_W": w, "SRC_LANES": lanes,
        "SRC_XBITS": bits, "KH": layer.kernel[0], "KW": layer.kernel[1], "SH": layer.stride[0],
        "SW": layer.stride[1], "PH": layer.padding[0], "PW": layer.padding[1],
        "WEIGHT_PREFIX": f'"{weight_prefix}"', "BIAS_PREFIX": f'"{bias_prefix}"',
    }


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
    ]


SCALAR_PORTS = ("clk", "rst", "in_we", "start", "proceed", "ready", "step_done", "last_step")


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
    for k, layer in enumerate(layers):
        aw = _clog2(layer.words)
        src_aw = _clog2(layer.source[0] * layer.source[1] * layer.source[2])
        src = "in" if k == 0 else f"l{k - 1}_spk"
        params = _layer_params(chain, layer, *files[k])
        out += [
            "",
            f"    // layer {k}: {layer.name} ({'dense' if layer.dense else 'conv'} edge {layer.edge})",
            f"    wire l{k}_src_re, l{k}_spk_re;",
            f"    wire [{src_aw - 1}:0] l{k}_src_raddr;",
            f"    wire [{aw - 1}:0] l{k}_spk_raddr;",
            f"    wire [{layer.lanes - 1}:0] l{k}_spk_rdata;",
            f"    wire [{layer.lanes * a.membrane_bits - 1}:0] l{k}_v_rdata;",
            f"    wire [31:0] l{k}_spikes, l{k}_clips;",
            f"    reg  [31:0] l{k}_cycles;",
            "    lif_layer #(",
            ",\n".join(f"        .{key}({value})" for key, value in params.items()),
            f"    ) u_l{k} (",
            f"        .clk(clk), .rst(rst), .go(go_pulse && cur == {sel_w}'d{k}), .first_step(first),",
            f"        .ready(layer_ready[{k}]), .done(layer_done[{k}]),",
            f"        .src_re(l{k}_src_re), .src_raddr(l{k}_src_raddr), .src_rdata({src}_rdata),",
            f"        .spk_re(l{k}_spk_re), .spk_raddr(l{k}_spk_raddr), .spk_rdata(l{k}_spk_rdata),",
            f"        .v_re(step_done), .v_raddr(rd_addr[{aw - 1}:0]), .v_rdata(l{k}_v_rdata),",
            f"        .spike_count(l{k}_spikes), .clip_count(l{k}_clips));",
        ]
        if k == 0:
            out.append("    assign in_re = l0_src_re;")
            out.append("    assign in_raddr = l0_src_raddr;")
        else:
            out.append(f"    assign l{k - 1}_spk_re = step_done || l{k}_src_re;")
            out.append(f"    assign l{k - 1}_spk_raddr = step_done ? rd_addr[{_clog2(layers[k - 1].words) - 1}:0]"
                       f" : l{k}_src_raddr;")
    out.append("    assign spike_totals = {" + ", ".join(f"l{k}_spikes" for k in reversed(range(n))) + "};")
    out.append(f"    assign l{n - 1}_spk_re = step_done;")
    out.append(f"    assign l{n - 1}_spk_raddr = rd_addr[{_clog2(layers[-1].words) - 1}:0];")
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
    """The layer's weight and bias ``.mem`` file prefixes (lane files: :func:`lane_file`)."""
    return f"{layer.edge}.weight.lanes{layer.lanes}", f"{layer.name}.bias.lanes{layer.lanes}"


def write_design(chain: Chain, tables_dir: Path, out_dir: Path) -> Path:
    """Write the design's sources into ``out_dir`` (an existing directory); returns the top's path.

    ``$readmemh`` names the ``.mem`` files relative to ``out_dir``: run the simulator or the
    synthesis there."""
    out_dir = Path(out_dir)
    for source in SOURCES:
        shutil.copyfile(source, out_dir / source.name)
    a = chain.arithmetic
    for layer in chain.layers:
        weights, biases = table_prefixes(layer)
        if layer.lanes == 1:  # the export's row-major layout is the lane's
            shutil.copyfile(Path(tables_dir) / layer.weight_file, out_dir / lane_file(weights, 0))
            shutil.copyfile(Path(tables_dir) / layer.bias_file, out_dir / lane_file(biases, 0))
        else:
            _write_lanes(out_dir, weights, layer.weight_rows(), a.weight_bits, f"{layer.edge} weights")
            _write_lanes(out_dir, biases, layer.bias_rows(), a.bias_bits, f"{layer.name} biases")
    top = out_dir / f"{TOP}.v"
    top.write_text(top_verilog(chain, [table_prefixes(layer) for layer in chain.layers]))
    return top
