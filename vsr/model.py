"""Assemble the components a recipe names into one video super-resolution network.

The model wires components through their kind interfaces only (see :mod:`vsr.components`): it optionally
cleans the LR frames, computes the flows the propagation's branches need, lets the propagation visit the frames
with one alignment and one aggregation per branch, optionally refills keyframes, and upsamples every frame.
Nothing here switches on component names, so a newly registered component is usable from a recipe at once.
"""

from __future__ import annotations

import copy
import logging
import os
import weakref
from collections import OrderedDict
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.modules.module import register_module_parameter_registration_hook
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from vsr.components.propagation import ClipFlows, Propagation
from vsr.errors import RecipeError, VSRError
from vsr.recipe import Recipe, load_recipe
from vsr.registry import COMPONENT_KINDS, build, check

log = logging.getLogger("vsr")

# Parameters that start from pretrained weights: trained at a lower learning rate and frozen at first.
PRETRAINED_PREFIXES = ("flow.", "refill.extractor.")


def is_mirror_extended(lrs: Tensor) -> bool:
    """Whether the clip is ``x_1..x_k, x_k..x_1`` (Vimeo-90K's 7 frames mirrored to 14).

    Then the forward flows are the backward ones reversed and need not be computed. A data-dependent test:
    it answers ``False`` where tensors hold no data (the ``meta`` device, tracing under torch.compile), so
    that path simply computes both flows.
    """
    t = lrs.shape[1]
    if t < 2 or t % 2 or lrs.device.type == "meta" or torch.compiler.is_compiling():
        return False
    first, second = lrs.chunk(2, dim=1)
    return bool(torch.equal(first, second.flip(1)))


class VideoSRNet(nn.Module):
    """A recurrent VSR network made of interchangeable components (BasicVSR's four functionalities).

    ``forward(lrs)`` maps ``(n, t, 3, h, w)`` in [0, 1] to ``(n, t, 3, scale*h, scale*w)`` for any ``t >= 1``
    and any ``h, w`` (padded by reflection to what the components need and cropped back). A ``cleaning``
    component first cleans the LR frames (RealBasicVSR), and everything downstream sees the cleaned frames;
    ``forward(lrs, return_cleaned=True)`` returns ``(output, cleaned)``, the cleaned frames ``(n, t, 3, h, w)``
    for a cleaning loss (``lrs`` itself without a cleaning component).
    """

    def __init__(
        self,
        scale: int,
        channels: int,
        flow: nn.Module | None,
        propagation: Propagation,
        upsampling: nn.Module,
        refill: nn.Module | None = None,
        detect_mirror: bool = True,
        cleaning: nn.Module | None = None,
    ):
        super().__init__()
        self.scale, self.channels, self.detect_mirror = scale, channels, detect_mirror
        self.cleaning = cleaning
        self.flow = flow
        self.refill = refill
        self.propagation = propagation
        self.upsampling = upsampling
        self.uses_flow = any(propagation.alignment(b).uses_flow for b in propagation.branches)
        if self.uses_flow and flow is None:
            raise ValueError("the alignment needs optical flow but no flow estimator was given")
        self.spatial_multiple = getattr(refill, "spatial_multiple", 1)

    def compute_flows(self, lrs: Tensor) -> ClipFlows:
        """Flows between consecutive frames in the directions the branches run in, each ``(n, t-1, 2, h, w)``,
        computed in one batch per direction."""
        n, t = lrs.shape[:2]
        directions = self.propagation.directions
        if not self.uses_flow or t < 2:
            return ClipFlows()
        current, following = lrs[:, :-1].flatten(0, 1), lrs[:, 1:].flatten(0, 1)
        flows = ClipFlows()
        if "backward" in directions:
            flows.backward = self.flow(current, following).unflatten(0, (n, t - 1))
        if "forward" in directions:
            if flows.backward is not None and self.detect_mirror and is_mirror_extended(lrs):
                flows.forward = flows.backward.flip(1)
            else:
                flows.forward = self.flow(following, current).unflatten(0, (n, t - 1))
        return flows

    def forward(self, lrs: Tensor, return_cleaned: bool = False) -> Tensor | tuple[Tensor, Tensor]:
        if lrs.ndim != 5 or lrs.shape[2] != 3:
            raise ValueError(f"expected LR frames of shape (n, t, 3, h, w), got {tuple(lrs.shape)}")
        # Cleaned before padding: the stopping rule of its refinement averages over the frames themselves.
        lrs = cleaned = self.cleaning(lrs) if self.cleaning is not None else lrs
        h, w = lrs.shape[-2:]
        m = self.spatial_multiple
        pad_h, pad_w = (m - h % m) % m, (m - w % m) % m  # positive operands: exported to ONNX as computed
        if torch.jit.is_tracing() and m > 1:
            # ONNX export (vsr.export): a pad amount would be frozen at the traced size. Pad by the most any size
            # needs and keep the multiple of m that covers the frame: the same frames, sliced by the input's size.
            lrs = F.pad(lrs.flatten(0, 1), (0, m - 1, 0, m - 1), mode="reflect").unflatten(0, lrs.shape[:2])
            lrs = lrs[..., : h + pad_h, : w + pad_w]
        elif pad_h or pad_w:
            mode = "reflect" if pad_h < h and pad_w < w else "replicate"
            lrs = F.pad(lrs.flatten(0, 1), (0, pad_w, 0, pad_h), mode=mode).unflatten(0, lrs.shape[:2])

        flows = self.compute_flows(lrs)
        refill = self.refill(lrs) if self.refill is not None else None
        features = self.propagation(lrs, flows, refill)
        # Upsample frame by frame: only one high-resolution feature map is alive at a time.
        out = torch.stack([self.upsampling(f, lrs[:, i]) for i, f in enumerate(features)], dim=1)
        out = out[..., : self.scale * h, : self.scale * w]
        return (out, cleaned) if return_cleaned else out

    def component_parameters(self) -> dict[str, int]:
        """Parameter count of each component (the rows of ``vsr model`` and the study tables)."""
        counts: dict[str, int] = OrderedDict()
        for name, module in (
            ("flow", self.flow),
            ("refill", self.refill),
            ("propagation", self.propagation),
            ("upsampling", self.upsampling),
            ("cleaning", self.cleaning),
        ):
            if module is not None:
                counts[name] = sum(p.numel() for p in module.parameters())
        branches = self.propagation.branches
        alignment = sum(p.numel() for b in branches for p in self.propagation.alignment(b).parameters())
        aggregation = sum(p.numel() for b in branches for p in self.propagation.aggregation(b).parameters())
        counts["propagation"] -= alignment + aggregation
        counts["alignment"], counts["aggregation"] = alignment, aggregation
        return counts


