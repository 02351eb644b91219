"""The FPGA target: integer datapaths for FPGA designers.

* profiles: ``fpga-mul`` (the default), ``fpga-shift``, ``fpga-mul4``
  (:mod:`hardware.targets.fpga.profiles`);
* writer: the tables, ``$readmemh`` files, CSV, a C header and ``manifest.json`` stating every
  width and rule (:mod:`hardware.targets.fpga.tables`), and test vectors: test samples as the
  hardware receives them with what the integer reference computes for each
  (:mod:`hardware.targets.fpga.testvectors`, ``testvectors/``);
* writer: ``rtl/``, the IP core (its Verilog, memory images, testbench and Makefile:
  :mod:`hardware.targets.fpga.rtl.ip`);
* backend: ``rtl``, the Verilog design built from those tables alone, simulated by Verilator or
  Icarus Verilog under cocotb through its AXI ports (:mod:`hardware.targets.fpga.rtl`);
* resources: memory bits and block RAM against an iCE40 UP5K (:mod:`hardware.targets.fpga.resources`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from hardware.bundle import Bundle
from hardware.reference import IntegerRun
from hardware.targets.base import Backend, BackendError, Progress, Samples, Target, Writer
from hardware.targets.fpga import resources, testvectors
from hardware.targets.fpga.profiles import FPGA_MUL, FPGA_MUL4, FPGA_SHIFT
from hardware.targets.fpga.rtl import ip
from hardware.targets.fpga.rtl.tools import SIMULATORS
from hardware.targets.fpga.tables import MANIFEST_NAME, write_tables


def _write_tables(bundle: Bundle, directory: Path, samples: Samples | None,
                  progress: Progress | None) -> tuple[str, ...]:
    """The tables and, for ``samples``, their test vectors; the manifest names the dataset (the
    bundle's source data, evaluated on its test split) and records the test vectors."""
    graph, profile, timesteps = bundle.integer_graph, bundle.profile, bundle.timesteps
    data = bundle.source.get("data")
    split = samples.split if samples is not None else testvectors.SPLIT
    dataset = {"name": data["dataset"], "split": split} if isinstance(data, dict) else None
    if dataset is not None and samples is not None and samples.channels:  # event frames: the polarity order
        dataset["channels"] = list(samples.channels)
    vectors, record = (), None
    if samples is not None and len(samples):
        vectors, record = testvectors.write(graph, profile, timesteps, samples, directory, progress)
    return (*vectors, *write_tables(graph, profile, timesteps, directory, dataset, record))


def _run_rtl(bundle: Bundle, bundle_dir: Path, inputs: np.ndarray, progress: Progress | None,
             simulator: str = SIMULATORS[0]) -> IntegerRun:
    """The RTL design built from the bundle's FPGA tables, simulated by Verilator or Icarus under
    cocotb through its AXI ports (:mod:`hardware.targets.fpga.rtl.backend`), in the build its
    ``rtl/`` holds (``build.json``: the SPRAM build loads its weights through the load port
    first); its stats hold the design's clock cycles per timestep."""
    from hardware.targets.fpga.rtl.backend import RtlEnvironmentError, RtlRunError, run_rtl

    build = ip.read_build(bundle_dir)
    try:
        run = run_rtl(bundle_dir, inputs, max_lanes=build.max_lanes, simulator=simulator, weights=build.weights)
    except RtlEnvironmentError as exc:
        raise BackendError(str(exc)) from None
    except RtlRunError as exc:
        raise BackendError(exc.summary, exc.detail) from None
    run.stats["weights"] = build.weights  # (the lanes are in the stats already)
    if progress is not None:
        progress(len(inputs))
    return run


def _rtl_refuses(bundle: Bundle) -> str | None:
    if not TARGET.owns(bundle.profile):
        return (f"the RTL design computes the FPGA profiles ({', '.join(TARGET.profile_names)}); this bundle is "
                f"{bundle.profile.name} (target {bundle.target}): export it with --target fpga")
    if "fpga_tables" not in bundle.artifacts or "file" not in bundle.artifacts["fpga_tables"]:
        return "the bundle has no FPGA tables (manifest.json and .mem files): export it with --target fpga"
    return None


TARGET = Target(
    name="fpga",
    description="an FPGA integer datapath (bundle, $readmemh/CSV/C tables and manifest.json, model.nir)",
    profiles=(FPGA_MUL, FPGA_SHIFT, FPGA_MUL4),
    writers=(Writer("fpga_tables", MANIFEST_NAME, _write_tables, test_samples=testvectors.DEFAULT_COUNT),
             # after the tables, which it reads: the IP core, its memory images, testbench and Makefile
             Writer("fpga_rtl", ip.MAIN_FILE, ip.write_rtl, options=("weights", "lanes"))),
    backends=(Backend("rtl", "the FPGA RTL design (hardware/targets/fpga/rtl) built from the FPGA tables, "
                      "simulated by Verilator (--simulator icarus: Icarus Verilog) under cocotb through its AXI "
                      "ports; reports clock cycles per timestep", _run_rtl, refuses=_rtl_refuses,
                      simulators=SIMULATORS),),
    resources=resources.model,
)
