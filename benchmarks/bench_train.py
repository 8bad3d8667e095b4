"""Training step: vsr against BasicSR 1.4.2 (same weights, same input, same process), where one vsr step's time
goes (torch.profiler), and how close the step is to the machine's convolution roofline.

    python benchmarks/bench_train.py                          # everything below (~15 min on 2 busy cores)
    python benchmarks/bench_train.py --models basicvsr --tiny --no-breakdown --no-inference
    python benchmarks/bench_train.py --json bench_train.json  # the figures as JSON too

A step is what ``vsr train`` does per iteration on this device, from the recipe's options through the library's
own functions (``autocast_dtype``, ``use_channels_last``, ``build_optimizer``, ``build_losses``): zero_grad,
forward and the recipe's loss (Charbonnier) under the recipe's autocast, backward, Adam's step. BasicSR's
model gets the same input, loss and Adam settings (one parameter group: BasicSR's optimiser). Every model is
in train mode and trains every parameter (the flow estimator too: the reference recipes' state after their
first 5000 iterations).

* **Against BasicSR**: BasicVSR and IconVSR (64 channels, 30 blocks per branch) at ``--batch`` clips of
  ``--frames`` frames of ``--size``² LR, the two implementations' steps alternating after a warm-up step each;
  medians of ``--repeats``. The first step's outputs are compared (max abs difference, fp32 <= 1e-4).
* **Tiny recipes** (vsr alone): each at its recipe's batch, clip length and crop.
* **Breakdown**: one profiled vsr BasicVSR step. Each forward op is charged to the innermost component it ran
  in (flow, alignment, aggregation, the rest of the propagation, upsampling, loss) and each backward op to the
  component of the forward op it differentiates (autograd's sequence numbers); the optimiser's ops to it.
* **Roofline**: the step's FLOPs (``torch.utils.flop_counter``: convolutions and matrix products, forward and
  backward) over its time, as a fraction of what a lone 64→64 3×3 convolution at the same resolution and batch
  does per second in the same run, forward and backward (and forward alone: the inference roofline of
  issue #12). ``--inference`` adds vsr's inference (``bench_reference.py``'s setting: 10 frames of 64×112,
  channels-last, inference mode) against the lone convolution's forward.

Times are wall-clock; the CPU seconds of the process are shown beside them. On a machine shared with other
jobs both drift by tens of percent between minutes: ratios measured in one run, alternating, hold where the
absolute numbers do not. ``--threads`` sets torch's threads (default: torch's).
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.autograd.profiler import record_function
from torch.utils.flop_counter import FlopCounterMode

from vsr import build_model
from vsr.atomic import write_json
from vsr.checkpoints import extract_state_dict, load_state_dict
from vsr.losses import WeightedLoss, build_losses
from vsr.recipe import Recipe, load_recipe
from vsr.training.optim import build_optimizer
from vsr.training.precision import autocast_dtype, use_channels_last

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the reference lives with the tests
from basicsr_reference import ReferenceUnavailable, import_basicsr

REFERENCE_MODELS = ("basicvsr", "iconvsr")
TINY_RECIPES = ("basicvsr_tiny", "iconvsr_tiny", "basicvsrpp_tiny")
LABEL = "vsr::"  # prefix of the profiler ranges this benchmark opens


# -- one training step, as vsr train takes it -------------------------------------------------------------------
@dataclass
class TrainingStep:
    """One optimisation step of ``model`` on ``(lq, gt)`` with the recipe's loss, autocast and Adam (vsr's
    optimiser, or a plain Adam over every parameter for a reference model)."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    loss_fn: WeightedLoss
    autocast: torch.dtype | None
    device: torch.device
    net: nn.Module | None = None  # what is called: the model, compiled where the recipe asks

    def __call__(self, lq: Tensor, gt: Tensor) -> Tensor:
        net = self.net or self.model
        self.optimizer.zero_grad(set_to_none=True)
        with torch.autocast(self.device.type, dtype=self.autocast or torch.bfloat16, enabled=self.autocast is not None):
            with label("forward"):
                out = net(lq)
            with label("loss"):
                loss, _ = self.loss_fn(out, gt)
        loss.backward()
        with label("optimiser"):
            self.optimizer.step()
        return out.detach()


