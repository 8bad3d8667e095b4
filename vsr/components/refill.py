"""Information-refill (IconVSR, paper §4): at keyframes, features from a sliding-window extractor (EDVR-M)
are fused into the propagated state of each branch, refilling what recurrence lost at occlusions and
boundaries and stopping error accumulation.

Interface of the ``refill`` kind (:class:`Refill`): constructed with ``channels`` and ``branches`` (wired
by the model); ``forward(lrs (n, t, 3, h, w)) -> RefillState`` whose ``fuse(branch, state, i)`` returns
the state of frame ``i`` after refill (unchanged away from keyframes). ``spatial_multiple`` tells the
model what h and w must be multiples of (the model pads and crops). The kind is optional: ``refill: none``
builds no refill.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor, nn

from vsr.components.blocks import conv3x3
from vsr.components.edvr import EDVRFeatureExtractor
from vsr.registry import Allowed, declare_kind, integer, one_of, register


class RefillState:
    """Keyframe features of one clip and the per-branch fusion convs that inject them."""

    def __init__(self, features: dict[int, Tensor], fusion: dict[str, nn.Module]):
        self.features, self.fusion = features, fusion

    def fuse(self, branch: str, state: Tensor, index: int) -> Tensor:
        """``state`` ``(n, c, h, w)`` of frame ``index`` after refill: ``conv3x3([state, e_index])`` at keyframes."""
        if index not in self.features:
            return state
        return self.fusion[branch](torch.cat([state, self.features[index]], dim=1))

    def window(self, start: int, end: int) -> RefillState:
        """The same refill restricted to frames ``start..end-1``, re-indexed from 0 (for segment-wise models)."""
        return RefillState({i - start: f for i, f in self.features.items() if start <= i < end}, self.fusion)


@declare_kind("refill", wired=("channels", "branches"), optional=True)
class Refill(nn.Module):
    """Interface of the ``refill`` kind; see the module docstring."""

    spatial_multiple: int = 1

    def forward(self, lrs: Tensor) -> RefillState:
        raise NotImplementedError  # pragma: no cover - interface


def keyframe_indices(num_frames: int, stride: int) -> list[int]:
    """Keyframes every ``stride`` frames plus the last frame (IconVSR: 0, 5, …, 95, 99 for 100 frames)."""
    keyframes = list(range(0, num_frames, stride))
    if keyframes[-1] != num_frames - 1:
        keyframes.append(num_frames - 1)
    return keyframes


def temporal_window_indices(num_frames: int, padding: int) -> list[list[int]]:
    """Frame indices of the ``2 * padding + 1`` window centred on each frame (plain lists: no device).

    The clip is extended in time as the reference does (padding 2: frames 4, 3 before and -4, -5 after; a
    mirror that skips the end frame's neighbour); clips too short for that are clamped at their ends.
    """
    p, last = padding, num_frames - 1
    left = [2 * p - k for k in range(p)]  # 2p, …, p+1
    right = [num_frames - p - 2 - k for k in range(p)]  # t-(p+2), …, t-(2p+1)
    extended = [min(max(i, 0), last) for i in left + list(range(num_frames)) + right]
    return [extended[i : i + 2 * p + 1] for i in range(num_frames)]


@register("refill", "edvr")
class InformationRefill(Refill):
    """IconVSR's information-refill with an EDVR-M extractor (PCD alignment + TSA fusion).

    The extractor runs only on keyframes (every ``keyframe_stride`` frames and the last), each on the
    ``2 * temporal_padding + 1`` frames around it (2 for REDS, 3 for Vimeo-90K). Its feature is fused into
    the state of both branches at keyframes by a 3×3 conv ``(2c -> c)`` per branch.
    """

    spatial_multiple = 4  # PCD's two stride-2 pyramid levels
    allowed_arguments: ClassVar[dict[str, Allowed]] = {
        "keyframe_stride": integer(1),
        "temporal_padding": one_of(2, 3),
        "num_extract_blocks": integer(0),
        "deform_groups": integer(1),
    }

    def __init__(
        self,
        channels: int,
        branches: tuple[str, ...] = ("backward", "forward"),
        keyframe_stride: int = 5,
        temporal_padding: int = 2,
        num_extract_blocks: int = 5,
        deform_groups: int = 8,
    ):
        super().__init__()
        if keyframe_stride < 1:
            raise ValueError(f"keyframe_stride must be >= 1, got {keyframe_stride}")
        if temporal_padding not in (2, 3):
            raise ValueError(f"temporal_padding must be 2 (REDS) or 3 (Vimeo-90K), got {temporal_padding}")
        self.keyframe_stride, self.temporal_padding = keyframe_stride, temporal_padding
        self.extractor = EDVRFeatureExtractor(
            num_frames=2 * temporal_padding + 1,
            channels=channels,
            num_extract_blocks=num_extract_blocks,
            deform_groups=deform_groups,
        )
        self.branches = tuple(branches)
        for branch in self.branches:  # backward_fusion, forward_fusion
            self.add_module(f"{branch}_fusion", conv3x3(2 * channels, channels))

    def forward(self, lrs: Tensor) -> RefillState:
        # t as an int even while tracing (ONNX export): keyframes are the keys RefillState.fuse looks frames up by
        n, t = lrs.shape[0], int(lrs.shape[1])
        keyframes = keyframe_indices(t, self.keyframe_stride)
        windows = temporal_window_indices(t, self.temporal_padding)
        frames = [i for k in keyframes for i in windows[k]]
        # Reshaped by sizes read from lrs, not unflatten(1, (k, -1)): the ONNX export keeps h and w dynamic
        # through a reshape by the input's sizes, but froze them at the traced size through that unflatten.
        clips = lrs.index_select(1, torch.tensor(frames, device=lrs.device))  # (n, k·(2p+1), 3, h, w)
        clips = clips.reshape(n * len(keyframes), len(windows[0]), *lrs.shape[2:])  # (n·k, 2p+1, 3, h, w)
        feats = self.extractor(clips)  # (n·k, c, h, w)
        feats = feats.reshape(n, len(keyframes), *feats.shape[1:])  # (n, k, c, h, w)
        fusion = {b: getattr(self, f"{b}_fusion") for b in self.branches}
        return RefillState({i: feats[:, j] for j, i in enumerate(keyframes)}, fusion)
