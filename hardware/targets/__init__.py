"""Deployment targets as plugins: one :class:`Target` value per target, one registry, ``TARGETS``.

A target is everything that differs between, say, Loihi 2 and an FPGA: its integer profiles
(:class:`hardware.profile.Profile`, the first its default), the artifacts it writes beside the
bundle (:class:`Writer`: lava-dl's netx file, the FPGA tables), the backends that run its bundles
besides the integer reference (:class:`Backend`: Lava, the RTL simulation) and its resource
model. Each lives in one folder, ``hardware/targets/<name>/``, whose ``__init__.py`` defines
``TARGET``; adding a target is that folder and one entry in :data:`TARGETS` (docs/targets.md
walks through a minimal one).

The export (``export/flow.py``), ``simulate`` and the CLI ask this registry what a target offers;
nothing else in the code names a target. A bundle stores its profile whole
(:mod:`hardware.bundle`), so a bundle of a target or profile this registry does not know still
runs on the integer reference (:data:`REFERENCE`) and the fake-quant path.

Numpy only, and light at import: a target's heavy parts (Lava, cocotb, h5py) are imported when
one of its writers or backends runs, because this package is imported inside the Lava interpreter
too.
"""

from __future__ import annotations

from typing import Any

from hardware.bundle import Bundle
from hardware.graph import Graph
from hardware.profile import Profile
from hardware.targets import fpga, loihi
from hardware.targets.base import REFERENCE, Backend, BackendError, Samples, Target, Writer

__all__ = ["TARGETS", "REFERENCE", "Backend", "BackendError", "Samples", "Target", "Writer", "backends", "profiles",
           "target_of", "resources"]

#: every target this copy of lsg-deploy knows, by name: one entry per target folder
TARGETS: dict[str, Target] = {t.name: t for t in (loihi.TARGET, fpga.TARGET)}


def backends() -> dict[str, Backend]:
    """Every backend, by name: the reference first, then each target's."""
    found = {REFERENCE.name: REFERENCE}
    for target in TARGETS.values():
        for backend in target.backends:
            if backend.name in found:
                raise ValueError(f"backend {backend.name} is registered twice")
            found[backend.name] = backend
    return found


def profiles() -> dict[str, Profile]:
    """Every profile of every known target, by name (read from :data:`TARGETS` when called)."""
    return {p.name: p for t in TARGETS.values() for p in t.profiles}


def target_of(profile: Profile) -> Target | None:
    """The known target that owns ``profile`` field for field, or None."""
    for target in TARGETS.values():
        if target.owns(profile):
            return target
    return None


def resources(source: Bundle | Graph, profile: Profile | None = None, **options: Any) -> dict[str, Any] | None:
    """What ``source`` needs on its target, per layer and in total, as a JSON-ready dict (the
    target's model: ``hardware/targets/<name>/resources.py``); None where no known target owns
    the profile or the target has no model.

    ``source``: a :class:`~hardware.bundle.Bundle` (its integer graph in its own profile; a
    ``profile`` given too must be the same) or a :class:`~hardware.graph.Graph` with the
    ``profile`` to count it in (only shapes are read, so a float graph counts as its integer one).
    ``options`` go to the model (Loihi: ``limits``; FPGA: ``device``, ``max_lanes``). Keys:
    ``target``, ``profile``, ``widths``, ``layers`` (one dict per node, in order: ``name``,
    ``kind``, ``neurons``, ``synapses``, ``stored_weights``, ``weight_bits``, ``bias_bits``,
    ``state_bits``, ``parameter_bits``, ``memory_bits``; Loihi adds ``cores``,
    ``cores_by_neurons``, ``cores_by_memory``; FPGA ``breakdown``, ``lanes``,
    ``bram_estimate``), ``total``, ``notes``, and Loihi's ``limits`` or the FPGA's ``device`` and
    ``fits``.
    """
    if isinstance(source, Bundle):
        graph, own = source.integer_graph, source.profile
        if profile is not None and profile != own:
            raise ValueError(f"the bundle is in profile {own.name}, not {profile.name}")
        profile = own
    elif isinstance(source, Graph):
        if profile is None:
            raise ValueError("a graph needs the profile to count it in")
        graph = source
    else:
        raise TypeError(f"resources() takes a Bundle or a Graph, got {type(source).__name__}")
    target = target_of(profile)
    if target is None or target.resources is None:
        return None
    return {"target": target.name, "profile": profile.name, **target.resources(graph, profile, **options)}