def vsr_step(recipe: Recipe, model: nn.Module, device: torch.device) -> TrainingStep:
    """The step ``vsr train`` takes for ``recipe`` on ``device``: its autocast, memory format, compile, Adam."""
    cfg = recipe.train
    channels_last = use_channels_last(cfg["channels_last"], device)
    model.to(device, memory_format=torch.channels_last if channels_last else torch.preserve_format).train()
    step = TrainingStep(
        model=model,
        optimizer=build_optimizer(model, cfg),
        loss_fn=build_losses(cfg["losses"]).to(device),
        autocast=autocast_dtype(cfg["amp"], device),
        device=device,
    )
    step.net = torch.compile(model) if cfg["compile"] else model
    return step


def reference_step(recipe: Recipe, model: nn.Module, device: torch.device) -> TrainingStep:
    """BasicSR's model trained with the recipe's loss and Adam settings (one parameter group, fp32)."""
    cfg = recipe.train
    model.to(device).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg["lr"], betas=tuple(cfg["betas"]))
    return TrainingStep(model, optimizer, build_losses(cfg["losses"]).to(device), None, device)


def reference_pair(name: str, device: torch.device) -> tuple[nn.Module, nn.Module]:
    """BasicSR's full-size ``name`` and vsr's, holding the same weights."""
    arch = import_basicsr("basicsr.archs.basicvsr_arch")
    if name == "basicvsr":
        reference = arch.BasicVSR(num_feat=64, num_block=30)
    else:
        reference = arch.IconVSR(num_feat=64, num_block=30, keyframe_stride=5, temporal_padding=2)
    ours = build_model(name)
    load_state_dict(ours, extract_state_dict({"params": reference.state_dict()}))
    return reference.to(device), ours.to(device)


def clip(batch: int, frames: int, size: int, scale: int, device: torch.device, seed: int = 0) -> tuple[Tensor, Tensor]:
    generator = torch.Generator().manual_seed(seed)
    lq = torch.rand(batch, frames, 3, size, size, generator=generator)
    gt = torch.rand(batch, frames, 3, scale * size, scale * size, generator=generator)
    return lq.to(device), gt.to(device)


# -- timing ------------------------------------------------------------------------------------------------------
@dataclass
class Timings:
    """Wall and CPU seconds of repeated calls."""

    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)

    def add(self, fn: Callable[[], Any], device: torch.device) -> None:
        synchronize(device)
        wall, cpu = time.perf_counter(), time.process_time()
        fn()
        synchronize(device)
        self.wall.append(time.perf_counter() - wall)
        self.cpu.append(time.process_time() - cpu)

    @property
    def median(self) -> float:
        return statistics.median(self.wall)

    @property
    def cpu_median(self) -> float:
        return statistics.median(self.cpu)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def alternate(calls: dict[str, Callable[[], Any]], repeats: int, device: torch.device) -> dict[str, Timings]:
    """Time each call ``repeats`` times, the calls taking turns (drift of a shared machine hits all alike)."""
    timings = {name: Timings() for name in calls}
    for _ in range(repeats):
        for name, fn in calls.items():
            timings[name].add(fn, device)
    return timings


@dataclass
class LoneConv:
    """A lone 64→64 3×3 convolution at ``(batch, 64, size, size)`` in a layout: the machine's roofline for
    these models, forward (inference) and forward + backward (training, input and weight gradients)."""

    batch: int
    size: int
    device: torch.device
    channels_last: bool = False

    def __post_init__(self):
        layout = torch.channels_last if self.channels_last else torch.contiguous_format
        self.conv = nn.Conv2d(64, 64, 3, 1, 1).to(self.device, memory_format=layout)
        x = torch.rand(self.batch, 64, self.size, self.size, device=self.device)
        self.x = x.contiguous(memory_format=layout).requires_grad_()
        self.grad = torch.rand_like(self.x)
        self.flops = 2 * 64 * 64 * 9 * self.batch * self.size * self.size  # forward; backward is twice this

    def forward(self) -> None:
        with torch.no_grad():
            self.conv(self.x)

    def forward_backward(self) -> None:
        self.conv(self.x).backward(self.grad)


# -- the profiler's account of one step --------------------------------------------------------------------------
@contextlib.contextmanager
def label(name: str) -> Iterator[None]:
    with record_function(LABEL + name):
        yield


@contextlib.contextmanager
def component_labels(model: nn.Module) -> Iterator[None]:
    """Profiler ranges around the model's components, named by kind (hooks removed on exit)."""
    kinds: dict[nn.Module, str] = {}
    for name in ("flow", "refill", "propagation", "upsampling"):
        if getattr(model, name, None) is not None:
            kinds[getattr(model, name)] = name
    propagation = getattr(model, "propagation", None)
    for branch in getattr(propagation, "branches", ()):
        kinds[propagation.alignment(branch)] = "alignment"
        kinds[propagation.aggregation(branch)] = "aggregation"
    open_ranges: list[record_function] = []

    def enter(name: str):
        def hook(*_):
            open_ranges.append(record_function(LABEL + name).__enter__())

        return hook

    def leave(*_):
        open_ranges.pop().__exit__(None, None, None)

    handles = []
    for module, name in kinds.items():
        handles += [module.register_forward_pre_hook(enter(name)), module.register_forward_hook(leave)]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def innermost_label(event) -> str | None:
    while event is not None:
        if event.name.startswith(LABEL):
            return event.name.removeprefix(LABEL)
        event = event.cpu_parent
    return None


