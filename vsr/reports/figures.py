"""The report's figures, one function each, drawn from the tidy DataFrames; each returns the saved file
with its heading and a caption written from the settings the figure was drawn with. A figure of a metric
takes its label and unit from the registry (:class:`vsr.metrics.Metric`) and says which way is better.

matplotlib's object API with the Agg canvas: no display, no global pyplot state.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from vsr.atomic import write_with
from vsr.metrics import metric_class, psnr
from vsr.reports.tables import profiled_clips, profiled_devices
from vsr.reports.variants import Info, resolve_base, series_name, variant_order
from vsr.studies.runs import PROFILE_FILE


@dataclass(frozen=True)
class SavedFigure:
    """A figure written to ``path`` (``<stem>.png``), with the heading and caption the index gives it."""

    path: Path
    heading: str
    caption: str


def _figure(width: float = 7.0, height: float = 4.5, rows: int = 1, cols: int = 1, **kwargs):
    fig = Figure(figsize=(width, height), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False, **kwargs)
    return fig, axes


def _save(fig: Figure, path: Path) -> Path:
    """Save a figure as PNG atomically (temporary file in the same folder, then rename)."""
    return write_with(lambda tmp: fig.savefig(tmp, format="png", dpi=150), path, suffix=".png")


def _axis_label(metric: str, what: str = "", delta: bool = False) -> str:
    """``PSNR (dB)``, ``ΔMAE to the base, lower is better``: a metric's axis label from the registry."""
    kind = metric_class(metric)
    unit = f" ({kind.unit})" if kind.unit else ""
    direction = "" if kind.higher_is_better else ", lower is better"
    return f"{'Δ' if delta else ''}{kind.label}{what}{unit}{direction}"


def figure_per_frame_metric(
    per_frame: pd.DataFrame, info: Info, path: Path, base: str | None = None, metric: str = "psnr"
) -> SavedFigure:
    """``metric`` at each frame index along the sequence (the paper's propagation figure, Figs. 3–4, in PSNR):
    per variant the mean over clips and seeds, with a ±1 std band over seeds; right, the difference to the
    base."""
    label = metric_class(metric).label
    fig, axes = _figure(12, 4.5, 1, 2)
    ax, ax_delta = axes[0]
    several = per_frame.study.nunique() > 1
    # Per seed: mean over clips at each frame index; then mean and std over seeds.
    per_seed = per_frame.groupby(["study", "variant", "seed", "frame"])[metric].mean().reset_index()
    curves = per_seed.groupby(["study", "variant", "frame"])[metric].agg(["mean", "std", "count"]).reset_index()
    keys = variant_order(per_frame, info)
    for study, variant in keys:
        c = curves[(curves.study == study) & (curves.variant == variant)]
        name = series_name(study, variant, several, info)
        (line,) = ax.plot(c.frame, c["mean"], marker=".", label=name)
        if (c["count"] > 1).any():
            ax.fill_between(c.frame, c["mean"] - c["std"].fillna(0), c["mean"] + c["std"].fillna(0),
                            color=line.get_color(), alpha=0.2, linewidth=0)  # fmt: skip
        base_key = resolve_base(base, study, info, keys)
        b = curves[(curves.study == base_key[0]) & (curves.variant == base_key[1])].set_index("frame")["mean"]
        delta = c.set_index("frame")["mean"] - b
        ax_delta.plot(delta.index, delta.to_numpy(), marker=".", color=line.get_color(), label=name)
    ax.set(xlabel="frame index in the clip", ylabel=_axis_label(metric),
           title=f"{label} along the sequence (mean over clips)")  # fmt: skip
    ax_delta.axhline(0, color="0.5", linewidth=0.8)
    for a in (ax, ax_delta):
        a.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax_delta.set(
        xlabel="frame index in the clip",
        ylabel=_axis_label(metric, " to the base", delta=True),
        title="Difference to the base variant",
    )
    ax.legend(title="variant (band: ±1 std over seeds)", fontsize="small")
    ax_delta.legend(title="variant", fontsize="small")
    for a in (ax, ax_delta):
        a.grid(alpha=0.3)
    caption = (
        f"{label} at each frame index, mean over validation clips and seeds (band: ±1 std over seeds); right: "
        "difference to the base variant (paper Figs. 3–4)."
    )
    return SavedFigure(_save(fig, path), f"{label} along the sequence", caption)


