"""Training losses: the pixel losses of super-resolution and the end-point error of flow pretraining.

BasicVSR and IconVSR train with the Charbonnier loss ``mean(sqrt((pred - target)^2 + eps))`` with
``eps = 1e-12`` (MMagic ``CharbonnierLoss``, BasicSR ``CharbonnierLoss``), averaged over every element of the
``(n, t, 3, H, W)`` output sequence. L1 and MSE are the usual alternatives (``train.loss``).

Losses are computed in float32 whatever the autocast dtype of the network output.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import torch
from torch import Tensor

from vsr.errors import RecipeError

PixelLoss = Callable[[Tensor, Tensor], Tensor]


def charbonnier(pred: Tensor, target: Tensor, eps: float = 1e-12) -> Tensor:
    """Charbonnier loss (a differentiable L1): ``mean(sqrt((pred - target)^2 + eps))`` over all elements."""
    diff = pred.float() - target.float()
    return torch.sqrt(diff * diff + eps).mean()


def l1(pred: Tensor, target: Tensor) -> Tensor:
    return (pred.float() - target.float()).abs().mean()


def mse(pred: Tensor, target: Tensor) -> Tensor:
    return (pred.float() - target.float()).pow(2).mean()


def endpoint_error(pred: Tensor, target: Tensor) -> Tensor:
    """Mean end-point error of flows ``(..., 2, h, w)``: the Euclidean length of ``pred - target`` per pixel,
    averaged over pixels (and every leading dim). In the flows' unit (pixels)."""
    if pred.shape != target.shape or pred.shape[-3] != 2:
        raise ValueError(
            f"endpoint_error: expected two flows (..., 2, h, w), got {tuple(pred.shape)} and {tuple(target.shape)}"
        )
    return (pred.float() - target.float()).pow(2).sum(dim=-3).sqrt().mean()


LOSSES: dict[str, Callable[..., Tensor]] = {"charbonnier": charbonnier, "l1": l1, "mse": mse}


def build_loss(name: str, charbonnier_eps: float = 1e-12) -> PixelLoss:
    """The pixel loss a recipe names (``train.loss``), with its ``train.charbonnier_eps``."""
    if name not in LOSSES:
        raise RecipeError("train.loss", name, "unknown loss", sorted(LOSSES))
    if name == "charbonnier":
        return partial(LOSSES[name], eps=charbonnier_eps)
    return LOSSES[name]
