"""Golden vectors: what Lava and the RTL computed on small seeded networks, recorded, so that the
other tests compare against the oracles without starting them.

One file per network and oracle, ``tests/goldens/<oracle>-<profile>-seed<seed>.npz`` (RTL runs of
random graphs: ``rtl-graph-<profile>-seed<seed>.npz``):

* ``meta``: JSON text: the oracle (``lava``: Lava 0.10.0's ``fixed_pt`` CPU models in
  ``.venv-lava``; ``rtl``: the FPGA design in Icarus Verilog under cocotb), how the network and
  inputs were drawn (``generator``: ``tests.netgen.random_graph``, or for some RTL files the
  chains at the edges of the arithmetic, ``tests.netgen_chains.random_fpga_chain``; ``seed``;
  ``profile``, its name in ``hardware.targets``), ``T``, the batch, the input's shape, encoding
  and ``input_max``, the node names, the RTL's lanes, its saturation counts, and the tools'
  versions;
* ``inputs``: the encoded inputs fed; ``readout``: (B, T, classes) readout membranes after every
  step; ``spikes/<node>``: (B, T, neurons) spikes of every hidden node.

The networks are not stored: a test rebuilds each from its generator, seed and profile (and
checks it against the file's shapes and inputs). ``make goldens`` (``python -m
tests.golden_vectors``) records them all again, Lava in one interpreter start and the RTL in one
simulation; ``tests/test_goldens.py`` compares the integer reference, its fast path and
fake-quant with them (``==``), and one live run of each oracle with them.
"""

from __future__ import annotations

import importlib.metadata
import io
import json
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hardware.graph import Graph
from hardware.profile import Profile
from hardware.reference import IntegerRun
from hardware.targets import profiles
from tests.netgen import random_graph, random_inputs
from tests.netgen_chains import fpga_inputs, random_fpga_chain

GOLDENS = Path(__file__).with_name("goldens")
GENERATORS = {"graph": "tests.netgen.random_graph", "chain": "tests.netgen_chains.random_fpga_chain"}


@dataclass(frozen=True)
class Case:
    """One recorded network: ``oracle`` ran the network ``profile``'s generator draws for ``seed``."""

    oracle: str  #: "lava" or "rtl"
    profile: str  #: a profile's name in ``hardware.targets.TARGETS``
    seed: int
    lanes: int = 1  #: RTL: the most lanes per layer
    timesteps: int = 4
    batch: int = 4
    generator: str = "graph"  #: a key of :data:`GENERATORS`

    @property
    def name(self) -> str:
        kind = "-graph" if self.oracle == "rtl" and self.generator == "graph" else ""
        return f"{self.oracle}{kind}-{self.profile}-seed{self.seed}"

    @property
    def path(self) -> Path:
        return GOLDENS / f"{self.name}.npz"

    @property
    def arithmetic(self) -> Profile:
        return profiles()[self.profile]

    def graph(self) -> Graph:
        draw = random_graph if self.generator == "graph" else random_fpga_chain
        return draw(self.seed, self.arithmetic)

    def inputs(self, graph: Graph) -> np.ndarray:
        draw = random_inputs if self.generator == "graph" else fpga_inputs
        return draw(self.seed, graph, self.timesteps, self.batch)


#: Seeds chosen (from the first 40) so that together they hold the graph cases and the arithmetic
#: a wrong profile would change (tests/test_goldens.py flips one rule at a time): Lava on residual
#: graphs of 255-pixel inputs (currents that wrap, membranes that clip), of event frames (one of
#: ten nodes), of 15-valued pixels (dense nodes feeding convs, shortcuts padded by up to four
#: steps) and of 1-valued pixels (exact threshold ties), and on a chain; the RTL in each FPGA
#: profile on a chain of direct and one of event-frame inputs, and on a residual graph (two
#: residual adds, three edges into the readout; event frames in fpga-mul).
CASES = (
    Case("lava", "loihi2-lava-0.10-fixed_pt", 2),
    Case("lava", "loihi2-lava-0.10-fixed_pt", 4),
    Case("lava", "loihi2-lava-0.10-fixed_pt", 14),
    Case("lava", "loihi2-lava-0.10-fixed_pt", 17),
    Case("lava", "loihi2-lava-0.10-fixed_pt", 68),
    Case("lava", "loihi2-lava-0.10-fixed_pt", 39),
    Case("rtl", "fpga-mul", 34, lanes=2, generator="chain"),
    Case("rtl", "fpga-mul", 7, lanes=32, generator="chain"),
    Case("rtl", "fpga-shift", 25, lanes=3, generator="chain"),
    Case("rtl", "fpga-shift", 4, lanes=1, generator="chain"),
    Case("rtl", "fpga-mul4", 22, lanes=4, generator="chain"),
    Case("rtl", "fpga-mul4", 8, lanes=1, generator="chain"),
    Case("rtl", "fpga-mul", 11, lanes=2),
    Case("rtl", "fpga-shift", 10, lanes=3),
    Case("rtl", "fpga-mul4", 2, lanes=4),
)


