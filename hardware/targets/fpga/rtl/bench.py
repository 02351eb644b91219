"""The simulation-only bench the cocotb driver (:mod:`hardware.targets.fpga.rtl.driver`) runs: the
clock, and per network i its AXI top's ports on ``n<i>_<port>`` signals and a debug recorder
(synthesis never sees it).

The clock is made here rather than by cocotb (each edge through the VPI would cost more than
the design). Network i's clock is gated by ``n<i>_clk_en``, so networks not running cost nothing.

The recorder reads, whenever the core stops at a step's end (``dbg_paused``: the driver holds
``dbg_hold`` high), every layer's spike words (hidden layers), membrane words, cycle and count
words through the top's debug read port, and the STEP_CYCLES register through the register bus,
into one wide register per table (``n<i>_rec_spk<k>``, ``n<i>_rec_v<k>``, ``n<i>_rec_cyc<k>``,
``n<i>_rec_cnt<k>``, ``n<i>_rec_step_cycles``; word a of a table at bits [a*width +: width]), then
raises ``n<i>_rec_done`` until the core leaves the pause (the driver's ``dbg_continue``). The
driver reads each table with one VPI access instead of a clock edge per word: the input and
result streams stay the driver's, beat by beat. The driver writes registers itself (the weight
load port) with ``n<i>_host_sel`` high, which gives ``reg_addr`` and ``reg_re`` to ``n<i>_host_addr``
and ``n<i>_host_re``.
"""

from __future__ import annotations

from hardware.targets.fpga.rtl.axi import axi_ports, axi_range
from hardware.targets.fpga.rtl.chain import Chain, _clog2

BENCH = "lsg_bench"
PERIOD_NS = 10  #: the bench's clock (the driver's PERIOD_NS)
PUBLIC = " /*verilator public_flat_rw*/"  #: what the driver reads and writes through the VPI
SPIKES, MEMBRANES, COUNTS, CYCLES = 0, 1, 2, 3  #: the debug port's dbg_rd_what


def recorded(chain: Chain, membranes: bool) -> list[tuple[str, int, int, int, int]]:
    """The recorder's tables: (name, layer, what, words, bits per word), in reading order; the
    membranes of the readout, or (``membranes``) of every layer."""
    a, items = chain.arithmetic, []
    for k, layer in enumerate(chain.layers):
        if not layer.readout:
            items.append((f"spk{k}", k, SPIKES, layer.words, layer.lanes))
        if membranes or layer.readout:
            items.append((f"v{k}", k, MEMBRANES, layer.words, layer.lanes * a.membrane_bits))
        items.append((f"cyc{k}", k, CYCLES, 1, 32))
        items.append((f"cnt{k}", k, COUNTS, 1, 64))
    return items


