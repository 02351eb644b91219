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


def _lava_refuses(bundle: Bundle) -> str | None:
    if bundle.profile == LOIHI2:
        return None
    if bundle.profile.name == LOIHI2.name:
        return f"this bundle's profile is named {LOIHI2.name} but its arithmetic is not Lava's"
    return f"Lava computes the Loihi profile only; this bundle is {bundle.profile.name} (target {bundle.target})"


TARGET = Target(
    name="loihi",
    description="Loihi 2 as Lava 0.10 computes it (bundle, model.nir, lava-dl netx model.net)",
    profiles=(LOIHI2,),
    writers=(Writer("netx", NETX_NAME, _write_netx, refuses=skip_reason, bias_exp=NETX_BIAS_EXP),),
    backends=(Backend("lava", "Lava 0.10's bit-accurate CPU backend, in its Python 3.10 environment", _run_lava,
                      refuses=_lava_refuses),),
    resources=resources.model,
)
