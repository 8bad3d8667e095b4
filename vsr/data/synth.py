"""The embedded data set: video clips rendered from the photographs bundled with scikit-image
(:mod:`vsr.data.scenes`), with true flow.

No video data set can be downloaded, so every vsr command that is given none trains and evaluates on clips
made here. Version 2 (the default) renders 9 clips of 20 frames per training photograph and 4 clips of 30
frames per validation photograph (three are held out), each clip with its own trajectories, speeds and layers.

Layout written under ``root`` (the folder-of-clips layout of vsr's data set readers)::

    synth.json                                 generator version, arguments, photos per split, clips
    {train,val}/GT/<clip>/00000000.png         uint8 RGB ground-truth frames
    {train,val}/BIx4/<clip>/00000000.png       LR frames by the degradation (``BDx4`` for "bd")
    {train,val}/flow/<clip>/00000000_next.npz  flow from frame 0 to frame 1, piecewise-affine (exact and
    {train,val}/flow/<clip>/00000000_prev.npz  compact: vsr.data.flow_files); from frame 1 to frame 0

The split is by source photograph: no photograph (background or layer) appears in both splits.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import re
import shutil
import time
import zlib
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from vsr.atomic import NotWrittenByVsr, foreign_entries, read_json_object, refuse_foreign
from vsr.data.degradations import build_chain
from vsr.data.flow_files import read_flow, write_affine_flow
from vsr.data.scenes import available_photos, render_clip
from vsr.errors import DataError, RecipeError
from vsr.registry import REGISTRY

log = logging.getLogger(__name__)

GENERATOR_VERSION = 2  # 2: many clips per photograph, 30-frame validation clips, wider speeds, compact flow

# portrait with printed detail (flags, insignia).
DEFAULT_VAL_PHOTOS = ("motorcycle_left", "chelsea", "astronaut")


def lr_folder(degradation: str, scale: int) -> str:
    """The name of a set's LR folder: its degradation's stored-folder prefix and the scale (``BIx4``)."""
    return f"{REGISTRY['degradation'][degradation].folder}x{scale}"


# ---------------------------------------------------------------------------------------------- data set
@dataclass
class SynthInfo:
    """What :func:`generate` wrote (or found): paths, photos and clips per split."""

    root: Path
    scale: int
    frames: dict[str, int]  # per split
    size: tuple[int, int]
    degradation: str
    photos: dict[str, list[str]]
    clips: dict[str, list[str]]
    cached: bool = False
    args: dict = field(default_factory=dict, repr=False)

    @property
    def lr_name(self) -> str:
        return lr_folder(self.degradation, self.scale)

    def gt_dir(self, split: str) -> Path:
        return self.root / split / "GT"

    def lr_dir(self, split: str) -> Path:
        return self.root / split / self.lr_name

    def flow_dir(self, split: str) -> Path:
        return self.root / split / "flow"

    @property
    def num_clips(self) -> dict[str, int]:
        return {split: len(clips) for split, clips in self.clips.items()}

    def summary(self) -> str:
        """One line for people: clips and frames per split, frame sizes and degradation."""
        h, w = self.size
        splits = ", ".join(
            f"{len(clips)} {'training' if split == 'train' else 'validation'} clips of {self.frames[split]} frames"
            for split, clips in self.clips.items()
        )
        lr = f"{h // self.scale}×{w // self.scale}"
        return f"{splits}; GT {h}×{w}, LR {lr} ({self.degradation.upper()} ×{self.scale})"

    @classmethod
    def read(cls, root: Path, cached: bool = True) -> SynthInfo:
        meta = read_description(root)
        args = meta["args"]
        return cls(
            root=root,
            scale=args["scale"],
            frames=args["frames"],
            size=tuple(args["size"]),
            degradation=args["degradation"],
            photos=meta["photos"],
            clips=meta["clips"],
            cached=cached,
            args=args,
        )


def read_description(root: str | Path) -> dict:
    """The ``synth.json`` of the set at ``root``; a set of another generator version is refused (never mixed)."""
    path = Path(root) / "synth.json"
    try:
        meta = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise DataError(f"cannot read the synthetic data set description {path}: {err}") from err
    version = meta.get("args", {}).get("version") if isinstance(meta, dict) else None
    if version != GENERATOR_VERSION:
        raise DataError(
            f"{path.parent} holds a synthetic data set of generator version {version}, and this vsr makes and reads "
            f"version {GENERATOR_VERSION}; regenerate it with `vsr data synth --out {path.parent} --overwrite`"
        )
    return meta


def default_root() -> Path:
    """Where commands find the embedded data set: ``$VSR_DATA`` if set, else ``./data/synth``."""
    return Path(os.environ.get("VSR_DATA", "data/synth")).expanduser().absolute()


def ensure_default(root: str | Path | None = None) -> Path:
    """Generate the default data set at ``root`` (default :func:`default_root`) unless one is there."""
    root = Path(root) if root is not None else default_root()
    if not (root / "synth.json").is_file():
        generate(root)
    return root


def load_flow(flow_dir: str | Path, index: int, direction: str = "next") -> np.ndarray:
    """The true flow ``(2, h, w)`` float32 of one clip's ``flow_dir``.

    ``direction="next"``: from frame ``index`` to frame ``index + 1``; ``"prev"``: from frame ``index + 1``
    to frame ``index``. (BasicVSR's backward branch at frame i uses ``next`` i, its forward branch at frame
    i uses ``prev`` i - 1.)
    """
    if direction not in ("next", "prev"):
        raise DataError(f"load_flow: direction must be 'next' or 'prev', got {direction!r}")
    path = Path(flow_dir) / f"{index:08d}_{direction}.npz"
    if not path.is_file():
        raise DataError(f"true flow {path} does not exist; frames of a clip have flows 0 .. frames - 2")
    return read_flow(path)


def _clip_seed(seed: int, photo: str, clip: int) -> list[int]:
    # Keyed by the photo's name, so a clip does not change when other photos are added or held out.
    return [seed, zlib.crc32(photo.encode()), clip]


def _write_png(path: Path, array: np.ndarray) -> None:
    Image.fromarray(array).save(path, compress_level=6)


def generate(
    root: str | Path,
    *,
    seed: int = 0,
    scale: int = 4,
    frames: int = 20,
    val_frames: int | None = 30,
    size: tuple[int, int] = (128, 128),
    clips_per_photo: int = 9,
    val_clips_per_photo: int | None = 4,
    val_photos: Sequence[str] = DEFAULT_VAL_PHOTOS,
    photos: Sequence[str] | None = None,
    degradation: str = "bi",
    overwrite: bool = False,
    workers: int | None = None,
) -> SynthInfo:
    """Render the embedded data set into ``root`` (layout in the module docstring) and return its info.

    ``photos`` (default: every bundled photograph) are split by photo: ``val_photos`` form the validation
    split, the rest the training split; layers are cut only from photos of the clip's own split. Each
    training photograph gives ``clips_per_photo`` clips of ``frames`` frames, each validation photograph
    ``val_clips_per_photo`` clips of ``val_frames`` (``None``: as for training); every clip has its own
    trajectories, speeds and layers. Clips render in ``workers`` processes (default: one per
    core, but no more than one per 8 clips). The
    result depends only on the arguments. Writing is atomic (into ``root.tmp-<pid>``, then renamed); a set
    already at ``root`` with the same arguments is returned as is, one with other arguments is replaced
    only if ``overwrite``, and only if it holds nothing that vsr did not write (:func:`set_entry`): a file or
    clip of the user's in it is refused before any work.
    """
    root = Path(root)
    size = (int(size[0]), int(size[1]))
    available = available_photos()
    photos = list(available if photos is None else photos)
    for name in [*photos, *val_photos]:
        if name not in available:
            raise DataError(f"synthetic data: photograph '{name}' is not available; choose from {', '.join(available)}")
    split_photos = {"train": [p for p in photos if p not in val_photos], "val": [p for p in photos if p in val_photos]}
    if not split_photos["train"] or not split_photos["val"]:
        raise DataError(
            f"synthetic data: both splits need a photograph (train {split_photos['train']}, val "
            f"{split_photos['val']}); pass val_photos that are a non-empty proper subset of photos"
        )
    stored = sorted(name for name, cls in REGISTRY["degradation"].items() if cls.folder)
    if degradation not in stored:
        raise DataError(f"synthetic data: unknown degradation {degradation!r}; choose one of {', '.join(stored)}")
    try:
        build_chain(degradation, scale)
    except RecipeError as err:
        raise DataError(f"synthetic data: the {degradation} degradation at scale {scale}: {err.problem}") from None
    val_frames = frames if val_frames is None else val_frames
    val_clips_per_photo = clips_per_photo if val_clips_per_photo is None else val_clips_per_photo
    if min(frames, val_frames) < 2 or min(clips_per_photo, val_clips_per_photo) < 1 or scale < 1:
        raise DataError(
            f"synthetic data: need frames >= 2, clips per photo >= 1, scale >= 1 (got frames {frames}/"
            f"{val_frames}, clips per photo {clips_per_photo}/{val_clips_per_photo}, scale {scale})"
        )
    if size[0] % scale or size[1] % scale or min(size) < 4 * scale:
        raise DataError(
            f"synthetic data: frame size {size} must be a multiple of the scale {scale} (and >= {4 * scale})"
        )

    args = {
        "version": GENERATOR_VERSION,
        "seed": seed,
        "scale": scale,
        "frames": {"train": frames, "val": val_frames},
        "size": list(size),
        "clips_per_photo": {"train": clips_per_photo, "val": val_clips_per_photo},
        "degradation": degradation,
        "photos": split_photos,
    }
    meta_path = root / "synth.json"
    replaced = _nothing  # what the set being replaced holds of vsr's (checked again before it is deleted)
    if meta_path.is_file():
        if read_json_object(meta_path).get("args") == args:
            return SynthInfo.read(root)
        if not overwrite:
            raise DataError(
                f"{root} holds a synthetic data set made with other arguments or another generator version "
                f"(see {meta_path}); replace it with `vsr data synth --out {root} --overwrite` "
                "(overwrite=True), or choose another root"
            )
        replaced = set_entry(read_json_object(meta_path))
        refuse_foreign(root, replaced, "replace it")
    elif root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise DataError(f"{root} exists and is not a synthetic data set (no synth.json); choose another root")

    start = time.perf_counter()
    tmp = root.parent / f"{root.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    lr_name = lr_folder(degradation, scale)
    clips: dict[str, list[str]] = {"train": [], "val": []}
    log.info("rendering the synthetic data set into %s", root)
    jobs = [
        _ClipJob(split, photo, index, [p for p in names if p != photo] or [photo], _clip_seed(seed, photo, index),
                 args["frames"][split], size, scale, degradation, tmp / split)
        for split, names in split_photos.items()
        for photo in names
        for index in range(args["clips_per_photo"][split])
    ]  # fmt: skip
    try:
        workers = min(workers or os.cpu_count() or 1, max(1, len(jobs) // 8))  # a process per 8 clips at most
        if workers > 1:  # clips are independent and seeded by name: the result does not depend on workers
            context = multiprocessing.get_context("spawn")  # never fork a process that holds torch's threads
            with ProcessPoolExecutor(
                workers, mp_context=context, initializer=torch.set_num_threads, initargs=(1,)
            ) as pool:
                names = list(pool.map(_render_and_write, jobs))
        else:
            names = [_render_and_write(job) for job in jobs]
        for job, name in zip(jobs, names, strict=True):
            clips[job.split].append(name)
        meta = {
            "generator": "vsr.data.synth",
            "args": args,
            "photos": split_photos,
            "clips": clips,
            "layout": {"gt": "GT", "lr": lr_name, "flow": "flow"},
            "flow": "piecewise-affine (vsr.data.flow_files: surface (h, w) uint8 + affine (surfaces, 2, 3)) in GT "
            "pixels, channel 0 = x, 1 = y; <i>_next: frame i -> i + 1, <i>_prev: frame i + 1 -> i; "
            "flow_warp(frame_b, flow_a_to_b) aligns frame_b to frame_a",
        }
        (tmp / "synth.json").write_text(json.dumps(meta, indent=2) + "\n")
        if meta_path.is_file() and read_json_object(meta_path).get("args") == args:
            shutil.rmtree(tmp)  # another process finished the same set meanwhile
            return SynthInfo.read(root)
        _install(tmp, root, replaced)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info("synthetic data set ready in %.1f s: %s", time.perf_counter() - start, root)
    return SynthInfo.read(root, cached=False)


@dataclass
class _ClipJob:
    split: str
    photo: str
    index: int
    layer_photos: list[str]
    seed: list[int]
    frames: int
    size: tuple[int, int]
    scale: int
    degradation: str
    folder: Path  # the split's folder in the set being written


def _render_and_write(job: _ClipJob) -> str:
    """Render one clip and write its GT and LR frames and flows under ``job.folder``; returns its name."""
    name = f"{job.photo}_{job.index:03d}"
    clip = render_clip(job.photo, job.layer_photos, seed=job.seed, frames=job.frames, size=job.size, scale=job.scale)
    # From the uint8 GT in float64, rounded half up: what degrading the GT PNGs gives.
    gt = torch.from_numpy(clip.frames).permute(0, 3, 1, 2).double() / 255.0
    lr = build_chain(job.degradation, job.scale)(gt, np.random.default_rng(job.seed))
    lr = torch.floor(lr.clamp(0, 1) * 255 + 0.5).to(torch.uint8).permute(0, 2, 3, 1).numpy()
    lr_name = lr_folder(job.degradation, job.scale)
    dirs = {kind: job.folder / kind / name for kind in ("GT", lr_name, "flow")}
    for folder in dirs.values():
        folder.mkdir(parents=True)
    for i in range(job.frames):
        _write_png(dirs["GT"] / f"{i:08d}.png", clip.frames[i])
        _write_png(dirs[lr_name] / f"{i:08d}.png", lr[i])
    for i in range(job.frames - 1):
        for direction, src, dst in (("next", i, i + 1), ("prev", i + 1, i)):
            write_affine_flow(dirs["flow"] / f"{i:08d}_{direction}.npz", clip.surface[src], clip.affine_flow(src, dst))
    return name


_FRAME = re.compile(r"\d{8}\.png")
_FLOW = re.compile(r"\d{8}_(next|prev)\.(npz|npy)")


def set_entry(meta: dict) -> Callable[[tuple[str, ...], bool], bool]:
    """Whether an entry of a set (its parts relative to the root, and whether it is a folder) is one that the
    generator described by ``meta`` (its ``synth.json``) writes: the description, the splits, their GT, LR
    and flow folders, the clips it lists and their frames and flows."""
    clips = meta.get("clips") if isinstance(meta.get("clips"), dict) else {}

    def expected(parts: tuple[str, ...], folder: bool) -> bool:
        if len(parts) == 1:
            return parts[0] in clips if folder else parts[0] == "synth.json"
        split, kind, *rest = parts
        if not (kind in ("GT", "flow") or re.fullmatch(r"[A-Z]+x\d+", kind)):
            return False
        if len(parts) == 2:
            return folder
        if len(parts) == 3:
            return folder and parts[2] in clips.get(split, ())
        return len(parts) == 4 and not folder and bool((_FLOW if kind == "flow" else _FRAME).fullmatch(parts[3]))

    return expected


def _nothing(parts: tuple[str, ...], folder: bool) -> bool:
    return False


def _install(tmp: Path, root: Path, expected: Callable[[tuple[str, ...], bool], bool] = _nothing) -> None:
    """Move the finished ``tmp`` to ``root``, replacing an old set there (only reached when allowed). The old set
    is checked again before it is deleted (``expected``: what its generator wrote there; by default nothing, for
    an empty folder): something of the user's added while the new set was made keeps it, moved aside."""
    old = None
    if root.exists():
        old = root.parent / f"{root.name}.old-{os.getpid()}"
        root.rename(old)
    try:
        tmp.rename(root)
    except OSError:
        if old is not None:
            old.rename(root)
        raise
    if old is not None:
        foreign = foreign_entries(old, expected)
        if foreign:
            raise NotWrittenByVsr(
                f"the new set is in {root}; the old one, moved to {old}, gained {foreign[0].relative_to(old)} while "
                f"the new one was made, which vsr did not write: move what you need out of {old}, then delete it"
            )
        shutil.rmtree(old)
