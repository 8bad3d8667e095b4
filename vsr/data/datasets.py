"""Readers for the standard video super-resolution data set layouts, and the two torch data sets built on them.

Layouts (paths relative to the data set root; ``open_dataset`` picks one from a recipe entry):

==========  =====================================================================  ===========================
layout      frames                                                                 clips
==========  =====================================================================  ===========================
``reds``    ``train_sharp/<clip>/%08d.png``, ``train_sharp_bicubic/X4/<clip>/...``  REDS4 = 000, 011, 015, 020
``vimeo``   ``GT/00001/0001/im1..im7.png``, ``BIx4|BDx4/00001/0001/...``           ``sep_{train,test}list.txt``
``vid4``    ``GT/<clip>/*.png``, ``BIx4|BDx4/<clip>/*.png``                        calendar, city, foliage, walk
``udm10``   ``GT/<clip>/%04d.png``, ``BDx4/<clip>/%03d.png`` (or ``%04d``)          clip folders
``folder``  ``GT/<clip>/*.png`` (+ ``<lr>/<clip>/*.png``, ``flow/<clip>/*.np[yz]``)  clip folders
``synth``   ``synth.json`` + one ``folder`` layout per split (``train/``, ``val/``)  clip folders
==========  =====================================================================  ===========================

LR and GT frames are paired by frame number (so UDM10's ``0001.png`` GT matches its ``001.png`` LR), or by
file name where names are not numbers. A clip stored without LR frames gets them made from the GT on the fly
by a named degradation (``vsr.data.degradations``: ``bi``, ``bd``).

``TrainingClips`` draws BasicVSR's training samples (paper §4 / MMagic ``basicvsr_2xb4_reds4``): ``num_frames``
consecutive frames of a random clip, an aligned random 64×64 LR crop, random flips / transpose (the same op for
every frame), optionally mirrored (Vimeo-90K: 7 → 14 frames). ``TestClips`` yields whole clips, with the
Vimeo-90K-T protocol (GT of the centre frame only) available as a flag.

Frames come out as float32 ``(t, 3, h, w)`` in [0, 1], RGB. Flow fields follow ``vsr.components.flow``:
``(2, h, w)`` in pixels, channel 0 the horizontal (x) and channel 1 the vertical (y) displacement; the flow
*from frame i to frame j* satisfies ``frame_i(p) ≈ frame_j(p + flow(p))``.
"""

from __future__ import annotations

import logging
import re
import zlib
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch import Tensor
from torch.utils.data import Dataset

from vsr.data.degradations import DEGRADATIONS
from vsr.data.flow_files import FLOW_SUFFIXES, flow_shape, read_flow
from vsr.data.synth import ensure_default, read_description
from vsr.errors import DataError

log = logging.getLogger(__name__)

REDS4_CLIPS = ("000", "011", "015", "020")
VIMEO_LISTS = {"train": "sep_trainlist.txt", "test": "sep_testlist.txt"}
VIMEO_FRAMES = tuple(f"im{i}.png" for i in range(1, 8))
LAYOUTS = ("auto", "reds", "vimeo", "vid4", "udm10", "folder", "synth")
SPEC_KEYS = ("layout", "root", "split", "lr", "scale", "degradation", "sigma", "noise")
FRAME_KEYS = ("lq", "gt")
FLOW_KEYS = ("flow_next", "flow_prev")

# On-the-fly LR of a training crop is computed on the GT crop grown by this many LR pixels on each side, so
# that the crop equals the same crop of the whole degraded frame for kernels up to this radius (BI: 2, BD: 1).
DEGRADE_MARGIN = 3
# The random stream of a training sample's noise, beside its draw's ``(seed, epoch, index)``.
NOISE_STREAM = 1
# ``cache_frames=None`` caches every decoded frame when the whole data set takes at most this many bytes.
AUTO_CACHE_BYTES = 256 * 2**20
# ``validate="auto"`` reads every frame header up to this many frames, else the first frame of each clip.
AUTO_VALIDATE_FRAMES = 30_000


# ---------------------------------------------------------------------------------------------------------
# Clips on disk and layout discovery
# ---------------------------------------------------------------------------------------------------------


