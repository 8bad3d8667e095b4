"""Upsampling: reconstruct the high-resolution frame from its aggregated feature.

BasicVSR (paper §3.4) uses pixel-shuffle: ×2 stages of (3×3 conv, PixelShuffle, LeakyReLU), a 3×3 conv at
high resolution, a 3×3 conv to RGB, plus the bilinearly upsampled LR frame as a global residual.

Interface of the ``upsampling`` kind (:class:`Upsampling`): constructed with ``in_channels`` and ``scale``
(wired by the model); ``forward(feat (n, c, h, w), lr (n, 3, h, w)) -> (n, 3, scale*h, scale*w)``.
"""

from __future__ import annotations

import itertools
import math
from typing import ClassVar

import torch.nn.functional as F
from torch import Tensor, nn

from vsr.components.blocks import conv3x3, is_power_of_two, kaiming_init_, lrelu
from vsr.registry import Allowed, declare_kind, integer, one_of, optional, register

RESIDUAL_MODES = ("bilinear", "bicubic", "none")


@declare_kind("upsampling", wired=("in_channels", "scale"))
class Upsampling(nn.Module):
    """Shared body of the ``upsampling`` kind: ``log2(scale)`` ×2 stages, ``conv_hr``, ``conv_last`` and the
    interpolated LR residual. Subclasses define :meth:`make_stage`.

    ``mid_channels`` is the width of every stage but the last, ``hr_channels`` the width at high resolution
    (both 64 in the reference, whatever the model width); narrow ``hr_channels`` for cheap CPU models.
    """

    allowed_arguments: ClassVar[dict[str, Allowed]] = {
        "mid_channels": optional(integer(1)),
        "hr_channels": integer(1),
        "residual": one_of(*RESIDUAL_MODES),
    }

    def __init__(
        self,
        in_channels: int,
        scale: int = 4,
        mid_channels: int | None = None,
        hr_channels: int = 64,
        residual: str = "bilinear",
    ):
        super().__init__()
        if not is_power_of_two(scale) or scale < 2:
            raise ValueError(f"upsampling scale must be a power of two >= 2, got {scale}")
        if residual not in RESIDUAL_MODES:
            raise ValueError(f"residual must be one of {RESIDUAL_MODES}, got {residual!r}")
        self.scale, self.residual = scale, residual
        mid_channels = in_channels if mid_channels is None else mid_channels
        num_stages = int(math.log2(scale))
        widths = [in_channels] + [mid_channels] * (num_stages - 1) + [hr_channels]
        self.stages = nn.ModuleList(self.make_stage(a, b) for a, b in itertools.pairwise(widths))
        self.conv_hr = conv3x3(hr_channels, hr_channels)
        self.conv_last = conv3x3(hr_channels, 3)
        self.act = lrelu()

    def make_stage(self, in_channels: int, out_channels: int) -> nn.Module:
        raise NotImplementedError  # pragma: no cover - interface

    def forward(self, feat: Tensor, lr: Tensor) -> Tensor:
        for stage in self.stages:
            feat = self.act(stage(feat))
        out = self.conv_last(self.act(self.conv_hr(feat)))
        if self.residual != "none":
            out = out + F.interpolate(lr, scale_factor=self.scale, mode=self.residual, align_corners=False)
        return out


class PixelShuffleStage(nn.Module):
    """×2 sub-pixel convolution (ESPCN): 3×3 conv to ``4 * out`` channels, then PixelShuffle(2)."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv = conv3x3(in_channels, out_channels * 4)
        self.shuffle = nn.PixelShuffle(2)
        kaiming_init_(self.conv)

    def forward(self, x: Tensor) -> Tensor:
        return self.shuffle(self.conv(x))


class InterpolateConvStage(nn.Module):
    """×2 nearest-neighbour resize followed by a 3×3 conv (ESRGAN-style), an alternative to pixel-shuffle."""

    def __init__(self, in_channels: int, out_channels: int, mode: str = "nearest"):
        super().__init__()
        self.mode = mode
        self.conv = conv3x3(in_channels, out_channels)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(F.interpolate(x, scale_factor=2, mode=self.mode))


@register("upsampling", "pixel_shuffle")
class PixelShuffleUpsampling(Upsampling):
    """Pixel-shuffle upsampler of BasicVSR (the reference's ``upconv1/2``, ``conv_hr``, ``conv_last``)."""

    def make_stage(self, in_channels: int, out_channels: int) -> nn.Module:
        return PixelShuffleStage(in_channels, out_channels)


@register("upsampling", "interpolate_conv")
class InterpolateConvUpsampling(Upsampling):
    """Resize-then-convolve upsampler: each ×2 stage is nearest upsampling and a 3×3 conv."""

    def make_stage(self, in_channels: int, out_channels: int) -> nn.Module:
        return InterpolateConvStage(in_channels, out_channels)
