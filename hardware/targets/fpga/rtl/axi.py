"""The IP core's standard interface: ``lsg_axi_top``, generated per network around the core top
(``lsg_chain_top``, :mod:`hardware.targets.fpga.rtl.chain`; a chain or any graph). docs/fpga-ip.md is
the designer's description (timing diagram in docs/fpga-ip-timing.json); in short:

* ``aclk``, ``aresetn`` (active low, synchronous);
* AXI4-Stream slave ``s_axis_*``: one input word per beat (``tdata`` 8*ceil(input_bits/8) bits,
  the value zero-extended), F = C*H*W words per frame in (C, H, W) row-major order, ``tlast`` on
  each frame's last word. Direct input: one frame per sample, used by every step; event frames:
  T frames per sample, frame t drives step t and is taken only once step t-1 has finished with
  frame t-1 (``tready`` low until then);
* AXI4-Stream master ``m_axis_*``, 32-bit ``tdata``: per sample the class (argmax of the final
  readout membranes, the lowest index on ties), then the K membranes sign-extended, ``tlast``
  on the K-th; ``tready`` is honoured;
* a register bus (``reg_addr``, ``reg_wdata``, ``reg_we``, ``reg_re``, ``reg_rdata`` one cycle
  after ``reg_re``): :data:`REGISTERS`;
* debug, for simulation: ``trace_valid`` pulses once per step, at the end of the phase in which
  the last hidden layer finished it, with ``trace_step`` and the hidden layers' spike counts of
  that step (``trace_counts``, layer k at [32k +: 32]; the core runs layer k's step t in phase
  t + k, so layer k's count waits L - 1 - k phases in a delay line); ``dbg_hold`` stops the core
  at every phase's end (``dbg_paused``) until ``dbg_continue``, while ``dbg_rd_*`` reads the
  core's buffers (the core top's ``rd_*`` port: layer k holds its step t - k after phase t).
"""

from __future__ import annotations

from hardware.targets.fpga.rtl.chain import TOP, Chain, _clog2, module_head, top_ports
from hardware.targets.fpga.rtl.weight_memory import SPRAM

AXI_TOP = "lsg_axi_top"

#: the register map: byte address -> (name, access, meaning)
REGISTERS = {
    0x00: ("CTRL", "rw", "bit 0 START: write 1 to run one sample (reads 1 until that sample starts); "
                         "bit 1 AUTO_RUN (1 after reset): run each sample as soon as its first frame is in"),
    0x04: ("STATUS", "r/w1c", "bit 0 BUSY: a sample runs (from its start to its last result beat); "
                              "bit 1 DONE: a result was sent (sticky, write 1 to clear); bit 2 FRAME_ERROR: a "
                              "TLAST was missing or early (sticky, write 1 to clear); bit 3 IN_READY: tready; "
                              "bit 4 WLOAD_ERROR: a WLOAD_DATA write came while a sample ran and was dropped "
                              "(sticky, write 1 to clear; SPRAM build)"),
    0x08: ("SAMPLE_CYCLES", "r", "clock cycles of the last sample, from its start to its last result beat"),
    0x0C: ("STEP_CYCLES", "r", "clock cycles of the last phase (the core's step_cycles; phase t runs layer k's "
                               "step t - k, T + L - 1 phases a sample)"),
    0x10: ("SAMPLES_DONE", "r", "samples whose result was sent since reset"),
    0x14: ("SHAPE", "r", "[15:0] K (classes), [31:16] T (timesteps)"),
    0x18: ("LAYERS", "r", "[15:0] L (hidden layers), [31:16] frames per sample (1 or T)"),
    0x20: ("WLOAD_ADDR", "rw", "SPRAM build: the load port's next word address (16 bits; the memory plan's load "
                               "order); each WLOAD_DATA write advances it"),
    0x24: ("WLOAD_DATA", "w", "SPRAM build: [15:0] written to the weight RAM at WLOAD_ADDR (while no sample runs: "
                              "load every word after configuration, before the first input)"),
    0x40: ("SPIKES[k]", "r", "at 0x40 + 4k: hidden layer k's spikes in the last step the trace gave"),
}
SPIKES_BASE = 0x40


