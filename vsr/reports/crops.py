"""The crops of the visual comparison: each variant's checkpoint run on a textured crop of validation clips.

Each panel records the settings it was made with (LR crop size, frames in the window, scale), so that the
figure's title and caption say what was run rather than what was meant to be.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from vsr.checkpoints import load_checkpoint
from vsr.data.datasets import TestClips
from vsr.data.layouts import open_dataset
from vsr.data.specs import evaluation_spec
from vsr.device import default_device
from vsr.evaluate import bicubic_upsample
from vsr.model import assemble
from vsr.recipe import stored_recipe
from vsr.reports.variants import Info, series_name, variant_order
from vsr.studies import runs as run_folders

#: Crop side in LR pixels and frames per window: small enough to run full-size models on a CPU.
LR_CROP = 48
MAX_FRAMES = 10


def visual_runs(
    runs: pd.DataFrame, info: Info, records: Mapping[str, Mapping[str, Any]] | None = None
) -> list[tuple[str, Path, dict[str, Any]]]:
    """The first seed's run folder and recipe of every (study, variant) of ``runs``, in table order, named
    as in the figures. ``records``: the runs' ``run.json`` by run folder, where already read."""
    several = runs.study.nunique() > 1
    chosen = []
    for study, variant in variant_order(runs, info):
        mine = runs[(runs.study == study) & (runs.variant == variant)].sort_values("seed")
        run_dir = Path(mine.run_dir.iloc[0])
        record = (records or {}).get(str(run_dir)) or run_folders.read_run(run_dir)
        recipe = record["recipe"]
        chosen.append((series_name(study, variant, several, info), run_dir, recipe))
    return chosen


def _textured_crop(frame: np.ndarray, size: int) -> tuple[int, int]:
    """Top-left corner of the ``size``×``size`` window with the most gradient energy (grid of candidates)."""
    grey = frame.mean(axis=0)
    energy = np.abs(np.diff(grey, axis=0))[:, :-1] + np.abs(np.diff(grey, axis=1))[:-1, :]
    h, w = energy.shape
    step = max(size // 4, 1)
    best, corner = -1.0, (0, 0)
    for y in range(0, max(h - size, 0) + 1, step):
        for x in range(0, max(w - size, 0) + 1, step):
            score = float(energy[y : y + size, x : x + size].sum())
            if score > best:
                best, corner = score, (y, x)
    return corner


def _load_models(
    runs: Sequence[tuple[str, Path, Mapping[str, Any]]], device: torch.device
) -> list[tuple[str, nn.Module, int | None]]:
    """Each run's model, its final weights loaded, with the chunks its evaluation restores clips in (``None``:
    whole; ``data.val_chunk_frames``)."""
    models = []
    for name, run_dir, recipe in runs:
        resolved = stored_recipe(dict(recipe), f"run {run_dir}")
        model = assemble(resolved.model)
        load_checkpoint(model, run_folders.last_checkpoint(run_dir))
        models.append((name, model.to(device).eval(), resolved.data.get("val_chunk_frames")))
    return models


def _panel(sample: Mapping[str, Any], models, scale: int, lr_crop: int, max_frames: int, device: torch.device) -> dict:
    """Run every model on the window of ``sample`` around its middle frame and the most textured crop."""
    lq, gt = sample["lq"], sample["gt"]
    t = lq.shape[0]
    start = max(0, min(t // 2 - max_frames // 2, t - max_frames))
    lq, gt = lq[start : start + max_frames], gt[start : start + max_frames]
    middle = lq.shape[0] // 2
    size = min(lr_crop, lq.shape[-2], lq.shape[-1])
    y, x = _textured_crop(lq[middle].numpy(), size)
    lq_crop = lq[:, :, y : y + size, x : x + size]
    gt_crop = gt[middle, :, y * scale : (y + size) * scale, x * scale : (x + size) * scale]
    outputs = {}
    with torch.inference_mode():
        for name, model, chunk in models:
            lo, hi = 0, len(lq)
            if chunk:  # evaluated in chunks: the frames of the window in the shown frame's chunk of the clip
                first = (start + middle) // chunk * chunk
                lo, hi = max(first - start, 0), min(first + chunk - start, len(lq))
            outputs[name] = model(lq_crop[None, lo:hi].to(device)).float().cpu()[0, middle - lo].clamp(0, 1)
    return {
        "clip": sample["clip"], "frame": sample["frames"][start + middle],
        "gt": gt_crop, "bicubic": bicubic_upsample(lq_crop[middle], scale).clamp(0, 1), "outputs": outputs,
        "lr_crop": size, "window": int(lq.shape[0]), "scale": scale,
    }  # fmt: skip


def visual_crops(
    runs: Sequence[tuple[str, Path, Mapping[str, Any]]],
    *,
    clips: int = 2,
    lr_crop: int = LR_CROP,
    max_frames: int = MAX_FRAMES,
    device: str | None = None,
) -> list[dict[str, Any]]:
    """Run each ``(name, run_dir, recipe)`` checkpoint on a window of at most ``max_frames`` frames and an
    ``lr_crop``×``lr_crop`` LR crop (the most textured one, smaller if the frames are) of the first ``clips``
    validation clips; returns per clip ``{"clip", "frame", "gt", "bicubic", "outputs": {name: image}}``
    (CHW float tensors in [0, 1]) with the settings used: ``lr_crop``, ``window`` (frames run) and
    ``scale`` (the recipes' ``model.scale``). Running on a window and a crop keeps this cheap for full-size
    models; borders of the crop see less context than in the full evaluation. A run evaluated in chunks
    (``data.val_chunk_frames``) is run on the frames of the window in the shown frame's chunk, as its evaluation
    restores that frame."""
    if not runs:
        return []
    device = default_device(device)
    first_recipe = stored_recipe(dict(runs[0][2]), f"run {runs[0][1]}")
    scale = int(first_recipe.model["scale"])
    test = TestClips(open_dataset(evaluation_spec(first_recipe, None)))
    models = _load_models(runs, device)
    return [_panel(test[i], models, scale, lr_crop, max_frames, device) for i in range(min(clips, len(test)))]