def breakdown(step: TrainingStep, lq: Tensor, gt: Tensor) -> tuple[dict[str, dict[str, float]], float]:
    """Milliseconds of one step per component, forward and backward (see the module docstring), and the
    profiled step's wall milliseconds."""
    from torch.profiler import ProfilerActivity, profile

    step(lq, gt)  # warm-up
    with component_labels(step.model), profile(activities=[ProfilerActivity.CPU]) as prof:
        start = time.perf_counter()
        step(lq, gt)
        wall_ms = (time.perf_counter() - start) * 1e3
    events = list(prof.events())
    rows: dict[str, dict[str, float]] = {}

    def charge(component: str, phase: str, us: float) -> None:
        rows.setdefault(component, {"forward": 0.0, "backward": 0.0})[phase] += us / 1e3

    # Forward: each labelled range's time without the labelled ranges inside it.
    for event in events:
        if event.name.startswith(LABEL) and event.name != LABEL + "forward":
            inner = sum(child_label_time(child) for child in event.cpu_children)
            name = event.name.removeprefix(LABEL)
            charge(name, "forward", event.cpu_time_total - inner)
    forward_total = sum(e.cpu_time_total for e in events if e.name == LABEL + "forward")
    labelled_in_forward = sum(row["forward"] for name, row in rows.items() if name not in ("loss", "optimiser")) * 1e3
    if forward_total > labelled_in_forward:
        charge("model (outside components)", "forward", forward_total - labelled_in_forward)
    # Backward: each autograd node to the component whose forward op created it.
    owner = {e.sequence_nr: innermost_label(e) for e in events if e.sequence_nr >= 0 and not in_backward(e)}
    for event in events:
        if is_backward(event) and event.cpu_parent is None:
            name = owner.get(event.sequence_nr) if event.sequence_nr >= 0 else None
            if name in (None, "forward"):
                name = "gradient accumulation, other" if name is None else "model (outside components)"
            charge(name, "backward", event.cpu_time_total)
    return rows, wall_ms


def child_label_time(event) -> float:
    """Time of the outermost labelled ranges at or below ``event``."""
    if event.name.startswith(LABEL):
        return event.cpu_time_total
    return sum(child_label_time(child) for child in event.cpu_children)


def is_backward(event) -> bool:
    return event.name.startswith("autograd::engine::evaluate_function")


def in_backward(event) -> bool:
    """Whether ``event`` ran inside an autograd node (whose ops carry the forward op's sequence number too)."""
    while event is not None:
        if is_backward(event):
            return True
        event = event.cpu_parent
    return False


def step_flops(step: TrainingStep, lq: Tensor, gt: Tensor) -> tuple[int, int]:
    """FLOPs of the model's forward pass alone and of a step's forward + loss + backward."""
    with FlopCounterMode(display=False) as forward_counter, torch.no_grad():
        step.model(lq)
    with FlopCounterMode(display=False) as step_counter:
        loss = step.loss_fn(step.model(lq), gt)
        loss.backward()
    step.optimizer.zero_grad(set_to_none=True)
    return forward_counter.get_total_flops(), step_counter.get_total_flops()


