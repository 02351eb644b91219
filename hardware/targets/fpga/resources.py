"""What a network needs on an FPGA (the model behind :func:`hardware.targets.resources` for the
fpga target).

**FPGA** (profiles ``FPGA_MUL``, ``FPGA_SHIFT``, ``FPGA_MUL4``): the memories ``lif_lane.v`` declares,
at the widths of the tables' manifest (:func:`hardware.targets.fpga.tables.profile_manifest`): weights (the
profile's width: 8 bits, 4 in ``FPGA_MUL4``),
one bias per output channel (16), per neuron the accumulator (24: the synaptic sum is stored per
neuron between the accumulate and the update pass), the membrane (16) and a 1-bit spike buffer
(not for the readout), and the top's input memory (one pixel per word at the input width). The
decay code and threshold are synthesis parameters in logic, not memory (``parameter_bits``).
Against :data:`ICE40_UP5K`: bits against its block RAM and SPRAM, and an estimate of the 4 kbit
block RAMs (each memory of each lane in the cheapest of the 256x16, 512x8, 1024x4, 2048x2 shapes).
Cross-check on the digits network (docs/fpga.md, "Synthesis figures", yosys ``synth_ice40``): 197
estimated against 194 measured at one lane; with more lanes yosys puts the small per-lane memories
in logic, so the estimate overstates (241 against 215 at 4 lanes).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hardware.graph import Graph
from hardware.profile import Profile
from hardware.resources import ceil_div, layer_counts, sum_keys
from hardware.targets.fpga.rtl.network import lanes_for
from hardware.targets.fpga.tables import profile_manifest


@dataclass(frozen=True)
class FpgaDevice:
    """An FPGA's memories: block RAMs (initialised by the bitstream) and SPRAM (not initialised)."""

    name: str
    bram_blocks: int
    bram_block_bits: int
    bram_shapes: tuple[tuple[int, int], ...]  #: (depth, width) configurations of one block
    spram_bits: int
    source: str

    @property
    def bram_bits(self) -> int:
        return self.bram_blocks * self.bram_block_bits


ICE40_UP5K = FpgaDevice(
    name="iCE40 UP5K",
    bram_blocks=30,
    bram_block_bits=4096,
    bram_shapes=((256, 16), (512, 8), (1024, 4), (2048, 2)),
    spram_bits=4 * 16384 * 16,
    source="Lattice iCE40 UltraPlus Family Data Sheet FPGA-DS-02008 (UP5K: 30 sysMEM EBR of 4 kbit = 120 kbit, "
           "4 SPRAM of 256 kbit = 1 Mbit; checked against listings quoting it, 'Total RAM Bits: 120Kbit', and this "
           "project's docs/fpga.md: 30 block RAMs, 1 Mbit of SPRAM); block shapes from yosys 0.23 "
           "share/ice40/brams.txt ($__ICE40_RAM4K_: abits 11, widths 2 4 8 16, init any) and spram.txt "
           "($__ICE40_SPRAM_: abits 14, width 16, no init)",
)


def bram_blocks(depth: int, width: int, device: FpgaDevice = ICE40_UP5K) -> int:
    """Block RAMs one ``depth x width`` memory takes in the device's cheapest block shape."""
    if depth < 1 or width < 1:
        return 0
    return min(ceil_div(width, w) * ceil_div(depth, d) for d, w in device.bram_shapes)


