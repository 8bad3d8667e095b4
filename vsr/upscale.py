"""Upscale videos of any length and size in bounded memory: overlapping temporal chunks and spatial tiles.

A recurrent VSR model (BasicVSR, IconVSR) propagates features through the whole clip, so its memory grows
with the number of frames and pixels. Peers cut long clips into non-overlapping segments whose hidden
state starts cold at every boundary (mmagic's ``max_seq_len``; the authors note that shorter segments cost
PSNR, mmagic#356) and offer no spatial tiling. Here:

- **Temporal chunks.** Output frames ``[start, end)`` are produced by running the model on
  ``[start - chunk_overlap, end + chunk_overlap)`` (clamped to the video) and keeping the centre, so every
  kept frame has ``chunk_overlap`` frames of warm-up in both propagation directions. The source is read
  as a stream through a ring buffer of at most ``chunk_size + 2 * chunk_overlap`` frames: memory does not
  grow with the video's length.
- **Spatial tiles.** Each LR chunk is cut into tiles of ``tile`` pixels overlapping by ``2 * tile_overlap``;
  the model runs on each tile's clip and only the tile's core (at least ``tile_overlap`` LR pixels from
  any tile border that is not a frame border) is kept. Cores partition the frame, so there is no blending
  and no seam as long as ``tile_overlap`` covers the model's spatial receptive field (for flow-based
  models: the motion plus the convolutions' reach).

:func:`upscale_frames` is the streaming core (a generator of HR frames); :func:`upscale` adds sources
(paths, tensors, iterables), the video writer and progress (a bar, or a line per chunk when stdout is not a
terminal).

A model may take a fixed number of frames per call (an exported ONNX model, :class:`vsr.export.OnnxVSR`,
declares ``frames_per_call = T``). It is then fed windows of exactly ``T`` frames: each window's centre
``T - 2 * chunk_overlap`` frames are kept, and at the ends of the video the window shifts inwards (more
warm-up on the inner side, never less). A video shorter than ``T`` is extended in time by reflection (the
extra outputs are dropped), which makes its frames differ slightly from a model run on the short clip.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import sys
import time
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch
from rich import get_console
from torch import Tensor, nn

from vsr.device import default_device
from vsr.errors import ArgumentError, VideoError, VSRError
from vsr.model import check_forward_size, machine_memory
from vsr.progress import progress_bar
from vsr.video import DEFAULT_FPS, FrameReader, FrameWriter, frame_rate

logger = logging.getLogger(__name__)

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
Frames = str | os.PathLike | Tensor | FrameReader | Iterable


@dataclass(frozen=True)
class TileSpan:
    """One tile along one axis: the model sees ``[start, stop)``, the output keeps ``[core_start, core_stop)``."""

    start: int
    stop: int
    core_start: int
    core_stop: int


def tile_spans(length: int, tile: int, overlap: int) -> list[TileSpan]:
    """Cut an axis of ``length`` pixels into tiles of ``tile`` pixels whose cores partition the axis.

    Tile ``i`` starts at ``min(i * (tile - 2 * overlap), length - tile)``; a core ends ``overlap`` pixels
    before its tile's end, where the next core begins, except at the frame border. One tile covers the axis
    when ``tile >= length``.
    """
    if tile >= length:
        return [TileSpan(0, length, 0, length)]
    stride = tile - 2 * overlap
    count = 1 + -(-(length - tile) // stride)
    starts = [min(i * stride, length - tile) for i in range(count)]
    cores = [0] + [start + overlap for start in starts[1:]] + [length]
    return [TileSpan(s, s + tile, cores[i], cores[i + 1]) for i, s in enumerate(starts)]


#: The warm-up frames on each side of a chunk when none are given.
DEFAULT_CHUNK_OVERLAP = 8


def default_overlap(frames_per_call: int | None) -> int:
    """The warm-up when none is given: 8 frames, and for a model of ``T`` frames per call at most a quarter of
    them (``(T - 1) // 4``), so that most of each call's frames are kept."""
    if frames_per_call is None:
        return DEFAULT_CHUNK_OVERLAP
    return min(DEFAULT_CHUNK_OVERLAP, (frames_per_call - 1) // 4)


def _check_parameters(chunk_size, chunk_overlap, tile, tile_overlap) -> tuple[int, int] | None:
    if chunk_size is not None and (not isinstance(chunk_size, int) or chunk_size < 1):
        raise ArgumentError(f"chunk_size must be an int >= 1 (or None for the whole video), got {chunk_size!r}")
    if not isinstance(chunk_overlap, int) or chunk_overlap < 0:
        raise ArgumentError(f"chunk_overlap must be an int >= 0, got {chunk_overlap!r}")
    if not isinstance(tile_overlap, int) or tile_overlap < 0:
        raise ArgumentError(f"tile_overlap must be an int >= 0, got {tile_overlap!r}")
    if tile is None:
        return None
    sizes = (tile, tile) if isinstance(tile, int) else tuple(tile)
    if len(sizes) != 2 or not all(isinstance(s, int) and s > 2 * tile_overlap for s in sizes):
        raise ArgumentError(
            f"tile must be an int or an (h, w) pair of ints > 2 * tile_overlap, i.e. >= {2 * tile_overlap + 1} "
            f"for tile_overlap={tile_overlap}; got {tile!r}"
        )
    return sizes


def _model_scale(model: nn.Module) -> int:
    scale = getattr(model, "scale", None)
    if not isinstance(scale, int) or isinstance(scale, bool) or scale < 1:
        raise VSRError(
            f"{type(model).__name__} has no integer attribute 'scale' (got {scale!r}); a VSR model must say "
            "its upscaling factor as model.scale"
        )
    return scale


@contextlib.contextmanager
def _prepared(model: nn.Module, device: torch.device, dtype: str, channels_last: bool, compile: bool):
    """Move ``model`` to ``device`` in eval mode and yield ``(forward, autocast context factory)``; restores
    the training flag afterwards."""
    was_training = model.training
    model.to(device).eval()
    if channels_last:
        # Only the 4-D conv weights change layout; the model reshapes (b, t, c, h, w) to 4-D itself.
        model.to(memory_format=torch.channels_last)
    forward = torch.compile(model) if compile else model
    logger.info(
        "upscaling on %s in %s%s%s", device, dtype, ", channels_last" if channels_last else "",
        ", torch.compile" if compile else "",
    )  # fmt: skip

    def autocast():
        if dtype == "float32":
            return contextlib.nullcontext()
        return torch.autocast(device_type=device.type, dtype=DTYPES[dtype])

    try:
        yield forward, autocast
    finally:
        model.train(was_training)


def _as_chw(frame: np.ndarray | Tensor, index: int) -> Tensor:
    """A frame as a ``(3, h, w)`` tensor: uint8 ``(h, w, 3)`` arrays become uint8 views, tensors pass."""
    if isinstance(frame, np.ndarray):
        if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
            raise ValueError(
                f"frame {index}: numpy frames must be uint8 (h, w, 3) RGB, got {frame.dtype} {frame.shape}"
            )
        return torch.from_numpy(np.ascontiguousarray(frame)).permute(2, 0, 1)
    if isinstance(frame, Tensor):
        if frame.ndim != 3 or frame.shape[0] != 3:
            raise ValueError(f"frame {index}: tensor frames must be (3, h, w), got {tuple(frame.shape)}")
        if frame.is_floating_point():
            if not torch.isfinite(frame).all():
                raise ArgumentError(f"frame {index}: holds NaN or infinite values; float frames must be in [0, 1]")
            low, high = frame.aminmax()
            if low < 0 or high > 1:
                raise ArgumentError(
                    f"frame {index}: values from {low.item():.4g} to {high.item():.4g}, but float frames must be in "
                    "[0, 1]; divide 0-255 values by 255, clamp small overshoots (x.clamp(0, 1)), or pass uint8 frames"
                )
        return frame
    raise ValueError(f"frame {index}: expected a uint8 (h, w, 3) array or a (3, h, w) tensor, got {type(frame)}")


def _checked(frames: Iterator) -> Iterator[Tensor]:
    """The frames of a stream as ``(3, h, w)`` tensors (:func:`_as_chw`), all of frame 0's size."""
    size = None
    for index, frame in enumerate(frames):
        frame = _as_chw(frame, index)
        if size is None:
            size = frame.shape
        elif frame.shape != size:
            raise ValueError(
                f"frame {index} is {tuple(frame.shape)} but frame 0 is {tuple(size)}; "
                "all frames of a clip must have the same size"
            )
        yield frame


class _Frames:
    """The frames ``[first, end)`` of a frame stream (:func:`_checked`) in a ring buffer: pulled from the stream
    only when :meth:`fill` asks for them, dropped by :meth:`drop_before`; indexed by their place in the video."""

    def __init__(self, frames: Iterator):
        self.stream = _checked(frames)
        self.held: deque[Tensor] = deque()
        self.first = 0  # video index of held[0]
        self.exhausted = False

    def fill(self, stop: int) -> int:
        """Pull frames until the buffer reaches video index ``stop`` or the stream ends; return its end."""
        while not self.exhausted and self.first + len(self.held) < stop:
            try:
                self.held.append(next(self.stream))
            except StopIteration:
                self.exhausted = True
        return self.first + len(self.held)

    def drop_before(self, index: int) -> None:
        while self.first < index:
            self.held.popleft()
            self.first += 1

    def clip(self, indices: Iterable[int]) -> Tensor:
        """The frames at these video indices, stacked ``(t, 3, h, w)``."""
        return torch.stack([self.held[i - self.first] for i in indices])


def _chunks(frames: Iterator, chunk_size: int | None, overlap: int) -> Iterator[tuple[Tensor, int, int]]:
    """Yield ``(clip (t', 3, h, w), keep_start, keep_stop)`` for consecutive output chunks of a frame stream.

    The ring buffer holds the frames ``[start - overlap, end + overlap)`` of the current chunk and nothing
    else; frames are pulled from ``frames`` only when a chunk needs them.
    """
    chunk_size = chunk_size or sys.maxsize
    buffer = _Frames(frames)
    start = 0
    while (available := buffer.fill(start + chunk_size + overlap)) > start:
        end = min(start + chunk_size, available)
        stop = min(end + overlap, available)
        yield buffer.clip(range(buffer.first, stop)), start - buffer.first, end - buffer.first
        start = end
        buffer.drop_before(start - overlap)


def reflected_indices(count: int, length: int) -> list[int]:
    """``length`` frame indices that run through ``count`` frames and back (0, 1, 2, 1, 0, 1, ...): a clip of
    ``count`` frames extended in time by reflection."""
    if count == 1:
        return [0] * length
    period = 2 * (count - 1)
    return [i % period if i % period < count else period - i % period for i in range(length)]


def _windows(frames: Iterator, length: int, overlap: int) -> Iterator[tuple[Tensor, int, int]]:
    """Like :func:`_chunks`, for a model that takes exactly ``length`` frames per call: each clip holds
    ``length`` frames and its kept frames ``[keep_start, keep_stop)`` are the next ``length - 2 * overlap``
    output frames, with at least ``overlap`` frames of warm-up on each side that the video has (the window
    shifts inwards at the video's ends). A video shorter than ``length`` is reflected in time to fill it.

    The ring buffer holds at most ``2 * length`` frames: those from ``length`` frames before the next chunk
    (the last window may reach back that far) to the end of the current window.
    """
    step = length - 2 * overlap
    buffer = _Frames(frames)
    start, reflected = 0, False
    while (available := buffer.fill(max(0, start - overlap) + length)) > start:
        end = min(start + step, available)
        begin = max(0, min(start - overlap, available - length))
        indices = list(range(begin, min(begin + length, available)))
        if len(indices) < length:
            if not reflected:
                logger.warning("the video has %d frames, fewer than the %d the model takes per call: it is extended "
                               "in time by reflection", available, length)  # fmt: skip
                reflected = True
            indices = [indices[i] for i in reflected_indices(len(indices), length)]
        yield buffer.clip(indices), start - begin, end - begin
        start = end
        buffer.drop_before(start - length)


def chunk_plan(model: nn.Module, chunk_size: int | None, chunk_overlap: int | None) -> tuple[int | None, int]:
    """``(output frames per chunk or None for the whole video, warm-up frames per side)`` for ``model``: the
    given values (the overlap defaulting to :data:`DEFAULT_CHUNK_OVERLAP`), or for a model of ``T`` frames per
    call ``T - 2 * overlap`` frames (the overlap defaulting to :func:`default_overlap`; ``chunk_size`` unused)."""
    frames_per_call = getattr(model, "frames_per_call", None)
    overlap = default_overlap(frames_per_call) if chunk_overlap is None else chunk_overlap
    if frames_per_call is None:
        return chunk_size, overlap
    if isinstance(overlap, int) and 2 * overlap >= frames_per_call:
        raise ArgumentError(
            f"the model takes {frames_per_call} frames per call, and chunk_overlap={overlap} on each side leaves "
            f"none to output: use chunk_overlap <= {(frames_per_call - 1) // 2}, or export the model with more frames"
        )
    return frames_per_call - 2 * overlap, overlap


def upscale_frames(
    model: nn.Module,
    frames: Iterable[np.ndarray | Tensor],
    *,
    chunk_size: int | None = 30,
    chunk_overlap: int | None = None,
    tile: int | tuple[int, int] | None = None,
    tile_overlap: int = 16,
    device: str | torch.device | None = None,
    dtype: str = "float32",
    channels_last: bool = False,
    compile: bool = False,
    as_uint8: bool = False,
) -> Iterator[Tensor]:
    """Stream the super-resolved frames of a frame stream, in order, one ``(3, s*h, s*w)`` CPU tensor each.

    Args:
        model: ``nn.Module`` with an int ``scale``, mapping ``(b, t, 3, h, w)`` in [0, 1] to
            ``(b, t, 3, s*h, s*w)``. It is moved to ``device`` and run in eval mode. A model that takes a
            fixed number of frames declares ``frames_per_call`` (see the module docstring), and one that runs
            outside PyTorch (ONNX Runtime) ``torch_options = False``: no ``dtype``, ``channels_last`` or
            ``compile`` then.
        frames: uint8 ``(h, w, 3)`` RGB arrays (as :class:`FrameReader` yields) or ``(3, h, w)`` tensors
            (float in [0, 1], or uint8). Pulled lazily: at most ``chunk_size + 2 * chunk_overlap`` frames
            are held.
        chunk_size: output frames per model call; ``None`` runs the whole video at once (exact, unbounded).
            Not used for a model of ``frames_per_call`` frames: its chunks are ``T - 2 * chunk_overlap``.
        chunk_overlap: warm-up frames on each side of a chunk (not output; their cost is paid twice); default
            8, or for a model of ``T`` frames per call ``min(8, (T - 1) // 4)``.
        tile: LR tile size (int or ``(h, w)``), ``None`` for whole frames; must exceed ``2 * tile_overlap``.
        tile_overlap: LR margin of each tile whose output is discarded.
        device: ``"cuda"``, ``"cpu"``, ...; default CUDA when available, else CPU.
        dtype: ``"float32"``, or ``"bfloat16"``/``"float16"`` under autocast (float16 on GPUs only).
        channels_last: convert the model's conv weights to channels-last memory format.
        compile: run the model through ``torch.compile``.
        as_uint8: yield ``uint8`` frames, clamped and rounded (what a writer stores); else float32 frames
            exactly as the model produced them.
    """
    # Checked here, not at the first next(): a generator would report bad arguments only when consumed.
    chunk_size, chunk_overlap = chunk_plan(model, chunk_size, chunk_overlap)
    sizes = _check_parameters(chunk_size, chunk_overlap, tile, tile_overlap)
    scale = _model_scale(model)
    frames_per_call = getattr(model, "frames_per_call", None)
    if not getattr(model, "torch_options", True) and (dtype != "float32" or channels_last or compile):
        raise ArgumentError(
            f"{type(model).__name__} runs as it was exported, in float32: it takes no dtype, channels_last or compile"
        )
    device = default_device(device)
    if dtype not in DTYPES:
        raise ArgumentError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    if dtype == "float16" and device.type == "cpu":
        raise ArgumentError("dtype='float16' needs a GPU; on the CPU use dtype='bfloat16' or 'float32'")

    def stream() -> Iterator[Tensor]:
        with _prepared(model, device, dtype, channels_last, compile) as (forward, autocast):
            if frames_per_call is None:
                chunks = _chunks(iter(frames), chunk_size, chunk_overlap)
            else:
                chunks = _windows(iter(frames), frames_per_call, chunk_overlap)
            for clip, keep_start, keep_stop in chunks:
                lr = clip.to(device)
                lr = lr.float().div_(255) if lr.dtype == torch.uint8 else lr.float()
                out = torch.empty(  # allocated outside inference mode: the frames handed out are ordinary tensors
                    keep_stop - keep_start, 3, scale * lr.shape[-2], scale * lr.shape[-1],
                    dtype=torch.uint8 if as_uint8 else torch.float32,
                )  # fmt: skip
                with torch.inference_mode():
                    for row, col, hr in _tiles(forward, autocast, lr, scale, sizes, tile_overlap):
                        hr = hr[keep_start:keep_stop].float()
                        if as_uint8:
                            hr = hr.clamp(0, 1).mul_(255).round_().to(torch.uint8)
                        rows = slice(scale * row.core_start, scale * row.core_stop)
                        out[..., rows, scale * col.core_start : scale * col.core_stop] = hr.cpu()
                yield from out

    return stream()


def _tiles(
    forward, autocast, lr: Tensor, scale: int, sizes, tile_overlap
) -> Iterator[tuple[TileSpan, TileSpan, Tensor]]:
    """Run the model on each tile of ``lr (t, 3, h, w)``; yield ``(row, col, HR core (t, 3, s*ch, s*cw))``."""
    t, _, h, w = lr.shape
    rows = tile_spans(h, sizes[0], tile_overlap) if sizes else [TileSpan(0, h, 0, h)]
    cols = tile_spans(w, sizes[1], tile_overlap) if sizes else [TileSpan(0, w, 0, w)]
    for row, col in itertools.product(rows, cols):
        x = lr[None, :, :, row.start : row.stop, col.start : col.stop]
        with autocast():
            y = forward(x)
        expected = (1, t, 3, scale * x.shape[-2], scale * x.shape[-1])
        if not isinstance(y, Tensor) or tuple(y.shape) != expected:
            got = tuple(y.shape) if isinstance(y, Tensor) else type(y).__name__
            raise VSRError(
                f"the model returned {got} for an input of {tuple(x.shape)}; expected {expected}, i.e. "
                f"(b, t, 3, scale*h, scale*w) with scale={scale}"
            )
        top, left = scale * (row.core_start - row.start), scale * (col.core_start - col.start)
        height, width = scale * (row.core_stop - row.core_start), scale * (col.core_stop - col.core_start)
        yield row, col, y[0, :, :, top : top + height, left : left + width]


@dataclass
class UpscaleSummary:
    """What :func:`upscale` did when writing to ``output``."""

    output: Path
    frames: int
    size: tuple[int, int]  # (height, width) of the written frames
    fps: Fraction  # frame rate stored in the output
    seconds: float
    frames_per_second: float  # processing speed
    peak_memory_bytes: int | None  # peak accelerator memory (CUDA only)
    notes: list[str] = field(default_factory=list)  # what the output does not keep of the input (its audio)

    def __str__(self) -> str:
        memory = f", peak GPU memory {self.peak_memory_bytes / 2**30:.2f} GiB" if self.peak_memory_bytes else ""
        return (
            f"wrote {self.frames} frames of {self.size[1]}x{self.size[0]} at {float(self.fps):.3f} fps to "
            f"{self.output} in {self.seconds:.1f} s ({self.frames_per_second:.2f} frames/s{memory})"
        ) + "".join(f"\nnote: {note}" for note in self.notes)


def _open_source(source: Frames, fps) -> tuple[Iterable, int | None, Fraction | None, Path | None, str]:
    """``(frames, frame count or None, frame rate or None, path or None, name)`` of any accepted source."""
    if isinstance(source, (str, os.PathLike)):
        source = FrameReader(source, fps=fps)
    if isinstance(source, FrameReader):
        return source, source.expected_frames, source.fps, source.path.resolve(), source.path.name
    if isinstance(source, Tensor):
        if source.ndim != 4 or source.shape[1] != 3:
            raise ValueError(f"a tensor source must be (t, 3, h, w), got {tuple(source.shape)}")
        return source.unbind(0), source.shape[0], None, None, "tensor"
    if isinstance(source, Iterable):
        return source, len(source) if hasattr(source, "__len__") else None, None, None, "frames"
    raise ValueError(
        f"source must be a path, a FrameReader, a (t, 3, h, w) tensor or an iterable of frames, got {type(source)}"
    )


def _check_chunk_size(model: nn.Module, chunk_size, chunk_overlap, tile, total: int | None, size, device) -> None:
    """Refuse chunks (and tiles) whose pass cannot fit ``device``'s memory, before any work (see
    :func:`vsr.model.check_forward_size`). Measured only where a chunk's output alone takes 1% of the memory: below
    that, no pass of a VSR network comes near it (its feature maps take tens of times less than the memory)."""
    chunk, overlap = chunk_plan(model, chunk_size, chunk_overlap)
    frames = min(chunk + 2 * overlap, total or sys.maxsize) if chunk else total
    if frames is None or not isinstance(model, nn.Module) or not getattr(model, "torch_options", True):
        return  # an unknown length; a model outside torch (ONNX Runtime)
    tiles = (tile, tile) if isinstance(tile, int) else tuple(tile) if tile is not None else size
    h, w = min(tiles[0], size[0]), min(tiles[1], size[1])
    scale = _model_scale(model)
    if frames * 3 * scale * scale * h * w * 4 > machine_memory(device) / 100:
        fix = "lower --chunk-size (chunk_size: frames per pass), or set --tile (tile: LR pixels per pass)"
        check_forward_size(model, frames, [(1, (h, w))], "upscale", device, fix=fix)


def _check_output_spares_source(output: Path, source: Path | None) -> None:
    """Refuse an output whose writing would touch the source: the source itself, a folder holding it (the
    source's folder, or any folder above it: replacing it would delete the source), or a path inside a
    source folder. Paths are compared resolved (symbolic links followed)."""
    if source is None:
        return
    resolved = output.resolve()
    if resolved == source:
        raise VideoError(f"{output}: the output is the input; choose another output path")
    if source.is_relative_to(resolved):
        raise VideoError(
            f"{output}: the output is a folder that holds the input {source}; writing it would replace the "
            "input. Choose an output outside the input's folders"
        )
    if source.is_dir() and resolved.is_relative_to(source):
        raise VideoError(f"{output}: the output is inside the input folder {source}; choose an output outside it")


def _naming_the_output(writer: FrameWriter):
    """An exit callback that makes a file-system error of writing (a full disk) name the output, where it names
    the hidden temporary path the output is written to, or no file (as a failed ``write()`` does)."""
    temporary = os.path.abspath(writer.tmp_path)

    def name(exc_type, exc, tb) -> bool:
        if isinstance(exc, OSError) and (
            exc.filename is None or Path(os.path.abspath(exc.filename)).is_relative_to(temporary)
        ):
            raise OSError(exc.errno, exc.strerror, str(writer.path)) from exc  # PyAV's filename is read-only
        return False  # the error goes on

    return name


def upscale(
    model: nn.Module,
    source: Frames,
    output: str | os.PathLike | None = None,
    *,
    chunk_size: int | None = 30,
    chunk_overlap: int | None = None,
    tile: int | tuple[int, int] | None = None,
    tile_overlap: int = 16,
    device: str | torch.device | None = None,
    dtype: str = "float32",
    channels_last: bool = False,
    compile: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    fps: float | Fraction | str | None = None,
    **writer_args,
) -> Tensor | UpscaleSummary:
    """Super-resolve a video with ``model`` in bounded memory.

    Args:
        model: see :func:`upscale_frames`.
        source: a video file or frame folder path, a :class:`FrameReader`, a ``(t, 3, h, w)`` tensor (float
            in [0, 1]) or an iterable of frames.
        output: a video file (``.mp4``, ``.mkv``, ``.webm``...) or a folder for PNG frames, written
            atomically (see :class:`FrameWriter`); ``None`` returns all frames as a float tensor
            ``(t, 3, s*h, s*w)`` (memory then grows with the video).
        chunk_size, chunk_overlap, tile, tile_overlap, device, dtype, channels_last, compile: see
            :func:`upscale_frames`.
        overwrite: replace an existing output, if it is an earlier output of vsr (a frame folder with its
            ``.vsr-output`` marker and nothing else, or a video carrying vsr's tag); anything else is refused.
            Whatever ``overwrite`` says, the output is never the source, a folder holding it, or a path
            inside a source folder.
        progress: show progress (frames, frames/s, ETA): a bar on a terminal, else a line per chunk.
        fps: frame rate of the output; default: the source's (25 for frame folders and in-memory frames).
        writer_args: ``codec``, ``crf``, ``preset``, ``pix_fmt``, ``options`` of :class:`FrameWriter`.

    Returns:
        The frames as a tensor when ``output`` is ``None``, else an :class:`UpscaleSummary`.
    """
    if output is None and writer_args:
        raise ValueError(f"writer arguments ({', '.join(writer_args)}) need an output path")
    scale = _model_scale(model)
    fps = frame_rate(fps, "fps") if fps is not None else None  # before the source is opened: 1/0 is no rate
    frames, total, source_fps, source_path, name = _open_source(source, fps)
    reader = frames if isinstance(frames, FrameReader) else None
    out_fps = fps if fps is not None else source_fps or DEFAULT_FPS
    frames = iter(frames)
    try:
        first = next(frames)
    except StopIteration:
        raise VideoError(f"{name}: the source has no frames") from None
    frames = itertools.chain([first], frames)
    height, width = _as_chw(first, 0).shape[1:]
    device = default_device(device)
    # Arguments are checked before the writer creates its temporary output.
    stream = upscale_frames(
        model, frames, chunk_size=chunk_size, chunk_overlap=chunk_overlap, tile=tile, tile_overlap=tile_overlap,
        device=device, dtype=dtype, channels_last=channels_last, compile=compile, as_uint8=output is not None,
    )  # fmt: skip
    _check_chunk_size(model, chunk_size, chunk_overlap, tile, total, (height, width), device)
    writer = None
    if output is not None:
        _check_output_spares_source(Path(output), source_path)
        writer = FrameWriter(output, out_fps, size=(scale * height, scale * width), overwrite=overwrite, **writer_args)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    results: list[Tensor] = []
    began = time.perf_counter()
    with contextlib.ExitStack() as stack:
        if writer is not None:
            stack.push(_naming_the_output(writer))  # first in, last out: also sees what closing the writer raises
            stack.enter_context(writer)
        description = f"upscaling {name} x{scale}"
        chunk = chunk_plan(model, chunk_size, chunk_overlap)[0] or 0  # a line per chunk (or at the end)
        bar = stack.enter_context(
            progress_bar(
                total,
                description,
                enabled=progress,
                status=False,
                rate="frames",
                console=get_console(),
                line_every=chunk,
            )
        )
        stack.callback(stream.close)
        for frame in stream:
            if writer is None:
                results.append(frame)
            else:
                writer.write(frame.permute(1, 2, 0).numpy())
            bar.advance()
        count = len(results) if writer is None else writer.frames_written
        bar.set_total(count)
    if writer is None:
        return torch.stack(results)
    seconds = time.perf_counter() - began
    peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None
    return UpscaleSummary(
        output=writer.path, frames=count, size=(scale * height, scale * width), fps=out_fps, seconds=seconds,
        frames_per_second=count / seconds if seconds > 0 else float("inf"), peak_memory_bytes=peak,
        notes=_left_out(reader, writer.path, out_fps),
    )  # fmt: skip


def _left_out(reader: FrameReader | None, output: Path, fps: Fraction) -> list[str]:
    """What the output does not keep of a video source: its audio, and a variable frame rate's timing."""
    if reader is None:
        return []
    notes = []
    if reader.audio_streams:
        streams = f"{reader.audio_streams} stream{'s' if reader.audio_streams > 1 else ''}"
        notes.append(
            f"the input's audio ({streams}) is not in the output (vsr writes video only); to add the audio back: "
            f"ffmpeg -i {output} -i {reader.path} -map 0:v -map 1:a -c copy WITH_AUDIO{output.suffix or '.mkv'}"
        )
    if reader.variable_rate:
        notes.append(
            f"the input has a variable frame rate; the output plays its frames at a constant {float(fps):.3f} fps (the "
            "rate the input's stream states, or --fps), so its timing differs from the input's"
        )
    return notes
