"""Tidy DataFrames of finished runs, read from the run folders through :mod:`vsr.studies.runs`.

* :func:`collect_runs`: one row per (study, variant, seed, metric) from ``run.json`` / ``metrics.json``;
* :func:`collect_per_frame`: one row per (study, variant, seed, clip, frame) from ``per_frame.csv``;
* :func:`collect_training`: one row per logged value from ``log.jsonl`` (loss, validation PSNR/SSIM);
* :func:`collect_profiles`: parameters, FLOPs and runtime per run from ``profile.json``;
* :func:`collect_temporal`: the temporal-information probe per run (:mod:`vsr.probe`): gain per clip and
  frame, and the receptive field's shares per output frame ``i`` and input frame ``j``;
* :func:`collect`: all of these at once, with the studies' definitions and the failed runs.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from vsr.errors import VSRError
from vsr.studies import runs as run_folders
from vsr.studies.schema import METRICS

RunsDirs = str | Path | Iterable[str | Path]


def runs_dirs(folders: RunsDirs) -> list[Path]:
    """The study folders (``OUT/<study>``) to report on; a missing one is an error."""
    dirs = [Path(folders)] if isinstance(folders, str | Path) else [Path(d) for d in folders]
    for d in dirs:
        if not d.is_dir():
            raise VSRError(f"runs folder {d} does not exist; pass the folder a study wrote (OUT/<study>)")
    return dirs


def _identity(run: dict[str, Any]) -> dict[str, Any]:
    return {"study": run["study"], "variant": run["variant"], "seed": int(run["seed"])}


def failed_runs(folders: RunsDirs) -> list[tuple[Path, str]]:
    """Run folders whose last attempt failed (and that have not finished since), with the error."""
    return run_folders.failed_runs(runs_dirs(folders))


def study_info(folders: RunsDirs) -> dict[str, dict[str, Any]]:
    """``study.json`` of every study under the folders (variant order, base, labels, expected orderings)."""
    return run_folders.study_records(runs_dirs(folders))


def collect_runs(folders: RunsDirs) -> pd.DataFrame:
    """One row per (study, variant, seed, metric): ``value`` from the run's ``metrics.json`` (PSNR/SSIM of the
    network and ``bicubic_psnr``/``bicubic_ssim`` of the bicubic baseline), with ``run_dir``."""
    rows = []
    for run_dir, run in run_folders.finished_runs(runs_dirs(folders)):
        metrics = run_folders.read_metrics(run_dir)
        values = {k: metrics[k] for k in METRICS if k in metrics}
        values |= {f"bicubic_{k}": v for k, v in (metrics.get("bicubic") or {}).items()}
        temporal = run_folders.read_temporal(run_dir)
        if temporal is not None:
            values["temporal_gain"] = temporal.mean_gain
        for metric, value in values.items():
            rows.append({**_identity(run), "metric": metric, "value": float(value), "run_dir": str(run_dir)})
    return pd.DataFrame(rows, columns=["study", "variant", "seed", "metric", "value", "run_dir"])


def collect_per_frame(folders: RunsDirs) -> pd.DataFrame:
    """One row per (study, variant, seed, clip, frame index) with ``psnr`` and ``ssim`` (``per_frame.csv``)."""
    frames = []
    for run_dir, run in run_folders.finished_runs(runs_dirs(folders)):
        path = run_folders.per_frame_file(run_dir)
        if path is not None:
            df = pd.read_csv(path, dtype={"clip": str})[["clip", "frame", "psnr", "ssim"]]
            frames.append(df.assign(**_identity(run)))
    columns = ["study", "variant", "seed", "clip", "frame", "psnr", "ssim"]
    return pd.concat(frames, ignore_index=True)[columns] if frames else pd.DataFrame(columns=columns)


def collect_training(folders: RunsDirs) -> pd.DataFrame:
    """One row per logged value of ``log.jsonl``: ``event`` (``train`` or ``val``), ``iteration``, ``key``
    (``loss``, ``lr``, ``psnr``, ``ssim``, ...), ``value``."""
    rows = []
    for run_dir, run in run_folders.finished_runs(runs_dirs(folders)):
        for entry in run_folders.read_log(run_dir):
            event, iteration = entry.get("event", "train"), entry.get("iteration")
            for key, value in entry.items():
                if key in ("event", "iteration") or isinstance(value, bool) or not isinstance(value, int | float):
                    continue
                rows.append({**_identity(run), "event": event, "iteration": iteration, "key": key,
                             "value": float(value)})  # fmt: skip
    return pd.DataFrame(rows, columns=["study", "variant", "seed", "event", "iteration", "key", "value"])


def collect_profiles(folders: RunsDirs) -> pd.DataFrame:
    """One row per profiled run (``profile.json``): total parameters, FLOPs and runtime per frame, device."""
    rows = []
    for run_dir, run in run_folders.finished_runs(runs_dirs(folders)):
        prof = run_folders.read_profile(run_dir)
        if prof is None:
            continue
        rows.append({
            **_identity(run),
            "params": int(prof["params"]["total"]), "flops_per_frame": float(prof["flops_per_frame"]),
            "runtime_ms": prof.get("runtime_ms_per_frame"), "device": prof.get("device"),
            "frames": prof.get("frames"), "size": "×".join(map(str, prof.get("size", []))),
        })  # fmt: skip
    columns = ["study", "variant", "seed", "params", "flops_per_frame", "runtime_ms", "device", "frames", "size"]
    return pd.DataFrame(rows, columns=columns)


GAIN_COLUMNS = ["study", "variant", "seed", "clip", "frame", "psnr", "psnr_alone", "gain"]
FIELD_COLUMNS = ["study", "variant", "seed", "clip", "i", "j", "share"]


def collect_temporal(folders: RunsDirs) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The probed runs' temporal gain (one row per study, variant, seed, clip, frame: ``psnr`` from the whole
    clip, ``psnr_alone`` from the frame alone, ``gain``) and receptive fields (one row per output frame ``i``
    and input frame ``j`` of each probed clip: ``share`` of frame i's sensitivity that comes from frame j)."""
    gains, fields = [], []
    for run_dir, run in run_folders.finished_runs(runs_dirs(folders)):
        temporal = run_folders.read_temporal(run_dir)
        if temporal is None:
            continue
        gains.append(temporal.gain.assign(**_identity(run)))
        fields.append(temporal.field_table().assign(**_identity(run)))
    gain = pd.concat(gains, ignore_index=True)[GAIN_COLUMNS] if gains else pd.DataFrame(columns=GAIN_COLUMNS)
    field = pd.concat(fields, ignore_index=True)[FIELD_COLUMNS] if fields else pd.DataFrame(columns=FIELD_COLUMNS)
    return gain, field


