"""What an objective's training step works with: its named optimisers and schedules, and the run's services.

An objective (:mod:`vsr.training.objectives`) owns its step. It declares what it trains with in
:class:`TrainingParts` (optimisers and schedules by name, and any trained module beside the model, such as a
GAN's discriminator); the run holds them in its :class:`vsr.training.state.RunState`, saves and resumes them
by name, and hands the step a :class:`StepContext`: the model and modules as the step must call them (in DDP
under ``torchrun``, compiled with ``train.compile``), the run's autocast, and :meth:`StepContext.optimise`,
which takes one optimiser's step from a loss (check that the loss is finite, zero the gradients, scaled
backward, ``train.grad_clip``, step, schedule) — the same sequence for every optimiser of every objective,
on every device. A non-finite loss stops the run before its backward pass: a backward through NaN flows
can crash the sampling kernels, and the weights stay as they were.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn
from torch.optim.lr_scheduler import LRScheduler

#: The name of the optimiser (and schedule) of the model itself, built from the ``train`` keys.
MAIN = "model"


@dataclass
class TrainingParts:
    """What an objective trains with: ``optimizers`` and ``schedulers`` by name (one schedule per optimiser,
    stepped with it), and ``modules``, the trained modules besides the model (saved and resumed by name)."""

    optimizers: dict[str, torch.optim.Optimizer]
    schedulers: dict[str, LRScheduler]
    modules: dict[str, nn.Module] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if set(self.optimizers) != set(self.schedulers):
            raise ValueError(
                f"every optimiser needs its schedule: optimisers {sorted(self.optimizers)}, "
                f"schedules {sorted(self.schedulers)}"
            )


@dataclass
class StepContext:
    """The run's side of one training step (see the module docstring)."""

    net: nn.Module  # the model as the step calls it
    nets: Mapping[str, nn.Module]  # the objective's other trained modules, wrapped likewise
    optimizers: Mapping[str, torch.optim.Optimizer]
    schedulers: Mapping[str, LRScheduler]
    grad_scalers: Mapping[str, torch.amp.GradScaler]
    device_type: str
    autocast_dtype: torch.dtype | None
    grad_clip: float | None
    check_loss: Callable[[str, Tensor], None]  # raises if the loss (averaged over processes) is not finite

    @contextmanager
    def autocast(self) -> Iterator[None]:
        """The run's mixed precision (``train.amp``) for a forward pass; losses are computed in float32."""
        dtype = self.autocast_dtype or torch.bfloat16
        with torch.autocast(self.device_type, dtype=dtype, enabled=self.autocast_dtype is not None):
            yield

    def optimise(self, name: str, loss: Tensor) -> None:
        """One step of optimiser ``name`` on ``loss``: stop the run if it is not finite, zero its gradients,
        backward (scaled under fp16), clip
        its parameters' gradient norm to ``train.grad_clip``, step, then step its schedule."""
        self.check_loss(name, loss)
        optimizer, scaler = self.optimizers[name], self.grad_scalers[name]
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        if self.grad_clip:
            scaler.unscale_(optimizer)
            trainable = [p for group in optimizer.param_groups for p in group["params"] if p.requires_grad]
            torch.nn.utils.clip_grad_norm_(trainable, self.grad_clip)
        scaler.step(optimizer)
        scaler.update()
        self.schedulers[name].step()


__all__ = ["MAIN", "StepContext", "TrainingParts"]
