"""Modulated deformable convolution (DCNv2), with or without torchvision.

Deformable convolution (Dai et al. 2017; modulated variant DCNv2, Zhu et al. 2019) samples its input at
learned, per-pixel offsets from the regular kernel grid and scales each sample by a learned mask. EDVR's
PCD alignment (used by IconVSR's information-refill) and BasicVSR++'s flow-guided deformable alignment are
built on it.

:func:`deform_conv2d` runs ``torchvision.ops.deform_conv2d`` where torchvision imports, its kernel runs and
it supports the dtype, and otherwise :func:`deform_conv2d_torch`, a pure-PyTorch version with identical
semantics built from standard ops (one ``grid_sample`` and one matrix product), so every model also runs
where torchvision is missing or broken, on the ``meta`` device, in any floating dtype and in an ONNX export.
Which path runs is logged once, and :func:`deform_implementation` names it (``vsr profile`` reports it).
"""

from __future__ import annotations

import contextlib
import logging
import math
import sys
from collections.abc import Iterator

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


def _output_size(h: int, w: int, kernel, stride, padding, dilation) -> tuple[int, int]:
    ho = (h + 2 * padding[0] - dilation[0] * (kernel[0] - 1) - 1) // stride[0] + 1
    wo = (w + 2 * padding[1] - dilation[1] * (kernel[1] - 1) - 1) // stride[1] + 1
    return ho, wo


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

    Implementation (the deformable "im2col"): the sampling positions of all kernel points and offset groups
    are one tensor op on the offsets; ONE ``grid_sample`` gathers the bilinear samples of every kernel point
    of every output pixel, ``(n, c_in, kh*kw, ho*wo)`` channel-major like ``weight.flatten(1)``; the mask
    scales them; ONE (grouped) matrix product applies the weight. ``grid_sample`` is the fused bilinear
    gather PyTorch has: formulations with ``gather``/``index_select``, ``embedding_bag`` or a sparse matrix
    measured slower on the CPU, forward and backward. The grid is passed as (x, y) planes, rows of ``ho*wo``
    points per kernel point (``grid_sample``'s CPU kernel costs per row and reads such planes directly).
    """
    stride, padding, dilation = _pair(stride), _pair(padding), _pair(dilation)
    n, c_in, h, w = input.shape
    c_out, _, kh, kw = weight.shape
    ho, wo = _output_size(h, w, (kh, kw), stride, padding, dilation)
    groups, offset_groups = _check_shapes(input, offset, weight, mask, (ho, wo))
    k, hw_out = kh * kw, ho * wo

    # Sampling positions of every offset group, kernel point and output pixel, in pixels: the regular grid
    # (k, 2, ho*wo) as (y, x) planes plus the offsets, kept (dy, dx) as they come.
    opts = {"device": input.device, "dtype": input.dtype}
    rows = torch.arange(kh, **opts).view(kh, 1, 1, 1) * dilation[0] + torch.arange(ho, **opts).view(ho, 1) * stride[0]
    cols = torch.arange(kw, **opts).view(kw, 1, 1) * dilation[1] + torch.arange(wo, **opts) * stride[1]
    base = torch.stack(torch.broadcast_tensors(rows - padding[0], cols - padding[1]), dim=2).view(k, 2, hw_out)
    grid = offset.reshape(n * offset_groups, k, 2, hw_out) + base
    # grid_sample's normalised coordinates: with align_corners=False pixel p of a side of `size` is
    # (2p + 1)/size - 1, valid for any size (including 1), and its zeros padding is exactly torchvision's
    # out-of-image rule. (h and w stay Python numbers, so that a traced ONNX graph computes them per input.)
    grid = grid.mul(2).add_(1)
    grid = torch.stack((grid[:, :, 1] / w, grid[:, :, 0] / h), dim=2).sub_(1)  # (x, y) planes, as grid_sample reads
    # (n*g, k, ho*wo, 2) as a view of the planes: each offset group's samples are one row per kernel point
    columns = F.grid_sample(
        input.reshape(n * offset_groups, c_in // offset_groups, h, w),
        grid.transpose(2, 3),
        mode="bilinear",
        padding_mode="zeros",
        align_corners=False,
    )  # (n*g, c_in/g, k, ho*wo)
    if mask is not None:
        mask = mask.reshape(n * offset_groups, 1, k, hw_out)
        # in place where autograd needs neither factor (inference): saves a copy of the columns
        columns = columns * mask if columns.requires_grad or mask.requires_grad else columns.mul_(mask)

    # (n, groups, c_in/groups * k, ho*wo) @ weight (groups, c_out/groups, c_in/groups * k)
    out = weight.reshape(groups, c_out // groups, -1) @ columns.view(n, groups, -1, hw_out)
    out = out.view(n, c_out, ho, wo)
    if bias is not None:
        out = out.add_(bias.view(1, c_out, 1, 1))
    return out


def _reference_deform_conv2d(
    input: Tensor,
    offset: Tensor,
    weight: Tensor,
    bias: Tensor | None = None,
    stride: IntPair = (1, 1),
    padding: IntPair = (0, 0),
    dilation: IntPair = (1, 1),
    mask: Tensor | None = None,
) -> Tensor:
    """The previous :func:`deform_conv2d_torch` (vsr 2026-12), kept unchanged as the reference of
    ``tests/test_deform.py`` and ``benchmarks/bench_deform.py``; the library never calls it."""
    stride, padding, dilation = _pair(stride), _pair(padding), _pair(dilation)
    n, c_in, h, w = input.shape
    c_out, _, kh, kw = weight.shape
    ho, wo = _output_size(h, w, (kh, kw), stride, padding, dilation)
    groups, offset_groups = _check_shapes(input, offset, weight, mask, (ho, wo))
    k = kh * kw
    opts = {"device": input.device, "dtype": input.dtype}
    ky, kx = torch.meshgrid(
        torch.arange(kh, **opts) * dilation[0], torch.arange(kw, **opts) * dilation[1], indexing="ij"
    )
    base_y = ky.reshape(k, 1, 1) + (torch.arange(ho, **opts) * stride[0] - padding[0]).view(1, ho, 1)
    base_x = kx.reshape(k, 1, 1) + (torch.arange(wo, **opts) * stride[1] - padding[1]).view(1, 1, wo)
    offset = offset.view(n, offset_groups, k, 2, ho, wo)
    pos_y = base_y + offset[:, :, :, 0]
    pos_x = base_x + offset[:, :, :, 1]
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
    columns = columns.reshape(n, groups, (c_in // groups) * k, ho * wo)
    out = weight.reshape(1, groups, c_out // groups, (c_in // groups) * k) @ columns
    out = out.view(n, c_out, ho, wo)
    if bias is not None:
        out = out + bias.view(1, c_out, 1, 1)
    return out


_torchvision_deform_conv2d = None  # resolved lazily by _resolve_backend
_backend: str | None = None
_backend_reason = ""  # why the pure-PyTorch path was selected
_logged_fallbacks: set[tuple[str, str]] = set()
_ran: set[str] | None = None  # filled inside recording_implementations()

TORCHVISION = "torchvision.ops.deform_conv2d"
PURE_PYTORCH = "vsr deform_conv2d_torch (pure PyTorch: grid_sample + matmul)"


def _resolve_backend() -> str:
    """Import torchvision's deformable convolution once and run it on a 1-pixel input; any failure selects
    the pure-PyTorch path (and says why)."""
    global _backend, _backend_reason, _torchvision_deform_conv2d
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
                try:  # an import can succeed while the compiled operator is missing (a mismatched build)
                    tv_deform_conv2d(torch.zeros(1, 1, 1, 1), torch.zeros(1, 2, 1, 1), torch.zeros(1, 1, 1, 1))
                except Exception as err:
                    reason = f"torchvision.ops.deform_conv2d does not run: {type(err).__name__}: {err}"
                else:
                    _torchvision_deform_conv2d, _backend = tv_deform_conv2d, "torchvision"
                    logger.info("deformable convolution: %s", TORCHVISION)
        if _backend is None:
            _backend, _backend_reason = "pytorch", reason
            logger.info("deformable convolution: pure-PyTorch deform_conv2d_torch (%s)", reason)
    return _backend


def deform_backend() -> str:
    """``"torchvision"`` or ``"pytorch"``: the implementation :func:`deform_conv2d` runs (for float32)."""
    return _resolve_backend()


def deform_implementation() -> str:
    """A line naming the implementation :func:`deform_conv2d` runs for float32, and why, for reports."""
    if _resolve_backend() == "torchvision":
        return TORCHVISION
    return f"{PURE_PYTORCH}; {_backend_reason}" if _backend_reason else PURE_PYTORCH


@contextlib.contextmanager
def recording_implementations() -> Iterator[set[str]]:
    """Collect, in the set it yields, the implementations :func:`deform_conv2d` ran inside the block
    (:data:`TORCHVISION` or :data:`PURE_PYTORCH`); empty if the model has no deformable convolution."""
    global _ran
    previous, _ran = _ran, set()
    try:
        yield _ran
    finally:
        _ran = previous


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
            if _ran is not None:
                _ran.add(TORCHVISION)
            return _torchvision_deform_conv2d(input, offset, weight, bias, stride, padding, dilation, mask)
        key = (str(input.dtype), input.device.type)
        if key not in _logged_fallbacks:
            _logged_fallbacks.add(key)
            logger.info("deformable convolution: torchvision has no %s kernel on %s; using deform_conv2d_torch", *key)
    if _ran is not None:
        _ran.add(PURE_PYTORCH)
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
