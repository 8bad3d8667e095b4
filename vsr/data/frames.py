"""Reading frames: decoding, header-only size checks of a whole data set (:func:`validate_clips`), the
decoded-frame cache, and :class:`ClipReader`, which reads regions of a clip's frames and flows for the data
sets of :mod:`vsr.data.datasets`.

Frames come out as uint8 ``(t, 3, h, w)`` RGB. Flow fields follow ``vsr.components.flow``: ``(2, h, w)`` in
pixels, channel 0 the horizontal (x) and channel 1 the vertical (y) displacement; the flow *from frame i to
frame j* satisfies ``frame_i(p) ≈ frame_j(p + flow(p))``.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch import Tensor

from vsr.data.flow_files import flow_shape, read_flow
from vsr.data.layouts import ClipSet
from vsr.errors import DataError

log = logging.getLogger(__name__)

# ``cache_frames=None`` caches every decoded frame when the whole data set takes at most this many bytes.
AUTO_CACHE_BYTES = 256 * 2**20
# ``validate="auto"`` reads every frame header up to this many frames, else the first frame of each clip.
AUTO_VALIDATE_FRAMES = 30_000


def read_frame(path: Path) -> np.ndarray:
    """Decode one frame: uint8 ``(h, w, 3)`` RGB."""
    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"))
    except FileNotFoundError as err:
        raise DataError(f"frame {path} does not exist") from err
    except (OSError, UnidentifiedImageError) as err:
        raise DataError(f"cannot read frame {path}: {err}") from err


def frame_size(path: Path) -> tuple[int, int]:
    """``(h, w)`` of an image, from its header only."""
    try:
        with Image.open(path) as image:
            w, h = image.size
    except FileNotFoundError as err:
        raise DataError(f"frame {path} does not exist") from err
    except (OSError, UnidentifiedImageError) as err:
        raise DataError(f"cannot read frame {path}: {err}") from err
    return h, w


def _common_size(paths: Iterable[Path], what: str) -> tuple[int, int]:
    size, first = None, None
    for path in paths:
        this = frame_size(path)
        if size is None:
            size, first = this, path
        elif this != size:
            raise DataError(
                f"{what} frame {path} has size {this[1]}x{this[0]} but {first} has {size[1]}x{size[0]}; "
                "all frames of a clip must have the same size"
            )
    assert size is not None
    return size


def validate_clips(
    source: ClipSet, check: str = "auto", with_flow: bool = False
) -> list[tuple[tuple[int, int], tuple[int, int]]]:
    """Check that every clip's frames exist, share one size, and that GT = scale × LR; returns each clip's
    (GT ``(H, W)``, LR ``(h, w)``); a clip without GT gets scale × LR, its output's size. Only image headers are
    read. ``check``: ``all`` frames, the ``first`` frame of each clip (decoding checks the rest), or ``auto`` (all
    up to 30k frames)."""
    if check not in ("all", "first", "auto"):
        raise DataError(f"unknown frame check {check!r}; valid choices: all, first, auto")
    if not source.clips:
        raise DataError(f"data set {source.name or '(unnamed)'} holds no clips")
    if check == "auto":
        check = "all" if sum(len(c) for c in source.clips) <= AUTO_VALIDATE_FRAMES else "first"
        what = "every frame" if check == "all" else "the first frame of each clip"
        log.info("%s: checking the size of %s (validate='auto')", source.name, what)
    s = source.scale
    sizes = []
    for clip in source.clips:
        if not clip.frames:
            raise DataError(f"clip {clip.name!r} has no frames")
        pick = (lambda paths: paths) if check == "all" else (lambda paths: paths[:1])
        if clip.gt is None:  # no ground truth: the "GT size" is the output's, scale × LR
            lr_size = _common_size(pick(clip.lr), "LR")
            gt_size = (lr_size[0] * s, lr_size[1] * s)
            sizes.append((gt_size, lr_size))
            continue
        gt_size = _common_size(pick(clip.gt), "GT")
        if clip.lr is not None:
            lr_size = _common_size(pick(clip.lr), "LR")
            if gt_size != (lr_size[0] * s, lr_size[1] * s):
                raise DataError(
                    f"GT frame {clip.gt[0]} is {gt_size[1]}x{gt_size[0]} and LR frame {clip.lr[0]} is "
                    f"{lr_size[1]}x{lr_size[0]}: GT must be scale × LR with scale {s}; check 'scale' and 'lr'"
                )
        else:
            if gt_size[0] % s or gt_size[1] % s:
                raise DataError(
                    f"GT frame {clip.gt[0]} is {gt_size[1]}x{gt_size[0]}, not divisible by scale {s}, so no "
                    "LR frames can be made from it; crop the frames to a multiple of the scale"
                )
            lr_size = (gt_size[0] // s, gt_size[1] // s)
        if with_flow:
            if clip.flow is None:
                raise DataError(f"clip {clip.name!r} has no flow folder (expected flow/{clip.name} beside GT/)")
            for i in range(len(clip) - 1 if check == "all" else min(1, len(clip) - 1)):
                for path in clip.flow_paths(i):
                    if (shape := flow_shape(path)) != (2, *gt_size):
                        raise DataError(
                            f"flow file {path} has shape {shape}, expected (2, {gt_size[0]}, {gt_size[1]}) "
                            "like the GT frames"
                        )
        sizes.append((gt_size, lr_size))
    return sizes


class FrameCache:
    """Decoded frames and flows by path: all of them (``capacity=None``), the most recently used
    ``capacity`` ones, or none (``capacity=0``). Each DataLoader worker holds its own copy."""

    def __init__(self, capacity: int | None):
        self.capacity = capacity
        self._items: OrderedDict[Path, np.ndarray] = OrderedDict()

    def get(self, path: Path, load: Callable[[Path], np.ndarray]) -> np.ndarray:
        if self.capacity == 0:
            return load(path)
        if path in self._items:
            self._items.move_to_end(path)
            return self._items[path]
        item = self._items[path] = load(path)
        if self.capacity is not None and len(self._items) > self.capacity:
            self._items.popitem(last=False)
        return item


def _cache_capacity(cache_frames: bool | int | None, source: ClipSet, sizes, with_flow: bool) -> int | None:
    if cache_frames is None:
        total = 0
        for clip, ((gh, gw), (lh, lw)) in zip(source.clips, sizes, strict=True):
            per_frame = (3 * gh * gw if clip.gt is not None else 0) + (3 * lh * lw if clip.lr is not None else 0)
            per_frame += 8 * gh * gw if with_flow else 0
            total += len(clip) * per_frame
        cache_frames = total <= AUTO_CACHE_BYTES
        log.info(
            "%s: %s decoded frames (%.0f MiB in all)",
            source.name,
            "caching" if cache_frames else "not caching",
            total / 2**20,
        )
    if cache_frames is True:
        return None
    return int(cache_frames)


def _to_tensor(frames: Sequence[np.ndarray]) -> Tensor:
    """uint8 frames ``(h, w, 3)`` → uint8 tensor ``(t, 3, h, w)``."""
    return torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2).contiguous()


class ClipReader:
    """What the two data sets share: validated clip sizes, the frame cache, and region reads."""

    def __init__(self, source: ClipSet, validate: str, with_flow: bool, cache_frames: bool | int | None):
        self.source = source
        self.sizes = validate_clips(source, validate, with_flow)
        self.cache = FrameCache(_cache_capacity(cache_frames, source, self.sizes, with_flow))

    def frames(self, paths: Sequence[Path], size: tuple[int, int], box: tuple[int, int, int, int]) -> Tensor:
        """uint8 ``(t, 3, bottom-top, right-left)`` crops ``box = (top, bottom, left, right)`` of frames
        that must be ``size`` = ``(h, w)``."""
        top, bottom, left, right = box
        crops = []
        for path in paths:
            frame = self.cache.get(path, read_frame)
            if frame.shape[:2] != size:
                raise DataError(
                    f"frame {path} has size {frame.shape[1]}x{frame.shape[0]}, expected {size[1]}x{size[0]} "
                    "like the rest of its clip"
                )
            crops.append(frame[top:bottom, left:right])
        return _to_tensor(crops)

    def flows(self, paths: Sequence[Path], box: tuple[int, int, int, int]) -> Tensor:
        """float32 LR-resolution flows ``(n, 2, h, w)`` of the GT-resolution ``box`` of GT flows: average-pooled
        by the scale and divided by it (a displacement of s GT pixels is one LR pixel)."""
        s = self.source.scale
        top, bottom, left, right = box
        out = []
        for path in paths:
            flow = self.cache.get(path, read_flow)[:, top:bottom, left:right].astype(np.float32)
            h, w = flow.shape[1] // s, flow.shape[2] // s
            out.append(flow.reshape(2, h, s, w, s).mean(axis=(2, 4)) / s)
        return torch.from_numpy(np.stack(out))
