"""The run folder: where each run of a study keeps its files, and the one place that names the study's own.

A study writes ``OUT/<study>/study.json`` and one folder per variant and seed,
``OUT/<study>/<variant>/seed<k>/``: ``run_spec.json`` first (what the folder is for), then what training
writes (``recipe.yaml``, ``log.jsonl``, ``metrics.csv``, ``checkpoints/``, ``model.safetensors``,
``result.json`` last), what evaluation writes (``metrics.json``, ``per_frame.csv``), ``profile.json`` (first
seed of each variant) and last, atomically, ``run.json``: a run is finished exactly when ``run.json``
exists. ``failed.json`` holds the error of the last failed attempt, ``reused.json`` the run whose training
this one copied (a shared run's, or for a test-time variant the run whose weights it evaluates), ``job.json``
the Slurm job that ran it. ``real/`` holds the same evaluation and temporal-gain probe
on the real-video set (:mod:`vsr.data.real`), for presets that evaluate on it: ``real/metrics.json``,
``real/per_frame.csv`` and ``real/temporal/``. :mod:`vsr.studies` writes these folders and
:mod:`vsr.reports` reads them, both through this module. The files of training, evaluation and the probe
are named by their writers (:mod:`vsr.training.files`, :mod:`vsr.evaluate`, :mod:`vsr.probe`) and this
module imports those names.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import traceback
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from vsr.atomic import write_json, write_with
from vsr.errors import DataError, VSRError, brief_repr
from vsr.evaluate import METRICS_FILE, PER_FRAME_FILE
from vsr.metrics import metric_class
from vsr.probe import FIELD_FILE, GAIN_FILE, TEMPORAL_DIR, TemporalProbe
from vsr.studies import file_checks
from vsr.studies.schema import FRAME_POSITIONS, REAL_SET, SOURCE_KEYS, StudyError
from vsr.training.files import (
    LAST_CHECKPOINT,
    LATEST_CHECKPOINT,
    LOG_FILE,
    METRICS_CSV,
    RECIPE_FILE,
    RESULT_FILE,
    TENSORBOARD_EVENTS,
    WEIGHTS_FILE,
    name_problem,
    run_folder_of,
)

RUN_FILE = "run.json"  # written last, atomically: its presence marks a finished run
SPEC_FILE = "run_spec.json"  # written first: what the run folder is for (checked on every rerun)
FAILED_FILE = "failed.json"  # the error of the last attempt, removed when the run finishes
REUSED_FILE = "reused.json"  # the run whose training this run copied (an identical recipe and seed)
JOB_FILE = "job.json"  # the submitit job that ran this run (id, executor, log)
STUDY_FILE = "study.json"  # the study definition as run, in OUT/<study>/
PROFILE_FILE = "profile.json"  # vsr.profile: parameters, FLOPs and runtime (first seed of each variant)
TORCHRUN_RECIPE_FILE = "study_recipe.yaml"  # the resolved recipe handed to torchrun for multi-GPU training
REAL_DIR = "real"  # the evaluation and temporal gain on the real-video set: its own METRICS_FILE, ... TEMPORAL_DIR
# Imported from their writers: vsr.evaluate (METRICS_FILE, PER_FRAME_FILE), vsr.probe (TEMPORAL_DIR: temporal gain
# per frame, receptive field, mean gain) and vsr.training.files (RESULT_FILE,
# written last, marks a finished training; LATEST_CHECKPOINT is what an interrupted training resumes from;
# LAST_CHECKPOINT holds the final weights, the ones evaluated).
#: What a run's training wrote; copied from a twin run, ``result.json`` last (it marks training as done).
TRAINING_FILES = (RECIPE_FILE, LOG_FILE, METRICS_CSV, WEIGHTS_FILE, LAST_CHECKPOINT, RESULT_FILE)
#: The columns a report reads from the probe's tables (:mod:`vsr.probe`).
_GAIN_TABLE, _FIELD_TABLE = ["clip", "frame", "psnr", "psnr_alone", "gain"], ["clip", "i", "j", "sensitivity"]

# The fixes a damaged file's message gives (vsr.studies.file_checks), by what writes the file anew.
_REEVALUATED = "the run is evaluated again from its checkpoint"
#: Evaluation, the probe and the profile write these files; rerunning an evaluated run's study writes them anew.
_EVALUATION_FIX = (
    f"restore it, or delete its run's {RUN_FILE} and rerun the study (the same vsr study command): "
    f"{_REEVALUATED}, which writes this file anew"
)
_RETRAIN_FIX = "restore it, or delete the run folder and rerun the study (the same vsr study command) to train it again"


def _folder_name(name: str, what: str) -> str:
    problem = name_problem(name)
    if problem is not None:
        raise StudyError(f"{what} name {name!r} cannot name a folder: {problem}")
    return name


def study_folder(out: str | Path, study: str) -> Path:
    """``OUT/<study>``: the study's runs and its ``study.json``. The name must name one folder."""
    return Path(out) / _folder_name(study, "study")


