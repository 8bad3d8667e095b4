"""Real-world degradations (vsr.data.kernels, vsr.data.realworld): the kernel builders against BasicSR 1.4.2
(1e-6), unsharp masking against BasicSR's usm_sharp (OpenCV), noise statistics, JPEG and video compression
against independent computations, the RealBasicVSR chain's draws against their documented distributions, and
the chain in training samples (mirroring before degradation, reproducible whatever the workers, a tiny run); and
every stage against the previous, frame-by-frame code (``tests/realworld_reference.py``)."""

from __future__ import annotations

import copy
import io
import math
import sys
import types

import numpy as np
import pytest
import realworld_reference as reference
import torch
from PIL import Image
from skimage import data as skdata
from tiny import TINY_DATA, TINY_MODEL, tiny_synth

from vsr.data import kernels
from vsr.data.augmentation import MIRROR_CHOICES, mirror_mode
from vsr.data.datasets import TrainingClips
from vsr.data.degradations import build_chain
from vsr.data.layouts import open_dataset
from vsr.data.realworld import (
    BETA,
    KERNEL_PROBS,
    KERNEL_SIZES,
    OMEGA_STEP,
    QUALITY_STEP,
    ROTATION_STEP,
    SIGMA_STEP,
    STAGES,
    RandomJPEG,
    RandomNoise,
    RealBasicVSR,
    VideoCompression,
    compress_video,
    drift,
    jpeg,
    poisson_noise,
    unsharp_mask,
)
from vsr.recipe import CHOICES
from vsr.registry import choices

from basicsr_reference import ReferenceUnavailable, import_basicsr


def _photo(size: int = 128) -> torch.Tensor:
    """A natural RGB image ``(3, size, size)`` in [0, 1] (skimage's astronaut, top-left crop)."""
    return torch.from_numpy(skdata.astronaut()[:size, :size].copy()).permute(2, 0, 1).float() / 255


def _panning_clip(frames: int = 8, size: int = 64) -> torch.Tensor:
    photo = _photo(2 * size)[:, ::2, ::2]
    return torch.stack([photo.roll(2 * i, -1) for i in range(frames)]).contiguous()


# --------------------------------------------------------------------------------------------------------
# Against BasicSR 1.4.2


@pytest.fixture(scope="module")
def basicsr_degradations():
    """``basicsr/data/degradations.py`` of the sdist. It imports cv2 (opencv-python-headless, the dev extra)
    and ``torchvision.transforms.functional_tensor`` (gone since torchvision 0.17; only its noise functions use
    it): a stand-in module stands in for the latter where it cannot be imported."""
    pytest.importorskip("cv2", reason="the BasicSR reference imports cv2: pip install -e '.[dev]'")
    try:
        import torchvision.transforms.functional_tensor
    except ImportError:
        import_basicsr("basicsr.archs")  # the torchvision stand-in, where torchvision is missing
        torchvision = sys.modules.get("torchvision") or types.ModuleType("torchvision")
        transforms = sys.modules.get("torchvision.transforms") or types.ModuleType("torchvision.transforms")
        functional_tensor = types.ModuleType("torchvision.transforms.functional_tensor")
        functional_tensor.rgb_to_grayscale = lambda *a, **k: None
        transforms.functional_tensor = functional_tensor
        sys.modules.setdefault("torchvision", torchvision)
        sys.modules.setdefault("torchvision.transforms", transforms)
        sys.modules["torchvision.transforms.functional_tensor"] = functional_tensor
    try:
        return import_basicsr("basicsr.data.degradations")
    except ReferenceUnavailable as err:
        pytest.skip(str(err))


KERNEL_CASES = [
    (7, 0.2, 0.2, 0.0),
    (9, 1.3, 0.4, 0.7),
    (13, 3.0, 1.1, -2.9),
    (21, 2.2, 2.9, math.pi),
    (15, 0.6, 3.0, -math.pi / 3),
]


