"""RealBasicVSR's two training stages end to end on the tiny synthetic set, and its ONNX export.

The tiny first stage (``recipes/realbasicvsr_wogan_tiny.yaml``, objective ``realbasicvsr_wogan``) trains, its cleaning
term is checked against a computation from its definition (notes §3.1) on a batch it trained on, and a run stopped
inside a step resumes bit-exactly; the tiny second stage (``recipes/realbasicvsr_tiny.yaml``) starts from the
first stage's checkpoint through ``train.init`` and trains; ``vsr upscale`` of its result refines a real mp4. The
export unrolls the cleaning module to a fixed number of passes (the file's metadata says how many) and agrees with
PyTorch run at the same fixed passes within 1e-4 in ONNX Runtime."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import av
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from tiny import SMALL, interrupt_step, tiny_synth
from typer.testing import CliRunner

import vsr.checkpoints
from vsr import build_model, save_checkpoint
from vsr.checkpoints import read_checkpoint
from vsr.cli import app
from vsr.data.realworld import unsharp_mask
from vsr.errors import ArgumentError
from vsr.losses import vgg19_features
from vsr.recipe import load_recipe
from vsr.training import train
from vsr.training.gan import DISCRIMINATOR, RealBasicVSRGAN
from vsr.training.realbasicvsr import RealBasicVSR
from vsr.training.steps import MAIN

TOLERANCE = 1e-4  # ONNX Runtime against PyTorch, outputs in [0, 1] (vsr.export.TOLERANCE)


def tiny_stage(name: str, data_root: Path, **train_keys) -> dict:
    """A shipped tiny recipe on the test's synthetic set: its GT degraded by the real-world chain, 3 frames
    mirrored to 6, 8×8 LR crops, two iterations unless ``train_keys`` say otherwise."""
    recipe = load_recipe(name).to_dict()
    recipe["data"] |= {
        "train": {"layout": "synth", "root": str(data_root), "split": "train", "lr": None,
                  "degradation": "realbasicvsr"},
        "val": {"layout": "synth", "root": str(data_root), "split": "val"},
        "num_frames": 3, "lr_patch": 8, "batch_size": 2, "workers": 0,
    }  # fmt: skip
    recipe["train"] |= {
        "iterations": 2, "periods": [2], "fix_iterations": 2, "log_every": 1, "val_every": 2,
        "checkpoint_every": 1, "tensorboard": False, **train_keys,
    }  # fmt: skip
    return recipe


def logged_steps(run_dir: Path) -> list[dict]:
    lines = (run_dir / "log.jsonl").read_text().splitlines()
    return [e for e in map(json.loads, lines) if e.get("event") == "train"]


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    return tiny_synth(tmp_path_factory.mktemp("synth") / "set")


@pytest.fixture(scope="module")
def first_stage(data_root, tmp_path_factory):
    """The tiny first stage trained two iterations; the first step's batch, the network before it and the
    scalars it returned."""
    seen = {}
    step = RealBasicVSR.step

    def recording(self, batch, run):
        before = copy.deepcopy(run.net)
        scalars = step(self, batch, run)
        seen.setdefault("first", (batch, before, {k: v.detach().clone() for k, v in scalars.items()}))
        return scalars

    out = tmp_path_factory.mktemp("stage1") / "run"
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(RealBasicVSR, "step", recording)
        result = train(tiny_stage("realbasicvsr_wogan_tiny", data_root), out, progress=False)
    return result, seen["first"]


def test_the_first_stage_trains_with_the_cleaning_loss_of_its_definition(first_stage):
    """On a batch it trained on: ``cleaning`` is the L1 between the network's cleaned LQ (LQ + one residual, as
    refine_threshold 255 runs one pass) and the unsharp-masked GT area-downsampled ×¼ (mean of each 4×4 block);
    ``l1`` the L1 of the output against that sharpened GT; the loss their sum (weights 1)."""
    result, (batch, net, scalars) = first_stage
    assert result.iterations == 2 and result.metrics
    assert read_checkpoint(result.out_dir / "checkpoints" / "latest.pth")["objective"] == "realbasicvsr_wogan"
    assert [{"loss", "l1", "cleaning"} <= set(e) for e in logged_steps(result.out_dir)] == [True, True]

    lq, gt = batch["lq"], batch["gt"]
    assert lq.shape == (2, 6, 3, 8, 8) and gt.shape == (2, 6, 3, 32, 32)  # 3 frames mirrored to 6
    assert torch.equal(gt[:, :3], gt[:, 3:].flip(1)) and not torch.equal(lq[:, :3], lq[:, 3:].flip(1))
    sharp = unsharp_mask(gt)
    assert (sharp - gt).abs().max() > 0.01
    with torch.no_grad():
        frames = lq.reshape(12, 3, 8, 8)
        cleaned = frames + net.cleaning.residual(frames)
        target = F.avg_pool2d(sharp.reshape(12, 3, 32, 32), kernel_size=4)
        cleaning = (cleaned - target).abs().mean()
        pixel = (net(lq) - sharp).abs().mean()
    torch.testing.assert_close(scalars["cleaning"], cleaning, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(scalars["l1"], pixel, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(scalars["loss"], pixel + cleaning, rtol=1e-5, atol=1e-7)


def test_the_first_stage_resumes_bit_exactly(data_root, tmp_path, monkeypatch):
    """A run stopped by Ctrl-C inside its third step resumes from iteration 2 and ends with the same weights,
    moving average and Adam moments as one that was not stopped."""
    recipe = tiny_stage("realbasicvsr_wogan_tiny", data_root, iterations=3, periods=[3], fix_iterations=3,
                        val_every=3, checkpoint_every=2)  # fmt: skip
    full = train(recipe, tmp_path / "full", progress=False)

    with monkeypatch.context() as mp, pytest.raises(KeyboardInterrupt):
        interrupt_step(mp, RealBasicVSR, 3)
        train(recipe, tmp_path / "resumed", progress=False)
    assert read_checkpoint(tmp_path / "resumed" / "checkpoints" / "latest.pth")["iteration"] == 2
    resumed = train(recipe, tmp_path / "resumed", resume=True, progress=False)
    assert resumed.iterations == 3

    a, b = (read_checkpoint(tmp_path / run / "checkpoints" / "latest.pth") for run in ("full", "resumed"))
    for weights in ("model", "params_ema"):
        assert a[weights].keys() == b[weights].keys()
        for key, value in a[weights].items():
            assert torch.equal(value, b[weights][key]), (weights, key)
    moments_a, moments_b = a["optimizers"][MAIN]["state"], b["optimizers"][MAIN]["state"]
    assert moments_a.keys() == moments_b.keys() and moments_a
    for index, moments in moments_a.items():
        for key, value in moments.items():
            assert torch.equal(value, moments_b[index][key]), (index, key)
    assert full.metrics == resumed.metrics


@pytest.fixture(scope="module")
def second_stage(first_stage, data_root, tmp_path_factory):
    """The tiny second stage from the first stage's last.pth (train.init), with a perceptual term on a random
    VGG19 head (conv1_1, conv1_2) saved in torchvision's layout; the network at its first step."""
    folder = tmp_path_factory.mktemp("stage2")
    torch.manual_seed(11)
    vgg = folder / "vgg19_head.pth"
    torch.save({f"features.{k}": v for k, v in vgg19_features(2).state_dict().items()}, vgg)
    perceptual = {"name": "perceptual", "weight": 1.0, "weights": str(vgg), "layers": ["conv1_2"]}
    losses = [{"name": "l1", "weight": 1.0}, {**perceptual, "layer_weights": [1.0]}]
    recipe = tiny_stage("realbasicvsr_tiny", data_root, init=str(first_stage[0].checkpoint), losses=losses)
    seen = {}
    step = RealBasicVSRGAN.step

    def recording(self, batch, run):
        seen.setdefault("start", {k: v.clone() for k, v in run.net.state_dict().items()})
        return step(self, batch, run)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(RealBasicVSRGAN, "step", recording)
        result = train(recipe, folder / "run", progress=False)
    return result, seen["start"]


