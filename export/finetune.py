"""Quantization-aware fine-tuning: train a checkpoint with its target's exact integer forward in
the loop, so that the network a target runs is the one the loss saw.

The forward (:class:`IntegerForward`) is the fake-quant network of :mod:`export.fake_quant`, made
differentiable:

* the model is folded by :func:`export.fold.fold_tensors`, the same code an export folds with,
  so the float64 values are bit for bit those of ``export``; tdBN keeps its running statistics
  (the model stays in eval mode) while its affine, the weights, biases and decays train;
* each node is quantized at fixed *pins* (:class:`export.quantize.Pin`: its integer threshold,
  scale and bias exponent), chosen once at the start exactly as the target's export chooses them
  (``--weight-percentile``, ``--clip``); weights and biases are rounded by the quantizer's own
  formulas (:func:`export.quantize.weight_levels`, :func:`~export.quantize.bias_levels`) and
  clipped to the profile's range, with straight-through rounding (identity gradient; zero
  outside the range);
* each step's values come from the profile's integer step (:meth:`hardware.profile.Profile.
  integrate` and :meth:`~hardware.profile.Profile.fires`), the one the integer reference, Lava's
  models and the RTL are checked against; gradients flow through its linear relaxation, the
  float LIF in integer units: ``v = beta_q v_reset + a 2^act_shift + bias`` with the quantized
  decay ``beta_q`` (the decay's straight-through estimate reaches ``b``) and the surrogate of
  the checkpoint's neuron mode centred on the integer spike level, its width ``alpha``
  (``2 v_th sqrt(1 + beta_q^2)`` under LSG) in the same units, ``2^act_shift S alpha``;
* the logits are the readout's integer membrane after ``T`` steps over ``2^act_shift S T``, the
  float readout's scale (Eq. 9).

The decay stays on the target's grid: the forward uses the code nearest the trained ``beta``,
and the checkpoint written at the end holds the grid value itself. The checkpoint records the
pins (its ``quantization`` field, :class:`QuantizationRecord`); ``export`` quantizes with them, and
:func:`lsg_deploy.deploy.finetune` proves, before it keeps a file, that the export of it is,
array for array, the integer network it trained (:meth:`IntegerForward.integer_graph`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from export.fake_quant import weighted_sum
from export.fold import fold_tensors
from export.quantize import Pin, bias_levels, weight_levels
from hardware.graph import INPUT, Graph, Input, IntegerEdge, IntegerNode
from hardware.profile import Profile
from hardware.targets import TARGETS
from training.config import MAX_EPOCHS, MAX_LR, MAX_SEED, MAX_WIDTH
from training.model import Readout, SpikingNet
from training.neuron import beta_logit, lsg_width

RECORD_FORMAT = 1  #: version of the checkpoint's ``quantization`` record


class FinetuneError(ValueError):
    """Fine-tuning that cannot start (a bad record, a network the target cannot hold) or whose
    result does not export to the network it trained."""


# --- the checkpoint's record ------------------------------------------------------------------------

@dataclass(frozen=True)
class QuantizationRecord:
    """What a fine-tuned checkpoint was trained at: the target, its profile, and every node's pin."""

    target: str
    profile: str
    pins: dict[str, Pin]
    weight_percentile: float = 100.0  #: the percentile the starting pins were chosen with
    history: dict[str, Any] = field(default_factory=dict)  #: before/after numbers, per-epoch rows

    def to_dict(self) -> dict[str, Any]:
        return {"format": RECORD_FORMAT, "target": self.target, "profile": self.profile,
                "weight_percentile": self.weight_percentile,
                "pins": {name: pin.to_dict() for name, pin in self.pins.items()}, "history": self.history}

    @classmethod
    def from_checkpoint(cls, doc: dict[str, Any]) -> QuantizationRecord | None:
        """The record of a checkpoint document, or None for a checkpoint that was not fine-tuned."""
        record = doc.get("quantization")
        if record is None:
            return None
        keys = {"format", "target", "profile", "weight_percentile", "pins", "history"}
        if not isinstance(record, dict) or set(record) != keys or record["format"] != RECORD_FORMAT:
            raise FinetuneError(f"the checkpoint's quantization record is not version {RECORD_FORMAT} of this "
                                f"lsg-deploy's (fields {sorted(record) if isinstance(record, dict) else record!r})")
        where = "the checkpoint's quantization record"
        target, profile, percentile = record["target"], record["profile"], record["weight_percentile"]
        if not isinstance(target, str) or target not in TARGETS:
            raise FinetuneError(f"{where}: target must be one of {', '.join(TARGETS)}, got {target!r:.80}")
        if not isinstance(profile, str) or profile not in TARGETS[target].profile_names:
            raise FinetuneError(f"{where}: profile must be one of target {target}'s, "
                                f"{', '.join(TARGETS[target].profile_names)}; got {profile!r:.80}")
        if isinstance(percentile, bool) or not isinstance(percentile, (int, float)) or not (
                math.isfinite(percentile) and 0 < percentile <= 100):
            raise FinetuneError(f"{where}: weight_percentile must be a number in (0, 100], got {percentile!r:.80}")
        if not isinstance(record["history"], dict):
            raise FinetuneError(f"{where}: history must be a table, got {type(record['history']).__name__}")
        if not isinstance(record["pins"], dict) or not record["pins"]:
            raise FinetuneError(f"{where} has no pins")
        if not all(isinstance(name, str) for name in record["pins"]):
            raise FinetuneError(f"{where}: pins must be keyed by node names, got {list(record['pins'])!r:.80}")
        try:
            arithmetic = TARGETS[target].profile(profile)
            pins = {name: Pin.from_dict(pin, f"pin {name}", arithmetic) for name, pin in record["pins"].items()}
        except ValueError as exc:
            raise FinetuneError(f"{where}: {exc}") from None
        return cls(target, profile, pins, float(percentile), dict(record["history"]))

    def check_nodes(self, model: SpikingNet) -> None:
        """The pins name exactly the nodes of ``model``'s graph: its LIF layers and its readout."""
        nodes = {*model.lif_layers(), *(name for name, block in model.blocks.items() if isinstance(block, Readout))}
        missing, extra = sorted(nodes - set(self.pins)), sorted(set(self.pins) - nodes)
        if missing or extra:
            raise FinetuneError("the checkpoint's quantization record does not fit its network: " + "; ".join(
                ([f"no pin for {', '.join(missing[:4])}"] if missing else [])
                + ([f"pins for unknown {', '.join(extra[:4])}"] if extra else [])))


