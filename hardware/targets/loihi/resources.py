"""What a network needs on Loihi 2 (the model behind :func:`hardware.targets.resources` for
the loihi target).

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
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hardware.fixed_point import bits_signed, bits_unsigned
from hardware.graph import Graph
from hardware.profile import Profile
from hardware.resources import ceil_div, layer_counts, sum_keys

# --- the published figures -----------------------------------------------------------------------

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


def loihi_layer_cores(neurons: int, conv_bits: int, dense_bits: int, state_bits: int, limits: LoihiLimits
                      ) -> tuple[int, int, int | None]:
    """``(cores, cores_by_neurons, cores_by_memory)`` of one layer (the module docstring's model;
    ``cores_by_memory`` is None where the limits give no memory per core)."""
    by_neurons = ceil_div(neurons, limits.neurons_per_core)
    m = limits.memory_per_core_bits
    if m is None:
        by_memory = None
    elif conv_bits + ceil_div(dense_bits + state_bits, neurons) <= m:  # the kernel and one neuron fit a core
        by_memory = ceil_div(dense_bits + state_bits, m - conv_bits)
    else:
        by_memory = ceil_div(conv_bits + dense_bits + state_bits, m)
    return max(1, by_neurons, by_memory or 0), by_neurons, by_memory


def model(graph: Graph, profile: Profile, limits: LoihiLimits = LOIHI2_LIMITS, **_: Any) -> dict[str, Any]:
    """What ``graph`` needs on Loihi 2 in ``profile`` (the module docstring's model)."""
    r = profile.ranges()
    w_bits = bits_signed(profile.weight_min // profile.weight_step, profile.weight_max // profile.weight_step)
    state = profile.state_bits * (2 if profile.current_stage else 1)  # u (current) and v
    bias = bits_signed(*r["bias_mant"]) + bits_unsigned(r["bias_exp"][1])  # per neuron in Lava's LIF
    params = sum(bits_unsigned(r[k][1]) for k in ("du", "dv", "vth") if r[k][1] > 0)
    widths = {"weight": w_bits, "state_per_neuron": state, "bias_per_neuron": bias, "parameters_per_node": params}
    layers = []
    for node in graph.nodes:
        c = layer_counts(graph, node)
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
    total = sum_keys(layers, ("neurons", "synapses", "stored_weights", "weight_bits", "bias_bits", "state_bits",
                          "parameter_bits", "memory_bits", "cores"))
    by = {"cores": ceil_div(total["cores"], limits.cores_per_chip),
          "neurons": ceil_div(total["neurons"], limits.neurons_per_chip),
          "stored_weights": ceil_div(total["stored_weights"], limits.synapses_per_chip)}
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
