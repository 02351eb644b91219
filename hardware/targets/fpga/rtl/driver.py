"""cocotb test that drives the IP core (``lsg_axi_top``, :mod:`hardware.targets.fpga.rtl.axi`) over many
samples, through its AXI4-Stream ports.

It runs inside the simulator (Verilator or Icarus Verilog), started by :mod:`hardware.targets.fpga.rtl.backend`,
which names the job files in ``LSG_RTL_JOBS`` and the results files in ``LSG_RTL_RESULTS`` (one per
network, separated by ``os.pathsep``). A job (``.npz``) holds one network's inputs, its layers'
word layout and the prefix of its signals in the bench (``lsg_bench``: the clock, and network
i's ports as ``n<i>_<port>`` with a clock enable that gives it the clock only while it runs).

Per network: reset; where the job holds ``weight_words`` (the SPRAM build), the weights through
the register bus's load port (WLOAD_ADDR 0, then one WLOAD_DATA write a cycle), checking that
WLOAD_ADDR has advanced past the last word and WLOAD_ERROR is clear; ``dbg_hold`` high (the core
stops at every phase's end); per sample: the input frame(s) on the input stream (event frames:
frame p + 1 once phase p has ended, as the core asks with ``tready``); at every phase's end
(``dbg_paused``, once the bench's recorder has read the core's buffers through the debug read
port: ``rec_done``): the phase's cycles, and for every layer k that ran in phase p (its step
p - k) its spike words (hidden layers), membrane words (the readout's, or every layer's if the
job says ``membranes``) and cycles from the recorder's tables; the trace where the phase ended a
step of the hidden layers (its index and their spike counts); then ``dbg_continue``; after the
last phase the result stream: the class and the K final readout membranes. Words are split into
lanes here; the backend puts the lanes into neuron order and checks the trace, the class and the
streamed membranes against what it read.

The driver changes the design's inputs on falling clock edges; the design registers them on
rising edges, so what the driver reads at a falling edge was registered half a cycle before.
"""

from __future__ import annotations

import os

import cocotb
import numpy as np
from cocotb.simtime import get_sim_time
from cocotb.triggers import FallingEdge, RisingEdge, SimTimeoutError, with_timeout

PERIOD_NS = 10


class _Ports:
    """A network's ports: ``ports.s_axis_tvalid`` is the toplevel's ``<prefix>s_axis_tvalid``."""

    def __init__(self, dut, prefix: str):
        self._dut, self._prefix = dut, prefix

    def __getattr__(self, name: str):
        return getattr(self._dut, self._prefix + name)


def _lanes(word: int, lanes: int, bits: int, signed: bool) -> list[int]:
    mask = (1 << bits) - 1
    values = [(word >> (p * bits)) & mask for p in range(lanes)]
    if signed:
        values = [v - (1 << bits) if v >> (bits - 1) else v for v in values]
    return values


def _table(ports: _Ports, name: str, words: int, bits: int) -> list[int]:
    """One of the bench recorder's tables (:mod:`hardware.targets.fpga.rtl.bench`): its words."""
    packed = int(getattr(ports, "rec_" + name).value)
    mask = (1 << bits) - 1
    return [(packed >> (a * bits)) & mask for a in range(words)]


async def _wait_high(clk, signal, cycles: int, what: str) -> None:
    if not signal.value:
        try:
            await with_timeout(RisingEdge(signal), cycles * PERIOD_NS, "ns")
        except SimTimeoutError:
            raise AssertionError(f"{what}: not within {cycles} cycles (the design hangs)") from None
        await FallingEdge(clk)


async def _stream_frame(clk, ports: _Ports, words: list[int], limit: int, what: str) -> None:
    """One frame on the input stream, a beat per cycle while ``tready`` is high."""
    last = len(words) - 1
    for i, value in enumerate(words):
        await _wait_high(clk, ports.s_axis_tready, limit, what)  # tready depends on registers only
        ports.s_axis_tvalid.value = 1
        ports.s_axis_tdata.value = value
        ports.s_axis_tlast.value = int(i == last)
        await FallingEdge(clk)  # taken at the rising edge between
        ports.s_axis_tvalid.value = 0


async def _result(clk, ports: _Ports, beats: int, limit: int, what: str) -> list[int]:
    """One sample's result beats (``tready`` high throughout); checks ``tlast``."""
    got = []
    while len(got) < beats:
        await _wait_high(clk, ports.m_axis_tvalid, limit, what)
        if int(ports.m_axis_tlast.value) != int(len(got) == beats - 1):
            raise AssertionError(f"{what}: tlast is {int(ports.m_axis_tlast.value)} on beat {len(got)} of {beats}")
        got.append(int(ports.m_axis_tdata.value))
        await FallingEdge(clk)
    return got


async def _read_register(clk, ports: _Ports, address: int) -> int:
    ports.host_addr.value = address
    ports.host_re.value = 1
    await FallingEdge(clk)
    ports.host_re.value = 0
    await FallingEdge(clk)
    return int(ports.reg_rdata.value)


async def _load_weights(clk, ports: _Ports, words: list[int]) -> None:
    """The weights through the load port, one word a cycle, then WLOAD_ADDR and STATUS checked."""
    ports.host_sel.value = 1
    ports.reg_we.value = 1
    ports.host_addr.value = 0x20  # WLOAD_ADDR
    ports.reg_wdata.value = 0
    await FallingEdge(clk)
    ports.host_addr.value = 0x24  # WLOAD_DATA
    for word in words:
        ports.reg_wdata.value = word
        await FallingEdge(clk)
    ports.reg_we.value = 0
    await FallingEdge(clk)
    address, status = await _read_register(clk, ports, 0x20), await _read_register(clk, ports, 0x04)
    ports.host_sel.value = 0
    if address != len(words) % (1 << 16) or status & 0x10:
        raise AssertionError(f"weight load: WLOAD_ADDR {address} after {len(words)} words, STATUS {status:#x}")


