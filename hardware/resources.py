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
  - the FPGA RTL (``hardware/targets/fpga/rtl/lif_lane.v``): lane ``p`` of a layer holds the kernels of its
    output channels, ``W_WORDS = OG x C x KH x KW`` words of ``W_BITS``, so all lanes together
    hold the kernel once, exactly the words of the export's ``<edge>.weight.mem``.

* memory bits, per target (below), and ``memory_bits`` their sum.

The targets' own models (what each counts, and against which device) live with the targets:
``hardware/targets/loihi/resources.py`` and ``hardware/targets/fpga/resources.py``;
:func:`hardware.targets.resources` runs the one a bundle's target names.
"""

from __future__ import annotations

from typing import Any

from hardware.costs import synapses
from hardware.graph import Graph

# --- counting ------------------------------------------------------------------------------------

def layer_counts(graph: Graph, node: Any) -> dict[str, Any]:
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


def ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def sum_keys(layers: list[dict[str, Any]], keys: tuple[str, ...]) -> dict[str, int]:
    return {k: sum(layer[k] for layer in layers) for k in keys}


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
