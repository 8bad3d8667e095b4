"""EDVR-M's feature extractor: the information-refill module of IconVSR.

IconVSR (Chan et al., CVPR 2021, Sec. 4.1) refills the propagated features at keyframes with features that
EDVR (Wang et al., CVPRW 2019) computes from a short window around the keyframe: per-frame features and a
three-level pyramid, Pyramid-Cascading-Deformable (PCD) alignment of every frame to the centre one, and
Temporal-Spatial-Attention (TSA) fusion. This is EDVR-M without its reconstruction trunk and upsampler.

Module and parameter names follow BasicSR's ``EDVRFeatureExtractor`` (``conv_l2_1``, ``pcd_align``,
``fusion``, ...), so the ``edvr.*`` part of a BasicSR IconVSR checkpoint loads strictly, unchanged.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vsr.components.blocks import ResidualBlock, conv3x3, lrelu
from vsr.components.deform import ModulatedDeformConvPack
from vsr.errors import VSRError

LEVELS = ("l3", "l2", "l1")  # coarse to fine; also the reference's ModuleDict (and state_dict) order


def upsample2x(x: Tensor) -> Tensor:
    return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)


class PCDAlignment(nn.Module):
    """Pyramid, Cascading and Deformable alignment (EDVR, Sec. 3.2).

    At each pyramid level, from the coarsest (l3, 1/4 size) to full size (l1), offsets for a DCNv2 are
    predicted from the neighbour and reference features plus the upsampled (and doubled) offset feature of
    the coarser level; the aligned features are merged likewise. A final cascading DCN refines the l1 result
    against the reference.

    Shapes: ``nbr`` and ``ref`` are lists ``[l1, l2, l3]`` of ``(n, c, h, w)``, ``(n, c, h/2, w/2)``,
    ``(n, c, h/4, w/4)`` -> aligned neighbour ``(n, c, h, w)``.
    """

    def __init__(self, channels: int = 64, deform_groups: int = 8):
        super().__init__()
        self.offset_conv1 = nn.ModuleDict()
        self.offset_conv2 = nn.ModuleDict()
        self.offset_conv3 = nn.ModuleDict()
        self.dcn_pack = nn.ModuleDict()
        self.feat_conv = nn.ModuleDict()
        for level in LEVELS:
            coarsest = level == "l3"
            self.offset_conv1[level] = conv3x3(2 * channels, channels)
            # below the coarsest level, the upsampled offset feature of the level above is concatenated
            self.offset_conv2[level] = conv3x3(channels if coarsest else 2 * channels, channels)
            if not coarsest:
                self.offset_conv3[level] = conv3x3(channels, channels)
                self.feat_conv[level] = conv3x3(2 * channels, channels)
            self.dcn_pack[level] = ModulatedDeformConvPack(
                channels, channels, 3, padding=1, deform_groups=deform_groups
            )

        # cascading refinement at full resolution
        self.cas_offset_conv1 = conv3x3(2 * channels, channels)
        self.cas_offset_conv2 = conv3x3(channels, channels)
        self.cas_dcnpack = ModulatedDeformConvPack(channels, channels, 3, padding=1, deform_groups=deform_groups)
        self.lrelu = lrelu()

    def forward(self, nbr: list[Tensor], ref: list[Tensor]) -> Tensor:
        up_offset = up_feat = None
        for index, level in zip((2, 1, 0), LEVELS, strict=True):
            offset = self.lrelu(self.offset_conv1[level](torch.cat([nbr[index], ref[index]], dim=1)))
            if level == "l3":
                offset = self.lrelu(self.offset_conv2[level](offset))
            else:
                offset = self.lrelu(self.offset_conv2[level](torch.cat([offset, up_offset], dim=1)))
                offset = self.lrelu(self.offset_conv3[level](offset))
            feat = self.dcn_pack[level](nbr[index], offset)
            if level != "l3":
                feat = self.feat_conv[level](torch.cat([feat, up_feat], dim=1))
            if level != "l1":
                feat = self.lrelu(feat)
                # offsets are in pixels of their level: doubling the resolution doubles them
                up_offset = upsample2x(offset) * 2
                up_feat = upsample2x(feat)

        offset = self.lrelu(self.cas_offset_conv1(torch.cat([feat, ref[0]], dim=1)))
        offset = self.lrelu(self.cas_offset_conv2(offset))
        return self.lrelu(self.cas_dcnpack(feat, offset))


class TSAFusion(nn.Module):
    """Temporal and Spatial Attention fusion (EDVR, Sec. 3.3).

    Temporal attention weights each aligned frame per pixel by ``sigmoid(<emb(frame), emb(centre)>)``; a
    1x1 conv fuses the weighted frames; a two-level spatial attention pyramid (max- and average-pooling)
    then modulates the fused feature as ``feat * 2*sigmoid(attn) + attn_add``.

    Shapes: ``(b, t, c, h, w)`` with ``h, w`` multiples of 4 -> ``(b, c, h, w)``.
    """

    def __init__(self, channels: int = 64, num_frames: int = 5, center_frame_idx: int = 2):
        super().__init__()
        self.center_frame_idx = center_frame_idx
        c = channels
        # temporal attention
        self.temporal_attn1 = conv3x3(c, c)
        self.temporal_attn2 = conv3x3(c, c)
        self.feat_fusion = nn.Conv2d(num_frames * c, c, 1)
        # spatial attention
        self.spatial_attn1 = nn.Conv2d(num_frames * c, c, 1)
        self.spatial_attn2 = nn.Conv2d(2 * c, c, 1)
        self.spatial_attn3 = conv3x3(c, c)
        self.spatial_attn4 = nn.Conv2d(c, c, 1)
        self.spatial_attn5 = conv3x3(c, c)
        self.spatial_attn_l1 = nn.Conv2d(c, c, 1)
        self.spatial_attn_l2 = conv3x3(2 * c, c)
        self.spatial_attn_l3 = conv3x3(c, c)
        self.spatial_attn_add1 = nn.Conv2d(c, c, 1)
        self.spatial_attn_add2 = nn.Conv2d(c, c, 1)
        self.max_pool = nn.MaxPool2d(3, stride=2, padding=1)
        self.avg_pool = nn.AvgPool2d(3, stride=2, padding=1)
        self.lrelu = lrelu()

    def forward(self, aligned: Tensor) -> Tensor:
        b, t, c, h, w = aligned.shape
        # temporal attention: per-pixel correlation of every frame's embedding with the centre's
        emb_ref = self.temporal_attn1(aligned[:, self.center_frame_idx])
        emb = self.temporal_attn2(aligned.reshape(b * t, c, h, w)).view(b, t, -1, h, w)
        corr = torch.sigmoid((emb * emb_ref.unsqueeze(1)).sum(dim=2, keepdim=True))  # (b, t, 1, h, w)
        aligned = (aligned * corr).reshape(b, t * c, h, w)

        feat = self.lrelu(self.feat_fusion(aligned))

        # spatial attention, two pyramid levels (1/2 and 1/4 size)
        attn = self.lrelu(self.spatial_attn1(aligned))
        attn = self.lrelu(self.spatial_attn2(torch.cat([self.max_pool(attn), self.avg_pool(attn)], dim=1)))
        attn_level = self.lrelu(self.spatial_attn_l1(attn))
        attn_level = torch.cat([self.max_pool(attn_level), self.avg_pool(attn_level)], dim=1)
        attn_level = self.lrelu(self.spatial_attn_l2(attn_level))
        attn_level = upsample2x(self.lrelu(self.spatial_attn_l3(attn_level)))
        attn = self.lrelu(self.spatial_attn3(attn)) + attn_level
        attn = upsample2x(self.lrelu(self.spatial_attn4(attn)))
        attn = self.spatial_attn5(attn)
        attn_add = self.spatial_attn_add2(self.lrelu(self.spatial_attn_add1(attn)))
        # the factor 2 makes the initial modulation (sigmoid ~ 0.5) close to the identity
        return feat * torch.sigmoid(attn) * 2 + attn_add


class EDVRFeatureExtractor(nn.Module):
    """EDVR-M up to its fused feature: the information-refill feature extractor of IconVSR.

    Per-frame features (``conv_first`` + residual blocks), a three-level pyramid (stride-2 convs), PCD
    alignment of every frame to the centre frame and TSA fusion. All frames are aligned in one batch (the
    reference loops over them; the result is the same).

    Shapes: ``(b, t, 3, h, w)`` with ``t = num_frames`` and ``h, w`` multiples of 4 -> ``(b, channels, h, w)``,
    the refill feature of frame ``center_frame_idx``.
    """

    def __init__(
        self,
        num_frames: int = 5,
        center_frame_idx: int | None = None,
        channels: int = 64,
        num_extract_blocks: int = 5,
        deform_groups: int = 8,
    ):
        super().__init__()
        if center_frame_idx is None:
            center_frame_idx = num_frames // 2
        if not 0 <= center_frame_idx < num_frames:
            raise VSRError(
                f"EDVRFeatureExtractor: center_frame_idx={center_frame_idx} is outside the window of "
                f"num_frames={num_frames}; use 0..{num_frames - 1} (or None for the middle frame)"
            )
        if channels % deform_groups:
            raise VSRError(
                f"EDVRFeatureExtractor: channels={channels} must be divisible by deform_groups={deform_groups}"
            )
        self.num_frames, self.center_frame_idx = num_frames, center_frame_idx

        # per-frame features and pyramid
        self.conv_first = conv3x3(3, channels)
        self.feature_extraction = nn.Sequential(*(ResidualBlock(channels) for _ in range(num_extract_blocks)))
        self.conv_l2_1 = conv3x3(channels, channels, stride=2)
        self.conv_l2_2 = conv3x3(channels, channels)
        self.conv_l3_1 = conv3x3(channels, channels, stride=2)
        self.conv_l3_2 = conv3x3(channels, channels)
        # alignment and fusion
        self.pcd_align = PCDAlignment(channels, deform_groups)
        self.fusion = TSAFusion(channels, num_frames, center_frame_idx)
        self.lrelu = lrelu()

    def forward(self, frames: Tensor) -> Tensor:
        b, t, c, h, w = frames.shape
        if t != self.num_frames or c != 3 or h % 4 or w % 4:
            raise VSRError(
                f"EDVRFeatureExtractor expects (b, {self.num_frames}, 3, h, w) with h and w multiples of 4 "
                f"(PCD's pyramid halves the size twice); got {tuple(frames.shape)}. Pad the frames (IconVSR "
                f"reflect-pads them) or set num_frames to the window length"
            )
        feat_l1 = self.feature_extraction(self.lrelu(self.conv_first(frames.reshape(b * t, c, h, w))))
        feat_l2 = self.lrelu(self.conv_l2_2(self.lrelu(self.conv_l2_1(feat_l1))))
        feat_l3 = self.lrelu(self.conv_l3_2(self.lrelu(self.conv_l3_1(feat_l2))))

        # align all t frames at once: neighbours (b*t, ...) against the centre frame repeated t times
        nbr, ref = [], []
        for feat in (feat_l1, feat_l2, feat_l3):
            feat = feat.view(b, t, *feat.shape[1:])
            nbr.append(feat.flatten(0, 1))
            ref.append(feat[:, self.center_frame_idx : self.center_frame_idx + 1].expand_as(feat).flatten(0, 1))
        aligned = self.pcd_align(nbr, ref).view(b, t, -1, h, w)
        return self.fusion(aligned)