@dataclass
class Clip:
    """One video clip on disk: its GT frame paths, the matching LR frame paths (``None``: made from GT on
    the fly), and optionally a folder of true GT-resolution flows ``<frame>_next.npy`` (frame i → i+1) and
    ``<frame>_prev.npy`` (frame i+1 → i), ``(2, H, W)``, named after frame i, or their piecewise-affine
    ``.npz`` form (:mod:`vsr.data.flow_files`)."""

    name: str
    gt: list[Path]
    lr: list[Path] | None = None
    flow: Path | None = None

    def __len__(self) -> int:
        return len(self.gt)

    @property
    def frame_names(self) -> list[str]:
        return [p.stem for p in self.gt]

    def flow_paths(self, i: int) -> tuple[Path, Path]:
        """The (next, prev) flow files between frames ``i`` and ``i + 1``."""
        if self.flow is None:
            raise DataError(f"clip {self.name!r} has no flow folder")
        stem = self.gt[i].stem
        suffix = next((s for s in FLOW_SUFFIXES if (self.flow / f"{stem}_next{s}").is_file()), FLOW_SUFFIXES[-1])
        return self.flow / f"{stem}_next{suffix}", self.flow / f"{stem}_prev{suffix}"


@dataclass
class ClipSet:
    """Clips plus how their LR frames relate to the GT: the ``scale``, the ``degradation`` (with the BD
    blur ``sigma``) that makes LR frames for clips stored without them, and the std of white Gaussian
    ``noise`` added to every LR frame as it is read (0: none). What ``open_dataset`` returns."""

    clips: list[Clip]
    scale: int = 4
    degradation: str = "bi"
    sigma: float = 1.6
    name: str = ""
    noise: float = 0.0

    def __len__(self) -> int:
        return len(self.clips)

    def __iter__(self):
        return iter(self.clips)

    @property
    def names(self) -> list[str]:
        return [clip.name for clip in self.clips]


def _frame_key(path: Path) -> int | str:
    """What pairs an LR frame with its GT frame: the frame number, or the name if it is not a number."""
    return int(path.stem) if path.stem.isdigit() else path.stem


def _sort_key(path: Path) -> tuple[int, int, str]:
    stem = path.stem
    return (0, int(stem), "") if stem.isdigit() else (1, 0, stem)


def _require_dir(path: Path, what: str) -> Path:
    if not path.is_dir():
        raise DataError(f"{what} {path} does not exist (or is not a folder)")
    return path


def _subfolders(path: Path) -> list[str]:
    names = sorted(p.name for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not names:
        raise DataError(f"{path} holds no clip folders; expected one sub-folder of frames per clip")
    return names


#: Image files that are not frames vsr reads: a clip folder holding one is refused, never half-read.
OTHER_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".gif")


def list_frames(folder: Path) -> list[Path]:
    """The ``.png`` frames of one clip folder, in frame-number order (natural order for numbered names).

    A folder that also holds images of another format (a ``.jpg`` among the ``.png`` frames) is refused,
    naming them: skipping them would silently read part of the clip. Hidden files (``._0001.png``) are
    ignored."""
    _require_dir(folder, "clip folder")
    files = [p for p in folder.iterdir() if not p.name.startswith(".") and p.is_file()]
    others = sorted(p.name for p in files if p.suffix.lower() in OTHER_IMAGE_SUFFIXES)
    if others:
        shown = ", ".join(others[:5]) + (f" and {len(others) - 5} more" if len(others) > 5 else "")
        raise DataError(
            f"clip folder {folder} holds images that are not .png frames ({shown}); vsr reads .png frames only: "
            "convert them to .png or move them out of the folder"
        )
    frames = [p for p in files if p.suffix.lower() == ".png"]
    if not frames:
        raise DataError(f"clip folder {folder} holds no .png frames")
    return sorted(frames, key=_sort_key)


def _check_pairing(gt: Sequence[Path], lr: Sequence[Path], gt_dir: Path, lr_dir: Path) -> None:
    if len(gt) != len(lr):
        raise DataError(
            f"LR clip {lr_dir} has {len(lr)} frames but GT clip {gt_dir} has {len(gt)}; "
            "both folders must hold the same frames"
        )
    for g, l in zip(gt, lr, strict=True):
        if _frame_key(g) != _frame_key(l):
            raise DataError(
                f"LR frame {l} does not match GT frame {g}: the frame names in {lr_dir} and {gt_dir} differ"
            )


def _folder_clip(name: str, gt_dir: Path, lr_dir: Path | None, flow_dir: Path | None = None) -> Clip:
    gt = list_frames(gt_dir)
    lr = None
    if lr_dir is not None:
        if not lr_dir.is_dir():
            raise DataError(f"clip {name!r} has GT frames in {gt_dir} but no LR folder {lr_dir}")
        lr = list_frames(lr_dir)
        _check_pairing(gt, lr, gt_dir, lr_dir)
    return Clip(name, gt, lr, flow_dir)


