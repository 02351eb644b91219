"""The building blocks of every architecture, and :class:`SpikingNet`, the network that runs them.

Blocks: conv-tdBN-LIF (:class:`ConvBlock`), linear-tdBN-LIF (:class:`DenseBlock`), the residual
BasicBlock (:class:`ResidualBlock`), average pooling, flatten, and the membrane-averaged linear
readout (Eq. 9: logits = 1/T sum_t W o[t] + b). The architectures themselves are in
:mod:`training.models`, one module each, built by name from its registry.

Tensors inside the network are time-major, (T, B, ...). ``SpikingNet.blocks`` is a flat, typed,
ordered list so that ``export.fold`` can walk it; every block keeps its parameters and nothing else.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

import torch
from torch import nn

from training.neuron import LIF

#: tdBN's eta on each of the two currents a residual block sums (Zheng et al. 2021), so that their
#: sum has the variance one tdBN-normalised current would have
RESIDUAL_ETA = 1.0 / math.sqrt(2.0)

Shape = tuple[int, ...]


class NetConfig(Protocol):
    """What the blocks and the architectures read of a configuration; :class:`training.config.TrainConfig`
    is one. They take this, not the config itself, because the config checks its ``arch`` against
    the architecture registry (:mod:`training.models`): the dependency points one way."""

    @property
    def arch(self) -> str: ...
    @property
    def mode(self) -> str: ...
    @property
    def alpha(self) -> float: ...
    @property
    def beta_init(self) -> float: ...
    @property
    def v_th(self) -> float: ...
    @property
    def timesteps(self) -> int: ...
    @property
    def channels(self) -> tuple[int, ...]: ...
    @property
    def hidden(self) -> int: ...
    @property
    def width(self) -> float: ...


class ArchitectureError(ValueError):
    """A configuration that does not make a network for the given input (e.g. too many pools)."""


def scaled(count: int, width: float) -> int:
    """A channel or neuron count times the architecture's width multiplier, at least 1."""
    return max(1, round(count * width))


def kaiming_fan_out(model: nn.Module) -> None:
    """Kaiming normal initialisation, fan-out mode, of every convolution's weight: what the tdBN
    ResNet-19 and TET's VGGSNN reference code start from (std sqrt(2 / (out_channels * k * k)))."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")


def make_lif(config: NetConfig) -> LIF:
    """A fresh LIF layer with the configured neuron mode, threshold, initial decay and width."""
    return LIF(config.mode, v_th=config.v_th, beta_init=config.beta_init, alpha=config.alpha)


class TdBN(nn.Module):
    """Threshold-dependent batch norm (Zheng et al. 2021).

    Per channel over (batch, time, H, W): ``y = gamma * eta * v_th * (I - mean) / sqrt(var + eps)
    + shift``, with running statistics for evaluation.
    """

    def __init__(self, channels: int, v_th: float, eta: float = 1.0, eps: float = 1e-5, momentum: float = 0.1):
        super().__init__()
        self.norm = nn.BatchNorm1d(channels, eps=eps, momentum=momentum, affine=False)
        self.gamma = nn.Parameter(torch.ones(channels))
        self.shift = nn.Parameter(torch.zeros(channels))
        self.v_th = float(v_th)
        self.eta = float(eta)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t, b, c = x.shape[:3]
        flat = x.reshape(t * b, c, -1)  # (T*B, C, H*W) or (T*B, C, 1): stats over all but C
        y = self.norm(flat).reshape(x.shape)
        view = (1, 1, c) + (1,) * (x.dim() - 3)
        return (self.eta * self.v_th * self.gamma).view(view) * y + self.shift.view(view)

    def fold_factors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(scale, offset)`` with ``tdBN(I) = scale * I + offset`` in evaluation mode."""
        scale = self.eta * self.v_th * self.gamma / torch.sqrt(self.norm.running_var + self.norm.eps)
        return scale, self.shift - scale * self.norm.running_mean


