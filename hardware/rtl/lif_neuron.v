// lif_neuron: one integer LIF update, combinational (the arithmetic of hardware/profile.py,
// Profile.lif_step, for the FPGA profiles: no current stage, saturating membrane, threshold >=).
//
//   d     = decay(v, DECAY_CODE)
//             multiply (DECAY_MULTIPLY = 1): (v * code + 2^(FRAC-1)) >>> FRAC   (HALF_UP = 1)
//                                            (v * code) >>> FRAC               (HALF_UP = 0)
//             shift    (DECAY_MULTIPLY = 0): code == NO_DECAY_CODE ? v : v - (v >>> code)
//             (>>> is an arithmetic shift: floor)
//   v_raw = d + acc + bias                     exact, ACC_BITS + 2 bits
//   v_sat = clamp(v_raw, -(2^(V_BITS-1) - 1), 2^(V_BITS-1) - 1)
//   spike = v_sat >= VTH;  v_new = spike ? 0 : v_sat;  clipped = (v_sat != v_raw)
//
// DECAY_CODE and VTH are the node's constants (module parameters from the tables' manifest).
`timescale 1ns / 1ps
`default_nettype none

module lif_neuron #(
    parameter V_BITS = 16,
    parameter ACC_BITS = 24,
    parameter BIAS_BITS = 16,
    parameter DECAY_MULTIPLY = 1,
    parameter FRAC = 10,
    parameter HALF_UP = 1,
    parameter NO_DECAY_CODE = 1024,
    parameter DECAY_CODE = 1024,
    parameter VTH = 32767
) (
    input  wire signed [V_BITS-1:0]    v_old,
    input  wire signed [ACC_BITS-1:0]  acc,
    input  wire signed [BIAS_BITS-1:0] bias,
    output wire signed [V_BITS-1:0]    v_new,
    output wire                        spike,
    output wire                        clipped
);
    localparam RAW_BITS = ACC_BITS + 2;
    localparam CODE_BITS = 17;  // codes up to 2^16 (FPGA profiles: 1024 or 16)
    localparam PROD_BITS = V_BITS + CODE_BITS + 1;
    localparam signed [RAW_BITS-1:0] LIMIT = (1 << (V_BITS - 1)) - 1;
    localparam signed [RAW_BITS-1:0] NEG_LIMIT = -((1 << (V_BITS - 1)) - 1);
    localparam signed [RAW_BITS-1:0] THRESHOLD = VTH;

    wire signed [RAW_BITS-1:0] d;
    generate
        if (DECAY_MULTIPLY != 0) begin : g_multiply
            localparam signed [CODE_BITS:0] CODE = DECAY_CODE;
            localparam signed [PROD_BITS-1:0] ROUND = HALF_UP ? (1 << (FRAC - 1)) : 0;
            wire signed [PROD_BITS-1:0] product = v_old * CODE;
            wire signed [PROD_BITS-1:0] rounded = (product + ROUND) >>> FRAC;
            assign d = rounded[RAW_BITS-1:0];
        end else if (DECAY_CODE == NO_DECAY_CODE) begin : g_keep
            assign d = v_old;
        end else begin : g_shift
            wire signed [V_BITS:0] leak = v_old >>> DECAY_CODE;
            assign d = v_old - leak;
        end
    endgenerate

    wire signed [RAW_BITS-1:0] v_raw = d + acc + bias;
    wire signed [RAW_BITS-1:0] v_sat = (v_raw > LIMIT) ? LIMIT : (v_raw < NEG_LIMIT) ? NEG_LIMIT : v_raw;

    assign spike = v_sat >= THRESHOLD;
    assign clipped = v_sat != v_raw;
    assign v_new = spike ? {V_BITS{1'b0}} : v_sat[V_BITS-1:0];
endmodule

`default_nettype wire
