"""The LSG neuron: one LIF step function, the rectangular surrogate, and the LSG width rule.

Iterative LIF with hard reset (Lian et al., IJCAI 2023, Eq. 1-3)::

    u[t+1] = beta * u[t] * (1 - o[t]) + I[t+1]
    o[t+1] = H(u[t+1] - v_th)                       (spike when u >= v_th)

Rectangular surrogate for dH/du::

    h(u) = 1/alpha * 1(|u - v_th| < alpha / 2)

Widths by mode:
    fixed            beta constant, alpha constant
    trainable-decay  beta = sigmoid(b) trained, alpha constant (PLIF-style)
    lsg              beta = sigmoid(b) trained, alpha = 2 v_th sqrt(1 + beta^2)

``alpha`` only shapes the backward pass, so it enters :class:`RectSpike` as a stop-gradient:
``b`` receives gradient only through the membrane dynamics (du[t+1]/dbeta = u[t](1 - o[t]))
times sigmoid'(b), never through d alpha / d beta. ``tests/test_neuron.py`` checks this.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch

from training import fused

MODES = ("lsg", "trainable-decay", "fixed")
#: how a layer runs its T steps: ``torch`` (the step function, step by step), ``fused`` (one kernel
#: per layer each way, :mod:`training.fused`: Triton on CUDA, numba on the CPU), ``auto`` (fused
#: where a kernel runs, else torch)
NEURON_IMPLS = ("auto", "torch", "fused")


def _constant_under_compile(fn):
    """``torch.compiler.assume_constant_result`` without importing ``torch._dynamo`` (a second on
    every command that never compiles): that decorator only sets this attribute, which dynamo
    reads when it traces a call (``tests/fused_cases.py`` checks a model traces without a break)."""
    fn._dynamo_marked_constant = True
    return fn


@_constant_under_compile  # torch.compile takes the answer as it is and traces no import
def _fused_backend(device_type: str) -> tuple[str, str]:
    """``(backend, "")`` (:func:`training.fused.backend`) on the device type, or ``("", why not)``."""
    try:
        return fused.backend(torch.device(device_type)), ""
    except ValueError as exc:
        return "", str(exc)


def resolve_impl(impl: str, device: torch.device) -> str:
    """The implementation ``impl`` (:data:`NEURON_IMPLS`) means on ``device``: ``torch`` or
    ``fused``. ``auto`` is fused wherever a kernel runs (Triton on CUDA, numba on the CPU: the
    same spikes bit for bit, and on the CPU 1.1-1.25x the step function's training speed with
    0.68x its activation memory, ``bench/train_speed.py``), else the step function. Explicit
    ``fused`` where no kernel can run is a :class:`ValueError` that says why."""
    if impl not in NEURON_IMPLS:
        raise ValueError(f"neuron_impl must be one of {', '.join(NEURON_IMPLS)}, got {impl!r}")
    if impl == "torch":
        return "torch"
    found, why_not = _fused_backend(torch.device(device).type)
    if not found:
        if impl == "auto":
            return "torch"
        raise ValueError(why_not)
    return "fused"


class RectSpike(torch.autograd.Function):
    """Heaviside forward (``u >= v_th``), rectangular surrogate backward of width ``alpha``."""

    @staticmethod
    def forward(ctx, u: torch.Tensor, v_th: float, alpha: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(u, alpha)
        ctx.v_th = v_th
        return (u >= v_th).to(u.dtype)

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        u, alpha = ctx.saved_tensors
        window = (u - ctx.v_th).abs() < alpha / 2
        return torch.where(window, grad_out / alpha, 0.0), None, None


def lsg_width(beta: torch.Tensor, v_th: float) -> torch.Tensor:
    """LSG surrogate width ``alpha = 2 v_th sqrt(1 + beta^2)``, detached (a stop-gradient)."""
    beta = beta.detach()
    return 2.0 * v_th * torch.sqrt(1.0 + beta * beta)


class LIFParams(NamedTuple):
    beta: torch.Tensor  #: decay, a scalar tensor (one per layer)
    v_th: float
    alpha: torch.Tensor  #: surrogate width, a scalar tensor without gradient


class LIFState(NamedTuple):
    u: torch.Tensor  #: membrane after the last step (before reset)
    o: torch.Tensor  #: spikes of the last step


def initial_state(like: torch.Tensor) -> LIFState:
    zeros = torch.zeros_like(like)
    return LIFState(u=zeros, o=zeros)


def lif_step(x: torch.Tensor, state: LIFState, params: LIFParams) -> tuple[torch.Tensor, LIFState]:
    """One LIF step: the only place the neuron equation is written in torch."""
    u = params.beta * state.u * (1.0 - state.o) + x
    o = RectSpike.apply(u, params.v_th, params.alpha)
    return o, LIFState(u=u, o=o)


def beta_logit(beta: float) -> float:
    """``b`` with ``sigmoid(b) = beta`` (the inverse pair of the decay parametrisation)."""
    if not 0.0 < beta < 1.0:
        raise ValueError(f"beta must lie strictly between 0 and 1, got {beta}")
    return math.log(beta / (1.0 - beta))


class LIF(torch.nn.Module):
    """A layer of LIF neurons sharing one decay; holds ``b`` and picks alpha by mode."""

    def __init__(self, mode: str, v_th: float = 0.5, beta_init: float = 0.2, alpha: float = 1.0):
        super().__init__()
        if mode not in MODES:
            raise ValueError(f"unknown neuron mode {mode!r}; choose one of {', '.join(MODES)}")
        if alpha <= 0:
            raise ValueError(f"surrogate width alpha must be positive, got {alpha}")
        self.mode = mode
        self.v_th = float(v_th)
        self.alpha = float(alpha)
        #: when set, ``probe(self, u)`` receives the membranes (T, B, ...) of every forward
        #: (before reset; :mod:`training.diagnostics` measures them)
        self.probe = None
        #: :data:`NEURON_IMPLS`: how forward runs the steps (an execution choice, not saved; the
        #: training loop sets it from the config, ``training.loop.set_neuron_impl``)
        self.impl = "auto"
        b = torch.tensor(beta_logit(beta_init))
        if mode == "fixed":
            self.register_buffer("b", b)
        else:
            self.b = torch.nn.Parameter(b)

    @property
    def beta(self) -> torch.Tensor:
        return torch.sigmoid(self.b)

    def params(self) -> LIFParams:
        beta = self.beta
        if self.mode == "lsg":
            alpha = lsg_width(beta, self.v_th)
        else:
            alpha = torch.tensor(self.alpha, dtype=beta.dtype, device=beta.device)
        return LIFParams(beta=beta, v_th=self.v_th, alpha=alpha)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Run the neuron over time: ``x`` is (T, B, ...), returns spikes (T, B, ...)."""
        params = self.params()
        if resolve_impl(self.impl, x.device) == "fused":
            spikes, u = fused.fused_lif(x, params.beta, params.v_th, params.alpha)
            if self.probe is not None:
                self.probe(self, u.detach())
            return spikes
        state = initial_state(x[0])
        spikes, membranes = [], []
        for x_t in x:
            o, state = lif_step(x_t, state, params)
            spikes.append(o)
            if self.probe is not None:
                membranes.append(state.u.detach())
        if self.probe is not None:
            self.probe(self, torch.stack(membranes))
        return torch.stack(spikes)

    def extra_repr(self) -> str:
        return f"mode={self.mode}, v_th={self.v_th}, alpha={self.alpha}"
