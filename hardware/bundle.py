"""The deployment bundle: the one contract between ``export`` and everything that runs it.

A bundle is a directory readable with numpy and json alone::

    bundle.json   format name and version, target, its integer profile stored whole (every
                  width, range, decay form, rounding, threshold and overflow rule), timesteps,
                  the input (shape, encoding, input_max), the graph's node and edge records (scalars) for each record,
                  the artifacts the export wrote or skipped (and why), quantization ranges and
                  clip counts, provenance, the SHA-256 of every other file of the bundle
                  (``files``: a name, or ``folder/name`` for a target's folder such as the FPGA
                  test vectors') and of its own content (``sha256``)
    arrays.npz    every array of every record, keyed ``<record>/nodes/<node>/<field>`` and
                  ``<record>/edges/<edge>/<field>``

The network is a graph (:mod:`hardware.graph`): nodes and edges, described twice with the same
names, topology and geometry: ``float`` (tdBN and pooling folded, float64) and ``integer`` (the
integer network in the formats of the bundle's profile, :mod:`hardware.profile`; every value is
checked against that profile's ranges on reading). The profile is data, not a name to look up:
a reader builds it from ``bundle.json`` (:meth:`hardware.profile.Profile.from_json`), so a
bundle of a target or profile this copy does not know still runs on the integer reference. The
record classes of
:mod:`hardware.graph` are the only registry: writing and reading both walk their dataclass
fields, and reading checks every JSON value against the field's declared type, so a float where
an integer belongs, a missing or an extra field is a :class:`BundleError` naming it.

Reading verifies the checksums before anything else: a bundle whose bytes changed after export
is refused, never run. Bundles of an earlier format version are refused with a one-line request
to re-export.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hardware.graph import (
    EDGE_TYPES,
    NODE_TYPES,
    BundleError,
    Geometry,
    Graph,
    Input,
    same_structure,
)
from hardware.profile import Profile

__all__ = ["Bundle", "BundleError", "read_bundle", "write_bundle", "replace_refusal", "sha256_file",
           "document_digest", "FORMAT_VERSION"]

FORMAT_NAME = "lsg-deploy-bundle"
#: 2: checksums; 3: the network as a graph, input encoding, artifacts; 4: integer profiles (by name);
#: 5: the profile stored whole; 6: the readout never fires (a pure integrator held at the limit; a
#: format-5 readout fired and reset at its threshold)
FORMAT_VERSION = 6
JSON_NAME = "bundle.json"
ARRAYS_NAME = "arrays.npz"
SOURCE_MODEL = "source_model.pt"  #: the checkpoint's copy inside every bundle
NIR_NAME = "model.nir"  #: the folded float graph, written by every target
MAX_TIMESTEPS = 1 << 16
RECORDS = ("float", "integer")


@dataclass(frozen=True)
class Bundle:
    """Everything needed to run the exported network on a target, without torch."""

    target: str  #: the target it was exported for (:data:`hardware.targets.TARGETS`, or one this copy does not know)
    timesteps: int
    float_graph: Graph
    integer_graph: Graph
    profile: Profile  #: the integer graph's arithmetic, stored whole
    #: what the export wrote: name -> {"file": NAME} or {"skipped": why}
    artifacts: dict[str, dict[str, str]] = field(default_factory=dict)
    quantization: dict[str, Any] = field(default_factory=dict)
    source: dict[str, Any] = field(default_factory=dict)
    format_version: int = FORMAT_VERSION
    files: dict[str, str] = field(default_factory=dict)  #: name -> SHA-256, as read (verified) from a bundle

    def __post_init__(self) -> None:
        if not isinstance(self.target, str) or not self.target:
            raise BundleError(f"target must be a name, got {self.target!r}")
        if not isinstance(self.profile, Profile):
            raise BundleError(f"profile must be a Profile, got {type(self.profile).__name__}")
        if not 1 <= self.timesteps <= MAX_TIMESTEPS:
            raise BundleError(f"timesteps must lie in [1, {MAX_TIMESTEPS}], got {self.timesteps}")
        for key, graph in (("float", self.float_graph), ("integer", self.integer_graph)):
            if not all(isinstance(n, NODE_TYPES[key]) for n in graph.nodes) or not all(
                    isinstance(e, EDGE_TYPES[key]) for e in graph.edges):
                raise BundleError(f"the {key} graph must hold {NODE_TYPES[key].__name__} and "
                                  f"{EDGE_TYPES[key].__name__} records")
        same_structure(self.float_graph, self.integer_graph, "bundle")
        self.profile.check(self.integer_graph)
        for name, entry in self.artifacts.items():
            if not (isinstance(entry, dict) and len(entry) == 1 and set(entry) <= {"file", "skipped"}
                    and isinstance(next(iter(entry.values())), str)):
                raise BundleError(f"artifact {name!r} must be {{'file': NAME}} or {{'skipped': WHY}}, got {entry!r}")

    @property
    def input(self) -> Input:
        return self.float_graph.input

    def graph(self, record: str) -> Graph:
        return {"float": self.float_graph, "integer": self.integer_graph}[record]



# --- writing and reading ----------------------------------------------------------------------

#: the files an export of format version 1 wrote (it had no ``files`` manifest)
_V1_FILES = (JSON_NAME, ARRAYS_NAME, "model.nir", "model.net", "source_model.pt")
_TOP_FIELDS = {"format", "format_version", "target", "profile", "timesteps", "input", "graph", "artifacts",
               "quantization", "source", "files", "sha256"}
_INPUT_TYPES = {f.name: f.type for f in dataclasses.fields(Input)}
_GEOMETRY_TYPES = {f.name: f.type for f in dataclasses.fields(Geometry)}


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, tuple):
        return list(value)
    raise TypeError(f"cannot write {type(value).__name__} to {JSON_NAME}")


def document_digest(doc: dict[str, Any]) -> str:
    """SHA-256 of a bundle document without its ``sha256`` field, in canonical JSON."""
    body = {k: v for k, v in doc.items() if k != "sha256"}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), default=_json_default)
    return hashlib.sha256(text.encode()).hexdigest()


def _typed(value: Any, type_name: str, where: str) -> Any:
    """Check a JSON value against a dataclass field's declared type; return it as that type."""
    is_int = isinstance(value, int) and not isinstance(value, bool)
    if type_name == "int":
        ok = is_int
    elif type_name == "float":
        ok = (is_int or isinstance(value, float)) and math.isfinite(value)
    elif type_name == "bool":
        ok = isinstance(value, bool)
    elif type_name == "str":
        ok = isinstance(value, str)
    elif type_name.startswith("tuple[int"):
        ok = isinstance(value, list) and all(isinstance(v, int) and not isinstance(v, bool) for v in value)
        value = tuple(value) if ok else value
    else:
        raise TypeError(f"no JSON reading for type {type_name}")  # a bug in this module, not bad input
    if not ok:
        raise BundleError(f"{where} must be {type_name.replace('tuple', 'a list')}, got {value!r}")
    return value


