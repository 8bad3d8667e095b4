"""Training of a recipe: BasicVSR's schedule (paper §4; MMagic ``basicvsr_2xb4_reds4``) from the ``train`` keys.

What one run does, in order (every key is in :data:`vsr.recipe.DEFAULTS`):

* **Objective** (``train.objective``): ``sr`` trains the whole network on LR -> GT clips with the pixel loss
  ``train.loss`` (Charbonnier, eps 1e-12, in the papers); ``flow`` trains only the flow estimator
  ``model.flow`` on the data set's true optical flow (end-point error at LR resolution), to pretrain it
  where no pretrained SPyNet can be downloaded. Its checkpoint starts SR runs through ``train.init`` with
  ``train.init_prefixes: [flow.]``.
* **Optimiser**: Adam (``lr``, ``betas``) with two parameter groups: the modules that start from pretrained
  weights (:data:`vsr.model.PRETRAINED_PREFIXES`: the flow estimator, IconVSR's refill extractor) run at
  ``lr × pretrained_lr_mult`` (2.5e-5 for SPyNet in the papers) and are frozen for the first
  ``fix_iterations`` steps (5000). Frozen means ``requires_grad=False``: no gradient flows into them, Adam
  skips them, and under DDP the model is wrapped again when they thaw, so DDP never needs
  ``find_unused_parameters`` (the MMagic configs set it for exactly this reason).
* **Schedule**: cosine annealing with restarts stepped per iteration (:class:`CosineRestartLR`, MMagic
  ``CosineRestartLR`` / BasicSR ``CosineAnnealingRestartLR``), or a constant lr.
* **Devices**: one code path. On CUDA, bf16 autocast and channels-last by default (``amp``,
  ``channels_last`` = ``auto``); ``compile`` wraps the network in ``torch.compile``. Under ``torchrun`` each
  process trains on its shard of every global batch (DDP); rank 0 validates, logs and writes checkpoints.
* **Data**: training samples are a pure function of ``(seed, sample index)``
  (:class:`vsr.data.datasets.TrainingClips`); iteration ``i`` of rank ``r`` takes the global samples
  ``(i·W + r)·B ... (i·W + r)·B + B - 1``. A resumed run therefore sees exactly the samples it would have
  seen, and on CPU ends with bit-identical weights. Without data the embedded synthetic set is used (its
  ``val`` split validates).
* **Outputs** in ``out_dir``: ``recipe.yaml`` (resolved), ``log.jsonl`` (one JSON object per log step and per
  validation), ``metrics.csv`` (validations), ``checkpoints/latest.pth`` (everything needed to resume,
  every ``checkpoint_every`` steps), ``checkpoints/best.pth`` (best validation), ``checkpoints/last.pth`` and
  ``model.safetensors`` (final weights), ``result.json`` (final metrics vs. the bicubic / zero-flow baseline,
  time, parameters). All written atomically. A non-finite loss stops the run with a :class:`VSRError`
  and leaves the last good checkpoint in place.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import os
import random
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.optim.lr_scheduler import LambdaLR, LRScheduler
from torch.utils.data import DataLoader, Sampler

from vsr.atomic import write_json
from vsr.checkpoints import load_checkpoint, read_checkpoint, save_checkpoint
from vsr.components import build_component
from vsr.data.datasets import ClipSet, TestClips, TrainingClips, open_dataset
from vsr.errors import DataError, RecipeError, VSRError
from vsr.evaluate import Bicubic, Protocol, measure, progress_bar, test_spec
from vsr.losses import build_loss, endpoint_error
from vsr.model import PRETRAINED_PREFIXES, assemble
from vsr.recipe import Recipe, load_recipe

log = logging.getLogger(__name__)

#: Weights shipped inside the package, usable by file stem as ``train.init`` (e.g. ``spynet_tiny``).
WEIGHTS_DIR = Path(__file__).parent / "weights"


# --------------------------------------------------------------------------------------------------------
# Learning-rate schedule
# --------------------------------------------------------------------------------------------------------


def cosine_restart_lr(
    base_lr: float, iteration: int, periods: list[int], restart_weights: list[float], eta_min: float
) -> float:
    """The learning rate of cosine annealing with restarts at ``iteration`` (MMagic ``CosineRestartLR``).

    In period ``k`` (starting at ``c_k``, the sum of the earlier periods, of length ``p_k``):
    ``eta_min + w_k / 2 · (base_lr - eta_min) · (1 + cos(pi · (iteration - c_k) / p_k))``. After the last
    period the rate stays at ``eta_min``.
    """
    start = 0
    for period, weight in zip(periods, restart_weights, strict=True):
        if iteration < start + period:
            return eta_min + 0.5 * weight * (base_lr - eta_min) * (1 + math.cos(math.pi * (iteration - start) / period))
        start += period
    return eta_min


class CosineRestartLR(LRScheduler):
    """Cosine annealing with restarts, stepped once per iteration; ``eta_min`` is the same absolute floor for
    every parameter group (as in the reference, where SPyNet's lr also ends at 1e-7)."""

    def __init__(self, optimizer, periods: list[int], restart_weights: list[float], eta_min: float, last_epoch=-1):
        self.periods, self.restart_weights, self.eta_min = list(periods), list(restart_weights), eta_min
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        return [
            cosine_restart_lr(base, self.last_epoch, self.periods, self.restart_weights, self.eta_min)
            for base in self.base_lrs
        ]


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: Mapping[str, Any]) -> LRScheduler:
    """The scheduler of ``train.scheduler`` (``cosine_restart`` or ``constant``)."""
    if cfg["scheduler"] == "constant":
        return LambdaLR(optimizer, lambda _: 1.0)
    if cfg["scheduler"] != "cosine_restart":
        raise RecipeError("train.scheduler", cfg["scheduler"], "unknown scheduler", ["cosine_restart", "constant"])
    periods, weights = cfg["periods"], cfg["restart_weights"]
    if not periods or any(not isinstance(p, int) or p < 1 for p in periods):
        raise RecipeError("train.periods", periods, "periods are positive iteration counts, e.g. [300000]")
    if len(weights) != len(periods):
        raise RecipeError(
            "train.restart_weights", weights, f"needs one weight per period ({len(periods)} periods: {periods})"
        )
    if sum(periods) != cfg["iterations"]:
        log.warning(
            "train.periods sum to %d but train.iterations is %d: the lr %s",
            sum(periods),
            cfg["iterations"],
            "stays at eta_min after the last period" if sum(periods) < cfg["iterations"] else "never reaches eta_min",
        )
    return CosineRestartLR(optimizer, periods, weights, cfg["eta_min"])


