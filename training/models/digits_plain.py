"""``digits-plain``: a plain (non-residual) stack of conv-tdBN-LIF blocks at stride 1, one per
entry of ``config.channels``, then 2x2 average pooling, a hidden linear tdBN LIF layer of
``config.hidden`` neurons and the linear readout averaged over time.

With no shortcut, every layer's gradient passes through every deeper layer's surrogate, so this
is the network in which the surrogate width matters: at depth 20 a narrow fixed width starves the
early layers (or inflates their gradient), where LSG's width follows the membranes. ``lsg-deploy
ablate`` runs the seed paper's ablations on it with the embedded digits.
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


class DigitsPlain(SpikingNet):
    """Blocks ``conv1 .. convN, pool, flatten, fc1, readout``."""

    def __init__(self, config: NetConfig, input_shape: tuple[int, int, int], classes: int):
        c, h, w = input_shape
        if h < 2 or w < 2:
            raise ArchitectureError(f"digits-plain pools once by 2: input {tuple(input_shape)} is too small")
        blocks: dict[str, nn.Module] = {}
        for i, out_ch in enumerate(config.channels, start=1):
            out_ch = scaled(out_ch, config.width)
            blocks[f"conv{i}"] = ConvBlock(c, out_ch, make_lif(config))
            c = out_ch
        blocks["pool"] = Pool(2)
        blocks["flatten"] = Flatten()
        hidden = scaled(config.hidden, config.width)
        blocks["fc1"] = DenseBlock(c * (h // 2) * (w // 2), hidden, make_lif(config))
        blocks["readout"] = Readout(hidden, classes)
        super().__init__(blocks, config.timesteps, input_shape)