def _fields_of(doc: Any, expected: set[str], where: str) -> None:
    if not isinstance(doc, dict):
        raise BundleError(f"{where} must be a JSON object, got {type(doc).__name__}")
    missing, extra = sorted(expected - set(doc)), sorted(set(doc) - expected)
    if missing or extra:
        raise BundleError(f"{where}: " + "; ".join(
            ([f"missing field(s) {', '.join(missing)}"] if missing else [])
            + ([f"unknown field(s) {', '.join(extra)}"] if extra else [])))


def record_to_json(record: Any) -> dict[str, Any]:
    """A node or edge record's scalars (its ``ARRAYS`` go to ``arrays.npz``)."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(record):
        if f.name in record.ARRAYS:
            continue
        value = getattr(record, f.name)
        out[f.name] = dataclasses.asdict(value) if isinstance(value, Geometry) else value
    return out


def record_from_json(cls: type, meta: Any, arrays: dict[str, np.ndarray], prefix: str) -> Any:
    """Rebuild a node or edge record from its JSON scalars and ``arrays[prefix/<name>/<field>]``."""
    where = f"{prefix} {meta.get('name', '?') if isinstance(meta, dict) else '?'}"
    fields = {f.name: f.type for f in dataclasses.fields(cls) if f.name not in cls.ARRAYS}
    _fields_of(meta, set(fields), where)
    kwargs = {}
    for name, type_name in fields.items():
        if name == "geometry":
            g = meta[name]
            _fields_of(g, set(_GEOMETRY_TYPES), f"{where}: geometry")
            kwargs[name] = Geometry(**{k: _typed(g[k], t, f"{where}: geometry.{k}")
                                       for k, t in _GEOMETRY_TYPES.items()})
        else:
            kwargs[name] = _typed(meta[name], type_name, f"{where}: {name}")
    for name in cls.ARRAYS:
        try:
            kwargs[name] = arrays[f"{prefix}/{meta['name']}/{name}"]
        except KeyError:
            raise BundleError(f"{ARRAYS_NAME} lacks {prefix}/{meta['name']}/{name}") from None
    return cls(**kwargs)


def graph_to_json(graph: Graph, key: str, arrays: dict[str, np.ndarray]) -> dict[str, list]:
    """The ``key`` record of a graph as JSON; its arrays are added to ``arrays``."""
    doc: dict[str, list] = {"nodes": [], "edges": []}
    for part, records in (("nodes", graph.nodes), ("edges", graph.edges)):
        for record in records:
            doc[part].append(record_to_json(record))
            for name in record.ARRAYS:
                arrays[f"{key}/{part}/{record.name}/{name}"] = np.asarray(getattr(record, name))
    return doc


def input_to_json(spec: Input) -> dict[str, Any]:
    return dataclasses.asdict(spec)


def input_from_json(doc: Any, where: str) -> Input:
    _fields_of(doc, set(_INPUT_TYPES), where)
    return Input(**{k: _typed(doc[k], t, f"{where}.{k}") for k, t in _INPUT_TYPES.items()})


def graph_from_json(doc: Any, spec: Input, key: str, arrays: dict[str, np.ndarray], where: str) -> Graph:
    _fields_of(doc, {"nodes", "edges"}, where)
    parts = {}
    for part, cls in (("nodes", NODE_TYPES[key]), ("edges", EDGE_TYPES[key])):
        if not isinstance(doc[part], list):
            raise BundleError(f"{where}.{part} must be a list")
        parts[part] = tuple(record_from_json(cls, meta, arrays, f"{key}/{part}") for meta in doc[part])
    return Graph(spec, parts["nodes"], parts["edges"])


def write_bundle(bundle: Bundle, directory: Path, files: tuple[str, ...] = ()) -> None:
    """Write ``arrays.npz`` and then ``bundle.json`` into an existing directory (a stage).

    ``files``: other files already written there that belong to the bundle; their SHA-256
    goes into the manifest, and :func:`read_bundle` verifies them.
    """
    directory = Path(directory)
    unlisted = [e["file"] for e in bundle.artifacts.values() if "file" in e and e["file"] not in files]
    if unlisted:
        raise BundleError(f"the bundle's artifacts name {', '.join(unlisted)}, which are not among its files")
    arrays: dict[str, np.ndarray] = {}
    graphs = {key: graph_to_json(bundle.graph(key), key, arrays) for key in RECORDS}
    np.savez(directory / ARRAYS_NAME, **arrays)
    doc = {
        "format": FORMAT_NAME,
        "format_version": bundle.format_version,
        "target": bundle.target,
        "profile": bundle.profile.to_json(),
        "timesteps": bundle.timesteps,
        "input": input_to_json(bundle.input),
        "graph": graphs,
        "artifacts": bundle.artifacts,
        "quantization": bundle.quantization,
        "source": bundle.source,
        "files": {name: sha256_file(directory / name) for name in (ARRAYS_NAME, *files)},
    }
    doc = json.loads(json.dumps(doc, default=_json_default))  # the values exactly as they will read back
    doc["sha256"] = document_digest(doc)
    (directory / JSON_NAME).write_text(json.dumps(doc, indent=2) + "\n")


def _read_document(directory: Path) -> dict[str, Any]:
    json_path = directory / JSON_NAME
    if not directory.is_dir():
        raise BundleError(f"{directory} is not a bundle directory" + (" (it is a file)" if directory.exists() else
                                                                        " (it does not exist)"))
    if not json_path.is_file():
        raise BundleError(f"{directory} is not a bundle: {JSON_NAME} not found")
    try:
        doc = json.loads(json_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BundleError(f"{json_path} is corrupt: {exc}") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT_NAME:
        raise BundleError(f"{json_path} is not an {FORMAT_NAME} file")
    return doc


def _is_file_name(name: str) -> bool:
    """A name ``files`` may list: a file of the bundle's directory, or of one folder in it
    (``testvectors/inputs.npz``), never ``bundle.json``, a path that climbs or an absolute one."""
    parts = name.split("/") if isinstance(name, str) else []
    return (0 < len(parts) <= 2 and all(p not in ("", ".", "..") and Path(p).name == p for p in parts)
            and name != JSON_NAME)


def verify_files(directory: Path, doc: dict[str, Any]) -> None:
    """Check the document's own digest and every listed file's SHA-256."""
    if doc.get("sha256") != document_digest(doc):
        raise BundleError(f"{directory / JSON_NAME} was changed after export (its checksum does not match)")
    files = doc.get("files")
    if not isinstance(files, dict) or ARRAYS_NAME not in files:
        raise BundleError(f"{directory / JSON_NAME}: files must list {ARRAYS_NAME} and its SHA-256")
    for name, digest in files.items():
        path = directory / name
        if not _is_file_name(name):
            raise BundleError(f"{directory / JSON_NAME}: files lists {name!r}, which is not a bundle file name")
        if not path.is_file():
            raise BundleError(f"{directory} lacks {name}, a file of the bundle")
        if sha256_file(path) != digest:
            raise BundleError(f"{path} is corrupt or was changed after export (its SHA-256 does not match)")


def _holds(doc: Any, required: tuple[str, ...], where: str) -> None:
    """``doc`` is a JSON object with (at least) the fields ``required``."""
    _fields_of(doc, set(doc) | set(required) if isinstance(doc, dict) else set(required), where)


def _check_quantization(record: dict[str, Any], graph: Graph, where: str) -> None:
    """The ``quantization`` record, as far as the report reads it: ``layers``, one object per
    integer node (its scale, whether it was pinned, its clip counts), ``policy``'s weight
    percentile, and a calibrated export's ``calibration``: per hidden node the chosen percentile,
    one of its candidates'. An empty record (a bundle written without an export's quantization,
    :class:`Bundle`'s default) has nothing to check."""
    if not record:
        return
    where = f"{where}: quantization"
    nodes, hidden = [n.name for n in graph.nodes], [n.name for n in graph.hidden]
    layers = record.get("layers")
    if not isinstance(layers, dict) or sorted(layers) != sorted(nodes):
        raise BundleError(f"{where}.layers must hold one object per node of the integer graph ({', '.join(nodes)})")
    for name, layer in layers.items():
        _holds(layer, ("scale", "pinned", "clipped"), f"{where}.layers.{name}")
        if _typed(layer["scale"], "float", f"{where}.layers.{name}.scale") <= 0:
            raise BundleError(f"{where}.layers.{name}.scale must be positive, got {layer['scale']}")
        _typed(layer["pinned"], "bool", f"{where}.layers.{name}.pinned")
        _fields_of(layer["clipped"], {"weight", "bias"}, f"{where}.layers.{name}.clipped")
        for kind, count in layer["clipped"].items():
            if _typed(count, "int", f"{where}.layers.{name}.clipped.{kind}") < 0:
                raise BundleError(f"{where}.layers.{name}.clipped.{kind} must be >= 0, got {count}")
    policy = record.get("policy")
    percentile = policy.get("weight_percentile") if isinstance(policy, dict) else None
    if not 0 < _typed(percentile, "float", f"{where}.policy.weight_percentile") <= 100:
        raise BundleError(f"{where}.policy.weight_percentile must lie in (0, 100], got {percentile}")
    if "calibration" not in record:
        return
    calibration = record["calibration"]
    _holds(calibration, ("samples", "layers"), f"{where}.calibration")
    _typed(calibration["samples"], "int", f"{where}.calibration.samples")
    chosen = calibration["layers"]
    if not isinstance(chosen, dict) or sorted(chosen) != sorted(hidden):
        raise BundleError(f"{where}.calibration.layers must hold one object per hidden node ({', '.join(hidden)})")
    for name, layer in chosen.items():
        at = f"{where}.calibration.layers.{name}"
        _fields_of(layer, {"chosen", "candidates"}, at)
        candidates = layer["candidates"]
        if not isinstance(candidates, list):
            raise BundleError(f"{at}.candidates must be a list")
        for i, candidate in enumerate(candidates):
            _holds(candidate, ("weight_percentile", "scale", "clipped_weights", "own_agreement"),
                   f"{at}.candidates[{i}]")
            for key, kind in (("weight_percentile", "float"), ("scale", "float"), ("clipped_weights", "int"),
                              ("own_agreement", "float")):
                _typed(candidate[key], kind, f"{at}.candidates[{i}].{key}")
        if not any(c["weight_percentile"] == _typed(layer["chosen"], "float", f"{at}.chosen") for c in candidates):
            raise BundleError(f"{at}.chosen {layer['chosen']} is none of its candidates' weight percentiles")


