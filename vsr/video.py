"""Streaming video input and output: read frames lazily from a video file or a frame folder, write frames
to a video file or a PNG folder atomically.

Peers decode the whole clip into memory and write at a hard-coded 25 fps (mmagic's
``VideoRestorationInferencer``, RealBasicVSR's demo); here a :class:`FrameReader` decodes one frame at a
time and exposes the stream's own frame rate, and a :class:`FrameWriter` encodes one frame at a time into a
hidden temporary path that is renamed onto the output only when every frame was written, so an
interrupted run never leaves an output that looks complete.

Frames are ``uint8`` numpy arrays of shape ``(h, w, 3)`` in RGB order on both sides. Everything goes through
PyAV (``av``), images included, so no other imaging library is needed.

An output of vsr is recognisable, so that ``overwrite`` replaces only what vsr wrote: a frame folder holds
the marker file ``.vsr-output`` (the number of frames written, as JSON) beside its frames, and a video file
carries the container tag ``comment = vsr-output ...``. ``overwrite`` replaces a frame folder only if it
holds nothing but the marker and the frames it names, and a video only if it carries the tag; anything else
is refused, naming it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import select
import shutil
import stat
import uuid
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import BinaryIO

import av
import numpy as np
from av.stream import Disposition
from av.video.reformatter import ColorRange, Colorspace

from vsr.atomic import OUTPUT_MARKER, write_marker
from vsr.errors import VideoError

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")

# Encoders tried in order for each output container; the first one the installed PyAV build has is used.
ENCODERS = {
    ".mp4": ("libx264", "h264", "mpeg4"),
    ".m4v": ("libx264", "h264", "mpeg4"),
    ".mov": ("libx264", "h264", "mpeg4"),
    ".mkv": ("libx264", "h264", "libvpx-vp9", "mpeg4"),
    ".webm": ("libvpx-vp9", "libvpx"),
    ".avi": ("mpeg4", "libx264"),
}
# Default constant-quality setting per encoder: visually lossless for x264/x265 (crf 18/20), the
# VP9 equivalent, and a q-scale of 3 for MPEG-4 part 2 (which has no crf).
DEFAULT_CRF = {"libx264": 18, "h264": 18, "libx265": 20, "libvpx-vp9": 24, "libvpx": 10, "mpeg4": 3}
#: The quality values each encoder takes (x264/x265's and VP9's crf, MPEG-4 part 2's q-scale), from FFmpeg's
#: options for each; lower is better.
CRF_RANGES = {"libx264": (0, 51), "h264": (0, 51), "libx265": (0, 51), "libvpx-vp9": (0, 63), "libvpx": (4, 63),
              "mpeg4": (1, 31)}  # fmt: skip
DEFAULT_FPS = Fraction(25)
_FF_QP2LAMBDA = 118  # FFmpeg's q-scale -> lambda factor, for MPEG-4 part 2's global_quality
OUTPUT_TAG = "vsr-output"  # the container's "comment" tag of a video vsr wrote starts with this
_TAG_TEXT = f"{OUTPUT_TAG} (written by vsr; `vsr upscale --overwrite` may replace this file)"


def _frame_name(index: int) -> str:
    return f"{index:08d}.png"


def foreign_output(path: str | os.PathLike) -> str | None:
    """Why the existing ``path`` is not an output vsr wrote (so ``overwrite`` must not replace it), or
    None if it is one: a frame folder with the ``.vsr-output`` marker and nothing but the frames it names, or
    a video file whose container carries vsr's tag."""
    path = Path(path)
    if path.is_symlink():
        return "it is a symbolic link"
    if path.is_dir():
        marker = path / OUTPUT_MARKER
        try:
            frames = json.loads(marker.read_text())["frames"]
        except (OSError, ValueError, KeyError, TypeError):
            return f"it is a folder without vsr's marker file {OUTPUT_MARKER}"
        if not isinstance(frames, int):
            return f"its marker file {OUTPUT_MARKER} is not vsr's"
        for entry in sorted(path.iterdir()):
            name = entry.name
            if name == OUTPUT_MARKER:
                continue
            stem = name.removesuffix(".png")
            known = stem.isdigit() and name == _frame_name(int(stem)) and int(stem) < frames
            if not known or entry.is_symlink() or not entry.is_file():
                return f"it holds {entry}, which vsr did not write"
        return None
    if path.suffix.lower() not in ENCODERS:
        return "it is not a video file vsr writes"
    try:
        with av.open(str(path)) as container:
            tags = {key.lower(): value for key, value in container.metadata.items()}
    except (av.error.FFmpegError, OSError):
        return "it cannot be read as a video"
    if not str(tags.get("comment", "")).startswith(OUTPUT_TAG):
        return f"it carries no '{OUTPUT_TAG}' comment tag (vsr tags the videos it writes)"
    return None


