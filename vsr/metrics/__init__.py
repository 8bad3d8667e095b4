"""PSNR and SSIM exactly as the BasicVSR papers report them (BasicSR ``calculate_psnr`` / ``calculate_ssim``).

Frames are tensors ``(..., c, h, w)`` in [0, 1]; every metric returns one float64 value per frame with the
leading shape ``(...)``, e.g. ``(b, t, 3, h, w)`` -> ``(b, t)``. Measurement is on the 0..255 scale in
float64 after clamping to [0, 1] and cropping ``crop_border`` pixels from every edge (0 in all BasicVSR,
IconVSR and BasicVSR++ evaluations). Options:

* ``y_channel=True``: measure the BT.601 Y of MATLAB ``rgb2ycbcr`` (Vimeo-90K-T, Vid4, UDM10); RGB otherwise
  (REDS4), where SSIM is the mean over the channels.
* ``round_to_uint8=True``: quantise like ``tensor2img`` first (BasicSR, MMEditing 0.x); MMagic 1.x measures
  the unrounded floats. The difference is a few thousandths of a dB.

Reported numbers average frames within a clip, then clips (:func:`clip_average`); Vimeo-90K-T measures only
the centre frame of a mirror-extended 14-frame output (:func:`vimeo_center_frame`).

NIQE, the no-reference score that real-world video is measured with, is in :mod:`vsr.metrics.no_reference`
(:func:`niqe`, metric ``niqe``), with the pristine model it ships beside it.

The ``metric`` kind: evaluation, validation, studies and reports score frames with the registered metrics
(:class:`Metric`; ``psnr``, ``ssim`` and ``niqe`` here). A metric declares whether higher is better, its unit and
whether it needs the ground truth, and gives one value per frame; a recipe names it in ``data.val_metrics``
and a study in ``metrics:``. Register your own like a component::

    @register("metric", "mae")
    class MAE(Metric):
        higher_is_better, unit, needs_gt, label = False, "", True, "MAE"

        def per_frame(self, pred, gt):
            return (pred - gt).abs().mul(255).mean(dim=(-3, -2, -1)).double()
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from typing import ClassVar

import torch
from torch import Tensor

from vsr.registry import declare_kind, lookup, register

# ITU-R BT.601 luma on [0, 1] RGB giving [16, 235] (MATLAB rgb2ycbcr; not OpenCV's full-range YCrCb).
_Y_WEIGHTS = (65.481, 128.553, 24.966)
_Y_OFFSET = 16.0

# SSIM of Wang et al. 2004 as BasicSR computes it: 11x11 Gaussian window, sigma 1.5, 'valid' filtering.
_SSIM_WINDOW, _SSIM_SIGMA = 11, 1.5
_SSIM_C1, _SSIM_C2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2

_FRAMES_PER_CHUNK = 8  # bounds float64 temporaries for long 720p clips


def rgb_to_y(x: Tensor) -> Tensor:
    """Y of MATLAB ``rgb2ycbcr``: ``(..., 3, h, w)`` RGB in [0, 1] -> ``(..., 1, h, w)`` on the 0..255 scale
    (16 for black, 235 for white): ``Y = 16 + 65.481 R + 128.553 G + 24.966 B``. Keeps the input dtype."""
    if x.ndim < 3 or x.shape[-3] != 3:
        raise ValueError(f"rgb_to_y: expected RGB frames (..., 3, h, w), got shape {tuple(x.shape)}")
    weights = torch.tensor(_Y_WEIGHTS, dtype=x.dtype, device=x.device).view(3, 1, 1)
    return (x * weights).sum(dim=-3, keepdim=True) + _Y_OFFSET


def _to_255(x: Tensor, y_channel: bool, round_to_uint8: bool) -> Tensor:
    """Float64 frames on the 0..255 scale (Y only if ``y_channel``), from frames in [0, 1]."""
    if round_to_uint8:
        # tensor2img: clamp, x255 and round half to even in float32, then uint8.
        x = (x.float().clamp(0, 1) * 255).round().double() / 255
    else:
        x = x.double().clamp(0, 1)
    return rgb_to_y(x) if y_channel else x * 255


def _per_frame(
    name: str,
    measure: Callable[[Tensor, Tensor], Tensor],
    pred: Tensor,
    target: Tensor,
    crop_border: int,
    y_channel: bool,
    round_to_uint8: bool,
    min_size: int = 1,
) -> Tensor:
    """Checks the inputs, crops, converts and applies ``measure`` to ``(n, c, h, w)`` chunks of frames."""
    for arg, tensor in (("pred", pred), ("target", target)):
        if not isinstance(tensor, Tensor) or tensor.ndim < 3:
            shape = tuple(getattr(tensor, "shape", ()))
            raise ValueError(f"{name}: {arg} must be a tensor (..., c, h, w) in [0, 1], got shape {shape}")
    if pred.shape != target.shape:
        raise ValueError(f"{name}: pred and target shapes differ: {tuple(pred.shape)} vs {tuple(target.shape)}")
    if y_channel and pred.shape[-3] != 3:
        raise ValueError(f"{name}: y_channel=True needs RGB frames (..., 3, h, w), got shape {tuple(pred.shape)}")
    h, w = pred.shape[-2:]
    if isinstance(crop_border, bool) or not isinstance(crop_border, int) or crop_border < 0:
        raise ValueError(f"{name}: crop_border must be a non-negative integer, got {crop_border!r}")
    if min(h, w) - 2 * crop_border < min_size:
        raise ValueError(
            f"{name}: frames of {h}x{w} minus crop_border {crop_border} on each edge leave less than "
            f"{min_size}x{min_size} pixels; use larger frames or a smaller crop_border"
        )
    if crop_border:
        pred = pred[..., crop_border:-crop_border, crop_border:-crop_border]
        target = target[..., crop_border:-crop_border, crop_border:-crop_border]
    lead = pred.shape[:-3]
    pred, target = pred.reshape(-1, *pred.shape[-3:]), target.reshape(-1, *target.shape[-3:])
    values = [
        measure(_to_255(p, y_channel, round_to_uint8), _to_255(t, y_channel, round_to_uint8))
        for p, t in zip(pred.split(_FRAMES_PER_CHUNK), target.split(_FRAMES_PER_CHUNK), strict=True)
    ]
    if not values:
        return torch.empty(lead, dtype=torch.float64, device=pred.device)
    return torch.cat(values).reshape(lead)


def _psnr(pred: Tensor, target: Tensor) -> Tensor:
    mse = (pred - target).pow(2).mean(dim=(-3, -2, -1))
    return 10 * torch.log10(255.0**2 / mse)  # mse = 0 gives inf, as BasicSR


def psnr(
    pred: Tensor, target: Tensor, crop_border: int = 0, y_channel: bool = False, round_to_uint8: bool = False
) -> Tensor:
    """Per-frame PSNR in dB, ``10 log10(255^2 / MSE)``: ``(..., c, h, w)`` x2 -> float64 ``(...)``.

    Identical frames give ``inf``. See the module docstring for the options."""
    return _per_frame("psnr", _psnr, pred, target, crop_border, y_channel, round_to_uint8)


def _gaussian_kernel(device: torch.device) -> Tensor:
    """The SSIM window's 1-D factor: ``cv2.getGaussianKernel(11, 1.5)``, float64 ``(11,)``; the 11x11 window
    is its outer product with itself."""
    x = torch.arange(_SSIM_WINDOW, dtype=torch.float64, device=device) - (_SSIM_WINDOW - 1) / 2
    g = torch.exp(-(x**2) / (2 * _SSIM_SIGMA**2))
    return g / g.sum()


def _valid_filter(size: int, kernel: Tensor) -> Tensor:
    """``(size - k + 1, size)``: the matrix of 'valid' 1-D correlation with ``kernel`` (a banded Toeplitz)."""
    k = len(kernel)
    rows = torch.arange(size - k + 1, device=kernel.device)[:, None] + torch.arange(k, device=kernel.device)
    matrix = kernel.new_zeros(size - k + 1, size)
    return matrix.scatter_(1, rows, kernel.expand(size - k + 1, k))


def _ssim(pred: Tensor, target: Tensor) -> Tensor:
    n, h, w = pred.shape[0], *pred.shape[-2:]
    kernel = _gaussian_kernel(pred.device)
    rows, cols = _valid_filter(h, kernel), _valid_filter(w, kernel).T

    def blur(x: Tensor) -> Tensor:  # 'valid' 11x11 Gaussian filtering of each channel, as two float64 matmuls
        return rows @ x @ cols  # separable: the same sums as a 2-D convolution, ~50x faster than float64 conv2d

    mu1, mu2 = blur(pred), blur(target)
    var1 = blur(pred * pred) - mu1**2
    var2 = blur(target * target) - mu2**2
    cov = blur(pred * target) - mu1 * mu2
    ssim_map = ((2 * mu1 * mu2 + _SSIM_C1) * (2 * cov + _SSIM_C2)) / (
        (mu1**2 + mu2**2 + _SSIM_C1) * (var1 + var2 + _SSIM_C2)
    )
    return ssim_map.reshape(n, -1).mean(dim=1)  # all channels have the same map size: mean of channel means


def ssim(
    pred: Tensor, target: Tensor, crop_border: int = 0, y_channel: bool = False, round_to_uint8: bool = False
) -> Tensor:
    """Per-frame SSIM (Wang et al. 2004; 11x11 Gaussian window, sigma 1.5, C1 = (0.01 * 255)^2,
    C2 = (0.03 * 255)^2, 'valid' filtering, mean over channels): ``(..., c, h, w)`` x2 -> float64 ``(...)``.
    Frames must be at least 11x11 after cropping."""
    return _per_frame("ssim", _ssim, pred, target, crop_border, y_channel, round_to_uint8, _SSIM_WINDOW)


# --------------------------------------------------------------------------------------------------------
# The metric kind


@declare_kind("metric", wired=("crop_border", "y_channel"))
class Metric(ABC):
    """A per-frame score of restored frames: ``per_frame(pred, gt)`` takes frames ``(t, c, h, w)`` in [0, 1]
    (``gt`` is ``None`` for a no-reference metric, ``needs_gt = False``) and returns float64 ``(t,)``.

    The evaluation protocol wires in ``crop_border`` (pixels cropped from every edge before scoring) and
    ``y_channel`` (score the BT.601 Y channel); other constructor arguments are the recipe's to set, e.g.
    ``{name: psnr, round_to_uint8: true}``. Reports read the class attributes: ``label`` (display name),
    ``unit`` (``""`` for none), ``higher_is_better`` (which way an ordering is tested) and ``digits``
    (decimals shown)."""

    higher_is_better: ClassVar[bool]
    unit: ClassVar[str]
    needs_gt: ClassVar[bool]
    label: ClassVar[str]
    digits: ClassVar[int] = 3
    #: Names a metric may not have: the other columns of ``per_frame.csv`` and keys of ``metrics.json``.
    reserved_names: ClassVar[frozenset[str]] = frozenset(
        {"clip", "frame", "name", "bicubic", "clips", "protocol", "data", "checkpoint", "frames", "skipped"}
    )
    reserved_prefixes: ClassVar[tuple[str, ...]] = ("bicubic_",)  # the baseline's columns

    def __init__(self, crop_border: int = 0, y_channel: bool = False):
        self.crop_border = crop_border
        self.y_channel = y_channel

    @abstractmethod
    def per_frame(self, pred: Tensor, gt: Tensor | None) -> Tensor:
        """One float64 value per frame of ``pred`` ``(t, c, h, w)``."""


def metric_class(name: str, key: str = "metrics") -> type[Metric]:
    """The class registered as metric ``name`` (its label, unit and direction); an unknown name is a
    :class:`vsr.errors.RecipeError` naming ``key`` and the registered metrics."""
    return lookup("metric", name, key)


class _BasicSRMetric(Metric):
    """A full-reference metric as BasicSR computes it: ``measure(pred, gt, crop_border, y_channel,
    round_to_uint8)``, with ``round_to_uint8`` a recipe argument (``{name: psnr, round_to_uint8: true}``)."""

    needs_gt = True
    measure: ClassVar[Callable[..., Tensor]]

    def __init__(self, crop_border: int = 0, y_channel: bool = False, round_to_uint8: bool = False):
        super().__init__(crop_border, y_channel)
        self.round_to_uint8 = round_to_uint8

    def per_frame(self, pred: Tensor, gt: Tensor | None) -> Tensor:
        return type(self).measure(pred, gt, self.crop_border, self.y_channel, self.round_to_uint8)


@register("metric", "psnr")
class PSNR(_BasicSRMetric):
    """:func:`psnr` in dB (BasicSR ``calculate_psnr``)."""

    higher_is_better, unit, label, digits = True, "dB", "PSNR", 3
    measure = staticmethod(psnr)


@register("metric", "ssim")
class SSIM(_BasicSRMetric):
    """:func:`ssim` (BasicSR ``calculate_ssim``), unitless."""

    higher_is_better, unit, label, digits = True, "", "SSIM", 4
    measure = staticmethod(ssim)


# --------------------------------------------------------------------------------------------------------


def clip_average(per_frame_values_by_clip: Mapping[str, Tensor]) -> float:
    """The reported number: the mean over frames within each clip, then the mean over clips (BasicSR and
    MMagic both weight clips equally, whatever their length). NaN marks a frame a metric does not score (NIQE
    with ``frames``) and is skipped; a clip with no scored frame gives NaN."""
    if not per_frame_values_by_clip:
        raise ValueError("clip_average: no clips given")
    means = []
    for clip, values in per_frame_values_by_clip.items():
        values = torch.as_tensor(values, dtype=torch.float64)
        if values.numel() == 0:
            raise ValueError(f"clip_average: clip {clip!r} has no per-frame values")
        means.append(values.nanmean())
    return torch.stack(means).mean().item()


def vimeo_center_frame(output: Tensor, mirrored: bool = True) -> Tensor:
    """The frame that Vimeo-90K-T measures (``im4``, the centre of 7), from ``output`` ``(b, t, c, h, w)``.

    With ``mirrored`` (the 7 inputs extended to 14 as ``x + x[::-1]``, BasicVSR author's protocol), the
    centre frame appears twice and its two outputs are averaged: ``0.5 (out[:, t//4] + out[:, -1 - t//4])``.
    Otherwise ``out[:, t//2]``. Returns ``(b, c, h, w)``.
    """
    if output.ndim != 5:
        raise ValueError(f"vimeo_center_frame: expected (b, t, c, h, w), got shape {tuple(output.shape)}")
    t = output.shape[1]
    if not mirrored:
        return output[:, t // 2]
    if t % 2:
        raise ValueError(
            f"vimeo_center_frame: a mirror-extended output has an even number of frames, got t = {t}; "
            "pass mirrored=False for an output of the original frames"
        )
    return 0.5 * (output[:, t // 4] + output[:, -1 - t // 4])


# NIQE subclasses Metric, so its module is imported once the names above exist; this registers metric "niqe".
from vsr.metrics.no_reference import NIQE, niqe, niqe_per_frame  # noqa: E402

__all__ = [
    "NIQE",
    "PSNR",
    "SSIM",
    "Metric",
    "clip_average",
    "metric_class",
    "niqe",
    "niqe_per_frame",
    "psnr",
    "rgb_to_y",
    "ssim",
    "vimeo_center_frame",
]
