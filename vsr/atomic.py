"""Atomic file writes: checkpoints, run results, metrics and reports are never left half-written.

Everything is written to a temporary file in the destination's folder (same file system) and renamed over
the destination only once complete: a crash or Ctrl-C leaves either the old file or the new one.

A write that fails for want of room (a full disk or quota: ``ENOSPC``, ``EDQUOT``; a file-size limit:
``EFBIG``) ends in an ``OSError`` naming the destination, whatever the writer reported it as: ``torch.save``
raises a ``RuntimeError`` ("unexpected pos") over the ``OSError`` of its short write, and safetensors a
``SafetensorError`` ("... (os error 28)"). :func:`read_json` reads such a file back, naming it if it is not
JSON (cut short by a copy, or edited).

What vsr writes over, it wrote itself, and it writes through no symbolic link it did not make: the one way to
write safely, used by every command that writes.

* An atomic write refuses a destination that is a link (:func:`refuse_link`): it would replace the user's
  link, and a writer that opens the path instead of renaming onto it would write into the link's target.
* A folder vsr fills (an output's ``frames/<clip>``, a data set's clip folder) is made by :func:`make_folder`,
  which refuses a link anywhere below the folder vsr was given, so that nothing lands in a folder a link
  points to (a data set's ground truth).
* A folder vsr wrote carries the marker file ``.vsr-output`` (:data:`OUTPUT_MARKER`, :func:`write_marker`,
  :func:`read_marker`) naming the kind of output; a data set names itself by its own description file.
* Before vsr deletes or replaces a folder it wrote, :func:`refuse_foreign` lists what is in it that vsr did
  not write (a file of the user's, a clip folder of another set, any link) and refuses if there is any.

A refusal is a :class:`NotWrittenByVsr` error naming the path, why, and what to do.
"""

from __future__ import annotations

import errno
import json
import os
import re
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from vsr.errors import DataError, VSRError, shorten

#: The errors of a write that found no room: a full disk, a full quota, a file-size limit (``ulimit -f``, FAT32).
NO_ROOM = frozenset({errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC), errno.EFBIG})

OUTPUT_MARKER = ".vsr-output"  # in a folder vsr wrote: {"written_by": "vsr", "kind": ..., ...}
_SHOWN = 3  # foreign entries a refusal names


class NotWrittenByVsr(VSRError):
    """vsr was about to write through a link, or over or into something it did not write: refused, untouched."""


def refuse_link(path: str | Path, what: str = "") -> None:
    """Refuse ``path`` if it is a symbolic link (vsr writes through none, and replaces none)."""
    path = Path(path)
    if path.is_symlink():
        target = shorten(os.readlink(path))
        raise NotWrittenByVsr(
            f"{what + ' ' if what else ''}{path} is a symbolic link (to {target}), and vsr writes through no link it "
            "did not make: remove the link, or choose another path"
        )


def links_under(folder: str | Path) -> list[Path]:
    """The symbolic links inside ``folder`` (at any depth, not followed), ``folder`` itself included."""
    folder = Path(folder)
    if folder.is_symlink():
        return [folder]
    found = []
    for top, dirs, files in os.walk(folder):
        found += [Path(top, name) for name in [*dirs, *files] if Path(top, name).is_symlink()]
    return found


def listed(items: Sequence[str], shown: int = _SHOWN) -> str:
    """The first ``shown`` of ``items`` for a message: ``"a, b, c and 4 more"``."""
    more = f" and {len(items) - shown} more" if len(items) > shown else ""
    return ", ".join(items[:shown]) + more


def refuse_links_under(folder: str | Path, what: str) -> None:
    """Refuse to write into ``folder`` if it, or anything in it, is a symbolic link: a link there would take
    what vsr writes into its target (another folder's files)."""
    links = links_under(folder)
    if links:
        shown = listed([f"{p} -> {shorten(os.readlink(p))}" for p in links])
        raise NotWrittenByVsr(
            f"{what} {folder} holds symbolic links ({shown}), and vsr writes through no link it did not make: "
            "remove them, or choose another folder"
        )


def make_folder(base: str | Path, *parts: str) -> Path:
    """``base/parts...``: ``base`` created if missing, and each folder below it too, refused if it is a link or
    a file."""
    folder = Path(base)
    folder.mkdir(parents=True, exist_ok=True)
    for part in Path(*parts).parts if parts else ():
        folder = folder / part
        refuse_link(folder)
        if folder.exists() and not folder.is_dir():
            raise NotWrittenByVsr(f"{folder} is a file, not a folder, and vsr did not write it; move it away")
        folder.mkdir(exist_ok=True)
    return folder


