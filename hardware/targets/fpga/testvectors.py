"""Test vectors for an FPGA export: test samples as the hardware receives them, and what the
integer reference (:func:`hardware.reference.run`) computes for each, in ``DIR/testvectors/``.

N samples, T steps, K readout neurons (classes), L hidden layers in the graph's node order (the
readout is not among them), F = C*H*W words per input frame::

    inputs.npz     inputs   uint8 (N, C, H, W) direct (pixel) input, or (N, T, C, H, W) event
                            frames: exactly the integers the integer graph is fed
                   labels   int64 (N,) the dataset's labels
                   indices  int64 (N,) each sample's position in the dataset's split
    inputs.mem     $readmemh, no comment line: one word per line, ceil(input_bits / 4) hex digits
                   (the manifest's ``profile.input.bits``); per sample, per frame (direct: ONE
                   frame, the core reuses it every step; event frames: T frames, frame t drives
                   step t), the frame's F words in (C, H, W) row-major order
    expected.npz   classes int64 (N,): argmax of the final readout membranes, the LOWEST index on
                   ties; readout int64 (N, K): membranes after the last step; readout_steps int64
                   (N, T, K): after every step; spike_counts int64 (N, T, L): spikes of each hidden
                   layer in each step; layers str (L,): the hidden layers' names, in order
    expected.mem   $readmemh, 32-bit words (8 hex digits, two's complement), R = 1 + K + T*L per
                   sample: the class, the K final membranes, the spike counts t-major (t = 0:
                   layer 0 .. L-1, t = 1: ...); sample n starts at word n*R; its first 1 + K words
                   are the beats of the core's result stream for that sample

The ``.npz`` files are written byte for byte the same for the same values (stored, not
compressed, with a fixed date), so an export is reproducible and its digests too.

The tables' ``manifest.json`` carries the record (:func:`section`): ``"testvectors"``: count,
dataset, split, indices, words per frame, frames per sample, result words per sample and each
file's SHA-256; and ``"dataset"``: the name and split of the data the export was evaluated on.

Checking (:func:`recorded`, run by :func:`hardware.targets.fpga.tables.check_tables`): digests
alone can be recomputed by whoever edits a file, so the check renders the vectors again from
the stored inputs (``inputs.npz``'s inputs, labels and indices) through the integer reference
and compares every file byte for byte, as it does the tables; the manifest's record is rebuilt
from that rendering. Only the inputs' provenance (that they are the dataset's samples at those
indices) cannot be checked without the data; ``simulate`` on the same bundle reads them again.
Numpy only.
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hardware import reference
from hardware.fixed_point import bits_unsigned
from hardware.graph import BundleError, Graph
from hardware.profile import Profile
from hardware.targets.base import Samples
from hardware.targets.fpga.tables import MANIFEST_NAME, to_words

DIRECTORY = "testvectors"
INPUTS_NPZ, INPUTS_MEM, EXPECTED_NPZ, EXPECTED_MEM = "inputs.npz", "inputs.mem", "expected.npz", "expected.mem"
FILES = (INPUTS_NPZ, INPUTS_MEM, EXPECTED_NPZ, EXPECTED_MEM)
SPLIT = "test"  #: the split the export draws its test vectors from, and ``simulate`` evaluates on
DEFAULT_COUNT = 20  #: test vectors an FPGA export writes unless told otherwise
RESULT_BITS = 32  #: the width of an ``expected.mem`` word
CHUNK = 64  #: samples the reference runs at once (and after which progress is reported)
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)


def geometry(graph: Graph, timesteps: int) -> dict[str, int]:
    """Words per input frame (F), frames per sample (1 direct, T event frames) and result words
    per sample (R = 1 + K + T*L) of ``graph``'s test vectors."""
    return {"words_per_frame": int(np.prod(graph.input.shape)),
            "frames_per_sample": timesteps if graph.input.per_step else 1,
            "result_words_per_sample": 1 + graph.readout.neurons + timesteps * len(graph.hidden)}


