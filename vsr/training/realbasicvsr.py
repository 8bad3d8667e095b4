"""RealBasicVSR's first training stage (Chan et al., CVPR 2022, arXiv 2111.12704) as the objective
``realbasicvsr_wogan``, and the generator losses both stages share.

The first stage ("wogan", without GAN: MMagic's ``realbasicvsr_wogan_c64b20_2x30x8`` config) trains the whole
network with

* the recipe's ``train.losses`` (RealBasicVSR: ``l1``, weight 1) against the **unsharp-masked** GT, and
* ``cleaning_weight`` (1) × the L1 between the model's cleaned LQ (``forward(lrs, return_cleaned=True)``) and
  that sharpened GT area-downsampled by the scale (notes §3.1: the cleaning target is built from the pixel
  loss's GT, so the sharpening carries over). Only with a ``cleaning`` component: a model without one has no
  cleaned LQ, and the run's log says the term is off.

The second stage, :class:`vsr.training.gan.RealBasicVSRGAN` (``realbasicvsr_gan``), extends this objective: its
generator loss is :meth:`RealBasicVSR.generator_loss` plus the adversarial term.

**The sharpened GT is computed here**, from the batch's GT crop (:func:`vsr.data.realworld.unsharp_mask`,
RealBasicVSR's 51 taps, σ 8, threshold 10, weight 0.5), not taken from the data set: the reference sharpens the
256² training crop after cropping and flipping (notes §2.1), which is the crop the batch holds, and the batch
keeps the plain GT that the GAN stage's discriminator needs. It is computed in float32 whatever ``train.amp``
says (a target, not a forward pass). ``sharpen_gt: false`` compares against the plain GT.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vsr.data.realworld import unsharp_mask
from vsr.losses import l1
from vsr.recipe import Recipe
from vsr.registry import Allowed, number, register
from vsr.training.objectives import SuperResolution
from vsr.training.steps import TrainingParts

log = logging.getLogger(__name__)


def sharpened(gt: Tensor) -> Tensor:
    """RealBasicVSR's unsharp-masked GT of frames ``(..., 3, H, W)``, on ``gt``'s device, in ``gt``'s dtype,
    without gradient and outside any autocast."""
    with torch.no_grad(), torch.autocast(gt.device.type, enabled=False):
        return unsharp_mask(gt)


def cleaning_target(gt: Tensor, scale: int) -> Tensor:
    """The cleaning loss's target: GT frames ``(n, t, 3, H, W)`` area-downsampled to ``(n, t, 3, H/scale,
    W/scale)`` (the mean of each ``scale × scale`` block), as the reference resizes its sharpened GT."""
    h, w = gt.shape[-2] // scale, gt.shape[-1] // scale
    return F.interpolate(gt.flatten(0, 1), size=(h, w), mode="area").unflatten(0, gt.shape[:2])


@register("objective", "realbasicvsr_wogan")
class RealBasicVSR(SuperResolution):
    """RealBasicVSR's first stage (see the module docstring): ``train.losses`` against the sharpened GT plus
    ``cleaning_weight`` × the cleaning L1. One optimiser (the ``train`` keys'); validation is the ``sr``
    objective's (``data.val_metrics``). The log has the total (``loss``) and each term (``train.losses``' names,
    ``cleaning``)."""

    allowed_arguments: ClassVar[dict[str, Allowed]] = {"cleaning_weight": number(minimum=0)}

    def __init__(self, recipe: Recipe, device: torch.device, cleaning_weight: float = 1.0, sharpen_gt: bool = True):
        super().__init__(recipe, device)
        self.cleaning_weight, self.sharpen_gt = cleaning_weight, sharpen_gt
        self.scale = recipe.model["scale"]
        self.cleans = False  # whether the model gives its cleaned LQ (set from the model by training_parts)

    def training_parts(self, model: nn.Module) -> TrainingParts:
        parts = super().training_parts(model)
        self.cleans = getattr(model, "cleaning", None) is not None
        if not self.cleans:
            log.info("%s: the model has no cleaning component, so no cleaning loss", type(self).__name__)
        return parts

    def target(self, gt: Tensor) -> Tensor:
        """What the output and the cleaned LQ are compared with: the sharpened GT (``sharpen_gt``) or ``gt``."""
        return sharpened(gt) if self.sharpen_gt else gt

    def generator_loss(self, net: nn.Module, batch: Mapping[str, Any]) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
        """``(output, total, terms)`` of ``net`` on ``batch``: ``train.losses`` against :meth:`target` and, with a
        cleaning component, ``cleaning_weight`` × the cleaning L1 (the term ``cleaning``)."""
        target = self.target(batch["gt"])
        if self.cleans:
            output, cleaned = net(batch["lq"], return_cleaned=True)
        else:
            output, cleaned = net(batch["lq"]), None
        total, terms = self.losses(output, target)
        if cleaned is not None:
            terms["cleaning"] = l1(cleaned, cleaning_target(target, self.scale))
            total = total + self.cleaning_weight * terms["cleaning"]
        return output, total, terms

    def loss(self, net: nn.Module, batch: Mapping[str, Any]) -> tuple[Tensor, dict[str, Tensor]]:
        _, total, terms = self.generator_loss(net, batch)
        return total, terms


__all__ = ["RealBasicVSR", "cleaning_target", "sharpened"]
