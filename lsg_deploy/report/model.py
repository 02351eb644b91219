"""The simulate report as typed records.

:func:`lsg_deploy.simulate.build_report` fills them; the text (:mod:`lsg_deploy.report.text`) and
the figure (:mod:`lsg_deploy.report.figure`) read them by attribute; :meth:`Report.to_json` is the
JSON of ``simulate --json`` (docs/report.md) and :meth:`Report.from_json` reads it back, so a
report written once can be shown again: ``Report.from_json(r.to_json()) == r``.

Every run has one name, the same in every section of the JSON and the text: ``float`` for the
trained model (:data:`FLOAT`) and a fixed-point backend's own name, ``reference`` for the integer
reference (:data:`REFERENCE`), ``lava``, ``rtl``. Keys built from a run's name:
``firing_rate_<run>``, ``spike_agreement_<backend>``, ``<backend>_reference_mismatches``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from hardware.targets import REFERENCE as REFERENCE_BACKEND
from lsg_deploy.explain import Explanation

FLOAT = "float"  #: the trained float model's run
REFERENCE = REFERENCE_BACKEND.name  #: the integer reference's (:mod:`hardware.reference`)


@dataclass(frozen=True)
class Header:
    """What was run: the bundle, its target and profile, the test samples, T, the input encoding,
    and the bundle's artifacts (each ``{"file": ...}`` or ``{"skipped": why}``)."""

    bundle: str
    target: str
    profile: str
    input_encoding: str
    artifacts: Mapping[str, Mapping[str, Any]]
    samples: int
    timesteps: int

    @property
    def skipped(self) -> dict[str, str]:
        """The artifacts export did not write, and why."""
        return {name: entry["skipped"] for name, entry in self.artifacts.items() if "skipped" in entry}


@dataclass(frozen=True)
class FloatAccuracy:
    """Test accuracy of the float models: the trained model, its folded graph (tdBN and pooling in
    the weights) and the folded graph with the target's quantized decays."""

    trained: float
    folded: float
    quantized_beta: float

    def to_json(self) -> dict[str, float]:
        return {FLOAT: self.trained, "folded_float": self.folded, "float_quantized_beta": self.quantized_beta}


@dataclass(frozen=True)
class BackendRun:
    """One fixed-point backend's run: its accuracy, its time (set-up apart), how often its
    predictions equal the float model's (None without a float run) and what else it measured
    (``stats``: the RTL's clock cycles)."""

    name: str
    accuracy: float
    seconds: float
    setup_seconds: float  #: before the timed run (compiling or loading kernels)
    seconds_per_sample: float
    samples_per_second: float | None  #: None when the run took no measurable time
    prediction_agreement_with_float: float | None
    stats: Mapping[str, Any] = field(default_factory=dict)

    @property
    def cycles_per_timestep(self) -> float | None:
        """The RTL design's clock cycles per time step (mean), None for a backend without cycles."""
        return self.stats.get("cycles_per_timestep")

    def to_json(self) -> dict[str, Any]:
        doc = {"seconds": self.seconds, "setup_seconds": self.setup_seconds,
               "seconds_per_sample": self.seconds_per_sample, "samples_per_second": self.samples_per_second}
        if self.prediction_agreement_with_float is not None:
            doc["prediction_agreement_with_float"] = self.prediction_agreement_with_float
        return {**doc, **self.stats}

    @classmethod
    def from_json(cls, name: str, accuracy: float, doc: Mapping[str, Any]) -> BackendRun:
        own = ("seconds", "setup_seconds", "seconds_per_sample", "samples_per_second",
               "prediction_agreement_with_float")
        return cls(name, accuracy, doc["seconds"], doc["setup_seconds"], doc["seconds_per_sample"],
                   doc["samples_per_second"], doc.get("prediction_agreement_with_float"),
                   {k: v for k, v in doc.items() if k not in own})


@dataclass(frozen=True)
class Exact:
    """Each backend besides the reference compared with it bit for bit: per backend, the
    mismatches per hidden layer (spikes) and for the readout membranes (``readout``), over
    ``samples`` samples (every one where the reference ran beside them; a checked backend run
    alone, such as fake-quant, is compared on the samples ``--check`` picks)."""

    mismatches: Mapping[str, Mapping[str, int]]
    samples: int | None = None  #: None in reports written before it was recorded

    @property
    def pair(self) -> str:
        return " == ".join([REFERENCE, *self.mismatches])

    @property
    def equal(self) -> bool:
        return not any(v for counts in self.mismatches.values() for v in counts.values())

    def in_words(self) -> str:
        """``conv1 0, fc1 2`` (one backend), ``lava: conv1 0; rtl: fc1 2`` (several)."""
        if len(self.mismatches) == 1:
            return per_layer(next(iter(self.mismatches.values())))
        return "; ".join(f"{name}: {per_layer(counts)}" for name, counts in self.mismatches.items())

    def to_json(self) -> dict[str, Any]:
        # one backend besides the reference (the usual case) keeps the counts flat
        flat = next(iter(self.mismatches.values())) if len(self.mismatches) == 1 else self.mismatches
        doc = {"pair": self.pair, "mismatches": dict(flat), "equal": self.equal}
        return doc if self.samples is None else {**doc, "samples": self.samples}

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> Exact:
        others = doc["pair"].split(" == ")[1:]
        mismatches = doc["mismatches"]
        return cls({others[0]: mismatches} if len(others) == 1 else mismatches, doc.get("samples"))