def run_folder(out: str | Path, study: str, variant: str, seed: int) -> Path:
    """``OUT/<study>/<variant>/seed<k>``: one run. The names must name one folder each."""
    return study_folder(out, study) / _folder_name(variant, "variant") / f"seed{int(seed)}"


@dataclass(frozen=True)
class RunSpec:
    """Everything one run needs (picklable: it travels to Slurm jobs)."""

    study: str
    preset: str
    variant: str
    seed: int
    run_dir: str
    recipe: dict[str, Any]  # resolved recipe (Recipe.to_dict())
    overrides: tuple[str, ...] = ()
    profile: Mapping[str, Any] | None = None  # profile() arguments, or None: not profiled
    real: Mapping[str, Any] | None = None  # the real-video set's data set mapping, or None: not evaluated on it
    device: str | None = None
    gpus: int = 1
    runs_root: str | None = None  # where finished runs of other studies may hold this run's training
    real_metrics: tuple[Any, ...] = ()  # data.val_metrics entries the real-video set is scored with (): the recipe's
    evaluates: str | None = None  # the variant whose final weights (same seed) this run evaluates, training nothing
    starts_from: str | None = None  # the variant whose final weights (same seed) this run's training starts from

    @property
    def key(self) -> str:
        return f"{self.study}/{self.variant}/seed{self.seed}"

    @property
    def source(self) -> str | None:
        """The variant whose run this one uses the final weights of (``evaluates`` or ``starts_from``), or None."""
        return self.evaluates or self.starts_from

    def source_folder(self) -> Path | None:
        """The run folder of :attr:`source` of the same seed, beside this run's; None for a run of its own."""
        if self.source is None:
            return None
        return run_folder(Path(self.run_dir).parents[2], self.study, self.source, self.seed)

    def identity(self) -> dict[str, Any]:
        """What the run folder is for (``run_spec.json``): a run that uses another's weights names that variant."""
        used = {key: getattr(self, key) for key in SOURCE_KEYS if getattr(self, key) is not None}
        return {"study": self.study, "variant": self.variant, "seed": self.seed, "recipe": self.recipe, **used}


# ------------------------------------------------------------------------------------------ writing a run


def _flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(d, Mapping):
        return {prefix: d}
    out: dict[str, Any] = {}
    for k, v in d.items():
        out |= _flatten(v, f"{prefix}.{k}" if prefix else str(k))
    return out