def assemble(model_section: dict[str, Any]) -> VideoSRNet:
    """Build a :class:`VideoSRNet` from a validated recipe ``model`` section, once its parameters are known to
    fit this machine's memory (:func:`check_model_size`)."""
    check_model_size(model_section)
    return _assemble(model_section)


def _assemble(section: dict[str, Any]) -> VideoSRNet:
    scale, channels = section["scale"], section["channels"]

    def spec(kind: str) -> tuple[str, dict[str, Any]]:
        entry = dict(section[kind])
        return entry.pop("name"), entry

    propagation_name, propagation_args = spec("propagation")
    layout = check("propagation", propagation_name, propagation_args).layout(channels, **propagation_args)
    branches = layout.branches

    alignment_name, alignment_args = spec("alignment")
    alignments = {
        b: build(
            "alignment",
            alignment_name,
            alignment_args,
            channels=channels,
            frame_channels=layout.frame_channels,
            order=layout.order,
        )
        for b in branches
    }
    aggregation_name, aggregation_args = spec("aggregation")
    aggregations = {
        b: build(
            "aggregation",
            aggregation_name,
            aggregation_args,
            # [the frame's input, the coupled branches' states, all the alignment returns]
            in_channels=layout.frame_channels + layout.coupled[b] + alignments[b].output_channels,
            out_channels=channels,
        )
        for b in branches
    }
    propagation = build(
        "propagation",
        propagation_name,
        propagation_args,
        channels=channels,
        alignments=alignments,
        aggregations=aggregations,
    )
    uses_flow = any(a.uses_flow for a in alignments.values())
    flow = build("flow", *spec("flow")) if uses_flow else None
    refill = build("refill", *spec("refill"), channels=channels, branches=branches)
    upsampling = build("upsampling", *spec("upsampling"), in_channels=channels, scale=scale)
    cleaning = build("cleaning", *spec("cleaning"), channels=channels)
    detect_mirror = section["detect_mirror"]
    return VideoSRNet(scale, channels, flow, propagation, upsampling, refill, detect_mirror, cleaning)


# --------------------------------------------------------------------------------------------------------
# Sizes: what a model and a forward pass need, known before anything is allocated

#: Bytes per parameter: float32 weights (what any use of the model holds), and training's (the weights, their
#: gradients and Adam's two moments, 4 bytes each).
WEIGHT_BYTES = 4
TRAINING_BYTES = 16

#: A component's integer argument above this (``num_blocks: 100000``) is not built to be counted: its count is
#: measured at three small values and, where it grows linearly, extrapolated (building 100000 residual blocks
#: takes minutes even without storage).
EXTRAPOLATE_ABOVE = 64


