"""Rendered video scenes with true flow: the clips of the embedded data set (:mod:`vsr.data.synth`).

Each clip looks at one photograph bundled with scikit-image through a virtual camera that translates, zooms
and rotates along a smooth random trajectory (largest steps drawn log-uniformly from 0.2 to 4 LR pixels per
frame: most clips move by sub-pixel steps, where other frames hold detail the current one lacks, some by
several pixels, where alignment matters, BasicVSR §3.1), while 1–3 foreground layers (patches of other
photographs under a hard or feathered elliptical/polygonal mask) move with their own translation, rotation and
scale, so that local motion and occlusion exist. Frames are rendered by inverse warping with bicubic sampling
at 2× and area averaging to the GT size (anti-aliased), from a part of the photograph that always contains
the whole view.

Because the scene is known, so is the optical flow, exactly: for a pixel ``p`` of frame ``i`` the visible
surface (the topmost layer covering at least half of the pixel, else the background) maps ``p`` to the
same scene point in frame ``i + 1``. Flows follow :mod:`vsr.components.flow`: ``(2, h, w)`` in GT pixels,
channel 0 horizontal (x), channel 1 vertical (y), "flow from A to B" (``flow_warp(B, flow)`` aligns B to A).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
import skimage.data
import torch
import torch.nn.functional as F
from PIL import Image

from vsr.data.flow_files import dense_flow
from vsr.errors import DataError

# Natural photographs shipped inside the scikit-image wheel (loaded from the package folder, never
# downloaded): name -> (file, crop (top, bottom, left, right) or None, integer downscale). Grey ones are
# replicated to RGB. Left out: synthetic images (colour wheel, logo, phantom, chessboards), the motion-blurred
# clock, and motorcycle_right (the stereo twin of motorcycle_left, which would leak across the split).
PHOTOS: dict[str, tuple[str, tuple[int, int, int, int] | None, int]] = {
    "astronaut": ("astronaut.png", None, 1),
    "chelsea": ("chelsea.png", None, 1),
    "coffee": ("coffee.png", None, 1),
    "rocket": ("rocket.jpg", None, 1),
    "hubble_deep_field": ("hubble_deep_field.jpg", None, 1),
    # The fundus disc fills the square: keep the inscribed square, halved (the full resolution is soft).
    "retina": ("retina.jpg", (224, 1184, 224, 1184), 2),
    "motorcycle_left": ("motorcycle_left.png", None, 1),
    "ihc": ("ihc.png", None, 1),
    "camera": ("camera.png", None, 1),
    "coins": ("coins.png", None, 1),
    "page": ("page.png", None, 1),
    "moon": ("moon.png", None, 1),
    "brick": ("brick.png", None, 1),
    "grass": ("grass.png", None, 1),
    "gravel": ("gravel.png", None, 1),
}
# Held out for validation: an object with sharp edges and fine structure, an animal with fur texture, and a

# Largest per-frame step of a clip's camera and of each foreground layer, in LR pixels, drawn log-uniformly:
# most clips move by sub-pixel to one-pixel steps (where other frames add sub-pixel detail), some by several
# pixels per frame (where alignment must work hard).
CAMERA_SPEED = (0.2, 4.0)
LAYER_SPEED = (0.3, 5.0)

_SUPERSAMPLE = 2  # render at 2x and area-average: anti-aliasing of the bicubic inverse warp
_MARGIN = 3.0  # source pixels kept free around the view (bicubic support, supersampling offsets)


# ----------------------------------------------------------------------------------------------- photos
def _photo_folder() -> Path:
    return Path(skimage.data.__file__).parent


def available_photos() -> tuple[str, ...]:
    """Names of the :data:`PHOTOS` that this scikit-image installation bundles (checked offline)."""
    return tuple(name for name in PHOTOS if _load_photo(name) is not None)


@cache
def _load_photo(name: str) -> torch.Tensor | None:
    """The photograph as a float32 tensor ``(3, H, W)`` in [0, 1], or None if it is not bundled."""
    filename, crop, downscale = PHOTOS[name]
    try:
        with Image.open(_photo_folder() / filename) as image:
            array = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
    except OSError:
        return None
    if crop is not None:
        top, bottom, left, right = crop
        array = array[top:bottom, left:right]
    photo = torch.from_numpy(np.ascontiguousarray(array)).permute(2, 0, 1)
    if downscale > 1:
        photo = F.avg_pool2d(photo[None], downscale)[0]
    return photo.contiguous()


# ------------------------------------------------------------------------------------------------ motion
def _log_uniform(rng: np.random.Generator, low: float, high: float) -> float:
    return math.exp(rng.uniform(math.log(low), math.log(high)))


def _rotation(angle: np.ndarray) -> np.ndarray:
    """Rotation matrices ``(..., 2, 2)`` for angles in radians."""
    c, s = np.cos(angle), np.sin(angle)
    return np.stack([np.stack([c, -s], -1), np.stack([s, c], -1)], -2)


def _smooth_path(rng: np.random.Generator, frames: int, dims: int, max_step: float) -> np.ndarray:
    """A smooth random trajectory ``(frames, dims)`` whose largest per-frame step has norm ``max_step``.

    A constant drift plus three sinusoids with periods of 10–60 frames: smooth like a hand-held or panning
    camera, never jerky, for any clip length.
    """
    t = np.arange(frames, dtype=np.float64)[:, None]
    path = t * rng.normal(size=dims)
    for _ in range(3):
        period = rng.uniform(10.0, 60.0)
        amplitude = rng.normal(size=dims) * period / (2 * math.pi)  # velocity amplitude ~1 per frame
        path = path + amplitude * np.sin(2 * math.pi * t / period + rng.uniform(0, 2 * math.pi))
    steps = np.linalg.norm(np.diff(path, axis=0), axis=1)
    return (path - path[0]) * (max_step / max(steps.max(), 1e-12))


@dataclass
class _Motion:
    """Per-frame similarity maps from frame pixel coordinates ``p`` to object coordinates ``A[t] @ p + d[t]``.

    Object coordinates are source-photo pixels (background, texture of a layer). Pixel coordinates are
    ``(x, y)`` with pixel centres at integers, as in :func:`vsr.components.flow.flow_warp`.
    """

    A: np.ndarray  # (t, 2, 2)
    d: np.ndarray  # (t, 2)

    def to_object(self, points: np.ndarray, t: int | slice = slice(None)) -> np.ndarray:
        """``points`` ``(..., 2)`` -> object coordinates ``(frames, ..., 2)`` (or ``(..., 2)`` for one t)."""
        A, d = self.A[t], self.d[t]
        if A.ndim == 3:  # one map per frame: a leading frame dim, broadcast over the points' dims
            ones = (1,) * (points.ndim - 1)
            A, d = A.reshape(len(A), *ones, 2, 2), d.reshape(len(d), *ones, 2)
        # Written out: numpy's einsum/matmul over a 2-long inner dim is several times slower on large grids.
        x, y = points[..., 0], points[..., 1]
        obj_x = A[..., 0, 0] * x + A[..., 0, 1] * y + d[..., 0]
        obj_y = A[..., 1, 0] * x + A[..., 1, 1] * y + d[..., 1]
        return np.stack([obj_x, obj_y], -1)


def _camera(
    rng: np.random.Generator, photo_hw: tuple[int, int], size: tuple[int, int], frames: int, scale: int
) -> _Motion:
    """The background motion: ``src = c_t + s_t R(theta_t) (p - frame centre)``, always inside the photo."""
    (H, W), (h, w) = photo_hw, size
    zoom = np.exp(_smooth_path(rng, frames, 1, rng.uniform(0.0, 0.008))[:, 0])
    theta = np.deg2rad(rng.uniform(-8.0, 8.0)) + _smooth_path(rng, frames, 1, np.deg2rad(rng.uniform(0, 0.3)))[:, 0]
    # Half-extents of the rotated, zoomed view per unit of base scale (source pixels per GT pixel).
    cos, sin = np.abs(np.cos(theta)), np.abs(np.sin(theta))
    half_x = zoom * (cos * (w - 1) / 2 + sin * (h - 1) / 2)
    half_y = zoom * (sin * (w - 1) / 2 + cos * (h - 1) / 2)
    # Base scale >= 1 keeps the GT at least as sharp as the photo; cap it so a quarter of the photo is left
    # for travel.
    cap = min(0.75 * (W - 1 - 2 * _MARGIN) / (2 * half_x.max()), 0.75 * (H - 1 - 2 * _MARGIN) / (2 * half_y.max()))
    if cap < 0.5:
        raise DataError(f"synthetic data: a {H}x{W} photograph is too small for frames of {h}x{w}; use a smaller size")
    base = min(math.exp(rng.uniform(0.0, math.log(1.7))), cap)
    s = base * zoom

    speed = _log_uniform(rng, *CAMERA_SPEED) * scale * base  # source pixels per frame
    path = _smooth_path(rng, frames, 2, speed)
    lo = np.array([base * half_x.max(), base * half_y.max()]) + _MARGIN
    room = np.array([W - 1, H - 1]) - 2 * lo
    extent = np.ptp(path, axis=0)
    path = path * min(1.0, *(room / np.maximum(extent, 1e-12)))  # slow down rather than leave the photo
    extent = np.ptp(path, axis=0)
    centre = lo - path.min(axis=0) + rng.uniform(0, 1, size=2) * (room - extent) + path

    A = s[:, None, None] * _rotation(theta)
    frame_centre = np.array([(w - 1) / 2, (h - 1) / 2])
    return _Motion(A, centre - A @ frame_centre)


@dataclass
class _Shape:
    """A layer's mask in layer coordinates ``q`` (GT pixels): an ellipse or a star-shaped polygon."""

    radius: float
    axes: tuple[float, float] | None = None  # ellipse semi-axes
    vertices: np.ndarray | None = None  # (n, 2) polygon, counter-clockwise by angle
    feather: float = 0.0  # soft edge width in pixels; 0: hard edge

    @staticmethod
    def random(rng: np.random.Generator, radius: float) -> _Shape:
        feather = 0.0 if rng.random() < 0.5 else rng.uniform(1.0, 4.0)
        if rng.random() < 0.5:
            return _Shape(radius, axes=(radius, radius * rng.uniform(0.5, 1.0)), feather=feather)
        n = int(rng.integers(5, 9))
        angles = np.sort(rng.uniform(-math.pi, math.pi, size=n))
        radii = radius * rng.uniform(0.6, 1.0, size=n)
        return _Shape(radius, vertices=np.stack([radii * np.cos(angles), radii * np.sin(angles)], 1), feather=feather)

    def signed_distance(self, q: np.ndarray) -> np.ndarray:
        """Approximate signed distance ``(...)`` to the outline (negative inside) of points ``q`` ``(..., 2)``."""
        x, y = q[..., 0], q[..., 1]
        if self.axes is not None:
            a, b = self.axes
            r = np.sqrt((x / a) ** 2 + (y / b) ** 2)
            grad = np.sqrt((x / a**2) ** 2 + (y / b**2) ** 2) / np.maximum(r, 1e-9)
            return (r - 1.0) / np.maximum(grad, 1e-9)
        # Star-shaped about the origin: inside iff on the inner side of the edge of the point's angular sector.
        v = self.vertices
        angles = np.arctan2(v[:, 1], v[:, 0])
        j = (np.searchsorted(angles, np.arctan2(y, x), side="right") - 1) % len(v)
        start, edge = v[j], v[(j + 1) % len(v)] - v[j]
        cross = edge[..., 0] * (y - start[..., 1]) - edge[..., 1] * (x - start[..., 0])
        return -cross / np.linalg.norm(edge, axis=-1)

    def alpha(self, q: np.ndarray) -> np.ndarray:
        sd = self.signed_distance(q)
        if self.feather == 0.0:
            return (sd <= 0).astype(np.float32)
        return np.clip(0.5 - sd / self.feather, 0.0, 1.0).astype(np.float32)


