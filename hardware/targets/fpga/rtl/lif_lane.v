// lif_lane: one output channel lane of a lif_layer: its slice of every memory of the layer and
// its datapaths. The layer's control drives all lanes with the same addresses and enables.
//
// Memories (registered reads, block-RAM style; a read returns the word before a same-cycle write):
//   acc     OUT_WORDS x ACC_BITS   synaptic sums of the current step
//   weights W_WORDS x W_BITS       ROM, $readmemh(WEIGHT_PREFIX.laneNNN.mem); with WEIGHT_EXT = 1
//                                  none: the weight comes on w_ext, read from the top's weight
//                                  RAM at `issue` (weight_ram.v), in the cycle w_q would be
//   bias    OG x BIAS_BITS         ROM, $readmemh(BIAS_PREFIX.laneNNN.mem)
//   v       OUT_WORDS x V_BITS     membranes
// (the step's spikes leave on `spike` as upd_we writes the membranes: the top keeps them in its
// banked spike buffers, lsg_chain_top)
// Accumulate, a read-modify-write in three stages, one adder or one multiply deep each:
//   issue:   w_q <= w[w_raddr]
//   a_valid: prod <= w_q * a_val (a spike's x is 1: prod <= w_q), and acc_q <= acc[acc_raddr];
//            w_q is a W_BITS two's-complement word (8, or 4 in fpga-mul4), sign-extended by
//            $signed into the W_BITS + XB + 1 bits of prod, which hold every w * x
//   b_valid: acc[acc_waddr] <= (fw_hit ? fw_data : acc_q) + prod, where fw_data is the sum
//            written in the previous cycle (a read issued in that cycle missed it).
// Update: upd_valid hands (v_q, acc_q, bias_q) to the lif_neuron (stage 1; the layer clears acc
// there in the same cycle: acc_we without b_valid writes 0), upd_sum is its stage 2, and upd_we
// writes its v_new at upd_addr two cycles after upd_valid (its spike on `spike` then).
// The memories sit in one clocked block with the enables checked in order (only `en`, then only
// the accumulation's or only the other enables): synthesis infers each memory by itself, and
// Icarus, which spends most of its time loading signals, runs an idle lane at one load a cycle.
`timescale 1ns / 1ps
`default_nettype none

