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

Two losses serve perceptual (GAN) training, as RealBasicVSR's second stage uses them:

* ``perceptual`` (:class:`Perceptual`): L1 between VGG19 features of the output and the target, the weights read
  from a file the user names (torchvision's ``vgg19`` layout; nothing downloads);
* :func:`gan_loss`, the vanilla GAN loss on a discriminator's logits. It is not a ``loss`` part (it judges logits,
  not a prediction against a target): the adversarial objective (:mod:`vsr.training.gan`) calls it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vsr.errors import RecipeError
from vsr.registry import STRING, Allowed, build_entry, check_entry, declare_kind, list_of, number, one_of, register

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


# --------------------------------------------------------------------------------------------------------
# Perceptual loss: VGG19 features (Simonyan & Zisserman 2015) in torchvision's layout


#: The convolutions of each stage of VGG19 (configuration E): their output channels. A 2×2 max-pool follows
#: each stage.
VGG19_STAGES = ((64, 64), (128, 128), (256, 256, 256, 256), (512, 512, 512, 512), (512, 512, 512, 512))


def _vgg19_conv_indices() -> dict[str, int]:
    """``conv{stage}_{k}`` -> its index in torchvision's ``vgg19().features`` (each conv is followed by its
    ReLU, each stage by a pool): conv1_1 0, conv1_2 2, conv2_2 7, conv3_4 16, conv4_4 25, conv5_4 34."""
    indices, at = {}, 0
    for stage, widths in enumerate(VGG19_STAGES, start=1):
        for k in range(1, len(widths) + 1):
            indices[f"conv{stage}_{k}"] = at
            at += 2
        at += 1
    return indices


#: Each VGG19 convolution's index in ``features``; a layer's features are taken at it, before its ReLU.
VGG19_LAYERS = _vgg19_conv_indices()

#: ImageNet's per-channel RGB mean and standard deviation, the normalisation VGG19 was trained with.
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def vgg19_features(last: int = VGG19_LAYERS["conv5_4"]) -> nn.Sequential:
    """torchvision's ``vgg19().features`` up to and including index ``last``, randomly initialised, with the
    same indices (``features.{i}.weight``/``bias`` load as they are; its ReLUs are not in place, so a
    convolution's output stays as it was)."""
    layers: list[nn.Module] = []
    channels = 3
    for widths in VGG19_STAGES:
        for width in widths:
            layers += [nn.Conv2d(channels, width, 3, 1, 1), nn.ReLU()]
            channels = width
        layers.append(nn.MaxPool2d(2, 2))
    return nn.Sequential(*layers[: last + 1])


def load_vgg19_weights(features: nn.Sequential, path: str | Path) -> None:
    """Load ``features`` (:func:`vgg19_features`) from a VGG19 file in torchvision's layout: a state dict saved
    by ``torch.save`` (torchvision's ``vgg19-dcbb9e9d.pth``; read with ``weights_only=True``, so the file cannot
    run code) or a ``.safetensors`` file, with keys ``features.{i}.weight``/``bias`` (the classifier's keys, and
    layers past ``features``' last, are ignored). A missing file, or one that is not a VGG19 state dict, fails
    with a ``ValueError`` saying what is expected."""
    path = Path(path).expanduser()
    expected = {key: value.shape for key, value in features.state_dict().items()}
    how = (
        "name a VGG19 state dict in torchvision's layout (keys features.{i}.weight and .bias), e.g. torchvision's "
        "vgg19-dcbb9e9d.pth or the same saved as .safetensors; vsr downloads nothing"
    )
    if not path.is_file():
        raise ValueError(f"the VGG19 weights file {path} does not exist: {how}")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path), device="cpu")
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # a file of another format, or a pickle that is not plain tensors
        raise ValueError(f"cannot read VGG19 weights from {path} ({type(err).__name__}: {err}): {how}") from None
    if not isinstance(state, Mapping):
        raise ValueError(f"{path} holds a {type(state).__name__}, not a state dict: {how}")
    found = {k.removeprefix("features."): v for k, v in state.items() if k.startswith("features.")}
    missing = [f"features.{k}" for k in expected if k not in found]
    wrong = [f"features.{k} {tuple(found[k].shape)} (expected {tuple(s)})" for k, s in expected.items()
             if k in found and found[k].shape != s]  # fmt: skip
    if missing or wrong:
        problem = f"lacks {', '.join(missing[:3])}" if missing else f"has {', '.join(wrong[:3])}"
        raise ValueError(f"{path} is not VGG19 weights: it {problem}; {how}")
    features.load_state_dict({k: found[k].float() for k in expected})


