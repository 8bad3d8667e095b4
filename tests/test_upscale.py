"""Chunked and tiled streaming inference (vsr.upscale) against whole-video inference of a test model whose
temporal and spatial reach are known, so every tolerance below is derived rather than guessed."""

from __future__ import annotations

import itertools
from fractions import Fraction

import av
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from vsr.errors import VideoError, VSRError
from vsr.upscale import tile_spans, upscale, upscale_frames
from vsr.video import OUTPUT_MARKER, FrameWriter

REACH = 2  # LR pixels: a 3x3 conv before and a 3x3 conv after the pixel-wise recurrence


class DecayingRecurrentVSR(nn.Module):
    """Test-only bidirectional recurrent VSR model with a known reach in time and space.

    ``f_i = tanh(conv3x3(x_i))`` (so ``|f| <= 1``); backward and forward states ``s_i = d * s_{i-/+1} +
    (1 - d) * f_i`` per pixel; ``y_i = pixel_shuffle(conv3x3([b_i, s_i, f_i])) + bilinear(x_i)``.
    A frame ``k`` steps away enters a state with weight ``(1 - d) * d**k``, and an HR pixel depends on LR
    pixels at most ``REACH`` away. Shapes: ``(b, t, 3, h, w) -> (b, t, 3, s*h, s*w)``.
    """

    def __init__(self, scale: int = 2, channels: int = 4, decay: float = 0.5, seed: int = 0):
        super().__init__()
        self.scale, self.channels, self.decay = scale, channels, decay
        self.encode = nn.Conv2d(3, channels, 3, padding=1)
        self.decode = nn.Conv2d(3 * channels, 3 * scale * scale, 3, padding=1)
        generator = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            # A small decoder keeps the output close to bilinear(x): smooth enough for lossy codecs.
            for parameter, std in [
                *((p, 0.3) for p in self.encode.parameters()),
                *((p, 0.005) for p in self.decode.parameters()),
            ]:
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t = x.shape[:2]
        feats = torch.tanh(self.encode(x.flatten(0, 1))).unflatten(0, (b, t))
        backward, forward = [None] * t, [None] * t
        state = torch.zeros_like(feats[:, 0])
        for i in reversed(range(t)):
            state = backward[i] = self.decay * state + (1 - self.decay) * feats[:, i]
        state = torch.zeros_like(feats[:, 0])
        for i in range(t):
            state = forward[i] = self.decay * state + (1 - self.decay) * feats[:, i]
        hidden = torch.cat([torch.stack(backward, 1), torch.stack(forward, 1), feats], 2).flatten(0, 1)
        out = F.pixel_shuffle(self.decode(hidden), self.scale)
        base = F.interpolate(x.flatten(0, 1), scale_factor=self.scale, mode="bilinear", align_corners=False)
        return (out + base).unflatten(0, (b, t))

    def chunk_error_bound(self, overlap: int) -> float:
        """Max |output error| of a chunk with ``overlap`` warm-up frames, from the decay alone.

        A kept frame is at least ``overlap`` frames inside its chunk, so each state misses terms of total
        weight ``sum_{k > overlap} (1 - d) d^k = d^(overlap + 1)`` (times ``|f| <= 1``); the decode conv
        maps state errors to an output channel with at most the l1 norm of its state weights.
        """
        state_weights = self.decode.weight.detach()[:, : 2 * self.channels].abs().sum(dim=(1, 2, 3)).max()
        return self.decay ** (overlap + 1) * state_weights.item()


def frames_tensor(t: int, h: int = 24, w: int = 32, seed: int = 0) -> torch.Tensor:
    return torch.rand(t, 3, h, w, generator=torch.Generator().manual_seed(seed))


