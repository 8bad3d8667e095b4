"""Cleaning: remove degradations from each LR frame before propagation (RealBasicVSR, Chan et al. CVPR 2022).

Under real-world degradations (noise, blur, compression) long-term propagation amplifies artefacts along with
details. RealBasicVSR puts an image cleaning module in front of an unchanged BasicVSR: each LR frame gets a
predicted residual, frame by frame with no temporal mixing, and the cleaned frames are what the flow estimator
and the propagation see. **Dynamic refinement** applies the module again while it still changes the frames:
up to ``max_passes`` passes, stopping after the first pass whose mean absolute residual, one scalar over the
whole ``(n·t, 3, h, w)`` clip batch, falls below ``refine_threshold`` (in 0–255 units).

Interface of the ``cleaning`` kind (:class:`Cleaning`): constructed with ``channels`` (the model width, wired
as RealBasicVSR's one ``mid_channels``), ``refine_threshold`` and ``max_passes``; a part defines
:meth:`Cleaning.residual` of a batch of frames, and ``forward(lrs (n, t, 3, h, w)) -> (n, t, 3, h, w)``, the
cleaned frames after refinement, is shared. The kind is optional: ``cleaning: none`` is every model before
RealBasicVSR. :class:`vsr.model.VideoSRNet` returns the cleaned frames beside its output for the cleaning loss
(``forward(lrs, return_cleaned=True)``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import ClassVar

import torch
from torch import Tensor, nn

from vsr.components.aggregation import ResidualAggregation
from vsr.components.blocks import conv3x3
from vsr.registry import Allowed, declare_kind, integer, number, register

#: A threshold at or above this (1.0 in [0, 1] units) stops after the first pass: the reference configs' 255.
ONE_PASS_THRESHOLD = 255.0


@declare_kind("cleaning", wired=("channels",), optional=True)
class Cleaning(nn.Module):
    """Interface of the ``cleaning`` kind, with RealBasicVSR's dynamic refinement (paper §4; MMagic's
    ``RealBasicVSRNet.forward``): ``cleaned = lrs + residual(lrs)``, repeated up to ``max_passes`` times while
    the mean ``|residual|`` of a pass is at least ``refine_threshold / 255``.

    ``refine_threshold`` is in 0–255 units: 255 (the reference configs, and training) runs exactly one pass,
    the paper's 1.5 refines up to ``max_passes`` (3, "determined empirically"), 0 always runs every pass. No
    clamp is applied between passes, as in the reference. ``passes_run`` holds the passes of the last call.

    Where the frames hold no data the stopping test cannot be made: on the ``meta`` device (FLOP counting)
    and while tracing, a threshold of 255 or more is taken to stop after the first pass (the residual of frames
    in [0, 1] averages below 1) and any lower one to run all ``max_passes``: :attr:`most_passes`. Inside
    :meth:`fixed_passes` (ONNX export, and the PyTorch run its check compares with) exactly the passes asked for
    run, with no stopping test.
    """

    allowed_arguments: ClassVar[dict[str, Allowed]] = {
        "refine_threshold": number(minimum=0),
        "max_passes": integer(1),
    }

    def __init__(self, channels: int = 64, refine_threshold: float = ONE_PASS_THRESHOLD, max_passes: int = 3):
        super().__init__()
        if refine_threshold < 0 or max_passes < 1:
            raise ValueError(f"refine_threshold must be >= 0 and max_passes >= 1, got {refine_threshold}, {max_passes}")
        self.channels, self.refine_threshold, self.max_passes = channels, refine_threshold, max_passes
        self.passes_run = 0
        self._fixed_passes: int | None = None

    @property
    def most_passes(self) -> int:
        """The passes the stopping rule can run: 1 at a threshold of 255 or more, else ``max_passes``."""
        return 1 if self.refine_threshold >= ONE_PASS_THRESHOLD else self.max_passes

    @contextlib.contextmanager
    def fixed_passes(self, passes: int) -> Iterator[None]:
        """Run exactly ``passes`` passes (1..``max_passes``) inside the block, with no data-dependent stop: what an
        ONNX export unrolls (:func:`vsr.export.export_onnx`)."""
        if not 1 <= passes <= self.max_passes:
            raise ValueError(f"passes must be between 1 and max_passes={self.max_passes}, got {passes}")
        previous, self._fixed_passes = self._fixed_passes, passes
        try:
            yield
        finally:
            self._fixed_passes = previous

    def residual(self, frames: Tensor) -> Tensor:
        """The correction of each frame, ``(m, 3, h, w) -> (m, 3, h, w)``."""
        raise NotImplementedError  # pragma: no cover - interface

    def _residuals(self, frames: Tensor) -> Tensor:
        # Without autograd (inference) frame by frame, as the reference's inference config does
        # (is_sequential_cleaning): the same values, and one frame's activations alive at a time. A trace (ONNX
        # export) keeps the batch, whose frame count stays dynamic.
        if torch.is_grad_enabled() or torch.jit.is_tracing() or frames.shape[0] == 1:
            return self.residual(frames)
        return torch.cat([self.residual(frame) for frame in frames.split(1)])

    def _stops(self, residuals: Tensor) -> bool:
        if residuals.device.type == "meta" or torch.jit.is_tracing():  # no data: see the class docstring
            return self.refine_threshold >= ONE_PASS_THRESHOLD
        return bool(residuals.abs().float().mean() < self.refine_threshold / 255.0)

    def forward(self, lrs: Tensor) -> Tensor:
        frames = lrs.flatten(0, 1)  # (n·t, 3, h, w): no temporal mixing
        passes, fixed = 0, self._fixed_passes
        while passes < (fixed or self.max_passes):
            residuals = self._residuals(frames)
            frames, passes = frames + residuals, passes + 1
            if fixed is None and self._stops(residuals):
                break
        self.passes_run = passes
        return frames.view_as(lrs)  # not unflatten: its ONNX form loses the dynamic batch (vsr.export)


@register("cleaning", "residual")
class ResidualCleaning(Cleaning):
    """RealBasicVSR's image cleaning module: a 3×3 conv (3 -> c) with LeakyReLU(0.1), ``num_blocks`` residual
    blocks (BasicVSR's ``ResidualBlocksWithInputConv``, here :class:`ResidualAggregation` of one input) and a
    3×3 conv (c -> 3) giving the residual. 20 blocks of 64 channels in the reference (1,480,643 parameters).
    Shapes: ``(m, 3, h, w) -> (m, 3, h, w)`` per pass."""

    allowed_arguments: ClassVar[dict[str, Allowed]] = {**Cleaning.allowed_arguments, "num_blocks": integer(0)}

    def __init__(
        self,
        channels: int = 64,
        num_blocks: int = 20,
        refine_threshold: float = ONE_PASS_THRESHOLD,
        max_passes: int = 3,
    ):
        super().__init__(channels, refine_threshold, max_passes)
        self.trunk = ResidualAggregation(3, channels, num_blocks)
        self.output_conv = conv3x3(channels, 3)

    def residual(self, frames: Tensor) -> Tensor:
        return self.output_conv(self.trunk([frames]))


def refinement_overrides(refine_threshold: float | None = None, max_passes: int | None = None) -> list[str]:
    """The recipe overrides that set a model's refinement (``vsr upscale --refine-threshold
    --max-refine-passes``; the same as ``--set model.cleaning.refine_threshold=...``)."""
    overrides = []
    if refine_threshold is not None:
        overrides.append(f"model.cleaning.refine_threshold={refine_threshold}")
    if max_passes is not None:
        overrides.append(f"model.cleaning.max_passes={max_passes}")
    return overrides
