"""The progress bar every long command shows (training, evaluation, upscaling, a study's jobs): rich's bar
on a terminal, nothing otherwise, so that logs and captured output stay clean."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

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


class _SpeedColumn(ProgressColumn):
    """The steps per second, in ``unit``/s (``--`` until there is a speed)."""

    def __init__(self, unit: str):
        super().__init__()
        self.unit = unit

    def render(self, task: Task) -> Text:
        speed = f"{task.speed:.2f}" if task.speed else "--"
        return Text(f"{speed} {self.unit}/s", style="progress.data.speed")


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
) -> Iterator[ProgressBar]:
    """A :class:`ProgressBar` of ``total`` steps (None: not known yet), ``completed`` of them already done.

    Its columns: the description, the bar, the count, with ``status`` the text given to
    :meth:`ProgressBar.advance`, with ``rate`` (the unit of a step: ``frames``) the speed in ``<rate>/s``, the
    elapsed time, and with ``eta`` the time remaining. It is drawn on stderr when that is a terminal; with a
    ``console``, on that console whatever it writes to (elsewhere than a terminal, rich prints the bar once,
    when it ends)."""
    if console is None:
        console = Console(stderr=True)
        enabled = enabled and console.is_terminal
    if not enabled:
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


__all__ = ["ProgressBar", "progress_bar"]
