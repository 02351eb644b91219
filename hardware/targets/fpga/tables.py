"""FPGA tables: a bundle's integer network as files a hardware designer loads without our code.

``write_tables(bundle, directory)`` writes, per edge and node field::

    <edge>.weight.mem   $readmemh-ready: one word per line, hex two's complement at the weight
                        width (ceil(bits / 4) digits: two for 8-bit weights, one for 4-bit),
                        a leading // comment; conv (O, C, KH, KW), dense (N, F), row-major
    <node>.bias.mem     one word per output channel (C of a conv node, N of a dense node)
    <name>.<field>.csv  the same values in decimal, with their indices
    network.h           C99: <stdint.h> arrays of every table, each in the smallest type that
                        holds its width (4-bit weights: int8_t, sign-extended; the manifest's
                        ``c_type`` says which), and the topology and arithmetic as #defines and
                        structs, so that a C implementation needs no JSON
                        (:mod:`hardware.targets.fpga.header`)
    manifest.json       every width, signedness, rounding and saturation rule; each layer's
                        shape, stride, padding and memory layout; the graph's edges; the input
                        encoding; the neuron update as equations; ``definitions`` (channel(n),
                        the class and its tie rule, ``scale``, ``beta``); a worked example, a
                        stated input fed through the network (:mod:`hardware.targets.fpga.example`)

``read_tables(directory)`` parses the ``.mem`` files back (and ``parse_header`` the C header), so
the tests can check that the tables hold exactly the bundle's integers; ``check_tables`` refuses
tables that are not, byte for byte, what ``write_tables`` writes for a bundle's integer graph
(``render_tables`` makes them in memory), naming the file and the first field that differs.
Numpy only.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hardware.fixed_point import bits_signed, bits_unsigned
from hardware.graph import INPUT, BundleError, Graph
from hardware.profile import Profile
from hardware.targets.fpga.example import worked_example
from hardware.targets.fpga.header import c_storage, c_type, render_header

FORMAT_NAME = "lsg-deploy-fpga-tables"
#: a change to any byte the writer produces needs a new version: ``check_tables`` compares tables
#: with what this version writes, byte for byte. 2: the manifest names the dataset and the test
#: vectors (:mod:`hardware.targets.fpga.testvectors`), a worked example fed a stated input through
#: the network, ``definitions`` (channel(n), class, scale, beta), the topology in ``network.h``; the
#: readout never fires (stated in the update equations)
#: 3: ``memory_plan``, where each table lives in the ROM build and the UP5K's SPRAM build
#: 4: the SPRAM build is the export's default (``export --weights``); ``memory_plan`` says so and
#: points to ``rtl/build.json``, the plan of the build in ``rtl/``
FORMAT_VERSION = 4
MANIFEST_NAME = "manifest.json"
HEADER_NAME = "network.h"


@dataclass(frozen=True)
class Tables:
    """Tables read back from a directory: the manifest and every array, in the bundle's shapes."""

    manifest: dict[str, Any]
    weights: dict[str, np.ndarray]  #: edge -> (O, C, KH, KW) or (N, F) int64
    biases: dict[str, np.ndarray]  #: node -> (channels,) int64


# --- words ----------------------------------------------------------------------------------------

def to_words(values: np.ndarray, bits: int) -> list[str]:
    """Two's-complement hex words of ``bits`` bits, ``ceil(bits / 4)`` digits each (-1 is ``ff``
    at 8 bits, ``f`` at 4)."""
    values = np.asarray(values, np.int64).ravel()
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    if values.size and (values.min() < lo or values.max() > hi):
        raise BundleError(f"values [{values.min()}, {values.max()}] do not fit {bits}-bit two's complement")
    digits = (bits + 3) // 4
    return [format(int(v) & ((1 << bits) - 1), f"0{digits}x") for v in values]


