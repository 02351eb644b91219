"""``simulate``: run a bundle's float and fixed-point networks and gather the report's numbers
(accuracies of every model variant, overall and per class, per-layer agreement and health,
synaptic operations per inference and their energy estimate (:mod:`hardware.costs`), the
resources the network needs on its target (:mod:`hardware.resources`), bit-exact
agreement between the fixed-point backends) and, asked for, where each layer's disagreement comes
from (:mod:`lsg_deploy.explain`), as one typed :class:`~lsg_deploy.report.model.Report`; the text and
the figure are :mod:`lsg_deploy.report`'s job.

The fixed-point backends come from the target registry (:mod:`hardware.targets`): the integer
reference runs every bundle, in the profile it stores; each target adds its own (Lava, the RTL)
and says which bundles they can run. ``all`` runs every backend that can run the bundle and
compares each with the integer reference bit for bit.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from hardware.bundle import Bundle, BundleError
from hardware.graph import DIRECT
from hardware.reference import IntegerRun
from hardware.targets import Backend, BackendError, backends, resources
from lsg_deploy.errors import UsageError
from lsg_deploy.report.model import (
    FLOAT,
    REFERENCE,
    BackendRun,
    Costs,
    Exact,
    FloatAccuracy,
    Header,
    Layer,
    LayerOps,
    Ops,
    PerClass,
    Predictions,
    Report,
    RunCost,
    Scales,
)
from lsg_deploy.tally import RunTally, concatenate_runs
from training.data import DataError, DataSpec, EncodedSplit

ALL = "all"  #: every backend that can run the bundle, each compared with the reference bit for bit
#: ``--check``'s default: every sample of a test set up to this size, this many spread over a larger one
CHECK = 1000


def registry(device: str | None = None) -> dict[str, Backend]:
    """Every backend ``simulate`` offers, by name: the target registry's (:mod:`hardware.targets`:
    the reference, then each target's) and, given a ``device`` (``auto``, ``cpu``, ``cuda``,
    ``cuda:N``), the torch fake-quant path on it (:mod:`lsg_deploy.fake_quant_backend`, which
    ``hardware`` cannot hold: it needs torch). So ``all`` takes fake-quant in only with ``--device``."""
    if device is None:
        return backends()
    from lsg_deploy import fake_quant_backend

    return {**backends(), fake_quant_backend.FAKE_QUANT: fake_quant_backend.backend(device)}


def backends_for(choice: str, bundle: Bundle, device: str | None = None) -> tuple[str, ...]:
    """The backends a ``--backend`` choice runs on ``bundle`` (``all``: every one of
    :func:`registry` that can run it); a chosen backend that cannot is a :class:`UsageError`
    saying why."""
    every = registry(device)
    if choice == ALL:
        return tuple(name for name, b in every.items() if b.refuses(bundle) is None)
    if choice not in every:
        raise UsageError(f"unknown backend {choice!r}; choose one of {', '.join([*every, ALL])}")
    why = every[choice].refuses(bundle)
    if why is not None:
        raise UsageError(f"--backend {choice}: {why}")
    return (choice,)


def checked_samples(samples: int, check: int | None) -> np.ndarray:
    """Which samples the reference reruns to check a :attr:`~hardware.targets.base.Backend.checked`
    backend run without it: every ``k``-th, ``k = ceil(samples / check)``, so at most ``check``
    spread evenly over the whole set (every chunk holds some); None, or ``check >= samples``: all."""
    stride = 1 if check is None or check >= samples else -(-samples // check)
    return np.arange(0, samples, stride)


def _warm_up(backend: Backend) -> float:
    """A backend's one-time set-up (:attr:`Backend.warm_up`); its seconds."""
    start = time.perf_counter()
    backend.warm_up()
    return time.perf_counter() - start


def _run_fixed(chosen: Backend, bundle: Bundle, bundle_dir: Path, inputs: np.ndarray,
               update: Callable[[int], Any] | None, simulator: str | None = None) -> tuple[IntegerRun, float]:
    """One backend's run on ``inputs`` (``update(n)`` after every ``n`` samples) and its seconds."""
    options = {"simulator": simulator or chosen.simulators[0]} if chosen.simulators else {}
    start = time.perf_counter()
    try:
        run = chosen.run(bundle, bundle_dir, inputs, update, **options)
    except BundleError as exc:
        raise UsageError(str(exc)) from None
    except BackendError as exc:
        raise UsageError(exc.summary, detail=exc.detail or None) from None
    return run, time.perf_counter() - start