def test_the_second_stage_starts_from_the_first_stages_checkpoint_and_trains(first_stage, second_stage):
    """train.init loads the first stage's trained weights (not the moving average its checkpoint also holds,
    which starts the second stage's average: tests/test_init_ema.py) into the generator before its first step;
    two iterations of the GAN objective log every term and save the discriminator with both optimisers."""
    result, start = second_stage
    first = read_checkpoint(first_stage[0].checkpoint)["model"]
    assert start.keys() == first.keys()
    for key, value in first.items():
        assert torch.equal(start[key], value), key
    assert result.iterations == 2
    state = read_checkpoint(result.out_dir / "checkpoints" / "latest.pth")
    assert state["objective"] == "realbasicvsr_gan" and set(state["optimizers"]) == {MAIN, DISCRIMINATOR}
    assert state["optimizers"][MAIN]["param_groups"][0]["lr"] == 5e-4  # the tiny recipe's generator lr
    terms = {"loss", "l1", "perceptual", "cleaning", "adversarial", DISCRIMINATOR}
    assert [terms <= set(e) for e in logged_steps(result.out_dir)] == [True, True]
    assert not torch.equal(state["model"]["cleaning.output_conv.weight"], first["cleaning.output_conv.weight"])


def write_mp4(path: Path, frames: np.ndarray, fps: int = 12) -> None:
    """``uint8 (t, h, w, 3)`` frames as an H.264 (else MPEG-4) video, with PyAV alone."""
    codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.height, stream.width, stream.pix_fmt = frames.shape[1], frames.shape[2], "yuv420p"
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())


