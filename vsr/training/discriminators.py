"""Discriminators: networks that only training uses, to judge the model's output frames.

A discriminator is trained beside the model by an adversarial objective (:mod:`vsr.training.gan`), held as one
of the objective's :class:`~vsr.training.steps.TrainingParts` modules, saved in the run's state and resumed by
name, but it is never part of the network that ``vsr model``, ``vsr export`` and ``vsr upscale`` see. That is
why it lives in ``vsr/training/`` and not in ``vsr/components/`` (the exported model's kinds).

:class:`UNetDiscriminator` is the U-Net with spectral normalisation of Real-ESRGAN (Wang et al., ICCVW 2021,
§3.3), which RealBasicVSR trains its GAN stage with. Its weights load from the two reference spellings by
:func:`discriminator_state_dict`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils import spectral_norm

#: The LeakyReLU slope after every convolution but the last (Real-ESRGAN).
NEGATIVE_SLOPE = 0.2


def _sn_conv(in_channels: int, out_channels: int, kernel_size: int, stride: int) -> nn.Module:
    """A bias-free convolution under spectral normalisation (torch's hook: ``weight_orig``, ``weight_u``,
    ``weight_v`` in the state dict, one power iteration per training-mode forward)."""
    padding = 1  # 3×3 stride 1 keeps the size; 4×4 stride 2 halves it
    return spectral_norm(nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, bias=False))


class UNetDiscriminator(nn.Module):
    """Real-ESRGAN's U-Net discriminator with spectral normalisation (RealBasicVSR's
    ``UNetDiscriminatorWithSpectralNorm``, BasicSR's ``UNetDiscriminatorSN``).

    ``forward(frames (n, in_channels, h, w))`` returns one realness logit per pixel, ``(n, 1, h, w)``; ``h`` and
    ``w`` must be multiples of 8 (three stride-2 stages down, three ×2 up). Frames of a clip are judged one by
    one: flatten ``(n, t, c, h, w)`` to ``(n·t, c, h, w)`` first.
    """

    def __init__(self, in_channels: int = 3, channels: int = 64):
        super().__init__()
        c = channels
        # encoder: a plain 3×3 stem, then three spectral-norm 4×4 stride-2 convolutions (×2 channels each)
        self.stem = nn.Conv2d(in_channels, c, 3, 1, 1)
        self.down = nn.ModuleList(_sn_conv(c * 2**i, c * 2 ** (i + 1), 4, 2) for i in range(3))
        # decoder: bilinear ×2, a spectral-norm 3×3 convolution, plus the encoder's map of that size (skip)
        self.up = nn.ModuleList(_sn_conv(c * 2 ** (3 - i), c * 2 ** (2 - i), 3, 1) for i in range(3))
        # head: two spectral-norm 3×3 convolutions at full resolution, then one logit per pixel
        self.refine = nn.ModuleList([_sn_conv(c, c, 3, 1), _sn_conv(c, c, 3, 1)])
        self.logits = nn.Conv2d(c, 1, 3, 1, 1)

    def forward(self, frames: Tensor) -> Tensor:
        if frames.ndim != 4 or frames.shape[-2] % 8 or frames.shape[-1] % 8:
            raise ValueError(
                f"the discriminator judges frames (n, c, h, w) with h and w multiples of 8, got {tuple(frames.shape)}"
            )
        x = F.leaky_relu(self.stem(frames), NEGATIVE_SLOPE)
        skips = [x]
        for conv in self.down:
            x = F.leaky_relu(conv(x), NEGATIVE_SLOPE)
            skips.append(x)
        skips.pop()  # the bottleneck is upsampled, not added back
        for conv in self.up:
            x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
            x = F.leaky_relu(conv(x), NEGATIVE_SLOPE) + skips.pop()
        for conv in self.refine:
            x = F.leaky_relu(conv(x), NEGATIVE_SLOPE)
        return self.logits(x)


#: The reference's convolution index (``conv0``…``conv9`` in BasicSR, ``conv_0``…``conv_9`` in MMagic) ->
#: this module's name for it.
REFERENCE_NAMES = {
    0: "stem",
    1: "down.0",
    2: "down.1",
    3: "down.2",
    4: "up.0",
    5: "up.1",
    6: "up.2",
    7: "refine.0",
    8: "refine.1",
    9: "logits",
}
_REFERENCE_KEY = re.compile(r"conv_?(\d)\.(.+)")


def discriminator_state_dict(state: Mapping[str, Tensor], prefix: str = "") -> dict[str, Tensor]:
    """A reference U-Net discriminator's weights under :class:`UNetDiscriminator`'s names: BasicSR's
    ``conv{i}.*`` or MMagic's ``conv_{i}.*`` (as in a RealBasicVSR GAN checkpoint's ``discriminator.*`` keys,
    with ``prefix="discriminator."``). Keys outside ``prefix`` are left out; a key under it that is not a
    discriminator convolution's fails naming it."""
    converted = {}
    for key, value in state.items():
        if not key.startswith(prefix):
            continue
        match = _REFERENCE_KEY.fullmatch(key[len(prefix) :])
        if match is None:
            raise KeyError(f"{key!r} is not a U-Net discriminator key (conv0..conv9 or conv_0..conv_9)")
        converted[f"{REFERENCE_NAMES[int(match[1])]}.{match[2]}"] = value
    return converted


__all__ = ["REFERENCE_NAMES", "UNetDiscriminator", "discriminator_state_dict"]
