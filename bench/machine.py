"""What every benchmark's ``--json`` file says about where it ran, and how the file is written.

:func:`machine` describes the machine (CPU model, cores, load, the versions of the libraries
that decide the numbers; read from package metadata, so nothing heavy is imported for it), and
:func:`write_json` writes one benchmark's result in the shape all of them share::

    {"bench": "lava_speed", "settings": {...}, "machine": {...}, "agreed": true,
     "results": [{"configuration": ..., "unit": "samples/s", "rate": ..., "peer": ...,
                  "peer_rate": ..., "ratio": ...}, ...]}

``rate`` is ours, ``peer_rate`` the named peer's in the same run, ``ratio = rate / peer_rate``;
``agreed`` whether the results compared with ``==`` were equal (null where the bench compares none).
"""

from __future__ import annotations

import json
import os
import platform
from importlib import metadata
from pathlib import Path
from typing import Any

LIBRARIES = ("numpy", "numba", "torch", "lava-nc", "spikingjelly", "snntorch")


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def machine(device: str | None = None) -> dict[str, Any]:
    """The machine a benchmark ran on: CPU model, cores (and those this process may use), the
    1-minute load average when the bench ended (other work shares these cores), Python and the
    libraries' versions (None: not installed), and the accelerator, if one was used."""
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "cpu": _cpu_model(), "cores": os.cpu_count(), "usable_cores": usable,
        "load_1min": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
        "python": platform.python_version(), "platform": platform.platform(),
        "versions": {name: _version(name) for name in LIBRARIES},
        "device": _device_name(device),
    }


def _device_name(device: str | None) -> str:
    """``cpu``, or a GPU's name (torch's) after its device string."""
    if not device or not device.startswith("cuda"):
        return device or "cpu"
    import torch

    return f"{device}: {torch.cuda.get_device_name(torch.device(device))}"


def result(configuration: str, unit: str, rate: float, peer: str | None = None, peer_rate: float | None = None,
           **extra: Any) -> dict[str, Any]:
    """One configuration's row: our ``rate`` in ``unit``, the peer's and their ratio."""
    ratio = rate / peer_rate if peer_rate else None
    return {"configuration": configuration, "unit": unit, "rate": rate, "peer": peer, "peer_rate": peer_rate,
            "ratio": ratio, **extra}


def write_json(path: Path | str, bench: str, settings: dict[str, Any], results: list[dict[str, Any]],
               agreed: bool | None, device: str | None = None) -> None:
    """Write a benchmark's result (the shape in this module's docstring) to ``path``, whole."""
    doc = {"bench": bench, "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in settings.items()},
           "machine": machine(device), "agreed": agreed, "results": results}
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(doc, indent=2) + "\n")
    tmp.replace(path)
