"""What degrading on the fly costs: RealBasicVSR's chain (``realbasicvsr``) stage by stage, and a DataLoader
worker's sample rate against the step rate of the tiny recipe.

    python benchmarks/bench_degradations.py                # about 8 minutes on two idle cores
    python benchmarks/bench_degradations.py --parts stages,worker --repeats 5   # a minute
    python benchmarks/bench_degradations.py --parts compare --repeats 9         # previous / current code

* **Stages**: one clip of 30 frames at 256² GT (a photograph panning 2 px a frame), each stage of the chain
  on the whole clip at that size with its draw made to fire (noise: Gaussian and Poisson; video: libx264
  and MPEG-4 Part 2 at 55 kbit/frame, the middle of the range), median of ``--repeats`` runs with different
  seeds. In the chain the stages after the first resize see smaller frames (0.15-1.5×, then 0.3-1.2×), so
  the whole chain, timed alone over ``--repeats`` seeds, costs less than the sum of the rows.
* **Previous / current** (``compare``): the same rows, each computed by the code the chain ran before its
  stages were batched (``tests/realworld_reference.py``: FFT blurs, dense-matrix unsharp mask, JPEG and casts
  frame by frame, PyAV's threaded decoding) and by the current code, taking turns on the same seeds, on one
  thread as a DataLoader worker: on a clip of 8 frames at 128² (the tiny recipe's) and one of 30 at 256²
  (RealBasicVSR's). The ratio is the median over the seeds of previous / current, less shaken by the
  machine's other work than a ratio of medians.
* **Worker against step**: the tiny recipe's samples (``recipes/basicvsr_tiny.yaml``: 8 frames, 32² LR crop
  of 128² GT, batch 2) from a GT-only synthetic set degraded by ``realbasicvsr``, made one after another on
  one thread as a DataLoader worker makes them (torch gives a worker one thread); against the recipe's
  training step (forward, Charbonnier, backward, Adam; channels-last as the recipe) on torch's threads. The
  ratio is the share of the step's time a worker needs for a batch: below 1, one worker keeps up, given a
  core of its own.
* **Training** (what the issue's 10% budget is about): the two tiny recipes trained as ``vsr train`` trains
  them, on the machine's cores with their DataLoader worker (``data.workers: 1``) on the same cores, from a
  GT-only set degraded on the fly by ``realbasicvsr`` against the same set degraded by ``bi`` (a bicubic
  resize of the GT frames: the same loading, mirroring and cropping, no real-world chain). The rate is
  iterations per second after the first log window (worker start-up, frame caching), the variants taking
  turns over ``--rounds``; the loss is 1 − (on-the-fly rate / BI rate).

Times are wall-clock, on whatever else the machine runs: medians, and a ratio measured within one run.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from skimage import data as skdata

from vsr.data import realworld, synth
from vsr.data.datasets import TrainingClips
from vsr.data.layouts import open_dataset
from vsr.data.realworld import INTERPOLATIONS
from vsr.losses import charbonnier
from vsr.model import assemble
from vsr.recipe import load_recipe
from vsr.training import train
from vsr.training.files import LOG_FILE

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the reference lives with the tests
import realworld_reference as reference

TRAINED = ("basicvsr_tiny", "realbasicvsr_wogan_tiny")


def median_time(run: Callable[[int], object], repeats: int) -> float:
    times = []
    for seed in range(repeats):
        start = time.perf_counter()
        run(seed)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def panning_clip(frames: int = 30, size: int = 256) -> torch.Tensor:
    photo = torch.from_numpy(skdata.astronaut()[:size, : size + 2 * frames].copy()).permute(2, 0, 1).float() / 255
    return torch.stack([photo[:, :, 2 * i : 2 * i + size] for i in range(frames)]).contiguous()


@dataclass(frozen=True)
class Implementation:
    """How a stage, the GT's unsharp masking, a resize and the whole chain are computed."""

    apply: Callable[..., list[torch.Tensor]]  # (stage, frames, draw, rng)
    unsharp_mask: Callable[[torch.Tensor], torch.Tensor]
    resize: Callable[[torch.Tensor, tuple[int, int], str], torch.Tensor]
    chain: Callable[[realworld.RealBasicVSR, torch.Tensor, np.random.Generator], torch.Tensor]


