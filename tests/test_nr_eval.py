"""Evaluation on test sets without ground truth (issue 24: `vsr test` reports NIQE on real low-quality clips): a
folder of LR clips and the real-video set's ``lq`` split open as clips without GT; evaluation scores the
protocol's no-reference metrics on the model's output and on the bicubic baseline, records the metrics it skipped,
and refuses a protocol without a no-reference metric, naming the fix. NIQE is checked against ``vsr.metrics.niqe``
of the frames written by ``--save-frames`` and of MATLAB-bicubic upsampled LR frames read from disk."""

from __future__ import annotations

import csv
import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from skimage import data as skimage_data
from tiny import TINY_MODEL
from typer.testing import CliRunner

from vsr import build_model, save_checkpoint
from vsr.cli import app
from vsr.data import real
from vsr.data.datasets import TestClips, TrainingClips
from vsr.data.degradations import imresize
from vsr.data.layouts import open_dataset
from vsr.errors import DataError, VSRError
from vsr.evaluate import evaluate
from vsr.metrics import niqe
from vsr.recipe import load_recipe

CLIPS, FRAMES = ("a", "b"), 3
LR_SIZE = (48, 64)  # x4: 192x256 outputs, NIQE's 192-pixel minimum


def read_frames(folder: Path) -> torch.Tensor:
    """The PNG frames of a folder, ``(t, 3, h, w)`` in [0, 1], read independently of vsr's data code."""
    arrays = [np.asarray(Image.open(p).convert("RGB")) for p in sorted(folder.glob("*.png"))]
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).double() / 255


@pytest.fixture(scope="module")
def assets(tmp_path_factory) -> Path:
    """``tiny.yaml`` + ``tiny.pth`` (the tiny BasicVSR, random weights) and ``lq/<clip>/`` (2 clips of 3 LR frames
    of 64x48: windows of skimage's astronaut moving a pixel a frame), a folder set without GT."""
    root = tmp_path_factory.mktemp("nr")
    recipe = {"name": "tiny", "model": TINY_MODEL}
    (root / "tiny.yaml").write_text(yaml.safe_dump(recipe))
    torch.manual_seed(0)
    resolved = load_recipe(recipe)
    save_checkpoint(build_model(resolved), root / "tiny.pth", recipe=resolved.to_dict())
    photo = np.asarray(Image.fromarray(skimage_data.astronaut()).resize((128, 128), Image.BICUBIC))
    h, w = LR_SIZE
    for c, clip in enumerate(CLIPS):
        (root / "lq" / clip).mkdir(parents=True)
        for i in range(FRAMES):
            top, left = 20 * c + i, 30 * c + 2 * i
            Image.fromarray(photo[top : top + h, left : left + w]).save(root / "lq" / clip / f"{i:08d}.png")
    return root


def test_a_folder_of_lr_clips_opens_without_gt(assets):
    source = open_dataset(assets / "lq")  # detected: clip folders of frames, no GT/
    assert source.names == list(CLIPS) and not source.has_gt and source.scale == 4
    assert all(clip.gt is None and len(clip) == FRAMES for clip in source)
    assert source.clips[0].frame_names == [f"{i:08d}" for i in range(FRAMES)]
    assert open_dataset({"layout": "folder", "root": assets, "lr": "lq", "scale": 2}).scale == 2
    sample = TestClips(source)[1]
    assert "gt" not in sample and sample["lq"].shape == (FRAMES, 3, *LR_SIZE) and sample["clip"] == "b"
    assert "gt" not in TestClips(source, mirror=True, center_frame_only=True)[0]
    with pytest.raises(DataError, match=r"has no ground truth .* cannot be trained on"):
        TrainingClips(source, num_frames=2, lr_patch=8)
    with pytest.raises(DataError, match=r"has no ground truth .*omit 'degradation'"):
        open_dataset({"root": assets / "lq", "degradation": "bd"})


def test_a_gt_folder_or_a_clip_folder_is_not_read_as_lr_clips(assets, tmp_path):
    shutil.copytree(assets / "lq", tmp_path / "GT")
    for wrong in (tmp_path / "GT", assets / "lq" / "a"):  # a set's GT frames; one clip's frames
        with pytest.raises(DataError, match=r"cannot tell the layout of"):
            open_dataset(wrong)


