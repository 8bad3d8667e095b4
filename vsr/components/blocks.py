"""Small building blocks shared by several components."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


def lrelu() -> nn.LeakyReLU:
    """The LeakyReLU(0.1) used throughout BasicVSR/EDVR."""
    return nn.LeakyReLU(negative_slope=0.1, inplace=True)


def conv3x3(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=True)


class ResidualBlock(nn.Module):
    """Residual block without batch norm (EDSR): ``x + conv2(relu(conv1(x)))``.

    Initialised as in ESRGAN/BasicSR: Kaiming normal scaled by 0.1, so that a deep stack starts close to
    the identity. Shapes: ``(n, c, h, w) -> (n, c, h, w)``.
    """

    def __init__(self, channels: int, init_scale: float = 0.1):
        super().__init__()
        self.conv1 = conv3x3(channels, channels)
        self.conv2 = conv3x3(channels, channels)
        self.relu = nn.ReLU(inplace=True)
        for conv in (self.conv1, self.conv2):
            nn.init.kaiming_normal_(conv.weight, a=0, mode="fan_in")
            with torch.no_grad():
                conv.weight.mul_(init_scale)
                conv.bias.zero_()

    def forward(self, x: Tensor) -> Tensor:
        return x + self.conv2(self.relu(self.conv1(x)))


def kaiming_init_(module: nn.Module, scale: float = 1.0) -> None:
    """Kaiming-normal initialisation of every conv in ``module`` (BasicSR's ``default_init_weights``)."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, a=0, mode="fan_in")
            with torch.no_grad():
                m.weight.mul_(scale)
                if m.bias is not None:
                    m.bias.zero_()


def is_power_of_two(n: int) -> bool:
    return n >= 1 and 2 ** round(math.log2(n)) == n
