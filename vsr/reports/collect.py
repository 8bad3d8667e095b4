"""Tidy DataFrames of finished runs, read from the run folders through :mod:`vsr.studies.runs`.

* :func:`collect_runs`: one row per (study, variant, seed, metric) from ``run.json`` / ``metrics.json``, and the
  real-content rows (each of the study's ``real_metrics`` and the temporal gain on the real-video set, named
  ``<metric>_real``);
* :func:`collect_per_frame`: one row per (study, variant, seed, clip, frame) from ``per_frame.csv``, a column
  per metric;
* :func:`collect_training`: one row per logged value from ``log.jsonl`` (loss, validation metrics);
* :func:`collect_profiles`: parameters, FLOPs and runtime per run from ``profile.json``;
* :func:`collect_temporal`: the temporal-information probe per run (:mod:`vsr.probe`): gain per clip and
  frame, and the receptive field's shares per output frame ``i`` and input frame ``j``;
* :func:`collect`: all of these at once, with the studies' definitions and the failed runs, reading each
  run's files once (:class:`RunFiles`).

The metrics are whatever the runs were evaluated with (``run.json`` names them); the real-video set's are the
study's ``real_metrics`` (its ``study.json``; a record written before studies named them: the same metrics). A
study's ``imports`` (the modules registering its metrics) are imported with its ``study.json``, so that their
labels, units and directions are known.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import pandas as pd

from vsr.errors import VSRError
from vsr.evaluate import BASELINE_PREFIX
from vsr.probe import TemporalProbe
from vsr.registry import require_plugins
from vsr.studies import runs as run_folders

RunsDirs = str | Path | Iterable[str | Path]
#: What a real-content row adds to the name of its synthetic counterpart: ``psnr_real``, ``temporal_gain_real``.
REAL_SUFFIX = "_real"


def runs_dirs(folders: RunsDirs) -> list[Path]:
    """The study folders (``OUT/<study>``) to report on; a missing one is an error."""
    dirs = [Path(folders)] if isinstance(folders, str | Path) else [Path(d) for d in folders]
    for d in dirs:
        if not d.is_dir():
            raise VSRError(f"runs folder {d} does not exist; pass the folder a study wrote (OUT/<study>)")
    return dirs


class RunFiles:
    """One finished run: its ``run.json`` (``record``) and its other files, each read at most once, when
    first asked for; ``study``: its study's ``study.json``, where there is one."""

    def __init__(self, run_dir: Path, record: dict[str, Any], study: dict[str, Any] | None = None):
        self.run_dir, self.record, self.study = run_dir, record, study or {}

    @property
    def identity(self) -> dict[str, Any]:
        return {"study": self.record["study"], "variant": self.record["variant"], "seed": int(self.record["seed"])}

    @property
    def recorded_metrics(self) -> list[str]:
        """The metrics ``run.json`` says the run was evaluated with (none if it does not say)."""
        return list(self.record.get("metrics", []))

    @cached_property
    def metrics(self) -> dict[str, Any]:
        return run_folders.read_metrics(self.run_dir, self.recorded_metrics)

    @cached_property
    def per_frame(self) -> pd.DataFrame | None:
        return run_folders.read_per_frame(self.run_dir, self.metric_names)

    @cached_property
    def log(self) -> list[dict[str, Any]]:
        return run_folders.read_log(self.run_dir)

    @cached_property
    def profile(self) -> dict[str, Any] | None:
        return run_folders.read_profile(self.run_dir)

    @cached_property
    def temporal(self) -> TemporalProbe | None:
        return run_folders.read_temporal(self.run_dir)

    @cached_property
    def real_metrics(self) -> dict[str, Any] | None:
        return run_folders.read_real_metrics(self.run_dir, self.real_metric_names)

    @cached_property
    def real_temporal(self) -> TemporalProbe | None:
        return run_folders.read_temporal(run_folders.real_folder(self.run_dir))

    @property
    def metric_names(self) -> list[str]:
        """The metrics the run was evaluated with (``run.json``'s ``metrics``, else the numbers at the top of
        ``metrics.json``), in order."""
        if "metrics" in self.record:
            return self.recorded_metrics
        return [k for k, v in self.metrics.items() if isinstance(v, int | float) and not isinstance(v, bool)
                and k != "frames"]  # fmt: skip

    @property
    def real_metric_names(self) -> list[str]:
        """The metrics the real-video set was scored with: those ``run.json`` records it scored there (the study's
        ``real_metrics`` when it ran, which the study file may have changed since: a rerun keeps finished runs), else
        the study's ``real_metrics`` (e.g. NIQE alone on clips without ground truth), else, for a study record
        written before studies named them, the run's metrics."""
        scored = self.record.get("real")
        if isinstance(scored, dict) and isinstance(scored.get("metrics"), dict):
            return list(scored["metrics"])
        if "real_metrics" in self.study:
            return list(self.study["real_metrics"])
        return self.metric_names

    @property
    def evaluates(self) -> str | None:
        """The variant whose weights (of the same seed) this test-time run evaluates; None for a trained run."""
        variant = self.study.get("variants", {}).get(self.record["variant"], {})
        return self.record.get("evaluates") or variant.get("evaluates")


