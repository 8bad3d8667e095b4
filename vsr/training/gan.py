"""RealBasicVSR's GAN stage (Chan et al., CVPR 2022, arXiv 2111.12704) as the objective ``realbasicvsr_gan``.

Each training step updates the generator (the recipe's model), then the discriminator
(:class:`~vsr.training.discriminators.UNetDiscriminator`, trained beside it as the objective's module
``discriminator``), as MMEditing 0.x's ``RealBasicVSR`` restorer trained the published weights:

* **Generator:** the recipe's ``train.losses`` (RealBasicVSR: ``l1`` weight 1 and ``perceptual`` weight 1)
  against the **unsharp-masked** GT; plus ``cleaning_weight`` × the L1 between the model's cleaned LQ and the
  sharpened GT area-downsampled by the scale (only with a ``cleaning`` component: a model without one has no
  cleaned LQ, and the run's log says the term is off); plus ``adversarial_weight`` (0.05) × the vanilla GAN loss
  (:func:`~vsr.losses.gan_loss`) of the discriminator's logits on the output, labelled real.
* **Discriminator:** the GAN loss of the **un-sharpened** GT labelled real plus that of the detached output
  labelled fake, frames flattened to ``(n·t, 3, H, W)``.

Decisions:

* **The sharpened GT is computed here**, from the batch's GT crop (:func:`vsr.data.realworld.unsharp_mask`,
  RealBasicVSR's 51 taps, σ 8, threshold 10, weight 0.5), not taken from the data set: the reference sharpens
  the 256² training crop after cropping and flipping (notes §2.1), which is the crop the batch holds, and the
  batch keeps the plain GT the discriminator needs. ``sharpen_gt: false`` compares against the plain GT.
* **One discriminator forward per discriminator step**, on the real and fake frames concatenated: under DDP a
  module's forward is followed by one backward. Its loss is still real's mean plus fake's mean, as the
  reference's two backward passes sum; spectral norm's power iteration runs once per step instead of twice.
* **Optimisers:** the generator's is the recipe's (Adam, ``train.lr``, ``train.betas``, ``train.scheduler``:
  5e-5, (0.9, 0.99), constant in RealBasicVSR); the discriminator's is Adam at ``discriminator_lr`` (1e-4) with
  ``train.betas``, constant. Both are saved and resumed by name; the run keeps the generator's EMA.
* The generator's step backpropagates through the discriminator, which the discriminator's own step discards
  (its gradients are zeroed first). Its parameters keep ``requires_grad``: turning it off would leave a DDP
  discriminator waiting for gradients that never come.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vsr.data.realworld import unsharp_mask
from vsr.losses import gan_loss, l1
from vsr.recipe import Recipe
from vsr.registry import Allowed, integer, number, register
from vsr.training.discriminators import UNetDiscriminator
from vsr.training.objectives import SuperResolution
from vsr.training.schedule import build_scheduler
from vsr.training.steps import MAIN, StepContext, TrainingParts

log = logging.getLogger(__name__)

#: The name of the discriminator, its optimiser and its schedule in the run's state.
DISCRIMINATOR = "discriminator"


def sharpened(gt: Tensor) -> Tensor:
    """RealBasicVSR's unsharp-masked GT of frames ``(..., 3, H, W)``, on ``gt``'s device, without gradient."""
    with torch.no_grad():
        return unsharp_mask(gt)


def cleaning_target(gt: Tensor, scale: int) -> Tensor:
    """The cleaning loss's target: GT frames ``(n, t, 3, H, W)`` area-downsampled to ``(n, t, 3, H/scale,
    W/scale)`` (the mean of each ``scale × scale`` block), as the reference resizes its sharpened GT."""
    h, w = gt.shape[-2] // scale, gt.shape[-1] // scale
    return F.interpolate(gt.flatten(0, 1), size=(h, w), mode="area").unflatten(0, gt.shape[:2])


@register("objective", "realbasicvsr_gan")
class RealBasicVSRGAN(SuperResolution):
    """RealBasicVSR's second training stage (see the module docstring): ``train.losses`` and the cleaning L1
    against the sharpened GT plus ``adversarial_weight`` × the GAN loss for the generator; the U-Net
    discriminator (``discriminator_channels`` wide) at ``discriminator_lr`` on the plain GT versus the output.
    Validation is the ``sr`` objective's (``data.val_metrics``)."""

    allowed_arguments: ClassVar[dict[str, Allowed]] = {
        "adversarial_weight": number(minimum=0),
        "cleaning_weight": number(minimum=0),
        "discriminator_lr": number(above=0),
        "discriminator_channels": integer(1),
    }

    def __init__(
        self,
        recipe: Recipe,
        device: torch.device,
        adversarial_weight: float = 0.05,
        cleaning_weight: float = 1.0,
        discriminator_lr: float = 1e-4,
        discriminator_channels: int = 64,
        sharpen_gt: bool = True,
    ):
        super().__init__(recipe, device)
        self.adversarial_weight, self.cleaning_weight = adversarial_weight, cleaning_weight
        self.discriminator_lr, self.discriminator_channels = discriminator_lr, discriminator_channels
        self.sharpen_gt = sharpen_gt
        self.scale = recipe.model["scale"]
        self.cleans = False  # whether the model gives its cleaned LQ (set from the model by training_parts)

    def training_parts(self, model: nn.Module) -> TrainingParts:
        """The generator's optimiser and schedule from the ``train`` keys (``model``), and the discriminator with
        its Adam at ``discriminator_lr`` and a constant schedule (``discriminator``)."""
        parts = super().training_parts(model)
        self.cleans = getattr(model, "cleaning", None) is not None
        if not self.cleans:
            log.info("realbasicvsr_gan: the model has no cleaning component, so no cleaning loss")
        discriminator = UNetDiscriminator(3, self.discriminator_channels)
        betas = tuple(self.recipe.train["betas"])
        optimizer = torch.optim.Adam(discriminator.parameters(), lr=self.discriminator_lr, betas=betas)
        return TrainingParts(
            {**parts.optimizers, DISCRIMINATOR: optimizer},
            {**parts.schedulers, DISCRIMINATOR: build_scheduler(optimizer, {"scheduler": "constant"})},
            {DISCRIMINATOR: discriminator},
        )

    def step(self, batch: Mapping[str, Any], run: StepContext) -> dict[str, Tensor]:
        """One generator step, then one discriminator step; returns the generator's total (``loss``), each of its
        terms (``train.losses``' names, ``cleaning``, ``adversarial``) and the discriminator's loss."""
        discriminator = run.nets[DISCRIMINATOR]
        gt = batch["gt"]
        target = sharpened(gt) if self.sharpen_gt else gt
        with run.autocast():
            if self.cleans:
                output, cleaned = run.net(batch["lq"], return_cleaned=True)
            else:
                output, cleaned = run.net(batch["lq"]), None
            total, terms = self.losses(output, target)
            if cleaned is not None:
                terms["cleaning"] = l1(cleaned, cleaning_target(target, self.scale))
                total = total + self.cleaning_weight * terms["cleaning"]
            terms["adversarial"] = gan_loss(discriminator(output.flatten(0, 1)), real=True)
            total = total + self.adversarial_weight * terms["adversarial"]
        run.optimise(MAIN, total)

        with run.autocast():
            frames = torch.cat([gt.flatten(0, 1), output.detach().flatten(0, 1)])
            real, fake = discriminator(frames).chunk(2)
            judged = gan_loss(real, real=True) + gan_loss(fake, real=False)
        run.optimise(DISCRIMINATOR, judged)
        return {"loss": total, **terms, DISCRIMINATOR: judged}


__all__ = ["DISCRIMINATOR", "RealBasicVSRGAN", "cleaning_target", "sharpened"]
