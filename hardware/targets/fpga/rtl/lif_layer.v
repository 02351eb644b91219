// lif_layer: one LIF node of the network, time-multiplexed over its neurons, LANES output channels
// per cycle (one lif_lane each), fed by EDGES synaptic edges (a residual add: several edges into
// one node; lif_edge.v scans each edge's source).
//
// One time step, started by `go` once every source holds its outputs of that step (the top's
// banked buffers keep them while the sources run later steps: lsg_chain_top):
//
//   1. accumulate: the edges one after another (edge_go, until its edge_active falls), each
//      edge's taps (lif_edge.v: one accumulator word, one weight word and the event's value per
//      cycle) into the one accumulator, so the node's current is the sum over its edges of
//      W_e * s_e, as the integer reference adds them (the export proves that the sum fits
//      ACC_BITS). Each tap is a read-modify-write in three stages (lif_lane.v): the weight read,
//      the product w * x with the accumulator read, the add and write (forwarding the previous
//      cycle's sum to a read that missed it).
//   2. update: one pass over the accumulator words through every lane's lif_neuron (decay,
//      bias, saturation, threshold, reset), one word a cycle into the neuron's pipeline: read,
//      stage 1 (ub_*; the accumulator word is cleared for the next step), stage 2 (us_*), write of
//      the membranes and of the spike word on spk_we/spk_waddr/spk_wdata (uw_*; the top's spike
//      buffers, its consumers' source), then the counters (a popcount stage, an add stage).
//   `done` pulses when the spike buffers and the counters hold the step's results.
//
// Layouts (word address; lane p; LANES divides OC; lane p of group og is channel og*LANES + p):
//   accumulator, membranes, spike words: conv (og*OH + oy)*OW + ox; dense og
//   weights (lane p's WEIGHT_PREFIX.laneNNN.mem): the edges' words one after another (lif_edge.v
//     gives each edge's base and order); with one edge and LANES = 1 the export's row-major
//     (O, C, KH, KW) / (N, F) .mem file as it is; WEIGHT_EXT = 1: no ROM, the same addresses
//     read from the top's weight RAM (w_re, w_raddr_out; the SPRAM build, weight_ram.v)
//   biases (BIAS_PREFIX.laneNNN.mem): og
// The edges' taps come in packed, edge e at [e*OUT_AW +: OUT_AW], [e*W_AW +: W_AW], [e*XB +: XB]
// (an edge with narrower values zero-extends them to XB, the widest edge's).
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
    // edges
    parameter EDGES = 1,
    parameter XB = 1,          // the widest edge's event value (1: spikes only)
    parameter W_WORDS = 1,     // weight words per lane, every edge's
    parameter WEIGHT_PREFIX = "",
    parameter BIAS_PREFIX = "",
    parameter WEIGHT_EXT = 0,  // 1: weights from the top's weight RAM (w_re, w_raddr_out, w_rdata), no ROM
    // derived (do not override)
    parameter OUT_WORDS = (OC / LANES) * OH * OW,
    parameter OUT_AW = (OUT_WORDS > 1) ? $clog2(OUT_WORDS) : 1,
    parameter W_AW = (W_WORDS > 1) ? $clog2(W_WORDS) : 1,
    parameter EW = (EDGES > 1) ? $clog2(EDGES) : 1
) (
    input  wire                            clk,
    input  wire                            rst,
    input  wire                            go,
    input  wire                            first_step,  // sampled with go: membranes start at 0
    input  wire                            clear,       // a sample starts: the counters restart from 0
    output wire                            ready,
    output wire                            done,
    // the edges
    output wire [EDGES-1:0]                edge_go,
    input  wire [EDGES-1:0]                edge_active,
    input  wire [EDGES-1:0]                tap_issue,
    input  wire [EDGES*OUT_AW-1:0]         tap_addr_e,
    input  wire [EDGES*W_AW-1:0]           tap_w_e,
    input  wire [EDGES*XB-1:0]             tap_val_e,
    // the step's spikes, one word a cycle in the update pass (for the top's spike buffers)
    output wire                            spk_we,
    output wire [OUT_AW-1:0]               spk_waddr,
    output wire [LANES-1:0]                spk_wdata,
    // membranes, for the host between steps
    input  wire                            v_re,
    input  wire [OUT_AW-1:0]               v_raddr,
    output wire [LANES*V_BITS-1:0]         v_rdata,
    // since the last clear: spikes fired and membranes clipped
    output reg  [31:0]                     spike_count,
    output reg  [31:0]                     clip_count,
    // WEIGHT_EXT: the weight read (address in this layer's weight words, every edge's, lane layout
    // above); the LANES weights of the address on w_rdata (lane p at [p*W_BITS +: W_BITS]) after the edge
    output wire                            w_re,
    output wire [W_AW-1:0]                 w_raddr_out,
    input  wire [LANES*W_BITS-1:0]         w_rdata
);
    localparam OG = OC / LANES;
    localparam B_AW = (OG > 1) ? $clog2(OG) : 1;
    localparam PW_ = $clog2(OH * OW + 1) + 1;

    localparam [2:0] S_CLEAR = 3'd0, S_IDLE = 3'd1, S_ACC = 3'd2, S_END = 3'd3, S_UPDATE = 3'd4,
                     S_UPD_END = 3'd5, S_DONE = 3'd6;

    reg [2:0] state;
    reg       first_q;
    assign ready = state == S_IDLE;
    assign done = state == S_DONE;
    wire accumulating = state == S_ACC;
    wire updating = state == S_UPDATE;

    // --- the edges' taps: the edge being scanned (cur_edge) drives the read-modify-write ----------
    reg [EW-1:0]      cur_edge;
    reg               launch;  // start edge cur_edge in this cycle
    genvar ge;
    generate
        for (ge = 0; ge < EDGES; ge = ge + 1) begin : g_go
            assign edge_go[ge] = launch && cur_edge == ge;
        end
    endgenerate
    wire              issue = tap_issue[cur_edge];
    wire [OUT_AW-1:0] tap_addr = tap_addr_e[cur_edge*OUT_AW +: OUT_AW];
    wire [W_AW-1:0]   w_raddr = tap_w_e[cur_edge*W_AW +: W_AW];
    wire [XB-1:0]     ev_val = tap_val_e[cur_edge*XB +: XB];
    assign w_re = issue;
    assign w_raddr_out = w_raddr;

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
    wire              lanes_en = (state != S_IDLE) || v_re;
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
                       .B_AW(B_AW), .FIRES(READOUT == 0),
                       .LANE(gp), .WEIGHT_PREFIX(WEIGHT_PREFIX), .BIAS_PREFIX(BIAS_PREFIX),
                       .WEIGHT_EXT(WEIGHT_EXT)) u_lane (
                .clk(clk), .en(lanes_en), .acc_re(acc_re), .acc_raddr(acc_raddr), .acc_we(acc_we),
                .acc_waddr(acc_waddr), .a_valid(a_valid), .a_val(a_val), .b_valid(b_valid), .fw_hit(fw_hit),
                .accumulate(lanes_accumulate), .issue(issue), .w_raddr(w_raddr),
                .w_ext(w_rdata[gp*W_BITS +: W_BITS]),
                .upd_re(updating), .bias_raddr(u_og), .v_re(lanes_v_re), .v_raddr(lanes_v_raddr),
                .upd_valid(ub_valid), .first(first_q), .upd_sum(us_valid), .upd_we(uw_valid), .upd_addr(uw_addr),
                .v_q(v_q[gp*V_BITS +: V_BITS]), .spike(spikes[gp]), .clipped(clipped[gp]));
        end
    endgenerate
    assign v_rdata = v_q;
    assign spk_we = uw_valid && READOUT == 0;
    assign spk_waddr = uw_addr;
    assign spk_wdata = spikes;

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
            first_q <= 1'b1;
            launch <= 1'b0;
            cur_edge <= 0;  // its edge's issue drives the pipeline from the clearing on
            spike_count <= 0;
            clip_count <= 0;
        end else if (state != S_IDLE || go || clear) begin  // idle cycles touch nothing
            if (clear) begin  // (a sample's first phase starts; the layer is idle: no count is being added)
                spike_count <= 0;
                clip_count <= 0;
            end
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

            case (state)
                S_CLEAR: begin
                    clr_addr <= clr_addr + 1'b1;
                    if (clr_addr == OUT_WORDS - 1) state <= S_IDLE;
                end
                S_IDLE: if (go) begin
                    first_q <= first_step;
                    cur_edge <= 0;
                    launch <= 1'b1;
                    state <= S_ACC;
                end
                S_ACC: begin  // the edges one after another, each once its scan has ended
                    launch <= 1'b0;
                    if (!launch && !edge_active[cur_edge]) begin
                        if (cur_edge == EDGES - 1) begin
                            state <= S_END;
                        end else begin
                            cur_edge <= cur_edge + 1'b1;
                            launch <= 1'b1;
                        end
                    end
                end
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
