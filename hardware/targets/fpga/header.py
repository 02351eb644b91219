"""``network.h``: the FPGA tables and the network's topology as C99, so that a C (or HLS)
implementation needs no JSON.

The header holds, for an integer graph in an FPGA profile:

* the network: ``LSG_TIMESTEPS``, ``LSG_NODE_COUNT``, ``LSG_EDGE_COUNT``, ``LSG_READOUT`` (the
  readout node's index) and ``LSG_CLASSES``; the input's shape (``LSG_INPUT_C/H/W``), ``_MAX``,
  ``_BITS`` and ``LSG_INPUT_ENCODING``;
* the arithmetic: weight, bias, accumulator and membrane widths, the saturation limits, the
  threshold compare, the decay form, its fraction bits, rounding and no-decay code;
* per node ``<NODE>_INDEX``, ``_C``, ``_H``, ``_W`` (a dense node of N neurons is (N, 1, 1)),
  ``_NEURONS``, ``_DECAY_CODE``, ``_VTH``, ``_READOUT`` and its ``<NODE>_BIAS`` array; per edge
  ``<EDGE>_EDGE_KIND``, ``_SOURCE``, ``_TARGET``, ``_IN_C/H/W``, ``_OUT_C/H/W``, ``_KH``, ``_KW``,
  ``_STRIDE_H/W``, ``_PAD_H/W`` (a dense edge is the 1x1 convolution of (F, 1, 1) to (N, 1, 1):
  the same weight addresses) and its ``<EDGE>_WEIGHT`` array;
* the same per node and edge as arrays of structs, ``LSG_NODES`` and ``LSG_EDGES`` in update
  order, for one loop over any network.

Names are the manifest's upper-cased, every character other than a letter, digit or ``_``
replaced by ``_``; two names that would become the same C identifier are an error.
"""

from __future__ import annotations

import json
import re

import numpy as np

from hardware.fixed_point import bits_signed, bits_unsigned
from hardware.graph import INPUT, BundleError, Graph
from hardware.profile import Profile

DECAY_FORMS = {"multiply": 0, "shift": 1}  #: LSG_DECAY_FORM_*
ROUNDINGS = {"floor": 0, "half-up": 1, "toward-zero": 2}  #: LSG_ROUND_*


def c_name(name: str) -> str:
    return re.sub(r"[^0-9a-zA-Z_]", "_", name).upper()


def c_width(bits: int) -> int:
    """Width of the smallest signed ``<stdint.h>`` type holding ``bits``-bit values (4 bits: 8)."""
    return next(b for b in (8, 16, 32, 64) if bits <= b)


def c_type(bits: int) -> str:
    return f"int{c_width(bits)}_t"


def c_storage(bits: int) -> str:
    """How the C header stores a ``bits``-bit table, for the manifest and the header's comments."""
    if bits == c_width(bits):
        return f"{c_type(bits)}, exactly the width"
    return f"{c_type(bits)}: {bits}-bit values sign-extended into the smallest <stdint.h> type (range unchanged)"


def _chw(shape: tuple[int, ...]) -> tuple[int, int, int]:
    """A shape as (C, H, W): a 1-D shape (N,) is (N, 1, 1)."""
    return (int(shape[0]), 1, 1) if len(shape) == 1 else tuple(int(s) for s in shape)


