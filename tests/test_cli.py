"""The command line: it parses arguments, calls the library, and prints vsr's errors as one line."""

import json
import subprocess
import sys

import numpy as np
import pytest
from typer.testing import CliRunner

from vsr import build_model, save_checkpoint
from vsr.cli import app
from vsr.data.synth import generate
from vsr.probe import TemporalProbe
from vsr.recipe import load_recipe
from vsr.video import FrameReader, FrameWriter

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


def test_help_lists_the_commands():
    result = invoke("--help")
    assert result.exit_code == 0
    for command in ("model", "zoo", "train", "test", "data", "upscale"):
        assert command in result.output


NO_TORCH = """
import sys
from vsr.cli import app
assert "torch" not in sys.modules, "import vsr.cli loaded torch"
for args in (["--help"], ["train", "--help"], ["data", "synth", "--help"]):
    try:
        app(args)
    except SystemExit as exit:
        assert exit.code == 0, args
    assert "torch" not in sys.modules, f"vsr {' '.join(args)} loaded torch"
"""


def test_the_command_line_and_its_help_load_no_torch():
    """A command imports the library module it calls when it runs, so ``vsr --help`` is quick."""
    result = subprocess.run([sys.executable, "-c", NO_TORCH], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_model_prints_components_and_parameters():
    result = invoke("model", "iconvsr")
    assert result.exit_code == 0
    assert "8,694,991" in result.output and "1,440,300" in result.output and "edvr" in result.output
    variant = invoke("model", "basicvsr", "--set", "model.alignment=none", "--recipe")
    assert "alignment" in variant.output and "name: none" in variant.output
    assert "6,291,311" not in variant.output  # no flow estimator: fewer parameters


def test_bad_recipe_is_one_clear_line():
    result = invoke("model", "basicvsr", "--set", "model.propagation=bidirectonal")
    assert result.exit_code == 2
    assert "valid choices: bidirectional, coupled, grid, local, unidirectional" in " ".join(result.output.split())
    assert "Traceback" not in result.output


def test_zoo_lists_published_numbers():
    result = invoke("zoo")
    assert result.exit_code == 0
    assert "basicvsr_reds4" in result.output and "31.42/0.8909" in result.output
    from vsr.zoo import ZOO

    for name in ("realbasicvsr", "realbasicvsr_wogan", "basicvsr_reds4"):
        row = next(line for line in result.output.splitlines() if f" {name} " in line)
        assert ZOO[name].sha256_prefix in row and ZOO[name].url.rsplit("-", 1)[-1].startswith(ZOO[name].sha256_prefix)


@pytest.fixture
def tiny_checkpoint(tmp_path):
    recipe = load_recipe("basicvsr", "model.channels=8", "model.aggregation.num_blocks=1", "model.flow.levels=2")
    model = build_model(recipe)
    return save_checkpoint(model, tmp_path / "tiny.pth", recipe=recipe.to_dict()), model


def test_upscale_a_video_with_a_vsr_checkpoint(tmp_path, tiny_checkpoint):
    path, _ = tiny_checkpoint
    video = tmp_path / "in.mkv"
    rng = np.random.default_rng(0)
    with FrameWriter(video, fps=24, codec="libx264", pix_fmt="yuv444p") as writer:
        for _ in range(6):
            writer.write(rng.integers(0, 255, (16, 24, 3), dtype=np.uint8))
    out = tmp_path / "frames"
    result = invoke("upscale", path, video, "-o", out, "--chunk-size", "4", "--chunk-overlap", "2", "--device", "cpu")
    assert result.exit_code == 0, result.output
    frames = list(FrameReader(out))
    assert len(frames) == 6 and frames[0].shape == (64, 96, 3)
    again = invoke("upscale", path, video, "-o", out)
    assert again.exit_code == 2 and "--overwrite" in again.output


def test_upscale_needs_weights_for_a_recipe(tmp_path):
    result = invoke("upscale", "basicvsr", tmp_path / "in.mp4", "-o", tmp_path / "out.mp4")
    assert result.exit_code == 2
    assert "pass --checkpoint" in result.output


def test_upscale_refuses_a_checkpoint_that_does_not_match(tmp_path, tiny_checkpoint):
    path, _ = tiny_checkpoint
    frames = tmp_path / "lr"
    frames.mkdir()
    result = invoke("upscale", "iconvsr", frames, "-o", tmp_path / "out", "--checkpoint", path)
    assert result.exit_code == 2
    assert "checkpoint does not match the model" in " ".join(result.output.split())


def test_synth_options_reach_the_generator(tmp_path):
    out = tmp_path / "set"
    args = ["--frames", 3, "--val-frames", 4, "--clips-per-photo", 1, "--val-clips-per-photo", 2, "--size", 32]
    result = invoke("data", "synth", "--out", out, *args)
    assert result.exit_code == 0, result.output
    meta = json.loads((out / "synth.json").read_text())["args"]
    assert meta["frames"] == {"train": 3, "val": 4} and meta["clips_per_photo"] == {"train": 1, "val": 2}
    assert meta["size"] == [32, 32] and len(list((out / "val" / "GT").iterdir())) == 2 * len(meta["photos"]["val"])
    n_train, n_val = len(meta["photos"]["train"]), 2 * len(meta["photos"]["val"])
    summary = f"{n_train} training clips of 3 frames, {n_val} validation clips of 4 frames; GT 32×32, LR 8×8 (BI ×4)"
    assert summary in " ".join(result.output.split())


def test_probe_prints_the_gain_and_writes_the_probe(tmp_path, tiny_checkpoint):
    path, _ = tiny_checkpoint
    root = tmp_path / "set"
    generate(root, frames=3, val_frames=5, clips_per_photo=1, val_clips_per_photo=1, size=(64, 64),
             photos=["coffee", "chelsea"], val_photos=["chelsea"])  # fmt: skip
    out = tmp_path / "probe"
    tiny = ["--set", "model.channels=8", "--set", "model.aggregation.num_blocks=1", "--set", "model.flow.levels=2"]
    result = invoke("probe", "basicvsr", *tiny, "--checkpoint", path, "--data", root, "--out", out, "--device", "cpu")
    assert result.exit_code == 0, result.output
    probe = TemporalProbe.read(out)
    assert f"temporal gain: {probe.mean_gain:+.3f} dB" in result.output
    assert probe.gain.frame.tolist() == list(range(5)) and list(probe.fields) == ["chelsea_000"]
    assert "from its own frame" in result.output
    # --field-clips 0 measures the gain only: the files hold no field, and the line says it was not measured
    bare = tmp_path / "bare"
    result = invoke("probe", "basicvsr", *tiny, "--checkpoint", path, "--data", root, "--out", bare, "--device", "cpu",
                    "--field-clips", "0")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "receptive field: not measured (--field-clips 0)" in result.output
    assert TemporalProbe.read(bare).fields == {} and TemporalProbe.read(bare).gain.equals(probe.gain)
