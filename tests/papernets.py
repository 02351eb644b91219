"""Untrained networks of the architecture registry that fire: tdBN statistics taken from their own
inputs (an untrained network's defaults leave the layers silent), with seeded integer inputs in
the network's encoding, for tests that need the paper's networks without training them."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from hardware.graph import Input
from training.config import TrainConfig
from training.model import SpikingNet, TdBN
from training.models import build_model


@dataclass(frozen=True)
class Untrained:
    model: SpikingNet  #: in eval mode
    spec: Input  #: the input node it is deployed with
    pixels: torch.Tensor  #: encoded integer inputs, (B, C, H, W) direct or (B, T, C, H, W) event frames
    analog: torch.Tensor  #: the float model's input, pixels / input_max (float64)
    timesteps: int


def untrained(arch: str, shape: tuple[int, int, int], encoding: str = "direct", input_max: int = 16,
              width: float = 1.0, timesteps: int = 3, batch: int = 24, seed: int = 0) -> Untrained:
    torch.manual_seed(seed)
    model = build_model(TrainConfig(arch=arch, width=width, timesteps=timesteps), shape, 10)
    gen = torch.Generator().manual_seed(seed)
    per_step = encoding == "event-frames"
    pixels = torch.randint(0, input_max + 1, (batch, timesteps, *shape) if per_step else (batch, *shape),
                           generator=gen)
    analog = pixels.double() / input_max
    for module in model.modules():
        if isinstance(module, TdBN):
            module.norm.momentum = 1.0  # the running statistics become this batch's
    with torch.no_grad():
        steps = analog if per_step else analog.unsqueeze(1).expand(batch, timesteps, *shape)
        model.train()(steps.float())
    return Untrained(model.eval(), Input(shape, encoding, input_max), pixels, analog, timesteps)


def integer_graph(net: Untrained, target: str = "loihi", profile=None):
    """The integer graph ``export --target TARGET --clip`` writes for ``net`` in ``profile`` (the
    target's default if None); its own inputs calibrate the readout."""
    from export.flow import quantize_for
    from export.fold import fold, readout_bound
    from export.quantize import QuantPolicy
    from hardware.targets import TARGETS

    float_graph = fold(net.model, net.spec)
    bound = readout_bound(float_graph, net.analog, net.timesteps)
    chosen = TARGETS[target]
    profile = chosen.default_profile if profile is None else profile
    return quantize_for(chosen, profile, float_graph, bound, QuantPolicy(on_overflow="clip"))[0]


def loihi_graph(net: Untrained):
    """The integer graph ``export --target loihi --clip`` writes for ``net``."""
    return integer_graph(net)


def fpga_graph(net: Untrained, profile):
    """The integer graph ``export --target fpga --profile PROFILE --clip`` writes for ``net``."""
    return integer_graph(net, "fpga", profile)
