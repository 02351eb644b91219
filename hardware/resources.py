"""What a deployed network needs on its target: neurons, synapses, stored weights and memory per
layer, Loihi 2 neurocores and chips, FPGA memory against an iCE40 UP5K (numpy only).

A *layer* is a node of the integer graph with the edges into it (on both targets a synapse lives
with its destination neuron). Per layer:

* ``neurons``: the node's neurons.
* ``synapses``: structural connections, :func:`hardware.costs.synapses` summed over the incoming
  edges (padding excluded, zero weights included).
* ``stored_weights``: the weights memory holds. A dense edge stores its ``N x F`` matrix; a conv
  edge stores its kernel ``O x C x KH x KW`` once, shared by every output position (weight
  sharing), on both targets:

  - Loihi 2: Lava's ``Conv`` process holds one ``weight`` Var of the kernel's shape
    ``(C_out, W, H, C_in)`` (lava-nc ``src/lava/proc/conv/process.py``), and Lava's Loihi 2
    compiler stores it so: in the per-core table it printed for PilotNet (lava-dl
    ``tutorials/lava/lib/dl/netx/pilotnet_snn/benchmark.ipynb``), each of the 25 cores of the
    first conv (3 -> 24 channels, 3x3: 648 weights) holds 3,072 neurons and 81 synapse entries
    (648 = 81 x 8), where an expanded matrix would hold 3,072 x 27 = 82,944 synapses per core.
    Every core that holds part of a conv layer keeps its own copy of the kernel; the core model
    below charges that copy.
  - the FPGA RTL (``hardware/rtl/lif_lane.v``): lane ``p`` of a layer holds the kernels of its
    output channels, ``W_WORDS = OG x C x KH x KW`` words of ``W_BITS``, so all lanes together
    hold the kernel once, exactly the words of the export's ``<edge>.weight.mem``.

* memory bits, per target (below), and ``memory_bits`` their sum.

**Loihi 2** (profile ``LOIHI2``): weights at the profile's stored width (8 bits: the mixed-sign
weight's step of 2 drops a bit of the 9-bit range); per neuron what Lava's ``LIF`` process holds
(lava-nc ``src/lava/proc/lif/process.py``): ``u`` and ``v`` at the profile's state width (24 bits
each: the current stage and the membrane), ``bias_mant`` (13 bits) and ``bias_exp`` (3 bits), one
per neuron; per node ``du``, ``dv`` (12 bits) and ``vth`` (17 bits). How Loihi 2 lays these out in
a core (microcode, state words) is not published: these are Lava's variables at their
``fixed_pt`` widths. Neurocores, with :class:`LoihiLimits` (figures and sources there), per
layer, a layer never sharing a core with another::

    cores = max(ceil(neurons / neurons_per_core), cores_by_memory, 1)
    cores_by_memory = ceil((W_dense + S) / (M - W_conv))    if the kernel and one neuron fit a core (each
                                                            core keeps the kernel)
                    = ceil((W_conv + W_dense + S) / M)      otherwise (kernels split by output channel)

with ``M`` the memory per core, ``W_conv``, ``W_dense`` the layer's conv kernel and dense weight
bits and ``S`` its neuron state and parameter bits; ``chips = max(ceil(cores / cores_per_chip),
ceil(neurons / neurons_per_chip), ceil(stored weights / synapses_per_chip))``. Simplifications:
the input is not on a core (Lava feeds it from a host-side RingBuffer); axon routing tables, the
neuron microcode and synapse-memory packing are not counted (their sizes are not published), so
the memory term is a lower bound. Lava's compiler also gives every layer its own cores (its tables
put a 10-neuron layer on a core of its own), so small layers are not packed together here either.

**FPGA** (profiles ``FPGA_MUL``, ``FPGA_SHIFT``, ``FPGA_MUL4``): the memories ``lif_lane.v`` declares,
at the widths of the tables' manifest (:func:`hardware.fpga_tables.profile_manifest`): weights (the
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

from dataclasses import dataclass, field
from typing import Any

from hardware.bundle import Bundle
from hardware.costs import synapses
from hardware.fpga_tables import bits_signed, bits_unsigned, profile_manifest
from hardware.graph import Graph
from hardware.profile import TARGET_PROFILES, Profile
from hardware.rtl.chain import lanes_for

# --- the targets' published figures -----------------------------------------------------------

LOIHI2_BRIEF = ("Intel Labs, \"Taking Neuromorphic Computing to the Next Level with Loihi 2\", Technology Brief, "
                "September 2021")


@dataclass(frozen=True)
class LoihiLimits:
    """Per-core and per-chip capacities of a Loihi chip, each with how it was checked."""

    name: str
    neurons_per_core: int
    cores_per_chip: int
    neurons_per_chip: int
    synapses_per_chip: int
    memory_per_core_bits: int | None  #: None: not known, so memory does not bound the core count
    source: str
    checked: dict[str, str] = field(default_factory=dict)  #: figure -> how it was verified, or that it was not

    def __post_init__(self) -> None:
        for what in ("neurons_per_core", "cores_per_chip", "neurons_per_chip", "synapses_per_chip"):
            value = getattr(self, what)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"limits {self.name}: {what} must be a positive integer, got {value!r}")
        m = self.memory_per_core_bits
        if m is not None and (isinstance(m, bool) or not isinstance(m, int) or m < 1):
            raise ValueError(f"limits {self.name}: memory_per_core_bits must be a positive integer or None, got {m!r}")


#: Loihi 2 as Intel's brief states it. The brief's own table could not be read here; each figure
#: was checked against the pages ``checked`` quotes, and one (memory per core) could not be.
LOIHI2_LIMITS = LoihiLimits(
    name="loihi2-brief",
    neurons_per_core=8192,
    cores_per_chip=128,
    neurons_per_chip=1_000_000,
    synapses_per_chip=120_000_000,
    memory_per_core_bits=192 * 1024 * 8,
    source=LOIHI2_BRIEF,
    checked={
        "cores_per_chip": "128 neuron cores per chip: open-neuromorphic.org's Loihi 2 page (repository "
                          "open-neuromorphic/open-neuromorphic.github.io) and every report of the brief read",
        "neurons_per_chip": "up to 1 million neurons per chip: the same page ('A single Loihi 2 chip supports up to "
                            "1 million neurons and 120 million synapses')",
        "synapses_per_chip": "up to 120 million synapses per chip: the same sentence",
        "neurons_per_core": "up to 8,192 neurons per core: secondary reports of the brief only (an article quoting "
                            "it: 'Each core occupies 0.21 mm2 and supports up to 8,192 neurons'; "
                            "emergentmind.com/topics/intel-loihi-2: 'up to ~8,000 per core'); 128 x 8,192 = "
                            "1,048,576 agrees with '1 million' per chip; Lava's compiler fits 4,095 LIF neurons "
                            "(LOIHI2_LAVA_LIF_LIMITS)",
        "memory_per_core_bits": "NOT VERIFIED: 192 KB per core ('flexible allocation') is the figure attributed to "
                                "the brief's table, which no stored copy here let us read; one secondary report says "
                                "128 KB. Taken as 192 KiB; the digits network is bound by neurons either way",
        "synapses_per_core": "not published: no per-core synapse figure is used",
    },
)

#: Loihi 2 with the neurons per core that Lava's Loihi 2 compiler fits for CUBA LIF and
#: sigma-delta neurons: its per-core tables (lava-dl tutorials netx/yolo_kp/run.ipynb,
#: netx/mnist/run.ipynb) report neuron use as a fraction of 4,095 (3,584 neurons = 87.52%,
#: 2,688 = 65.64%, 64 = 1.56%). Lava's LIF is a CUBA neuron (u and v), as this project's.
LOIHI2_LAVA_LIF_LIMITS = LoihiLimits(
    name="loihi2-lava-compiler-lif",
    neurons_per_core=4095,
    cores_per_chip=LOIHI2_LIMITS.cores_per_chip,
    neurons_per_chip=LOIHI2_LIMITS.neurons_per_chip,
    synapses_per_chip=LOIHI2_LIMITS.synapses_per_chip,
    memory_per_core_bits=LOIHI2_LIMITS.memory_per_core_bits,
    source=LOIHI2_BRIEF + "; neurons per core as Lava's Loihi 2 compiler reports them (lava-dl tutorials)",
    checked={**LOIHI2_LIMITS.checked,
             "neurons_per_core": "4,095: Lava's compiler tables in lava-dl's tutorials (3,584 neurons = 87.52%)"},
)


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


# --- counting ------------------------------------------------------------------------------------

def _layer_counts(graph: Graph, node: Any) -> dict[str, Any]:
    """What both targets count for one node and the edges into it."""
    edges = graph.incoming(node.name)
    return {
        "name": node.name,
        "kind": "+".join(sorted({e.geometry.kind for e in edges})),
        "neurons": node.neurons,
        "channels": node.shape[0],
        "synapses": sum(synapses(e) for e in edges),
        "stored_weights": sum(int(e.weight.size) for e in edges),
        "conv_weights": sum(int(e.weight.size) for e in edges if e.geometry.kind == "conv"),
        "readout": bool(node.readout),
    }


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def loihi_layer_cores(neurons: int, conv_bits: int, dense_bits: int, state_bits: int, limits: LoihiLimits
                      ) -> tuple[int, int, int | None]:
    """``(cores, cores_by_neurons, cores_by_memory)`` of one layer (the module docstring's model;
    ``cores_by_memory`` is None where the limits give no memory per core)."""
    by_neurons = _ceil_div(neurons, limits.neurons_per_core)
    m = limits.memory_per_core_bits
    if m is None:
        by_memory = None
    elif conv_bits + _ceil_div(dense_bits + state_bits, neurons) <= m:  # the kernel and one neuron fit a core
        by_memory = _ceil_div(dense_bits + state_bits, m - conv_bits)
    else:
        by_memory = _ceil_div(conv_bits + dense_bits + state_bits, m)
    return max(1, by_neurons, by_memory or 0), by_neurons, by_memory


def _loihi(graph: Graph, profile: Profile, limits: LoihiLimits, **_: Any) -> dict[str, Any]:
    r = profile.ranges()
    w_bits = bits_signed(profile.weight_min // profile.weight_step, profile.weight_max // profile.weight_step)
    state = profile.state_bits * (2 if profile.current_stage else 1)  # u (current) and v
    bias = bits_signed(*r["bias_mant"]) + bits_unsigned(r["bias_exp"][1])  # per neuron in Lava's LIF
    params = sum(bits_unsigned(r[k][1]) for k in ("du", "dv", "vth") if r[k][1] > 0)
    widths = {"weight": w_bits, "state_per_neuron": state, "bias_per_neuron": bias, "parameters_per_node": params}
    layers = []
    for node in graph.nodes:
        c = _layer_counts(graph, node)
        n = c["neurons"]
        layer = {k: c[k] for k in ("name", "kind", "neurons", "synapses", "stored_weights")}
        layer.update(weight_bits=c["stored_weights"] * w_bits, bias_bits=n * bias, state_bits=n * state,
                     parameter_bits=params)
        neuron_bits = layer["bias_bits"] + layer["state_bits"] + params
        layer["memory_bits"] = layer["weight_bits"] + neuron_bits
        conv_bits = c["conv_weights"] * w_bits
        layer["cores"], layer["cores_by_neurons"], layer["cores_by_memory"] = loihi_layer_cores(
            n, conv_bits, layer["weight_bits"] - conv_bits, neuron_bits, limits)
        layers.append(layer)
    total = _sum(layers, ("neurons", "synapses", "stored_weights", "weight_bits", "bias_bits", "state_bits",
                          "parameter_bits", "memory_bits", "cores"))
    by = {"cores": _ceil_div(total["cores"], limits.cores_per_chip),
          "neurons": _ceil_div(total["neurons"], limits.neurons_per_chip),
          "stored_weights": _ceil_div(total["stored_weights"], limits.synapses_per_chip)}
    total.update(chips=max(by.values()), chips_by=by)
    notes = [
        f"limits {limits.name}: {limits.neurons_per_core:,} neurons per core, "
        + (f"{limits.memory_per_core_bits // 8:,} bytes per core" if limits.memory_per_core_bits else
           "memory per core not known (cores counted by neurons only)")
        + f", {limits.cores_per_chip} cores, {limits.neurons_per_chip:,} neurons and {limits.synapses_per_chip:,} "
          f"synapses per chip ({limits.source})",
        *(f"{k}: {v}" for k, v in limits.checked.items()),
        "model: one layer per core group, never shared; a conv kernel is stored once and copied to every core of its "
        "layer; input on the host (RingBuffer); routing tables, microcode and synapse packing not counted",
    ]
    return {"widths": widths, "layers": layers, "total": total,
            "limits": {k: getattr(limits, k) for k in ("name", "neurons_per_core", "cores_per_chip",
                                                         "neurons_per_chip", "synapses_per_chip",
                                                         "memory_per_core_bits", "source", "checked")},
            "notes": notes}


def bram_blocks(depth: int, width: int, device: FpgaDevice = ICE40_UP5K) -> int:
    """Block RAMs one ``depth x width`` memory takes in the device's cheapest block shape."""
    if depth < 1 or width < 1:
        return 0
    return min(_ceil_div(width, w) * _ceil_div(depth, d) for d, w in device.bram_shapes)


