"""The progress bar every long command shows (training, evaluation): rich's bar on a terminal, nothing
otherwise, so that logs and captured output stay clean."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


class ProgressBar:
    """A rich progress bar (description, bar, count, a ``status`` text, elapsed and remaining time), or
    nothing at all when disabled or when stderr is not a terminal."""

    def __init__(self, progress: Progress | None = None, task: TaskID | None = None):
        self.progress, self.task = progress, task

    def advance(self, steps: int = 1, status: str | None = None) -> None:
        if self.progress is not None:
            fields = {} if status is None else {"status": status}
            self.progress.update(self.task, advance=steps, **fields)


@contextmanager
def progress_bar(total: int, description: str, *, enabled: bool = True, completed: int = 0) -> Iterator[ProgressBar]:
    """A :class:`ProgressBar` of ``total`` steps on stderr, ``completed`` of them already done."""
    console = Console(stderr=True)
    if not (enabled and console.is_terminal):
        yield ProgressBar()
        return
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[status]}"),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console, transient=False) as progress:
        yield ProgressBar(progress, progress.add_task(description, total=total, completed=completed, status=""))


__all__ = ["ProgressBar", "progress_bar"]