def read_runs(folders: RunsDirs, studies: dict[str, dict[str, Any]] | None = None) -> list[RunFiles]:
    """Every finished run under the folders, once each, sorted by study, variant and seed, each with its
    study's record (``studies``: those already read, by name)."""
    dirs = runs_dirs(folders)
    studies = run_folders.study_records(dirs) if studies is None else studies
    found = run_folders.finished_runs(dirs)
    return [RunFiles(run_dir, record, studies.get(record["study"])) for run_dir, record in found]


def _runs(source: RunsDirs | Sequence[RunFiles]) -> list[RunFiles]:
    if isinstance(source, Sequence) and not isinstance(source, str) and all(isinstance(r, RunFiles) for r in source):
        return list(source)
    return read_runs(source)


def failed_runs(folders: RunsDirs) -> list[tuple[Path, str]]:
    """Run folders whose last attempt failed (and that have not finished since), with the error."""
    return run_folders.failed_runs(runs_dirs(folders))


def study_info(folders: RunsDirs) -> dict[str, dict[str, Any]]:
    """``study.json`` of every study under the folders (variant order, base, labels, metrics, expected
    orderings); the modules a study ``imports`` (its plugins, e.g. its metrics) must be imported already
    (``vsr report --import``): vsr imports no module because a file it reads back names it."""
    info = run_folders.study_records(runs_dirs(folders))
    for name, data in info.items():
        require_plugins(data.get("imports") or [], f"the record of study {name!r}")
    return info


def collect_runs(folders: RunsDirs | Sequence[RunFiles]) -> pd.DataFrame:
    """One row per (study, variant, seed, metric): ``value`` from the run's ``metrics.json`` (each metric the
    run was evaluated with, and ``bicubic_<metric>`` of the bicubic baseline) and its probe's
    ``temporal_gain``, then the same from its ``real/`` folder with :data:`REAL_SUFFIX` for a run evaluated on
    the real-video set: each of the study's real metrics (``niqe_real``, ``bicubic_niqe_real``) and, where the
    set has ground truth, ``temporal_gain_real``; with ``run_dir``."""
    rows = []
    for run in _runs(folders):
        values = _values(run.metrics, run.temporal, run.metric_names)
        if run.real_metrics is not None:
            real = _values(run.real_metrics, run.real_temporal, run.real_metric_names)
            values |= {f"{name}{REAL_SUFFIX}": value for name, value in real.items()}
        for metric, value in values.items():
            if value is None:  # a no-reference score of no frame (metrics.json writes NaN as null)
                continue
            rows.append({**run.identity, "metric": metric, "value": float(value), "run_dir": str(run.run_dir)})
    return pd.DataFrame(rows, columns=RUNS_COLUMNS)


#: The columns of :func:`collect_runs` (and of a report's ``runs.csv``).
RUNS_COLUMNS = ["study", "variant", "seed", "metric", "value", "run_dir"]


def _values(metrics: dict[str, Any], temporal: TemporalProbe | None, names: Sequence[str]) -> dict[str, float]:
    """``{metric: mean, bicubic_<metric>: mean, temporal_gain: mean}`` of one evaluation and its probe."""
    values = {k: metrics[k] for k in names if k in metrics}
    values |= {f"{BASELINE_PREFIX}{k}": v for k, v in (metrics.get("bicubic") or {}).items()}
    if temporal is not None:
        values["temporal_gain"] = temporal.mean_gain
    return values


def real_set(runs: Sequence[RunFiles]) -> dict[str, Any] | None:
    """The real-video set the runs were evaluated on, as its first run's ``real/metrics.json`` names it:
    ``{"data": name, "clips": count, "frames": frames scored, "ground_truth": whether it has ground truth}``
    (only a set with ground truth is probed for its temporal gain); None if no run was."""
    for run in runs:
        metrics = run.real_metrics
        if metrics is not None:
            clips = metrics.get("clips", {})
            return {"data": metrics.get("data"), "clips": len(clips), "frames": metrics.get("frames"),
                    "ground_truth": run.real_temporal is not None}  # fmt: skip
    return None


PER_FRAME_KEYS = ["study", "variant", "seed", "clip", "frame"]


def collect_per_frame(folders: RunsDirs | Sequence[RunFiles]) -> pd.DataFrame:
    """One row per (study, variant, seed, clip, frame index) with a column per metric (``per_frame.csv``;
    the bicubic baseline's columns left out)."""
    frames, metrics = [], []
    for run in _runs(folders):
        df = run.per_frame
        if df is None:
            continue
        mine = [m for m in run.metric_names if m in df.columns]
        metrics += [m for m in mine if m not in metrics]
        frames.append(df[["clip", "frame", *mine]].assign(**run.identity))
    columns = PER_FRAME_KEYS + metrics
    return pd.concat(frames, ignore_index=True)[columns] if frames else pd.DataFrame(columns=columns)