# --- the differentiable integer forward -------------------------------------------------------------

class _RoundSTE(torch.autograd.Function):
    """``round`` (half to even, as numpy's ``rint``) forward, identity backward."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        return torch.round(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        return grad


class _IntegerSpike(torch.autograd.Function):
    """The integer comparison's spikes forward (``fired``, computed by the profile); backward the
    rectangular surrogate ``1/alpha 1(|v - level| < alpha/2)`` in integer membrane units."""

    @staticmethod
    def forward(ctx, v: torch.Tensor, fired: torch.Tensor, level: float, alpha: float) -> torch.Tensor:
        ctx.save_for_backward(v)
        ctx.level, ctx.alpha = level, alpha
        return fired.to(v.dtype)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (v,) = ctx.saved_tensors
        window = (v - ctx.level).abs() < ctx.alpha / 2
        return torch.where(window, grad / ctx.alpha, 0.0), None, None, None


def _straight_through(value: torch.Tensor, exact: torch.Tensor) -> torch.Tensor:
    """``exact``'s values with ``value``'s gradient."""
    return value + (exact.to(value.dtype) - value).detach()


def integer_weight(weight: torch.Tensor, pin: Pin, input_scale: float, profile: Profile) -> torch.Tensor:
    """An edge's integer weights (float64 holding integers) at its target's pin: step 3 of
    :mod:`export.quantize`, clipped to the profile's range, rounding straight through."""
    step = profile.weight_step
    levels = _RoundSTE.apply(weight_levels(weight, pin.scale, input_scale, step))
    return torch.clamp(step * levels, profile.weight_min, profile.weight_max)


