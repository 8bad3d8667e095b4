"""Evaluation: the numbers recorded by training validation equal evaluate() on the saved checkpoint; per-frame
scores checked against an independent computation from the PNG files on disk (RGB, Y, Vimeo-90K-T centre
frame of a mirrored clip, truncated clips); files written; errors named; the recipe's metrics, a lower-is-better
and a no-reference one among them, scored per frame under their own names."""

from __future__ import annotations

import csv
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from metric_plugins import AbsoluteError
from PIL import Image
from tiny import TINY_DATA, TINY_MODEL, tiny_synth

from vsr import CheckpointError, VSRError
from vsr.checkpoints import load_checkpoint
from vsr.evaluate import Bicubic, Protocol, evaluate, measure, prepare
from vsr.model import assemble
from vsr.recipe import load_recipe
from vsr.training import train

RECIPE = {
    "name": "tiny",
    "model": TINY_MODEL,
    "data": TINY_DATA,
    "train": {"iterations": 3, "periods": [3], "lr": 1e-3, "fix_iterations": 0, "val_every": 2, "log_every": 1},
}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval") / "set"
    tiny_synth(root)
    result = train(RECIPE, root.parent / "run", data=root, progress=False)
    return root, result


def read_png(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"), dtype=np.float64) / 255


def psnr_np(a: np.ndarray, b: np.ndarray, y: bool = False) -> float:
    """PSNR on the 0..255 scale of (h, w, 3) arrays in [0, 1]; BT.601 Y (MATLAB rgb2ycbcr) with ``y``."""
    if y:
        weights = np.array([65.481, 128.553, 24.966])
        a, b = a @ weights + 16, b @ weights + 16
    else:
        a, b = a * 255, b * 255
    return 10 * np.log10(255**2 / np.mean((a - b) ** 2))


def model_output(checkpoint: Path, lr_frames: list[np.ndarray]) -> np.ndarray:
    """The trained model on frames read independently of the data set code, ``(t, H, W, 3)`` clamped."""
    model = assemble(load_recipe(RECIPE).model).eval()
    load_checkpoint(model, checkpoint)
    lq = torch.from_numpy(np.stack(lr_frames)).permute(0, 3, 1, 2).float()[None]
    with torch.no_grad():
        return model(lq)[0].clamp(0, 1).permute(0, 2, 3, 1).double().numpy()


def val_frames(root: Path) -> tuple[list[np.ndarray], list[np.ndarray], list[str]]:
    gt_dir = root / "val" / "GT" / "chelsea_000"
    names = sorted(p.stem for p in gt_dir.glob("*.png"))
    gts = [read_png(gt_dir / f"{n}.png") for n in names]
    lrs = [read_png(root / "val" / "BIx4" / "chelsea_000" / f"{n}.png") for n in names]
    return lrs, gts, names


def test_evaluate_equals_validation_during_training(run, tmp_path):
    root, result = run
    metrics = evaluate(RECIPE, result.checkpoint, root, out_dir=tmp_path, progress=False)
    assert metrics["psnr"] == result.metrics["psnr"] and metrics["ssim"] == result.metrics["ssim"]
    assert metrics["bicubic"] == {"psnr": result.baseline["psnr"], "ssim": result.baseline["ssim"]}
    assert json.loads((tmp_path / "metrics.json").read_text())["psnr"] == metrics["psnr"]
    # The recipe stored in a vsr checkpoint is enough.
    assert evaluate(None, result.checkpoint, root, progress=False)["psnr"] == metrics["psnr"]


def test_per_frame_scores_match_an_independent_computation(run, tmp_path):
    root, result = run
    metrics = evaluate(RECIPE, result.checkpoint, root, out_dir=tmp_path, save_frames=True, progress=False)
    lrs, gts, names = val_frames(root)
    out = model_output(result.checkpoint, lrs)
    with (tmp_path / "per_frame.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [r["name"] for r in rows] == names and [int(r["frame"]) for r in rows] == list(range(len(names)))
    for i, row in enumerate(rows):
        assert float(row["psnr"]) == pytest.approx(psnr_np(out[i], gts[i]), abs=1e-5)
        assert float(row["psnr"]) > 0 and 0 < float(row["ssim"]) <= 1
    assert metrics["psnr"] == pytest.approx(np.mean([float(r["psnr"]) for r in rows]), abs=1e-9)
    assert metrics["clips"]["chelsea_000"]["frames"] == len(names)
    saved = read_png(tmp_path / "frames" / "chelsea_000" / f"{names[1]}.png")
    np.testing.assert_allclose(saved, np.round(out[1] * 255) / 255, atol=1 / 255 + 1e-9)


def test_bicubic_baseline_is_scored_like_a_model(run):
    root, result = run
    bicubic = evaluate(Bicubic(4), data={"root": root, "split": "val"}, progress=False)
    assert bicubic["psnr"] == pytest.approx(result.baseline["psnr"], abs=1e-12)
    assert bicubic["bicubic"]["psnr"] == pytest.approx(bicubic["psnr"], abs=1e-12)


def test_y_channel_and_truncated_clips(run):
    root, result = run
    metrics = evaluate(RECIPE, result.checkpoint, root, y_channel=True, max_frames=3, progress=False)
    lrs, gts, _ = val_frames(root)
    out = model_output(result.checkpoint, lrs[:3])
    expected = np.mean([psnr_np(out[i], gts[i], y=True) for i in range(3)])
    assert metrics["frames"] == 3 and metrics["protocol"]["y_channel"] is True
    assert metrics["psnr"] == pytest.approx(expected, abs=1e-5)


def test_chunked_clips_are_restored_in_independent_chunks(run):
    """``chunk_frames`` (``data.val_chunk_frames``): each chunk of the clip is a forward pass of its own, every
    frame is still scored, and the output differs from the whole clip's where propagation crossed a cut."""
    root, result = run
    lrs, gts, _ = val_frames(root)
    whole = evaluate(RECIPE, result.checkpoint, root, progress=False)
    chunked = evaluate(load_recipe(RECIPE, "data.val_chunk_frames=2"), result.checkpoint, root, progress=False)
    out = np.concatenate([model_output(result.checkpoint, lrs[i : i + 2]) for i in range(0, len(lrs), 2)])
    expected = np.mean([psnr_np(out[i], gts[i]) for i in range(len(lrs))])
    assert len(lrs) % 2 == 1  # the last chunk is shorter
    assert chunked["frames"] == whole["frames"] == len(lrs) and chunked["protocol"]["chunk_frames"] == 2
    assert chunked["psnr"] == pytest.approx(expected, abs=1e-5)
    assert abs(chunked["psnr"] - whole["psnr"]) > 1e-6  # a 3-iteration model draws little from other frames
    assert evaluate(RECIPE, result.checkpoint, root, chunk_frames=2, progress=False)["psnr"] == chunked["psnr"]
    with pytest.raises(VSRError, match=r"data.val_chunk_frames and data.val_center_frame exclude each other"):
        evaluate(RECIPE, result.checkpoint, root, chunk_frames=2, center_frame=True, progress=False)


def test_vimeo_center_frame_protocol_scores_the_mirrored_centre(run):
    """Vimeo-90K-T: the clip mirrored (5 -> 10 frames), only the centre frame (index 2) scored, as the
    average of its two outputs (indices 2 and 7)."""
    root, result = run
    metrics = evaluate(RECIPE, result.checkpoint, root, center_frame=True, progress=False)
    lrs, gts, _ = val_frames(root)
    out = model_output(result.checkpoint, lrs + lrs[::-1])
    centre = 0.5 * (out[2] + out[7])
    assert metrics["frames"] == 1 and metrics["clips"]["chelsea_000"]["frames"] == 1
    assert metrics["psnr"] == pytest.approx(psnr_np(centre, gts[2]), abs=1e-5)


def test_evaluate_errors_name_the_problem(run, tmp_path):
    root, result = run
    with pytest.raises(VSRError, match=r"needs trained weights; pass checkpoint="):
        evaluate(RECIPE, None, root)
    with pytest.raises(VSRError, match=r"test data .*nowhere does not exist"):
        evaluate(RECIPE, result.checkpoint, tmp_path / "nowhere")
    with pytest.raises(VSRError, match=r"save_frames needs out_dir"):
        evaluate(RECIPE, result.checkpoint, root, save_frames=True)
    with pytest.raises(CheckpointError, match=r"does not match the model"):
        evaluate(load_recipe(RECIPE, "model.channels=16"), result.checkpoint, root)


def test_the_recipes_metrics_are_scored_under_their_names(run, tmp_path):
    """``data.val_metrics`` with a lower-is-better metric registered outside vsr (``abs_error``, mean absolute
    error on 0..255) and a no-reference one (``brightness``, which fails if it is given the GT): per_frame.csv
    and metrics.json carry each by name, checked against numpy on the PNG files."""
    root, result = run
    recipe = load_recipe(RECIPE, ("data.val_metrics", ["abs_error", "psnr", "brightness"]))
    metrics = evaluate(recipe, result.checkpoint, root, out_dir=tmp_path, crop_border=2, progress=False)
    lrs, gts, _ = val_frames(root)
    out = model_output(result.checkpoint, lrs)
    errors = [np.abs(out[i] - gts[i])[2:-2, 2:-2].mean() * 255 for i in range(len(gts))]
    levels = [out[i].mean() * 255 for i in range(len(gts))]
    with (tmp_path / "per_frame.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0])[3:6] == ["abs_error", "psnr", "brightness"]
    np.testing.assert_allclose([float(r["abs_error"]) for r in rows], errors, atol=1e-4)
    np.testing.assert_allclose([float(r["brightness"]) for r in rows], levels, atol=1e-4)
    np.testing.assert_allclose([float(r["psnr"]) for r in rows], [psnr_np(o[2:-2, 2:-2], g[2:-2, 2:-2])
                               for o, g in zip(out, gts, strict=True)], atol=1e-5)  # fmt: skip
    assert metrics["abs_error"] == pytest.approx(np.mean(errors), abs=1e-4)
    assert set(metrics["bicubic"]) == {"abs_error", "psnr", "brightness"} and "ssim" not in metrics
    assert json.loads((tmp_path / "metrics.json").read_text())["protocol"]["metrics"] == recipe.data["val_metrics"]


def test_measure_gives_every_metric_and_the_primary_one(run):
    """What training validation calls: ``measure(...).means()`` is ``{name: clip average}`` for the
    protocol's metrics in order, ``protocol.primary`` the first; the metrics are wired with the protocol's
    border crop, also after :func:`dataclasses.replace`."""
    root, result = run
    protocol = Protocol.from_recipe(load_recipe(RECIPE, ("data.val_metrics", ["abs_error", "ssim"])))
    assert protocol.names == ("abs_error", "ssim") and protocol.primary == "abs_error"
    assert not type(protocol.scorers[0]).higher_is_better
    cropped = replace(protocol, crop_border=3)
    assert isinstance(cropped.scorers[0], AbsoluteError) and cropped.scorers[0].crop_border == 3
    recipe = load_recipe(RECIPE)
    model, _, source, device = prepare(assemble(recipe.model), result.checkpoint, root, "cpu", recipe)
    measured = measure(model, protocol.test_clips(source), protocol, device, bicubic=False)
    assert list(measured.means()) == ["abs_error", "ssim"]
    assert measured.means()["ssim"] == measured.mean("ssim")
    assert "bicubic_abs_error" not in measured.rows[0]
