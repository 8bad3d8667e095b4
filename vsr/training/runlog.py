"""A run's log: ``log.jsonl`` (every log step and validation) and ``metrics.csv`` (validations), and the
same numbers in TensorBoard when the run has a :class:`vsr.training.tensorboard.TensorBoardLog`."""

from __future__ import annotations

import csv
import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from vsr.atomic import atomic_open, write_text
from vsr.errors import DataError
from vsr.training.files import LOG_FILE, METRICS_CSV
from vsr.training.tensorboard import TensorBoardLog

log = logging.getLogger(__name__)

RECIPE_CHANGED = "recipe_changed"  # the event of a resumed run's allowed recipe changes (vsr.training.resume)


def _whole_lines(path: Path) -> list[str]:
    """The lines of ``path`` that an append finished: a crash during an append can leave only the last
    line torn (without its newline), and that one is dropped."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    except UnicodeDecodeError:
        raise DataError(
            f"{path} is not UTF-8 text: the file was edited or damaged; restore it, or delete it (the run's "
            "checkpoints do not depend on it) and resume again"
        ) from None
    if lines and not lines[-1].endswith("\n"):
        log.warning("dropping the torn last line of %s (a run stopped while writing it)", path)
        lines.pop()
    return lines


def _kept(entry: Mapping[str, Any], iteration: int) -> bool:
    at = entry.get("iteration", 0)
    return at < iteration or (at == iteration and entry.get("event") != RECIPE_CHANGED)


class RunLog:
    """``log.jsonl`` (every log step and validation) and ``metrics.csv`` (validations) of a run folder.

    Each entry is appended as one line. Appends are not atomic: a crash during one can tear the last line,
    never an earlier one, and :meth:`truncate` (called when a run starts or resumes) drops it. Everything
    else is replaced atomically (:mod:`vsr.atomic`): truncation writes each file anew beside the old one
    and renames it over, so a crash there leaves the old log whole.
    """

    def __init__(self, out_dir: Path, enabled: bool, board: TensorBoardLog | None = None):
        self.jsonl, self.csv, self.enabled = out_dir / LOG_FILE, out_dir / METRICS_CSV, enabled
        self.board = board  # every entry written is also plotted there

    def _entry(self, line: str) -> Mapping[str, Any]:
        """One line of ``log.jsonl``: an object whose ``iteration``, if any, is a whole number."""
        try:
            entry = json.loads(line)
            problem = None
        except json.JSONDecodeError as err:
            entry, problem = None, f"is not valid JSON ({err.msg})"
        if problem is None and not isinstance(entry, dict):
            problem = "is not a JSON object"
        elif problem is None and (type(entry.get("iteration", 0)) is not int):
            problem = "has an iteration that is not a whole number"
        if problem is not None:
            raise DataError(
                f"{self.jsonl}: a line {problem}: {line.strip()[:60]!r}; the log was edited or cut short: delete that "
                "line (the run's checkpoints do not depend on it) and resume again"
            )
        return entry

    def _iteration(self, row: Mapping[str, Any]) -> int:
        try:
            return int(row["iteration"])
        except (KeyError, TypeError, ValueError):
            raise DataError(
                f"{self.csv}: the row {dict(row)} has no whole-number iteration; the file was edited or cut short: "
                "delete that row (the run's checkpoints do not depend on it) and resume again"
            ) from None

    def truncate(self, iteration: int) -> None:
        """Drop entries after ``iteration`` (written after the checkpoint a resumed run starts from), and a
        ``recipe_changed`` event at ``iteration``: it belongs to an earlier resumption from this same
        checkpoint, whose recipe is the one before that change."""
        if not self.enabled:
            return
        if self.jsonl.is_file():
            kept = [line for line in _whole_lines(self.jsonl) if line.strip() and _kept(self._entry(line), iteration)]
            write_text("".join(line.rstrip("\n") + "\n" for line in kept), self.jsonl)
        if self.csv.is_file():
            reader = csv.DictReader(_whole_lines(self.csv))
            rows = [row for row in reader if self._iteration(row) <= iteration]
            if not rows:
                self.csv.unlink()
                return
            with atomic_open(self.csv, "w", newline="") as f:
                writer = csv.DictWriter(f, fieldnames=reader.fieldnames)
                writer.writeheader()
                writer.writerows(rows)

    def write(self, entry: Mapping[str, Any]) -> None:
        if self.enabled:
            with self.jsonl.open("a") as f:
                f.write(json.dumps(entry) + "\n")
            if self.board is not None:
                self.board.entry(entry)

    def validation(self, entry: Mapping[str, Any]) -> None:
        self.write({"event": "val", **entry})
        if self.enabled:
            self._append_csv(entry)

    def _append_csv(self, row: Mapping[str, Any]) -> None:
        new = not self.csv.is_file()
        with self.csv.open("a", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(row))
            if new:
                writer.writeheader()
            writer.writerow(row)


__all__ = ["RunLog"]
