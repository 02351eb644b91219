"""The RTL backend: an exported chain network's Verilog (:mod:`hardware.targets.fpga.rtl`) simulated by Icarus
Verilog under cocotb, sample by sample, returning the same :class:`~hardware.reference.IntegerRun`
as the integer reference, to be compared with it bit for bit.

The design is built from the FPGA tables alone (``manifest.json`` and the ``.mem`` files that
``lsg-deploy export --target fpga`` writes), as a hardware designer would build it: nothing of
the bundle's own records enters the RTL. Numpy only at import; Icarus (``iverilog``, ``vvp``)
and cocotb are needed when a run starts, and their absence is an :class:`RtlEnvironmentError`
that says how to install them. Where the directory is a bundle (``lsg-deploy export --target
fpga``), its tables must first be exactly what its own integer graph gives
(:func:`hardware.targets.fpga.tables.check_tables`): tables edited after export, digests recomputed or
not, are refused before anything is built, never simulated as if they were the bundle's network.

The compiler and the simulator run as children that end with the run (:mod:`hardware.processes`):
an exception, SIGINT's ``KeyboardInterrupt`` or the CLI's SIGTERM included, stops and reaps them
(``vvp`` runs with ``-N``, so that SIGINT or SIGTERM ends it, exit code 1, rather than stopping
it at its interactive prompt), and the temporary directories go with them.

A run compiles the design once (cached by the SHA-256 of its sources, ``.mem`` files included)
and simulates every sample in one simulator process (:mod:`hardware.targets.fpga.rtl.driver`, the cocotb test,
driving a simulation-only bench that makes the clock); :func:`simulate` puts several networks
into one such process (each with its own gated clock) and can record every layer's membranes.
Besides spikes and readout membranes a run returns:

* ``saturation``: per node, the membranes the design clipped (``v_clip``), counted by the design
  itself (the readout's included: it never fires, it holds at the limit); ``a_wrap`` and ``u_wrap`` are 0
  (the FPGA profiles have no current stage and the export proves the accumulator never wraps);
* ``stats``: clock cycles per time step as the design's own counter measures them (from a
  step's start to its last layer's done; mean, min, max, per layer), the cycles the host spent
  outside the steps (writing inputs, reading outputs), the lanes of each layer and the seconds
  spent compiling and simulating.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hardware import processes
from hardware.bundle import JSON_NAME, read_bundle
from hardware.reference import SATURATION_KINDS, IntegerRun
from hardware.targets.fpga.rtl import SOURCES
from hardware.targets.fpga.rtl.chain import (
    DEFAULT_MAX_LANES,
    TOP,
    Chain,
    chain_from_tables,
    port_range,
    table_prefixes,
    top_ports,
    top_verilog,
    write_design,
)
from hardware.targets.fpga.tables import check_tables, read_tables
from lsg_io.files import staged_directory

DRIVER = "hardware.targets.fpga.rtl.driver"
SIM_FILE = "sim.vvp"
COCOTB_SPEC = "cocotb==2.1.0"


class RtlEnvironmentError(RuntimeError):
    """Icarus Verilog or cocotb is missing (the message says how to install it)."""


class RtlRunError(RuntimeError):
    """Compiling or simulating the design failed; ``detail`` holds the tool's log."""

    def __init__(self, summary: str, detail: str = ""):
        super().__init__(summary + (f"\n{detail}" if detail else ""))
        self.summary, self.detail = summary, detail


def check_tools() -> None:
    """Refuse to run without Icarus Verilog or cocotb, saying how to install them."""
    missing = [tool for tool in ("iverilog", "vvp") if shutil.which(tool) is None]
    if missing:
        raise RtlEnvironmentError(f"the RTL backend needs Icarus Verilog ({', '.join(missing)} not found): "
                                  "install it with `apt-get install iverilog`")
    if importlib.util.find_spec("cocotb") is None or importlib.util.find_spec("cocotb_tools") is None:
        raise RtlEnvironmentError(f"the RTL backend needs cocotb ({COCOTB_SPEC}), which is not installed: "
                                  "install it with `pip install -e .[rtl]`")