def _rows(run: IntegerRun, rows: np.ndarray) -> IntegerRun:
    """The samples ``rows`` of a run (spikes and readout; what :func:`exact_agreement` compares)."""
    return IntegerRun(spikes={k: v[rows] for k, v in run.spikes.items()}, readout=run.readout[rows])


def torch_missing() -> str | None:
    """Why the float side (the source model, folding) cannot run here: None where torch imports."""
    try:
        import torch  # noqa: F401
    except ImportError:
        return "torch is not installed (pip install -e \".[train]\" for the float models)"
    return None


def load_for_report(bundle_dir: Path, float_models: bool = True) -> tuple[Bundle, Any, DataSpec]:
    """Read and verify a bundle and, with ``float_models``, its source model, and check that they
    belong together: the copy is the exported checkpoint (SHA-256), and folding it again gives
    exactly the bundle's float layers, names, shapes, timesteps and input. Without
    ``float_models`` the model is None and only numpy is needed: the bundle carries its integer
    network and arithmetic, and its checksums cover the copy of the checkpoint."""
    from hardware.bundle import SOURCE_MODEL, BundleError, read_bundle

    try:
        bundle = read_bundle(bundle_dir)
        source = bundle.source
        spec = DataSpec.from_dict(source.get("data"))
        recorded = source.get("checkpoint_sha256")
        if recorded != bundle.files.get(SOURCE_MODEL):
            raise BundleError(f"{bundle_dir / SOURCE_MODEL} is not the checkpoint the bundle was exported from")
    except (BundleError, DataError) as exc:
        raise UsageError(f"{bundle_dir}: {exc}") from None
    if not float_models:
        return bundle, None, spec
    from export.fold import FoldError, fold
    from training.checkpoint import CheckpointError, load_checkpoint

    try:
        model, _ = load_checkpoint(bundle_dir / SOURCE_MODEL)
        folded = fold(model, bundle.input)
    except (CheckpointError, FoldError) as exc:
        raise UsageError(f"{bundle_dir}: bundle's source model: {exc}") from None
    mismatch = None
    mine_g, theirs_g = bundle.float_graph, folded
    if model.timesteps != bundle.timesteps:
        mismatch = f"timesteps {bundle.timesteps}, its source model {model.timesteps}"
    elif tuple(model.input_shape) != bundle.input.shape:
        mismatch = f"input shape {bundle.input.shape}, its source model {tuple(model.input_shape)}"
    elif [n.name for n in mine_g.nodes] != [n.name for n in theirs_g.nodes]:
        mismatch = f"nodes {[n.name for n in mine_g.nodes]}, its source model {[n.name for n in theirs_g.nodes]}"
    elif [(e.name, e.source, e.target) for e in mine_g.edges] != [(e.name, e.source, e.target) for e in theirs_g.edges]:
        mismatch = "edges that differ from its source model's"
    else:
        for mine, theirs in zip(mine_g.nodes + mine_g.edges, theirs_g.nodes + theirs_g.edges, strict=True):
            scalars = [f.name for f in dataclasses.fields(mine) if f.name not in mine.ARRAYS]
            same = all(getattr(mine, k) == getattr(theirs, k) for k in scalars) and all(
                np.array_equal(getattr(mine, k), getattr(theirs, k)) for k in mine.ARRAYS)
            if not same:
                mismatch = f"a {'node' if mine in mine_g.nodes else 'edge'} {mine.name} that differs from its " \
                           f"source model's"
                break
    if mismatch:
        raise UsageError(f"{bundle_dir}: the bundle has {mismatch}; re-export it")
    return bundle, model, spec


def _saturation_counts(tallies: dict[str, RunTally], graph: Any) -> RunTally | None:
    """The run whose saturation counts the report shows: the reference's, else the first backend
    run that counts every node's (fake-quant does; Lava and the RTL do not), else None."""
    if REFERENCE in tallies:
        return tallies[REFERENCE]
    nodes = {n.name for n in graph.nodes}
    return next((tally for tally in tallies.values() if set(tally.saturation) == nodes), None)


def exact_agreement(a: IntegerRun, b: IntegerRun) -> dict[str, int]:
    """Mismatch counts per layer (spikes) and for the readout membranes, compared with ==."""
    counts = {name: int(np.count_nonzero(a.spikes[name] != b.spikes[name])) for name in a.spikes}
    counts["readout"] = int(np.count_nonzero(a.readout != b.readout))
    return counts