@dataclass
class _Layer:
    """A foreground patch: texture coordinates ``u = o + k (q)``, with ``q`` the shape's coordinates."""

    photo: str
    shape: _Shape
    motion: _Motion  # frame -> texture coordinates
    origin: np.ndarray  # texture coordinates of q = 0
    texture_scale: float  # texture pixels per layer unit

    def alpha(self, points: np.ndarray) -> np.ndarray:
        """Coverage ``(frames, ...)`` of frame points ``(..., 2)``."""
        return self.shape.alpha((self.motion.to_object(points) - self.origin) / self.texture_scale)


def _layer(rng: np.random.Generator, photo: str, size: tuple[int, int], frames: int, scale: int) -> _Layer:
    """A random layer: ``u = o + (k / sigma_t) R(-phi_t) (p - m_t)`` with its own smooth trajectory."""
    h, w = size
    texture = _load_photo(photo)
    H, W = texture.shape[-2:]
    shape = _Shape.random(rng, radius=rng.uniform(0.12, 0.3) * min(h, w))
    reach = shape.radius + shape.feather + 1.0  # layer units beyond which the mask is empty
    k = min(math.exp(rng.uniform(0.0, math.log(1.6))), (min(H, W) - 1 - 2 * _MARGIN) / (2 * reach))
    # The most textured of four candidate patches: flat patches (sky, paper) teach little.
    r = k * reach
    candidates = np.stack([rng.uniform(r, W - 1 - r, size=4), rng.uniform(r, H - 1 - r, size=4)], 1)
    spread = [texture[:, int(y - r) : int(y + r) + 1, int(x - r) : int(x + r) + 1].std().item() for x, y in candidates]
    origin = candidates[int(np.argmax(spread))]

    path = _smooth_path(rng, frames, 2, _log_uniform(rng, *LAYER_SPEED) * scale)
    lo, hi = np.array([0.1 * w, 0.1 * h]) - path.min(0), np.array([0.9 * w, 0.9 * h]) - path.max(0)
    start = np.where(hi >= lo, lo + rng.uniform(0, 1, size=2) * np.maximum(hi - lo, 0), (lo + hi) / 2)
    position = start + path  # stays in the central 80% of the frame when the path allows it
    phi = rng.uniform(-math.pi, math.pi) + _smooth_path(rng, frames, 1, np.deg2rad(rng.uniform(0, 2)))[:, 0]
    sigma = np.exp(_smooth_path(rng, frames, 1, rng.uniform(0.0, 0.01))[:, 0])

    A = (k / sigma)[:, None, None] * _rotation(-phi)
    d = origin - np.einsum("tij,tj->ti", A, position)
    return _Layer(photo, shape, _Motion(A, d), origin, k)


