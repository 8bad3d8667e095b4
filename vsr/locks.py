"""Exclusive locks on the folders vsr writes to (a run folder, a study folder): one writer at a time.

A folder is locked through the file ``.vsr.lock`` inside it: the writer holds an exclusive ``flock`` on it
for as long as it writes, and the file names the holder (pid, host, command, start time) so that a second
writer is refused with a message saying who holds the folder. The kernel drops an ``flock`` when its
process dies, however it dies, so a lock left behind by a killed process is stale by construction: the
next writer takes it over and logs whose it was. A clean release deletes the file.

On a file system without ``flock`` (some cluster file systems), the file's content is the lock: a holder
on this host that is still running (same pid, same start time) or any holder on another host refuses the
folder; a holder on this host that is no longer running is taken over, with a log line.

The lock file is vsr's own: one that is a symbolic link (to a user's file, which taking the lock would
truncate and releasing it delete) is refused, and never opened through.

Locks are reentrant within a process (the study driver locks a run folder and the trainer it calls locks
the same folder again), and a process may lend the locks it holds to a child it starts
(:func:`lent_to_child`: ``torchrun`` training a study's run on several GPUs).
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import socket
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: content-only locks
    fcntl = None

from vsr.errors import VSRError

log = logging.getLogger(__name__)

LOCK_FILE = ".vsr.lock"  # in the locked folder; deleted on release
LENT_LOCKS_ENV = "VSR_LENT_LOCKS"  # JSON {lock file: pid of the holder that lent it to this process}
_NO_FLOCK = {errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL}
_NOFOLLOW, _CLOEXEC = getattr(os, "O_NOFOLLOW", 0), getattr(os, "O_CLOEXEC", 0)


class FolderInUse(VSRError):
    """Another process holds the lock of a folder vsr would write to. Names the holder."""

    def __init__(self, folder: Path, what: str, holder: dict[str, Any] | None, lock_file: Path):
        self.folder, self.holder = folder, holder
        if holder:
            who = f"pid {holder.get('pid')} on {holder.get('host')}"
            detail = f" ({holder.get('command')}, since {holder.get('since')})" if holder.get("command") else ""
        else:
            who, detail = "another process (it has not yet written its pid)", ""
        hint = "wait for it to finish or stop it, or choose another folder"
        if holder and holder.get("host") != socket.gethostname():
            hint += f"; if that process is gone, delete {lock_file}"
        super().__init__(f"{what} {folder} is in use: {who} is writing to it{detail}; {hint}")


class LockFileIsLink(VSRError):
    """The lock file of a folder is a symbolic link: vsr did not make it, and will not write through it."""

    def __init__(self, folder: Path, what: str, lock_file: Path):
        target = os.readlink(lock_file) if lock_file.is_symlink() else "?"
        super().__init__(
            f"{what} {folder}: its lock file {lock_file} is a symbolic link (to {target}); vsr makes its lock file "
            "itself and writes through no link, so the folder is left untouched. Delete the link, then run again"
        )


def _process_start(pid: int) -> str | None:
    """The start time of process ``pid`` in clock ticks since boot (Linux), to tell a reused pid apart."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def _running(holder: dict[str, Any]) -> bool:
    """Whether the holder named in a lock file still runs (on this host; another host's: assumed yes)."""
    if holder.get("host") != socket.gethostname():
        return True
    pid = holder.get("pid")
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    started = holder.get("process_start")
    return started is None or _process_start(pid) in (None, started)


def _me() -> dict[str, Any]:
    return {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "process_start": _process_start(os.getpid()),
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])[:300] if sys.argv else "python",
        "since": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def _read_holder(fd: int) -> dict[str, Any] | None:
    os.lseek(fd, 0, os.SEEK_SET)
    text = b""
    while chunk := os.read(fd, 65536):
        text += chunk
    try:
        holder = json.loads(text.decode())
    except (UnicodeDecodeError, ValueError):
        return None
    return holder if isinstance(holder, dict) else None


def _lock_key(folder: str | os.PathLike) -> str:
    """The lock file of ``folder`` as an absolute path, the folder resolved but not the file (never a link's
    target)."""
    return os.path.join(os.path.realpath(folder), LOCK_FILE)


def _lent() -> dict[str, int]:
    try:
        lent = json.loads(os.environ.get(LENT_LOCKS_ENV, "{}"))
    except ValueError:
        return {}
    return lent if isinstance(lent, dict) else {}


@dataclass
class _Held:
    fd: int | None  # None: a lock lent by the parent process (nothing to release here)
    count: int = 1


_HELD: dict[str, _Held] = {}  # lock file (absolute path) -> what this process holds


