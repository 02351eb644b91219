"""Calibration: each hidden layer's scale chosen from activation statistics on training data, not
from its weight range alone (``export --calibrate``, ``finetune --calibrate``).

The scale ``S`` of a node trades resolution for range: the weight range maps the node's largest
weight onto the largest integer weight (:mod:`export.quantize`, steps 1-2), so one outlier
coarsens every other weight's grid. Calibration tries, per hidden node, the scales of a ladder of
weight percentiles (:data:`PERCENTILES`; the weights beyond the percentile are clipped) and keeps
the one whose integer layer behaves most like the float one *on data*: the node is run alone
(:func:`export.fake_quant.run_node`) on the float network's own input spikes for the calibration
samples, and the candidate with the highest spike agreement with the float node wins (the
layer's "own" agreement of ``simulate --explain``; ties go to the higher percentile, less
clipping). Nodes are independent this way, so the choice is one pass in graph order.

Under a profile whose accumulator is ``checked`` (FPGA), a candidate whose worst-case sum would
not fit is not tried. The readout keeps its rule, already a statistic of the data: its scale
bounds the calibration set's largest summed logit. The chosen scales become pins
(:class:`export.quantize.Pin`) with the bias exponent the candidate was tried at (the policy's
fixed one, Loihi's netx grid, unless a bias does not fit it: then the smallest that fits, as the
export would pick), so the recorded agreement is the exported layer's; every candidate's figures
go into the bundle (``quantization.calibration``) and the report.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import torch

from export.fake_quant import encoded_steps, run_node
from export.fold import run_float
from export.quantize import Pin, QuantPolicy, quantize_node
from hardware.graph import INPUT, Graph
from hardware.profile import Profile

#: the weight percentiles whose scales calibration tries, from the weight range itself down
PERCENTILES = (100.0, 99.99, 99.9, 99.7, 99.5, 99.0, 98.0, 97.0, 95.0, 90.0)
#: calibration samples taken from the head of the training split
SAMPLES = 256


def calibrate(graph: Graph, pixels: np.ndarray, timesteps: int, policy: QuantPolicy, profile: Profile,
              samples: int = SAMPLES) -> tuple[dict[str, Pin], dict[str, Any]]:
    """Pins for every hidden node of the folded ``graph`` and the record of the choice, from the
    first ``samples`` encoded training inputs ``pixels``."""
    pixels = torch.as_tensor(np.asarray(pixels[:samples]))
    analog = pixels.to(torch.float64) / graph.input.input_max
    _, float_spikes = run_float(graph, analog, timesteps)
    sources = {INPUT: encoded_steps(graph, pixels, timesteps)}
    sources.update({name: s.transpose(0, 1).to(torch.int64) for name, s in float_spikes.items()})
    limit = (1 << (profile.synapse_bits - 1)) - 1 if profile.synapse_overflow == "checked" else None
    pins: dict[str, Pin] = {}
    record: dict[str, Any] = {"samples": int(len(pixels)), "percentiles": list(PERCENTILES), "layers": {}}
    for node in graph.hidden:
        edges = graph.incoming(node.name)
        want = sources[node.name].bool()
        tried = []
        for p in PERCENTILES:
            trial = dataclasses.replace(policy, on_overflow="clip", weight_percentile=p, pins=None)
            integer, integer_edges, ranges, _ = quantize_node(node, edges, graph.input.input_max, None, trial, profile)
            if ranges["clipped"]["bias"] and policy.bias_exp is not None:  # off the fixed grid: the exponent that fits
                trial = dataclasses.replace(trial, bias_exp=None)
                integer, integer_edges, ranges, _ = quantize_node(node, edges, graph.input.input_max, None, trial,
                                                                  profile)
            if limit is not None and ranges["activation_worst_case"] > limit:
                continue
            if any(c["vth"] == integer.vth for c in tried):
                continue  # a scale already tried
            fired, _ = run_node(integer, integer_edges, sources, profile)
            tried.append({"weight_percentile": p, "vth": int(integer.vth), "scale": float(integer.scale),
                          "bias_exp": int(integer.bias_exp),
                          "clipped_weights": int(ranges["clipped"]["weight"]),
                          "own_agreement": float((fired == want).double().mean())})
        if not tried:
            raise ValueError(f"layer {node.name}: no scale fits the {profile.synapse_bits}-bit accumulator of "
                             f"profile {profile.name}")
        best = max(tried, key=lambda c: (c["own_agreement"], c["weight_percentile"]))
        pins[node.name] = Pin(best["vth"], best["scale"], best["bias_exp"])
        record["layers"][node.name] = {"chosen": best["weight_percentile"], "candidates": tried}
    return pins, record


def calibrated(graph: Graph, calibration: tuple[np.ndarray, int] | None, policy: QuantPolicy, profile: Profile,
               trial: QuantPolicy | None = None) -> tuple[QuantPolicy, dict[str, Any] | None]:
    """What a target's quantizer does first: with ``policy.calibrate``, ``policy`` with the pins
    :func:`calibrate` chooses on ``calibration`` = (encoded training inputs, timesteps), candidates
    tried under ``trial`` (default ``policy``; Loihi's fixes netx's bias grid), and the record;
    without it, ``(policy, None)``."""
    if not policy.calibrate:
        return policy, None
    if calibration is None:
        raise ValueError("calibration needs the calibration inputs and timesteps")
    pins, record = calibrate(graph, *calibration, trial or policy, profile)
    return dataclasses.replace(policy, on_overflow="clip", pins=pins), record