# --------------------------------------------------------------------------------------------- rendering
@dataclass
class RenderedClip:
    """A rendered clip: its GT frames and, exactly, its motion.

    ``surface[i]`` names the surface visible at each GT pixel of frame i (0: the background, k: the k-th
    layer, the topmost covering at least half of the pixel); ``A[i, k] p + d[i, k]`` maps a frame-i pixel
    ``p`` on surface k to its object coordinates. The true flow between any two frames follows.
    """

    frames: np.ndarray  # (t, h, w, 3) uint8
    surface: np.ndarray  # (t, h, w) uint8
    A: np.ndarray  # (t, surfaces, 2, 2)
    d: np.ndarray  # (t, surfaces, 2)

    def affine_flow(self, src: int, dst: int) -> np.ndarray:
        """Each surface's flow from frame ``src`` to ``dst`` as ``[M | b]`` ``(surfaces, 2, 3)``: ``M p + b``.

        A point ``p`` of frame ``src`` is the object point ``A_src p + d_src``, seen in frame ``dst`` at
        ``A_dst^-1 (A_src p + d_src - d_dst)``; the flow is that minus ``p``.
        """
        inv = np.linalg.inv(self.A[dst])
        M = inv @ self.A[src] - np.eye(2)
        b = (inv @ (self.d[src] - self.d[dst])[..., None])[..., 0]
        return np.concatenate([M, b[..., None]], -1)

    def flow(self, src: int, dst: int) -> np.ndarray:
        """The dense true flow ``(2, h, w)`` float32 from frame ``src`` to frame ``dst``."""
        return dense_flow(self.surface[src], self.affine_flow(src, dst))

    @property
    def flow_next(self) -> np.ndarray:
        """``(t - 1, 2, h, w)``: [i] from frame i to frame i + 1."""
        return np.stack([self.flow(i, i + 1) for i in range(len(self.frames) - 1)])

    @property
    def flow_prev(self) -> np.ndarray:
        """``(t - 1, 2, h, w)``: [i] from frame i + 1 to frame i."""
        return np.stack([self.flow(i + 1, i) for i in range(len(self.frames) - 1)])


