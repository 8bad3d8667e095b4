"""What a resumed run may change of its recipe, and how a change is made real.

A run resumes with the recipe it was started with (the one saved in ``latest.pth``). A resumed run whose
recipe differs is refused with the differing keys listed, unless the changes are allowed explicitly
(``vsr train --resume --allow-changes``, ``train(..., allow_recipe_changes=True)``); then every change
takes effect from the resumed iteration on and is recorded in ``log.jsonl`` (a ``recipe_changed`` event).
Keys that cannot take effect in a running run are refused even then (:data:`FIXED`).

A new run never starts over another run's files (:func:`check_run_folder`), and a resumed run's recipe is
checked against the one it was started with (:func:`check_changes`).

The optimiser and schedule are made to follow the new recipe for real (:func:`follow_recipe`): each
parameter group's base learning rate, betas and weight decay come from the new ``train`` keys (Adam's
moments are kept), and the schedule is rebuilt from them at the run's position, so the first resumed step
uses the new schedule's rate at that iteration.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from vsr.errors import VSRError
from vsr.recipe import Recipe, stored_recipe
from vsr.training.files import (
    CHECKPOINT_DIR,
    LATEST_CHECKPOINT,
    LOG_FILE,
    METRICS_CSV,
    RECIPE_FILE,
    RESULT_FILE,
    WEIGHTS_FILE,
)
from vsr.training.optim import group_lrs
from vsr.training.schedule import build_scheduler, scheduled_lrs
from vsr.training.state import RunState
from vsr.training.steps import MAIN

log = logging.getLogger(__name__)

_VALIDATION = "the run's validation records (baseline, best checkpoint) were measured with the old setting"

#: Keys (and key prefixes) that a resumed run cannot change, with the reason.
FIXED: dict[str, str] = {
    "model": "the run's weights belong to the architecture it started with",
    "train.objective": "the run's weights and state belong to the objective it started with",
    "train.losses": "the objective's losses are built when the run starts",
    "train.seed": "the seed names the run (its initialisation and samples); start a new run for another seed",
    "train.init": "it is read only when a run starts",
    "train.init_prefixes": "it is read only when a run starts",
    "data.val": _VALIDATION,
    "data.val_max_frames": _VALIDATION,
    "data.val_chunk_frames": _VALIDATION,
    "data.val_y_channel": _VALIDATION,
    "data.val_crop_border": _VALIDATION,
    "data.val_center_frame": _VALIDATION,
    "data.val_metrics": _VALIDATION,
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
    """A recipe dict with every default filled in and earlier spellings translated, as JSON values (tuples as
    lists)."""
    with contextlib.suppress(VSRError):  # a recipe that no longer validates (or needs a plugin): as stored
        recipe = stored_recipe(dict(recipe), "the run's checkpoint").to_dict()
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


def check_run_folder(out_dir: Path, recipe: Recipe, resume: bool) -> None:
    """A resumed run needs its ``latest.pth``; a new run refuses a folder holding a run's checkpoint, or files
    a new run would replace unless they are the leftovers of this same recipe's start."""
    latest = out_dir / LATEST_CHECKPOINT
    if resume and not latest.is_file():
        raise VSRError(f"nothing to resume: {latest} does not exist; start the run without resume")
    if not resume and latest.is_file():
        raise VSRError(f"{out_dir} already holds a run ({latest}); resume it (--resume) or choose another out dir")
    if resume:
        return
    # A new run writes these: they may be replaced only if they are the leftovers of this same run that
    # stopped before its first checkpoint (its recipe file says so).
    names = (RECIPE_FILE, LOG_FILE, METRICS_CSV, CHECKPOINT_DIR, WEIGHTS_FILE, RESULT_FILE)
    found = [name for name in names if (out_dir / name).exists()]
    if found and not _holds_recipe(out_dir, recipe):
        raise VSRError(
            f"{out_dir} holds {', '.join(found)} of another run (its {RECIPE_FILE} is not this recipe) "
            "or files vsr did not write, and a new run would replace them; choose another out dir"
        )