def whole_video(model: nn.Module, frames: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(frames[None])[0]


def quantize(x: torch.Tensor) -> np.ndarray:
    """``(t, 3, h, w)`` float -> ``(t, h, w, 3)`` uint8, as a writer stores it."""
    return x.clamp(0, 1).mul(255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()


def run(model, source, output=None, **kwargs):
    """:func:`upscale` on the CPU (whole-video references run there too), without a progress bar."""
    return upscale(model, source, output, device="cpu", progress=False, **kwargs)


def entries(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


# -- temporal chunks -------------------------------------------------------------------------------------


def test_chunks_match_whole_video_within_the_decay_bound_and_warm_up_matters():
    model, frames = DecayingRecurrentVSR(), frames_tensor(40)
    reference = whole_video(model, frames)
    errors = {}
    for overlap in (0, 2, 8):
        out = run(model, frames, chunk_size=7, chunk_overlap=overlap)
        assert out.shape == (40, 3, 48, 64)
        errors[overlap] = (out - reference).abs().max().item()
        assert errors[overlap] <= model.chunk_error_bound(overlap) + 1e-5
    # Cold chunk starts are far outside the tolerance that 8 warm-up frames meet.
    assert errors[0] > model.chunk_error_bound(8)
    assert errors[0] > 30 * errors[8]
    assert errors[0] > errors[2] > errors[8]


@pytest.mark.parametrize("chunk_size", [12, 100, None])
def test_a_single_chunk_is_exactly_the_whole_video(chunk_size):
    model, frames = DecayingRecurrentVSR(scale=3), frames_tensor(12)
    out = run(model, frames, chunk_size=chunk_size, chunk_overlap=4)
    torch.testing.assert_close(out, whole_video(model, frames), rtol=0, atol=1e-6)


def test_the_source_is_pulled_lazily_through_a_bounded_buffer():
    chunk_size, overlap, length = 6, 3, 40
    pulled = 0

    def source():
        nonlocal pulled
        for frame in frames_tensor(length, 8, 8):
            pulled += 1
            yield frame

    ahead = []
    model = DecayingRecurrentVSR()
    stream = upscale_frames(model, source(), chunk_size=chunk_size, chunk_overlap=overlap, device="cpu")
    for produced, _ in enumerate(stream, start=1):
        ahead.append(pulled - produced)
    assert produced == length and pulled == length
    assert max(ahead) <= chunk_size + 2 * overlap  # independent of the length: memory does not grow
    assert max(ahead) >= chunk_size  # frames really are pulled a chunk at a time, not one by one


# -- spatial tiles ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("length", "tile", "overlap"), [(32, 12, 2), (24, 12, 3), (50, 17, 4), (10, 12, 3), (9, 3, 1)])
def test_tile_cores_partition_the_axis_away_from_tile_borders(length, tile, overlap):
    spans = tile_spans(length, tile, overlap)
    assert spans[0].core_start == 0 and spans[-1].core_stop == length
    for span, after in itertools.pairwise(spans):
        assert span.core_stop == after.core_start
    for span in spans:
        assert span.stop - span.start == min(tile, length) and span.start >= 0 and span.stop <= length
        assert span.core_start < span.core_stop
        assert span.core_start == 0 or span.core_start - span.start >= overlap
        assert span.core_stop == length or span.stop - span.core_stop >= overlap


def test_tiles_match_whole_frames_when_the_margin_covers_the_reach():
    model, frames = DecayingRecurrentVSR(), frames_tensor(6)
    reference = whole_video(model, frames)
    tiled = run(model, frames, tile=(10, 13), tile_overlap=REACH)
    torch.testing.assert_close(tiled, reference, rtol=0, atol=1e-5)
    # Without a margin the zero padding at tile borders shows as seams.
    seams = run(model, frames, tile=(10, 13), tile_overlap=0)
    assert (seams - reference).abs().max() > 1e-2


def test_tiles_and_chunks_combine():
    model, frames = DecayingRecurrentVSR(), frames_tensor(16, 16, 20)
    out = run(model, frames, chunk_size=6, chunk_overlap=5, tile=10, tile_overlap=REACH)
    assert (out - whole_video(model, frames)).abs().max() <= model.chunk_error_bound(5) + 1e-5


def test_bfloat16_autocast_stays_close_to_float32():
    model, frames = DecayingRecurrentVSR(), frames_tensor(5)
    out = run(model, frames, dtype="bfloat16", channels_last=True)
    assert out.dtype == torch.float32
    # bfloat16 keeps 8 bits of mantissa: errors of a few 1e-2 after two convs, not more.
    assert (out - whole_video(model, frames)).abs().max() < 0.1


# -- files end to end ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def input_video(tmp_path_factory):
    """12 frames of 32x32 h264 at 30000/1001 fps, written by plain PyAV; and its decoded frames.

    Smooth waves moving 3 pixels a frame: easy for the codec, yet each frame distinct from its neighbours.
    """
    path = tmp_path_factory.mktemp("input") / "clip.mp4"
    y, x = np.mgrid[0:32, 0:32].astype(np.float64)
    frames = [
        np.stack(
            [128 + 90 * np.sin((x + 3 * i) / 6), 128 + 90 * np.cos((y - 3 * i) / 8), 128 + 50 * np.sin((x + y) / 9)], -1
        )
        for i in range(12)
    ]
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=Fraction(30000, 1001))
        stream.width = stream.height = 32
        stream.pix_fmt = "yuv420p"
        for frame in frames:
            image = av.VideoFrame.from_ndarray(np.round(frame).astype(np.uint8), format="rgb24")
            for packet in stream.encode(image):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    with av.open(str(path)) as container:
        decoded = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])
    return path, torch.from_numpy(decoded).permute(0, 3, 1, 2).float() / 255