@pytest.mark.parametrize(("size", "sx", "sy", "theta"), KERNEL_CASES)
def test_gaussian_family_matches_basicsr_1e6(basicsr_degradations, size, sx, sy, theta):
    ref = basicsr_degradations
    for beta in (0.5, 1.0, 2.7, 4.0):
        for isotropic in (True, False):
            ours_sy, ours_theta = (None, 0.0) if isotropic else (sy, theta)
            expected = ref.bivariate_generalized_Gaussian(size, sx, sy, theta, beta, isotropic=isotropic)
            got = kernels.generalized_gaussian(size, sx, ours_sy, ours_theta, beta)
            np.testing.assert_allclose(got, expected, atol=1e-6, rtol=0)
            expected = ref.bivariate_plateau(size, sx, sy, theta, beta, isotropic=isotropic)
            np.testing.assert_allclose(
                kernels.plateau(size, sx, ours_sy, ours_theta, beta), expected, atol=1e-6, rtol=0
            )
    for isotropic in (True, False):
        expected = ref.bivariate_Gaussian(size, sx, sy, theta, isotropic=isotropic)
        got = kernels.gaussian(size, sx, *((None, 0.0) if isotropic else (sy, theta)))
        np.testing.assert_allclose(got, expected, atol=1e-6, rtol=0)
        kind = "iso" if isotropic else "aniso"
        np.testing.assert_allclose(kernels.kernel(kind, size, sx, sy, theta), expected, atol=1e-6, rtol=0)
    assert got.shape == (size, size) and abs(got.sum() - 1) < 1e-12


@pytest.mark.parametrize("size", KERNEL_SIZES)
def test_sinc_kernel_matches_basicsr_circular_lowpass_1e6(basicsr_degradations, size):
    for cutoff in (math.pi / 5, math.pi / 3, 1.7, math.pi):
        expected = basicsr_degradations.circular_lowpass_kernel(cutoff, size)
        np.testing.assert_allclose(kernels.sinc(size, cutoff), expected, atol=1e-6, rtol=0)
        np.testing.assert_allclose(kernels.kernel("sinc", size, omega=cutoff), expected, atol=1e-6, rtol=0)
    padded = basicsr_degradations.circular_lowpass_kernel(1.1, size, pad_to=21)
    np.testing.assert_allclose(kernels.sinc(size, 1.1, pad_to=21), padded, atol=1e-6, rtol=0)


def test_unsharp_mask_matches_basicsr_usm_sharp_with_opencv(basicsr_degradations):
    """BasicSR's ``usm_sharp`` (cv2.GaussianBlur 51 taps, σ 0 → 8, threshold 10, weight 0.5) on a photo. Where
    |residual|·255 lies within float rounding of the threshold the hard mask can differ by one pixel, which
    moves the soft mask by at most one tap product (< 3e-4 for σ = 8): hence 1e-4 at most and 1e-6 typical."""
    usm_sharp = import_basicsr("basicsr.utils.img_process_util").usm_sharp
    image = _photo(96)
    expected = usm_sharp(image.permute(1, 2, 0).numpy().copy(), weight=0.5, radius=51, threshold=10)
    got = unsharp_mask(image).permute(1, 2, 0).numpy()
    assert np.abs(got - expected).max() < 1e-4
    assert np.median(np.abs(got - expected)) < 1e-6
    assert np.abs(got - image.permute(1, 2, 0).numpy()).max() > 0.05  # it does sharpen


# --------------------------------------------------------------------------------------------------------
# Noise statistics


def test_gaussian_noise_has_the_drawn_std_and_gray_noise_is_one_channel():
    """σ fixed by a degenerate range (10/255): on mid-gray frames (no clipping within 12σ) the noise has mean 0
    within 4 standard errors and std σ within 1%; gray noise is the same in all three channels."""
    frames = torch.full((4, 3, 128, 128), 0.5)
    for gray in (False, True):
        stage = RandomNoise(gaussian_prob=1.0, sigma=(10.0, 10.0), gray_prob=float(gray))
        noise = (stage(frames, np.random.default_rng(1)) - frames).double()
        n, sigma = noise.numel(), 10 / 255
        assert abs(noise.mean().item()) < 4 * sigma / math.sqrt(n / (3 if gray else 1))
        assert noise.std().item() == pytest.approx(sigma, rel=0.01)
        same = torch.equal(noise[:, 0], noise[:, 1]) and torch.equal(noise[:, 1], noise[:, 2])
        assert same == gray


