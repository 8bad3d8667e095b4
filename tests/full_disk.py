"""A file on a nearly full disk, for the tests of what vsr does when the disk fills up."""

from __future__ import annotations

import errno
import io
import os


class NearlyFullFile(io.FileIO):
    """A file on a disk with ``room`` bytes left, written as write(2) writes there: a write is cut short at the
    room left, and the next one fails with ENOSPC (torch.save then raised a RuntimeError over the OSError)."""

    def __init__(self, path: str | os.PathLike, room: int):
        super().__init__(path, "w")
        self.room = room

    def write(self, data) -> int:
        if self.room == 0:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        written = super().write(memoryview(data).cast("B")[: self.room])
        self.room -= written
        return written
