"""ONNX export: BasicVSR and IconVSR (small widths) run in ONNX Runtime and agree with PyTorch within 1e-4 at
sizes and batches other than the traced ones (a file of a fixed batch refuses another one by name);
``vsr upscale model.onnx`` runs an exported model through the same chunks and tiles as the PyTorch model
(frames on disk compared); a model of fixed frames per call gets windows of exactly that many frames; a
component that cannot be exported is named."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from tiny import SMALL
from torch import nn
from typer.testing import CliRunner

from vsr import VSRError, build_model, save_checkpoint
from vsr.cli import app
from vsr.components import REGISTRY
from vsr.components.upsampling import PixelShuffleUpsampling
from vsr.export import export_onnx, load_onnx
from vsr.recipe import load_recipe
from vsr.upscale import _windows, chunk_plan, reflected_indices, upscale

# The onnx extra (pip install -e '.[onnx]'); without it, or with an install that fails to load, these tests skip.
NO_ONNX = "ONNX export needs the onnx extra: pip install -e '.[onnx]'"
onnx = pytest.importorskip("onnx", reason=NO_ONNX, exc_type=ImportError)
pytest.importorskip("onnxruntime", reason=NO_ONNX, exc_type=ImportError)

SMALL_REFILL = ["model.refill.num_extract_blocks=1", "model.refill.deform_groups=2", "model.refill.keyframe_stride=3"]
MODELS = {"basicvsr": SMALL, "iconvsr": SMALL + SMALL_REFILL}
TOLERANCE = 1e-4


def small(name: str) -> nn.Module:
    torch.manual_seed(0)
    return build_model(name, *MODELS[name]).eval()


@pytest.mark.parametrize("name", ["basicvsr", "iconvsr"])
def test_export_agrees_with_pytorch_in_onnxruntime_within_1e_4(name, tmp_path):
    model, frames = small(name), 6
    summary = export_onnx(model, tmp_path / f"{name}.onnx", frames)
    assert summary.max_difference and max(summary.max_difference.values()) <= TOLERANCE
    runner = load_onnx(tmp_path / f"{name}.onnx")
    assert (runner.scale, runner.frames_per_call) == (4, frames)
    meta = {p.key: p.value for p in onnx.load(str(tmp_path / f"{name}.onnx")).metadata_props}
    assert meta["vsr.scale"] == "4" and meta["vsr.frames"] == "6"
    # sizes the check did not use: odd, not multiples of the refill's 4 or SPyNet's 4, wider than tall; 3 clips
    for shape in [(1, frames, 3, 13, 30), (3, frames, 3, 16, 12)]:
        lrs = torch.rand(*shape)
        with torch.no_grad():
            expected = model(lrs)
        got = runner(lrs)
        assert got.shape == expected.shape == (shape[0], frames, 3, 4 * shape[3], 4 * shape[4])
        assert (got - expected).abs().max().item() <= TOLERANCE, shape
    with pytest.raises(VSRError, match=r"takes \(n, 6, 3, h, w\).*got \(1, 5, 3, 8, 8\)"):
        runner(torch.rand(1, 5, 3, 8, 8))


def test_a_file_of_a_fixed_batch_refuses_another_batch_by_name(tmp_path):
    """A file whose batch is fixed (exported elsewhere, or by vsr before the batch was dynamic) runs that batch
    and refuses another with a message, not ONNX Runtime's error."""
    model, frames = small("basicvsr"), 3
    export_onnx(model, tmp_path / "m.onnx", frames, check=False)
    graph = onnx.load(str(tmp_path / "m.onnx"))
    graph.graph.input[0].type.tensor_type.shape.dim[0].dim_value = 1  # the batch fixed at one clip
    onnx.save(graph, str(tmp_path / "one.onnx"))
    runner = load_onnx(tmp_path / "one.onnx")
    lrs = torch.rand(2, frames, 3, 8, 8)
    with torch.no_grad():
        assert (runner(lrs[:1]) - model(lrs[:1])).abs().max().item() <= TOLERANCE
    with pytest.raises(VSRError, match=r"one\.onnx was exported for a batch of 1 clip\(s\) only; got 2\. Run the "
                                       r"clips one call each, or export the model again"):  # fmt: skip
        runner(lrs)


class FixedFrames(nn.Module):
    """A PyTorch model that, like an exported one, declares the frames it takes per call."""

    def __init__(self, model: nn.Module, frames: int):
        super().__init__()
        self.model, self.scale, self.frames_per_call = model, model.scale, frames

    def forward(self, lrs):
        assert lrs.shape[1] == self.frames_per_call
        return self.model(lrs)


