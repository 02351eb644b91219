"""What a report needs of one run, summed over the test set chunk by chunk.

``simulate --fixed-point`` runs the integer backends over the test set in chunks so that no run's
spikes outlive their chunk (a full-width ResNet-19 sample holds ~2.9 MB of them). A
:class:`RunTally` keeps, per run (a fixed-point backend's or the float model's), only what the
report reads: integer counts, which add up over chunks to the whole set's exactly, and the
predictions (one integer per sample). The report's fractions are those counts over the whole
set's, so they equal what the whole run gives, bit for bit: ``np.mean`` of 0/1 values is their
exact float64 sum divided by their number.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from hardware import costs
from hardware.graph import Graph
from hardware.reference import SATURATION_KINDS, IntegerRun


@dataclass
class RunTally:
    """One run's counts over the chunks seen so far (see the module docstring)."""

    graph: Graph
    timesteps: int
    samples: int = 0
    predictions: list[np.ndarray] = field(default_factory=list)  #: one array per chunk
    spikes: dict[str, int] = field(default_factory=dict)  #: hidden node -> spikes
    float_agreement: dict[str, int] = field(default_factory=dict)  #: hidden node -> positions == the float run's
    events: dict[str, np.ndarray] = field(default_factory=dict)  #: edge source -> events per neuron (costs)
    saturation: dict[str, dict[str, int]] = field(default_factory=dict)  #: node -> kind -> count
    seconds: float = 0.0
    stats: list[tuple[int, Mapping[str, Any]]] = field(default_factory=list)  #: (chunk samples, the run's stats)

    def add(self, spikes: Mapping[str, np.ndarray], predictions: np.ndarray, inputs: np.ndarray,
            float_spikes: Mapping[str, np.ndarray] | None = None) -> None:
        """Count one chunk: its spikes (hidden node -> (B, T, N)), predictions (B,) and encoded
        inputs; with ``float_spikes`` (the float model's on the same samples), where they agree."""
        self.samples += len(predictions)
        self.predictions.append(np.asarray(predictions))
        for node in self.graph.hidden:
            s = spikes[node.name]
            self.spikes[node.name] = self.spikes.get(node.name, 0) + int(np.count_nonzero(s))
            if float_spikes is not None:
                same = int(np.count_nonzero(s == float_spikes[node.name]))
                self.float_agreement[node.name] = self.float_agreement.get(node.name, 0) + same
        for source, counts in costs.source_events(self.graph, spikes, inputs, self.timesteps).items():
            self.events[source] = self.events[source] + counts if source in self.events else counts

    def add_run(self, run: IntegerRun, inputs: np.ndarray, seconds: float,
                float_spikes: Mapping[str, np.ndarray] | None = None) -> None:
        """Count one chunk's fixed-point run (:meth:`add`), its saturation, time and stats."""
        self.add(run.spikes, run.predictions(), inputs, float_spikes)
        for node, kinds in run.saturation.items():
            mine = self.saturation.setdefault(node, dict.fromkeys(SATURATION_KINDS, 0))
            for kind, n in kinds.items():
                mine[kind] = mine.get(kind, 0) + int(n)
        self.seconds += seconds
        if run.stats:
            self.stats.append((len(inputs), run.stats))

    def all_predictions(self) -> np.ndarray:
        return np.concatenate(self.predictions) if self.predictions else np.zeros(0, np.int64)

    def positions(self, node: str) -> int:
        """How many (sample, step, neuron) positions of hidden ``node`` were counted."""
        return self.samples * self.timesteps * self.graph.node(node).neurons

    def firing_rate(self, node: str) -> float:
        return self.spikes[node] / self.positions(node)

    def spike_agreement(self, node: str) -> float:
        return self.float_agreement[node] / self.positions(node)

    def merged_stats(self) -> dict[str, Any]:
        return merge_stats(self.stats)


def merge_stats(parts: list[tuple[int, Mapping[str, Any]]]) -> dict[str, Any]:
    """A run's stats (e.g. the RTL's cycles) from its chunks' ``(samples, stats)``: one chunk's as
    they are; over several, values every chunk shares kept, counts summed, ``*_min`` / ``*_max``
    the extremes, and other means weighted by the chunks' samples (equal to the whole run's mean
    up to float rounding)."""
    if len(parts) <= 1:
        return dict(parts[0][1]) if parts else {}
    return _merge([s for _, s in parts], [n for n, _ in parts])


def _merge(parts: list[Mapping[str, Any]], weights: list[int]) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for key in parts[0]:
        values = [p[key] for p in parts]
        if all(v == values[0] for v in values):
            merged[key] = values[0]
        elif isinstance(values[0], Mapping):
            merged[key] = _merge(values, weights)
        elif key.endswith("_min"):
            merged[key] = min(values)
        elif key.endswith("_max"):
            merged[key] = max(values)
        elif isinstance(values[0], int):
            merged[key] = sum(values)
        else:
            merged[key] = sum(v * w for v, w in zip(values, weights, strict=True)) / sum(weights)
    return merged


def concatenate_runs(parts: list[IntegerRun]) -> IntegerRun:
    """One run from its chunks' runs, in order (``simulate --dump`` writes whole runs)."""
    first = parts[0]
    saturation = {node: {kind: sum(p.saturation[node][kind] for p in parts) for kind in kinds}
                  for node, kinds in first.saturation.items()}
    return IntegerRun(spikes={name: np.concatenate([p.spikes[name] for p in parts]) for name in first.spikes},
                      readout=np.concatenate([p.readout for p in parts]), saturation=saturation,
                      stats=merge_stats([(len(p.readout), p.stats) for p in parts if p.stats]))
