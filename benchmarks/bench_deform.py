"""Deformable convolution: vsr's pure-PyTorch path against the implementation it replaced, side by side.

    python benchmarks/bench_deform.py                 # all three parts, ~3 min on one busy core
    python benchmarks/bench_deform.py --parts op      # the deformable convolution alone

The reference is ``vsr.components.deform._reference_deform_conv2d``, the previous ``deform_conv2d_torch``
kept unchanged; "new" is today's ``deform_conv2d_torch``. Parts:

* **op**: the deformable convolution alone at the shapes the tiny recipes run (``recipes/iconvsr_tiny.yaml``:
  EDVR-M's PCD at full resolution, batch 2 × 3 keyframes × 5 frames, 24 channels, 4 offset groups;
  ``recipes/basicvsrpp_tiny.yaml``: second-order alignment, 48 → 24 channels, 8 offset groups, training crop
  and the inference size below), forward (inference mode) and forward + backward; beside it a plain 3×3
  convolution of the same shape, the "convolution speed" it could at best reach.
* **train**: an ``iconvsr_tiny`` training step (as ``vsr train`` takes it, ``bench_train.py``'s step) against
  the coupled-propagation step it refills (``model.refill=none``), with each implementation, and with the
  deformable convolution replaced by a plain convolution (the floor any implementation could reach).
* **infer**: ``basicvsrpp_tiny`` inference on 10 frames of 64×112 LR (``bench_reference.py``'s setting), with
  each implementation and the same floor.

Times are the CPU time of this process (``time.process_time``), the median of ``--repeats``, the variants
taking turns, at ``--threads`` threads (default 1): on a machine shared with other jobs, CPU time at one
thread drifts far less than wall time. The load average at the start and end is printed with the table.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import torch
import torch.nn.functional as F

import vsr.components.deform as deform
from vsr import build_model
from vsr.recipe import load_recipe

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_train import clip, vsr_step

IMPLEMENTATIONS = {"reference": deform._reference_deform_conv2d, "new": deform.deform_conv2d_torch}


def plain_convolution(input, offset, weight, bias=None, stride=1, padding=0, dilation=1, mask=None):
    """The floor: the same convolution without sampling (offsets and mask still feed the graph)."""
    out = F.conv2d(input, weight, bias, stride, padding, dilation)
    if torch.is_grad_enabled():
        out = out + 0 * offset.sum() + (0 * mask.sum() if mask is not None else 0)
    return out


@contextlib.contextmanager
def using(fn: Callable) -> Iterator[None]:
    """Run every ``deform_conv2d`` of vsr's pure-PyTorch path through ``fn``."""
    previous, deform.deform_conv2d_torch = deform.deform_conv2d_torch, fn
    try:
        yield
    finally:
        deform.deform_conv2d_torch = previous


