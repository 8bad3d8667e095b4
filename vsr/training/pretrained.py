"""The modules that start from pretrained weights (:data:`vsr.model.PRETRAINED_PREFIXES`: the flow
estimator, IconVSR's refill extractor): where ``train.init`` finds their weights, and their freezing for
the first ``train.fix_iterations`` steps (BasicVSR §4 keeps SPyNet fixed for the first 5000).

Frozen means ``requires_grad=False``: no gradient flows into them and Adam skips them.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from torch import nn

from vsr.checkpoints import load_checkpoint
from vsr.model import PRETRAINED_PREFIXES

log = logging.getLogger(__name__)

#: Weights shipped inside the package, usable by file stem as ``train.init`` (e.g. ``spynet_tiny``).
WEIGHTS_DIR = Path(__file__).parents[1] / "weights"


def is_pretrained(name: str) -> bool:
    """Whether the parameter ``name`` belongs to a module that starts from pretrained weights."""
    return name.startswith(PRETRAINED_PREFIXES)


def has_pretrained(model: nn.Module) -> bool:
    return any(is_pretrained(name) for name, _ in model.named_parameters())


def set_pretrained_frozen(model: nn.Module, frozen: bool) -> int:
    """Freeze (or thaw) the pretrained modules; returns how many parameter tensors that touched."""
    count = 0
    for name, param in model.named_parameters():
        if is_pretrained(name):
            param.requires_grad_(not frozen)
            count += 1
    return count


def resolve_init(init: str | Path) -> str | Path:
    """``train.init``: a file path, the stem of a weights file shipped in ``vsr/weights/``, or a zoo name."""
    path = Path(init).expanduser()
    if path.is_file():
        return path
    for candidate in (WEIGHTS_DIR / str(init), WEIGHTS_DIR / f"{init}.safetensors"):
        if candidate.is_file():
            return candidate
    return init


def load_init(model: nn.Module, cfg: Mapping[str, Any]) -> bool:
    """Load ``train.init`` (restricted to ``train.init_prefixes``) into ``model``; False if none is set."""
    if not cfg["init"]:
        return False
    source = resolve_init(cfg["init"])
    load_checkpoint(model, source, strict=False, prefixes=cfg["init_prefixes"])
    log.info("initialised from %s (prefixes %s)", source, cfg["init_prefixes"] or "all")
    return True


__all__ = ["WEIGHTS_DIR", "has_pretrained", "is_pretrained", "load_init", "resolve_init", "set_pretrained_frozen"]
