"""Cost of a recipe's network: parameters, FLOPs and runtime per frame, as the BasicVSR paper reports them.

The paper's protocol (Table 1 and §5; the authors' answers in mmagic#412/#840): inference only, one clip of
10 random LR frames of 180×320 (×4 output 720×1280), runtime averaged per frame, on a V100. :func:`profile`
follows it on whatever device it is given and records the device, so that numbers from different machines
are never compared silently.

* **Parameters** per component come from :meth:`vsr.model.VideoSRNet.component_parameters`.
* **FLOPs** are counted with :class:`torch.utils.flop_counter.FlopCounterMode` on the ``meta`` device (no
  memory, no compute, any model size). One FLOP is one multiply or one add, so a multiply-accumulate (MAC)
  is 2 FLOPs; papers that write "FLOPs" often mean MACs (``macs_per_frame`` = half). Convolutions and matrix
  products use PyTorch's formulas; vsr adds formulas for the sampling ops PyTorch does not count
  (:data:`SAMPLING_FORMULAS`: ``grid_sample`` warps in alignment, SPyNet and the pure-PyTorch deformable
  convolution; bilinear/bicubic resizing; average pooling; torchvision's ``deform_conv2d``). Element-wise
  and data-movement ops (activations, additions, concatenation, pixel-shuffle, padding) are not counted,
  as in fvcore/ptflops; the ops seen but not counted are listed in ``uncounted_ops``.
* **Runtime**: ``torch.inference_mode``, ``warmup`` untimed passes, then the median of ``repeats`` timed
  passes, each ended by ``torch.cuda.synchronize`` on CUDA; divided by the number of frames.
* **Deformable convolution**: which implementation ran (``deform_conv2d``: torchvision's kernel, or vsr's
  pure-PyTorch one and why), recorded in the timed passes (in the FLOP count without ``runtime``); ``None``
  for a model without one.
"""

from __future__ import annotations

import copy
import platform
import statistics
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from math import prod
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode

from vsr.components import deform
from vsr.device import default_device
from vsr.errors import VSRError
from vsr.model import assemble, check_forward_size
from vsr.recipe import Recipe, load_recipe

aten = torch.ops.aten

# Interpolation MACs per output value: bilinear reads 4 neighbours, bicubic 16 (weights not counted).
_MACS_PER_SAMPLE = {0: 4, 1: 0, 2: 16}  # grid_sampler_2d's interpolation_mode: bilinear, nearest, bicubic


def _grid_sample_flops(input_shape, grid_shape, interpolation_mode=0, *args, out_shape=None, **kwargs) -> int:
    """``grid_sample``: every output value ``(n, c, ho, wo)`` interpolates 4 (bilinear) or 16 (bicubic) inputs."""
    return 2 * _MACS_PER_SAMPLE.get(int(interpolation_mode), 4) * prod(out_shape)


def _bilinear_resize_flops(*args, out_shape=None, **kwargs) -> int:
    return 2 * 4 * prod(out_shape)


def _bicubic_resize_flops(*args, out_shape=None, **kwargs) -> int:
    return 2 * 16 * prod(out_shape)


def _avg_pool2d_flops(input_shape, kernel_size, *args, out_shape=None, **kwargs) -> int:
    """Average pooling: ``k·k`` additions (and one scaling, not counted) per output value."""
    k = kernel_size if isinstance(kernel_size, Sequence) else (kernel_size, kernel_size)
    k = (k[0], k[0]) if len(k) == 1 else k
    return int(k[0]) * int(k[1]) * prod(out_shape)


def _deform_conv2d_flops(input_shape, weight_shape, offset_shape, mask_shape, *args, out_shape=None, **kwargs):
    """torchvision ``deform_conv2d(input, weight, offset, mask, ...)``: the convolution's MACs plus, per
    input channel, kernel point and output pixel, one bilinear sample (4 MACs) and one modulation product."""
    n, c_in = input_shape[:2]
    c_out, _, kh, kw = weight_shape
    ho, wo = out_shape[-2:]
    conv_macs = n * c_out * weight_shape[1] * kh * kw * ho * wo
    sampling_macs = n * c_in * kh * kw * ho * wo * (4 + 1)
    return 2 * (conv_macs + sampling_macs)


#: FLOP formulas vsr adds to PyTorch's (which count convolutions and matrix products only).
SAMPLING_FORMULAS: dict[Any, Callable[..., int]] = {
    aten.grid_sampler_2d: _grid_sample_flops,
    aten.upsample_bilinear2d: _bilinear_resize_flops,
    aten._upsample_bilinear2d_aa: _bilinear_resize_flops,
    aten.upsample_bicubic2d: _bicubic_resize_flops,
    aten._upsample_bicubic2d_aa: _bicubic_resize_flops,
    aten.avg_pool2d: _avg_pool2d_flops,
}


