// lif_layer: one LIF node of a chain and the edge into it (conv with shared kernels, or dense),
// time-multiplexed over its neurons, LANES output channels per cycle (one lif_lane each).
//
// One time step, started by `go` once the source holds its outputs of the same step:
//
//   1. accumulate (event-driven): the source's buffer is scanned word by word; every nonzero lane
//      of a word is an event (a spike, or a nonzero input pixel of value x), and adds x times its
//      fan-out weights into the accumulator, one accumulator word (LANES channels) per cycle:
//        conv  event (c, y, x): every output (oy, ox) with i = y + PH - SH*oy in [0, KH) and
//              j = x + PW - SW*ox in [0, KW):  acc[o, oy, ox] += w[o, c, i, j] * x
//        dense event f:         acc[n] += w[n, f] * x
//      Three units overlap: the fetch unit reads source words ahead (1 cycle per empty word), the
//      pick unit turns the lowest nonzero lane into the next event (with its first tap), the tap
//      unit issues one accumulator read-modify-write per cycle and takes the next event in the
//      cycle of its last tap. So a step's accumulation costs one cycle per tap, plus the fill.
//      Each tap is a read-modify-write in three stages (lif_lane.v): the weight read, the
//      product w * x with the accumulator read, the add and write (forwarding the previous
//      cycle's sum to a read that missed it).
//   2. update: one pass over the accumulator words through every lane's lif_neuron (decay,
//      bias, saturation, threshold, reset), one word a cycle into the neuron's pipeline: read,
//      stage 1 (ub_*; the accumulator word is cleared for the next step), stage 2 (us_*), write of
//      membranes and the spike buffer (uw_*; the next layer's source), then the counters (a
//      popcount stage, an add stage).
//   `done` pulses when the spike buffer and the counters hold the step's results.
//
// Layouts (word address; lane p; LANES divides OC; lane p of group og is channel og*LANES + p):
//   accumulator, membranes, spikes: conv (og*OH + oy)*OW + ox; dense og
//   weights (lane p's WEIGHT_PREFIX.laneNNN.mem): conv ((og*C + c)*KH + i)*KW + j; dense og*F + f
//   biases (BIAS_PREFIX.laneNNN.mem): og
// With LANES = 1 these are the export's row-major (O, C, KH, KW) / (N, F) .mem files as they are.
// The source is read through src_re/src_raddr/src_rdata (registered read): SRC_GROUPS x SRC_H x
// SRC_W words of SRC_LANES lanes of SRC_XBITS bits; source channel c = g*SRC_LANES + p.
// After a reset the accumulator is cleared, one word per cycle, before `ready` rises.
`timescale 1ns / 1ps
`default_nettype none

