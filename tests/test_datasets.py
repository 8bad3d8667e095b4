"""Data set readers on tiny fixture trees of every layout (REDS, Vimeo-90K, Vid4, UDM10, folder, synth).

LR frames of the fixtures are the exact 4× box average of their GT frames (rounded), so that the alignment
of every returned LR/GT pair can be checked independently: LR crop == box average of the GT crop.
"""

from __future__ import annotations

import itertools
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from vsr.data.augmentation import Augmentation, mirror_sample
from vsr.data.datasets import TestClips, TrainingClips
from vsr.data.degradations import BD, BI, Degradation, GaussianNoise, Region, bd, bi, clip_seed
from vsr.data.layouts import (
    detect_layout,
    folder_clips,
    list_frames,
    open_dataset,
    reds_clips,
    udm10_clips,
    vid4_clips,
    vimeo_clips,
)
from vsr.data.synth import GENERATOR_VERSION
from vsr.errors import DataError, RecipeError
from vsr.registry import REGISTRY, register

S = 4  # scale of every fixture


def box_down(gt: np.ndarray, s: int = S) -> np.ndarray:
    """Exact s× box average of uint8 frames ``(..., H, W, 3)``, rounded half up."""
    *lead, h, w, c = gt.shape
    mean = gt.reshape(*lead, h // s, s, w // s, s, c).astype(np.float64).mean(axis=(-4, -2))
    return np.floor(mean + 0.5).astype(np.uint8)


def box_down_chw(gt: torch.Tensor, s: int = S) -> torch.Tensor:
    """The same on the data set's float ``(t, 3, H, W)`` output, as 0..255 integers."""
    frames = (gt * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    return torch.from_numpy(box_down(frames, s)).permute(0, 3, 1, 2).float()


def assert_aligned(sample: dict) -> None:
    lq255 = (sample["lq"] * 255).round()
    assert sample["gt"].shape[-2:] == (S * lq255.shape[-2], S * lq255.shape[-1])
    assert torch.equal(lq255, box_down_chw(sample["gt"])), "LR crop is not the box average of the GT crop"


def random_frames(rng: np.random.Generator, n: int, h: int, w: int) -> np.ndarray:
    return rng.integers(0, 256, size=(n, h, w, 3), dtype=np.uint8)


def write_frames(folder: Path, frames: np.ndarray, names: list[str]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for frame, name in zip(frames, names, strict=True):
        Image.fromarray(frame).save(folder / name, compress_level=1)


def write_pair(gt_dir: Path, lr_dir: Path | None, frames: np.ndarray, names: list[str], lr_names=None) -> None:
    write_frames(gt_dir, frames, names)
    if lr_dir is not None:
        write_frames(lr_dir, box_down(frames), lr_names or names)


def numbered(n: int, template: str = "{:08d}.png") -> list[str]:
    return [template.format(i) for i in range(n)]


# ---------------------------------------------------------------------------------------------- fixtures


@pytest.fixture
def reds_root(tmp_path: Path) -> Path:
    tmp_path = tmp_path / "reds"
    rng = np.random.default_rng(0)
    for clip in ("000", "001", "011", "015", "020", "021"):
        write_pair(
            tmp_path / "train_sharp" / clip,
            tmp_path / "train_sharp_bicubic" / "X4" / clip,
            random_frames(rng, 6, 16, 24),
            numbered(6),
        )
    return tmp_path


@pytest.fixture
def vimeo_root(tmp_path: Path) -> Path:
    tmp_path = tmp_path / "vimeo"
    rng = np.random.default_rng(1)
    names = ["00001/0001", "00001/0002", "00002/0001"]
    for name in names:
        write_pair(
            tmp_path / "GT" / name,
            tmp_path / "BIx4" / name,
            random_frames(rng, 7, 16, 16),
            [f"im{i}.png" for i in range(1, 8)],
        )
    (tmp_path / "sep_trainlist.txt").write_text("00001/0001\n00002/0001\n\n")
    (tmp_path / "sep_testlist.txt").write_text("00001/0002 7 (16, 16, 3)\n")
    return tmp_path


@pytest.fixture
def vid4_root(tmp_path: Path) -> Path:
    tmp_path = tmp_path / "vid4"
    rng = np.random.default_rng(2)
    for clip, n, (h, w) in (("calendar", 5, (16, 24)), ("city", 4, (24, 16)), ("walk", 3, (16, 16))):
        write_pair(tmp_path / "GT" / clip, tmp_path / "BIx4" / clip, random_frames(rng, n, h, w), numbered(n))
    return tmp_path


@pytest.fixture
def udm10_root(tmp_path: Path) -> Path:
    tmp_path = tmp_path / "udm10"
    rng = np.random.default_rng(3)
    for clip in ("archpeople", "auditorium"):
        # MMagic's UDM10 test config: GT '{:04d}.png', LR '{:03d}.png' (frames numbered from 1).
        gt_names = [f"{i:04d}.png" for i in range(1, 13)]
        lr_names = [f"{i:03d}.png" for i in range(1, 13)]
        write_pair(tmp_path / "GT" / clip, tmp_path / "BDx4" / clip, random_frames(rng, 12, 16, 16), gt_names, lr_names)
    return tmp_path


def block_permutation_clip(rng: np.random.Generator, n: int, h: int, w: int):
    """LR frames whose pixels are unique (R channel = id) and move by a non-uniform integer field between
    frames, GT = LR upsampled by pixel repetition; returns GT frames and the GT-resolution flows."""
    ids = rng.permutation(h * w).reshape(h, w)
    lr = np.zeros((n, h, w, 3), np.uint8)
    lr[0, ..., 0] = ids * (256 // (h * w))
    lr[0, ..., 1:] = rng.integers(0, 256, size=(h, w, 2))
    flow_next = np.zeros((n - 1, 2, h, w))
    flow_prev = np.zeros((n - 1, 2, h, w))
    ys, xs = np.mgrid[0:h, 0:w]
    for k in range(n - 1):
        # (y, x) -> ((y + a(x)) mod h, (x + b) mod w): a column-dependent cyclic shift, a bijection.
        a, b = rng.integers(0, h, size=w), int(rng.integers(1, w))
        ty, tx = (ys + a[xs]) % h, (xs + b) % w
        lr[k + 1][ty, tx] = lr[k][ys, xs]
        flow_next[k, 0], flow_next[k, 1] = tx - xs, ty - ys
        flow_prev[k, 0][ty, tx], flow_prev[k, 1][ty, tx] = xs - tx, ys - ty
    gt = lr.repeat(S, axis=1).repeat(S, axis=2)
    up = lambda f: (f * S).repeat(S, axis=-2).repeat(S, axis=-1).astype(np.float16)  # noqa: E731
    return gt, up(flow_next), up(flow_prev)


@pytest.fixture
def flow_root(tmp_path: Path) -> Path:
    """A synthetic-set-like tree: synth.json, train/{GT,BIx4,flow}/<clip>/."""
    tmp_path = tmp_path / "synth"
    tmp_path.mkdir()
    rng = np.random.default_rng(4)
    (tmp_path / "synth.json").write_text(json.dumps({"args": {"scale": S, "version": GENERATOR_VERSION}}))
    for clip in ("a", "b"):
        gt, flow_next, flow_prev = block_permutation_clip(rng, 5, 8, 8)
        split = tmp_path / "train"
        write_pair(split / "GT" / clip, split / "BIx4" / clip, gt, numbered(5))
        (split / "flow" / clip).mkdir(parents=True)
        for i in range(4):
            np.save(split / "flow" / clip / f"{i:08d}_next.npy", flow_next[i])
            np.save(split / "flow" / clip / f"{i:08d}_prev.npy", flow_prev[i])
    return tmp_path


# ---------------------------------------------------------------------------------------------- discovery


def test_reds_splits(reds_root: Path):
    assert [c.name for c in reds_clips(reds_root, "reds4")] == ["000", "011", "015", "020"]
    train = reds_clips(reds_root, "train")
    assert [c.name for c in train] == ["001", "021"]
    assert [p.name for p in train[0].gt] == numbered(6)
    assert train[0].lr[0] == reds_root / "train_sharp_bicubic" / "X4" / "001" / "00000000.png"
    assert detect_layout(reds_root) == "reds"
    assert open_dataset({"root": reds_root, "split": "reds4"}).names == ["000", "011", "015", "020"]


def test_reds4_missing_clip(reds_root: Path):
    for frame in (reds_root / "train_sharp" / "015").iterdir():
        frame.unlink()
    (reds_root / "train_sharp" / "015").rmdir()
    with pytest.raises(DataError, match=r"REDS4 clip folders 015 are missing"):
        reds_clips(reds_root, "reds4")
    with pytest.raises(DataError, match=r"unknown REDS split 'val'; valid splits: train, reds4"):
        reds_clips(reds_root, "val")


def test_vimeo_lists(vimeo_root: Path):
    train = vimeo_clips(vimeo_root, "train", "BIx4")
    assert [c.name for c in train] == ["00001/0001", "00002/0001"]
    assert [p.name for p in train[1].gt] == [f"im{i}.png" for i in range(1, 8)]
    assert [c.name for c in vimeo_clips(vimeo_root, "test")] == ["00001/0002"]
    assert detect_layout(vimeo_root) == "vimeo"
    (vimeo_root / "sep_testlist.txt").write_text("00009/0009\n")
    with pytest.raises(DataError, match=r"clip 00009/0009 listed in .*sep_testlist.txt has no GT folder"):
        vimeo_clips(vimeo_root, "test")
    with pytest.raises(DataError, match=r"Vimeo-90K LR folder .*BDx4 does not exist"):
        vimeo_clips(vimeo_root, "train", "BDx4")


def test_vid4_and_udm10(vid4_root: Path, udm10_root: Path):
    assert [(c.name, len(c)) for c in vid4_clips(vid4_root)] == [("calendar", 5), ("city", 4), ("walk", 3)]
    clips = udm10_clips(udm10_root)
    assert [c.name for c in clips] == ["archpeople", "auditorium"]
    # Paired by frame number across the two name templates.
    assert (clips[0].gt[9].name, clips[0].lr[9].name) == ("0010.png", "010.png")
    spec = open_dataset({"layout": "udm10", "root": udm10_root})
    assert spec.scale == 4 and [type(stage) for stage in spec.degradation.stages] == [BD]  # from the LR folder
    assert [type(stage) for stage in open_dataset(vid4_root).degradation.stages] == [BI]


def test_folder_auto_detects_the_lr_folder(vid4_root: Path):
    source = open_dataset(vid4_root)
    assert source.names == ["calendar", "city", "walk"] and source.clips[0].lr is not None
    (vid4_root / "BDx4").mkdir()
    with pytest.raises(DataError, match=r"several LR folders \(BDx4, BIx4\); set 'lr'"):
        open_dataset(vid4_root)
    assert open_dataset({"root": vid4_root, "lr": None}).clips[0].lr is None


def test_open_dataset_errors(tmp_path: Path, vid4_root: Path):
    with pytest.raises(RecipeError, match=r"'data set.layout' = 'mp4': unknown data set layout; .*auto, reds, vimeo"):
        open_dataset({"layout": "mp4", "root": vid4_root})
    with pytest.raises(RecipeError, match=r"'data set.frames' = 3: unknown data set key; .*layout, root"):
        open_dataset({"root": vid4_root, "frames": 3})
    with pytest.raises(RecipeError, match=r"'data set.split' = 'train': the vid4 layout has no splits"):
        open_dataset({"layout": "vid4", "root": vid4_root, "split": "train"})
    with pytest.raises(RecipeError, match=r"'data set.split' = 'x': the folder layout has no splits"):
        open_dataset({"root": vid4_root, "split": "x"})  # the detected layout's splits
    with pytest.raises(RecipeError, match=r"'degradation' = \['bi', 'bi'\]: shrinks frames 16x but the data set is x4"):
        open_dataset({"root": vid4_root, "lr": None, "degradation": ["bi", "bi"]})
    with pytest.raises(DataError, match=r"'scale' is 2 but the LR folder 'BIx4' is ×4"):
        open_dataset({"root": vid4_root, "scale": 2})
    with pytest.raises(DataError, match=r"cannot tell the layout of .*: expected train_sharp/"):
        open_dataset(vid4_root / "GT" / "city")
    with pytest.raises(DataError, match=r"data set root .*nope does not exist"):
        open_dataset(tmp_path / "nope")


def test_discovery_errors(vid4_root: Path):
    with pytest.raises(DataError, match=r"LR folder .*BDx4 does not exist"):
        folder_clips(vid4_root, "BDx4")
    (vid4_root / "BIx4" / "walk" / "00000002.png").unlink()
    with pytest.raises(DataError, match=r"LR clip .*BIx4/walk has 2 frames but GT clip .*GT/walk has 3"):
        folder_clips(vid4_root, "BIx4")
    Image.new("RGB", (4, 4)).save(vid4_root / "BIx4" / "walk" / "00000009.png")
    with pytest.raises(DataError, match=r"LR frame .*walk/00000009.png does not match GT frame .*00000002.png"):
        folder_clips(vid4_root, "BIx4")
    for frame in (vid4_root / "GT" / "city").iterdir():
        frame.unlink()
    with pytest.raises(DataError, match=r"clip folder .*GT/city holds no .png frames"):
        folder_clips(vid4_root)


# ---------------------------------------------------------------------------------------------- training


def test_training_crops_are_aligned(reds_root: Path):
    source = open_dataset({"root": reds_root})
    data = TrainingClips(source, num_frames=4, lr_patch=3, samples_per_epoch=12, seed=7)
    starts, clips = set(), set()
    for i in range(len(data)):
        sample = data[i]
        assert sample["lq"].shape == (4, 3, 3, 3) and sample["gt"].shape == (4, 3, 12, 12)
        assert sample["lq"].dtype == torch.float32 and 0 <= sample["lq"].min() <= sample["lq"].max() <= 1
        assert_aligned(sample)
        starts.add(sample["start"])
        clips.add(sample["clip"])
    assert clips == {"001", "021"} and len(starts) > 1


def test_training_crop_is_the_right_place(vid4_root: Path):
    """Without augmentation the GT crop is the stated frames of the stated clip at a scale-aligned place."""
    source = open_dataset(vid4_root)
    data = TrainingClips(source, 3, 2, hflip=False, vflip=False, transpose=False, samples_per_epoch=8)
    for i in range(len(data)):
        sample, draw = data[i], data.draw(i)
        clip = source.clips[draw.clip]
        assert sample["clip"] == clip.name and sample["start"] == draw.start
        full = np.stack([np.asarray(Image.open(p)) for p in clip.gt[draw.start : draw.start + 3]])
        crop = full[:, draw.top * S : (draw.top + 2) * S, draw.left * S : (draw.left + 2) * S]
        assert torch.equal((sample["gt"] * 255).round().byte(), torch.from_numpy(crop).permute(0, 3, 1, 2))


def test_training_is_deterministic(reds_root: Path):
    source = open_dataset({"root": reds_root})
    make = lambda seed: TrainingClips(source, 3, 2, reverse=True, samples_per_epoch=6, seed=seed)  # noqa: E731
    a, b = make(0), make(0)
    forward = [a[i] for i in range(6)]
    backward = [b[i] for i in reversed(range(6))][::-1]  # other order, other instance: same samples
    for x, y in zip(forward, backward, strict=True):
        assert torch.equal(x["lq"], y["lq"]) and torch.equal(x["gt"], y["gt"]) and x["start"] == y["start"]
    other = make(1)
    assert any(not torch.equal(x["gt"], other[i]["gt"]) for i, x in enumerate(forward))
    a.set_epoch(1)
    assert any(not torch.equal(x["gt"], a[i]["gt"]) for i, x in enumerate(forward))


def test_training_batches_through_a_dataloader(reds_root: Path):
    data = TrainingClips(open_dataset({"root": reds_root}), 3, 2, samples_per_epoch=4)
    batch = next(iter(torch.utils.data.DataLoader(data, batch_size=4)))
    assert batch["lq"].shape == (4, 3, 3, 2, 2) and batch["gt"].shape == (4, 3, 3, 8, 8)
    assert len(batch["clip"]) == 4


def test_augmentations_keep_lr_and_gt_aligned(vimeo_root: Path):
    source = open_dataset({"root": vimeo_root})
    data = TrainingClips(source, 7, 3, reverse=True, mirror=True, samples_per_epoch=16)
    seen = set()
    for i in range(len(data)):
        sample = data[i]
        assert sample["lq"].shape == (14, 3, 3, 3) and sample["gt"].shape == (14, 3, 12, 12)
        assert torch.equal(sample["gt"][:7], sample["gt"].flip(0)[:7])  # x1..x7, x7..x1
        assert_aligned(sample)
        seen.add(data.draw(i).augmentation)
    assert len(seen) > 4


def test_augmentation_transforms_frames(vid4_root: Path):
    """Each op is the stated permutation of pixels / frames of the un-augmented sample."""
    data = TrainingClips(open_dataset(vid4_root), 3, 2, hflip=False, vflip=False, transpose=False)
    plain = data[0]
    x = plain["gt"]
    cases = {
        Augmentation(hflip=True): x.flip(-1),
        Augmentation(vflip=True): x.flip(-2),
        Augmentation(transpose=True): x.permute(0, 1, 3, 2),
        Augmentation(reverse=True): x[[2, 1, 0]],
        Augmentation(True, True, True, True): x.flip(-1).flip(-2).permute(0, 1, 3, 2)[[2, 1, 0]],
    }
    for op, expected in cases.items():
        out = op(plain)
        assert torch.equal(out["gt"], expected), op
        assert_aligned(out)


def flow_consistency(frames: torch.Tensor, flows: torch.Tensor, src: int) -> int:
    """Check ``frames[k + src](p) == frames[k + 1 - src](p + flows[k](p))`` wherever the target is inside the
    crop, for integer flows; returns how many pixels were checked."""
    t, _, h, w = frames.shape
    checked = 0
    for k in range(t - 1):
        a, b = frames[k + src], frames[k + 1 - src]
        u, v = flows[k, 0], flows[k, 1]
        assert torch.equal(u, u.round()) and torch.equal(v, v.round())
        ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
        ty, tx = ys + v.long(), xs + u.long()
        inside = (ty >= 0) & (ty < h) & (tx >= 0) & (tx < w)
        assert torch.equal(a[:, ys[inside], xs[inside]], b[:, ty[inside], tx[inside]]), f"pair {k}"
        checked += int(inside.sum())
    return checked


def test_true_flows_follow_the_augmentations(flow_root: Path):
    """Flows of a synthetic clip whose pixels move by a known, non-uniform integer field: after any
    combination of flips, transpose, time reversal and mirroring, frame k at p is frame k+1 at p + next(p)
    (and frame k+1 at p is frame k at p + prev(p))."""
    source = open_dataset(flow_root)
    assert source.name.startswith("synth") and source.scale == S
    plain = TrainingClips(source, 4, 6, hflip=False, vflip=False, transpose=False, with_flow=True)
    sample = plain[3]
    assert sample["flow_next"].shape == (3, 2, 6, 6) and sample["flow_prev"].shape == (3, 2, 6, 6)
    assert sample["flow_next"][:, 0].unique().numel() > 1  # non-uniform: flips of the field matter
    for ops in itertools.product((False, True), repeat=4):
        for mirror in (False, True):
            out = Augmentation(*ops)(sample)
            out = mirror_sample(out) if mirror else out
            lq = (out["lq"] * 255).round()
            assert flow_consistency(lq, out["flow_next"], 0) > 20, (ops, mirror)
            assert flow_consistency(lq, out["flow_prev"], 1) > 20, (ops, mirror)
    # The same through the data set's own random draws.
    data = TrainingClips(source, 4, 5, reverse=True, mirror=True, with_flow=True, samples_per_epoch=8)
    for i in range(len(data)):
        out = data[i]
        assert out["flow_next"].shape == (7, 2, 5, 5)
        flow_consistency((out["lq"] * 255).round(), out["flow_next"], 0)
        flow_consistency((out["lq"] * 255).round(), out["flow_prev"], 1)


def test_on_the_fly_lr_matches_the_whole_degraded_frame(vid4_root: Path):
    for name, degrade in (("bi", bi), ("bd", lambda x, s: bd(x, s, 1.6))):
        source = open_dataset({"layout": "folder", "root": vid4_root, "lr": None, "degradation": name})
        data = TrainingClips(source, 2, 2, hflip=False, vflip=False, transpose=False, samples_per_epoch=6)
        for i in range(len(data)):
            sample, draw = data[i], data.draw(i)
            clip = source.clips[draw.clip]
            full = torch.from_numpy(np.stack([np.asarray(Image.open(p)) for p in clip.gt[draw.start :][:2]]))
            lq = degrade(full.permute(0, 3, 1, 2).double() / 255, S)[
                ..., draw.top : draw.top + 2, draw.left : draw.left + 2
            ]
            torch.testing.assert_close(sample["lq"].double(), lq, atol=1e-5, rtol=0)
        whole = TestClips(source)[1]
        assert whole["lq"].shape == (4, 3, 6, 4)
        torch.testing.assert_close(whole["lq"].double(), degrade(whole["gt"].double(), S), atol=1e-5, rtol=0)


# ---------------------------------------------------------------------------------------------- validation


def test_missing_frame(vimeo_root: Path):
    (vimeo_root / "GT" / "00002" / "0001" / "im5.png").unlink()
    source = open_dataset({"root": vimeo_root})
    with pytest.raises(DataError, match=r"frame .*00002/0001/im5.png does not exist"):
        TrainingClips(source, 7, 2)


def test_mis_sized_frame(vid4_root: Path):
    Image.new("RGB", (24, 20)).save(vid4_root / "GT" / "calendar" / "00000003.png")
    with pytest.raises(DataError, match=r"GT frame .*calendar/00000003.png has size 24x20 but .*has 24x16"):
        TrainingClips(open_dataset(vid4_root), 2, 2)


def test_mis_sized_frame_found_when_decoded(vid4_root: Path):
    """With ``validate="first"`` only the first frame is checked up front; decoding catches the rest."""
    Image.new("RGB", (24, 20)).save(vid4_root / "GT" / "calendar" / "00000003.png")
    data = TestClips(open_dataset(vid4_root), validate="first")
    with pytest.raises(DataError, match=r"frame .*calendar/00000003.png has size 24x20, expected 24x16"):
        data[0]


def test_lr_gt_size_mismatch(vid4_root: Path):
    for frame in sorted((vid4_root / "BIx4" / "walk").iterdir()):
        Image.new("RGB", (8, 8)).save(frame)
    with pytest.raises(
        DataError,
        match=r"GT frame .*walk/00000000.png is 16x16 and LR frame .* is 8x8: GT must "
        "be scale × LR with scale 4",
    ):
        TestClips(open_dataset(vid4_root))


def test_clip_shorter_than_num_frames_and_patch_too_big(vid4_root: Path):
    source = open_dataset(vid4_root)
    with pytest.raises(DataError, match=r"clip 'walk' .* has 3 frames, fewer than num_frames=4"):
        TrainingClips(source, 4, 2)
    with pytest.raises(DataError, match=r"clip 'calendar' .* has LR frames of 6x4, smaller than lr_patch=5"):
        TrainingClips(source, 2, 5)


def test_missing_flow(flow_root: Path):
    (flow_root / "train" / "flow" / "b" / "00000002_prev.npy").unlink()
    with pytest.raises(DataError, match=r"flow file .*b/00000002_prev.npy does not exist"):
        TrainingClips(open_dataset(flow_root), 4, 2, with_flow=True)


def test_with_flow_needs_a_flow_folder(vid4_root: Path):
    with pytest.raises(DataError, match=r"clip 'calendar' has no flow folder \(expected flow/calendar beside"):
        TrainingClips(open_dataset(vid4_root), 2, 2, with_flow=True)


# ---------------------------------------------------------------------------------------------- test clips


def test_test_clips_whole_clips(vid4_root: Path):
    data = TestClips(open_dataset(vid4_root))
    assert len(data) == 3
    sample = data[1]
    assert sample["clip"] == "city" and sample["frames"] == [f"{i:08d}" for i in range(4)]
    assert sample["lq"].shape == (4, 3, 6, 4) and sample["gt"].shape == (4, 3, 24, 16)
    assert_aligned(sample)
    short = TestClips(open_dataset(vid4_root), max_frames=2, mirror=True)[0]
    assert short["lq"].shape == (4, 3, 4, 6) and short["gt"].shape == (4, 3, 16, 24)
    assert short["frames"] == ["00000000", "00000001", "00000001", "00000000"]
    assert_aligned(short)


def test_vimeo_center_frame_protocol(vimeo_root: Path):
    source = open_dataset({"root": vimeo_root, "split": "test"})
    sample = TestClips(source, mirror=True, center_frame_only=True)[0]
    assert sample["lq"].shape == (14, 3, 4, 4) and sample["gt"].shape == (1, 3, 16, 16)
    assert sample["frames"] == ["im4"] and sample["center"] == 3
    im4 = np.asarray(Image.open(vimeo_root / "GT" / "00001" / "0002" / "im4.png"))
    assert torch.equal((sample["gt"][0] * 255).round().byte(), torch.from_numpy(im4.copy()).permute(2, 0, 1))
    assert torch.equal((sample["lq"][sample["center"]] * 255).round(), box_down_chw(sample["gt"])[0])


def test_a_clip_folder_with_images_of_another_format_is_refused_naming_them(tmp_path):
    """A .jpg among the .png frames is never skipped silently (part of the clip would be read); hidden files
    (macOS ``._0001.png``) are ignored."""
    clip = tmp_path / "clip"
    clip.mkdir()
    for i in range(3):
        Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(clip / f"{i:04d}.png")
    (clip / "._0000.png").write_bytes(b"\x00\x05\x16\x07")
    assert [p.name for p in list_frames(clip)] == ["0000.png", "0001.png", "0002.png"]
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(clip / "0003.jpg")
    with pytest.raises(DataError, match=r"holds images that are not \.png frames \(0003\.jpg\)"):
        list_frames(clip)


# ---------------------------------------------------------------------------------------------- degradations

SIGMA = 0.05
NOISY = ["bi", {"name": "gaussian_noise", "sigma": SIGMA}]


def _mid_gray_noise(noisy: torch.Tensor, clean: torch.Tensor) -> torch.Tensor:
    """The added noise where the clean value is far (5σ) from 0 and 1, so clipping cannot have touched it."""
    inside = (clean > 5 * SIGMA) & (clean < 1 - 5 * SIGMA)
    return (noisy - clean)[inside]


def _whole_frames(clip, start: int, n: int) -> torch.Tensor:
    """Frames ``start .. start + n - 1`` of a clip, read with PIL: float32 ``(n, 3, H, W)``."""
    frames = np.stack([np.asarray(Image.open(p)) for p in clip.gt[start : start + n]])
    return torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255


def test_training_noise_is_white_gaussian_of_the_given_std_and_changes_nothing_else(reds_root: Path):
    make = lambda **chain: TrainingClips(  # noqa: E731
        open_dataset({"root": reds_root, "lr": None, **chain}), 4, None, samples_per_epoch=12, seed=0, reverse=True
    )
    clean, noisy = make(), make(degradation=NOISY)
    added = []
    for i in range(12):
        a, b = clean[i], noisy[i]
        assert (a["clip"], a["start"]) == (b["clip"], b["start"]) and torch.equal(a["gt"], b["gt"])
        assert torch.equal(b["lq"], noisy[i]["lq"])  # the same sample every time it is drawn
        assert b["lq"].min() >= 0 and b["lq"].max() <= 1
        added.append(torch.stack([_mid_gray_noise(b["lq"][k], a["lq"][k])[:60] for k in range(4)]))
    noise = torch.cat(added, dim=1).double()  # (frames, pixels)
    assert abs(noise.std().item() - SIGMA) < 0.1 * SIGMA and abs(noise.mean().item()) < 0.1 * SIGMA
    correlation = torch.corrcoef(noise)  # frames of a sample get independent noise
    assert (correlation - torch.eye(4, dtype=torch.double)).abs().max() < 0.15
    source = open_dataset({"root": reds_root, "lr": None, "degradation": NOISY})
    mirrored = TrainingClips(source, 3, None, mirror=True)[0]["lq"]
    assert torch.equal(mirrored[:3], mirrored[3:].flip(0))  # a mirrored frame is the same noisy frame


def test_evaluation_noise_is_fixed_per_clip_and_frame(vid4_root: Path):
    clean = TestClips(open_dataset({"root": vid4_root, "lr": None}))
    noisy = TestClips(open_dataset({"root": vid4_root, "lr": None, "degradation": NOISY}))
    again = TestClips(open_dataset({"root": vid4_root, "lr": None, "degradation": NOISY}), max_frames=2)
    for i in range(len(clean)):
        a, b = clean[i], noisy[i]
        assert torch.equal(a["gt"], b["gt"]) and not torch.equal(a["lq"], b["lq"])
        assert torch.equal(again[i]["lq"], b["lq"][:2])  # every run scores the same inputs, whatever it reads
        noise = _mid_gray_noise(b["lq"], a["lq"])
        assert abs(noise.std().item() - SIGMA) < 0.2 * SIGMA
    first = [noisy[i]["lq"][0] - clean[i]["lq"][0] for i in range(2)]
    assert not torch.equal(first[0][..., :4, :4], first[1][..., :4, :4])  # clips get their own noise


def test_a_local_chain_degrades_a_training_crop_as_the_whole_frames_then_cropped_whatever_the_workers(vid4_root):
    """BD then Gaussian noise, from a data set mapping: the LR crop of every sample is the crop of the whole
    degraded frames, computed here independently (BD of the whole frames, plus the noise stage's stream for the
    whole LR frames: the chain spawns one stream per stage from the sample's (seed, epoch, index, 1)); and
    DataLoader workers (0 or 2) give the same batches."""
    chain = [{"name": "bd", "sigma": 0.8}, {"name": "gaussian_noise", "sigma": SIGMA}]
    source = open_dataset({"root": vid4_root, "lr": None, "degradation": chain})
    assert (source.degradation.radius, source.degradation.scale) == (4, 4)  # BD's 8x8 kernel reaches 4 pixels
    make = lambda seed: TrainingClips(  # noqa: E731
        source, 2, 2, hflip=False, vflip=False, transpose=False, samples_per_epoch=8, seed=seed
    )
    data = make(3)
    for i in range(len(data)):
        sample, draw = data[i], data.draw(i)
        full = _whole_frames(source.clips[draw.clip], draw.start, 2)
        stream = np.random.default_rng([3, 0, i, 1]).spawn(2)[1]
        noise = torch.from_numpy(stream.standard_normal((2, 3, full.shape[-2] // S, full.shape[-1] // S), np.float32))
        whole = (bd(full, S, 0.8) + SIGMA * noise).clamp(0, 1)
        expected = whole[..., draw.top : draw.top + 2, draw.left : draw.left + 2]
        torch.testing.assert_close(sample["lq"], expected, atol=1e-5, rtol=0)
    batches = {
        workers: list(torch.utils.data.DataLoader(data, batch_size=2, num_workers=workers)) for workers in (0, 2)
    }
    for a, b in zip(batches[0], batches[2], strict=True):
        assert torch.equal(a["lq"], b["lq"]) and torch.equal(a["gt"], b["gt"])
    other = make(4)
    assert not torch.equal(other[0]["lq"] - data[0]["lq"], torch.zeros_like(data[0]["lq"]))


class AddClipMean(Degradation):
    """Test degradation: adds ``weight`` × the clip's mean colour (over every frame and pixel), so that it
    must see whole frames and the whole clip (``radius`` None); it draws nothing."""

    radius = None

    def __init__(self, weight: float = 1.0):
        self.weight = weight

    def __call__(self, clip: torch.Tensor, rng: np.random.Generator, region: Region | None = None) -> torch.Tensor:
        assert region is None, "a non-local degradation is given whole frames"
        return clip + self.weight * clip.mean(dim=(0, 2, 3), keepdim=True)


@pytest.fixture
def clip_mean_degradation():
    """``add_clip_mean`` registered from this test module, as a user's plugin module would (removed after)."""
    register("degradation", "add_clip_mean")(AddClipMean)
    yield "add_clip_mean"
    REGISTRY["degradation"].pop("add_clip_mean")


def test_a_non_local_degradation_sees_the_whole_frames_of_the_whole_sampled_clip(vid4_root, clip_mean_degradation):
    """A degradation registered here is used by name from a data set mapping (and a recipe); as it is
    non-local, a training sample degrades the whole frames of its frames and then crops, which is checked
    against the same computation in numpy."""
    chain = ["bi", {"name": clip_mean_degradation, "weight": 0.5}]
    from vsr import load_recipe

    assert load_recipe("basicvsr_tiny", ("data.train", {"root": "x", "degradation": chain})).data["train"]
    source = open_dataset({"root": vid4_root, "lr": None, "degradation": chain})
    assert source.degradation.radius is None
    data = TrainingClips(source, 3, 2, hflip=False, vflip=False, transpose=False, samples_per_epoch=6, mirror=True)
    for i in range(len(data)):
        sample, draw = data[i], data.draw(i)
        clip = source.clips[draw.clip]
        lr = bi(_whole_frames(clip, draw.start, 3).double(), S).numpy()
        whole = lr + 0.5 * lr.mean(axis=(0, 2, 3), keepdims=True)
        expected = torch.from_numpy(whole[..., draw.top : draw.top + 2, draw.left : draw.left + 2]).float()
        torch.testing.assert_close(sample["lq"][:3], expected, atol=1e-5, rtol=0)
        assert torch.equal(sample["lq"][3:], sample["lq"][:3].flip(0))  # mirrored after degrading
    test = TestClips(source)[0]
    lr = bi(test["gt"].double(), S)
    torch.testing.assert_close(test["lq"].double(), lr + 0.5 * lr.mean(dim=(0, 2, 3), keepdim=True), atol=1e-5, rtol=0)


@pytest.mark.parametrize(
    ("spec", "spelling"),
    [
        ({"noise": 0.05}, "[bi, {name: gaussian_noise, sigma: 0.05}]"),
        ({"degradation": "bd", "sigma": 0.8}, "{name: bd, sigma: 0.8}"),
        (
            {"degradation": "bd", "sigma": 0.8, "noise": 0.1},
            "[{name: bd, sigma: 0.8}, {name: gaussian_noise, sigma: 0.1}]",
        ),
    ],
)
def test_the_retired_sigma_and_noise_keys_fail_giving_the_new_spelling(vid4_root, spec, spelling):
    with pytest.raises(
        RecipeError, match=r"is an argument of a degradation stage now: use degradation: " + re.escape(spelling)
    ):
        open_dataset({"root": vid4_root, **spec})


def test_a_chain_named_in_the_mapping_makes_the_lr_frames_unless_it_made_the_stored_ones(vid4_root, caplog):
    """The stored LR frames are read when the mapping names no chain, or the one that made them (BIx4: bi);
    another chain makes the LR frames from GT, and the GT-made frames are that chain's output. With ``lr``
    named explicitly the stored frames are read and the ignored chain is named in a warning with the fix."""
    with caplog.at_level("WARNING"):
        source = open_dataset({"root": vid4_root, "degradation": "bi"})
    assert source.clips[0].lr is not None and not caplog.records
    assert open_dataset({"root": vid4_root}).clips[0].lr is not None
    noisy = open_dataset({"root": vid4_root, "degradation": NOISY})
    assert noisy.clips[0].lr is None and len(noisy.degradation.stages) == 2
    lq = TestClips(noisy, max_frames=2)[0]["lq"]
    gt = TestClips(open_dataset({"root": vid4_root, "lr": None}), max_frames=2)[0]["gt"]
    rng = np.random.default_rng(clip_seed(noisy.clips[0].name))
    assert torch.allclose(lq, noisy.degradation(gt, rng).float(), atol=1e-6)
    with caplog.at_level("WARNING"):
        kept = open_dataset({"root": vid4_root, "degradation": NOISY, "lr": "BIx4"})
    assert kept.clips[0].lr is not None
    assert "reads its LR frames from 'BIx4' (lr is set)" in caplog.text and "set lr: null" in caplog.text


def test_the_shipped_degradations_declare_their_reach_and_scale():
    bi4, bd4, noise = BI(4), BD(4, sigma=1.6), GaussianNoise(0.1)
    assert (bi4.scale, bd4.scale, noise.scale) == (4, 4, 1)
    assert (bd4.kernel_size, bd4.radius, noise.radius) == (12, 6, 0)
    frame = torch.rand(1, 3, 32, 40, dtype=torch.float64)
    top, left, h, w = 8, 12, 16, 16  # a crop grown by more than BI's reach in every direction
    crop = bi4(frame[..., top : top + h, left : left + w], None, Region(top, left, 32, 40))
    reach = -(-bi4.radius // 4)  # LR pixels
    inner = crop[..., reach : h // 4 - reach, reach : w // 4 - reach]
    whole = bi(frame, 4)[..., top // 4 + reach : (top + h) // 4 - reach, left // 4 + reach : (left + w) // 4 - reach]
    torch.testing.assert_close(inner, whole, atol=1e-12, rtol=0)
