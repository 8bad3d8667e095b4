"""Streaming video I/O (vsr.video): readers and writers round-trip frames, keep the frame rate, write
atomically, and name the file and the problem on bad input."""

from __future__ import annotations

import json
from fractions import Fraction

import av
import numpy as np
import pytest

from vsr.errors import VideoError
from vsr.video import OUTPUT_MARKER, FrameReader, FrameWriter, natural_key


def moving_frames(t: int, h: int, w: int) -> np.ndarray:
    """Smooth colour waves drifting by a pixel per frame, ``(t, h, w, 3)`` uint8: easy for lossy codecs."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    frames = []
    for i in range(t):
        r = 128 + 100 * np.sin((x + i) / 5)
        g = 128 + 100 * np.cos((y - i) / 7)
        b = 128 + 60 * np.sin((x + y + 2 * i) / 9)
        frames.append(np.stack([r, g, b], -1))
    return np.round(np.stack(frames)).astype(np.uint8)


def write_with_pyav(path, frames: np.ndarray, fps, codec: str = "libx264", options=None) -> None:
    """Plain PyAV encoding, independent of FrameWriter."""
    with av.open(str(path), "w", options=options or {}) as container:
        stream = container.add_stream(codec, rate=fps)
        stream.height, stream.width = frames.shape[1:3]
        stream.pix_fmt = "yuv420p"
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)


def entries(folder) -> list[str]:
    """Every name in ``folder``, hidden temporaries included."""
    return sorted(p.name for p in folder.iterdir())


def test_natural_sort_orders_numbers_by_value():
    names = ["f10.png", "f2.png", "F1.png", "f1b.png"]
    assert sorted(names, key=natural_key) == ["F1.png", "f1b.png", "f2.png", "f10.png"]


@pytest.mark.parametrize(("suffix", "codec"), [(".mkv", "libx264"), (".mp4", "libx264"), (".avi", "mpeg4")])
def test_reader_streams_a_pyav_video_with_its_frame_rate(tmp_path, suffix, codec):
    frames = moving_frames(12, 32, 48)
    path = tmp_path / f"clip{suffix}"
    write_with_pyav(path, frames, Fraction(30000, 1001), codec)
    reader = FrameReader(path)
    assert reader.fps == Fraction(30000, 1001)
    assert reader.size == (32, 48)
    assert reader.expected_frames == 12
    assert reader.num_frames == (None if suffix == ".mkv" else 12)  # Matroska stores no frame count
    decoded = np.stack(list(reader))
    assert decoded.shape == (12, 32, 48, 3) and decoded.dtype == np.uint8
    # 4:2:0 chroma and lossy coding cost 4-9 grey levels on average here; frames out of order cost ~50.
    assert np.abs(decoded.astype(float) - frames).mean() < 12
    assert len(list(reader)) == 12  # iterating again decodes afresh


def test_reader_reads_a_frame_folder_in_natural_order(tmp_path):
    frames = moving_frames(11, 16, 24)
    with FrameWriter(tmp_path / "out") as writer:
        for frame in frames:
            writer.write(frame)
    folder = tmp_path / "renamed"
    folder.mkdir()
    for i, png in enumerate(sorted((tmp_path / "out").glob("*.png"))):
        png.rename(folder / f"frame{i}.png")  # frame10.png sorts after frame9.png only naturally
    (folder / "notes.txt").write_text("not a frame")
    (folder / "._frame0.png").write_bytes(b"macOS metadata, not an image")
    reader = FrameReader(folder, fps=12)
    assert reader.fps == 12 and reader.num_frames == 11 and reader.size == (16, 24)
    np.testing.assert_array_equal(np.stack(list(reader)), frames)  # PNG is lossless
    assert FrameReader(folder).fps == 25  # a folder has no rate of its own


def test_reader_rejects_a_missing_path_and_a_non_video(tmp_path):
    with pytest.raises(VideoError, match="no such video"):
        FrameReader(tmp_path / "nothing.mp4")
    bad = tmp_path / "random.mp4"
    bad.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    with pytest.raises(VideoError, match=r"random\.mp4.*cannot be opened as a video"):
        FrameReader(bad)


def test_reader_raises_on_truncated_videos_instead_of_stopping_early(tmp_path):
    frames = np.random.default_rng(0).integers(0, 256, (40, 32, 32, 3), dtype=np.uint8)
    cases = {
        "indexed.mp4": {"movflags": "+faststart"},  # index first: the decoder hits the cut
        "plain.mkv": {},  # cut at a cluster boundary: decoding just ends, the stored duration tells
        "index_last.mp4": {},  # the cut loses the index: the file cannot even be opened
    }
    for name, options in cases.items():
        path = tmp_path / name
        write_with_pyav(path, frames, 25, options=options)
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
        with pytest.raises(VideoError, match=rf"{name}.*truncated"):
            list(FrameReader(path))


def test_a_whole_video_read_at_another_fps_is_not_called_truncated(tmp_path):
    """``fps=`` sets the output's rate; whether the file ended early is judged at the file's own rate (a 1 s
    Matroska of 24 frames read with fps=120 once failed as "ended after 0.97 of its 1.00 seconds")."""
    frames = np.random.default_rng(0).integers(0, 256, (24, 32, 32, 3), dtype=np.uint8)
    path = tmp_path / "whole.mkv"
    write_with_pyav(path, frames, 24)
    for fps in (None, 120, 1):
        assert len(list(FrameReader(path, fps=fps))) == 24


def test_reader_names_the_first_frame_of_a_different_size(tmp_path):
    for i, (h, w) in enumerate([(16, 16), (16, 16), (16, 20), (8, 8)]):
        with FrameWriter(tmp_path / f"part{i}") as writer:
            writer.write(np.zeros((h, w, 3), np.uint8))
        (tmp_path / f"part{i}" / "00000000.png").rename(tmp_path / f"{i:03d}.png")
    reader = FrameReader(tmp_path)
    with pytest.raises(VideoError, match=r"002\.png is 20x16 but 000\.png is 16x16"):
        list(reader)


def test_reader_rejects_an_empty_folder(tmp_path):
    (tmp_path / "readme.txt").write_text("no frames here")
    with pytest.raises(VideoError, match="holds no frames"):
        FrameReader(tmp_path)


def test_writer_encodes_h264_with_the_given_rate_and_bt709_tags(tmp_path):
    frames = moving_frames(10, 32, 48)
    with FrameWriter(tmp_path / "out.mp4", Fraction(24000, 1001), crf=12) as writer:
        for frame in frames:
            writer.write(frame)
    assert writer.codec == "libx264"
    assert entries(tmp_path) == ["out.mp4"]
    with av.open(str(tmp_path / "out.mp4")) as container:
        stream = container.streams.video[0]
        assert stream.average_rate == Fraction(24000, 1001)
        assert stream.codec_context.name == "h264" and stream.codec_context.pix_fmt == "yuv420p"
        decoded = [frame for frame in container.decode(stream)]
    assert decoded[0].colorspace == 1  # AVCOL_SPC_BT709, as the encoder was told
    rgb = np.stack([frame.to_ndarray(format="rgb24") for frame in decoded])
    assert rgb.shape == frames.shape
    assert np.abs(rgb.astype(float) - frames).mean() < 6  # ~50 for frames out of order


@pytest.mark.skipif("libvpx-vp9" not in av.codecs_available, reason="this PyAV build has no VP9 encoder")
def test_writer_encodes_webm_with_vp9(tmp_path):
    frames = moving_frames(6, 32, 32)
    with FrameWriter(tmp_path / "out.webm", 10) as writer:
        for frame in frames:
            writer.write(frame)
    reader = FrameReader(tmp_path / "out.webm")
    assert (reader.codec, reader.fps, reader.expected_frames) == ("vp9", 10, 6)
    assert np.abs(np.stack(list(reader)).astype(float) - frames).mean() < 12


def test_writer_writes_png_frames_losslessly(tmp_path):
    frames = np.random.default_rng(1).integers(0, 256, (3, 5, 7, 3), dtype=np.uint8)  # odd sizes are fine
    with FrameWriter(tmp_path / "frames") as writer:
        for frame in frames:
            writer.write(frame)
    # The frames, and the marker that tells vsr's own output folder apart (overwrite replaces only that).
    assert entries(tmp_path / "frames") == [OUTPUT_MARKER, "00000000.png", "00000001.png", "00000002.png"]
    assert json.loads((tmp_path / "frames" / OUTPUT_MARKER).read_text()) == {"written_by": "vsr", "frames": 3}
    for i, frame in enumerate(frames):
        with av.open(str(tmp_path / "frames" / f"{i:08d}.png")) as container:
            np.testing.assert_array_equal(next(container.decode(video=0)).to_ndarray(format="rgb24"), frame)


@pytest.mark.parametrize("name", ["out.mp4", "out"])
def test_writer_refuses_an_existing_output_unless_overwrite(tmp_path, name):
    def write(value, **kwargs):
        with FrameWriter(tmp_path / name, **kwargs) as writer:
            writer.write(np.full((8, 8, 3), value, np.uint8))

    write(10)
    with pytest.raises(VideoError, match=r"already exists; pass --overwrite"):
        write(200)
    write(200, overwrite=True)
    assert entries(tmp_path) == [name]  # the old output moved aside and deleted, no temporaries left
    (frame,) = list(FrameReader(tmp_path / name))
    assert abs(float(frame.mean()) - 200) < 3


@pytest.mark.parametrize("name", ["out.mkv", "out"])
def test_writer_removes_its_partial_output_on_error(tmp_path, name):
    with pytest.raises(RuntimeError, match="stop"), FrameWriter(tmp_path / name) as writer:
        for i in range(6):
            if i == 4:
                raise RuntimeError("stop")
            writer.write(np.full((8, 8, 3), 40 * i, np.uint8))
    assert writer.frames_written == 4
    assert entries(tmp_path) == []


def test_writer_checks_sizes_and_extensions_up_front(tmp_path):
    with pytest.raises(VideoError, match=r"needs an even frame size, got 33x20"):
        FrameWriter(tmp_path / "odd.mp4", size=(20, 33))
    with pytest.raises(VideoError, match=r"unknown output extension '\.xyz'"):
        FrameWriter(tmp_path / "clip.xyz")
    with pytest.raises(VideoError, match="no frames were written"), FrameWriter(tmp_path / "empty.mp4"):
        pass
    with FrameWriter(tmp_path / "odd444.mkv", size=(20, 33), pix_fmt="yuv444p") as writer:
        writer.write(np.zeros((20, 33, 3), np.uint8))
    assert entries(tmp_path) == ["odd444.mkv"]
