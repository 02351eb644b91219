"""The deployment bundle: the one contract between ``export`` and everything that runs it.

A bundle is a directory readable with numpy and json alone::

    bundle.json   format name and version, target, input encoding, layer records (scalars),
                  quantization ranges and clip counts, provenance, the SHA-256 of every other
                  file of the bundle (``files``) and of its own content (``sha256``)
    arrays.npz    every array of every layer record, keyed ``<record>/<layer>/<field>``

Two layer records describe the same network: ``float`` (tdBN and pooling folded, float64) and
``loihi`` (the integer network in Lava's formats, see :mod:`hardware.fixed_point`). The record
classes below are the only registry: writing and reading both walk their dataclass fields, and
reading checks every JSON value against the field's declared type, so a float where an integer
belongs, a missing or an extra field is a :class:`BundleError` naming it.

Reading verifies the checksums before anything else: a bundle whose bytes changed after export
is refused, never run.
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

from hardware.profile import LOIHI2

FORMAT_NAME = "lsg-deploy-bundle"
FORMAT_VERSION = 2  #: 2: checksums (``files``, ``sha256``)
JSON_NAME = "bundle.json"
ARRAYS_NAME = "arrays.npz"
KINDS = ("conv", "dense")
TARGETS = ("loihi",)
MAX_TIMESTEPS = 1 << 16


class BundleError(ValueError):
    """A bundle that cannot be read or does not hold together."""


def _check_finite(values: np.ndarray, where: str) -> None:
    """Refuse NaN and infinities (and non-numeric arrays) with the place named."""
    values = np.asarray(values)
    if not (np.issubdtype(values.dtype, np.number) and not np.issubdtype(values.dtype, np.complexfloating)):
        raise BundleError(f"{where} must be a real numeric array, got dtype {values.dtype}")
    bad = np.count_nonzero(~np.isfinite(values))
    if bad:
        raise BundleError(f"{where} has {bad} non-finite value(s) (NaN or infinity)")


@dataclass(frozen=True)
class Geometry:
    """Synaptic operation of a layer. Shapes are channel-first (C, H, W) or (N,)."""

    kind: str
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise BundleError(f"unknown layer kind {self.kind!r}; expected one of {KINDS}")
        if self.kind == "conv" and (len(self.input_shape) != 3 or len(self.output_shape) != 3):
            raise BundleError(f"conv shapes must be (C, H, W), got {self.input_shape} -> {self.output_shape}")
        if self.kind == "dense" and len(self.output_shape) != 1:
            raise BundleError(f"a dense layer's output shape must be (N,), got {self.output_shape}")
        if min(self.input_shape + self.output_shape) < 1:
            raise BundleError(f"shapes must be positive, got {self.input_shape} -> {self.output_shape}")
        if len(self.stride) != 2 or len(self.padding) != 2 or min(self.stride) < 1 or min(self.padding) < 0:
            raise BundleError(f"bad stride {self.stride} or padding {self.padding}")

    def per_neuron(self, per_channel: np.ndarray) -> np.ndarray:
        """Expand a per-output-channel vector to every neuron, in (C, H, W) flattening order."""
        return np.repeat(per_channel, self.neurons // self.output_shape[0])

    @property
    def fan_in(self) -> int:
        return int(np.prod(self.input_shape))

    @property
    def neurons(self) -> int:
        return int(np.prod(self.output_shape))

    def check_weight(self, weight: np.ndarray, name: str) -> None:
        out_c = self.output_shape[0]
        if self.kind == "dense":
            expected = (self.neurons, self.fan_in)
            ok = weight.shape == expected
        else:
            ok = weight.ndim == 4 and weight.shape[:2] == (out_c, self.input_shape[0])
            expected = f"({out_c}, {self.input_shape[0]}, kh, kw)"
        if not ok:
            raise BundleError(f"layer {name}: weight shape {weight.shape}, expected {expected}")
        if self.kind == "conv":
            size = tuple((n + 2 * p - k) // s + 1 for n, p, k, s in
                         zip(self.input_shape[1:], self.padding, weight.shape[2:], self.stride, strict=True))
            if size != self.output_shape[1:]:
                raise BundleError(f"layer {name}: a {weight.shape[2:]} kernel on {self.input_shape} gives "
                                  f"{size}, not the recorded {self.output_shape[1:]}")


@dataclass(frozen=True)
class FloatLayer:
    """Folded float layer: ``I = W x + b``; LIF ``u = beta u (1 - o) + I``, ``o = u >= v_th``.

    A ``readout`` layer has no neuron: its output ``I`` is averaged over time (the logits).
    """

    ARRAYS = ("weight", "bias")
    name: str
    geometry: Geometry
    weight: np.ndarray
    bias: np.ndarray
    beta: float
    v_th: float
    readout: bool = False

    def __post_init__(self) -> None:
        n = self.name
        self.geometry.check_weight(self.weight, n)
        if self.bias.shape != (self.geometry.output_shape[0],):
            raise BundleError(f"layer {n}: bias shape {self.bias.shape}")
        for what in self.ARRAYS:
            _check_finite(getattr(self, what), f"layer {n}: {what}")
        if not (math.isfinite(self.beta) and 0.0 <= self.beta <= 1.0):
            raise BundleError(f"layer {n}: beta {self.beta} outside [0, 1]")
        if not (math.isfinite(self.v_th) and self.v_th > 0):
            raise BundleError(f"layer {n}: v_th must be positive and finite, got {self.v_th}")


@dataclass(frozen=True)
class LoihiLayer:
    """Integer layer in Lava's formats (see :mod:`hardware.fixed_point` for the arithmetic).

    ``a = (W s) << weight_exp`` for dense (``>>`` for a negative exponent); a conv's output is
    ``W * s`` wrapped to 24 bits (Lava's Conv has no weight exponent: it must be 0). Then one Loihi LIF step with
    ``du``, ``dv``, ``bias_mant << bias_exp`` and ``vth``. ``scale`` is the layer's membrane
    scale S (integer membrane = 64 S u_float) and ``input_scale`` what one input unit means
    (1 for spikes, the pixel scale for the encoded image). A ``readout`` layer never decays
    (``dv = 0``) and has the largest threshold: its membrane after T steps is the summed logit.
    """

    ARRAYS = ("weight", "bias_mant")
    name: str
    geometry: Geometry
    weight: np.ndarray
    weight_exp: int
    bias_mant: np.ndarray
    bias_exp: int
    du: int
    dv: int
    vth: int
    scale: float
    input_scale: float
    readout: bool = False

    def __post_init__(self) -> None:
        g, n = self.geometry, self.name
        g.check_weight(self.weight, n)
        if not np.issubdtype(self.weight.dtype, np.integer) or not np.issubdtype(self.bias_mant.dtype, np.integer):
            raise BundleError(f"layer {n}: integer tables must have an integer dtype")
        for what, (lo, hi) in LOIHI2.ranges().items():  # every integer field of the record
            arr = np.asarray(getattr(self, what))
            if arr.size and (arr.min() < lo or arr.max() > hi):
                raise BundleError(f"layer {n}: {what} range [{arr.min()}, {arr.max()}] outside [{lo}, {hi}]")
        for what in ("scale", "input_scale"):
            value = getattr(self, what)
            if not (math.isfinite(value) and value > 0):
                raise BundleError(f"layer {n}: {what} must be positive and finite, got {value}")
        if g.kind == "conv" and self.weight_exp != 0:
            raise BundleError(f"layer {n}: conv layers have no weight exponent on Loihi (got {self.weight_exp})")
        if np.any(self.weight % LOIHI2.weight_step):
            raise BundleError(f"layer {n}: mixed-sign Loihi weights must be multiples of {LOIHI2.weight_step}")


RECORDS: dict[str, type] = {"float": FloatLayer, "loihi": LoihiLayer}


@dataclass(frozen=True)
class Bundle:
    """Everything needed to run the exported network on a target, without torch."""

    target: str
    timesteps: int
    input_shape: tuple[int, ...]
    input_max: int  #: encoded input values are integers in [0, input_max]
    float_layers: tuple[FloatLayer, ...]
    loihi_layers: tuple[LoihiLayer, ...]
    quantization: dict[str, Any] = field(default_factory=dict)
    source: dict[str, Any] = field(default_factory=dict)
    format_version: int = FORMAT_VERSION
    files: dict[str, str] = field(default_factory=dict)  #: name -> SHA-256, as read (verified) from a bundle

    def __post_init__(self) -> None:
        if self.target not in TARGETS:
            raise BundleError(f"unknown target {self.target!r}; this lsg-deploy knows {', '.join(TARGETS)}")
        if not 1 <= self.timesteps <= MAX_TIMESTEPS:
            raise BundleError(f"timesteps must lie in [1, {MAX_TIMESTEPS}], got {self.timesteps}")
        if self.input_max < 1:
            raise BundleError(f"input_max must be >= 1, got {self.input_max}")
        names_f = [layer.name for layer in self.float_layers]
        names_i = [layer.name for layer in self.loihi_layers]
        if names_f != names_i:
            raise BundleError(f"float and loihi layers differ: {names_f} vs {names_i}")
        if len(set(names_f)) != len(names_f):
            raise BundleError(f"layer names repeat: {names_f}")
        if not names_f or not self.float_layers[-1].readout or any(f.readout for f in self.float_layers[:-1]):
            raise BundleError("the last layer, and only the last, must be the readout")
        shape = tuple(self.input_shape)
        for f, q in zip(self.float_layers, self.loihi_layers, strict=True):
            if f.geometry != q.geometry or f.readout != q.readout:
                raise BundleError(f"layer {f.name}: float and loihi records differ in geometry or role")
            g = f.geometry
            if g.input_shape != shape and (g.kind == "conv" or g.fan_in != int(np.prod(shape))):
                raise BundleError(f"layer {f.name}: input shape {g.input_shape} does not follow {shape}")
            shape = g.output_shape

    def layers(self, record: str) -> tuple:
        return {"float": self.float_layers, "loihi": self.loihi_layers}[record]


# --- writing and reading ----------------------------------------------------------------------

#: the files an export of format version 1 wrote (it had no ``files`` manifest)
_V1_FILES = (JSON_NAME, ARRAYS_NAME, "model.nir", "model.net", "source_model.pt")
_TOP_FIELDS = {"format", "format_version", "target", "timesteps", "input_shape", "input_max", "layers",
               "quantization", "source", "files", "sha256"}
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


def _layer_to_json(layer: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in dataclasses.fields(layer):
        if f.name in layer.ARRAYS:
            continue
        value = getattr(layer, f.name)
        out[f.name] = dataclasses.asdict(value) if isinstance(value, Geometry) else value
    return out


def _layer_from_json(cls: type, meta: dict[str, Any], arrays: dict[str, np.ndarray], key: str) -> Any:
    where = f"{key} layer {meta.get('name', '?') if isinstance(meta, dict) else '?'}"
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
            kwargs[name] = arrays[f"{key}/{meta['name']}/{name}"]
        except KeyError:
            raise BundleError(f"{ARRAYS_NAME} lacks {key}/{meta['name']}/{name}") from None
    return cls(**kwargs)


def write_bundle(bundle: Bundle, directory: Path, files: tuple[str, ...] = ()) -> None:
    """Write ``arrays.npz`` and then ``bundle.json`` into an existing directory (a stage).

    ``files``: other files already written there that belong to the bundle; their SHA-256
    goes into the manifest, and :func:`read_bundle` verifies them.
    """
    directory = Path(directory)
    arrays: dict[str, np.ndarray] = {}
    layers_json: dict[str, list] = {}
    for key, cls in RECORDS.items():
        layers_json[key] = []
        for layer in bundle.layers(key):
            if not isinstance(layer, cls):
                raise BundleError(f"{key} layer {layer.name} is a {type(layer).__name__}, not {cls.__name__}")
            layers_json[key].append(_layer_to_json(layer))
            for name in cls.ARRAYS:
                arrays[f"{key}/{layer.name}/{name}"] = np.asarray(getattr(layer, name))
    np.savez(directory / ARRAYS_NAME, **arrays)
    doc = {
        "format": FORMAT_NAME,
        "format_version": bundle.format_version,
        "target": bundle.target,
        "timesteps": bundle.timesteps,
        "input_shape": list(bundle.input_shape),
        "input_max": bundle.input_max,
        "layers": layers_json,
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


def verify_files(directory: Path, doc: dict[str, Any]) -> None:
    """Check the document's own digest and every listed file's SHA-256."""
    if doc.get("sha256") != document_digest(doc):
        raise BundleError(f"{directory / JSON_NAME} was changed after export (its checksum does not match)")
    files = doc.get("files")
    if not isinstance(files, dict) or ARRAYS_NAME not in files:
        raise BundleError(f"{directory / JSON_NAME}: files must list {ARRAYS_NAME} and its SHA-256")
    for name, digest in files.items():
        path = directory / name
        if Path(name).name != name or name == JSON_NAME:
            raise BundleError(f"{directory / JSON_NAME}: files lists {name!r}, which is not a bundle file name")
        if not path.is_file():
            raise BundleError(f"{directory} lacks {name}, a file of the bundle")
        if sha256_file(path) != digest:
            raise BundleError(f"{path} is corrupt or was changed after export (its SHA-256 does not match)")


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
    layers = doc["layers"]
    _fields_of(layers, set(RECORDS), f"{directory / JSON_NAME}: layers")
    records = {}
    for key, cls in RECORDS.items():
        if not isinstance(layers[key], list):
            raise BundleError(f"{directory / JSON_NAME}: layers.{key} must be a list")
        records[key] = tuple(_layer_from_json(cls, meta, arrays, key) for meta in layers[key])
    for key in ("quantization", "source"):
        if not isinstance(doc[key], dict):
            raise BundleError(f"{directory / JSON_NAME}: {key} must be a JSON object")
    where = str(directory / JSON_NAME)
    return Bundle(
        target=_typed(doc["target"], "str", f"{where}: target"),
        timesteps=_typed(doc["timesteps"], "int", f"{where}: timesteps"),
        input_shape=_typed(doc["input_shape"], "tuple[int, ...]", f"{where}: input_shape"),
        input_max=_typed(doc["input_max"], "int", f"{where}: input_max"),
        float_layers=records["float"],
        loihi_layers=records["loihi"],
        quantization=doc["quantization"],
        source=doc["source"],
        format_version=doc["format_version"],
        files=dict(doc["files"]),
    )


def replace_refusal(path: Path) -> str | None:
    """Why ``path`` may not be replaced by a new bundle, or None: absent, an empty directory, or
    a bundle of ours holding nothing but its own files (any format version, even corrupt)."""
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
    try:
        doc = _read_document(path)
    except BundleError:
        shown = ", ".join(entries[:4]) + (f" and {len(entries) - 4} more" if len(entries) > 4 else "")
        return f"{path} is a directory that is not an lsg-deploy bundle (it holds {shown})"
    files = doc.get("files") if isinstance(doc.get("files"), dict) else None
    ours = {JSON_NAME, *files} if files is not None else set(_V1_FILES)
    foreign = [name for name in entries if name not in ours]
    if foreign:
        return f"{path} is a bundle, but also holds files that are not part of it: {', '.join(foreign[:4])}"
    return None
