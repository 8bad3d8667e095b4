"""Atomic file writes: checkpoints, run results, metrics and reports are never left half-written.

Everything is written to a temporary file in the destination's folder (same file system) and renamed over
the destination only once complete: a crash or Ctrl-C leaves either the old file or the new one.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any


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


__all__ = ["atomic_open", "atomic_path", "write_json", "write_text", "write_with"]
