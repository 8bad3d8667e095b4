"""The real-video set (vsr.data.real, `vsr data real`): the files, sizes and description it writes, its
frames against an independent decoding, resuming an interrupted write, refusing folders vsr did not write, and
evaluating a model on it."""

from __future__ import annotations

import functools
import hashlib
import json
import statistics
from pathlib import Path

import av
import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from PIL import Image
from tiny import STUDY_RECIPE, TINY_MODEL, tiny_synth
from typer.testing import CliRunner

import vsr.data.real
from vsr.cli import app
from vsr.data import real
from vsr.data.degradations import bi, imresize
from vsr.data.layouts import open_dataset
from vsr.errors import DataError
from vsr.evaluate import evaluate
from vsr.model import build_model
from vsr.probe import FIELD_FILE, GAIN_FILE, SUMMARY_FILE
from vsr.reports import run_and_report
from vsr.studies import runs as run_folders

# 16x16 GT crops (4x4 LR), 3 frames per clip: every clip of the set, in seconds.
SMALL = {"size": (16, 16), "frames": 3}


@pytest.fixture(scope="module")
def small_set(tmp_path_factory) -> real.RealInfo:
    return real.generate(tmp_path_factory.mktemp("real") / "set", **SMALL)


def _digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in root.rglob("*.png")}


def _frames(folder: Path) -> np.ndarray:
    return np.stack([np.asarray(Image.open(p)) for p in sorted(folder.glob("*.png"))])


def test_files_sizes_and_description(small_set):
    root = small_set.root
    meta = real.read_description(root)
    gt_cuts = [c for c in real.CUTS if c.split == "gt"]
    lq_cuts = [c for c in real.CUTS if c.split == "lq"]
    assert small_set.clips == {"gt": [c.name for c in gt_cuts], "lq": [c.name for c in lq_cuts]}
    assert {c.category for c in gt_cuts} == {"camera", "animation"}
    for cut in gt_cuts:
        assert _frames(root / "gt/GT" / cut.name).shape == (3, 16, 16, 3)
        assert _frames(root / "gt/BIx4" / cut.name).shape == (3, 4, 4, 3)
    for cut in lq_cuts:  # whole 176x144 frames: x4 gives 704x576, enough for NIQE's 192-pixel minimum
        assert _frames(root / "lq" / cut.name).shape == (3, 144, 176, 3)
    # The sources' sha256, computed here from the installed package's files.
    folder = real.video_folder()
    for name, source in meta["sources"].items():
        assert source["sha256"] == hashlib.sha256((folder / name).read_bytes()).hexdigest()
        assert source["licence"]
    assert "CC BY 3.0" in meta["sources"]["bigbuckbunny.mp4"]["licence"]
    assert meta["args"] | {"sources": None} == {"version": real.VERSION, "size": [16, 16], "frames": 3, "scale": 4,
                                                "degradation": "bi", "sources": None}  # fmt: skip
    bikes = next(c for c in meta["clips"]["gt"] if c["name"] == "bikes_078")
    assert bikes["frames"] == [78, 81] and bikes["gt_size"] == [16, 16] and bikes["lr_size"] == [4, 4]
    assert not (root.parent / "set.partial").exists()


def test_lr_frames_are_the_bi_degradation_of_the_stored_gt(small_set):
    for name in small_set.clips["gt"]:
        gt = torch.from_numpy(_frames(small_set.root / "gt/GT" / name)).permute(0, 3, 1, 2).double() / 255
        lr = torch.floor(bi(gt, 4).clamp(0, 1) * 255 + 0.5).to(torch.uint8).permute(0, 2, 3, 1).numpy()
        np.testing.assert_array_equal(lr, _frames(small_set.root / "gt/BIx4" / name))


@pytest.mark.parametrize("name", ["carphone_030", "bikes_078", "bunny_050"])
def test_gt_frames_are_the_cut_of_the_video(small_set, name):
    """Each GT clip against FFmpeg's own RGB conversion of the same frames and crop (a different chroma filter,
    so close, not equal): the right frames, the right place, the right shrink."""
    cut = next(c for c in real.CUTS if c.name == name)
    with av.open(str(real.video_folder() / cut.source)) as container:
        frames = [
            f.to_ndarray(format="rgb24") for _, f in zip(range(cut.start + 3), container.decode(video=0), strict=False)
        ]
    video = torch.from_numpy(np.stack(frames[cut.start :])).permute(0, 3, 1, 2).double() / 255
    h, w = video.shape[-2:]
    side = 16 * cut.reduce
    top = min(max(round(cut.centre[0] * h - side / 2), 0), h - side) // 2 * 2
    left = min(max(round(cut.centre[1] * w - side / 2), 0), w - side) // 2 * 2
    expected = imresize(video[..., top : top + side, left : left + side], 1 / cut.reduce) * 255
    stored = torch.from_numpy(_frames(small_set.root / "gt/GT" / name)).permute(0, 3, 1, 2).double()
    assert (stored - expected).abs().mean() < 4
    assert (stored[1:] - stored[:-1]).abs().mean() > 0.1  # frames of a video, not one frame repeated


