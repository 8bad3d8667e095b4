"""NIQE, the Natural Image Quality Evaluator: a no-reference score of how natural frames look, lower is better.

A. Mittal, R. Soundararajan and A. C. Bovik, "Making a 'Completely Blind' Image Quality Analyzer", IEEE
Signal Processing Letters 20(3), 2013. The idea: luminance normalised by its local mean and contrast (the MSCN
coefficients, Eq. 1) has regular statistics in natural photographs, which blur, noise and compression disturb.
NIQE describes each 96×96 block of a frame, at full and half size, by 36 statistics of these coefficients,
fits a multivariate Gaussian (MVG) to the blocks, and reports its distance (Eq. 10) to the MVG of a corpus of
pristine photographs::

    NIQE = sqrt((ν_p − ν)ᵀ ((Σ_p + Σ) / 2)⁺ (ν_p − ν))

Per block and scale there are 18 statistics, fitted as the authors' MATLAB release fits them: an asymmetric
generalised Gaussian (AGGD, Eq. 6–7) of the coefficients gives its shape and mean scale; AGGDs of the products
of horizontally, vertically and both diagonally adjacent coefficients (pairs taken circularly within the block)
give shape, mean (Eq. 8), left and right scale each.

The pristine model ``niqe_pris_params.npz`` (ν_p, Σ_p and the 7×7 Gaussian window of Eq. 1) is the LIVE
release's, as BasicSR 1.4.2 ships it (see ``NOTICE`` beside it).

Precision decides the score in flat regions, and is BasicSR's: the luminance and the MSCN coefficients are
float32, the statistics float64. Where the image is flat the local variance ``E[I²] − μ²`` is rounding noise,
so the coefficients there are too, and the AGGD fit counts their signs: computed in float64 throughout, NIQE
moves by up to 0.03 on skimage's ``astronaut``. As BasicSR computes them it agrees with BasicSR's
``calculate_niqe`` to 1e-3 on frames of 3 blocks a side or more (skimage's photographs, Y and gray, crop_border 0
and 4; ``tests/test_niqe.py``), and with the MATLAB R2021a score BasicSR quotes for its ``baboon.png``
(5.72957338) to 1e-6. What remains is BasicSR's float32 resize to the second scale; with 2 blocks on a side the
covariance comes from few blocks and the two differ by up to 3e-3.

The protocol, which every reported NIQE must name because the score depends on it:

* ``channel``: ``"y"`` (the BT.601 Y of MATLAB ``rgb2ycbcr``, the default, as the RealBasicVSR paper
  measures) or ``"gray"`` (``0.299 R + 0.587 G + 0.114 B``, OpenCV's ``BGR2GRAY`` as in BasicSR), of the frames
  quantised to 8 bits (as saved and as NIQE is measured, on image files) and rounded to integers;
* ``crop_border``: pixels cropped from every edge first (the evaluation protocol's ``data.val_crop_border``);
* which frames: the registered metric's ``frames`` (RealBasicVSR's paper scores frames 0, 50 and 99 of each
  VideoLQ clip, on the ×4 output).

A frame is cut to whole blocks from its top-left corner, and must leave at least 2×2 blocks (192×192 pixels):
the MVG of fewer blocks has a covariance from one or two samples.
"""

from __future__ import annotations

import math
from functools import lru_cache
from importlib import resources
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from vsr.data.degradations import imresize
from vsr.errors import ArgumentError
from vsr.metrics import Metric, rgb_to_y
from vsr.registry import Allowed, integer, list_of, one_of, optional, register

BLOCK = 96  # the block size the pristine model was fitted with (the paper's P = 96, no overlap)
MIN_SIZE = 2 * BLOCK  # 2x2 blocks at least
PARAMS_FILE = "niqe_pris_params.npz"
CHANNELS = ("y", "gray")
_GRAY_WEIGHTS = (0.299, 0.587, 0.114)  # ITU-R BT.601 luma without offset, OpenCV's BGR2GRAY
_FRAMES_PER_CHUNK = 4  # bounds the temporaries: 4 products of every 96x96 block of each frame, in float64

# The shape grid of the AGGD fit: alpha = 0.2, 0.201, ..., 10, as the MATLAB release searches it.
_ALPHAS = 0.2 + 0.001 * torch.arange(9801, dtype=torch.float64)


