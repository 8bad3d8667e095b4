"""Temporal-information probe: how much a trained model draws from other frames, and from which ones.

BasicVSR's argument (§3.1, Figs. 3–4) is about information flow: bidirectional propagation lets every frame
use the whole clip, unidirectional propagation only the past, local propagation only its segment. Two
measurements make that flow visible for any model:

* **temporal gain** of frame ``i``: PSNR of frame ``i`` restored from the whole clip minus PSNR of frame
  ``i`` restored from the one-frame clip ``[x_i]``. A model that uses no other frame has gain 0. It is in
  dB of PSNR whatever metrics the recipe validates with (reports say so where they show it).
* **temporal receptive field**: ``G[i, j] = ||d y_i / d x_j||_F``, the size of the Jacobian of output frame
  ``i`` with respect to input frame ``j``, as a ``t × t`` map and, normalised per output frame, as a profile
  over the distance ``j - i`` (negative: the past, positive: the future). A unidirectional model has exactly
  zero sensitivity to future frames, a local one none across a segment boundary.

The Frobenius norm is estimated with random projections: for ``v ~ N(0, I)`` shaped like ``y_i``,
``E ||v^T J_ij||^2 = ||J_ij||_F^2``, and one backward pass of ``<v, y_i>`` gives ``v^T J_ij`` for every ``j``
at once; structural zeros stay exactly zero.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn

from vsr.atomic import csv_with, json_with, refuse_link, write_json, write_with
from vsr.data.datasets import TestClips
from vsr.data.layouts import ClipSet, open_dataset
from vsr.data.specs import evaluation_spec
from vsr.evaluate import OUTPUT_FILES, Protocol, check_output_folder, evaluate, owned, prepare, restore
from vsr.metrics import clip_average, psnr
from vsr.recipe import Recipe

GAIN_FILE = "temporal_gain.csv"  # per clip and frame: psnr (whole clip), psnr_alone, gain
FIELD_FILE = "receptive_field.csv"  # per output frame i and input frame j: sensitivity and its row share
SUMMARY_FILE = "temporal.json"  # mean gain, frames probed
TEMPORAL_DIR = "temporal"  # the probe's folder inside a scored set's folder (score_set)
#: The files a probe writes in its out_dir, and how one written earlier is known to be vsr's.
PROBE_FILES = {
    GAIN_FILE: csv_with("clip"),
    FIELD_FILE: csv_with("clip", "i", "j"),
    SUMMARY_FILE: json_with("temporal_gain"),
}


@torch.no_grad()
def temporal_gain(
    model: nn.Module,
    clips: Sequence[Mapping[str, Any]],
    device: str | torch.device = "cpu",
    *,
    crop_border: int = 0,
    y_channel: bool = False,
    chunk_frames: int | None = None,
) -> pd.DataFrame:
    """PSNR of each frame restored from its whole clip (or, with ``chunk_frames``, from its chunk of the clip, as
    the protocol restores it: :func:`vsr.evaluate.restore`) and from itself alone; one row per clip and frame.

    ``clips`` yields ``{"lq": (t, 3, h, w), "gt": (t, 3, H, W), "clip": name}`` (e.g. a ``TestClips``).
    Columns: ``clip``, ``frame`` (index in the clip), ``psnr``, ``psnr_alone``, ``gain`` (the difference).
    """
    device = torch.device(device)
    model.eval()
    rows = []
    for index in range(len(clips)):
        sample = clips[index]
        lq, gt = sample["lq"].to(device), sample["gt"]  # (t, 3, h, w), (t, 3, H, W)
        whole = restore(model, lq, device, chunk_frames).clamp(0, 1)
        alone = model(lq[:, None])[:, 0].float().cpu().clamp(0, 1)  # t one-frame clips in one batch
        scores = [psnr(out, gt, crop_border=crop_border, y_channel=y_channel) for out in (whole, alone)]
        for i, (with_clip, by_itself) in enumerate(zip(*scores, strict=True)):
            rows.append(
                {
                    "clip": sample["clip"],
                    "frame": i,
                    "psnr": float(with_clip),
                    "psnr_alone": float(by_itself),
                    "gain": float(with_clip - by_itself),
                }
            )
    return pd.DataFrame(rows)


def mean_gain(gain: pd.DataFrame) -> float:
    """The temporal gain in dB as PSNR is reported: frames averaged within each clip, then clips averaged."""
    return clip_average({clip: torch.tensor(g.gain.to_numpy()) for clip, g in gain.groupby("clip", sort=False)})


def temporal_receptive_field(
    model: nn.Module, lq: Tensor, device: str | torch.device = "cpu", *, probes: int = 2, seed: int = 0
) -> np.ndarray:
    """``G[i, j] = ||d y_i / d x_j||_F`` ``(t, t)`` for one clip ``lq`` ``(t, 3, h, w)``, estimated with
    ``probes`` random projections per output frame (see the module docstring)."""
    device = torch.device(device)
    model.eval()
    x = lq.to(device)[None].clone().requires_grad_(True)  # (1, t, 3, h, w)
    with torch.enable_grad():
        y = model(x)[0].float()  # (t, 3, H, W)
        t = y.shape[0]
        generator = torch.Generator().manual_seed(seed)
        squared = torch.zeros(t, t, dtype=torch.float64)
        for i in range(t):
            for probe in range(probes):
                v = torch.randn(y[i].shape, generator=generator).to(device)
                last = i == t - 1 and probe == probes - 1
                (grad,) = torch.autograd.grad((y[i] * v).sum(), x, retain_graph=not last)
                squared[i] += grad[0].double().pow(2).flatten(1).sum(1).cpu()
    return (squared / probes).sqrt().numpy()


def field_shares(field: np.ndarray) -> np.ndarray:
    """Each output frame's sensitivities as shares of their sum (rows sum to 1; all-zero rows stay zero)."""
    totals = field.sum(axis=1, keepdims=True)
    return np.divide(field, totals, out=np.zeros_like(field), where=totals > 0)


