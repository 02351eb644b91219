"""The architecture registry: a name -> a builder ``(config, input_shape, classes) -> SpikingNet``.

To add an architecture: one module here whose builder makes a :class:`training.model.SpikingNet`
from :mod:`training.model`'s blocks, and one entry in :data:`ARCHITECTURES`. ``TrainConfig.arch``,
``lsg-deploy train --arch`` and checkpoint loading all take their choices from this registry.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType

from training.model import ArchitectureError, NetConfig, SpikingNet
from training.models.digits_cnn import SpikingConvNet
from training.models.digits_plain import DigitsPlain
from training.models.digits_resnet import DigitsResNet
from training.models.resnet19 import ResNet19
from training.models.vggsnn import VGGSNN

Builder = Callable[[NetConfig, tuple[int, int, int], int], SpikingNet]

ARCHITECTURES: Mapping[str, Builder] = MappingProxyType({
    "digits-cnn": SpikingConvNet,
    "digits-resnet": DigitsResNet,
    "digits-plain": DigitsPlain,
    "resnet19": ResNet19,
    "vggsnn": VGGSNN,
})


def build_model(config: NetConfig, input_shape: tuple[int, ...], classes: int) -> SpikingNet:
    """The untrained network ``config.arch`` for inputs of ``input_shape`` (C, H, W) per step."""
    if config.arch not in ARCHITECTURES:
        raise ArchitectureError(f"unknown architecture {config.arch!r}; available: {', '.join(ARCHITECTURES)}")
    return ARCHITECTURES[config.arch](config, tuple(input_shape), classes)