class _Lines:
    """The header's lines, refusing a ``#define`` name written twice (two names, one identifier)."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.names: set[str] = set()

    def define(self, name: str, value: int | str, comment: str = "") -> None:
        if name in self.names:
            raise BundleError(f"two names of the network become the C identifier {name}: rename one")
        self.names.add(name)
        value = f"({value})" if isinstance(value, int) and value < 0 else value
        self.lines.append(f"#define {name} {value}" + (f"  /* {comment} */" if comment else ""))

    def array(self, name: str, bits: int, values: np.ndarray, comment: str) -> None:
        self.define(f"{name}_WORDS", int(values.size))
        flat = np.asarray(values, np.int64).ravel().tolist()
        self.lines += [f"/* {comment}; {c_storage(bits)} */",
                       f"static const {c_type(bits)} {name}[{len(flat)}] = {{{', '.join(map(str, flat))}}};"]


def _arithmetic(out: _Lines, profile: Profile, equation: str) -> None:
    lim = profile.state_limit
    out.lines.append(f"/* --- the arithmetic: profile {profile.name} --- */")
    out.define("LSG_WEIGHT_BITS", bits_signed(profile.weight_min, profile.weight_max), "signed")
    out.define("LSG_BIAS_BITS", bits_signed(profile.bias_mant_min, profile.bias_mant_max), "signed, one per channel")
    out.define("LSG_ACC_BITS", profile.synapse_bits, "signed; the export checks that no node's sum can overflow it")
    out.define("LSG_MEMBRANE_BITS", profile.state_bits, "signed")
    out.define("LSG_MEMBRANE_MIN", -lim, "v_sat = clamp(v_raw, LSG_MEMBRANE_MIN, LSG_MEMBRANE_MAX)")
    out.define("LSG_MEMBRANE_MAX", lim)
    out.define("LSG_VTH_BITS", bits_unsigned(profile.vth_max), "unsigned")
    out.define("LSG_THRESHOLD_GE", int(profile.threshold == ">="),
               f"1: spike when v_sat >= vth, 0: when v_sat > vth; then v = 0 (here: v_sat {profile.threshold} vth)")
    for form, code in DECAY_FORMS.items():
        out.define(f"LSG_DECAY_FORM_{form.upper()}", code)
    out.define("LSG_DECAY_FORM", f"LSG_DECAY_FORM_{profile.decay_form.upper()}", equation)
    out.define("LSG_DECAY_FRACTION_BITS", profile.decay_shift if profile.decay_form == "multiply" else 0,
               "multiply: beta = code / 2^LSG_DECAY_FRACTION_BITS")
    for rounding, code in ROUNDINGS.items():
        out.define(f"LSG_ROUND_{rounding.replace('-', '_').upper()}", code)
    out.define("LSG_DECAY_ROUNDING", f"LSG_ROUND_{profile.decay_rounding.replace('-', '_').upper()}",
               ">> of a negative value is arithmetic (floor)")
    out.define("LSG_DECAY_CODE_MAX", profile.decay_max)
    out.define("LSG_DECAY_NONE", profile.decay_none, "the code that keeps v: d = v (the readout's)")
    out.lines.append("")


def render_header(graph: Graph, profile: Profile, timesteps: int, decay_equation: str, title: str) -> str:
    """``network.h`` for the integer ``graph`` in ``profile`` (module doc)."""
    wbits = bits_signed(profile.weight_min, profile.weight_max)
    bbits = bits_signed(profile.bias_mant_min, profile.bias_mant_max)
    out = _Lines()
    out.lines += [f"/* {title} */", "#ifndef LSG_NETWORK_H", "#define LSG_NETWORK_H", "#include <stdint.h>", "",
                  "/* --- the network: per step t = 0 .. LSG_TIMESTEPS-1, the nodes in index order, each reading",
                  "   its sources' outputs of the same step; the class is the argmax of the readout's membranes",
                  "   after the last step, the lowest index on a tie; the readout never fires (no spike, no",
                  "   reset: it holds its saturated membrane) --- */"]
    out.define("LSG_TIMESTEPS", timesteps)
    out.define("LSG_NODE_COUNT", len(graph.nodes))
    out.define("LSG_EDGE_COUNT", len(graph.edges))
    out.define("LSG_READOUT", len(graph.nodes) - 1, "the readout's node index: the last")
    out.define("LSG_CLASSES", graph.readout.neurons)
    ic, ih, iw = _chw(graph.input.shape)
    out.lines.append("/* the input: C,H,W row-major, index (c*H + h)*W + w; unsigned integers in [0, LSG_INPUT_MAX] */")
    out.define("LSG_INPUT_C", ic)
    out.define("LSG_INPUT_H", ih)
    out.define("LSG_INPUT_W", iw)
    out.define("LSG_INPUT_NEURONS", graph.input.neurons)
    out.define("LSG_INPUT_MAX", graph.input.input_max)
    out.define("LSG_INPUT_BITS", bits_unsigned(graph.input.input_max), "unsigned")
    out.define("LSG_ENCODING_DIRECT", 0, "the same integer image every step")
    out.define("LSG_ENCODING_EVENT_FRAMES", 1, "one 0/1 frame per step")
    out.define("LSG_INPUT_ENCODING", "LSG_ENCODING_EVENT_FRAMES" if graph.input.per_step else "LSG_ENCODING_DIRECT")
    out.define("LSG_SOURCE_INPUT", -1, "an edge's source: the input, or a node's index")
    out.define("LSG_KIND_CONV", 0, "zero-padded cross-correlation")
    out.define("LSG_KIND_DENSE", 1, "the 1x1 convolution of (F, 1, 1) to (N, 1, 1)")
    out.lines.append("")
    _arithmetic(out, profile, decay_equation)
    index = {INPUT: -1, **{n.name: i for i, n in enumerate(graph.nodes)}}
    nodes, edges = [], []
    for e in graph.edges:
        g, name = e.geometry, c_name(e.name)
        (ic, ih, iw), (oc, oh, ow) = _chw(g.input_shape), _chw(g.output_shape)
        kh, kw = e.weight.shape[2:] if g.kind == "conv" else (1, 1)
        geo = dict(kind=f"LSG_KIND_{g.kind.upper()}", source=index[e.source], target=index[e.target], in_c=ic,
                   in_h=ih, in_w=iw, out_c=oc, out_h=oh, out_w=ow, kh=int(kh), kw=int(kw), stride_h=g.stride[0],
                   stride_w=g.stride[1], pad_h=g.padding[0], pad_w=g.padding[1])
        out.lines.append(f"/* edge {e.name}: {e.source} -> {e.target}, {g.kind} */")
        for key, value in geo.items():
            out.define(f"{name}_EDGE_{key.upper()}", value)
        out.array(f"{name}_WEIGHT", wbits, e.weight, "(O,C,KH,KW) row-major: address ((o*C + c)*KH + i)*KW + j"
                  if g.kind == "conv" else "(N,F) row-major: address n*F + f")
        out.lines.append("")
        edges.append((e.name, geo, f"{name}_WEIGHT"))
    for i, n in enumerate(graph.nodes):
        name, (c, h, w) = c_name(n.name), _chw(n.shape)
        fields = dict(index=i, c=c, h=h, w=w, neurons=n.neurons, decay_code=int(n.dv), vth=int(n.vth),
                      readout=int(n.readout))
        out.lines.append(f"/* node {n.name}: {'x'.join(map(str, n.shape))} neurons, C,H,W row-major; "
                         f"channel(n) = n / (H*W) */")
        for key, value in fields.items():
            out.define(f"{name}_{key.upper()}", value)
        out.array(f"{name}_BIAS", bbits, n.bias_mant, "one bias per channel")
        out.lines.append("")
        nodes.append((n.name, fields, f"{name}_BIAS"))
    out.lines += [
        "/* --- every node and edge, in update order --- */",
        f"typedef {c_type(wbits)} lsg_weight_t;", f"typedef {c_type(bbits)} lsg_bias_t;",
        "typedef struct { const char *name; int index, c, h, w, neurons, decay_code, vth, readout; "
        "const lsg_bias_t *bias; } lsg_node_t;",
        "typedef struct { const char *name; int kind, source, target, in_c, in_h, in_w, out_c, out_h, out_w, kh, kw, "
        "stride_h, stride_w, pad_h, pad_w; const lsg_weight_t *weight; } lsg_edge_t;",
        "static const lsg_node_t LSG_NODES[LSG_NODE_COUNT] = {",
        *(f"    {{{json.dumps(nm)}, {', '.join(map(str, f.values()))}, {arr}}}," for nm, f, arr in nodes),
        "};",
        "static const lsg_edge_t LSG_EDGES[LSG_EDGE_COUNT] = {",
        *(f"    {{{json.dumps(nm)}, {', '.join(map(str, f.values()))}, {arr}}}," for nm, f, arr in edges),
        "};", "", "#endif"]
    return "\n".join(out.lines) + "\n"