def reds_clips(root: str | Path, split: str = "train", lr: str | None = "BIx4") -> list[Clip]:
    """REDS as prepared by MMagic/BasicSR (270 clips of 100 frames, official val renamed 240–269).

    ``split="reds4"``: the test clips 000, 011, 015, 020; ``"train"``: every other clip present (266 in the
    full set). ``lr="BIx4"`` reads ``train_sharp_bicubic/X4``; another string names an LR folder under
    ``root``; ``None`` makes LR frames on the fly.
    """
    root = Path(root)
    gt_root = _require_dir(root / "train_sharp", "REDS GT folder")
    lr_root = None
    if lr is not None:
        lr_root = _require_dir(root / ("train_sharp_bicubic/X4" if lr == "BIx4" else lr), "REDS LR folder")
    present = _subfolders(gt_root)
    if split == "reds4":
        missing = [c for c in REDS4_CLIPS if c not in present]
        if missing:
            raise DataError(f"REDS4 clip folders {', '.join(missing)} are missing from {gt_root}")
        names = list(REDS4_CLIPS)
    elif split == "train":
        names = [c for c in present if c not in REDS4_CLIPS]
        if not names:
            raise DataError(f"{gt_root} holds only REDS4 clips, no training clips")
    else:
        raise DataError(f"unknown REDS split {split!r}; valid splits: train, reds4")
    return [_folder_clip(n, gt_root / n, lr_root / n if lr_root else None) for n in names]


def vimeo_clips(root: str | Path, split: str = "train", lr: str | None = "BIx4") -> list[Clip]:
    """Vimeo-90K septuplets: ``GT/00001/0001/im1..im7.png`` and ``<lr>/...``, listed by
    ``sep_trainlist.txt`` / ``sep_testlist.txt`` (lines ``00001/0001``, extra columns ignored). Clip folders
    are checked here; the frames themselves when a data set is built (``validate``), to keep this fast."""
    root = Path(root)
    if split not in VIMEO_LISTS:
        raise DataError(f"unknown Vimeo-90K split {split!r}; valid splits: {', '.join(VIMEO_LISTS)}")
    list_path = root / VIMEO_LISTS[split]
    if not list_path.is_file():
        raise DataError(f"Vimeo-90K clip list {list_path} does not exist")
    names = [line.split()[0] for line in list_path.read_text().splitlines() if line.strip()]
    if not names:
        raise DataError(f"Vimeo-90K clip list {list_path} is empty")
    gt_root = _require_dir(root / "GT", "Vimeo-90K GT folder")
    lr_root = None if lr is None else _require_dir(root / lr, "Vimeo-90K LR folder")
    clips = []
    for name in names:
        gt_dir = gt_root / name
        if not gt_dir.is_dir():
            raise DataError(f"clip {name} listed in {list_path} has no GT folder {gt_dir}")
        lr_frames = None
        if lr_root is not None:
            if not (lr_root / name).is_dir():
                raise DataError(f"clip {name} listed in {list_path} has no LR folder {lr_root / name}")
            lr_frames = [lr_root / name / f for f in VIMEO_FRAMES]
        clips.append(Clip(name, [gt_dir / f for f in VIMEO_FRAMES], lr_frames))
    return clips


def folder_clips(root: str | Path, lr: str | None = None) -> list[Clip]:
    """Any folder of clips: ``GT/<clip>/*.png``, LR frames in ``<lr>/<clip>/*.png`` (``lr=None``: made on
    the fly) and, where present, true flows in ``flow/<clip>/`` (the embedded synthetic set has them)."""
    root = Path(root)
    gt_root = _require_dir(root / "GT", "GT folder")
    lr_root = None if lr is None else _require_dir(root / lr, "LR folder")
    flow_root = root / "flow"
    clips = []
    for name in _subfolders(gt_root):
        flow_dir = flow_root / name if (flow_root / name).is_dir() else None
        clips.append(_folder_clip(name, gt_root / name, lr_root / name if lr_root else None, flow_dir))
    return clips


def vid4_clips(root: str | Path, lr: str | None = "BIx4") -> list[Clip]:
    """Vid4 (calendar, city, foliage, walk; clip folders are discovered): ``GT/<clip>/*.png``, ``<lr>/<clip>/``."""
    return folder_clips(root, lr)


def udm10_clips(root: str | Path, lr: str | None = "BDx4") -> list[Clip]:
    """UDM10: ``GT/<clip>/%04d.png`` and ``<lr>/<clip>/``; LR names may use ``%03d`` (paired by number)."""
    return folder_clips(root, lr)