def stream_bits(input_bits: int) -> int:
    """The input stream's ``tdata`` width: whole bytes."""
    return 8 * -(-input_bits // 8)


def hidden(chain: Chain) -> int:
    """L: the spiking layers (all but the readout)."""
    return len(chain.layers) - 1


def axi_ports(chain: Chain) -> list[tuple[str, str, int]]:
    """The AXI top's ports: (direction, name, width), in order."""
    core = {name: w for _, name, w in top_ports(chain)}
    return [
        ("input", "aclk", 1), ("input", "aresetn", 1),
        ("input", "s_axis_tvalid", 1), ("output", "s_axis_tready", 1),
        ("input", "s_axis_tdata", stream_bits(chain.arithmetic.input_bits)), ("input", "s_axis_tlast", 1),
        ("output", "m_axis_tvalid", 1), ("input", "m_axis_tready", 1), ("output", "m_axis_tdata", 32),
        ("output", "m_axis_tlast", 1),
        ("input", "reg_addr", 8), ("input", "reg_wdata", 32), ("input", "reg_we", 1), ("input", "reg_re", 1),
        ("output", "reg_rdata", 32),
        ("output", "trace_valid", 1), ("output", "trace_step", _clog2(chain.timesteps)),
        ("output", "trace_counts", 32 * max(hidden(chain), 1)),
        ("input", "dbg_hold", 1), ("input", "dbg_continue", 1), ("output", "dbg_paused", 1),
        ("input", "dbg_rd_sel", core["rd_sel"]), ("input", "dbg_rd_what", 2),
        ("input", "dbg_rd_addr", core["rd_addr"]), ("output", "dbg_rd_data", core["rd_data"]),
    ]


AXI_SCALARS = ("aclk", "aresetn", "s_axis_tvalid", "s_axis_tready", "s_axis_tlast", "m_axis_tvalid",
               "m_axis_tready", "m_axis_tlast", "reg_we", "reg_re", "trace_valid", "dbg_hold", "dbg_continue",
               "dbg_paused")


def axi_range(port: str, width: int) -> str:
    return "" if port in AXI_SCALARS else f"[{width - 1}:0] "


#: the SPRAM build's load port: a WLOAD_DATA write while no sample runs becomes one weight RAM
#: write a cycle later, and advances WLOAD_ADDR; one while a sample runs is dropped (WLOAD_ERROR)
LOAD_PORT = [
    "            if (reg_we && reg_addr == 8'h20) wl_addr <= reg_wdata[15:0];",
    "            if (reg_we && reg_addr == 8'h24) begin",
    "                if (busy) begin",
    "                    wload_error <= 1'b1;",
    "                end else begin",
    "                    wl_we <= 1'b1;",
    "                    wl_waddr <= wl_addr;",
    "                    wl_data <= reg_wdata[15:0];",
    "                    wl_addr <= wl_addr + 1'b1;",
    "                end",
    "            end",
]


def delay(chain: Chain) -> int:
    """Phases between a step's first hidden layer and its last: the trace's delay."""
    return max(hidden(chain) - 1, 0)


def _emits(chain: Chain, t_w: int) -> str:
    """Whether phase ``core_t``'s end completes a step of the hidden layers (steps 0..T-1)."""
    d, t = delay(chain), chain.timesteps
    terms = ([f"core_t >= {t_w}'d{d}"] if d else []) + ([f"core_t < {t_w}'d{d + t}"] if d + t < chain.phases else [])
    return " && ".join(terms) or "1'b1"


def _step(chain: Chain, t_w: int) -> str:
    """The trace's step of phase ``core_t`` (``phase_step``: core_t - delay), in the trace's width."""
    step_w = _clog2(chain.timesteps)
    return "phase_step" if step_w == t_w else f"phase_step[{step_w - 1}:0]"


def _diff(k: int) -> str:
    return f"core_spike_totals[{32 * k} +: 32] - prev_totals[{32 * k} +: 32]"


def _delay_regs(hid: int) -> list[str]:
    """Layer k's per-step counts wait L - 1 - k phases (L hidden layers) for the trace."""
    d = max(hid - 1, 0)
    return [f"    reg [31:0] count{k}_d{s};  // layer {k}'s count {s + 1} phase(s) ago" for k in range(hid)
            for s in range(d - k)]


def _delay_shift(hid: int) -> list[str]:
    d = max(hid - 1, 0)
    out = []
    for k in range(hid):
        for s in reversed(range(d - k)):
            out.append(f"                    count{k}_d{s} <= {_diff(k) if s == 0 else f'count{k}_d{s - 1}'};")
    return out


def _trace_counts(hid: int) -> list[str]:
    d = max(hid - 1, 0)
    return [f"                        trace_counts[{32 * k} +: 32] <= "
            f"{_diff(k) if k == d else f'count{k}_d{d - k - 1}'};"
            for k in range(hid)]


def axi_verilog(chain: Chain, core: str = TOP, module: str = AXI_TOP) -> str:
    """The AXI top's text around the core top ``core``."""
    a, layers = chain.arithmetic, chain.layers
    n, hid = len(layers), hidden(chain)
    readout = layers[-1]
    k_classes, k_lanes, vb = readout.neurons, readout.lanes, a.membrane_bits
    k_words = readout.words
    f_words, t_steps = chain.input_words, chain.timesteps
    frames = t_steps if chain.per_step else 1
    tw = stream_bits(a.input_bits)
    core_ports = {name: w for _, name, w in top_ports(chain)}
    in_aw, sel_w, addr_w, rd_w = (core_ports[p] for p in ("in_addr", "rd_sel", "rd_addr", "rd_data"))
    t_w = core_ports["t"]
    f_w, k_w, kw_w, kl_w = _clog2(f_words + 1), _clog2(k_classes + 1), _clog2(k_words + 1), _clog2(k_lanes + 1)
    fr_w = _clog2(frames + 1)
    cnt_w = 32 * max(hid, 1)
    next_frame = f"core_t < {t_w}'d{t_steps - 1}" if frames > 1 else "1'b0"  # a frame to take after phase core_t
    regs = {"s_axis_tready", "m_axis_tvalid", "m_axis_tdata", "m_axis_tlast", "reg_rdata", "trace_valid",
            "trace_step", "trace_counts"}
    declared = [f"    {d:<6} {'reg ' if d == 'output' and name in regs else 'wire'} {axi_range(name, w)}{name}"
                for d, name, w in axi_ports(chain)]
    spram = chain.weight_memory == SPRAM
    out = module_head("axi.py", [
        f"// The IP core's interface (docs/fpga-ip.md) around {core}: input frames of {f_words} words "
        f"({tw}-bit tdata), {frames} frame(s) per sample,",
        f"// {t_steps} steps, {k_classes} classes; result beats: class, then {k_classes} readout membranes."],
        module, declared) + [
        f"    localparam K = {k_classes};",
        f"    localparam V_BITS = {vb};",
        "    localparam [3:0] S_LOAD = 4'd0, S_WAIT_GO = 4'd1, S_GO = 4'd2, S_RUN = 4'd3, S_PAUSE = 4'd4,",
        "                     S_PROCEED = 4'd5, S_RADDR = 4'd6, S_RDATA = 4'd7, S_LANE = 4'd8, S_FINISH = 4'd9,",
        "                     S_OUT = 4'd10;",
        "    reg [3:0] state;",
        "    wire rst = !aresetn;",
        "",
        "    // the core",
        "    reg  core_start, core_proceed;",
        "    wire core_ready, core_step_done, core_last_step;",
        f"    wire [{t_w - 1}:0] core_t;",
        f"    wire [{t_w - 1}:0] phase_step = core_t - {t_w}'d{delay(chain)};  // the trace's step of phase core_t",
        *([f"    wire unused_phase_bits = &{{1'b0, phase_step[{t_w - 1}:{_clog2(t_steps)}]}};  // (past T: no trace)"]
          if t_w > _clog2(t_steps) else []),
        "    wire [31:0] core_step_cycles;",
        f"    wire [{32 * n - 1}:0] core_spike_totals;",
        f"    wire [{sel_w - 1}:0] core_rd_sel;",
        "    wire [1:0] core_rd_what;",
        f"    wire [{addr_w - 1}:0] core_rd_addr;",
        f"    wire [{rd_w - 1}:0] core_rd_data;",
        "    wire in_beat = s_axis_tvalid && s_axis_tready;",
        f"    reg  [{in_aw - 1}:0] in_addr;",
        f"    {core} u_core (",
        "        .clk(aclk), .rst(rst), .in_we(in_beat), .in_addr(in_addr),",
        f"        .in_data(s_axis_tdata[{a.input_bits - 1}:0]), .start(core_start), .proceed(core_proceed),",
        "        .ready(core_ready), .step_done(core_step_done), .last_step(core_last_step), .t(core_t),",
        "        .rd_sel(core_rd_sel), .rd_what(core_rd_what), .rd_addr(core_rd_addr), .rd_data(core_rd_data),",
        "        .step_cycles(core_step_cycles), .spike_totals(core_spike_totals)"
        + (", .wl_we(wl_we), .wl_addr(wl_waddr), .wl_data(wl_data));" if spram else ");"),
        "",
        "    // the read port: the readout's membranes while the result is read, else the debug port",
        "    wire reading = state == S_RADDR || state == S_RDATA || state == S_LANE;",
        f"    reg  [{kw_w - 1}:0] r_word;",
        f"    assign core_rd_sel = reading ? {sel_w}'d{n - 1} : dbg_rd_sel;",
        "    assign core_rd_what = reading ? 2'd1 : dbg_rd_what;",
        f"    assign core_rd_addr = reading ? r_word[{addr_w - 1}:0] : dbg_rd_addr;" if kw_w >= addr_w else
        f"    assign core_rd_addr = reading ? {{{{{addr_w - kw_w}{{1'b0}}}}, r_word}} : dbg_rd_addr;",
        "    assign dbg_rd_data = core_rd_data;",
        "    assign dbg_paused = state == S_PAUSE;",
        "",
        "    // control and status",
        "    reg auto_run, start_pending, done_flag, frame_error;",
        *(["    // the weight load port: WLOAD_DATA writes one word at wl_waddr a cycle later",
           "    reg wl_we, wload_error;", "    reg [15:0] wl_addr, wl_waddr, wl_data;"] if spram else
          ["    wire wload_error = 1'b0;  // (the SPRAM build's load port)"]),
        "    reg [31:0] sample_cycles, last_sample_cycles, last_step_cycles, samples_done;",
        f"    reg [{cnt_w - 1}:0] prev_totals;  // the hidden layers' spike totals at the last phase's end",
        *_delay_regs(hid),
        f"    reg [{f_w - 1}:0] word;",
        f"    reg [{fr_w - 1}:0] frame;",
        f"    reg [{kl_w - 1}:0] r_lane;",
        f"    reg [{k_w - 1}:0] k_idx, beat;",
        f"    reg [{k_lanes * vb - 1}:0] r_data;",
        "    reg [V_BITS-1:0] result [0:K];  // beat b's membrane at b (1..K)",
        "    reg [V_BITS-1:0] best;",
        f"    reg [{k_w - 1}:0] best_k;",
        "    wire [V_BITS-1:0] lane_v = r_data[r_lane * V_BITS +: V_BITS];",
        "    wire busy = state != S_LOAD && state != S_WAIT_GO || frame != 0;",
        f"    wire frame_last = word == {f_w}'d{f_words - 1};",
        f"    wire sample_last_beat = beat == {k_w}'d{k_classes};",
        "    // not read here: the core's read data beyond the readout's lanes (the debug port has them), the",
        "    // readout's spike count (it never fires), the stream's padding bits, the registers' unused bits",
        "    wire unused_ok = &{1'b0, core_rd_data, core_spike_totals, s_axis_tdata, reg_wdata};",
        "",
        "    // the result stream: beat 0 the class, beats 1..K the membranes sign-extended",
        "    always @(*) begin",
        "        m_axis_tvalid = state == S_OUT;",
        "        m_axis_tlast = state == S_OUT && sample_last_beat;",
        "        if (beat == 0) m_axis_tdata = {" + (f"{{{32 - k_w}{{1'b0}}}}, " if k_w < 32 else "") + "best_k};",
        "        else m_axis_tdata = {{(32 - V_BITS){result[beat][V_BITS-1]}}, result[beat]};",
        "        s_axis_tready = state == S_LOAD;",
        "    end",
        "",
        "    always @(posedge aclk) begin",
        "        core_start <= 1'b0;",
        "        core_proceed <= 1'b0;",
        "        trace_valid <= 1'b0;",
        *(["        wl_we <= 1'b0;"] if spram else []),
        "        if (rst) begin",
        "            state <= S_LOAD;",
        "            word <= 0;",
        "            frame <= 0;",
        "            in_addr <= 0;",
        "            auto_run <= 1'b1;",
        "            start_pending <= 1'b0;",
        "            done_flag <= 1'b0;",
        "            frame_error <= 1'b0;",
        *(["            wload_error <= 1'b0;", "            wl_addr <= 16'd0;"] if spram else []),
        "            sample_cycles <= 0;",
        "            last_sample_cycles <= 0;",
        "            last_step_cycles <= 0;",
        "            samples_done <= 0;",
        "            prev_totals <= 0;",
        "            trace_step <= 0;",
        "            trace_counts <= 0;",
        "            beat <= 0;",
        "            reg_rdata <= 0;",
        "        end else begin",
        "            if (busy) sample_cycles <= sample_cycles + 1;",
        "            case (state)",
        "                S_LOAD: if (in_beat) begin  // one input word",
        "                    if (s_axis_tlast != frame_last) frame_error <= 1'b1;",
        "                    if (frame_last) begin",
        "                        word <= 0;",
        "                        in_addr <= 0;",
        "                        state <= frame == 0 ? S_WAIT_GO : S_PROCEED;",
        "                    end else begin",
        "                        word <= word + 1'b1;",
        "                        in_addr <= in_addr + 1'b1;",
        "                    end",
        "                end",
        "                S_WAIT_GO: if (auto_run || start_pending) begin",
        "                    start_pending <= 1'b0;",
        "                    sample_cycles <= 0;",
        "                    prev_totals <= 0;",
        "                    state <= S_GO;",
        "                end",
        "                S_GO: if (core_ready) begin  // the core takes start in this cycle",
        "                    core_start <= 1'b1;",
        "                    state <= S_RUN;",
        "                end",
        "                S_RUN: if (core_step_done && !core_start && !core_proceed) begin  // phase core_t ended",
        f"                    if ({_emits(chain, t_w)}) begin  // the hidden layers ended step core_t - {delay(chain)}",
        "                        trace_valid <= 1'b1;",
        f"                        trace_step <= {_step(chain, t_w)};",
        *_trace_counts(hid),
        "                    end",
        *_delay_shift(hid),
        f"                    prev_totals <= core_spike_totals[{cnt_w - 1}:0];",
        "                    last_step_cycles <= core_step_cycles;",
        "                    state <= S_PAUSE;",
        "                end",
        "                S_PAUSE: if (!dbg_hold || dbg_continue) begin",
        "                    if (core_last_step) begin",
        "                        r_word <= 0;",
        "                        k_idx <= 0;",
        "                        state <= S_RADDR;",
        f"                    end else if ({next_frame}) begin  // frame core_t + 1",
        "                        frame <= frame + 1'b1;",
        "                        state <= S_LOAD;",
        "                    end else begin",
        "                        state <= S_PROCEED;",
        "                    end",
        "                end",
        "                S_PROCEED: begin",
        "                    core_proceed <= 1'b1;",
        "                    state <= S_RUN;",
        "                end",
        "                S_RADDR: state <= S_RDATA;  // the core reads the word at r_word",
        "                S_RDATA: begin",
        f"                    r_data <= core_rd_data[{k_lanes * vb - 1}:0];",
        "                    r_lane <= 0;",
        "                    state <= S_LANE;",
        "                end",
        "                S_LANE: begin  // one membrane a cycle: store it, keep the first maximum",
        "                    result[k_idx + 1'b1] <= lane_v;",
        "                    if (k_idx == 0 || $signed(lane_v) > $signed(best)) begin",
        "                        best <= lane_v;",
        "                        best_k <= k_idx;",
        "                    end",
        "                    k_idx <= k_idx + 1'b1;",
        f"                    if (r_lane != {kl_w}'d{k_lanes - 1}) begin",
        "                        r_lane <= r_lane + 1'b1;",
        f"                    end else if (r_word != {kw_w}'d{k_words - 1}) begin",
        "                        r_word <= r_word + 1'b1;",
        "                        state <= S_RADDR;",
        "                    end else begin",
        "                        state <= S_FINISH;",
        "                    end",
        "                end",
        "                S_FINISH: begin  // the core returns to idle; the result goes out",
        "                    core_proceed <= 1'b1;",
        "                    beat <= 0;",
        "                    state <= S_OUT;",
        "                end",
        "                S_OUT: if (m_axis_tready) begin",
        "                    if (sample_last_beat) begin",
        "                        frame <= 0;",
        "                        samples_done <= samples_done + 1;",
        "                        last_sample_cycles <= sample_cycles + 1;",
        "                        done_flag <= 1'b1;",
        "                        state <= S_LOAD;",
        "                    end else begin",
        "                        beat <= beat + 1'b1;",
        "                    end",
        "                end",
        "                default: state <= S_LOAD;",
        "            endcase",
        "",
        "            // the register bus: writes, and reads one cycle after reg_re",
        "            if (reg_we && reg_addr == 8'h00) begin",
        "                if (reg_wdata[0]) start_pending <= 1'b1;",
        "                auto_run <= reg_wdata[1];",
        "            end",
        "            if (reg_we && reg_addr == 8'h04) begin",
        "                if (reg_wdata[1]) done_flag <= 1'b0;",
        "                if (reg_wdata[2]) frame_error <= 1'b0;",
        *(["                if (reg_wdata[4]) wload_error <= 1'b0;"] if spram else []),
        "            end",
        *(LOAD_PORT if spram else []),
        "            if (reg_re) begin",
        "                case (reg_addr)",
        "                    8'h00: reg_rdata <= {30'd0, auto_run, start_pending};",
        "                    8'h04: reg_rdata <= {27'd0, wload_error, s_axis_tready, frame_error, done_flag, busy};",
        *(["                    8'h20: reg_rdata <= {16'd0, wl_addr};"] if spram else []),
        "                    8'h08: reg_rdata <= last_sample_cycles;",
        "                    8'h0C: reg_rdata <= last_step_cycles;",
        "                    8'h10: reg_rdata <= samples_done;",
        f"                    8'h14: reg_rdata <= {{16'd{t_steps}, 16'd{k_classes}}};",
        f"                    8'h18: reg_rdata <= {{16'd{frames}, 16'd{hid}}};",
    ]
    for k in range(hid):
        out.append(f"                    8'h{SPIKES_BASE + 4 * k:02X}: reg_rdata <= trace_counts[{32 * k} +: 32];")
    out += [
        "                    default: reg_rdata <= 32'd0;",
        "                endcase",
        "            end",
        "        end",
        "    end",
        "endmodule",
        "",
        "`default_nettype wire",
        "",
    ]
    return "\n".join(out)
