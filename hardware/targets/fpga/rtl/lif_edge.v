// lif_edge: the event scanner of one synaptic edge (conv with shared kernels, or dense) into a
// lif_layer. It turns the source's step outputs into the taps of the node's accumulation: per
// tap, the accumulator word (tap_addr, LANES output channels), the weight word (w_addr, in the
// node's weight memory, this edge's words starting at W_BASE) and the event's value (val).
//
// A scan, started by `go` once the source holds its outputs of the step (the node starts its
// edges one after another), is event-driven: the source's buffer is read word by word; every
// nonzero lane of a word is an event (a spike, or a nonzero input pixel of value x) and adds x
// times its fan-out weights into the node's accumulator, one accumulator word per cycle:
//   conv  event (c, y, x): every output (oy, ox) with i = y + PH - SH*oy in [0, KH) and
//         j = x + PW - SW*ox in [0, KW):  acc[o, oy, ox] += w[o, c, i, j] * x
//   dense event f:         acc[n] += w[n, f] * x
// Three units overlap: the fetch unit reads source words ahead (1 cycle per empty word), the
// pick unit turns the lowest nonzero lane into the next event (with its first tap), the tap
// unit issues one tap per cycle (`issue`) and takes the next event in the cycle of its last
// tap. So a scan costs one cycle per tap, plus the fill. `active` is high from `go` until the
// last tap has issued.
//
// Layouts (LANES divides OC; lane p of group og is channel og*LANES + p):
//   accumulator word: conv (og*OH + oy)*OW + ox; dense og
//   weight word: W_BASE + conv ((og*C + c)*KH + i)*KW + j; dense og*F + f
// The source is read through src_re/src_raddr/src_rdata (registered read): SRC_GROUPS x SRC_H x
// SRC_W words of SRC_LANES lanes of SRC_XBITS bits; source channel c = g*SRC_LANES + p; a dense
// edge reads feature f = (c*SRC_H + y)*SRC_W + x.
`timescale 1ns / 1ps
`default_nettype none

module lif_edge #(
    // the node it feeds
    parameter OC = 1,
    parameter OH = 1,
    parameter OW = 1,
    parameter LANES = 1,
    parameter OUT_AW = 1,
    parameter W_AW = 1,
    parameter W_BASE = 0,
    // the edge
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
    // derived (do not override)
    parameter SRC_WORDS = SRC_GROUPS * SRC_H * SRC_W,
    parameter SRC_AW = (SRC_WORDS > 1) ? $clog2(SRC_WORDS) : 1
) (
    input  wire                            clk,
    input  wire                            rst,
    input  wire                            go,
    output reg                             active,
    // the source's buffer
    output wire                            src_re,
    output wire [SRC_AW-1:0]               src_raddr,
    input  wire [SRC_LANES*SRC_XBITS-1:0]  src_rdata,
    // the taps
    output wire                            issue,
    output reg  [OUT_AW-1:0]               tap_addr,
    output reg  [W_AW-1:0]                 w_addr,
    output wire [SRC_XBITS-1:0]            val
);
    localparam OG = OC / LANES;
    localparam SRC_C = SRC_GROUPS * SRC_LANES;
    localparam FAN_IN = SRC_C * SRC_H * SRC_W;
    localparam XB = SRC_XBITS;
    // counter widths: every coordinate, channel and fan-in index with a bit to spare
    localparam YW = $clog2(SRC_H + SRC_W + OH + OW + PH + PW + KH + KW + SH + SW + 1) + 1;
    localparam GW = $clog2(SRC_GROUPS + OG + 1) + 1;
    localparam LW = $clog2(SRC_LANES + 1) + 1;
    localparam CCW = $clog2(SRC_C + 1) + 1;
    localparam FW = $clog2(FAN_IN + 1) + 1;
    localparam [SRC_LANES-1:0] ONE_LANE = 1;

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
    wire fetch = active && scan_more && !nw_valid && (!inflight || word_mask == 0);
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
    always @(*) begin
        x_more = !DENSE && (tj + SW < KW) && (ox != 0);
        y_more = !DENSE && (ti + SH < KH) && (oy != 0);
        g_more = og != OG - 1;
        tap_last = !x_more && !y_more && !g_more;
        tap_addr = DENSE ? og : (og * OH + oy) * OW + ox;
        w_addr = W_BASE + (DENSE ? og * FAN_IN + ev_f : ((og * SRC_C + ev_c) * KH + ti) * KW + tj);
    end
    assign issue = t_active;
    assign val = ev_val;
    wire en_consume = en_valid && (!t_active || tap_last);
    wire pick_fire = active && cw_mask != 0 && (!en_valid || en_consume);
    wire [SRC_LANES-1:0] cw_mask_next = pick_fire ? cw_mask & ~(ONE_LANE << pick_lane) : cw_mask;
    wire cw_load = active && cw_mask_next == 0 && nw_valid;
    wire finished = !scan_more && !inflight && !nw_valid && cw_mask == 0 && !en_valid && !t_active;

    always @(posedge clk) begin
        if (rst) begin
            active <= 1'b0;
            t_active <= 1'b0;
            en_valid <= 1'b0;
            inflight <= 1'b0;
            nw_valid <= 1'b0;
            scan_more <= 1'b0;
            cw_mask <= 0;
        end else if (go) begin
            active <= 1'b1;
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
        end else if (active) begin  // idle cycles touch nothing
            if (finished) active <= 1'b0;
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
    end
endmodule

`default_nettype wire