def read_bundle(directory: Path) -> Bundle:
    """Read, verify and validate a bundle; any problem raises :class:`BundleError` with the reason."""
    directory = Path(directory)
    doc = _read_document(directory)
    if doc.get("format_version") != FORMAT_VERSION:
        raise BundleError(
            f"{directory} has bundle format version {doc.get('format_version')}; this lsg-deploy "
            f"reads version {FORMAT_VERSION}: re-export it with this version"
        )
    _fields_of(doc, _TOP_FIELDS, str(directory / JSON_NAME))
    verify_files(directory, doc)
    try:
        with np.load(directory / ARRAYS_NAME, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise BundleError(f"{directory / ARRAYS_NAME} cannot be read: {exc}") from None
    where = str(directory / JSON_NAME)
    spec = input_from_json(doc["input"], f"{where}: input")
    _fields_of(doc["graph"], set(RECORDS), f"{where}: graph")
    graphs = {key: graph_from_json(doc["graph"][key], spec, key, arrays, f"{where}: graph.{key}") for key in RECORDS}
    for key in ("quantization", "source", "artifacts"):
        if not isinstance(doc[key], dict):
            raise BundleError(f"{where}: {key} must be a JSON object")
    _check_quantization(doc["quantization"], graphs["integer"], where)
    for name, entry in doc["artifacts"].items():
        listed = entry.get("file") if isinstance(entry, dict) else None
        if listed is not None and listed not in doc["files"]:
            raise BundleError(f"{where}: artifact {name} names {listed!r}, which the bundle's files do not list")
    return Bundle(
        target=_typed(doc["target"], "str", f"{where}: target"),
        profile=Profile.from_json(doc["profile"], f"{where}: profile"),
        timesteps=_typed(doc["timesteps"], "int", f"{where}: timesteps"),
        float_graph=graphs["float"],
        integer_graph=graphs["integer"],
        artifacts=doc["artifacts"],
        quantization=doc["quantization"],
        source=doc["source"],
        format_version=doc["format_version"],
        files=dict(doc["files"]),
    )


def _export_names(doc: dict[str, Any]) -> set[str]:
    """The names an export writes into a bundle: those of version 1 (every target's), and an FPGA
    export's tables (:mod:`hardware.targets.fpga.tables`): its manifest, its C header and a ``.mem`` and
    a ``.csv`` per edge weight and node bias of the document's integer graph, and its test vectors
    (:mod:`hardware.targets.fpga.testvectors`)."""
    from hardware.targets.fpga import testvectors
    from hardware.targets.fpga.tables import HEADER_NAME, MANIFEST_NAME

    names = {*_V1_FILES, MANIFEST_NAME, HEADER_NAME, *(f"{testvectors.DIRECTORY}/{n}" for n in testvectors.FILES)}
    graph = doc.get("graph")
    graph = graph.get("integer") if isinstance(graph, dict) else None
    for part, table in (("edges", "weight"), ("nodes", "bias")):
        records = graph.get(part) if isinstance(graph, dict) else None
        for record in records if isinstance(records, list) else []:
            name = record.get("name") if isinstance(record, dict) else None
            if isinstance(name, str):
                names |= {f"{name}.{table}.mem", f"{name}.{table}.csv"}
    return names


def _rtl_name(name: str, names: set[str]) -> bool:
    """Whether ``name`` is one the FPGA export's ``rtl/`` folder holds (:mod:`hardware.targets.fpga.rtl.ip`),
    for a bundle whose tables are among ``names``: a fixed file, or a lane's ``.mem`` file of one
    of them."""
    from hardware.targets.fpga.rtl import ip

    return ip.is_file_name(name, names)


def _is_folder(path: Path) -> bool:
    return path.is_dir() and not path.is_symlink()


def replace_refusal(path: Path) -> str | None:
    """Why ``path`` may not be replaced by a new bundle, or None: absent, an empty directory, or
    an earlier bundle of ours, which means all of: every entry (a file in a folder of it counts as
    ``folder/name``) is a regular file that ``bundle.json`` lists, every listed name is one an
    export writes (:func:`_export_names`), and the document's own SHA-256 and every file's verify
    (:func:`verify_files`). A digest holds no secret, so the names are checked as well: a forged
    manifest cannot make a user's file part of a bundle. A corrupt bundle (or one of format 1,
    without checksums) is not replaced without ``--force`` either."""
    path = Path(path)
    if not path.exists() and not path.is_symlink():
        return None
    if path.is_symlink():
        return f"{path} is a symbolic link"
    if not path.is_dir():
        return f"{path} is a file, not a bundle"
    entries = sorted(p.name for p in path.iterdir())
    if not entries:
        return None
    # a folder's files are entries of their own (testvectors/inputs.npz), the folder is none
    entries = sorted([*(f"{name}/{p.name}" for name in entries if _is_folder(path / name)
                        for p in (path / name).iterdir()),
                      *(name if not _is_folder(path / name) else f"{name}/" for name in entries
                        if not _is_folder(path / name) or not any((path / name).iterdir()))])
    try:
        doc = _read_document(path)
    except BundleError:
        shown = ", ".join(entries[:4]) + (f" and {len(entries) - 4} more" if len(entries) > 4 else "")
        return f"{path} is a directory that is not an lsg-deploy bundle (it holds {shown})"
    files = doc.get("files") if isinstance(doc.get("files"), dict) else {}
    foreign = [name for name in entries if name != JSON_NAME and name not in files]
    if foreign:
        return f"{path} is a bundle, but also holds files that are not part of it: {', '.join(foreign[:4])}"
    odd = [name for name in entries if (path / name).is_symlink() or not (path / name).is_file()]
    if odd:
        return f"{path} is not a bundle lsg-deploy wrote: {', '.join(odd[:4])} is not a regular file"
    names = _export_names(doc)
    strange = sorted(name for name in files if name not in names and not _rtl_name(name, names))
    if strange:
        return (f"{path} is not a bundle lsg-deploy wrote: its {JSON_NAME} lists {', '.join(strange[:4])}, which no "
                f"export writes")
    try:
        verify_files(path, doc)
    except (BundleError, OSError) as exc:
        return f"{path} is a bundle, but its checksum does not verify ({exc})"
    return None