def from_words(words: list[str], bits: int) -> np.ndarray:
    """Inverse of :func:`to_words`. A word that is not hex, or whose value does not fit ``bits``
    bits (an 8-bit table read at 4 bits), is an error rather than a silently wrong number."""
    try:
        raw = np.array([int(w, 16) for w in words], np.int64)
    except ValueError as exc:
        raise BundleError(f"a .mem word is not hexadecimal: {exc}") from None
    bad = (raw < 0) | (raw >= 1 << bits)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise BundleError(f"word {i} ({words[i]!r}) does not fit {bits} bits: the table's width is not {bits}")
    return np.where(raw >= 1 << (bits - 1), raw - (1 << bits), raw)


# --- the manifest ----------------------------------------------------------------------------------

def _word_spec(bits: int, lo: int, hi: int) -> dict[str, Any]:
    """A signed table's width as the manifest states it: the ``.mem`` word and the C type."""
    return {"bits": bits, "signed": True, "min": lo, "max": hi, "hex_digits": (bits + 3) // 4,
            "c_type": c_type(bits), "c_storage": c_storage(bits)}


def profile_manifest(profile: Profile, input_max: int) -> dict[str, Any]:
    """Every width, signedness and rule of ``profile``, for a reader without our code."""
    if profile.current_stage or profile.act_shift or profile.vth_shift or profile.bias_exp_max:
        raise BundleError(f"profile {profile.name} is not an FPGA profile (current stage or shifts)")
    decay: dict[str, Any] = {"form": profile.decay_form, "code_min": 0, "code_max": profile.decay_max,
                             "code_bits": bits_unsigned(profile.decay_max), "no_decay_code": profile.decay_none}
    if profile.decay_form == "multiply":
        f = profile.decay_shift
        decay.update(fraction_bits=f, rounding=profile.decay_rounding,
                     beta="code / 2^fraction_bits",
                     equation=f"d = (v * code + 2^{f - 1}) >>> {f}   (round half up; code {profile.decay_none}: d = v)"
                     if profile.decay_rounding == "half-up" else f"d = (v * code) >>> {f}")
    else:
        decay.update(rounding=profile.decay_rounding, beta="1 - 2^-code (code no_decay_code: 1)",
                     equation=f"d = (code == {profile.decay_none}) ? v : v - (v >>> code)   (>>> arithmetic: floor)")
    limit = profile.state_limit
    return {
        "name": profile.name,
        "description": profile.description,
        "weight": _word_spec(bits_signed(profile.weight_min, profile.weight_max), profile.weight_min,
                             profile.weight_max),
        "bias": {**_word_spec(bits_signed(profile.bias_mant_min, profile.bias_mant_max), profile.bias_mant_min,
                              profile.bias_mant_max), "per": "output channel"},
        "membrane": {"bits": profile.state_bits, "signed": True, "min": -limit, "max": limit,
                     "overflow": f"saturate to [-{limit}, {limit}] (symmetric)"},
        "threshold": {"bits": bits_unsigned(profile.vth_max), "signed": False, "min": 0, "max": profile.vth_max,
                      "compare": f"spike when v {profile.threshold} vth"},
        "decay": decay,
        "accumulator": {"bits": profile.synapse_bits, "signed": True,
                        "overflow": "none: the export checks that every node's worst-case sum fits"},
        "input": {"bits": bits_unsigned(input_max), "signed": False, "min": 0, "max": int(input_max)},
    }


def update_equations(profile: Profile) -> list[str]:
    """One neuron update, as the manifest states it."""
    lim = profile.state_limit
    return [
        "per time step t, nodes in the order listed, each reading its sources' outputs of the same step t",
        "acc[n] = sum over the node's incoming edges of sum_i w[n, i] * x_i   (x: input pixel or 0/1 spike; "
        "exact, fits the accumulator)",
        "d = decay(v[n], decay_code)   (profile.decay.equation)",
        "v_raw = d + acc[n] + bias[channel(n)]   (exact: accumulator bits + 2)",
        f"v_sat = clamp(v_raw, -{lim}, {lim})",
        f"spike[n] = v_sat {profile.threshold} vth",
        "v[n] = spike[n] ? 0 : v_sat",
        "state starts at 0 for every sample; the readout (last node) never decays and never fires: "
        "spike = 0 and v[n] = v_sat (a pure integrator, held at the limit once it reaches it); "
        "its membrane after step T is the output (argmax = class)",
    ]