class FolderLock:
    """An exclusive lock on ``folder`` (created if missing) for one writer; a context manager.

    :meth:`acquire` raises :class:`FolderInUse` naming the holder when another process holds the folder.
    Releasing (or the lock object being garbage-collected) gives it back.
    """

    def __init__(self, folder: str | os.PathLike, what: str = "folder"):
        self.folder, self.what = Path(folder), what
        self.path = self.folder / LOCK_FILE
        self._key: str | None = None

    @property
    def held(self) -> bool:
        return self._key is not None

    def acquire(self) -> FolderLock:
        if self.held:
            return self
        self.folder.mkdir(parents=True, exist_ok=True)
        key = _lock_key(self.folder)
        if key in _HELD:
            _HELD[key].count += 1
        else:
            _HELD[key] = _Held(self._take())
        self._key = key
        return self

    def _open(self) -> int:
        """The lock file, opened (created if missing) without following a link; a link there is refused."""
        try:
            return os.open(self.path, os.O_RDWR | os.O_CREAT | _NOFOLLOW | _CLOEXEC, 0o644)
        except OSError as err:
            if err.errno != errno.ELOOP and not self.path.is_symlink():
                raise
            raise LockFileIsLink(self.folder, self.what, self.path) from None

    def _take(self) -> int | None:
        while True:
            fd = self._open()
            try:
                if not self._lock(fd):
                    os.close(fd)
                    return None  # lent by the parent process
                try:
                    same = os.lstat(self.path).st_ino == os.fstat(fd).st_ino
                except FileNotFoundError:
                    same = False
                if not same:  # the previous holder released (deleted) the file while we waited: try again
                    os.close(fd)
                    continue
                previous = _read_holder(fd)
                if previous:
                    log.warning(
                        "taking over the stale lock of %s %s: pid %s on %s (%s) ended without releasing it",
                        self.what, self.folder, previous.get("pid"), previous.get("host"), previous.get("command"),
                    )  # fmt: skip
                os.ftruncate(fd, 0)
                os.lseek(fd, 0, os.SEEK_SET)
                os.write(fd, (json.dumps(_me()) + "\n").encode())
                os.fsync(fd)
                return fd
            except BaseException:
                os.close(fd)
                raise

    def _lock(self, fd: int) -> bool:
        """Lock ``fd`` or raise :class:`FolderInUse`; False when the holder lent the lock to this process."""
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return True
            except BlockingIOError:
                holder = self._holder_of_busy(fd)
                if self._is_lent(holder):
                    return False
                raise FolderInUse(self.folder, self.what, holder, self.path) from None
            except OSError as err:
                if err.errno not in _NO_FLOCK:
                    raise
                log.warning("%s: the file system has no flock; the lock is the file's content only", self.path)
        holder = _read_holder(fd)
        if holder and self._is_lent(holder):
            return False
        if holder and _running(holder):
            raise FolderInUse(self.folder, self.what, holder, self.path)
        return True

    def _holder_of_busy(self, fd: int) -> dict[str, Any] | None:
        """The holder named in a locked file: it writes its name just after locking, so wait a moment."""
        for _ in range(20):
            holder = _read_holder(fd)
            if holder:
                return holder
            time.sleep(0.05)
        return None

    def _is_lent(self, holder: dict[str, Any] | None) -> bool:
        lender = _lent().get(_lock_key(self.folder))
        return bool(holder) and lender is not None and holder.get("pid") == lender

    def release(self) -> None:
        if self._key is None:
            return
        key, self._key = self._key, None
        held = _HELD[key]
        held.count -= 1
        if held.count > 0:
            return
        del _HELD[key]
        if held.fd is None:
            return
        try:
            if os.fstat(held.fd).st_ino == os.lstat(key).st_ino:
                os.unlink(key)  # while still locked: a waiter on this file sees it gone and starts over
        except FileNotFoundError:
            pass
        finally:
            os.close(held.fd)

    def __enter__(self) -> FolderLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.release()


@contextlib.contextmanager
def folder_lock(folder: str | os.PathLike, what: str = "folder") -> Iterator[FolderLock]:
    """Hold the lock of ``folder`` for the block (see :class:`FolderLock`)."""
    lock = FolderLock(folder, what).acquire()
    try:
        yield lock
    finally:
        lock.release()


def lent_to_child(folders: Iterable[str | os.PathLike]) -> dict[str, str]:
    """The environment for a child process that writes to ``folders`` on behalf of this process, which
    must hold their locks: in the child, locking one of them succeeds without taking the lock."""
    lent = _lent()
    for folder in folders:
        key = _lock_key(folder)
        if key not in _HELD:
            raise RuntimeError(f"cannot lend the lock of {folder}: this process does not hold it")
        lent[key] = lent.get(key, os.getpid()) if _HELD[key].fd is None else os.getpid()
    return {**os.environ, LENT_LOCKS_ENV: json.dumps(lent)}


def holds(folder: str | os.PathLike) -> bool:
    """Whether this process holds (or was lent) the lock of ``folder``."""
    return _lock_key(folder) in _HELD


__all__ = ["LOCK_FILE", "FolderInUse", "FolderLock", "LockFileIsLink", "folder_lock", "holds", "lent_to_child"]
