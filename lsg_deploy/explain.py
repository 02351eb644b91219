"""``simulate --fixed-point --explain``: where each layer's float-vs-fixed disagreement comes from.

The float network here is the bundle's folded float graph (:func:`export.fold.run_float`); the
fixed-point network is the bundle's integer graph in its profile, run by the torch fake-quant path
(:mod:`export.fake_quant`, equal to the integer reference bit for bit; the report names it
``reference``, as it names the reference everywhere). Two decompositions:

**By ingredient.** The float network is rerun with one ingredient of the integer record put back
in at a time (:func:`dequantized_graph`; the formulas are :mod:`export.quantize`'s inverses):

* ``decay``: each hidden node's beta replaced by the one its decay code applies;
* ``weights``: each edge's weights by ``W_int 2^weight_exp input_scale / S`` (S: the target
  node's scale);
* ``biases``: each node's bias by ``bias_mant 2^bias_exp / (2^act_shift S)``;
* ``thresholds``: each hidden node's ``v_th`` by ``spike_level(vth) / (2^act_shift S)``. The
  quantizer derives ``S`` from ``vth`` so that this is ``v_th`` again; when every node's is
  within float rounding (:data:`THRESHOLD_TOLERANCE`), the threshold is not quantized separately
  and the ingredient is skipped, with that reason in the report.

With all of them together (``all``; each threshold where a float membrane decides as the
integer one after one rounded decay, :func:`export.quantize.dequantized_threshold` with
``decide_as_integer``) the float network computes the integer membrane divided by
``2^act_shift S``, so its spikes differ from the fixed-point network's only where the integer
state's accumulated rounding (the decay product's shift) or an overflow decided a spike. The report gives that agreement
(``all.agreement_with_reference``) as the check that the formulas are the integer record's meaning,
and what is left is the one ingredient the float network cannot hold: integer state arithmetic.
Its predictions come from its logits in the integer readout's units, rounded. An ingredient's
effect is measured through the whole network (a layer's agreement includes what the ingredient
did to the layers before it).

**Own vs inherited.** Each hidden node of the integer network is run alone on the float
network's spikes of its sources (the encoded input for edges from the input:
:func:`export.fake_quant.run_node`). With

* ``A_full``: the layer's spike agreement, fixed-point network vs float network (what
  ``simulate`` reports per layer), and
* ``A_own``: the agreement of the layer run alone on float inputs with the float layer,

the layer's *inherited share* is ``(A_own - A_full) / (1 - A_full)``: the fraction of its
disagreement that disappears when its inputs are the float network's, i.e. that it inherits from
the layers before it (1 - the share is its own). It is None where ``A_full = 1``, and negative
where the layer's own errors and its inputs' errors partly cancel (the fixed-point inputs then
help). The first layers read only the input, identical in both runs, so their ``A_own = A_full``.

Agreement is the fraction of (sample, step, neuron) spike values that are equal. A layer's
*dominant cause* is the ingredient whose lone quantization gives it the lowest agreement.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from hardware.bundle import Bundle
from hardware.graph import INPUT, Graph
from hardware.profile import Profile
from training.data import EncodedSplit

#: the ingredients of the integer record that :func:`dequantized_graph` can put into the float network
INGREDIENTS = ("decay", "weights", "biases", "thresholds")
ALL = "all"  #: every ingredient at once
#: a dequantized threshold within this relative distance of the float one is the float one (rounding)
THRESHOLD_TOLERANCE = 1e-12


def dequantized_graph(float_graph: Graph, integer_graph: Graph, profile: Profile,
                      ingredients: Collection[str], decide_as_integer: bool = False) -> Graph:
    """A copy of ``float_graph`` with the ``ingredients`` (from :data:`INGREDIENTS`) taken from
    ``integer_graph`` (the same network quantized in ``profile``) and dequantized; everything else
    stays float. The readout keeps its beta and threshold, which the float readout never uses.
    ``decide_as_integer``: thresholds where a float membrane decides as the integer one after a
    rounded decay, ties included (:func:`export.quantize.dequantized_threshold`)."""
    from export.quantize import dequantized_bias, dequantized_threshold, dequantized_weight

    unknown = set(ingredients) - set(INGREDIENTS)
    if unknown:
        raise ValueError(f"unknown ingredients {sorted(unknown)}; choose among {INGREDIENTS}")
    nodes = []
    for node in float_graph.nodes:
        q = integer_graph.node(node.name)
        changes: dict[str, Any] = {}
        if "biases" in ingredients:
            changes["bias"] = dequantized_bias(q, profile)
        if "decay" in ingredients and not node.readout:
            changes["beta"] = profile.code_to_beta(q.dv)
        if "thresholds" in ingredients and not node.readout:
            changes["v_th"] = dequantized_threshold(q, profile, decide_as_integer)
        nodes.append(dataclasses.replace(node, **changes))
    edges = []
    for edge, q in zip(float_graph.edges, integer_graph.edges, strict=True):
        if q.name != edge.name:
            raise ValueError(f"the float and integer records order their edges differently ({edge.name}, {q.name})")
        weight = dequantized_weight(q, integer_graph.node(q.target)) if "weights" in ingredients else edge.weight
        edges.append(dataclasses.replace(edge, weight=weight))
    return Graph(float_graph.input, tuple(nodes), tuple(edges))


def threshold_difference(float_graph: Graph, integer_graph: Graph, profile: Profile) -> float:
    """Largest relative distance between a hidden node's float ``v_th`` and its dequantized threshold."""
    from export.quantize import dequantized_threshold

    return max((abs(dequantized_threshold(integer_graph.node(n.name), profile) - n.v_th) / n.v_th
                for n in float_graph.hidden), default=0.0)


