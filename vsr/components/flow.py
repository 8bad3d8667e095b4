"""Optical flow: the warp used by alignment, and the flow estimators a recipe can choose.

Interface of the ``flow`` kind (:class:`FlowEstimator`): ``forward(ref, supp)`` with ``ref, supp`` of shape
``(n, 3, h, w)`` in [0, 1] returns the flow ``(n, 2, h, w)`` *from ref to supp*, in pixels, channel 0 the
horizontal (x) and channel 1 the vertical (y) displacement: ``flow_warp(supp, flow)`` aligns ``supp`` to ``ref``.
"""

from __future__ import annotations

import itertools
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vsr.registry import Allowed, declare_kind, integer, list_of, odd, register


def flow_warp(
    x: Tensor,
    flow: Tensor,
    interpolation: str = "bilinear",
    padding_mode: str = "zeros",
    align_corners: bool = True,
) -> Tensor:
    """Warp ``x`` ``(n, c, h, w)`` by ``flow`` ``(n, h, w, 2)`` given in pixels (x, y).

    Output pixel ``p`` samples ``x`` at ``p + flow[p]``. Same semantics as BasicSR/MMagic ``flow_warp``
    (a pixel grid normalised with ``align_corners=True``); BasicVSR warps features with zeros padding and
    SPyNet warps images with border padding.
    """
    if x.shape[-2:] != flow.shape[1:3]:
        raise ValueError(f"flow_warp: spatial sizes differ: x {tuple(x.shape[-2:])}, flow {tuple(flow.shape[1:3])}")
    _, _, h, w = x.shape
    grid_y, grid_x = torch.meshgrid(
        torch.arange(h, device=x.device, dtype=x.dtype),
        torch.arange(w, device=x.device, dtype=x.dtype),
        indexing="ij",
    )
    grid = torch.stack((grid_x, grid_y), dim=2) + flow.to(x.dtype)  # (n, h, w, 2)
    grid_x = 2.0 * grid[..., 0] / max(w - 1, 1) - 1.0
    grid_y = 2.0 * grid[..., 1] / max(h - 1, 1) - 1.0
    grid = torch.stack((grid_x, grid_y), dim=3)
    return F.grid_sample(x, grid, mode=interpolation, padding_mode=padding_mode, align_corners=align_corners)


@declare_kind("flow")
class FlowEstimator(nn.Module):
    """Interface of the ``flow`` kind: ``forward(ref, supp) -> flow`` from ``ref`` to ``supp``, see module doc."""

    def forward(self, ref: Tensor, supp: Tensor) -> Tensor:  # pragma: no cover - interface
        raise NotImplementedError


class SPyNetLevel(nn.Sequential):
    """One pyramid level of SPyNet: 7×7 convs 8→32→64→32→16→2 with ReLUs, predicting a flow residual from
    ``[ref, warped supp, upsampled flow]``."""

    def __init__(self, widths: tuple[int, ...] = (32, 64, 32, 16), kernel_size: int = 7):
        channels = (8, *widths, 2)
        layers: list[nn.Module] = []
        for i, (cin, cout) in enumerate(itertools.pairwise(channels)):
            layers.append(nn.Conv2d(cin, cout, kernel_size, 1, kernel_size // 2))
            if i < len(channels) - 2:
                layers.append(nn.ReLU(inplace=False))
        super().__init__(*layers)


@register("flow", "spynet")
class SPyNet(FlowEstimator):
    """SPyNet (Ranjan & Black, CVPR 2017), the flow estimator of BasicVSR (paper §3.2).

    A coarse-to-fine pyramid of ``levels`` levels; each level warps ``supp`` by the upsampled coarser flow
    and predicts a residual. Inputs are ImageNet-normalised and resized (bilinear) to a multiple of
    ``2 ** (levels - 1)``; the flow is resized back and rescaled. With ``levels=6`` and the default widths
    this is exactly the reference network (1.44 M parameters); fewer levels or narrower widths give a flow
    estimator cheap enough for CPU recipes and small crops.
    """

    allowed_arguments: ClassVar[dict[str, Allowed]] = {
        "levels": integer(1),
        "widths": list_of(integer(1), empty=True),
        "kernel_size": odd(1),
    }

    def __init__(self, levels: int = 6, widths: tuple[int, ...] = (32, 64, 32, 16), kernel_size: int = 7):
        super().__init__()
        if levels < 1:
            raise ValueError(f"SPyNet needs at least one pyramid level, got levels={levels}")
        self.levels = nn.ModuleList(SPyNetLevel(tuple(widths), kernel_size) for _ in range(levels))
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1))

    @property
    def multiple(self) -> int:
        """The input size must be a multiple of this (inputs are resized to it internally)."""
        return 2 ** (len(self.levels) - 1)

    def pyramid_flow(self, ref: Tensor, supp: Tensor) -> Tensor:
        """Flow for inputs whose size is already a multiple of :attr:`multiple`."""
        ref = [(ref - self.mean) / self.std]
        supp = [(supp - self.mean) / self.std]
        for _ in range(len(self.levels) - 1):
            ref.append(F.avg_pool2d(ref[-1], kernel_size=2, stride=2, count_include_pad=False))
            supp.append(F.avg_pool2d(supp[-1], kernel_size=2, stride=2, count_include_pad=False))
        ref, supp = ref[::-1], supp[::-1]  # coarsest first

        n, _, h, w = ref[0].shape
        flow = ref[0].new_zeros(n, 2, h, w)
        for level, module in enumerate(self.levels):
            if level > 0:
                flow = F.interpolate(flow, scale_factor=2, mode="bilinear", align_corners=True) * 2.0
            warped = flow_warp(supp[level], flow.permute(0, 2, 3, 1), padding_mode="border")
            flow = flow + module(torch.cat([ref[level], warped, flow], dim=1))
        return flow

    def forward(self, ref: Tensor, supp: Tensor) -> Tensor:
        h, w = ref.shape[-2:]
        m = self.multiple
        # Rounded up with positive operands only: ONNX exports floor division of a negative size as truncation.
        h_up, w_up = (h + m - 1) // m * m, (w + m - 1) // m * m
        if (h_up, w_up) != (h, w):
            ref = F.interpolate(ref, size=(h_up, w_up), mode="bilinear", align_corners=False)
            supp = F.interpolate(supp, size=(h_up, w_up), mode="bilinear", align_corners=False)
        flow = self.pyramid_flow(ref, supp)
        if (h_up, w_up) != (h, w):
            flow = F.interpolate(flow, size=(h, w), mode="bilinear", align_corners=False)
            flow = torch.stack((flow[:, 0] * (w / w_up), flow[:, 1] * (h / h_up)), dim=1)
        return flow
