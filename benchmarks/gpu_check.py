"""One-shot GPU check (issues #12, #27): the figures only a GPU can give, in one command of about 9 minutes on one
GPU (15 minutes of lent GPU time leave room for a rerun; docs/performance.md says how to run it in one call).

    python benchmarks/gpu_check.py --out OUT                   # CUDA: OUT/gpu_check.json and the study's report
    python benchmarks/gpu_check.py --smoke --out OUT           # the same code on the CPU at tiny sizes (CI)

The parts, in the order they run (by value; compiled inference, the costliest, last):

0. **The propagation study's ``gpu`` preset** (``studies/propagation.yaml``, issue #27): every run at once on the
   one GPU (``vsr study propagation --preset gpu --jobs 12``), its wall time, its measured seconds per iteration
   (what the preset's sizing estimate awaits) and each variant's PSNR; its report (``index.md``, figures,
   ``results.csv``) and every run's JSON records go to ``OUT/propagation_gpu_report.tar.gz``.

Every figure is printed as one labelled line, ``label  value unit  (note)``, and written with the others to the
JSON file (``figures``: label -> number, ``units``, ``notes``, ``skipped`` and ``errors``: label -> why),
rewritten atomically after each part, so a run cut short keeps what it measured.

1. **Inference** of BasicVSR, IconVSR, BasicVSR++ and RealBasicVSR (``recipes/realbasicvsr_wogan.yaml``, its
   cleaning module included; no BasicSR counterpart, so vsr's alone) at the paper's setting (10 frames of
   180×320 LR, ×4 -> 720×1280), batch 1, inference mode, ms/frame (median of 5 after 2 warm-ups) in fp32, bf16
   autocast, and bf16 + channels-last + ``torch.compile``: the options ``vsr upscale`` takes (``--dtype``,
   ``--channels-last``, ``--compile``), applied as it applies them. BasicSR 1.4.2's implementation with the same
   weights runs in the same process and mode (not compiled: compiling it too would not fit the time), and the
   PSNR between vsr's bf16 and fp32 outputs says what bf16 costs (a smooth panning clip, random weights of the
   reference's initialisation).
2. **Training** of the paper recipes (``recipes/basicvsr.yaml``: 4 clips of 15 frames of 64×64 per GPU;
   ``iconvsr``: the same; ``basicvsrpp``: 1 clip of 30 frames) through the recipe's own device options (bf16
   autocast and channels-last on CUDA, see ``vsr.training.precision``), every parameter trained (the state after
   the first 5000 iterations, when SPyNet thaws): it/s and peak memory over 5 steps after 2 warm-ups.
3. **Streamed upscale**: peak memory and frames/s of ``vsr.upscale.upscale_frames`` over 200 frames of 180×320
   in its default chunks (30 frames, 8 of warm-up each side), bf16 + channels-last: flat in the video's length.
4. **Deformable convolution**: torchvision's ``deform_conv2d`` against vsr's ``deform_conv2d_torch`` at
   BasicVSR++'s alignment shape (2×64 → 64 channels, 16 offset groups, 180×320), fp32: ms forward and forward +
   backward, and the largest differences of outputs and input gradients; skipped, with the reason, where
   torchvision's operator does not load (``vsr.components.deform.deform_implementation``).
5. **DDP**: one step of the BasicVSR recipe in 2 processes (``vsr.training.distributed``: NCCL, one GPU each)
   when 2 GPUs exist, else skipped; then the weights of the two processes must agree.

``--smoke`` runs all of it on the CPU with 16-channel models of one block, 3 frames of 64×64, 12 frames
streamed, the study's shipped file with tiny overrides appended (:data:`TINY_STUDY_OVERRIDES`) on a tiny
synthetic set, 2 runs at once, compile's graph capture without code generation (``backend="eager"``) and the DDP
step in 2 CPU processes over gloo, in about a minute; peak memory there is the process's peak resident set.
BasicSR is fetched from PyPI (see ``tests/basicsr_reference.py``); on a machine without network, carry the
cache (``$VSR_CACHE``, default ``~/.cache/vsr``) along. ``--budget-s`` (default 540) skips what would start
after that many seconds, and says so (the study, first, is not cut short).
"""

