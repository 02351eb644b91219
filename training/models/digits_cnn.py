"""``digits-cnn``: conv-tdBN-LIF blocks each followed by 2x2 average pooling (one per entry of
``config.channels``), a hidden linear tdBN LIF layer of ``config.hidden`` neurons and the linear
readout averaged over time. The default network of ``lsg-deploy train``. ``config.width``
multiplies the channel and hidden counts.
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
    SpikingNet,
    make_lif,
    scaled,
)


class SpikingConvNet(SpikingNet):
    """Blocks ``conv1, pool1, ..., convN, poolN, flatten, fc1, readout``."""

    def __init__(self, config: NetConfig, input_shape: tuple[int, int, int], classes: int):
        blocks: dict[str, nn.Module] = {}
        c, h, w = input_shape
        hidden = scaled(config.hidden, config.width)
        for i, out_ch in enumerate(config.channels, start=1):
            out_ch = scaled(out_ch, config.width)
            blocks[f"conv{i}"] = ConvBlock(c, out_ch, make_lif(config))
            blocks[f"pool{i}"] = Pool(2)
            c, h, w = out_ch, h // 2, w // 2
            if h < 1 or w < 1:
                raise ArchitectureError(f"{len(config.channels)} pooled conv blocks (channels) are too many for "
                                        f"input {tuple(input_shape)}: each halves the image")
        blocks["flatten"] = Flatten()
        blocks["fc1"] = DenseBlock(c * h * w, hidden, make_lif(config))
        blocks["readout"] = Readout(hidden, classes)
        super().__init__(blocks, config.timesteps, input_shape)