def detect_layout(root: str | Path) -> str:
    """The layout of the data set at ``root``, from its contents."""
    root = Path(root)
    if (root / "synth.json").is_file():
        return "synth"
    if (root / "train_sharp").is_dir():
        return "reds"
    if any((root / name).is_file() for name in VIMEO_LISTS.values()):
        return "vimeo"
    if (root / "GT").is_dir():
        return "folder"
    raise DataError(
        f"cannot tell the layout of {root}: expected train_sharp/ (REDS), sep_trainlist.txt (Vimeo-90K), "
        f"synth.json (synthetic set) or GT/ plus LR folders; or set 'layout' to one of {', '.join(LAYOUTS[1:])}"
    )


def _detect_lr(root: Path) -> str | None:
    """The only LR folder beside ``root/GT`` (``None`` if there is none: LR made on the fly)."""
    candidates = sorted(
        p.name for p in root.iterdir() if p.is_dir() and p.name not in ("GT", "flow") and not p.name.startswith(".")
    )
    if len(candidates) > 1:
        raise DataError(
            f"{root} holds several LR folders ({', '.join(candidates)}); set 'lr' to one of them, "
            "or to null to make LR frames from GT on the fly"
        )
    return candidates[0] if candidates else None


def _scale_of(lr: str | None) -> int | None:
    match = re.search(r"x(\d+)$", lr or "", re.IGNORECASE)
    return int(match.group(1)) if match else None


def open_dataset(spec: str | Path | Mapping[str, Any]) -> ClipSet:
    """The clips named by a recipe entry: a path (layout detected), or a dict with keys ``layout``
    (``auto`` by default, or one of ``reds, vimeo, vid4, udm10, folder, synth``), ``root``, ``split``
    (reds: train/reds4; vimeo: train/test; synth: train/val), ``lr`` (LR folder, ``null`` to degrade GT on
    the fly), ``scale`` (default: from the LR folder name, e.g. ``BDx4``, else 4), ``degradation`` (``bi`` or
    ``bd``, for on-the-fly LR), ``sigma`` (BD blur, default 1.6) and ``noise`` (std of white Gaussian noise
    added to the LR frames, on the 0–1 scale, default 0: see :func:`add_noise`). ``{"layout": "synth"}`` without a root
    is the embedded synthetic set at ``vsr.data.synth.default_root()``, generated there on first use."""
    if isinstance(spec, str | Path):
        spec = {"root": spec}
    spec = dict(spec)
    unknown = sorted(set(spec) - set(SPEC_KEYS))
    if unknown:
        raise DataError(f"unknown data set key(s) {', '.join(unknown)}; valid keys: {', '.join(SPEC_KEYS)}")
    layout = spec.get("layout", "auto")
    if layout not in LAYOUTS:
        raise DataError(f"unknown data set layout {layout!r}; valid layouts: {', '.join(LAYOUTS)}")
    if spec.get("root") is None:
        if layout != "synth":
            raise DataError(f"data set {spec} has no 'root': set it to the folder holding the data set")
        spec["root"] = ensure_default()  # the embedded set, generated on first use
    root = _require_dir(Path(spec["root"]).expanduser(), "data set root")
    if layout == "auto":
        layout = detect_layout(root)
    name = f"{layout}:{root.name}" + (f"/{spec['split']}" if spec.get("split") else "")

    split, lr = spec.get("split"), spec.get("lr", "auto")
    splits = {"reds": ("train", "reds4"), "vimeo": tuple(VIMEO_LISTS), "synth": ("train", "val")}
    if split is not None and split not in splits.get(layout, ()):
        valid = ", ".join(splits.get(layout, ())) or "none (omit 'split')"
        raise DataError(f"data set layout {layout!r} has no split {split!r}; valid splits: {valid}")
    default_scale = None
    if layout == "reds":
        lr = "BIx4" if lr == "auto" else lr
        clips = reds_clips(root, split or "train", lr)
    elif layout == "vimeo":
        lr = "BIx4" if lr == "auto" else lr
        clips = vimeo_clips(root, split or "train", lr)
    elif layout == "vid4":
        lr = "BIx4" if lr == "auto" else lr
        clips = vid4_clips(root, lr)
    elif layout == "udm10":
        lr = "BDx4" if lr == "auto" else lr
        clips = udm10_clips(root, lr)
    else:
        if layout == "synth":
            default_scale = _synth_scale(root / "synth.json")
            root = _require_dir(root / (split or "train"), "synthetic data set split folder")
        lr = _detect_lr(root) if lr == "auto" else lr
        clips = folder_clips(root, lr)

    named_scale = _scale_of(lr)
    scale = spec.get("scale") or named_scale or default_scale or 4
    if named_scale is not None and scale != named_scale:
        raise DataError(f"data set {root}: 'scale' is {scale} but the LR folder {lr!r} is ×{named_scale}")
    degradation = spec.get("degradation") or ("bd" if (lr or "").upper().startswith("BD") else "bi")
    noise = float(spec.get("noise", 0.0))
    if not 0 <= noise < 1:
        raise DataError(f"data set {root}: 'noise' is {noise}, the std of noise on the 0-1 scale: use 0 <= noise < 1")
    return ClipSet(clips, int(scale), degradation, float(spec.get("sigma", 1.6)), name, noise)