def alternate(calls: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Median CPU seconds of each call, the calls taking turns after one untimed warm-up each."""
    for fn in calls.values():
        fn()
    times: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(repeats):
        for name, fn in calls.items():
            start = time.process_time()
            fn()
            times[name].append(time.process_time() - start)
    return {name: statistics.median(t) for name, t in times.items()}


# -- (a) the operation alone --------------------------------------------------------------------------------
OP_SHAPES = {  # name: n, c_in, c_out, h, w, offset groups
    "IconVSR-tiny PCD l1 (30x24->24, 32x32, g4)": (30, 24, 24, 32, 32, 4),
    "BasicVSR++-tiny train (2x48->24, 32x32, g8)": (2, 48, 24, 32, 32, 8),
    "BasicVSR++-tiny infer (1x48->24, 64x112, g8)": (1, 48, 24, 64, 112, 8),
}


def op_args(n, c_in, c_out, h, w, groups, backward: bool):
    g = torch.Generator().manual_seed(0)
    tensors = [
        torch.randn(n, c_in, h, w, generator=g),
        3 * torch.randn(n, 2 * groups * 9, h, w, generator=g),
        torch.randn(c_out, c_in, 3, 3, generator=g) / (3 * c_in**0.5),
        torch.randn(c_out, generator=g),
        torch.rand(n, groups * 9, h, w, generator=g),
    ]
    return [t.requires_grad_(backward) for t in tensors]


def op_call(fn: Callable, tensors: list, backward: bool) -> Callable[[], object]:
    x, offset, weight, bias, mask = tensors

    def call():
        if backward:
            fn(x, offset, weight, bias, 1, 1, 1, mask).sum().backward()
        else:
            with torch.inference_mode():
                fn(x, offset, weight, bias, 1, 1, 1, mask)

    return call


def part_op(repeats: int) -> list[tuple[str, dict[str, float]]]:
    rows = []
    for name, shape in OP_SHAPES.items():
        for backward in (False, True):
            tensors = op_args(*shape, backward=backward)
            calls = {label: op_call(fn, tensors, backward) for label, fn in IMPLEMENTATIONS.items()}
            calls["3x3 conv"] = op_call(plain_convolution, tensors, backward)
            rows.append((f"{name} {'fwd+bwd' if backward else 'fwd'}", alternate(calls, repeats)))
    return rows


# -- (b) training step, (c) inference ---------------------------------------------------------------------------
def training_step(overrides: list[str]) -> Callable[[], object]:
    recipe = load_recipe("iconvsr_tiny", *overrides)
    torch.manual_seed(0)
    data = recipe.data
    lq, gt = clip(data["batch_size"], data["num_frames"], data["lr_patch"], recipe.model["scale"], torch.device("cpu"))
    step = vsr_step(recipe, build_model(recipe), torch.device("cpu"))
    return lambda: step(lq, gt)


def with_implementation(fn: Callable, call: Callable[[], object]) -> Callable[[], object]:
    def run():
        with using(fn):
            return call()

    return run


def part_train(repeats: int) -> dict[str, float]:
    icon, coupled = training_step([]), training_step(["model.refill=none"])
    calls = {"coupled (refill=none)": coupled}
    for label, fn in {**IMPLEMENTATIONS, "floor: plain conv": plain_convolution}.items():
        calls[f"iconvsr_tiny, {label}"] = with_implementation(fn, icon)
    return alternate(calls, repeats)


def part_infer(repeats: int) -> dict[str, float]:
    model = build_model("basicvsrpp_tiny").eval()
    lrs = torch.rand(1, 10, 3, 64, 112, generator=torch.Generator().manual_seed(0))

    def infer():
        with torch.inference_mode():
            model(lrs)

    labels = {**IMPLEMENTATIONS, "floor: plain conv": plain_convolution}
    return alternate({label: with_implementation(fn, infer) for label, fn in labels.items()}, repeats)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--parts", nargs="+", choices=["op", "train", "infer"], default=["op", "train", "infer"])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    load = os.getloadavg()[0]
    print(f"torch {torch.__version__}, {args.threads} thread(s), {os.cpu_count()} CPUs, load average {load:.1f}")
    print(f"vsr's own path: {deform.PURE_PYTORCH}; deform_conv2d runs: {deform.deform_implementation()}\n")
    if "op" in args.parts:
        print("(a) the deformable convolution alone, ms of CPU time")
        print(f"{'shape':54s} {'reference':>10s} {'new':>8s} {'3x3 conv':>9s} {'ref/new':>8s} {'new/conv':>9s}")
        for name, t in part_op(args.repeats):
            ref, new, conv = t["reference"], t["new"], t["3x3 conv"]
            times = f"{ref * 1e3:10.1f} {new * 1e3:8.1f} {conv * 1e3:9.1f}"
            print(f"{name:54s} {times} {ref / new:7.2f}x {new / conv:8.1f}x")
    if "train" in args.parts:
        print("\n(b) iconvsr_tiny training step (batch 2, 8 frames of 32x32) against coupled propagation")
        t = part_train(args.repeats)
        base = t["coupled (refill=none)"]
        for name, seconds in t.items():
            print(f"{name:40s} {seconds * 1e3:8.0f} ms   {seconds / base:5.2f}x coupled")
    if "infer" in args.parts:
        print("\n(c) basicvsrpp_tiny inference, 10 frames of 64x112 LR")
        t = part_infer(args.repeats)
        for name, seconds in t.items():
            print(f"{name:40s} {seconds * 1e3:8.0f} ms   {t['reference'] / seconds:5.2f}x faster than reference")
    print(f"\nload average at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()
