"""``simulate --backend fake-quant --device D``: the integer network run by the torch fake-quant
path (:func:`export.fake_quant.run_integer`) on a CPU or a GPU, as one more fixed-point backend.

It computes the specification's numbers (spikes, readout membranes, saturation counts) in
torch, each edge's sums in the narrowest type proven exact for them, so that a GPU can run a
large network over a test set in seconds. Being a fast path rather than an independent oracle,
it is :attr:`~hardware.targets.base.Backend.checked`: ``simulate`` compares its runs with the
integer reference's, ``==``, on the checked samples (:func:`lsg_deploy.simulate.checked_samples`).

It lives here, not in ``hardware.targets``, because it needs torch (``hardware`` never imports it).
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from hardware.bundle import Bundle
from hardware.graph import INPUT
from hardware.reference import IntegerRun
from hardware.targets import Backend, BackendError
from hardware.targets.base import Progress
from lsg_deploy.errors import UsageError

FAKE_QUANT = "fake-quant"
DESCRIPTION = ("the torch fake-quant path (export/fake_quant.py) on --device, each edge's sums in float32, float64 "
               "or int64 as their bounds allow; checked == against the reference on --check samples")
AUTO = "auto"  #: CUDA where available, else the CPU (train --device's default)


def resolve(device: str | None) -> Any:
    """The torch device ``--device`` names (None: ``auto``); a :class:`UsageError` for an unknown
    one, ``cuda`` where torch sees no CUDA device, or a missing torch."""
    try:
        from training.distributed import DeviceError, resolve_device
    except ImportError:
        raise UsageError("--backend fake-quant runs in torch, which is not installed (pip install -e \".[train]\")"
                         ) from None
    try:
        return resolve_device(device or AUTO)
    except DeviceError as exc:
        raise UsageError(f"--device: {exc}") from None


def refuses(bundle: Bundle) -> str | None:
    """Why fake-quant cannot run ``bundle``: torch missing, or an edge whose sums no arithmetic it
    has holds exactly (:func:`export.fake_quant.edge_arithmetic`, for the input's ``input_max``)."""
    try:
        from export.fake_quant import edge_arithmetic
    except ImportError:
        return "torch is not installed (pip install -e \".[train]\")"
    graph = bundle.integer_graph
    for edge in graph.edges:
        try:
            edge_arithmetic(edge, graph.input.input_max if edge.source == INPUT else 1)
        except ValueError as exc:
            return f"the bundle's arithmetic is beyond fake-quant: {exc}"
    return None


def backend(device: str | None) -> Backend:
    """The fake-quant backend on ``device`` (``auto``, ``cpu``, ``cuda``, ``cuda:N``; None: auto),
    resolved when it first runs or warms up."""
    where = cache(lambda: resolve(device))

    def warm_up() -> None:
        from export.fake_quant import warm_up as first_run

        first_run(where())

    def run(bundle: Bundle, bundle_dir: Path, inputs: np.ndarray, progress: Progress | None) -> IntegerRun:
        import torch

        from export.fake_quant import run_integer

        try:
            result = run_integer(bundle.integer_graph, inputs, bundle.timesteps, bundle.profile, where())
        except torch.cuda.OutOfMemoryError:
            raise BackendError(f"fake-quant: {where()} ran out of memory on a chunk of {len(inputs)} samples; "
                               f"give a smaller --chunk") from None
        if progress is not None:
            progress(len(inputs))
        return result

    return Backend(FAKE_QUANT, DESCRIPTION, run, refuses=refuses, warm_up=warm_up, checked=True)
