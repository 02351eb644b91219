"""The architecture registry: a name -> a builder ``(config, input_shape, classes) -> SpikingNet``.

To add an architecture: one module here whose builder makes a :class:`training.model.SpikingNet`
from :mod:`training.model`'s blocks, and one entry in :data:`ARCHITECTURES` (``module:builder``). ``TrainConfig.arch``,
``lsg-deploy train --arch`` and checkpoint loading all take their choices from this registry.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from training.model import NetConfig, SpikingNet

    Builder = Callable[[NetConfig, tuple[int, int, int], int], SpikingNet]

#: name -> ``module:builder`` under ``training.models``, imported when a network is built, so the
#: names are known without torch (``lsg-deploy --help``; ``simulate`` of a bundle's integers)
ARCHITECTURES: Mapping[str, str] = MappingProxyType({
    "digits-cnn": "digits_cnn:SpikingConvNet",
    "digits-resnet": "digits_resnet:DigitsResNet",
    "digits-plain": "digits_plain:DigitsPlain",
    "resnet19": "resnet19:ResNet19",
    "vggsnn": "vggsnn:VGGSNN",
})


def builder(arch: str) -> Builder:
    """The builder of architecture ``arch`` (a name in :data:`ARCHITECTURES`)."""
    from training.model import ArchitectureError

    if arch not in ARCHITECTURES:
        raise ArchitectureError(f"unknown architecture {arch!r}; available: {', '.join(ARCHITECTURES)}")
    module, name = ARCHITECTURES[arch].split(":")
    return getattr(importlib.import_module(f"training.models.{module}"), name)


def build_model(config: NetConfig, input_shape: tuple[int, ...], classes: int) -> SpikingNet:
    """The untrained network ``config.arch`` for inputs of ``input_shape`` (C, H, W) per step."""
    return builder(config.arch)(config, tuple(input_shape), classes)