def receptive_field_profile(field: np.ndarray) -> pd.DataFrame:
    """Mean share of output frames' sensitivity at each distance ``j - i`` (``distance``, ``share``)."""
    shares = field_shares(field)
    t = len(field)
    distances = np.arange(-(t - 1), t)
    return pd.DataFrame(
        {"distance": distances, "share": [float(np.diagonal(shares, offset=int(d)).mean()) for d in distances]}
    )


@dataclass
class TemporalProbe:
    """The probe of one model on one data set: per-frame gains, and receptive fields of the first clips."""

    gain: pd.DataFrame  # see temporal_gain
    fields: dict[str, np.ndarray]  # clip -> (t, t)

    @property
    def mean_gain(self) -> float:
        return mean_gain(self.gain)

    def gain_by_frame(self) -> pd.DataFrame:
        """Mean ``psnr``, ``psnr_alone`` and ``gain`` per frame index over the clips."""
        return self.gain.groupby("frame")[["psnr", "psnr_alone", "gain"]].mean().reset_index()

    def field(self) -> np.ndarray:
        """The receptive field averaged over the probed clips (of the shortest one's length)."""
        if not self.fields:
            raise ValueError("no receptive field was measured (field_clips=0)")
        t = min(len(f) for f in self.fields.values())
        return np.mean([f[:t, :t] for f in self.fields.values()], axis=0)

    def field_table(self) -> pd.DataFrame:
        rows = []
        for clip, field in self.fields.items():
            shares = field_shares(field)
            for (i, j), value in np.ndenumerate(field):
                rows.append({"clip": clip, "i": i, "j": j, "sensitivity": float(value), "share": float(shares[i, j])})
        return pd.DataFrame(rows, columns=["clip", "i", "j", "sensitivity", "share"])

    def write(self, out_dir: str | Path) -> None:
        """``temporal_gain.csv``, ``receptive_field.csv`` and ``temporal.json`` in ``out_dir``."""
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        write_with(lambda path: self.gain.to_csv(path, index=False), out_dir / GAIN_FILE)
        write_with(lambda path: self.field_table().to_csv(path, index=False), out_dir / FIELD_FILE)
        summary = {"temporal_gain": self.mean_gain, "clips": int(self.gain["clip"].nunique())}
        write_json(summary | {"field_clips": list(self.fields)}, out_dir / SUMMARY_FILE)

    @classmethod
    def read(cls, out_dir: str | Path) -> TemporalProbe:
        out_dir = Path(out_dir)
        gain = pd.read_csv(out_dir / GAIN_FILE)
        table = pd.read_csv(out_dir / FIELD_FILE)
        fields = {}
        for clip, rows in table.groupby("clip", sort=False):
            t = int(rows.i.max()) + 1
            field = np.zeros((t, t))
            field[rows.i.to_numpy(), rows.j.to_numpy()] = rows.sensitivity.to_numpy()
            fields[str(clip)] = field
        return cls(gain, fields)