def _synth_scale(path: Path) -> int | None:
    scale = read_description(path.parent)["args"].get("scale")
    return int(scale) if scale else None


# ---------------------------------------------------------------------------------------------------------
# Reading and checking frames
# ---------------------------------------------------------------------------------------------------------


def read_frame(path: Path) -> np.ndarray:
    """Decode one frame: uint8 ``(h, w, 3)`` RGB."""
    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"))
    except FileNotFoundError as err:
        raise DataError(f"frame {path} does not exist") from err
    except (OSError, UnidentifiedImageError) as err:
        raise DataError(f"cannot read frame {path}: {err}") from err


def frame_size(path: Path) -> tuple[int, int]:
    """``(h, w)`` of an image, from its header only."""
    try:
        with Image.open(path) as image:
            w, h = image.size
    except FileNotFoundError as err:
        raise DataError(f"frame {path} does not exist") from err
    except (OSError, UnidentifiedImageError) as err:
        raise DataError(f"cannot read frame {path}: {err}") from err
    return h, w


def _common_size(paths: Iterable[Path], what: str) -> tuple[int, int]:
    size, first = None, None
    for path in paths:
        this = frame_size(path)
        if size is None:
            size, first = this, path
        elif this != size:
            raise DataError(
                f"{what} frame {path} has size {this[1]}x{this[0]} but {first} has {size[1]}x{size[0]}; "
                "all frames of a clip must have the same size"
            )
    assert size is not None
    return size


def validate_clips(
    source: ClipSet, check: str = "auto", with_flow: bool = False
) -> list[tuple[tuple[int, int], tuple[int, int]]]:
    """Check that every clip's frames exist, share one size, and that GT = scale × LR; returns each clip's
    (GT ``(H, W)``, LR ``(h, w)``). Only image headers are read. ``check``: ``all`` frames, the ``first``
    frame of each clip (decoding checks the rest), or ``auto`` (all up to 30k frames)."""
    if check not in ("all", "first", "auto"):
        raise DataError(f"unknown frame check {check!r}; valid choices: all, first, auto")
    if not source.clips:
        raise DataError(f"data set {source.name or '(unnamed)'} holds no clips")
    if check == "auto":
        check = "all" if sum(len(c) for c in source.clips) <= AUTO_VALIDATE_FRAMES else "first"
        what = "every frame" if check == "all" else "the first frame of each clip"
        log.info("%s: checking the size of %s (validate='auto')", source.name, what)
    s = source.scale
    sizes = []
    for clip in source.clips:
        if not clip.gt:
            raise DataError(f"clip {clip.name!r} has no frames")
        pick = (lambda paths: paths) if check == "all" else (lambda paths: paths[:1])
        gt_size = _common_size(pick(clip.gt), "GT")
        if clip.lr is not None:
            lr_size = _common_size(pick(clip.lr), "LR")
            if gt_size != (lr_size[0] * s, lr_size[1] * s):
                raise DataError(
                    f"GT frame {clip.gt[0]} is {gt_size[1]}x{gt_size[0]} and LR frame {clip.lr[0]} is "
                    f"{lr_size[1]}x{lr_size[0]}: GT must be scale × LR with scale {s}; check 'scale' and 'lr'"
                )
        else:
            if gt_size[0] % s or gt_size[1] % s:
                raise DataError(
                    f"GT frame {clip.gt[0]} is {gt_size[1]}x{gt_size[0]}, not divisible by scale {s}, so no "
                    "LR frames can be made from it; crop the frames to a multiple of the scale"
                )
            lr_size = (gt_size[0] // s, gt_size[1] // s)
        if with_flow:
            if clip.flow is None:
                raise DataError(f"clip {clip.name!r} has no flow folder (expected flow/{clip.name} beside GT/)")
            for i in range(len(clip) - 1 if check == "all" else min(1, len(clip) - 1)):
                for path in clip.flow_paths(i):
                    if (shape := flow_shape(path)) != (2, *gt_size):
                        raise DataError(
                            f"flow file {path} has shape {shape}, expected (2, {gt_size[0]}, {gt_size[1]}) "
                            "like the GT frames"
                        )
        sizes.append((gt_size, lr_size))
    return sizes


class FrameCache:
    """Decoded frames and flows by path: all of them (``capacity=None``), the most recently used
    ``capacity`` ones, or none (``capacity=0``). Each DataLoader worker holds its own copy."""

    def __init__(self, capacity: int | None):
        self.capacity = capacity
        self._items: OrderedDict[Path, np.ndarray] = OrderedDict()

    def get(self, path: Path, load: Callable[[Path], np.ndarray]) -> np.ndarray:
        if self.capacity == 0:
            return load(path)
        if path in self._items:
            self._items.move_to_end(path)
            return self._items[path]
        item = self._items[path] = load(path)
        if self.capacity is not None and len(self._items) > self.capacity:
            self._items.popitem(last=False)
        return item


def _cache_capacity(cache_frames: bool | int | None, source: ClipSet, sizes, with_flow: bool) -> int | None:
    if cache_frames is None:
        total = 0
        for clip, ((gh, gw), (lh, lw)) in zip(source.clips, sizes, strict=True):
            per_frame = 3 * gh * gw + (3 * lh * lw if clip.lr is not None else 0) + (8 * gh * gw if with_flow else 0)
            total += len(clip) * per_frame
        cache_frames = total <= AUTO_CACHE_BYTES
        log.info(
            "%s: %s decoded frames (%.0f MiB in all)",
            source.name,
            "caching" if cache_frames else "not caching",
            total / 2**20,
        )
    if cache_frames is True:
        return None
    return int(cache_frames)


def _to_tensor(frames: Sequence[np.ndarray]) -> Tensor:
    """uint8 frames ``(h, w, 3)`` → uint8 tensor ``(t, 3, h, w)``."""
    return torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2).contiguous()