def _pixel_grid(h: int, w: int, supersample: int = 1) -> np.ndarray:
    """Pixel coordinates ``(h * n, w * n, 2)`` (x, y) of the ``n x n`` sub-pixel centres of each pixel."""
    n = supersample
    ys = (np.arange(h * n) + 0.5) / n - 0.5
    xs = (np.arange(w * n) + 0.5) / n - 0.5
    gx, gy = np.meshgrid(xs, ys)
    return np.stack([gx, gy], -1)


def _sample(photo: torch.Tensor, coords: np.ndarray) -> torch.Tensor:
    """Bicubic samples ``(t, 3, h, w)`` of ``photo`` ``(3, H, W)`` at pixel coordinates ``(t, h, w, 2)``."""
    H, W = photo.shape[-2:]
    grid = torch.from_numpy(coords * (2.0 / np.array([W - 1, H - 1])) - 1.0).float()
    return F.grid_sample(
        photo.expand(len(coords), -1, -1, -1), grid, mode="bicubic", padding_mode="border", align_corners=True
    )


def _render(camera: _Motion, background: str, layers: list[_Layer], size: tuple[int, int]) -> RenderedClip:
    h, w = size
    n = _SUPERSAMPLE
    fine = _pixel_grid(h, w, n)
    image = _sample(_load_photo(background), camera.to_object(fine))
    coverage = []
    for layer in layers:  # back to front, each composited over what is below it
        alpha = torch.from_numpy(layer.alpha(fine))[:, None]
        image = alpha * _sample(_load_photo(layer.photo), layer.motion.to_object(fine)) + (1 - alpha) * image
        coverage.append(F.avg_pool2d(alpha, n)[:, 0].numpy())
    image = F.avg_pool2d(image, n).clamp(0, 1)
    frames = (image * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()

    # Visible surface per GT pixel: the topmost layer covering at least half of it, else the background.
    surface = np.zeros((len(frames), h, w), dtype=np.uint8)
    for index, cov in enumerate(coverage, start=1):
        surface[cov >= 0.5] = index
    motions = [camera] + [layer.motion for layer in layers]
    return RenderedClip(frames, surface, np.stack([m.A for m in motions], 1), np.stack([m.d for m in motions], 1))


def render_clip(
    background: str,
    layer_photos: Sequence[str],
    *,
    seed: int | Sequence[int] = 0,
    frames: int = 20,
    size: tuple[int, int] = (128, 128),
    scale: int = 4,
    layers: int | None = None,
) -> RenderedClip:
    """Render one clip of ``background`` with ``layers`` (default 1–3 at random) patches of ``layer_photos``.

    Returns the uint8 GT frames ``(t, h, w, 3)``, and the true flows ``flow_next`` / ``flow_prev``
    ``(t - 1, 2, h, w)`` (from frame i to i + 1 / from i + 1 to i, in GT pixels). ``scale`` sets the motion
    magnitudes in LR pixels.
    """
    rng = np.random.default_rng(seed)
    photo = _load_photo(background)
    if photo is None:
        raise DataError(f"synthetic data: photograph '{background}' is not bundled with this scikit-image")
    camera = _camera(rng, tuple(photo.shape[-2:]), size, frames, scale)
    count = int(rng.integers(1, 4)) if layers is None else layers
    chosen = [layer_photos[int(rng.integers(len(layer_photos)))] for _ in range(count)]
    return _render(camera, background, [_layer(rng, p, size, frames, scale) for p in chosen], size)
