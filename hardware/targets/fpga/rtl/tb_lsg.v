// tb_lsg: self-checking testbench of the IP core (lsg_axi_top), written by lsg-deploy into DIR/rtl/.
//
// The SPRAM build first writes its weights through the register bus's load port (LSG_WLOAD_WORDS
// words of weight_load.mem: WLOAD_ADDR = 0, then one WLOAD_DATA write per cycle) and checks that
// WLOAD_ADDR advanced past the last word and STATUS.WLOAD_ERROR is clear; the ROM build loads nothing.
// Then it streams the test vectors' input words (LSG_INPUTS, ../testvectors/inputs.mem: per sample its
// frame(s) of F words, in the order the input stream takes them) through the AXI4-Stream input,
// with pseudo-random bubbles in tvalid, takes the result stream with pseudo-random back-pressure in
// tready, and checks against LSG_EXPECTED (../testvectors/expected.mem: per sample R = 1 + K + T*L
// words: the class, the K final readout membranes, then the hidden layers' spike counts t-major):
//   * every result beat (class, then the K membranes, sign-extended to 32 bits) and its tlast;
//   * every step's trace (trace_valid, trace_step, trace_counts) against the spike counts;
//   * at the end, the SAMPLES_DONE register (0x10) through the register bus.
// Prints "PASS <n> samples" and finishes, or the first mismatch ("FAIL sample <n>: <what>
// expected <e> got <g>") and stops with $fatal (a nonzero exit).
// Sizes: lsg_params.vh (the network's), LSG_N (the number of samples, from the Makefile).
`timescale 1ns / 1ps
`default_nettype none
`include "lsg_params.vh"

module tb_lsg;
    localparam N = `LSG_N;
    localparam T = `LSG_T;
    localparam K = `LSG_K;
    localparam L = `LSG_L;
    localparam F = `LSG_F;
    localparam FRAMES = `LSG_FRAMES;
    localparam TW = `LSG_TDATA_BITS;
    localparam R = 1 + K + T * L;
    localparam IN_WORDS = N * FRAMES * F;
    localparam LW = L > 0 ? L : 1;

    reg [TW-1:0] in_mem [0:IN_WORDS-1];
    reg [31:0] exp_mem [0:N*R-1];
    initial begin
        $readmemh(`LSG_INPUTS, in_mem);
        $readmemh(`LSG_EXPECTED, exp_mem);
    end

    reg clk = 1'b0;
    always #5 clk = ~clk;
    reg aresetn = 1'b0;

    reg           s_tvalid = 1'b0, s_tlast = 1'b0;
    reg  [TW-1:0] s_tdata = {TW{1'b0}};
    wire          s_tready;
    wire          m_tvalid, m_tlast;
    reg           m_tready = 1'b0;
    wire [31:0]   m_tdata;
    reg  [7:0]    reg_addr = 8'd0;
    reg  [31:0]   reg_wdata = 32'd0;
    reg           reg_we = 1'b0, reg_re = 1'b0;
    wire [31:0]   reg_rdata;
    wire          trace_valid;
    wire [`LSG_STEP_BITS-1:0] trace_step_w;
    wire [32*LW-1:0] trace_counts;
    wire          paused_unused;
    wire [`LSG_DBG_BITS-1:0] dbg_data_unused;

    lsg_axi_top dut (
        .aclk(clk), .aresetn(aresetn),
        .s_axis_tvalid(s_tvalid), .s_axis_tready(s_tready), .s_axis_tdata(s_tdata), .s_axis_tlast(s_tlast),
        .m_axis_tvalid(m_tvalid), .m_axis_tready(m_tready), .m_axis_tdata(m_tdata), .m_axis_tlast(m_tlast),
        .reg_addr(reg_addr), .reg_wdata(reg_wdata), .reg_we(reg_we), .reg_re(reg_re), .reg_rdata(reg_rdata),
        .trace_valid(trace_valid), .trace_step(trace_step_w), .trace_counts(trace_counts),
        .dbg_hold(1'b0), .dbg_continue(1'b0), .dbg_paused(paused_unused),
        .dbg_rd_sel({`LSG_SEL_BITS{1'b0}}), .dbg_rd_what(2'd0), .dbg_rd_addr({`LSG_ADDR_BITS{1'b0}}),
        .dbg_rd_data(dbg_data_unused));

    // --- the first mismatch stops the run ------------------------------------------------------
    // (what: a name, then index >= 0 is printed after it; expected and got as signed decimals)
    task fail;
        input integer sample;
        input [8*40-1:0] what;
        input integer index;
        input integer expected, got;
        begin
            if (index >= 0) $display("FAIL sample %0d: %0s %0d expected %0d got %0d", sample, what, index, expected,
                                     got);
            else $display("FAIL sample %0d: %0s expected %0d got %0d", sample, what, expected, got);
            $fatal(1, "tb_lsg: mismatch");
        end
    endtask

    // --- pseudo-random bubbles and back-pressure (16-bit LFSR) -------------------------------------
    reg [15:0] lfsr = 16'hACE1;
    always @(posedge clk) lfsr <= {lfsr[14:0], lfsr[15] ^ lfsr[13] ^ lfsr[12] ^ lfsr[10]};

    // --- the SPRAM build's load stream ---------------------------------------------------------------
    localparam WL = `LSG_WLOAD_WORDS;
    reg [15:0] wl_mem [0:(WL > 0 ? WL : 1) - 1];
    initial if (WL > 0) $readmemh("weight_load.mem", wl_mem);
    reg loaded = WL == 0;  // no input before the weights are in

    // --- the input stream: a word is held on the bus until it is taken -----------------------------
    integer in_next = 0;  // the next word to put on the bus
    always @(posedge clk) begin
        if (aresetn && loaded && (!s_tvalid || s_tready)) begin
            if (in_next < IN_WORDS && lfsr[0]) begin
                s_tvalid <= 1'b1;
                s_tdata <= in_mem[in_next];
                s_tlast <= in_next % F == F - 1;
                in_next <= in_next + 1;
            end else begin
                s_tvalid <= 1'b0;
            end
        end
    end

    // --- the result stream -------------------------------------------------------------------------
    integer out_n = 0, out_b = 0, cycles = 0, idle = 0;
    always @(posedge clk) begin
        if (aresetn) begin
            m_tready <= lfsr[3] | lfsr[5];
            cycles <= cycles + 1;
            idle <= loaded ? idle + 1 : 0;  // (the weight load is no sample)
            if (idle > `LSG_SAMPLE_CYCLES) begin
                $display("FAIL sample %0d: no result beat within %0d cycles (the design hangs)", out_n, idle);
                $fatal(1, "tb_lsg: timeout");
            end
        end
        if (aresetn && m_tvalid && m_tready) begin
            idle <= 0;
            if (out_n >= N) fail(out_n, "result beats after the last sample", -1, 0, 1);
            if (m_tlast != (out_b == K)) fail(out_n, "tlast on result beat", out_b, out_b == K, m_tlast);
            if (m_tdata != exp_mem[out_n * R + out_b]) begin
                if (out_b == 0) fail(out_n, "class", -1, exp_mem[out_n * R], m_tdata);
                else fail(out_n, "readout membrane", out_b - 1, exp_mem[out_n * R + out_b], m_tdata);
            end
            if (out_b == K) begin
                out_b <= 0;
                out_n <= out_n + 1;
            end else begin
                out_b <= out_b + 1;
            end
        end
    end

    // --- the per-step trace: every hidden layer's spikes -----------------------------------------------
    integer tr_n = 0, tr_t = 0, k;
    always @(posedge clk) begin
        if (aresetn && trace_valid) begin
            if (tr_n >= N) fail(tr_n, "steps after the last sample", -1, 0, 1);
            if (trace_step_w != tr_t) fail(tr_n, "trace step", -1, tr_t, trace_step_w);
            for (k = 0; k < L; k = k + 1)
                if (trace_counts[32*k +: 32] != exp_mem[tr_n * R + 1 + K + tr_t * L + k]) begin
                    $display("FAIL sample %0d: spike count of layer %0d in step %0d expected %0d got %0d", tr_n, k,
                             tr_t, exp_mem[tr_n * R + 1 + K + tr_t * L + k], trace_counts[32*k +: 32]);
                    $fatal(1, "tb_lsg: mismatch");
                end
            if (tr_t == T - 1) begin
                tr_t <= 0;
                tr_n <= tr_n + 1;
            end else begin
                tr_t <= tr_t + 1;
            end
        end
    end

    // --- one register read: the value is on reg_rdata one cycle after reg_re -----------------------
    task read_register;
        input [7:0] address;
        begin
            reg_addr = address;
            reg_re = 1'b1;
            @(negedge clk);
            reg_re = 1'b0;
        end
    endtask

    // --- reset, the weights (SPRAM build), the end: SAMPLES_DONE through the register bus -----------
    integer w;
    initial begin
        repeat (4) @(negedge clk);
        aresetn = 1'b1;
        if (WL > 0) begin
            reg_we = 1'b1;
            reg_addr = 8'h20;  // WLOAD_ADDR = 0
            reg_wdata = 32'd0;
            for (w = 0; w < WL; w = w + 1) begin
                @(negedge clk);
                reg_addr = 8'h24;  // WLOAD_DATA
                reg_wdata = {16'd0, wl_mem[w]};
            end
            @(negedge clk);
            reg_we = 1'b0;
            @(negedge clk);
            read_register(8'h20);
            if (reg_rdata != WL % 65536) begin
                $display("FAIL weight load: WLOAD_ADDR expected %0d got %0d", WL % 65536, reg_rdata);
                $fatal(1, "tb_lsg: weight load");
            end
            read_register(8'h04);
            if (reg_rdata[4]) begin
                $display("FAIL weight load: STATUS.WLOAD_ERROR is set");
                $fatal(1, "tb_lsg: weight load");
            end
            loaded = 1'b1;
            $display("loaded %0d weight words", WL);
        end
        wait (out_n == N && tr_n == N);
        @(negedge clk);
        read_register(8'h10);
        if (reg_rdata != N) fail(N - 1, "the SAMPLES_DONE register", -1, N, reg_rdata);
        $display("PASS %0d samples (%0d cycles)", N, cycles);
        $finish;
    end
endmodule

`default_nettype wire
