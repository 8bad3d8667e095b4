"""Evaluation as the BasicVSR papers report it: each metric per frame, averaged per clip, then over clips.

The metrics are the recipe's ``data.val_metrics`` (PSNR and SSIM by default; any registered
:class:`vsr.metrics.Metric`), built by the :class:`Protocol` with its border crop and Y channel.

Each clip is restored whole, in one forward pass (as the papers feed REDS4 and Vid4; ``max_frames`` cuts
clips short when memory demands it, at some cost near the cut). ``chunk_frames`` restores each clip in
independent chunks of that many frames instead, every frame still scored: how far a network propagates at test
time (RealBasicVSR §3: under real degradations longer propagation can amplify artefacts). The Vimeo-90K-T protocol
(``center_frame``) mirrors the 7 input frames to 14 and scores only the centre frame, the average of its
two outputs (:func:`vsr.metrics.vimeo_center_frame`). The bicubic baseline (MATLAB ``imresize`` ×scale of
the LR frames) is scored on the same frames, so every report states what the network adds. A test set without
ground truth (real low-quality clips) is scored by the protocol's no-reference metrics alone (NIQE), the model's
output and the bicubic baseline alike; ``metrics.json`` lists the metrics skipped for lack of GT.

:func:`measure` is the one code path: training validation calls it as well, so the numbers recorded during
training equal those of :func:`evaluate` on the saved checkpoint.

:func:`evaluate` with an ``out_dir`` holds that folder's lock (:mod:`vsr.locks`) from before the model is
loaded until its files are written: a second writer (another ``vsr test --out``, a training in that folder)
is refused naming the holder, and a folder the failed evaluation created is removed again. Before any work,
:func:`check_output_folder` refuses an ``out_dir`` whose files would be written through a link, or that is (or
lies in) a training run's folder and the checkpoint is not that run's own (its results would be replaced by
another model's); ``frames/<clip>`` folders are written only if new or marked as vsr's (:mod:`vsr.atomic`).
``metrics.json`` records the degradation that made the LR frames (``lr_frames``).
"""

from __future__ import annotations

import contextlib
import csv
import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor, nn

from vsr.atomic import (
    NotWrittenByVsr,
    atomic_open,
    csv_with,
    json_with,
    make_folder,
    read_marker,
    refuse_foreign_files,
    refuse_links_under,
    write_json,
    write_marker,
    write_with,
)
from vsr.checkpoints import load_checkpoint, read_checkpoint
from vsr.data.datasets import TestClips
from vsr.data.degradations import describe_chain, imresize
from vsr.data.layouts import ClipSet, open_dataset
from vsr.data.specs import evaluation_spec
from vsr.device import default_device
from vsr.errors import VSRError
from vsr.locks import folder_lock, holds
from vsr.metrics import Metric, clip_average, metric_class, vimeo_center_frame
from vsr.model import assemble
from vsr.progress import progress_bar
from vsr.recipe import DEFAULTS, Recipe, load_recipe
from vsr.registry import build_entry, entry

log = logging.getLogger(__name__)

METRICS_FILE = "metrics.json"  # what evaluate() returns: each metric, the bicubic baseline's, the protocol
PER_FRAME_FILE = "per_frame.csv"  # each metric (and the bicubic baseline's) per clip and frame
FRAMES_DIR = "frames"  # with save_frames: frames/<clip>/<frame name>.png, each clip folder marked as vsr's
FRAMES_KIND = "test frames"  # the kind in the marker file of a frames/<clip> folder
#: The files evaluate() writes in its out_dir, and how one written earlier is known to be vsr's.
OUTPUT_FILES = {METRICS_FILE: json_with("protocol", "frames"), PER_FRAME_FILE: csv_with("clip", "frame", "name")}
BASELINE_PREFIX = "bicubic_"  # per_frame.csv's column of the bicubic baseline's score: bicubic_<metric>