def check_run_folder(spec: RunSpec, create: bool = False) -> None:
    """A run folder belongs to one (study, variant, seed, recipe): a changed study file or other options
    (``--data``, ``--seeds``) must never mix runs. Raises :class:`StudyError` if ``run_spec.json`` disagrees;
    ``create`` writes it when missing."""
    run_dir = Path(spec.run_dir)
    path = run_dir / SPEC_FILE
    if not path.is_file():
        if create:
            write_json(spec.identity(), path)
        return
    stored = file_checks.json_object(path, _RETRAIN_FIX)
    if stored == json.loads(json.dumps(spec.identity())):
        return
    before, now = _flatten(stored), _flatten(json.loads(json.dumps(spec.identity())))
    changed = sorted(k for k in before.keys() | now.keys() if before.get(k) != now.get(k))
    shown = "; ".join(f"{k}: {before.get(k)!r} -> {now.get(k)!r}" for k in changed[:5])
    raise StudyError(
        f"run folder {run_dir} was made for another recipe ({shown}); the study file or its options changed. "
        "Use another --out, or delete that folder to rerun it"
    )


def finish_run(run_dir: str | Path, record: Mapping[str, Any]) -> None:
    """Write ``run.json`` (the run is finished) and forget an earlier attempt's failure."""
    write_json(dict(record), Path(run_dir) / RUN_FILE)
    (Path(run_dir) / FAILED_FILE).unlink(missing_ok=True)


def record_failure(run_dir: str | Path, err: BaseException) -> None:
    """Write the error being handled, with its traceback, to ``failed.json``."""
    failure = {"error": f"{type(err).__name__}: {err}", "traceback": traceback.format_exc(),
               "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")}  # fmt: skip
    write_json(failure, Path(run_dir) / FAILED_FILE)


def record_job(run_dir: str | Path, job: Mapping[str, Any]) -> None:
    """Write ``job.json``: which submitit job (and log) belongs to this run folder."""
    Path(run_dir).mkdir(parents=True, exist_ok=True)
    write_json(dict(job), Path(run_dir) / JOB_FILE)


def write_profile(run_dir: str | Path, result: Mapping[str, Any]) -> None:
    """Write ``profile.json``: what :func:`vsr.profile.profile` measured for the run's model."""
    write_json(dict(result), Path(run_dir) / PROFILE_FILE)


def write_study_record(study_dir: str | Path, record: Mapping[str, Any]) -> None:
    """Write ``study.json``: the study definition as run (variants, base, labels, expected orderings)."""
    Path(study_dir).mkdir(parents=True, exist_ok=True)
    write_json(dict(record), Path(study_dir) / STUDY_FILE)


# ------------------------------------------------------------------------------------------ one run's files


def run_finished(run_dir: str | Path) -> bool:
    return (Path(run_dir) / RUN_FILE).is_file()


def training_finished(run_dir: str | Path) -> bool:
    return (Path(run_dir) / RESULT_FILE).is_file()


def can_resume(run_dir: str | Path) -> bool:
    """An interrupted training left a checkpoint to resume from."""
    return (Path(run_dir) / LATEST_CHECKPOINT).is_file()


def read_run(run_dir: str | Path) -> dict[str, Any]:
    """``run.json``: the finished run's record (identity, recipe, metrics, timings), checked for what its
    readers use: ``study``, ``variant`` and ``seed``, the ``metrics`` it names, its ``recipe``, and the variants
    whose weights it ``evaluates`` or ``starts_from`` (null for a run of its own; absent in older records)."""
    path = Path(run_dir) / RUN_FILE
    fix = f"restore it, or delete it and rerun the study (the same vsr study command): {_REEVALUATED}"
    record = file_checks.json_object(path, fix)
    fields = {"study": "text", "variant": "text", "seed": "whole", "recipe": "object", "evaluates": "text?",
              "starts_from": "text?"}  # fmt: skip
    file_checks.require(path, record, fields, fix, optional=["recipe", *SOURCE_KEYS])
    names = record.get("metrics", [])
    if not (isinstance(names, dict) or file_checks.KINDS["texts"][1](names)):
        raise file_checks.damaged(path, f"'metrics' = {brief_repr(names, 60)} names no metrics", fix)
    if "recipe" in record:
        file_checks.require(path, record["recipe"], {"train": "object"}, fix, optional=["train"], where="recipe")
    return record


