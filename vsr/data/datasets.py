"""The two torch data sets of training and evaluation, on the clips of :mod:`vsr.data.layouts`.

``TrainingClips`` draws BasicVSR's training samples (paper §4 / MMagic ``basicvsr_2xb4_reds4``): ``num_frames``
consecutive frames of a random clip, an aligned random 64×64 LR crop, random flips / transpose (the same op for
every frame), optionally mirrored (Vimeo-90K: 7 → 14 frames). ``TestClips`` yields whole clips, with the
Vimeo-90K-T protocol (GT of the centre frame only) available as a flag.

Clips stored without LR frames get them from the data set's degradation (:mod:`vsr.data.degradations`),
with a random stream seeded per training sample (run seed, epoch, sample index) or per evaluation clip (its
name): a seed reproduces the LQ frames whatever the number of DataLoader workers.

Frames come out as float32 ``(t, 3, h, w)`` in [0, 1], RGB; flows as in :mod:`vsr.data.frames`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from vsr.data.augmentation import BEFORE_DEGRADATION, FRAME_KEYS, Augmentation, mirror_mode, mirror_sample
from vsr.data.degradations import Region, clip_seed
from vsr.data.frames import ClipReader
from vsr.data.layouts import Clip, ClipSet
from vsr.errors import DataError

#: The random stream of a training sample's degradation, beside its draw's ``(seed, epoch, index)``.
DEGRADATION_STREAM = 1


@dataclass
class _Draw:
    clip: int
    start: int
    top: int
    left: int
    augmentation: Augmentation = field(default_factory=Augmentation)


class TrainingClips(Dataset):
    """Random training samples of BasicVSR (paper §4; MMagic ``basicvsr_2xb4_reds4``: 15 frames, 64×64 LR).

    Sample ``index`` takes ``num_frames`` consecutive frames from a random start of a random clip, an aligned
    random crop of ``lr_patch`` LR pixels (GT crop: scale × larger; ``None``: whole frames), and the enabled
    augmentations, each drawn with probability ½ and applied to every frame alike (``Augmentation``); then
    optionally ``mirror`` (:func:`~vsr.data.augmentation.mirror_mode`: ``True`` mirrors the sample, 7 → 14
    frames as for Vimeo-90K; ``"before_degradation"`` mirrors the GT frames of a clip stored without LR frames
    before degrading them, RealBasicVSR's 15 → 30). A clip stored without LR frames is degraded
    before the augmentation: a local degradation degrades the GT crop grown by its reach (so the LR crop is
    the same crop of the whole degraded frames), a non-local one the whole frames of the sample's frames.
    The draw (and the degradation's random stream) depends only on ``(seed, epoch, index)``, so DataLoader
    workers, DDP ranks and resumed runs see the same samples; ``len`` is the virtual ``samples_per_epoch``
    (like MMagic's ``RepeatDataset``). Call ``set_epoch`` before each epoch's iterator is created (with
    non-persistent workers).

    Returns ``{"lq": (t, 3, h, w), "gt": (t, 3, s·h, s·w)`` float32 in [0, 1], ``"clip": name, "start": int}``
    and, with ``with_flow``, the true LR-resolution flows ``"flow_next"`` (frame k → k+1) and ``"flow_prev"``
    (k+1 → k), each ``(t-1, 2, h, w)``.

    All frames are checked on construction (``validate``, header reads only). ``cache_frames``: ``True`` keeps
    every decoded frame, an int keeps that many (LRU), ``False`` none; ``None`` caches all when the whole set
    fits in 256 MiB.
    """

    def __init__(
        self,
        source: ClipSet,
        num_frames: int = 15,
        lr_patch: int | None = 64,
        *,
        hflip: bool = True,
        vflip: bool = True,
        transpose: bool = True,
        reverse: bool = False,
        mirror: bool | str = False,
        with_flow: bool = False,
        samples_per_epoch: int = 1000,
        seed: int = 0,
        cache_frames: bool | int | None = None,
        validate: str = "auto",
    ):
        if not source.has_gt:
            raise DataError(
                f"data set {source.name or '(unnamed)'} has no ground truth (clips of LR frames only), so it cannot be "
                "trained on; use it as a test set, scored by no-reference metrics (vsr test)"
            )
        self.source = source
        self.num_frames, self.lr_patch = num_frames, lr_patch
        self.flags = (hflip, vflip, transpose, reverse)
        self.mirror, self.with_flow = mirror_mode(mirror), with_flow
        self.samples_per_epoch, self.seed, self.epoch = samples_per_epoch, seed, 0
        self.reader = ClipReader(source, validate, with_flow, cache_frames)
        for clip, (_, (h, w)) in zip(source.clips, self.reader.sizes, strict=True):
            if len(clip) < num_frames:
                raise DataError(
                    f"clip {clip.name!r} ({clip.gt[0].parent}) has {len(clip)} frames, fewer than "
                    f"num_frames={num_frames}"
                )
            if lr_patch is not None and (h < lr_patch or w < lr_patch):
                raise DataError(
                    f"clip {clip.name!r} ({clip.gt[0].parent}) has LR frames of {w}x{h}, smaller than "
                    f"lr_patch={lr_patch}"
                )

    def __len__(self) -> int:
        return self.samples_per_epoch

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def draw(self, index: int) -> _Draw:
        """The random choices of sample ``index`` in the current epoch."""
        rng = np.random.default_rng([self.seed, self.epoch, index])
        c = int(rng.integers(len(self.source.clips)))
        clip, (_, (h, w)) = self.source.clips[c], self.reader.sizes[c]
        ph, pw = (h, w) if self.lr_patch is None else (self.lr_patch, self.lr_patch)
        start = int(rng.integers(len(clip) - self.num_frames + 1))
        top, left = int(rng.integers(h - ph + 1)), int(rng.integers(w - pw + 1))
        coins = rng.random(4) < 0.5  # always drawn, so enabling one augmentation leaves the other draws alone
        ops = (bool(enabled and coin) for enabled, coin in zip(self.flags, coins, strict=True))
        return _Draw(c, start, top, left, Augmentation(*ops))

    def __getitem__(self, index: int) -> dict[str, Any]:
        d = self.draw(index)
        clip, (gt_size, lr_size) = self.source.clips[d.clip], self.reader.sizes[d.clip]
        s, t = self.source.scale, self.num_frames
        ph, pw = lr_size if self.lr_patch is None else (self.lr_patch, self.lr_patch)
        frames = range(d.start, d.start + t)
        gt_box = (d.top * s, (d.top + ph) * s, d.left * s, (d.left + pw) * s)
        mirror_first = self.mirror == BEFORE_DEGRADATION and clip.lr is None  # stored LR: mirroring is mirroring
        if clip.lr is not None:
            lq = self.reader.frames([clip.lr[i] for i in frames], lr_size, (d.top, d.top + ph, d.left, d.left + pw))
            gt = self.reader.frames([clip.gt[i] for i in frames], gt_size, gt_box)
            sample = {"lq": lq, "gt": gt}
        else:
            # Its own stream: the draw above stays what it is whatever the degradation draws.
            rng = np.random.default_rng([self.seed, self.epoch, index, DEGRADATION_STREAM])
            sample = self._degraded(clip, frames, gt_size, (d.top, d.left, ph, pw), rng, mirror_first)
        if self.with_flow:
            pairs = [clip.flow_paths(i) for i in frames[:-1]]
            flows = {"flow_next": self.reader.flows([p[0] for p in pairs], gt_box),
                     "flow_prev": self.reader.flows([p[1] for p in pairs], gt_box)}  # fmt: skip
            sample.update(mirror_sample(flows) if mirror_first else flows)
        sample = d.augmentation(sample)
        for key in FRAME_KEYS:
            if sample[key].dtype == torch.uint8:
                sample[key] = sample[key].float().div_(255)
        if self.mirror is not None and not mirror_first:  # a mirrored frame is the same degraded frame
            sample = mirror_sample(sample)
        return {**sample, "clip": clip.name, "start": d.start}

    def _degraded(
        self,
        clip: Clip,
        frames: Sequence[int],
        gt_size: tuple[int, int],
        crop: tuple[int, int, int, int],
        rng: np.random.Generator,
        mirror: bool = False,
    ) -> dict[str, Tensor]:
        """The GT ``crop`` = ``(top, left, h, w)`` (LR pixels) and its LR made on the fly by the data set's
        degradation: from the crop grown by the degradation's reach when it is local (so that it matches the
        same crop of the whole degraded frames), else from whole frames. ``mirror``: the GT frames are
        mirrored (x1..xt, xt..x1) before they are degraded."""
        degradation, s = self.source.degradation, self.source.scale
        (gh, gw), (top, left, ph, pw) = gt_size, crop
        if degradation.radius is None:
            t0, b0, l0, r0 = 0, gh // s, 0, gw // s
        else:
            margin = math.ceil(degradation.radius / s)  # LR pixels
            t0, b0 = max(top - margin, 0), min(top + ph + margin, gh // s)
            l0, r0 = max(left - margin, 0), min(left + pw + margin, gw // s)
        region = self.reader.frames([clip.gt[i] for i in frames], gt_size, (t0 * s, b0 * s, l0 * s, r0 * s))
        region = region.float().div_(255)
        if mirror:
            region = torch.cat([region, region.flip(0)])
        where = None if degradation.radius is None else Region(t0 * s, l0 * s, gh, gw)
        lq = degradation(region, rng, where)[..., top - t0 : top - t0 + ph, left - l0 : left - l0 + pw]
        gt = region[..., (top - t0) * s : (top - t0 + ph) * s, (left - l0) * s : (left - l0 + pw) * s]
        return {"lq": lq.contiguous(), "gt": gt.contiguous()}


class TestClips(Dataset):
    """Whole clips for evaluation: ``{"lq": (t, 3, h, w), "gt": (t, 3, H, W), "clip": name, "frames": [frame
    names]}`` float32 in [0, 1], the first ``max_frames`` frames (all by default: REDS4 and Vid4 are fed
    whole, since cutting a clip lowers PSNR at the cuts). A clip without ground truth (``clip.gt is None``)
    gives no ``"gt"``.

    ``mirror`` extends ``lq`` (and ``gt``, ``frames``) to ``x1..xt, xt..x1``. ``center_frame_only`` is the
    Vimeo-90K-T protocol: ``gt`` and ``frames`` hold only the centre frame (im4 of a septuplet) and
    ``"center"`` is its index in ``lq``; evaluation then scores output frame ``center`` alone.

    A clip stored without LR frames is degraded whole, its random stream seeded by the clip's name, so every
    evaluation of a clip sees the same LQ frames (and, as degradations draw frame by frame, the first n of
    them whatever ``max_frames`` is).
    """

    __test__ = False  # not a pytest test class

    def __init__(
        self,
        source: ClipSet,
        *,
        max_frames: int | None = None,
        mirror: bool = False,
        center_frame_only: bool = False,
        cache_frames: bool | int | None = False,
        validate: str = "auto",
    ):
        self.source, self.max_frames = source, max_frames
        self.mirror, self.center_frame_only = mirror, center_frame_only
        self.reader = ClipReader(source, validate, False, cache_frames)

    def __len__(self) -> int:
        return len(self.source.clips)

    def __getitem__(self, index: int) -> dict[str, Any]:
        clip, (gt_size, lr_size) = self.source.clips[index], self.reader.sizes[index]
        n = len(clip) if self.max_frames is None else min(len(clip), self.max_frames)
        gt = None
        if clip.gt is not None:
            gt = self.reader.frames(clip.gt[:n], gt_size, (0, gt_size[0], 0, gt_size[1])).float().div_(255)
        if clip.lr is not None:
            lq = self.reader.frames(clip.lr[:n], lr_size, (0, lr_size[0], 0, lr_size[1])).float().div_(255)
        else:
            lq = self.source.degradation(gt, np.random.default_rng(clip_seed(clip.name)))
        names = clip.frame_names[:n]
        sample: dict[str, Any] = {"lq": lq, "gt": gt, "clip": clip.name, "frames": names}
        if self.center_frame_only:
            center = n // 2
            sample.update(gt=None if gt is None else gt[center : center + 1], frames=[names[center]], center=center)
        if self.mirror:
            sample["lq"] = torch.cat([lq, lq.flip(0)])
            if not self.center_frame_only:
                sample.update(gt=None if gt is None else torch.cat([gt, gt.flip(0)]), frames=names + names[::-1])
        if sample["gt"] is None:  # a clip without ground truth
            del sample["gt"]
        return sample