def _flop_formulas() -> dict[Any, Callable[..., int]]:
    formulas = dict(SAMPLING_FORMULAS)
    torchvision_ops = getattr(torch.ops, "torchvision", None)
    if torchvision_ops is not None and hasattr(torchvision_ops, "deform_conv2d"):
        formulas[torchvision_ops.deform_conv2d] = _deform_conv2d_flops
    return formulas


class _AttributingRecorder(TorchDispatchMode):
    """Sees every op that actually runs (after FlopCounterMode's decompositions, since it sits below it) and
    gives its FLOPs, by the same formulas, to the innermost module running it; records ops without one."""

    def __init__(self, registry: dict[Any, Callable[..., int]], stack: list[str]):
        super().__init__()
        self.registry, self.stack = registry, stack
        self.flops: dict[str, int] = defaultdict(int)
        self.uncounted: Counter[str] = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        packet = func._overloadpacket
        if packet in self.registry:
            self.flops[self.stack[-1]] += self.registry[packet](*args, **(kwargs or {}), out_val=out)
        elif func.namespace in ("aten", "torchvision") and not _is_metadata(packet):
            self.uncounted[str(packet)] += 1
        return out


def _is_metadata(packet) -> bool:
    """Ops that create, view or describe tensors without computing anything (not worth listing)."""
    name = str(packet).split(".")[-1]
    return name in {
        "empty",
        "empty_like",
        "empty_strided",
        "zeros",
        "zeros_like",
        "ones",
        "ones_like",
        "full",
        "new_zeros",
        "new_empty",
        "new_empty_strided",
        "view",
        "_unsafe_view",
        "reshape",
        "permute",
        "expand",
        "slice",
        "select",
        "unsqueeze",
        "squeeze",
        "t",
        "transpose",
        "alias",
        "detach",
        "unbind",
        "split",
        "split_with_sizes",
        "lift_fresh",
        "arange",
        "_to_copy",
        "clone",
        "copy_",
        "is_same_size",
        "_local_scalar_dense",
        "scalar_tensor",
        "lift_fresh_copy",
        "as_strided",
        "unflatten",
        "flatten",
    }


def count_flops(module: nn.Module, *inputs: Tensor, component_of: Callable[[str], str] | None = None) -> dict[str, Any]:
    """FLOPs of ``module(*inputs)`` (run under ``inference_mode``; pass ``meta`` tensors to count for free).

    Returns ``{"total", "by_op": {op: flops}, "by_component": {name: flops}, "uncounted_ops": {op: calls}}``.
    ``by_component`` gives each op's FLOPs to the innermost submodule running it, named by
    ``component_of(qualified_name)`` (default: the first name segment, ``""`` for the module itself).
    """
    component_of = component_of or (lambda name: name.split(".")[0])
    formulas = _flop_formulas()
    # FlopCounterMode decomposes any op *overload* missing from its table before looking up the packet, and
    # resizes decompose into index ops: list the overloads too so that the formulas apply.
    overloads = {getattr(op, name): f for op, f in formulas.items() for name in op.overloads()}
    counter = FlopCounterMode(display=False, custom_mapping=formulas | overloads)
    stack = [""]
    recorder = _AttributingRecorder(counter.flop_registry, stack)

    def enter(name: str):
        def hook(module, inputs) -> None:
            stack.append(name)

        return hook

    def leave(module, inputs, output) -> None:  # a hook returning a value would replace the output
        stack.pop()

    handles = []
    for name, sub in module.named_modules():
        if name:
            handles += [sub.register_forward_pre_hook(enter(name)), sub.register_forward_hook(leave)]
    try:
        with torch.inference_mode(), recorder, counter:
            module(*inputs)
    finally:
        for handle in handles:
            handle.remove()
    total = counter.get_total_flops()
    by_component: dict[str, int] = defaultdict(int)
    for name, flops in recorder.flops.items():
        by_component[component_of(name)] += flops
    if sum(by_component.values()) != total:  # both count the same executed ops with the same formulas
        raise RuntimeError(f"FLOP attribution lost ops: {sum(by_component.values())} of {total}")
    return {
        "total": total,
        "by_op": {str(op): flops for op, flops in counter.get_flop_counts().get("Global", {}).items()},
        "by_component": dict(by_component),
        "uncounted_ops": dict(sorted(recorder.uncounted.items())),
    }


def model_component(name: str) -> str:
    """The component (the rows of :meth:`VideoSRNet.component_parameters`) owning submodule ``name``."""
    parts = name.split(".")
    if parts[0] == "propagation" and len(parts) > 1:
        for kind in ("alignment", "aggregation"):
            if parts[1].endswith(f"_{kind}"):
                return kind
    return parts[0] or "model"


def device_name(device: torch.device) -> str:
    """A readable device name: the GPU model on CUDA, the CPU and the thread count on CPU."""
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)} ({device})"
    cpu = platform.processor() or platform.machine()
    return f"CPU {cpu}, {torch.get_num_threads()} threads"