def degrade(gt: Tensor, source: ClipSet) -> Tensor:
    """LR frames ``(t, 3, h/s, w/s)`` from float GT frames ``(t, 3, h, w)`` by the set's named degradation."""
    if source.degradation not in DEGRADATIONS:
        raise DataError(
            f"unknown degradation {source.degradation!r} in data set {source.name}; "
            f"valid degradations: {', '.join(DEGRADATIONS)}"
        )
    fn = DEGRADATIONS[source.degradation]
    if source.degradation == "bd":
        return fn(gt, source.scale, source.sigma)
    return fn(gt, source.scale)


# ---------------------------------------------------------------------------------------------------------
# Augmentation
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Augmentation:
    """One draw of BasicVSR's training augmentation, applied alike to every frame of a sample: horizontal
    flip, vertical flip, transpose h↔w (in this order), temporal reversal.

    Frames (``lq``, ``gt``: ``(t, c, h, w)``) are flipped / transposed; true flows (``flow_next``,
    ``flow_prev``: ``(t-1, 2, h, w)``) move with them: a horizontal flip negates x, a vertical flip negates
    y, a transpose swaps x and y, and reversing time swaps next and prev (each reversed in time).
    """

    hflip: bool = False
    vflip: bool = False
    transpose: bool = False
    reverse: bool = False

    def __call__(self, sample: dict[str, Any]) -> dict[str, Any]:
        out = dict(sample)
        for key in FRAME_KEYS:
            if key in out:
                out[key] = self._space(out[key])
                if self.reverse:
                    out[key] = out[key].flip(0)
        if all(key in out for key in FLOW_KEYS):
            flow_next, flow_prev = (self._flow_space(out[key]) for key in FLOW_KEYS)
            if self.reverse:
                flow_next, flow_prev = flow_prev.flip(0), flow_next.flip(0)
            out["flow_next"], out["flow_prev"] = flow_next, flow_prev
        return out

    def _space(self, x: Tensor) -> Tensor:
        if self.hflip:
            x = x.flip(-1)
        if self.vflip:
            x = x.flip(-2)
        if self.transpose:
            x = x.transpose(-1, -2)
        return x.contiguous()

    def _flow_space(self, flow: Tensor) -> Tensor:
        if self.hflip:
            flow = flow.flip(-1) * flow.new_tensor([-1.0, 1.0]).view(2, 1, 1)
        if self.vflip:
            flow = flow.flip(-2) * flow.new_tensor([1.0, -1.0]).view(2, 1, 1)
        if self.transpose:
            flow = flow.transpose(-1, -2).flip(-3)
        return flow.contiguous()