def per_layer(counts: Mapping[str, Any]) -> str:
    """``{'conv1': 0, 'fc1': 2}`` as ``conv1 0, fc1 2``: a mapping in words, not a Python dict."""
    return ", ".join(f"{name} {value}" for name, value in counts.items())


@dataclass(frozen=True)
class Ops:
    """Synaptic operations per inference: accumulates (driven by events) and multiply-accumulates
    (on an analog input)."""

    ac: float
    mac: float


@dataclass(frozen=True)
class LayerOps:
    """A node's structural synapses and, per run (``float``, each backend), its operations."""

    synapses: int
    runs: Mapping[str, Ops]

    def to_json(self) -> dict[str, Any]:
        return {"synapses": self.synapses,
                **{k: {"ac": ops.ac, "mac": ops.mac} for k, ops in self.runs.items()}}

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> LayerOps:
        return cls(doc["synapses"], {k: Ops(v["ac"], v["mac"]) for k, v in doc.items()
                                     if k != "synapses"})


@dataclass(frozen=True)
class Layer:
    """One node of the integer graph: its size and sources, its synaptic operations; for a hidden
    node the firing rate of each run (``float``, each backend), and each backend's spike agreement
    with the float run (the share of neuron-steps where both spike or both stay silent); the
    reference's saturation counts; each other backend's spike mismatches with the reference."""

    name: str
    neurons: int
    readout: bool
    inputs: tuple[str, ...]
    synops: LayerOps
    firing_rate: Mapping[str, float] = field(default_factory=dict)  #: run -> spikes per neuron and step
    spike_agreement: Mapping[str, float] = field(default_factory=dict)  #: backend -> agreement with float
    saturation: Mapping[str, int] | None = None
    reference_mismatches: Mapping[str, int] = field(default_factory=dict)  #: other backend -> mismatches

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"name": self.name, "neurons": self.neurons, "readout": self.readout,
                               "inputs": list(self.inputs), "synops": self.synops.to_json()}
        if FLOAT in self.firing_rate:
            doc["firing_rate_float"] = self.firing_rate[FLOAT]
        if self.saturation is not None:
            doc["saturation"] = dict(self.saturation)
        for run, rate in self.firing_rate.items():
            if run != FLOAT:
                doc[f"firing_rate_{run}"] = rate
            if run in self.spike_agreement:
                doc[f"spike_agreement_{run}"] = self.spike_agreement[run]
        doc.update({f"{name}_reference_mismatches": n for name, n in self.reference_mismatches.items()})
        return doc

    @classmethod
    def from_json(cls, doc: Mapping[str, Any], backends: list[str]) -> Layer:
        def each(runs: list[str], key: str) -> dict[str, Any]:
            return {run: doc[k] for run in runs if (k := key.format(run)) in doc}

        return cls(doc["name"], doc["neurons"], doc["readout"], tuple(doc["inputs"]), LayerOps.from_json(doc["synops"]),
                   each([FLOAT, *backends], "firing_rate_{}"), each(backends, "spike_agreement_{}"),
                   doc.get("saturation"), {b: doc[k] for b in backends if (k := f"{b}_reference_mismatches") in doc})


@dataclass(frozen=True)
class RunCost:
    """One run's synaptic operations per inference over the whole network, and their energy
    estimate, also as a share of the same network run as an ANN."""

    ac: float
    mac: float
    synops: float
    energy_pj: float
    energy_vs_ann: float