def definitions(profile: Profile) -> dict[str, str]:
    """What the manifest's derived names and informational fields mean."""
    beta = _beta_rule(profile)
    return {
        "neuron n": "a node of shape (C, H, W) numbers its neurons n = (c*H + h)*W + w (C,H,W row-major); a dense "
                    "node of shape (N,) is read as (N, 1, 1): n = c",
        "channel(n)": "n div (H*W) (integer division), the c of n = (c*H + h)*W + w: the neuron's output channel, "
                      "whose bias it adds; for a dense node (N,): channel(n) = n, one bias per neuron",
        "class": "the index k of the largest readout membrane after the last step (t = T-1); on a tie the lowest "
                 "such k wins",
        "scale": f"nodes[].scale S, information only (no table or update uses it): the node's integer membrane is "
                 f"2^act_shift * S times the float model's membrane, act_shift = {profile.act_shift} here, up to "
                 f"rounding. The export chose weights round(S * w_float / input_scale) (input_scale: input.max on "
                 f"edges from the input, whose float model sees pixel / input.max; 1 on spikes), biases "
                 f"round(S * b_float) and, for a hidden node, vth = S * v_th_float; the readout's last membrane "
                 f"/ (S * T) approximates the float model's logits",
        "beta": f"nodes[].beta, information only: the decay code as a real number, {beta}; "
                f"decay(v, code) is beta * v rounded as profile.decay.equation states",
    }


def _beta_rule(profile: Profile) -> str:
    """``beta`` of a decay code in ``profile``'s decay form, as the manifest states it."""
    if profile.decay_form == "multiply":
        return f"beta = code / 2^{profile.decay_shift}: code {profile.decay_none} is 1, no decay"
    return f"beta = 1 - 2^-code, and code {profile.decay_none} is 1 (no decay)"


def _layout(shape: tuple[int, ...]) -> str:
    return "C,H,W row-major: index = (c*H + h)*W + w" if len(shape) == 3 else "index n"


def _edge_entry(edge, weight_file: str, bits: int) -> dict[str, Any]:
    g = edge.geometry
    entry: dict[str, Any] = {
        "name": edge.name, "source": edge.source, "target": edge.target, "kind": g.kind,
        "input_shape": list(g.input_shape), "output_shape": list(g.output_shape),
    }
    if g.kind == "conv":
        kh, kw = edge.weight.shape[2:]
        entry.update(kernel=[int(kh), int(kw)], stride=list(g.stride), padding=list(g.padding),
                     operation="cross-correlation, zero padding: out[o, y, x] = sum_{c,i,j} w[o,c,i,j] * "
                               "in[c, y*stride_h + i - pad_h, x*stride_w + j - pad_w]")
        layout = "O,C,KH,KW row-major: address = ((o*C + c)*KH + i)*KW + j"
    else:
        entry.update(operation="out[n] = sum_f w[n, f] * in[f], f over the source in C,H,W row-major order")
        layout = "N,F row-major: address = n*F + f"
    entry["weight"] = {"file": weight_file, "csv": weight_file.replace(".mem", ".csv"),
                       "words": int(edge.weight.size), "bits": bits, "signed": True,
                       "shape": list(edge.weight.shape), "layout": layout}
    return entry