def default_build_root() -> Path:
    return Path(os.environ.get("LSG_RTL_BUILD", Path(tempfile.gettempdir()) / "lsg-deploy-rtl"))


COMPILE_FLAGS = ("-g2005", "-Wall", "-Wno-timescale")  #: Verilog-2005, every warning


def _digest(directory: Path) -> str:
    h = hashlib.sha256(" ".join(COMPILE_FLAGS).encode() + b"\0")
    for path in sorted(directory.iterdir()):
        h.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()[:24]


def _compile(directory: Path, top: str, sources: list[str]) -> None:
    cmd = ["iverilog", *COMPILE_FLAGS, "-o", SIM_FILE, "-s", top, *sources]
    result = processes.run(cmd, cwd=directory, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if result.returncode != 0:
        raise RtlRunError(f"iverilog could not compile the design in {directory}", result.stdout + result.stderr)


def check_bundle_tables(directory: Path) -> None:
    """Where ``directory`` is a bundle, refuse its FPGA tables unless every value the design
    loads (and every other table file) is exactly what its integer graph gives
    (:func:`hardware.targets.fpga.tables.check_tables`; a :class:`~hardware.graph.BundleError` naming the
    file and the first field that differs). A directory of tables alone is taken as it is."""
    directory = Path(directory)
    if not (directory / JSON_NAME).is_file():
        return
    bundle = read_bundle(directory)
    check_tables(bundle.integer_graph, bundle.profile, bundle.timesteps, directory)


def build(tables_dir: Path, max_lanes: int = DEFAULT_MAX_LANES, build_root: Path | None = None
          ) -> tuple[Chain, Path, float]:
    """Generate and compile the design of the tables in ``tables_dir`` (checked against the
    bundle there, if any: :func:`check_bundle_tables`); returns the chain, the directory holding
    the design (with a one-network simulation bench) and its ``sim.vvp``, and the seconds spent
    (0 when cached)."""
    start = time.perf_counter()
    check_bundle_tables(Path(tables_dir))
    chain = chain_from_tables(read_tables(Path(tables_dir)), max_lanes)  # refuses what the RTL cannot run
    check_tools()
    root = Path(build_root) if build_root is not None else default_build_root()
    root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=root) as scratch:
        write_design(chain, Path(tables_dir), Path(scratch))
        (Path(scratch) / f"{BENCH}.v").write_text(_bench_verilog([chain], [TOP]))
        final = root / _digest(Path(scratch))  # every source, the bench and the .mem files
        if (final / SIM_FILE).is_file():
            return chain, final, 0.0
        with staged_directory(final) as stage:
            for path in Path(scratch).iterdir():
                shutil.copyfile(path, stage / path.name)
            _compile(stage, BENCH, [p.name for p in SOURCES] + [f"{TOP}.v", f"{BENCH}.v"])
    return chain, final, time.perf_counter() - start


def _frames(chain: Chain, inputs: np.ndarray) -> np.ndarray:
    """Encoded inputs as (B, frames, words), checked against the manifest's input."""
    inputs = np.asarray(inputs)
    expected = ((chain.timesteps,) if chain.per_step else ()) + chain.input_shape
    if inputs.ndim != 1 + len(expected) or tuple(inputs.shape[1:]) != expected:
        raise ValueError(f"inputs must be (B, {', '.join(map(str, expected))}), got {inputs.shape}")
    if not (np.issubdtype(inputs.dtype, np.integer) or inputs.dtype == bool):
        raise ValueError(f"encoded inputs must be integers, got dtype {inputs.dtype}")
    if inputs.size and (inputs.min() < 0 or inputs.max() > chain.input_max):
        raise ValueError(f"inputs must lie in [0, {chain.input_max}], got [{inputs.min()}, {inputs.max()}]")
    return inputs.astype(np.int64).reshape(len(inputs), chain.timesteps if chain.per_step else 1, -1)