@dataclass(frozen=True)
class Costs:
    """The totals of the synaptic operations and the energy estimate (:mod:`hardware.costs` has
    the formulas and the source of the per-operation energies): the basis, the per-operation
    energies, how fan-out and the input count, the structural synapses, the ANN comparison (every
    synapse one MAC per inference) and one :class:`RunCost` per run."""

    basis: str
    energy_source: str
    pj_per_ac: float
    pj_per_mac: float
    fan_out: str
    input: str
    synapses: int
    ann_mac: int
    ann_energy_pj: float
    runs: Mapping[str, RunCost]

    def to_json(self) -> dict[str, Any]:
        return {"basis": self.basis, "energy_source": self.energy_source, "pj_per_ac": self.pj_per_ac,
                "pj_per_mac": self.pj_per_mac, "fan_out": self.fan_out, "input": self.input,
                "synapses": self.synapses, "ann": {"mac": self.ann_mac, "energy_pj": self.ann_energy_pj},
                **{k: vars(cost).copy() for k, cost in self.runs.items()}}

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> Costs:
        fixed = ("basis", "energy_source", "pj_per_ac", "pj_per_mac", "fan_out", "input", "synapses", "ann")
        return cls(*(doc[k] for k in fixed[:-1]), doc["ann"]["mac"], doc["ann"]["energy_pj"],
                   {k: RunCost(**v) for k, v in doc.items() if k not in fixed})


@dataclass(frozen=True)
class PerClass:
    """Test samples per class and each run's accuracy per class (None for a class without
    samples); classes are keyed by their number as text, as JSON has them."""

    samples: Mapping[str, int]
    accuracy: Mapping[str, Mapping[str, float | None]]  #: run -> class -> accuracy

    def to_json(self) -> dict[str, Any]:
        return {"samples": dict(self.samples), **{k: dict(v) for k, v in self.accuracy.items()}}

    @classmethod
    def from_json(cls, doc: Mapping[str, Any], runs: list[str]) -> PerClass:
        return cls(doc["samples"], {run: doc[run] for run in runs if run in doc})


@dataclass(frozen=True)
class Predictions:
    """Per test sample: its position in the dataset's test split (``indices``), its label and
    each run's predicted class (``float``, each backend; argmax of the final readout, the lowest
    index on ties), in the order run."""

    indices: tuple[int, ...]
    labels: tuple[int, ...]
    runs: Mapping[str, tuple[int, ...]]  #: run -> predicted class per sample

    def to_json(self) -> dict[str, Any]:
        return {"indices": list(self.indices), "labels": list(self.labels),
                **{run: list(classes) for run, classes in self.runs.items()}}

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> Predictions:
        return cls(tuple(doc["indices"]), tuple(doc["labels"]),
                   {k: tuple(v) for k, v in doc.items() if k not in ("indices", "labels")})


@dataclass(frozen=True)
class Candidate:
    """A scale calibration tried for a layer (:mod:`export.calibrate`): the weight percentile
    mapped to the largest integer weight, the scale and threshold it gives, the weights it clips
    and the agreement of the integer layer alone on the float network's spikes with the float
    layer."""

    weight_percentile: float
    scale: float
    clipped_weights: int
    own_agreement: float
    vth: int | None = None
    bias_exp: int | None = None

    def to_json(self) -> dict[str, Any]:
        doc = {"weight_percentile": self.weight_percentile, "vth": self.vth, "scale": self.scale,
               "bias_exp": self.bias_exp, "clipped_weights": self.clipped_weights, "own_agreement": self.own_agreement}
        return {k: v for k, v in doc.items() if v is not None}


@dataclass(frozen=True)
class CalibratedLayer:
    """A hidden layer's calibration: the chosen weight percentile, one of its candidates'."""

    chosen: float
    candidates: tuple[Candidate, ...]

    @property
    def choice(self) -> Candidate:
        return next(c for c in self.candidates if c.weight_percentile == self.chosen)

    @property
    def weight_range(self) -> Candidate | None:
        """The candidate at percentile 100 (the weight range itself), if it was tried."""
        return next((c for c in self.candidates if c.weight_percentile == 100.0), None)


WEIGHT_RANGE, CALIBRATED, FINE_TUNED = "weight range", "calibrated", "fine-tuned"  #: how scales are chosen