CURRENT = Implementation(
    lambda stage, *args: stage.apply(*args), realworld.unsharp_mask, realworld.resize, lambda c, x, rng: c(x, rng)
)
PREVIOUS = Implementation(
    reference.reference_apply, reference.unsharp_mask, reference.resize, reference.reference_chain
)


def stage_runs(clip: torch.Tensor, how: Implementation = CURRENT) -> dict[str, Callable[[int], object]]:
    """A run by seed for each row: each stage on the whole clip, made to fire with its chain's ranges, then
    the whole chain."""
    frames = list(clip)
    chain = realworld.RealBasicVSR(scale=4)
    forced = {
        "blur (1st order)": (chain.stages["blur1"], None),
        "resize (1st order, down)": (realworld.RandomResize(mode_probs=(0, 1, 0)), None),
        "noise, Gaussian": (realworld.RandomNoise(gaussian_prob=1.0), None),
        "noise, Poisson": (realworld.RandomNoise(gaussian_prob=0.0), None),
        "JPEG": (chain.stages["jpeg1"], None),
        "video, libx264": (chain.stages["video1"], realworld.VideoDraw("libx264", 55_000)),
        "video, mpeg4": (chain.stages["video1"], realworld.VideoDraw("mpeg4", 55_000)),
        "blur (2nd order)": (realworld.RandomBlur(sigma=(0.2, 1.5)), None),
        "sinc blur": (realworld.RandomBlur(kinds={"sinc": 1.0}), None),
    }
    low = (clip.shape[-2] // 4, clip.shape[-1] // 4)
    runs = {"unsharp mask (GT)": lambda seed: how.unsharp_mask(clip)}
    for name, (stage, draw) in forced.items():

        def run(seed, stage=stage, draw=draw):
            values, realisation = np.random.default_rng(seed).spawn(2)
            return how.apply(stage, frames, draw or stage.draw(values, len(frames)), realisation)

        runs[name] = run
        if name == "blur (2nd order)":
            runs[f"resize to LR ({low[0]}×{low[1]})"] = lambda seed: how.resize(clip, low, INTERPOLATIONS[seed % 3])
    runs["whole chain (realbasicvsr)"] = lambda seed: how.chain(chain, clip, np.random.default_rng(seed))
    return runs


def stage_rows(clip: torch.Tensor, repeats: int) -> list[tuple[str, float]]:
    """Seconds per stage on the whole clip, each made to fire with its chain's ranges; then the whole chain."""
    return [(name, median_time(run, repeats)) for name, run in stage_runs(clip).items()]


def compare_rows(clip: torch.Tensor, repeats: int) -> list[tuple[str, float, float, float]]:
    """``(row, previous s, current s, ratio)``: the rows of :func:`stage_rows` computed by the previous code
    (``tests/realworld_reference.py``) and the current one taking turns on the same seeds (either first in
    turn); seconds are medians, the ratio the median of the seeds' previous / current."""
    previous, current = stage_runs(clip, PREVIOUS), stage_runs(clip, CURRENT)
    rows = []
    for name in current:
        times: dict[str, list[float]] = {"previous": [], "current": []}
        for seed in range(repeats):
            turns = (("previous", previous), ("current", current))
            for label, runs in turns if seed % 2 == 0 else turns[::-1]:
                start = time.perf_counter()
                runs[name](seed)
                times[label].append(time.perf_counter() - start)
        ratio = statistics.median(p / c for p, c in zip(times["previous"], times["current"], strict=True))
        rows.append((name, statistics.median(times["previous"]), statistics.median(times["current"]), ratio))
    return rows


def worker_rate(root: Path, samples: int) -> float:
    """Seconds per sample of the tiny recipe's shape, on one thread as a DataLoader worker."""
    recipe = load_recipe("basicvsr_tiny")
    d = recipe.data
    spec = {"layout": "synth", "root": str(root), "split": "train", "lr": None, "degradation": "realbasicvsr"}
    data = TrainingClips(open_dataset(spec), d["num_frames"], d["lr_patch"], samples_per_epoch=samples, seed=0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        data[0]  # frames decoded and cached
        start = time.perf_counter()
        for i in range(1, samples):
            data[i]
        return (time.perf_counter() - start) / (samples - 1)
    finally:
        torch.set_num_threads(threads)


def step_time(steps: int) -> float:
    """Median seconds of the tiny recipe's training step on a batch of its shape."""
    recipe = load_recipe("basicvsr_tiny")
    d, scale = recipe.data, recipe.model["scale"]
    torch.manual_seed(0)
    model = assemble(recipe.model).train()
    memory = torch.channels_last if recipe.train["channels_last"] in (True, "true") else torch.contiguous_format
    model = model.to(memory_format=memory)
    optimizer = torch.optim.Adam(model.parameters(), lr=recipe.train["lr"], betas=recipe.train["betas"])
    lq = torch.rand(d["batch_size"], d["num_frames"], 3, d["lr_patch"], d["lr_patch"])
    gt = torch.rand(d["batch_size"], d["num_frames"], 3, d["lr_patch"] * scale, d["lr_patch"] * scale)

    def step(_seed: int) -> None:
        optimizer.zero_grad(set_to_none=True)
        charbonnier(model(lq), gt).backward()
        optimizer.step()

    step(0)  # warm-up
    return median_time(step, steps)


def training_rate(name: str, root: Path, degradation: str, iterations: int, out: Path) -> float:
    """Iterations per second of recipe ``name`` trained on ``root``'s GT degraded by ``degradation``, after
    the first log window."""
    recipe = load_recipe(name).to_dict()
    recipe["data"] |= {
        "train": {"layout": "synth", "root": str(root), "split": "train", "lr": None, "degradation": degradation},
        "val": {"layout": "synth", "root": str(root), "split": "val"}, "test": None, "workers": 1,
    }  # fmt: skip
    recipe["train"] |= {"iterations": iterations, "periods": [iterations], "log_every": 10, "val_every": 0,
                        "checkpoint_every": 0, "tensorboard": False}  # fmt: skip
    train(recipe, out, progress=False)
    windows = [json.loads(line) for line in (out / LOG_FILE).read_text().splitlines()]
    windows = [w for w in windows if w.get("event") == "train" and w["iteration"] > 10]
    return sum(10 for _ in windows) / sum(10 / w["it_per_s"] for w in windows)


def training_rows(root: Path, iterations: int, rounds: int, tmp: Path) -> list[tuple[str, float, float]]:
    """(recipe, it/s degraded by realbasicvsr, it/s degraded by bi), medians over ``rounds`` turns."""
    rows = []
    for name in TRAINED:
        rates: dict[str, list[float]] = {"realbasicvsr": [], "bi": []}
        for turn in range(rounds):
            for degradation, kept in rates.items():
                kept.append(training_rate(name, root, degradation, iterations, tmp / f"{name}-{degradation}-{turn}"))
        rows.append((name, statistics.median(rates["realbasicvsr"]), statistics.median(rates["bi"])))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3, help="runs per stage (median)")
    parser.add_argument("--samples", type=int, default=8, help="training samples timed")
    parser.add_argument("--steps", type=int, default=3, help="training steps timed (median)")
    parser.add_argument("--iterations", type=int, default=70, help="iterations per training (the first 10 untimed)")
    parser.add_argument("--rounds", type=int, default=2, help="turns of the two degradations per recipe (median)")
    parser.add_argument(
        "--parts", default="stages,worker,training", help="comma-separated: stages, compare, worker, training"
    )
    args = parser.parse_args()
    parts = set(args.parts.split(","))

    if "compare" in parts:
        compare_part(args.repeats)

    if "stages" in parts:
        clip = panning_clip()
        threads = torch.get_num_threads()
        print(f"Degradation of one clip, 30 frames at 256² GT (median of {args.repeats}, torch threads {threads})")
        print(f"| {'stage':<28} | {'s / clip':>8} | {'ms / frame':>10} |")
        print(f"|{'-' * 30}|{'-' * 10}|{'-' * 12}|")
        for name, seconds in stage_rows(clip, args.repeats):
            print(f"| {name:<28} | {seconds:>8.3f} | {1000 * seconds / len(clip):>10.1f} |")
        print()

    if not parts & {"worker", "training"}:
        return
    recipe = load_recipe("basicvsr_tiny")
    batch, frames, patch = recipe.data["batch_size"], recipe.data["num_frames"], recipe.data["lr_patch"]
    with tempfile.TemporaryDirectory() as tmp:
        root = synth.generate(Path(tmp) / "set", frames=10, val_frames=None, clips_per_photo=2,
                              val_clips_per_photo=1, photos=["astronaut", "coffee", "chelsea"],
                              val_photos=["chelsea"], size=(4 * patch, 4 * patch), workers=1).root  # fmt: skip
        if "worker" in parts:
            worker_part(root, args, batch, frames, patch)
        if "training" in parts:
            print(f"Training from GT degraded on the fly ({args.iterations} iterations, 1 DataLoader worker, "
                  f"{os.cpu_count()} cores, median of {args.rounds} turns)")  # fmt: skip
            print(f"| {'recipe':<18} | {'it/s, realbasicvsr':>18} | {'it/s, bi':>8} | {'step rate lost':>14} |")
            print(f"|{'-' * 20}|{'-' * 20}|{'-' * 10}|{'-' * 16}|")
            for name, real, bi in training_rows(root, args.iterations, args.rounds, Path(tmp)):
                print(f"| {name:<18} | {real:>18.3f} | {bi:>8.3f} | {100 * (1 - real / bi):>13.1f}% |")


def compare_part(repeats: int) -> None:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as a DataLoader worker
    try:
        for frames, size in ((8, 128), (30, 256)):
            clip = panning_clip(frames, size)
            print(f"Previous / current code, one clip of {frames} frames at {size}² GT (1 thread, turns over "
                  f"{repeats} seeds: medians, and the median of the seeds' ratios)")  # fmt: skip
            print(f"| {'stage':<28} | {'previous s':>10} | {'current s':>10} | {'ratio':>6} |")
            print(f"|{'-' * 30}|{'-' * 12}|{'-' * 12}|{'-' * 8}|")
            for name, previous, current, ratio in compare_rows(clip, repeats):
                print(f"| {name:<28} | {previous:>10.4f} | {current:>10.4f} | {ratio:>5.2f}× |")
            print()
    finally:
        torch.set_num_threads(threads)


def worker_part(root: Path, args: argparse.Namespace, batch: int, frames: int, patch: int) -> None:
    per_sample = worker_rate(root, args.samples)
    per_step = step_time(args.steps)
    per_batch = per_sample * batch
    print(f"basicvsr_tiny: batch {batch} × {frames} frames, {patch}² LR crop of {4 * patch}² GT, realbasicvsr")
    print(f"| {'':<44} | {'value':>8} |")
    print(f"|{'-' * 46}|{'-' * 10}|")
    print(f"| {'one worker: samples / s (1 thread)':<44} | {1 / per_sample:>8.2f} |")
    print(f"| {'one worker: s per batch':<44} | {per_batch:>8.3f} |")
    print(f"| {f'training step: s (torch threads {torch.get_num_threads()})':<44} | {per_step:>8.3f} |")
    print(f"| {'ratio: worker s per batch / step s':<44} | {per_batch / per_step:>8.2f} |")
    print()


if __name__ == "__main__":
    main()
