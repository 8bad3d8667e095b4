"""True optical flow on disk, in one of two forms.

* ``<frame>_<next|prev>.npy``: a dense ``(2, h, w)`` flow (any float dtype), as a user's folder data set
  may hold it.
* ``<frame>_<next|prev>.npz``: a piecewise-affine flow, as the embedded synthetic set stores it (exact, and
  about 100x smaller than dense float16): ``surface`` ``(h, w)`` uint8 names the surface visible at each
  pixel and ``affine`` ``(surfaces, 2, 3)`` holds each surface's ``[M | b]``, so that the flow at pixel
  ``p = (x, y)`` is ``M p + b``. Rigid layers under a similarity camera move exactly like this.

Flows follow :mod:`vsr.components.flow`: channel 0 horizontal (x), channel 1 vertical (y), in pixels.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from vsr.errors import DataError

FLOW_SUFFIXES = (".npz", ".npy")  # the compact form first: a folder holds one or the other


def pixel_grid(h: int, w: int) -> np.ndarray:
    """Pixel-centre coordinates ``(h, w, 2)`` as ``(x, y)``."""
    gx, gy = np.meshgrid(np.arange(w, dtype=np.float64), np.arange(h, dtype=np.float64))
    return np.stack([gx, gy], -1)


def dense_flow(surface: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """The dense flow ``(2, h, w)`` float32 of a piecewise-affine one (see the module docstring)."""
    h, w = surface.shape
    points = pixel_grid(h, w)
    maps = affine[surface]  # (h, w, 2, 3)
    flow = maps[..., :2] @ points[..., None] + maps[..., 2:]
    return np.ascontiguousarray(flow[..., 0].transpose(2, 0, 1), dtype=np.float32)


def write_affine_flow(path: Path, surface: np.ndarray, affine: np.ndarray) -> None:
    np.savez_compressed(path, surface=surface.astype(np.uint8), affine=affine.astype(np.float64))


def _open(path: Path):
    try:
        return np.load(path, mmap_mode="r") if path.suffix == ".npy" else np.load(path)
    except FileNotFoundError as err:
        raise DataError(f"flow file {path} does not exist") from err
    except (OSError, ValueError) as err:
        raise DataError(f"cannot read flow file {path}: {err}") from err


def read_flow(path: str | Path) -> np.ndarray:
    """The flow ``(2, h, w)`` stored at ``path`` (``.npy`` dense or ``.npz`` piecewise-affine)."""
    path = Path(path)
    data = _open(path)
    if path.suffix == ".npy":
        return np.asarray(data)
    with data:
        try:
            return dense_flow(data["surface"], data["affine"])
        except (KeyError, IndexError, ValueError) as err:
            raise DataError(f"flow file {path} is not a piecewise-affine flow (surface + affine): {err}") from err


def flow_shape(path: str | Path) -> tuple[int, ...]:
    """The shape ``(2, h, w)`` of the flow at ``path``, reading as little as the form allows."""
    path = Path(path)
    data = _open(path)
    if path.suffix == ".npy":
        return data.shape
    with data:
        if "surface" not in data.files:
            raise DataError(f"flow file {path} is not a piecewise-affine flow (no 'surface' array)")
        return (2, *data["surface"].shape)
