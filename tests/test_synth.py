"""The embedded synthetic data set and its rendered scenes: layout, split by photo, LR = degradation of GT, true
flow, atomic writes."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from vsr.components.flow import flow_warp
from vsr.data import flow_files, scenes, synth
from vsr.data.degradations import degrade_folder
from vsr.data.layouts import open_dataset
from vsr.errors import DataError

# In-process (workers=1) so that tests can watch render_clip; two training clips per photograph.
SMALL = dict(frames=6, val_frames=8, size=(64, 64), scale=4, clips_per_photo=2, val_clips_per_photo=1, workers=1)
FRAMES = {"train": 6, "val": 8}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> synth.SynthInfo:
    """Every bundled photo: two 6-frame 64x64 training clips each, one 8-frame validation clip (seconds)."""
    return synth.generate(tmp_path_factory.mktemp("synth") / "set", **SMALL)


def _frames(folder: Path) -> list[np.ndarray]:
    return [np.asarray(Image.open(p)) for p in sorted(folder.glob("*.png"))]


def _tree_digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in root.rglob("*") if p.is_file()
    }


def _tensor(frame: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(frame.copy()).permute(2, 0, 1)[None].double() / 255


def _consistent(flow_ab: torch.Tensor, flow_ba: torch.Tensor, border: int = 2) -> torch.Tensor:
    """Pixels of A seen in B (forward-backward consistent, landing inside B) away from the frame border."""
    h, w = flow_ab.shape[-2:]
    back = flow_warp(flow_ba, flow_ab.permute(0, 2, 3, 1), padding_mode="border")
    valid = (back + flow_ab).norm(dim=1)[0] < 0.05
    ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    tx, ty = xs + flow_ab[0, 0], ys + flow_ab[0, 1]
    valid &= (tx >= border) & (tx <= w - 1 - border) & (ty >= border) & (ty <= h - 1 - border)
    inner = torch.zeros_like(valid)
    inner[border:-border, border:-border] = True
    return valid & inner


def _psnr(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor) -> float:
    mse = (a - b)[0].pow(2).mean(0)[mask].mean().item()
    return 10 * np.log10(1 / mse)


def _affine_residual(flow: np.ndarray) -> np.ndarray:
    """Per-pixel distance of ``flow`` (2, h, w) from its least-squares affine fit ``flow = M [x, y, 1]``."""
    h, w = flow.shape[-2:]
    ys, xs = np.mgrid[:h, :w]
    design = np.stack([xs.ravel(), ys.ravel(), np.ones(h * w)], 1)
    target = flow.reshape(2, -1).T.astype(np.float64)
    coeffs, *_ = np.linalg.lstsq(design, target, rcond=None)
    return np.linalg.norm(design @ coeffs - target, axis=1).reshape(h, w)


def test_layout_counts_and_sizes(dataset):
    meta = json.loads((dataset.root / "synth.json").read_text())
    assert meta["clips"] == dataset.clips and meta["args"]["seed"] == 0
    assert dataset.lr_name == "BIx4"
    for split in ("train", "val"):
        assert sorted(p.name for p in dataset.gt_dir(split).iterdir()) == sorted(dataset.clips[split])
        for clip in dataset.clips[split]:
            frames = FRAMES[split]
            names = [f"{i:08d}.png" for i in range(frames)]
            assert sorted(p.name for p in (dataset.gt_dir(split) / clip).iterdir()) == names
            assert sorted(p.name for p in (dataset.lr_dir(split) / clip).iterdir()) == names
            flows = sorted(p.name for p in (dataset.flow_dir(split) / clip).iterdir())
            assert flows == sorted(f"{i:08d}_{d}.npz" for i in range(frames - 1) for d in ("next", "prev"))
            with Image.open(dataset.gt_dir(split) / clip / names[0]) as gt:
                assert (gt.mode, gt.size) == ("RGB", (64, 64))
            with Image.open(dataset.lr_dir(split) / clip / names[-1]) as lr:
                assert (lr.mode, lr.size) == ("RGB", (16, 16))
            flow = synth.load_flow(dataset.flow_dir(split) / clip, frames - 2, "prev")
            assert flow.dtype == np.float32 and flow.shape == (2, 64, 64)
    photos = len(scenes.available_photos())
    assert dataset.num_clips == {"train": 2 * (photos - 3), "val": 3}
    assert meta["args"]["version"] == synth.GENERATOR_VERSION == 2
    assert not list(dataset.root.parent.glob("set.*")), "no temporary folder may remain"


def test_split_is_by_photo(dataset, tmp_path, monkeypatch):
    train, val = set(dataset.photos["train"]), set(dataset.photos["val"])
    assert val == set(synth.DEFAULT_VAL_PHOTOS) and not train & val
    assert train | val == set(scenes.available_photos())
    for split, photos in dataset.photos.items():
        assert {clip.rsplit("_", 1)[0] for clip in dataset.clips[split]} == set(photos)

    # Foreground layers are cut only from photos of the clip's own split.
    calls = []
    render = synth.render_clip
    monkeypatch.setattr(
        synth, "render_clip", lambda bg, layers, **kw: calls.append((bg, layers)) or render(bg, layers, **kw)
    )
    synth.generate(tmp_path / "s", photos=["astronaut", "coffee", "rocket", "chelsea"], val_photos=["chelsea"], **SMALL)
    assert sorted(calls) == [  # two clips per training photograph, one per validation photograph
        *[("astronaut", ["coffee", "rocket"])] * 2,
        ("chelsea", ["chelsea"]),
        *[("coffee", ["astronaut", "rocket"])] * 2,
        *[("rocket", ["astronaut", "coffee"])] * 2,
    ]


def test_lr_is_the_bi_degradation_of_the_stored_gt(dataset, tmp_path):
    split, clip = "val", dataset.clips["val"][0]
    degrade_folder(dataset.gt_dir(split), tmp_path / "lr", kind="bi", scale=4)
    for ours, reference in zip(_frames(dataset.lr_dir(split) / clip), _frames(tmp_path / "lr" / clip), strict=True):
        np.testing.assert_array_equal(ours, reference)


def test_true_flow_aligns_consecutive_frames(dataset):
    """flow_warp(frame i+1, flow i->i+1) reproduces frame i (and the reverse) on pixels seen in both frames:
    PSNR > 30 dB over the set (> 22 dB for every pair; sharp text moving fast loses more to the bicubic
    re-sampling), far
    above the unaligned frames, and better than the same flow moved by 0.3 px in any direction."""
    shifts = torch.tensor([[0.3, 0.0], [-0.3, 0.0], [0.0, 0.3], [0.0, -0.3]], dtype=torch.float64)
    psnrs = []
    for split in ("train", "val"):
        for clip in dataset.clips[split]:
            frames = [_tensor(f) for f in _frames(dataset.gt_dir(split) / clip)]
            flow_dir = dataset.flow_dir(split) / clip
            for i in range(len(frames) - 1):
                nxt = torch.from_numpy(synth.load_flow(flow_dir, i, "next")).double()[None]
                prev = torch.from_numpy(synth.load_flow(flow_dir, i, "prev")).double()[None]
                for ref, supp, flow, back in (
                    (frames[i], frames[i + 1], nxt, prev),
                    (frames[i + 1], frames[i], prev, nxt),
                ):
                    mask = _consistent(flow, back)
                    assert mask.float().mean() > 0.4, f"{clip} {i}: too few pixels seen in both frames"

                    def aligned(flow, supp=supp, ref=ref, mask=mask):
                        warped = flow_warp(supp, flow.permute(0, 2, 3, 1), "bicubic", padding_mode="border")
                        return _psnr(warped, ref, mask)

                    psnr = aligned(flow)
                    assert psnr > 22 and psnr > _psnr(supp, ref, mask) + 5, f"{clip} {i}: {psnr:.1f} dB"
                    for shift in shifts:
                        assert psnr > aligned(flow + shift.view(1, 2, 1, 1)), f"{clip} {i}: shifted by {shift}"
                    psnrs.append(psnr)
    assert np.mean(psnrs) > 30


def test_motion_is_present_and_not_global(dataset):
    """Every clip moves, and the foreground layers break the single (affine) camera motion."""
    local = []
    for split in ("train", "val"):
        for clip in dataset.clips[split]:
            flows = [synth.load_flow(dataset.flow_dir(split) / clip, i) for i in range(FRAMES[split] - 1)]
            assert max(np.abs(f).max() for f in flows) > 1.0, f"{clip}: no motion"
            local += [_affine_residual(f).max() > 1.0 for f in flows]
    assert np.mean(local) > 0.8


def test_background_flow_is_an_exact_similarity_and_aligns_everywhere():
    clip = scenes.render_clip("astronaut", [], seed=3, frames=4, size=(64, 64), layers=0)
    for i in range(3):
        flow = clip.flow_next[i]
        assert _affine_residual(flow).max() < 1e-3
        warped = flow_warp(
            _tensor(clip.frames[i + 1]), torch.from_numpy(flow).double()[None].permute(0, 2, 3, 1), "bicubic"
        )
        inner = torch.zeros(64, 64, dtype=torch.bool)
        inner[12:-12, 12:-12] = True
        assert _psnr(warped, _tensor(clip.frames[i]), inner) > 30


def test_camera_never_leaves_the_photo():
    for seed in range(40):
        rng = np.random.default_rng(seed)
        photo_hw, size = ((191, 384), (128, 128)) if seed % 2 else ((512, 512), (64, 96))
        camera = scenes._camera(rng, photo_hw, size, frames=20, scale=4)
        (h, w), (H, W) = size, photo_hw
        corners = np.array([[-0.5, -0.5], [w - 0.5, -0.5], [-0.5, h - 0.5], [w - 0.5, h - 0.5]])
        seen = camera.to_object(corners)  # (frames, 4, 2)
        assert seen.min() >= 0 and seen[..., 0].max() <= W - 1 and seen[..., 1].max() <= H - 1


def test_deterministic_given_the_seed(tmp_path):
    kwargs = dict(photos=["astronaut", "coffee", "chelsea"], val_photos=["chelsea"], **SMALL)
    a = synth.generate(tmp_path / "a", seed=7, **kwargs)
    b = synth.generate(tmp_path / "b", seed=7, **kwargs)
    c = synth.generate(tmp_path / "c", seed=8, **kwargs)
    assert _tree_digest(a.root) == _tree_digest(b.root)
    gt = "train/GT/astronaut_000/00000000.png"
    assert _tree_digest(a.root)[gt] != _tree_digest(c.root)[gt]


def test_cached_refused_overwritten_and_atomic(tmp_path, monkeypatch):
    kwargs = dict(photos=["astronaut", "chelsea"], val_photos=["chelsea"], **SMALL)
    root = tmp_path / "set"
    first = synth.generate(root, **kwargs)
    digest = _tree_digest(root)

    monkeypatch.setattr(synth, "render_clip", lambda *a, **k: pytest.fail("a cached set must not be re-rendered"))
    again = synth.generate(root, **kwargs)
    assert again.cached and not first.cached and again.clips == first.clips
    monkeypatch.undo()

    with pytest.raises(DataError, match=r"other arguments.*overwrite=True"):
        synth.generate(root, seed=1, **kwargs)
    assert _tree_digest(root) == digest
    synth.generate(root, seed=1, overwrite=True, **kwargs)
    assert json.loads((root / "synth.json").read_text())["args"]["seed"] == 1
    assert _tree_digest(root) != digest

    # An interrupted generation leaves neither a set that looks complete nor its temporary folder.
    calls, render = [], synth.render_clip

    def interrupted(*args, **kw):
        calls.append(args[0])
        if len(calls) == 2:
            raise KeyboardInterrupt
        return render(*args, **kw)

    monkeypatch.setattr(synth, "render_clip", interrupted)
    with pytest.raises(KeyboardInterrupt):
        synth.generate(tmp_path / "new", **kwargs)
    assert len(calls) == 2 and sorted(p.name for p in tmp_path.iterdir()) == ["set"]

    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(DataError, match="not a synthetic data set"):
        synth.generate(tmp_path / "other", overwrite=True, **kwargs)


def test_default_root_and_ensure_default(tmp_path, monkeypatch):
    monkeypatch.setenv("VSR_DATA", str(tmp_path / "elsewhere"))
    assert synth.default_root() == tmp_path / "elsewhere"
    monkeypatch.delenv("VSR_DATA")
    monkeypatch.chdir(tmp_path)
    assert synth.default_root() == tmp_path / "data" / "synth"

    made = []

    def fake_generate(root, **kwargs):
        made.append(root)
        root.mkdir(parents=True)
        (root / "synth.json").write_text("{}")

    monkeypatch.setattr(synth, "generate", fake_generate)
    assert synth.ensure_default() == tmp_path / "data" / "synth" and made == [tmp_path / "data" / "synth"]
    assert synth.ensure_default() == tmp_path / "data" / "synth" and len(made) == 1, "an existing set is reused"


def test_bad_arguments_are_named(tmp_path, dataset):
    with pytest.raises(DataError, match="'lena' is not available"):
        synth.generate(tmp_path / "x", photos=["lena"], **SMALL)
    with pytest.raises(DataError, match="multiple of the scale 4"):
        synth.generate(tmp_path / "x", frames=6, size=(66, 64))
    with pytest.raises(DataError, match=r"unknown degradation 'gaussian_noise'; choose one of bd, bi"):
        synth.generate(tmp_path / "x", degradation="gaussian_noise", **SMALL)
    with pytest.raises(DataError, match=r"the bd degradation at scale 3: cannot be built: BD needs an even scale"):
        synth.generate(tmp_path / "x", degradation="bd", **{**SMALL, "scale": 3, "size": (48, 48)})
    with pytest.raises(DataError, match="both splits"):
        synth.generate(tmp_path / "x", photos=["astronaut"], val_photos=["astronaut"], **SMALL)
    with pytest.raises(DataError, match="direction must be"):
        synth.load_flow(dataset.flow_dir("val"), 0, "forward")
    with pytest.raises(DataError, match="does not exist"):
        synth.load_flow(dataset.flow_dir("val") / dataset.clips["val"][0], 7)


def test_clips_of_one_photograph_move_differently(dataset):
    """Version 2 renders several clips per photograph, each with its own trajectory, speed and layers."""
    first, second = (dataset.flow_dir("train") / f"coffee_{i:03d}" for i in range(2))
    a, b = synth.load_flow(first, 0), synth.load_flow(second, 0)
    assert np.abs(a - b).mean() > 0.5


def test_speeds_range_from_sub_pixel_to_several_lr_pixels():
    """The largest per-frame step of the camera, in LR pixels, spans sub-pixel to several-pixel clips."""
    steps = []
    for seed in range(40):
        clip = scenes.render_clip("coffee", [], seed=[0, seed], frames=6, size=(64, 64), layers=0)
        steps.append(max(np.linalg.norm(f, axis=0).max() for f in clip.flow_next) / 4)
    assert min(steps) < 0.5 and max(steps) > 2.5
    assert 0.2 < np.mean(np.array(steps) < 1.0) < 0.8


def test_compact_flow_equals_the_dense_true_flow(dataset, tmp_path):
    """The stored piecewise-affine flow is the rendered clip's flow exactly, at a fraction of its dense size."""
    clip = scenes.render_clip("coffee", ["rocket"], seed=[0, 1], frames=3, size=(64, 64), layers=2)
    flow_files.write_affine_flow(tmp_path / "f.npz", clip.surface[1], clip.affine_flow(1, 0))
    np.testing.assert_allclose(flow_files.read_flow(tmp_path / "f.npz"), clip.flow_prev[0], atol=1e-5)
    assert flow_files.flow_shape(tmp_path / "f.npz") == (2, 64, 64)
    # The same, from a direct per-pixel mapping through the motions (no affine composition).
    surface = clip.surface[1]
    ys, xs = np.mgrid[:64, :64]
    A, d = clip.A[1][surface], clip.d[1][surface]  # (h, w, 2, 2), (h, w, 2)
    world = (A @ np.stack([xs, ys], -1)[..., None])[..., 0] + d
    A0, d0 = clip.A[0][surface], clip.d[0][surface]
    seen = (np.linalg.inv(A0) @ (world - d0)[..., None])[..., 0]
    np.testing.assert_allclose(clip.flow_prev[0], (seen - np.stack([xs, ys], -1)).transpose(2, 0, 1), atol=1e-4)
    assert (tmp_path / "f.npz").stat().st_size < 2 * 64 * 64 * 2 / 4


def test_rendering_in_worker_processes_gives_the_same_set(tmp_path):
    kwargs = dict(photos=["astronaut", "coffee", "chelsea"], val_photos=["chelsea"], **{**SMALL, "workers": 1})
    one = synth.generate(tmp_path / "one", **kwargs)
    two = synth.generate(tmp_path / "two", **{**kwargs, "workers": 2})
    assert _tree_digest(one.root) == _tree_digest(two.root)


def test_a_set_of_another_generator_version_is_refused_with_the_fix(dataset, tmp_path):
    old = tmp_path / "old"
    shutil.copytree(dataset.root, old)
    meta = json.loads((old / "synth.json").read_text())
    meta["args"]["version"] = 1
    (old / "synth.json").write_text(json.dumps(meta))
    with pytest.raises(DataError, match=r"generator version 1.*vsr data synth --out .*old --overwrite"):
        open_dataset({"layout": "synth", "root": str(old), "split": "val"})
    with pytest.raises(DataError, match="generator version 1"):
        synth.SynthInfo.read(old)
