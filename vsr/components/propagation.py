"""Propagation: the order in which frames are visited and what each frame receives from the others.

BasicVSR paper §3.1 compares local (sliding-window / segment) propagation, unidirectional and bidirectional
recurrent propagation; IconVSR (§4) adds coupled propagation, where the forward branch also receives the
backward features.

Interface of the ``propagation`` kind (:class:`Propagation`). A propagation declares its ``branches``
(``"backward"`` runs from the last frame to the first, ``"forward"`` from the first to the last) and the
extra input channels each branch's aggregation receives (:meth:`extra_inputs`). The model builds one
alignment and one aggregation per branch and passes them in::

    forward(lrs, flows, refill) -> features (n, t, c, h, w)

* ``lrs`` ``(n, t, 3, h, w)``;
* ``flows``: :class:`ClipFlows` with the flows each branch needs (``None`` where alignment uses no flow);
* ``refill``: a :class:`vsr.components.refill.RefillState` or ``None``.

The returned features go to the upsampler frame by frame.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from torch import Tensor, nn

from vsr.components.aggregation import DirectionFusion
from vsr.components.alignment import Alignment
from vsr.components.registry import Allowed, declare_kind, integer, register


@dataclass
class ClipFlows:
    """Flows between consecutive frames of a clip, each ``(n, t-1, 2, h, w)``.

    ``backward[:, i]`` is the flow from frame ``i`` to frame ``i+1`` (it aligns frame ``i+1``'s state to
    frame ``i`` in the backward branch); ``forward[:, i]`` the flow from frame ``i+1`` to frame ``i``.
    """

    backward: Tensor | None = None
    forward: Tensor | None = None


@declare_kind("propagation", wired=("channels", "alignments", "aggregations"))
class Propagation(nn.Module):
    """Interface of the ``propagation`` kind and the shared recurrent loop of one branch."""

    branches: tuple[str, ...] = ("backward", "forward")

    def __init__(self, channels: int, alignments: dict[str, Alignment], aggregations: dict[str, nn.Module]):
        super().__init__()
        self.channels = channels
        # Attributes named per branch ("forward_aggregation"): a ModuleDict key cannot be "forward".
        for branch in self.branches:
            self.add_module(f"{branch}_alignment", alignments[branch])
            self.add_module(f"{branch}_aggregation", aggregations[branch])

    def alignment(self, branch: str) -> Alignment:
        return getattr(self, f"{branch}_alignment")

    def aggregation(self, branch: str) -> nn.Module:
        return getattr(self, f"{branch}_aggregation")

    @classmethod
    def extra_inputs(cls, channels: int) -> dict[str, int]:
        """Channels each branch's aggregation receives beyond ``[x_i, aligned state (+ extras)]``."""
        return dict.fromkeys(cls.branches, 0)

    def propagate(
        self,
        branch: str,
        lrs: Tensor,
        flows: Tensor | None,
        refill=None,
        coupled: list[Tensor] | None = None,
    ) -> list[Tensor]:
        """Run one recurrent branch over the clip and return its per-frame features ``t × (n, c, h, w)``.

        At frame ``i`` the state of the previously visited frame is aligned (:mod:`alignment`), refilled at
        keyframes (IconVSR), and aggregated with ``x_i`` (and ``coupled[i]``, the other branch's feature).
        """
        n, t, _, h, w = lrs.shape
        order = range(t - 1, -1, -1) if branch == "backward" else range(t)
        align, aggregate = self.alignment(branch), self.aggregation(branch)
        state = lrs.new_zeros(n, self.channels, h, w)
        outputs: list[Tensor] = [state] * t
        previous = None
        for i in order:
            if previous is None:
                aligned = align(state, None, None)
            else:
                flow = None if flows is None else flows[:, min(i, previous)]
                aligned = align(state, flow, lrs[:, previous])
            if refill is not None:
                aligned[0] = refill.fuse(branch, aligned[0], i)
            inputs = [lrs[:, i]] + ([coupled[i]] if coupled is not None else []) + aligned
            state = aggregate(inputs)
            outputs[i] = state
            previous = i
        return outputs

    def forward(self, lrs: Tensor, flows, refill=None) -> list[Tensor]:
        raise NotImplementedError  # pragma: no cover - interface


@register("propagation", "unidirectional")
class UnidirectionalPropagation(Propagation):
    """Forward-only recurrence (FRVSR/RSDN style, paper Fig. 4): frame ``i`` sees frames ``0..i`` only."""

    branches = ("forward",)

    def forward(self, lrs: Tensor, flows: ClipFlows, refill=None) -> list[Tensor]:
        return self.propagate("forward", lrs, flows.forward, refill)


@register("propagation", "bidirectional")
class BidirectionalPropagation(Propagation):
    """Bidirectional recurrence (BasicVSR): a backward and a forward branch, fused per frame by a 1×1 conv."""

    def __init__(self, channels: int, alignments: dict[str, Alignment], aggregations: dict[str, nn.Module]):
        super().__init__(channels, alignments, aggregations)
        self.fusion = DirectionFusion(channels)

    def forward(self, lrs: Tensor, flows: ClipFlows, refill=None) -> list[Tensor]:
        backward = self.propagate("backward", lrs, flows.backward, refill)
        forward = self.propagate("forward", lrs, flows.forward, refill)
        return [self.fusion([b, f]) for b, f in zip(backward, forward, strict=True)]


@register("propagation", "coupled")
class CoupledPropagation(Propagation):
    """Coupled propagation (IconVSR, paper §4): the backward branch runs first and the forward branch
    aggregates ``[x_i, h_i^b, h̄_{i-1}^f]``; its features alone go to the upsampler (no fusion conv)."""

    @classmethod
    def extra_inputs(cls, channels: int) -> dict[str, int]:
        return {"backward": 0, "forward": channels}

    def forward(self, lrs: Tensor, flows: ClipFlows, refill=None) -> list[Tensor]:
        backward = self.propagate("backward", lrs, flows.backward, refill)
        return self.propagate("forward", lrs, flows.forward, refill, coupled=backward)


@register("propagation", "local")
class LocalPropagation(BidirectionalPropagation):
    """Local propagation (paper §3.1, Fig. 3): the clip is cut into segments of ``segment_length`` frames,
    each restored on its own by the otherwise identical bidirectional model, so no information crosses a
    segment boundary (the sliding-window methods' view of time)."""

    allowed_arguments: ClassVar[dict[str, Allowed]] = {"segment_length": integer(1)}

    def __init__(
        self,
        channels: int,
        alignments: dict[str, Alignment],
        aggregations: dict[str, nn.Module],
        segment_length: int = 3,
    ):
        super().__init__(channels, alignments, aggregations)
        if segment_length < 1:
            raise ValueError(f"segment_length must be >= 1, got {segment_length}")
        self.segment_length = segment_length

    def forward(self, lrs: Tensor, flows: ClipFlows, refill=None) -> list[Tensor]:
        t, length = lrs.shape[1], self.segment_length
        features: list[Tensor] = []
        for start in range(0, t, length):
            end = min(start + length, t)
            segment_flows = ClipFlows(
                backward=None if flows.backward is None else flows.backward[:, start : end - 1],
                forward=None if flows.forward is None else flows.forward[:, start : end - 1],
            )
            segment_refill = None if refill is None else refill.window(start, end)
            features += super().forward(lrs[:, start:end], segment_flows, segment_refill)
        return features
