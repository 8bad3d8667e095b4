"""Assemble the components a recipe names into one video super-resolution network.

The model wires components through their kind interfaces only (see :mod:`vsr.components`): it optionally
cleans the LR frames, computes the flows the propagation's branches need, lets the propagation visit the frames
with one alignment and one aggregation per branch, optionally refills keyframes, and upsamples every frame.
Nothing here switches on component names, so a newly registered component is usable from a recipe at once.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vsr.components.propagation import ClipFlows, Propagation
from vsr.recipe import Recipe, load_recipe
from vsr.registry import build, check

log = logging.getLogger("vsr")

# Parameters that start from pretrained weights: trained at a lower learning rate and frozen at first.
PRETRAINED_PREFIXES = ("flow.", "refill.extractor.")


def is_mirror_extended(lrs: Tensor) -> bool:
    """Whether the clip is ``x_1..x_k, x_k..x_1`` (Vimeo-90K's 7 frames mirrored to 14).

    Then the forward flows are the backward ones reversed and need not be computed. A data-dependent test:
    it answers ``False`` where tensors hold no data (the ``meta`` device, tracing under torch.compile), so
    that path simply computes both flows.
    """
    t = lrs.shape[1]
    if t < 2 or t % 2 or lrs.device.type == "meta" or torch.compiler.is_compiling():
        return False
    first, second = lrs.chunk(2, dim=1)
    return bool(torch.equal(first, second.flip(1)))


class VideoSRNet(nn.Module):
    """A recurrent VSR network made of interchangeable components (BasicVSR's four functionalities).

    ``forward(lrs)`` maps ``(n, t, 3, h, w)`` in [0, 1] to ``(n, t, 3, scale*h, scale*w)`` for any ``t >= 1``
    and any ``h, w`` (padded by reflection to what the components need and cropped back). A ``cleaning``
    component first cleans the LR frames (RealBasicVSR), and everything downstream sees the cleaned frames;
    ``forward(lrs, return_cleaned=True)`` returns ``(output, cleaned)``, the cleaned frames ``(n, t, 3, h, w)``
    for a cleaning loss (``lrs`` itself without a cleaning component).
    """

    def __init__(
        self,
        scale: int,
        channels: int,
        flow: nn.Module | None,
        propagation: Propagation,
        upsampling: nn.Module,
        refill: nn.Module | None = None,
        detect_mirror: bool = True,
        cleaning: nn.Module | None = None,
    ):
        super().__init__()
        self.scale, self.channels, self.detect_mirror = scale, channels, detect_mirror
        self.cleaning = cleaning
        self.flow = flow
        self.refill = refill
        self.propagation = propagation
        self.upsampling = upsampling
        self.uses_flow = any(propagation.alignment(b).uses_flow for b in propagation.branches)
        if self.uses_flow and flow is None:
            raise ValueError("the alignment needs optical flow but no flow estimator was given")
        self.spatial_multiple = getattr(refill, "spatial_multiple", 1)

    def compute_flows(self, lrs: Tensor) -> ClipFlows:
        """Flows between consecutive frames in the directions the branches run in, each ``(n, t-1, 2, h, w)``,
        computed in one batch per direction."""
        n, t = lrs.shape[:2]
        directions = self.propagation.directions
        if not self.uses_flow or t < 2:
            return ClipFlows()
        current, following = lrs[:, :-1].flatten(0, 1), lrs[:, 1:].flatten(0, 1)
        flows = ClipFlows()
        if "backward" in directions:
            flows.backward = self.flow(current, following).unflatten(0, (n, t - 1))
        if "forward" in directions:
            if flows.backward is not None and self.detect_mirror and is_mirror_extended(lrs):
                flows.forward = flows.backward.flip(1)
            else:
                flows.forward = self.flow(following, current).unflatten(0, (n, t - 1))
        return flows

    def forward(self, lrs: Tensor, return_cleaned: bool = False) -> Tensor | tuple[Tensor, Tensor]:
        if lrs.ndim != 5 or lrs.shape[2] != 3:
            raise ValueError(f"expected LR frames of shape (n, t, 3, h, w), got {tuple(lrs.shape)}")
        # Cleaned before padding: the stopping rule of its refinement averages over the frames themselves.
        lrs = cleaned = self.cleaning(lrs) if self.cleaning is not None else lrs
        h, w = lrs.shape[-2:]
        m = self.spatial_multiple
        pad_h, pad_w = (m - h % m) % m, (m - w % m) % m  # positive operands: exported to ONNX as computed
        if torch.jit.is_tracing() and m > 1:
            # ONNX export (vsr.export): a pad amount would be frozen at the traced size. Pad by the most any size
            # needs and keep the multiple of m that covers the frame: the same frames, sliced by the input's size.
            lrs = F.pad(lrs.flatten(0, 1), (0, m - 1, 0, m - 1), mode="reflect").unflatten(0, lrs.shape[:2])
            lrs = lrs[..., : h + pad_h, : w + pad_w]
        elif pad_h or pad_w:
            mode = "reflect" if pad_h < h and pad_w < w else "replicate"
            lrs = F.pad(lrs.flatten(0, 1), (0, pad_w, 0, pad_h), mode=mode).unflatten(0, lrs.shape[:2])

        flows = self.compute_flows(lrs)
        refill = self.refill(lrs) if self.refill is not None else None
        features = self.propagation(lrs, flows, refill)
        # Upsample frame by frame: only one high-resolution feature map is alive at a time.
        out = torch.stack([self.upsampling(f, lrs[:, i]) for i, f in enumerate(features)], dim=1)
        out = out[..., : self.scale * h, : self.scale * w]
        return (out, cleaned) if return_cleaned else out

    def component_parameters(self) -> dict[str, int]:
        """Parameter count of each component (the rows of ``vsr model`` and the study tables)."""
        counts: dict[str, int] = OrderedDict()
        for name, module in (
            ("flow", self.flow),
            ("refill", self.refill),
            ("propagation", self.propagation),
            ("upsampling", self.upsampling),
            ("cleaning", self.cleaning),
        ):
            if module is not None:
                counts[name] = sum(p.numel() for p in module.parameters())
        branches = self.propagation.branches
        alignment = sum(p.numel() for b in branches for p in self.propagation.alignment(b).parameters())
        aggregation = sum(p.numel() for b in branches for p in self.propagation.aggregation(b).parameters())
        counts["propagation"] -= alignment + aggregation
        counts["alignment"], counts["aggregation"] = alignment, aggregation
        return counts


def assemble(model_section: dict[str, Any]) -> VideoSRNet:
    """Build a :class:`VideoSRNet` from a validated recipe ``model`` section."""
    section = model_section
    scale, channels = section["scale"], section["channels"]

    def spec(kind: str) -> tuple[str, dict[str, Any]]:
        entry = dict(section[kind])
        return entry.pop("name"), entry

    propagation_name, propagation_args = spec("propagation")
    layout = check("propagation", propagation_name, propagation_args).layout(channels, **propagation_args)
    branches = layout.branches

    alignment_name, alignment_args = spec("alignment")
    alignments = {
        b: build(
            "alignment",
            alignment_name,
            alignment_args,
            channels=channels,
            frame_channels=layout.frame_channels,
            order=layout.order,
        )
        for b in branches
    }
    aggregation_name, aggregation_args = spec("aggregation")
    aggregations = {
        b: build(
            "aggregation",
            aggregation_name,
            aggregation_args,
            # [the frame's input, the coupled branches' states, all the alignment returns]
            in_channels=layout.frame_channels + layout.coupled[b] + alignments[b].output_channels,
            out_channels=channels,
        )
        for b in branches
    }
    propagation = build(
        "propagation",
        propagation_name,
        propagation_args,
        channels=channels,
        alignments=alignments,
        aggregations=aggregations,
    )
    uses_flow = any(a.uses_flow for a in alignments.values())
    flow = build("flow", *spec("flow")) if uses_flow else None
    refill = build("refill", *spec("refill"), channels=channels, branches=branches)
    upsampling = build("upsampling", *spec("upsampling"), in_channels=channels, scale=scale)
    cleaning = build("cleaning", *spec("cleaning"), channels=channels)
    detect_mirror = section["detect_mirror"]
    return VideoSRNet(scale, channels, flow, propagation, upsampling, refill, detect_mirror, cleaning)


def build_model(recipe: str | Path | dict | Recipe, *overrides: str, **kw_overrides: Any) -> VideoSRNet:
    """Build the network of a recipe: a path, a shipped recipe's name (``"basicvsr"``), a dict or a Recipe.

    ``overrides`` are dotted ``key=value`` strings (``"model.alignment=none"``); keyword overrides use the
    key under ``model`` (``build_model("basicvsr", alignment="image")``).
    """
    recipe = load_recipe(recipe, *overrides, *(f"model.{k}={v}" for k, v in kw_overrides.items()))
    return assemble(recipe.model)