def manifest_json(value: Any, depth: int = 0, lead: int = 0) -> str:
    """JSON indented by two spaces, with every object or array that fits its line (120 characters,
    ``lead`` of them taken by the indent and key) on one line (a tap of the worked example, a
    shape, a width), the rest expanded."""
    pad = "  " * (depth + 1)
    inline = json.dumps(value)
    if lead + len(inline) <= 120 or not isinstance(value, (dict, list)) or not value:
        return inline
    if isinstance(value, dict):
        items = [f"{pad}{json.dumps(k)}: " for k in value]
        items = [key + manifest_json(v, depth + 1, len(key)) for key, v in zip(items, value.values(), strict=True)]
        return "{\n" + ",\n".join(items) + "\n" + "  " * depth + "}"
    return "[\n" + ",\n".join(pad + manifest_json(v, depth + 1, len(pad)) for v in value) + "\n" + "  " * depth + "]"


# --- writing -------------------------------------------------------------------------------------

def render_tables(graph: Graph, profile: Profile, timesteps: int, dataset: dict[str, str] | None = None,
                  testvectors: dict[str, Any] | None = None) -> dict[str, bytes]:
    """The tables of an integer ``graph`` in ``profile``: file name -> content, in the order
    written (per edge, then per node, the ``.mem`` and ``.csv`` files; the header; the manifest
    last). ``dataset`` ({"name", "split"}) and ``testvectors`` (the test vectors' record,
    :func:`hardware.targets.fpga.testvectors.section`) go into the manifest where given."""
    profile.check(graph)
    spec = profile_manifest(profile, graph.input.input_max)
    wbits, bbits = spec["weight"]["bits"], spec["bias"]["bits"]
    files: dict[str, bytes] = {}
    def table(stem: str, what: str, values: np.ndarray, bits: int, indices: list[str], layout: str) -> str:
        mem, csv = f"{stem}.mem", f"{stem}.csv"
        flat = np.asarray(values, np.int64).ravel()
        files[mem] = (f"// {stem}: {flat.size} words, {bits}-bit two's complement, {layout}\n"
                      + "\n".join(to_words(flat, bits)) + "\n").encode()
        grid = np.indices(values.shape).reshape(values.ndim, -1).T
        rows = [",".join([*map(str, ix), str(v)]) for ix, v in zip(grid.tolist(), flat.tolist(), strict=True)]
        files[csv] = (",".join([*indices, what]) + "\n" + "\n".join(rows) + "\n").encode()
        return mem

    nodes, edges = [], []
    for e in graph.edges:
        layout_idx = ["o", "c", "i", "j"] if e.geometry.kind == "conv" else ["n", "f"]
        stem = f"{e.name}.weight"
        mem = table(stem, "weight", e.weight, wbits, layout_idx,
                    "O,C,KH,KW row-major" if e.geometry.kind == "conv" else "N,F row-major")
        edges.append(_edge_entry(e, mem, wbits))
    for n in graph.nodes:
        stem = f"{n.name}.bias"
        mem = table(stem, "bias", n.bias_mant, bbits, ["channel"], "per output channel")
        nodes.append({"name": n.name, "shape": list(n.shape), "neurons": n.neurons, "readout": n.readout,
                      "layout": _layout(n.shape), "decay_code": int(n.dv), "beta": profile.code_to_beta(n.dv),
                      "vth": int(n.vth), "scale": n.scale, "inputs": [e.source for e in graph.incoming(n.name)],
                      "bias": {"file": mem, "csv": mem.replace(".mem", ".csv"), "words": int(n.bias_mant.size),
                               "bits": bbits, "signed": True, "per": "output channel"}})
    title = f"{HEADER_NAME}: {profile.name} integer network, written by lsg-deploy ({FORMAT_NAME} v{FORMAT_VERSION})."
    files[HEADER_NAME] = render_header(graph, profile, timesteps, spec["decay"]["equation"], title).encode()
    manifest = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "profile": spec,
        "timesteps": int(timesteps),
        "input": {"shape": list(graph.input.shape), "neurons": int(np.prod(graph.input.shape)),
                  "encoding": graph.input.encoding, "max": int(graph.input.input_max),
                  "bits": spec["input"]["bits"], "layout": _layout(graph.input.shape),
                  "meaning": "direct: the same integer image every step; event-frames: one 0/1 frame per step"},
        "update": update_equations(profile),
        "definitions": definitions(profile),
        "nodes": nodes,
        "edges": edges,
    }
    manifest["memory_plan"] = _memory_plan(manifest, graph)
    manifest |= {
        "source_of_first_edges": INPUT,
        "header": HEADER_NAME,
        "worked_example": worked_example(graph, profile, timesteps),
        **({"dataset": dataset} if dataset is not None else {}),
        **({"testvectors": testvectors} if testvectors is not None else {}),
        "files": {name: hashlib.sha256(data).hexdigest() for name, data in files.items()},
    }
    files[MANIFEST_NAME] = (manifest_json(manifest) + "\n").encode()
    return files