# --------------------------------------------------------------------------------------------------------
# Parameter groups and freezing of the pretrained modules
# --------------------------------------------------------------------------------------------------------


def is_pretrained(name: str) -> bool:
    return name.startswith(PRETRAINED_PREFIXES)


def build_optimizer(model: nn.Module, cfg: Mapping[str, Any]) -> torch.optim.Adam:
    """Adam with a ``main`` group at ``lr`` and a ``pretrained`` group (flow estimator, refill extractor) at
    ``lr × pretrained_lr_mult``; an empty group is left out."""
    main = [p for n, p in model.named_parameters() if not is_pretrained(n)]
    pretrained = [p for n, p in model.named_parameters() if is_pretrained(n)]
    groups = [
        {"params": params, "lr": lr, "name": name}
        for name, params, lr in (
            ("main", main, cfg["lr"]),
            ("pretrained", pretrained, cfg["lr"] * cfg["pretrained_lr_mult"]),
        )
        if params
    ]
    return torch.optim.Adam(groups, lr=cfg["lr"], betas=tuple(cfg["betas"]), weight_decay=cfg["weight_decay"])


def set_pretrained_frozen(model: nn.Module, frozen: bool) -> int:
    """Freeze (or thaw) the pretrained modules; returns how many parameter tensors that touched."""
    count = 0
    for name, param in model.named_parameters():
        if is_pretrained(name):
            param.requires_grad_(not frozen)
            count += 1
    return count


# --------------------------------------------------------------------------------------------------------
# Devices, precision, processes
# --------------------------------------------------------------------------------------------------------


def _switch(value: Any, key: str) -> bool | None:
    """``auto`` -> None, else a bool from YAML booleans or on/off/true/false strings."""
    if isinstance(value, bool):
        return value
    text = str(value).lower()
    if text == "auto":
        return None
    if text in ("true", "on", "yes", "1"):
        return True
    if text in ("false", "off", "no", "0", "none"):
        return False
    raise RecipeError(key, value, "expected auto, true or false")


