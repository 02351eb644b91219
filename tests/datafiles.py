"""Tiny dataset files in their real on-disk formats, for tests of the loaders of a user's data:
CIFAR-10/100 pickles in torchvision's layout (:func:`write_cifar`) and CIFAR10-DVS as AEDAT4
files in tonic's layout (:func:`write_cifar10_dvs`).

AEDAT4 (iniVation's DV software; read by the ``aedat`` package, which ``tonic.io.read_aedat4``
calls), as ``aedat`` 2.x's ``src/aedat_core.rs`` and ``flatbuffers/*.fbs`` parse it:

* the magic line ``#!AER-DAT4.0\\r\\n``;
* the IO header: a little-endian uint32 byte count, then that many bytes of an ``Ioheader``
  flatbuffer (identifier ``IOHE``; ``compression: int32 = 0`` (none), ``file_data_position:
  int64 = -1`` (no table of packets at the end: read to the end of the file), ``description:
  string``), which is exactly what ``FinishSizePrefixed`` writes. The description is DV's XML:
  ``<dv>`` as the document's first node, holding ``<node name="outInfo">`` with one
  ``<node name="<stream id>">`` per stream, whose ``<attr key="typeIdentifier">`` is ``EVTS`` and
  whose ``<node name="info">`` holds ``<attr key="sizeX">`` and ``sizeY``;
* packets to the end of the file: uint32 stream id, uint32 byte count, then a *size-prefixed*
  flatbuffer (the reader runs the flatbuffers verifier on it) with identifier ``EVTS`` whose root
  ``EventPacket`` table has one field, ``elements``: a vector of 16-byte ``Event`` structs, aligned
  to 8: ``t`` int64 (microseconds), ``x`` int16, ``y`` int16, ``on`` bool, 3 bytes of padding.

The reader returns each packet's events as a structured array ``t`` uint64, ``x``, ``y`` uint16,
``on`` bool, and tonic concatenates the packets of the stream with the smallest id.
"""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path

import flatbuffers
import numpy as np

AEDAT4_MAGIC = b"#!AER-DAT4.0\r\n"
#: the flatbuffers ``Event`` struct, byte for byte (little endian, 3 bytes of padding after ``on``)
AEDAT4_EVENT = np.dtype({"names": ["t", "x", "y", "on"], "formats": ["<i8", "<i2", "<i2", "?"],
                         "offsets": [0, 8, 10, 12], "itemsize": 16})
AEDAT4_EVENT_ALIGNMENT = 8
#: tonic 1.7's ``CIFAR10DVS.classes``, in label order; also the names of the dataset's class folders
CIFAR10_DVS_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
CIFAR10_DVS_SENSOR = 128
#: what the synthetic CIFAR10-DVS samples hold: fields of ``tonic.io.events_struct``, any order
EVENT_DTYPE = np.dtype([("t", np.int64), ("x", np.int16), ("y", np.int16), ("p", bool)])


def _stream_description(width: int, height: int) -> str:
    """DV's XML for one event stream with id 0 (the attributes the DV recorder writes; the
    reader needs only ``typeIdentifier``, ``sizeX`` and ``sizeY``)."""
    return (
        '<dv version="2.0"><node name="outInfo" path="/mainloop/Recorder/outInfo/">'
        '<node name="0" path="/mainloop/Recorder/outInfo/0/">'
        '<attr key="compression" type="string">NONE</attr>'
        '<attr key="originalModuleName" type="string">capture</attr>'
        '<attr key="originalOutputName" type="string">events</attr>'
        '<attr key="typeDescription" type="string">Array of events (polarity ON/OFF).</attr>'
        '<attr key="typeIdentifier" type="string">EVTS</attr>'
        '<node name="info" path="/mainloop/Recorder/outInfo/0/info/">'
        f'<attr key="sizeX" type="int">{width}</attr><attr key="sizeY" type="int">{height}</attr>'
        '<attr key="source" type="string">lsg-deploy tests</attr>'
        "</node></node></node></dv>"
    )


def _io_header(width: int, height: int) -> bytes:
    """The size-prefixed ``IOHE`` flatbuffer: no compression, no packet table, the XML."""
    builder = flatbuffers.Builder(1024)
    description = builder.CreateString(_stream_description(width, height))
    builder.StartObject(3)
    builder.PrependInt64Slot(1, -1, -1)  # file_data_position (the default, so not stored)
    builder.PrependUOffsetTRelativeSlot(2, description, 0)
    builder.PrependInt32Slot(0, 0, 0)  # compression: None (the default, so not stored)
    builder.FinishSizePrefixed(builder.EndObject(), b"IOHE")
    return bytes(builder.Output())


