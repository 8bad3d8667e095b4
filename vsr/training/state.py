"""The state of a run that must survive an interruption: one object, saved and restored whole.

A resumed run continues bit-exactly (on CPU): the weights and their moving average (``train.ema``), every
named optimiser's moments, schedule position and grad scaler, the objective's other trained modules (a
discriminator), every RNG, the iteration (from which
:class:`vsr.data.sampling.RunSampler` draws the next samples) and the run's records (time, best and last
validation) all come back from ``latest.pth``.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.optim.lr_scheduler import LRScheduler

from vsr.checkpoints import extract_state_dict, load_state_dict, read_checkpoint, save_checkpoint
from vsr.errors import VSRError
from vsr.training.ema import EMA_KEY, WeightAverage
from vsr.training.files import RECIPE_FILE
from vsr.training.steps import MAIN

log = logging.getLogger(__name__)

#: Marks the fields that are restored as they were saved (the rest are the run's shape, only compared).
_RESTORED = {"restored": True}

#: The fields that hold objects by name, each saved with ``state_dict()`` and restored with ``load_state_dict()``.
_STATEFUL = ("optimizers", "schedulers", "grad_scalers", "modules")

#: The single optimiser, schedule and scaler of checkpoints written before objectives named them.
_SINGLE = {"optimizers": "optimizer", "schedulers": "scheduler", "grad_scalers": "grad_scaler"}


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state() -> dict[str, Any]:
    """Every RNG's state, as tensors and plain containers (loadable with ``weights_only=True``)."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": {"name": name, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "torch": torch.get_rng_state(),
    }  # fmt: skip
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Mapping[str, Any]) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    n = state["numpy"]
    np.random.set_state(
        (n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"])
    )
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


@dataclass
class RunState:
    """Everything a run needs to continue, saved by :meth:`save` and restored by :meth:`load`.

    The training objects (the model, the objective's optimisers, schedules and grad scalers by name, its
    other trained ``modules`` by name, and the weights' moving average ``ema`` when the run keeps one) are
    held here and change in place; ``objective``, ``batch_size``, ``world_size`` and ``seed`` describe the
    run and are checked on resume; the fields from ``iteration`` on are the run's progress and records,
    restored as saved.
    """

    model: nn.Module
    optimizers: dict[str, torch.optim.Optimizer]
    schedulers: dict[str, LRScheduler]
    grad_scalers: dict[str, torch.amp.GradScaler]
    modules: dict[str, nn.Module]
    objective: str
    batch_size: int
    world_size: int
    seed: int
    ema: WeightAverage | None = None  # saved under EMA_KEY (BasicSR's params_ema)
    iteration: int = field(default=0, metadata=_RESTORED)
    elapsed_s: float = field(default=0.0, metadata=_RESTORED)
    step_time_s: float = field(default=0.0, metadata=_RESTORED)  # data + step, without validation and saving
    steps_timed: int = field(default=0, metadata=_RESTORED)
    step_cpu_time_s: float = field(default=0.0, metadata=_RESTORED)  # comparable on a loaded machine
    best: dict[str, Any] | None = field(default=None, metadata=_RESTORED)
    baseline: dict[str, float] | None = field(default=None, metadata=_RESTORED)
    last_val: dict[str, Any] | None = field(default=None, metadata=_RESTORED)
    initial: dict[str, Any] | None = field(default=None, metadata=_RESTORED)  # validation of the first weights

    def state_dict(self) -> dict[str, Any]:
        """The checkpoint's training state (the weights are saved beside it by :meth:`save`)."""
        restored = {f.name: getattr(self, f.name) for f in fields(self) if f.metadata.get("restored")}
        stateful = {name: {k: v.state_dict() for k, v in getattr(self, name).items()} for name in _STATEFUL}
        sampler = {"iteration": self.iteration, "batch_size": self.batch_size, "world_size": self.world_size,
                   "seed": self.seed}  # fmt: skip
        return {"objective": self.objective, **stateful, "rng": rng_state(), "sampler": sampler, **restored,
                **self.ema_weights()}  # fmt: skip

    def ema_weights(self) -> dict[str, dict[str, torch.Tensor]]:
        """``{"params_ema": <averaged weights>}`` to save beside the weights, or ``{}`` without an average."""
        return {EMA_KEY: self.ema.state_dict()} if self.ema is not None else {}

    @property
    def scored_model(self) -> nn.Module:
        """The weights that are validated and exported: the moving average when the run keeps one."""
        return self.ema.module if self.ema is not None else self.model

    def save(self, path: Path, recipe: dict[str, Any]) -> Path:
        """Write the whole state, the weights and the resolved ``recipe`` to ``path``, atomically."""
        return save_checkpoint(self.model, path, recipe, **self.state_dict())

    def load(self, path: Path, checkpoint: Mapping[str, Any] | None = None) -> None:
        """Restore the whole state from a checkpoint written by :meth:`save` (``checkpoint``: its content,
        if already read)."""
        state = read_checkpoint(path) if checkpoint is None else checkpoint
        if state.get("objective", "sr") != self.objective:
            raise VSRError(
                f"{path} was trained with train.objective={state.get('objective')!r}, not {self.objective!r}; "
                f"resume with the recipe of that run ({path.parents[1] / RECIPE_FILE})"
            )
        load_state_dict(self.model, extract_state_dict(state, param_key="params"), strict=True)
        self._load_ema(path, state)
        for name in _STATEFUL:
            saved = _named(state, name)
            held = getattr(self, name)
            if set(saved) != set(held):
                raise VSRError(
                    f"{path} holds the {name} {sorted(saved)}, but this run's objective has {sorted(held)}; "
                    f"resume with the recipe of that run ({path.parents[1] / RECIPE_FILE})"
                )
            for key, obj in held.items():
                if name == "grad_scalers" and not saved[key]:
                    continue  # saved by a run without fp16 (a disabled scaler has no state): a fresh scaler starts
                obj.load_state_dict(saved[key])
        for f in fields(self):
            if f.metadata.get("restored"):
                setattr(self, f.name, state.get(f.name, f.default))  # older checkpoints lack the newer records
        set_rng_state(state["rng"])
        saved, now = state["sampler"], (self.batch_size, self.world_size)
        if (saved["batch_size"], saved["world_size"]) != now:
            log.warning(
                "resuming with batch %d × %d processes, the run had %d × %d: the samples differ from an "
                "uninterrupted run", *now, saved["batch_size"], saved["world_size"]
            )  # fmt: skip

    @property
    def lr(self) -> float:
        """The current learning rate of the model's optimiser (its first group), for the log."""
        optimizer = self.optimizers.get(MAIN) or next(iter(self.optimizers.values()))
        return optimizer.param_groups[0]["lr"]

    def _load_ema(self, path: Path, state: Mapping[str, Any]) -> None:
        saved = state.get(EMA_KEY)
        if self.ema is not None and saved is not None:
            self.ema.load_state_dict(saved)
        elif self.ema is not None:
            self.ema = WeightAverage(self.model, self.ema.decay)
            log.warning("%s holds no averaged weights: the moving average (train.ema) starts from its weights", path)
        elif saved is not None:
            log.warning("%s holds averaged weights but train.ema is off: they are not kept", path)


def _named(state: Mapping[str, Any], name: str) -> dict[str, Any]:
    """The saved objects of field ``name`` by name; a checkpoint of an earlier vsr has the model's single
    optimiser, schedule and scaler (under ``optimizer``, ...) and no other modules."""
    if name in state:
        return dict(state[name])
    if name in _SINGLE and _SINGLE[name] in state:
        return {MAIN: state[_SINGLE[name]]}
    return {}


__all__ = ["RunState", "rng_state", "seed_everything", "set_rng_state"]