@register("loss", "perceptual")
class Perceptual(Loss):
    """VGG19 perceptual loss (Johnson et al. 2016; ESRGAN's, as RealBasicVSR's second stage trains with it):
    ``sum_k layer_weights[k] · mean|φ_k(pred) - φ_k(target)|`` over the VGG19 ``layers``, taken **before** their
    ReLU, of ImageNet-normalised [0, 1] RGB frames; ``(n, t, 3, h, w)`` (or ``(n, 3, h, w)``) frames are
    judged one by one.

    The defaults are RealBasicVSR's (BasicSR ``PerceptualLoss``, MMagic ``PerceptualLoss``): conv1_2, conv2_2,
    conv3_4, conv4_4, conv5_4 (``features`` indices 2, 7, 16, 25, 34) weighted 0.1, 0.1, 1, 1, 1. ``weights`` is
    the VGG19 file (:func:`load_vgg19_weights`), read once when the loss is built. The network is frozen (no
    parameter of it trains) and moves with the losses to the run's device; it runs in the run's autocast, and the
    L1 of the features is taken in float32. The target's features carry no gradient."""

    allowed_arguments: ClassVar[dict[str, Allowed]] = {
        "weights": STRING,
        "layers": list_of(one_of(*VGG19_LAYERS)),
        "layer_weights": list_of(number(minimum=0)),
    }

    def __init__(
        self,
        weights: str,
        layers: Sequence[str] = ("conv1_2", "conv2_2", "conv3_4", "conv4_4", "conv5_4"),
        layer_weights: Sequence[float] = (0.1, 0.1, 1.0, 1.0, 1.0),
    ):
        super().__init__()
        if len(layers) != len(layer_weights) or len(set(layers)) != len(layers):
            raise ValueError(
                f"layers and layer_weights pair up one by one: got {len(layers)} distinct layers for "
                f"{len(layer_weights)} weights"
            )
        self.layer_weights = {VGG19_LAYERS[name]: float(w) for name, w in zip(layers, layer_weights, strict=True)}
        self.features = vgg19_features(max(self.layer_weights))
        load_vgg19_weights(self.features, weights)
        self.features.requires_grad_(False)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def feature_maps(self, frames: Tensor) -> dict[int, Tensor]:
        """The chosen layers' maps of ``frames (..., 3, h, w)`` in [0, 1], by ``features`` index."""
        x = (frames.reshape(-1, *frames.shape[-3:]) - self.mean) / self.std
        maps = {}
        for index, layer in enumerate(self.features):
            x = layer(x)
            if index in self.layer_weights:
                maps[index] = x
        return maps

    def forward(self, pred: Tensor, target: Tensor) -> Tensor:
        with torch.no_grad():
            wanted = self.feature_maps(target.detach())
        got = self.feature_maps(pred)
        return sum(w * l1(got[i], wanted[i]) for i, w in self.layer_weights.items())


def gan_loss(logits: Tensor, real: bool) -> Tensor:
    """The vanilla GAN loss (Goodfellow et al. 2014) of a discriminator's ``logits`` (any shape): binary cross
    entropy with logits against the label 1 (``real``) or 0 (fake), averaged over every logit, in float32. The
    generator minimises it with ``real=True`` on its output; the discriminator with ``real=True`` on the
    ground truth plus ``real=False`` on the detached output (RealBasicVSR's ``GANLoss('vanilla')``)."""
    logits = logits.float()
    return F.binary_cross_entropy_with_logits(logits, torch.full_like(logits, 1.0 if real else 0.0))


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
    "VGG19_LAYERS",
    "Charbonnier",
    "Loss",
    "Perceptual",
    "WeightedLoss",
    "build_losses",
    "charbonnier",
    "check_losses",
    "endpoint_error",
    "gan_loss",
    "l1",
    "load_vgg19_weights",
    "mse",
    "vgg19_features",
]