def _gamma_ratio(a: Tensor, b: Tensor) -> Tensor:
    """Gamma(a) / Gamma(b)."""
    return torch.exp(torch.lgamma(a) - torch.lgamma(b))


# rho(alpha) = Gamma(2/alpha)^2 / (Gamma(1/alpha) Gamma(3/alpha)), increasing in alpha: the moment ratio
# (E|x|)^2 / E[x^2] of a generalised Gaussian of shape alpha.
_RHO = torch.exp(2 * torch.lgamma(2 / _ALPHAS) - torch.lgamma(1 / _ALPHAS) - torch.lgamma(3 / _ALPHAS))


@lru_cache(maxsize=1)
def pristine_model() -> tuple[Tensor, Tensor, Tensor]:
    """The pristine MVG and the MSCN window, float64: mean ``(36,)``, covariance ``(36, 36)``, window ``(7, 7)``."""
    with resources.files(__package__).joinpath(PARAMS_FILE).open("rb") as f, np.load(f) as params:
        mean, cov, window = (params[k] for k in ("mu_pris_param", "cov_pris_param", "gaussian_window"))
    return torch.from_numpy(mean[0]), torch.from_numpy(cov), torch.from_numpy(window)


def luminance(frames: Tensor, channel: str = "y") -> Tensor:
    """``(..., 3, h, w)`` RGB in [0, 1] -> float32 ``(..., h, w)``: the Y or gray of the frames quantised to
    8 bits, on the 0..255 scale, rounded to integers.

    NIQE is measured on image files: the frames are quantised as ``vsr test --save-frames`` writes them, and the
    luminance passes through float32 as in BasicSR before rounding (which decides the ties at .5 that 8-bit
    RGB produces)."""
    if channel not in CHANNELS:
        raise ArgumentError(f"niqe: channel must be one of {', '.join(CHANNELS)}, got {channel!r}")
    if not isinstance(frames, Tensor) or frames.ndim < 3 or frames.shape[-3] != 3:
        shape = tuple(getattr(frames, "shape", ()))
        raise ArgumentError(f"niqe: expected RGB frames (3, h, w) or (t, 3, h, w) in [0, 1], got shape {shape}")
    rgb = (frames.float().clamp(0, 1) * 255).round() / 255
    if channel == "y":
        lum = (rgb_to_y(rgb.double()) / 255).float()[..., 0, :, :] * 255
    else:
        lum = _opencv_gray(rgb) * 255
    return lum.round()


def _opencv_gray(rgb: Tensor) -> Tensor:
    """OpenCV's float32 ``BGR2GRAY`` bit for bit (as BasicSR's ``convert_to='gray'`` gets it): ``0.587 G``, then
    fused multiply-adds of ``0.114 B`` and ``0.299 R``, each rounded once to float32. The float64 products of
    float32 values are exact, so float64 sums rounded to float32 are the fused ones (but for double rounding)."""
    red, green, blue = rgb.double().unbind(dim=-3)
    weights = torch.tensor(_GRAY_WEIGHTS, dtype=torch.float32).double()
    gray = (green * weights[1]).float().double()
    gray = (blue * weights[2] + gray).float().double()
    return (red * weights[0] + gray).float()


def mscn(images: Tensor, window: Tensor) -> Tensor:
    """The MSCN coefficients (Eq. 1) of ``(n, h, w)`` luminance, float32: ``(I - mu) / (sigma + 1)``, ``mu``
    and ``sigma`` the local mean and deviation under the Gaussian ``window``, edges replicated.

    Float32 as BasicSR computes them (see the module docstring): the local means are summed in float64 and
    stored in float32, the variance is their float32 difference."""
    pad = window.shape[-1] // 2
    kernel = window.flip(-2, -1)[None, None].to(images.device, torch.float64)  # a convolution: conv2d correlates

    def local_mean(x: Tensor) -> Tensor:
        return F.conv2d(F.pad(x.double(), (pad, pad, pad, pad), mode="replicate"), kernel).float()

    x = images[:, None].float()
    mu = local_mean(x)
    sigma = (local_mean(x * x) - mu * mu).abs().sqrt()
    return ((x - mu) / (sigma + 1))[:, 0]