from __future__ import annotations

import argparse
import math
import os
import resource
import socket
import statistics
import sys
import tarfile
import tempfile
import time
import traceback
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from unittest import mock

import pandas as pd
import torch
import torch.nn.functional as F
import yaml
from bench_train import Timings, clip, vsr_step
from torch import Tensor, nn

from vsr import build_model
from vsr.atomic import read_json, write_json
from vsr.checkpoints import extract_state_dict, load_state_dict
from vsr.components.deform import deform_backend, deform_conv2d_torch, deform_implementation
from vsr.data import synth
from vsr.device import default_device
from vsr.metrics import psnr
from vsr.recipe import load_recipe
from vsr.reports import run_and_report
from vsr.studies import load_study, plan_runs
from vsr.training.distributed import Processes, leave_without_teardown, resolve_device
from vsr.upscale import upscale_frames

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the reference lives with the tests
from basicsr_reference import ReferenceUnavailable, import_basicsr

MODELS = ("basicvsr", "iconvsr", "basicvsrpp")  # trained and compared with BasicSR
INFERENCE_MODELS = (*MODELS, "realbasicvsr")  # RealBasicVSR: vsr only (BasicSR has no RealBasicVSR)
STUDY = "propagation"  # its gpu preset (issue #27)
#: Appended to the gpu preset's overrides in --smoke: the same study at a size that trains in seconds on a CPU.
TINY_STUDY_OVERRIDES = (
    "model.channels=8", "model.aggregation.num_blocks=1", "model.upsampling.hr_channels=8", "data.batch_size=1",
    "data.num_frames=3", "data.lr_patch=8", "train.iterations=2", "train.periods=[2]", "train.fix_iterations=0",
    "train.val_every=2", "train.checkpoint_every=1", "train.log_every=1",
)  # fmt: skip
MODES = {  # label -> (autocast dtype, channels-last, compiled): vsr upscale's --dtype, --channels-last, --compile
    "fp32": (None, False, False),
    "bf16": (torch.bfloat16, False, False),
    "bf16_cl_compile": (torch.bfloat16, True, True),
    "bf16_cl": (torch.bfloat16, True, False),  # BasicSR's counterpart of the compiled mode
}
REFERENCE_MODE = {"fp32": "fp32", "bf16": "bf16", "bf16_cl_compile": "bf16_cl"}


@dataclass(frozen=True)
class Sizes:
    """What the check runs at: the paper's settings on a GPU, tiny ones for ``--smoke``."""

    channels: int | None  # None: each recipe's (64)
    blocks: int | None  # residual blocks per branch; None: each recipe's (30, or 7 for BasicVSR++)
    frames: int
    lr_size: tuple[int, int]
    train: dict[str, tuple[int, int, int]] | None  # recipe -> (batch, frames, crop); None: each recipe's own
    train_steps: int
    stream_frames: int
    stream_chunk: int
    stream_overlap: int
    warmup: int
    repeats: int
    compile_backend: str
    bf16_channels_last: bool = False  # run every bf16 mode channels-last (smoke: see the module docstring)
    study_overrides: tuple[str, ...] = ()  # appended to the study preset's (smoke: TINY_STUDY_OVERRIDES)
    study_jobs: int | None = None  # runs at once; None: all of them


PAPER = Sizes(None, None, 10, (180, 320), None, 5, 200, 30, 8, 2, 5, "inductor")
SMOKE = Sizes(16, 1, 2, (64, 64), dict.fromkeys(MODELS, (1, 2, 64)), 1, 6, 2, 1, 0, 1, "eager", True,
              TINY_STUDY_OVERRIDES, 2)  # fmt: skip
MIN_FRAMES = {"iconvsr": 5}  # BasicSR's IconVSR indexes frames 4 and -5 for its keyframe windows


