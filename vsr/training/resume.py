"""What a resumed run may change of its recipe, and how a change is made real.

A run resumes with the recipe it was started with (the one saved in ``latest.pth``). A resumed run whose
recipe differs is refused with the differing keys listed, unless the changes are allowed explicitly
(``vsr train --resume --allow-changes``, ``train(..., allow_recipe_changes=True)``); then every change
takes effect from the resumed iteration on and is recorded in ``log.jsonl`` (a ``recipe_changed`` event).
Keys that cannot take effect in a running run are refused even then (:data:`FIXED`).

The optimiser and schedule are made to follow the new recipe for real (:func:`follow_recipe`): each
parameter group's base learning rate, betas and weight decay come from the new ``train`` keys (Adam's
moments are kept), and the schedule is rebuilt from them at the run's position, so the first resumed step
uses the new schedule's rate at that iteration.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Mapping
from typing import Any

from vsr.errors import RecipeError
from vsr.recipe import load_recipe
from vsr.training.optim import group_lrs
from vsr.training.schedule import build_scheduler, scheduled_lrs
from vsr.training.state import RunState

_VALIDATION = "the run's validation records (baseline, best checkpoint) were measured with the old setting"

#: Keys (and key prefixes) that a resumed run cannot change, with the reason.
FIXED: dict[str, str] = {
    "model": "the run's weights belong to the architecture it started with",
    "train.objective": "the run's weights and state belong to the objective it started with",
    "train.seed": "the seed names the run (its initialisation and samples); start a new run for another seed",
    "train.init": "it is read only when a run starts",
    "train.init_prefixes": "it is read only when a run starts",
    "data.val": _VALIDATION,
    "data.val_max_frames": _VALIDATION,
    "data.val_y_channel": _VALIDATION,
    "data.val_crop_border": _VALIDATION,
    "data.val_center_frame": _VALIDATION,
    "data.degradation": _VALIDATION,
}

#: Keys that shape the optimiser or the learning-rate schedule: a change rebuilds them (:func:`follow_recipe`).
OPTIMISER_KEYS = (
    "train.lr", "train.pretrained_lr_mult", "train.betas", "train.weight_decay", "train.scheduler",
    "train.periods", "train.restart_weights", "train.eta_min",
)  # fmt: skip

_ABSENT = "(absent)"


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(value, Mapping) or not value:
        return {prefix: value}
    flat: dict[str, Any] = {}
    for key, item in value.items():
        flat |= _flatten(item, f"{prefix}.{key}" if prefix else str(key))
    return flat


def _resolved(recipe: Mapping[str, Any]) -> dict[str, Any]:
    """A recipe dict with every default filled in, as JSON values (tuples as lists)."""
    with contextlib.suppress(RecipeError):  # a recipe of an older vsr that no longer validates: as stored
        recipe = load_recipe(dict(recipe)).to_dict()
    return json.loads(json.dumps(recipe, default=str))


def recipe_changes(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, tuple[Any, Any]]:
    """The keys (dotted) whose values differ between two recipes, each with ``(old, new)``; a key only one
    of them has appears with ``"(absent)"`` on the other side."""
    before, after = _flatten(_resolved(old)), _flatten(_resolved(new))
    return {
        key: (before.get(key, _ABSENT), after.get(key, _ABSENT))
        for key in sorted(before.keys() | after.keys())
        if before.get(key, _ABSENT) != after.get(key, _ABSENT)
    }


def fixed_reason(key: str) -> str | None:
    """Why ``key`` cannot change in a resumed run, or None if it can."""
    for fixed, reason in FIXED.items():
        if key == fixed or key.startswith(f"{fixed}."):
            return reason
    return None


def describe(changes: Mapping[str, tuple[Any, Any]]) -> str:
    """``train.lr: 0.001 → 0.5; data.batch_size: 2 → 4``."""
    return "; ".join(f"{key}: {old!r} → {new!r}" for key, (old, new) in changes.items())


def follow_recipe(state: RunState, cfg: Mapping[str, Any]) -> None:
    """Make the optimiser and the schedule of a restored ``state`` follow the ``train`` keys ``cfg`` from the
    run's position on: the groups' base rates, betas and weight decay, and a schedule built from ``cfg`` at
    the restored schedule's step (its rate at that step is what the next step uses)."""
    optimizer, position = state.optimizer, state.scheduler.last_epoch
    bases = group_lrs(cfg)
    for group in optimizer.param_groups:
        group["lr"] = bases[group["name"]]
        group.pop("initial_lr", None)  # the new schedule takes its base rates from "lr"
        group["betas"], group["weight_decay"] = tuple(cfg["betas"]), cfg["weight_decay"]
    state.scheduler = build_scheduler(optimizer, cfg)
    state.scheduler.last_epoch = position
    rates = scheduled_lrs(state.scheduler)
    for group, rate in zip(optimizer.param_groups, rates, strict=True):
        group["lr"] = rate
    state.scheduler._last_lr = list(rates)  # what get_last_lr() reports


__all__ = ["FIXED", "OPTIMISER_KEYS", "describe", "fixed_reason", "follow_recipe", "recipe_changes"]