def per_class_accuracy(predictions: np.ndarray, labels: np.ndarray, classes: int) -> dict[str, float | None]:
    """Accuracy on the samples of each class ``0 .. classes-1`` (keys are the class as text, as
    JSON has them); None for a class without samples. Weighted by the class counts, the values
    average to the overall accuracy."""
    predictions, labels = np.asarray(predictions), np.asarray(labels)
    return {str(c): float((predictions[labels == c] == c).mean()) if np.any(labels == c) else None
            for c in range(classes)}


def synaptic_costs(bundle: Bundle, tallies: dict[str, RunTally]) -> tuple[dict[str, LayerOps], Costs]:
    """Synaptic operations per inference per node, from each run's event counts (run -> its
    :class:`~lsg_deploy.tally.RunTally`: the float run's, every fixed-point run's), and the totals
    with the energy estimate (:mod:`hardware.costs`, which has the formulas and the source of the
    per-operation energies). Returns ``(per node, totals)``; the totals add the ANN comparison
    (every synapse one MAC per inference: T = 1)."""
    from hardware import costs

    graph, t = bundle.integer_graph, bundle.timesteps
    ops = {key: costs.operations_from_events(graph, tally.events, tally.samples, t) for key, tally in tallies.items()}
    synapses = {n.name: 0 for n in graph.nodes}
    for op in next(iter(ops.values()), []):  # structural: the same in every run
        synapses[op.target] += op.synapses
    per_run = {key: costs.per_node(graph, edge_ops) for key, edge_ops in ops.items()}
    nodes = {name: LayerOps(n, {key: Ops(sums[name][costs.AC], sums[name][costs.MAC]) for key, sums in per_run.items()})
             for name, n in synapses.items()}
    total_synapses = sum(synapses.values())
    ann_pj = costs.energy_pj(0.0, float(total_synapses))
    totals = {}
    for key, edge_ops in ops.items():
        acs = sum(op.operations for op in edge_ops if op.kind == costs.AC)
        macs = sum(op.operations for op in edge_ops if op.kind == costs.MAC)
        energy = costs.energy_pj(acs, macs)
        totals[key] = RunCost(acs, macs, acs + macs, energy, energy / ann_pj)
    return nodes, Costs(
        basis=costs.ESTIMATE_BASIS, energy_source=costs.ENERGY_SOURCE, pj_per_ac=costs.PJ_PER_AC,
        pj_per_mac=costs.PJ_PER_MAC,
        fan_out="structural: every connection counts, zero weights included; padding is no connection",
        input=("direct: MACs, every synapse every step" if bundle.input.encoding == DIRECT else
               "event frames: ACs, a value n counting as n events"),
        synapses=total_synapses, ann_mac=total_synapses, ann_energy_pj=ann_pj, runs=totals)


#: float values (neurons x steps x samples) the float models hold at once: a batch of a
#: full-width ResNet-19 is 23 samples (~0.5 GB of float64 spikes), a digits chunk one batch
FLOAT_VALUES = 1 << 26


