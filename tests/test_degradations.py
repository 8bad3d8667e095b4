"""BI against BasicSR's MATLAB-imresize port; BD against a loop-by-loop transcription of BD_degradation.m."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data as skdata

from vsr.atomic import OUTPUT_MARKER
from vsr.data.degradations import (
    Degradation,
    GaussianNoise,
    Region,
    bd,
    bd_kernel_size,
    bi,
    build_chain,
    clip_seed,
    degrade_folder,
    gaussian_kernel,
    imresize,
    modcrop,
)
from vsr.errors import DataError, RecipeError
from vsr.registry import REGISTRY, register

from basicsr_reference import ReferenceUnavailable, import_basicsr


@pytest.fixture(scope="module")
def matlab_functions():
    try:
        return import_basicsr("basicsr.utils.matlab_functions")
    except ReferenceUnavailable as err:
        pytest.skip(str(err))


def photo(h: int = 96, w: int = 120) -> np.ndarray:
    """A real photograph crop, float32 HWC in [0, 1] (96x120 divides by 2, 3 and 4)."""
    return skdata.astronaut()[100 : 100 + h, 150 : 150 + w].astype(np.float32) / 255


def to_chw(img: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1)))


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_bi_matches_basicsr_imresize_within_1e5(matlab_functions, scale):
    img = photo()
    expected = matlab_functions.imresize(img, 1 / scale)  # numpy HWC in, HWC out
    got = bi(to_chw(img), scale)
    assert got.dtype == torch.float32 and got.shape == (3, 96 // scale, 120 // scale)
    np.testing.assert_allclose(got.numpy().transpose(1, 2, 0), expected, rtol=0, atol=1e-5)


@pytest.mark.parametrize("factor", [2.0, 0.5])
def test_imresize_matches_basicsr_both_ways_within_1e5(matlab_functions, factor):
    img = photo(24, 32)
    expected = matlab_functions.imresize(img, factor)
    got = imresize(to_chw(img), factor).numpy().transpose(1, 2, 0)
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5)


@pytest.mark.parametrize("degrade", [bi, bd], ids=["bi", "bd"])
def test_batched_over_leading_dims_and_dtype_preserving(degrade):
    frames = torch.rand(2, 3, 3, 16, 24, dtype=torch.float64)
    out = degrade(frames, scale=4)
    assert out.shape == (2, 3, 3, 4, 6) and out.dtype == torch.float64
    for i in range(2):
        for j in range(3):
            torch.testing.assert_close(out[i, j], degrade(frames[i, j], scale=4), rtol=0, atol=1e-12)
    assert degrade(frames.float(), scale=4).dtype == torch.float32


@pytest.mark.parametrize("degrade", [bi, bd], ids=["bi", "bd"])
def test_constant_frame_stays_constant(degrade):
    frames = torch.full((3, 20, 28), 0.37, dtype=torch.float64)
    out = degrade(frames, scale=4)
    torch.testing.assert_close(out, torch.full((3, 5, 7), 0.37, dtype=torch.float64), rtol=0, atol=1e-12)


def test_bd_kernel_is_matlab_fspecial_12x12():
    assert bd_kernel_size(1.6) == 12
    kernel = gaussian_kernel(12, 1.6)
    assert kernel.shape == (12, 12)
    assert kernel.sum().item() == pytest.approx(1.0, abs=1e-12)
    # Even size: the grid is -5.5 ... 5.5, so the four central taps tie for the maximum.
    centre = kernel[5:7, 5:7]
    assert torch.allclose(centre, centre.max().expand(2, 2), rtol=0, atol=1e-15)
    assert kernel.max().item() == centre.max().item()
    ratio = (kernel[5, 6] / kernel[5, 7]).item()  # x = 0.5 vs x = 1.5 on the same row
    assert ratio == pytest.approx(math.exp((1.5**2 - 0.5**2) / (2 * 1.6**2)), rel=1e-12)


def bd_reference(img: np.ndarray, scale: int = 4, sigma: float = 1.6) -> np.ndarray:
    """BD_degradation.m written out with MATLAB's 1-based indices, one output pixel at a time."""
    size = int(np.ceil(sigma * 3) * 2 + 2)
    grid = np.arange(1, size + 1) - (size + 1) / 2  # meshgrid(-(size-1)/2 : (size-1)/2)
    kernel = np.exp(-(grid[:, None] ** 2 + grid[None, :] ** 2) / (2 * sigma**2))
    kernel /= kernel.sum()
    anchor = (size + 1) // 2  # imfilter's centre, floor((size + 1) / 2)
    h, w = img.shape[:2]
    rows = range(scale // 2, h - scale // 2 + 1, scale)  # scale/2 : scale : end - scale/2
    cols = range(scale // 2, w - scale // 2 + 1, scale)
    out = np.zeros((len(rows), len(cols), img.shape[2]))
    for i, p in enumerate(rows):
        for j, q in enumerate(cols):
            acc = np.zeros(img.shape[2])
            for u in range(1, size + 1):
                for v in range(1, size + 1):
                    r = min(max(p + u - anchor, 1), h)  # 'replicate'
                    c = min(max(q + v - anchor, 1), w)
                    acc += kernel[u - 1, v - 1] * img[r - 1, c - 1]
            out[i, j] = acc
    return out


@pytest.mark.parametrize("scale", [4, 2])
def test_bd_matches_loop_transcription_of_matlab_script(scale):
    img = photo(20, 24).astype(np.float64)
    expected = bd_reference(img, scale)
    got = bd(to_chw(img), scale).numpy().transpose(1, 2, 0)
    assert got.shape == expected.shape == (20 // scale, 24 // scale, 3)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)


def test_bd_sampling_phase_is_not_the_duf_phase():
    # An impulse at 0-based row/col 1 must land on LR pixel (0, 0) with the kernel's (shared) peak weight.
    frame = torch.zeros(1, 16, 16, dtype=torch.float64)
    frame[0, 1, 1] = 1.0
    out = bd(frame)
    assert out[0, 0, 0].item() == pytest.approx(gaussian_kernel(12, 1.6).max().item(), rel=1e-12)


def test_bad_inputs_raise_with_fix():
    with pytest.raises(ValueError, match=r"frame size 30x32 .* not divisible by scale 4.*modcrop"):
        bi(torch.rand(3, 30, 32))
    with pytest.raises(ValueError, match="float tensor"):
        bi(torch.zeros(3, 16, 16, dtype=torch.uint8))
    with pytest.raises(ValueError, match="scale must be even"):
        bd(torch.rand(3, 18, 18), scale=3)
    with pytest.raises(ValueError, match="positive integer"):
        bi(torch.rand(3, 16, 16), scale=0)


def test_modcrop_keeps_top_left_multiple_of_scale():
    frames = torch.arange(2 * 3 * 10 * 13, dtype=torch.float32).reshape(2, 3, 10, 13)
    cropped = modcrop(frames, 4)
    assert cropped.shape == (2, 3, 8, 12)
    assert torch.equal(cropped, frames[..., :8, :12])


def write_png(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def test_degrade_folder_writes_rounded_lr_and_resumes(tmp_path):
    rng = np.random.default_rng(0)
    gt_root, lr_root = tmp_path / "GT", tmp_path / "BDx4"
    names = ["calendar/00000000.png", "calendar/00000001.png", "00001/0001/im1.png"]  # Vid4- and Vimeo-like
    frames = {name: rng.integers(0, 256, (16, 24, 3), dtype=np.uint8) for name in names}
    for name, array in frames.items():
        write_png(gt_root / name, array)

    assert degrade_folder(gt_root, lr_root, kind="bd") == 3
    for name, array in frames.items():
        lr = np.asarray(Image.open(lr_root / name))
        exact = bd(to_chw(array.astype(np.float64) / 255)).numpy().transpose(1, 2, 0)
        assert lr.dtype == np.uint8 and lr.shape == (4, 6, 3)
        np.testing.assert_array_equal(lr, np.floor(np.clip(exact, 0, 1) * 255 + 0.5).astype(np.uint8))
    # no temporary files left behind; the one hidden file is vsr's marker, which lets --overwrite replace them
    assert [p.relative_to(lr_root).as_posix() for p in lr_root.rglob(".*")] == [OUTPUT_MARKER]

    assert degrade_folder(gt_root, lr_root, kind="bd") == 0  # existing outputs are kept
    (lr_root / names[0]).unlink()
    assert degrade_folder(gt_root, lr_root, kind="bd") == 1
    assert degrade_folder(gt_root, lr_root, kind="bi", overwrite=True) == 3
    expected_bi = bi(to_chw(frames[names[2]].astype(np.float64) / 255)).numpy().transpose(1, 2, 0)
    np.testing.assert_array_equal(
        np.asarray(Image.open(lr_root / names[2])), np.floor(np.clip(expected_bi, 0, 1) * 255 + 0.5)
    )


def test_degrade_folder_errors_name_the_problem(tmp_path):
    with pytest.raises(DataError, match=r"missing.* does not exist"):
        degrade_folder(tmp_path / "missing", tmp_path / "lr")
    (tmp_path / "empty" / "clip").mkdir(parents=True)
    with pytest.raises(DataError, match="no PNG frames under"):
        degrade_folder(tmp_path / "empty", tmp_path / "lr")
    write_png(tmp_path / "odd" / "clip" / "0.png", np.zeros((18, 16, 3), dtype=np.uint8))
    with pytest.raises(DataError, match=r"0\.png: frame size 18x16 is not divisible by scale 4"):
        degrade_folder(tmp_path / "odd", tmp_path / "lr")
    with pytest.raises(RecipeError, match=r"unknown degradation; valid choices: bd, bi, gaussian_noise"):
        degrade_folder(tmp_path / "odd", tmp_path / "lr", kind="bicubic")
    with pytest.raises(DataError, match="inside the ground-truth folder"):
        degrade_folder(tmp_path / "odd", tmp_path / "odd" / "lr")


def test_degrade_folder_takes_a_chain_and_seeds_it_per_clip_and_frame(tmp_path):
    """A chain with noise: the same LR frames on every run, other noise on every frame and clip."""
    gray = np.full((16, 16, 3), 128, dtype=np.uint8)
    for name in ("a/0.png", "a/1.png", "b/0.png"):
        write_png(tmp_path / "GT" / name, gray)
    chain = ["bi", {"name": "gaussian_noise", "sigma": 0.1}]
    assert degrade_folder(tmp_path / "GT", tmp_path / "one", kind=chain) == 3
    assert degrade_folder(tmp_path / "GT", tmp_path / "two", kind=chain) == 3
    read = lambda root, name: np.asarray(Image.open(root / name)).astype(int)  # noqa: E731
    for name in ("a/0.png", "a/1.png", "b/0.png"):
        np.testing.assert_array_equal(read(tmp_path / "one", name), read(tmp_path / "two", name))
    assert not np.array_equal(read(tmp_path / "one", "a/0.png"), read(tmp_path / "one", "a/1.png"))
    assert not np.array_equal(read(tmp_path / "one", "a/0.png"), read(tmp_path / "one", "b/0.png"))
    assert 0.08 * 255 < read(tmp_path / "one", "a/0.png").std() < 0.12 * 255


def test_degrade_folder_draws_a_random_chains_per_clip_values_once_per_clip_as_evaluation_does(tmp_path):
    """A degradation that draws one value per clip (a brightness offset) gets one value for all the frames of a
    clip written to disk, and the frames equal what evaluation makes on the fly from the same GT."""

    @register("degradation", "clip_offset_test")
    class ClipOffset(Degradation):
        radius = 0

        def __call__(self, clip, rng, region=None):
            return (clip + rng.uniform(0.1, 0.3)).clamp(0, 1)

    try:
        gray = np.full((16, 16, 3), 64, dtype=np.uint8)
        for name in ("a/0.png", "a/1.png", "a/2.png"):
            write_png(tmp_path / "GT" / name, gray)
        chain = ["bi", "clip_offset_test"]
        assert degrade_folder(tmp_path / "GT", tmp_path / "LR", kind=chain) == 3
        frames = [np.asarray(Image.open(tmp_path / "LR" / f"a/{i}.png")).astype(int) for i in range(3)]
        assert len({int(f.mean()) for f in frames}) == 1 and frames[0].mean() > 64 + 0.1 * 255 - 1
        gt = torch.full((3, 3, 16, 16), 64 / 255, dtype=torch.float64)
        expected = build_chain(chain, 4)(gt, np.random.default_rng(clip_seed("a")))
        on_disk = torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2).double() / 255
        assert torch.allclose(on_disk, expected, atol=0.5 / 255 + 1e-9)
    finally:
        del REGISTRY["degradation"]["clip_offset_test"]


# ------------------------------------------------------------------------------------ the degradation kind


def test_a_chain_shrinks_by_the_product_of_its_stages_and_reaches_their_sum_in_gt_pixels():
    chain = build_chain([{"name": "bd", "sigma": 0.8}, {"name": "gaussian_noise", "sigma": 0.05}], 4)
    assert (chain.scale, chain.radius) == (4, 4)  # BD: 8x8 kernel, reach 4; noise: 0
    noise_first = build_chain([{"name": "gaussian_noise", "sigma": 0.05}, "bi"], 2)
    assert (noise_first.scale, noise_first.radius) == (2, 6)  # BI x2 reaches 2 * 2 + 2
    assert build_chain("bi", 4).radius == 10 and build_chain({"name": "bd"}, 4).radius == 6


@pytest.mark.parametrize(
    ("value", "scale", "message"),
    [
        (["bi", "bi"], 4, r"'degradation' = \['bi', 'bi'\]: shrinks frames 16x but the data set is x4"),
        ({"name": "gaussian_noise", "sigma": 0.1}, 4, r"shrinks frames 1x but the data set is x4"),
        ([], 4, r"a degradation chain needs one stage or more"),
        (
            ["bi", {"name": "gaussian_noise"}],
            4,
            r"'degradation\[1\]'.*needs sigma: write \{name: gaussian_noise",
        ),
        ({"name": "bd", "sigma": 0}, 4, r"'degradation.sigma' = 0: must be a number > 0"),
        ({"name": "bd", "blur": 1}, 4, r"'degradation.blur' = 1: not an argument of degradation 'bd'"),
        ({"name": "bd", "scale": 2}, 4, r"vsr sets this argument of degradation 'bd', not the recipe"),
        ("bd", 3, r"cannot be built: BD needs an even scale"),
        (3, 4, r"write a name or a mapping with 'name'"),
    ],
)
def test_a_chain_that_cannot_be_built_fails_naming_the_stage(value, scale, message):
    with pytest.raises(RecipeError, match=message):
        build_chain(value, scale)


def test_noise_on_a_region_is_the_crop_of_the_noise_of_the_whole_frames():
    """A local stage drawing per pixel gets the same values on a crop as on the whole frames."""
    frames = torch.full((2, 3, 12, 20), 0.5)
    noise = GaussianNoise(0.1)
    whole = noise(frames.clone(), np.random.default_rng(7))
    crop = noise(frames[..., 4:10, 6:14].clone(), np.random.default_rng(7), Region(4, 6, 12, 20))
    assert torch.equal(crop, whole[..., 4:10, 6:14])
    first = noise(frames[:1].clone(), np.random.default_rng(7))
    assert torch.equal(first, whole[:1])  # drawn frame by frame: the first frames do not depend on the rest


def test_vsr_data_degrade_takes_a_chain_and_names_kind_in_its_errors(tmp_path):
    from typer.testing import CliRunner

    from vsr.cli import app

    gray = np.full((16, 16, 3), 128, dtype=np.uint8)
    write_png(tmp_path / "GT" / "a" / "0.png", gray)
    runner = CliRunner()
    chain = "[bi, {name: gaussian_noise, sigma: 0.1}]"
    done = runner.invoke(app, ["data", "degrade", str(tmp_path / "GT"), str(tmp_path / "LR"), "--kind", chain])
    assert done.exit_code == 0, done.output
    noisy = np.asarray(Image.open(tmp_path / "LR" / "a" / "0.png")).astype(float)
    assert noisy.shape == (4, 4, 3) and noisy.std() > 5
    done = runner.invoke(
        app, ["data", "degrade", str(tmp_path / "GT"), str(tmp_path / "L2"), "--kind", "gaussian_noise"]
    )
    assert done.exit_code == 2
    assert "'--kind' = {'name': 'gaussian_noise'}: degradation 'gaussian_noise' needs sigma" in done.output
