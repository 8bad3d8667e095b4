"""The optimiser: Adam (``train.lr``, ``betas``, ``weight_decay``) with the pretrained modules in a group of
their own at ``lr × pretrained_lr_mult`` (2.5e-5 for SPyNet in the BasicVSR and IconVSR papers)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from vsr.training.pretrained import is_pretrained


def group_lrs(cfg: Mapping[str, Any]) -> dict[str, float]:
    """The base learning rate of each parameter group, by the group's name."""
    return {"main": cfg["lr"], "pretrained": cfg["lr"] * cfg["pretrained_lr_mult"]}


def build_optimizer(model: nn.Module, cfg: Mapping[str, Any]) -> torch.optim.Adam:
    """Adam with a ``main`` group at ``lr`` and a ``pretrained`` group (flow estimator, refill extractor) at
    ``lr × pretrained_lr_mult``; an empty group is left out."""
    params = {
        "main": [p for n, p in model.named_parameters() if not is_pretrained(n)],
        "pretrained": [p for n, p in model.named_parameters() if is_pretrained(n)],
    }
    groups = [{"params": params[name], "lr": lr, "name": name} for name, lr in group_lrs(cfg).items() if params[name]]
    return torch.optim.Adam(groups, lr=cfg["lr"], betas=tuple(cfg["betas"]), weight_decay=cfg["weight_decay"])


__all__ = ["build_optimizer", "group_lrs"]
