"""The RTL backend: an exported network's Verilog (:mod:`hardware.targets.fpga.rtl`) simulated by
Verilator (the default) or Icarus Verilog under cocotb, sample by sample through the IP core's AXI
ports (``lsg_axi_top``), returning the same :class:`~hardware.reference.IntegerRun` as the integer
reference, to be compared with it bit for bit.

The design is built from the FPGA tables alone (``manifest.json`` and the ``.mem`` files that
``lsg-deploy export --target fpga`` writes), as a hardware designer would build it: nothing of
the bundle's own records enters the RTL. Numpy only at import; the simulator
(:mod:`hardware.targets.fpga.rtl.tools`) and cocotb are needed when a run starts, and their
absence is an :class:`RtlEnvironmentError` that says how to install them. Where the directory is
a bundle (``lsg-deploy export --target fpga``), its tables must first be exactly what its own integer graph gives
(:func:`hardware.targets.fpga.tables.check_tables`): tables edited after export, digests recomputed or
not, are refused before anything is built, never simulated as if they were the bundle's network.

The compiler and the simulator run as children that end with the run (:mod:`hardware.processes`):
an exception, SIGINT's ``KeyboardInterrupt`` or the CLI's SIGTERM included, stops and reaps them
(``vvp`` runs with ``-N``, so that SIGINT or SIGTERM ends it, exit code 1, rather than stopping
it at its interactive prompt), and the temporary directories go with them.

A run compiles the design once (cached by the SHA-256 of its sources, ``.mem`` files included;
Verilator's model by its Verilog alone, since it loads the ``.mem`` files when it starts)
and simulates every sample in one simulator process (:mod:`hardware.targets.fpga.rtl.driver`, the cocotb test,
driving a simulation-only bench that makes the clock); :func:`simulate` puts several networks
into one such process (each with its own gated clock) and can record every layer's membranes.
The class and the final readout membranes are the result stream's; the run fails
(:class:`RtlRunError`) unless they, and the trace's per-step spike counts, agree with the
membranes and spikes read through the debug port. Besides spikes and readout membranes a run
returns:

* ``saturation``: per node, the membranes the design clipped (``v_clip``), counted by the design
  itself (the readout's included: it never fires, it holds at the limit); ``a_wrap`` and ``u_wrap`` are 0
  (the FPGA profiles have no current stage and the export proves the accumulator never wraps);
* ``stats``: clock cycles as the design's own counter measures them: per time step, a sample's
  T + L - 1 phases (each from its start to its last layer's done) over T (mean, min and max over
  the samples), the slowest phase, per layer (its go to its done, per step), the cycles the host
  spent outside the phases (streaming inputs and results, the debug reads), the schedule, the
  lanes of each layer, the simulator and the seconds spent compiling and simulating.
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
from hardware.targets.fpga.rtl import RTL_DIR, SOURCES, tools, weight_memory
from hardware.targets.fpga.rtl.axi import AXI_TOP, axi_verilog, delay
from hardware.targets.fpga.rtl.bench import BENCH, bench_verilog
from hardware.targets.fpga.rtl.chain import (
    DEFAULT_MAX_LANES,
    TOP,
    Chain,
    chain_from_tables,
    table_prefixes,
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


def check_tools(simulator: str = tools.SIMULATORS[0]) -> None:
    """Refuse to run without the simulator or cocotb, saying how to install them."""
    if simulator not in tools.SIMULATORS:
        raise ValueError(f"unknown simulator {simulator!r}; choose one of {', '.join(tools.SIMULATORS)}")
    if simulator == "icarus":
        missing = [tool for tool in ("iverilog", "vvp") if shutil.which(tool) is None]
        if missing:
            raise RtlEnvironmentError(f"the RTL backend needs Icarus Verilog ({', '.join(missing)} not found): "
                                      "install it with `apt-get install iverilog`")
    try:
        tools.check(simulator)
    except tools.ToolMissing as exc:
        raise RtlEnvironmentError(str(exc)) from None
    if importlib.util.find_spec("cocotb") is None or importlib.util.find_spec("cocotb_tools") is None:
        raise RtlEnvironmentError(f"the RTL backend needs cocotb ({COCOTB_SPEC}), which is not installed: "
                                  "install it with `pip install -e .[rtl]`")


def default_build_root() -> Path:
    return Path(os.environ.get("LSG_RTL_BUILD", Path(tempfile.gettempdir()) / "lsg-deploy-rtl"))


COMPILE_FLAGS = ("-g2005", "-Wall", "-Wno-timescale")  #: Icarus: Verilog-2005, every warning
#: Verilator: the bench's clock needs --timing; lint is a test of its own (tests/test_rtl_ip.py), so
#: warnings do not stop a simulation build
#: the model's C++: its design code optimized (-O1, much of the speed for a fraction of -O2's compile
#: time), Verilator's runtime and VPI library not (it is not where the time goes)
MAKE_OPT = ("OPT_FAST=-O1", "OPT_SLOW=-O0", "OPT_GLOBAL=-O0")
VERILATOR_FLAGS = ("--timing", "-Wno-fatal", "-Wno-lint", "-Wno-style", "--x-assign", "fast", "--x-initial", "fast")


def _digest(directory: Path, flags: tuple[str, ...], suffix: str = "") -> str:
    h = hashlib.sha256(" ".join(flags).encode() + b"\0")
    for path in sorted(directory.iterdir()):
        if path.name.endswith(suffix):
            h.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()[:24]


def _compile(directory: Path, top: str, sources: list[str]) -> None:
    cmd = ["iverilog", *COMPILE_FLAGS, "-o", SIM_FILE, "-s", top, *sources]
    result = processes.run(cmd, cwd=directory, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if result.returncode != 0:
        raise RtlRunError(f"iverilog could not compile the design in {directory}", result.stdout + result.stderr)


def _verilate(sources: list[Path], top: str, out: Path) -> None:
    """Verilator's model of ``top`` with cocotb's VPI main, built in ``out`` (its executable: ``out/top``)."""
    from cocotb_tools import config

    command, env = tools.verilator()
    env = {**os.environ, **env}
    libs = config.libs_dir
    jobs = str(min(4, os.cpu_count() or 1))
    steps = [[*command, "-cc", "--exe", "--build", "-j", jobs, "-Mdir", str(out), "--top-module", top, "--vpi",
              "--prefix", "Vtop", "-o", top, *VERILATOR_FLAGS, *(f for opt in MAKE_OPT for f in ("-MAKEFLAGS", opt)),
              "-LDFLAGS", f"-Wl,-rpath,{libs} -L{libs} -lcocotbvpi_verilator",
              str(config.share_dir / "lib" / "verilator" / "verilator.cpp"), *map(str, sources)]]
    for cmd in steps:
        result = processes.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if result.returncode != 0:
            raise RtlRunError(f"verilator could not build the design in {out}", result.stdout[-4000:])


@dataclass(frozen=True)
class Built:
    """A compiled design: ``design`` holds its sources and ``.mem`` files (the simulation's working
    directory), ``model`` the simulator's build (Icarus: ``design`` itself)."""

    chain: Chain
    design: Path
    model: Path
    seconds: float  #: spent compiling (0 when cached)


