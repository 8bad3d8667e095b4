"""PSNR/SSIM against a NumPy transcription of BasicSR's calculate_psnr/calculate_ssim and closed forms.

BasicSR's ``metrics.psnr_ssim`` imports cv2 (not installed here), so the reference below redoes its steps in
NumPy: HWC images on 0..255, the Y channel through BasicSR's own ``rgb2ycbcr`` (float32, as its
``to_y_channel``), and SSIM with an explicit 11x11 Gaussian window and 'valid' sliding windows. The
registered metrics (the ``metric`` kind) declare what reports need and give one value per frame.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from numpy.lib.stride_tricks import sliding_window_view
from skimage import data as skdata

from vsr.errors import RecipeError
from vsr.metrics import Metric, clip_average, metric_class, psnr, rgb_to_y, ssim, vimeo_center_frame
from vsr.registry import build, choices

from basicsr_reference import ReferenceUnavailable, import_basicsr


@pytest.fixture(scope="module")
def color_util():
    try:
        return import_basicsr("basicsr.utils.color_util")
    except ReferenceUnavailable as err:
        pytest.skip(str(err))


def y_reference(img255: np.ndarray, color_util) -> np.ndarray:
    """BasicSR's to_y_channel for an RGB image on 0..255: float32 /255, rgb2ycbcr(y_only), x255."""
    return color_util.rgb2ycbcr(img255.astype(np.float32) / 255.0, y_only=True)[..., None] * 255.0