def machine_memory(device: str | torch.device = "cpu") -> int:
    """Bytes of memory of ``device``: the GPU's for CUDA, else the machine's physical memory."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).total_memory
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def gigabytes(count: float) -> str:
    """Bytes as GB (MB below one GB)."""
    return f"{count / 1e9:,.1f} GB" if count >= 1e9 else f"{count / 1e6:,.1f} MB"


class _TooMany(Exception):
    """Counting stopped: the parameters registered so far already pass the limit."""


def parameter_count(section: dict[str, Any], limit: int | None = None) -> int:
    """Parameters of the network a validated ``model`` section describes, counted without allocating: built on
    the ``meta`` device, a large integer argument extrapolated (:data:`EXTRAPOLATE_ABOVE`). With ``limit``,
    counting stops once the count passes it (raising ``_TooMany``), so no size takes long to refuse."""
    for kind in COMPONENT_KINDS:
        entry = section[kind] if isinstance(section[kind], dict) else {"name": section[kind]}
        for arg, value in entry.items():
            if isinstance(value, int) and not isinstance(value, bool) and value > EXTRAPOLATE_ABOVE:
                counts = _counts_at(section, kind, arg, limit)
                if counts is not None and counts[2] - counts[1] == counts[1] - counts[0]:
                    return counts[0] + (value - 1) * (counts[1] - counts[0])
    return _count_built(section, limit)


def _counts_at(section: dict[str, Any], kind: str, arg: str, limit: int | None) -> list[int] | None:
    """The parameter counts with ``arg`` of ``kind`` at 1, 2 and 3; None where the component refuses those."""
    counts = []
    for value in (1, 2, 3):
        changed = {**section, kind: {**section[kind], arg: value}}
        try:
            check(kind, changed[kind]["name"], {k: v for k, v in changed[kind].items() if k != "name"})
            counts.append(parameter_count(changed, limit))
        except RecipeError:
            return None
    return counts


def _count_built(section: dict[str, Any], limit: int | None) -> int:
    count = 0

    def counted(module: nn.Module, name: str, param: nn.Parameter | None) -> None:
        nonlocal count
        if param is not None:
            count += param.numel()
            if limit is not None and count > limit:
                raise _TooMany

    handle = register_module_parameter_registration_hook(counted)
    try:
        with torch.device("meta"):
            _assemble(section)
    finally:
        handle.remove()
    return count


def check_model_size(
    section: dict[str, Any], bytes_per_parameter: int = WEIGHT_BYTES, device: str | torch.device = "cpu"
) -> int:
    """The parameter count of a ``model`` section, after refusing, with a :class:`VSRError` giving the size and
    the limit, a network whose parameters (``bytes_per_parameter`` each: :data:`WEIGHT_BYTES` to use it,
    :data:`TRAINING_BYTES` to train it) need more than the memory of ``device`` (:func:`machine_memory`). A
    network that cannot be built on the ``meta`` device (a plugin reading tensor values as it builds) is not
    checked: 0."""
    memory = machine_memory(device)
    limit = memory // bytes_per_parameter
    try:  # counted in full up to far beyond the limit, so that the message gives the size
        count: int | None = parameter_count(section, 1000 * limit)
    except _TooMany:
        count = None
    except (RecipeError, VSRError):
        raise
    except Exception as err:  # a component (a plugin's) that cannot be built on the meta device: not counted
        log.debug("model size not checked: the network does not build on the meta device (%s)", err)
        return 0
    if count is not None and count <= limit:
        return count
    sizes = ", ".join(
        [f"model.channels={section['channels']}"]
        + [
            f"model.{kind}.{arg}={value}"
            for kind in COMPONENT_KINDS
            if isinstance(section[kind], dict)
            for arg, value in section[kind].items()
            if isinstance(value, int) and not isinstance(value, bool)
        ]
    )
    if count is None:
        size = f"more than {1000 * limit:,} parameters, over {gigabytes(1000 * memory)}"
    else:
        size = f"{count:,} parameters, {gigabytes(count * bytes_per_parameter)}"
    use = "to train (weights, gradients and optimizer state)" if bytes_per_parameter > WEIGHT_BYTES else "of weights"
    raise VSRError(
        f"the model is too large for this machine: {sizes} make {size} at {bytes_per_parameter} bytes per "
        f"parameter {use}, more than the {gigabytes(memory)} of memory here ({torch.device(device)}). Lower "
        "model.channels or the sizes named"
    )


class _PeakMemory(TorchDispatchMode):
    """The most bytes that the tensors made by the ops of a forward pass hold at once: each new storage is
    counted until the last tensor on it is gone (views share their base's). Run on the ``meta`` device it
    measures a pass of any size for free."""

    def __init__(self):
        super().__init__()
        self.live = self.peak = self.ops = 0
        self.holders: dict[int, tuple[int, set[int]]] = {}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        self.ops += 1
        for tensor in tree_leaves(out):
            if isinstance(tensor, Tensor):
                storage = tensor.untyped_storage()
                nbytes, holders = self.holders.setdefault(storage._cdata, (storage.nbytes(), set()))
                if not holders:
                    self.live += nbytes
                    self.peak = max(self.peak, self.live)
                if id(tensor) not in holders:
                    holders.add(id(tensor))
                    weakref.finalize(tensor, self._release, storage._cdata, id(tensor))
        return out

    def _release(self, key: int, tensor: int) -> None:
        nbytes, holders = self.holders.get(key, (0, set()))
        holders.discard(tensor)
        if not holders and key in self.holders:
            self.live -= nbytes
            del self.holders[key]


#: Frame counts at which a forward pass is measured; beyond the last, its memory is extrapolated linearly (a
#: recurrent network keeps a few feature maps per frame, and batches its flows over the frames).
MEASURED_FRAMES = (4, 8)


def forward_cost(model: nn.Module, frames: int, size: tuple[int, int], batch: int = 1) -> tuple[int, int]:
    """``(bytes, ops)``: an estimate of the memory a forward pass of ``model`` (no gradients) takes on
    ``(batch, frames, 3, *size)`` LR frames (the input and the peak of what its ops hold, :class:`_PeakMemory`),
    and the ops it runs, measured on a ``meta`` copy; beyond ``MEASURED_FRAMES[-1]`` frames, extrapolated
    linearly from the two measured counts."""
    meta = model if next(model.parameters(), torch.empty(0)).is_meta else copy.deepcopy(model).to("meta")

    def measured(t: int) -> tuple[int, int]:
        peak = _PeakMemory()
        with torch.inference_mode(), peak:
            meta(torch.empty(batch, t, 3, *size, device="meta"))
        return peak.peak + batch * t * 3 * size[0] * size[1] * 4, peak.ops

    if frames <= MEASURED_FRAMES[-1]:
        return measured(frames)
    (low, low_ops), (high, high_ops) = (measured(t) for t in MEASURED_FRAMES)
    more = (frames - MEASURED_FRAMES[1]) / (MEASURED_FRAMES[1] - MEASURED_FRAMES[0])
    return int(high + more * max(0, high - low)), int(high_ops + more * max(0, high_ops - low_ops))


def check_forward_size(
    model: nn.Module,
    frames: int,
    sizes: list[tuple[int, tuple[int, int]]],
    what: str,
    device: str | torch.device = "cpu",
    bytes_per_op: int = 0,
    fix: str = "use fewer frames or a smaller size",
) -> int:
    """The memory a forward pass of ``frames`` frames takes at the largest of ``sizes`` (``(batch, (h, w))``
    pairs): the model's weights, the activations (:func:`forward_cost`) and ``bytes_per_op`` for each op run (a
    tracer records them all); after refusing, with a :class:`VSRError` giving the size and the limit, a pass
    that needs more than ``device`` has. ``what`` names the command in the message, ``fix`` the way out."""
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    try:
        costs = [forward_cost(model, frames, size, batch) for batch, size in sizes]
    except Exception as err:  # a component that cannot run on the meta device: nothing to measure with
        log.info("%s: the memory of a pass is not estimated (the model does not run on the meta device: %s)", what, err)
        return weights
    activations, ops = max(costs)
    need = weights + activations + ops * bytes_per_op
    memory = machine_memory(device)
    if need > memory:
        traced = f", and {gigabytes(ops * bytes_per_op)} to trace its {ops:,} ops" if bytes_per_op else ""
        batch, (h, w) = max(sizes, key=lambda s: s[0] * s[1][0] * s[1][1])
        raise VSRError(
            f"{what}: {frames} frames of {h}x{w} LR pixels{f' (a batch of {batch})' if batch > 1 else ''} need "
            f"about {gigabytes(need)} ({gigabytes(weights)} of weights, {gigabytes(activations)} of activations"
            f"{traced}), more than the {gigabytes(memory)} of memory here ({torch.device(device)}); {fix}"
        )
    return need


def build_model(recipe: str | Path | dict | Recipe, *overrides: str, **kw_overrides: Any) -> VideoSRNet:
    """Build the network of a recipe: a path, a shipped recipe's name (``"basicvsr"``), a dict or a Recipe.

    ``overrides`` are dotted ``key=value`` strings (``"model.alignment=none"``); keyword overrides use the
    key under ``model`` (``build_model("basicvsr", alignment="image")``).
    """
    recipe = load_recipe(recipe, *overrides, *(f"model.{k}={v}" for k, v in kw_overrides.items()))
    return assemble(recipe.model)
