"""The project's own exceptions. Each message says what was wrong and how to fix it; the CLI prints it
without a traceback.

A message may quote what a user gave (a value, a path); :func:`shorten` and :func:`brief_repr` bound how
much of it is echoed, so a megabyte-long value or a deeply nested one is never printed whole.
"""

from __future__ import annotations

import reprlib
from collections.abc import Iterable
from typing import Any

#: The most characters of one quoted user value in a message.
VALUE_CHARS = 120

_repr = reprlib.Repr()
_repr.maxlevel, _repr.maxstring, _repr.maxother = 3, VALUE_CHARS, VALUE_CHARS
_repr.maxlist = _repr.maxtuple = _repr.maxdict = _repr.maxset = 8


def shorten(text: str, limit: int = VALUE_CHARS) -> str:
    """``text`` cut to at most ``limit`` characters, its middle replaced by ``…`` when it is longer."""
    if len(text) <= limit:
        return text
    head = (limit - 1) * 2 // 3
    return f"{text[:head]}…{text[len(text) - (limit - 1 - head) :]}"


def brief_repr(value: Any, limit: int = VALUE_CHARS) -> str:
    """A bounded ``repr``: nested containers and long strings abbreviated (``reprlib``), then :func:`shorten`."""
    return shorten(_repr.repr(value), limit)


class VSRError(Exception):
    """Base class of every error vsr raises on bad input."""


class RecipeError(VSRError, ValueError):
    """A recipe key holds a value that cannot be used. Names the key, the value and the valid choices."""

    def __init__(self, key: str, value: Any, problem: str, choices: Iterable[Any] = ()):
        self.key, self.value, self.problem, self.choices = key, value, problem, list(choices)
        message = f"recipe key '{shorten(str(key))}' = {brief_repr(value)}: {problem}"
        if self.choices:
            message += f"; valid choices: {', '.join(map(str, self.choices))}"
        super().__init__(message)


class ArgumentError(VSRError, ValueError):
    """A function argument or command-line option holds a value that cannot be used (names it and what is
    allowed)."""


class CheckpointError(VSRError):
    """A checkpoint file cannot be loaded into the model (wrong format, missing or unexpected keys)."""


class DataError(VSRError):
    """A data set on disk is missing or malformed. Names the path and what was wrong."""


class VideoError(VSRError):
    """A video or frame folder cannot be read or written."""
