"""Propagation: the order in which frames are visited and what each frame receives from the others.

BasicVSR paper §3.1 compares local (sliding-window / segment) propagation, unidirectional and bidirectional
recurrent propagation; IconVSR (§4) adds coupled propagation, where the forward branch also receives the
backward features; BasicVSR++ (§3.1) makes it a second-order grid: two bidirectional passes, each branch
seeing every earlier branch and the states of the two frames visited before.

Interface of the ``propagation`` kind (:class:`Propagation`). A propagation's :meth:`~Propagation.layout`
says, from its recipe arguments and before anything is built, what its branches receive: their names in
visiting order (a direction, ``"backward"`` from the last frame to the first or ``"forward"`` from the first
to the last, optionally followed by ``_<pass>``), the channels each branch's aggregation receives from other
branches, the channels of the per-frame input (3, the LR frame, or a per-frame feature) and the ``order``
(how many propagated states each alignment receives). The model builds one alignment and one aggregation per
branch accordingly and passes them in::

    forward(lrs, flows, refill) -> features t × (n, c, h, w)

* ``lrs`` ``(n, t, 3, h, w)``;
* ``flows``: :class:`ClipFlows` with the flows each direction needs (``None`` where alignment uses no flow);
* ``refill``: a :class:`vsr.components.refill.RefillState` or ``None``.

The returned features go to the upsampler frame by frame.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from torch import Tensor, nn

from vsr.components.aggregation import DirectionFusion, ResidualAggregation
from vsr.components.alignment import Alignment
from vsr.components.flow import flow_warp
from vsr.registry import Allowed, declare_kind, integer, register, with_defaults

DIRECTIONS = ("backward", "forward")


def branch_direction(branch: str) -> str:
    """``"backward"`` or ``"forward"``: the direction a branch named ``<direction>[_<pass>]`` runs in."""
    direction = branch.split("_", 1)[0]
    if direction not in DIRECTIONS:
        raise ValueError(f"branch {branch!r} is not named <direction>[_<pass>] with a direction in {DIRECTIONS}")
    return direction


@dataclass
class ClipFlows:
    """Flows between consecutive frames of a clip, each ``(n, t-1, 2, h, w)``.

    ``backward[:, i]`` is the flow from frame ``i`` to frame ``i+1`` (it aligns frame ``i+1``'s state to
    frame ``i`` in the backward branch); ``forward[:, i]`` the flow from frame ``i+1`` to frame ``i``.
    """

    backward: Tensor | None = None
    forward: Tensor | None = None

    def along(self, direction: str) -> Tensor | None:
        """The flows a branch running in ``direction`` aligns with."""
        return self.backward if direction == "backward" else self.forward


@dataclass(frozen=True)
class PropagationLayout:
    """What the branches of a propagation receive, known from its recipe arguments before it is built."""

    coupled: dict[str, int]  # branch (in visiting order) -> channels its aggregation receives from other branches
    frame_channels: int = 3  # channels of the per-frame input: the LR frame, or a per-frame feature
    order: int = 1  # propagated states each alignment receives: the last visited frame's (, the one before's, ...)

    @property
    def branches(self) -> tuple[str, ...]:
        return tuple(self.coupled)


@declare_kind("propagation", wired=("channels", "alignments", "aggregations"))
class Propagation(nn.Module):
    """Interface of the ``propagation`` kind and the shared recurrent loop of one branch."""

    branches: tuple[str, ...] = DIRECTIONS  # of a propagation whose branches do not depend on its arguments
    order: int = 1  # propagated states each step aligns
    residual_update: bool = False  # a step adds the aggregation's output to the aligned state (BasicVSR++)

    def __init__(self, channels: int, alignments: dict[str, Alignment], aggregations: dict[str, nn.Module]):
        super().__init__()
        self.channels = channels
        self.branches = tuple(alignments)
        # Attributes named per branch ("forward_aggregation"): a ModuleDict key cannot be "forward".
        for branch in self.branches:
            self.add_module(f"{branch}_alignment", alignments[branch])
            self.add_module(f"{branch}_aggregation", aggregations[branch])

    def alignment(self, branch: str) -> Alignment:
        return getattr(self, f"{branch}_alignment")

    def aggregation(self, branch: str) -> nn.Module:
        return getattr(self, f"{branch}_aggregation")

    @property
    def directions(self) -> tuple[str, ...]:
        """The directions the branches run in: the flows the model must compute."""
        return tuple(d for d in DIRECTIONS if any(branch_direction(b) == d for b in self.branches))

    @classmethod
    def layout(cls, channels: int, **args: Any) -> PropagationLayout:
        """What each branch receives, for recipe arguments ``args`` (see :class:`PropagationLayout`)."""
        return PropagationLayout(coupled=dict.fromkeys(cls.branches, 0))

    def propagate(
        self,
        branch: str,
        lrs: Tensor,
        flows: Tensor | None,
        refill=None,
        coupled: Sequence[list[Tensor]] = (),
        frames: Tensor | None = None,
    ) -> list[Tensor]:
        """Run one recurrent branch over the clip and return its per-frame states ``t × (n, c, h, w)``.

        At frame ``i`` the states of the last :attr:`order` visited frames are aligned (:mod:`alignment`),
        refilled at keyframes (IconVSR), and aggregated with the frame's input ``frames[:, i]`` (default: the
        LR frame ``lrs[:, i]``) and the states of frame ``i`` in the ``coupled`` branches; with
        :attr:`residual_update` the aggregation's output is added to the aligned state. ``flows``
        ``(n, t-1, 2, h, w)`` are the branch direction's flows between consecutive frames.
        """
        n, t, _, h, w = lrs.shape
        frames = lrs if frames is None else frames
        visiting = range(t - 1, -1, -1) if branch_direction(branch) == "backward" else range(t)
        align, aggregate = self.alignment(branch), self.aggregation(branch)
        no_state = lrs.new_zeros(n, self.channels, h, w)
        outputs: list[Tensor] = [no_state] * t
        previous: list[int] = []  # the frames visited last, most recent first
        for i in visiting:
            missing = self.order - len(previous)
            states = [outputs[j] for j in previous] + [no_state] * missing
            if not previous:
                aligned = align.align(states, None, None, frames[:, i])
            else:
                neighbours = [lrs[:, j] for j in previous] + [lrs.new_zeros(n, 3, h, w)] * missing
                step_flows = None
                if flows is not None:
                    step_flows = chained_flows(flows, i, previous) + [lrs.new_zeros(n, 2, h, w)] * missing
                aligned = align.align(states, step_flows, neighbours, frames[:, i])
            if refill is not None:
                aligned[0] = refill.fuse(branch, aligned[0], i)
            state = aggregate([frames[:, i], *(states_of_branch[i] for states_of_branch in coupled), *aligned])
            outputs[i] = aligned[0] + state if self.residual_update else state
            previous = [i, *previous[: self.order - 1]]
        return outputs

    def forward(self, lrs: Tensor, flows, refill=None) -> list[Tensor]:
        raise NotImplementedError  # pragma: no cover - interface


def chained_flows(flows: Tensor, current: int, previous: list[int]) -> list[Tensor]:
    """Flows ``(n, 2, h, w)`` from frame ``current`` to each of the frames ``previous`` (visited before it,
    most recent first), from the flows between consecutive frames ``flows`` ``(n, t-1, 2, h, w)``.

    The flow to the frame two steps back is composed as in BasicVSR++ (§3.1): ``s_{i→i-2} = s_{i→i-1} +
    W(s_{i-1→i-2}, s_{i→i-1})``, and so on for further frames.
    """
    chained: list[Tensor] = []
    here = current
    for j in previous:
        step = flows[:, min(here, j)]  # from frame `here` to its neighbour j
        chained.append(step if not chained else chained[-1] + flow_warp(step, chained[-1].permute(0, 2, 3, 1)))
        here = j
    return chained


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
    def layout(cls, channels: int, **args: Any) -> PropagationLayout:
        return PropagationLayout(coupled={"backward": 0, "forward": channels})

    def forward(self, lrs: Tensor, flows: ClipFlows, refill=None) -> list[Tensor]:
        backward = self.propagate("backward", lrs, flows.backward, refill)
        return self.propagate("forward", lrs, flows.forward, refill, coupled=[backward])


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


def grid_branches(passes: int) -> tuple[str, ...]:
    """The branches of ``passes`` bidirectional passes in visiting order: backward_1, forward_1, backward_2, ..."""
    return tuple(f"{direction}_{p}" for p in range(1, passes + 1) for direction in DIRECTIONS)


@register("propagation", "grid")
class GridPropagation(Propagation):
    """Second-order grid propagation (BasicVSR++ §3.1, Fig. 2).

    A per-frame feature extractor (a 3×3 conv and ``extract_blocks`` residual blocks) turns each LR frame
    into a feature ``g_i``; ``passes`` bidirectional passes then visit the clip as the branches backward_1,
    forward_1, backward_2, forward_2, ... Branch ``k`` aggregates ``[g_i, f_i^1, ..., f_i^{k-1}, aligned
    state]`` (the same-frame states of every earlier branch: the grid) and adds the result to the aligned
    state (a residual update). With ``order=2`` each step aligns the states of the two frames visited
    before, the second with the composed flow (second-order, §3.1); ``order=1`` is BasicVSR's first-order
    propagation. A reconstruction trunk (``reconstruction_blocks`` residual blocks) merges ``[g_i`` and every
    branch's state of frame ``i]`` into the feature the upsampler receives.

    The reference BasicVSR++ is ``order=2, passes=2`` with 5 extractor and 5 reconstruction blocks, and
    ``flow_guided_deformable`` alignment; ``order=1, passes=1`` with ``feature`` alignment is BasicVSR's
    propagation inside this frame (the first row of the paper's ablation).

    Shapes: ``lrs (n, t, 3, h, w)`` -> ``t × (n, c, h, w)``.
    """

    allowed_arguments: ClassVar[dict[str, Allowed]] = {
        "order": integer(1),
        "passes": integer(1),
        "extract_blocks": integer(0),
        "reconstruction_blocks": integer(0),
    }
    residual_update = True

    def __init__(
        self,
        channels: int,
        alignments: dict[str, Alignment],
        aggregations: dict[str, nn.Module],
        order: int = 2,
        passes: int = 2,
        extract_blocks: int = 5,
        reconstruction_blocks: int = 5,
    ):
        super().__init__(channels, alignments, aggregations)
        if self.branches != grid_branches(passes):
            raise ValueError(f"{passes} passes have the branches {grid_branches(passes)}, got {self.branches}")
        self.order = order
        # BasicSR's ConvResidualBlocks, which is the residual aggregation's trunk (on one input, then on all).
        self.feature_extractor = ResidualAggregation(3, channels, extract_blocks)
        self.reconstruction = ResidualAggregation((1 + len(self.branches)) * channels, channels, reconstruction_blocks)

    @classmethod
    def layout(cls, channels: int, **args: Any) -> PropagationLayout:
        args = with_defaults(cls, args)
        branches = grid_branches(args["passes"])
        return PropagationLayout(
            coupled={branch: k * channels for k, branch in enumerate(branches)},
            frame_channels=channels,
            order=args["order"],
        )

    def forward(self, lrs: Tensor, flows: ClipFlows, refill=None) -> list[Tensor]:
        n, t = lrs.shape[:2]
        features = self.feature_extractor([lrs.flatten(0, 1)]).unflatten(0, (n, t))  # (n, t, c, h, w)
        branch_states: list[list[Tensor]] = []
        for branch in self.branches:
            direction_flows = flows.along(branch_direction(branch))
            branch_states.append(
                self.propagate(branch, lrs, direction_flows, refill, coupled=list(branch_states), frames=features)
            )
        return [self.reconstruction([features[:, i], *(s[i] for s in branch_states)]) for i in range(t)]