def test_poisson_noise_variance_is_proportional_to_intensity_on_the_unit_scale():
    """Every 8-bit level in the frame (256 distinct values: v = 256), so Var = scale² · x / 256 at intensity x
    (BasicSR and MMEditing 0.x; MMagic 1.x's noise would be about 16× weaker). Checked per level band against
    that line within 5% (each band's variance from > 10k samples), and its mean is 0."""
    levels = torch.arange(256).float().div(255).repeat_interleave(4)
    frame = levels.view(1, 32, 32).expand(3, 32, 32).repeat(1, 40, 40).contiguous()  # (3, 1280, 1280)
    rng = np.random.default_rng(0)
    scale = 2.0
    noise = poisson_noise(frame, scale, rng).double()
    x = frame.double().mul(255).round().div(255)
    for low, high in [(0.1, 0.3), (0.4, 0.6), (0.7, 0.9)]:
        band = (x >= low) & (x < high)
        expected = scale**2 * x[band].mean().item() / 256
        assert noise[band].var().item() == pytest.approx(expected, rel=0.05)
        assert abs(noise[band].mean().item()) < 4 * math.sqrt(expected / band.sum().item())
    gray = poisson_noise(frame, scale, rng, gray=True)
    assert gray.shape == (1, *frame.shape[1:])  # one channel, which the stage adds to all three


def test_poisson_noise_level_follows_the_distinct_values_of_the_frame():
    """A frame of 2 levels gets v = 2: the variance is scale² · x / 2, far above a 256-level frame's."""
    frame = torch.zeros(3, 256, 256)
    frame[:, :, 128:] = 0.5
    noise = poisson_noise(frame, 1.0, np.random.default_rng(0)).double()
    assert noise[:, :, 128:].var().item() == pytest.approx(0.5 / 2, rel=0.05)
    assert noise[:, :, :128].abs().max().item() == 0  # no light, no shot noise


# --------------------------------------------------------------------------------------------------------
# JPEG