def _memory_plan(manifest: dict[str, Any], graph: Graph) -> dict[str, Any]:
    """Which table lives in which RAM, at which address, in which word layout, in the RTL's two
    builds (:func:`hardware.targets.fpga.rtl.weight_memory.tables_plan`)."""
    from hardware.targets.fpga.rtl import weight_memory  # (it reads these tables)

    tables = Tables(manifest=manifest, weights={e.name: np.asarray(e.weight, np.int64) for e in graph.edges},
                    biases={n.name: np.asarray(n.bias_mant, np.int64) for n in graph.nodes})
    return weight_memory.tables_plan(tables)


def write_tables(graph: Graph, profile: Profile, timesteps: int, directory: Path,
                 dataset: dict[str, str] | None = None, testvectors: dict[str, Any] | None = None) -> tuple[str, ...]:
    """Write the tables of an integer ``graph`` in ``profile`` into ``directory`` (``dataset``
    and ``testvectors`` as :func:`render_tables` takes them); returns the names written (the
    manifest last)."""
    files = render_tables(graph, profile, timesteps, dataset, testvectors)
    for name, data in files.items():
        (Path(directory) / name).write_bytes(data)
    return tuple(files)


# --- checking tables against the network they claim to hold --------------------------------------

def _json_difference(got: Any, want: Any, where: str) -> str | None:
    """The first place (``nodes[0].vth``) where two JSON values differ, with both values."""
    if isinstance(want, dict) and isinstance(got, dict):
        for key in [*want, *(k for k in got if k not in want)]:
            here = f"{where}.{key}" if where else key
            if key not in got:
                return f"{here} is missing"
            if key not in want:
                return f"{here} is not a field the export writes"
            found = _json_difference(got[key], want[key], here)
            if found:
                return found
        return None
    if isinstance(want, list) and isinstance(got, list):
        for i, (g, w) in enumerate(zip(got, want, strict=False)):  # the shorter's length
            found = _json_difference(g, w, f"{where}[{i}]")
            if found:
                return found
        if len(got) != len(want):
            return f"{where} has {len(got)} entries, the bundle's integer graph gives {len(want)}"
        return None
    if got != want or type(got) is not type(want):
        return f"{where} is {json.dumps(got)}, the bundle's integer graph gives {json.dumps(want)}"
    return None


def _lines_difference(got: bytes, want: bytes, words: bool) -> str:
    """The first line (of a ``.mem`` file: word, after the comment line) where two files differ."""
    got_lines = got.decode(errors="replace").splitlines()
    want_lines = want.decode().splitlines()
    for i, (g, w) in enumerate(zip(got_lines, want_lines, strict=False)):
        if g != w:
            what = f"word {i - 1} (line {i + 1})" if words and i > 0 else f"line {i + 1}"
            return f"{what} is {g.strip()[:40]!r}, the bundle's integer graph gives {w!r}"
    if len(got_lines) != len(want_lines):
        count = "words" if words else "lines"
        return (f"it has {len(got_lines) - words} {count}, the bundle's integer graph gives "
                f"{len(want_lines) - words}")
    return "its bytes (line ends or encoding) differ from what the export writes"


