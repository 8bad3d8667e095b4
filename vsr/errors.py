"""The project's own exceptions. Each message says what was wrong and how to fix it; the CLI prints it
without a traceback."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


class VSRError(Exception):
    """Base class of every error vsr raises on bad input."""


class RecipeError(VSRError, ValueError):
    """A recipe key holds a value that cannot be used. Names the key, the value and the valid choices."""

    def __init__(self, key: str, value: Any, problem: str, choices: Iterable[Any] = ()):
        self.key, self.value, self.problem, self.choices = key, value, problem, list(choices)
        message = f"recipe key '{key}' = {value!r}: {problem}"
        if self.choices:
            message += f"; valid choices: {', '.join(map(str, self.choices))}"
        super().__init__(message)


class CheckpointError(VSRError):
    """A checkpoint file cannot be loaded into the model (wrong format, missing or unexpected keys)."""


class DataError(VSRError):
    """A data set on disk is missing or malformed. Names the path and what was wrong."""


class VideoError(VSRError):
    """A video or frame folder cannot be read or written."""