def section(graph: Graph, timesteps: int, samples: Samples, digests: dict[str, str]) -> dict[str, Any]:
    """The manifest's ``"testvectors"`` record (key order fixed: the manifest is compared byte
    for byte)."""
    return {"count": len(samples), "dataset": samples.dataset, "split": samples.split,
            "indices": [int(i) for i in samples.indices], **geometry(graph, timesteps),
            "files": {name: digests[name] for name in FILES}}


def npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    """An ``.npz`` (``np.load`` reads it) that is the same bytes for the same arrays: stored
    members, a fixed date, the keys in the order given."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for key, value in arrays.items():
            with archive.open(zipfile.ZipInfo(f"{key}.npy", date_time=_ZIP_DATE), "w") as member:
                np.lib.format.write_array(member, np.asarray(value), allow_pickle=False)
    return buffer.getvalue()


def _hex_lines(words: list[str]) -> bytes:
    return ("\n".join(words) + "\n").encode() if words else b""


def expected(graph: Graph, profile: Profile, timesteps: int, inputs: np.ndarray,
             progress: Callable[[int], object] | None = None) -> dict[str, np.ndarray]:
    """``expected.npz``'s arrays for ``inputs``, from :func:`hardware.reference.run`, a chunk
    of :data:`CHUNK` samples at a time (``progress(n)`` after each)."""
    k, hidden = graph.readout.neurons, graph.hidden
    readout = np.zeros((len(inputs), timesteps, k), np.int64)
    counts = np.zeros((len(inputs), timesteps, len(hidden)), np.int64)
    for start in range(0, len(inputs), CHUNK):
        run = reference.run(graph, inputs[start:start + CHUNK], timesteps, profile)
        stop = start + len(run.readout)
        readout[start:stop] = run.readout
        for i, node in enumerate(hidden):
            counts[start:stop, :, i] = run.spikes[node.name].sum(axis=2)
        if progress is not None:
            progress(stop - start)
    final = readout[:, -1]
    return {"classes": final.argmax(axis=1).astype(np.int64),  # numpy's argmax: the first, lowest, maximum
            "readout": final, "readout_steps": readout, "spike_counts": counts,
            "layers": np.array([n.name for n in hidden], dtype=str)}


def render(graph: Graph, profile: Profile, timesteps: int, samples: Samples,
           progress: Callable[[int], object] | None = None) -> tuple[dict[str, bytes], dict[str, Any]]:
    """The test vectors of ``samples``: file name -> content (:data:`FILES`) and the manifest's
    record (:func:`section`)."""
    inputs = np.asarray(samples.inputs)
    if not (np.issubdtype(inputs.dtype, np.integer) or inputs.dtype == bool):
        raise BundleError(f"test vector inputs must be integers, got dtype {inputs.dtype}")
    if graph.input.input_max > np.iinfo(np.uint8).max:
        raise BundleError(f"test vector inputs are stored as uint8; this input reaches {graph.input.input_max}")
    graph.input.steps(inputs, timesteps)  # (N, C, H, W) or (N, T, C, H, W) in [0, input_max], or a ValueError
    inputs = inputs.astype(np.uint8)
    result = expected(graph, profile, timesteps, inputs, progress)
    digits = (bits_unsigned(graph.input.input_max) + 3) // 4
    rows = np.concatenate([result["classes"][:, None], result["readout"],
                           result["spike_counts"].reshape(len(inputs), -1)], axis=1)  # t-major counts
    files = {
        INPUTS_NPZ: npz_bytes({"inputs": inputs, "labels": np.asarray(samples.labels, np.int64),
                               "indices": np.asarray(samples.indices, np.int64)}),
        INPUTS_MEM: _hex_lines([format(int(v), f"0{digits}x") for v in inputs.ravel().tolist()]),
        EXPECTED_NPZ: npz_bytes(result),
        EXPECTED_MEM: _hex_lines(to_words(rows, RESULT_BITS)),
    }
    digests = {name: hashlib.sha256(data).hexdigest() for name, data in files.items()}
    return files, section(graph, timesteps, samples, digests)


def write(graph: Graph, profile: Profile, timesteps: int, samples: Samples, directory: Path,
          progress: Callable[[int], object] | None = None) -> tuple[tuple[str, ...], dict[str, Any]]:
    """Write ``directory/testvectors/`` (made here) for ``samples``; returns the names written,
    relative to ``directory`` (``testvectors/inputs.npz``, ...), and the manifest's record."""
    files, record = render(graph, profile, timesteps, samples, progress)
    folder = Path(directory) / DIRECTORY
    folder.mkdir()
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return tuple(f"{DIRECTORY}/{name}" for name in files), record