def _recorder(chain: Chain, n: str, membranes: bool) -> list[str]:
    ports = {name: w for _, name, w in axi_ports(chain)}
    items = recorded(chain, membranes)
    iw = _clog2(len(items) + 1)
    aw = max(_clog2(words + 1) for *_, words, _ in items)
    sel, addr = ports["dbg_rd_sel"], ports["dbg_rd_addr"]
    out = [f"    // {n[:-1]}'s recorder: at every pause, each table word by word (address, then data)",
           f"    reg {n}rec_done{PUBLIC} = 1'b0;", f"    reg {n}rec_busy = 1'b0, {n}rec_phase = 1'b0;",
           f"    reg [1:0] {n}rec_reg = 2'd0;", f"    reg [31:0] {n}rec_step_cycles{PUBLIC};",
           f"    reg [{iw - 1}:0] {n}rec_item = 0;", f"    reg [{aw - 1}:0] {n}rec_addr = 0;"]
    out += [f"    reg [{words * bits - 1}:0] {n}rec_{name}{PUBLIC};" for name, _, _, words, bits in items]
    out.append("    always @(*) begin")
    out.append(f"        {n}dbg_rd_addr = {n}rec_addr[{min(aw, addr) - 1}:0];")
    out.append(f"        case ({n}rec_item)")
    for j, (_, k, what, _, _) in enumerate(items):
        out.append(f"            {iw}'d{j}: begin {n}dbg_rd_sel = {sel}'d{k}; {n}dbg_rd_what = 2'd{what}; end")
    out += [f"            default: begin {n}dbg_rd_sel = {sel}'d0; {n}dbg_rd_what = 2'd0; end", "        endcase",
            "    end",
            f"    always @(posedge {n}clk) begin",
            f"        {n}reg_re <= 1'b0;",
            f"        if (!{n}dbg_paused || {n}dbg_continue) begin  // (done falls as the core leaves the pause)",
            f"            {n}rec_done <= 1'b0;",
            f"            {n}rec_busy <= 1'b0;",
            f"        end else if (!{n}rec_done && !{n}rec_busy) begin",
            f"            {n}rec_busy <= 1'b1;",
            f"            {n}rec_item <= 0;",
            f"            {n}rec_addr <= 0;",
            f"            {n}rec_phase <= 1'b0;",
            f"            {n}reg_addr <= 8'h0C;  // STEP_CYCLES",
            f"            {n}reg_re <= 1'b1;",
            f"            {n}rec_reg <= 2'd1;",
            f"        end else if ({n}rec_busy) begin",
            f"            if ({n}rec_reg == 2'd1) {n}rec_reg <= 2'd2;",
            f"            if ({n}rec_reg == 2'd2) begin",
            f"                {n}rec_step_cycles <= {n}reg_rdata;",
            f"                {n}rec_reg <= 2'd0;",
            "            end",
            f"            {n}rec_phase <= !{n}rec_phase;",
            f"            if ({n}rec_phase) begin  // the word of the address set a cycle ago",
            f"                case ({n}rec_item)"]
    for j, (name, _, _, words, bits) in enumerate(items):
        last, word = f"{aw}'d{words - 1}", f"{n}rec_{name}[{n}rec_addr * {bits} +: {bits}]"
        out += [f"                    {iw}'d{j}: begin",
                f"                        {word} <= {n}dbg_rd_data[{bits - 1}:0];",
                f"                        if ({n}rec_addr == {last}) begin",
                f"                            {n}rec_addr <= 0;",
                f"                            {n}rec_item <= {n}rec_item + 1'b1;",
                f"                            {n}rec_busy <= {iw}'d{j} != {iw}'d{len(items) - 1};",
                f"                            {n}rec_done <= {iw}'d{j} == {iw}'d{len(items) - 1};",
                f"                        end else {n}rec_addr <= {n}rec_addr + 1'b1;",
                "                    end"]
    out += ["                    default: ;", "                endcase", "            end", "        end", "    end"]
    return out


RECORDER_DRIVES = ("dbg_rd_sel", "dbg_rd_what", "dbg_rd_addr", "reg_addr", "reg_re")


def bench_verilog(chains: list[Chain], modules: list[str], membranes: bool) -> str:
    """The bench around the AXI tops ``modules`` (one per chain); ``membranes``: record every
    layer's membranes, not just the readout's."""
    out = ["// Simulation-only bench, generated by hardware/targets/fpga/rtl/bench.py.", "`timescale 1ns / 1ps",
           "`default_nettype none", "", f"module {BENCH};", f"    reg clk{PUBLIC} = 1'b0;",
           f"    always #{PERIOD_NS // 2} clk = ~clk;"]
    for i, (chain, module) in enumerate(zip(chains, modules, strict=True)):
        n = f"n{i}_"
        out += [f"    reg {n}clk_en{PUBLIC} = 1'b0;", f"    wire {n}clk = clk & {n}clk_en;",
                f"    reg {n}host_sel{PUBLIC} = 1'b0;", f"    reg [7:0] {n}host_addr{PUBLIC} = 8'd0;",
                f"    reg {n}host_re{PUBLIC} = 1'b0;"]
        connections = []
        for direction, name, width in axi_ports(chain):
            bits = axi_range(name, width)
            if name == "aclk":
                connections.append(f".aclk({n}clk)")
                continue
            public = "" if name in RECORDER_DRIVES else PUBLIC
            out.append(f"    {'reg ' if direction == 'input' else 'wire'} {bits}{n}{name}{public}"
                       f"{' = 0' if direction == 'input' and name not in RECORDER_DRIVES[:3] else ''};")
            host = {"reg_addr": "host_addr", "reg_re": "host_re"}.get(name)
            connections.append(f".{name}({n}host_sel ? {n}{host} : {n}{name})" if host else f".{name}({n}{name})")
        out.append(f"    {module} u_n{i} ({', '.join(connections)});")
        out += _recorder(chain, n, membranes)
    out += ["endmodule", "", "`default_nettype wire", ""]
    return "\n".join(out)
