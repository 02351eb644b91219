// weight_ram: the network's weights in the iCE40 UP5K's four SPRAM blocks (SB_SPRAM256KA, 16,384
// x 16 bits each), side by side: one row of 64 bits per address, block b holding bits
// [16b +: 16]. SPRAM has no bitstream initialisation, so the weights are written after
// configuration through the load port (the IP core's WLOAD registers, docs/fpga-ip.md), one
// 16-bit word per cycle at word address waddr: row waddr[15:2], block waddr[1:0].
// A read (re) returns its row on rdata after the clock edge and holds it until the next read.
// The layer running a step reads it (one row a cycle); the load port writes it only while the
// core is idle (the top gates we), so the single port never sees both. The rows each layer owns
// and how its lanes' weights sit in a row: hardware/targets/fpga/rtl/weight_memory.py (the
// manifest's memory_plan).
`timescale 1ns / 1ps
`default_nettype none

module weight_ram (
    input  wire        clk,
    input  wire        re,
    input  wire [13:0] raddr,
    output wire [63:0] rdata,
    input  wire        we,
    input  wire [15:0] waddr,
    input  wire [15:0] wdata
);
    genvar b;
    generate
        for (b = 0; b < 4; b = b + 1) begin : g_block
            wire mine = waddr[1:0] == b;
            SB_SPRAM256KA u_spram (
                .ADDRESS(we ? waddr[15:2] : raddr), .DATAIN(wdata), .MASKWREN(4'b1111), .WREN(we && mine),
                .CHIPSELECT(we ? mine : re), .CLOCK(clk), .STANDBY(1'b0), .SLEEP(1'b0), .POWEROFF(1'b1),
                .DATAOUT(rdata[16*b +: 16]));
        end
    endgenerate
endmodule

`default_nettype wire