def test_an_interrupted_write_resumes_with_the_missing_clips_only(small_set, tmp_path, monkeypatch):
    root = tmp_path / "set"
    written: list[str] = []
    original = vsr.data.real._write_cut

    def interrupted_after_five(cut, *args):
        if len(written) == 5:
            raise KeyboardInterrupt
        written.append(cut.name)
        original(cut, *args)

    monkeypatch.setattr(vsr.data.real, "_write_cut", interrupted_after_five)
    with pytest.raises(KeyboardInterrupt):
        real.generate(root, **SMALL)
    assert not root.exists() and (tmp_path / "set.partial" / real.PARTIAL_FILE).is_file()
    first = list(written)
    written.clear()
    monkeypatch.setattr(
        vsr.data.real, "_write_cut", lambda cut, *args: (written.append(cut.name), original(cut, *args))
    )
    info = real.generate(root, **SMALL)
    assert not info.cached and sorted(first + written) == sorted(c.name for c in real.CUTS)
    assert _digest(root) == _digest(small_set.root)
    assert not (tmp_path / "set.partial").exists()
    written.clear()
    assert real.generate(root, **SMALL).cached and written == []  # a finished set is returned as is


def test_folders_vsr_did_not_write_are_refused_and_kept(small_set, tmp_path):
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(DataError, match="is not a real-video set"):
        real.generate(foreign, **SMALL)
    in_the_way = tmp_path / "set.partial"
    in_the_way.mkdir()
    (in_the_way / "notes.txt").write_text("keep me")
    with pytest.raises(DataError, match="vsr did not write it"):
        real.generate(tmp_path / "set", **SMALL)
    assert (foreign / "notes.txt").read_text() == (in_the_way / "notes.txt").read_text() == "keep me"
    with pytest.raises(DataError, match=r"other arguments.*--overwrite"):
        real.generate(small_set.root, size=(32, 32), frames=3)
    with pytest.raises(DataError, match="31 frames per clip do not fit the shots of bikes_000"):
        real.generate(tmp_path / "long", size=(16, 16), frames=31)


def test_vsr_data_real_writes_the_set_and_finds_it_again(small_set, tmp_path):
    runner = CliRunner()
    out = tmp_path / "cli"
    result = runner.invoke(app, ["data", "real", "--out", str(out), "--size", "16", "--frames", "3"])
    assert result.exit_code == 0, result.output
    assert "12 GT clips of 3 frames, GT 16×16, LR 4×4 (BI ×4); 4 low-quality clips without GT" in result.output
    assert _digest(out) == _digest(small_set.root)
    again = runner.invoke(app, ["data", "real", "--out", str(out), "--size", "32", "--frames", "3"])
    assert again.exit_code == 2 and "--overwrite" in again.output


def test_the_set_opens_as_a_layout_and_a_model_evaluates_on_it(small_set, tmp_path):
    clips = open_dataset({"layout": "real", "root": str(small_set.root), "split": "gt"})
    assert clips.names == sorted(small_set.clips["gt"]) and clips.scale == 4
    assert open_dataset(small_set.root).names == clips.names  # detected from real.json
    assert open_dataset(small_set.root / "gt").names == clips.names  # the folder layout
    lq = open_dataset({"layout": "real", "root": str(small_set.root), "split": "lq"})  # clips without GT, for NIQE
    assert lq.names == sorted(small_set.clips["lq"]) and not lq.has_gt and clips.has_gt
    assert all(clip.gt is None and len(clip) == 3 for clip in lq)  # tests/test_nr_eval.py evaluates them
    model = build_model({"name": "tiny", "model": TINY_MODEL}).eval()
    metrics = evaluate(model, data=clips, out_dir=tmp_path / "eval", progress=False)
    assert sorted(metrics["clips"]) == sorted(clips.names) and np.isfinite(metrics["psnr"])
    assert all(clip["frames"] == 3 for clip in metrics["clips"].values())


def test_default_root_is_beside_the_synthetic_set(tmp_path, monkeypatch):
    monkeypatch.setenv("VSR_DATA", str(tmp_path / "sets" / "synth"))
    assert real.default_root() == tmp_path / "sets" / "real"


# ------------------------------------------------------------------------------------------ studies
TINY_RECIPE = {"name": "tiny_real", **STUDY_RECIPE}