def _event_packet(events: np.ndarray) -> bytes:
    """The size-prefixed ``EVTS`` flatbuffer of one packet.

    A vector of structs is its elements' bytes after a uint32 count; they are copied in at once
    (as the builder's own ``CreateNumpyVector`` does for vectors of scalars): prepending the four
    fields of every struct one by one takes ~1 s per 300k events.
    """
    records = np.zeros(len(events), AEDAT4_EVENT)
    records["t"], records["x"], records["y"], records["on"] = events["t"], events["x"], events["y"], events["p"]
    payload = records.tobytes()
    builder = flatbuffers.Builder(len(payload) + 64)
    builder.StartVector(AEDAT4_EVENT.itemsize, len(records), AEDAT4_EVENT_ALIGNMENT)
    builder.head -= len(payload)
    builder.Bytes[builder.head:builder.head + len(payload)] = payload
    elements = builder.EndVector()
    builder.StartObject(1)
    builder.PrependUOffsetTRelativeSlot(0, elements, 0)
    builder.FinishSizePrefixed(builder.EndObject(), b"EVTS")
    return bytes(builder.Output())


def write_aedat4(path: Path, events: np.ndarray, width: int = 128, height: int = 128, packet_size: int = 4096) -> None:
    """Write ``events`` (structured: ``t`` int microseconds, non-decreasing, ``x``, ``y``, ``p``
    0/1) as an AEDAT4 file with one event stream (id 0) of a ``width`` x ``height`` sensor, in
    packets of at most ``packet_size`` events (see the module docstring for the layout)."""
    if len(events) == 0:
        raise ValueError("an AEDAT4 event stream needs at least one event (the reader rejects empty packets)")
    if np.any(np.diff(events["t"].astype(np.int64)) < 0):
        raise ValueError("event timestamps must be non-decreasing")
    if events["x"].min() < 0 or events["x"].max() >= width or events["y"].min() < 0 or events["y"].max() >= height:
        raise ValueError(f"event coordinates outside the {width}x{height} sensor")
    parts = [AEDAT4_MAGIC, _io_header(width, height)]
    for start in range(0, len(events), packet_size):
        packet = _event_packet(events[start:start + packet_size])
        parts += [np.array([0, len(packet)], "<u4").tobytes(), packet]
    Path(path).write_bytes(b"".join(parts))


def write_aedat4_header_only(path: Path, width: int = 128, height: int = 128) -> None:
    """An AEDAT4 file with its magic line and IO header (one event stream) and no packets: a
    recording that holds no events, which :func:`write_aedat4` refuses to write."""
    Path(path).write_bytes(AEDAT4_MAGIC + _io_header(width, height))


def cifar10_dvs_events(label: int, rng: np.random.Generator, n: int, duration_us: int = 1_000_000) -> np.ndarray:
    """``n`` events of a synthetic CIFAR10-DVS sample of class ``label``: a 13x13 patch crossing
    the sensor's centre in the direction ``label * 36`` degrees, ON events on its leading half and
    OFF on its trailing half (an edge moving that way), and 10 % uniform noise."""
    t = np.sort(rng.integers(0, duration_us, n))
    angle = 2 * np.pi * label / len(CIFAR10_DVS_CLASSES)
    direction = np.array([np.cos(angle), np.sin(angle)])
    centre = CIFAR10_DVS_SENSOR / 2 + (t[:, None] / duration_us - 0.5) * 80 * direction
    offset = rng.integers(-6, 7, (n, 2))
    xy = np.rint(centre + offset).astype(np.int64)
    on = offset @ direction > 0
    noise = rng.random(n) < 0.1
    xy[noise] = rng.integers(0, CIFAR10_DVS_SENSOR, (int(noise.sum()), 2))
    on[noise] = rng.random(int(noise.sum())) < 0.5
    events = np.zeros(n, EVENT_DTYPE)
    events["t"], events["p"] = t, on
    events["x"], events["y"] = np.clip(xy, 0, CIFAR10_DVS_SENSOR - 1).T
    return events