@dataclass(frozen=True)
class Golden:
    meta: dict
    inputs: np.ndarray
    run: IntegerRun


def read(case: Case) -> Golden:
    with np.load(case.path, allow_pickle=False) as npz:
        meta = json.loads(str(npz["meta"]))
        spikes = {name: npz[f"spikes/{name}"] for name in meta["hidden"]}
        run = IntegerRun(spikes, npz["readout"].astype(np.int64), meta.get("saturation", {}))
        return Golden(meta, npz["inputs"].astype(np.int64), run)


def write(case: Case, graph: Graph, inputs: np.ndarray, run: IntegerRun, versions: dict[str, str]) -> None:
    meta = {"oracle": case.oracle, "generator": GENERATORS[case.generator], "seed": case.seed, "profile": case.profile,
            "T": case.timesteps, "batch": case.batch, "input_shape": list(graph.input.shape),
            "encoding": graph.input.encoding, "input_max": graph.input.input_max,
            "hidden": [n.name for n in graph.hidden], "readout": graph.readout.name, "recorded_with": versions}
    if case.oracle == "rtl":
        meta.update(lanes=case.lanes, saturation=run.saturation)
    arrays = {"meta": np.array(json.dumps(meta, sort_keys=True)),
              "inputs": inputs.astype(np.uint8 if inputs.max(initial=0) < 256 else np.int64),
              "readout": run.readout.astype(np.int32),
              **{f"spikes/{name}": np.asarray(s, bool) for name, s in run.spikes.items()}}
    GOLDENS.mkdir(exist_ok=True)
    with zipfile.ZipFile(case.path, "w") as npz:  # np.savez_compressed's layout, without its clock:
        for key, array in arrays.items():  # recording the same numbers again gives the same bytes
            data = io.BytesIO()
            np.lib.format.write_array(data, array, allow_pickle=False)
            npz.writestr(zipfile.ZipInfo(f"{key}.npy"), data.getvalue(), compress_type=zipfile.ZIP_DEFLATED)


def live_runs(cases: list[Case], work: Path) -> list[IntegerRun]:
    """Run ``cases`` (all of one oracle) on that oracle: Lava through its interpreter (one start),
    the RTL in one simulation (tables and builds under ``work``)."""
    oracles = {c.oracle for c in cases}
    if oracles == {"lava"}:
        from hardware.targets.loihi.lava.parent import LavaJob, run_lava_jobs

        jobs = []
        for case in cases:
            graph = case.graph()
            jobs.append(LavaJob(graph, case.inputs(graph), case.timesteps))
        return [run for run, _ in run_lava_jobs(jobs, in_process=False, timeout=600)]
    if oracles == {"rtl"}:
        from hardware.targets.fpga.rtl.backend import simulate
        from hardware.targets.fpga.tables import write_tables

        networks = []
        for case in cases:
            graph, tables = case.graph(), work / case.name
            tables.mkdir(parents=True)
            write_tables(graph, case.arithmetic, case.timesteps, tables)
            networks.append((tables, case.inputs(graph)))
        return [r.run for r in simulate(networks, [c.lanes for c in cases], build_root=work / "build",
                                        simulator="icarus")]
    raise ValueError(f"cases of one oracle, lava or rtl, please: got {sorted(oracles)}")


def versions(oracle: str) -> dict[str, str]:
    """What recorded a golden: lava-nc in the Lava interpreter, or Icarus Verilog and cocotb."""
    if oracle == "lava":
        from hardware.targets.loihi.lava.parent import find_lava_python

        script = "import importlib.metadata as m; print(m.version('lava-nc'))"
        out = subprocess.run([str(find_lava_python()), "-c", script], capture_output=True, text=True, check=True)
        return {"lava-nc": out.stdout.strip()}
    icarus = subprocess.run(["iverilog", "-V"], capture_output=True, text=True).stdout.splitlines()[0]
    return {"iverilog": icarus, "cocotb": importlib.metadata.version("cocotb")}


def record() -> None:
    """Run every case on its oracle and write its file (``make goldens``)."""
    from hardware import reference

    with tempfile.TemporaryDirectory(prefix="lsg-goldens-") as tmp:
        for oracle in ("lava", "rtl"):
            cases = [c for c in CASES if c.oracle == oracle]
            tools = versions(oracle)
            for case, run in zip(cases, live_runs(cases, Path(tmp)), strict=True):
                graph = case.graph()
                inputs = case.inputs(graph)
                write(case, graph, inputs, run, tools)
                ref = reference.run(graph, inputs, case.timesteps, case.arithmetic)
                same = all(np.array_equal(ref.spikes[n], run.spikes[n]) for n in ref.spikes) and np.array_equal(
                    ref.readout, run.readout)
                print(f"{case.path.relative_to(GOLDENS.parent.parent)}: {case.path.stat().st_size} bytes, "
                      f"{'equal to' if same else 'DIFFERENT FROM'} the integer reference")


if __name__ == "__main__":
    sys.exit(record())