async def _run_network(clk, ports: _Ports, job, results: str) -> None:
    inputs = job["inputs"]  # (B, frames, words): frames = T for event frames, else 1
    timesteps = int(job["timesteps"])
    words, lanes, readout = job["words"].tolist(), job["lanes"].tolist(), job["readout"].tolist()
    vbits = int(job["membrane_bits"])
    record = [bool(r) or bool(job["membranes"]) for r in readout]  # whose membranes to read
    limit = int(job["step_cycle_limit"])  # a step that runs longer is a design fault
    batch, layers = inputs.shape[0], len(words)
    hidden = layers - 1
    classes = words[-1] * lanes[-1]
    spikes = [np.zeros((batch, timesteps, w, p), np.uint8) for w, p in zip(words, lanes, strict=True)]
    membranes = {k: np.zeros((batch, timesteps, words[k], lanes[k]), np.int64) for k in range(layers) if record[k]}
    counts = np.zeros((batch, layers, 2), np.int64)  # (spikes, clipped membranes) per sample
    phases, delay = int(job["phases"]), int(job["trace_delay"])
    step_cycles = np.zeros((batch, phases), np.int64)  # the core's step_cycles: each phase's
    layer_cycles = np.zeros((batch, timesteps, layers), np.int64)
    sample_cycles = np.zeros(batch, np.int64)  # from the first input beat to the last result beat
    trace = np.zeros((batch, timesteps, max(hidden, 1)), np.int64)  # the trace's per-step spike counts
    trace_steps = np.zeros((batch, timesteps), np.int64)
    streamed = np.zeros((batch, 1 + classes), np.int64)  # the result stream: class, K membranes

    for name in ("s_axis_tvalid", "s_axis_tdata", "s_axis_tlast", "reg_wdata", "reg_we", "dbg_continue"):
        getattr(ports, name).value = 0
    ports.m_axis_tready.value = 1
    ports.dbg_hold.value = 1
    ports.aresetn.value = 0
    for _ in range(3):
        await FallingEdge(clk)
    ports.aresetn.value = 1
    if len(job["weight_words"]):
        await _load_weights(clk, ports, job["weight_words"].tolist())

    for b in range(batch):
        begin = get_sim_time("ns")
        await _stream_frame(clk, ports, inputs[b, 0].tolist(), limit, f"sample {b}: input tready")
        for p in range(phases):
            await _wait_high(clk, ports.rec_done, limit, f"sample {b}, phase {p}: the phase's end")
            step_cycles[b, p] = int(ports.rec_step_cycles.value)
            if delay <= p < delay + timesteps:
                trace_steps[b, p - delay] = int(ports.trace_step.value)
                packed = int(ports.trace_counts.value)
                trace[b, p - delay] = [(packed >> (32 * k)) & 0xFFFFFFFF for k in range(trace.shape[2])]
            for k in range(layers):
                t = p - k  # layer k's step in phase p
                if not 0 <= t < timesteps:
                    continue
                if not readout[k]:
                    got = _table(ports, f"spk{k}", words[k], lanes[k])
                    spikes[k][b, t] = [_lanes(w, lanes[k], 1, False) for w in got]
                if record[k]:
                    got = _table(ports, f"v{k}", words[k], lanes[k] * vbits)
                    membranes[k][b, t] = [_lanes(w, lanes[k], vbits, True) for w in got]
                layer_cycles[b, t, k] = _table(ports, f"cyc{k}", 1, 32)[0]
            if p == phases - 1:
                for k in range(layers):
                    word = _table(ports, f"cnt{k}", 1, 64)[0]
                    counts[b, k] = (word >> 32, word & 0xFFFFFFFF)
            ports.dbg_continue.value = 1
            await FallingEdge(clk)
            ports.dbg_continue.value = 0
            if p + 1 < timesteps and inputs.shape[1] > 1:
                await _stream_frame(clk, ports, inputs[b, p + 1].tolist(), limit, f"sample {b}, frame {p + 1}")
        streamed[b] = await _result(clk, ports, 1 + classes, limit, f"sample {b}: result stream")
        sample_cycles[b] = round((get_sim_time("ns") - begin) / PERIOD_NS)

    np.savez(results, counts=counts, step_cycles=step_cycles, layer_cycles=layer_cycles, sample_cycles=sample_cycles,
             trace=trace, trace_steps=trace_steps, streamed=streamed,
             **{f"spikes{k}": s for k, s in enumerate(spikes)}, **{f"membranes{k}": m for k, m in membranes.items()})


@cocotb.test()
async def run_samples(dut) -> None:
    jobs = os.environ["LSG_RTL_JOBS"].split(os.pathsep)
    results = os.environ["LSG_RTL_RESULTS"].split(os.pathsep)
    await FallingEdge(dut.clk)  # the bench makes the clock
    for job_file, result_file in zip(jobs, results, strict=True):
        with np.load(job_file) as npz:
            job = {k: npz[k] for k in npz.files}
        prefix = str(job["prefix"])
        enable = getattr(dut, prefix + "clk_en")
        enable.value = 1  # this network gets the clock while it runs
        await _run_network(dut.clk, _Ports(dut, prefix), job, result_file)
        enable.value = 0