def _model(simulator: str, design: Path, root: Path, sources: list[str]) -> Path:
    """The simulator's build of the bench in ``design``, cached by its Verilog alone: both
    simulators load the ``.mem`` files when the simulation starts, from its working directory."""
    icarus = simulator == "icarus"
    model = root / f"{simulator}-{_digest(design, COMPILE_FLAGS if icarus else VERILATOR_FLAGS + MAKE_OPT, '.v')}"
    if not (model / (SIM_FILE if icarus else BENCH)).is_file():
        with staged_directory(model) as stage:
            if icarus:
                _compile(stage, BENCH, [str(design / s) for s in sources])
            else:
                _verilate([design / s for s in sources], BENCH, stage)
    return model


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


def build(tables_dir: Path, max_lanes: int = DEFAULT_MAX_LANES, build_root: Path | None = None,
          simulator: str | None = tools.SIMULATORS[0], membranes: bool = False,
          weights: str = weight_memory.ROM, schedule: str | None = None) -> Built:
    """Generate and compile the design of the tables in ``tables_dir`` (checked against the
    bundle there, if any: :func:`check_bundle_tables`), with a one-network simulation bench
    (``simulator`` None: generate it, compile nothing; ``membranes``: its recorder reads every
    layer's membranes; ``weights``: ROMs, or the SPRAM the driver loads through the load port;
    ``schedule``: the phases' layers at once or one after another, None: the build's default,
    :func:`~hardware.targets.fpga.rtl.network.chain_from_tables`)."""
    start = time.perf_counter()
    check_bundle_tables(Path(tables_dir))
    chain = chain_from_tables(read_tables(Path(tables_dir)), max_lanes, weights, schedule)  # refuses what the RTL lacks
    if simulator is not None:
        check_tools(simulator)
    root = Path(build_root) if build_root is not None else default_build_root()
    root.mkdir(parents=True, exist_ok=True)
    sources = [p.name for p in SOURCES] + weight_memory.sources(weights, simulation=True) + [
        f"{TOP}.v", f"{AXI_TOP}.v", f"{BENCH}.v"]
    with tempfile.TemporaryDirectory(dir=root) as scratch:
        write_design(chain, Path(tables_dir), Path(scratch))
        (Path(scratch) / f"{AXI_TOP}.v").write_text(axi_verilog(chain))
        (Path(scratch) / f"{BENCH}.v").write_text(bench_verilog([chain], [AXI_TOP], membranes))
        final = root / _digest(Path(scratch), COMPILE_FLAGS)  # every source, the bench and the .mem files
        if not final.is_dir():
            with staged_directory(final) as stage:
                for path in Path(scratch).iterdir():
                    shutil.copyfile(path, stage / path.name)
    model = _model(simulator, final, root, sources) if simulator is not None else final
    return Built(chain, final, model, time.perf_counter() - start)


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
    """A generous bound on one phase's cycles (every layer's step, every source value of every
    edge an event with every tap, plus every word fetched and updated, twice over): the driver's
    watchdog against a hung design."""
    total = 0
    for layer in chain.layers:
        for edge in layer.edges:
            groups, h, w, lanes, _ = edge.source_words
            taps = 1 if edge.dense else edge.kernel[0] * edge.kernel[1]
            total += groups * h * w * (1 + lanes * taps * layer.channels // layer.lanes) + 16
        total += layer.words + 16
    return 2 * total + 1000


def _job(chain: Chain, frames: np.ndarray, prefix: str, membranes: bool, path: Path) -> None:
    layers = chain.layers
    np.savez(path, inputs=frames, timesteps=chain.timesteps, membrane_bits=chain.arithmetic.membrane_bits,
             words=np.array([L.words for L in layers]), lanes=np.array([L.lanes for L in layers]),
             readout=np.array([L.readout for L in layers]), step_cycle_limit=step_cycle_limit(chain),
             prefix=np.str_(prefix), membranes=membranes, phases=chain.phases, trace_delay=delay(chain),
             weight_words=weight_memory.load_words(chain) if chain.weight_memory == weight_memory.SPRAM
             else np.zeros(0, np.uint16))


#: vvp's arguments: ``-N`` makes ``$stop``, SIGINT and SIGTERM end the simulation (exit code 1)
#: instead of stopping it at vvp's interactive prompt
VVP_ARGS = ("-N",)


def _runner(simulator: str):
    """cocotb's runner of ``simulator``, its commands run by :func:`hardware.processes.run`, so
    that they end with this process's run (cocotb itself uses ``subprocess.run``)."""
    from cocotb_tools.runner import Icarus, Verilator

    base = Icarus if simulator == "icarus" else Verilator
    if not hasattr(base, "_execute_cmds"):  # the one method replaced here (cocotb 2.1)
        raise RtlEnvironmentError(f"the RTL backend needs {COCOTB_SPEC}: install it with `pip install -e .[rtl]`")

    class Runner(base):
        def _execute_cmds(self, cmds, cwd, stdout=None) -> None:
            for cmd in cmds:
                result = processes.run(cmd, cwd=cwd, env=self.env, stdout=stdout,
                                       stderr=None if stdout is None else subprocess.STDOUT)
                if result.returncode != 0:
                    raise RuntimeError(f"Command failed with return code: {result.returncode}")

    return Runner()


def _simulate(simulator: str, model: Path, design: Path, jobs: list[tuple[Chain, np.ndarray, str]], membranes: bool,
              work: Path) -> list[dict[str, np.ndarray]]:
    """Run the driver on the bench built in ``model``, in ``design`` (its ``.mem`` files), one job per network."""
    job_files = [work / f"job{i}.npz" for i in range(len(jobs))]
    result_files = [work / f"results{i}.npz" for i in range(len(jobs))]
    for (chain, frames, prefix), path in zip(jobs, job_files, strict=True):
        _job(chain, frames, prefix, membranes, path)
    log = work / "sim.log"
    env = {"LSG_RTL_JOBS": os.pathsep.join(map(str, job_files)),
           "LSG_RTL_RESULTS": os.pathsep.join(map(str, result_files)), "COCOTB_LOG_LEVEL": "WARNING",
           "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}  # numpy in the simulator needs no threads
    failed: BaseException | None = None
    runner = _runner(simulator)
    try:
        runner.test(test_module=DRIVER, hdl_toplevel=BENCH, hdl_toplevel_lang="verilog",
                    build_dir=model, test_dir=design, extra_env=env,
                    test_args=list(VVP_ARGS) if simulator == "icarus" else [],
                    results_xml=str(work / "results.xml"), log_file=str(log))
    except (SystemExit, RuntimeError) as exc:  # the runner exits when a test fails under pytest
        failed = exc
    if failed is not None or not all(f.is_file() for f in result_files):
        text = log.read_text(errors="replace") if log.is_file() else ""
        raise RtlRunError(f"the RTL simulation ({simulator}) in {design} failed", "\n".join(text.splitlines()[-40:]))
    results = []
    for path in result_files:
        with np.load(path) as npz:
            results.append({k: npz[k] for k in npz.files})
    return results


# --- a bench of several networks in one simulator run ----------------------------------------------

def _compile_bench(chains: list[Chain], designs: list[Path], directory: Path, simulator: str,
                   membranes: bool) -> None:
    """A bench of several networks: each top renamed, its ``.mem`` files named by absolute path."""
    sources = [directory / f"{AXI_TOP}_n{i}.v" for i in range(len(chains))]
    for i, (chain, design) in enumerate(zip(chains, designs, strict=True)):
        prefixes = [tuple(str(design / p) for p in table_prefixes(layer)) for layer in chain.layers]
        core = f"{TOP}_n{i}"
        sources[i].write_text(top_verilog(chain, prefixes, module=core) + axi_verilog(chain, core, f"{AXI_TOP}_n{i}"))
    modules = [f"{AXI_TOP}_n{i}" for i in range(len(chains))]
    (directory / f"{BENCH}.v").write_text(bench_verilog(chains, modules, membranes))
    extra = {name for chain in chains for name in weight_memory.sources(chain.weight_memory, simulation=True)}
    sources = [*SOURCES, *(RTL_DIR / name for name in sorted(extra)), *sources, directory / f"{BENCH}.v"]
    if simulator == "icarus":
        _compile(directory, BENCH, [str(p) for p in sources])
    else:
        _verilate(sources, BENCH, directory)


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


def _check_interface(chain: Chain, out: dict[str, np.ndarray], spikes: dict[str, np.ndarray],
                     readout: np.ndarray) -> None:
    """The AXI top's own outputs against what the debug port read: the trace's step indices and
    per-step spike counts, and the result stream's class (argmax of its membranes, the lowest
    index on ties); an :class:`RtlRunError` names the first that differs."""
    batch, timesteps = out["trace_steps"].shape
    if (out["trace_steps"] != np.arange(timesteps)).any():
        raise RtlRunError(f"the trace's step indices {out['trace_steps'].tolist()} are not 0..{timesteps - 1}")
    for k, layer in enumerate(chain.layers[:-1]):
        counted = spikes[layer.name].sum(axis=2)
        bad = np.argwhere(out["trace"][:, :, k] != counted)
        if len(bad):
            b, t = bad[0]
            raise RtlRunError(f"sample {b}, step {t}: the trace counts {out['trace'][b, t, k]} spikes of "
                              f"{layer.name}, its spike buffer holds {counted[b, t]}")
    classes = out["streamed"][:, 0]
    want = readout.argmax(axis=1)  # numpy's argmax: the first maximum
    bad = np.flatnonzero(classes != want)
    if len(bad):
        raise RtlRunError(f"sample {bad[0]}: the result stream's class is {classes[bad[0]]}, the argmax of its "
                          f"membranes {readout[bad[0]].tolist()} is {want[bad[0]]}")


def _rtl_run(chain: Chain, out: dict[str, np.ndarray], stats: dict[str, Any]) -> RtlRun:
    """The driver's lane words in neuron order, the design's counters and its cycle counts; the
    final readout membranes are the result stream's."""
    layers = chain.layers
    spikes = {L.name: _neuron_order(L, out[f"spikes{k}"], bool) for k, L in enumerate(layers[:-1])}
    membranes = {L.name: _neuron_order(L, out[f"membranes{k}"], np.int64)
                 for k, L in enumerate(layers) if f"membranes{k}" in out}
    vbits = chain.arithmetic.membrane_bits
    final = out["streamed"][:, 1:].astype(np.int64)
    final = np.where(final >= 1 << 31, final - (1 << 32), final)  # 32-bit two's complement beats
    if ((final < -(1 << (vbits - 1))) | (final >= 1 << (vbits - 1))).any():
        raise RtlRunError("the result stream's membranes are not sign-extended from the membrane's width")
    _check_interface(chain, out, spikes, final)
    readout = membranes[layers[-1].name]
    readout[:, -1] = final
    counts = out["counts"].sum(axis=0)  # (layers, [spikes, clipped])
    saturation = {L.name: {"a_wrap": 0, "u_wrap": 0, "v_clip": int(counts[k, 1])} for k, L in enumerate(layers)}
    step = out["step_cycles"]  # (B, phases)
    per_step = step.sum(axis=1) / chain.timesteps  # a sample's phases over its steps
    stats = {
        "cycles_per_timestep": float(per_step.mean()),
        "cycles_per_timestep_min": float(per_step.min()),
        "cycles_per_timestep_max": float(per_step.max()),
        "cycles_per_phase_max": int(step.max()),
        "phases_per_sample": chain.phases,
        "schedule": chain.schedule,
        "cycles": int(step.sum()),
        "cycles_per_layer": {L.name: float(out["layer_cycles"][:, :, k].mean()) for k, L in enumerate(layers)},
        "host_cycles_per_sample": float((out["sample_cycles"] - step.sum(axis=1)).mean()),
        "lanes": {L.name: L.lanes for L in layers},
        "cycles_measured_by": f"{TOP}.step_cycles: from a phase's start to its last layer's done, summed over "
                              "a sample's phases",
        **stats,
    }
    run = IntegerRun(spikes=spikes, readout=readout, saturation=saturation, stats=stats)
    return RtlRun(run=run, membranes=membranes)


def simulate(networks: list[tuple[Path, np.ndarray]], max_lanes: int | list[int] = DEFAULT_MAX_LANES,
             build_root: Path | None = None, membranes: bool = False,
             simulator: str = tools.SIMULATORS[0], weights: str = weight_memory.ROM,
             schedule: str | None = None) -> list[RtlRun]:
    """Simulate several networks (``(tables directory, inputs)`` pairs) in one simulator run;
    ``max_lanes``: one value, or one per network; ``membranes``: record every layer's membranes,
    not just the readout's; ``simulator``: ``verilator`` or ``icarus``; ``weights``: ``rom``, or
    ``spram`` (the UP5K build: the driver loads the weights through the load port first);
    ``schedule``: ``pipelined`` or ``serial`` (None: the build's default, :func:`build`)."""
    lanes = [max_lanes] * len(networks) if isinstance(max_lanes, int) else list(max_lanes)
    if len(lanes) != len(networks):
        raise ValueError(f"{len(lanes)} max_lanes values for {len(networks)} networks")
    check_tools(simulator)
    several = sum(1 for _, inputs in networks if len(inputs)) > 1
    built = [build(Path(d), m, build_root, None if several else simulator,  # several: one bench
                   membranes, weights, schedule) for (d, _), m in zip(networks, lanes, strict=True)]
    frames = [_frames(b.chain, inputs) for b, (_, inputs) in zip(built, networks, strict=True)]
    todo = [i for i, f in enumerate(frames) if len(f)]
    runs = [RtlRun(_empty_run(b.chain)) for b in built]
    if not todo:
        return runs
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="lsg-rtl-run-") as work:
        work = Path(work)
        if len(todo) == 1:
            one = built[todo[0]]
            outs = _simulate(simulator, one.model, one.design, [(one.chain, frames[todo[0]], "n0_")], membranes,
                             work)
            bench_seconds = 0.0
        else:
            bench = work / "bench"
            bench.mkdir()
            chains = [built[i].chain for i in todo]
            _compile_bench(chains, [built[i].design for i in todo], bench, simulator, membranes)
            bench_seconds = time.perf_counter() - start
            jobs = [(chain, frames[i], f"n{j}_") for j, (chain, i) in enumerate(zip(chains, todo, strict=True))]
            outs = _simulate(simulator, bench, bench, jobs, membranes, work)
    seconds = time.perf_counter() - start - bench_seconds
    for i, out in zip(todo, outs, strict=True):
        runs[i] = _rtl_run(built[i].chain, out, {
            "compile_seconds": built[i].seconds + bench_seconds, "simulation_seconds": seconds,
            "networks_in_simulation": len(todo), "simulator": simulator})
    return runs


def run_rtl_many(networks: list[tuple[Path, np.ndarray]], max_lanes: int | list[int] = DEFAULT_MAX_LANES,
                 build_root: Path | None = None, simulator: str = tools.SIMULATORS[0],
                 weights: str = weight_memory.ROM, schedule: str | None = None) -> list[IntegerRun]:
    """:func:`run_rtl` for several networks (``(tables directory, inputs)`` pairs) in one simulator run."""
    return [r.run for r in simulate(networks, max_lanes, build_root, simulator=simulator, weights=weights,
                                    schedule=schedule)]


def run_rtl(bundle_dir: Path, inputs: np.ndarray, max_lanes: int = DEFAULT_MAX_LANES,
            build_root: Path | None = None, simulator: str = tools.SIMULATORS[0],
            weights: str = weight_memory.ROM, schedule: str | None = None) -> IntegerRun:
    """Run the FPGA tables in ``bundle_dir`` on encoded inputs (``(B, C, H, W)`` direct pixels or
    ``(B, T, C, H, W)`` 0/1 event frames) in the RTL simulation (``simulator``: ``verilator`` or
    ``icarus``). ``max_lanes`` caps the output channels a layer updates per cycle (1: fully serial);
    ``weights``: ``rom`` ($readmemh ROMs) or ``spram`` (the UP5K's SPRAM, loaded through the load port);
    ``schedule``: ``pipelined`` (a phase's layers at once) or ``serial`` (None: the build's default)."""
    return run_rtl_many([(Path(bundle_dir), inputs)], max_lanes, build_root, simulator, weights, schedule)[0]
