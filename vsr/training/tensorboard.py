"""TensorBoard event files of a run (``train.tensorboard``, on by default), written into the run folder.

Every number of ``log.jsonl`` is also a scalar here, under ``<event>/<key>`` at the entry's iteration
(``train/loss``, ``train/lr``, ``train/it_per_s``, ``val/psnr``, ``val/ssim``, ``val/baseline_psnr``, ...):
:class:`vsr.training.runlog.RunLog` hands each entry to :meth:`TensorBoardLog.entry`, so the two logs
cannot disagree. Each validation of a super-resolution run also adds an image, ``val/bicubic_output_gt``:
one frame of the first validation clip as bicubic | output | GT side by side.

The event files lie in the run folder itself, so TensorBoard names a run by its folder:
``tensorboard --logdir runs/studies`` shows ``cpu/propagation/bidirectional/seed0`` beside its other
variants and seeds. A resumed run writes a new event file that starts with a purge marker just after the
resumed iteration: TensorBoard drops what the interrupted run had logged after its checkpoint, as
:meth:`RunLog.truncate` does for ``log.jsonl`` (a new run's marker, at 0, drops a failed start's events).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from torch import Tensor
from torch.utils.tensorboard import SummaryWriter

log = logging.getLogger(__name__)

#: The keys of a log entry that are not plotted: the step itself, the wall-clock time and flags.
NOT_PLOTTED = {"iteration", "time", "event"}


def scalars(entry: Mapping[str, Any]) -> dict[str, float]:
    """The scalars of one ``log.jsonl`` entry: ``{"<event>/<key>": value}`` for every finite number (booleans
    and texts are left out)."""
    event = entry.get("event", "train")
    return {
        f"{event}/{key}": float(value)
        for key, value in entry.items()
        if key not in NOT_PLOTTED
        and isinstance(value, (int, float))
        and not isinstance(value, bool)
        and math.isfinite(value)
    }


class TensorBoardLog:
    """The event files of one run folder (see the module docstring); earlier events at ``purge_step`` and
    after are dropped by TensorBoard's reader."""

    def __init__(self, out_dir: Path, purge_step: int = 0):
        self.writer = SummaryWriter(log_dir=str(out_dir), purge_step=purge_step)

    def entry(self, entry: Mapping[str, Any]) -> None:
        """Plot the numbers of a ``log.jsonl`` entry at its iteration."""
        step = int(entry.get("iteration", 0))
        for tag, value in scalars(entry).items():
            self.writer.add_scalar(tag, value, step)

    def image(self, tag: str, image: Tensor, step: int) -> None:
        """An image ``(3, h, w)`` in [0, 1]."""
        self.writer.add_image(tag, image.clamp(0, 1), step, dataformats="CHW")

    def flush(self) -> None:
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


__all__ = ["NOT_PLOTTED", "TensorBoardLog", "scalars"]
