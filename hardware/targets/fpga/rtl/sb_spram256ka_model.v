// SB_SPRAM256KA: a behavioural model of the iCE40 UltraPlus single-port RAM (16,384 words of 16
// bits), for simulation only: synthesis for iCE40 maps the primitive itself (yosys knows it), so
// this file is never given to yosys. Written for lsg-deploy from the port behaviour Lattice
// documents for the primitive (iCE40 SPRAM usage guide, technology library), not from a vendor
// model:
//   * every action happens at the rising CLOCK edge, and only with CHIPSELECT high, STANDBY and
//     SLEEP low and POWEROFF high (POWEROFF is active low);
//   * WREN high writes DATAIN at ADDRESS, nibble i (DATAIN[4i+3:4i]) only where MASKWREN[i] is
//     high; DATAOUT keeps its value;
//   * WREN low reads: DATAOUT takes the word at ADDRESS after the edge, and holds it until the
//     next read;
//   * the bitstream cannot initialise it: the contents start unknown (x) here, so a design that
//     reads a word it never wrote computes with x;
//   * SLEEP high or POWEROFF low: DATAOUT reads 0; POWEROFF low also loses the contents.
`timescale 1ns / 1ps
`default_nettype none

module SB_SPRAM256KA (
    input  wire [13:0] ADDRESS,
    input  wire [15:0] DATAIN,
    input  wire [3:0]  MASKWREN,
    input  wire        WREN,
    input  wire        CHIPSELECT,
    input  wire        CLOCK,
    input  wire        STANDBY,
    input  wire        SLEEP,
    input  wire        POWEROFF,
    output wire [15:0] DATAOUT
);
    reg [15:0] mem [0:16383];
    reg [15:0] q;
    integer i;
    wire active = CHIPSELECT && !STANDBY && !SLEEP && POWEROFF;
    assign DATAOUT = (SLEEP || !POWEROFF) ? 16'd0 : q;

    always @(posedge CLOCK) begin
        if (!POWEROFF) begin
            for (i = 0; i < 16384; i = i + 1) mem[i] <= 16'hxxxx;
        end else if (active && WREN) begin
            for (i = 0; i < 4; i = i + 1)
                if (MASKWREN[i]) mem[ADDRESS][4*i +: 4] <= DATAIN[4*i +: 4];
        end else if (active) begin
            q <= mem[ADDRESS];
        end
    end
endmodule

`default_nettype wire