def expected_labels(ddp: bool = True) -> list[str]:
    """Every label a complete run reports, as a figure or a stated skip (the DDP ones only with 2 devices, or in
    ``--smoke``; BasicSR's for RealBasicVSR and torchvision's where its operator does not load are skips)."""
    labels = [f"study.{STUDY}.wall_min", f"study.{STUDY}.s_per_iteration"]
    labels += [f"study.{STUDY}.{variant}.psnr_db" for variant in load_study(STUDY).variants]
    for model in INFERENCE_MODELS:
        for mode in REFERENCE_MODE:
            labels += [f"inference.{model}.{mode}.vsr_ms_per_frame", f"inference.{model}.{mode}.basicsr_ms_per_frame"]
            labels += [f"inference.{model}.{mode}.speedup"]
        labels += [f"inference.{model}.bf16.psnr_vs_fp32_db", f"inference.{model}.bf16_cl_compile.psnr_vs_fp32_db"]
    for model in MODELS:
        labels += [f"train.{model}.it_per_s", f"train.{model}.peak_memory_gib"]
    labels += ["upscale.basicvsr.peak_memory_gib", "upscale.basicvsr.frames_per_s"]
    labels += [f"deform.{impl}_{what}_ms" for impl in ("vsr", "torchvision") for what in ("forward", "fwd_bwd")]
    labels += ["deform.speedup_forward", "deform.speedup_fwd_bwd", "deform.output_max_abs_diff"]
    labels += ["deform.grad_max_abs_diff"]
    if ddp:
        labels += ["ddp.step_s", "ddp.weights_max_abs_diff"]
    return labels


class Report:
    """Labelled lines on stdout, and the same figures in a JSON file rewritten atomically after each part."""

    def __init__(self, path: Path, meta: dict[str, Any]):
        self.path, self.meta, self.start = path, meta, time.perf_counter()
        self.figures: dict[str, float] = {}
        self.units: dict[str, str] = {}
        self.notes: dict[str, str] = {}
        self.skipped: dict[str, str] = {}
        self.errors: dict[str, str] = {}

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def add(self, label: str, value: float, unit: str, note: str = "") -> None:
        self.figures[label], self.units[label] = float(value), unit
        if note:
            self.notes[label] = note
        print(f"{label:48s} {value:12.3f} {unit:10s} {f'({note})' if note else ''}".rstrip(), flush=True)

    def skip(self, label: str, reason: str) -> None:
        self.skipped[label] = reason
        print(f"{label:48s} {'skipped':>12s}  ({reason})", flush=True)

    def error(self, part: str, err: BaseException) -> None:
        self.errors[part] = f"{type(err).__name__}: {err}"
        print(f"{part:48s} {'FAILED':>12s}  ({type(err).__name__}: {err})", flush=True)
        traceback.print_exc()

    def save(self) -> None:
        write_json(
            {
                **self.meta,
                "elapsed_s": round(self.elapsed, 1),
                "figures": self.figures,
                "units": self.units,
                "notes": self.notes,
                "skipped": self.skipped,
                "errors": self.errors,
            },
            self.path,
        )


# -- models ------------------------------------------------------------------------------------------------------
def model_pair(name: str, sizes: Sizes, device: torch.device) -> tuple[nn.Module | None, nn.Module, str]:
    """vsr's ``name`` and BasicSR's (None where the reference cannot be fetched) with the same weights, and why
    the reference is missing ("" when present)."""
    recipe = load_recipe(name)
    channels = sizes.channels or recipe.model["channels"]
    blocks = sizes.blocks or recipe.model["aggregation"]["num_blocks"]
    overrides = [f"model.channels={channels}", f"model.aggregation.num_blocks={blocks}"]
    if sizes.blocks and recipe.model["cleaning"]["name"] != "none":  # RealBasicVSR's cleaning module
        overrides.append(f"model.cleaning.num_blocks={sizes.blocks}")
    torch.manual_seed(0)
    ours = build_model(name, *overrides).eval()
    if name not in MODELS:
        return None, ours.to(device), "no BasicSR counterpart (vsr only)"
    try:
        reference = reference_model(name, channels, blocks)
    except ReferenceUnavailable as err:
        return None, ours.to(device), f"BasicSR unavailable: {err}"
    load_state_dict(ours, extract_state_dict({"params": reference.state_dict()}))
    return reference.eval().to(device), ours.to(device), ""


