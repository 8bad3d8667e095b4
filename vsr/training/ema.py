"""An exponential moving average of a model's weights (``train.ema``), the "EMA model" of BasicSR's
``net_g_ema`` and timm's ``ModelEmaV3``.

After every optimiser step each floating-point parameter of the average moves towards the trained one,
``avg ← decay · avg + (1 − decay) · param`` (``torch.lerp`` with weight ``1 − decay``); buffers (SPyNet's
normalisation constants) are copied. The average starts as a copy of the initial weights, as BasicSR's
does, without timm's warm-up, except where ``train.init`` names a checkpoint holding an average beside its
trained weights: the trainer then loads that average into it (:func:`vsr.training.pretrained.load_init`,
as MMagic starts RealBasicVSR's second stage). It is a full copy of the model in eval mode without
gradients, so validation and export run it like the model itself.

A checkpoint stores it under BasicSR's key ``params_ema`` beside the trained weights (``model``; see
:func:`vsr.checkpoints.extract_state_dict`, which prefers it); a resumed run restores it exactly.
"""

from __future__ import annotations

import copy

import torch
from torch import Tensor, nn

#: The key of the averaged weights in a checkpoint: BasicSR's name for them.
EMA_KEY = "params_ema"


class WeightAverage:
    """The exponential moving average of ``model``'s weights with ``decay`` (e.g. 0.999)."""

    def __init__(self, model: nn.Module, decay: float):
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"an EMA decay must be in [0, 1), got {decay}")
        self.decay = decay
        self.module = copy.deepcopy(model).eval().requires_grad_(False)

    def _pairs(self, model: nn.Module) -> tuple[list[Tensor], list[Tensor], list[Tensor], list[Tensor]]:
        """(averaged, trained) floating-point tensors, then (averaged, trained) other buffers, by name."""
        mine = self.module.state_dict(keep_vars=True)
        theirs = model.state_dict(keep_vars=True)
        if mine.keys() != theirs.keys():
            raise ValueError("the EMA copy and the trained model have different weights; build both from one recipe")
        parameters = {name for name, _ in model.named_parameters()}
        floats = [k for k, v in mine.items() if v.is_floating_point() and k in parameters]
        others = [k for k in mine if k not in floats]
        return (
            [mine[k].data for k in floats],
            [theirs[k].data for k in floats],
            [mine[k].data for k in others],
            [theirs[k].data for k in others],
        )

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Move the average one step towards ``model``'s current weights (call after each optimiser step)."""
        averaged, trained, buffers, sources = self._pairs(model)
        if averaged:
            torch._foreach_lerp_(averaged, trained, 1.0 - self.decay)
        for buffer, source in zip(buffers, sources, strict=True):
            buffer.copy_(source)

    def state_dict(self) -> dict[str, Tensor]:
        """The averaged weights (a state dict of the model, on the CPU)."""
        return {k: v.detach().cpu().clone() for k, v in self.module.state_dict().items()}

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        """Restore averaged weights saved by :meth:`state_dict` (strictly: every key, every shape)."""
        self.module.load_state_dict(state, strict=True)


__all__ = ["EMA_KEY", "WeightAverage"]