def read(directory: Path) -> dict[str, np.ndarray]:
    """The arrays of ``directory/testvectors``' two ``.npz`` files, in one mapping."""
    arrays: dict[str, np.ndarray] = {}
    for name in (INPUTS_NPZ, EXPECTED_NPZ):
        path = Path(directory) / DIRECTORY / name
        try:
            with np.load(path, allow_pickle=False) as npz:
                arrays.update({key: npz[key] for key in npz.files})
        except (OSError, ValueError, zipfile.BadZipFile) as exc:
            raise BundleError(f"{path} cannot be read: {exc}") from None
    return arrays


@dataclass(frozen=True)
class Recorded:
    """What an export's manifest records beside the tables, checked (:func:`recorded`): the
    ``"dataset"`` section, the ``"testvectors"`` section and the test vector files (names
    relative to the export), both as the export writes them; None / empty where it has none."""

    dataset: dict[str, str] | None = None
    testvectors: dict[str, Any] | None = None
    files: dict[str, bytes] | None = None


def _manifest(directory: Path) -> dict[str, Any]:
    try:
        doc = json.loads((Path(directory) / MANIFEST_NAME).read_text())
    except (OSError, ValueError):
        return {}  # check_tables names what is wrong with the manifest itself
    return doc if isinstance(doc, dict) else {}


def _dataset(value: Any, where: str) -> dict[str, Any]:
    names = isinstance(value, dict) and all(isinstance(value.get(k), str) and value[k] for k in ("name", "split"))
    channels = value.get("channels", ["-"]) if isinstance(value, dict) else None
    if not (names and set(value) <= {"name", "split", "channels"} and isinstance(channels, list) and channels
            and all(isinstance(c, str) and c for c in channels)):
        raise BundleError(f"{where} must be {{\"name\": DATASET, \"split\": SPLIT[, \"channels\": [...]]}}, "
                          f"got {json.dumps(value)}")
    return dict(value)


def recorded(graph: Graph, profile: Profile, timesteps: int, directory: Path) -> Recorded:
    """The ``"dataset"`` and ``"testvectors"`` sections of ``directory``'s manifest as the
    export writes them, and the test vector files rendered again from the stored inputs
    (``inputs.npz``): :func:`hardware.targets.fpga.tables.check_tables` compares both with what is
    there, byte for byte. A record that names no dataset, or test vectors whose inputs cannot be
    read, is a :class:`BundleError`."""
    manifest = _manifest(directory)
    where = f"{Path(directory) / MANIFEST_NAME}"
    dataset = _dataset(manifest["dataset"], f"{where}: dataset") if "dataset" in manifest else None
    record = manifest.get("testvectors")
    if record is None:
        return Recorded(dataset)
    if not isinstance(record, dict):
        raise BundleError(f"{where}: testvectors must be an object, got {json.dumps(record)}")
    named = _dataset({"name": record.get("dataset"), "split": record.get("split")}, f"{where}: testvectors")
    stored = read(directory)
    try:
        samples = Samples(stored["inputs"], stored["labels"], stored["indices"], named["name"], named["split"])
        files, rebuilt = render(graph, profile, timesteps, samples)
    except (KeyError, ValueError) as exc:  # BundleError is a ValueError
        raise BundleError(f"{Path(directory) / DIRECTORY / INPUTS_NPZ} does not hold test vector inputs for this "
                          f"network: {exc}") from None
    return Recorded(dataset, rebuilt, {f"{DIRECTORY}/{name}": data for name, data in files.items()})
