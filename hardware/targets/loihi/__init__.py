"""The Loihi target: Loihi 2 as Lava 0.10.0 computes it.

* profile: ``loihi2-lava-0.10-fixed_pt`` (:mod:`hardware.targets.loihi.profile`);
* writer: lava-dl's netx HDF5, ``model.net`` (:mod:`hardware.targets.loihi.netx`), for networks
  netx can hold; it fixes ``bias_exp = 6``, which quantization uses where the biases fit;
* backend: ``lava``, Lava's bit-accurate CPU models in their own Python 3.10 environment
  (:mod:`hardware.targets.loihi.lava`);
* resources: neurocores and chips (:mod:`hardware.targets.loihi.resources`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from hardware.bundle import Bundle
from hardware.graph import Graph
from hardware.reference import IntegerRun
from hardware.targets.base import Backend, BackendError, Progress, Target, Writer
from hardware.targets.loihi import resources
from hardware.targets.loihi.netx import NETX_BIAS_EXP, NETX_NAME, skip_reason, write_netx
from hardware.targets.loihi.profile import LOIHI2


def _write_netx(bundle: Bundle, directory: Path) -> tuple[str, ...]:
    write_netx(bundle, directory / NETX_NAME)
    return (NETX_NAME,)


def _run_lava(bundle: Bundle, bundle_dir: Path, inputs: np.ndarray, progress: Progress | None) -> IntegerRun:
    from hardware.targets.loihi.lava.backend import LavaLimitError
    from hardware.targets.loihi.lava.parent import LavaEnvironmentError, LavaRunError, run_lava_bundle

    try:
        return run_lava_bundle(bundle_dir, inputs)
    except (LavaEnvironmentError, LavaLimitError) as exc:
        raise BackendError(str(exc)) from None
    except LavaRunError as exc:
        raise BackendError(exc.summary, exc.detail) from None


def readout_refuses(graph: Graph, timesteps: int) -> str | None:
    """The specification's readout never fires (:meth:`hardware.profile.Profile.lif_step`); Lava's
    LIF cannot turn its threshold off, so Lava computes the specification only where the readout's
    membrane cannot pass its threshold: :meth:`~hardware.profile.Profile.readout_peak` at most
    ``vth << vth_shift`` (Loihi fires above it)."""
    node = graph.readout
    reach, level = LOIHI2.readout_peak(graph, timesteps), int(node.vth) << LOIHI2.vth_shift
    if reach <= level:
        return None
    return (f"readout {node.name}: its membrane can reach {reach} in {timesteps} steps, past the threshold "
            f"{level} that Lava's LIF cannot turn off, where the specification's readout never fires")


def _lava_refuses(bundle: Bundle) -> str | None:
    if bundle.profile != LOIHI2:
        if bundle.profile.name == LOIHI2.name:
            return f"this bundle's profile is named {LOIHI2.name} but its arithmetic is not Lava's"
        return f"Lava computes the Loihi profile only; this bundle is {bundle.profile.name} (target {bundle.target})"
    return readout_refuses(bundle.integer_graph, bundle.timesteps)


TARGET = Target(
    name="loihi",
    description="Loihi 2 as Lava 0.10 computes it (bundle, model.nir, lava-dl netx model.net)",
    profiles=(LOIHI2,),
    writers=(Writer("netx", NETX_NAME, _write_netx, refuses=skip_reason, bias_exp=NETX_BIAS_EXP),),
    backends=(Backend("lava", "Lava 0.10's bit-accurate CPU backend, in its Python 3.10 environment", _run_lava,
                      refuses=_lava_refuses),),
    resources=resources.model,
    refuses=readout_refuses,
)