class ConvBN(nn.Module):
    """A synaptic current without a neuron: ``tdBN_eta(conv(x))`` (no bias, 'same' padding for odd
    kernels). A residual block's second conv and its projection shortcut are these."""

    def __init__(self, in_ch: int, out_ch: int, v_th: float, kernel: int = 3, stride: int = 1, eta: float = 1.0):
        super().__init__()
        self.conv = nn.Conv2d(in_ch, out_ch, kernel, stride=stride, padding=kernel // 2, bias=False)
        self.bn = TdBN(out_ch, v_th, eta=eta)

    def synaptic(self, x: torch.Tensor) -> torch.Tensor:
        t, b = x.shape[:2]
        y = self.conv(x.reshape(t * b, *x.shape[2:]))
        return self.bn(y.reshape(t, b, *y.shape[1:]))

    def activation_shapes(self, shape: Shape) -> list[Shape]:
        conv = self.conv
        h, w = ((n + 2 * p - k) // s + 1
                for n, p, k, s in zip(shape[1:], conv.padding, conv.kernel_size, conv.stride, strict=True))
        return [(conv.out_channels, h, w)]


class ConvBlock(ConvBN):
    """conv -> tdBN -> LIF."""

    def __init__(self, in_ch: int, out_ch: int, lif: LIF, kernel: int = 3, stride: int = 1):
        super().__init__(in_ch, out_ch, lif.v_th, kernel, stride)
        self.lif = lif


class DenseBlock(nn.Module):
    """linear (no bias) -> tdBN -> LIF; or, ``norm=False``, linear with a bias -> LIF (the tdBN
    ResNet-19's fc1: a plain linear layer before its neurons, no normalisation)."""

    def __init__(self, in_features: int, out_features: int, lif: LIF, norm: bool = True):
        super().__init__()
        self.linear = nn.Linear(in_features, out_features, bias=not norm)
        self.bn = TdBN(out_features, lif.v_th) if norm else None
        self.lif = lif

    def synaptic(self, x: torch.Tensor) -> torch.Tensor:
        y = self.linear(x)
        return y if self.bn is None else self.bn(y)

    def fold_factors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(scale, offset)`` with ``synaptic(x) = scale * (W x) + offset`` in evaluation mode."""
        if self.bn is None:
            return torch.ones_like(self.linear.bias), self.linear.bias
        return self.bn.fold_factors()

    def activation_shapes(self, shape: Shape) -> list[Shape]:
        return [(self.linear.out_features,)]


class ResidualBlock(nn.Module):
    """The BasicBlock of the tdBN/TET ResNet-19: the shortcut's current joins the main branch's
    *before* the block's second LIF::

        m = LIF_1(tdBN_1(conv3x3_1(x)))                   (conv1: a ConvBlock)
        I = tdBN_eta(conv3x3_2(m)) + S(x)                 (conv2: a ConvBN)
        o = LIF(I)
        S(x) = x                                          (identity: shortcut is None)
             | tdBN_eta(conv1x1(x))                       (projection: shortcut is a ConvBN)

    with ``eta = 1/sqrt(2)`` (:data:`RESIDUAL_ETA`) on the tdBN of both summed branches. The
    projection is used whenever the channels or the stride change; an identity shortcut adds the
    input spikes unscaled, as the reference implementations do.
    """

    def __init__(self, in_ch: int, out_ch: int, lif1: LIF, lif: LIF, stride: int = 1):
        super().__init__()
        self.conv1 = ConvBlock(in_ch, out_ch, lif1, stride=stride)
        self.conv2 = ConvBN(out_ch, out_ch, lif.v_th, eta=RESIDUAL_ETA)
        identity = in_ch == out_ch and stride == 1
        self.shortcut = None if identity else ConvBN(in_ch, out_ch, lif.v_th, kernel=1, stride=stride,
                                                     eta=RESIDUAL_ETA)
        self.lif = lif

    def currents(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(m, I)``: the inner LIF's spikes and the summed input current of the output LIF."""
        m = self.conv1.lif(self.conv1.synaptic(x))
        shortcut = x if self.shortcut is None else self.shortcut.synaptic(x)
        return m, self.conv2.synaptic(m) + shortcut

    def activation_shapes(self, shape: Shape) -> list[Shape]:
        (inner,) = self.conv1.activation_shapes(shape)
        return [inner, inner] if self.shortcut is None else [inner, inner, inner]


class Pool(nn.Module):
    def __init__(self, kernel: int):
        super().__init__()
        self.kernel = kernel

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t, b = x.shape[:2]
        y = nn.functional.avg_pool2d(x.reshape(t * b, *x.shape[2:]), self.kernel)
        return y.reshape(t, b, *y.shape[1:])

    def activation_shapes(self, shape: Shape) -> list[Shape]:
        return [(shape[0], shape[1] // self.kernel, shape[2] // self.kernel)]


class Flatten(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(2)

    def activation_shapes(self, shape: Shape) -> list[Shape]:
        return [(math.prod(shape),)]


class Readout(nn.Module):
    def __init__(self, in_features: int, classes: int):
        super().__init__()
        self.linear = nn.Linear(in_features, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x)

    def activation_shapes(self, shape: Shape) -> list[Shape]:
        return [(self.linear.out_features,)]


@dataclass
class Forward:
    logits: torch.Tensor  #: (B, classes): readout averaged over time
    outputs: torch.Tensor  #: (T, B, classes): readout at every step (for TET)
    spikes: dict[str, torch.Tensor]  #: layer name -> (T, B, neurons), when recorded


class SpikingNet(nn.Module):
    """A network of blocks run in order; the architectures in :mod:`training.models` build one.

    Spiking layers are named by their block (a residual block's inner LIF is ``"<block>.conv1"``);
    the names match the exported bundle's layers.
    """

    def __init__(self, blocks: dict[str, nn.Module], timesteps: int, input_shape: Shape):
        super().__init__()
        self.timesteps = timesteps
        self.input_shape = tuple(input_shape)
        self.blocks = nn.ModuleDict(blocks)

    def time_major(self, x: torch.Tensor) -> torch.Tensor:
        """(T, B, C, H, W) from a (B, C, H, W) analog input, repeated over the T steps (direct
        encoding), or from a (B, T, C, H, W) input that differs at every step (event frames)."""
        if x.dim() not in (4, 5) or tuple(x.shape[-3:]) != self.input_shape:
            raise ValueError(f"input must be (B, {', '.join(map(str, self.input_shape))}) or (B, T, "
                             f"{', '.join(map(str, self.input_shape))}), got {tuple(x.shape)}")
        if x.dim() == 4:
            return x.unsqueeze(0).expand(self.timesteps, *x.shape)
        if x.shape[1] != self.timesteps:
            raise ValueError(f"a per-step input must have the network's {self.timesteps} timesteps, got {x.shape[1]}")
        return x.transpose(0, 1)

    def forward(self, x: torch.Tensor, record: bool = False) -> Forward:
        """``x``: (B, C, H, W) or (B, T, C, H, W), see :meth:`time_major`."""
        h = self.time_major(x)
        spikes: dict[str, torch.Tensor] = {}
        for name, block in self.blocks.items():
            if isinstance(block, ResidualBlock):
                inner, current = block.currents(h)
                if record:
                    spikes[f"{name}.conv1"] = inner.detach().flatten(2)
            elif isinstance(block, (ConvBlock, DenseBlock)):
                current = block.synaptic(h)
            else:
                h = block(h)
                continue
            h = block.lif(current)
            if record:
                spikes[name] = h.detach().flatten(2)
        return Forward(logits=h.mean(0), outputs=h, spikes=spikes)

    def lif_layers(self) -> dict[str, LIF]:
        """Every LIF layer by the name its spikes are recorded under, in order."""
        layers: dict[str, LIF] = {}
        for name, block in self.blocks.items():
            if isinstance(block, ResidualBlock):
                layers[f"{name}.conv1"] = block.conv1.lif
            if isinstance(block, (ConvBlock, DenseBlock, ResidualBlock)):
                layers[name] = block.lif
        return layers

    def activation_shapes(self) -> list[Shape]:
        """The input's shape and that of every activation the blocks produce, per sample and step."""
        shapes = [self.input_shape]
        for block in self.blocks.values():
            shapes += block.activation_shapes(shapes[-1])
        return shapes
