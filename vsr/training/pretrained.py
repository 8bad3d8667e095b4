"""The weights a run starts from (``train.init``), and the modules that start from pretrained weights
(:data:`vsr.model.PRETRAINED_PREFIXES`: the flow estimator, IconVSR's refill extractor), frozen for the first
``train.fix_iterations`` steps (BasicVSR §4 keeps SPyNet fixed for the first 5000).

``train.init`` names a checkpoint (restricted to ``train.init_prefixes``). Where it holds the trained weights
and their moving average apart (:func:`vsr.checkpoints.weights_and_average`: a vsr run's ``model`` and
``params_ema``, an MMagic restorer's ``generator.`` and ``generator_ema.``, BasicSR's ``params`` and
``params_ema``), the model starts from the trained weights and the run's moving average (``train.ema``) from
the file's average, as MMagic's ``load_from`` starts RealBasicVSR's second stage from the first (notes §3.2).
Without ``train.ema`` the model still starts from the trained weights (the reference's generator): what the
model starts from never depends on whether the run keeps an average. A file of one set (safetensors, a bare
state dict, BasicSR's ``params`` alone) starts the model, and the average starts as a copy of the model.

Frozen means ``requires_grad=False``: no gradient flows into them and Adam skips them.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import Tensor, nn

from vsr.checkpoints import extract_state_dict, load_state_dict, read_checkpoint, weights_and_average
from vsr.model import PRETRAINED_PREFIXES
from vsr.zoo import resolve_checkpoint

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


@dataclass
class InitAverage:
    """What the run's moving average starts from after :func:`load_init`: ``weights``, the average that the
    ``train.init`` file holds beside its trained weights (restricted to ``prefixes`` when loaded), or None
    (the average is then a copy of the model)."""

    weights: dict[str, Tensor] | None
    prefixes: list[str] | None

    def load_into(self, average: nn.Module) -> None:
        """Copy the average into ``average`` (the moving average's module, a copy of the model)."""
        if self.weights is not None:
            load_state_dict(average, self.weights, strict=False, prefixes=self.prefixes)


def load_init(model: nn.Module, cfg: Mapping[str, Any]) -> InitAverage | None:
    """Load ``train.init`` (restricted to ``train.init_prefixes``) into ``model``: its trained weights where it
    also holds their moving average, else its one set. Returns what the average (``train.ema``) starts from;
    None if ``train.init`` is unset."""
    if not cfg["init"]:
        return None
    source, prefixes = resolve_init(cfg["init"]), cfg["init_prefixes"]
    path = resolve_checkpoint(source)
    raw = read_checkpoint(path)
    which = f"prefixes {', '.join(prefixes)}" if prefixes else "all weights"
    names = weights_and_average(raw)
    if names is None:
        load_state_dict(model, extract_state_dict(raw, source=str(path)), strict=False, prefixes=prefixes)
        then = "; the moving average starts as a copy of the model" if cfg["ema"] is not None else ""
        log.info("train.init: the model starts from %s (%s)%s", source, which, then)
        return InitAverage(None, prefixes)
    trained, averaged = names
    load_state_dict(model, extract_state_dict(raw, "params", str(path)), strict=False, prefixes=prefixes)
    if cfg["ema"] is None:
        log.warning(
            "train.init: the model starts from the trained weights of %s (%s, %s); its moving average (%s) is "
            "not used, since train.ema is off", source, trained, which, averaged,
        )  # fmt: skip
        return InitAverage(None, prefixes)
    log.info(
        "train.init: the model starts from the trained weights of %s (%s) and the moving average from its "
        "average (%s); %s", source, trained, averaged, which,
    )  # fmt: skip
    return InitAverage(extract_state_dict(raw, "params_ema", str(path)), prefixes)


__all__ = [
    "WEIGHTS_DIR",
    "InitAverage",
    "has_pretrained",
    "is_pretrained",
    "load_init",
    "resolve_init",
    "set_pretrained_frozen",
]