def integer_bias(bias: torch.Tensor, pin: Pin, profile: Profile) -> torch.Tensor:
    """A node's integer bias ``bias_mant << bias_exp`` per channel (float64): step 4 at the pin."""
    mant = torch.clamp(_RoundSTE.apply(bias_levels(bias, pin.scale, profile.act_shift, pin.bias_exp)),
                       profile.bias_mant_min, profile.bias_mant_max)
    return mant * float(1 << pin.bias_exp)


@dataclass
class Output:
    logits: torch.Tensor  #: (B, classes): the readout's final integer membrane over 2^act_shift S T
    membranes: torch.Tensor  #: (B, T, classes) the readout's integer membranes (float64 holding integers)
    spikes: dict[str, torch.Tensor]  #: hidden node -> (B, T, neurons)


class IntegerForward:
    """The target's integer network as a differentiable function of ``model``'s parameters, at
    ``pins`` (module docstring). ``model`` stays in eval mode: tdBN uses its running statistics."""

    def __init__(self, model: SpikingNet, spec: Input, profile: Profile, pins: dict[str, Pin]):
        self.model, self.spec, self.profile, self.pins = model, spec, profile, pins
        self.lifs = model.lif_layers()
        graph = fold_tensors(model, spec).graph
        missing = [n.name for n in graph.nodes if n.name not in pins]
        if missing:
            raise FinetuneError(f"no pin for node(s) {', '.join(missing)}")
        if profile.current_stage and profile.decay_form != "complement":
            # quantize gives a current stage du = decay_max, which empties it only in this form
            raise FinetuneError(f"profile {profile.name}: a current stage is modelled for the complement decay only")

    def _decay(self, name: str, beta: torch.Tensor) -> tuple[int, torch.Tensor, float]:
        """``(code, beta_q with beta's gradient, surrogate width in float units)`` of a hidden node."""
        code = self.profile.beta_to_code(beta.item())  # what export does with the folded beta
        beta_q = self.profile.code_to_beta(code)
        lif = self.lifs[name]
        alpha = float(lsg_width(torch.tensor(beta_q), lif.v_th)) if lif.mode == "lsg" else lif.alpha
        return code, _straight_through(beta.double(), torch.tensor(beta_q, dtype=torch.float64)), alpha

    def __call__(self, inputs: torch.Tensor, timesteps: int) -> Output:
        """``inputs``: encoded integers, (B, C, H, W) direct or (B, T, C, H, W) event frames."""
        profile, shift = self.profile, float(1 << self.profile.act_shift)
        folded = fold_tensors(self.model, self.spec)
        graph = folded.graph
        b = inputs.shape[0]
        x = torch.as_tensor(inputs).to(torch.float64)
        out = {INPUT: x.reshape(b, timesteps if graph.input.per_step else 1, -1)}
        spikes: dict[str, torch.Tensor] = {}
        for node in graph.nodes:
            pin = self.pins[node.name]
            a = 0.0
            for edge in graph.incoming(node.name):
                scale_in = float(graph.input.input_max) if edge.source == INPUT else 1.0
                weight = integer_weight(folded.weights[edge.name], pin, scale_in, profile)
                src = out[edge.source]
                # quantize writes weight_exp = 0 for every dense edge: the sum is the activation
                a = a + weighted_sum(edge.geometry, weight, src.reshape(-1, src.shape[-1]), profile).reshape(
                    b, src.shape[1], -1)
            a = a.expand(b, timesteps, a.shape[-1])  # a direct input's current is the same every step
            bias = integer_bias(folded.biases[node.name], pin, profile)
            bias = bias.repeat_interleave(math.prod(node.shape) // node.shape[0])
            if node.readout:
                code, beta, vth, level, alpha = profile.decay_none, torch.tensor(1.0, dtype=torch.float64), \
                    profile.vth_max, None, None
            else:
                code, beta, alpha_f = self._decay(node.name, folded.betas[node.name])
                vth = pin.vth
                level = float(profile.spike_level(vth))
                alpha = alpha_f * shift * pin.scale
            du = profile.decay_max if profile.current_stage else 0
            bias_int = bias.detach().to(torch.int64)
            u_i = v_i = torch.zeros(b, a.shape[-1], dtype=torch.int64)
            v_prev = torch.zeros(b, a.shape[-1], dtype=torch.float64)
            fired_steps, v_steps = [], []
            for t in range(timesteps):
                a_t = a[:, t]
                u_i, v_pre_i, _ = profile.integrate(a_t.detach().to(torch.int64), u_i, v_i, du, code, bias_int)
                v_pre = _straight_through(beta * v_prev + a_t * shift + bias, v_pre_i)
                fired = v_pre_i < v_pre_i if node.readout else profile.fires(v_pre_i, vth)  # the readout never fires
                o = _IntegerSpike.apply(v_pre, fired, level, alpha) if level is not None else fired.to(torch.float64)
                v_prev = v_pre * (1.0 - o)
                v_i = torch.where(fired, 0, v_pre_i)
                fired_steps.append(o)
                v_steps.append(v_prev)
            if node.readout:
                membranes = torch.stack(v_steps, dim=1)
                logits = membranes[:, -1] / (shift * pin.scale * timesteps)
                return Output(logits, membranes, spikes)
            spikes[node.name] = torch.stack(fired_steps, dim=1)
            out[node.name] = spikes[node.name]
        raise FinetuneError("the graph has no readout")  # Graph guarantees one; kept for type checkers

    @torch.no_grad()
    def integer_graph(self) -> Graph:
        """The integer network this forward computes with the model's present parameters, as the
        records an export writes (what :func:`finetune` compares the export of its checkpoint to)."""
        folded = fold_tensors(self.model, self.spec)
        graph, profile = folded.graph, self.profile
        nodes, edges = [], []
        for node in graph.nodes:
            pin = self.pins[node.name]
            for edge in graph.incoming(node.name):
                scale_in = float(graph.input.input_max) if edge.source == INPUT else 1.0
                weight = integer_weight(folded.weights[edge.name], pin, scale_in, profile)
                edges.append(IntegerEdge(edge.name, edge.source, edge.target, edge.geometry,
                                         weight.to(torch.int64).numpy(), 0, scale_in))
            mant = (integer_bias(folded.biases[node.name], pin, profile) / float(1 << pin.bias_exp)).to(torch.int64)
            if node.readout:
                dv, vth = profile.decay_none, profile.vth_max
            else:
                dv, vth = self._decay(node.name, folded.betas[node.name])[0], pin.vth
            nodes.append(IntegerNode(node.name, node.shape, mant.numpy(), pin.bias_exp,
                                     profile.decay_max if profile.current_stage else 0, dv, vth, pin.scale,
                                     readout=node.readout))
        order = {e.name: i for i, e in enumerate(graph.edges)}
        return Graph(graph.input, tuple(nodes), tuple(sorted(edges, key=lambda e: order[e.name])))


def snap_decays(model: SpikingNet, profile: Profile) -> None:
    """Put every trained decay on the profile's grid: ``b = logit(code_to_beta(code))``, where the
    code is the one the forward used; a decay of exactly 0 or 1 (no logit) keeps its ``b``, as
    does one whose float32 logit would land on another code."""
    with torch.no_grad():
        for lif in model.lif_layers().values():
            if not isinstance(lif.b, torch.nn.Parameter):
                continue
            code = profile.beta_to_code(lif.beta.item())
            target = profile.code_to_beta(code)
            if not 0.0 < target < 1.0:
                continue
            before = lif.b.clone()
            lif.b.fill_(beta_logit(target))
            if profile.beta_to_code(lif.beta.item()) != code:
                lif.b.copy_(before)


def graphs_equal(a: Graph, b: Graph) -> list[str]:
    """Where two integer graphs differ (names of fields), empty when they are equal array for array."""
    diffs = []
    for x, y in zip(a.nodes, b.nodes, strict=True):
        for name in ("bias_exp", "du", "dv", "vth", "scale", "readout", "shape"):
            if getattr(x, name) != getattr(y, name):
                diffs.append(f"node {x.name}: {name} {getattr(x, name)} != {getattr(y, name)}")
        if not np.array_equal(x.bias_mant, y.bias_mant):
            diffs.append(f"node {x.name}: bias_mant")
    for x, y in zip(a.edges, b.edges, strict=True):
        if not np.array_equal(x.weight, y.weight) or x.weight_exp != y.weight_exp or x.input_scale != y.input_scale:
            diffs.append(f"edge {x.name}: weights")
    return diffs


# --- the loop ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class FinetuneConfig:
    """The fine-tuning loop's settings, in the ranges :class:`training.config.TrainConfig` allows."""

    epochs: int = 5
    lr: float = 3e-4
    batch_size: int = 64
    seed: int = 0

    def __post_init__(self) -> None:
        counts = (self.epochs, self.batch_size, self.seed)
        if not all(isinstance(n, int) and not isinstance(n, bool) for n in counts):
            raise ValueError(f"epochs, batch size and seed must be integers, got {counts}")
        if not (1 <= self.epochs <= MAX_EPOCHS and 1 <= self.batch_size <= MAX_WIDTH):
            raise ValueError(f"epochs and batch size must be >= 1 (at most {MAX_EPOCHS} and {MAX_WIDTH}), got "
                             f"{self.epochs} and {self.batch_size}")
        if not 0 <= self.seed <= MAX_SEED:
            raise ValueError(f"seed must lie in [0, {MAX_SEED}] (numpy's seed range, as train's), got {self.seed}")
        lr = self.lr
        if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not (math.isfinite(lr) and 0 < lr <= MAX_LR):
            raise ValueError(f"learning rate must be positive, at most {MAX_LR:g} (as train's), got {lr}")


@torch.no_grad()
def evaluate(forward: IntegerForward, pixels: np.ndarray, labels: np.ndarray, timesteps: int,
             batch: int = 256) -> float:
    """Test accuracy of the integer network (final readout membrane's argmax, as every backend)."""
    correct = 0
    for i in range(0, len(labels), batch):
        out = forward(torch.as_tensor(pixels[i:i + batch]), timesteps)
        correct += int((out.membranes[:, -1].argmax(1).numpy() == labels[i:i + batch]).sum())
    return correct / max(len(labels), 1)


def train_epochs(forward: IntegerForward, config: FinetuneConfig, train: tuple[np.ndarray, np.ndarray],
                 test: tuple[np.ndarray, np.ndarray], timesteps: int,
                 on_epoch: Callable[[dict[str, float]], None] = lambda row: None,
                 progress: Callable[[int, str], Any] | None = None) -> list[dict[str, float]]:
    """Fine-tune ``forward.model`` in place with Adam; returns one row per epoch (loss, train and
    test accuracy of the integer network)."""
    model = forward.model
    model.eval()  # tdBN keeps its running statistics: they are folded, not re-estimated
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=config.lr)
    generator = torch.Generator().manual_seed(config.seed)
    pixels, labels = train
    rows = []
    for epoch in range(1, config.epochs + 1):
        order = torch.randperm(len(labels), generator=generator).numpy()
        bar = progress(len(labels), f"finetune {epoch}/{config.epochs}") if progress else None
        loss_sum, correct = 0.0, 0
        for i in range(0, len(order), config.batch_size):
            idx = order[i:i + config.batch_size]
            out = forward(torch.as_tensor(pixels[idx]), timesteps)
            target = torch.as_tensor(labels[idx])
            loss = torch.nn.functional.cross_entropy(out.logits, target)
            if not torch.isfinite(loss):
                raise FinetuneError(f"the loss became {loss.item()} in epoch {epoch}; lower --lr")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if not all(bool(torch.isfinite(p).all()) for p in params):
                raise FinetuneError(f"the weights became NaN or infinite in epoch {epoch}; lower --lr")
            loss_sum += loss.item() * len(idx)
            correct += int((out.logits.argmax(1) == target).sum())
            if bar is not None:
                bar.update(len(idx))
        if bar is not None:
            bar.close()
        row = {"epoch": epoch, "loss": loss_sum / len(labels), "train_accuracy": correct / len(labels),
               "test_accuracy": evaluate(forward, *test, timesteps)}
        rows.append(row)
        on_epoch(row)
    return rows