def write_cifar10_dvs(root: Path, per_class: int = 100, events_per_sample: int = 300, seed: int = 0) -> Path:
    """A synthetic CIFAR10-DVS in the layout ``tonic.datasets.CIFAR10DVS(save_to=root)`` reads
    without downloading; returns its folder ``root/CIFAR10DVS``.

    ``<class>/cifar10_<class>_<i>.aedat4`` for ``i < per_class`` (the published files' names),
    each :func:`cifar10_dvs_events` of ``numpy.random.default_rng((seed, label, i))``. tonic
    downloads unless ``CIFAR10DVS.zip`` is a file and >= 1000 ``*.aedat4`` files are there; it
    never opens the zip, so a small real one stands in for the 2.7 GB archive.
    """
    folder = Path(root) / "CIFAR10DVS"
    folder.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(folder / "CIFAR10DVS.zip", "w") as archive:
        archive.writestr("README.txt", "stand-in for the published archive; the class folders hold the test's data\n")
    for label, name in enumerate(CIFAR10_DVS_CLASSES):
        (folder / name).mkdir(exist_ok=True)
        for i in range(per_class):
            events = cifar10_dvs_events(label, np.random.default_rng((seed, label, i)), events_per_sample)
            write_aedat4(folder / name / f"cifar10_{name}_{i}.aedat4", events)
    return folder


# --- CIFAR-10 / CIFAR-100 (torchvision's layout) -------------------------------------------------

CIFAR10_FILES = (*(f"data_batch_{i}" for i in range(1, 6)), "test_batch")


def cifar_images(count: int, classes: int, seed: int) -> tuple[np.ndarray, list[int]]:
    """``count`` 32x32 RGB images (N, 3072) uint8, R/G/B planes, and their labels: each class a
    colour ramp of its own direction plus noise, so a tiny net can tell them apart."""
    rng = np.random.default_rng(seed)
    labels = [int(v) for v in rng.integers(0, classes, count)]
    yy, xx = np.mgrid[0:32, 0:32] / 31.0
    images = np.empty((count, 3, 32, 32), np.uint8)
    for i, label in enumerate(labels):
        angle = 2 * np.pi * label / classes
        ramp = np.cos(angle) * xx + np.sin(angle) * yy
        for c in range(3):
            plane = 128 + 100 * np.sin(ramp * (c + 1) * 2) + rng.normal(0, 12, (32, 32))
            images[i, c] = np.clip(plane, 0, 255).astype(np.uint8)
    return images.reshape(count, 3072), labels


def _pickle(path: Path, entry: dict) -> None:
    with open(path, "wb") as f:
        pickle.dump(entry, f, protocol=2)


def write_cifar(root: Path, name: str = "cifar10", per_file: int = 20, seed: int = 0,
                test_images: int | None = None) -> Path:
    """Tiny CIFAR files in torchvision's layout under ``root``: CIFAR-10's five training batches
    and test batch, or CIFAR-100's train and test, ``per_file`` images each (CIFAR-10's test
    batch: ``test_images``, if given), with the meta file. Their MD5 sums are not the published
    ones: load them with ``verify=False``."""
    if name == "cifar10":
        folder = root / "cifar-10-batches-py"
        folder.mkdir(parents=True, exist_ok=True)
        for n, file in enumerate(CIFAR10_FILES):
            count = test_images if file == "test_batch" and test_images is not None else per_file
            data, labels = cifar_images(count, 10, seed + n)
            _pickle(folder / file, {"batch_label": f"fixture batch {n}", "labels": labels, "data": data,
                                    "filenames": [f"img_{n}_{i}.png" for i in range(count)]})
        _pickle(folder / "batches.meta", {"num_cases_per_batch": per_file, "num_vis": 3072,
                                          "label_names": ["airplane", "automobile", "bird", "cat", "deer", "dog",
                                                          "frog", "horse", "ship", "truck"]})
    else:
        folder = root / "cifar-100-python"
        folder.mkdir(parents=True, exist_ok=True)
        for n, file in enumerate(("train", "test")):
            data, labels = cifar_images(per_file, 100, seed + n)
            _pickle(folder / file, {"filenames": [f"img_{n}_{i}.png" for i in range(per_file)],
                                    "batch_label": f"fixture {file}", "fine_labels": labels,
                                    "coarse_labels": [label // 5 for label in labels], "data": data})
        _pickle(folder / "meta", {"fine_label_names": [f"fine{i}" for i in range(100)],
                                  "coarse_label_names": [f"coarse{i}" for i in range(20)]})
    return folder
