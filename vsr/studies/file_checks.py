"""Checks of what a file read back holds: the readers of :mod:`vsr.studies.runs` (what reports and the study
driver's resume read) take nothing on trust. A file that was cut short or edited ends in one
:class:`~vsr.errors.DataError` naming the file, what is wrong with it and the fix, never a ``KeyError`` or a
``TypeError`` somewhere in a report.

This module knows kinds of values (text, whole numbers, numbers, objects) and CSV tables; which file holds
what is :mod:`vsr.studies.runs`' to say.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from vsr.atomic import read_json
from vsr.errors import DataError, VSRError, brief_repr, shorten


def damaged(path: str | Path, problem: str, fix: str) -> DataError:
    """The error of a file whose content cannot be used: ``PATH: PROBLEM; the file was edited or cut short:
    FIX``."""
    return DataError(f"{path}: {problem}; the file was edited or cut short: {fix}")


def _is_whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


#: What a field may hold: a description for the message, and the test.
KINDS: dict[str, tuple[str, Callable[[Any], bool]]] = {
    "text": ("text", lambda v: isinstance(v, str)),
    "whole": ("a whole number", _is_whole),
    "number": ("a number", lambda v: _is_number(v) and not math.isnan(v)),
    "number or NaN": ("a number", _is_number),
    "object": ("a JSON object", lambda v: isinstance(v, dict)),
    "texts": ("a list of text", lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v)),
    "wholes": ("a list of whole numbers", lambda v: isinstance(v, list) and all(_is_whole(x) for x in v)),
    "list": ("a list", lambda v: isinstance(v, list)),
}


def json_object(path: str | Path, fix: str) -> dict[str, Any]:
    """The JSON object in ``path`` (a file that is not JSON is named by :func:`vsr.atomic.read_json`)."""
    data = read_json(path)
    if not isinstance(data, dict):
        raise damaged(path, f"it holds {brief_repr(data, 40)} where a JSON object {{...}} is expected", fix)
    return data


def require(
    path: str | Path,
    data: Mapping[str, Any],
    fields: Mapping[str, str],
    fix: str,
    *,
    optional: Iterable[str] = (),
    where: str = "",
) -> None:
    """Every key of ``fields`` is in ``data`` and holds its kind (a key of :data:`KINDS`; ``"number?"``:
    that kind or null); the keys in ``optional`` may be missing. ``where`` names the part of the file that
    ``data`` is (``"expect[0]"``)."""
    optional = set(optional)
    for key, kind in fields.items():
        # 'expect[0].better', or for a line of a JSON-lines file (where="line 3: "): line 3: 'iteration'
        name = f"{where}{key!r}" if where.endswith(" ") else repr(f"{where}.{key}" if where else key)
        if key not in data:
            if key in optional:
                continue
            raise damaged(path, f"{name} is missing", fix)
        value = data[key]
        nullable = kind.endswith("?")
        described, test = KINDS[kind.rstrip("?")]
        if not ((nullable and value is None) or test(value)):
            raise damaged(path, f"{name} = {brief_repr(value, 60)} is not {described}", fix)


def json_lines(path: str | Path, fix: str, fields: Mapping[str, str] | None = None) -> list[dict[str, Any]]:
    """The JSON objects of a JSON-lines file, one a line (blank lines skipped); a line that is not one is
    named by its number. ``fields``: the kinds the keys of each line hold where it has them (:func:`require`)."""
    entries = []
    for number, line in enumerate(Path(path).read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except json.JSONDecodeError as err:
            raise damaged(path, f"line {number} is not valid JSON ({err.msg} at column {err.colno})", fix) from None
        if not isinstance(entry, dict):
            raise damaged(path, f"line {number} holds {brief_repr(entry, 40)}, not a JSON object {{...}}", fix)
        if fields:
            require(path, entry, fields, fix, optional=fields, where=f"line {number}: ")
        entries.append(entry)
    return entries


def csv_table(
    path: str | Path,
    fix: str,
    *,
    columns: Sequence[str],
    whole: Sequence[str] = (),
    numbers: Sequence[str] = (),
    no_nan: Sequence[str] = (),
    text: Sequence[str] = (),
    rows: bool = True,
    unique: Sequence[str] = (),
) -> pd.DataFrame:
    """The table in a CSV file, with every column of ``columns``; the ``whole`` ones hold whole numbers, the
    ``numbers`` ones numbers (empty cells read as NaN; in the ``no_nan`` ones a NaN is refused, naming its
    line); the ``text`` ones are read as text. ``rows``: at least one row is needed; ``unique``: columns that no
    two rows hold the same values in (a row counted twice)."""
    path = Path(path)
    if not path.read_bytes().strip():
        raise damaged(path, "it is empty (not even its header line is left)", fix)
    try:
        table = pd.read_csv(path, dtype=dict.fromkeys(text, str))
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, ValueError) as err:
        problem = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise damaged(path, f"it is not a CSV table ({shorten(problem, 80)})", fix) from None
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise damaged(path, f"it has no column {missing[0]!r} (its columns: {', '.join(map(str, table.columns))})",
                      fix)  # fmt: skip
    if rows and table.empty:
        raise damaged(path, "it has a header but no rows", fix)
    for column in [*whole, *numbers]:
        values = pd.to_numeric(table[column], errors="coerce")
        bad = values.isna() & table[column].notna()
        if column in whole:
            bad |= values.isna() | (values != values.round())
        if bad.any():
            row = int(bad.to_numpy().argmax())
            kind = "a whole number" if column in whole else "a number"
            raise damaged(path, f"line {row + 2}: {column} = {_cell(table, column, row)} is not {kind}", fix)
        table[column] = values.astype("int64") if column in whole else values.astype(float)
    for column in no_nan:
        nan = table[column].isna()
        if nan.any():
            row = int(nan.to_numpy().argmax())
            raise damaged(path, f"line {row + 2}: {column} is NaN (empty or not a number), in {int(nan.sum())} "
                          f"row(s)", fix)  # fmt: skip
    repeated = table.duplicated(list(unique)) if unique else pd.Series(False, index=table.index)
    if repeated.any():
        row = int(repeated.to_numpy().argmax())
        values = ", ".join(f"{column} {_cell(table, column, row)}" for column in unique)
        raise damaged(path, f"line {row + 2} repeats {values} of an earlier line (a row counted twice)", fix)
    return table


def _cell(table: pd.DataFrame, column: str, row: int) -> str:
    """One cell as a message quotes it: text quoted, a number (numpy's too) as a number."""
    cell = table[column].iloc[row]
    return brief_repr(cell.item() if hasattr(cell, "item") else cell, 40)


def reading(path: str | Path, fix: str, read: Callable[[], Any]) -> Any:
    """``read()``, with what a reader raises on content it did not expect (after the checks above) turned
    into the one-line error naming ``path``."""
    try:
        return read()
    except VSRError:
        raise
    except (KeyError, ValueError, TypeError, IndexError, AttributeError) as err:
        raise damaged(path, f"its content cannot be read ({type(err).__name__}: {shorten(str(err), 80)})",
                      fix) from None  # fmt: skip


__all__ = ["KINDS", "csv_table", "damaged", "json_lines", "json_object", "reading", "require"]
