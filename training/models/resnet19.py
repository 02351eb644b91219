"""``resnet19``: the tdBN/TET ResNet-19 (Zheng et al. 2021; Deng et al. 2022), the seed paper's
CIFAR network::

    stem    conv3x3 -> tdBN -> LIF                       in -> 128 channels
    stage1  3 BasicBlocks, 128 channels, stride 1
    stage2  3 BasicBlocks, 256 channels, the first with stride 2
    stage3  2 BasicBlocks, 512 channels, the first with stride 2
    pool    global average pooling
    fc1     linear 512 -> 256 (with a bias, no tdBN) -> LIF
    readout linear 256 -> classes, averaged over time

A BasicBlock (:class:`training.model.ResidualBlock`) adds its shortcut's current to its main
branch's before the block's second LIF, with tdBN eta = 1/sqrt(2) on both; the shortcut is the
identity, or a strided conv1x1 + tdBN where the shape changes. fc1 is a plain linear layer with a
bias before its LIF, no tdBN, as in the tdBN and TET reference code (``DenseBlock(norm=False)``).
Convolutions start from Kaiming normal (fan-out) weights, as in the reference implementations;
the linear layers from torch's default. ``config.width`` multiplies every
channel count (and fc1's) so the same network runs small in tests; any square input whose side
the two strided stages divide by 4 works (32x32 for CIFAR, 8x8 digits at a small width).
"""

from __future__ import annotations

from torch import nn

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
    kaiming_fan_out,
    make_lif,
    scaled,
)

STEM = 128
STAGES = ((128, 3, 1), (256, 3, 2), (512, 2, 2))  #: (channels, blocks, stride of the first block)
HIDDEN = 256


class ResNet19(SpikingNet):
    """Blocks ``stem, s1b1 .. s1b3, s2b1 .. s2b3, s3b1, s3b2, pool, flatten, fc1, readout``."""

    def __init__(self, config: NetConfig, input_shape: tuple[int, int, int], classes: int):
        c, h, w = input_shape
        reduction = 1
        for _, _, stride in STAGES:
            reduction *= stride
        if h != w or h % reduction:
            raise ArchitectureError(f"resnet19 needs a square input whose side {reduction} divides, got "
                                    f"{tuple(input_shape)}")
        width = config.width
        channels = scaled(STEM, width)
        blocks: dict[str, nn.Module] = {"stem": ConvBlock(c, channels, make_lif(config))}
        for s, (out, count, stride) in enumerate(STAGES, start=1):
            out = scaled(out, width)
            for b in range(1, count + 1):
                blocks[f"s{s}b{b}"] = ResidualBlock(channels, out, make_lif(config), make_lif(config),
                                                    stride=stride if b == 1 else 1)
                channels = out
        side = h // reduction
        blocks["pool"] = Pool(side)  # global average pooling
        blocks["flatten"] = Flatten()
        hidden = scaled(HIDDEN, width)
        blocks["fc1"] = DenseBlock(channels, hidden, make_lif(config), norm=False)
        blocks["readout"] = Readout(hidden, classes)
        super().__init__(blocks, config.timesteps, input_shape)
        kaiming_fan_out(self)
