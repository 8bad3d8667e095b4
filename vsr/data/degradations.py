"""Degradations: what makes the low-quality (LQ) frames a model learns to restore from ground truth (GT).

A degradation is a part of the ``degradation`` kind (:class:`Degradation`, see :mod:`vsr.registry`): a
clip-level callable, GT clip ``(t, c, h, w)`` float in [0, 1] in, LQ clip out, with the constructor arguments
a data set mapping gives it. A chain of them is one mapping value (:func:`build_chain`)::

    degradation: bi
    degradation: {name: bd, sigma: 0.8}
    degradation: [{name: bd, sigma: 0.8}, {name: gaussian_noise, sigma: 0.05}]

The two degradations of the BasicVSR papers make low-resolution (LR) frames:

* **BI** (:func:`bi`): MATLAB ``imresize(gt, 1/scale)`` — Keys bicubic (a = -0.5) with antialiasing (the kernel
  is widened by ``scale`` when shrinking) and symmetric (mirror, edge repeated) borders. Used for REDS, the
  Vimeo-90K BI and Vid4 BI test sets.
* **BD** (:func:`bd`): the authors' ``BD_degradation.m`` — a ``fspecial('gaussian', 12, 1.6)`` blur through
  ``imfilter(..., 'replicate')``, then every ``scale``-th pixel from 1-based index ``scale/2``
  (``lq(2:4:end-2, 2:4:end-2)`` for x4). Used for Vimeo-90K BD, Vid4 BD and UDM10. The 12×12 kernel and the
  sampling phase both matter: a 13×13 kernel or another start index shifts the LR by a fraction of a pixel
  and costs several dB (MMagic issues #318, #803).

Both are separable linear maps. For each input length one dense ``(out, in)`` matrix is built (in float64,
cached) that folds in the border handling, and frames ``(..., c, h, w)`` are mapped as ``A_h @ x @ A_w^T``:
two matmuls, batched over any leading dims, on the frames' device and dtype. Frames are floats in [0, 1]
and results are not clamped or rounded; :func:`degrade_folder` rounds to uint8 the way MATLAB's ``imwrite``
of a double image does.
"""

from __future__ import annotations

import math
import zlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from vsr.atomic import (
    OUTPUT_MARKER,
    NotWrittenByVsr,
    make_folder,
    read_marker,
    refuse_links_under,
    write_marker,
    write_with,
)
from vsr.errors import DataError, RecipeError
from vsr.registry import (
    REGISTRY,
    Allowed,
    build_entry,
    check_entry,
    declare_kind,
    integer,
    number,
    optional,
    register,
)

# --------------------------------------------------------------------------------------------------------
# BI: MATLAB imresize (bicubic, antialiased)


def _keys_cubic(x: np.ndarray) -> np.ndarray:
    """Keys' cubic convolution kernel with a = -0.5 (MATLAB's ``cubic``)."""
    ax = np.abs(x)
    ax2, ax3 = ax**2, ax**3
    near = (1.5 * ax3 - 2.5 * ax2 + 1) * (ax <= 1)
    far = (-0.5 * ax3 + 2.5 * ax2 - 4 * ax + 2) * ((ax > 1) & (ax <= 2))
    return near + far


