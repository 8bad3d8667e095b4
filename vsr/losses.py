"""Training losses, a registered kind: the pixel losses of super-resolution, their weighted sum, and the
end-point error of flow pretraining.

BasicVSR and IconVSR train with the Charbonnier loss ``mean(sqrt((pred - target)^2 + eps))`` with
``eps = 1e-12`` (MMagic ``CharbonnierLoss``, BasicSR ``CharbonnierLoss``), averaged over every element of the
``(n, t, 3, H, W)`` output sequence. L1 and MSE are the usual alternatives.

A recipe trains with a weighted list of terms (``train.losses``)::

    losses: [{name: charbonnier, weight: 1.0, eps: 1.0e-12}]

built by :func:`build_losses` into one :class:`WeightedLoss` module (moved to the run's device with the model,
so a loss that holds weights, such as a perceptual loss's network, runs where the output is). A new loss is
a :class:`Loss` subclass registered with ``@register("loss", "<name>")``; its constructor arguments are its
recipe arguments. Losses are computed in float32 whatever the autocast dtype of the network output.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from vsr.errors import RecipeError
from vsr.registry import Allowed, build_entry, check_entry, declare_kind, number, register

#: The key of a ``train.losses`` item that is not the loss's own argument.
WEIGHT = "weight"


@declare_kind("loss")
class Loss(nn.Module):
    """Interface of the ``loss`` kind: ``forward(pred, target) -> scalar``, both ``(n, t, c, h, w)``."""

    def forward(self, pred: Tensor, target: Tensor) -> Tensor:
        raise NotImplementedError  # pragma: no cover - interface


def charbonnier(pred: Tensor, target: Tensor, eps: float = 1e-12) -> Tensor:
    """Charbonnier loss (a differentiable L1): ``mean(sqrt((pred - target)^2 + eps))`` over all elements."""
    diff = pred.float() - target.float()
    return torch.sqrt(diff * diff + eps).mean()


def l1(pred: Tensor, target: Tensor) -> Tensor:
    return (pred.float() - target.float()).abs().mean()


def mse(pred: Tensor, target: Tensor) -> Tensor:
    return (pred.float() - target.float()).pow(2).mean()


@register("loss", "charbonnier")
class Charbonnier(Loss):
    """:func:`charbonnier` with its ``eps`` (1e-12 in the BasicVSR papers)."""

    allowed_arguments: ClassVar[dict[str, Allowed]] = {"eps": number(above=0)}

    def __init__(self, eps: float = 1e-12):
        super().__init__()
        self.eps = eps

    def forward(self, pred: Tensor, target: Tensor) -> Tensor:
        return charbonnier(pred, target, self.eps)


@register("loss", "l1")
class L1(Loss):
    def forward(self, pred: Tensor, target: Tensor) -> Tensor:
        return l1(pred, target)


@register("loss", "mse")
class MSE(Loss):
    def forward(self, pred: Tensor, target: Tensor) -> Tensor:
        return mse(pred, target)


class WeightedLoss(nn.Module):
    """``sum(weight_k * loss_k(pred, target))`` over a recipe's ``train.losses``. ``forward`` returns the total
    and each term's unweighted value by name (``charbonnier``, or ``l1_2`` for a second ``l1``), for the log."""

    def __init__(self, terms: Mapping[str, Loss], weights: Mapping[str, float]):
        super().__init__()
        self.terms = nn.ModuleDict(terms)
        self.weights = dict(weights)

    def forward(self, pred: Tensor, target: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        values = {name: term(pred, target) for name, term in self.terms.items()}
        total = sum(self.weights[name] * value for name, value in values.items())
        return total, values


def _term_names(items: Sequence[Mapping[str, Any]]) -> list[str]:
    names, seen = [], {}
    for item in items:
        seen[item["name"]] = seen.get(item["name"], 0) + 1
        names.append(item["name"] if seen[item["name"]] == 1 else f"{item['name']}_{seen[item['name']]}")
    return names


def check_losses(value: Any, key: str = "train.losses") -> list[dict[str, Any]]:
    """A recipe's ``train.losses``: a non-empty list of loss entries (a name, or ``{name, weight, <args>}``),
    each with a finite ``weight`` >= 0 (default 1). Returns the entries as mappings; fails naming the item."""
    if not isinstance(value, list) or not value:
        raise RecipeError(key, value, "a non-empty list of losses, e.g. [{name: charbonnier, weight: 1.0}]")
    items = []
    for i, raw in enumerate(value):
        item = check_entry("loss", f"{key}[{i}]", raw, extra=(WEIGHT,))
        weight = item.setdefault(WEIGHT, 1.0)
        if not number(minimum=0)(weight):
            raise RecipeError(f"{key}[{i}].{WEIGHT}", weight, "must be a number >= 0")
        items.append(item)
    return items


def build_losses(value: Any, key: str = "train.losses") -> WeightedLoss:
    """The :class:`WeightedLoss` of a recipe's ``train.losses``."""
    items = check_losses(value, key)
    names = _term_names(items)
    terms = {name: build_entry("loss", f"{key}[{i}]", item, extra=(WEIGHT,)) for i, (name, item) in
             enumerate(zip(names, items, strict=True))}  # fmt: skip
    return WeightedLoss(terms, {name: float(item[WEIGHT]) for name, item in zip(names, items, strict=True)})


def endpoint_error(pred: Tensor, target: Tensor) -> Tensor:
    """Mean end-point error of flows ``(..., 2, h, w)``: the Euclidean length of ``pred - target`` per pixel,
    averaged over pixels (and every leading dim). In the flows' unit (pixels)."""
    if pred.shape != target.shape or pred.shape[-3] != 2:
        raise ValueError(
            f"endpoint_error: expected two flows (..., 2, h, w), got {tuple(pred.shape)} and {tuple(target.shape)}"
        )
    return (pred.float() - target.float()).pow(2).sum(dim=-3).sqrt().mean()


__all__ = [
    "L1",
    "MSE",
    "Charbonnier",
    "Loss",
    "WeightedLoss",
    "build_losses",
    "charbonnier",
    "check_losses",
    "endpoint_error",
    "l1",
    "mse",
]
