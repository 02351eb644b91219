"""The target protocol: what a target is (:class:`Target`), the artifacts it writes
(:class:`Writer`) and the backends that run its bundles (:class:`Backend`), and the one backend
every bundle has, the integer reference (:data:`REFERENCE`). The registry is
:data:`hardware.targets.TARGETS`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hardware.bundle import Bundle
from hardware.graph import BundleError, Graph
from hardware.profile import Profile
from hardware.reference import IntegerRun

Progress = Callable[[int], object]  #: called with the number of samples just finished


class BackendError(RuntimeError):
    """A backend could not run (its tools or environment are missing, or its run failed):
    ``summary`` is one line for the user, ``detail`` the tool's log (may be empty)."""

    def __init__(self, summary: str, detail: str = ""):
        super().__init__(summary + (f"\n{detail}" if detail else ""))
        self.summary, self.detail = summary, detail


@dataclass(frozen=True)
class Samples:
    """Test samples handed to the export: encoded inputs as the integer graph receives them
    ((N, C, H, W) direct, (N, T, C, H, W) event frames), their labels, their positions in the
    dataset's split, the dataset's name and the split's."""

    inputs: np.ndarray
    labels: np.ndarray
    indices: np.ndarray
    dataset: str
    split: str = "test"
    channels: tuple[str, ...] = ()  #: what each input channel carries, in order (event frames: polarity)

    def __post_init__(self) -> None:
        if not (len(self.inputs) == len(self.labels) == len(self.indices)):
            raise BundleError(f"test vectors need one label and one index per input, got {len(self.inputs)} inputs, "
                              f"{len(self.labels)} labels, {len(self.indices)} indices")
        if not isinstance(self.dataset, str) or not self.dataset or not isinstance(self.split, str) or not self.split:
            raise BundleError(f"test vectors name their dataset and split, got {self.dataset!r}, {self.split!r}")

    def __len__(self) -> int:
        return len(self.inputs)


def _never(_: Any) -> str | None:
    return None


def _nothing() -> None:
    return None


def _computes_any(_: Graph, __: int) -> str | None:
    return None


@dataclass(frozen=True)
class Writer:
    """An artifact a target writes into the export directory beside the bundle."""

    name: str  #: its key in the bundle's ``artifacts``
    file: str  #: its main file, recorded as ``{"file": file}``
    #: ``(bundle, directory) -> every file written``, into the export's staging directory
    write: Callable[[Bundle, Path], tuple[str, ...]]
    #: why it cannot hold a folded graph (the artifact is then skipped, the reason recorded), or None
    refuses: Callable[[Graph], str | None] = _never
    #: the one bias exponent the artifact can hold, which quantization then uses where it can
    bias_exp: int | None = None
    #: how many test samples it writes by default (the FPGA test vectors); 0: none, and ``write``
    #: takes none. Otherwise ``write(bundle, directory, samples, progress)``: the export's
    #: :class:`Samples` (None: write none) and ``progress(n)`` after every ``n`` samples, or None
    test_samples: int = 0
    #: the export options it takes (the FPGA RTL's ``weights``, ``lanes``), passed to ``write`` as
    #: keywords where the user gave them; ``write`` refuses a bad value with a BundleError
    options: tuple[str, ...] = ()


@dataclass(frozen=True)
class Backend:
    """A way to run a bundle's integer network besides the reference, compared with it bit for bit."""

    name: str
    description: str
    #: ``(bundle, its directory, encoded inputs, progress or None) -> run``; raises :class:`BackendError`
    #: or :class:`~hardware.graph.BundleError`
    run: Callable[[Bundle, Path, np.ndarray, Progress | None], IntegerRun]
    #: why it cannot run a bundle, or None where it can
    refuses: Callable[[Bundle], str | None] = _never
    #: one-time set-up, done (and timed) before the run is timed: compiling or loading kernels
    warm_up: Callable[[], None] = _nothing
    #: the simulators it can run on, the first its default (``simulate --simulator``); where there
    #: are any, ``run`` takes the chosen one as the keyword ``simulator``
    simulators: tuple[str, ...] = ()
    #: a faster computation of the specification rather than an independent oracle: run alone,
    #: its runs are still compared with the reference's on the checked samples (``simulate --check``)
    checked: bool = False


@dataclass(frozen=True)
class Target:
    name: str
    description: str
    profiles: tuple[Profile, ...]  #: the first is the default
    writers: tuple[Writer, ...] = ()
    backends: tuple[Backend, ...] = ()
    #: ``(graph, profile, **options) -> dict``: what the network needs on this target (see
    #: :func:`resources`); None where the target has no model
    resources: Callable[..., dict[str, Any]] | None = None
    #: ``(integer graph, timesteps) -> reason or None``: a network the target's hardware would not
    #: compute as the profile specifies it (the export refuses it, with the reason)
    refuses: Callable[[Graph, int], str | None] = _computes_any

    def __post_init__(self) -> None:
        if not self.profiles:
            raise ValueError(f"target {self.name} has no profile")
        grids = [w for w in self.writers if w.bias_exp is not None]
        if len(grids) > 1:
            raise ValueError(f"target {self.name}: at most one writer may fix the bias exponent")

    @property
    def default_profile(self) -> Profile:
        return self.profiles[0]

    @property
    def profile_names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.profiles)

    def profile(self, name: str | None) -> Profile:
        """The profile called ``name`` (None: the default); a ValueError names the choices."""
        if name is None:
            return self.default_profile
        for p in self.profiles:
            if p.name == name:
                return p
        raise ValueError(f"target {self.name} offers {', '.join(self.profile_names)}; got {name!r}")

    def owns(self, profile: Profile) -> bool:
        """Whether ``profile`` is one of this target's, field for field (a bundle's stored profile
        with a known name but other arithmetic is not)."""
        return any(p == profile for p in self.profiles)


def _run_reference(bundle: Bundle, bundle_dir: Path, inputs: np.ndarray, progress: Progress | None) -> IntegerRun:
    """The integer reference's fast path (:mod:`hardware.fast_reference`: the same numbers as
    :func:`hardware.reference.run`, which the tests compare it with, bit for bit)."""
    from hardware import fast_reference

    return fast_reference.run(bundle.integer_graph, inputs, bundle.timesteps, bundle.profile, progress=progress)


def _warm_up_reference() -> None:
    from hardware import fast_reference

    fast_reference.warm_up()


#: the integer reference: every bundle, whatever its target, in the profile it stores
REFERENCE = Backend("reference", "the integer reference (hardware/reference.py; its fast path "
                    "hardware/fast_reference.py), in the bundle's own profile", _run_reference,
                    warm_up=_warm_up_reference)
