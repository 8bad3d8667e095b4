"""Alignment: bring what was propagated from the neighbouring frame into the current frame's coordinates.

BasicVSR paper §3.2 compares three choices: no alignment (−1.19 dB on REDS4), image alignment (warp the
neighbouring LR frame, −0.17 dB) and feature alignment (warp the propagated features: BasicVSR).

Interface of the ``alignment`` kind (:class:`Alignment`)::

    forward(state, flow, neighbour) -> list[Tensor]

* ``state`` ``(n, c, h, w)``: the feature propagated from the neighbouring frame (zeros at the first step);
* ``flow`` ``(n, 2, h, w)``: flow from the current frame to the neighbour, or ``None`` at the first step;
* ``neighbour`` ``(n, 3, h, w)``: the neighbouring LR frame, or ``None`` at the first step.

It returns the tensors that join the current frame in the aggregation: the aligned state first, then any
extra inputs; ``extra_channels`` says how many channels those extras add. An alignment with
``uses_flow = False`` lets the model skip flow estimation altogether.
"""

from __future__ import annotations

from torch import Tensor, nn

from vsr.components.flow import flow_warp
from vsr.components.registry import declare_kind, register


@declare_kind("alignment")
class Alignment(nn.Module):
    """Interface of the ``alignment`` kind; see the module docstring."""

    uses_flow: bool = True
    extra_channels: int = 0

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