def read_training_result(run_dir: str | Path) -> dict[str, Any]:
    """``result.json``: what training reports (iterations, time, parameters, device)."""
    return file_checks.json_object(Path(run_dir) / RESULT_FILE, _RETRAIN_FIX)


def read_metrics(run_dir: str | Path, names: Iterable[str] = ()) -> dict[str, Any]:
    """``metrics.json``: the validation metrics of the evaluated checkpoint and of bicubic upsampling. Each
    metric of ``names`` (those the run was evaluated with, less those the file lists as ``skipped`` for want of
    ground truth) must be there as a number (null or NaN only for a no-reference metric, which may score no
    frame), and the bicubic baseline's as numbers or null."""
    path = Path(run_dir) / METRICS_FILE
    metrics = file_checks.json_object(path, _EVALUATION_FIX)
    kinds = {"bicubic": "object?", "clips": "object?", "skipped": "texts"}
    file_checks.require(path, metrics, kinds, _EVALUATION_FIX, optional=kinds)
    names = [name for name in names if name not in metrics.get("skipped", [])]
    kinds = {name: "number" if _full_reference(name) else "number or NaN?" for name in names}
    file_checks.require(path, metrics, kinds, _EVALUATION_FIX)
    bicubic = metrics.get("bicubic") or {}
    file_checks.require(path, bicubic, dict.fromkeys(bicubic, "number or NaN?"), _EVALUATION_FIX, where="bicubic")
    return metrics


def _full_reference(metric: str) -> bool:
    """Whether ``metric`` compares with the ground truth (a NaN there means a broken evaluation; a no-reference
    score may be undefined on a frame); an unknown metric is held to the stricter rule."""
    try:
        return bool(metric_class(metric).needs_gt)
    except VSRError:
        return True


def read_spec(run_dir: str | Path) -> dict[str, Any] | None:
    """``run_spec.json`` (study, variant, seed, resolved recipe), or None if the folder has none."""
    path = Path(run_dir) / SPEC_FILE
    return file_checks.json_object(path, _RETRAIN_FIX) if path.is_file() else None


def read_profile(run_dir: str | Path) -> dict[str, Any] | None:
    """``profile.json``, or None for a run that was not profiled; checked for what a report shows: total
    parameters, FLOPs and runtime per frame, device, clip."""
    path = Path(run_dir) / PROFILE_FILE
    if not path.is_file():
        return None
    prof = file_checks.json_object(path, _EVALUATION_FIX)
    fields = {"params": "object", "flops_per_frame": "number", "runtime_ms_per_frame": "number?",
              "device": "text?", "frames": "whole?", "size": "wholes"}  # fmt: skip
    file_checks.require(path, prof, fields, _EVALUATION_FIX, optional=["runtime_ms_per_frame", "device", "frames",
                                                                        "size"])  # fmt: skip
    file_checks.require(path, prof["params"], {"total": "whole"}, _EVALUATION_FIX, where="params")
    return prof


def read_log(run_dir: str | Path) -> list[dict[str, Any]]:
    """The entries of ``log.jsonl`` (none if the run has no log); a line that is not a JSON object is named."""
    path = Path(run_dir) / LOG_FILE
    if not path.is_file():
        return []
    fix = "restore it, or delete that line: training writes one JSON object a line"
    return file_checks.json_lines(path, fix, {"event": "text", "iteration": "whole"})


def per_frame_file(run_dir: str | Path) -> Path | None:
    """``per_frame.csv``, or None if the run has none."""
    path = Path(run_dir) / PER_FRAME_FILE
    return path if path.is_file() else None


def temporal_folder(run_dir: str | Path) -> Path:
    """Where the run's temporal-information probe is written (:mod:`vsr.probe`)."""
    return Path(run_dir) / TEMPORAL_DIR