def _resolve(recipe, name: str | None) -> tuple[nn.Module, str, dict | None]:
    """The model to profile, its name and its resolved model section (None for a bare module)."""
    if isinstance(recipe, nn.Module):
        return recipe, name or type(recipe).__name__, None
    resolved = recipe if isinstance(recipe, Recipe) else load_recipe(recipe)
    return assemble(resolved.model), resolved.name, resolved.model


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def profile(
    recipe: str | Path | dict | Recipe | nn.Module,
    *,
    device: str | torch.device = "cpu",
    frames: int = 10,
    size: tuple[int, int] = (180, 320),
    repeats: int = 3,
    warmup: int = 1,
    runtime: bool = True,
    seed: int = 0,
    name: str | None = None,
) -> dict[str, Any]:
    """Parameters, FLOPs and runtime per frame of a recipe's network on a ``frames``-frame LR clip of
    ``size`` (h, w): the columns of the paper's tables and of every study table.

    ``recipe``: a recipe (path, shipped name, dict, :class:`Recipe`) or a built ``VideoSRNet`` (then FLOPs
    are counted on a meta copy of it; ``name`` names it in the result, by default its class). ``runtime=False``
    skips the timing (parameters and FLOPs only).
    Returns a JSON-ready dict; times are milliseconds.
    """
    if frames < 1 or len(size) != 2 or min(size) < 1:
        raise VSRError(f"profile: need frames >= 1 and a size (h, w) of positive integers, got {frames}, {size}")
    if repeats < 1 or warmup < 0:
        raise VSRError(f"profile: need repeats >= 1 and warmup >= 0, got repeats={repeats}, warmup={warmup}")
    device = default_device(device)
    model, name, section = _resolve(recipe, name)
    h, w = size

    params = dict(model.component_parameters()) if hasattr(model, "component_parameters") else {}
    total_params = sum(p.numel() for p in model.parameters())

    # FLOPs on the meta device: same architecture, no storage, no compute.
    if section is not None:
        with torch.device("meta"):
            meta_model = assemble(section)
    else:
        meta_model = copy.deepcopy(model).to("meta")
    if runtime:  # before any work: a clip whose pass cannot fit is refused, giving its size and the limit
        check_forward_size(meta_model, frames, [(1, (h, w))], "profile", device)
    with deform.recording_implementations() as deform_ran:
        flops = count_flops(
            meta_model.eval(), torch.empty(1, frames, 3, h, w, device="meta"), component_of=model_component
        )
    result: dict[str, Any] = {
        "recipe": name,
        "frames": frames,
        "size": [h, w],
        "params": {**params, "total": total_params},
        "flops_per_frame": flops["total"] / frames,
        "macs_per_frame": flops["total"] / frames / 2,
        "flops_per_frame_by_component": {k: v / frames for k, v in flops["by_component"].items()},
        "flops_per_frame_by_op": {k: v / frames for k, v in flops["by_op"].items()},
        "uncounted_ops": flops["uncounted_ops"],
        "flop_convention": "1 multiply-accumulate = 2 FLOPs; element-wise and data-movement ops not counted",
    }
    if runtime:
        with deform.recording_implementations() as deform_ran:
            result.update(
                measure_runtime(
                    model, device=device, frames=frames, size=size, repeats=repeats, warmup=warmup, seed=seed
                )
            )
    result["deform_conv2d"] = _deform_report(deform_ran)
    return result


def _deform_report(ran: set[str]) -> str | None:
    """The deformable-convolution implementation(s) that ran, vsr's own with why; None if none ran."""
    if not ran:
        return None
    own = deform.deform_implementation() if deform.deform_backend() == "pytorch" else deform.PURE_PYTORCH
    return "; ".join(own if name == deform.PURE_PYTORCH else name for name in sorted(ran))


def measure_runtime(
    model: nn.Module,
    *,
    device: torch.device | str = "cpu",
    frames: int = 10,
    size: tuple[int, int] = (180, 320),
    repeats: int = 3,
    warmup: int = 1,
    seed: int = 0,
) -> dict[str, Any]:
    """Inference time of ``model`` on one random clip ``(1, frames, 3, h, w)``: median over ``repeats``
    passes after ``warmup`` untimed ones, in milliseconds per frame."""
    device = torch.device(device)
    model = model.to(device).eval()
    generator = torch.Generator().manual_seed(seed)
    lrs = torch.rand(1, frames, 3, *size, generator=generator).to(device)
    times = []
    with torch.inference_mode():
        for i in range(warmup + repeats):
            _synchronize(device)
            start = time.perf_counter()
            model(lrs)
            _synchronize(device)
            if i >= warmup:
                times.append(time.perf_counter() - start)
    per_frame = [1000 * t / frames for t in times]
    return {
        "device": device_name(device),
        "runtime_ms_per_frame": statistics.median(per_frame),
        "runtime_ms_per_frame_repeats": per_frame,
        "warmup": warmup,
        "repeats": repeats,
        "torch": torch.__version__,
    }


__all__ = ["SAMPLING_FORMULAS", "count_flops", "device_name", "measure_runtime", "model_component", "profile"]