@lru_cache(maxsize=64)
def _imresize_matrix(in_len: int, out_len: int, factor: float, antialias: bool = True) -> Tensor:
    """The ``(out_len, in_len)`` float64 matrix of MATLAB ``imresize`` along one axis (``contributions``).

    ``factor`` is MATLAB's scale (0.25 shrinks 4×). Output pixel ``i`` (1-based) sits at input coordinate
    ``u = i / factor + 0.5 (1 - 1 / factor)``; its taps are the ``ceil(width) + 2`` pixels from
    ``floor(u - width / 2)``, weighted by the (widened) cubic and normalised to sum to 1. Indices outside
    the image are mirrored with the edge pixel repeated, as MATLAB's ``[1:n, n:-1:1]`` lookup does.
    """
    width = 4.0
    kernel: Callable[[np.ndarray], np.ndarray] = _keys_cubic
    if factor < 1 and antialias:
        width /= factor
        kernel = lambda x: factor * _keys_cubic(factor * x)  # noqa: E731
    x = np.arange(1, out_len + 1, dtype=np.float64)
    u = x / factor + 0.5 * (1 - 1 / factor)
    left = np.floor(u - width / 2)
    taps = math.ceil(width) + 2
    indices = left[:, None] + np.arange(taps)[None, :]  # 1-based
    weights = kernel(u[:, None] - indices)
    weights /= weights.sum(axis=1, keepdims=True)
    mirror = np.concatenate([np.arange(in_len), np.arange(in_len)[::-1]])  # 0-based [1:n, n:-1:1]
    columns = mirror[np.mod(indices - 1, 2 * in_len).astype(np.int64)]
    matrix = np.zeros((out_len, in_len))
    np.add.at(matrix, (np.repeat(np.arange(out_len), taps), columns.ravel()), weights.ravel())
    return torch.from_numpy(matrix)


def _apply_separable(frames: Tensor, rows: Tensor, cols: Tensor) -> Tensor:
    """``rows @ frames @ cols^T`` over the last two dims of ``frames`` ``(..., h, w)``."""
    rows = rows.to(device=frames.device, dtype=frames.dtype)
    cols = cols.to(device=frames.device, dtype=frames.dtype)
    # Contract w first and h second with the matrix on the right, so that every leading dim folds into one
    # big matmul instead of broadcasting the matrix over the batch.
    out = frames @ cols.T  # (..., h, out_w)
    return (out.transpose(-1, -2) @ rows.T).transpose(-1, -2)  # (..., out_h, out_w)


def _check_frames(frames: Tensor, name: str) -> None:
    if not isinstance(frames, Tensor) or not frames.is_floating_point() or frames.ndim < 3:
        got = f"{type(frames).__name__} {getattr(frames, 'dtype', '')} {tuple(getattr(frames, 'shape', ()))}"
        raise ValueError(f"{name}: expected a float tensor (..., c, h, w) in [0, 1], got {got.strip()}")


def _check_scale(frames: Tensor, scale: int, name: str) -> None:
    if isinstance(scale, bool) or not isinstance(scale, int) or scale < 1:
        raise ValueError(f"{name}: scale must be a positive integer, got {scale!r}")
    h, w = frames.shape[-2:]
    if h % scale or w % scale:
        raise ValueError(
            f"{name}: frame size {h}x{w} (h x w) is not divisible by scale {scale}; "
            f"crop the ground truth first with modcrop(frames, {scale}) "
            f"(to {h - h % scale}x{w - w % scale})"
        )


def imresize(frames: Tensor, factor: float, antialias: bool = True) -> Tensor:
    """MATLAB ``imresize(frames, factor, 'bicubic')`` of float frames ``(..., c, h, w)``.

    ``factor < 1`` shrinks (with antialiasing unless ``antialias=False``), ``factor > 1`` enlarges; the
    output size is MATLAB's ``ceil(factor * size)``. :func:`bi` is the exact-integer shrink used for data.
    """
    _check_frames(frames, "imresize")
    if not factor > 0:
        raise ValueError(f"imresize: factor must be positive, got {factor!r}")
    h, w = frames.shape[-2:]
    # MATLAB: ceil(scale * size); the rounding guards 1/3 * 96 = 32.000000000000004 against becoming 33.
    out_h, out_w = (math.ceil(round(factor * n, 9)) for n in (h, w))
    rows = _imresize_matrix(h, out_h, float(factor), antialias)
    cols = _imresize_matrix(w, out_w, float(factor), antialias)
    return _apply_separable(frames, rows, cols)