def read_per_frame(run_dir: str | Path, metrics: Iterable[str] = ()) -> pd.DataFrame | None:
    """``per_frame.csv`` (a row per clip and frame, a column per metric), or None if the run has none. It must
    have rows, whole frame numbers, one row per clip and frame, and a column of numbers for each of ``metrics``,
    with no NaN in a full-reference metric's."""
    path = per_frame_file(run_dir)
    if path is None:
        return None
    metrics = list(metrics)
    return file_checks.csv_table(
        path,
        _EVALUATION_FIX,
        columns=["clip", "frame", *metrics],
        whole=["frame"],
        numbers=metrics,
        no_nan=[m for m in metrics if _full_reference(m)],
        text=["clip"],
        unique=["clip", "frame"],
    )


def read_temporal(run_dir: str | Path) -> TemporalProbe | None:
    """The run's temporal-information probe, or None for a run that was not probed; its tables must have
    their columns, a gain for at least one frame and no NaN gain."""
    folder = temporal_folder(run_dir)
    if not folder.is_dir():
        return None
    for name in (GAIN_FILE, FIELD_FILE):
        if not (folder / name).is_file():
            raise file_checks.damaged(folder, f"it has no {name}", _EVALUATION_FIX)
    gain, field = folder / GAIN_FILE, folder / FIELD_FILE
    file_checks.csv_table(gain, _EVALUATION_FIX, columns=_GAIN_TABLE, whole=["frame"], numbers=_GAIN_TABLE[2:],
                          no_nan=["gain"], text=["clip"], unique=["clip", "frame"])  # fmt: skip
    file_checks.csv_table(field, _EVALUATION_FIX, columns=_FIELD_TABLE, whole=["i", "j"], numbers=["sensitivity"],
                          text=["clip"], rows=False, unique=["clip", "i", "j"])  # fmt: skip
    return file_checks.reading(folder, _EVALUATION_FIX, lambda: TemporalProbe.read(folder))


def real_folder(run_dir: str | Path) -> Path:
    """``real/``: the run's evaluation and probe on the real-video set, laid out as the run folder's own
    (:func:`read_metrics`, :func:`per_frame_file` and :func:`read_temporal` read them from it)."""
    return Path(run_dir) / REAL_DIR


def read_real_metrics(run_dir: str | Path, names: Iterable[str] = ()) -> dict[str, Any] | None:
    """``real/metrics.json``, or None for a run not evaluated on the real-video set (checked as
    :func:`read_metrics`)."""
    folder = real_folder(run_dir)
    return read_metrics(folder, names) if (folder / METRICS_FILE).is_file() else None


def torchrun_recipe_file(run_dir: str | Path) -> Path:
    return Path(run_dir) / TORCHRUN_RECIPE_FILE


def last_checkpoint(run_dir: str | Path) -> Path:
    """The final weights of the run's training (what is evaluated and shown)."""
    return Path(run_dir) / LAST_CHECKPOINT


def trained_in(run_dir: str | Path) -> str | None:
    """The run folder whose training this run copied, or None if it trained itself."""
    path = Path(run_dir) / REUSED_FILE
    if not path.is_file():
        return None
    reused = file_checks.json_object(path, _RETRAIN_FIX)
    file_checks.require(path, reused, {"trained_in": "text"}, _RETRAIN_FIX)
    return reused["trained_in"]


# ------------------------------------------------------------------------------------------ twin runs


