"""Aggregation: combine the current frame with the aligned information into the new propagated feature.

BasicVSR (paper §3.3) concatenates ``[x_i, h̄_{i±1}]`` and refines it with residual blocks after an input
convolution; the two directions are then fused by a 1×1 convolution (:class:`DirectionFusion`).

Interface of the ``aggregation`` kind (:class:`Aggregation`): constructed with ``in_channels`` (the sum of
the concatenated inputs, wired by the model) and ``out_channels`` (the model width);
``forward(inputs: list[Tensor (n, c_k, h, w)]) -> (n, out_channels, h, w)``.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor, nn

from vsr.components.blocks import ResidualBlock, conv3x3, kaiming_init_, lrelu
from vsr.registry import Allowed, declare_kind, integer, register


@declare_kind("aggregation", wired=("in_channels", "out_channels"))
class Aggregation(nn.Module):
    """Interface of the ``aggregation`` kind; see the module docstring."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels

    def forward(self, inputs: list[Tensor]) -> Tensor:
        raise NotImplementedError  # pragma: no cover - interface


@register("aggregation", "residual")
class ResidualAggregation(Aggregation):
    """Concatenation, a 3×3 input conv with LeakyReLU, then ``num_blocks`` residual blocks (BasicVSR's trunk,
    ``ResidualBlocksWithInputConv``). 30 blocks of 64 channels in the reference."""

    allowed_arguments: ClassVar[dict[str, Allowed]] = {"num_blocks": integer(0)}

    def __init__(self, in_channels: int, out_channels: int, num_blocks: int = 30):
        super().__init__(in_channels, out_channels)
        self.input_conv = conv3x3(in_channels, out_channels)
        self.act = lrelu()
        self.blocks = nn.Sequential(*(ResidualBlock(out_channels) for _ in range(num_blocks)))

    def forward(self, inputs: list[Tensor]) -> Tensor:
        return self.blocks(self.act(self.input_conv(torch.cat(inputs, dim=1))))


@register("aggregation", "plain")
class PlainAggregation(Aggregation):
    """Concatenation followed by a plain stack of ``2 * num_blocks + 1`` 3×3 conv + LeakyReLU layers: the
    same depth and width as :class:`ResidualAggregation` without the residual connections (an ablation of
    residual learning in the trunk)."""

    allowed_arguments: ClassVar[dict[str, Allowed]] = {"num_blocks": integer(0)}

    def __init__(self, in_channels: int, out_channels: int, num_blocks: int = 30):
        super().__init__(in_channels, out_channels)
        layers: list[nn.Module] = [conv3x3(in_channels, out_channels), lrelu()]
        for _ in range(2 * num_blocks):
            layers += [conv3x3(out_channels, out_channels), lrelu()]
        self.layers = nn.Sequential(*layers)
        kaiming_init_(self.layers, scale=1.0)

    def forward(self, inputs: list[Tensor]) -> Tensor:
        return self.layers(torch.cat(inputs, dim=1))


class DirectionFusion(nn.Module):
    """The 1×1 fusion of the backward and forward features of a frame (BasicVSR):
    ``lrelu(conv1x1([h_b, h_f]))``, ``(n, 2c, h, w) -> (n, c, h, w)``."""

    def __init__(self, channels: int, directions: int = 2):
        super().__init__()
        self.conv = nn.Conv2d(directions * channels, channels, 1, 1, 0, bias=True)
        self.act = lrelu()

    def forward(self, features: list[Tensor]) -> Tensor:
        return self.act(self.conv(torch.cat(features, dim=1)))