def natural_key(name: str) -> list[int | str]:
    """Sort key that orders ``frame2.png`` before ``frame10.png``."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]


#: The frame rates vsr accepts, frames per second: above 0 and at most 1000 (the fastest cameras a video is
#: played back from); stored with a denominator of at most 65535, the largest MPEG-4 part 2 allows.
MAX_FPS = 1000
FPS_DENOMINATOR = 65535


def frame_rate(fps: float | Fraction | str, what: str, maximum: int | None = MAX_FPS) -> Fraction:
    """``fps`` (a number, a fraction or a text such as ``"30000/1001"``) as a ``Fraction``; anything else, a
    division by zero, or a rate outside (0, ``maximum``] fails with a :class:`VideoError` naming ``what``. (The
    writer takes any positive rate: a source's own may be its time base's, e.g. 90000.)"""
    try:
        value = Fraction(fps.strip() if isinstance(fps, str) else fps)
    except ZeroDivisionError:
        raise VideoError(f"{what}: frame rate {fps!r} divides by zero; pass e.g. 25 or 30000/1001") from None
    except (TypeError, ValueError, OverflowError):  # text that is not a number; inf or nan
        raise VideoError(f"{what}: frame rate {fps!r} is not a number; pass e.g. 25 or 30000/1001") from None
    if not Fraction(1, FPS_DENOMINATOR) <= value <= (maximum or value):
        most = f" and at most {maximum}" if maximum else ""
        raise VideoError(
            f"{what}: frame rate {fps!r} must be above 0 (at least 1/{FPS_DENOMINATOR}){most} frames per second; "
            "pass e.g. 25 or 30000/1001"
        )
    return value.limit_denominator(FPS_DENOMINATOR)


def _parse_timestamp(text: str) -> float | None:
    """Seconds of an ``HH:MM:SS.fraction`` tag (Matroska's per-stream ``DURATION``)."""
    match = re.fullmatch(r"(\d+):(\d+):(\d+(?:\.\d+)?)", text.strip())
    if match is None:
        return None
    hours, minutes, seconds = match.groups()
    return int(hours) * 3600 + int(minutes) * 60 + float(seconds)


class FrameReader:
    """Iterate the frames of a video file or of a folder of images, one decoded frame at a time.

    Args:
        path: a video file (anything FFmpeg demuxes: mp4, mkv, webm, avi, mov, ...) or a folder of
            ``png/jpg/bmp/tif/webp`` frames, sorted naturally by file name.
        fps: frame rate of a frame folder (default 25); for a video file it overrides the stream's rate.

    Attributes:
        fps: frames per second as a ``Fraction`` (e.g. ``30000/1001``).
        num_frames: frame count stored in the container, or the number of images; ``None`` where the
            container does not store one (mkv, webm).
        expected_frames: ``num_frames``, else an estimate from the stream duration, else ``None``.
        size: ``(height, width)`` of every frame.
        codec: decoder name (``"h264"``, ``"vp9"``, ``"png"``...); ``pix_fmt``: the stored pixel format.

    A video is opened once, to read its metadata, and the first iteration decodes from that same open file, so
    a source is read once, front to back: a named pipe (FIFO) or a shell's ``<(...)`` works (a pipe that nothing
    writes to is refused after :data:`PIPE_WAIT_S` seconds). A later iteration opens a file again (a pipe cannot
    be: refused); :meth:`close` closes a reader that is never iterated. ``audio_streams`` counts the audio
    streams (vsr does not copy them), and ``variable_rate`` says, once iterated, whether frames came at varying
    intervals.

    Iterating yields ``uint8`` arrays ``(h, w, 3)`` RGB. A
    decode error, a video that ends well before its stored length (truncated file) or a frame whose size
    differs from the first raises :class:`VideoError` naming the file, rather than ending early.
    """

    def __init__(self, path: str | os.PathLike, fps: float | Fraction | str | None = None):
        self.path = Path(path)
        if not self.path.exists():
            raise VideoError(f"{self.path}: no such video file or frame folder")
        self.is_folder = self.path.is_dir()
        self.is_pipe = not self.is_folder and stat.S_ISFIFO(self.path.stat().st_mode)
        self.files: list[Path] = []
        self.duration: float | None = None
        self.audio_streams = 0  # audio streams of the source, which vsr does not copy (it writes video only)
        self.variable_rate: bool | None = None  # whether frames came at varying intervals; known once read
        self._container: av.container.InputContainer | None = None  # opened, and not yet decoded from
        self._pipe: BinaryIO | None = None  # the pipe the container reads, if the source is one
        if self.is_folder:
            self._open_folder(fps)
        else:
            self._open_video(fps)

    def _open_folder(self, fps: float | Fraction | str | None) -> None:
        self.files = sorted(
            # Hidden files are skipped: macOS writes "._name.png" metadata files next to frames.
            (p for p in self.path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file() and p.name[0] != "."),
            key=lambda p: natural_key(p.name),
        )
        if not self.files:
            raise VideoError(f"{self.path}: folder holds no frames (files ending in {', '.join(IMAGE_SUFFIXES)})")
        first = _read_image(self.files[0])
        self.size = (first.shape[0], first.shape[1])
        self.fps = DEFAULT_FPS if fps is None else frame_rate(fps, str(self.path))
        if fps is None:
            logger.info("%s: a frame folder has no frame rate; assuming 25 fps (pass fps= to change)", self.path)
        self.num_frames = self.expected_frames = len(self.files)
        self.codec = self.files[0].suffix.lower().lstrip(".")
        self.pix_fmt = "rgb24"

    def _open_video(self, fps: float | Fraction | str | None) -> None:
        # The container stays open: iterating decodes from it, so a source is read once (a pipe can be).
        self._pipe = _open_pipe(self.path) if self.is_pipe else None
        try:
            container = av.open(self._pipe or str(self.path))
        except av.error.FFmpegError as err:
            self.close()
            raise VideoError(
                f"{self.path}: cannot be opened as a video ({err.strerror or err}); the file is not a video, "
                "is corrupt, or is truncated (an mp4 cut short loses its index)"
                + (PIPE_FORMATS if self.is_pipe else "")
            ) from err
        self._container = container
        try:
            self._probe(container, fps)
        except BaseException:
            self.close()
            raise

    def _probe(self, container: av.container.InputContainer, fps: float | Fraction | str | None) -> None:
        """The stream's size, codec, frame rate, frame count and duration, read from the open ``container``."""
        # Cover art (mp4/mkv attachments) shows up as a one-frame video stream: skip it.
        videos = [s for s in container.streams.video if not s.disposition & Disposition.attached_pic]
        if not videos:
            raise VideoError(f"{self.path}: the file has no video stream")
        stream = videos[0]
        self._stream_index = stream.index
        self.audio_streams = len(container.streams.audio)
        context = stream.codec_context
        if not context.width or not context.height:
            raise VideoError(f"{self.path}: the video stream has no frame size; the file is corrupt")
        self.size = (context.height, context.width)
        self.codec, self.pix_fmt = context.name, context.pix_fmt
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        self._stream_fps = Fraction(rate) if rate else DEFAULT_FPS  # the file's own rate (fps= sets the output's)
        if fps is not None:
            self.fps = frame_rate(fps, str(self.path))
        elif rate:
            self.fps = Fraction(rate)
        else:
            self.fps = DEFAULT_FPS
            logger.warning("%s: the stream stores no frame rate; assuming 25 fps (pass fps=)", self.path)
        self.num_frames = stream.frames or None
        self.duration = self._duration(container, stream)
        estimate = round(self.duration * Fraction(rate)) if self.duration and rate else None
        self.expected_frames = self.num_frames or estimate

    def close(self) -> None:
        """Close the source opened for reading, if it was never iterated (iterating closes it)."""
        if self._container is not None:
            self._container.close()
            self._container = None
        if self._pipe is not None:
            self._pipe.close()
            self._pipe = None

    @staticmethod
    def _duration(container: av.container.InputContainer, stream: av.video.stream.VideoStream) -> float | None:
        """Seconds of the video stream: the stream's own duration, Matroska's ``DURATION`` tag, or the
        container's duration when the video is its only stream (otherwise audio could be longer)."""
        if stream.duration and stream.time_base:
            return float(stream.duration * stream.time_base)
        tag = stream.metadata.get("DURATION")
        if tag and (seconds := _parse_timestamp(tag)):
            return seconds
        if container.duration and len(container.streams) == 1:
            return container.duration / av.time_base
        return None

    def __iter__(self) -> Iterator[np.ndarray]:
        return self._iter_folder() if self.is_folder else self._iter_video()

    def _iter_folder(self) -> Iterator[np.ndarray]:
        for file in self.files:
            frame = _read_image(file)
            if frame.shape[:2] != self.size:
                raise VideoError(
                    f"{self.path}: frames differ in size: {file.name} is {frame.shape[1]}x{frame.shape[0]} "
                    f"but {self.files[0].name} is {self.size[1]}x{self.size[0]} (width x height); "
                    "every frame of a clip must have the same size"
                )
            yield frame

    def _iter_video(self) -> Iterator[np.ndarray]:
        container, self._container = self._container, None
        if container is None:
            if self.is_pipe:
                raise VideoError(f"{self.path}: a pipe can be read once, and it was; write the video to a file")
            try:
                container = av.open(str(self.path))
            except av.error.FFmpegError as err:
                raise VideoError(f"{self.path}: cannot be opened again ({err.strerror or err})") from err
        decoded, first, last, intervals = 0, None, None, set()
        try:
            with container:
                stream = container.streams[self._stream_index]
                stream.thread_type = "AUTO"
                for frame in container.decode(stream):
                    if (frame.height, frame.width) != self.size:
                        raise VideoError(
                            f"{self.path}: frame {decoded} is {frame.width}x{frame.height} but the stream "
                            f"starts at {self.size[1]}x{self.size[0]}; resolution changes are not supported"
                        )
                    if frame.time is not None:
                        if last is not None:
                            intervals.add(round(frame.time - last, 3))
                        first, last = frame.time if first is None else first, frame.time
                    yield frame.to_ndarray(format="rgb24")
                    decoded += 1
        except av.error.FFmpegError as err:
            raise VideoError(
                f"{self.path}: decoding failed after {decoded} frames ({err.strerror or err}); "
                "the file is truncated or corrupt" + (PIPE_FORMATS if self.is_pipe else "")
            ) from err
        finally:
            self.close()
        self.variable_rate = len(intervals) > 1 and max(intervals) > 1.5 * max(min(intervals), 1e-3)
        self._check_complete(decoded, first, last)

    def _check_complete(self, decoded: int, first: float | None, last: float | None) -> None:
        """Refuse a video that ended well before its stored length (a truncated file): fewer frames than the
        stream's stored count, or, where none is stored, a last frame well before the stream's duration (a count
        estimated from the duration and the frame rate is wrong for a variable frame rate)."""
        slack = max(2, (self.num_frames or 0) // 100)  # edit lists and decoder delay can drop a frame or two
        if self.num_frames is not None and decoded < self.num_frames - slack:
            raise VideoError(
                f"{self.path}: the video ended after {decoded} of {self.num_frames} frames; the file is truncated"
            )
        if self.num_frames is None and self.duration and last is not None:
            frame_s = 1 / float(self._stream_fps)  # one frame of the file's own rate, whatever fps= asked
            span = last - (first or 0.0) + frame_s
            if span < self.duration - max(2 * frame_s, self.duration / 100):
                raise VideoError(
                    f"{self.path}: the video ended after {span:.2f} of its {self.duration:.2f} seconds "
                    f"({decoded} frames); the file is truncated"
                )

    def __repr__(self) -> str:
        frames = self.num_frames if self.num_frames is not None else f"~{self.expected_frames}"
        return (
            f"FrameReader({str(self.path)!r}: {self.size[1]}x{self.size[0]}, {float(self.fps):.3f} fps, "
            f"{frames} frames, {self.codec})"
        )


#: Seconds a named pipe (FIFO) is waited on for a writer (the program that writes the video into it).
PIPE_WAIT_S = 10.0

#: What a video read from a pipe must be: nothing can be seeked back to.
PIPE_FORMATS = (
    "; a pipe is read once, front to back, so its video must need no seeking: Matroska (ffmpeg ... -f matroska) or "
    "an mp4 with its index first (-movflags +faststart), or write the video to a file"
)


def _open_pipe(path: Path) -> BinaryIO:
    """A named pipe (FIFO, or a shell's ``<(...)``) opened for reading once a writer has written to it: waiting at
    most :data:`PIPE_WAIT_S` seconds, so a pipe without a writer is refused instead of hanging forever."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # does not wait for a writer, as a blocking open would
    try:
        poller = select.poll()
        poller.register(fd, select.POLLIN | select.POLLHUP)
        if not poller.poll(PIPE_WAIT_S * 1000):
            raise VideoError(
                f"{path}: a named pipe (FIFO) that nothing wrote to in {PIPE_WAIT_S:g} seconds; start the program "
                "that writes the video into it first (e.g. ffmpeg -i in.mp4 -c copy -f matroska PIPE &), or pass a file"
            )
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb", buffering=0)
    except BaseException:
        os.close(fd)
        raise


def _read_image(path: Path) -> np.ndarray:
    try:
        with av.open(str(path)) as container:
            return next(container.decode(video=0)).to_ndarray(format="rgb24")
    except (av.error.FFmpegError, StopIteration, IndexError) as err:
        raise VideoError(f"{path}: cannot be read as an image ({err}); the file is corrupt or not an image") from err


def _available_encoder(names: tuple[str, ...]) -> str | None:
    for name in names:
        try:
            av.codec.Codec(name, "w")
        except av.error.FFmpegError:
            continue
        except ValueError:  # older PyAV raises UnknownCodecError, a ValueError
            continue
        return name
    return None


class FrameWriter:
    """Write ``uint8 (h, w, 3)`` RGB frames to a video file or to a folder of PNGs, atomically.

    The output kind follows ``path``: a known video extension (``.mp4 .mkv .mov .m4v .avi .webm``) encodes a
    video (tagged as vsr's), a path without extension writes ``00000000.png, 00000001.png, ...`` and the marker
    ``.vsr-output`` into a folder. Frames go to a hidden temporary path next to the output
    (``.NAME.<id>.partial``); :meth:`close` renames it onto ``path`` once all frames are written, and an
    exception inside the ``with`` block (or :meth:`abort`) deletes it, so a partial output never appears
    under the final name.

    Args:
        path: output file or folder. An existing one is refused unless ``overwrite=True``, and even then
            unless it is an earlier output of vsr (:func:`foreign_output`; checked again just before the
            swap).
        fps: frame rate stored in the video (use the input's: ``FrameReader.fps``).
        size: ``(height, width)`` of the frames, if known: checks it against the encoder at once, so a bad
            size fails before any work is done; otherwise taken from the first frame.
        codec: encoder name; default: libx264 for mp4/mkv/mov, VP9 for webm, MPEG-4 for avi (the first
            one the installed PyAV has; a fallback is logged).
        crf: constant quality (crf for x264/x265/VP9, q-scale for MPEG-4); default per encoder, see
            ``DEFAULT_CRF``. ``preset``: x264/x265 speed preset. ``pix_fmt``: stored pixel format;
            ``yuv420p`` (default, plays everywhere) needs even frame sizes.
        options: extra encoder options, e.g. ``{"tune": "film"}``.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        fps: float | Fraction | str = DEFAULT_FPS,
        *,
        size: tuple[int, int] | None = None,
        overwrite: bool = False,
        codec: str | None = None,
        crf: int | None = None,
        preset: str = "medium",
        pix_fmt: str = "yuv420p",
        options: dict[str, str] | None = None,
    ):
        self.path = Path(path)
        suffix = self.path.suffix.lower()
        if suffix and suffix not in ENCODERS:
            raise VideoError(
                f"{self.path}: unknown output extension '{suffix}'; use one of {', '.join(ENCODERS)} for a "
                "video, or a path without extension for a folder of PNG frames"
            )
        self.kind = "video" if suffix else "frames"
        if self.path.exists() or self.path.is_symlink():
            if not overwrite:
                raise VideoError(f"{self.path}: output already exists; pass --overwrite (overwrite=True) to replace it")
            self._check_replaceable()
        if not self.path.parent.is_dir():
            raise VideoError(f"{self.path}: the output folder {self.path.parent} does not exist")
        self.fps = frame_rate(fps, str(self.path), maximum=None)
        self.crf, self.preset, self.pix_fmt, self.options = crf, preset, pix_fmt, dict(options or {})
        self.codec = None
        if self.kind == "video":
            self.codec = codec or _available_encoder(ENCODERS[suffix])
            if self.codec is None:
                raise VideoError(
                    f"{self.path}: the installed PyAV has none of the encoders {', '.join(ENCODERS[suffix])} "
                    "for this container; write .mkv/.mp4 or a PNG folder instead"
                )
            if codec is None and self.codec != ENCODERS[suffix][0]:
                logger.warning("%s: encoder %s is unavailable, using %s", self.path, ENCODERS[suffix][0], self.codec)
            low, high = CRF_RANGES.get(self.codec, (None, None))
            number = isinstance(crf, (int, float)) and not isinstance(crf, bool)
            if crf is not None and low is not None and not (number and low <= crf <= high):
                raise VideoError(
                    f"{self.path}: crf {crf!r} is outside what the {self.codec} encoder takes ({low} to {high}, "
                    f"lower is better; its default is {DEFAULT_CRF[self.codec]})"
                )
        elif crf is not None:
            raise VideoError(
                f"{self.path}: crf {crf!r} sets a video encoder's quality, but this output is a folder of PNG frames "
                "(lossless); drop crf, or name a video file (.mp4, .mkv, ...)"
            )
        token = uuid.uuid4().hex[:8]
        self.tmp_path = self.path.with_name(f".{self.path.stem}.{token}.partial{suffix}")
        self.frames_written = 0
        self.size: tuple[int, int] | None = None
        self._container: av.container.OutputContainer | None = None
        self._stream = None
        self._png = None
        self._closed = False
        if self.kind == "frames":
            self.tmp_path.mkdir()
        if size is not None:
            self._open(*size)

    # -- lifecycle ---------------------------------------------------------------------------------------
    def __enter__(self) -> FrameWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def _open(self, height: int, width: int) -> None:
        self.size = (height, width)
        try:
            if self.kind == "frames":
                self._png = av.CodecContext.create("png", "w")
                self._png.width, self._png.height, self._png.pix_fmt = width, height, "rgb24"
            else:
                self._open_video(height, width)
        except BaseException:
            self.abort()
            raise

    def _open_video(self, height: int, width: int) -> None:
        chroma_halved = self.pix_fmt.startswith(("yuv420", "yuvj420", "nv12", "yuv422"))
        if chroma_halved and (height % 2 or width % 2):
            raise VideoError(
                f"{self.path}: pix_fmt {self.pix_fmt} needs an even frame size, got {width}x{height}; "
                "pass pix_fmt='yuv444p' or write a PNG folder"
            )
        mp4_like = self.path.suffix.lower() in (".mp4", ".m4v", ".mov")
        # faststart moves the index to the front: the file plays while downloading, and a truncated copy
        # is detected mid-stream instead of being unreadable.
        self._container = av.open(str(self.tmp_path), "w", options={"movflags": "+faststart"} if mp4_like else {})
        self._container.metadata["comment"] = _TAG_TEXT  # marks the file as vsr's (see foreign_output)
        stream = self._container.add_stream(self.codec, rate=self.fps)
        stream.width, stream.height, stream.pix_fmt = width, height, self.pix_fmt
        crf = self.crf if self.crf is not None else DEFAULT_CRF.get(self.codec)
        options = {}
        if self.codec in ("libx264", "libx265"):
            options = {"preset": self.preset, "crf": str(crf)}
        elif self.codec in ("libvpx-vp9", "libvpx"):
            options = {"crf": str(crf), "b": "0", "row-mt": "1"}
        elif self.codec == "mpeg4" and crf is not None:
            stream.codec_context.qscale = True
            stream.codec_context.global_quality = crf * _FF_QP2LAMBDA
        stream.options = {**options, **self.options}
        if self.pix_fmt.startswith("yuv"):
            # Encode with BT.709 coefficients and say so in the stream: players assume BT.709 for HD.
            context = stream.codec_context
            context.colorspace = context.color_primaries = context.color_trc = 1  # AVCOL_*_BT709
            context.color_range = ColorRange.MPEG
        self._stream = stream

    def write(self, frame: np.ndarray) -> None:
        """Append one ``uint8 (h, w, 3)`` RGB frame."""
        if self._closed:
            raise VideoError(f"{self.path}: write() after close()")
        frame = np.ascontiguousarray(frame)
        if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
            raise VideoError(f"{self.path}: frames must be uint8 (h, w, 3) RGB, got {frame.dtype} {frame.shape}")
        if self.size is None:
            self._open(frame.shape[0], frame.shape[1])
        if frame.shape[:2] != self.size:
            raise VideoError(
                f"{self.path}: frame {self.frames_written} is {frame.shape[1]}x{frame.shape[0]}, "
                f"expected {self.size[1]}x{self.size[0]} (width x height)"
            )
        image = av.VideoFrame.from_ndarray(frame, format="rgb24")
        if self.kind == "frames":
            (packet,) = self._png.encode(image)
            (self.tmp_path / _frame_name(self.frames_written)).write_bytes(bytes(packet))
        else:
            if self.pix_fmt.startswith("yuv"):
                image = image.reformat(format=self.pix_fmt, dst_colorspace=Colorspace.ITU709)
            for packet in self._stream.encode(image):
                self._container.mux(packet)
        self.frames_written += 1

    def close(self) -> None:
        """Finish encoding and move the output into place. Idempotent."""
        if self._closed:
            return
        try:
            if self.frames_written == 0:
                raise VideoError(f"{self.path}: no frames were written; the input was empty")
            if self._container is not None:
                for packet in self._stream.encode(None):
                    self._container.mux(packet)
                self._container.close()
                self._container = None
            self._commit()
        except BaseException:
            self.abort()
            raise
        self._closed = True

    def _check_replaceable(self) -> None:
        reason = foreign_output(self.path)
        if reason is not None:
            raise VideoError(
                f"{self.path}: --overwrite (overwrite=True) replaces only an earlier output of vsr, but {reason}; "
                "it is left untouched. Choose another output path, or move it away yourself"
            )

    def _commit(self) -> None:
        if self.kind == "frames":
            write_marker(self.tmp_path, frames=self.frames_written)
        exists = self.path.exists() or self.path.is_symlink()
        if exists:  # it may have changed since the writer opened: check again just before replacing it
            self._check_replaceable()
        if not exists or self.kind == "video":
            os.replace(self.tmp_path, self.path)  # atomic: the old video or the new one, never neither
            return
        # A folder cannot be replaced in one rename: move the old output aside first.
        trash = self.path.with_name(f".{self.path.name}.{uuid.uuid4().hex[:8]}.old")
        os.replace(self.path, trash)
        os.replace(self.tmp_path, self.path)
        _remove(trash)

    def abort(self) -> None:
        """Stop writing and delete the temporary output; the final path is left untouched."""
        if self._closed:
            return
        self._closed = True
        if self._container is not None:
            with contextlib.suppress(Exception):  # already failing; the temporary file goes next anyway
                self._container.close()
            self._container = None
        _remove(self.tmp_path)


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)