def _fpga(graph: Graph, profile: Profile, device: FpgaDevice, max_lanes: int, **_: Any) -> dict[str, Any]:
    spec = profile_manifest(profile, graph.input.input_max)
    wb, bb, vb, ab = (spec[k]["bits"] for k in ("weight", "bias", "membrane", "accumulator"))
    params = spec["threshold"]["bits"] + spec["decay"]["code_bits"]
    widths = {"weight": wb, "bias": bb, "membrane": vb, "accumulator": ab, "spike": 1,
              "input": spec["input"]["bits"], "threshold_and_decay_in_logic": params}
    layers = []
    for node in graph.nodes:
        c = _layer_counts(graph, node)
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
    total = _sum(layers, ("neurons", "synapses", "stored_weights", "weight_bits", "bias_bits", "state_bits",
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
        "SPRAM is not initialised by the bitstream: weights there need a boot-time loader the RTL does not have",
        f"block RAM estimate at max_lanes={max_lanes}: every memory of every lane in its cheapest block shape "
        "(calibration: the digits network, 197 estimated, 194 measured by yosys at one lane; with more lanes yosys "
        "puts small memories in logic, 241 estimated, 215 measured at 4)",
        "decay code and threshold are synthesis parameters (logic), not memory",
    ]
    return {"widths": widths, "layers": layers, "total": total, "fits": fits,
            "device": {"name": device.name, "bram_blocks": device.bram_blocks, "bram_bits": device.bram_bits,
                       "spram_bits": device.spram_bits, "source": device.source},
            "max_lanes": max_lanes, "notes": notes}


def _sum(layers: list[dict[str, Any]], keys: tuple[str, ...]) -> dict[str, int]:
    return {k: sum(layer[k] for layer in layers) for k in keys}


#: one resource model per export target (:data:`hardware.profile.TARGET_PROFILES`)
TARGET_MODELS = {"loihi": _loihi, "fpga": _fpga}


def target_of(profile: Profile) -> str:
    """The export target whose profiles include ``profile``."""
    for target, names in TARGET_PROFILES.items():
        if profile.name in names and target in TARGET_MODELS:
            return target
    raise ValueError(f"no resource model for profile {profile.name!r}; models exist for targets "
                     f"{', '.join(TARGET_MODELS)}")


def resources(source: Bundle | Graph, profile: Profile | None = None, *, limits: LoihiLimits = LOIHI2_LIMITS,
              device: FpgaDevice = ICE40_UP5K, max_lanes: int = 1) -> dict[str, Any]:
    """The resources ``source`` needs on its target, per layer and in total, as a JSON-ready dict.

    ``source``: a :class:`~hardware.bundle.Bundle` (its integer graph in its own profile; a
    ``profile`` given too must be the same) or a :class:`~hardware.graph.Graph` with the
    ``profile`` to count it in (only shapes are read, so a float graph counts as its integer one).
    ``limits``: Loihi's capacities (:data:`LOIHI2_LIMITS`, or :data:`LOIHI2_LAVA_LIF_LIMITS`);
    ``device`` and ``max_lanes`` (the RTL's lanes per layer, for the block RAM estimate): FPGA.
    Keys: ``target``, ``profile``, ``widths``, ``layers`` (one dict per node, in order: ``name``,
    ``kind``, ``neurons``, ``synapses``, ``stored_weights``, ``weight_bits``, ``bias_bits``,
    ``state_bits``, ``parameter_bits``, ``memory_bits``; Loihi adds ``cores``,
    ``cores_by_neurons``, ``cores_by_memory``; FPGA ``breakdown``, ``lanes``,
    ``bram_estimate``), ``total``, ``notes``, and Loihi's ``limits`` or the FPGA's ``device`` and
    ``fits``.
    """
    if isinstance(source, Bundle):
        graph, own = source.integer_graph, source.arithmetic
        if profile is not None and profile != own:
            raise ValueError(f"the bundle is in profile {own.name}, not {profile.name}")
        profile = own
    elif isinstance(source, Graph):
        if profile is None:
            raise ValueError("a graph needs the profile to count it in")
        graph = source
    else:
        raise TypeError(f"resources() takes a Bundle or a Graph, got {type(source).__name__}")
    if max_lanes < 1:
        raise ValueError(f"max_lanes must be at least 1, got {max_lanes}")
    target = target_of(profile)
    out = TARGET_MODELS[target](graph, profile, limits=limits, device=device, max_lanes=max_lanes)
    return {"target": target, "profile": profile.name, **out}


# --- the text table -------------------------------------------------------------------------------

def format_resources(res: dict[str, Any]) -> str:
    """A text table of :func:`resources`: per layer neurons, synapses, stored weights, memory
    bits and Loihi cores (or the FPGA's block RAM estimate), the totals, and the notes."""
    loihi = res["target"] == "loihi"
    last = ("cores", "cores") if loihi else ("BRAM est.", "bram_estimate")
    head = ("layer", "kind", "neurons", "synapses", "stored weights", "memory bits", last[0])
    rows = [(x["name"], x["kind"], x["neurons"], x["synapses"], x["stored_weights"], x["memory_bits"], x[last[1]])
            for x in res["layers"]]
    t = res["total"]
    if not loihi:
        rows.append(("(input)", "", "", "", "", t["input_bits"], ""))
    rows.append(("total", "", t["neurons"], t["synapses"], t["stored_weights"], t["memory_bits"], t[last[1]]))
    cells = [head] + [tuple(f"{v:,}" if isinstance(v, int) else str(v) for v in r) for r in rows]
    width = [max(len(r[i]) for r in cells) for i in range(len(head))]

    def line(r: tuple[str, ...]) -> str:
        return "  ".join(v.ljust(w) if i < 2 else v.rjust(w) for i, (v, w) in enumerate(zip(r, width, strict=True)))

    out = [f"resources on {res['target']} ({res['profile']})", line(cells[0]),
           "  ".join("-" * w for w in width), *(line(r) for r in cells[1:-1]), "  ".join("-" * w for w in width),
           line(cells[-1])]
    if loihi:
        by = ", ".join(f"{k} {v}" for k, v in t["chips_by"].items())
        out.append(f"chips: {t['chips']} (by {by})")
    out += [f"note: {n}" for n in res["notes"]]
    return "\n".join(out)
