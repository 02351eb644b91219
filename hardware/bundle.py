"""The deployment bundle: the one contract between ``export`` and everything that runs it.

A bundle is a directory readable with numpy and json alone::

    bundle.json   format name and version, target, input encoding, layer records (scalars),
                  quantization ranges and clip counts, provenance
    arrays.npz    every array of every layer record, keyed ``<record>/<layer>/<field>``

Two layer records describe the same network: ``float`` (tdBN and pooling folded, float64) and
``loihi`` (the integer network in Lava's formats, see :mod:`hardware.fixed_point`). The record
classes below are the only registry: writing and reading both walk their dataclass fields.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hardware import fixed_point as fp

FORMAT_NAME = "lsg-deploy-bundle"
FORMAT_VERSION = 1
JSON_NAME = "bundle.json"
ARRAYS_NAME = "arrays.npz"
KINDS = ("conv", "dense")


class BundleError(ValueError):
    """A bundle that cannot be read or does not hold together."""


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
        if min(self.stride) < 1 or min(self.padding) < 0:
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
        self.geometry.check_weight(self.weight, self.name)
        if self.bias.shape != (self.geometry.output_shape[0],):
            raise BundleError(f"layer {self.name}: bias shape {self.bias.shape}")
        if not 0.0 <= self.beta <= 1.0:
            raise BundleError(f"layer {self.name}: beta {self.beta} outside [0, 1]")


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
        for what, lo, hi, val in (
            ("weight", fp.WEIGHT_MIN, fp.WEIGHT_MAX, self.weight),
            ("bias_mant", fp.BIAS_MANT_MIN, fp.BIAS_MANT_MAX, self.bias_mant),
            ("bias_exp", fp.BIAS_EXP_MIN, fp.BIAS_EXP_MAX, self.bias_exp),
            ("du", 0, fp.DECAY_MAX, self.du),
            ("dv", 0, fp.DECAY_MAX, self.dv),
            ("vth", 0, fp.VTH_MAX, self.vth),
        ):
            arr = np.asarray(val)
            if arr.size and (arr.min() < lo or arr.max() > hi):
                raise BundleError(f"layer {n}: {what} range [{arr.min()}, {arr.max()}] outside [{lo}, {hi}]")
        if g.kind == "conv" and self.weight_exp != 0:
            raise BundleError(f"layer {n}: conv layers have no weight exponent on Loihi (got {self.weight_exp})")
        if np.any(self.weight % fp.WEIGHT_STEP):
            raise BundleError(f"layer {n}: mixed-sign Loihi weights must be multiples of {fp.WEIGHT_STEP}")


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

    def __post_init__(self) -> None:
        if self.timesteps < 1:
            raise BundleError(f"timesteps must be >= 1, got {self.timesteps}")
        names_f = [layer.name for layer in self.float_layers]
        names_i = [layer.name for layer in self.loihi_layers]
        if names_f != names_i:
            raise BundleError(f"float and loihi layers differ: {names_f} vs {names_i}")
        if not names_f or not self.float_layers[-1].readout:
            raise BundleError("the last layer must be the readout")

    def layers(self, record: str) -> tuple:
        return {"float": self.float_layers, "loihi": self.loihi_layers}[record]


# --- writing and reading ----------------------------------------------------------------------


def _layer_to_json(layer: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in dataclasses.fields(layer):
        if f.name in layer.ARRAYS:
            continue
        value = getattr(layer, f.name)
        out[f.name] = dataclasses.asdict(value) if isinstance(value, Geometry) else value
    return out


def _layer_from_json(cls: type, meta: dict[str, Any], arrays: dict[str, np.ndarray], key: str) -> Any:
    kwargs = dict(meta)
    g = kwargs["geometry"]
    kwargs["geometry"] = Geometry(
        kind=g["kind"],
        input_shape=tuple(g["input_shape"]),
        output_shape=tuple(g["output_shape"]),
        stride=tuple(g["stride"]),
        padding=tuple(g["padding"]),
    )
    for name in cls.ARRAYS:
        try:
            kwargs[name] = arrays[f"{key}/{meta['name']}/{name}"]
        except KeyError:
            raise BundleError(f"{ARRAYS_NAME} lacks {key}/{meta['name']}/{name}") from None
    return cls(**kwargs)


def write_bundle(bundle: Bundle, directory: Path) -> None:
    """Write ``bundle.json`` and ``arrays.npz`` into an existing directory."""
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
    }
    np.savez(directory / ARRAYS_NAME, **arrays)
    (directory / JSON_NAME).write_text(json.dumps(doc, indent=2, default=_json_default) + "\n")


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, tuple):
        return list(value)
    raise TypeError(f"cannot write {type(value).__name__} to {JSON_NAME}")


def read_bundle(directory: Path) -> Bundle:
    """Read and validate a bundle; any problem raises :class:`BundleError` with the reason."""
    directory = Path(directory)
    json_path = directory / JSON_NAME
    if not json_path.is_file():
        raise BundleError(f"{directory} is not a bundle: {JSON_NAME} not found")
    try:
        doc = json.loads(json_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BundleError(f"{json_path} is corrupt: {exc}") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT_NAME:
        raise BundleError(f"{json_path} is not an {FORMAT_NAME} file")
    if doc.get("format_version") != FORMAT_VERSION:
        raise BundleError(
            f"{directory} has bundle format version {doc.get('format_version')}; this lsg-deploy "
            f"reads version {FORMAT_VERSION}: re-export it with this version"
        )
    try:
        with np.load(directory / ARRAYS_NAME, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except (OSError, ValueError) as exc:
        raise BundleError(f"{directory / ARRAYS_NAME} cannot be read: {exc}") from None
    try:
        records = {
            key: tuple(_layer_from_json(cls, meta, arrays, key) for meta in doc["layers"][key])
            for key, cls in RECORDS.items()
        }
        return Bundle(
            target=doc["target"],
            timesteps=int(doc["timesteps"]),
            input_shape=tuple(doc["input_shape"]),
            input_max=int(doc["input_max"]),
            float_layers=records["float"],
            loihi_layers=records["loihi"],
            quantization=doc.get("quantization", {}),
            source=doc.get("source", {}),
            format_version=doc["format_version"],
        )
    except (KeyError, TypeError) as exc:
        raise BundleError(f"{json_path} is missing or mistypes {exc}") from None


@contextmanager
def staged_directory(final: Path) -> Iterator[Path]:
    """Yield a fresh sibling directory; move it to ``final`` only if the block succeeds.

    Nothing half-written is ever left at ``final``: on error the staging directory is removed
    and an existing ``final`` is untouched; on success an existing ``final`` is replaced.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
    try:
        yield stage
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    old = None
    if final.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{final.name}.old.", dir=final.parent))
        os.replace(final, old / final.name)
    os.replace(stage, final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