def _scatter(
    table: pd.DataFrame, x: str, xlabel: str, title: str, path: Path, scale: float = 1.0, metric: str = "psnr"
) -> Path:
    fig, axes = _figure(6.5, 4.5)
    ax = axes[0][0]
    several = table.study.nunique() > 1
    markers = "osD^vP*Xhp"
    xs = (table[x] * scale).to_numpy(dtype=float)
    span = np.nanmax(xs) - np.nanmin(xs) if np.isfinite(xs).any() else 0.0
    span = span or (abs(np.nanmax(xs)) if np.isfinite(xs).any() else 1.0) or 1.0
    for i, r in enumerate(table.itertuples()):
        xv = xs[i]
        mean, std = getattr(r, f"{metric}_mean"), getattr(r, f"{metric}_std")
        if math.isnan(xv) or math.isnan(mean):
            continue
        # Dodge variants of equal x (e.g. the same architecture) sideways by 1.5% of the axis, so all show.
        same = [j for j in range(len(xs)) if xs[j] == xv]
        xv += (same.index(i) - (len(same) - 1) / 2) * 0.015 * span
        name = f"{r.study}/{r.label}" if several else r.label
        err = 0.0 if math.isnan(std) else std
        # Distinct markers, hollow: variants of equal size (e.g. local vs bidirectional) stay visible.
        ax.errorbar([xv], [mean], yerr=[err], fmt=markers[i % len(markers)], capsize=3, label=name,
                    markersize=8, markerfacecolor="none", markeredgewidth=1.5)  # fmt: skip
    ax.set(xlabel=xlabel, ylabel=f"{_axis_label(metric)}, mean ± std over seeds", title=title)
    ax.grid(alpha=0.3)
    if ax.has_data():
        ax.legend(fontsize="small", title="variant")
    else:
        ax.text(0.5, 0.5, f"no {PROFILE_FILE} in the runs", ha="center", va="center", transform=ax.transAxes)
    return _save(fig, path)


def figure_metric_vs_params(table: pd.DataFrame, path: Path, metric: str = "psnr") -> SavedFigure:
    """``metric`` against the number of parameters, one point per variant (error bar: std over seeds)."""
    label = metric_class(metric).label
    return SavedFigure(
        _scatter(table, "params", "parameters (millions)", f"{label} vs model size", path, 1e-6, metric),
        f"{label} vs parameters",
        "Error bars: ±1 std over seeds.",
    )


def figure_metric_vs_runtime(table: pd.DataFrame, path: Path, metric: str = "psnr") -> SavedFigure:
    """``metric`` against runtime per frame on the profiled LR clip (the paper's protocol: 10 frames of
    180×320), on the profiled device."""
    label = metric_class(metric).label
    devices = ", ".join(profiled_devices(table)) or "unknown device"
    clips = ", ".join(profiled_clips(table))
    xlabel = f"runtime (ms per frame; LR clip {clips or '?'}; {devices})"
    return SavedFigure(
        _scatter(table, "runtime_ms", xlabel, f"{label} vs runtime", path, metric=metric),
        f"{label} vs runtime",
        f"Runtime per frame on a {clips or '(not profiled)'} LR clip (frames×h×w; median of repeats), on the "
        "device named.",
    )


