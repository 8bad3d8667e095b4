"""One-shot GPU check (issue #12): the figures only a GPU can give, in one command, under 8 minutes on one GPU.

    python benchmarks/gpu_check.py                             # CUDA: the paper's settings
    python benchmarks/gpu_check.py --json gpu_check.json       # where the figures go (default: gpu_check.json)
    python benchmarks/gpu_check.py --smoke                     # the same code on the CPU at tiny sizes (CI)

Every figure is printed as one labelled line, ``label  value unit  (note)``, and written with the others to the
JSON file (``figures``: label -> number, ``units``, ``notes``, ``skipped`` and ``errors``: label -> why),
rewritten atomically after each part, so a run cut short keeps what it measured.

1. **Inference** of BasicVSR, IconVSR and BasicVSR++ at the paper's setting (10 frames of 180×320 LR, ×4 ->
   720×1280), batch 1, inference mode, ms/frame (median of 5 after 2 warm-ups) in fp32, bf16 autocast, and bf16
   + channels-last + ``torch.compile``: the options ``vsr upscale`` takes (``--dtype``, ``--channels-last``,
   ``--compile``), applied as it applies them. BasicSR 1.4.2's implementation with the same weights runs in the
   same process and mode (not compiled: compiling it too would not fit the time), and the PSNR between vsr's
   bf16 and fp32 outputs says what bf16 costs (a smooth panning clip, random weights of the reference's
   initialisation).
2. **Training** of the paper recipes (``recipes/basicvsr.yaml``: 4 clips of 15 frames of 64×64 per GPU;
   ``iconvsr``: the same; ``basicvsrpp``: 1 clip of 30 frames) through the recipe's own device options (bf16
   autocast and channels-last on CUDA, see ``vsr.training.precision``), every parameter trained (the state after
   the first 5000 iterations, when SPyNet thaws): it/s and peak memory over 5 steps after 2 warm-ups.
3. **Streamed upscale**: peak memory and frames/s of ``vsr.upscale.upscale_frames`` over 200 frames of 180×320
   in its default chunks (30 frames, 8 of warm-up each side), bf16 + channels-last: flat in the video's length.
4. **DDP**: one step of the BasicVSR recipe in 2 processes (``vsr.training.distributed``: NCCL, one GPU each)
   when 2 GPUs exist, else skipped; then the weights of the two processes must agree.

``--smoke`` runs all of it on the CPU with 16-channel models of one block, 3 frames of 64×64, 12 frames
streamed, compile's graph capture without code generation (``backend="eager"``) and the DDP step in 2 CPU
processes over gloo, in well under a minute; peak memory there is the process's peak resident set.
BasicSR is fetched from PyPI (see ``tests/basicsr_reference.py``); on a machine without network, carry the
cache (``$VSR_CACHE``, default ``~/.cache/vsr``) along. ``--budget-s`` (default 450) skips what would start
after that many seconds, compiled inference last, and says so.
"""

from __future__ import annotations

import argparse
import math
import os
import resource
import socket
import sys
import tempfile
import time
import traceback
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from unittest import mock

import torch
import torch.nn.functional as F
from bench_train import Timings, clip, vsr_step
from torch import Tensor, nn

from vsr import build_model
from vsr.atomic import read_json, write_json
from vsr.checkpoints import extract_state_dict, load_state_dict
from vsr.components.deform import deform_backend
from vsr.device import default_device
from vsr.metrics import psnr
from vsr.recipe import load_recipe
from vsr.training.distributed import Processes, leave_without_teardown, resolve_device
from vsr.upscale import upscale_frames

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the reference lives with the tests
from basicsr_reference import ReferenceUnavailable, import_basicsr

MODELS = ("basicvsr", "iconvsr", "basicvsrpp")
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


PAPER = Sizes(None, None, 10, (180, 320), None, 5, 200, 30, 8, 2, 5, "inductor")
SMOKE = Sizes(16, 1, 2, (64, 64), dict.fromkeys(MODELS, (1, 2, 64)), 1, 6, 2, 1, 0, 1, "eager", True)
MIN_FRAMES = {"iconvsr": 5}  # BasicSR's IconVSR indexes frames 4 and -5 for its keyframe windows


def expected_labels(ddp: bool = True) -> list[str]:
    """Every label a complete run reports (the DDP ones only with 2 devices, or in ``--smoke``)."""
    labels = []
    for model in MODELS:
        for mode in REFERENCE_MODE:
            labels += [f"inference.{model}.{mode}.vsr_ms_per_frame", f"inference.{model}.{mode}.basicsr_ms_per_frame"]
            labels += [f"inference.{model}.{mode}.speedup"]
        labels += [f"inference.{model}.bf16.psnr_vs_fp32_db", f"inference.{model}.bf16_cl_compile.psnr_vs_fp32_db"]
    for model in MODELS:
        labels += [f"train.{model}.it_per_s", f"train.{model}.peak_memory_gib"]
    labels += ["upscale.basicvsr.peak_memory_gib", "upscale.basicvsr.frames_per_s"]
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
    overrides = (f"model.channels={channels}", f"model.aggregation.num_blocks={blocks}")
    torch.manual_seed(0)
    ours = build_model(name, *overrides).eval()
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
def inference(
    report: Report, sizes: Sizes, device: torch.device, modes: list[str], budget_s: float, fp32: dict[str, Tensor]
) -> None:
    """vsr's and BasicSR's ms/frame in each of ``modes``; the PSNR of each reduced-precision output against the
    fp32 output (computed once per model and kept in ``fp32``)."""
    for name in MODELS:
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
def parts(report: Report, sizes: Sizes, device: torch.device, gpus: int, budget_s: float) -> Iterator[tuple]:
    """(part, function) in the order they run: what matters most and costs least first, compilation last."""
    fp32: dict[str, Tensor] = {}  # each model's fp32 output, for the PSNR of the other modes
    yield "inference", lambda: inference(report, sizes, device, ["fp32", "bf16"], budget_s, fp32)
    yield "training", lambda: training(report, sizes, device)
    yield "upscale", lambda: streamed_upscale(report, sizes, device)
    if gpus >= 2 or device.type == "cpu":
        yield "ddp", lambda: ddp(report, sizes, device)
    else:
        yield "ddp", lambda: report.skip("ddp", f"{gpus} GPU: a 2-process DDP step needs 2")
    yield "inference (compiled)", lambda: inference(report, sizes, device, ["bf16_cl_compile"], budget_s, fp32)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="the same code on the CPU at tiny sizes, in seconds")
    parser.add_argument("--json", type=Path, default=Path("gpu_check.json"))
    parser.add_argument("--budget-s", type=float, default=450.0, help="start nothing after this many seconds")
    args = parser.parse_args(argv)
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
    for part, run in parts(report, sizes, device, gpus, args.budget_s):
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
