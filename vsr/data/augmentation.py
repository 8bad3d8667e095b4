"""BasicVSR's training augmentation (:class:`Augmentation`: flips, transpose, temporal reversal) and the
mirroring of a sample's frames (:func:`mirror_sample`, when: :func:`mirror_mode`), applied alike to frames and
true flows."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

#: The frame tensors of a sample, ``(t, c, h, w)``.
FRAME_KEYS = ("lq", "gt")
#: Its true flows, ``(t - 1, 2, h, w)``: frame k → k + 1, and k + 1 → k.
FLOW_KEYS = ("flow_next", "flow_prev")

#: The values of ``data.mirror`` (YAML may write the first two as booleans).
MIRROR_CHOICES = ("false", "true", "before_degradation")
#: Mirror the GT frames before degrading them.
BEFORE_DEGRADATION = "before_degradation"


@dataclass(frozen=True)
class Augmentation:
    """One draw of BasicVSR's training augmentation, applied alike to every frame of a sample: horizontal
    flip, vertical flip, transpose h↔w (in this order), temporal reversal.

    Frames (``lq``, ``gt``: ``(t, c, h, w)``) are flipped / transposed; true flows (``flow_next``,
    ``flow_prev``: ``(t-1, 2, h, w)``) move with them: a horizontal flip negates x, a vertical flip negates
    y, a transpose swaps x and y, and reversing time swaps next and prev (each reversed in time).
    """

    hflip: bool = False
    vflip: bool = False
    transpose: bool = False
    reverse: bool = False

    def __call__(self, sample: dict[str, Any]) -> dict[str, Any]:
        out = dict(sample)
        for key in FRAME_KEYS:
            if key in out:
                out[key] = self._space(out[key])
                if self.reverse:
                    out[key] = out[key].flip(0)
        if all(key in out for key in FLOW_KEYS):
            flow_next, flow_prev = (self._flow_space(out[key]) for key in FLOW_KEYS)
            if self.reverse:
                flow_next, flow_prev = flow_prev.flip(0), flow_next.flip(0)
            out["flow_next"], out["flow_prev"] = flow_next, flow_prev
        return out

    def _space(self, x: Tensor) -> Tensor:
        if self.hflip:
            x = x.flip(-1)
        if self.vflip:
            x = x.flip(-2)
        if self.transpose:
            x = x.transpose(-1, -2)
        return x.contiguous()

    def _flow_space(self, flow: Tensor) -> Tensor:
        if self.hflip:
            flow = flow.flip(-1) * flow.new_tensor([-1.0, 1.0]).view(2, 1, 1)
        if self.vflip:
            flow = flow.flip(-2) * flow.new_tensor([1.0, -1.0]).view(2, 1, 1)
        if self.transpose:
            flow = flow.transpose(-1, -2).flip(-3)
        return flow.contiguous()


def mirror_sample(sample: dict[str, Any]) -> dict[str, Any]:
    """MMagic's ``MirrorSequence`` / BasicSR's ``flip_sequence``: frames ``x1..xt`` → ``x1..xt, xt..x1``.

    Flows follow: the pair (xt, xt) has zero flow, and the mirrored half's next flows are the original prev
    flows in reverse order (and vice versa)."""
    out = dict(sample)
    for key in FRAME_KEYS:
        if key in out:
            out[key] = torch.cat([out[key], out[key].flip(0)])
    if all(key in out for key in FLOW_KEYS):
        flow_next, flow_prev = out["flow_next"], out["flow_prev"]
        zero = torch.zeros_like(flow_next[:1])
        out["flow_next"] = torch.cat([flow_next, zero, flow_prev.flip(0)])
        out["flow_prev"] = torch.cat([flow_prev, zero, flow_next.flip(0)])
    return out


def mirror_mode(value: bool | str) -> str | None:
    """When a training sample is mirrored, from ``data.mirror``: ``None`` (never), ``"after_degradation"``
    (``true``: the mirrored half repeats the degraded frames, Vimeo-90K's 7 → 14), or
    ``"before_degradation"`` (RealBasicVSR's L/2 → L: the GT frames are mirrored and the whole sequence is
    degraded, so a random degradation that drifts from frame to frame degrades the two halves differently)."""
    if value is False or value == "false":
        return None
    if value is True or value == "true":
        return "after_degradation"
    if value == BEFORE_DEGRADATION:
        return BEFORE_DEGRADATION
    raise ValueError(f"mirror must be one of {', '.join(MIRROR_CHOICES)}, got {value!r}")
