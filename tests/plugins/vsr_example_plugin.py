"""A plugin as a user would write one, outside the vsr package: it registers a component, a loss, a metric
(lower is better) and an objective with two optimisers (a toy adversarial pair). Recipes load it with
``imports: [vsr_example_plugin]``; the commands with ``--import vsr_example_plugin``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.optim.lr_scheduler import LambdaLR

from vsr.components import Upsampling
from vsr.losses import Loss
from vsr.metrics import Metric
from vsr.registry import Allowed, number, register
from vsr.training.objectives import SuperResolution
from vsr.training.steps import MAIN, StepContext, TrainingParts


@register("upsampling", "nearest_conv")
class NearestConvUpsampling(Upsampling):
    """Each ×2 stage: nearest-neighbour enlargement, then a 3×3 convolution."""

    def make_stage(self, in_channels: int, out_channels: int) -> nn.Module:
        return nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(in_channels, out_channels, 3, 1, 1))


@register("loss", "log_cosh")
class LogCosh(Loss):
    """``mean(log(cosh(scale * (pred - target)))) / scale``: L2 near zero, L1 far from it."""

    allowed_arguments: ClassVar[dict[str, Allowed]] = {"scale": number(above=0)}

    def __init__(self, scale: float = 10.0):
        super().__init__()
        self.scale = scale

    def forward(self, pred: Tensor, target: Tensor) -> Tensor:
        x = self.scale * (pred.float() - target.float())
        return (x + F.softplus(-2 * x) - torch.log(torch.tensor(2.0))).mean() / self.scale


@register("metric", "mae")
class MeanAbsoluteError(Metric):
    """Mean absolute error per frame on the 0..255 scale: lower is better."""

    higher_is_better = False
    unit = "gray levels"
    needs_gt = True
    label = "MAE"

    def per_frame(self, pred: Tensor, gt: Tensor | None) -> Tensor:
        return (pred.double().clamp(0, 1) - gt.double().clamp(0, 1)).abs().mul(255).flatten(-3).mean(-1)


class PatchDiscriminator(nn.Module):
    """Two strided convolutions: one logit per 4×4 patch of a frame ``(n, 3, h, w)``."""

    def __init__(self, channels: int = 8):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, channels, 4, 2, 1), nn.LeakyReLU(0.2), nn.Conv2d(channels, 1, 4, 2, 1))

    def forward(self, frames: Tensor) -> Tensor:
        return self.body(frames)


@register("objective", "toy_adversarial")
class ToyAdversarial(SuperResolution):
    """The ``sr`` objective plus a discriminator with an optimiser of its own: each step updates the
    generator on ``train.losses + adversarial_weight * GAN loss``, then the discriminator on real vs. fake."""

    allowed_arguments: ClassVar[dict[str, Allowed]] = {"adversarial_weight": number(minimum=0)}
    interrupt_at: int | None = None  # tests: raise KeyboardInterrupt in this step (1-based)
    steps_taken = 0

    def __init__(self, recipe: Any, device: torch.device, adversarial_weight: float = 0.05):
        super().__init__(recipe, device)
        self.adversarial_weight = adversarial_weight

    def training_parts(self, model: nn.Module) -> TrainingParts:
        parts = super().training_parts(model)
        discriminator = PatchDiscriminator()
        optimizer = torch.optim.Adam(discriminator.parameters(), lr=1e-3, betas=(0.9, 0.99))
        return TrainingParts(
            {**parts.optimizers, "discriminator": optimizer},
            {**parts.schedulers, "discriminator": LambdaLR(optimizer, lambda _: 1.0)},
            {"discriminator": discriminator},
        )

    def step(self, batch: Mapping[str, Any], run: StepContext) -> dict[str, Tensor]:
        type(self).steps_taken += 1
        if self.interrupt_at == type(self).steps_taken:
            raise KeyboardInterrupt
        discriminator = run.nets["discriminator"]
        with run.autocast():
            output = run.net(batch["lq"])
            pixel, _ = self.losses(output, batch["gt"])
            fake = discriminator(output.flatten(0, 1)).float()
            generator_loss = pixel + self.adversarial_weight * F.binary_cross_entropy_with_logits(
                fake, torch.ones_like(fake)
            )
        run.optimise(MAIN, generator_loss)
        with run.autocast():
            frames = torch.cat([batch["gt"].flatten(0, 1), output.detach().flatten(0, 1)])
            logits = discriminator(frames).float()
            labels = torch.cat(
                [torch.ones_like(logits[: len(logits) // 2]), torch.zeros_like(logits[len(logits) // 2 :])]
            )
            discriminator_loss = F.binary_cross_entropy_with_logits(logits, labels)
        run.optimise("discriminator", discriminator_loss)
        return {"loss": generator_loss, "pixel": pixel, "discriminator": discriminator_loss}