def add_noise(lq: Tensor, sigma: float, rng: np.random.Generator) -> Tensor:
    """Float LR frames ``(..., 3, h, w)`` plus white Gaussian noise of std ``sigma`` (0–1 scale), clipped to
    [0, 1]. Noise makes other frames worth more: averaging n aligned frames divides its std by √n."""
    noise = torch.from_numpy(rng.standard_normal(lq.shape, dtype=np.float32))
    return lq.add(noise, alpha=sigma).clamp_(0, 1)


def _clip_noise_seed(name: str) -> int:
    """A per-clip seed stable across processes and runs (unlike ``hash``), so every evaluation of a clip
    sees the same noisy frames."""
    return zlib.crc32(name.encode())


def mirror_sample(sample: dict[str, Any]) -> dict[str, Any]:
    """MMagic's ``MirrorSequence`` / BasicSR's ``flip_sequence``: frames ``x1..xt`` → ``x1..xt, xt..x1``.

    Flows follow: the pair (xt, xt) has zero flow, and the mirrored half's next flows are the original prev
    flows in reverse order (and vice versa)."""
    out = dict(sample)
    for key in FRAME_KEYS:
        if key in out:
            out[key] = torch.cat([out[key], out[key].flip(0)])
    if all(key in out for key in FLOW_KEYS):
        flow_next, flow_prev = out["flow_next"], out["flow_prev"]
        zero = torch.zeros_like(flow_next[:1])
        out["flow_next"] = torch.cat([flow_next, zero, flow_prev.flip(0)])
        out["flow_prev"] = torch.cat([flow_prev, zero, flow_next.flip(0)])
    return out


# ---------------------------------------------------------------------------------------------------------
# Data sets
# ---------------------------------------------------------------------------------------------------------


class _ClipReader:
    """Shared by the two data sets: validated clip sizes, the frame cache, and region reads."""

    def __init__(self, source: ClipSet, validate: str, with_flow: bool, cache_frames: bool | int | None):
        self.source = source
        self.sizes = validate_clips(source, validate, with_flow)
        self.cache = FrameCache(_cache_capacity(cache_frames, source, self.sizes, with_flow))

    def frames(self, paths: Sequence[Path], size: tuple[int, int], box: tuple[int, int, int, int]) -> Tensor:
        """uint8 ``(t, 3, bottom-top, right-left)`` crops ``box = (top, bottom, left, right)`` of frames
        that must be ``size`` = ``(h, w)``."""
        top, bottom, left, right = box
        crops = []
        for path in paths:
            frame = self.cache.get(path, read_frame)
            if frame.shape[:2] != size:
                raise DataError(
                    f"frame {path} has size {frame.shape[1]}x{frame.shape[0]}, expected {size[1]}x{size[0]} "
                    "like the rest of its clip"
                )
            crops.append(frame[top:bottom, left:right])
        return _to_tensor(crops)

    def flows(self, paths: Sequence[Path], box: tuple[int, int, int, int]) -> Tensor:
        """float32 LR-resolution flows ``(n, 2, h, w)`` of the GT-resolution ``box`` of GT flows: average-pooled
        by the scale and divided by it (a displacement of s GT pixels is one LR pixel)."""
        s = self.source.scale
        top, bottom, left, right = box
        out = []
        for path in paths:
            flow = self.cache.get(path, read_flow)[:, top:bottom, left:right].astype(np.float32)
            h, w = flow.shape[1] // s, flow.shape[2] // s
            out.append(flow.reshape(2, h, s, w, s).mean(axis=(2, 4)) / s)
        return torch.from_numpy(np.stack(out))


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
    optionally ``mirror`` (7 → 14 frames, as for Vimeo-90K). The draw depends only on ``(seed, epoch,
    index)``, so DataLoader workers, DDP ranks and resumed runs see the same samples; ``len`` is the virtual
    ``samples_per_epoch`` (like MMagic's ``RepeatDataset``). Call ``set_epoch`` before each epoch's iterator
    is created (with non-persistent workers).

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
        mirror: bool = False,
        with_flow: bool = False,
        samples_per_epoch: int = 1000,
        seed: int = 0,
        cache_frames: bool | int | None = None,
        validate: str = "auto",
    ):
        self.source = source
        self.num_frames, self.lr_patch = num_frames, lr_patch
        self.flags = (hflip, vflip, transpose, reverse)
        self.mirror, self.with_flow = mirror, with_flow
        self.samples_per_epoch, self.seed, self.epoch = samples_per_epoch, seed, 0
        self.reader = _ClipReader(source, validate, with_flow, cache_frames)
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
        if clip.lr is not None:
            lq = self.reader.frames([clip.lr[i] for i in frames], lr_size, (d.top, d.top + ph, d.left, d.left + pw))
            gt = self.reader.frames([clip.gt[i] for i in frames], gt_size, gt_box)
            sample = {"lq": lq, "gt": gt}
        else:
            sample = self._degraded(clip, frames, gt_size, lr_size, d.top, d.left, ph, pw)
        if self.with_flow:
            pairs = [clip.flow_paths(i) for i in frames[:-1]]
            sample["flow_next"] = self.reader.flows([p[0] for p in pairs], gt_box)
            sample["flow_prev"] = self.reader.flows([p[1] for p in pairs], gt_box)
        sample = d.augmentation(sample)
        for key in FRAME_KEYS:
            if sample[key].dtype == torch.uint8:
                sample[key] = sample[key].float().div_(255)
        if self.source.noise:  # its own stream: the draw above stays what it is without noise
            rng = np.random.default_rng([self.seed, self.epoch, index, NOISE_STREAM])
            sample["lq"] = add_noise(sample["lq"], self.source.noise, rng)
        if self.mirror:  # after the noise: a mirrored frame is the same noisy frame
            sample = mirror_sample(sample)
        return {**sample, "clip": clip.name, "start": d.start}

    def _degraded(self, clip, frames, gt_size, lr_size, top, left, ph, pw) -> dict[str, Tensor]:
        """GT crop and its LR made on the fly from the crop grown by ``DEGRADE_MARGIN`` LR pixels, so it
        matches the same crop of the whole degraded frame."""
        s, (h, w) = self.source.scale, lr_size
        t0, b0 = max(top - DEGRADE_MARGIN, 0), min(top + ph + DEGRADE_MARGIN, h)
        l0, r0 = max(left - DEGRADE_MARGIN, 0), min(left + pw + DEGRADE_MARGIN, w)
        region = self.reader.frames([clip.gt[i] for i in frames], gt_size, (t0 * s, b0 * s, l0 * s, r0 * s))
        region = region.float().div_(255)
        lq = degrade(region, self.source)[..., top - t0 : top - t0 + ph, left - l0 : left - l0 + pw]
        gt = region[..., (top - t0) * s : (top - t0 + ph) * s, (left - l0) * s : (left - l0 + pw) * s]
        return {"lq": lq.contiguous(), "gt": gt.contiguous()}