def _agreement(a: np.ndarray, b: np.ndarray) -> float:
    return float((a == b).mean())


def _accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    return float((np.asarray(logits).argmax(axis=1) == labels).mean())


def inherited_share(own: float, full: float) -> float | None:
    """``(A_own - A_full) / (1 - A_full)``; None where the layer agrees fully (nothing to share)."""
    return None if full == 1.0 else (own - full) / (1.0 - full)


SKIPPED_THRESHOLDS = ("not quantized separately: the quantizer derives each node's scale S from its integer "
                      "threshold, so spike_level(vth) / (2^act_shift S) is the float v_th again")
#: what the block's numbers are, written into its JSON
DESCRIPTIONS = {
    "float": "the folded float graph (export.fold.run_float)",
    "reference": "the integer graph in profile {profile}, run by export.fake_quant (equal to the integer reference, "
                 "hardware.reference, bit for bit)",
    "agreement": "fraction of (sample, step, neuron) spike values equal to the float network's",
    "inherited_share": "(own - full) / (1 - full): the part of a layer's disagreement that disappears when its "
                       "inputs are the float network's spikes; null where full = 1",
    "dequantization": {
        "decay": "beta = the profile's decay of the node's code dv",
        "weights": "W_int * 2^weight_exp * input_scale / S (S: the target node's scale)",
        "biases": "bias_mant * 2^bias_exp / (2^act_shift * S)",
        "thresholds": "spike_level(vth) / (2^act_shift * S)",
    },
}
ALL_THRESHOLDS = ("(spike_level(vth) - r -+ 2^-10) / (2^act_shift * S), r the decay rounding's offset (0 floor or "
                  "toward zero, 1/2 half up, 1 the shift form): a float membrane then spikes as the integer one after "
                  "one rounded decay, ties included")


@dataclass(frozen=True)
class IngredientRun:
    """The float network with one ingredient quantized: its accuracy and, per hidden layer, its
    spike agreement with the float network."""

    accuracy: float
    agreement: Mapping[str, float]


@dataclass(frozen=True)
class Skipped:
    """An ingredient not run, and why (the thresholds, where they are the float ones again)."""

    why: str
    largest_relative_difference: float


@dataclass(frozen=True)
class AllDequantized:
    """The float network with every ingredient dequantized (:data:`ALL`): its accuracy, its spike
    agreement with the float network and with the integer reference per layer and overall, and
    how often its predictions equal the reference's."""

    accuracy: float
    agreement: Mapping[str, float]
    agreement_with_reference: Mapping[str, float]
    agreement_with_reference_overall: float
    prediction_agreement_with_reference: float