def psnr_reference(img: np.ndarray, img2: np.ndarray) -> float:
    mse = np.mean((img.astype(np.float64) - img2.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def ssim_reference(img: np.ndarray, img2: np.ndarray) -> float:
    """Mean over channels of the SSIM map, Gaussian window 11x11 sigma 1.5, valid region only."""
    g = np.exp(-((np.arange(11) - 5.0) ** 2) / (2 * 1.5**2))
    window = np.outer(g, g) / g.sum() ** 2
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2

    def filt(x):
        return np.einsum("ijkl,kl->ij", sliding_window_view(x, (11, 11)), window)

    values = []
    for ch in range(img.shape[2]):
        a, b = img[..., ch].astype(np.float64), img2[..., ch].astype(np.float64)
        mu1, mu2 = filt(a), filt(b)
        s1, s2, s12 = filt(a * a) - mu1**2, filt(b * b) - mu2**2, filt(a * b) - mu1 * mu2
        m = ((2 * mu1 * mu2 + c1) * (2 * s12 + c2)) / ((mu1**2 + mu2**2 + c1) * (s1 + s2 + c2))
        values.append(m.mean())
    return float(np.mean(values))


def photo_pair(seed: int = 0):
    """A real photograph crop (target) and a noisy copy (pred), float64 CHW in [0, 1]."""
    target = skdata.chelsea()[60:108, 100:164].astype(np.float64) / 255
    rng = np.random.default_rng(seed)
    pred = np.clip(target + rng.normal(0, 0.05, target.shape), 0, 1)
    return torch.from_numpy(pred.transpose(2, 0, 1).copy()), torch.from_numpy(target.transpose(2, 0, 1).copy())


@pytest.mark.parametrize("round_to_uint8", [False, True], ids=["float", "uint8"])
@pytest.mark.parametrize("crop_border", [0, 4])
@pytest.mark.parametrize("y_channel", [False, True], ids=["rgb", "y"])
def test_psnr_ssim_match_basicsr_transcription(color_util, y_channel, crop_border, round_to_uint8):
    pred, target = photo_pair()
    images = []
    for x in (pred, target):
        img = x.numpy().transpose(1, 2, 0) * 255  # what BasicSR sees: HWC on 0..255
        img = np.round(img.astype(np.float32)).astype(np.uint8) if round_to_uint8 else img
        if crop_border:
            img = img[crop_border:-crop_border, crop_border:-crop_border]
        images.append(y_reference(img, color_util) if y_channel else img)
    options = dict(crop_border=crop_border, y_channel=y_channel, round_to_uint8=round_to_uint8)
    got_psnr, got_ssim = psnr(pred, target, **options), ssim(pred, target, **options)
    assert got_psnr.shape == got_ssim.shape == () and got_psnr.dtype == torch.float64
    # BasicSR's Y is float32; ours is float64: allow the float32 rounding of Y, nothing more.
    tol = 2e-4 if y_channel else 1e-9
    assert got_psnr.item() == pytest.approx(psnr_reference(*images), abs=tol)
    assert got_ssim.item() == pytest.approx(ssim_reference(*images), abs=tol / 100)


def test_per_frame_values_keep_leading_shape_across_chunks():
    pred = torch.rand(2, 5, 3, 16, 16, dtype=torch.float64)  # 10 frames: crosses the 8-frame chunking
    target = torch.rand(2, 5, 3, 16, 16, dtype=torch.float64)
    for metric in (psnr, ssim):
        values = metric(pred, target, y_channel=True)
        assert values.shape == (2, 5)
        for i in range(2):
            for j in range(5):
                assert values[i, j].item() == metric(pred[i, j], target[i, j], y_channel=True).item()


def test_psnr_closed_form_and_identical_frames():
    target = torch.full((3, 12, 12), 0.5, dtype=torch.float64)
    target[:, ::2] = 0.3
    pred = target + 0.1  # error of 25.5 on every pixel: PSNR = 20 log10(255 / 25.5) = 20 dB
    assert psnr(pred, target).item() == pytest.approx(20.0, abs=1e-9)
    assert psnr(target, target).item() == math.inf
    assert ssim(target, target).item() == pytest.approx(1.0, abs=1e-12)


def test_ssim_of_constant_frames_closed_form():
    # No variance and no covariance: SSIM = (2 a b + C1) / (a^2 + b^2 + C1) with a, b on 0..255.
    a, b = 0.2 * 255, 0.6 * 255
    c1 = (0.01 * 255) ** 2
    got = ssim(torch.full((3, 16, 16), 0.2, dtype=torch.float64), torch.full((3, 16, 16), 0.6, dtype=torch.float64))
    assert got.item() == pytest.approx((2 * a * b + c1) / (a * a + b * b + c1), abs=1e-9)


def test_inputs_are_clamped_to_unit_range():
    pred, target = photo_pair()
    overshoot = pred.clone()
    overshoot[:, :5] = 1.5
    overshoot[:, -5:] = -0.5
    clamped = overshoot.clamp(0, 1)
    assert psnr(overshoot, target).item() == psnr(clamped, target).item()
    assert ssim(overshoot, target).item() == ssim(clamped, target).item()


def test_rgb_to_y_known_colours(color_util):
    colours = torch.tensor([[0, 0, 0], [1, 1, 1], [1, 0, 0], [0, 1, 0], [0, 0, 1]], dtype=torch.float64)
    y = rgb_to_y(colours[:, :, None, None])[:, 0, 0, 0]
    expected = [16.0, 235.0, 16 + 65.481, 16 + 128.553, 16 + 24.966]
    assert y.tolist() == pytest.approx(expected, abs=1e-9)
    image = torch.rand(3, 4, 5)
    reference = color_util.rgb2ycbcr(image.numpy().transpose(1, 2, 0), y_only=True)  # float32 in and out, [0, 1]
    np.testing.assert_allclose(rgb_to_y(image.double())[0].numpy() / 255, reference, rtol=0, atol=1e-6)


def test_clip_average_weights_clips_equally():
    values = {"calendar": torch.tensor([1.0, 2.0, 3.0]), "walk": torch.tensor([10.0])}
    assert clip_average(values) == pytest.approx((2.0 + 10.0) / 2)  # not the frame mean 4.0
    with pytest.raises(ValueError, match="no clips"):
        clip_average({})
    with pytest.raises(ValueError, match="clip 'walk' has no per-frame values"):
        clip_average({"calendar": torch.ones(2), "walk": torch.empty(0)})


def test_vimeo_center_frame_protocol():
    frames = torch.rand(2, 7, 3, 4, 4)
    mirrored = torch.cat([frames, frames.flip(1)], dim=1)  # 14 frames; im4 sits at indices 3 and 10
    torch.testing.assert_close(vimeo_center_frame(mirrored), frames[:, 3])
    torch.testing.assert_close(vimeo_center_frame(frames, mirrored=False), frames[:, 3])
    output = torch.rand(2, 14, 3, 4, 4)  # a network's two estimates of im4 differ: they are averaged
    torch.testing.assert_close(vimeo_center_frame(output), 0.5 * (output[:, 3] + output[:, 10]))
    with pytest.raises(ValueError, match="even number of frames, got t = 7"):
        vimeo_center_frame(frames)


def test_bad_inputs_raise_with_message():
    x = torch.rand(3, 16, 16)
    with pytest.raises(ValueError, match="shapes differ"):
        psnr(x, torch.rand(3, 16, 15))
    with pytest.raises(ValueError, match="y_channel=True needs RGB"):
        psnr(x[:1], x[:1], y_channel=True)
    with pytest.raises(ValueError, match="crop_border 8 on each edge"):
        psnr(x, x, crop_border=8)
    with pytest.raises(ValueError, match="less than 11x11"):
        ssim(x, x, crop_border=3)
    with pytest.raises(ValueError, match=r"expected RGB frames \(\.\.\., 3, h, w\)"):
        rgb_to_y(torch.rand(4, 8, 8))


@pytest.mark.parametrize("name", choices("metric"))
def test_every_registered_metric_declares_itself_and_scores_each_frame(name):
    """Every metric (plugins imported so far included): the class attributes reports read, and float64
    values ``(t,)`` for ``t`` frames, with no GT for a no-reference one."""
    kind = metric_class(name)
    assert issubclass(kind, Metric)
    assert isinstance(kind.higher_is_better, bool) and isinstance(kind.needs_gt, bool)
    assert isinstance(kind.unit, str) and isinstance(kind.label, str) and kind.label
    assert isinstance(kind.digits, int) and kind.digits >= 0
    metric = build("metric", name, {}, crop_border=1, y_channel=False)
    generator = torch.Generator().manual_seed(0)
    shape = (3, 3, 196, 196)  # NIQE scores frames of 192x192 and more, after the crop
    pred, gt = torch.rand(shape, generator=generator), torch.rand(shape, generator=generator)
    values = metric.per_frame(pred, gt if kind.needs_gt else None)
    assert values.shape == (3,) and values.dtype == torch.float64 and torch.isfinite(values).all()


def test_psnr_and_ssim_metrics_wrap_the_exact_functions():
    """The registered ``psnr``/``ssim`` are the BasicSR-exact functions, wired with the protocol's crop and Y
    channel, and with the recipe's ``round_to_uint8``; their labels, units and direction."""
    generator = torch.Generator().manual_seed(1)
    pred, gt = torch.rand(2, 3, 24, 24, generator=generator), torch.rand(2, 3, 24, 24, generator=generator)
    for name, function in (("psnr", psnr), ("ssim", ssim)):
        metric = build("metric", name, {"round_to_uint8": True}, crop_border=2, y_channel=True)
        expected = function(pred, gt, crop_border=2, y_channel=True, round_to_uint8=True)
        assert torch.equal(metric.per_frame(pred, gt), expected)
    assert (metric_class("psnr").label, metric_class("psnr").unit) == ("PSNR", "dB")
    assert (metric_class("ssim").label, metric_class("ssim").unit) == ("SSIM", "")
    assert metric_class("psnr").higher_is_better and metric_class("ssim").higher_is_better
    with pytest.raises(RecipeError, match=r"'val_metric' = 'lpips': unknown metric; valid choices: .*psnr, ssim"):
        metric_class("lpips", "val_metric")
    with pytest.raises(RecipeError, match=r"crop_border.*vsr sets this argument of metric 'psnr'"):
        build("metric", "psnr", {"crop_border": 4}, crop_border=0, y_channel=False)
