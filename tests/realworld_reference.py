"""The real-world chain as vsr computed it before its stages were batched (commit 3cf9e74), for equivalence
tests and ``benchmarks/bench_degradations.py --parts compare`` (never used by the library; benchmarks put this
folder on ``sys.path`` to import it).

Frame by frame where the chain now batches: blur through the FFT (``torch.fft``) for every kernel, the GT's
51-tap Gaussian as two dense matrix products, Poisson and Gaussian noise drawn one frame per call, JPEG and the
8-bit casts one frame at a time, and video decoded by PyAV's defaults (threaded decoder, a new colour converter
per frame). Each function is the previous code, copied; :func:`reference_apply` runs a stage of
:mod:`vsr.data.realworld` with it and :func:`reference_chain` the whole ``realbasicvsr`` chain, from the same
draws as the library's (``RealBasicVSR.plan``), so that a seed gives both the same degradation. The draws' previous
code (:func:`drift`, :func:`jpeg_qualities`: a step drawn per frame) is kept for the tests that pin the draws.
"""

from __future__ import annotations

import io
import math
from functools import lru_cache

import av
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

from vsr.data import kernels
from vsr.data.realworld import (
    ENCODER_OPTIONS,
    STAGES,
    RandomBlur,
    RandomJPEG,
    RandomNoise,
    RandomResize,
    RealBasicVSR,
    VideoCompression,
)


def resize(frames: Tensor, size: tuple[int, int], mode: str) -> Tensor:
    if tuple(frames.shape[-2:]) == tuple(size):
        return frames
    if mode == "area":
        return F.interpolate(frames, size=size, mode="area")
    shrinking = size[0] < frames.shape[-2] or size[1] < frames.shape[-1]
    return F.interpolate(frames, size=size, mode=mode, align_corners=False, antialias=shrinking)


def quantise(frames: Tensor) -> Tensor:
    return frames.clamp(0, 1).mul(255).round().div(255)


def _to_uint8(frame: Tensor) -> np.ndarray:
    return np.ascontiguousarray(frame.clamp(0, 1).mul(255).round().to(torch.uint8).permute(1, 2, 0).numpy())


def _from_uint8(array: np.ndarray, like: Tensor) -> Tensor:
    return torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1))).to(like.dtype).div(255)


