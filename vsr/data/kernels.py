"""Blur kernels of the real-world degradations (Real-ESRGAN, RealBasicVSR): isotropic and anisotropic
Gaussian, generalized Gaussian, plateau and sinc (a circular low-pass filter).

Each builder returns a normalised float64 ``(size, size)`` kernel (it sums to 1) for an odd ``size``. The
Gaussian family is written in terms of the squared Mahalanobis distance ``q(x) = xᵀ Σ⁻¹ x`` of each tap
``x = (column, row)`` offset from the centre, with ``Σ = R(θ) diag(σx², σy²) R(θ)ᵀ``:

* Gaussian: ``exp(-q / 2)``;
* generalized Gaussian (Pascal et al. 2013, arXiv 1302.6498): ``exp(-q^β / 2)`` (β = 1: Gaussian);
* plateau: ``1 / (1 + q^β)``, flat-topped for large β.

An isotropic kernel is the case σy = σx (θ then does nothing). The sinc kernel is the ideal circular low-pass
filter of cutoff ω (radians; π passes everything), sampled on the grid: ``ω J₁(ω r) / (2π r)``, with its
limit ``ω² / (4π)`` at r = 0 (J₁: Bessel function of the first kind, from scipy).

The definitions, the grid convention and the normalisation are those of BasicSR 1.4.2's
``basicsr/data/degradations.py``; ``tests/test_realworld.py`` checks every builder against it to 1e-6.
:data:`KINDS` names the kernel types as RealBasicVSR's configurations do, and :func:`kernel` builds one by
that name; :func:`filter2d` applies one kernel per frame and :func:`gaussian_blur` is OpenCV's
``GaussianBlur``.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F
from scipy.special import j1
from torch import Tensor

#: The kernel types by their names in the RealBasicVSR / Real-ESRGAN configurations.
KINDS = (
    "iso",
    "aniso",
    "generalized_iso",
    "generalized_aniso",
    "plateau_iso",
    "plateau_aniso",
    "sinc",
)


def _check_size(size: int) -> None:
    if size < 1 or size % 2 == 0:
        raise ValueError(f"a blur kernel's size must be odd and positive, got {size}")


def grid(size: int) -> np.ndarray:
    """``(size, size, 2)`` offsets ``(x, y)`` of each tap from the centre: x grows along a row, y down a
    column."""
    _check_size(size)
    axis = np.arange(size, dtype=np.float64) - (size - 1) // 2
    xx, yy = np.meshgrid(axis, axis)
    return np.stack([xx, yy], axis=-1)


def covariance(sigma_x: float, sigma_y: float, theta: float) -> np.ndarray:
    """``R(θ) diag(σx², σy²) R(θ)ᵀ``: the axes of the Gaussian rotated by θ radians."""
    c, s = math.cos(theta), math.sin(theta)
    rotation = np.array([[c, -s], [s, c]])
    return rotation @ np.diag([sigma_x**2, sigma_y**2]) @ rotation.T


def mahalanobis(size: int, sigma_x: float, sigma_y: float | None = None, theta: float = 0.0) -> np.ndarray:
    """``q = xᵀ Σ⁻¹ x`` at every tap; isotropic (σy = σx, no rotation) when ``sigma_y`` is None."""
    if sigma_y is None:
        sigma_y, theta = sigma_x, 0.0
    offsets = grid(size)
    inverse = np.linalg.inv(covariance(sigma_x, sigma_y, theta))
    return np.einsum("...i,ij,...j->...", offsets, inverse, offsets)


def _normalised(kernel: np.ndarray) -> np.ndarray:
    return kernel / kernel.sum()


def gaussian(size: int, sigma_x: float, sigma_y: float | None = None, theta: float = 0.0) -> np.ndarray:
    """A bivariate Gaussian kernel; isotropic when ``sigma_y`` is None."""
    return _normalised(np.exp(-0.5 * mahalanobis(size, sigma_x, sigma_y, theta)))


def generalized_gaussian(
    size: int, sigma_x: float, sigma_y: float | None = None, theta: float = 0.0, beta: float = 1.0
) -> np.ndarray:
    """A generalized Gaussian kernel ``exp(-q^β / 2)``: β < 1 heavier tails, β > 1 flatter top."""
    return _normalised(np.exp(-0.5 * mahalanobis(size, sigma_x, sigma_y, theta) ** beta))


def plateau(
    size: int, sigma_x: float, sigma_y: float | None = None, theta: float = 0.0, beta: float = 1.0
) -> np.ndarray:
    """A plateau kernel ``1 / (1 + q^β)``."""
    return _normalised(1.0 / (mahalanobis(size, sigma_x, sigma_y, theta) ** beta + 1.0))


def sinc(size: int, cutoff: float, pad_to: int = 0) -> np.ndarray:
    """The circular low-pass kernel of ``cutoff`` radians (π: no filtering), zero-padded to ``pad_to`` taps
    when that is larger (odd)."""
    offsets = grid(size)
    r = np.hypot(offsets[..., 0], offsets[..., 1])
    centre = (size - 1) // 2
    r[centre, centre] = 1.0  # replaced below by the limit at r = 0
    kernel = cutoff * j1(cutoff * r) / (2 * np.pi * r)
    kernel[centre, centre] = cutoff**2 / (4 * np.pi)
    kernel = _normalised(kernel)
    if pad_to > size:
        _check_size(pad_to)
        pad = (pad_to - size) // 2
        kernel = np.pad(kernel, pad)
    return kernel


def kernel(
    kind: str,
    size: int,
    sigma_x: float = 1.0,
    sigma_y: float = 1.0,
    theta: float = 0.0,
    beta: float = 1.0,
    omega: float = math.pi,
) -> np.ndarray:
    """The kernel of type ``kind`` (one of :data:`KINDS`): an ``_iso`` type uses ``sigma_x`` alone, ``sinc``
    only ``omega``, ``generalized_*`` and ``plateau_*`` also ``beta``."""
    if kind not in KINDS:
        raise ValueError(f"unknown blur kernel {kind!r}; kernels are {', '.join(KINDS)}")
    if kind == "sinc":
        return sinc(size, omega)
    family, shape = kind.rsplit("_", 1) if "_" in kind else ("gaussian", kind)
    sy, th = (None, 0.0) if shape == "iso" else (sigma_y, theta)
    if family == "gaussian":
        return gaussian(size, sigma_x, sy, th)
    builder = generalized_gaussian if family == "generalized" else plateau
    return builder(size, sigma_x, sy, th, beta)


# --------------------------------------------------------------------------------------------------------
# Applying kernels to frames


def _reflect101(x: Tensor, pad: int) -> Tensor:
    """Pad the last two dims by ``pad`` with reflect-101 borders (``dcb|abcd|cba``), for any size >= 1."""
    if pad == 0:
        return x
    if pad < min(x.shape[-2:]) and x.ndim in (3, 4):
        return F.pad(x, (pad, pad, pad, pad), mode="reflect")  # torch's "reflect" is reflect-101
    out = x
    for dim in (-2, -1):
        n = x.shape[dim]
        index = np.arange(-pad, n + pad)
        if n == 1:
            index[:] = 0
        else:
            index = np.mod(index, 2 * (n - 1))
            index = np.where(index >= n, 2 * (n - 1) - index, index)
        out = out.index_select(dim, torch.from_numpy(index).to(x.device))
    return out


#: Float32 kernels up to this many taps are applied by direct convolution, larger ones through the FFT, whose cost
#: does not grow with the kernel (one thread, 8 frames of 128² and 30 of 256²: the two cost the same near 25 taps).
#: Float64 ones always go through the FFT: torch's direct float64 convolution is 40x slower at 21 taps.
DIRECT_TAPS = 23


def _rank_one(taps: Tensor) -> tuple[Tensor, Tensor] | None:
    """``(columns, rows)``, each ``(n, k)``, whose outer products are the kernels ``(n, k, k)``, if every kernel
    has rank one to 1e-12 (isotropic Gaussians; anisotropic ones only on the axes); else None."""
    centre = taps.shape[-1] // 2
    peak = taps[:, centre, centre]
    if not bool((peak > 0).all()):
        return None
    columns, rows = taps[:, :, centre] / peak[:, None], taps[:, centre, :]
    if (columns[:, :, None] * rows[:, None, :] - taps).abs().max() > 1e-12:
        return None
    return columns, rows


def _filter2d_fft(frames: Tensor, taps: Tensor) -> Tensor:
    k = taps.shape[-1]
    h, w = frames.shape[-2:]
    padded = _reflect101(frames, k // 2)
    size = padded.shape[-2:]
    spectrum = torch.fft.rfft2(padded) * torch.fft.rfft2(taps.flip(-1, -2)[:, None].to(frames.dtype), s=size)
    return torch.fft.irfft2(spectrum, s=size)[..., k - 1 : k - 1 + h, k - 1 : k - 1 + w]


def filter2d(frames: Tensor, taps: Tensor) -> Tensor:
    """Correlate each frame ``(n, c, h, w)`` with its own kernel ``(n, k, k)`` (odd k), reflect-101 borders,
    as ``cv2.filter2D``: all frames in one grouped convolution, as a column pass and a row pass where every
    kernel has rank one, else in 2-D up to :data:`DIRECT_TAPS` taps in float32; otherwise through the FFT."""
    n, c, h, w = frames.shape
    k = taps.shape[-1]
    separable = _rank_one(taps)
    if separable is None and (k > DIRECT_TAPS or frames.dtype != torch.float32):
        return _filter2d_fft(frames, taps)
    padded = _reflect101(frames.reshape(1, n * c, h, w), k // 2)

    def per_channel(weights: Tensor, *shape: int) -> Tensor:  # one kernel per frame, repeated per channel
        return weights.to(frames.dtype).repeat_interleave(c, dim=0).view(n * c, 1, *shape)

    if separable is None:
        return F.conv2d(padded, per_channel(taps, k, k), groups=n * c).view(n, c, h, w)
    columns, rows = separable
    out = F.conv2d(padded, per_channel(columns, k, 1), groups=n * c)
    return F.conv2d(out, per_channel(rows, 1, k), groups=n * c).view(n, c, h, w)


#: Rows of a blur matrix taken at a time by :func:`gaussian_blur`, each band over the columns it reaches only.
BAND_ROWS = 32


@lru_cache(maxsize=32)
def _blur_bands(
    length: int, kernel_size: int, sigma: float, dtype: torch.dtype, device: torch.device
) -> tuple[tuple[int, int, Tensor], ...]:
    """The ``(length, length)`` float64 matrix of a 1-D Gaussian of ``kernel_size`` taps with reflect-101
    borders folded in (a row of the frame times its transpose is the blurred row), cut into bands of
    :data:`BAND_ROWS` rows, in order: ``(first column, end column, band)``, the band (``dtype``, on ``device``)
    holding those rows of the matrix over the only columns where they are not zero."""
    offsets = np.arange(kernel_size) - (kernel_size - 1) // 2
    taps = np.exp(-(offsets**2) / (2 * sigma**2))
    taps /= taps.sum()
    columns = np.arange(length)[:, None] + offsets[None, :]
    if length == 1:
        columns[:] = 0
    else:
        columns = np.mod(columns, 2 * (length - 1))
        columns = np.where(columns >= length, 2 * (length - 1) - columns, columns)
    matrix = np.zeros((length, length))
    np.add.at(matrix, (np.repeat(np.arange(length), kernel_size), columns.ravel()), np.tile(taps, length))
    bands = []
    for top in range(0, length, BAND_ROWS):
        band = matrix[top : top + BAND_ROWS]
        used = np.flatnonzero(band.any(axis=0))
        start, end = int(used[0]), int(used[-1]) + 1
        bands.append((start, end, torch.from_numpy(band[:, start:end]).to(device, dtype).contiguous()))
    return tuple(bands)


def gaussian_blur(frames: Tensor, kernel_size: int = 51, sigma: float = 0.0) -> Tensor:
    """``cv2.GaussianBlur`` of ``(..., c, h, w)``: a separable Gaussian of ``kernel_size`` taps, reflect-101
    borders; ``sigma`` 0 takes OpenCV's ``0.3 ((k - 1) / 2 - 1) + 0.8`` (8 for 51 taps). Matrix products by the
    1-D blur matrices, a band of rows at a time (:func:`_blur_bands`): far cheaper here than a 51-tap
    convolution, and than the whole matrices, mostly zeros."""
    sigma = sigma or 0.3 * ((kernel_size - 1) * 0.5 - 1) + 0.8
    h, w = frames.shape[-2:]
    along_w, along_h = (_blur_bands(n, kernel_size, float(sigma), frames.dtype, frames.device) for n in (w, h))
    rows = frames.reshape(-1, w)  # every row of every frame, blurred by one product per band
    rows = torch.cat([rows[:, a:b] @ band.T for a, b, band in along_w], -1)
    planes = rows.view(-1, h, w)  # then every plane along h
    out = torch.cat([band @ planes[:, a:b] for a, b, band in along_h], -2)
    return out.view(frames.shape)


__all__ = [
    "KINDS",
    "covariance",
    "filter2d",
    "gaussian",
    "gaussian_blur",
    "generalized_gaussian",
    "grid",
    "kernel",
    "mahalanobis",
    "plateau",
    "sinc",
]