@dataclass(frozen=True)
class LayerCauses:
    """One hidden layer: its spike agreement with the float network in the integer network
    (``full``) and alone on float inputs (``own``), the inherited share, and the ingredient that
    alone costs it most (None where none changes a spike) with what it costs."""

    name: str
    inputs: tuple[str, ...]
    agreement_reference: float
    agreement_own: float
    inherited_share: float | None
    dominant: str | None
    dominant_loss: float | None


@dataclass(frozen=True)
class Explanation:
    """The ``explain`` block of the report (the module docstring says what each number is)."""

    profile: str
    accuracy_float: float
    accuracy_reference: float
    accuracy_readout_own: float  #: the integer readout alone on the float network's spikes
    ingredients: Mapping[str, IngredientRun | Skipped]
    every: AllDequantized
    layers: tuple[LayerCauses, ...]
    float_equals_trained: float | None = None  #: share of spikes where the folded graph equals the trained model

    @property
    def ran(self) -> dict[str, IngredientRun]:
        """The ingredients that were run."""
        return {k: v for k, v in self.ingredients.items() if isinstance(v, IngredientRun)}

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {**DESCRIPTIONS, "reference": DESCRIPTIONS["reference"].format(profile=self.profile),
                               "accuracy": {"float": self.accuracy_float, "reference": self.accuracy_reference,
                                            "readout_own": self.accuracy_readout_own},
                               "ingredients": {name: {"skipped": v.why, "largest_relative_difference":
                                                      v.largest_relative_difference} if isinstance(v, Skipped)
                                               else {"accuracy": v.accuracy, "agreement": dict(v.agreement)}
                                               for name, v in self.ingredients.items()}}
        if self.float_equals_trained is not None:
            doc["float_equals_trained"] = self.float_equals_trained
        e = self.every
        doc[ALL] = {"thresholds": ALL_THRESHOLDS, "accuracy": e.accuracy, "agreement": dict(e.agreement),
                    "agreement_with_reference": dict(e.agreement_with_reference),
                    "agreement_with_reference_overall": e.agreement_with_reference_overall,
                    "prediction_agreement_with_reference": e.prediction_agreement_with_reference}
        doc["layers"] = [{"name": r.name, "inputs": list(r.inputs), "agreement_reference": r.agreement_reference,
                          "agreement_own": r.agreement_own, "inherited_share": r.inherited_share,
                          "dominant": r.dominant, "dominant_loss": r.dominant_loss} for r in self.layers]
        return doc

    @classmethod
    def from_json(cls, doc: Mapping[str, Any], profile: str) -> Explanation:
        """The block back from its JSON (:meth:`to_json`); ``profile``: the report's."""
        e = doc[ALL]
        every = AllDequantized(e["accuracy"], e["agreement"], e["agreement_with_reference"],
                               e["agreement_with_reference_overall"], e["prediction_agreement_with_reference"])
        ingredients = {name: Skipped(v["skipped"], v["largest_relative_difference"]) if "skipped" in v
                       else IngredientRun(v["accuracy"], v["agreement"]) for name, v in doc["ingredients"].items()}
        layers = tuple(LayerCauses(r["name"], tuple(r["inputs"]), r["agreement_reference"], r["agreement_own"],
                                   r["inherited_share"], r["dominant"], r["dominant_loss"]) for r in doc["layers"])
        acc = doc["accuracy"]
        return cls(profile, acc["float"], acc["reference"], acc["readout_own"], ingredients, every, layers,
                   doc.get("float_equals_trained"))