def _even(length: float) -> int:
    return max(2, int(length) // 2 * 2)


def _batched(frames: list[Tensor], each) -> list[Tensor]:
    groups: dict[tuple[int, ...], list[int]] = {}
    for i, frame in enumerate(frames):
        groups.setdefault(tuple(frame.shape), []).append(i)
    out: list[Tensor] = [frames[0]] * len(frames)
    for indices in groups.values():
        for i, frame in zip(indices, each(torch.stack([frames[i] for i in indices]), indices), strict=True):
            out[i] = frame
    return out


# --------------------------------------------------------------------------------------------------------
# Draws


def drift(rng: np.random.Generator, low, high, step, frames: int) -> np.ndarray:
    """``vsr.data.realworld.drift``, one step drawn per frame."""
    low, high, step = (np.asarray(v, dtype=np.float64) for v in (low, high, step))
    value = rng.uniform(low, high)
    out = np.empty((frames, low.size))
    for i in range(frames):
        out[i] = value
        if i + 1 < frames:
            value = np.clip(value + rng.uniform(-step, step), low, high)
    return out


def jpeg_qualities(stage: RandomJPEG, rng: np.random.Generator, frames: int) -> np.ndarray:
    """``RandomJPEG.draw``, one step drawn per frame."""
    low, high = stage.quality
    qualities = [round(rng.uniform(low, high))]
    for _ in range(frames - 1):
        qualities.append(round(float(np.clip(qualities[-1] + rng.uniform(-3, 3), low, high))))
    return np.array(qualities)


# --------------------------------------------------------------------------------------------------------
# Kernels


def _reflect101(x: Tensor, pad: int) -> Tensor:
    if pad == 0:
        return x
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


def filter2d(frames: Tensor, taps: Tensor) -> Tensor:
    """Each frame ``(n, c, h, w)`` correlated with its kernel ``(n, k, k)`` through the FFT, reflect-101."""
    k = taps.shape[-1]
    h, w = frames.shape[-2:]
    padded = _reflect101(frames, k // 2)
    size = padded.shape[-2:]
    spectrum = torch.fft.rfft2(padded) * torch.fft.rfft2(taps.flip(-1, -2)[:, None].to(frames.dtype), s=size)
    return torch.fft.irfft2(spectrum, s=size)[..., k - 1 : k - 1 + h, k - 1 : k - 1 + w]


@lru_cache(maxsize=32)
def _blur_matrix(length: int, kernel_size: int, sigma: float) -> Tensor:
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
    return torch.from_numpy(matrix)


def gaussian_blur(frames: Tensor, kernel_size: int = 51, sigma: float = 0.0) -> Tensor:
    """``cv2.GaussianBlur`` as two products by the dense ``(h, h)`` and ``(w, w)`` blur matrices."""
    sigma = sigma or 0.3 * ((kernel_size - 1) * 0.5 - 1) + 0.8
    h, w = frames.shape[-2:]
    rows = _blur_matrix(h, kernel_size, float(sigma)).to(frames)
    cols = _blur_matrix(w, kernel_size, float(sigma)).to(frames)
    return rows @ frames @ cols.T


def unsharp_mask(
    frames: Tensor, kernel_size: int = 51, sigma: float = 0.0, threshold: float = 10, weight: float = 0.5
) -> Tensor:
    residual = frames - gaussian_blur(frames, kernel_size, sigma)
    soft = gaussian_blur((residual.abs() * 255 > threshold).to(frames.dtype), kernel_size, sigma)
    sharp = (frames + weight * residual).clamp(0, 1)
    return soft * sharp + (1 - soft) * frames


# --------------------------------------------------------------------------------------------------------
# Noise, JPEG, video


def _gray(frame: Tensor) -> Tensor:
    weights = frame.new_tensor([0.299, 0.587, 0.114]).view(3, 1, 1)
    return (frame * weights).sum(0, keepdim=True) if frame.shape[0] == 3 else frame


def poisson_noise(frame: Tensor, scale: float, rng: np.random.Generator, gray: bool = False) -> Tensor:
    source = _gray(frame) if gray else frame
    levels = source.clamp(0, 1).mul(255).round().to(torch.uint8).numpy()
    distinct = np.count_nonzero(np.bincount(levels.ravel(), minlength=256))
    values = 2.0 ** math.ceil(math.log2(distinct))
    x = levels.astype(np.float64) / 255
    noise = (rng.poisson(x * values) / values - x) * scale
    return torch.from_numpy(noise).to(frame.dtype)


def jpeg(frame: Tensor, quality: int) -> Tensor:
    array = _to_uint8(frame)
    buffer = io.BytesIO()
    Image.fromarray(array[..., 0] if array.shape[-1] == 1 else array).save(buffer, format="JPEG", quality=int(quality))
    with Image.open(buffer) as image:
        decoded = np.asarray(image)
    return _from_uint8(decoded[..., None] if decoded.ndim == 2 else decoded, frame)


def compress_video(clip: Tensor, codec: str, bitrate: int) -> tuple[Tensor, int]:
    t, _, h, w = clip.shape
    padded = F.pad(clip, (0, w % 2, 0, h % 2), mode="replicate") if h % 2 or w % 2 else clip
    buffer, payload = io.BytesIO(), 0
    with av.open(buffer, "w", format="mp4") as container:
        stream = container.add_stream(codec, rate=1, options=ENCODER_OPTIONS.get(codec, {"threads": "1"}))
        stream.width, stream.height = padded.shape[-1], padded.shape[-2]
        stream.pix_fmt, stream.bit_rate = "yuv420p", int(bitrate)
        frames = [av.VideoFrame.from_ndarray(_to_uint8(frame), format="rgb24") for frame in padded]
        for packet in (p for frame in [*frames, None] for p in stream.encode(frame)):
            payload += packet.size
            container.mux(packet)
    buffer.seek(0)
    with av.open(buffer, "r", format="mp4") as container:
        decoded = [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]
    assert len(decoded) == t
    out = torch.stack([_from_uint8(array, clip) for array in decoded])
    return out[..., :h, :w].contiguous(), payload


# --------------------------------------------------------------------------------------------------------
# The stages and the chain


def reference_apply(stage, frames: list[Tensor], draw, rng: np.random.Generator) -> list[Tensor]:
    """``stage.apply(frames, draw, rng)`` as the previous code computed it."""
    if isinstance(stage, RandomBlur):
        if not draw.fires:
            return frames
        taps = torch.from_numpy(np.stack([kernels.kernel(draw.kind, draw.size, *p) for p in draw.params]))
        return _batched(frames, lambda batch, idx: filter2d(batch, taps[idx]))
    if isinstance(stage, RandomResize):
        out = []
        for frame, f in zip(frames, draw.factors, strict=True):
            size = (_even(frame.shape[-2] * f), _even(frame.shape[-1] * f)) if f != 1 else tuple(frame.shape[-2:])
            out.append(resize(frame[None], size, draw.interpolation)[0])
        return out
    if isinstance(stage, RandomNoise):
        out = []
        for frame, level in zip(frames, draw.levels, strict=True):
            if draw.gaussian:
                shape = (1 if draw.gray else frame.shape[0], *frame.shape[1:])
                noise = torch.from_numpy(rng.standard_normal(shape, dtype=np.float32)).to(frame.dtype) * level
            else:
                noise = poisson_noise(frame, float(level), rng, draw.gray)
            out.append((frame + noise).clamp(0, 1))
        return out
    if isinstance(stage, RandomJPEG):
        return [jpeg(frame, int(q)) for frame, q in zip(frames, draw, strict=True)]
    if isinstance(stage, VideoCompression):
        size = tuple(frames[0].shape[-2:])
        clip = torch.stack([resize(frame[None], size, "bilinear")[0] for frame in frames])
        return list(compress_video(clip, draw.codec, draw.bitrate)[0])
    raise TypeError(f"no reference for {type(stage).__name__}")


def reference_chain(chain: RealBasicVSR, clip: Tensor, rng: np.random.Generator) -> Tensor:
    """``chain(clip, rng)`` as the previous code computed it (the same plan, the previous stages)."""
    t, _, h, w = clip.shape
    plan = chain.plan(rng, t)
    frames = list(unsharp_mask(clip) if chain.sharpen_gt else clip)

    def run(names: tuple[str, ...], frames: list[Tensor]) -> list[Tensor]:
        for name in names:
            frames = reference_apply(chain.stages[name], frames, plan.draws[name], plan.streams[name])
        return frames

    def final_resize(frames: list[Tensor]) -> list[Tensor]:
        size = (h // chain.scale, w // chain.scale)
        return run(("sinc",), [resize(f[None], size, plan.final_interpolation)[0] for f in frames])

    frames = run(STAGES[:9], frames)
    if plan.compression_first:
        frames = final_resize(run(("video2",), frames))
    else:
        frames = run(("video2",), final_resize(frames))
    return quantise(torch.stack(frames))