def loss_name(runs: pd.DataFrame) -> str:
    """The training loss of the runs (from the first run folder that records its recipe), or ``""``."""
    for run_dir in runs.run_dir.unique():
        spec = run_folders.read_spec(run_dir)
        if spec is not None:
            return str(spec["recipe"]["train"].get("loss", ""))
    return ""


@dataclass(frozen=True)
class Collected:
    """Everything a report is made of, read from the run folders."""

    dirs: list[Path]
    runs: pd.DataFrame
    per_frame: pd.DataFrame
    training: pd.DataFrame
    profiles: pd.DataFrame
    temporal_gain: pd.DataFrame
    temporal_field: pd.DataFrame
    info: dict[str, dict[str, Any]]
    failed: list[tuple[Path, str]]


def collect(folders: RunsDirs) -> Collected:
    """Read every finished run under the folders; no finished run at all is an error."""
    dirs = runs_dirs(folders)
    runs = collect_runs(dirs)
    if runs.empty:
        where = ", ".join(map(str, dirs))
        raise VSRError(f"no finished runs ({run_folders.RUN_FILE}) under {where}; run the study first")
    gain, field = collect_temporal(dirs)
    return Collected(dirs, runs, collect_per_frame(dirs), collect_training(dirs), collect_profiles(dirs),
                     gain, field, study_info(dirs), failed_runs(dirs))  # fmt: skip
