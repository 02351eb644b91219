"""``vggsnn``: the VGG-style SNN of TET (Deng et al. 2022) that the seed paper trains on
CIFAR10-DVS, for 2x48x48 event frames::

    conv 64, conv 128, pool, conv 256, conv 256, pool, conv 512, conv 512, pool,
    conv 512, conv 512, pool, flatten, readout (linear 512 * 3 * 3 = 4608 -> classes)

Every conv is 3x3 without bias, then tdBN and LIF; every pool is 2x2 average pooling. The
readout is averaged over time. Convolutions start from Kaiming normal (fan-out) weights, as in
TET's code; the readout from torch's default. ``config.width`` multiplies the channel counts; any input whose
sides 16 divides works (48x48 for CIFAR10-DVS).
"""

from __future__ import annotations

from torch import nn

from training.model import (
    ArchitectureError,
    ConvBlock,
    Flatten,
    NetConfig,
    Pool,
    Readout,
    SpikingNet,
    kaiming_fan_out,
    make_lif,
    scaled,
)

#: conv widths, "pool" between them
LAYOUT = (64, 128, "pool", 256, 256, "pool", 512, 512, "pool", 512, 512, "pool")
POOL = 2


class VGGSNN(SpikingNet):
    """Blocks ``conv1 .. conv8`` with ``pool1 .. pool4`` between them, ``flatten``, ``readout``."""

    def __init__(self, config: NetConfig, input_shape: tuple[int, int, int], classes: int):
        c, h, w = input_shape
        pools = LAYOUT.count("pool")
        if h % POOL**pools or w % POOL**pools:
            raise ArchitectureError(f"vggsnn pools {pools} times by {POOL}: input sides must be multiples of "
                                    f"{POOL**pools}, got {tuple(input_shape)}")
        blocks: dict[str, nn.Module] = {}
        conv = pool = 0
        for item in LAYOUT:
            if item == "pool":
                pool += 1
                blocks[f"pool{pool}"] = Pool(POOL)
                h, w = h // POOL, w // POOL
            else:
                conv += 1
                out = scaled(item, config.width)
                blocks[f"conv{conv}"] = ConvBlock(c, out, make_lif(config))
                c = out
        blocks["flatten"] = Flatten()
        blocks["readout"] = Readout(c * h * w, classes)
        super().__init__(blocks, config.timesteps, input_shape)
        kaiming_fan_out(self)