@dataclass(frozen=True)
class Scales:
    """How the export chose its scales (``rule``): from the weight ranges (at
    ``weight_percentile``), calibrated on ``samples`` training samples (each hidden layer's
    choice in ``layers``, among ``percentiles``) or pinned by fine-tuning."""

    rule: str
    weight_percentile: float | None = None
    samples: int | None = None
    percentiles: tuple[float, ...] | None = None
    layers: Mapping[str, CalibratedLayer] = field(default_factory=dict)

    @classmethod
    def of(cls, quantization: Mapping[str, Any]) -> Scales:
        """From a bundle's ``quantization`` record (checked by :func:`hardware.bundle.read_bundle`)."""
        layers = quantization.get("layers", {})
        if "calibration" in quantization:
            return cls.from_json({"rule": CALIBRATED, **quantization["calibration"]})
        if layers and all(r.get("pinned") for r in layers.values() if isinstance(r, dict)):
            return cls(FINE_TUNED)
        return cls(WEIGHT_RANGE, weight_percentile=quantization.get("policy", {}).get("weight_percentile"))

    def to_json(self) -> dict[str, Any]:
        if self.rule == WEIGHT_RANGE:
            return {"rule": self.rule, "weight_percentile": self.weight_percentile}
        if self.rule != CALIBRATED:
            return {"rule": self.rule}
        return {"rule": self.rule, "samples": self.samples,
                **({"percentiles": list(self.percentiles)} if self.percentiles is not None else {}),
                "layers": {name: {"chosen": layer.chosen, "candidates": [c.to_json() for c in layer.candidates]}
                           for name, layer in self.layers.items()}}

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> Scales:
        percentiles = doc.get("percentiles")
        return cls(doc["rule"], doc.get("weight_percentile"), doc.get("samples"),
                   tuple(percentiles) if percentiles is not None else None,
                   {name: CalibratedLayer(layer["chosen"], tuple(Candidate(**c) for c in layer["candidates"]))
                    for name, layer in doc.get("layers", {}).items()})


@dataclass(frozen=True)
class Report:
    """Everything ``simulate`` measured (docs/report.md says what each number means). Without a
    float run (no torch) ``float_accuracy`` is None and ``float_missing`` says why."""

    header: Header
    float_accuracy: FloatAccuracy | None
    float_missing: str | None
    export_clipped: Mapping[str, Mapping[str, int]]  #: node -> what export clipped (--clip)
    scales: Scales
    backends: tuple[BackendRun, ...]
    layers: tuple[Layer, ...]
    exact: Exact | None
    per_class: PerClass
    costs: Costs
    resources: Mapping[str, Any] | None  #: :func:`hardware.targets.resources`, formatted by hardware.resources
    explain: Explanation | None = None
    predictions: Predictions | None = None  #: per sample (None in reports written before they were)

    def __post_init__(self) -> None:
        if (self.float_accuracy is None) == (self.float_missing is None):
            raise ValueError("a report has either the float accuracies or the reason they are missing")

    @property
    def has_float(self) -> bool:
        return self.float_accuracy is not None

    @property
    def backend_names(self) -> list[str]:
        return [b.name for b in self.backends]

    @property
    def accuracy(self) -> dict[str, float]:
        """Every run's test accuracy as the JSON names it: the float models, then each backend."""
        floats = self.float_accuracy.to_json() if self.float_accuracy else {}
        return {**floats, **{b.name: b.accuracy for b in self.backends}}

    def to_json(self) -> dict[str, Any]:
        """The report as ``simulate --json`` writes it (docs/report.md)."""
        h = self.header
        doc: dict[str, Any] = {"bundle": h.bundle, "target": h.target, "profile": h.profile,
                               "input_encoding": h.input_encoding, "artifacts": h.artifacts, "samples": h.samples,
                               "timesteps": h.timesteps, "accuracy": self.accuracy}
        if self.float_missing is not None:
            doc["float_missing"] = self.float_missing
        doc.update({"export_clipped": self.export_clipped, "scales": self.scales.to_json(),
                    "backends": {b.name: b.to_json() for b in self.backends},
                    "layers": [layer.to_json() for layer in self.layers]})
        if self.exact is not None:
            doc["exact"] = self.exact.to_json()
        doc["per_class"] = self.per_class.to_json()
        if self.predictions is not None:
            doc["predictions"] = self.predictions.to_json()
        doc.update({"costs": self.costs.to_json(), "resources": self.resources})
        if self.explain is not None:
            doc["explain"] = self.explain.to_json()
        return doc

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> Report:
        """A report back from its JSON (:meth:`to_json`)."""
        accuracy, names, explain = doc["accuracy"], list(doc["backends"]), doc.get("explain")
        floats = FloatAccuracy(accuracy[FLOAT], accuracy["folded_float"], accuracy["float_quantized_beta"]) \
            if FLOAT in accuracy else None
        header = Header(doc["bundle"], doc["target"], doc["profile"], doc["input_encoding"], doc["artifacts"],
                        doc["samples"], doc["timesteps"])
        return cls(header, floats, doc.get("float_missing"), doc["export_clipped"], Scales.from_json(doc["scales"]),
                   tuple(BackendRun.from_json(n, accuracy[n], doc["backends"][n]) for n in names),
                   tuple(Layer.from_json(row, names) for row in doc["layers"]),
                   Exact.from_json(doc["exact"]) if "exact" in doc else None,
                   PerClass.from_json(doc["per_class"], [FLOAT, *names]), Costs.from_json(doc["costs"]),
                   doc["resources"], Explanation.from_json(explain, header.profile) if explain is not None else None,
                   Predictions.from_json(doc["predictions"]) if "predictions" in doc else None)