class TestClips(Dataset):
    """Whole clips for evaluation: ``{"lq": (t, 3, h, w), "gt": (t, 3, H, W), "clip": name, "frames": [frame
    names]}`` float32 in [0, 1], the first ``max_frames`` frames (all by default: REDS4 and Vid4 are fed
    whole, since cutting a clip lowers PSNR at the cuts).

    ``mirror`` extends ``lq`` (and ``gt``, ``frames``) to ``x1..xt, xt..x1``. ``center_frame_only`` is the
    Vimeo-90K-T protocol: ``gt`` and ``frames`` hold only the centre frame (im4 of a septuplet) and
    ``"center"`` is its index in ``lq``; evaluation then scores output frame ``center`` alone.
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
        self.reader = _ClipReader(source, validate, False, cache_frames)

    def __len__(self) -> int:
        return len(self.source.clips)

    def __getitem__(self, index: int) -> dict[str, Any]:
        clip, (gt_size, lr_size) = self.source.clips[index], self.reader.sizes[index]
        n = len(clip) if self.max_frames is None else min(len(clip), self.max_frames)
        gt = self.reader.frames(clip.gt[:n], gt_size, (0, gt_size[0], 0, gt_size[1])).float().div_(255)
        if clip.lr is not None:
            lq = self.reader.frames(clip.lr[:n], lr_size, (0, lr_size[0], 0, lr_size[1])).float().div_(255)
        else:
            lq = degrade(gt, self.source)
        if self.source.noise:  # per frame, so the first n frames are the same whatever max_frames is
            seed = _clip_noise_seed(clip.name)
            lq = torch.stack([add_noise(x, self.source.noise, np.random.default_rng([seed, i])) for i, x in enumerate(lq)])
        names = clip.frame_names[:n]
        sample: dict[str, Any] = {"lq": lq, "gt": gt, "clip": clip.name, "frames": names}
        if self.center_frame_only:
            center = n // 2
            sample.update(gt=gt[center : center + 1], frames=[names[center]], center=center)
        if self.mirror:
            sample["lq"] = torch.cat([lq, lq.flip(0)])
            if not self.center_frame_only:
                sample.update(gt=torch.cat([gt, gt.flip(0)]), frames=names + names[::-1])
        return sample