def step_cycle_limit(chain: Chain) -> int:
    """A generous bound on one step's cycles (every source value an event with every tap, plus
    every word fetched and updated, twice over): the driver's watchdog against a hung design."""
    total = 0
    for layer in chain.layers:
        groups, h, w, lanes, _ = layer.source
        taps = 1 if layer.dense else layer.kernel[0] * layer.kernel[1]
        total += groups * h * w * (1 + lanes * taps * layer.channels // layer.lanes) + layer.words + 16
    return 2 * total + 1000


def _job(chain: Chain, frames: np.ndarray, prefix: str, membranes: bool, path: Path) -> None:
    layers = chain.layers
    np.savez(path, inputs=frames, timesteps=chain.timesteps, membrane_bits=chain.arithmetic.membrane_bits,
             words=np.array([L.words for L in layers]), lanes=np.array([L.lanes for L in layers]),
             readout=np.array([L.readout for L in layers]), step_cycle_limit=step_cycle_limit(chain),
             prefix=np.str_(prefix), membranes=membranes)


#: vvp's arguments: ``-N`` makes ``$stop``, SIGINT and SIGTERM end the simulation (exit code 1)
#: instead of stopping it at vvp's interactive prompt
VVP_ARGS = ("-N",)


def _runner():
    """cocotb's Icarus runner, its commands (``vvp``) run by :func:`hardware.processes.run`, so
    that they end with this process's run (cocotb itself uses ``subprocess.run``)."""
    from cocotb_tools.runner import Icarus

    if not hasattr(Icarus, "_execute_cmds"):  # the one method replaced here (cocotb 2.1)
        raise RtlEnvironmentError(f"the RTL backend needs {COCOTB_SPEC}: install it with `pip install -e .[rtl]`")

    class Runner(Icarus):
        def _execute_cmds(self, cmds, cwd, stdout=None) -> None:
            for cmd in cmds:
                result = processes.run(cmd, cwd=cwd, env=self.env, stdout=stdout,
                                       stderr=None if stdout is None else subprocess.STDOUT)
                if result.returncode != 0:
                    raise RuntimeError(f"Command failed with return code: {result.returncode}")

    return Runner()


def _simulate(toplevel: str, build_dir: Path, jobs: list[tuple[Chain, np.ndarray, str]], membranes: bool,
              work: Path) -> list[dict[str, np.ndarray]]:
    """Run the driver on ``build_dir/sim.vvp`` (cwd ``build_dir``), one job per network."""
    job_files = [work / f"job{i}.npz" for i in range(len(jobs))]
    result_files = [work / f"results{i}.npz" for i in range(len(jobs))]
    for (chain, frames, prefix), path in zip(jobs, job_files, strict=True):
        _job(chain, frames, prefix, membranes, path)
    log = work / "sim.log"
    env = {"LSG_RTL_JOBS": os.pathsep.join(map(str, job_files)),
           "LSG_RTL_RESULTS": os.pathsep.join(map(str, result_files)), "COCOTB_LOG_LEVEL": "WARNING",
           "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}  # numpy in the simulator needs no threads
    failed: BaseException | None = None
    runner = _runner()
    try:
        runner.test(test_module=DRIVER, hdl_toplevel=toplevel, hdl_toplevel_lang="verilog",
                    build_dir=build_dir, test_dir=build_dir, extra_env=env, test_args=list(VVP_ARGS),
                    results_xml=str(work / "results.xml"), log_file=str(log))
    except (SystemExit, RuntimeError) as exc:  # the runner exits when a test fails under pytest
        failed = exc
    if failed is not None or not all(f.is_file() for f in result_files):
        text = log.read_text(errors="replace") if log.is_file() else ""
        raise RtlRunError(f"the RTL simulation in {build_dir} failed", "\n".join(text.splitlines()[-40:]))
    results = []
    for path in result_files:
        with np.load(path) as npz:
            results.append({k: npz[k] for k in npz.files})
    return results


# --- a bench of several networks in one simulator run ----------------------------------------------

BENCH = "lsg_bench"
PERIOD_NS = 10  #: the bench's clock (the driver's PERIOD_NS)


def _bench_verilog(chains: list[Chain], modules: list[str]) -> str:
    """A simulation-only wrapper around the tops (synthesis never sees it): the clock, made here
    rather than by cocotb (each edge through the VPI would cost more than the design), and
    network i's ports on ``n<i>_<port>`` signals, its clock gated by ``n<i>_clk_en`` so that
    networks not running cost nothing."""
    out = ["// Simulation-only bench, generated by hardware/targets/fpga/rtl/backend.py.", "`timescale 1ns / 1ps",
           "`default_nettype none", "", f"module {BENCH};", "    reg clk = 1'b0;",
           f"    always #{PERIOD_NS // 2} clk = ~clk;"]
    for i, (chain, module) in enumerate(zip(chains, modules, strict=True)):
        n = f"n{i}_"
        out += [f"    reg {n}clk_en = 1'b0;", f"    wire {n}clk = clk & {n}clk_en;"]
        connections = []
        for direction, name, width in top_ports(chain):
            bits = port_range(name, width)
            if name != "clk":
                out.append(f"    {'reg ' if direction == 'input' else 'wire'} {bits}{n}{name}"
                           f"{' = 0' if direction == 'input' else ''};")
            connections.append(f".{name}({n}{name})")
        out.append(f"    {module} u_n{i} ({', '.join(connections)});")
    out += ["endmodule", "", "`default_nettype wire", ""]
    return "\n".join(out)


def _compile_bench(chains: list[Chain], designs: list[Path], directory: Path) -> None:
    """A bench of several networks: each top renamed, its ``.mem`` files named by absolute path."""
    for i, (chain, design) in enumerate(zip(chains, designs, strict=True)):
        prefixes = [tuple(str(design / p) for p in table_prefixes(layer)) for layer in chain.layers]
        (directory / f"{TOP}_n{i}.v").write_text(top_verilog(chain, prefixes, module=f"{TOP}_n{i}"))
    (directory / f"{BENCH}.v").write_text(_bench_verilog(chains, [f"{TOP}_n{i}" for i in range(len(chains))]))
    sources = [str(p) for p in SOURCES] + [f"{TOP}_n{i}.v" for i in range(len(chains))] + [f"{BENCH}.v"]
    _compile(directory, BENCH, sources)


# --- results -----------------------------------------------------------------------------------------

def _empty_run(chain: Chain) -> IntegerRun:
    t = chain.timesteps
    return IntegerRun(spikes={L.name: np.zeros((0, t, L.neurons), bool) for L in chain.layers[:-1]},
                      readout=np.zeros((0, t, chain.layers[-1].neurons), np.int64),
                      saturation={L.name: dict.fromkeys(SATURATION_KINDS, 0) for L in chain.layers})


def _neuron_order(layer, words: np.ndarray, dtype: type) -> np.ndarray:
    """(B, T, words, lanes) lane values -> (B, T, neurons)."""
    out = np.zeros((*words.shape[:2], layer.neurons), dtype)
    out[:, :, layer.neuron_index()] = words
    return out


@dataclass
class RtlRun:
    """One network's simulation: the run (as :func:`hardware.reference.run` returns it) and, if
    recorded, every layer's membranes after each step (node -> (B, T, neurons) int64)."""

    run: IntegerRun
    membranes: dict[str, np.ndarray] = field(default_factory=dict)


def _rtl_run(chain: Chain, out: dict[str, np.ndarray], stats: dict[str, Any]) -> RtlRun:
    """The driver's lane words in neuron order, the design's counters and its cycle counts."""
    layers = chain.layers
    spikes = {L.name: _neuron_order(L, out[f"spikes{k}"], bool) for k, L in enumerate(layers[:-1])}
    membranes = {L.name: _neuron_order(L, out[f"membranes{k}"], np.int64)
                 for k, L in enumerate(layers) if f"membranes{k}" in out}
    counts = out["counts"].sum(axis=0)  # (layers, [spikes, clipped])
    saturation = {L.name: {"a_wrap": 0, "u_wrap": 0, "v_clip": int(counts[k, 1])} for k, L in enumerate(layers)}
    step = out["step_cycles"]
    stats = {
        "cycles_per_timestep": float(step.mean()),
        "cycles_per_timestep_min": int(step.min()),
        "cycles_per_timestep_max": int(step.max()),
        "cycles": int(step.sum()),
        "cycles_per_layer": {L.name: float(out["layer_cycles"][:, :, k].mean()) for k, L in enumerate(layers)},
        "host_cycles_per_sample": float((out["sample_cycles"] - step.sum(axis=1)).mean()),
        "lanes": {L.name: L.lanes for L in layers},
        "cycles_measured_by": f"{TOP}.step_cycles: from a step's start to its last layer's done",
        **stats,
    }
    run = IntegerRun(spikes=spikes, readout=membranes[layers[-1].name], saturation=saturation, stats=stats)
    return RtlRun(run=run, membranes=membranes)


def simulate(networks: list[tuple[Path, np.ndarray]], max_lanes: int | list[int] = DEFAULT_MAX_LANES,
             build_root: Path | None = None, membranes: bool = False) -> list[RtlRun]:
    """Simulate several networks (``(tables directory, inputs)`` pairs) in one simulator run;
    ``max_lanes``: one value, or one per network; ``membranes``: record every layer's membranes,
    not just the readout's."""
    lanes = [max_lanes] * len(networks) if isinstance(max_lanes, int) else list(max_lanes)
    if len(lanes) != len(networks):
        raise ValueError(f"{len(lanes)} max_lanes values for {len(networks)} networks")
    built = [build(Path(d), m, build_root) for (d, _), m in zip(networks, lanes, strict=True)]
    frames = [_frames(chain, inputs) for (chain, _, _), (_, inputs) in zip(built, networks, strict=True)]
    todo = [i for i, f in enumerate(frames) if len(f)]
    runs = [RtlRun(_empty_run(chain)) for chain, _, _ in built]
    if not todo:
        return runs
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="lsg-rtl-run-") as work:
        work = Path(work)
        if len(todo) == 1:
            (chain, design, _), = [built[i] for i in todo]
            outs = _simulate(BENCH, design, [(chain, frames[todo[0]], "n0_")], membranes, work)
            bench_seconds = 0.0
        else:
            bench = work / "bench"
            bench.mkdir()
            chains = [built[i][0] for i in todo]
            _compile_bench(chains, [built[i][1] for i in todo], bench)
            bench_seconds = time.perf_counter() - start
            jobs = [(chain, frames[i], f"n{j}_") for j, (chain, i) in enumerate(zip(chains, todo, strict=True))]
            outs = _simulate(BENCH, bench, jobs, membranes, work)
    seconds = time.perf_counter() - start - bench_seconds
    for i, out in zip(todo, outs, strict=True):
        chain, _, compile_seconds = built[i]
        runs[i] = _rtl_run(chain, out, {"compile_seconds": compile_seconds + bench_seconds,
                                        "simulation_seconds": seconds, "networks_in_simulation": len(todo)})
    return runs


def run_rtl_many(networks: list[tuple[Path, np.ndarray]], max_lanes: int | list[int] = DEFAULT_MAX_LANES,
                 build_root: Path | None = None) -> list[IntegerRun]:
    """:func:`run_rtl` for several networks (``(tables directory, inputs)`` pairs) in one simulator run."""
    return [r.run for r in simulate(networks, max_lanes, build_root)]


def run_rtl(bundle_dir: Path, inputs: np.ndarray, max_lanes: int = DEFAULT_MAX_LANES,
            build_root: Path | None = None) -> IntegerRun:
    """Run the FPGA tables in ``bundle_dir`` on encoded inputs (``(B, C, H, W)`` direct pixels or
    ``(B, T, C, H, W)`` 0/1 event frames) in the RTL simulation. ``max_lanes`` caps the output
    channels a layer updates per cycle (1: fully serial)."""
    return run_rtl_many([(Path(bundle_dir), inputs)], max_lanes, build_root)[0]
