"""The two degradations of the BasicVSR papers that make low-resolution (LR) frames from ground truth (GT).

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
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from vsr.atomic import write_with
from vsr.errors import DataError, RecipeError

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


DEGRADATIONS: dict[str, Callable[..., Tensor]] = {"bi": bi, "bd": bd}


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


def degrade_folder(
    gt_root: str | Path, lr_root: str | Path, kind: str = "bi", scale: int = 4, overwrite: bool = False
) -> int:
    """Degrade every ``gt_root/<clip>/*.png`` into ``lr_root/<clip>/<same name>.png``; returns how many
    frames were written.

    ``<clip>`` may be nested (Vimeo-90K's ``00001/0001``): every folder holding PNGs is a clip and keeps its
    relative path. Existing outputs are skipped unless ``overwrite``, so an interrupted run resumes.
    Computation is in float64 from the uint8 frames, and each file is written atomically.
    """
    if kind not in DEGRADATIONS:
        raise RecipeError("degradation", kind, "unknown degradation", DEGRADATIONS)
    degrade = DEGRADATIONS[kind]
    gt_root, lr_root = Path(gt_root), Path(lr_root)
    if not gt_root.is_dir():
        raise DataError(f"ground-truth folder {gt_root} does not exist; expected {gt_root}/<clip>/*.png")
    if lr_root.resolve().is_relative_to(gt_root.resolve()):
        raise DataError(f"LR folder {lr_root} lies inside the ground-truth folder {gt_root}; write it elsewhere")
    frames = sorted(p for p in gt_root.rglob("*.png") if p.is_file() and not p.name.startswith("."))
    if not frames:
        raise DataError(f"no PNG frames under {gt_root}; expected {gt_root}/<clip>/*.png")
    written = 0
    for src in frames:
        dst = lr_root / src.relative_to(gt_root)
        if dst.exists() and not overwrite:
            continue
        gt = _read_png(src)
        h, w = gt.shape[-2:]
        if h % scale or w % scale:
            raise DataError(
                f"{src}: frame size {h}x{w} is not divisible by scale {scale}; crop the ground truth to "
                f"{h - h % scale}x{w - w % scale} first (vsr.data.degradations.modcrop)"
            )
        dst.parent.mkdir(parents=True, exist_ok=True)
        _write_png(degrade(gt, scale=scale), dst)
        written += 1
    return written