def test_niqe_of_output_and_bicubic_is_scored_and_psnr_skipped(assets, tmp_path, caplog):
    """``val_metrics: [psnr, niqe]`` on LR clips: niqe equals ``vsr.metrics.niqe`` of the saved output frames
    (clip means, then the mean over clips) and of the bicubic ×4 of the LR frames; psnr is skipped, and said."""
    recipe = load_recipe(assets / "tiny.yaml", "data.val_metrics=[psnr, niqe]")
    with caplog.at_level(logging.WARNING, logger="vsr.evaluate"):
        metrics = evaluate(recipe, assets / "tiny.pth", assets / "lq", out_dir=tmp_path, save_frames=True,
                           progress=False)  # fmt: skip
    assert "no ground truth: scoring niqe; skipped psnr" in caplog.text
    written = json.loads((tmp_path / "metrics.json").read_text())
    assert written == json.loads(json.dumps(metrics))
    assert written["skipped"] == ["psnr"] and "psnr" not in written and set(written["bicubic"]) == {"niqe"}
    assert written["protocol"]["metrics"] == ["psnr", "niqe"] and written["frames"] == len(CLIPS) * FRAMES

    outputs = {clip: read_frames(tmp_path / "frames" / clip) for clip in CLIPS}
    assert all(frames.shape == (FRAMES, 3, 4 * LR_SIZE[0], 4 * LR_SIZE[1]) for frames in outputs.values())
    model = {clip: niqe(frames) for clip, frames in outputs.items()}
    bicubic = {clip: niqe(imresize(read_frames(assets / "lq" / clip), 4.0).clamp(0, 1)) for clip in CLIPS}
    for clip in CLIPS:
        assert written["clips"][clip] == pytest.approx({"niqe": model[clip], "bicubic_niqe": bicubic[clip],
                                                        "frames": FRAMES}, abs=1e-9)  # fmt: skip
    assert written["niqe"] == pytest.approx(np.mean(list(model.values())), abs=1e-9)
    assert written["bicubic"]["niqe"] == pytest.approx(np.mean(list(bicubic.values())), abs=1e-9)
    assert written["niqe"] != pytest.approx(written["bicubic"]["niqe"], abs=1e-3)

    with (tmp_path / "per_frame.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["clip", "frame", "name", "niqe", "bicubic_niqe"] and len(rows) == len(CLIPS) * FRAMES


def test_a_protocol_without_a_no_reference_metric_is_refused_naming_the_fix(assets, tmp_path):
    recipe = load_recipe(assets / "tiny.yaml", "data.val_metrics=[psnr]")
    with pytest.raises(VSRError, match=r"has no ground truth, and every metric .*\(psnr\) needs it"):
        evaluate(recipe, assets / "tiny.pth", assets / "lq", out_dir=tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()  # the folder the failed evaluation created is removed
    args = ["test", str(assets / "tiny.yaml"), "--checkpoint", str(assets / "tiny.pth"), "--data", str(assets / "lq")]
    result = CliRunner().invoke(app, [*args, "--device", "cpu"])  # the default metrics: psnr, ssim
    assert result.exit_code != 0 and "Traceback" not in result.output
    assert "(psnr, ssim) needs it: add a no-reference metric" in " ".join(result.output.split())
    assert "--set 'data.val_metrics=[niqe]'" in " ".join(result.output.split())


def test_vsr_test_reports_niqe_on_the_real_sets_lq_clips(tmp_path, assets):
    """The real-video set's lq split (4 whole 176x144 clips, here of 2 frames), as a mapping and as a path, via
    ``vsr test`` with ``--set 'data.val_metrics=[niqe]'``: 704x576 outputs, NIQE of model and bicubic."""
    info = real.generate(tmp_path / "real", size=(16, 16), frames=2)
    source = open_dataset({"layout": "real", "root": info.root, "split": "lq"})
    assert source.names == sorted(info.clips["lq"]) and not source.has_gt and len(source.clips[0]) == 2
    assert open_dataset(info.root / "lq").names == source.names  # the path form: a folder of LR clips

    out = tmp_path / "eval"
    args = ["test", str(assets / "tiny.yaml"), "--checkpoint", str(assets / "tiny.pth"), "--device", "cpu"]
    result = CliRunner().invoke(app, [*args, "--data", str(info.root / "lq"), "--set", "data.val_metrics=[niqe]",
                                      "--out", str(out), "--save-frames"])  # fmt: skip
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert sorted(metrics["clips"]) == source.names and metrics["frames"] == 2 * len(source)
    assert np.isfinite(metrics["niqe"]) and np.isfinite(metrics["bicubic"]["niqe"]) and "skipped" not in metrics
    first = read_frames(out / "frames" / source.names[0])
    assert first.shape == (2, 3, 576, 704)
    assert metrics["clips"][source.names[0]]["niqe"] == pytest.approx(niqe(first), abs=1e-9)
