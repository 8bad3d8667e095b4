"""Real-world degradations: RealBasicVSR's random blur, resize, noise, JPEG and video compression, each a
registered ``degradation`` stage, and the whole RealBasicVSR chain as one (``realbasicvsr``).

RealBasicVSR (Chan et al., CVPR 2022, arXiv 2111.12704) trains on GT degraded on the fly by a random
two-stage chain (Real-ESRGAN's "high-order" degradation, made temporal). The stages, ranges, probabilities and
order follow the code that trained the released weights (MMEditing 0.x ``random_degradations.py`` with the
``realbasicvsr_wogan_c64b20_2x30x8_lr1e-4_300k_reds`` configuration); the kernel builders are in
:mod:`vsr.data.kernels`. Everything random in a clip is drawn from the sample's generator: values that hold
for the whole clip (whether a stage fires, the kernel type and size, the resize mode and interpolation, the
noise type and whether it is gray, the codec and bitrate, the order of the final pair) once, then the
parameters that **drift** from frame to frame: each starts uniform in its range and the next frame's adds
U(-step, +step), clipped to the range (RealBasicVSR's "stochastic degradation", §2.4 of the notes).

The chain (:class:`RealBasicVSR`), on a clip ``(t, 3, H, W)`` in [0, 1]:

1. the GT is unsharp-masked (:func:`unsharp_mask`) when ``sharpen_gt`` (as RealBasicVSR, which degrades the
   sharpened GT);
2. first order: blur (σ ∈ [0.2, 3]), resize (up / down / keep 0.2 / 0.7 / 0.1, factor [1, 1.5] or [0.15, 1]),
   noise (Gaussian σ ∈ [1, 30]/255 or Poisson scale ∈ [0.05, 3]), JPEG (quality [30, 95]), video compression;
3. second order: blur with p 0.8 (σ ∈ [0.2, 1.5]), resize (0.3 / 0.4 / 0.3, [1, 1.2] or [0.3, 1]), noise (σ ∈
   [1, 25]/255, scale ∈ [0.05, 2.5]), JPEG;
4. in random order: video compression, and {resize to exactly ``(H/scale, W/scale)``, then a sinc blur with
   p 0.8};
5. rounded to 8 bits and clipped to [0, 1] (0.x's ``Quantize``).

Decisions where the reference code is inconsistent (the notes' §2.5), and other choices:

* **Poisson noise works on the [0, 1] scale** as BasicSR and MMEditing 0.x (which trained the weights), not
  MMagic 1.x's, whose noise is about 16× weaker.
* **β drifts like the other kernel parameters.** The reference hands the kernel builder a degenerate range
  [β, β], which then re-draws β between β and 1 on every frame; here β starts uniform in [0.5, 4]
  (generalized) or [1, 2] (plateau) and drifts by 0.05 or 0.1 per frame, as the configuration's steps say.
* **Resize drift stays in its mode's range.** The reference clips the drifting factor to the union [0.15, 1.5]
  of the ranges, so "keep" drifts away from 1 and "up" can end below 1; here up stays in [1, 1.5], down in
  [0.15, 1], and keep keeps the size. Sizes are rounded down to even (at least 2): yuv420p needs them.
* **Frames of a clip may change size with the resize drift**, as in the reference; video compression brings a
  clip to its first frame's size (bilinear) before encoding, which the reference's encoder did implicitly, and
  the final resize gives every frame the LR size.
* **Values are clipped to [0, 1] before every 8-bit cast**, and rounded, not truncated: the reference's
  video compression wraps bicubic or sinc overshoot around in uint8.
* **JPEG is encoded by Pillow from RGB.** OpenCV's ``imencode`` reads RGB arrays as BGR, so the reference
  computes luma with the red and blue weights swapped; Pillow (libjpeg's defaults: 4:2:0 chroma, the standard
  tables scaled by quality) gives the JPEG a camera writes.
* **The codec mix is written as it runs.** FFmpeg's encoder ``h264`` is libx264, so the reference's
  libx264 / h264 / mpeg4 at 1/3 each is H.264 2/3 and MPEG-4 Part 2 1/3: the chain draws
  ``{libx264: 2/3, mpeg4: 1/3}``. Encoding is single-threaded (deterministic, and cheap in a DataLoader worker).
* **Resizing is torch's** ``interpolate`` (bilinear, ``area`` or bicubic a = -0.75 like OpenCV), antialiased
  where it shrinks; OpenCV's bilinear and bicubic do not antialias, so a 0.15× resize here is a smoother,
  less aliased image than the reference's. Blur pads with reflect-101 borders (``cv2.filter2D``'s default).
* **Noise is clipped to [0, 1]** as BasicSR's ``add_*_noise`` do (0.x leaves it to the next stage's cast).

A stage on its own (``random_blur``, ``random_resize``, ``random_noise``, ``random_jpeg``,
``video_compression``) draws as in the chain and keeps the size, so it fits any chain of a data set mapping:
``random_resize`` resizes by its random factor and back, since a stage sees only its input and cannot resize to
the LR size at the end of a chain the way :class:`RealBasicVSR` does.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from typing import Any, ClassVar

import av
import numpy as np
import torch
import torch.nn.functional as F
from av.video.reformatter import VideoReformatter
from PIL import Image
from torch import Tensor

from vsr.data import kernels
from vsr.data.degradations import Degradation, Region
from vsr.errors import DataError
from vsr.registry import Allowed, integer, list_of, number, odd, optional, register

INTERPOLATIONS = ("bilinear", "area", "bicubic")
CODECS = ("libx264", "h264", "mpeg4")
#: RealBasicVSR's kernel types and their probabilities (Real-ESRGAN's table).
KERNEL_PROBS = {"iso": 0.405, "aniso": 0.225, "generalized_iso": 0.108, "generalized_aniso": 0.027,
                "plateau_iso": 0.108, "plateau_aniso": 0.027, "sinc": 0.1}  # fmt: skip
KERNEL_SIZES = (7, 9, 11, 13, 15, 17, 19, 21)
#: Per-frame drift steps of RealBasicVSR's configuration.
SIGMA_STEP, ROTATION_STEP, OMEGA_STEP = 0.02, 0.31416, 0.0628
BETA = {"generalized": ((0.5, 4.0), 0.05), "plateau": ((1.0, 2.0), 0.1)}  # range, step
GAUSSIAN_SIGMA_STEP, POISSON_SCALE_STEP, QUALITY_STEP = 0.1, 0.005, 3

PROBABILITY = Allowed(lambda v: number(minimum=0)(v) and v <= 1, "a number from 0 to 1")
RANGE = list_of(number(minimum=0), length=2)


def weights_of(names: tuple[str, ...], what: str) -> Allowed:
    """A mapping of some of ``names`` to non-negative weights, not all 0 (drawn with probability weight / sum)."""
    return Allowed(
        lambda v: isinstance(v, dict) and bool(v) and set(v) <= set(names)
        and all(number(minimum=0)(p) for p in v.values()) and sum(v.values()) > 0,
        f"a mapping of {what} ({', '.join(names)}) to weights",
    )  # fmt: skip


# --------------------------------------------------------------------------------------------------------
# Frame operations


def unsharp_mask(
    frames: Tensor, kernel_size: int = 51, sigma: float = 0.0, threshold: float = 10, weight: float = 0.5
) -> Tensor:
    """Unsharp masking of GT frames ``(..., c, h, w)`` in [0, 1], as RealBasicVSR sharpens its GT (BasicSR's
    ``usm_sharp``, MMEditing's ``UnsharpMasking``): ``residual = x - blur(x)``
    (:func:`~vsr.data.kernels.gaussian_blur`, 51 taps, σ 8); the pixels where ``|residual|`` exceeds
    ``threshold`` (0-255 units) form a mask, blurred alike into a soft mask; the output is
    ``soft · clip(x + weight · residual) + (1 - soft) · x``."""
    residual = frames - kernels.gaussian_blur(frames, kernel_size, sigma)
    soft = kernels.gaussian_blur(residual.abs().mul_(255).gt_(threshold), kernel_size, sigma)  # gt_: 0. or 1.
    sharp = residual.mul_(weight).add_(frames).clamp_(0, 1)  # the residual's buffer, reused
    return frames.lerp(sharp, soft)


def resize(frames: Tensor, size: tuple[int, int], mode: str) -> Tensor:
    """``(n, c, h, w)`` to ``size`` by torch's ``interpolate`` (``mode`` one of :data:`INTERPOLATIONS`),
    antialiased where it shrinks; the same size is returned as is."""
    if tuple(frames.shape[-2:]) == tuple(size):
        return frames
    if mode == "area":
        return F.interpolate(frames, size=size, mode="area")
    shrinking = size[0] < frames.shape[-2] or size[1] < frames.shape[-1]
    return F.interpolate(frames, size=size, mode=mode, align_corners=False, antialias=shrinking)


def quantise(frames: Tensor) -> Tensor:
    """Clip to [0, 1] and round to the 8-bit grid."""
    return frames.clamp(0, 1).mul(255).round().div(255)


def _to_uint8(frames: Tensor) -> np.ndarray:
    """``(..., c, h, w)`` in [0, 1] as a contiguous ``(..., h, w, c)`` uint8 array: clipped, then rounded."""
    return frames.clamp(0, 1).mul_(255).round_().to(torch.uint8).movedim(-3, -1).contiguous().numpy()


def _from_uint8(array: np.ndarray, like: Tensor) -> Tensor:
    """``(..., h, w, c)`` uint8 as contiguous ``(..., c, h, w)`` in [0, 1], of ``like``'s dtype."""
    return torch.from_numpy(array).movedim(-1, -3).to(like.dtype, memory_format=torch.contiguous_format).div_(255)


def _even(length: float) -> int:
    return max(2, int(length) // 2 * 2)


def _batched(frames: list[Tensor], each) -> list[Tensor]:
    """``each(batch (n, c, h, w), indices)`` on the frames grouped by size, back in frame order."""
    groups: dict[tuple[int, ...], list[int]] = {}
    for i, frame in enumerate(frames):
        groups.setdefault(tuple(frame.shape), []).append(i)
    out: list[Tensor] = [frames[0]] * len(frames)
    for indices in groups.values():
        for i, frame in zip(indices, each(torch.stack([frames[i] for i in indices]), indices), strict=True):
            out[i] = frame
    return out


def drift(rng: np.random.Generator, low, high, step, frames: int) -> np.ndarray:
    """``(frames, k)`` values of ``k`` drifting parameters: each starts uniform in ``[low, high]``; each next
    frame adds U(-step, step), clipped to the range. All starts are drawn first, then one step per parameter
    per frame, in frame order."""
    low, high, step = (np.asarray(v, dtype=np.float64) for v in (low, high, step))
    value = rng.uniform(low, high)
    steps = rng.uniform(-step, step, size=(max(frames - 1, 0), low.size))  # the same draws as frame by frame
    out = np.empty((frames, low.size))
    for i in range(frames):
        out[i] = value
        if i + 1 < frames:
            value = np.clip(value + steps[i], low, high)
    return out


def _check_range(name: str, values) -> tuple[float, float]:
    low, high = (float(v) for v in values)
    if low > high:
        raise ValueError(f"{name} must be [low, high] with low <= high, got {list(values)}")
    return low, high


# --------------------------------------------------------------------------------------------------------
# The stages


class RandomStage(Degradation):
    """A random stage of the chain: :meth:`draw` takes its values for a clip of ``t`` frames from one stream,
    :meth:`apply` degrades a list of ``(c, h, w)`` frames (sizes may differ) with them, drawing any per-pixel
    realisation from a second stream, frame by frame. On its own it is a degradation of ``(t, c, h, w)``."""

    radius: int | None = None

    def draw(self, rng: np.random.Generator, frames: int) -> Any:
        raise NotImplementedError

    def apply(self, frames: list[Tensor], draw: Any, rng: np.random.Generator) -> list[Tensor]:
        raise NotImplementedError

    def __call__(self, clip: Tensor, rng: np.random.Generator, region: Region | None = None) -> Tensor:
        values, realisation = rng.spawn(2)
        return torch.stack(self.apply(list(clip), self.draw(values, len(clip)), realisation))


@dataclass(frozen=True)
class BlurDraw:
    fires: bool
    kind: str
    size: int
    params: np.ndarray  # (t, 5): sigma_x, sigma_y, theta, beta, omega per frame


@register("degradation", "random_blur")
class RandomBlur(RandomStage):
    """Blur by a random kernel (:mod:`vsr.data.kernels`), with probability ``prob`` per clip: its type drawn
    from ``kinds`` (weights; default RealBasicVSR's :data:`KERNEL_PROBS`) and its size from ``sizes`` once per
    clip; σx, σy ∈ ``sigma``, rotation ∈ [-π, π], β (generalized [0.5, 4], plateau [1, 2]) and the sinc cutoff
    ω (``omega``; default [π/3, π] below 13 taps, else [π/5, π]) drift per frame. Reaches half the largest
    kernel."""

    allowed_arguments: ClassVar[dict[str, Allowed]] = {
        "prob": PROBABILITY,
        "sigma": RANGE,
        "kinds": optional(weights_of(kernels.KINDS, "kernel types")),
        "sizes": list_of(odd(3)),
        "omega": Allowed(lambda v: v is None or RANGE(v), "null or [low, high] in radians"),
    }

    def __init__(self, prob: float = 1.0, sigma: list = (0.2, 3.0), kinds: dict | None = None,
                 sizes: list = KERNEL_SIZES, omega: list | None = None):  # fmt: skip
        self.prob, self.sigma = prob, _check_range("sigma", sigma)
        table = dict(KERNEL_PROBS if kinds is None else kinds)
        self.kinds, weights = list(table), np.array(list(table.values()), dtype=np.float64)
        self.probs = weights / weights.sum()
        self.sizes, self.omega = [int(s) for s in sizes], None if omega is None else _check_range("omega", omega)
        self.radius = max(self.sizes) // 2

    def draw(self, rng: np.random.Generator, frames: int) -> BlurDraw:
        fires = bool(rng.random() < self.prob)
        kind = self.kinds[rng.choice(len(self.kinds), p=self.probs)]
        size = int(rng.choice(self.sizes))
        omega = self.omega or ((math.pi / 3, math.pi) if size < 13 else (math.pi / 5, math.pi))
        (beta, beta_step) = BETA.get(kind.split("_")[0], ((1.0, 1.0), 0.0))
        low = (self.sigma[0], self.sigma[0], -math.pi, beta[0], omega[0])
        high = (self.sigma[1], self.sigma[1], math.pi, beta[1], omega[1])
        step = (SIGMA_STEP, SIGMA_STEP, ROTATION_STEP, beta_step, OMEGA_STEP)
        return BlurDraw(fires, kind, size, drift(rng, low, high, step, frames))

    def apply(self, frames: list[Tensor], draw: BlurDraw, rng: np.random.Generator) -> list[Tensor]:
        if not draw.fires:
            return frames
        taps = torch.from_numpy(np.stack([kernels.kernel(draw.kind, draw.size, *p) for p in draw.params]))
        return _batched(frames, lambda batch, idx: kernels.filter2d(batch, taps[idx]))


@dataclass(frozen=True)
class ResizeDraw:
    mode: str  # up, down or keep
    interpolation: str
    factors: np.ndarray  # (t,)


@register("degradation", "random_resize")
class RandomResize(RandomStage):
    """Resize by a random factor: up, down or keep with probabilities ``mode_probs`` and one of
    :data:`INTERPOLATIONS` (1/3 each) per clip; the factor, in [1, ``factors[1]``] up or [``factors[0]``, 1] down,
    drifts by ``step`` per frame; sizes round down to even. In :class:`RealBasicVSR` the new size carries on
    to the next stages; as a stage of its own it resizes back to the input size with the same interpolation
    (the information a resize loses, at the size a chain expects)."""

    allowed_arguments: ClassVar[dict[str, Allowed]] = {
        "mode_probs": list_of(number(minimum=0), length=3),
        "factors": list_of(number(above=0), length=2),
        "step": number(minimum=0),
    }

    def __init__(self, mode_probs: list = (0.2, 0.7, 0.1), factors: list = (0.15, 1.5), step: float = 0.015):
        weights = np.array(mode_probs, dtype=np.float64)
        if not weights.sum() > 0:
            raise ValueError(f"mode_probs must not all be 0, got {list(mode_probs)}")
        self.mode_probs, self.step = weights / weights.sum(), float(step)
        self.factors = _check_range("factors", factors)
        if not self.factors[0] <= 1 <= self.factors[1]:
            raise ValueError(f"factors must be [down, up] around 1, got {list(factors)}")

    def draw(self, rng: np.random.Generator, frames: int) -> ResizeDraw:
        mode = ("up", "down", "keep")[rng.choice(3, p=self.mode_probs)]
        interpolation = INTERPOLATIONS[rng.integers(len(INTERPOLATIONS))]
        low, high = {"up": (1.0, self.factors[1]), "down": (self.factors[0], 1.0), "keep": (1.0, 1.0)}[mode]
        step = 0.0 if mode == "keep" else self.step
        return ResizeDraw(mode, interpolation, drift(rng, [low], [high], [step], frames)[:, 0])

    def apply(self, frames: list[Tensor], draw: ResizeDraw, rng: np.random.Generator) -> list[Tensor]:
        out = []
        for frame, f in zip(frames, draw.factors, strict=True):
            size = (_even(frame.shape[-2] * f), _even(frame.shape[-1] * f)) if f != 1 else tuple(frame.shape[-2:])
            out.append(resize(frame[None], size, draw.interpolation)[0])
        return out

    def __call__(self, clip: Tensor, rng: np.random.Generator, region: Region | None = None) -> Tensor:
        values, _ = rng.spawn(2)
        draw = self.draw(values, len(clip))
        resized = self.apply(list(clip), draw, values)
        return torch.stack([resize(f[None], tuple(clip.shape[-2:]), draw.interpolation)[0] for f in resized])


@dataclass(frozen=True)
class NoiseDraw:
    gaussian: bool  # else Poisson
    gray: bool
    levels: np.ndarray  # (t,): Gaussian σ on the 0-1 scale, or the Poisson scale


def _gray(frame: Tensor) -> Tensor:
    """ITU-R BT.601 luma of an RGB ``(3, h, w)`` frame, ``(1, h, w)`` (``cv2.COLOR_RGB2GRAY``)."""
    weights = frame.new_tensor([0.299, 0.587, 0.114]).view(3, 1, 1)
    return (frame * weights).sum(0, keepdim=True) if frame.shape[0] == 3 else frame


def poisson_noise(frame: Tensor, scale: float, rng: np.random.Generator, gray: bool = False) -> Tensor:
    """Shot noise of a ``(c, h, w)`` frame on the [0, 1] scale (BasicSR ``generate_poisson_noise``, MMEditing
    0.x): the frame (or its luma) rounded to 8 bits, ``x``, with ``v`` its number of distinct values rounded up
    to a power of two; the noise is ``scale · (Poisson(v·x) / v - x)``, of variance ``scale² · x / v``."""
    source = _gray(frame) if gray else frame
    levels = source.clamp(0, 1).mul(255).round().to(torch.uint8).numpy()
    distinct = np.count_nonzero(np.bincount(levels.ravel(), minlength=256))
    values = 2.0 ** math.ceil(math.log2(distinct))
    x = levels.astype(np.float64) / 255
    noise = (rng.poisson(x * values) / values - x) * scale
    return torch.from_numpy(noise).to(frame.dtype)


@register("degradation", "random_noise")
class RandomNoise(RandomStage):
    """Additive noise, clipped to [0, 1]: Gaussian with probability ``gaussian_prob`` per clip, of std
    ``sigma`` (0-255 units) drifting by 0.1 per frame, else Poisson (:func:`poisson_noise`) of ``poisson_scale``
    drifting by 0.005; gray (one channel, added to all three) with probability ``gray_prob``. The realisation
    is drawn afresh for every frame."""

    allowed_arguments: ClassVar[dict[str, Allowed]] = {
        "gaussian_prob": PROBABILITY,
        "sigma": RANGE,
        "poisson_scale": RANGE,
        "gray_prob": PROBABILITY,
    }

    def __init__(self, gaussian_prob: float = 0.5, sigma: list = (1.0, 30.0), poisson_scale: list = (0.05, 3.0),
                 gray_prob: float = 0.4):  # fmt: skip
        self.gaussian_prob, self.gray_prob = gaussian_prob, gray_prob
        self.sigma, self.poisson_scale = _check_range("sigma", sigma), _check_range("poisson_scale", poisson_scale)

    def draw(self, rng: np.random.Generator, frames: int) -> NoiseDraw:
        gaussian, gray = bool(rng.random() < self.gaussian_prob), bool(rng.random() < self.gray_prob)
        if gaussian:
            low, high, step = self.sigma[0] / 255, self.sigma[1] / 255, GAUSSIAN_SIGMA_STEP / 255
        else:
            (low, high), step = self.poisson_scale, POISSON_SCALE_STEP
        return NoiseDraw(gaussian, gray, drift(rng, [low], [high], [step], frames)[:, 0])

    def apply(self, frames: list[Tensor], draw: NoiseDraw, rng: np.random.Generator) -> list[Tensor]:
        # Frame by frame: the draws take most of the time, and a whole clip's float64 intermediates, out of the
        # cache, made it no faster.
        out = []
        for frame, level in zip(frames, draw.levels, strict=True):
            if draw.gaussian:
                shape = (1 if draw.gray else frame.shape[0], *frame.shape[1:])
                noise = torch.from_numpy(rng.standard_normal(shape, dtype=np.float32)).to(frame.dtype) * level
            else:
                noise = poisson_noise(frame, float(level), rng, draw.gray)
            out.append((frame + noise).clamp(0, 1))
        return out


def jpeg(frame: Tensor, quality: int) -> Tensor:
    """A ``(c, h, w)`` frame in [0, 1] through a JPEG of ``quality`` (Pillow, RGB, libjpeg's defaults):
    clipped and rounded to 8 bits, encoded, decoded."""
    array = _to_uint8(frame)
    buffer = io.BytesIO()
    Image.fromarray(array[..., 0] if array.shape[-1] == 1 else array).save(buffer, format="JPEG", quality=int(quality))
    with Image.open(buffer) as image:
        decoded = np.array(image)  # writable, as torch.from_numpy wants
    return _from_uint8(decoded[..., None] if decoded.ndim == 2 else decoded, frame)


@register("degradation", "random_jpeg")
class RandomJPEG(RandomStage):
    """JPEG compression (:func:`jpeg`) at a quality drawn from ``quality`` (rounded), drifting by up to 3 per
    frame (rounded again, as the reference)."""

    allowed_arguments: ClassVar[dict[str, Allowed]] = {"quality": list_of(integer(1, 100), length=2)}

    def __init__(self, quality: list = (30, 95)):
        self.quality = _check_range("quality", quality)

    def draw(self, rng: np.random.Generator, frames: int) -> np.ndarray:
        low, high = self.quality
        qualities = [round(rng.uniform(low, high))]
        for step in rng.uniform(-QUALITY_STEP, QUALITY_STEP, size=max(frames - 1, 0)):
            qualities.append(round(float(np.clip(qualities[-1] + step, low, high))))
        return np.array(qualities)

    def apply(self, frames: list[Tensor], draw: np.ndarray, rng: np.random.Generator) -> list[Tensor]:
        return [jpeg(frame, int(q)) for frame, q in zip(frames, draw, strict=True)]


#: Encoder options: one thread; and x264 without its macroblock-tree rate control, which made two encodings
#: of one clip differ (libx264 of PyAV 18, seen on a 132x132 clip at 58.6 kbit/s, even with one thread).
ENCODER_OPTIONS = {codec: {"threads": "1", "x264-params": "mbtree=0"} for codec in ("libx264", "h264")}


def compress_video(clip: Tensor, codec: str, bitrate: int) -> tuple[Tensor, int]:
    """A clip ``(t, 3, h, w)`` in [0, 1] through a video codec, the whole clip in one pass in memory (so the
    artefacts are temporal): clipped and rounded to 8 bits, encoded with PyAV into MP4 at 1 frame per second
    (``bitrate`` is then bits per frame), yuv420p, the encoder choosing frame types, one thread; decoded
    back, on one thread too. Odd sizes are padded by repeating the edge (yuv420p needs even ones). Returns the
    decoded clip and the encoded stream's size in bytes."""
    t, _, h, w = clip.shape
    padded = F.pad(clip, (0, w % 2, 0, h % 2), mode="replicate") if h % 2 or w % 2 else clip
    arrays = _to_uint8(padded)
    buffer, payload = io.BytesIO(), 0
    with av.open(buffer, "w", format="mp4") as container:
        stream = container.add_stream(codec, rate=1, options=ENCODER_OPTIONS.get(codec, {"threads": "1"}))
        stream.width, stream.height = padded.shape[-1], padded.shape[-2]
        stream.pix_fmt, stream.bit_rate = "yuv420p", int(bitrate)
        frames = [av.VideoFrame.from_ndarray(array, format="rgb24") for array in arrays]
        for packet in (p for frame in [*frames, None] for p in stream.encode(frame)):
            payload += packet.size
            container.mux(packet)
    buffer.seek(0)
    decoded, count = np.empty_like(arrays), 0
    # PyAV's defaults start a pool of decoding threads per clip and a threaded colour converter per frame,
    # which cost more than these small frames do (the pixels are the same).
    to_rgb = VideoReformatter()
    with av.open(buffer, "r", format="mp4") as container:
        stream = container.streams.video[0]
        stream.codec_context.thread_count = 1
        for frame in container.decode(stream):
            if count < t:
                decoded[count] = to_rgb.reformat(frame, format="rgb24", threads=1).to_ndarray()
            count += 1
    if count != t:
        raise DataError(f"video compression ({codec}) gave {count} frames for {t}; use another codec")
    return _from_uint8(decoded, clip)[..., :h, :w].contiguous(), payload


@dataclass(frozen=True)
class VideoDraw:
    codec: str
    bitrate: int


@register("degradation", "video_compression")
class VideoCompression(RandomStage):
    """Video compression of the whole clip (:func:`compress_video`): the codec drawn from ``codecs`` (weights)
    and the bitrate an integer uniform in ``bitrate`` (bits per second = per frame), once per clip. Frames of
    different sizes are first brought to the first frame's (bilinear)."""

    allowed_arguments: ClassVar[dict[str, Allowed]] = {
        "codecs": optional(weights_of(CODECS, "codecs")),
        "bitrate": list_of(integer(1), length=2),
    }

    def __init__(self, codecs: dict | None = None, bitrate: list = (10_000, 100_000)):
        table = {"libx264": 2 / 3, "mpeg4": 1 / 3} if codecs is None else dict(codecs)
        self.codecs, weights = list(table), np.array(list(table.values()), dtype=np.float64)
        self.probs = weights / weights.sum()
        self.bitrate = tuple(int(b) for b in _check_range("bitrate", bitrate))

    def draw(self, rng: np.random.Generator, frames: int) -> VideoDraw:
        codec = self.codecs[rng.choice(len(self.codecs), p=self.probs)]
        return VideoDraw(codec, int(rng.integers(self.bitrate[0], self.bitrate[1] + 1)))

    def apply(self, frames: list[Tensor], draw: VideoDraw, rng: np.random.Generator) -> list[Tensor]:
        size = tuple(frames[0].shape[-2:])
        clip = torch.stack([resize(frame[None], size, "bilinear")[0] for frame in frames])
        return list(compress_video(clip, draw.codec, draw.bitrate)[0])


# --------------------------------------------------------------------------------------------------------
# The RealBasicVSR chain

#: The chain's stages in the order they apply (the final pair, ``video2`` and {final resize, ``sinc``},
#: in a random order), each drawing from its own stream so that one stage's draws never move another's.
STAGES = ("blur1", "resize1", "noise1", "jpeg1", "video1", "blur2", "resize2", "noise2", "jpeg2", "video2", "sinc")


@dataclass
class Plan:
    """Everything :class:`RealBasicVSR` draws for one clip: each stage's draw (``draws[name]``) and
    realisation stream, whether video compression comes before the final resize and sinc, and the final
    resize's interpolation."""

    draws: dict[str, Any]
    streams: dict[str, np.random.Generator]
    compression_first: bool
    final_interpolation: str


@register("degradation", "realbasicvsr")
class RealBasicVSR(Degradation):
    """RealBasicVSR's training degradation (see the module docstring): GT clip ``(t, 3, H, W)`` in [0, 1],
    unsharp-masked first when ``sharpen_gt``, to the LQ clip ``(t, 3, H/scale, W/scale)`` on the 8-bit grid.
    Kernel type, resize mode, noise type, codec and the like are drawn once per clip; blur, noise, resize and
    JPEG parameters drift from frame to frame; video compression sees the whole clip (``radius`` None).

    The GT the losses compare against is not changed: RealBasicVSR's pixel loss uses the sharpened GT
    (:func:`unsharp_mask`), which is the objective's business."""

    radius = None

    def __init__(self, scale: int, sharpen_gt: bool = True):
        self.scale, self.sharpen_gt = scale, sharpen_gt
        self.stages: dict[str, RandomStage] = {
            "blur1": RandomBlur(sigma=(0.2, 3.0)),
            "resize1": RandomResize(mode_probs=(0.2, 0.7, 0.1), factors=(0.15, 1.5), step=0.015),
            "noise1": RandomNoise(sigma=(1.0, 30.0), poisson_scale=(0.05, 3.0)),
            "jpeg1": RandomJPEG((30, 95)),
            "video1": VideoCompression(),
            "blur2": RandomBlur(prob=0.8, sigma=(0.2, 1.5)),
            "resize2": RandomResize(mode_probs=(0.3, 0.4, 0.3), factors=(0.3, 1.2), step=0.03),
            "noise2": RandomNoise(sigma=(1.0, 25.0), poisson_scale=(0.05, 2.5)),
            "jpeg2": RandomJPEG((30, 95)),
            "video2": VideoCompression(),
            "sinc": RandomBlur(prob=0.8, kinds={"sinc": 1.0}, omega=(math.pi / 3, math.pi)),
        }

    def plan(self, rng: np.random.Generator, frames: int) -> Plan:
        """The clip's draws: the chain's own (order, final interpolation) from the first stream, then each
        stage's from its own."""
        own, *streams = rng.spawn(1 + len(STAGES))
        compression_first = bool(own.random() < 0.5)
        interpolation = INTERPOLATIONS[own.integers(len(INTERPOLATIONS))]
        draws, realisations = {}, {}
        for name, stream in zip(STAGES, streams, strict=True):
            values, realisations[name] = stream.spawn(2)
            draws[name] = self.stages[name].draw(values, frames)
        return Plan(draws, realisations, compression_first, interpolation)

    def __call__(self, clip: Tensor, rng: np.random.Generator, region: Region | None = None) -> Tensor:
        t, _, h, w = clip.shape
        if h % self.scale or w % self.scale:
            raise DataError(f"realbasicvsr: GT frames of {w}x{h} are not divisible by the scale {self.scale}")
        plan = self.plan(rng, t)
        frames = list(unsharp_mask(clip) if self.sharpen_gt else clip)

        def run(names: tuple[str, ...], frames: list[Tensor]) -> list[Tensor]:
            for name in names:
                frames = self.stages[name].apply(frames, plan.draws[name], plan.streams[name])
            return frames

        def final_resize(frames: list[Tensor]) -> list[Tensor]:
            size = (h // self.scale, w // self.scale)
            return run(("sinc",), [resize(f[None], size, plan.final_interpolation)[0] for f in frames])

        frames = run(STAGES[:9], frames)
        if plan.compression_first:
            frames = final_resize(run(("video2",), frames))
        else:
            frames = run(("video2",), final_resize(frames))
        return quantise(torch.stack(frames))