def test_vsr_upscale_runs_an_exported_model_through_the_same_chunks_and_tiles(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    model, frames = small("basicvsr"), 5
    recipe = load_recipe("basicvsr", *SMALL).to_dict()
    save_checkpoint(model, tmp_path / "small.pth", recipe=recipe)
    rng = np.random.default_rng(0)
    lr = rng.integers(0, 256, (9, 10, 14, 3), dtype=np.uint8)
    (tmp_path / "lr").mkdir()
    for i, frame in enumerate(lr):
        Image.fromarray(frame).save(tmp_path / "lr" / f"{i:08d}.png")

    runner = CliRunner()
    exported = runner.invoke(app, ["export", "small.pth", "-o", "small.onnx", "--frames", str(frames)])
    assert exported.exit_code == 0, exported.output
    assert "agrees with PyTorch" in exported.output
    args = ["upscale", "small.onnx", "lr", "-o", "out", "--chunk-overlap", "1", "--tile", "8", "--tile-overlap", "2"]
    upscaled = runner.invoke(app, args)
    assert upscaled.exit_code == 0, upscaled.output
    written = np.stack([np.asarray(Image.open(p)) for p in sorted((tmp_path / "out").glob("*.png"))])

    expected = upscale(FixedFrames(model, frames), torch.from_numpy(lr).permute(0, 3, 1, 2).float() / 255,
                       device="cpu", chunk_overlap=1, tile=8, tile_overlap=2, progress=False)  # fmt: skip
    expected = (expected.clamp(0, 1) * 255).round().permute(0, 2, 3, 1).numpy()
    assert written.shape == (9, 40, 56, 3)
    assert np.abs(written.astype(np.int16) - expected).max() <= 1  # float differences of 1e-6 may round apart


def test_windows_hold_exactly_the_frames_per_call_and_keep_each_frame_once():
    stream = (torch.full((3, 2, 2), i / 20) for i in range(12))
    kept = []
    for clip, keep_start, keep_stop in _windows(stream, length=5, overlap=1):
        assert clip.shape[0] == 5
        indices = [round(v * 20) for v in clip[:, 0, 0, 0].tolist()]
        assert indices == list(range(indices[0], indices[0] + 5))  # consecutive frames of the video
        for position in range(keep_start, keep_stop):
            frame = indices[position]
            kept.append(frame)
            before, after = position, 4 - position
            assert before >= min(1, frame) and after >= min(1, 11 - frame)  # warm-up wherever the video has it
    assert kept == list(range(12))


def test_a_video_shorter_than_the_frames_per_call_is_reflected():
    assert reflected_indices(3, 7) == [0, 1, 2, 1, 0, 1, 2] and reflected_indices(1, 3) == [0, 0, 0]
    stream = (torch.full((3, 2, 2), i / 10) for i in range(3))
    ((clip, keep_start, keep_stop),) = list(_windows(stream, length=5, overlap=1))
    assert [round(v * 10) for v in clip[:, 0, 0, 0].tolist()] == [0, 1, 2, 1, 0]
    assert (keep_start, keep_stop) == (0, 3)


def test_chunks_of_a_fixed_frames_model():
    fixed = FixedFrames(small("basicvsr"), 10)
    assert chunk_plan(fixed, 30, None) == (10 - 2 * 2, 2)  # default warm-up: (T - 1) // 4
    assert chunk_plan(fixed, None, 4) == (2, 4)
    with pytest.raises(VSRError, match=r"takes 10 frames per call.*chunk_overlap=5.*<= 4"):
        chunk_plan(fixed, None, 5)
    assert chunk_plan(small("basicvsr"), 30, None) == (30, 8)


class HistogramUpsampling(PixelShuffleUpsampling):
    """An upsampler whose histogram (``torch.histc``) has no ONNX form."""

    def forward(self, feat, lr):
        return super().forward(feat, lr) + 0 * torch.histc(feat, bins=4).sum()


def test_a_component_that_cannot_be_exported_is_named(tmp_path, monkeypatch):
    monkeypatch.setitem(REGISTRY["upsampling"], "histogram", HistogramUpsampling)
    model = build_model("basicvsr", *SMALL, "model.upsampling.name=histogram").eval()
    with pytest.raises(VSRError, match=r"cannot export to ONNX: upsampling component 'histogram' "
                                       r"\(HistogramUpsampling at upsampling\), which calls histc, failed: "
                                       r".*'aten::histc' to ONNX opset version 17 is not supported"):  # fmt: skip
        export_onnx(model, tmp_path / "m.onnx", 3)
    assert list(tmp_path.iterdir()) == []  # nothing left that looks like an export