def test_video_to_png_folder_is_the_model_output(input_video, tmp_path):
    path, lr = input_video
    model = DecayingRecurrentVSR()
    summary = run(model, path, tmp_path / "frames", chunk_size=5, chunk_overlap=3)
    assert summary.frames == 12 and summary.size == (64, 64) and summary.fps == Fraction(30000, 1001)
    names = [name for name in entries(tmp_path / "frames") if name != OUTPUT_MARKER]
    assert names == [f"{i:08d}.png" for i in range(12)] and (tmp_path / "frames" / OUTPUT_MARKER).is_file()
    pngs = []
    for name in names:
        with av.open(str(tmp_path / "frames" / name)) as container:
            pngs.append(next(container.decode(video=0)).to_ndarray(format="rgb24"))
    diff = np.abs(np.stack(pngs).astype(int) - quantize(whole_video(model, lr)))
    assert diff.max() <= np.ceil(255 * model.chunk_error_bound(3)) + 1  # chunking error, plus a rounding step


def test_video_to_mp4_keeps_count_size_and_rate(input_video, tmp_path):
    path, lr = input_video
    model = DecayingRecurrentVSR()
    run(model, path, tmp_path / "out.mp4")
    with av.open(str(tmp_path / "out.mp4")) as container:
        stream = container.streams.video[0]
        assert stream.average_rate == Fraction(30000, 1001)
        hr = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(stream)])
    assert hr.shape == (12, 64, 64, 3)
    # Compared on luma (BT.709 weights), which 4:2:0 keeps at full resolution: ~39.5 dB measured,
    # frames off by one would give ~23 dB.
    luma = np.array([0.2126, 0.7152, 0.0722])
    mse = np.mean((hr @ luma - quantize(whole_video(model, lr)) @ luma) ** 2)
    assert 10 * np.log10(255**2 / mse) > 35
    assert entries(tmp_path) == ["out.mp4"]


def test_png_folder_input_uses_the_given_rate(tmp_path):
    lr = quantize(frames_tensor(9, 16, 20))
    with FrameWriter(tmp_path / "input") as writer:
        for frame in lr:
            writer.write(frame)
    summary = run(DecayingRecurrentVSR(), tmp_path / "input", tmp_path / "out.mkv", fps=12)
    assert (summary.frames, summary.size, summary.fps) == (9, (32, 40), 12)
    with av.open(str(tmp_path / "out.mkv")) as container:
        stream = container.streams.video[0]
        assert stream.average_rate == 12
        assert sum(1 for _ in container.decode(stream)) == 9
        assert (stream.codec_context.height, stream.codec_context.width) == (32, 40)


# -- errors ----------------------------------------------------------------------------------------------


class FailsAtFrame(DecayingRecurrentVSR):
    """Raises once the chunk it is given reaches video frame ``fail_at`` (counting frames seen)."""

    def __init__(self, fail_at: int):
        super().__init__()
        self.fail_at, self.seen = fail_at, 0

    def forward(self, x):
        self.seen += x.shape[1]
        if self.seen > self.fail_at:
            raise RuntimeError(f"model failed at frame {self.fail_at}")
        return super().forward(x)


