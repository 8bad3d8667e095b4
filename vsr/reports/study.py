"""What ``vsr study`` does: run a study (:func:`vsr.studies.run_study`), then write its report
(:func:`vsr.reports.write_report`), also when some runs failed. Reports depend on studies, never the reverse;
this module composes the two."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console

from vsr.reports.index import check_report_folder, write_report
from vsr.studies import RunsFailed, StudyRun, run_study


def run_and_report(name_or_path: str | Path, *, report: str | Path | None = None, **options: Any) -> Path:
    """Run every variant × seed of a study (``options``: those of :func:`vsr.studies.run_study`) and write
    the report of its finished runs into ``report``, by default the preset's report folder
    (:meth:`vsr.studies.Study.report_folder`: ``reports/<study>/`` for the shipped preset, where the shipped
    report is, so that rerunning a shipped study regenerates its report in place). Returns the report folder.

    Failed runs are reported as such, then raise :class:`vsr.studies.RunsFailed` naming each. A ``report``
    folder that cannot take a report (:func:`vsr.reports.index.check_report_folder`) is refused before the
    study runs."""
    if report is not None:
        check_report_folder(report)
    try:
        done = run_study(name_or_path, **options)
    except RunsFailed as failed:
        _report(failed.study_run, report, options.get("progress", True))
        raise
    return _report(done, report, options.get("progress", True))


def _report(done: StudyRun, report: str | Path | None, progress: bool) -> Path:
    folder = Path(report) if report is not None else done.study.report_folder(done.preset)
    if done.any_finished:
        index = write_report([done.folder], folder, title=done.study.title or None)
        if progress:
            Console(stderr=True).print(f"report: [bold]{index}[/]")
    return folder


__all__ = ["run_and_report"]