module lif_lane #(
    parameter W_BITS = 8,
    parameter ACC_BITS = 24,
    parameter V_BITS = 16,
    parameter BIAS_BITS = 16,
    parameter DECAY_MULTIPLY = 1,
    parameter FRAC = 10,
    parameter HALF_UP = 1,
    parameter NO_DECAY_CODE = 1024,
    parameter DECAY_CODE = 1024,
    parameter VTH = 32767,
    parameter XB = 1,
    parameter OUT_WORDS = 1,
    parameter OUT_AW = 1,
    parameter W_WORDS = 1,
    parameter W_AW = 1,
    parameter OG = 1,
    parameter B_AW = 1,
    parameter FIRES = 1,  // 0: the readout (its neuron never fires)
    parameter LANE = 0,
    parameter WEIGHT_PREFIX = "",  // the weights are WEIGHT_PREFIX.laneNNN.mem, NNN = LANE in 3 digits
    parameter BIAS_PREFIX = "",
    parameter WEIGHT_EXT = 0  // 1: the weights come on w_ext (the top's weight RAM), not from a ROM here
) (
    input  wire              clk,
    input  wire              en,          // any of the enables below may be high
    // accumulator: read in stage a (and the update pass's read), written in stage b
    input  wire              acc_re,      // acc_q <= acc[acc_raddr]
    input  wire [OUT_AW-1:0] acc_raddr,
    input  wire              acc_we,      // acc[acc_waddr] <= b_valid ? sum : 0 (update pass, clearing)
    input  wire [OUT_AW-1:0] acc_waddr,
    input  wire              a_valid,     // stage a: prod <= w_q * a_val
    input  wire [XB-1:0]     a_val,       // the event's value x
    input  wire              b_valid,     // stage b: sum = (fw_hit ? fw_data : acc_q) + prod
    input  wire              fw_hit,      // stage b's word was written in the previous cycle
    input  wire              accumulate,  // the layer accumulates (no update-pass or host access)
    input  wire              issue,       // w_q <= w[w_raddr]
    input  wire [W_AW-1:0]   w_raddr,
    input  wire [W_BITS-1:0] w_ext,       // WEIGHT_EXT: w[w_raddr] of the last issue, from the top
    // update pass
    input  wire              upd_re,      // bias_q <= bias[bias_raddr]
    input  wire [B_AW-1:0]   bias_raddr,
    input  wire              v_re,        // v_q <= v[v_raddr] (update pass or the host)
    input  wire [OUT_AW-1:0] v_raddr,
    input  wire              upd_valid,   // neuron stage 1: v_q, acc_q, bias_q hold a word's operands
    input  wire              first,       // with upd_valid: the membranes start at 0
    input  wire              upd_sum,     // neuron stage 2
    input  wire              upd_we,      // write v_new at upd_addr (the spike is on `spike`)
    input  wire [OUT_AW-1:0] upd_addr,
    output reg  [V_BITS-1:0] v_q,
    output wire              spike,
    output wire              clipped
);
    localparam PROD_BITS = W_BITS + XB + 1;

    reg [ACC_BITS-1:0]  acc_mem [0:OUT_WORDS-1];
    reg [W_BITS-1:0]    w_mem [0:W_WORDS-1];
    reg [BIAS_BITS-1:0] bias_mem [0:OG-1];
    reg [V_BITS-1:0]    v_mem [0:OUT_WORDS-1];
    reg [ACC_BITS-1:0]  acc_q, fw_data;
    reg [W_BITS-1:0]    w_q;
    reg signed [PROD_BITS-1:0] prod;
    reg [BIAS_BITS-1:0] bias_q;

    function [7:0] digit;
        input integer d;
        begin
            digit = 8'd48 + d % 10;
        end
    endfunction
    localparam [8*12-1:0] SUFFIX = {".lane", digit(LANE / 100), digit(LANE / 10), digit(LANE), ".mem"};

    initial begin  // (the guards keep tools that elaborate the default parameters from loading)
        if (WEIGHT_EXT == 0 && WEIGHT_PREFIX != "") $readmemh({WEIGHT_PREFIX, SUFFIX}, w_mem);
        if (BIAS_PREFIX != "") $readmemh({BIAS_PREFIX, SUFFIX}, bias_mem);
    end

    // update: the neuron's registers load only in its stages, so it stays still outside the pass
    wire [V_BITS-1:0] v_new;
    lif_neuron #(.V_BITS(V_BITS), .ACC_BITS(ACC_BITS), .BIAS_BITS(BIAS_BITS), .DECAY_MULTIPLY(DECAY_MULTIPLY),
                 .FRAC(FRAC), .HALF_UP(HALF_UP), .NO_DECAY_CODE(NO_DECAY_CODE), .DECAY_CODE(DECAY_CODE),
                 .VTH(VTH), .FIRES(FIRES)) u_neuron (
        .clk(clk), .in_valid(upd_valid), .first(first), .v_old(v_q), .acc(acc_q), .bias(bias_q),
        .sum_valid(upd_sum), .v_new(v_new), .spike(spike), .clipped(clipped));

    // accumulate: stage a multiplies, stage b adds to the word as last written (fw_hit: in the
    // previous cycle)
    reg signed [ACC_BITS-1:0]  acc_sum;
    wire [W_BITS-1:0] w_use = WEIGHT_EXT != 0 ? w_ext : w_q;
    always @(posedge clk) begin
        if (en) begin
            if (a_valid) begin
                if (XB == 1) prod <= $signed(w_use);  // a spike's x is 1
                else prod <= $signed(w_use) * $signed({1'b0, a_val});
            end
            if (b_valid) begin
                acc_sum = $signed(fw_hit ? fw_data : acc_q) + prod;
                fw_data <= acc_sum;
            end
            if (acc_we) acc_mem[acc_waddr] <= b_valid ? acc_sum : {ACC_BITS{1'b0}};  // one write port
            if (acc_re) acc_q <= acc_mem[acc_raddr];
            if (accumulate) begin  // (the checks below cannot fire while the layer accumulates)
                if (WEIGHT_EXT == 0 && issue) w_q <= w_mem[w_raddr];
            end else begin
                if (upd_we) v_mem[upd_addr] <= v_new;
                if (upd_re) bias_q <= bias_mem[bias_raddr];
                if (v_re) v_q <= v_mem[v_raddr];
            end
        end
    end
endmodule

`default_nettype wire