def figure_training_curves(
    training: pd.DataFrame, info: Info, path: Path, loss_name: str = "", metric: str = "psnr"
) -> SavedFigure:
    """Training loss (log scale) and the validation ``metric`` against iteration, mean over seeds per variant."""
    label = metric_class(metric).label
    fig, axes = _figure(12, 4.5, 1, 2)
    ax_loss, ax_val = axes[0]
    several = training.study.nunique() > 1
    keys = variant_order(training, info)
    for study, variant in keys:
        mine = training[(training.study == study) & (training.variant == variant)]
        name = series_name(study, variant, several, info)
        loss = mine[(mine.event == "train") & (mine.key == "loss")].groupby("iteration").value.mean()
        (line,) = ax_loss.plot(loss.index, loss.to_numpy(), label=name)
        val = mine[(mine.event == "val") & (mine.key == metric)].groupby("iteration").value.mean()
        ax_val.plot(val.index, val.to_numpy(), marker="o", color=line.get_color(), label=name)
    ax_loss.set_yscale("log")
    ax_loss.set(xlabel="iteration", ylabel=f"training loss{f' ({loss_name})' if loss_name else ''}, log scale",
                title="Training loss (mean over seeds)")  # fmt: skip
    ax_val.set(xlabel="iteration", ylabel=f"validation {_axis_label(metric)}",
               title=f"Validation {label} (mean over seeds)")  # fmt: skip
    for a in (ax_loss, ax_val):
        a.grid(alpha=0.3)
        a.xaxis.set_major_locator(MaxNLocator(integer=True))
        if a.has_data():
            a.legend(fontsize="small", title="variant")
    caption = f"Training loss per log step and validation {label}, mean over seeds."
    return SavedFigure(_save(fig, path), "Training curves", caption)


def _span(values: Sequence[int]) -> str:
    """``10`` when every clip used 10, ``6–10`` when they differed."""
    low, high = min(values), max(values)
    return str(low) if low == high else f"{low}–{high}"


def figure_visual_comparison(panels: Sequence[Mapping[str, Any]], path: Path) -> SavedFigure:
    """A grid of crops from :func:`vsr.reports.crops.visual_crops`: one row per clip; bicubic, each variant,
    GT (PSNR of the crop in each title). The title and caption give the crop size, window and scale used."""
    names = list(panels[0]["outputs"]) if panels else []
    cols = len(names) + 2
    fig, axes = _figure(2.3 * cols, 2.6 * max(len(panels), 1) + 0.4, max(len(panels), 1), cols)
    for row, panel in enumerate(panels):
        images = [("bicubic", panel["bicubic"]), *panel["outputs"].items(), ("GT", panel["gt"])]
        for col, (name, image) in enumerate(images):
            ax = axes[row][col]
            ax.imshow(image.permute(1, 2, 0).numpy(), interpolation="nearest")
            title = name if name == "GT" else f"{name}\n{_crop_psnr(image, panel['gt']):.2f} dB"
            ax.set_title(title, fontsize="small")
            ax.set_xticks([])
            ax.set_yticks([])
        axes[row][0].set_ylabel(f"{panel['clip']} / {panel['frame']}", fontsize="small")
    scale = _span([p["scale"] for p in panels]) if panels else "?"
    fig.suptitle(f"Visual comparison: crops of a validation frame (×{scale}; PSNR of the crop)")
    crop, window = _span([p["lr_crop"] for p in panels] or [0]), _span([p["window"] for p in panels] or [0])
    caption = (
        f"Each variant's checkpoint (first seed) run on a window of {window} frames and a {crop}×{crop} LR crop "
        f"of validation clips (×{scale}); the middle frame is shown."
    )
    return SavedFigure(_save(fig, path), "Visual comparison", caption)


def _crop_psnr(image, gt) -> float:
    return float(psnr(image[None], gt[None])[0])