def reference_model(name: str, channels: int, blocks: int) -> nn.Module:
    if name == "basicvsrpp":
        arch = import_basicsr("basicsr.archs.basicvsrpp_arch")
        # Built as on a CUDA machine everywhere: without CUDA BasicSR leaves the deformable alignment out.
        with mock.patch.object(torch.cuda, "is_available", return_value=True), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return arch.BasicVSRPlusPlus(mid_channels=channels, num_blocks=blocks)
    arch = import_basicsr("basicsr.archs.basicvsr_arch")
    if name == "basicvsr":
        return arch.BasicVSR(num_feat=channels, num_block=blocks)
    return arch.IconVSR(num_feat=channels, num_block=blocks, keyframe_stride=5, temporal_padding=2)


def panning_clip(frames: int, size: tuple[int, int], device: torch.device) -> Tensor:
    """``(1, frames, 3, h, w)`` in [0, 1]: a smooth random texture panned 2 px per frame (flows that mean
    something, unlike noise)."""
    h, w = size
    generator = torch.Generator().manual_seed(0)
    coarse = torch.rand(1, 3, h // 8 + 2, (w + 2 * frames) // 8 + 2, generator=generator)
    texture = F.interpolate(coarse, size=(h, w + 2 * frames), mode="bicubic", align_corners=False).clamp(0, 1)
    return torch.stack([texture[..., 2 * i : 2 * i + w] for i in range(frames)], dim=1).to(device)


def prepared(model: nn.Module, mode: str, sizes: Sizes) -> Callable[[Tensor], Tensor]:
    """``model`` run as ``vsr upscale`` runs it in ``mode``: autocast, channels-last weights, torch.compile."""
    dtype, channels_last, compiled = MODES[mode]
    channels_last = channels_last or (sizes.bf16_channels_last and dtype == torch.bfloat16)
    model.to(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    forward = torch.compile(model, backend=sizes.compile_backend) if compiled else model
    device_type = next(model.parameters()).device.type

    def run(lrs: Tensor) -> Tensor:
        autocast = torch.autocast(device_type, dtype=dtype or torch.bfloat16, enabled=dtype is not None)
        with torch.inference_mode(), autocast:
            return forward(lrs)

    return run


def timed(fn: Callable[[], Tensor], sizes: Sizes, device: torch.device) -> tuple[float, Tensor]:
    """Median ms of ``fn`` over ``sizes.repeats`` calls after ``sizes.warmup``, and its last output."""
    for _ in range(sizes.warmup):
        fn()
    timings, outputs = Timings(), []
    for _ in range(sizes.repeats):
        timings.add(lambda: outputs.append(fn()), device)
        del outputs[:-1]
    return timings.median * 1e3, outputs[-1]


def mean_psnr(output: Tensor, target: Tensor) -> float:
    return float(psnr(output.float().clamp(0, 1).cpu()[0], target.float().clamp(0, 1).cpu()[0]).mean())


# -- the parts ---------------------------------------------------------------------------------------------------
def study(report: Report, sizes: Sizes, device: torch.device, out: Path) -> None:
    """The propagation study's ``gpu`` preset, every run at once on ``device``, on the embedded set (written
    first, on first use); its report and runs' records bundled into ``out``. In --smoke the shipped file runs
    with :data:`TINY_STUDY_OVERRIDES` appended, on a tiny synthetic set."""
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        source, data = load_study(STUDY).source, None
        if sizes.study_overrides:
            raw = yaml.safe_load(source.read_text())
            raw["presets"]["gpu"]["overrides"] += list(sizes.study_overrides)
            raw["presets"]["gpu"]["profile"] = {"frames": 2, "size": [8, 8], "repeats": 1, "warmup": 0}
            source, data = tmp / f"{STUDY}.yaml", tmp / "data"
            source.write_text(yaml.safe_dump(raw, sort_keys=False))
            synth.generate(data, frames=6, val_frames=6, clips_per_photo=1, val_clips_per_photo=1, size=(32, 32),
                           photos=["astronaut", "coffee", "camera"], val_photos=["camera"])  # fmt: skip
        else:
            synth.ensure_default()
        runs, folder = tmp / "runs", tmp / "report"
        specs = plan_runs(load_study(source), "gpu", runs, data=data)
        jobs = min(sizes.study_jobs or len(specs), len(specs))
        start = time.perf_counter()
        run_and_report(source, preset="gpu", data=data, out=runs, report=folder, device=device.type, jobs=jobs)
        minutes = (time.perf_counter() - start) / 60
        records = sorted(runs.rglob("*.json"))
        per_iteration = [read_json(r).get("seconds_per_iteration") for r in records if r.name == "run.json"]
        bundle = out / f"{STUDY}_gpu_report.tar.gz"
        with tarfile.open(bundle, "w:gz") as tar:
            tar.add(folder, arcname="report")
            for record in records:
                tar.add(record, arcname=str(Path("runs") / record.relative_to(runs)))
        results = pd.read_csv(folder / "results.csv").set_index("variant")
    where = f"{len(specs)} runs, {jobs} at once on one {device.type}"
    report.add(f"study.{STUDY}.wall_min", minutes, "min", f"{where}; report in {bundle.name}")
    seconds = [s for s in per_iteration if s is not None]
    if seconds:
        report.add(f"study.{STUDY}.s_per_iteration", statistics.median(seconds), "s", f"median run, {where}")
    else:
        report.skip(f"study.{STUDY}.s_per_iteration", "no run recorded seconds_per_iteration")
    for variant, row in results.iterrows():
        delta = "" if pd.isna(row["psnr_p"]) else f"; {row['psnr_delta']:+.3f} dB to the base, p={row['psnr_p']:.2f}"
        report.add(f"study.{STUDY}.{variant}.psnr_db", row["psnr_mean"], "dB", f"mean of {row['seeds']} seeds{delta}")
    report.save()


def inference(
    report: Report, sizes: Sizes, device: torch.device, modes: list[str], budget_s: float, fp32: dict[str, Tensor]
) -> None:
    """vsr's and BasicSR's ms/frame in each of ``modes``; the PSNR of each reduced-precision output against the
    fp32 output (computed once per model and kept in ``fp32``)."""
    for name in INFERENCE_MODELS:
        if report.elapsed > budget_s:
            report.skip(f"inference.{name}.{'+'.join(modes)}", f"over the time budget of {budget_s:.0f} s")
            continue
        frames = max(sizes.frames, MIN_FRAMES.get(name, 1))
        lrs = panning_clip(frames, sizes.lr_size, device)
        reference, ours, missing = model_pair(name, sizes, device)
        for mode in modes:
            label = f"inference.{name}.{mode}"
            run = prepared(ours, mode, sizes)
            ours_ms, out = timed(lambda run=run, lrs=lrs: run(lrs), sizes, device)
            ours_ms /= frames
            if mode == "fp32":
                fp32[name] = out.float().cpu()
            report.add(f"{label}.vsr_ms_per_frame", ours_ms, "ms/frame")
            if reference is None:
                report.skip(f"{label}.basicsr_ms_per_frame", missing)
                report.skip(f"{label}.speedup", missing)
            else:
                theirs = prepared(reference, REFERENCE_MODE[mode], sizes)
                theirs_ms = timed(lambda theirs=theirs, lrs=lrs: theirs(lrs), sizes, device)[0] / frames
                note = "BasicSR in bf16 + channels-last, not compiled" if REFERENCE_MODE[mode] != mode else ""
                report.add(f"{label}.basicsr_ms_per_frame", theirs_ms, "ms/frame", note)
                report.add(f"{label}.speedup", theirs_ms / ours_ms, "x", "BasicSR's time / vsr's")
            if mode != "fp32" and name in fp32:
                value = mean_psnr(out, fp32[name])
                if math.isfinite(value):
                    report.add(f"{label}.psnr_vs_fp32_db", value, "dB", "vsr's output against its fp32 output")
                else:
                    report.skip(f"{label}.psnr_vs_fp32_db", "the outputs are identical")
        del reference, ours, run, out
        free(device)
        report.save()


def training(report: Report, sizes: Sizes, device: torch.device) -> None:
    for name in MODELS:
        recipe = load_recipe(name)
        d = recipe.data
        batch, frames, crop = (sizes.train or {}).get(name, (d["batch_size"], d["num_frames"], d["lr_patch"]))
        channels = sizes.channels or recipe.model["channels"]
        blocks = sizes.blocks or recipe.model["aggregation"]["num_blocks"]
        torch.manual_seed(0)
        model = build_model(recipe, f"model.channels={channels}", f"model.aggregation.num_blocks={blocks}")
        step = vsr_step(recipe, model, device)
        lq, gt = clip(batch, frames, crop, recipe.model["scale"], device)
        for _ in range(sizes.warmup):
            step(lq, gt)
        reset_peak(device)
        timings = Timings()
        for _ in range(sizes.train_steps):
            timings.add(lambda step=step, lq=lq, gt=gt: step(lq, gt), device)
        losses = "+".join(term["name"] for term in recipe.train["losses"])
        what = f"batch {batch} × {frames} frames of {crop}×{crop}, autocast {step.autocast}, loss {losses}"
        report.add(f"train.{name}.it_per_s", 1 / timings.median, "it/s", what)
        report.add(f"train.{name}.peak_memory_gib", peak_gib(device), "GiB", peak_note(device))
        del step, model
        free(device)
        report.save()


def streamed_upscale(report: Report, sizes: Sizes, device: torch.device) -> None:
    _, model, _ = model_pair("basicvsr", sizes, device)
    frames = panning_clip(sizes.stream_frames, sizes.lr_size, torch.device("cpu"))[0]
    reset_peak(device)
    start = time.perf_counter()
    stream = upscale_frames(
        model, iter(frames), chunk_size=sizes.stream_chunk, chunk_overlap=sizes.stream_overlap, device=device,
        dtype="bfloat16", channels_last=True, as_uint8=True,
    )  # fmt: skip
    count = sum(1 for _ in stream)
    seconds = time.perf_counter() - start
    (h, w), chunk, overlap = sizes.lr_size, sizes.stream_chunk, sizes.stream_overlap
    what = f"{count} frames of {h}x{w}, chunks of {chunk} + 2x{overlap}"
    report.add("upscale.basicvsr.peak_memory_gib", peak_gib(device), "GiB", f"{what}; {peak_note(device)}")
    report.add("upscale.basicvsr.frames_per_s", count / seconds, "frames/s", "bf16 + channels-last, uint8 out")
    report.save()


def deform(report: Report, sizes: Sizes, device: torch.device) -> None:
    """torchvision's ``deform_conv2d`` against vsr's at BasicVSR++'s alignment shape, fp32: speed and agreement."""
    channels, groups, (h, w) = sizes.channels or 64, 16, sizes.lr_size
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(1, 2 * channels, h, w, generator=generator)
    offset = 2 * torch.randn(1, 2 * groups * 9, h, w, generator=generator)
    mask = torch.rand(1, groups * 9, h, w, generator=generator)
    weight = torch.randn(channels, 2 * channels, 3, 3, generator=generator) / (2 * channels * 9) ** 0.5
    x, offset, mask, weight = (v.to(device) for v in (x, offset, mask, weight))
    x.requires_grad_(True)
    what = f"2x{channels} -> {channels} channels, {groups} offset groups, {h}x{w}, fp32"
    implementations = {"vsr": deform_conv2d_torch}
    if deform_backend() == "torchvision":
        from torchvision.ops import deform_conv2d as torchvision_deform_conv2d

        implementations["torchvision"] = torchvision_deform_conv2d
    results = {}
    for impl, fn in implementations.items():

        def forward(fn=fn):
            with torch.no_grad():
                return fn(x, offset, weight, None, 1, 1, 1, mask)

        def fwd_bwd(fn=fn):
            x.grad = None
            fn(x, offset, weight, None, 1, 1, 1, mask).square().mean().backward()
            return x.grad

        ms_forward, out = timed(forward, sizes, device)
        ms_fwd_bwd, grad = timed(fwd_bwd, sizes, device)
        results[impl] = (ms_forward, ms_fwd_bwd, out.float().cpu(), grad.float().cpu())
        report.add(f"deform.{impl}_forward_ms", ms_forward, "ms", what)
        report.add(f"deform.{impl}_fwd_bwd_ms", ms_fwd_bwd, "ms", "forward, mean-square loss, backward")
    if "torchvision" not in results:
        reason = deform_implementation().split("; ", 1)[-1]
        for label in ("torchvision_forward_ms", "torchvision_fwd_bwd_ms", "speedup_forward", "speedup_fwd_bwd",
                      "output_max_abs_diff", "grad_max_abs_diff"):  # fmt: skip
            report.skip(f"deform.{label}", reason)
    else:
        ours, theirs = results["vsr"], results["torchvision"]
        report.add("deform.speedup_forward", ours[0] / theirs[0], "x", "vsr's time / torchvision's")
        report.add("deform.speedup_fwd_bwd", ours[1] / theirs[1], "x", "vsr's time / torchvision's")
        report.add(
            "deform.output_max_abs_diff", (ours[2] - theirs[2]).abs().max().item(), "", "vsr's against torchvision's"
        )
        report.add("deform.grad_max_abs_diff", (ours[3] - theirs[3]).abs().max().item(), "", "input gradients")
    report.save()


def ddp(report: Report, sizes: Sizes, device: torch.device) -> None:
    """One step of the BasicVSR recipe in 2 processes through vsr.training.distributed."""
    with tempfile.TemporaryDirectory() as tmp:
        result = Path(tmp) / "ddp.json"
        torch.multiprocessing.spawn(
            ddp_worker, args=(2, free_port(), device.type, sizes, str(result)), nprocs=2, join=True
        )
        figures = read_json(result)
    backend = "nccl" if device.type == "cuda" else "gloo"
    report.add("ddp.step_s", figures["step_s"], "s", f"2 processes, {backend}, {figures['shape']} per process")
    report.add("ddp.weights_max_abs_diff", figures["weights_max_abs_diff"], "", "between the processes after the step")
    report.save()


def ddp_worker(rank: int, world_size: int, port: int, device_type: str, sizes: Sizes, result: str) -> None:
    os.environ.update(
        RANK=str(rank), WORLD_SIZE=str(world_size), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port)
    )
    torch.set_num_threads(max(1, torch.get_num_threads() // world_size))
    procs = Processes.from_env()
    device = resolve_device(device_type, procs.local_rank)
    with procs.group(device):
        recipe = load_recipe("basicvsr")
        batch, frames, crop = (sizes.train or {}).get("basicvsr", (recipe.data["batch_size"], 15, 64))
        channels, blocks = sizes.channels or 64, sizes.blocks or 30
        torch.manual_seed(0)  # the same initial weights in every process, as DDP requires
        model = build_model(recipe, f"model.channels={channels}", f"model.aggregation.num_blocks={blocks}")
        step = vsr_step(recipe, model, device)
        step.net = procs.wrap(model, device)
        lq, gt = clip(batch, frames, crop, recipe.model["scale"], device, seed=rank)  # each process its own clips
        step(lq, gt)  # warm-up (and DDP's first bucket rebuild)
        timings = Timings()
        timings.add(lambda: step(lq, gt), device)
        weights = torch.cat([p.detach().float().flatten() for p in model.parameters()])
        gathered = [torch.empty_like(weights) for _ in range(world_size)]
        torch.distributed.all_gather(gathered, weights)
        if procs.is_main:
            diff = max((g - gathered[0]).abs().max().item() for g in gathered)
            shape = f"batch {batch} x {frames} frames of {crop}x{crop}"
            write_json({"step_s": timings.median, "weights_max_abs_diff": diff, "shape": shape}, Path(result))
    leave_without_teardown()  # the figures are written; gloo's teardown race once aborted rank 1 in CI


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- memory ------------------------------------------------------------------------------------------------------
def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_gib(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 2**30  # Linux: KiB


def peak_note(device: torch.device) -> str:
    return "torch's peak allocation" if device.type == "cuda" else "the process's peak resident set so far"


def free(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()


# -- the run -----------------------------------------------------------------------------------------------------
def parts(report: Report, sizes: Sizes, device: torch.device, gpus: int, budget_s: float, out: Path) -> Iterator[tuple]:
    """(part, function) in the order they run: what matters most first (the study), compilation last (the
    costliest figures for what they add)."""
    fp32: dict[str, Tensor] = {}  # each model's fp32 output, for the PSNR of the other modes
    yield "study", lambda: study(report, sizes, device, out)
    yield "inference", lambda: inference(report, sizes, device, ["fp32", "bf16"], budget_s, fp32)
    yield "training", lambda: training(report, sizes, device)
    yield "upscale", lambda: streamed_upscale(report, sizes, device)
    yield "deform", lambda: deform(report, sizes, device)
    if gpus >= 2 or device.type == "cpu":
        yield "ddp", lambda: ddp(report, sizes, device)
    else:
        yield "ddp", lambda: report.skip("ddp", f"{gpus} GPU: a 2-process DDP step needs 2")
    yield "inference (compiled)", lambda: inference(report, sizes, device, ["bf16_cl_compile"], budget_s, fp32)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="the same code on the CPU at tiny sizes, in seconds")
    parser.add_argument("--out", type=Path, default=Path("."), help="folder of the JSON file and the study report")
    parser.add_argument("--json", type=Path, default=None, help="the figures' file (default: OUT/gpu_check.json)")
    parser.add_argument("--budget-s", type=float, default=540.0, help="start nothing after this many seconds")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    args.json = args.json or args.out / "gpu_check.json"
    device = torch.device("cpu") if args.smoke else default_device()
    if device.type != "cuda" and not args.smoke:
        print("no CUDA device here: run on a GPU machine, or --smoke for the CPU check", file=sys.stderr)
        return 2
    sizes = SMOKE if args.smoke else PAPER
    gpus = torch.cuda.device_count() if device.type == "cuda" else 0
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu, {torch.get_num_threads()} threads"
    meta = {"device": name, "smoke": args.smoke, "torch": torch.__version__, "gpus": gpus,
            "deform_backend": deform_backend(), "sizes": {k: str(v) for k, v in vars(sizes).items()}}  # fmt: skip
    print(f"gpu_check on {name} (torch {torch.__version__}, {gpus} GPU(s), deformable conv: {deform_backend()})")
    report = Report(args.json, meta)
    for part, run in parts(report, sizes, device, gpus, args.budget_s, args.out):
        if report.elapsed > args.budget_s:
            report.skip(part, f"over the time budget of {args.budget_s:.0f} s")
            continue
        try:
            run()
        except Exception as err:  # one part failing must not lose the others' figures
            report.error(part, err)
        free(device)
    report.save()
    print(f"{len(report.figures)} figures in {report.elapsed:.0f} s, written to {args.json}"
          + (f"; {len(report.errors)} part(s) FAILED" if report.errors else ""))  # fmt: skip
    return 1 if report.errors else 0


if __name__ == "__main__":
    raise SystemExit(main())