def collect_training(folders: RunsDirs | Sequence[RunFiles]) -> pd.DataFrame:
    """One row per logged value of ``log.jsonl``: ``event`` (``train`` or ``val``), ``iteration``, ``key``
    (``loss``, ``lr``, each validation metric, ...), ``value``. A test-time run is left out: what it logged is
    the training of the weights it evaluates, not its own."""
    rows = []
    for run in _runs(folders):
        if run.evaluates:
            continue
        for entry in run.log:
            event, iteration = entry.get("event", "train"), entry.get("iteration")
            for key, value in entry.items():
                if key in ("event", "iteration") or isinstance(value, bool) or not isinstance(value, int | float):
                    continue
                rows.append({**run.identity, "event": event, "iteration": iteration, "key": key,
                             "value": float(value)})  # fmt: skip
    return pd.DataFrame(rows, columns=["study", "variant", "seed", "event", "iteration", "key", "value"])


def collect_profiles(folders: RunsDirs | Sequence[RunFiles]) -> pd.DataFrame:
    """One row per profiled run (``profile.json``): total parameters, FLOPs and runtime per frame, device."""
    rows = []
    for run in _runs(folders):
        prof = run.profile
        if prof is None:
            continue
        rows.append({
            **run.identity,
            "params": int(prof["params"]["total"]), "flops_per_frame": float(prof["flops_per_frame"]),
            "runtime_ms": prof.get("runtime_ms_per_frame"), "device": prof.get("device"),
            "frames": prof.get("frames"), "size": "×".join(map(str, prof.get("size", []))),
        })  # fmt: skip
    columns = ["study", "variant", "seed", "params", "flops_per_frame", "runtime_ms", "device", "frames", "size"]
    return pd.DataFrame(rows, columns=columns)


GAIN_COLUMNS = ["study", "variant", "seed", "clip", "frame", "psnr", "psnr_alone", "gain"]
FIELD_COLUMNS = ["study", "variant", "seed", "clip", "i", "j", "share"]


def collect_temporal(folders: RunsDirs | Sequence[RunFiles]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The probed runs' temporal gain (one row per study, variant, seed, clip, frame: ``psnr`` from the whole
    clip, ``psnr_alone`` from the frame alone, ``gain``) and receptive fields (one row per output frame ``i``
    and input frame ``j`` of each probed clip: ``share`` of frame i's sensitivity that comes from frame j)."""
    gains, fields = [], []
    for run in _runs(folders):
        temporal = run.temporal
        if temporal is None:
            continue
        gains.append(temporal.gain.assign(**run.identity))
        fields.append(temporal.field_table().assign(**run.identity))
    gain = pd.concat(gains, ignore_index=True)[GAIN_COLUMNS] if gains else pd.DataFrame(columns=GAIN_COLUMNS)
    field = pd.concat(fields, ignore_index=True)[FIELD_COLUMNS] if fields else pd.DataFrame(columns=FIELD_COLUMNS)
    return gain, field


def loss_name(runs: Sequence[RunFiles]) -> str:
    """The training loss of the runs, from the first run's recipe (``run.json``), or ``""``."""
    for run in runs:
        train = run.record.get("recipe", {}).get("train", {})
        losses = train.get("losses")
        if isinstance(losses, list):
            terms = [(item.get("name"), item.get("weight", 1)) if isinstance(item, dict) else (item, 1)
                     for item in losses]  # fmt: skip
            return " + ".join(str(name) if weight == 1 else f"{weight}·{name}" for name, weight in terms)
        return str(train.get("loss", ""))
    return ""


@dataclass(frozen=True)
class Collected:
    """Everything a report is made of, read from the run folders (``records``: each run's ``run.json`` by
    run folder)."""

    dirs: list[Path]
    runs: pd.DataFrame
    per_frame: pd.DataFrame
    training: pd.DataFrame
    profiles: pd.DataFrame
    temporal_gain: pd.DataFrame
    temporal_field: pd.DataFrame
    info: dict[str, dict[str, Any]]
    failed: list[tuple[Path, str]]
    records: dict[str, dict[str, Any]]
    loss: str
    real: dict[str, Any] | None = None  # the real-video set the runs were evaluated on (real_set)


def collect(folders: RunsDirs) -> Collected:
    """Read every finished run under the folders, each file once; no finished run at all is an error."""
    dirs = runs_dirs(folders)
    info = study_info(dirs)
    found = read_runs(dirs, info)
    runs = collect_runs(found)
    if runs.empty:
        where = ", ".join(map(str, dirs))
        raise VSRError(f"no finished runs ({run_folders.RUN_FILE}) under {where}; run the study first")
    gain, field = collect_temporal(found)
    records = {str(run.run_dir): run.record for run in found}
    return Collected(dirs, runs, collect_per_frame(found), collect_training(found), collect_profiles(found),
                     gain, field, info, failed_runs(dirs), records, loss_name(found), real_set(found))  # fmt: skip