def figure_temporal_gain(gain: pd.DataFrame, info: Info, path: Path) -> SavedFigure:
    """Temporal gain at each frame index (:mod:`vsr.probe`): PSNR from the whole clip minus PSNR from the frame
    alone, per variant the mean over clips and seeds with a ±1 std band over seeds."""
    fig, axes = _figure(7, 4.5)
    ax = axes[0][0]
    several = gain.study.nunique() > 1
    per_seed = gain.groupby(["study", "variant", "seed", "frame"]).gain.mean().reset_index()
    curves = per_seed.groupby(["study", "variant", "frame"]).gain.agg(["mean", "std"]).reset_index()
    for study, variant in variant_order(gain, info):
        c = curves[(curves.study == study) & (curves.variant == variant)]
        (line,) = ax.plot(c.frame, c["mean"], marker=".", label=series_name(study, variant, several, info))
        std = c["std"].fillna(0)
        ax.fill_between(c.frame, c["mean"] - std, c["mean"] + std, color=line.get_color(), alpha=0.2, linewidth=0)
    ax.axhline(0, color="0.5", linewidth=0.8)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set(xlabel="frame index in the clip", ylabel="temporal gain (dB)",
           title="What other frames add: PSNR(whole clip) − PSNR(frame alone)")  # fmt: skip
    ax.grid(alpha=0.3)
    ax.legend(title="variant (band: ±1 std over seeds)", fontsize="small")
    clips = gain["clip"].nunique()
    caption = (
        "Temporal gain of each frame: its PSNR restored from the whole clip minus restored from the one-frame clip "
        f"of itself alone (`vsr probe`), mean over {clips} validation clip{'' if clips == 1 else 's'} and seeds "
        "(band: ±1 std over seeds). A model that uses no other frame has gain 0."
    )
    return SavedFigure(_save(fig, path), "Temporal gain", caption)


def figure_receptive_field(field: pd.DataFrame, info: Info, path: Path) -> SavedFigure:
    """The temporal receptive field (:mod:`vsr.probe`): per variant a ``t × t`` map of the share of output
    frame i's sensitivity that comes from input frame j, and the mean share against the distance ``j − i``."""
    keys = variant_order(field, info)
    several = field.study.nunique() > 1
    fig, axes = _figure(3.2 * len(keys) + 5.5, 3.8, 1, len(keys) + 1)
    # Mean over clips and seeds, on the frames every probed clip has.
    t = int(field.groupby(["study", "variant", "seed", "clip"]).i.max().min()) + 1
    field = field[(field.i < t) & (field.j < t)]
    floor = 1e-4  # shares below 0.01% (and exact zeros: no path from frame j to output i) at the colour floor
    image = None
    profile_ax = axes[0][-1]
    for col, (study, variant) in enumerate(keys):
        mine = field[(field.study == study) & (field.variant == variant)]
        share = mine.groupby(["i", "j"]).share.mean().unstack().to_numpy()
        ax = axes[0][col]
        image = ax.imshow(np.log10(np.maximum(share, floor)), vmin=np.log10(floor), vmax=0, cmap="magma",
                          origin="upper", interpolation="nearest")  # fmt: skip
        name = series_name(study, variant, several, info)
        ax.set(title=name, xlabel="input frame j", ylabel="output frame i" if col == 0 else "")
        distance = np.arange(-(t - 1), t)
        profile = [np.diagonal(share, offset=int(d)).mean() for d in distance]
        profile_ax.plot(distance, np.maximum(profile, floor), marker=".", label=name)
    if image is not None:
        fig.colorbar(image, ax=axes[0][: len(keys)].tolist(), label="log10 share of output frame i's sensitivity")
    profile_ax.set_yscale("log")
    profile_ax.axvline(0, color="0.5", linewidth=0.8)
    profile_ax.set(xlabel="distance j − i (negative: past frames)", ylabel="mean share",
                   title="Sensitivity by temporal distance")  # fmt: skip
    profile_ax.grid(alpha=0.3)
    profile_ax.legend(fontsize="small", title="variant")
    clips = field.groupby(["study", "variant", "seed"])["clip"].nunique().max() if len(field) else 0
    caption = (
        "Temporal receptive field (`vsr probe`): ‖∂y_i/∂x_j‖ (Frobenius norm of the Jacobian of output frame i "
        "with respect to input frame j, estimated with random projections) as a share of output frame i's total, "
        f"on the first {t} frames of {clips} validation clip{'' if clips == 1 else 's'} per run, mean over seeds; "
        f"log colour scale, shares below {floor:g} (and exact zeros) at the floor. Right: the mean share at each "
        "distance j − i."
    )
    return SavedFigure(_save(fig, path), "Temporal receptive field", caption)