def _holds_recipe(out_dir: Path, recipe: Recipe) -> bool:
    try:
        written = yaml.safe_load((out_dir / RECIPE_FILE).read_text())
    except (OSError, yaml.YAMLError):
        return False
    return written == yaml.safe_load(recipe.to_yaml())


def check_changes(
    out_dir: Path, recipe: Recipe, checkpoint: Mapping[str, Any], allowed: bool
) -> dict[str, tuple[Any, Any]]:
    """The keys in which ``recipe`` differs from the one the run in ``out_dir`` was started with (saved in its
    ``checkpoint``). Refused unless ``allowed``, and keys that cannot change (:data:`FIXED`) always."""
    started = checkpoint.get("recipe")
    if not isinstance(started, Mapping):
        log.warning("%s holds no recipe: the resumed run's recipe cannot be checked against it", out_dir)
        return {}
    changes = recipe_changes(started, recipe.to_dict())
    if not changes:
        return {}
    if not allowed:
        raise VSRError(
            f"{out_dir} was started with another recipe; resuming would change {describe(changes)}. "
            f"Resume with the run's own recipe ({out_dir / RECIPE_FILE}), or pass --allow-changes "
            "(allow_recipe_changes=True) to apply the changes from here on (recorded in the run's log)"
        )
    fixed = {key: reason for key in changes if (reason := fixed_reason(key))}
    if fixed:
        raise VSRError(
            f"{out_dir}: a resumed run cannot change "
            + "; ".join(f"{key} ({reason})" for key, reason in fixed.items())
            + "; start a new run (another --out) for that"
        )
    iteration = int(checkpoint.get("iteration", 0))
    if recipe.train["iterations"] < iteration:
        raise VSRError(
            f"{out_dir}: train.iterations={recipe.train['iterations']} is below the run's iteration "
            f"{iteration}; a resumed run can only continue"
        )
    return changes


def apply_changes(state: RunState, changes: Mapping[str, tuple[Any, Any]], cfg: Mapping[str, Any]) -> None:
    """Make allowed recipe ``changes`` real in a restored ``state``: the model's optimiser and schedule follow
    the new ``train`` keys ``cfg`` (the rest was built from the new recipe already)."""
    if any(key in OPTIMISER_KEYS for key in changes):
        if MAIN not in state.optimizers:
            raise VSRError(
                f"{describe({k: v for k, v in changes.items() if k in OPTIMISER_KEYS})}: the train keys shape the "
                f"optimiser named {MAIN!r}, and this run's objective has {sorted(state.optimizers)}; start a new run"
            )
        follow_recipe(state, cfg)


def follow_recipe(state: RunState, cfg: Mapping[str, Any]) -> None:
    """Make the model's optimiser and schedule of a restored ``state`` follow the ``train`` keys ``cfg`` from
    the run's position on: the groups' base rates, betas and weight decay, and a schedule built from ``cfg``
    at the restored schedule's step (its rate at that step is what the next step uses)."""
    optimizer, position = state.optimizers[MAIN], state.schedulers[MAIN].last_epoch
    bases = group_lrs(cfg)
    for group in optimizer.param_groups:
        group["lr"] = bases[group["name"]]
        group.pop("initial_lr", None)  # the new schedule takes its base rates from "lr"
        group["betas"], group["weight_decay"] = tuple(cfg["betas"]), cfg["weight_decay"]
    scheduler = state.schedulers[MAIN] = build_scheduler(optimizer, cfg)
    scheduler.last_epoch = position
    rates = scheduled_lrs(scheduler)
    for group, rate in zip(optimizer.param_groups, rates, strict=True):
        group["lr"] = rate
    scheduler._last_lr = list(rates)  # what get_last_lr() reports


__all__ = [
    "FIXED",
    "OPTIMISER_KEYS",
    "apply_changes",
    "check_changes",
    "check_run_folder",
    "describe",
    "fixed_reason",
    "follow_recipe",
    "recipe_changes",
]