def test_jpeg_is_pillows_round_trip_and_better_quality_is_closer():
    image = _photo(96)
    array = (image.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    errors = []
    for quality in (30, 50, 75, 95):
        buffer = io.BytesIO()
        Image.fromarray(array).save(buffer, format="JPEG", quality=quality)
        decoded = np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB"))
        got = jpeg(image, quality)
        assert torch.equal(got, torch.from_numpy(decoded.copy()).permute(2, 0, 1).float() / 255)
        errors.append((got - image).pow(2).mean().item())
    assert errors == sorted(errors, reverse=True) and errors[0] > 2 * errors[-1]
    over = jpeg(image * 1.5 - 0.25, 95)  # clipped before the 8-bit cast, not wrapped around
    assert over.max() <= 1 and (over[(image * 1.5 - 0.25) > 1.1] > 0.9).all()


# --------------------------------------------------------------------------------------------------------
# Video compression


def _grainy_pan(frames: int = 30, size: int = 128, seed: int = 0) -> torch.Tensor:
    """A photo panning 3 px a frame under mild fresh noise (σ 0.03): content whose bits the encoders must ration
    at 30-40 kbit per frame, without driving them to their coarsest quantiser."""
    photo = torch.nn.functional.interpolate(_photo(256)[None], size=size, mode="area")[0]
    clip = torch.stack([photo.roll(3 * i, -1) for i in range(frames)])
    noise = torch.from_numpy(np.random.default_rng(seed).normal(0, 0.03, clip.shape)).float()
    return (clip + noise).clamp(0, 1)


@pytest.mark.parametrize("codec", ["libx264", "mpeg4"])
def test_video_compression_spends_the_bitrate_per_frame(codec):
    """At 1 frame per second the bitrate is bits per frame: the encoded stream of 30 frames is within 25% of
    bitrate × 30, and more bits make a closer clip. The tolerance: over so short a clip average-bitrate
    control overshoots (the first I-frame, then convergence; measured 1.10-1.18× for libx264, 0.97-1.04× for
    MPEG-4 Part 2). The bitrate is a target, not a cap: on content too easy for it the encoders spend less
    (0.1-0.4× on a noiseless 128² pan at 100 kbit), and on pure noise they reach their coarsest quantiser and
    spend more (2.2× at 30 kbit), so the test uses content where rate control binds."""
    clip = _grainy_pan()
    errors = []
    for bitrate in (30_000, 40_000):
        out, payload = compress_video(clip, codec, bitrate)
        assert out.shape == clip.shape
        assert payload * 8 / len(clip) == pytest.approx(bitrate, rel=0.25)
        errors.append((out - clip).pow(2).mean().item())
    assert errors[1] < errors[0]


def test_video_compression_is_deterministic_temporal_and_differs_across_codecs():
    clip = _panning_clip(10, 64)
    a, b = compress_video(clip, "libx264", 20_000)[0], compress_video(clip, "libx264", 20_000)[0]
    assert torch.equal(a, b)
    assert not torch.equal(a, compress_video(clip, "mpeg4", 20_000)[0])
    assert torch.equal(a, compress_video(clip, "h264", 20_000)[0])  # FFmpeg's h264 encoder is libx264
    # One pass over the whole clip: changing the first frame changes later decoded frames (predicted from it).
    changed = clip.clone()
    changed[0] = changed[0].flip(-1)
    assert not torch.equal(compress_video(changed, "libx264", 20_000)[0][1:], a[1:])
    # Values outside [0, 1] are clipped before the 8-bit cast (the reference wraps them around).
    bright = compress_video(torch.full((4, 3, 32, 32), 1.2), "libx264", 50_000)[0]
    assert bright.min() > 0.9
    stage = VideoCompression()
    assert torch.equal(stage(clip, np.random.default_rng(7)), stage(clip, np.random.default_rng(7)))


def test_video_compression_takes_odd_and_tiny_frames():
    for h, w in [(2, 2), (5, 7), (9, 16)]:
        out = compress_video(torch.rand(3, 3, h, w), "mpeg4", 10_000)[0]
        assert out.shape == (3, 3, h, w)


# --------------------------------------------------------------------------------------------------------
# The chain's draws


SEEDS = 2000


@pytest.fixture(scope="module")
def plans():
    chain = RealBasicVSR(scale=4)
    return [chain.plan(np.random.default_rng(seed), 4) for seed in range(SEEDS)]


def _assert_frequencies(values, probabilities: dict):
    """Each value's count within 3 binomial standard deviations of its stated probability."""
    values = list(values)
    assert set(values) <= set(probabilities)
    n = len(values)
    for value, p in probabilities.items():
        count = values.count(value)
        assert abs(count - n * p) <= 3 * math.sqrt(n * p * (1 - p)) + 1e-9, (value, count, n * p)


def test_chain_per_clip_choices_follow_the_stated_probabilities(plans):
    draws = [p.draws for p in plans]
    for name in ("blur1", "blur2"):
        _assert_frequencies([d[name].kind for d in draws], KERNEL_PROBS)
        _assert_frequencies([d[name].size for d in draws], {s: 1 / len(KERNEL_SIZES) for s in KERNEL_SIZES})
    _assert_frequencies([d["blur1"].fires for d in draws], {True: 1.0, False: 0.0})
    _assert_frequencies([d["blur2"].fires for d in draws], {True: 0.8, False: 0.2})
    _assert_frequencies([d["sinc"].fires for d in draws], {True: 0.8, False: 0.2})
    _assert_frequencies([d["sinc"].kind for d in draws], {"sinc": 1.0})
    _assert_frequencies([d["resize1"].mode for d in draws], {"up": 0.2, "down": 0.7, "keep": 0.1})
    _assert_frequencies([d["resize2"].mode for d in draws], {"up": 0.3, "down": 0.4, "keep": 0.3})
    for name in ("resize1", "resize2"):
        _assert_frequencies(
            [d[name].interpolation for d in draws], dict.fromkeys(("bilinear", "area", "bicubic"), 1 / 3)
        )
    for name in ("noise1", "noise2"):
        _assert_frequencies([d[name].gaussian for d in draws], {True: 0.5, False: 0.5})
        _assert_frequencies([d[name].gray for d in draws], {True: 0.4, False: 0.6})
    for name in ("video1", "video2"):
        _assert_frequencies([d[name].codec for d in draws], {"libx264": 2 / 3, "mpeg4": 1 / 3})
        bitrates = np.array([d[name].bitrate for d in draws])
        assert bitrates.min() >= 10_000 and bitrates.max() <= 100_000
        assert abs(bitrates.mean() - 55_000) < 3 * 26_000 / math.sqrt(SEEDS)  # uniform: std (b-a)/√12
    _assert_frequencies([p.compression_first for p in plans], {True: 0.5, False: 0.5})
    _assert_frequencies([p.final_interpolation for p in plans], dict.fromkeys(("bilinear", "area", "bicubic"), 1 / 3))


def test_chain_parameters_start_uniform_in_their_ranges_and_drift_by_at_most_their_step(plans):
    draws = [p.draws for p in plans]
    for name, high in (("blur1", 3.0), ("blur2", 1.5)):
        params = np.stack([d[name].params for d in draws])  # (seeds, t, 5)
        sigma = params[..., :2]
        assert sigma.min() >= 0.2 and sigma.max() <= high
        assert abs(sigma[:, 0].mean() - (0.2 + high) / 2) < 3 * (high - 0.2) / math.sqrt(12 * 2 * SEEDS)
        steps = np.abs(np.diff(params, axis=1))
        assert steps[..., :2].max() <= SIGMA_STEP + 1e-12 and steps[..., 2].max() <= ROTATION_STEP + 1e-12
        assert steps[..., 4].max() <= OMEGA_STEP + 1e-12 and steps[..., :3].min() < SIGMA_STEP / 10
        for d in draws:
            family = d[name].kind.split("_")[0]
            beta = d[name].params[:, 3]
            if family in BETA:
                (low, high_beta), step = BETA[family]
                assert beta.min() >= low and beta.max() <= high_beta and np.abs(np.diff(beta)).max() <= step + 1e-12
            omega = d[name].params[:, 4]
            assert omega.min() >= (math.pi / 3 if d[name].size < 13 else math.pi / 5) - 1e-12
    for name, (low, high), step in (("resize1", (0.15, 1.5), 0.015), ("resize2", (0.3, 1.2), 0.03)):
        for d in draws:
            factors, mode = d[name].factors, d[name].mode
            bounds = {"up": (1, high), "down": (low, 1), "keep": (1, 1)}[mode]
            assert factors.min() >= bounds[0] and factors.max() <= bounds[1]
            assert np.abs(np.diff(factors)).max() <= (0 if mode == "keep" else step) + 1e-12
    for name, sigma_max, scale_max in (("noise1", 30, 3.0), ("noise2", 25, 2.5)):
        for d in draws:
            levels, gaussian = d[name].levels, d[name].gaussian
            low, high, step = (1 / 255, sigma_max / 255, 0.1 / 255) if gaussian else (0.05, scale_max, 0.005)
            assert levels.min() >= low and levels.max() <= high and np.abs(np.diff(levels)).max() <= step + 1e-12
    for name in ("jpeg1", "jpeg2"):
        qualities = np.stack([d[name] for d in draws])
        assert (
            qualities.min() >= 30 and qualities.max() <= 95 and np.abs(np.diff(qualities, axis=1)).max() <= QUALITY_STEP
        )
        assert np.issubdtype(qualities.dtype, np.integer)


# --------------------------------------------------------------------------------------------------------
# Against the previous code (tests/realworld_reference.py: FFT blur, dense-matrix unsharp mask, frame by frame)


def _kernels(kind: str, size: int, count: int, rng: np.random.Generator) -> torch.Tensor:
    """``count`` kernels of one type and size, each with its own parameters drawn across the chain's ranges."""
    return torch.from_numpy(np.stack([
        kernels.kernel(kind, size, *rng.uniform(0.2, 3, 2), rng.uniform(-math.pi, math.pi), rng.uniform(0.5, 4),
                       rng.uniform(math.pi / 5, math.pi))
        for _ in range(count)
    ]))  # fmt: skip


@pytest.mark.parametrize("kind", kernels.KINDS)
def test_filter2d_matches_the_previous_fft_filter_within_5e6(kind):
    """Direct convolution (two 1-D passes for a rank-one kernel) against the previous FFT, both float32, and
    against float64: within 5e-6, float32 rounding of a sum of up to 441 products (1/800 of an 8-bit step).
    Kernels of 7-21 taps (the chain's) and 25 (beyond ``DIRECT_TAPS``: the FFT still); frames down to 1×9 and
    2×2, where reflect-101 borders fold more than once. Float64 frames (``vsr data degrade``) within 1e-12."""
    rng = np.random.default_rng(0)
    for size in (7, 13, 21, 25):
        for n, h, w in ((3, 40, 56), (2, 5, 7), (2, 2, 2), (1, 1, 9)):
            taps = _kernels(kind, size, n, rng)
            frames = torch.rand(n, 3, h, w)
            got = kernels.filter2d(frames, taps)
            torch.testing.assert_close(got, reference.filter2d(frames, taps), atol=5e-6, rtol=0)
            exact = reference.filter2d(frames.double(), taps)
            torch.testing.assert_close(got.double(), exact, atol=5e-6, rtol=0)
            torch.testing.assert_close(kernels.filter2d(frames.double(), taps), exact, atol=1e-12, rtol=0)
    # Isotropic Gaussians take the separable path, and anisotropic ones on the axes; the others do not.
    assert (kernels._rank_one(_kernels(kind, 21, 4, rng)) is not None) == (kind == "iso")
    assert kernels._rank_one(torch.from_numpy(kernels.kernel("aniso", 15, 0.7, 2.5, 0.0))[None]) is not None


def test_gaussian_blur_matches_the_previous_dense_matrices_within_1e6():
    """The 51-tap blur as products by bands of its 1-D matrices against the previous whole-matrix products
    (float32): any leading dims, sizes that end a band mid-way, frames smaller than the kernel."""
    for shape in ((2, 3, 3, 64, 40), (1, 3, 100, 33), (4, 3, 128, 96), (1, 3, 5, 3), (1, 1, 1, 1)):
        frames = torch.rand(shape)
        torch.testing.assert_close(kernels.gaussian_blur(frames), reference.gaussian_blur(frames), atol=1e-6, rtol=0)


def test_unsharp_mask_matches_the_previous_one_within_1e5():
    """On photos: the blur's rounding (1e-6, above) can flip a hard-mask pixel whose |residual|·255 lies that
    close to the threshold; that moves the soft mask by one tap product (< 3e-4) times |sharp - x| (about
    0.5 · 10/255 there): under 1e-5. Typically the two agree to float32 rounding."""
    for photo in ("astronaut", "coffee", "chelsea"):
        frame = torch.from_numpy(getattr(skdata, photo)()[:96, :128].copy()).permute(2, 0, 1).float() / 255
        frames = torch.stack([frame, frame.roll(3, -1)])
        difference = (unsharp_mask(frames) - reference.unsharp_mask(frames)).abs()
        assert difference.max() < 1e-5 and difference.median() < 1e-6


def test_blurs_do_not_depend_on_the_number_of_threads():
    """A DataLoader worker runs one thread, the main process several: a seed gives the same sample whatever the
    workers only if the filters' results do not change with the thread count."""
    frames = torch.rand(6, 3, 72, 64)
    taps = {kind: _kernels(kind, 21, 6, np.random.default_rng(1)) for kind in ("iso", "aniso", "sinc")}
    threads, results = torch.get_num_threads(), []
    try:
        for count in (1, 2):
            torch.set_num_threads(count)
            results.append([kernels.filter2d(frames, t) for t in taps.values()] + [unsharp_mask(frames)])
    finally:
        torch.set_num_threads(threads)
    assert all(torch.equal(a, b) for a, b in zip(*results, strict=True))


def test_drifts_draw_what_they_drew_one_frame_at_a_time():
    """The drift steps are drawn in one call: the same values, and the stream left where it was."""
    for frames in (0, 1, 2, 9):
        for low, high, step in (([0.2, -3.0], [3.0, 3.0], [0.02, 0.3]), ([0.5], [0.5], [0.0])):
            new, old = np.random.default_rng(frames), np.random.default_rng(frames)
            np.testing.assert_array_equal(
                drift(new, low, high, step, frames), reference.drift(old, low, high, step, frames)
            )
            assert new.random() == old.random()
        new, old, stage = np.random.default_rng(frames), np.random.default_rng(frames), RandomJPEG()
        np.testing.assert_array_equal(stage.draw(new, frames), reference.jpeg_qualities(stage, old, frames))
        assert new.random() == old.random()


def test_video_compression_decodes_what_pyavs_default_decoding_did_bit_for_bit():
    """Decoding on one thread with one colour converter against the previous code (PyAV's defaults: a threaded
    decoder, a threaded converter per frame): the same frames and the same stream, odd sizes included."""
    clip = _grainy_pan(6, 48)
    for codec in ("libx264", "mpeg4"):
        for part in (clip, clip[..., :45, :37]):
            got, payload = compress_video(part, codec, 30_000)
            expected, expected_payload = reference.compress_video(part, codec, 30_000)
            assert torch.equal(got, expected) and payload == expected_payload


def test_every_stage_of_the_chain_computes_what_the_previous_code_did():
    """The previous code's chain walked stage by stage on a GT clip for several seeds, each stage of the
    current code fed the same frames and a copy of the same realisation stream: resize, noise, JPEG and video
    compression (and the final resize) give the previous frames bit for bit; the blurs (direct convolution
    instead of the FFT) within 5e-6. The seeds cover frames whose sizes drift, both noises, gray noise and both
    codecs."""
    gt = reference.unsharp_mask(_panning_clip(8, 64))
    chain, seen = RealBasicVSR(4), set()
    for seed in range(10):
        plan = chain.plan(np.random.default_rng(seed), len(gt))
        order = [*STAGES[:9], *(("video2", "final", "sinc") if plan.compression_first else ("final", "sinc", "video2"))]
        frames = list(gt)
        for name in order:
            if name == "final":
                frames = [reference.resize(f[None], (16, 16), plan.final_interpolation)[0] for f in frames]
                continue
            stage, draw = chain.stages[name], plan.draws[name]
            expected = reference.reference_apply(stage, frames, draw, copy.deepcopy(plan.streams[name]))
            got = stage.apply(frames, draw, copy.deepcopy(plan.streams[name]))
            assert [f.shape for f in got] == [f.shape for f in expected]
            if name.startswith(("blur", "sinc")):
                assert all(torch.allclose(a, b, atol=5e-6, rtol=0) for a, b in zip(got, expected, strict=True)), name
            else:
                assert all(torch.equal(a, b) for a, b in zip(got, expected, strict=True)), name
            frames = expected
            if name.startswith("noise"):
                seen.add(("gaussian" if draw.gaussian else "poisson", draw.gray))
            if name.startswith("video"):
                seen.add(draw.codec)
            if name == "resize1":
                seen.add(len({f.shape for f in frames}) > 1)
    assert seen >= {("gaussian", False), ("gaussian", True), ("poisson", False), ("poisson", True)}
    assert seen >= {"libx264", "mpeg4", True}


def test_the_chain_is_the_previous_chain_but_for_the_two_filters_it_rounds_differently(monkeypatch):
    """The whole chain against the previous code's chain with only the new blur and unsharp mask swapped in
    (pinned above to float rounding): the same 8-bit LR clip, bit for bit, for every seed.

    Against the previous code as it stood, the LR clips of most seeds differ by more than rounding: a last-bit
    change that carries one pixel across an 8-bit boundary before the video encoder changes the encoder's
    decisions, and the clip after it. The previous code's LR clips moved the same way with the CPU: run on
    SSE4.2 kernels instead of AVX-512 (ATEN_CPU_CAPABILITY, MKL_ENABLE_INSTRUCTIONS), 22 of 30 seeds' LR clips
    of 8×128² changed. So a seed reproduces a degradation on one machine and software stack, not across them."""
    monkeypatch.setattr(reference, "filter2d", kernels.filter2d)
    monkeypatch.setattr(reference, "unsharp_mask", unsharp_mask)
    gt = _panning_clip(6, 64)
    for sharpen in (True, False):
        chain = RealBasicVSR(4, sharpen_gt=sharpen)
        for seed in range(8 if sharpen else 2):
            expected = reference.reference_chain(chain, gt, np.random.default_rng(seed))
            assert torch.equal(chain(gt, np.random.default_rng(seed)), expected), seed


# --------------------------------------------------------------------------------------------------------
# The chain on clips and in training samples


def test_chain_makes_an_8_bit_lr_clip_of_one_size_reproducibly():
    gt = _panning_clip(6, 64)
    chain = build_chain("realbasicvsr", 4)
    assert (chain.scale, chain.radius) == (4, None)
    outs = [chain(gt, np.random.default_rng(seed)) for seed in (0, 0, 1)]
    for out in outs:
        assert out.shape == (6, 3, 16, 16) and out.min() >= 0 and out.max() <= 1
        assert torch.equal(out, out.mul(255).round().div(255))
    assert torch.equal(outs[0], outs[1]) and not torch.equal(outs[0], outs[2])
    plain = build_chain({"name": "realbasicvsr", "sharpen_gt": False}, 4)
    assert not torch.equal(plain(gt, np.random.default_rng(0)), outs[0])
    for name in ("realbasicvsr", "random_blur", "random_resize", "random_noise", "random_jpeg", "video_compression"):
        assert name in choices("degradation")
    for stage in ("random_blur", "random_resize", "random_noise", "random_jpeg", "video_compression"):
        out = build_chain([stage, "bi"], 4)(gt, np.random.default_rng(2))
        assert out.shape == (6, 3, 16, 16)


def test_random_blur_is_local_a_grown_crop_gets_the_crop_of_the_whole_blurred_frames():
    """random_blur's radius (half its largest kernel, 10) is its reach: the crop grown by it, blurred with the
    same draws, gives the crop of the whole blurred frames (float32 FFT rounding aside)."""
    gt = _panning_clip(4, 64)
    stage = build_chain("random_blur", 1).stages[0]
    assert stage.radius == 10
    for seed in range(6):
        whole = stage(gt, np.random.default_rng(seed))[..., 20:36, 24:44]
        grown = stage(gt[..., 10:46, 14:54], np.random.default_rng(seed))[..., 10:26, 10:30]
        torch.testing.assert_close(grown, whole, atol=1e-5, rtol=0)


def test_mirror_choices_are_the_modes_training_clips_accept():
    assert CHOICES["data.mirror"][1] == MIRROR_CHOICES
    assert [mirror_mode(v) for v in MIRROR_CHOICES] == [None, "after_degradation", "before_degradation"]
    assert [mirror_mode(v) for v in (False, True)] == [None, "after_degradation"]
    with pytest.raises(ValueError, match="before_degradation"):
        mirror_mode("before")


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory):
    return tiny_synth(tmp_path_factory.mktemp("synth") / "set")