def check_tables(graph: Graph, profile: Profile, timesteps: int, directory: Path) -> None:
    """Refuse the tables in ``directory`` unless every file :func:`write_tables` writes for the
    integer ``graph`` holds exactly what it would write: every ``.mem`` word, every manifest
    value (widths, shapes, codes, thresholds, ...), the CSV files and the header. The
    :class:`BundleError` names the file and the first word, line or field that differs (the
    ``.mem`` files first, the manifest last). The manifest's dataset and test vectors are
    checked too: the test vector files are rendered again from their stored inputs
    (:func:`hardware.targets.fpga.testvectors.recorded`) and compared like the tables."""
    from hardware.targets.fpga import testvectors  # it builds on this module

    directory = Path(directory)
    extra = testvectors.recorded(graph, profile, timesteps, directory)
    files = render_tables(graph, profile, timesteps, extra.dataset, extra.testvectors)
    manifest = files.pop(MANIFEST_NAME)
    for name, want in {**files, **(extra.files or {}), MANIFEST_NAME: manifest}.items():
        path = directory / name
        try:
            got = path.read_bytes()
        except OSError as exc:
            raise BundleError(f"{path} cannot be read: {exc.strerror or exc}") from None
        if got == want:
            continue
        if name == MANIFEST_NAME:
            try:
                found = _json_difference(json.loads(got), json.loads(want), "")
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                raise BundleError(f"{path} is not valid JSON: {exc}") from None
            detail = found or "its bytes differ from what the export writes"
        elif name.endswith(".npz"):  # a test vector file: inputs.npz is rendered back from itself
            detail = "its arrays differ from what the integer reference gives for the stored inputs"
        else:  # the test vectors' .mem files have no comment line
            detail = _lines_difference(got, want, words=name.endswith(".mem") and "/" not in name)
        raise BundleError(f"{path} does not hold the bundle's integer network: {detail}")


# --- reading -------------------------------------------------------------------------------------

def read_mem(path: Path, bits: int) -> np.ndarray:
    """The words of a ``.mem`` file (comments and blank lines skipped) as int64."""
    words = [line.split("//")[0].strip() for line in Path(path).read_text().splitlines()]
    return from_words([w for w in words if w], bits)


def read_tables(directory: Path) -> Tables:
    """Parse ``manifest.json`` and every ``.mem`` file back into arrays."""
    directory = Path(directory)
    try:
        manifest = json.loads((directory / MANIFEST_NAME).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise BundleError(f"{directory / MANIFEST_NAME} cannot be read: {exc}") from None
    if manifest.get("format") != FORMAT_NAME or manifest.get("format_version") != FORMAT_VERSION:
        raise BundleError(f"{directory / MANIFEST_NAME} is not an {FORMAT_NAME} v{FORMAT_VERSION} manifest")
    weights = {}
    for e in manifest["edges"]:
        w = e["weight"]
        weights[e["name"]] = read_mem(directory / w["file"], w["bits"]).reshape(w["shape"])
    biases = {n["name"]: read_mem(directory / n["bias"]["file"], n["bias"]["bits"]) for n in manifest["nodes"]}
    return Tables(manifest=manifest, weights=weights, biases=biases)


def parse_header(path: Path) -> tuple[dict[str, np.ndarray], dict[str, int]]:
    """The arrays and integer ``#define``s of a header written by :func:`write_tables`; a define
    that names another (``LSG_DECAY_FORM LSG_DECAY_FORM_MULTIPLY``) has that one's value."""
    text = Path(path).read_text()
    arrays = {m.group(1): np.array([int(x) for x in m.group(2).split(",") if x.strip()], np.int64)
              for m in re.finditer(r"static const int\d+_t (\w+)\[\d+\] = \{([^}]*)\};", text)}
    defines: dict[str, int] = {}
    for m in re.finditer(r"^#define (\w+) (\(-\d+\)|-?\d+|\w+)(?:  /\*.*\*/)?$", text, re.M):
        value = m.group(2).strip("()")
        if re.fullmatch(r"-?\d+", value):
            defines[m.group(1)] = int(value)
        elif value in defines:
            defines[m.group(1)] = defines[value]
    return arrays, defines
