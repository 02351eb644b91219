// lif_neuron: one integer LIF update in three pipeline stages (the arithmetic of
// hardware/profile.py, Profile.lif_step, for the FPGA profiles: no current stage, saturating
// membrane, threshold >=). One neuron may enter every cycle; its result leaves two cycles later.
//
//   d     = decay(v, DECAY_CODE)
//             multiply (DECAY_MULTIPLY = 1): (v * code + 2^(FRAC-1)) >>> FRAC   (HALF_UP = 1)
//                                            (v * code) >>> FRAC               (HALF_UP = 0)
//             shift    (DECAY_MULTIPLY = 0): code == NO_DECAY_CODE ? v : v - (v >>> code)
//             (>>> is an arithmetic shift: floor; v = 0 on the first step)
//   v_raw = d + acc + bias                     exact, ACC_BITS + 2 bits
//   v_sat = clamp(v_raw, -(2^(V_BITS-1) - 1), 2^(V_BITS-1) - 1)
//   spike = v_sat >= VTH;  v_new = spike ? 0 : v_sat;  clipped = (v_sat != v_raw)
//   FIRES = 0 (the readout): spike = 0, v_new = v_sat: a pure integrator held at the limit, so
//   the class that saturates keeps its evidence instead of resetting to 0
//
// Stages (each one multiply or one adder deep; the registers load only when their stage is valid,
// so the datapath stays still between update passes):
//   1 (in_valid):  part <= v * code (multiply) or v - (v >>> code) (shift);  ab <= acc + bias
//   2 (sum_valid): v_raw <= (part + ab * 2^FRAC + ROUND) >>> FRAC (multiply: the rounding and
//                  the add in one adder, since floor((p + R)/2^F) + ab = floor((p + R + ab*2^F)/2^F)
//                  and R < 2^F fills the low bits of ab * 2^F) or part + ab (shift)
//   3 (outputs, combinational from v_raw): the range tests and the threshold compare side by
//     side, since v_sat >= VTH is LIMIT >= VTH above the range, NEG_LIMIT >= VTH below it and
//     v_raw >= VTH inside it
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
    parameter VTH = 32767,
    parameter FIRES = 1
) (
    input  wire                        clk,
    input  wire                        in_valid,   // stage 1: v_old, acc, bias hold a neuron
    input  wire                        first,      // with in_valid: the membrane starts at 0
    input  wire signed [V_BITS-1:0]    v_old,
    input  wire signed [ACC_BITS-1:0]  acc,
    input  wire signed [BIAS_BITS-1:0] bias,
    input  wire                        sum_valid,  // stage 2: the neuron of the previous cycle's in_valid
    output wire signed [V_BITS-1:0]    v_new,      // stage 3: the neuron of the previous cycle's sum_valid
    output wire                        spike,
    output wire                        clipped
);
    localparam RAW_BITS = ACC_BITS + 2;
    localparam AB_BITS = ACC_BITS + 1;
    localparam CODE_BITS = 17;  // codes up to 2^16 (FPGA profiles: 1024 or 16)
    localparam PROD_BITS = V_BITS + CODE_BITS + 1;
    localparam PART_BITS = DECAY_MULTIPLY != 0 ? PROD_BITS : V_BITS + 1;
    localparam SUM_BITS = (PROD_BITS > AB_BITS + FRAC ? PROD_BITS : AB_BITS + FRAC) + 1;
    localparam signed [RAW_BITS-1:0] LIMIT = (1 << (V_BITS - 1)) - 1;
    localparam signed [RAW_BITS-1:0] NEG_LIMIT = -((1 << (V_BITS - 1)) - 1);
    localparam signed [RAW_BITS-1:0] THRESHOLD = VTH;
    localparam SPIKE_ABOVE = LIMIT >= THRESHOLD;      // v_sat = LIMIT
    localparam SPIKE_BELOW = NEG_LIMIT >= THRESHOLD;  // v_sat = NEG_LIMIT
    localparam signed [V_BITS-1:0] VTH_LOW = VTH;  // (used only when VTH is in range)
    localparam [V_BITS-1:0] V_MAX = (1 << (V_BITS - 1)) - 1;
    localparam [V_BITS-1:0] V_MIN = -((1 << (V_BITS - 1)) - 1);

    reg signed [PART_BITS-1:0] part;
    reg signed [AB_BITS-1:0]   ab;
    reg signed [RAW_BITS-1:0]  v_raw;

    // stages 1 and 2
    generate
        if (DECAY_MULTIPLY != 0) begin : g_multiply
            localparam signed [CODE_BITS:0] CODE = DECAY_CODE;
            localparam [FRAC-1:0] ROUND = HALF_UP ? (1 << (FRAC - 1)) : 0;
            reg signed [SUM_BITS-1:0] sum;
            always @(posedge clk) begin
                if (in_valid) begin
                    if (first) part <= {PART_BITS{1'b0}};
                    else part <= v_old * CODE;  // (signed: not in a ?: with an unsigned 0)
                    ab <= acc + bias;
                end
                if (sum_valid) begin
                    sum = part + $signed({ab, ROUND});
                    v_raw <= sum >>> FRAC;
                end
            end
        end else begin : g_shift
            always @(posedge clk) begin
                if (in_valid) begin
                    if (first) part <= {PART_BITS{1'b0}};
                    else if (DECAY_CODE == NO_DECAY_CODE) part <= v_old;
                    else part <= v_old - (v_old >>> DECAY_CODE);
                    ab <= acc + bias;
                end
                if (sum_valid) v_raw <= part + ab;
            end
        end
    endgenerate

    // stage 3: the range tests on the bits above the membrane's (v_raw > LIMIT: positive with a
    // bit set there; v_raw < NEG_LIMIT: negative with a bit clear there, or -2^(V_BITS-1)), and
    // the threshold compare on the membrane's bits, which hold v_raw whenever it is in range
    wire                     sign = v_raw[RAW_BITS-1];
    wire [RAW_BITS-V_BITS-1:0] high = v_raw[RAW_BITS-2:V_BITS-1];
    wire signed [V_BITS-1:0] low = v_raw[V_BITS-1:0];
    wire above = !sign && (|high);
    wire below = sign && (!(&high) || v_raw[V_BITS-2:0] == 0);
    wire reached = (THRESHOLD > LIMIT) ? 1'b0 : (THRESHOLD <= NEG_LIMIT) ? 1'b1 : low >= VTH_LOW;
    assign spike = (FIRES != 0) && (above ? SPIKE_ABOVE : below ? SPIKE_BELOW : reached);
    assign clipped = above || below;
    assign v_new = spike ? {V_BITS{1'b0}} : above ? V_MAX : below ? V_MIN : v_raw[V_BITS-1:0];
endmodule

`default_nettype wire
