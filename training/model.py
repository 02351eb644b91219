"""The convolutional SNN: conv-tdBN-LIF blocks, average pooling, a hidden linear LIF layer and a
membrane-averaged linear readout (Eq. 9: logits = 1/T sum_t W o[t] + b).

Tensors inside the network are time-major, (T, B, ...). The blocks are a flat, typed list so
that ``export.fold`` can walk them; every block keeps its parameters and nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from training.config import TrainConfig
from training.neuron import LIF


class ArchitectureError(ValueError):
    """A configuration that does not make a network for the given input (e.g. too many pools)."""


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


class ConvBlock(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, lif: LIF, kernel: int = 3):
        super().__init__()
        self.conv = nn.Conv2d(in_ch, out_ch, kernel, padding=kernel // 2, bias=False)
        self.bn = TdBN(out_ch, lif.v_th)
        self.lif = lif

    def synaptic(self, x: torch.Tensor) -> torch.Tensor:
        t, b = x.shape[:2]
        y = self.conv(x.reshape(t * b, *x.shape[2:]))
        return self.bn(y.reshape(t, b, *y.shape[1:]))


class DenseBlock(nn.Module):
    def __init__(self, in_features: int, out_features: int, lif: LIF):
        super().__init__()
        self.linear = nn.Linear(in_features, out_features, bias=False)
        self.bn = TdBN(out_features, lif.v_th)
        self.lif = lif

    def synaptic(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.linear(x))


class Pool(nn.Module):
    def __init__(self, kernel: int):
        super().__init__()
        self.kernel = kernel

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t, b = x.shape[:2]
        y = nn.functional.avg_pool2d(x.reshape(t * b, *x.shape[2:]), self.kernel)
        return y.reshape(t, b, *y.shape[1:])


class Flatten(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(2)


class Readout(nn.Module):
    def __init__(self, in_features: int, classes: int):
        super().__init__()
        self.linear = nn.Linear(in_features, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x)


@dataclass
class Forward:
    logits: torch.Tensor  #: (B, classes): readout averaged over time
    outputs: torch.Tensor  #: (T, B, classes): readout at every step (for TET)
    spikes: dict[str, torch.Tensor]  #: layer name -> (T, B, neurons), when recorded


class SpikingConvNet(nn.Module):
    """Direct-encoded conv SNN for small images; layer names match the exported bundle."""

    def __init__(self, config: TrainConfig, input_shape: tuple[int, int, int], classes: int):
        super().__init__()
        self.timesteps = config.timesteps
        self.input_shape = tuple(input_shape)

        def lif() -> LIF:
            return LIF(config.mode, v_th=config.v_th, beta_init=config.beta_init, alpha=config.alpha)

        blocks: dict[str, nn.Module] = {}
        c, h, w = input_shape
        for i, out_ch in enumerate(config.channels, start=1):
            blocks[f"conv{i}"] = ConvBlock(c, out_ch, lif())
            blocks[f"pool{i}"] = Pool(2)
            c, h, w = out_ch, h // 2, w // 2
            if h < 1 or w < 1:
                raise ArchitectureError(f"{len(config.channels)} pooled conv blocks (channels) are too many for "
                                        f"input {tuple(input_shape)}: each halves the image")
        blocks["flatten"] = Flatten()
        blocks["fc1"] = DenseBlock(c * h * w, config.hidden, lif())
        blocks["readout"] = Readout(config.hidden, classes)
        self.blocks = nn.ModuleDict(blocks)

    def forward(self, x: torch.Tensor, record: bool = False) -> Forward:
        """``x``: (B, C, H, W) analog image, repeated over T steps (direct encoding)."""
        h = x.unsqueeze(0).expand(self.timesteps, *x.shape)
        spikes: dict[str, torch.Tensor] = {}
        for name, block in self.blocks.items():
            if isinstance(block, (ConvBlock, DenseBlock)):
                h = block.lif(block.synaptic(h))
                if record:
                    spikes[name] = h.detach().flatten(2)
            else:
                h = block(h)
        return Forward(logits=h.mean(0), outputs=h, spikes=spikes)

    def lif_layers(self) -> dict[str, LIF]:
        return {n: b.lif for n, b in self.blocks.items() if isinstance(b, (ConvBlock, DenseBlock))}
