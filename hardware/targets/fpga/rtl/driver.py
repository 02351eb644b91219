"""cocotb test that drives chain tops (:mod:`hardware.targets.fpga.rtl.chain`) over many samples.

It runs inside the simulator (Icarus Verilog), started by :mod:`hardware.targets.fpga.rtl.backend`, which
names the job files in ``LSG_RTL_JOBS`` and the results files in ``LSG_RTL_RESULTS`` (one per
network, separated by ``os.pathsep``). A job (``.npz``) holds one network's inputs, its layers'
word layout and the prefix of its signals in the bench (``lsg_bench``: the clock, and network
i's ports as ``n<i>_<port>`` with a clock enable that gives it the clock only while it runs).

Per network: reset, wait for ``ready``; per sample: write the input memory, ``start``; per step:
wait for ``step_done`` (a watchdog fails the test if it never comes), read every hidden layer's
spike words, the readout's membrane words (every layer's, if the job says ``membranes``) and the
cycle counters through the read port, write
the next event frame if any, ``proceed``; after the last step read the spike and clip counters.
Words are split into lanes here; the backend puts the lanes into neuron order.

The driver changes the design's inputs on falling clock edges; the design registers them on
rising edges, so what the driver reads at a falling edge was registered half a cycle before.
"""

from __future__ import annotations

import os

import cocotb
import numpy as np
from cocotb.simtime import get_sim_time
from cocotb.triggers import FallingEdge, RisingEdge, SimTimeoutError, with_timeout

SPIKES, MEMBRANES, COUNTS, CYCLES = 0, 1, 2, 3
PERIOD_NS = 10


class _Ports:
    """A network's ports: ``ports.start`` is the toplevel's ``<prefix>start``."""

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


async def _read_words(clk, ports: _Ports, layer: int, what: int, count: int) -> list[int]:
    """``count`` words of one layer through the read port, one per cycle (pipelined)."""
    ports.rd_sel.value = layer
    ports.rd_what.value = what
    ports.rd_addr.value = 0
    words = []
    for addr in range(1, count + 1):
        await FallingEdge(clk)  # the word of the address set before the last rising edge
        words.append(ports.rd_data.value.to_unsigned())
        if addr < count:
            ports.rd_addr.value = addr
    return words


async def _write_input(clk, ports: _Ports, pixels: np.ndarray) -> None:
    """Write one input frame, one pixel per cycle."""
    for addr, value in enumerate(pixels.tolist()):
        ports.in_we.value = 1
        ports.in_addr.value = addr
        ports.in_data.value = value
        await FallingEdge(clk)
    ports.in_we.value = 0


async def _pulse(clk, signal) -> None:
    signal.value = 1
    await FallingEdge(clk)
    signal.value = 0


async def _wait_high(clk, signal, cycles: int, what: str) -> None:
    if not signal.value:
        try:
            await with_timeout(RisingEdge(signal), cycles * PERIOD_NS, "ns")
        except SimTimeoutError:
            raise AssertionError(f"{what}: not within {cycles} cycles (the design hangs)") from None
        await FallingEdge(clk)


async def _run_network(clk, ports: _Ports, job, results: str) -> None:
    inputs = job["inputs"]  # (B, frames, words): frames = T for event frames, else 1
    timesteps = int(job["timesteps"])
    words, lanes, readout = job["words"].tolist(), job["lanes"].tolist(), job["readout"].tolist()
    vbits = int(job["membrane_bits"])
    record = [bool(r) or bool(job["membranes"]) for r in readout]  # whose membranes to read
    limit = int(job["step_cycle_limit"])  # a step that runs longer is a design fault
    batch, layers = inputs.shape[0], len(words)
    spikes = [np.zeros((batch, timesteps, w, p), np.uint8) for w, p in zip(words, lanes, strict=True)]
    membranes = {k: np.zeros((batch, timesteps, words[k], lanes[k]), np.int64) for k in range(layers) if record[k]}
    counts = np.zeros((batch, layers, 2), np.int64)  # (spikes, clipped membranes) per sample
    step_cycles = np.zeros((batch, timesteps), np.int64)
    layer_cycles = np.zeros((batch, timesteps, layers), np.int64)
    sample_cycles = np.zeros(batch, np.int64)  # from the first input write to idle again

    for name in ("in_we", "in_addr", "in_data", "start", "proceed", "rd_sel", "rd_what", "rd_addr"):
        getattr(ports, name).value = 0
    ports.rst.value = 1
    for _ in range(3):
        await FallingEdge(clk)
    ports.rst.value = 0
    await _wait_high(clk, ports.ready, limit, "ready after reset")

    for b in range(batch):
        begin = get_sim_time("ns")
        await _write_input(clk, ports, inputs[b, 0])
        await _pulse(clk, ports.start)
        for t in range(timesteps):
            await _wait_high(clk, ports.step_done, limit, f"sample {b}, step {t}: step_done")
            step_cycles[b, t] = ports.step_cycles.value.to_unsigned()
            for k in range(layers):
                if not readout[k]:
                    got = await _read_words(clk, ports, k, SPIKES, words[k])
                    spikes[k][b, t] = [_lanes(w, lanes[k], 1, False) for w in got]
                if record[k]:
                    got = await _read_words(clk, ports, k, MEMBRANES, words[k])
                    membranes[k][b, t] = [_lanes(w, lanes[k], vbits, True) for w in got]
                layer_cycles[b, t, k] = (await _read_words(clk, ports, k, CYCLES, 1))[0]
            if t == timesteps - 1:
                for k in range(layers):
                    word = (await _read_words(clk, ports, k, COUNTS, 1))[0]
                    counts[b, k] = (word >> 32, word & 0xFFFFFFFF)
            elif inputs.shape[1] > 1:
                await _write_input(clk, ports, inputs[b, t + 1])
            await _pulse(clk, ports.proceed)
        await _wait_high(clk, ports.ready, limit, f"sample {b}: ready after the last step")
        sample_cycles[b] = round((get_sim_time("ns") - begin) / PERIOD_NS)

    np.savez(results, counts=counts, step_cycles=step_cycles, layer_cycles=layer_cycles, sample_cycles=sample_cycles,
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