def explain(bundle: Bundle, test: EncodedSplit, trained_spikes: dict[str, np.ndarray] | None = None,
            progress: Callable[[int, str], Any] | None = None) -> Explanation:
    """The ``explain`` block of the simulate report for ``bundle`` on ``test`` (see the module
    docstring for what it holds). ``trained_spikes`` ({layer: (B, T, N) bool}, the trained
    model's), if given, are compared with the folded float graph's, which this block measures
    against. ``progress(total, name)``, if given, makes a progress bar over its runs."""
    import torch

    from export.fake_quant import encoded_steps, run_fake_quant, run_node
    from export.fold import run_float

    fgraph, igraph, profile, t = bundle.float_graph, bundle.integer_graph, bundle.profile, bundle.timesteps
    hidden = [n.name for n in fgraph.hidden]
    analog = torch.as_tensor(test.analog, dtype=torch.float64)
    separate = threshold_difference(fgraph, igraph, profile) > THRESHOLD_TOLERANCE
    ingredients = [name for name in INGREDIENTS if name != "thresholds" or separate]
    bar = progress(len(ingredients) + 3 + len(hidden), "explain") if progress else None

    def step() -> None:
        if bar is not None:
            bar.update(1)

    def float_run(chosen: Collection[str], as_integer: bool = False) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        logits, spikes = run_float(dequantized_graph(fgraph, igraph, profile, chosen, as_integer), analog, t)
        step()
        return logits.numpy(), {k: v.numpy().astype(bool).transpose(1, 0, 2) for k, v in spikes.items()}

    try:
        float_logits, float_spikes = float_run(())
        fixed_spikes_t, readout = run_fake_quant(igraph, torch.as_tensor(test.pixels), t, profile)
        step()
        fixed_spikes = {k: v.numpy() for k, v in fixed_spikes_t.items()}
        runs = {name: float_run((name,)) for name in ingredients}
        all_logits, all_spikes = float_run(INGREDIENTS, as_integer=True)
        # each node alone on the float network's spikes (and the encoded input)
        sources = {INPUT: encoded_steps(igraph, torch.as_tensor(test.pixels), t),
                   **{k: torch.as_tensor(v, dtype=torch.int64) for k, v in float_spikes.items()}}
        own: dict[str, np.ndarray] = {}
        for name in hidden:
            fired, _ = run_node(igraph.node(name), igraph.incoming(name), sources, profile)
            own[name] = fired.numpy()
            step()
        _, readout_own = run_node(igraph.readout, igraph.incoming(igraph.readout.name), sources, profile)
    finally:
        if bar is not None:
            bar.close()

    labels = test.labels
    ingredient_runs: dict[str, IngredientRun | Skipped] = {}
    for name in INGREDIENTS:
        if name in runs:
            logits, spikes = runs[name]
            ingredient_runs[name] = IngredientRun(_accuracy(logits, labels),
                                                  {k: _agreement(spikes[k], float_spikes[k]) for k in hidden})
        else:
            ingredient_runs[name] = Skipped(SKIPPED_THRESHOLDS, threshold_difference(fgraph, igraph, profile))
    float_equals_trained = None
    if trained_spikes is not None:
        total = sum(v.size for v in float_spikes.values())
        float_equals_trained = sum(
            int(np.count_nonzero(float_spikes[k] == trained_spikes[k])) for k in hidden) / total
    with_reference = {k: _agreement(all_spikes[k], fixed_spikes[k]) for k in hidden}
    neurons = {k: fixed_spikes[k].size for k in hidden}
    # the logits in the integer readout's units (its membrane after T steps), rounded: equal logits
    # there are equal integers, so a tie between classes goes the integer network's way
    all_predictions = np.rint(all_logits * t * (1 << profile.act_shift) * igraph.readout.scale).argmax(axis=1)
    every = AllDequantized(
        accuracy=float((all_predictions == labels).mean()),
        agreement={k: _agreement(all_spikes[k], float_spikes[k]) for k in hidden},
        agreement_with_reference=with_reference,
        agreement_with_reference_overall=sum(with_reference[k] * neurons[k] for k in hidden) / sum(neurons.values()),
        prediction_agreement_with_reference=float((all_predictions == readout.numpy()[:, -1].argmax(1)).mean()))
    layers = []
    for name in hidden:
        full = _agreement(fixed_spikes[name], float_spikes[name])
        mine = _agreement(own[name], float_spikes[name])
        lone = {k: ingredient_runs[k].agreement[name] for k in runs}
        dominant = min(lone, key=lone.get) if lone else None
        if dominant is not None and lone[dominant] == 1.0:
            dominant = None  # no ingredient alone changes a spike of this layer
        layers.append(LayerCauses(name, tuple(e.source for e in igraph.incoming(name)), full, mine,
                                  inherited_share(mine, full), dominant,
                                  None if dominant is None else 1.0 - lone[dominant]))
    return Explanation(profile.name, _accuracy(float_logits, labels), _accuracy(readout.numpy()[:, -1], labels),
                       _accuracy(readout_own.numpy()[:, -1], labels), ingredient_runs, every, tuple(layers),
                       float_equals_trained)