@dataclass(frozen=True)
class Protocol:
    """How frames are scored: the metrics (entries as ``data.val_metrics`` writes them: a name or
    ``{name: ..., <args>}``), Y or RGB, border crop, Vimeo-90K-T centre frame, clip truncation, and the
    chunks a clip is restored in (``None``: whole).

    ``scorers`` are the metrics built with this protocol's ``crop_border`` and ``y_channel`` (rebuilt by
    :func:`dataclasses.replace`); ``names`` their column names, the first being the primary metric."""

    y_channel: bool = False
    crop_border: int = 0
    center_frame: bool = False
    max_frames: int | None = None
    metrics: Sequence[str | Mapping[str, Any]] = tuple(DEFAULTS["data"]["val_metrics"])
    chunk_frames: int | None = None
    scorers: tuple[Metric, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.chunk_frames and self.center_frame:
            raise VSRError(
                "data.val_chunk_frames and data.val_center_frame exclude each other: the Vimeo-90K-T "
                "protocol restores each mirrored 14-frame clip whole; set one of them only"
            )
        wired = {"crop_border": self.crop_border, "y_channel": self.y_channel}
        built = tuple(
            build_entry("metric", f"data.val_metrics[{i}]", item, **wired) for i, item in enumerate(self.metrics)
        )
        object.__setattr__(self, "metrics", tuple(self.metrics))
        object.__setattr__(self, "scorers", built)

    @property
    def names(self) -> tuple[str, ...]:
        """The metrics' names, as the columns of ``per_frame.csv`` and the keys of ``metrics.json``."""
        return tuple(entry("data.val_metrics", item)["name"] for item in self.metrics)

    @property
    def primary(self) -> str:
        """The first metric: what training's best checkpoint and the reports' figures follow."""
        return self.names[0]

    @classmethod
    def from_recipe(cls, recipe: Recipe) -> Protocol:
        d = recipe.data
        return cls(d["val_y_channel"], d["val_crop_border"], d["val_center_frame"], d["val_max_frames"],
                   d["val_metrics"], d["val_chunk_frames"])  # fmt: skip

    def without_gt(self, data: str) -> Protocol:
        """This protocol with its no-reference metrics alone, for the data set ``data`` that has no ground truth;
        one without a no-reference metric fails, naming the fix."""
        kept = [item for item, scorer in zip(self.metrics, self.scorers, strict=True) if not scorer.needs_gt]
        if not kept:
            raise VSRError(
                f"data set {data} has no ground truth, and every metric of the protocol ({', '.join(self.names)}) "
                "needs it: add a no-reference metric to data.val_metrics, e.g. --set 'data.val_metrics=[niqe]'"
            )
        return replace(self, metrics=kept)

    def score(self, pred: Tensor, gt: Tensor | None, prefix: str = "") -> dict[str, Tensor]:
        """Each metric's per-frame values of ``pred`` against ``gt`` (no-reference metrics see no ``gt``), keyed
        ``prefix + name``."""
        scores = {}
        for name, scorer in zip(self.names, self.scorers, strict=True):
            values = torch.as_tensor(scorer.per_frame(pred, gt if scorer.needs_gt else None))
            if values.shape != pred.shape[:1]:
                raise VSRError(
                    f"metric {name!r} ({type(scorer).__qualname__}.per_frame) gave values of shape "
                    f"{tuple(values.shape)} for {pred.shape[0]} frames; a metric gives one value per frame"
                )
            scores[prefix + name] = values
        return scores

    def test_clips(self, source: ClipSet) -> TestClips:
        # The Vimeo-90K-T protocol feeds the mirror-extended clip (7 -> 14 frames).
        return TestClips(
            source,
            max_frames=self.max_frames,
            mirror=self.center_frame,
            center_frame_only=self.center_frame,
            cache_frames=None,
        )


@dataclass
class Measurement:
    """Per-frame scores of one pass over a test set (``rows``) and their clip averages; ``names``: the
    protocol's metrics (the model's scores), in order; ``skipped``: those of its metrics that need the ground
    truth a test set without it lacks."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    names: tuple[str, ...] = ()
    skipped: tuple[str, ...] = ()

    def values(self, key: str) -> dict[str, Tensor]:
        by_clip: dict[str, list[float]] = {}
        for row in self.rows:
            by_clip.setdefault(row["clip"], []).append(row[key])
        return {clip: torch.tensor(v, dtype=torch.float64) for clip, v in by_clip.items()}

    def mean(self, key: str) -> float:
        """The reported number: frames averaged within each clip, then clips averaged."""
        return clip_average(self.values(key))

    def means(self) -> dict[str, float]:
        """``{name: mean}`` of every metric of the protocol, in its order (:meth:`mean` of each)."""
        return {name: self.mean(name) for name in self.names}

    def summary(self) -> dict[str, Any]:
        """``{<metric>: mean, ..., "bicubic": {<metric>: mean}, "clips": {clip: {<key>: mean, "frames": n}}}``,
        and ``"skipped": [<metric>, ...]`` where metrics were skipped for lack of ground truth."""
        baseline = [BASELINE_PREFIX + name for name in self.names]
        keys = [*self.names, *(k for k in baseline if self.rows and k in self.rows[0])]
        by_key = {key: self.values(key) for key in keys}
        clips = {  # a metric that scores none of a clip's frames (NIQE's ``frames``) has null there
            clip: {key: _number(by_key[key][clip].nanmean()) for key in keys} | {"frames": len(frames)}
            for clip, frames in by_key[self.names[0]].items()
        }
        out: dict[str, Any] = self.means()
        if len(keys) > len(self.names):
            out["bicubic"] = {name: self.mean(BASELINE_PREFIX + name) for name in self.names}
        if self.skipped:
            out["skipped"] = list(self.skipped)
        return out | {"clips": clips}


def _number(value: Tensor) -> float | None:
    """A mean as a JSON number, ``None`` for NaN (which JSON has no spelling for)."""
    return None if torch.isnan(value) else float(value)


def bicubic_upsample(lq: Tensor, scale: int) -> Tensor:
    """The bicubic baseline: MATLAB ``imresize(lq, scale, 'bicubic')`` of frames ``(..., 3, h, w)``."""
    return imresize(lq, float(scale)).clamp(0, 1)


class Bicubic(nn.Module):
    """The bicubic baseline as a model, ``(n, t, 3, h, w) -> (n, t, 3, s·h, s·w)``, scored by :func:`measure`
    like any network."""

    def __init__(self, scale: int):
        super().__init__()
        self.scale = scale

    def forward(self, lrs: Tensor) -> Tensor:
        return bicubic_upsample(lrs, self.scale)


@torch.no_grad()
def restore(model: nn.Module, lq: Tensor, device: torch.device, chunk_frames: int | None = None) -> Tensor:
    """Run the model on one clip ``(t, 3, h, w)``, whole or in independent chunks of ``chunk_frames`` frames
    (the last may be shorter); returns ``(t, 3, s·h, s·w)`` on the CPU, float32."""
    chunks = lq.split(chunk_frames) if chunk_frames else (lq,)
    return torch.cat([model(chunk[None].to(device)).float().cpu()[0] for chunk in chunks])


def measure(
    model: nn.Module,
    clips: TestClips,
    protocol: Protocol,
    device: torch.device | str = "cpu",
    *,
    bicubic: bool = True,
    frames_dir: Path | None = None,
    progress: bool = False,
) -> Measurement:
    """Score ``model`` on every clip of ``clips``: one row per scored frame with ``clip``, ``frame`` (index),
    ``name`` and each of the protocol's metrics by name (and ``bicubic_<metric>`` with ``bicubic``). The model
    is put in eval mode and left there. ``frames_dir`` also writes the outputs as PNG (``<clip>/<name>.png``).
    ``result.means()`` gives ``{metric: clip-averaged mean}``.

    On a test set without ground truth (``clips.source.has_gt`` false) only the protocol's no-reference metrics
    are scored (:meth:`Protocol.without_gt`), the others logged and listed in ``result.skipped``."""
    device = torch.device(device)
    source, scale = clips.source, clips.source.scale
    full, skipped = protocol, ()
    if not source.has_gt:
        protocol = protocol.without_gt(source.name)
        skipped = tuple(name for name in full.names if name not in protocol.names)
        if skipped:
            log.warning("%s has no ground truth: scoring %s; skipped %s, which need it",
                        source.name, ", ".join(protocol.names), ", ".join(skipped))  # fmt: skip
    model.eval()
    result = Measurement(names=protocol.names, skipped=skipped)
    with progress_bar(len(clips), "evaluating", enabled=progress) as bar:
        for index in range(len(clips)):
            sample = clips[index]
            out = restore(model, sample["lq"], device, protocol.chunk_frames)
            gt, lq = sample.get("gt"), sample["lq"]
            if protocol.center_frame:
                out = vimeo_center_frame(out[None], mirrored=True)  # (1, 3, H, W)
                lq = lq[sample["center"]][None]
            expected = (*lq.shape[:-2], lq.shape[-2] * scale, lq.shape[-1] * scale) if gt is None else gt.shape
            if out.shape != expected:
                raise VSRError(
                    f"clip {sample['clip']!r}: the output is {tuple(out.shape)} but the "
                    + (f"GT is {tuple(gt.shape)}" if gt is not None else f"LR ×{scale} is {tuple(expected)}")
                    + f"; check that model.scale ({getattr(model, 'scale', '?')}) matches the data set (×{scale})"
                )
            scores = protocol.score(out, gt)
            if bicubic:
                scores |= protocol.score(bicubic_upsample(lq, scale), gt, BASELINE_PREFIX)
            for i, name in enumerate(sample["frames"]):
                row = {"clip": sample["clip"], "frame": i, "name": name}
                result.rows.append(row | {k: float(v[i]) for k, v in scores.items()})
            if frames_dir is not None:
                _save_frames(out, sample["frames"], Path(frames_dir), sample["clip"])
            bar.advance()
    return result


def _save_frames(frames: Tensor, names: list[str], frames_dir: Path, clip: str) -> None:
    """``frames_dir/<clip>/<name>.png``, each written atomically, in a folder vsr made (no link on the way) and
    marked as vsr's first (an interrupted run's folder is then still known as vsr's)."""
    folder = make_folder(frames_dir, *Path(clip).parts)
    write_marker(folder, FRAMES_KIND, frames=len(names))
    array = (frames.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    for image, name in zip(array, names, strict=True):
        picture = Image.fromarray(np.ascontiguousarray(image))
        write_with(lambda tmp, picture=picture: picture.save(tmp, format="PNG"), folder / f"{name}.png", ".png")


def _check_frame_folders(frames_dir: Path, clips: Sequence[str]) -> None:
    """Refuse, before any work, frame folders vsr would write through a link or over files it did not write."""
    if not (frames_dir.exists() or frames_dir.is_symlink()):
        return
    refuse_links_under(frames_dir, "the frames folder")
    for clip in clips:
        folder = frames_dir / clip
        if folder.is_dir() and any(folder.iterdir()) and (read_marker(folder) or {}).get("kind") != FRAMES_KIND:
            raise NotWrittenByVsr(
                f"{folder} holds files that vsr did not write (it has no {FRAMES_KIND} marker), and --save-frames "
                "would write over them; move them away, or choose another --out"
            )


def check_output_folder(
    out_dir: Path, checkpoint: Any, files: dict[str, Callable[[Path], bool]], command: str
) -> Path | None:
    """Refuse, before any work, an ``out_dir`` whose ``files`` (name -> whether an existing one is vsr's) would be
    written through a link or over a file vsr did not write, or that is (or lies in) a training run's folder when
    ``checkpoint`` is not that run's own: another model's results would replace the run's. The process that
    holds the run's lock (the study driver) writes there. Returns the run folder, if it is in one."""
    from vsr.training.files import LAST_CHECKPOINT, run_folder_of  # vsr.training imports this module

    refuse_foreign_files(out_dir, files, command)
    run = run_folder_of(out_dir)
    if run is None or holds(run):
        return run
    given = Path(checkpoint) if isinstance(checkpoint, str | Path) else None
    if given is None or not given.is_file() or not given.resolve().is_relative_to(run.resolve()):
        raise NotWrittenByVsr(
            f"{out_dir} is in the run folder {run}, and writing there would replace that run's results with those "
            f"of another checkpoint ({checkpoint if checkpoint is not None else 'a model given built'}); choose "
            f"another --out, or test the run's own checkpoint (e.g. {run / LAST_CHECKPOINT})"
        )
    return run


def _write_rows(rows: list[dict[str, Any]], path: Path) -> None:
    with atomic_open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def resolve_model(model_or_recipe, checkpoint) -> tuple[nn.Module, Recipe | None]:
    """A model with its weights and its recipe (``None`` for a bare model), from what :func:`evaluate` takes."""
    if isinstance(model_or_recipe, nn.Module):
        if checkpoint is not None:
            load_checkpoint(model_or_recipe, checkpoint)
        return model_or_recipe, None
    if model_or_recipe is None:
        if checkpoint is None:
            raise VSRError("evaluate: give a recipe or a model, or a vsr checkpoint that records its recipe")
        stored = read_checkpoint(checkpoint).get("recipe")
        if not isinstance(stored, Mapping):
            raise VSRError(f"checkpoint {checkpoint} records no recipe; pass the recipe it was trained with")
        model_or_recipe = dict(stored)
    recipe = load_recipe(model_or_recipe)
    if checkpoint is None:
        raise VSRError(
            f"evaluate: recipe {recipe.name!r} needs trained weights; pass checkpoint= (a path or a zoo name)"
        )
    model = assemble(recipe.model)
    load_checkpoint(model, checkpoint)
    return model, recipe


def lr_frames(source: ClipSet) -> str | list[dict[str, Any]]:
    """What made the LR frames of ``source``: ``"stored"`` (read from the set), or the degradation chain that
    made them from GT (:func:`~vsr.data.degradations.describe_chain`); a set without GT: ``"given"``."""
    if not source.has_gt:
        return "given"
    if all(clip.lr is not None for clip in source.clips):
        return "stored"
    return describe_chain(source.degradation)


def _keep_val_degradation(recipe: Recipe | None, data: Any) -> None:
    """Refuse a test set folder (``--data``) that would silently drop the degradation of the recipe's
    ``data.val`` mapping (the LR frames it makes from GT, e.g. with noise)."""
    val = recipe.data.get("val") if recipe is not None else None
    if not isinstance(data, str | Path) or not isinstance(val, Mapping) or val.get("degradation") is None:
        return
    raise VSRError(
        f"the recipe's data.val makes its LR frames with degradation {val['degradation']!r}, which a test set "
        f"given as a folder ({data}) would drop. To test {data} with that degradation, give it as "
        f"--set data.val.root={data} (without --data); to test it on its own LR frames, add --set data.val=null"
    )


def prepare(
    model_or_recipe: nn.Module | Recipe | str | Path | dict | None,
    checkpoint: str | Path | None = None,
    data: str | Path | Mapping[str, Any] | ClipSet | None = None,
    device: str | torch.device | None = None,
    recipe: Recipe | None = None,
) -> tuple[nn.Module, Protocol, ClipSet, torch.device]:
    """What a test of a model sets up from the arguments :func:`evaluate` takes: the model with its weights
    (:func:`resolve_model`) on the device (by default CUDA when available), its recipe's protocol (the
    default one for a bare model), the test set (by default the recipe's ``data.val``, else the embedded
    validation split) and the device. ``recipe``: the recipe of a model given built (a module), whose
    protocol and validation set then apply, so that a model built and loaded once serves several tests."""
    model, found = resolve_model(model_or_recipe, checkpoint)
    recipe = found if recipe is None else recipe
    _keep_val_degradation(recipe, data)
    protocol = Protocol.from_recipe(recipe) if recipe is not None else Protocol()
    device = default_device(device)
    source = data if isinstance(data, ClipSet) else open_dataset(evaluation_spec(recipe, data))
    return model.to(device), protocol, source, device


@contextlib.contextmanager
def owned(out_dir: Path | None, run: Path | None = None) -> Iterator[None]:
    """Hold the lock of ``out_dir`` (if any), and of the ``run`` folder it lies in, for the block; remove the
    folder again if the block created it and failed before writing anything into it."""
    if out_dir is None:
        yield
        return
    created = not out_dir.exists()
    try:
        with contextlib.ExitStack() as stack:
            if run is not None and run.resolve() != out_dir.resolve():
                stack.enter_context(folder_lock(run, "run folder"))
            stack.enter_context(folder_lock(out_dir, "output folder"))
            yield
    except BaseException:
        if created:
            with contextlib.suppress(OSError):  # only if empty
                out_dir.rmdir()
        raise


def evaluate(
    model_or_recipe: nn.Module | Recipe | str | Path | dict | None,
    checkpoint: str | Path | None = None,
    data: str | Path | Mapping[str, Any] | ClipSet | None = None,
    *,
    out_dir: str | Path | None = None,
    save_frames: bool = False,
    y_channel: bool | None = None,
    crop_border: int | None = None,
    center_frame: bool | None = None,
    max_frames: int | None = None,
    chunk_frames: int | None = None,
    device: str | torch.device | None = None,
    progress: bool = True,
    recipe: Recipe | None = None,
) -> dict[str, Any]:
    """Evaluate a model (or a recipe with a ``checkpoint``: a path or a zoo name) on a test set.

    ``data``: a data set folder, a spec mapping for :func:`vsr.data.datasets.open_dataset`, or an opened
    ``ClipSet``; by default the recipe's ``data.val``, else the embedded validation split. The protocol
    options and the metrics default to the recipe's ``data.val_*`` keys (RGB, no crop, whole clips, PSNR and
    SSIM for a bare model; ``recipe`` gives a built model's recipe, see :func:`prepare`).

    Returns ``{<metric>: mean, ..., "bicubic": {<metric>: mean}, "clips": {name: {...}}, "protocol", "data",
    "checkpoint", "frames"}`` (by default the metrics are ``psnr`` and ``ssim``); with ``out_dir`` also writes
    ``metrics.json``, ``per_frame.csv`` (clip, frame index, frame name, each metric, ``bicubic_<metric>``)
    and, with ``save_frames``, ``frames/<clip>/``. A test set without ground truth (the real-video set's ``lq``
    split, a folder of LR clips) is scored by the protocol's no-reference metrics alone, and ``"skipped"``
    lists the others (:func:`measure`).
    """
    if save_frames and out_dir is None:
        raise VSRError("evaluate: save_frames needs out_dir, the folder to write the frames into")
    out_dir = Path(out_dir) if out_dir is not None else None
    run = check_output_folder(out_dir, checkpoint, OUTPUT_FILES, "vsr test") if out_dir is not None else None
    with owned(out_dir, run):
        model, defaults, source, device = prepare(model_or_recipe, checkpoint, data, device, recipe)
        overrides = {"y_channel": y_channel, "crop_border": crop_border, "center_frame": center_frame,
                     "max_frames": max_frames, "chunk_frames": chunk_frames}  # fmt: skip
        protocol = replace(defaults, **{k: v for k, v in overrides.items() if v is not None})
        frames_dir = out_dir / FRAMES_DIR if save_frames and out_dir else None
        if frames_dir is not None:
            _check_frame_folders(frames_dir, source.names)
        result = measure(
            model,
            protocol.test_clips(source),
            protocol,
            device,
            frames_dir=frames_dir,
            progress=progress,
        )
        metrics = result.summary() | {
            "protocol": {
                "y_channel": protocol.y_channel,
                "crop_border": protocol.crop_border,
                "center_frame": protocol.center_frame,
                "max_frames": protocol.max_frames,
                "chunk_frames": protocol.chunk_frames,
                "metrics": list(protocol.metrics),
            },
            "data": source.name,
            "lr_frames": lr_frames(source),
            "checkpoint": None if checkpoint is None else str(checkpoint),
            "frames": len(result.rows),
        }
        if out_dir is not None:
            write_json(metrics, out_dir / METRICS_FILE)
            _write_rows(result.rows, out_dir / PER_FRAME_FILE)
    log.info("%s: %s over %d clips", source.name, describe_scores(metrics, result.names), len(metrics["clips"]))
    return metrics


def describe_scores(scores: Mapping[str, Any], names: Sequence[str]) -> str:
    """``PSNR 27.123 dB, SSIM 0.8123 (bicubic PSNR 25.000 dB, SSIM 0.7000)``: each metric of ``scores`` (and
    of its ``bicubic`` mapping) with its label, unit and digits."""

    def text(values: Mapping[str, Any]) -> str:
        parts = []
        for name in names:
            kind = metric_class(name)
            parts.append(f"{kind.label} {values[name]:.{kind.digits}f} {kind.unit}".rstrip())
        return ", ".join(parts)

    baseline = scores.get("bicubic")
    return text(scores) + (f" (bicubic {text(baseline)})" if baseline else "")


__all__ = [
    "METRICS_FILE",
    "PER_FRAME_FILE",
    "Bicubic",
    "Measurement",
    "Protocol",
    "bicubic_upsample",
    "describe_scores",
    "evaluate",
    "measure",
    "prepare",
    "resolve_model",
]
