"""RealBasicVSR's GAN stage (Chan et al., CVPR 2022, arXiv 2111.12704) as the objective ``realbasicvsr_gan``.

Each training step updates the generator (the recipe's model), then the discriminator
(:class:`~vsr.training.discriminators.UNetDiscriminator`, trained beside it as the objective's module
``discriminator``), as MMEditing 0.x's ``RealBasicVSR`` restorer trained the published weights:

* **Generator:** the first stage's loss (:class:`~vsr.training.realbasicvsr.RealBasicVSR`, which this objective
  extends: the recipe's ``train.losses``, RealBasicVSR's ``l1`` weight 1 and ``perceptual`` weight 1, and
  ``cleaning_weight`` × the cleaning L1, against the **unsharp-masked** GT; ``sharpen_gt``), plus
  ``adversarial_weight`` (0.05) × the vanilla GAN loss (:func:`~vsr.losses.gan_loss`) of the discriminator's
  logits on the output, labelled real.
* **Discriminator:** the GAN loss of the **un-sharpened** GT labelled real plus that of the detached output
  labelled fake, frames flattened to ``(n·t, 3, H, W)``.

Decisions:

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

from collections.abc import Mapping
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from vsr.losses import gan_loss
from vsr.recipe import Recipe
from vsr.registry import Allowed, integer, number, register
from vsr.training.discriminators import UNetDiscriminator
from vsr.training.realbasicvsr import RealBasicVSR, cleaning_target, sharpened
from vsr.training.schedule import build_scheduler
from vsr.training.steps import MAIN, StepContext, TrainingParts

#: The name of the discriminator, its optimiser and its schedule in the run's state.
DISCRIMINATOR = "discriminator"


@register("objective", "realbasicvsr_gan")
class RealBasicVSRGAN(RealBasicVSR):
    """RealBasicVSR's second training stage (see the module docstring): the first stage's generator loss plus
    ``adversarial_weight`` × the GAN loss; the U-Net discriminator (``discriminator_channels`` wide) at
    ``discriminator_lr`` on the plain GT versus the output. Validation is the ``sr`` objective's
    (``data.val_metrics``)."""

    allowed_arguments: ClassVar[dict[str, Allowed]] = {
        **RealBasicVSR.allowed_arguments,
        "adversarial_weight": number(minimum=0),
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
        super().__init__(recipe, device, cleaning_weight, sharpen_gt)
        self.adversarial_weight = adversarial_weight
        self.discriminator_lr, self.discriminator_channels = discriminator_lr, discriminator_channels

    def training_parts(self, model: nn.Module) -> TrainingParts:
        """The generator's optimiser and schedule from the ``train`` keys (``model``), and the discriminator with
        its Adam at ``discriminator_lr`` and a constant schedule (``discriminator``)."""
        parts = super().training_parts(model)
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
        with run.autocast():
            output, total, terms = self.generator_loss(run.net, batch)
            terms["adversarial"] = gan_loss(discriminator(output.flatten(0, 1)), real=True)
            total = total + self.adversarial_weight * terms["adversarial"]
        run.optimise(MAIN, total)

        with run.autocast():
            frames = torch.cat([batch["gt"].flatten(0, 1), output.detach().flatten(0, 1)])
            real, fake = discriminator(frames).chunk(2)
            judged = gan_loss(real, real=True) + gan_loss(fake, real=False)
        run.optimise(DISCRIMINATOR, judged)
        return {"loss": total, **terms, DISCRIMINATOR: judged}


# cleaning_target and sharpened live in vsr.training.realbasicvsr, beside the first stage; named here as before.
__all__ = ["DISCRIMINATOR", "RealBasicVSRGAN", "cleaning_target", "sharpened"]