@pytest.mark.parametrize("name", ["out.mp4", "frames"])
def test_a_failure_mid_write_leaves_no_output(tmp_path, name):
    frames = frames_tensor(12, 16, 16)
    with pytest.raises(RuntimeError, match="failed at frame 5"):
        run(FailsAtFrame(5), frames, tmp_path / name, chunk_size=4, chunk_overlap=0)
    assert entries(tmp_path) == []

    def interrupted():
        yield from frames[:7]
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run(DecayingRecurrentVSR(), interrupted(), tmp_path / name, chunk_size=3)
    assert entries(tmp_path) == []


def test_an_existing_output_needs_overwrite(tmp_path):
    frames = frames_tensor(3, 8, 8)
    run(DecayingRecurrentVSR(), frames, tmp_path / "out.mkv")
    with pytest.raises(VideoError, match="already exists; pass --overwrite"):
        run(DecayingRecurrentVSR(), frames, tmp_path / "out.mkv")
    summary = run(DecayingRecurrentVSR(), frames, tmp_path / "out.mkv", overwrite=True)
    assert summary.frames == 3 and entries(tmp_path) == ["out.mkv"]


def test_bad_inputs_are_named(tmp_path):
    bad = tmp_path / "noise.mp4"
    bad.write_bytes(np.random.default_rng(0).integers(0, 256, 2048, dtype=np.uint8).tobytes())
    with pytest.raises(VideoError, match=r"noise\.mp4.*cannot be opened as a video"):
        run(DecayingRecurrentVSR(), bad, tmp_path / "out.mp4")
    with FrameWriter(tmp_path / "frames") as writer:
        writer.write(np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(VideoError, match="the output is the input"):
        run(DecayingRecurrentVSR(), tmp_path / "frames", tmp_path / "frames", overwrite=True)
    assert entries(tmp_path / "frames") == [OUTPUT_MARKER, "00000000.png"]
    assert entries(tmp_path) == ["frames", "noise.mp4"]


def test_a_model_with_the_wrong_output_shape_is_rejected():
    class NoUpscaling(nn.Module):
        scale = 2

        def forward(self, x):
            return x

    with pytest.raises(VSRError, match=r"returned \(1, 4, 3, 8, 8\).*expected \(1, 4, 3, 16, 16\)"):
        run(NoUpscaling(), frames_tensor(4, 8, 8))
    with pytest.raises(VSRError, match="no integer attribute 'scale'"):
        run(nn.Identity(), frames_tensor(4, 8, 8))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"chunk_size": 0}, r"chunk_size must be an int >= 1"),
        ({"chunk_overlap": -1}, r"chunk_overlap must be an int >= 0"),
        ({"tile": 8, "tile_overlap": 4}, r">= 9 for tile_overlap=4; got 8"),
        ({"tile": (16, 16, 16)}, r"tile must be an int or an \(h, w\) pair"),
        ({"tile_overlap": -2}, r"tile_overlap must be an int >= 0"),
        ({"dtype": "float64"}, r"dtype must be one of float32, bfloat16, float16"),
        ({"dtype": "float16"}, r"float16' needs a GPU"),
    ],
)
def test_invalid_parameters_say_the_valid_range(kwargs, message, tmp_path):
    with pytest.raises(ValueError, match=message):
        run(DecayingRecurrentVSR(), frames_tensor(4, 8, 8), tmp_path / "out.mp4", **kwargs)
    assert entries(tmp_path) == []


def test_writer_arguments_need_an_output():
    with pytest.raises(ValueError, match=r"writer arguments \(crf\) need an output path"):
        run(DecayingRecurrentVSR(), frames_tensor(2, 8, 8), crf=20)


def test_the_progress_bar_counts_frames(capsys):
    upscale(DecayingRecurrentVSR(), frames_tensor(12, 8, 8), device="cpu", chunk_size=5, progress=True)
    shown = capsys.readouterr().out
    assert "12/12" in shown and "frames/s" in shown