def bi(frames: Tensor, scale: int = 4) -> Tensor:
    """BI degradation: MATLAB ``imresize(frames, 1/scale, 'bicubic')``, ``(..., c, h, w)`` ->
    ``(..., c, h/scale, w/scale)``. ``h`` and ``w`` must be multiples of ``scale`` (see :func:`modcrop`)."""
    _check_frames(frames, "bi")
    _check_scale(frames, scale, "bi")
    h, w = frames.shape[-2:]
    rows = _imresize_matrix(h, h // scale, 1 / scale)
    cols = _imresize_matrix(w, w // scale, 1 / scale)
    return _apply_separable(frames, rows, cols)


# --------------------------------------------------------------------------------------------------------
# BD: Gaussian blur (sigma 1.6, 12x12) + subsampling, as BD_degradation.m


def bd_kernel_size(sigma: float) -> int:
    """The BD script's kernel size ``ceil(3 sigma) * 2 + 2`` (12 for sigma 1.6; even on purpose)."""
    return math.ceil(sigma * 3) * 2 + 2


def gaussian_kernel(kernel_size: int, sigma: float) -> Tensor:
    """MATLAB ``fspecial('gaussian', kernel_size, sigma)``: float64 ``(k, k)`` summing to 1.

    The grid is centred, so an even size samples half-integers (-5.5 ... 5.5 for k = 12); values below
    ``eps * max`` are zeroed as MATLAB does.
    """
    half = (kernel_size - 1) / 2
    x = np.arange(kernel_size, dtype=np.float64) - half
    kernel = np.exp(-(x[:, None] ** 2 + x[None, :] ** 2) / (2 * sigma**2))
    kernel[kernel < np.finfo(np.float64).eps * kernel.max()] = 0
    return torch.from_numpy(kernel / kernel.sum())


@lru_cache(maxsize=64)
def _bd_matrix(in_len: int, scale: int, sigma: float, kernel_size: int) -> Tensor:
    """The ``(in_len // scale, in_len)`` float64 matrix of blur + subsampling along one axis.

    ``imfilter`` correlates with its anchor at 1-based ``floor((k + 1) / 2)``, i.e. 0-based offsets
    ``-(k-1)//2 ... k//2`` (-5 ... 6 for k = 12), clamping indices at the borders ('replicate'). Rows
    ``scale/2 - 1, scale/2 - 1 + scale, ...`` (0-based) are kept.
    """
    # The fspecial kernel is the outer product of its normalised marginal (exactly, unless the eps cutoff
    # zeroed corners, which needs a kernel far wider than the script's 6 sigma).
    taps = gaussian_kernel(kernel_size, sigma).sum(dim=1).numpy()
    offsets = np.arange(kernel_size) - (kernel_size - 1) // 2
    centres = scale // 2 - 1 + scale * np.arange(in_len // scale)
    columns = np.clip(centres[:, None] + offsets[None, :], 0, in_len - 1)
    matrix = np.zeros((len(centres), in_len))
    np.add.at(matrix, (np.repeat(np.arange(len(centres)), kernel_size), columns.ravel()), np.tile(taps, len(centres)))
    return torch.from_numpy(matrix)


def bd(frames: Tensor, scale: int = 4, sigma: float = 1.6, kernel_size: int | None = None) -> Tensor:
    """BD degradation of ``BD_degradation.m``: Gaussian blur (``fspecial('gaussian', kernel_size, sigma)``,
    size ``ceil(3 sigma) * 2 + 2`` by default), replicate borders, then every ``scale``-th pixel from 1-based
    index ``scale/2``. ``(..., c, h, w)`` -> ``(..., c, h/scale, w/scale)``; ``scale`` must be even (the
    script's ``scale/2`` start index), ``h`` and ``w`` multiples of it."""
    _check_frames(frames, "bd")
    _check_scale(frames, scale, "bd")
    if scale % 2:
        raise ValueError(f"bd: scale must be even (the BD script starts sampling at index scale/2), got {scale}")
    if not sigma > 0:
        raise ValueError(f"bd: sigma must be positive, got {sigma!r}")
    kernel_size = bd_kernel_size(sigma) if kernel_size is None else kernel_size
    h, w = frames.shape[-2:]
    rows = _bd_matrix(h, scale, float(sigma), kernel_size)
    cols = _bd_matrix(w, scale, float(sigma), kernel_size)
    return _apply_separable(frames, rows, cols)


# --------------------------------------------------------------------------------------------------------
# The degradation kind


@dataclass(frozen=True)
class Region:
    """Where the frames handed to a spatially local degradation lie in the whole frames, in the pixels of
    its input: the top-left corner (``top``, ``left``) and the whole frames' ``height`` and ``width``.

    A training sample degrades its crop grown by the degradation's reach, not whole frames; a stage that
    draws a value per pixel (noise) draws it for the whole frame and keeps this region (:meth:`crop`), so that
    the crop gets exactly what the same crop of the whole degraded frame gets."""

    top: int
    left: int
    height: int
    width: int

    def crop(self, whole: Tensor, size: tuple[int, int]) -> Tensor:
        """The ``size`` = ``(h, w)`` region of ``whole`` ``(..., height, width)``."""
        return whole[..., self.top : self.top + size[0], self.left : self.left + size[1]]

    def shrunk(self, scale: int) -> Region:
        """The region in the output pixels of a stage that shrinks by ``scale`` (corner and size divide)."""
        if scale == 1:
            return self
        return Region(self.top // scale, self.left // scale, self.height // scale, self.width // scale)


@declare_kind("degradation", wired=("scale",))
class Degradation(ABC):
    """A clip-level degradation: GT clip ``(t, c, h, w)`` float in [0, 1] in, LQ clip ``(t, c, h/scale,
    w/scale)`` out (``rng``: the sample's random stream; ``region``: see below).

    Its constructor takes the arguments a data set mapping gives it (rules in ``allowed_arguments``, as
    components) and may take ``scale``, the data set's scale, which vsr wires in: a resizing stage shrinks by
    it (:class:`BI`, :class:`BD`); a stage that does not resize leaves it out (``scale`` stays 1).

    Three class (or instance) attributes say how it may be applied:

    * ``scale``: how much it shrinks frames. A chain shrinks by the product of its stages', which must be the
      data set's scale.
    * ``radius``: its spatial reach in input pixels (an output pixel depends on input pixels at most this far
      away), or ``None`` (the default, always correct): it must see whole frames and the whole clip (video
      compression, anything temporal). A local one degrades a training crop grown by its reach and is called
      with the crop's ``region``; a non-local one degrades the whole frames of a training sample's frames,
      which are then cropped.
    * ``deterministic``: it draws nothing from ``rng`` (BI, BD), so a clip may be degraded a frame at a time
      (``vsr data degrade``); a random one (the default) is always given the whole clip and one stream.

    A random degradation draws only from ``rng``, a :class:`numpy.random.Generator` seeded per sample
    (training: the run's seed, epoch and sample index; evaluation: the clip's name), so that a seed reproduces
    it whatever the number of DataLoader workers. It draws its per-clip values first and then frame by frame,
    in frame order, so that the first n frames of a clip are degraded alike whatever frames follow them.
    """

    scale: int = 1
    radius: int | None = None
    deterministic: ClassVar[bool] = False
    #: The name prefix of the LR folders that standard data sets store made by this degradation (``BIx4``).
    folder: ClassVar[str | None] = None

    @abstractmethod
    def __call__(self, clip: Tensor, rng: np.random.Generator, region: Region | None = None) -> Tensor: ...


@register("degradation", "bi")
class BI(Degradation):
    """BI (:func:`bi`): MATLAB bicubic ``imresize`` by 1/scale. Its widened cubic reaches 2·scale GT pixels
    from an output pixel's centre; the taps' rounding adds up to 2 (``radius`` = 2·scale + 2)."""

    folder = "BI"
    deterministic = True

    def __init__(self, scale: int):
        self.scale, self.radius = scale, 2 * scale + 2

    def __call__(self, clip: Tensor, rng: np.random.Generator, region: Region | None = None) -> Tensor:
        return bi(clip, self.scale)


@register("degradation", "bd")
class BD(Degradation):
    """BD (:func:`bd`): Gaussian blur of std ``sigma`` (``kernel_size``: default ``ceil(3 sigma) * 2 + 2``),
    then every scale-th pixel; reaches half the kernel size."""

    folder = "BD"
    deterministic = True
    allowed_arguments: ClassVar[dict[str, Allowed]] = {
        "sigma": number(above=0),
        "kernel_size": optional(integer(1)),
    }

    def __init__(self, scale: int, sigma: float = 1.6, kernel_size: int | None = None):
        if scale % 2:
            raise ValueError(f"BD needs an even scale (the BD script starts sampling at index scale/2), got {scale}")
        self.scale, self.sigma = scale, float(sigma)
        self.kernel_size = bd_kernel_size(sigma) if kernel_size is None else kernel_size
        self.radius = self.kernel_size // 2

    def __call__(self, clip: Tensor, rng: np.random.Generator, region: Region | None = None) -> Tensor:
        return bd(clip, self.scale, self.sigma, self.kernel_size)


@register("degradation", "gaussian_noise")
class GaussianNoise(Degradation):
    """White Gaussian noise of std ``sigma`` on the 0-1 scale, independent per pixel, channel and frame,
    clipped to [0, 1]. Noise makes other frames worth more: averaging n aligned frames divides its std by √n.

    Drawn for whole frames, frame by frame (so a crop's noise is the same crop of the whole frame's, and the
    first frames' noise does not depend on how many follow)."""

    allowed_arguments: ClassVar[dict[str, Allowed]] = {"sigma": number(minimum=0, below=1)}

    radius = 0

    def __init__(self, sigma: float):
        self.sigma = float(sigma)

    def __call__(self, clip: Tensor, rng: np.random.Generator, region: Region | None = None) -> Tensor:
        whole = clip.shape if region is None else (*clip.shape[:-2], region.height, region.width)
        noise = torch.from_numpy(rng.standard_normal(whole, dtype=np.float32))
        if region is not None:
            noise = region.crop(noise, tuple(clip.shape[-2:]))
        return clip.add(noise.to(clip.device, clip.dtype), alpha=self.sigma).clamp_(0, 1)


class Chain(Degradation):
    """Degradations applied in order: what a data set mapping's ``degradation`` builds (:func:`build_chain`).

    It shrinks by the product of its stages' scales; its radius, in GT pixels, sums each stage's radius
    times the scale before that stage (``None`` if any stage is non-local). Each stage draws from its own
    stream, spawned from ``rng``, so that adding a stage leaves the others' draws alone."""

    def __init__(self, stages: Sequence[Degradation]):
        self.stages = list(stages)
        self.scale = math.prod(stage.scale for stage in self.stages)
        radius, before = 0, 1
        for stage in self.stages:
            if stage.radius is None:
                radius = None
                break
            radius += stage.radius * before
            before *= stage.scale
        self.radius = radius
        self.deterministic = all(stage.deterministic for stage in self.stages)

    def __call__(self, clip: Tensor, rng: np.random.Generator, region: Region | None = None) -> Tensor:
        for stage, stream in zip(self.stages, rng.spawn(len(self.stages)), strict=True):
            clip = stage(clip, stream, region)
            region = None if region is None else region.shrunk(stage.scale)
        return clip


def _stages(value: Any, key: str) -> list[tuple[str, Any]]:
    """The ``(key, entry)`` of each stage of a mapping's ``degradation``: a name, a mapping or a list."""
    if isinstance(value, list | tuple):
        if not value:
            raise RecipeError(key, value, "a degradation chain needs one stage or more, e.g. [bi]")
        return [(f"{key}[{i}]", item) for i, item in enumerate(value)]
    return [(key, value)]


def check_chain(value: Any, key: str = "degradation") -> Any:
    """Check a data set mapping's ``degradation`` (each stage's name and arguments) and return it as
    written; a :class:`RecipeError` names the stage's key."""
    for stage_key, item in _stages(value, key):
        check_entry("degradation", stage_key, item)
    return value


def build_chain(value: Any, scale: int, key: str = "degradation") -> Chain:
    """The :class:`Chain` a data set mapping's ``degradation`` names, for a data set of ``scale``; fails
    naming the key unless the chain shrinks by exactly ``scale``."""
    check_chain(value, key)
    chain = Chain([build_entry("degradation", k, item, scale=scale) for k, item in _stages(value, key)])
    if chain.scale != scale:
        raise RecipeError(
            key,
            value,
            f"shrinks frames {chain.scale}x but the data set is x{scale}: the stages' scales must "
            f"multiply to the data set's (one resizing stage, e.g. bi or bd, and stages that keep the size)",
        )
    return chain


def describe_chain(chain: Degradation) -> list[dict[str, Any]]:
    """A built chain as data, each stage ``{"name": its registered name, <argument>: value}``: what a
    ``metrics.json`` records as the degradation that made the LR frames."""
    names = {cls: name for name, cls in REGISTRY["degradation"].items()}
    stages = chain.stages if isinstance(chain, Chain) else [chain]
    return [
        {"name": names.get(type(stage), type(stage).__name__)}
        | {key: getattr(stage, key) for key in getattr(stage, "allowed_arguments", {}) if hasattr(stage, key)}
        for stage in stages
    ]


# --------------------------------------------------------------------------------------------------------
# Ground truth on disk -> LR on disk


def modcrop(frames: Tensor, scale: int) -> Tensor:
    """Crop ``(..., h, w)`` to the largest multiple of ``scale`` from the top-left, as the MATLAB scripts'
    ``modcrop`` does before degrading."""
    h, w = frames.shape[-2:]
    return frames[..., : h - h % scale, : w - w % scale]


def _read_png(path: Path) -> Tensor:
    """A PNG as float64 ``(c, h, w)`` in [0, 1], ``c`` = 1 for grey and 3 otherwise (alpha dropped)."""
    try:
        with Image.open(path) as image:
            if image.mode not in ("L", "RGB"):
                if image.mode not in ("P", "PA", "LA", "RGBA"):
                    raise DataError(f"{path}: PNG mode {image.mode!r} is not supported; save it as 8-bit RGB")
                image = image.convert("RGB")
            array = np.asarray(image, dtype=np.uint8)
    except OSError as err:
        raise DataError(f"{path}: cannot read the PNG ({err}); re-export the frame") from err
    array = array[:, :, None] if array.ndim == 2 else array
    return torch.from_numpy(array.transpose(2, 0, 1).astype(np.float64) / 255)


def _write_png(frame: Tensor, path: Path) -> None:
    """Write float ``(c, h, w)`` as uint8, rounding halves up like MATLAB ``imwrite`` (temp file + rename)."""
    array = torch.floor(frame.clamp(0, 1) * 255 + 0.5).to(torch.uint8).permute(1, 2, 0).numpy()
    image = Image.fromarray(array[:, :, 0] if array.shape[2] == 1 else array)
    write_with(lambda tmp: image.save(tmp, format="PNG"), path, suffix=".png")


def clip_seed(name: str) -> int:
    """A clip's seed for the degradation of its evaluation frames, stable across processes and runs (unlike
    ``hash``), so that every evaluation of a clip sees the same LQ frames."""
    return zlib.crc32(name.encode())


DEGRADED_KIND = "degraded frames"  # the marker kind of an LR folder vsr data degrade wrote


def degrade_folder(
    gt_root: str | Path,
    lr_root: str | Path,
    kind: Any = "bi",
    scale: int = 4,
    overwrite: bool = False,
    key: str = "degradation",
) -> int:
    """Degrade every ``gt_root/<clip>/*.png`` into ``lr_root/<clip>/<same name>.png``; returns how many
    frames were written.

    ``kind`` is a data set mapping's ``degradation`` (a registered name, a mapping or a list: a chain that
    shrinks by ``scale``). A deterministic chain (BI, BD) degrades frame by frame; a random one the whole clip
    with one stream seeded by the clip's name, as the evaluation of a set without LR frames does (its per-clip
    values drawn once per clip), and rewrites the clip if a frame is missing. ``<clip>`` may be nested
    (Vimeo-90K's ``00001/0001``): every folder holding PNGs is a clip and
    keeps its relative path. Existing outputs are skipped unless ``overwrite``, so an interrupted run resumes;
    ``overwrite`` replaces only frames vsr wrote (an LR folder vsr made carries its marker, kind
    :data:`DEGRADED_KIND`).
    Computation is in float64 from the uint8 frames, and each file is written atomically. An LR folder holding a
    symbolic link (a clip folder linked to its GT clip) is refused before anything is written: vsr writes
    through no link.
    """
    degradation = build_chain(kind, scale, key)  # ``key``: what a message names (``--kind`` for vsr data degrade)
    gt_root, lr_root = Path(gt_root), Path(lr_root)
    if not gt_root.is_dir():
        raise DataError(f"ground-truth folder {gt_root} does not exist; expected {gt_root}/<clip>/*.png")
    if lr_root.resolve().is_relative_to(gt_root.resolve()):
        raise DataError(f"LR folder {lr_root} lies inside the ground-truth folder {gt_root}; write it elsewhere")
    if lr_root.exists() or lr_root.is_symlink():
        refuse_links_under(lr_root, "LR folder")
    marked = (read_marker(lr_root) or {}).get("kind") == DEGRADED_KIND
    empty = not lr_root.is_dir() or not any(lr_root.iterdir())
    if overwrite and not (marked or empty):
        raise NotWrittenByVsr(
            f"LR folder {lr_root} holds files, and no {OUTPUT_MARKER} says vsr degraded them: --overwrite replaces "
            "only frames vsr wrote. Choose a new LR folder, or delete those frames yourself and run again"
        )
    frames = sorted(p for p in gt_root.rglob("*.png") if p.is_file() and not p.name.startswith("."))
    if not frames:
        raise DataError(f"no PNG frames under {gt_root}; expected {gt_root}/<clip>/*.png")
    clips: dict[Path, list[Path]] = {}
    for src in frames:
        clips.setdefault(src.parent, []).append(src)
    if empty:  # a folder vsr makes is marked as its own, so that --overwrite may replace its frames later
        write_marker(make_folder(lr_root), DEGRADED_KIND)
    written = 0
    for folder, paths in clips.items():
        seed = clip_seed(folder.relative_to(gt_root).as_posix())
        todo = [i for i, src in enumerate(paths) if overwrite or not (lr_root / src.relative_to(gt_root)).exists()]
        if not todo:
            continue
        if degradation.deterministic:
            batches = [([i], np.random.default_rng(seed)) for i in todo]
        else:
            batches = [(list(range(len(paths))), np.random.default_rng(seed))]
        for indices, rng in batches:
            gt = torch.stack([_read_gt(paths[i], scale) for i in indices])
            for i, lq in zip(indices, degradation(gt, rng), strict=True):
                relative = paths[i].relative_to(gt_root)
                dst = make_folder(lr_root, *relative.parent.parts) / relative.name
                _write_png(lq, dst)
                written += 1
    return written


def _read_gt(path: Path, scale: int) -> Tensor:
    gt = _read_png(path)
    h, w = gt.shape[-2:]
    if h % scale or w % scale:
        raise DataError(
            f"{path}: frame size {h}x{w} is not divisible by scale {scale}; crop the ground truth to "
            f"{h - h % scale}x{w - w % scale} first (vsr.data.degradations.modcrop)"
        )
    return gt


# The real-world stages and the RealBasicVSR chain register themselves beside the ones above: the registry
# imports this module as the degradation kind's home. Imported last, since it subclasses Degradation.
from vsr.data import realworld  # noqa: E402, F401