def test_vsr_upscale_refines_a_real_video_with_the_second_stage(second_stage, tmp_path, monkeypatch):
    """``vsr upscale`` of the trained tiny second stage on a 7-frame 40×24 mp4 with the paper's refinement
    (threshold 1.5, up to 3 passes) writes a 7-frame 160×96 video; the model ran with those options."""
    rng = np.random.default_rng(4)
    base = rng.integers(40, 200, (1, 24, 40, 3))
    frames = np.clip(base + rng.integers(-30, 30, (7, 24, 40, 3)), 0, 255).astype(np.uint8)  # noisy footage
    write_mp4(tmp_path / "in.mp4", frames)
    built = []
    load = vsr.checkpoints.pretrained_model
    monkeypatch.setattr(vsr.checkpoints, "pretrained_model", lambda *a: built.append(load(*a)) or built[-1])

    checkpoint = second_stage[0].out_dir / "checkpoints" / "last.pth"
    args = [str(checkpoint), str(tmp_path / "in.mp4"), "-o", str(tmp_path / "out.mp4"), "--device", "cpu",
            "--refine-threshold", "1.5", "--max-refine-passes", "3"]  # fmt: skip
    result = CliRunner().invoke(app, ["upscale", *args])
    assert result.exit_code == 0, result.output
    cleaning = built[-1].cleaning
    assert (cleaning.refine_threshold, cleaning.max_passes) == (1.5, 3) and 1 <= cleaning.passes_run <= 3
    with av.open(str(tmp_path / "out.mp4")) as container:
        decoded = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert len(decoded) == 7 and {f.shape for f in decoded} == {(96, 160, 3)}


# ------------------------------------------------------------------------------------------------- export
SMALL_CLEANING = [
    *SMALL,
    "model.cleaning.num_blocks=1",
    "model.cleaning.refine_threshold=1.5",  # the paper's: up to max_passes (3) passes
]


def test_export_unrolls_the_refinement_and_agrees_with_pytorch_within_1e_4(tmp_path, monkeypatch):
    """``vsr export`` of a RealBasicVSR at refine_threshold 1.5 unrolls the cleaning to max_passes (3), with no
    stopping test, and says so in the file (``vsr.cleaning_passes``); ``cleaning_passes=1`` asks for one pass.
    Each file runs in ONNX Runtime within 1e-4 of PyTorch at the same fixed passes, at a size and batch the
    export's own check did not use."""
    onnx = pytest.importorskip("onnx", reason="ONNX export needs the onnx extra: pip install -e '.[onnx]'",
                               exc_type=ImportError)  # fmt: skip
    pytest.importorskip("onnxruntime", reason="pip install -e '.[onnx]'", exc_type=ImportError)
    from vsr.export import export_onnx, load_onnx

    monkeypatch.chdir(tmp_path)
    torch.manual_seed(0)
    recipe = load_recipe("realbasicvsr", *SMALL_CLEANING)
    model = build_model(recipe).eval()
    with torch.no_grad():  # a residual of mean |.| about 1.1/255: the stopping test (1.5) ends after one pass
        model.cleaning.output_conv.weight.mul_(0.01)
        model.cleaning.output_conv.bias.fill_(0.004)
    save_checkpoint(model, tmp_path / "small.pth", recipe=recipe.to_dict())
    exported = CliRunner().invoke(app, ["export", "small.pth", "-o", "small.onnx", "--frames", "4"])
    assert exported.exit_code == 0, exported.output
    assert "cleaning unrolled to 3 passes" in " ".join(exported.output.split())
    meta = {p.key: p.value for p in onnx.load("small.onnx").metadata_props}
    assert meta["vsr.cleaning_passes"] == "3" and meta["vsr.frames"] == "4"

    summary = export_onnx(model, tmp_path / "one.onnx", 4, cleaning_passes=1)
    assert summary.cleaning_passes == 1

    lrs = torch.rand(3, 4, 3, 13, 30, generator=torch.Generator().manual_seed(2))
    outputs = {}
    for name, passes in (("small.onnx", 3), ("one.onnx", 1)):
        runner = load_onnx(tmp_path / name)
        assert runner.cleaning_passes == passes
        with torch.no_grad(), model.cleaning.fixed_passes(passes):
            expected = model(lrs)
        assert model.cleaning.passes_run == passes
        got = runner(lrs)
        assert got.shape == expected.shape == (3, 4, 3, 52, 120)
        assert (got - expected).abs().max().item() <= TOLERANCE, name
        outputs[name] = got
    assert (outputs["small.onnx"] - outputs["one.onnx"]).abs().max() > 1e-3  # the passes make a difference
    with torch.no_grad():
        model(lrs)
    assert model.cleaning.passes_run == 1  # without fixed passes the stopping test runs again, here after one

    with pytest.raises(ArgumentError, match=r"cleaning_passes must be an int from 1 to .* max_passes \(3\), got 4"):
        export_onnx(model, tmp_path / "four.onnx", 4, cleaning_passes=4)
    with pytest.raises(ArgumentError, match=r"cleaning_passes=2: VideoSRNet has no cleaning module"):
        export_onnx(build_model("basicvsr_tiny"), tmp_path / "none.onnx", 4, cleaning_passes=2)
    assert not (tmp_path / "four.onnx").exists() and not (tmp_path / "none.onnx").exists()