# -- the report --------------------------------------------------------------------------------------------------
def against_reference(args, device: torch.device, figures: dict[str, Any]) -> None:
    print(f"\nTraining step against BasicSR 1.4.2: batch {args.batch}, {args.frames} frames of {args.size}x{args.size} "
          f"LR, median of {args.repeats} (wall; CPU seconds of the process in brackets)")  # fmt: skip
    print(f"{'model':10s} {'BasicSR s/step':>22s} {'vsr s/step':>22s} {'ratio':>7s} {'max |diff|':>11s}")
    lone = LoneConv(args.batch, args.size, device, use_channels_last("auto", device))
    for name in args.models:
        try:
            reference, ours = reference_pair(name, device)
        except ReferenceUnavailable as err:
            print(f"{name:10s} BasicSR unavailable: {err}")
            continue
        recipe = load_recipe(name)
        theirs, mine = reference_step(recipe, reference, device), vsr_step(recipe, ours, device)
        lq, gt = clip(args.batch, args.frames, args.size, recipe.model["scale"], device)
        diff = (theirs(lq, gt) - mine(lq, gt)).abs().max().item()  # the first step: same weights
        calls = {
            "basicsr": lambda theirs=theirs, lq=lq, gt=gt: theirs(lq, gt),
            "vsr": lambda mine=mine, lq=lq, gt=gt: mine(lq, gt),
        }
        if name == "basicvsr":
            calls |= {"lone conv forward": lone.forward, "lone conv forward+backward": lone.forward_backward}
        t = alternate(calls, args.repeats, device)
        ratio = t["basicsr"].median / t["vsr"].median
        print(f"{name:10s} {t['basicsr'].median:12.2f} ({t['basicsr'].cpu_median:6.2f} cpu) "
              f"{t['vsr'].median:12.2f} ({t['vsr'].cpu_median:6.2f} cpu) {ratio:6.2f}x {diff:11.1e}")  # fmt: skip
        figures[f"train.{name}"] = {
            "basicsr_s": t["basicsr"].median, "vsr_s": t["vsr"].median, "ratio": ratio,
            "basicsr_cpu_s": t["basicsr"].cpu_median, "vsr_cpu_s": t["vsr"].cpu_median,
            "cpu_ratio": t["basicsr"].cpu_median / t["vsr"].cpu_median, "max_abs_diff_first_step": diff,
        }  # fmt: skip
        if name == "basicvsr":
            roofline(mine, lq, gt, t["vsr"].median, lone, t, figures)


def roofline(step: TrainingStep, lq, gt, step_s: float, lone: LoneConv, t: dict[str, Timings], figures) -> None:
    forward_flops, flops = step_flops(step, lq, gt)
    forward_rate = lone.flops / t["lone conv forward"].median
    training_rate = 3 * lone.flops / t["lone conv forward+backward"].median
    print(f"\nRoofline of the BasicVSR step: {flops / 1e9:.0f} GFLOP ({flops / forward_flops:.2f}x the forward's "
          f"{forward_flops / 1e9:.0f}) in {step_s:.2f} s = {flops / step_s / 1e9:.1f} GFLOP/s")  # fmt: skip
    print(f"  lone 64->64 3x3 conv at {tuple(lone.x.shape)}: forward {forward_rate / 1e9:.1f} GFLOP/s, "
          f"forward+backward {training_rate / 1e9:.1f} GFLOP/s (same run)")  # fmt: skip
    print(f"  training roofline ratio: {flops / step_s / training_rate:.2f} of the lone conv's forward+backward, "
          f"{flops / step_s / forward_rate:.2f} of its forward")  # fmt: skip
    figures["roofline.basicvsr_train"] = {
        "step_gflop": flops / 1e9, "forward_gflop": forward_flops / 1e9, "step_gflops_per_s": flops / step_s / 1e9,
        "lone_conv_forward_gflops_per_s": forward_rate / 1e9, "lone_conv_train_gflops_per_s": training_rate / 1e9,
        "ratio_to_lone_train": flops / step_s / training_rate, "ratio_to_lone_forward": flops / step_s / forward_rate,
    }  # fmt: skip


def inference(args, device: torch.device, figures: dict[str, Any]) -> None:
    """vsr's BasicVSR inference against BasicSR's and the lone conv's forward, at bench_reference.py's setting."""
    frames, (h, w) = 10, (64, 112)
    try:
        reference, ours = reference_pair("basicvsr", device)
    except ReferenceUnavailable as err:
        print(f"inference: BasicSR unavailable: {err}")
        return
    reference.eval()
    ours.eval().to(memory_format=torch.channels_last)  # as vsr upscale --channels-last and bench_reference.py
    lrs = torch.rand(1, frames, 3, h, w, generator=torch.Generator().manual_seed(0)).to(device)
    lone = LoneConv(1, h, device, channels_last=True)
    lone.x = torch.rand(1, 64, h, w, device=device).contiguous(memory_format=torch.channels_last)
    lone.flops = 2 * 64 * 64 * 9 * h * w
    with torch.inference_mode():
        with FlopCounterMode(display=False) as counter:
            ours(lrs)
        reference(lrs)
        t = alternate(
            {"basicsr": lambda: reference(lrs), "vsr": lambda: ours(lrs), "lone": lone.forward}, args.repeats, device
        )
    flops = counter.get_total_flops()
    ratio = flops / t["vsr"].median / (lone.flops / t["lone"].median)
    print(f"\nInference, BasicVSR, {frames} frames of {h}x{w} LR (inference mode; vsr channels-last): "
          f"BasicSR {t['basicsr'].median / frames * 1e3:.0f} ms/frame, vsr {t['vsr'].median / frames * 1e3:.0f} "
          f"ms/frame ({t['basicsr'].median / t['vsr'].median:.2f}x); {flops / 1e9:.0f} GFLOP at "
          f"{flops / t['vsr'].median / 1e9:.1f} GFLOP/s = {ratio:.2f} of a lone conv's forward "
          f"({lone.flops / t['lone'].median / 1e9:.1f} GFLOP/s)")  # fmt: skip
    figures["inference.basicvsr"] = {
        "basicsr_ms_per_frame": t["basicsr"].median / frames * 1e3, "vsr_ms_per_frame": t["vsr"].median / frames * 1e3,
        "ratio": t["basicsr"].median / t["vsr"].median, "gflop": flops / 1e9, "roofline_ratio": ratio,
    }  # fmt: skip