def write_marker(folder: str | Path, kind: str | None = None, **info: Any) -> Path:
    """Mark ``folder`` as an output of vsr of ``kind`` (``test frames``...), with ``info``. The frame folders of
    ``vsr upscale``, the first outputs marked, have no kind: ``{"written_by": "vsr", "frames": n}``."""
    kind_entry = {} if kind is None else {"kind": kind}
    return write_json({"written_by": "vsr", **kind_entry, **info}, Path(folder) / OUTPUT_MARKER)


def read_marker(folder: str | Path) -> dict[str, Any] | None:
    """The content of ``folder``'s marker file, or None if it has none (or not vsr's: a link, not JSON)."""
    marker = Path(folder) / OUTPUT_MARKER
    if marker.is_symlink() or not marker.is_file():
        return None
    try:
        content = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return content if isinstance(content, dict) and content.get("written_by") == "vsr" else None


def json_with(*keys: str) -> Callable[[Path], bool]:
    """Whether a file is a JSON object holding ``keys``: how vsr knows a results file it wrote, which carries
    no marker of its own (``metrics.json``)."""

    def ours(path: Path) -> bool:
        try:
            content = json.loads(path.read_bytes())
        except (OSError, ValueError):
            return False
        return isinstance(content, dict) and all(key in content for key in keys)

    return ours


def csv_with(*columns: str) -> Callable[[Path], bool]:
    """Whether a file is a CSV table whose header starts with ``columns`` (``per_frame.csv``: clip, frame, name)."""

    def ours(path: Path) -> bool:
        try:
            with open(path, "rb") as f:
                header = f.readline(65536).decode("utf-8").strip()
        except (OSError, UnicodeDecodeError):
            return False
        return header.split(",")[: len(columns)] == list(columns)

    return ours


def refuse_foreign_files(folder: str | Path, files: dict[str, Callable[[Path], bool]], action: str) -> None:
    """Refuse to write the ``files`` of ``folder`` (name -> whether an existing file there is one vsr wrote) if
    one is a link, or an existing file vsr did not write."""
    for name, ours in files.items():
        path = Path(folder) / name
        refuse_link(path)
        if path.exists() and not (path.is_file() and ours(path)):
            raise NotWrittenByVsr(
                f"{path} exists and vsr did not write it (not what {action} writes there), so it is left untouched; "
                "move it away, or choose another folder"
            )


def foreign_entries(root: str | Path, expected: Callable[[tuple[str, ...], bool], bool]) -> list[Path]:
    """What is under ``root`` that vsr did not write: every link, and every entry for which
    ``expected(parts relative to root, is_folder)`` is false (a folder not expected is listed, not entered)."""
    root = Path(root)
    found = []
    for top, dirs, files in os.walk(root):
        parts = Path(top).relative_to(root).parts
        for name in sorted(files):
            path = Path(top, name)
            if path.is_symlink() or not expected((*parts, name), False):
                found.append(path)
        for name in sorted(dirs):
            path = Path(top, name)
            if path.is_symlink() or not expected((*parts, name), True):
                found.append(path)
        dirs[:] = [d for d in sorted(dirs) if Path(top, d) not in found]
    return found


def refuse_foreign(root: str | Path, expected: Callable[[tuple[str, ...], bool], bool], action: str) -> None:
    """Refuse to ``action`` (``replace it``, ``delete it``) the folder ``root`` if it holds anything that vsr
    did not write (:func:`foreign_entries`); a link at ``root`` itself is refused too."""
    refuse_link(root)
    foreign = foreign_entries(root, expected)
    if foreign:
        shown = listed([str(p.relative_to(root)) for p in foreign])
        raise NotWrittenByVsr(
            f"{root} holds {shown}, which vsr did not write (or a link), so vsr will not {action}; move "
            "them out of it first, or choose another folder"
        )


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
    refuse_link(path)
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


def read_json_object(path: str | Path) -> dict[str, Any]:
    """:func:`read_json` of a file that holds a JSON object (a description, a record); anything else fails naming
    the file."""
    content = read_json(path)
    if not isinstance(content, dict):
        raise DataError(
            f"{path} holds a JSON {type(content).__name__}, not an object: the file was edited; restore it, or delete "
            "it and run again what wrote it"
        )
    return content


__all__ = [
    "OUTPUT_MARKER",
    "NotWrittenByVsr",
    "atomic_open",
    "atomic_path",
    "csv_with",
    "foreign_entries",
    "json_with",
    "links_under",
    "listed",
    "make_folder",
    "read_json",
    "read_json_object",
    "read_marker",
    "refuse_foreign",
    "refuse_foreign_files",
    "refuse_link",
    "refuse_links_under",
    "write_json",
    "write_marker",
    "write_text",
    "write_with",
]