def _same_training(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    """Two resolved recipes train the same network the same way (the recipe's name is only a label)."""
    return {k: v for k, v in a.items() if k != "name"} == {k: v for k, v in b.items() if k != "name"}


def find_twin_run(spec: RunSpec) -> Path | None:
    """A finished run under ``spec.runs_root`` (any study) with the same seed and the same resolved recipe,
    up to its name: e.g. BasicVSR is the base of the propagation, alignment and IconVSR studies alike."""
    if spec.runs_root is None:
        return None
    recipe = json.loads(json.dumps(spec.recipe))
    for path in sorted(Path(spec.runs_root).glob(f"*/*/seed*/{RUN_FILE}")):
        if path.parent.resolve() == Path(spec.run_dir).resolve():
            continue
        try:
            other = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if not isinstance(other, dict) or not isinstance(other.get("recipe", {}), dict):
            continue  # a damaged record: that run is no twin (a report names its file)
        if other.get("evaluates"):
            continue  # a test-time variant's run holds another recipe's training
        same = other.get("seed") == spec.seed and _same_training(other.get("recipe", {}), recipe)
        if same and all((path.parent / f).is_file() for f in TRAINING_FILES):
            return path.parent
    return None


def reuse_training(twin: Path, run_dir: str | Path) -> None:
    """Copy the training of ``twin`` into ``run_dir`` (``reused.json`` names it), ``result.json`` last, with
    its TensorBoard event files: ``tensorboard --logdir`` shows the run in this study as in the twin's."""
    run_dir = Path(run_dir)
    write_json({"trained_in": str(twin)}, run_dir / REUSED_FILE)
    events = [path.name for path in sorted(Path(twin).glob(TENSORBOARD_EVENTS))]
    for name in [*events, *TRAINING_FILES]:
        write_with(lambda tmp, name=name: shutil.copyfile(twin / name, tmp), run_dir / name)


# ------------------------------------------------------------------------------------------ many runs


def finished_runs(folders: Iterable[Path]) -> list[tuple[Path, dict[str, Any]]]:
    """Every finished run (a folder with ``run.json``) under the folders, once each, with its record,
    sorted by study, variant and seed. A run inside the folders through a symbolic link (which the search
    would leave out) and two folders holding the same run (which a report would count twice) are errors."""
    found: dict[Path, tuple[Path, dict[str, Any]]] = {}  # by the folder resolved: its path as found, its record
    for folder in folders:
        _refuse_linked_runs(Path(folder))
        for path in sorted(Path(folder).rglob(RUN_FILE)):
            if path.parent.resolve() not in found:
                found[path.parent.resolve()] = (path.parent, read_run(path.parent))
    seen: dict[tuple[str, str, int], Path] = {}
    for run_dir, record in found.values():
        key = (record["study"], record["variant"], record["seed"])
        if key in seen:
            raise DataError(
                f"{seen[key]} and {run_dir} both hold run {'/'.join(map(str, key[:2]))}/seed{key[2]} (their "
                f"{RUN_FILE}); a report counts each run once: move the copy out of the runs folder"
            )
        seen[key] = run_dir
    return sorted(found.values(), key=lambda item: (item[1]["study"], item[1]["variant"], item[1]["seed"]))


def _refuse_linked_runs(folder: Path) -> None:
    """Refuse a symbolic link to a folder holding runs inside ``folder``: the search for runs does not follow
    links (a link may loop, or lead to another study's runs), so its runs would silently be left out."""
    for parent, dirs, _ in os.walk(folder):
        for name in dirs:
            link = Path(parent) / name
            if link.is_symlink() and ((link / RUN_FILE).is_file() or next(link.rglob(RUN_FILE), None)):
                raise DataError(
                    f"{link} is a symbolic link to {os.readlink(link)}, a folder of runs that a report does not "
                    "follow links to: replace the link by a copy of that folder, or pass the folder it links to "
                    "as a runs folder of its own (vsr report takes several)"
                )


def failed_runs(folders: Iterable[Path]) -> list[tuple[Path, str]]:
    """Run folders whose last attempt failed (``failed.json`` and no ``run.json``), with the error."""
    failed = []
    fix = "delete it: it only records the error of the run's last failed attempt"
    for folder in folders:
        for path in sorted(Path(folder).rglob(FAILED_FILE)):
            if not run_finished(path.parent):
                failure = file_checks.json_object(path, fix)
                file_checks.require(path, failure, {"error": "text"}, fix, optional=["error"])
                failed.append((path.parent, failure.get("error", "?")))
    return failed


#: What a report reads from ``study.json`` (the rest of the study definition is shown as it is, or not at all).
_STUDY_FIELDS = {
    "name": "text",
    "title": "text?",
    "description": "text?",
    "base": "text?",
    "preset": "text?",
    "metrics": "texts",
    "real_metrics": "texts",
    "imports": "texts",
    "variants": "object",
    "expect": "list",
    "source": "text?",
}
_EXPECT_FIELDS = {"better": "text", "worse": "text", "metric": "text", "at": "text?", "segment_length": "whole?",
                  "paper": "number?", "source": "text?", "on": "text?"}  # fmt: skip
_VARIANT_FIELDS = {"label": "text?", "evaluates": "text?", "starts_from": "text?"}


def read_study_record(path: str | Path) -> dict[str, Any]:
    """One ``study.json``, checked for what a report reads: its name, variants (their labels, and the variants
    whose weights they use), base, metrics (on the validation and the real-video set), imports and expected
    orderings. A record written before a field existed may lack it."""
    fix = f"restore it, or rerun the study (the same vsr study command), which writes its {STUDY_FILE} anew"
    data = file_checks.json_object(path, fix)
    file_checks.require(path, data, _STUDY_FIELDS, fix, optional=set(_STUDY_FIELDS) - {"name"})
    for variant, entry in data.get("variants", {}).items():
        if not isinstance(entry, dict):
            raise file_checks.damaged(path, f"'variants.{variant}' = {brief_repr(entry, 60)} is not a JSON object", fix)
        file_checks.require(path, entry, _VARIANT_FIELDS, fix, optional=_VARIANT_FIELDS, where=f"variants.{variant}")
    for i, expectation in enumerate(data.get("expect", [])):
        where = f"expect[{i}]"
        if not isinstance(expectation, dict):
            raise file_checks.damaged(path, f"{where!r} = {brief_repr(expectation, 60)} is not a JSON object", fix)
        file_checks.require(path, expectation, _EXPECT_FIELDS, fix, where=where,
                            optional=set(_EXPECT_FIELDS) - {"better", "worse"})  # fmt: skip
        at = expectation.get("at")
        if at is not None and at not in FRAME_POSITIONS:
            raise file_checks.damaged(path, f"'{where}.at' = {at!r} is not one of {', '.join(FRAME_POSITIONS)}", fix)
        if expectation.get("on") not in (None, REAL_SET):
            raise file_checks.damaged(path, f"'{where}.on' = {expectation['on']!r} is not {REAL_SET!r} or null", fix)
        if at == "segment_ends" and (expectation.get("segment_length") or 0) < 2:
            raise file_checks.damaged(path, f"'{where}.segment_length' must be a whole number >= 2 at segment_ends",
                                      fix)  # fmt: skip
    return data


def study_records(folders: Iterable[Path]) -> dict[str, dict[str, Any]]:
    """``study.json`` of every study in or directly under the folders, by name, with its folder (``dir``)."""
    records: dict[str, dict[str, Any]] = {}
    for folder in folders:
        folder = Path(folder)
        for path in sorted([*folder.glob(STUDY_FILE), *folder.glob(f"*/{STUDY_FILE}")]):
            data = read_study_record(path)
            records.setdefault(data["name"], data | {"dir": str(path.parent)})
    return records


def folder_role(path: str | Path) -> str | None:
    """What vsr made ``path`` for, if it is or lies inside a run or study folder (``"run folder X"``, a study's
    run or a training run of ``vsr train``; ``"study folder X"``), or holds runs (``"folder holding runs"``);
    None otherwise. Reports are not written into such folders: a report's files there would be read back as a
    run's."""
    path = Path(path).resolve()
    trained = run_folder_of(path)
    if trained is not None:
        return f"run folder {trained}"
    for folder in [path, *path.parents]:
        if (folder / RUN_FILE).is_file() or (folder / SPEC_FILE).is_file():
            return f"run folder {folder}"
        if (folder / STUDY_FILE).is_file():
            return f"study folder {folder}"
    if path.is_dir() and next(path.rglob(RUN_FILE), None) is not None:
        return "folder holding runs"
    return None
