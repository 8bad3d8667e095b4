"""Modulated deformable convolution (DCNv2), with or without torchvision.

Deformable convolution (Dai et al. 2017; modulated variant DCNv2, Zhu et al. 2019) samples its input at
learned, per-pixel offsets from the regular kernel grid and scales each sample by a learned mask. EDVR's
PCD alignment (used by IconVSR's information-refill) and BasicVSR++'s flow-guided deformable alignment are
built on it.

:func:`deform_conv2d` runs ``torchvision.ops.deform_conv2d`` where torchvision imports and supports the
dtype, and otherwise :func:`deform_conv2d_torch`, a pure-PyTorch version with identical semantics (bilinear
sampling via ``F.grid_sample``), so every model also runs where torchvision is missing or broken, on the
``meta`` device and in any floating dtype. Which path runs is logged once.
"""

from __future__ import annotations

import logging
import math
import sys

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.modules.utils import _pair

from vsr.errors import VSRError

logger = logging.getLogger("vsr")

IntPair = int | tuple[int, int]


def _check_shapes(input: Tensor, offset: Tensor, weight: Tensor, mask: Tensor | None, out_hw: tuple[int, int]):
    """Validate the argument shapes; return ``(weight_groups, offset_groups)``."""
    if input.dim() != 4 or weight.dim() != 4 or offset.dim() != 4:
        raise VSRError(
            f"deform_conv2d expects 4-d input (n, c, h, w), offset (n, 2*g*kh*kw, ho, wo) and weight "
            f"(c_out, c_in/groups, kh, kw); got input {tuple(input.shape)}, offset {tuple(offset.shape)}, "
            f"weight {tuple(weight.shape)}"
        )
    n, c_in = input.shape[:2]
    kh, kw = weight.shape[-2:]
    if c_in % weight.shape[1] or weight.shape[0] % (c_in // weight.shape[1]):
        raise VSRError(
            f"deform_conv2d: weight {tuple(weight.shape)} does not fit {c_in} input channels: weight.shape[1] "
            f"must divide c_in and c_in/weight.shape[1] (the groups) must divide c_out"
        )
    groups = c_in // weight.shape[1]
    if offset.shape[1] % (2 * kh * kw) or offset.shape[1] == 0 or c_in % (offset.shape[1] // (2 * kh * kw)):
        raise VSRError(
            f"deform_conv2d: offset has {offset.shape[1]} channels; it needs 2*offset_groups*kh*kw = "
            f"2*g*{kh * kw} channels with g dividing the {c_in} input channels"
        )
    offset_groups = offset.shape[1] // (2 * kh * kw)
    expected = (n, 2 * offset_groups * kh * kw, *out_hw)
    if tuple(offset.shape) != expected:
        raise VSRError(
            f"deform_conv2d: offset shape {tuple(offset.shape)} does not match the output grid; expected "
            f"{expected} for input {tuple(input.shape)}, kernel {kh}x{kw} and the given stride/padding/dilation"
        )
    if mask is not None and tuple(mask.shape) != (n, offset_groups * kh * kw, *out_hw):
        raise VSRError(
            f"deform_conv2d: mask shape {tuple(mask.shape)} should be {(n, offset_groups * kh * kw, *out_hw)} "
            f"(one value per offset group, kernel point and output pixel)"
        )
    return groups, offset_groups


def deform_conv2d_torch(
    input: Tensor,
    offset: Tensor,
    weight: Tensor,
    bias: Tensor | None = None,
    stride: IntPair = (1, 1),
    padding: IntPair = (0, 0),
    dilation: IntPair = (1, 1),
    mask: Tensor | None = None,
) -> Tensor:
    """Modulated deformable convolution in pure PyTorch, semantics of ``torchvision.ops.deform_conv2d``.

    Shapes: ``input (n, c_in, h, w)``, ``offset (n, 2*g*kh*kw, ho, wo)`` holding a ``(dy, dx)`` pair per
    offset group ``g`` and kernel point (row-major), ``weight (c_out, c_in/groups, kh, kw)``,
    ``mask (n, g*kh*kw, ho, wo)`` or ``None`` (all ones) -> ``(n, c_out, ho, wo)``. Kernel point ``(i, j)``
    of output pixel ``(y, x)`` reads ``input`` bilinearly at
    ``(y*stride - pad + i*dil + dy, x*stride - pad + j*dil + dx)``, with zeros outside the image; the
    offset groups split the input channels, independently of the weight groups.

    Implementation: one ``grid_sample`` per call gathers all kernel points of all output pixels (the
    deformable "im2col", ``(n, c_in, kh*kw, ho*wo)``), then a grouped matrix product applies the weight.
    """
    stride, padding, dilation = _pair(stride), _pair(padding), _pair(dilation)
    n, c_in, h, w = input.shape
    c_out, _, kh, kw = weight.shape
    ho = (h + 2 * padding[0] - dilation[0] * (kh - 1) - 1) // stride[0] + 1
    wo = (w + 2 * padding[1] - dilation[1] * (kw - 1) - 1) // stride[1] + 1
    groups, offset_groups = _check_shapes(input, offset, weight, mask, (ho, wo))
    k = kh * kw

    # Sampling positions in pixels, (n, g, k, ho, wo) each; the regular grid plus the learned offsets.
    opts = {"device": input.device, "dtype": input.dtype}
    ky, kx = torch.meshgrid(
        torch.arange(kh, **opts) * dilation[0], torch.arange(kw, **opts) * dilation[1], indexing="ij"
    )
    base_y = ky.reshape(k, 1, 1) + (torch.arange(ho, **opts) * stride[0] - padding[0]).view(1, ho, 1)
    base_x = kx.reshape(k, 1, 1) + (torch.arange(wo, **opts) * stride[1] - padding[1]).view(1, 1, wo)
    offset = offset.view(n, offset_groups, k, 2, ho, wo)
    pos_y = base_y + offset[:, :, :, 0]
    pos_x = base_x + offset[:, :, :, 1]

    # grid_sample with align_corners=False maps pixel p to (2p + 1)/size - 1; this normalisation is valid
    # for any size (including 1), and its zeros padding is exactly torchvision's out-of-image rule.
    grid = torch.stack(((2 * pos_x + 1) / w - 1, (2 * pos_y + 1) / h - 1), dim=-1)
    grid = grid.view(n * offset_groups, k * ho, wo, 2)
    columns = F.grid_sample(
        input.reshape(n * offset_groups, c_in // offset_groups, h, w),
        grid,
        mode="bilinear",
        padding_mode="zeros",
        align_corners=False,
    ).view(n, offset_groups, c_in // offset_groups, k, ho * wo)
    if mask is not None:
        columns = columns * mask.view(n, offset_groups, 1, k, ho * wo)

    # (n, groups, c_in/groups * k, ho*wo): channel-major, kernel-point-minor, like weight.flatten(1).
    columns = columns.reshape(n, groups, (c_in // groups) * k, ho * wo)
    out = weight.reshape(1, groups, c_out // groups, (c_in // groups) * k) @ columns
    out = out.view(n, c_out, ho, wo)
    if bias is not None:
        out = out + bias.view(1, c_out, 1, 1)
    return out


_torchvision_deform_conv2d = None  # resolved lazily by _resolve_backend
_backend: str | None = None
_logged_fallbacks: set[tuple[str, str]] = set()


def _resolve_backend() -> str:
    """Import torchvision's deformable convolution once; any failure selects the pure-PyTorch path."""
    global _backend, _torchvision_deform_conv2d
    if _backend is None:
        try:
            from torchvision.ops import deform_conv2d as tv_deform_conv2d
        except Exception as err:  # not installed, or built against another torch
            # a failed import can leave half-initialised torchvision submodules behind
            for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
                del sys.modules[name]
            reason = f"torchvision not importable: {type(err).__name__}: {err}"
        else:
            if tv_deform_conv2d is deform_conv2d_torch:
                reason = "only the test suite's torchvision stand-in (tests/basicsr_reference.py) is loaded"
            else:
                _torchvision_deform_conv2d, _backend = tv_deform_conv2d, "torchvision"
                logger.info("deformable convolution: torchvision.ops.deform_conv2d")
        if _backend is None:
            _backend = "pytorch"
            logger.info("deformable convolution: pure-PyTorch deform_conv2d_torch (%s)", reason)
    return _backend


def deform_backend() -> str:
    """``"torchvision"`` or ``"pytorch"``: the implementation :func:`deform_conv2d` runs (for float32)."""
    return _resolve_backend()


def _torchvision_supports(input: Tensor) -> bool:
    # torchvision's kernels exist for float32/float64 everywhere and float16 on CUDA only.
    return input.dtype in (torch.float32, torch.float64) or (
        input.dtype == torch.float16 and input.device.type == "cuda"
    )


def deform_conv2d(
    input: Tensor,
    offset: Tensor,
    weight: Tensor,
    bias: Tensor | None = None,
    stride: IntPair = (1, 1),
    padding: IntPair = (0, 0),
    dilation: IntPair = (1, 1),
    mask: Tensor | None = None,
) -> Tensor:
    """Modulated deformable convolution: torchvision's kernel where available, else the pure-PyTorch one.

    Same signature and semantics as ``torchvision.ops.deform_conv2d`` (see :func:`deform_conv2d_torch`).
    """
    if _resolve_backend() == "torchvision":
        if _torchvision_supports(input):
            return _torchvision_deform_conv2d(input, offset, weight, bias, stride, padding, dilation, mask)
        key = (str(input.dtype), input.device.type)
        if key not in _logged_fallbacks:
            _logged_fallbacks.add(key)
            logger.info("deformable convolution: torchvision has no %s kernel on %s; using deform_conv2d_torch", *key)
    return deform_conv2d_torch(input, offset, weight, bias, stride, padding, dilation, mask)


def reset_deform_parameters(weight: Tensor, bias: Tensor | None, in_channels: int) -> None:
    """The references' initialisation of a deformable convolution's ``weight (c_out, c_in/groups, kh, kw)``:
    uniform in ``±1/sqrt(in_channels*kh*kw)`` (all input channels, whatever the groups), and a zero ``bias``."""
    bound = 1.0 / math.sqrt(in_channels * weight.shape[2] * weight.shape[3])
    nn.init.uniform_(weight, -bound, bound)
    if bias is not None:
        nn.init.zeros_(bias)


class ModulatedDeformConvPack(nn.Module):
    """DCNv2 layer whose offsets and masks are predicted from a *separate* feature ``feat``.

    This is the "DCNv2Pack" of BasicSR / ``ModulatedDCNPack`` of MMagic used by EDVR's PCD alignment
    (Wang et al. 2019) and analysed in "Understanding Deformable Alignment in Video Super-Resolution"
    (Chan et al. 2021): ``conv_offset(feat)`` gives ``3*g*k*k`` channels, split into thirds ``o1, o2, m``;
    the offsets are ``cat(o1, o2)`` and the mask ``sigmoid(m)``. ``conv_offset`` starts at zero, so the
    layer starts as a plain convolution with all samples weighted 0.5. Parameter names (``weight``,
    ``bias``, ``conv_offset.*``) match both references, so their checkpoints load unchanged.

    BasicSR also logs a warning when the mean absolute offset exceeds 50 (diverging training); that check
    synchronises the device on every call and is left out.

    Shapes: ``x (n, in_channels, h, w)``, ``feat (n, in_channels, h, w)`` -> ``(n, out_channels, ho, wo)``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        padding: int = 1,
        dilation: int = 1,
        groups: int = 1,
        deform_groups: int = 1,
        bias: bool = True,
    ):
        super().__init__()
        if in_channels % groups or out_channels % groups or in_channels % deform_groups:
            raise VSRError(
                f"ModulatedDeformConvPack: in_channels={in_channels} and out_channels={out_channels} must be "
                f"divisible by groups={groups}, and in_channels by deform_groups={deform_groups}"
            )
        self.in_channels = in_channels
        self.kernel_size = _pair(kernel_size)
        self.stride, self.padding, self.dilation = _pair(stride), _pair(padding), _pair(dilation)
        self.deform_groups = deform_groups
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels // groups, *self.kernel_size))
        self.bias = nn.Parameter(torch.empty(out_channels)) if bias else None
        self.conv_offset = nn.Conv2d(
            in_channels,
            deform_groups * 3 * self.kernel_size[0] * self.kernel_size[1],
            self.kernel_size,
            stride=self.stride,
            padding=self.padding,
            dilation=self.dilation,
        )
        self.reset_parameters()

    def reset_parameters(self) -> None:
        reset_deform_parameters(self.weight, self.bias, self.in_channels)
        nn.init.zeros_(self.conv_offset.weight)
        nn.init.zeros_(self.conv_offset.bias)

    def forward(self, x: Tensor, feat: Tensor) -> Tensor:
        o1, o2, mask = torch.chunk(self.conv_offset(feat), 3, dim=1)
        offset = torch.cat((o1, o2), dim=1)
        return deform_conv2d(
            x, offset, self.weight, self.bias, self.stride, self.padding, self.dilation, torch.sigmoid(mask)
        )