def _study(tmp_path: Path, real_data) -> Path:
    (tmp_path / "tiny_real.yaml").write_text(yaml.safe_dump(TINY_RECIPE))
    preset = {"recipe": str(tmp_path / "tiny_real.yaml"), "seeds": 2, "profile": False, "real_data": real_data,
              "data": {"train": {"layout": "synth", "root": "{data}", "split": "train"},
                       "val": {"layout": "synth", "root": "{data}", "split": "val"}}}  # fmt: skip
    study = {"name": "mini_real", "base": "bidirectional", "metrics": ["psnr", "ssim"], "presets": {"cpu": preset},
             "variants": {"unidirectional": ["model.propagation=unidirectional"], "bidirectional": []}}  # fmt: skip
    path = tmp_path / "mini_real.yaml"
    path.write_text(yaml.safe_dump(study, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory) -> Path:
    return tiny_synth(tmp_path_factory.mktemp("synth") / "data")


def _clip_average(frame: pd.DataFrame, column: str) -> float:
    return frame.groupby("clip")[column].mean().mean()


def test_a_study_reports_the_real_columns_from_the_runs_real_files(small_set, synth_root, tmp_path):
    runs, report = tmp_path / "runs", tmp_path / "report"
    real_data = {"layout": "real", "root": str(small_set.root)}
    run_and_report(_study(tmp_path, real_data), data=synth_root, out=runs, report=report, progress=False)
    table = pd.read_csv(report / "results.csv").set_index("variant")
    for variant in ("unidirectional", "bidirectional"):
        psnrs, gains, synthetic = [], [], []
        for seed in (0, 1):
            run = runs / f"mini_real/{variant}/seed{seed}"
            per_frame = pd.read_csv(run / "real/per_frame.csv", dtype={"clip": str})
            assert sorted(per_frame["clip"].unique()) == sorted(small_set.clips["gt"])
            psnrs.append(_clip_average(per_frame, "psnr"))
            gains.append(
                _clip_average(pd.read_csv(run / "real/temporal/temporal_gain.csv", dtype={"clip": str}), "gain")
            )
            synthetic.append(_clip_average(pd.read_csv(run / "per_frame.csv", dtype={"clip": str}), "psnr"))
            record = json.loads((run / "run.json").read_text())["real"]
            assert record["metrics"]["psnr"] == pytest.approx(psnrs[-1], abs=1e-9) and record["clips"] == 12
        assert table.loc[variant, "psnr_real_mean"] == pytest.approx(statistics.mean(psnrs), abs=1e-9)
        assert table.loc[variant, "psnr_real_std"] == pytest.approx(statistics.stdev(psnrs), abs=1e-9)
        assert table.loc[variant, "temporal_gain_real_mean"] == pytest.approx(statistics.mean(gains), abs=1e-9)
        assert table.loc[variant, "psnr_mean"] == pytest.approx(statistics.mean(synthetic), abs=1e-9)
        assert np.isfinite(table.loc[variant, "ssim_real_mean"]) and np.isfinite(
            table.loc[variant, "bicubic_psnr_real"]
        )
    assert table.loc["bidirectional", "temporal_gain_real_mean"] != table.loc["bidirectional", "temporal_gain_mean"]
    run = runs / "mini_real/bidirectional/seed0"  # its real/ folder holds exactly what vsr.studies.runs names
    folder = run_folders.real_folder(run)
    probe = {f"{run_folders.TEMPORAL_DIR}/{name}" for name in (GAIN_FILE, FIELD_FILE, SUMMARY_FILE)}
    assert {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()} == {
        run_folders.METRICS_FILE,
        run_folders.PER_FRAME_FILE,
        *probe,
    }
    assert (
        run_folders.read_real_metrics(run)["psnr"]
        == json.loads((run / "run.json").read_text())["real"]["metrics"]["psnr"]
    )
    markdown = (report / "results.md").read_text()
    assert "| PSNR, real (dB) | SSIM, real | temporal gain, real (dB) |" in markdown
    assert "`vsr data real`, real:set: 12 clips, 36 frames" in (report / "index.md").read_text()


def test_a_preset_without_real_data_reports_as_before(synth_root, tmp_path):
    runs, report = tmp_path / "runs", tmp_path / "report"
    study = _study(tmp_path, False)
    run_and_report(study, data=synth_root, out=runs, report=report, progress=False, seeds=[0])
    assert not (runs / "mini_real/bidirectional/seed0/real").exists()
    assert not [c for c in pd.read_csv(report / "results.csv").columns if "_real" in c]
    assert "vsr data real" not in (report / "index.md").read_text()


def test_a_preset_by_default_writes_the_default_set_beside_the_synthetic_one(synth_root, tmp_path, monkeypatch):
    monkeypatch.setenv("VSR_DATA", str(tmp_path / "sets" / "synth"))
    monkeypatch.setattr(vsr.data.real, "generate", functools.partial(vsr.data.real.generate, **SMALL))
    study = _study(tmp_path, True)
    run_and_report(study, data=synth_root, out=tmp_path / "runs", report=tmp_path / "report", progress=False,
                   seeds=[0], variants=["bidirectional"])  # fmt: skip
    assert (tmp_path / "sets/real" / real.DESCRIPTION_FILE).is_file()
    assert "psnr_real_mean" in pd.read_csv(tmp_path / "report" / "results.csv").columns
