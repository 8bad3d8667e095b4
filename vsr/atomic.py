"""Atomic file writes: checkpoints, run results, metrics and reports are never left half-written.

Everything is written to a temporary file in the destination's folder (same file system) and renamed over
the destination only once complete: a crash or Ctrl-C leaves either the old file or the new one.

A write that fails for want of room (a full disk or quota: ``ENOSPC``, ``EDQUOT``; a file-size limit:
``EFBIG``) ends in an ``OSError`` naming the destination, whatever the writer reported it as: ``torch.save``
raises a ``RuntimeError`` ("unexpected pos") over the ``OSError`` of its short write, and safetensors a
``SafetensorError`` ("... (os error 28)"). :func:`read_json` reads such a file back, naming it if it is not
JSON (cut short by a copy, or edited).
"""

from __future__ import annotations

import errno
import json
import os
import re
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from vsr.errors import DataError

#: The errors of a write that found no room: a full disk, a full quota, a file-size limit (``ulimit -f``, FAT32).
NO_ROOM = frozenset({errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC), errno.EFBIG})


def _no_room(err: BaseException) -> OSError | None:
    """The ``OSError`` of a write that found no room behind ``err`` (``err`` itself, one it was raised while
    handling, or an error of a Rust writer that says "(os error N)"), or None."""
    seen: BaseException | None = err
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno in NO_ROOM:
            return seen
        found = re.search(r"\(os error (\d+)\)", str(seen))
        if found and int(found[1]) in NO_ROOM:
            return OSError(int(found[1]), os.strerror(int(found[1])))
        seen = seen.__context__
    return None


def _file_mode() -> int:
    """What ``open()`` would give a new file (mkstemp's own 0600 would hide results from other users)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


@contextmanager
def atomic_path(path: str | Path, suffix: str = ".tmp") -> Iterator[Path]:
    """A temporary path beside ``path`` to write to (by any writer, e.g. ``fig.savefig``); renamed to
    ``path`` when the block ends without an error, deleted otherwise. ``suffix`` keeps writers that infer
    the format from the name happy."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.chmod(tmp, _file_mode())
        os.replace(tmp, path)
    except Exception as err:
        failed = _no_room(err) or err
        if not isinstance(failed, OSError) or failed.errno is None:
            raise
        named = failed.filename not in (None, str(tmp))  # write() and fsync() name no file
        if named and failed is err:
            raise
        raise OSError(failed.errno, failed.strerror, failed.filename if named else str(path)) from err
    finally:
        tmp.unlink(missing_ok=True)


@contextmanager
def atomic_open(path: str | Path, mode: str = "w", **kwargs: Any) -> Iterator[IO]:
    """``open(path, mode)`` written atomically (and synced to disk before the rename)."""
    with atomic_path(path) as tmp, open(tmp, mode, **kwargs) as f:
        yield f
        f.flush()
        os.fsync(f.fileno())


def write_with(writer: Callable[[Path], Any], path: str | Path, suffix: str = ".tmp") -> Path:
    """Call ``writer(temporary_path)``, then rename the result to ``path``."""
    with atomic_path(path, suffix) as tmp:
        writer(tmp)
    return Path(path)


def write_text(text: str, path: str | Path) -> Path:
    with atomic_open(path, "w", encoding="utf-8") as f:
        f.write(text)
    return Path(path)


def write_json(obj: Any, path: str | Path) -> Path:
    """JSON (indented, non-JSON values as ``str``) to ``path``, atomically."""
    return write_text(json.dumps(obj, indent=2, default=str) + "\n", path)


def read_json(path: str | Path) -> Any:
    """The content of a JSON file; a file that is not JSON (cut short, edited, binary) fails with a
    :class:`~vsr.errors.DataError` naming it."""
    path = Path(path)
    try:
        return json.loads(path.read_bytes().decode("utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        reason = (
            f"{err.msg} at line {err.lineno}, column {err.colno}"
            if isinstance(err, json.JSONDecodeError)
            else "not UTF-8 text"
        )
        raise DataError(
            f"{path} is not valid JSON ({reason}): the file was cut short or edited; restore it, or delete it "
            "and run again what wrote it"
        ) from None


__all__ = ["atomic_open", "atomic_path", "read_json", "write_json", "write_text", "write_with"]
