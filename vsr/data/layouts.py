"""Data set layouts on disk: which clips a data set holds, their GT and LR frame paths, and
:func:`open_dataset`, which opens the data set a recipe entry names.

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
``real``    ``real.json`` + ``gt/`` (a ``folder`` layout) and ``lq/<clip>/`` (no GT)  :mod:`vsr.data.real`
==========  =====================================================================  ===========================

LR and GT frames are paired by frame number (so UDM10's ``0001.png`` GT matches its ``001.png`` LR), or by
file name where names are not numbers. A clip stored without LR frames gets them made from the GT on the fly
by the data set's degradation (:mod:`vsr.data.degradations`, a registered name or a chain).

A set may have no ground truth: the real-video set's ``lq`` split, or a ``folder`` set without ``GT/`` whose
root (or its ``lr`` folder) holds clip folders of LR frames, ``<clip>/*.png``. Its clips have ``gt = None``
(:attr:`ClipSet.has_gt` is false); evaluation scores them with no-reference metrics only, and training
refuses them.

This module is the one place that spells a data set mapping's keys (:data:`SPEC_KEYS`), its layouts
(:data:`LAYOUTS`) and their splits (:data:`SPLITS`): recipe validation asks :func:`check_spec`.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vsr.atomic import listed
from vsr.data import real
from vsr.data.degradations import Degradation, build_chain, check_chain
from vsr.data.flow_files import FLOW_SUFFIXES
from vsr.data.synth import ensure_default, read_description
from vsr.errors import DataError, RecipeError
from vsr.registry import REGISTRY, STRING, Allowed, entry, integer, optional

log = logging.getLogger(__name__)

REDS4_CLIPS = ("000", "011", "015", "020")
VIMEO_LISTS = {"train": "sep_trainlist.txt", "test": "sep_testlist.txt"}
VIMEO_FRAMES = tuple(f"im{i}.png" for i in range(1, 8))
LAYOUTS = ("auto", "reds", "vimeo", "vid4", "udm10", "folder", "synth", "real")
#: The splits of each layout that has splits (the first is the default).
SPLITS = {"reds": ("train", "reds4"), "vimeo": tuple(VIMEO_LISTS), "synth": ("train", "val"), "real": real.SPLITS}
#: The keys of a data set mapping, and the values each allows (``layout``, ``split`` and ``degradation`` are
#: checked by :func:`check_spec` against the layouts, their splits and the registry).
SPEC_KEYS = ("layout", "root", "split", "lr", "scale", "degradation")
SPEC_RULES: dict[str, Allowed] = {
    "root": Allowed(lambda v: isinstance(v, str | Path), "a path"),
    "lr": optional(STRING),
    "scale": integer(1),
}
#: The degradation when a mapping names none: the LR folder's (``BDx4``: bd), else this.
DEFAULT_DEGRADATION = "bi"


# ---------------------------------------------------------------------------------------------------------
# Clips on disk and layout discovery
# ---------------------------------------------------------------------------------------------------------


@dataclass
class Clip:
    """One video clip on disk: its GT frame paths (``None``: a clip without ground truth, LR frames only), the
    matching LR frame paths (``None``: made from GT on the fly), and optionally a folder of true GT-resolution
    flows ``<frame>_next.npy`` (frame i → i+1) and ``<frame>_prev.npy`` (frame i+1 → i), ``(2, H, W)``, named
    after frame i, or their piecewise-affine ``.npz`` form (:mod:`vsr.data.flow_files`)."""

    name: str
    gt: list[Path] | None
    lr: list[Path] | None = None
    flow: Path | None = None

    def __post_init__(self) -> None:
        if self.gt is None and self.lr is None:
            raise DataError(f"clip {self.name!r} has neither GT nor LR frames")

    @property
    def frames(self) -> list[Path]:
        """The frames that name the clip's frames: the GT's, or the LR frames of a clip without GT."""
        return self.gt if self.gt is not None else self.lr  # type: ignore[return-value]

    def __len__(self) -> int:
        return len(self.frames)

    @property
    def frame_names(self) -> list[str]:
        return [p.stem for p in self.frames]

    def flow_paths(self, i: int) -> tuple[Path, Path]:
        """The (next, prev) flow files between frames ``i`` and ``i + 1``."""
        if self.flow is None:
            raise DataError(f"clip {self.name!r} has no flow folder")
        stem = self.frames[i].stem
        suffix = next((s for s in FLOW_SUFFIXES if (self.flow / f"{stem}_next{s}").is_file()), FLOW_SUFFIXES[-1])
        return self.flow / f"{stem}_next{suffix}", self.flow / f"{stem}_prev{suffix}"


@dataclass
class ClipSet:
    """Clips plus how their LR frames relate to the GT: the ``scale``, and the ``degradation`` (a built
    :class:`~vsr.data.degradations.Chain`) that makes LQ frames from GT for clips stored without LR frames.
    What :func:`open_dataset` returns."""

    clips: list[Clip]
    scale: int
    degradation: Degradation
    name: str = ""

    def __len__(self) -> int:
        return len(self.clips)

    def __iter__(self):
        return iter(self.clips)

    @property
    def names(self) -> list[str]:
        return [clip.name for clip in self.clips]

    @property
    def has_gt(self) -> bool:
        """Whether every clip has ground truth (a set of LR-only clips can be scored by no-reference metrics
        alone, and not trained on)."""
        return all(clip.gt is not None for clip in self.clips)


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
        shown = listed(others, 5)
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


def holds_clip_folders(root: str | Path) -> bool:
    """Whether ``root`` is a folder of clip folders of frames (``<clip>/*.png``) and not a data set with a
    ``GT/`` folder: the clips of a set without ground truth. A folder named ``GT`` is a data set's ground truth,
    never read as LR frames."""
    root = Path(root)
    if not root.is_dir() or root.name == "GT" or (root / "GT").is_dir():
        return False
    folders = [p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")]
    return bool(folders) and all(any(f.suffix.lower() == ".png" for f in p.iterdir()) for p in folders)


def lr_only_clips(root: str | Path) -> list[Clip]:
    """Clips without ground truth: the LR frames ``<clip>/*.png`` in each sub-folder of ``root`` (the
    real-video set's ``lq`` split, or any folder of low-quality clips), for no-reference metrics."""
    root = Path(root)
    return [Clip(name, None, list_frames(root / name)) for name in _subfolders(root)]


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
    if (root / real.DESCRIPTION_FILE).is_file():
        return "real"
    if (root / "train_sharp").is_dir():
        return "reds"
    if any((root / name).is_file() for name in VIMEO_LISTS.values()):
        return "vimeo"
    if (root / "GT").is_dir() or holds_clip_folders(root):
        return "folder"
    raise DataError(
        f"cannot tell the layout of {root}: expected train_sharp/ (REDS), sep_trainlist.txt (Vimeo-90K), "
        f"synth.json (synthetic set), GT/ plus LR folders, or clip folders of LR frames without GT; or set "
        f"'layout' to one of {', '.join(LAYOUTS[1:])}"
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


# ---------------------------------------------------------------------------------------------------------
# A data set mapping, checked and opened
# ---------------------------------------------------------------------------------------------------------

#: Keys of data set mappings that are now arguments of a degradation stage.
RETIRED_KEYS = ("sigma", "noise")


def _flow(entry: str | dict[str, Any]) -> str:
    """A degradation entry in YAML flow style (``{name: bd, sigma: 0.8}``)."""
    if isinstance(entry, str):
        return entry
    return "{" + ", ".join(f"{k}: {v}" for k, v in entry.items()) + "}"


def _new_spelling(spec: Mapping[str, Any]) -> str:
    """The ``degradation`` that a mapping with the retired keys ``sigma`` and ``noise`` meant."""
    name = spec.get("degradation") or DEFAULT_DEGRADATION
    stages: list[Any] = [name] if isinstance(name, str | dict) else list(name)
    if "sigma" in spec and stages == ["bd"]:
        stages = [{"name": "bd", "sigma": spec["sigma"]}]
    if "noise" in spec:
        stages.append({"name": "gaussian_noise", "sigma": spec["noise"]})
    text = ", ".join(_flow(s) for s in stages)
    return f"[{text}]" if len(stages) > 1 else text


def _check_split(layout: str, split: Any, key: str) -> None:
    if split is not None and split not in SPLITS.get(layout, ()):
        splits = SPLITS.get(layout)
        problem = f"not a split of the {layout} layout" if splits else f"the {layout} layout has no splits: omit it"
        raise RecipeError(f"{key}.split", split, problem, splits or ())


def check_spec(spec: Mapping[str, Any], key: str = "data set") -> None:
    """Check a data set mapping (``data.train``, ``data.val``, or :func:`open_dataset`'s): its keys, their
    values, the layout, a split the layout has, and the degradation (by the registry). Fails with a
    :class:`RecipeError` naming ``key`` and the key inside it; a retired key's message gives its new spelling."""
    for name, value in spec.items():
        if name in RETIRED_KEYS:
            raise RecipeError(
                f"{key}.{name}", value, f"'{name}' is an argument of a degradation stage now: use degradation: "
                f"{_new_spelling(spec)}" + (" (and lr: null where the set stores LR frames: a degradation makes LR "
                "frames from GT)" if "noise" in spec else ""),
            )  # fmt: skip
        if name not in SPEC_KEYS:
            raise RecipeError(f"{key}.{name}", value, "unknown data set key", SPEC_KEYS)
        rule = SPEC_RULES.get(name)
        if rule is not None and not rule(value):
            raise RecipeError(f"{key}.{name}", value, f"must be {rule}")
    layout = spec.get("layout", "auto")
    if layout not in LAYOUTS:
        raise RecipeError(f"{key}.layout", layout, "unknown data set layout", LAYOUTS)
    if layout != "auto":
        _check_split(layout, spec.get("split"), key)
    if "degradation" in spec:
        check_chain(spec["degradation"], f"{key}.degradation")


#: The LR folder each layout reads unless the mapping's ``lr`` says otherwise (the others detect theirs).
STORED_LR = {"reds": "BIx4", "vimeo": "BIx4", "vid4": "BIx4", "udm10": "BDx4"}


def _is_only(chain: Any, name: str | None) -> bool:
    """Whether a degradation chain is exactly the registered degradation ``name`` with its defaults."""
    stages = chain if isinstance(chain, list | tuple) else [chain]
    return name is not None and len(stages) == 1 and entry("degradation", stages[0]) == {"name": name}


def _stored_degradation(lr: str | None) -> str | None:
    """The registered degradation that made an LR folder by its name (``BDx4``: bd), if one did."""
    prefix = re.sub(r"x\d+$", "", Path(lr).name, flags=re.IGNORECASE).upper() if lr else None
    return next((n for n, cls in REGISTRY["degradation"].items() if cls.folder and cls.folder.upper() == prefix), None)


def open_dataset(spec: str | Path | Mapping[str, Any], default_degradation: Any = DEFAULT_DEGRADATION) -> ClipSet:
    """The clips named by a recipe entry: a path (layout detected), or a mapping with keys ``layout``
    (``auto`` by default, or one of :data:`LAYOUTS`), ``root``, ``split`` (:data:`SPLITS`), ``lr`` (LR folder,
    ``null`` to degrade GT on the fly), ``scale`` (default: from the LR folder name, e.g. ``BDx4``, else 4) and
    ``degradation`` (a registered degradation, ``{name: ..., <argument>: ...}``, or a list of them: the chain
    that makes LQ frames from GT). A chain named in the mapping makes the LR frames from GT unless it is the
    one that made the set's stored LR folder (``BIx4``: ``bi``) or ``lr`` names a folder; without one, the
    stored LR frames are read, and clips stored without them are degraded by ``default_degradation`` (the
    recipe's ``data.degradation``).
    ``{"layout": "synth"}`` without a root is the embedded synthetic set at ``vsr.data.synth.default_root()``,
    generated there on first use; ``{"layout": "real"}`` the real-video set's ground-truth split at
    ``vsr.data.real.default_root()`` (:mod:`vsr.data.real`), written there on first use; ``split: lq`` its clips
    without ground truth. A ``folder`` set without a ``GT/`` folder whose root (or ``lr`` folder) holds clip
    folders of frames is a set without ground truth too (:func:`lr_only_clips`)."""
    if isinstance(spec, str | Path):
        spec = {"root": spec}
    spec = dict(spec)
    check_spec(spec)
    layout = spec.get("layout", "auto")
    if spec.get("root") is None:
        if layout not in ("synth", "real"):
            raise DataError(f"data set {spec} has no 'root': set it to the folder holding the data set")
        # the embedded sets, written on first use
        spec["root"] = ensure_default() if layout == "synth" else real.ensure_default()
    root = _require_dir(Path(spec["root"]).expanduser(), "data set root")
    if layout == "auto":
        layout = detect_layout(root)
    name = f"{layout}:{root.name}" + (f"/{spec['split']}" if spec.get("split") else "")

    split, lr = spec.get("split"), spec.get("lr", "auto")
    _check_split(layout, split, "data set")
    default_scale = None
    if layout == "synth":
        default_scale = _synth_scale(root / "synth.json")
        root = _require_dir(root / (split or "train"), "synthetic data set split folder")
    elif layout == "real":
        root = _require_dir(real.split_root(root, split or real.GT_SPLIT), "real-video set split folder")
    if layout == "real" and split == real.LQ_SPLIT:
        if lr != "auto":
            raise DataError(f"data set {name}: the lq split's clips are their LR frames ({root}/<clip>/); omit 'lr'")
        return _set_without_gt(root, name, spec, default_degradation)
    if layout == "folder" and not (root / "GT").is_dir():
        folder = root if lr == "auto" else None if lr is None else root / lr
        if folder is not None and holds_clip_folders(folder):
            return _set_without_gt(folder, name, spec, default_degradation)
    given_lr = lr != "auto"
    if not given_lr:
        lr = STORED_LR.get(layout) or _detect_lr(root)
    stored, named = _stored_degradation(lr), spec.get("degradation")
    if named is not None and not given_lr and lr is not None and not _is_only(named, stored):
        lr = None  # a chain named in the mapping makes the LR frames from GT, not the stored folder of another
    if layout == "reds":
        clips = reds_clips(root, split or "train", lr)
    elif layout == "vimeo":
        clips = vimeo_clips(root, split or "train", lr)
    elif layout == "vid4":
        clips = vid4_clips(root, lr)
    elif layout == "udm10":
        clips = udm10_clips(root, lr)
    else:
        clips = folder_clips(root, lr)

    named_scale = _scale_of(lr)
    scale = int(spec.get("scale") or named_scale or default_scale or 4)
    if named_scale is not None and scale != named_scale:
        raise DataError(f"data set {root}: 'scale' is {scale} but the LR folder {lr!r} is ×{named_scale}")
    chain = named or _stored_degradation(lr) or default_degradation
    degradation = build_chain(chain, scale, "degradation")
    if lr is not None and named is not None and not _is_only(named, stored):
        log.warning(
            "data set %s reads its LR frames from %r (lr is set), so its degradation %s makes none; set lr: null "
            "to make the LR frames from GT with it",
            name, lr, named,
        )  # fmt: skip
    else:
        made = "read from " + repr(lr) if lr is not None else f"made from GT by {chain}"
        log.info("data set %s: LR frames %s", name, made)
    return ClipSet(clips, scale, degradation, name)


def _set_without_gt(folder: Path, name: str, spec: Mapping[str, Any], default_degradation: Any) -> ClipSet:
    """The LR-only clips in ``folder`` (:func:`lr_only_clips`): a test set for no-reference metrics. ``scale``:
    the mapping's, else the folder name's (``BIx4``), else 4; the output of a model is that many times the LR."""
    if spec.get("degradation") is not None:
        raise DataError(
            f"data set {name} has no ground truth (clip folders of LR frames in {folder}), so no degradation makes "
            "its LR frames: omit 'degradation'"
        )
    clips = lr_only_clips(folder)
    scale = int(spec.get("scale") or _scale_of(folder.name) or 4)
    log.info("data set %s: %d clips of LR frames from %s, without ground truth", name, len(clips), folder)
    return ClipSet(clips, scale, build_chain(default_degradation, scale, "degradation"), name)


def _synth_scale(path: Path) -> int | None:
    scale = read_description(path.parent)["args"].get("scale")
    return int(scale) if scale else None
