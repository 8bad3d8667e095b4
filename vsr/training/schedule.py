"""The learning-rate schedule of ``train.scheduler``: BasicVSR's cosine annealing with restarts, stepped
once per iteration (paper §4; MMagic ``CosineRestartLR``, BasicSR ``CosineAnnealingRestartLR``), or a
constant rate."""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from typing import Any

import torch
from torch.optim.lr_scheduler import LambdaLR, LRScheduler

from vsr.errors import RecipeError

log = logging.getLogger(__name__)


def cosine_restart_lr(
    base_lr: float, iteration: int, periods: list[int], restart_weights: list[float], eta_min: float
) -> float:
    """The learning rate of cosine annealing with restarts at ``iteration`` (MMagic ``CosineRestartLR``).

    In period ``k`` (starting at ``c_k``, the sum of the earlier periods, of length ``p_k``):
    ``eta_min + w_k / 2 · (base_lr - eta_min) · (1 + cos(pi · (iteration - c_k) / p_k))``. After the last
    period the rate stays at ``eta_min``.
    """
    start = 0
    for period, weight in zip(periods, restart_weights, strict=True):
        if iteration < start + period:
            return eta_min + 0.5 * weight * (base_lr - eta_min) * (1 + math.cos(math.pi * (iteration - start) / period))
        start += period
    return eta_min


class CosineRestartLR(LRScheduler):
    """Cosine annealing with restarts, stepped once per iteration; ``eta_min`` is the same absolute floor for
    every parameter group (as in the reference, where SPyNet's lr also ends at 1e-7)."""

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        periods: list[int],
        restart_weights: list[float],
        eta_min: float,
        last_epoch: int = -1,
    ):
        self.periods, self.restart_weights, self.eta_min = list(periods), list(restart_weights), eta_min
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        return [
            cosine_restart_lr(base, self.last_epoch, self.periods, self.restart_weights, self.eta_min)
            for base in self.base_lrs
        ]


def scheduled_lrs(scheduler: LRScheduler) -> list[float]:
    """Each group's learning rate at the scheduler's step ``last_epoch``, from the closed form of the
    schedules :func:`build_scheduler` makes (it does not depend on the steps taken before)."""
    if isinstance(scheduler, CosineRestartLR):
        return scheduler.get_lr()
    if isinstance(scheduler, LambdaLR):
        pairs = zip(scheduler.base_lrs, scheduler.lr_lambdas, strict=True)
        return [base * f(scheduler.last_epoch) for base, f in pairs]
    raise TypeError(f"no closed form for {type(scheduler).__name__}")


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: Mapping[str, Any]) -> LRScheduler:
    """The scheduler of ``train.scheduler`` (``cosine_restart`` or ``constant``)."""
    if cfg["scheduler"] == "constant":
        return LambdaLR(optimizer, lambda _: 1.0)
    if cfg["scheduler"] != "cosine_restart":
        raise RecipeError("train.scheduler", cfg["scheduler"], "unknown scheduler", ["cosine_restart", "constant"])
    periods, weights = cfg["periods"], cfg["restart_weights"]
    if not periods or any(not isinstance(p, int) or p < 1 for p in periods):
        raise RecipeError("train.periods", periods, "periods are positive iteration counts, e.g. [300000]")
    if len(weights) != len(periods):
        raise RecipeError(
            "train.restart_weights", weights, f"needs one weight per period ({len(periods)} periods: {periods})"
        )
    if sum(periods) != cfg["iterations"]:
        log.warning(
            "train.periods sum to %d but train.iterations is %d: the lr %s",
            sum(periods),
            cfg["iterations"],
            "stays at eta_min after the last period" if sum(periods) < cfg["iterations"] else "never reaches eta_min",
        )
    return CosineRestartLR(optimizer, periods, weights, cfg["eta_min"])


__all__ = ["CosineRestartLR", "build_scheduler", "cosine_restart_lr", "scheduled_lrs"]
