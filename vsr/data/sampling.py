"""Which training samples each iteration of each process draws: a pure function of the iteration, so that
a resumed run, and a DDP run, see exactly the samples of one uninterrupted process."""

from __future__ import annotations

from collections.abc import Iterator

from torch.utils.data import Sampler


class RunSampler(Sampler[int]):
    """The sample indices of iterations ``start .. stop - 1`` for one rank, in order: iteration ``i`` of rank
    ``r`` of ``W`` takes samples ``(i·W + r)·B + j`` for ``j < B``. Resuming at ``start`` continues the
    exact sequence; a DDP run of ``W`` ranks with batch ``B`` sees the samples of one process with ``W·B``."""

    def __init__(self, start: int, stop: int, batch_size: int, rank: int = 0, world_size: int = 1):
        self.start, self.stop, self.batch_size = start, stop, batch_size
        self.rank, self.world_size = rank, world_size

    def __len__(self) -> int:
        return max(self.stop - self.start, 0) * self.batch_size

    def __iter__(self) -> Iterator[int]:
        for i in range(self.start, self.stop):
            first = (i * self.world_size + self.rank) * self.batch_size
            yield from range(first, first + self.batch_size)


__all__ = ["RunSampler"]
