// sdp_ram: simple dual-port RAM, one write port and one registered read port with a read enable
// (block-RAM style); rdata holds its word while re is low.
//
// A read returns the word as it was before a write in the same cycle (read-first); callers that
// read back what they wrote one cycle earlier forward it themselves (lif_layer does).
// INIT_FILE, when given, is loaded with $readmemh (weights, biases); otherwise the contents start
// unknown and the owner clears what it reads.
`timescale 1ns / 1ps
`default_nettype none

module sdp_ram #(
    parameter WIDTH = 8,
    parameter DEPTH = 2,
    parameter AW = 1,
    parameter INIT_FILE = ""
) (
    input  wire             clk,
    input  wire             we,
    input  wire [AW-1:0]    waddr,
    input  wire [WIDTH-1:0] wdata,
    input  wire             re,
    input  wire [AW-1:0]    raddr,
    output reg  [WIDTH-1:0] rdata
);
    reg [WIDTH-1:0] mem [0:DEPTH-1];

    initial begin
        if (INIT_FILE != "") $readmemh(INIT_FILE, mem);
    end

    always @(posedge clk) begin
        if (we) mem[waddr] <= wdata;
        if (re) rdata <= mem[raddr];
    end
endmodule

`default_nettype wire