class FloatSide:
    """The float side of a report, counted chunk by chunk like the backends' runs: the source
    model, the folded graph and the folded graph with the quantized decays on each chunk, keeping
    only their correct counts, the source model's predictions and its spikes' tally (and, for
    ``--explain``, which reads them whole, the spikes themselves)."""

    def __init__(self, bundle: Bundle, model: Any, keep_spikes: bool = False):
        from export.quantize import quantized_betas

        self.bundle, self.model, self.keep_spikes = bundle, model, keep_spikes
        self.qbetas = quantized_betas(bundle.integer_graph, bundle.profile)
        self.tally = RunTally(bundle.integer_graph, bundle.timesteps)
        self.correct = {"trained": 0, "folded": 0, "quantized_beta": 0}
        self.kept: list[dict[str, np.ndarray]] = []

    def run(self, part: EncodedSplit) -> dict[str, np.ndarray]:
        """Run the three float models on one chunk and count it; the source model's spikes
        {layer: (B, T, N) bool}, which the backends' spike agreement is measured against."""
        import torch

        from export.fold import run_float
        from training.loop import predict

        t, analog = self.bundle.timesteps, part.analog
        # torch holds every layer's float spikes of a batch: batches of at most FLOAT_VALUES of them
        values = t * sum(node.neurons for node in self.bundle.integer_graph.nodes)
        batch = max(1, FLOAT_VALUES // values)
        logits: dict[str, list[np.ndarray]] = {name: [] for name in self.correct}
        parts: list[dict[str, np.ndarray]] = []
        for lo in range(0, len(analog), batch):
            x = analog[lo:lo + batch]
            trained = predict(self.model, x, batch_size=batch, record=True)
            x64 = torch.as_tensor(x, dtype=torch.float64)
            logits["trained"].append(trained.logits.numpy())
            logits["folded"].append(run_float(self.bundle.float_graph, x64, t)[0].numpy())
            logits["quantized_beta"].append(run_float(self.bundle.float_graph, x64, t, betas=self.qbetas)[0].numpy())
            parts.append({k: v.numpy().astype(bool).transpose(1, 0, 2) for k, v in trained.spikes.items()})
        for name, chunks in logits.items():
            self.correct[name] += int(np.count_nonzero(np.concatenate(chunks).argmax(axis=1) == part.labels))
        spikes = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
        self.tally.add(spikes, np.concatenate(logits["trained"]).argmax(axis=1), part.pixels)
        if self.keep_spikes:
            self.kept.append(spikes)
        return spikes

    def accuracy(self) -> FloatAccuracy:
        """The three accuracies over every chunk counted (each the exact mean of its 0/1 hits)."""
        n = self.tally.samples
        return FloatAccuracy(**{name: hits / n for name, hits in self.correct.items()})

    def spikes(self) -> dict[str, np.ndarray]:
        """The source model's spikes over every chunk (only with ``keep_spikes``)."""
        return {k: np.concatenate([part[k] for part in self.kept]) for k in self.kept[0]} if self.kept else {}


CHUNK = 256  #: samples per chunk of ``simulate --fixed-point``: the runs' spikes live one chunk at a time


def build_report(bundle: Bundle, model: Any, bundle_dir: Path, test: EncodedSplit, backends: tuple[str, ...],
                 progress: Callable[[int, str], Any] | None = None, explain: bool = False,
                 float_missing: str | None = None,
                 on_runs: Callable[[dict[str, IntegerRun]], Any] | None = None,
                 simulator: str | None = None, chunk: int = CHUNK, device: str | None = None,
                 check: int | None = CHECK) -> Report:
    """``model``: the bundle's source model (see :func:`load_for_report`), or None: the float
    models are not run (``float_missing`` says why) and only numpy is needed; ``backends``:
    fixed-point backends to run (names in :func:`registry`); empty for float only. ``progress(total,
    name)``, if given, makes a progress bar (``update(n)``, ``close()``) over the float models' and
    the backends' runs.
    ``explain``: add where each layer's disagreement comes from (:mod:`lsg_deploy.explain`).
    ``on_runs(runs)``, if given, is handed every backend's whole run (backend -> run) once they
    are done (``simulate --dump``; it holds every chunk's runs). ``chunk``: the float models
    and the backends run ``chunk`` samples at a time, and the report counts each chunk
    (:class:`RunTally`, :class:`FloatSide`) before the next runs, so memory does not grow with the
    test set (but for ``explain`` and ``on_runs``, which hold whole runs); the report is the same
    for any chunk. ``device``: where the fake-quant backend runs. With the reference among
    ``backends`` every other backend is compared with it on every sample; without it, a checked
    backend (fake-quant) is compared with the reference on :func:`checked_samples` (``check``),
    which the reference reruns chunk by chunk."""
    floats = FloatSide(bundle, model, keep_spikes=explain) if model is not None else None
    samples = len(test.labels)
    graph, t = bundle.integer_graph, bundle.timesteps
    every = registry(device)
    tallies = {name: RunTally(graph, t) for name in backends}
    setups = {backend: _warm_up(every[backend]) for backend in backends}
    compared = [name for name in backends if name != REFERENCE and (REFERENCE in backends or every[name].checked)]
    mismatches = {name: dict.fromkeys([*(n.name for n in graph.hidden), "readout"], 0) for name in compared}
    checked = np.arange(samples) if REFERENCE in backends else checked_samples(samples, check)
    checker = REFERENCE not in backends and bool(compared)  # the reference reruns the checked samples
    kept: dict[str, list[IntegerRun]] = {name: [] for name in backends}
    runs_named = [*([FLOAT] if floats else []), *backends]
    work = samples * len(runs_named) + (len(checked) if checker else 0)
    names = ", ".join([*runs_named, *([f"{REFERENCE} (check)"] if checker else [])])
    bar = progress(work, names) if progress and runs_named else None
    update = bar.update if bar is not None else None
    try:
        for lo in range(0, samples, chunk):
            part = slice(lo, min(lo + chunk, samples))
            here = EncodedSplit(test.pixels[part], test.labels[part], test.input_max, test.encoding)
            floats_here = floats.run(here) if floats else None
            if floats and bar is not None:
                bar.update(len(here.labels))
            runs = {}
            for backend in backends:
                runs[backend], seconds = _run_fixed(every[backend], bundle, bundle_dir, here.pixels, update, simulator)
                tallies[backend].add_run(runs[backend], here.pixels, seconds, floats_here)
            rows = checked[(checked >= part.start) & (checked < part.stop)] - lo
            if checker and len(rows):
                runs_checked = {name: _rows(runs[name], rows) for name in compared}
                runs_checked[REFERENCE], _ = _run_fixed(every[REFERENCE], bundle, bundle_dir, here.pixels[rows],
                                                        update)
            else:
                runs_checked = runs
            for name, counts in mismatches.items():
                if len(rows):
                    for key, n in exact_agreement(runs_checked[REFERENCE], runs_checked[name]).items():
                        counts[key] += n
            if on_runs is not None:
                for name, run in runs.items():
                    kept[name].append(run)
    finally:
        if bar is not None:
            bar.close()
    if on_runs is not None and backends:
        on_runs({name: concatenate_runs(parts) for name, parts in kept.items()})
    float_pred = floats.tally.all_predictions() if floats else None
    timed = []
    for name, tally in tallies.items():
        predicted, seconds = tally.all_predictions(), tally.seconds
        timed.append(BackendRun(
            name, float((predicted == test.labels).mean()), seconds, setups[name], seconds / samples,
            samples / seconds if seconds > 0 else None,
            float((predicted == float_pred).mean()) if floats else None,
            tally.merged_stats()))  # e.g. the RTL's cycles per timestep
    classes = graph.readout.neurons
    per_class = PerClass(
        samples={str(c): int(np.count_nonzero(test.labels == c)) for c in range(classes)},
        accuracy={**({FLOAT: per_class_accuracy(float_pred, test.labels, classes)} if floats else {}),
                  **{name: per_class_accuracy(tally.all_predictions(), test.labels, classes)
                     for name, tally in tallies.items()}})
    counted = {**({FLOAT: floats.tally} if floats else {}), **tallies}
    synops, costs = synaptic_costs(bundle, counted)
    counting = _saturation_counts(tallies, graph)
    layers = []
    for layer in graph.nodes:
        hidden = not layer.readout
        layers.append(Layer(
            layer.name, layer.neurons, layer.readout, tuple(e.source for e in graph.incoming(layer.name)),
            synops[layer.name],
            firing_rate={run: tally.firing_rate(layer.name) for run, tally in counted.items()} if hidden else {},
            spike_agreement={b: tally.spike_agreement(layer.name)
                             for b, tally in tallies.items()} if hidden and floats else {},
            saturation=counting.saturation[layer.name] if counting is not None else None,
            reference_mismatches={name: counts[layer.name] for name, counts in mismatches.items()}))
    explained = None
    if explain:
        from lsg_deploy.explain import explain as explain_layers

        explained = explain_layers(bundle, test, floats.spikes() if floats else None, progress)
    return Report(
        header=Header(str(bundle_dir), bundle.target, bundle.profile.name, bundle.input.encoding, bundle.artifacts,
                      int(samples), bundle.timesteps),
        float_accuracy=floats.accuracy() if floats else None,
        float_missing=None if floats else float_missing or "the float models were not asked for",
        export_clipped={name: rng.get("clipped", {}) for name, rng in bundle.quantization.get("layers", {}).items()
                        if isinstance(rng, dict)},
        scales=Scales.of(bundle.quantization), backends=tuple(timed), layers=tuple(layers),
        exact=Exact(mismatches, len(checked)) if mismatches else None, per_class=per_class, costs=costs,
        resources=resources(bundle),  # what the network needs on its target (hardware.resources)
        explain=explained,
        predictions=Predictions(tuple(range(samples)), tuple(int(c) for c in test.labels),
                                {**({FLOAT: tuple(int(c) for c in float_pred)} if floats else {}),
                                 **{name: tuple(int(c) for c in tally.all_predictions())
                                    for name, tally in tallies.items()}}))
