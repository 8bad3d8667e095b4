"""The progress every long command shows (training, evaluation, upscaling, a study's runs).

Where it goes depends on where the output goes:

* stdout is a terminal: rich's live bar, drawn on stderr (when that is a terminal too, or on the console
  given);
* stdout is not a terminal (``vsr train ... > train.log``, ``nohup``, Slurm, CI): plain lines on stdout, one
  per log step (:class:`ProgressLines`: done/total, the caller's status, the speed, elapsed time and ETA),
  so that a log file shows how far a run is and how long it has to go. A live bar there would write
  nothing until the end, or a screenful of control characters. Where several processes share stdout (the
  parallel runs of ``vsr study --jobs N``), each line starts with its run's :func:`label`.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TextIO

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

_LABEL: ContextVar[str] = ContextVar("vsr_progress_label", default="")


@contextmanager
def label(text: str) -> Iterator[None]:
    """Plain progress lines begun inside the block start with ``[text]``: which run a line is about, where
    the lines of several runs interleave on one stdout."""
    token = _LABEL.set(text)
    try:
        yield
    finally:
        _LABEL.reset(token)


class ProgressBar:
    """A rich progress bar (description, bar, count, a ``status`` text or the speed, elapsed and remaining
    time), or nothing at all when disabled or when stderr is not a terminal."""

    def __init__(self, progress: Progress | None = None, task: TaskID | None = None):
        self.progress, self.task = progress, task

    def advance(self, steps: int = 1, status: str | None = None) -> None:
        if self.progress is not None:
            fields = {} if status is None else {"status": status}
            self.progress.update(self.task, advance=steps, **fields)

    def set_total(self, total: int | None) -> None:
        """The number of steps, once it is known (or known better)."""
        if self.progress is not None:
            self.progress.update(self.task, total=total)

    def line(self, status: str = "", speed: float | None = None) -> None:
        """Print a plain progress line now (only :class:`ProgressLines` prints; a live bar shows it already)."""


def clock(seconds: float) -> str:
    """``1:02:03`` (hours:minutes:seconds), ``0:00:07``."""
    seconds = max(round(seconds), 0)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class ProgressLines(ProgressBar):
    """Progress as plain lines on a stream that is not a terminal::

        training basicvsr_tiny: 200/1200 (17%) · loss 0.03121 · lr 0.0002 · 2.05 it/s · elapsed 0:01:38 · eta 0:08:08

    A line is printed every ``every`` steps of :meth:`advance` and when the total is reached (``every=0``:
    only when :meth:`line` is called, as the trainer does at each log step, and nowhere else). The speed is the caller's
    (``speed=``) or the mean over the steps done since the lines began; the ETA is the remaining steps at
    that speed. Inside :func:`label` the lines start with ``[label]``."""

    def __init__(
        self,
        total: int | None,
        description: str,
        *,
        completed: int = 0,
        unit: str = "it",
        every: int = 1,
        stream: TextIO | None = None,
    ):
        super().__init__()
        self.total, self.description, self.unit, self.every = total, description, unit, every
        self.done, self.start_done, self.started = completed, completed, time.perf_counter()
        self.stream, self.label = stream, _LABEL.get()
        self.status, self.since_line, self.last_printed = "", 0, None

    def advance(self, steps: int = 1, status: str | None = None) -> None:
        self.done += steps
        self.since_line += steps
        if status is not None:
            self.status = status
        if self.every and (self.since_line >= self.every or (self.total is not None and self.done >= self.total)):
            self.line(self.status)

    def set_total(self, total: int | None) -> None:
        changed = total != self.total
        self.total = total
        if self.every and changed and total is not None and self.done >= total and self.last_printed != self.done:
            self.line(self.status)

    def speed(self) -> float | None:
        """Steps per second since the lines began (None before the first step)."""
        seconds = time.perf_counter() - self.started
        steps = self.done - self.start_done
        return steps / seconds if steps > 0 and seconds > 0 else None

    def line(self, status: str = "", speed: float | None = None) -> None:
        speed = self.speed() if speed is None else speed
        count = f"{self.done}/{self.total} ({100 * self.done / self.total:.0f}%)" if self.total else f"{self.done}"
        parts = [f"{f'[{self.label}] ' if self.label else ''}{self.description}: {count}"]
        if status:
            parts.append(status)
        parts.append(f"{speed:.3g} {self.unit}/s" if speed else f"-- {self.unit}/s")
        parts.append(f"elapsed {clock(time.perf_counter() - self.started)}")
        if self.total and speed:
            parts.append(f"eta {clock(max(self.total - self.done, 0) / speed)}")
        stream = self.stream or sys.stdout  # looked up when printing: test runners swap sys.stdout
        print(" · ".join(parts), file=stream, flush=True)
        self.since_line, self.last_printed = 0, self.done


class _SpeedColumn(ProgressColumn):
    """The steps per second, in ``unit``/s (``--`` until there is a speed)."""

    def __init__(self, unit: str):
        super().__init__()
        self.unit = unit

    def render(self, task: Task) -> Text:
        speed = f"{task.speed:.2f}" if task.speed else "--"
        return Text(f"{speed} {self.unit}/s", style="progress.data.speed")


def _is_terminal(stream: TextIO | None) -> bool:
    try:
        return stream is not None and stream.isatty()
    except (AttributeError, ValueError):  # a closed or unusual stream
        return False


def plain_lines() -> bool:
    """Whether progress is printed as plain lines: stdout is not a terminal (a file, a pipe, a job's log)."""
    return not _is_terminal(sys.stdout)


@contextmanager
def progress_bar(
    total: int | None,
    description: str,
    *,
    enabled: bool = True,
    completed: int = 0,
    status: bool = True,
    rate: str | None = None,
    eta: bool = True,
    console: Console | None = None,
    line_every: int = 1,
) -> Iterator[ProgressBar]:
    """A :class:`ProgressBar` of ``total`` steps (None: not known yet), ``completed`` of them already done.

    When stdout is not a terminal (:func:`plain_lines`) it is a :class:`ProgressLines` on stdout that prints
    a line every ``line_every`` steps (0: only when the caller calls ``line``), with the speed in ``rate``
    units (``frames``; default ``it``). Otherwise it is rich's bar; its columns: the description, the bar,
    the count, with ``status`` the text given to :meth:`ProgressBar.advance`, with ``rate`` the speed in
    ``<rate>/s``, the elapsed time, and with ``eta`` the time remaining. The bar is drawn on stderr when
    that is a terminal; with a ``console``, on that console whatever it writes to (elsewhere than a
    terminal, rich prints the bar once, when it ends)."""
    if not enabled:
        yield ProgressBar()
        return
    if plain_lines():
        yield ProgressLines(total, description, completed=completed, unit=rate or "it", every=line_every)
        return
    if console is None:
        console = Console(stderr=True)
        if not console.is_terminal:
            yield ProgressBar()
            return
    columns = [
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        *([TextColumn("{task.fields[status]}")] if status else []),
        *([_SpeedColumn(rate)] if rate else []),
        TimeElapsedColumn(),
    ]
    if eta:
        columns += [TextColumn("eta"), TimeRemainingColumn()]
    with Progress(*columns, console=console, transient=False) as progress:
        yield ProgressBar(progress, progress.add_task(description, total=total, completed=completed, status=""))


__all__ = ["ProgressBar", "ProgressLines", "clock", "label", "plain_lines", "progress_bar"]