def model(graph: Graph, profile: Profile, device: FpgaDevice = ICE40_UP5K, max_lanes: int = 1, **_: Any
          ) -> dict[str, Any]:
    """What ``graph`` needs in the FPGA design in ``profile`` (the module docstring's model)."""
    if max_lanes < 1:
        raise ValueError(f"max_lanes must be at least 1, got {max_lanes}")
    spec = profile_manifest(profile, graph.input.input_max)
    wb, bb, vb, ab = (spec[k]["bits"] for k in ("weight", "bias", "membrane", "accumulator"))
    params = spec["threshold"]["bits"] + spec["decay"]["code_bits"]
    widths = {"weight": wb, "bias": bb, "membrane": vb, "accumulator": ab, "spike": 1,
              "input": spec["input"]["bits"], "threshold_and_decay_in_logic": params}
    layers = []
    for node in graph.nodes:
        c = layer_counts(graph, node)
        n, ch = c["neurons"], c["channels"]
        lanes = lanes_for(ch, max_lanes)
        og, words = ch // lanes, n // lanes  # per lane: output-channel groups and neuron words
        spike = 0 if c["readout"] else 1
        layer = {k: c[k] for k in ("name", "kind", "neurons", "synapses", "stored_weights")}
        breakdown = {"weights": c["stored_weights"] * wb, "bias": ch * bb, "accumulator": n * ab,
                     "membrane": n * vb, "spikes": n * spike}
        layer.update(weight_bits=breakdown["weights"], bias_bits=breakdown["bias"],
                     state_bits=breakdown["accumulator"] + breakdown["membrane"] + breakdown["spikes"],
                     parameter_bits=params, memory_bits=sum(breakdown.values()), breakdown=breakdown, lanes=lanes)
        per_lane = (bram_blocks(c["stored_weights"] // lanes, wb, device) + bram_blocks(og, bb, device)
                    + bram_blocks(words, ab, device) + bram_blocks(words, vb, device)
                    + spike * bram_blocks(words, 1, device))
        layer["bram_estimate"] = lanes * per_lane
        layers.append(layer)
    total = sum_keys(layers, ("neurons", "synapses", "stored_weights", "weight_bits", "bias_bits", "state_bits",
                          "parameter_bits", "memory_bits", "bram_estimate"))
    input_bits = graph.input.neurons * spec["input"]["bits"]
    total["input_bits"] = input_bits
    total["memory_bits"] += input_bits
    total["bram_estimate"] += bram_blocks(graph.input.neurons, spec["input"]["bits"], device)
    initialised = total["weight_bits"] + total["bias_bits"]  # ROMs loaded by $readmemh
    fits = {
        "bram_blocks": total["bram_estimate"] <= device.bram_blocks,
        "bram_bits": total["memory_bits"] <= device.bram_bits,
        "bram_and_spram_bits": total["memory_bits"] <= device.bram_bits + device.spram_bits,
    }
    verdict = ("fits its block RAM" if fits["bram_blocks"] and fits["bram_bits"] else
               "fits block RAM + SPRAM by capacity only" if fits["bram_and_spram_bits"] else "does not fit")
    notes = [
        f"{device.name}: {device.bram_blocks} block RAMs x {device.bram_block_bits} bits = {device.bram_bits:,} bits, "
        f"SPRAM {device.spram_bits:,} bits ({device.source})",
        f"{device.name}: {verdict}: {total['memory_bits']:,} memory bits ({initialised:,} of them weights and biases "
        f"the bitstream initialises), an estimated {total['bram_estimate']} block RAMs of {device.bram_blocks}",
        "SPRAM is not initialised by the bitstream: the RTL's SPRAM build keeps the weights there, written at boot "
        "through the IP core's load port (the manifest's memory_plan)",
        f"block RAM estimate at max_lanes={max_lanes}: every memory of every lane in its cheapest block shape "
        "(calibration: the digits network, 197 estimated, 194 measured by yosys at one lane; with more lanes yosys "
        "puts small memories in logic, 241 estimated, 215 measured at 4)",
        "decay code and threshold are synthesis parameters (logic), not memory",
    ]
    return {"widths": widths, "layers": layers, "total": total, "fits": fits,
            "device": {"name": device.name, "bram_blocks": device.bram_blocks, "bram_bits": device.bram_bits,
                       "spram_bits": device.spram_bits, "source": device.source},
            "max_lanes": max_lanes, "notes": notes}