module lif_layer #(
    // profile
    parameter W_BITS = 8,
    parameter ACC_BITS = 24,
    parameter V_BITS = 16,
    parameter BIAS_BITS = 16,
    parameter DECAY_MULTIPLY = 1,
    parameter FRAC = 10,
    parameter HALF_UP = 1,
    parameter NO_DECAY_CODE = 1024,
    // node
    parameter DECAY_CODE = 1024,
    parameter VTH = 32767,
    parameter READOUT = 0,
    parameter OC = 1,
    parameter OH = 1,
    parameter OW = 1,
    parameter LANES = 1,
    // edge
    parameter DENSE = 1,
    parameter SRC_GROUPS = 1,
    parameter SRC_H = 1,
    parameter SRC_W = 1,
    parameter SRC_LANES = 1,
    parameter SRC_XBITS = 1,
    parameter KH = 1,
    parameter KW = 1,
    parameter SH = 1,
    parameter SW = 1,
    parameter PH = 0,
    parameter PW = 0,
    parameter WEIGHT_PREFIX = "",
    parameter BIAS_PREFIX = "",
    // derived (do not override)
    parameter OUT_WORDS = (OC / LANES) * OH * OW,
    parameter SRC_WORDS = SRC_GROUPS * SRC_H * SRC_W,
    parameter OUT_AW = (OUT_WORDS > 1) ? $clog2(OUT_WORDS) : 1,
    parameter SRC_AW = (SRC_WORDS > 1) ? $clog2(SRC_WORDS) : 1
) (
    input  wire                            clk,
    input  wire                            rst,
    input  wire                            go,
    input  wire                            first_step,  // sampled with go: membranes start at 0
    output wire                            ready,
    output wire                            done,
    // the source's buffer
    output wire                            src_re,
    output wire [SRC_AW-1:0]               src_raddr,
    input  wire [SRC_LANES*SRC_XBITS-1:0]  src_rdata,
    // this layer's spike buffer (the next layer's source, or the host between steps)
    input  wire                            spk_re,
    input  wire [OUT_AW-1:0]               spk_raddr,
    output wire [LANES-1:0]                spk_rdata,
    // membranes, for the host between steps
    input  wire                            v_re,
    input  wire [OUT_AW-1:0]               v_raddr,
    output wire [LANES*V_BITS-1:0]         v_rdata,
    // since the last go with first_step: spikes fired and membranes clipped
    output reg  [31:0]                     spike_count,
    output reg  [31:0]                     clip_count
);
    localparam OG = OC / LANES;
    localparam SRC_C = SRC_GROUPS * SRC_LANES;
    localparam FAN_IN = SRC_C * SRC_H * SRC_W;
    localparam W_WORDS = DENSE ? OG * FAN_IN : OG * SRC_C * KH * KW;
    localparam W_AW = (W_WORDS > 1) ? $clog2(W_WORDS) : 1;
    localparam B_AW = (OG > 1) ? $clog2(OG) : 1;
    localparam XB = SRC_XBITS;
    // counter widths: every coordinate, channel and fan-in index with a bit to spare
    localparam YW = $clog2(SRC_H + SRC_W + OH + OW + PH + PW + KH + KW + SH + SW + 1) + 1;
    localparam GW = $clog2(SRC_GROUPS + OG + 1) + 1;
    localparam LW = $clog2(SRC_LANES + 1) + 1;
    localparam CCW = $clog2(SRC_C + 1) + 1;
    localparam FW = $clog2(FAN_IN + 1) + 1;
    localparam PW_ = $clog2(OH * OW + 1) + 1;
    localparam [SRC_LANES-1:0] ONE_LANE = 1;

    localparam [2:0] S_CLEAR = 3'd0, S_IDLE = 3'd1, S_ACC = 3'd2, S_END = 3'd3, S_UPDATE = 3'd4,
                     S_UPD_END = 3'd5, S_DONE = 3'd6;

    reg [2:0] state;
    reg       first_q;
    assign ready = state == S_IDLE;
    assign done = state == S_DONE;
    wire accumulating = state == S_ACC;
    wire updating = state == S_UPDATE;

    // --- fetch unit: reads source words into the next-word buffer (nw_*) -----------------------
    reg [SRC_AW-1:0] scan_addr;
    reg [GW-1:0]     scan_g, f_g;
    reg [YW-1:0]     scan_y, scan_x, f_y, f_x;
    reg              scan_more, inflight;
    reg              nw_valid;
    reg [SRC_LANES-1:0]    nw_mask;
    reg [SRC_LANES*XB-1:0] nw_vals;
    reg [GW-1:0]     nw_g;
    reg [YW-1:0]     nw_y, nw_x;
    wire [SRC_LANES-1:0] word_mask;
    genvar gl;
    generate
        for (gl = 0; gl < SRC_LANES; gl = gl + 1) begin : g_mask
            assign word_mask[gl] = |src_rdata[gl*XB +: XB];
        end
    endgenerate
    wire arrive_nonzero = inflight && word_mask != 0;
    wire fetch = accumulating && scan_more && !nw_valid && (!inflight || word_mask == 0);
    assign src_re = fetch;
    assign src_raddr = scan_addr;

    // --- pick unit: the current word's lowest nonzero lane becomes the next event (en_*) ---------
    reg [SRC_LANES-1:0]    cw_mask;
    reg [SRC_LANES*XB-1:0] cw_vals;
    reg [GW-1:0]     cur_g;
    reg [YW-1:0]     cur_y, cur_x;

    function integer lowest_set;
        input [SRC_LANES-1:0] m;
        integer k;
        begin
            lowest_set = 0;
            for (k = SRC_LANES - 1; k >= 0; k = k - 1)
                if (m[k]) lowest_set = k;
        end
    endfunction

    // (combinational logic as always blocks: Icarus evaluates their arithmetic word-wise)
    reg [LW-1:0]  pick_lane;
    reg [CCW-1:0] pick_c;
    reg [YW-1:0]  pick_oy, pick_ox, pick_i, pick_j, pick_ty, pick_tx;
    reg [XB-1:0] pick_val;
    reg [FW-1:0]  pick_f;
    reg          pick_taps;
    always @(*) begin
        pick_lane = lowest_set(cw_mask);
        pick_c = cur_g * SRC_LANES + pick_lane;
        pick_val = cw_vals >> (pick_lane * XB);
        pick_f = (pick_c * SRC_H + cur_y) * SRC_W + cur_x;
        pick_ty = cur_y + PH;
        pick_tx = cur_x + PW;
        pick_oy = pick_ty / SH;
        pick_ox = pick_tx / SW;
        if (pick_oy > OH - 1) pick_oy = OH - 1;
        if (pick_ox > OW - 1) pick_ox = OW - 1;
        pick_i = pick_ty - SH * pick_oy;
        pick_j = pick_tx - SW * pick_ox;
        pick_taps = DENSE || (pick_i < KH && pick_j < KW);
    end

    reg           en_valid;
    reg [CCW-1:0] en_c;
    reg [YW-1:0]  en_oy0, en_i0, en_ox0, en_j0;
    reg [FW-1:0]  en_f;
    reg [XB-1:0]  en_val;

    // --- tap unit: og outermost, then (oy down, i up), then (ox down, j up) ----------------------
    reg           t_active;
    reg [CCW-1:0] ev_c;
    reg [YW-1:0]  ev_oy0, ev_i0, ev_ox0, ev_j0;
    reg [FW-1:0]  ev_f;
    reg [XB-1:0]  ev_val;
    reg [GW-1:0]  og;
    reg [YW-1:0]  oy, ti, ox, tj;
    reg x_more, y_more, g_more, tap_last;
    reg [OUT_AW-1:0] tap_addr;
    reg [W_AW-1:0]   w_raddr;
    always @(*) begin
        x_more = !DENSE && (tj + SW < KW) && (ox != 0);
        y_more = !DENSE && (ti + SH < KH) && (oy != 0);
        g_more = og != OG - 1;
        tap_last = !x_more && !y_more && !g_more;
        tap_addr = DENSE ? og : (og * OH + oy) * OW + ox;
        w_raddr = DENSE ? og * FAN_IN + ev_f : ((og * SRC_C + ev_c) * KH + ti) * KW + tj;
    end
    wire issue = t_active;
    wire en_consume = en_valid && (!t_active || tap_last);
    wire pick_fire = accumulating && cw_mask != 0 && (!en_valid || en_consume);
    wire [SRC_LANES-1:0] cw_mask_next = pick_fire ? cw_mask & ~(ONE_LANE << pick_lane) : cw_mask;
    wire cw_load = accumulating && cw_mask_next == 0 && nw_valid;
    wire acc_finished = !scan_more && !inflight && !nw_valid && cw_mask == 0 && !en_valid && !t_active;

    // --- stages a and b of the read-modify-write, and the update pass's stages ---------------------
    localparam PCW = $clog2(LANES + 1);
    reg               a_valid, b_valid, fw_hit, ub_valid, us_valid, uw_valid, cnt_valid, pop_valid;
    reg  [OUT_AW-1:0] a_addr, b_addr, u_addr, ub_addr, us_addr, uw_addr, clr_addr;
    reg  [XB-1:0]     a_val;
    reg  [B_AW-1:0]   u_og;
    reg  [PW_-1:0]    u_pos;
    reg  [LANES-1:0]  spk_hold, clip_hold;
    reg  [PCW-1:0]    pop_spk, pop_clip;
    wire              clearing = state == S_CLEAR;
    wire              acc_we = b_valid || ub_valid || clearing;
    wire [OUT_AW-1:0] acc_waddr = b_valid ? b_addr : ub_valid ? ub_addr : clr_addr;
    wire [OUT_AW-1:0] acc_raddr = updating ? u_addr : a_addr;
    wire              lanes_en = (state != S_IDLE) || spk_re || v_re;
    wire              lanes_accumulate = accumulating || a_valid || b_valid;
    wire              acc_re = a_valid || updating;
    wire              upd_busy = ub_valid || us_valid || uw_valid || cnt_valid;  // pop_valid: its last cycle
    wire              lanes_v_re = updating || v_re;
    wire [OUT_AW-1:0] lanes_v_raddr = updating ? u_addr : v_raddr;
    wire [LANES-1:0]  spikes, clipped;
    wire [LANES*V_BITS-1:0] v_q;

    genvar gp;
    generate
        for (gp = 0; gp < LANES; gp = gp + 1) begin : g_lane
            lif_lane #(.W_BITS(W_BITS), .ACC_BITS(ACC_BITS), .V_BITS(V_BITS), .BIAS_BITS(BIAS_BITS),
                       .DECAY_MULTIPLY(DECAY_MULTIPLY), .FRAC(FRAC), .HALF_UP(HALF_UP),
                       .NO_DECAY_CODE(NO_DECAY_CODE), .DECAY_CODE(DECAY_CODE), .VTH(VTH), .XB(XB),
                       .OUT_WORDS(OUT_WORDS), .OUT_AW(OUT_AW), .W_WORDS(W_WORDS), .W_AW(W_AW), .OG(OG),
                       .B_AW(B_AW), .SPIKE_BUFFER(READOUT == 0),
                       .LANE(gp), .WEIGHT_PREFIX(WEIGHT_PREFIX), .BIAS_PREFIX(BIAS_PREFIX)) u_lane (
                .clk(clk), .en(lanes_en), .acc_re(acc_re), .acc_raddr(acc_raddr), .acc_we(acc_we),
                .acc_waddr(acc_waddr), .a_valid(a_valid), .a_val(a_val), .b_valid(b_valid), .fw_hit(fw_hit),
                .accumulate(lanes_accumulate), .issue(issue), .w_raddr(w_raddr),
                .upd_re(updating), .bias_raddr(u_og), .v_re(lanes_v_re), .v_raddr(lanes_v_raddr),
                .upd_valid(ub_valid), .first(first_q), .upd_sum(us_valid), .upd_we(uw_valid), .upd_addr(uw_addr),
                .spk_re(spk_re), .spk_raddr(spk_raddr), .spk_q(spk_rdata[gp]),
                .v_q(v_q[gp*V_BITS +: V_BITS]), .spike(spikes[gp]), .clipped(clipped[gp]));
        end
    endgenerate
    assign v_rdata = v_q;

    function [31:0] popcount;
        input [LANES-1:0] bits;
        integer k;
        begin
            popcount = 0;
            for (k = 0; k < LANES; k = k + 1) popcount = popcount + bits[k];
        end
    endfunction

    // --- control ---------------------------------------------------------------------------------
    always @(posedge clk) begin
        if (rst) begin
            state <= S_CLEAR;
            clr_addr <= 0;
            a_valid <= 1'b0;
            b_valid <= 1'b0;
            fw_hit <= 1'b0;
            ub_valid <= 1'b0;
            us_valid <= 1'b0;
            uw_valid <= 1'b0;
            cnt_valid <= 1'b0;
            pop_valid <= 1'b0;
            t_active <= 1'b0;
            en_valid <= 1'b0;
            inflight <= 1'b0;
            nw_valid <= 1'b0;
            scan_more <= 1'b0;
            cw_mask <= 0;
            first_q <= 1'b1;
            spike_count <= 0;
            clip_count <= 0;
        end else if (state != S_IDLE || go) begin  // idle cycles touch nothing
            a_valid <= issue;
            a_addr <= tap_addr;
            a_val <= ev_val;
            b_valid <= a_valid;
            b_addr <= a_addr;
            fw_hit <= b_valid && b_addr == a_addr;  // stage b's word is written as stage a reads it
            ub_valid <= updating;
            ub_addr <= u_addr;
            us_valid <= ub_valid;
            us_addr <= ub_addr;
            uw_valid <= us_valid;
            uw_addr <= us_addr;
            cnt_valid <= uw_valid;
            pop_valid <= cnt_valid;
            if (uw_valid) begin
                spk_hold <= spikes;
                clip_hold <= clipped;
            end
            if (cnt_valid) begin
                pop_spk <= popcount(spk_hold);
                pop_clip <= popcount(clip_hold);
            end
            if (pop_valid) begin
                spike_count <= spike_count + pop_spk;
                clip_count <= clip_count + pop_clip;
            end

            if (accumulating) begin
                // fetch: a read issued now returns next cycle; nonzero words wait in nw_*
                inflight <= fetch;
                if (fetch) begin
                    f_g <= scan_g;
                    f_y <= scan_y;
                    f_x <= scan_x;
                    scan_addr <= scan_addr + 1'b1;
                    scan_more <= scan_addr != SRC_WORDS - 1;
                    if (scan_x != SRC_W - 1) begin
                        scan_x <= scan_x + 1'b1;
                    end else begin
                        scan_x <= 0;
                        if (scan_y != SRC_H - 1) begin
                            scan_y <= scan_y + 1'b1;
                        end else begin
                            scan_y <= 0;
                            scan_g <= scan_g + 1'b1;
                        end
                    end
                end
                if (arrive_nonzero) begin
                    nw_valid <= 1'b1;
                    nw_mask <= word_mask;
                    nw_vals <= src_rdata;
                    nw_g <= f_g;
                    nw_y <= f_y;
                    nw_x <= f_x;
                end else if (cw_load) begin
                    nw_valid <= 1'b0;
                end
                // pick
                cw_mask <= cw_mask_next;
                if (cw_load) begin
                    cw_mask <= nw_mask;
                    cw_vals <= nw_vals;
                    cur_g <= nw_g;
                    cur_y <= nw_y;
                    cur_x <= nw_x;
                end
                if (pick_fire) begin
                    en_valid <= pick_taps;
                    en_c <= pick_c;
                    en_f <= pick_f;
                    en_val <= pick_val;
                    en_oy0 <= pick_oy;
                    en_i0 <= pick_i;
                    en_ox0 <= pick_ox;
                    en_j0 <= pick_j;
                end else if (en_consume) begin
                    en_valid <= 1'b0;
                end
                // taps
                if (en_consume) begin
                    t_active <= 1'b1;
                    ev_c <= en_c;
                    ev_f <= en_f;
                    ev_val <= en_val;
                    ev_oy0 <= en_oy0;
                    ev_i0 <= en_i0;
                    ev_ox0 <= en_ox0;
                    ev_j0 <= en_j0;
                    og <= 0;
                    oy <= en_oy0;
                    ti <= en_i0;
                    ox <= en_ox0;
                    tj <= en_j0;
                end else if (t_active) begin
                    if (x_more) begin
                        ox <= ox - 1'b1;
                        tj <= tj + SW;
                    end else if (y_more) begin
                        ox <= ev_ox0;
                        tj <= ev_j0;
                        oy <= oy - 1'b1;
                        ti <= ti + SH;
                    end else if (g_more) begin
                        ox <= ev_ox0;
                        tj <= ev_j0;
                        oy <= ev_oy0;
                        ti <= ev_i0;
                        og <= og + 1'b1;
                    end else begin
                        t_active <= 1'b0;
                    end
                end
            end

            case (state)
                S_CLEAR: begin
                    clr_addr <= clr_addr + 1'b1;
                    if (clr_addr == OUT_WORDS - 1) state <= S_IDLE;
                end
                S_IDLE: begin  // go
                    first_q <= first_step;
                    if (first_step) begin
                        spike_count <= 0;
                        clip_count <= 0;
                    end
                    scan_addr <= 0;
                    scan_g <= 0;
                    scan_y <= 0;
                    scan_x <= 0;
                    scan_more <= 1'b1;
                    inflight <= 1'b0;
                    nw_valid <= 1'b0;
                    cw_mask <= 0;
                    en_valid <= 1'b0;
                    t_active <= 1'b0;
                    state <= S_ACC;
                end
                S_ACC: if (acc_finished) state <= S_END;
                S_END: if (!a_valid && !b_valid) begin  // the last accumulator write has landed
                    u_addr <= 0;
                    u_og <= 0;
                    u_pos <= 0;
                    state <= S_UPDATE;
                end
                S_UPDATE: begin
                    u_addr <= u_addr + 1'b1;
                    if (u_pos != OH * OW - 1) begin
                        u_pos <= u_pos + 1'b1;
                    end else begin
                        u_pos <= 0;
                        u_og <= u_og + 1'b1;
                    end
                    if (u_addr == OUT_WORDS - 1) state <= S_UPD_END;
                end
                S_UPD_END: if (!upd_busy) state <= S_DONE;  // the last count is added this cycle
                S_DONE: state <= S_IDLE;
                default: state <= S_IDLE;
            endcase
        end
    end
endmodule

`default_nettype wire