def tiny_recipes(args, device: torch.device, figures: dict[str, Any]) -> None:
    print(f"\nTiny recipes (vsr alone, each at its recipe's batch, clip and crop; median of {args.tiny_repeats})")
    steps = {}
    for name in args.tiny:
        recipe = load_recipe(name)
        torch.manual_seed(0)
        d = recipe.data
        lq, gt = clip(d["batch_size"], d["num_frames"], d["lr_patch"], recipe.model["scale"], device)
        step = vsr_step(recipe, build_model(recipe), device)
        step(lq, gt)  # warm-up
        steps[name] = (step, lq, gt, d)
    t = alternate({name: (lambda s=s: s[0](s[1], s[2])) for name, s in steps.items()}, args.tiny_repeats, device)
    for name, (_, _, _, d) in steps.items():
        shape = f"batch {d['batch_size']}, {d['num_frames']} frames of {d['lr_patch']}x{d['lr_patch']}"
        print(f"{name:16s} {shape:32s} {t[name].median * 1e3:8.0f} ms/step ({t[name].cpu_median * 1e3:.0f} ms cpu)")
        figures[f"train.{name}"] = {"vsr_ms": t[name].median * 1e3, "vsr_cpu_ms": t[name].cpu_median * 1e3}


def profile_breakdown(args, device: torch.device, figures: dict[str, Any]) -> None:
    recipe = load_recipe(args.breakdown_recipe)
    torch.manual_seed(0)
    step = vsr_step(recipe, build_model(recipe), device)
    lq, gt = clip(args.batch, args.frames, args.size, recipe.model["scale"], device)
    rows, wall_ms = breakdown(step, lq, gt)
    total = sum(r["forward"] + r["backward"] for r in rows.values())
    print(f"\nWhere one vsr {recipe.name} step goes (torch.profiler; the profiled step took {wall_ms / 1e3:.2f} s)")
    print(f"{'component':30s} {'forward ms':>11s} {'backward ms':>12s} {'share':>7s}")
    for name, row in sorted(rows.items(), key=lambda kv: -(kv[1]["forward"] + kv[1]["backward"])):
        share = (row["forward"] + row["backward"]) / total
        print(f"{name:30s} {row['forward']:11.0f} {row['backward']:12.0f} {share:7.1%}")
    figures[f"breakdown.{recipe.name}"] = {name: dict(row) for name, row in rows.items()}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--models", nargs="*", default=list(REFERENCE_MODELS), choices=REFERENCE_MODELS)
    parser.add_argument("--tiny", nargs="*", default=list(TINY_RECIPES), help="tiny recipes to time (none: skip)")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--frames", type=int, default=7)
    parser.add_argument("--size", type=int, default=64, help="LR crop side")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--tiny-repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--no-breakdown", dest="breakdown", action="store_false")
    parser.add_argument("--breakdown-recipe", default="basicvsr", help="the recipe whose step is profiled")
    parser.add_argument("--no-inference", dest="inference", action="store_false")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    figures: dict[str, Any] = {"device": str(device), "threads": torch.get_num_threads(), "torch": torch.__version__}
    print(f"device {device}, {torch.get_num_threads()} threads, torch {torch.__version__}")
    if args.models:
        against_reference(args, device, figures)
    if args.inference:
        inference(args, device, figures)
    if args.tiny:
        tiny_recipes(args, device, figures)
    if args.breakdown:
        profile_breakdown(args, device, figures)
    if args.json:
        write_json(figures, args.json)
        print(f"\nfigures written to {args.json}")
    return figures


if __name__ == "__main__":
    main()