def blocks(images: Tensor, size: int) -> Tensor:
    """``(n, h, w)`` -> ``(n, blocks, size, size)``: the whole, non-overlapping blocks, row by row."""
    n, h, w = images.shape
    rows, cols = h // size, w // size
    grid = images[:, : rows * size, : cols * size].reshape(n, rows, size, cols, size)
    return grid.transpose(2, 3).reshape(n, rows * cols, size, size)


def aggd_fit(samples: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Moment-matching fit of an asymmetric generalised Gaussian to each ``(..., s, s)`` set of samples:
    shape ``alpha`` (the nearest on the grid 0.2, 0.201, ..., 10), left and right scales, each ``(...)``.

    A set with no negative (or no positive) sample has an undefined scale on that side: NaN, and the shape
    the grid's first, as the reference's search gives for an undefined ratio."""
    x = samples.flatten(-2)
    square = x * x
    left, right = x < 0, x > 0
    sigma_left = ((square * left).sum(-1) / left.sum(-1)).sqrt()
    sigma_right = ((square * right).sum(-1) / right.sum(-1)).sqrt()
    gamma_hat = sigma_left / sigma_right
    r_hat = x.abs().mean(-1) ** 2 / square.mean(-1)
    ratio = r_hat * (gamma_hat**3 + 1) * (gamma_hat + 1) / (gamma_hat**2 + 1) ** 2
    # the grid's rho is increasing: the nearest value is one of the two around the ratio's sorted position
    rho = _RHO.to(x.device)
    upper = torch.searchsorted(rho, ratio.contiguous()).clamp(1, len(rho) - 1)
    nearer_lower = (ratio - rho[upper - 1]) <= (rho[upper] - ratio)
    index = torch.where(nearer_lower, upper - 1, upper).masked_fill(ratio.isnan(), 0)
    alpha = _ALPHAS.to(x.device)[index]
    scale = _gamma_ratio(1 / alpha, 3 / alpha).sqrt()
    return alpha, sigma_left * scale, sigma_right * scale


_NEIGHBOURS = ((0, 1), (1, 0), (1, 1), (1, -1))  # horizontal, vertical, main and anti-diagonal


def block_features(block: Tensor) -> Tensor:
    """The 18 statistics of each MSCN block ``(..., s, s)`` -> ``(..., 18)``."""
    alpha, left, right = aggd_fit(block)
    products = torch.stack([block * block.roll(shift, dims=(-2, -1)) for shift in _NEIGHBOURS], dim=-3)
    p_alpha, p_left, p_right = aggd_fit(products)  # (..., 4)
    p_mean = (p_right - p_left) * _gamma_ratio(2 / p_alpha, 1 / p_alpha)
    pairs = torch.stack([p_alpha, p_mean, p_left, p_right], dim=-1).flatten(-2)  # (..., 16), by orientation
    return torch.cat([alpha[..., None], ((left + right) / 2)[..., None], pairs], dim=-1)


def mvg_fit(features: Tensor) -> tuple[Tensor, Tensor]:
    """The MVG of each frame's block features ``(n, blocks, d)``: mean ``(n, d)`` of each feature over the
    blocks where it is defined, and covariance ``(n, d, d)`` of the blocks whose features all are."""
    mean = features.nanmean(dim=1)
    complete = (~features.isnan().any(dim=-1, keepdim=True)).to(features.dtype)  # (n, blocks, 1)
    values = features.nan_to_num() * complete
    count = complete.sum(dim=1, keepdim=True)  # (n, 1, 1)
    centred = (values - values.sum(dim=1, keepdim=True) / count) * complete
    return mean, centred.transpose(1, 2) @ centred / (count - 1)


def _check_size(h: int, w: int, crop_border: int) -> None:
    if isinstance(crop_border, bool) or not isinstance(crop_border, int) or crop_border < 0:
        raise ArgumentError(f"niqe: crop_border must be a non-negative integer, got {crop_border!r}")
    if min(h, w) - 2 * crop_border < MIN_SIZE:
        cropped = f" less crop_border {crop_border} on each edge" if crop_border else ""
        raise ArgumentError(
            f"niqe: frames of {h}x{w}{cropped} are too small: NIQE needs at least {MIN_SIZE}x{MIN_SIZE} pixels "
            f"({BLOCK}x{BLOCK} blocks, 2x2 of them at least); score larger frames (e.g. the x4 output of a "
            "larger clip) or crop less"
        )


def _niqe_of_luminance(images: Tensor) -> Tensor:
    """NIQE of ``(n, h, w)`` rounded luminance, cut to whole blocks -> float64 ``(n,)``."""
    mean_p, cov_p, window = (t.to(images.device) for t in pristine_model())
    features = []
    for scale in (1, 2):
        features.append(block_features(blocks(mscn(images, window).double(), BLOCK // scale)))
        if scale == 1:  # MATLAB imresize(I, 0.5), bicubic with antialiasing, on the 0..1 scale; kept in float32
            images = (imresize(images[:, None] / 255, 0.5)[:, 0] * 255).float()
    mean, cov = mvg_fit(torch.cat(features, dim=-1))
    defined = mean.isfinite().all(dim=-1) & cov.isfinite().all(dim=-1).all(dim=-1)
    eye = torch.eye(cov.shape[-1], dtype=cov.dtype, device=cov.device)
    precision = torch.linalg.pinv((cov_p + torch.where(defined[:, None, None], cov, eye)) / 2)
    diff = (mean_p - mean.nan_to_num())[:, None]  # (n, 1, d)
    quality = (diff @ precision @ diff.transpose(1, 2)).reshape(-1).clamp(min=0).sqrt()
    return torch.where(defined, quality, math.nan)


def niqe_per_frame(frames: Tensor, crop_border: int = 0, channel: str = "y") -> Tensor:
    """NIQE of each frame: ``(..., 3, h, w)`` RGB in [0, 1] -> float64 ``(...)``; NaN for a frame whose
    statistics are undefined (a flat frame). See the module docstring for ``crop_border`` and ``channel``."""
    lum = luminance(frames, channel)
    h, w = lum.shape[-2:]
    _check_size(h, w, crop_border)
    if crop_border:
        lum = lum[..., crop_border:-crop_border, crop_border:-crop_border]
    h, w = (n - n % BLOCK for n in lum.shape[-2:])
    lead = lum.shape[:-2]
    lum = lum[..., :h, :w].reshape(-1, h, w)
    values = [_niqe_of_luminance(chunk) for chunk in lum.split(_FRAMES_PER_CHUNK)]
    return torch.cat(values).reshape(lead) if values else lum.new_empty(lead)


def niqe(frames: Tensor, crop_border: int = 0, channel: str = "y") -> float:
    """NIQE of a frame ``(3, h, w)`` or the mean over the frames of a clip ``(t, 3, h, w)``, RGB in [0, 1]
    (:func:`niqe_per_frame`). Frames must be at least 192x192 after ``crop_border``."""
    return niqe_per_frame(frames, crop_border, channel).mean().item()


@register("metric", "niqe")
class NIQE(Metric):
    """:func:`niqe`, no reference needed, lower is better. Recipe arguments: ``channel`` (``y``, the default,
    or ``gray``) and ``frames``, the frame indices scored in each clip (default every frame; RealBasicVSR's
    paper: ``[0, 50, 99]``): the others get NaN, which the clip average skips. ``crop_border`` is the
    protocol's; the protocol's ``y_channel`` does not apply (NIQE scores luminance: ``channel``)."""

    higher_is_better, unit, needs_gt, label, digits = False, "", False, "NIQE", 4
    allowed_arguments: ClassVar[dict[str, Allowed]] = {
        "channel": one_of(*CHANNELS),
        "frames": optional(list_of(integer(0))),
    }

    def __init__(self, crop_border: int = 0, channel: str = "y", frames: list[int] | None = None):
        super().__init__(crop_border, y_channel=channel == "y")
        self.channel = channel
        self.frames = None if frames is None else sorted(set(frames))

    def per_frame(self, pred: Tensor, gt: Tensor | None) -> Tensor:
        if self.frames is None:
            return niqe_per_frame(pred, self.crop_border, self.channel)
        if self.frames[-1] >= len(pred):
            raise ArgumentError(
                f"niqe: frames {self.frames} include frame {self.frames[-1]}, but the clip has {len(pred)} "
                f"frames; choose frames that every clip has ({{name: niqe, frames: [...]}}, 0 is the first)"
            )
        values = torch.full((len(pred),), math.nan, dtype=torch.float64, device=pred.device)
        values[self.frames] = niqe_per_frame(pred[self.frames], self.crop_border, self.channel)
        return values
