"""Alignment: bring what was propagated from earlier-visited frames into the current frame's coordinates.

BasicVSR paper §3.2 compares three choices: no alignment (−1.19 dB on REDS4), image alignment (warp the
neighbouring LR frame, −0.17 dB) and feature alignment (warp the propagated features: BasicVSR). BasicVSR++
(§3.2) adds flow-guided deformable alignment: a deformable convolution whose offsets refine the flow.

Interface of the ``alignment`` kind (:class:`Alignment`). The model builds each alignment with ``channels``
(the width of the propagated states), ``frame_channels`` (of the per-frame input the propagation feeds:
3 for the LR frame, or a per-frame feature) and ``order`` (how many propagated states each step receives:
1, or 2 in BasicVSR++'s second-order propagation). A propagation calls, at every frame::

    align(states, flows, neighbours, current) -> list[Tensor]

* ``states``: ``order`` tensors ``(n, c, h, w)``, the states of the frame visited last, then the one before
  (zeros where there is none yet);
* ``flows``: ``order`` flows ``(n, 2, h, w)`` from the current frame to each of those frames (zeros where
  there is no such frame), or ``None`` at the first step and when the alignment ``uses_flow`` is False;
* ``neighbours``: those frames' LR images ``(n, 3, h, w)``, or ``None`` at the first step;
* ``current``: the current frame's input ``(n, frame_channels, h, w)``.

It returns the tensors that join the current frame in the aggregation, the aligned state first (the one a
residual propagation adds its update to); they hold :attr:`Alignment.output_channels` channels in all.

A first-order alignment only implements ``forward(state, flow, neighbour) -> list[Tensor]`` (one state,
its flow, its LR frame; ``flow`` and ``neighbour`` are ``None`` at the first step) and declares the
channels it adds beside the aligned state in ``extra_channels``; the default :meth:`Alignment.align` applies
it to each state in turn, so it also serves second-order propagation. An alignment that looks at all
states together (:class:`FlowGuidedDeformableAlignment`) overrides ``align``. An alignment with
``uses_flow = False`` lets the model skip flow estimation altogether.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor, nn

from vsr.components.blocks import conv3x3, lrelu
from vsr.components.deform import deform_conv2d, reset_deform_parameters
from vsr.components.flow import flow_warp
from vsr.registry import Allowed, declare_kind, integer, number, register


@declare_kind("alignment", wired=("channels", "frame_channels", "order"))
class Alignment(nn.Module):
    """Interface of the ``alignment`` kind; see the module docstring."""

    uses_flow: bool = True
    extra_channels: int = 0  # channels a first-order ``forward`` returns beside the aligned state

    def __init__(self, channels: int = 64, frame_channels: int = 3, order: int = 1):
        super().__init__()
        self.channels, self.frame_channels, self.order = channels, frame_channels, order

    @property
    def output_channels(self) -> int:
        """Channels of everything :meth:`align` returns (what the aggregation receives from it)."""
        return self.order * (self.channels + self.extra_channels)

    def align(
        self, states: list[Tensor], flows: list[Tensor] | None, neighbours: list[Tensor] | None, current: Tensor
    ) -> list[Tensor]:
        """The first-order ``forward`` applied to each state with its flow and frame, outputs in that order."""
        aligned: list[Tensor] = []
        for k, state in enumerate(states):
            aligned += self(state, None if flows is None else flows[k], None if neighbours is None else neighbours[k])
        return aligned

    def forward(self, state: Tensor, flow: Tensor | None, neighbour: Tensor | None) -> list[Tensor]:
        raise NotImplementedError  # pragma: no cover - interface


@register("alignment", "none")
class NoAlignment(Alignment):
    """No alignment: the propagated state is used where it lies (paper §3.2, "w/o alignment")."""

    uses_flow = False

    def forward(self, state: Tensor, flow: Tensor | None, neighbour: Tensor | None) -> list[Tensor]:
        return [state]


@register("alignment", "image")
class ImageAlignment(Alignment):
    """Image alignment: warp the neighbouring LR frame with the flow and feed it beside the unaligned state.

    The aggregation sees ``[x_i, h_{i±1}, W(x_{i±1}, s_i)]``; at the first step the warped frame is zeros.
    """

    extra_channels = 3

    def forward(self, state: Tensor, flow: Tensor | None, neighbour: Tensor | None) -> list[Tensor]:
        if flow is None or neighbour is None:
            n, _, h, w = state.shape
            return [state, state.new_zeros(n, 3, h, w)]
        return [state, flow_warp(neighbour, flow.permute(0, 2, 3, 1))]


@register("alignment", "feature")
class FeatureAlignment(Alignment):
    """Feature alignment (BasicVSR): ``h̄_i = W(h_{i±1}, s_i)``, the propagated features warped by the flow.

    Bilinear warp with zeros outside the frame, as in the reference.
    """

    def forward(self, state: Tensor, flow: Tensor | None, neighbour: Tensor | None) -> list[Tensor]:
        if flow is None:
            return [state]
        return [flow_warp(state, flow.permute(0, 2, 3, 1))]


@register("alignment", "flow_guided_deformable")
class FlowGuidedDeformableAlignment(Alignment):
    """Flow-guided deformable alignment (BasicVSR++ §3.2, Fig. 3): a modulated deformable 3×3 convolution
    over the unwarped states whose sampling offsets are the optical flow plus a bounded learned residue.

    From the states warped by their flows, the current frame's input and the flows,
    ``[W(h_1, s_1), x_i, W(h_2, s_2), ..., s_1, s_2, ...]``, four 3×3 convs (LeakyReLU between them) predict
    per deformable group and kernel point a residue ``o``, bounded as ``max_residue_magnitude · tanh(o)``
    (Eq. 6), and a mask ``m``. The offsets of the groups reading state ``k`` are ``s_k`` (as ``(dy, dx)``)
    plus their residues; the mask is ``sigmoid(m)``. The last offset conv starts at zero, so training starts
    from plain flow warping (every sample weighted 0.5). At the first step (nothing propagated yet) the state
    passes through unchanged, as in the reference.

    The reference is second-order with 16 deformable groups over its two states: ``groups_per_state=8``. It
    works first-order too (one state, ``groups_per_state`` groups). Parameter names (``weight``, ``bias``,
    ``conv_offset.{0,2,4,6}``) are those of both references' ``SecondOrderDeformableAlignment``.

    Shapes: ``states`` ``order × (n, c, h, w)``, ``flows`` ``order × (n, 2, h, w)``, ``current``
    ``(n, frame_channels, h, w)`` -> ``[(n, c, h, w)]``.
    """

    allowed_arguments: ClassVar[dict[str, Allowed]] = {
        "groups_per_state": integer(1),
        "max_residue_magnitude": number(above=0),
    }

    def __init__(
        self,
        channels: int = 64,
        frame_channels: int = 3,
        order: int = 1,
        groups_per_state: int = 8,
        max_residue_magnitude: float = 10.0,
    ):
        super().__init__(channels, frame_channels, order)
        if channels % groups_per_state:
            raise ValueError(f"channels={channels} must be divisible by groups_per_state={groups_per_state}")
        self.max_residue_magnitude = max_residue_magnitude
        in_channels, self.deform_groups = order * channels, order * groups_per_state
        self.weight = nn.Parameter(torch.empty(channels, in_channels, 3, 3))
        self.bias = nn.Parameter(torch.empty(channels))
        self.conv_offset = nn.Sequential(
            conv3x3(in_channels + frame_channels + 2 * order, channels),
            lrelu(),
            conv3x3(channels, channels),
            lrelu(),
            conv3x3(channels, channels),
            lrelu(),
            conv3x3(channels, 3 * 9 * self.deform_groups),  # (dy, dx, mask) per group and kernel point
        )
        reset_deform_parameters(self.weight, self.bias, in_channels)
        nn.init.zeros_(self.conv_offset[-1].weight)
        nn.init.zeros_(self.conv_offset[-1].bias)

    @property
    def output_channels(self) -> int:
        return self.channels

    def align(
        self, states: list[Tensor], flows: list[Tensor] | None, neighbours: list[Tensor] | None, current: Tensor
    ) -> list[Tensor]:
        if flows is None:  # the first step: nothing to align
            return [states[0]]
        return [self(states, flows, current)]

    def forward(self, states: list[Tensor], flows: list[Tensor], current: Tensor) -> Tensor:  # type: ignore[override]
        warped = [flow_warp(state, flow.permute(0, 2, 3, 1)) for state, flow in zip(states, flows, strict=True)]
        condition = torch.cat([warped[0], current, *warped[1:], *flows], dim=1)
        *residues, mask = torch.chunk(self.conv_offset(condition), 3, dim=1)
        residue = self.max_residue_magnitude * torch.tanh(torch.cat(residues, dim=1))
        # Each state's groups: (dy, dx) per group and kernel point, i.e. the flow flipped to (y, x), repeated.
        offset = torch.cat(
            [
                r + f.flip(1).repeat(1, r.shape[1] // 2, 1, 1)
                for r, f in zip(residue.chunk(self.order, dim=1), flows, strict=True)
            ],
            dim=1,
        )
        return deform_conv2d(torch.cat(states, dim=1), offset, self.weight, self.bias, 1, 1, 1, torch.sigmoid(mask))