def _source(root):
    return open_dataset({"layout": "synth", "root": root, "split": "train", "lr": None, "degradation": "realbasicvsr"})


def test_mirroring_before_degradation_degrades_the_two_halves_differently(synth_root):
    source = _source(synth_root)
    kwargs = dict(hflip=False, vflip=False, transpose=False, samples_per_epoch=2, seed=5)
    before = TrainingClips(source, 3, 8, mirror="before_degradation", **kwargs)[0]
    after = TrainingClips(source, 3, 8, mirror=True, **kwargs)[0]
    for sample in (before, after):
        assert sample["lq"].shape == (6, 3, 8, 8) and sample["gt"].shape == (6, 3, 32, 32)
        assert torch.equal(sample["gt"][3:], sample["gt"][:3].flip(0))
    assert torch.equal(after["lq"][3:], after["lq"][:3].flip(0))
    assert not torch.equal(before["lq"][3:], before["lq"][:3].flip(0))


def test_chain_samples_are_reproducible_from_the_seed_whatever_the_workers(synth_root):
    data = TrainingClips(_source(synth_root), 3, 8, samples_per_epoch=4, seed=11, mirror="before_degradation")
    batches = {w: list(torch.utils.data.DataLoader(data, batch_size=2, num_workers=w)) for w in (0, 2)}
    for a, b in zip(batches[0], batches[2], strict=True):
        assert torch.equal(a["lq"], b["lq"]) and torch.equal(a["gt"], b["gt"])
    assert not torch.equal(batches[0][0]["lq"][0], batches[0][0]["lq"][1])


def test_tiny_basicvsr_trains_two_iterations_on_gt_degraded_by_the_chain(synth_root, tmp_path):
    from vsr.training import train

    train_set = {
        "layout": "synth",
        "root": str(synth_root),
        "split": "train",
        "lr": None,
        "degradation": "realbasicvsr",
    }
    recipe = {
        "name": "tiny_realbasicvsr",
        "model": TINY_MODEL,
        "data": {**TINY_DATA, "train": train_set, "val": {**train_set, "split": "val"}, "val_max_frames": 2,
                 "mirror": "before_degradation"},
        "train": {"iterations": 2, "periods": [2], "fix_iterations": 0, "log_every": 1, "val_every": 2,
                  "checkpoint_every": 2, "tensorboard": False},
    }  # fmt: skip
    result = train(recipe, tmp_path / "run", progress=False)
    assert (tmp_path / "run" / "checkpoints" / "latest.pth").is_file()
    assert all(math.isfinite(v) for v in result.metrics.values() if isinstance(v, float))