def probe(
    model: nn.Module,
    clips: Sequence[Mapping[str, Any]],
    device: str | torch.device = "cpu",
    *,
    field_clips: int = 2,
    field_frames: int | None = 10,
    probes: int = 2,
    crop_border: int = 0,
    y_channel: bool = False,
    chunk_frames: int | None = None,
) -> TemporalProbe:
    """Temporal gain on every clip, and the receptive field of the first ``field_frames`` frames (``None``:
    all) of the first ``field_clips`` clips. The field costs one backward pass per output frame and
    projection, so it is measured on a window; the gain is cheap (two forward passes per clip)."""
    gain = temporal_gain(model, clips, device, crop_border=crop_border, y_channel=y_channel, chunk_frames=chunk_frames)
    fields = {}
    for index in range(min(len(clips), field_clips)):
        sample = clips[index]
        window = sample["lq"][:field_frames]
        fields[sample["clip"]] = temporal_receptive_field(model, window, device, probes=probes)
    return TemporalProbe(gain, fields)


def run_probe(
    model_or_recipe: nn.Module | Recipe | str | Path | dict | None,
    checkpoint: str | Path | None = None,
    data: str | Path | Mapping[str, Any] | ClipSet | None = None,
    *,
    out_dir: str | Path | None = None,
    device: str | torch.device | None = None,
    field_clips: int = 1,
    field_frames: int | None = 10,
    probes: int = 2,
    recipe: Recipe | None = None,
) -> TemporalProbe:
    """Probe a model (or a recipe with a ``checkpoint``) on a test set, as :func:`vsr.evaluate.evaluate` takes
    them (default: the recipe's validation set; ``recipe``: a built model's recipe), scoring frames by PSNR
    under the recipe's protocol (border crop, Y channel, ``max_frames``, ``chunk_frames``), whatever its
    ``data.val_metrics``;
    with ``out_dir``, write the probe there (:meth:`TemporalProbe.write`), holding its lock (and its run
    folder's, if it lies in one) from before the model is loaded; an ``out_dir`` in a run folder other than the
    checkpoint's own is refused (:func:`vsr.evaluate.check_output_folder`)."""
    out_dir = Path(out_dir) if out_dir is not None else None
    run = check_output_folder(out_dir, checkpoint, PROBE_FILES, "vsr probe") if out_dir is not None else None
    with owned(out_dir, run):
        model, protocol, source, device = prepare(model_or_recipe, checkpoint, data, device, recipe)
        clips = TestClips(source, max_frames=protocol.max_frames, cache_frames=None)
        result = probe(
            model,
            clips,
            device,
            field_clips=field_clips,
            field_frames=field_frames,
            probes=probes,
            crop_border=protocol.crop_border,
            y_channel=protocol.y_channel,
            chunk_frames=protocol.chunk_frames,
        )
        if out_dir is not None:
            result.write(out_dir)
    return result


def check_score_folder(out_dir: Path) -> None:
    """Refuse now a folder :func:`score_set` could not write into (a link; a results file vsr did not write; a
    run folder whose lock this process does not hold): a run checks its test sets' folders before training."""
    for folder, files, command in (
        (out_dir, OUTPUT_FILES, "vsr test"),
        (out_dir / TEMPORAL_DIR, PROBE_FILES, "vsr probe"),
    ):
        refuse_link(folder, "a test set's folder")
        check_output_folder(folder, None, files, command)


def score_set(
    model: nn.Module,
    data: str | Path | Mapping[str, Any] | ClipSet,
    *,
    recipe: Recipe,
    out_dir: str | Path,
    device: str | torch.device | None = None,
) -> dict[str, Any]:
    """Score a built model (its weights loaded) on one test set under ``recipe``'s protocol: its metrics and the
    bicubic baseline's (:func:`vsr.evaluate.evaluate`, into ``out_dir``) and, where the set has ground truth,
    its temporal gain (no receptive field: it costs a backward pass per frame; into ``out_dir/temporal``).

    Returns the record that runs and studies keep: ``{"metrics", "bicubic", "temporal_gain"`` (None without
    ground truth)``, "data", "clips"}``."""
    source = data if isinstance(data, ClipSet) else open_dataset(evaluation_spec(recipe, data))
    metrics = evaluate(model, data=source, recipe=recipe, out_dir=out_dir, device=device, progress=False)
    gain = None
    if source.has_gt:
        temporal = run_probe(model, data=source, recipe=recipe, out_dir=Path(out_dir) / TEMPORAL_DIR,
                             device=device, field_clips=0)  # fmt: skip
        gain = temporal.mean_gain
    return {
        "metrics": {k: metrics[k] for k in Protocol.from_recipe(recipe).names if k in metrics},
        "bicubic": metrics.get("bicubic"),
        "temporal_gain": gain,
        "data": metrics.get("data"),
        "clips": len(metrics["clips"]),
    }
