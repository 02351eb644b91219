"""``digits-resnet``: a small residual SNN for the 8x8 digits, after the tdBN/TET ResNet-19::

    stem   conv3x3 -> tdBN -> LIF                        1 -> c1 channels
    res1   BasicBlock, identity shortcut                 c1 -> c1
    res2   BasicBlock, conv1x1 + tdBN shortcut           c1 -> c2
    pool   2x2 average pooling                           8x8 -> 4x4
    flatten, fc1 (linear -> tdBN -> LIF, ``hidden``), readout (linear, averaged over time)

with ``(c1, c2) = config.channels`` (times ``config.width``, as is ``hidden``). Every conv has
stride 1: at 8x8 a strided block would leave too little of the image for the pooling and the
hidden layer, so the resolution is halved once, by the pooling after the residual blocks
(ResNet-19 pools globally; 2x2 here keeps the digits' shape).
A block's shortcut current is added to its main branch's before the block's second LIF, with tdBN
eta = 1/sqrt(2) on both summed branches (:class:`training.model.ResidualBlock`).
"""

from __future__ import annotations

from training.model import (
    ArchitectureError,
    ConvBlock,
    DenseBlock,
    Flatten,
    NetConfig,
    Pool,
    Readout,
    ResidualBlock,
    SpikingNet,
    make_lif,
    scaled,
)

POOL = 2


class DigitsResNet(SpikingNet):
    """Blocks ``stem, res1, res2, pool, flatten, fc1, readout``."""

    def __init__(self, config: NetConfig, input_shape: tuple[int, int, int], classes: int):
        if len(config.channels) != 2:
            raise ArchitectureError(f"digits-resnet needs channels = [c1, c2] (stem and first block, second "
                                    f"block), got {list(config.channels)}")
        c, h, w = input_shape
        if h < POOL or w < POOL:
            raise ArchitectureError(f"digits-resnet pools {POOL}x{POOL}; input {tuple(input_shape)} is too small")
        c1, c2 = (scaled(c, config.width) for c in config.channels)
        hidden = scaled(config.hidden, config.width)
        blocks = {
            "stem": ConvBlock(c, c1, make_lif(config)),
            "res1": ResidualBlock(c1, c1, make_lif(config), make_lif(config)),
            "res2": ResidualBlock(c1, c2, make_lif(config), make_lif(config)),
            "pool": Pool(POOL),
            "flatten": Flatten(),
            "fc1": DenseBlock(c2 * (h // POOL) * (w // POOL), hidden, make_lif(config)),
            "readout": Readout(hidden, classes),
        }
        super().__init__(blocks, config.timesteps, input_shape)