def autocast_dtype(amp: Any, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of ``train.amp``: ``auto`` is bf16 on CUDA and off elsewhere."""
    text = str(amp).lower() if not isinstance(amp, bool) else ("bf16" if amp else "off")
    if text == "auto":
        return torch.bfloat16 if device.type == "cuda" else None
    choices = {"bf16": torch.bfloat16, "bfloat16": torch.bfloat16, "fp16": torch.float16, "float16": torch.float16}
    if text in ("off", "none", "false", "fp32"):
        return None
    if text not in choices:
        raise RecipeError("train.amp", amp, "unknown precision", ["auto", "bf16", "fp16", "off"])
    return choices[text]


@dataclass
class Processes:
    """This process's place among the training processes (``torchrun`` sets RANK, WORLD_SIZE, LOCAL_RANK)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    owns_group: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @classmethod
    def start(cls, device: torch.device) -> Processes:
        world_size = int(os.environ.get("WORLD_SIZE", "1"))
        if world_size <= 1:
            return cls()
        rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
        owns = not dist.is_initialized()
        if owns:
            dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        return cls(rank, world_size, local_rank, owns)

    def mean(self, value: Tensor) -> Tensor:
        if self.distributed:
            value = value.clone()
            dist.all_reduce(value)
            value /= self.world_size
        return value

    def share(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every rank."""
        if not self.distributed:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def close(self) -> None:
        if self.owns_group and dist.is_initialized():
            dist.destroy_process_group()


def resolve_device(device: str | torch.device | None, local_rank: int = 0) -> torch.device:
    if device is None:
        device = f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu"
    device = torch.device(device)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise VSRError(f"device {device} was asked for but CUDA is not available; use device='cpu'")
        if device.index is None:
            device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    return device


# --------------------------------------------------------------------------------------------------------
# RNG state
# --------------------------------------------------------------------------------------------------------


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state() -> dict[str, Any]:
    """Every RNG's state, as tensors and plain containers (loadable with ``weights_only=True``)."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": {"name": name, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "torch": torch.get_rng_state(),
    }  # fmt: skip
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Mapping[str, Any]) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    n = state["numpy"]
    np.random.set_state(
        (n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"])
    )
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


# --------------------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------------------


def data_specs(recipe: Recipe, data: Any = None) -> tuple[Any, Any]:
    """The (training, validation) data set specs: ``data`` (e.g. ``vsr train --data``) replaces
    ``data.train``; a synthetic set given there also validates on its own ``val`` split unless ``data.val``
    is set; ``None`` means the embedded set (``train`` and ``val`` splits)."""
    train_spec = recipe.data["train"] if data is None else data
    val_spec = recipe.data["val"]
    if train_spec is None:
        train_spec = {"layout": "synth", "split": "train"}
    elif isinstance(train_spec, str | Path):
        root = Path(train_spec).expanduser()
        if not root.exists():
            raise DataError(
                f"training data {root} does not exist; pass a data set folder, or no data for the embedded set"
            )
        if (root / "synth.json").is_file():
            train_spec = {"root": root, "split": "train"}
            val_spec = val_spec if val_spec is not None else {"root": root, "split": "val"}
    if isinstance(train_spec, Mapping) and "degradation" not in train_spec and "root" in train_spec:
        train_spec = {**train_spec, "degradation": recipe.data["degradation"]}
    return train_spec, test_spec(recipe, val_spec)


class RunSampler(Sampler[int]):
    """The sample indices of iterations ``start .. stop - 1`` for one rank, in order: iteration ``i`` of rank
    ``r`` of ``W`` takes samples ``(i·W + r)·B + j`` for ``j < B``. Resuming at ``start`` continues the
    exact sequence; a DDP run of ``W`` ranks with batch ``B`` sees the samples of one process with ``W·B``."""

    def __init__(self, start: int, stop: int, batch_size: int, rank: int = 0, world_size: int = 1):
        self.start, self.stop, self.batch_size = start, stop, batch_size
        self.rank, self.world_size = rank, world_size

    def __len__(self) -> int:
        return max(self.stop - self.start, 0) * self.batch_size

    def __iter__(self) -> Iterator[int]:
        for i in range(self.start, self.stop):
            first = (i * self.world_size + self.rank) * self.batch_size
            yield from range(first, first + self.batch_size)


def _to_device(batch: Mapping[str, Any], device: torch.device) -> dict[str, Any]:
    return {k: v.to(device, non_blocking=True) if isinstance(v, Tensor) else v for k, v in batch.items()}


# --------------------------------------------------------------------------------------------------------
# Objectives
# --------------------------------------------------------------------------------------------------------


class Objective:
    """What is trained and how it is scored: ``build_model``, ``loss`` of a batch, ``validate``.

    ``validate`` returns the metrics of the current weights; ``baseline`` those of the trivial predictor
    (bicubic upsampling, zero flow). ``primary`` is the metric that picks ``best.pth``."""

    primary: str = ""
    higher_is_better: bool = True
    with_flow: bool = False
    validate_first: bool = False  # also validate the initial weights (cheap for flow: "EPE before")

    def __init__(self, recipe: Recipe, device: torch.device):
        self.recipe, self.device = recipe, device
        self.val_source: ClipSet | None = None

    def build_model(self) -> nn.Module:
        raise NotImplementedError  # pragma: no cover - interface

    def loss(self, net: nn.Module, batch: Mapping[str, Any]) -> Tensor:
        raise NotImplementedError  # pragma: no cover - interface

    def validate(self, model: nn.Module) -> dict[str, float]:
        raise NotImplementedError  # pragma: no cover - interface

    def baseline(self) -> dict[str, float]:
        raise NotImplementedError  # pragma: no cover - interface

    def better(self, value: float, best: float | None) -> bool:
        return best is None or (value > best if self.higher_is_better else value < best)


class SuperResolution(Objective):
    """Train the whole network: ``net(lq)`` against ``gt`` with ``train.loss``; validate PSNR/SSIM with
    :func:`vsr.evaluate.measure` (exactly what ``vsr test`` reports) under the recipe's ``data.val_*``."""

    primary = "psnr"

    def __init__(self, recipe: Recipe, device: torch.device):
        super().__init__(recipe, device)
        self.pixel_loss = build_loss(recipe.train["loss"], recipe.train["charbonnier_eps"])
        self.protocol = Protocol.from_recipe(recipe)
        self._clips: TestClips | None = None

    def build_model(self) -> nn.Module:
        return assemble(self.recipe.model)

    def loss(self, net: nn.Module, batch: Mapping[str, Any]) -> Tensor:
        return self.pixel_loss(net(batch["lq"]), batch["gt"])

    @property
    def clips(self) -> TestClips:
        """The validation clips, read once (frames stay cached between validations)."""
        if self._clips is None:
            self._clips = self.protocol.test_clips(self.val_source)
        return self._clips

    def validate(self, model: nn.Module) -> dict[str, float]:
        result = measure(model, self.clips, self.protocol, self.device, bicubic=False)
        return {"psnr": result.mean("psnr"), "ssim": result.mean("ssim")}

    def baseline(self) -> dict[str, float]:
        result = measure(Bicubic(self.clips.source.scale), self.clips, self.protocol, "cpu", bicubic=False)
        return {"psnr": result.mean("psnr"), "ssim": result.mean("ssim")}


class FlowPretraining(nn.Module):
    """The recipe's flow estimator alone, under the attribute ``flow``: its checkpoint keys (``flow.*``)
    load into the full model. ``forward(lrs (n, t, 3, h, w))`` returns the flows between consecutive
    frames in both directions, ``next`` (frame k -> k+1) and ``prev`` (k+1 -> k), each ``(n, t-1, 2, h, w)``."""

    def __init__(self, flow: nn.Module):
        super().__init__()
        self.flow = flow

    def forward(self, lrs: Tensor) -> tuple[Tensor, Tensor]:
        n, t = lrs.shape[:2]
        current, following = lrs[:, :-1].flatten(0, 1), lrs[:, 1:].flatten(0, 1)
        both = self.flow(torch.cat([current, following]), torch.cat([following, current]))
        flow_next, flow_prev = both.unflatten(0, (2, n, t - 1))
        return flow_next, flow_prev


class FlowObjective(Objective):
    """Pretrain ``model.flow`` on the data set's true flows (embedded set): end-point error between the
    estimated and true LR-resolution flows, both directions of every consecutive frame pair. Validation is
    the EPE on the whole validation clips; the baseline is the EPE of predicting zero flow."""

    primary = "epe"
    higher_is_better = False
    with_flow = True
    validate_first = True

    def __init__(self, recipe: Recipe, device: torch.device):
        super().__init__(recipe, device)
        self._clips: TestClips | None = None

    def build_model(self) -> nn.Module:
        entry = dict(self.recipe.model["flow"])
        return FlowPretraining(build_component("flow", entry.pop("name"), entry))

    def loss(self, net: nn.Module, batch: Mapping[str, Any]) -> Tensor:
        flow_next, flow_prev = net(batch["lq"])
        return endpoint_error(torch.cat([flow_next, flow_prev]), torch.cat([batch["flow_next"], batch["flow_prev"]]))

    def _pairs(self) -> Iterator[tuple[str, Tensor, Tensor]]:
        """(clip, LR frames (t, 3, h, w), true flows next+prev (2, t-1, 2, h, w)) of each validation clip."""
        if self._clips is None:
            self._clips = TestClips(self.val_source, max_frames=self.recipe.data["val_max_frames"], cache_frames=None)
        clips = self._clips
        for index, clip in enumerate(self.val_source.clips):
            sample = clips[index]
            t = sample["lq"].shape[0]
            (gh, gw), _ = clips.reader.sizes[index]
            flows = []
            for direction in (0, 1):
                paths = [clip.flow_paths(i)[direction] for i in range(t - 1)]
                flows.append(clips.reader.flows(paths, (0, gh, 0, gw)))
            yield clip.name, sample["lq"], torch.stack(flows)

    @torch.no_grad()
    def validate(self, model: nn.Module) -> dict[str, float]:
        model.eval()
        per_clip = []
        for _, lq, true in self._pairs():
            flow_next, flow_prev = model(lq[None].to(self.device))
            per_clip.append(endpoint_error(torch.stack([flow_next[0], flow_prev[0]]).float().cpu(), true).item())
        return {"epe": float(np.mean(per_clip))}

    def baseline(self) -> dict[str, float]:
        return {"epe": float(np.mean([endpoint_error(torch.zeros_like(t), t).item() for _, _, t in self._pairs()]))}


OBJECTIVES: dict[str, type[Objective]] = {"sr": SuperResolution, "flow": FlowObjective}


# --------------------------------------------------------------------------------------------------------
# Run folder: logs, checkpoints, result
# --------------------------------------------------------------------------------------------------------


@dataclass
class RunResult:
    """What :func:`train` returns; ``result`` is the content of ``result.json``."""

    out_dir: Path
    iterations: int
    metrics: dict[str, float]
    baseline: dict[str, float]
    checkpoint: Path
    best_checkpoint: Path | None
    time_s: float
    result: dict[str, Any] = field(default_factory=dict, repr=False)

    def __str__(self) -> str:
        scores = ", ".join(f"{k} {v:.4f}" for k, v in self.metrics.items())
        base = ", ".join(f"{k} {v:.4f}" for k, v in self.baseline.items())
        return (
            f"{self.iterations} iterations in {self.time_s / 60:.1f} min: {scores} (baseline {base}); "
            f"weights {self.checkpoint}"
        )


class RunLog:
    """``log.jsonl`` (every log step and validation) and ``metrics.csv`` (validations) of a run folder."""

    def __init__(self, out_dir: Path, enabled: bool):
        self.jsonl, self.csv, self.enabled = out_dir / "log.jsonl", out_dir / "metrics.csv", enabled

    def truncate(self, iteration: int) -> None:
        """Drop entries after ``iteration`` (written after the checkpoint a resumed run starts from)."""
        if not self.enabled:
            return
        if self.jsonl.is_file():
            lines = [line for line in self.jsonl.read_text().splitlines() if line.strip()]
            kept = [line for line in lines if json.loads(line).get("iteration", 0) <= iteration]
            self.jsonl.write_text("".join(line + "\n" for line in kept))
        if self.csv.is_file():
            with self.csv.open(newline="") as f:
                rows = [row for row in csv.DictReader(f) if int(row["iteration"]) <= iteration]
            self.csv.unlink()
            for row in rows:
                self._append_csv(row)

    def write(self, entry: Mapping[str, Any]) -> None:
        if self.enabled:
            with self.jsonl.open("a") as f:
                f.write(json.dumps(entry) + "\n")

    def validation(self, entry: Mapping[str, Any]) -> None:
        self.write({"event": "val", **entry})
        if self.enabled:
            self._append_csv(entry)

    def _append_csv(self, row: Mapping[str, Any]) -> None:
        new = not self.csv.is_file()
        with self.csv.open("a", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(row))
            if new:
                writer.writeheader()
            writer.writerow(row)


def resolve_init(init: str | Path) -> str | Path:
    """``train.init``: a file path, the stem of a weights file shipped in ``vsr/weights/``, or a zoo name."""
    path = Path(init).expanduser()
    if path.is_file():
        return path
    for candidate in (WEIGHTS_DIR / str(init), WEIGHTS_DIR / f"{init}.safetensors"):
        if candidate.is_file():
            return candidate
    return init


def _finite(model: nn.Module) -> bool:
    return all(bool(torch.isfinite(p).all()) for p in model.parameters())


def _parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# --------------------------------------------------------------------------------------------------------
# The run
# --------------------------------------------------------------------------------------------------------


class Trainer:
    """One training run (see the module docstring); :func:`train` is the public entry point."""

    def __init__(self, recipe: Recipe, out_dir: Path, data: Any, resume: bool, device: Any, progress: bool):
        self.recipe, self.cfg = recipe, recipe.train
        if self.cfg["objective"] not in OBJECTIVES:
            raise RecipeError("train.objective", self.cfg["objective"], "unknown objective", sorted(OBJECTIVES))
        for key in ("iterations", "log_every", "val_every", "checkpoint_every"):
            if self.cfg[key] < 0:
                raise RecipeError(f"train.{key}", self.cfg[key], "must not be negative")
        if self.recipe.data["batch_size"] < 1:
            raise RecipeError("data.batch_size", self.recipe.data["batch_size"], "must be at least 1")
        self.out_dir, self.progress = Path(out_dir), progress
        self.checkpoints = self.out_dir / "checkpoints"
        self.latest, self.best_path = self.checkpoints / "latest.pth", self.checkpoints / "best.pth"
        if resume and not self.latest.is_file():
            raise VSRError(f"nothing to resume: {self.latest} does not exist; start the run without resume")
        if not resume and self.latest.is_file():
            raise VSRError(
                f"{self.out_dir} already holds a run ({self.latest}); resume it (--resume) or choose another out dir"
            )
        self.resume = resume

        probe = resolve_device(device, int(os.environ.get("LOCAL_RANK", "0")))
        self.procs = Processes.start(probe)
        self.device = probe
        self.log = RunLog(self.out_dir, self.procs.is_main)

        seed_everything(self.cfg["seed"])
        self.objective = OBJECTIVES[self.cfg["objective"]](recipe, self.device)
        self.model = self.objective.build_model()
        self.has_pretrained = any(is_pretrained(n) for n, _ in self.model.named_parameters())
        self.init_loaded = False
        if self.cfg["init"] and not resume:
            source = resolve_init(self.cfg["init"])
            load_checkpoint(self.model, source, strict=False, prefixes=self.cfg["init_prefixes"])
            self.init_loaded = True
            log.info("initialised from %s (prefixes %s)", source, self.cfg["init_prefixes"] or "all")
        self.autocast = autocast_dtype(self.cfg["amp"], self.device)
        channels_last = _switch(self.cfg["channels_last"], "train.channels_last")
        self.channels_last = self.device.type == "cuda" if channels_last is None else channels_last
        self.model.to(self.device, memory_format=torch.channels_last if self.channels_last else torch.preserve_format)
        self.optimizer = build_optimizer(self.model, self.cfg)
        self.scheduler = build_scheduler(self.optimizer, self.cfg)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.autocast == torch.float16)
        self.iteration, self.elapsed, self.step_time, self.steps_timed = 0, 0.0, 0.0, 0
        self.step_cpu_time = 0.0  # CPU seconds of this process in steps: comparable on a loaded machine
        self.best: dict[str, Any] | None = None
        self.baseline: dict[str, float] | None = None
        self.last_val: dict[str, Any] | None = None
        self.initial: dict[str, Any] | None = None  # validation of the initial weights (validate_first)
        self.frozen: bool | None = None
        self.net: nn.Module = self.model

        train_spec, val_spec = data_specs(recipe, data)
        self.train_source = open_dataset(train_spec)
        self.objective.val_source = self.val_source = open_dataset(val_spec)
        for source in (self.train_source, self.val_source):
            if source.scale != recipe.model["scale"]:
                raise DataError(
                    f"data set {source.name} is ×{source.scale} but model.scale is {recipe.model['scale']}; "
                    "set model.scale to the data set's scale (or choose data with the model's scale)"
                )
        if resume:
            self._restore()

    # -- state -------------------------------------------------------------------------------------------
    def _state(self) -> dict[str, Any]:
        d = self.recipe.data
        return {
            "objective": self.cfg["objective"],
            "iteration": self.iteration,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "grad_scaler": self.scaler.state_dict(),
            "rng": rng_state(),
            "sampler": {"iteration": self.iteration, "batch_size": d["batch_size"],
                        "world_size": self.procs.world_size, "seed": self.cfg["seed"]},
            "elapsed_s": self.elapsed,
            "step_time_s": self.step_time,
            "steps_timed": self.steps_timed,
            "step_cpu_time_s": self.step_cpu_time,
            "best": self.best,
            "baseline": self.baseline,
            "last_val": self.last_val,
            "initial": self.initial,
        }  # fmt: skip

    def _restore(self) -> None:
        state = read_checkpoint(self.latest)
        if state.get("objective", "sr") != self.cfg["objective"]:
            raise VSRError(
                f"{self.latest} was trained with train.objective={state.get('objective')!r}, "
                f"not {self.cfg['objective']!r}; resume with the recipe of that run ({self.out_dir / 'recipe.yaml'})"
            )
        load_checkpoint(self.model, self.latest, strict=True)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["grad_scaler"])
        set_rng_state(state["rng"])
        self.iteration, self.elapsed = int(state["iteration"]), float(state["elapsed_s"])
        self.step_time, self.steps_timed = float(state["step_time_s"]), int(state["steps_timed"])
        self.step_cpu_time = float(state.get("step_cpu_time_s", 0.0))
        self.best, self.baseline, self.last_val = state["best"], state["baseline"], state["last_val"]
        self.initial = state.get("initial")
        sampler = state["sampler"]
        now = (self.recipe.data["batch_size"], self.procs.world_size)
        if (sampler["batch_size"], sampler["world_size"]) != now:
            log.warning(
                "resuming with batch %d × %d processes, the run had %d × %d: the samples differ from an "
                "uninterrupted run", *now, sampler["batch_size"], sampler["world_size"]
            )  # fmt: skip
        log.info("resumed %s at iteration %d", self.latest, self.iteration)

    def _save(self) -> None:
        """Write ``latest.pth`` unless the weights are no longer finite (then the last good one stays). Every
        rank checks its (identical) weights, so that all stop together."""
        if not _finite(self.model):
            raise self._diverged("the weights became non-finite", self.iteration)
        if self.procs.is_main:
            save_checkpoint(self.model, self.latest, self.recipe.to_dict(), **self._state())

    def _diverged(self, what: str, iteration: int) -> VSRError:
        kept = (
            f"the last good checkpoint {self.latest} was kept"
            if self.latest.is_file()
            else "no checkpoint had been written yet"
        )
        return VSRError(
            f"training diverged: {what} at iteration {iteration}; {kept}. Lower train.lr, set "
            "train.grad_clip (e.g. 1.0), or check the training data for broken frames"
        )

    # -- model wrapping ----------------------------------------------------------------------------------
    def _set_frozen(self, frozen: bool) -> None:
        """Freeze/thaw the pretrained modules and wrap the model for this phase (DDP sees only the
        trainable parameters, torch.compile the current requires_grad pattern)."""
        if frozen == self.frozen:
            return
        count = set_pretrained_frozen(self.model, frozen)
        if count and self.procs.is_main and (frozen or self.frozen is not None):
            what = f"froze them until iteration {self.cfg['fix_iterations']}" if frozen else "thawed them"
            log.info("%d pretrained parameter tensors (%s): %s", count, ", ".join(PRETRAINED_PREFIXES), what)
            if frozen and not self.init_loaded and not self.resume:
                log.warning(
                    "the pretrained modules are frozen for train.fix_iterations=%d but train.init loaded no "
                    "weights: they stay at their random initialisation until then",
                    self.cfg["fix_iterations"],
                )
        self.frozen = frozen
        net: nn.Module = self.model
        if self.procs.distributed:
            from torch.nn.parallel import DistributedDataParallel

            ids = [self.device.index] if self.device.type == "cuda" else None
            net = DistributedDataParallel(net, device_ids=ids)
        if self.cfg["compile"]:
            net = torch.compile(net)
        self.net = net

    # -- loop --------------------------------------------------------------------------------------------
    def _loader(self) -> DataLoader:
        d = self.recipe.data
        total = self.cfg["iterations"]
        dataset = TrainingClips(
            self.train_source,
            num_frames=d["num_frames"],
            lr_patch=d["lr_patch"],
            hflip=d["hflip"],
            vflip=d["vflip"],
            transpose=d["transpose"],
            reverse=d["reverse"],
            mirror=d["mirror"],
            with_flow=self.objective.with_flow,
            samples_per_epoch=max(total, 1) * d["batch_size"] * self.procs.world_size,
            seed=self.cfg["seed"],
        )
        sampler = RunSampler(self.iteration, total, d["batch_size"], self.procs.rank, self.procs.world_size)
        return DataLoader(
            dataset,
            batch_size=d["batch_size"],
            sampler=sampler,
            num_workers=d["workers"],
            pin_memory=self.device.type == "cuda",
            drop_last=False,
        )

    def _step(self, batch: Mapping[str, Any]) -> float:
        batch = _to_device(batch, self.device)
        dtype = self.autocast or torch.bfloat16
        with torch.autocast(self.device.type, dtype=dtype, enabled=self.autocast is not None):
            loss = self.objective.loss(self.net, batch)
        value = self.procs.mean(loss.detach().float()).item()
        if not math.isfinite(value):
            raise self._diverged(f"the loss is {value}", self.iteration + 1)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if self.cfg["grad_clip"]:
            self.scaler.unscale_(self.optimizer)
            trainable = [p for p in self.model.parameters() if p.requires_grad]
            torch.nn.utils.clip_grad_norm_(trainable, self.cfg["grad_clip"])
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        return value

    def _validate(self) -> None:
        if not self.procs.is_main:
            return
        if self.baseline is None:
            self.baseline = self.objective.baseline()
        metrics = self.objective.validate(self.model)
        self.model.train()
        self.last_val = {"iteration": self.iteration, **metrics}
        entry = {"iteration": self.iteration, "time": round(self.elapsed, 3), **metrics}
        entry |= {f"baseline_{k}": v for k, v in self.baseline.items()}
        self.log.validation(entry)
        primary = metrics[self.objective.primary]
        if self.objective.better(primary, None if self.best is None else self.best["value"]):
            self.best = {"iteration": self.iteration, "metric": self.objective.primary, "value": primary}
            save_checkpoint(
                self.model, self.best_path, self.recipe.to_dict(), iteration=self.iteration, metrics=metrics
            )
        shown = ", ".join(f"{k} {v:.4f}" for k, v in metrics.items())
        base = ", ".join(f"{k} {v:.4f}" for k, v in self.baseline.items())
        log.info("validation at iteration %d: %s (baseline %s)", self.iteration, shown, base)

    def run(self) -> RunResult:
        try:
            return self._run()
        finally:
            self.procs.close()

    def _run(self) -> RunResult:
        cfg, total = self.cfg, self.cfg["iterations"]
        if self.procs.is_main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            (self.out_dir / "recipe.yaml").write_text(self.recipe.to_yaml())
            self.log.truncate(self.iteration)
            log.info(
                "training %s (%s objective, %d parameters) on %s: %s, %d process(es), autocast %s, channels_last %s, "
                "compile %s; data %s, validation %s",
                self.recipe.name, cfg["objective"], _parameters(self.model), self.device, self.train_source.name,
                self.procs.world_size, self.autocast, self.channels_last, cfg["compile"], self.train_source.name,
                self.val_source.name,
            )  # fmt: skip
        if self.iteration == 0 and self.objective.validate_first:
            self._validate()
            self.initial = dict(self.last_val)
        self.model.train()
        start_time = time.perf_counter() - self.elapsed
        window_loss, window_steps, window_time = 0.0, 0, 0.0
        enabled = self.progress and self.procs.is_main
        with progress_bar(total, f"training {self.recipe.name}", enabled=enabled, completed=self.iteration) as bar:
            batches = iter(self._loader())
            while self.iteration < total:
                self._set_frozen(self.has_pretrained and self.iteration < cfg["fix_iterations"])
                lr = self.optimizer.param_groups[0]["lr"]
                tic, cpu_tic = time.perf_counter(), time.process_time()
                loss = self._step(next(batches))
                seconds = time.perf_counter() - tic  # data + step, without validation and checkpoints
                self.step_cpu_time += time.process_time() - cpu_tic
                self.step_time, self.steps_timed = self.step_time + seconds, self.steps_timed + 1
                self.iteration += 1
                self.elapsed = time.perf_counter() - start_time
                window_loss, window_steps, window_time = window_loss + loss, window_steps + 1, window_time + seconds
                speed = window_steps / max(window_time, 1e-9)
                bar.advance(status=f"loss {loss:.4g} · {speed:.2f} it/s")
                at = self.iteration
                if cfg["log_every"] and (at % cfg["log_every"] == 0 or at == total):
                    entry = {
                        "event": "train",
                        "iteration": at,
                        "loss": window_loss / window_steps,
                        "lr": lr,
                        "it_per_s": speed,
                        "time": round(self.elapsed, 3),
                        "frozen": bool(self.frozen),
                    }
                    self.log.write(entry)
                    log.info("iteration %d/%d: loss %.5g, lr %.3g, %.2f it/s", at, total, entry["loss"], lr, speed)
                    window_loss, window_steps, window_time = 0.0, 0, 0.0
                if (cfg["val_every"] and at % cfg["val_every"] == 0) or at == total:
                    self._validate()
                if (cfg["checkpoint_every"] and at % cfg["checkpoint_every"] == 0) or at == total:
                    self._save()
        if self.last_val is None or self.last_val["iteration"] != self.iteration:
            self._validate()  # a run resumed at its end, or of zero iterations
        return self._finish()

    def _finish(self) -> RunResult:
        last = self.checkpoints / "last.pth"
        result: dict[str, Any] = {}
        if self.procs.is_main:
            metrics = {k: v for k, v in self.last_val.items() if k != "iteration"}
            save_checkpoint(self.model, last, self.recipe.to_dict(), iteration=self.iteration, metrics=metrics)
            from safetensors.torch import save_file

            state = {k: v.detach().cpu().contiguous() for k, v in self.model.state_dict().items()}
            save_file(state, str(self.out_dir / "model.safetensors"))
            margin = {f"{k}_gain": metrics[k] - self.baseline[k] for k in metrics if k in self.baseline}
            seconds = self.step_time / max(self.steps_timed, 1)
            result = {
                "recipe": self.recipe.name,
                "objective": self.cfg["objective"],
                "iterations": self.iteration,
                "metrics": metrics,
                "baseline": {"name": "bicubic" if self.objective.primary == "psnr" else "zero flow", **self.baseline},
                **margin,
                "best": self.best,
                "initial": self.initial,
                "time_s": round(self.elapsed, 3),
                "seconds_per_iteration": seconds,
                "cpu_seconds_per_iteration": self.step_cpu_time / max(self.steps_timed, 1),
                "parameters": _parameters(self.model),
                "component_parameters": getattr(self.model, "component_parameters", dict)(),
                "device": str(self.device),
                "world_size": self.procs.world_size,
                "autocast": None if self.autocast is None else str(self.autocast).removeprefix("torch."),
                "channels_last": self.channels_last,
                "compile": self.cfg["compile"],
                "torch_threads": torch.get_num_threads(),
                "data": {"train": self.train_source.name, "val": self.val_source.name},
                "checkpoint": str(last),
                "best_checkpoint": str(self.best_path) if self.best else None,
            }
            write_json(result, self.out_dir / "result.json")
            log.info("run finished: %s", json.dumps({k: result[k] for k in ("iterations", "metrics", "baseline")}))
        result = self.procs.share(result)
        return RunResult(
            out_dir=self.out_dir,
            iterations=result["iterations"],
            metrics=result["metrics"],
            baseline={k: v for k, v in result["baseline"].items() if k != "name"},
            checkpoint=Path(result["checkpoint"]),
            best_checkpoint=Path(result["best_checkpoint"]) if result["best_checkpoint"] else None,
            time_s=result["time_s"],
            result=result,
        )


def train(
    recipe: str | Path | dict | Recipe,
    out_dir: str | Path,
    *,
    data: str | Path | Mapping[str, Any] | None = None,
    resume: bool = False,
    device: str | torch.device | None = None,
    progress: bool = True,
) -> RunResult:
    """Train ``recipe`` (a path, shipped name, dict or :class:`Recipe`, overrides already applied) into
    ``out_dir``. ``data`` replaces ``data.train`` (a folder or a spec mapping; default: the embedded set);
    ``resume`` continues the run in ``out_dir`` from ``checkpoints/latest.pth``; ``device`` defaults to CUDA
    when available. Under ``torchrun`` every process calls this and each trains on its shard."""
    return Trainer(load_recipe(recipe), Path(out_dir), data, resume, device, progress).run()


__all__ = [
    "OBJECTIVES",
    "CosineRestartLR",
    "FlowPretraining",
    "RunResult",
    "RunSampler",
    "build_optimizer",
    "build_scheduler",
    "cosine_restart_lr",
    "set_pretrained_frozen",
    "train",
]
