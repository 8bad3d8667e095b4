"""One training run of a recipe, from its ``train`` keys (BasicVSR §4; MMagic ``basicvsr_2xb4_reds4``).

:class:`Trainer` sets the run up in small steps (checks, model, optimiser, data, resume), then trains in a
short loop: step, log, validate, checkpoint. Outputs in ``out_dir`` (named in :mod:`vsr.training.files`):
``recipe.yaml`` (resolved), ``log.jsonl`` and ``metrics.csv`` (:class:`vsr.training.runlog.RunLog`),
``checkpoints/latest.pth`` (the whole :class:`vsr.training.state.RunState`, every ``checkpoint_every``
steps), ``checkpoints/best.pth`` (best validation), ``checkpoints/last.pth`` and ``model.safetensors`` (final
weights), ``result.json`` (final metrics vs. the bicubic / zero-flow baseline, time, parameters: the content
of :class:`RunResult`), TensorBoard's event files (:mod:`vsr.training.tensorboard`, unless
``train.tensorboard`` is off), and ``test/<name>/`` for each of ``data.test``'s sets (the final weights'
metrics and temporal gain there, :func:`vsr.probe.score_set`). Every file but the logs is written
atomically. A non-finite loss stops the run with a :class:`VSRError` and leaves the last good checkpoint in
place.

With ``train.ema`` the run keeps a moving average of its weights (:mod:`vsr.training.ema`), started from
``train.init``'s average where its file holds one (:mod:`vsr.training.pretrained`) and updated after every
step: validation scores it, ``best.pth`` and ``last.pth`` hold it as ``params_ema`` beside the trained
weights, and ``model.safetensors`` holds it (the weights the run's metrics describe).

Progress: a rich bar on a terminal; when stdout is not a terminal, one plain line per log step (iteration,
loss, learning rate, it/s, ETA; :mod:`vsr.progress`).

The run folder is owned: the run holds its lock (:mod:`vsr.locks`) from before its checks until it ends,
so a second writer is refused naming the holder; a new run never starts over another run's files
(a checkpoint, or a recipe file other than its own); and a resumed run continues the recipe it was started
with, or applies and records explicitly allowed changes (:mod:`vsr.training.resume`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file
from torch import Tensor, nn
from torch.utils.data import DataLoader

from vsr.atomic import listed, refuse_link, write_json, write_text, write_with
from vsr.checkpoints import read_checkpoint, save_checkpoint
from vsr.data.datasets import TrainingClips
from vsr.data.layouts import open_dataset
from vsr.data.sampling import RunSampler
from vsr.data.specs import data_specs, data_test_specs
from vsr.errors import DataError, RecipeError, VSRError
from vsr.evaluate import Protocol
from vsr.locks import FolderLock
from vsr.model import PRETRAINED_PREFIXES
from vsr.probe import check_score_folder, score_set
from vsr.progress import ProgressBar, progress_bar
from vsr.recipe import Recipe, load_recipe
from vsr.registry import build_entry, entry
from vsr.training.distributed import Processes, resolve_device
from vsr.training.ema import WeightAverage
from vsr.training.files import (
    BEST_CHECKPOINT,
    CHECKPOINT_DIR,
    LAST_CHECKPOINT,
    LATEST_CHECKPOINT,
    LOG_FILE,
    METRICS_CSV,
    RECIPE_FILE,
    RESULT_FILE,
    TEST_DIR,
    WEIGHTS_FILE,
    name_problem,
    trained_files,
)
from vsr.training.precision import autocast_dtype, use_channels_last
from vsr.training.pretrained import has_pretrained, load_init, set_pretrained_frozen
from vsr.training.resume import apply_changes, check_changes, check_run_folder, describe
from vsr.training.runlog import RECIPE_CHANGED, RunLog
from vsr.training.state import RunState, seed_everything
from vsr.training.steps import MAIN, StepContext
from vsr.training.tensorboard import TensorBoardLog

log = logging.getLogger(__name__)

#: The files a run writes in its folder, none of which may be a link.
RUN_FILES = (RECIPE_FILE, LOG_FILE, METRICS_CSV, LATEST_CHECKPOINT, BEST_CHECKPOINT, LAST_CHECKPOINT, WEIGHTS_FILE,
             RESULT_FILE)  # fmt: skip

RUNS_DIR = Path("runs")  # a run's folder when none is given: runs/<recipe name>


@dataclass
class RunResult:
    """What :func:`vsr.training.train` returns; ``result`` is the content of ``result.json``."""

    out_dir: Path
    iterations: int
    metrics: dict[str, float]
    baseline: dict[str, float]
    checkpoint: Path
    best_checkpoint: Path | None
    time_s: float
    result: dict[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def from_result(cls, out_dir: Path, result: Mapping[str, Any]) -> RunResult:
        """The run result of ``result.json``'s content ``result``."""
        return cls(
            out_dir=out_dir,
            iterations=result["iterations"],
            metrics=result["metrics"],
            baseline={k: v for k, v in result["baseline"].items() if k != "name"},
            checkpoint=Path(result["checkpoint"]),
            best_checkpoint=Path(result["best_checkpoint"]) if result["best_checkpoint"] else None,
            time_s=result["time_s"],
            result=dict(result),
        )

    def __str__(self) -> str:
        scores = ", ".join(f"{k} {v:.4f}" for k, v in self.metrics.items())
        base = ", ".join(f"{k} {v:.4f}" for k, v in self.baseline.items())
        tests = "".join(
            f"; on {name} ({r['clips']} clips): {_scored(r)}" for name, r in self.result.get("test", {}).items()
        )
        return (
            f"{self.iterations} iterations in {self.time_s / 60:.1f} min: {scores} (baseline {base}); "
            f"weights {self.checkpoint}{tests}"
        )


def _scored(record: Mapping[str, Any]) -> str:
    """One test set's record (:func:`vsr.probe.score_set`) in words: each metric beside the bicubic baseline's,
    and the temporal gain where the set has ground truth."""
    bicubic = record.get("bicubic") or {}
    words = [
        f"{k} {v:.4f}" + (f" (bicubic {bicubic[k]:.4f})" if k in bicubic else "") for k, v in record["metrics"].items()
    ]
    if record.get("temporal_gain") is not None:
        words.append(f"temporal gain {record['temporal_gain']:.3f} dB")
    return ", ".join(words)


@dataclass
class _LogWindow:
    """The steps since the last ``log_every`` entry: the mean of each of their scalars, and their speed."""

    sums: dict[str, float] = field(default_factory=dict)
    steps: int = 0
    seconds: float = 0.0

    def add(self, values: Mapping[str, float], seconds: float) -> None:
        for key, value in values.items():
            self.sums[key] = self.sums.get(key, 0.0) + value
        self.steps, self.seconds = self.steps + 1, self.seconds + seconds

    @property
    def means(self) -> dict[str, float]:
        return {key: total / self.steps for key, total in self.sums.items()}

    @property
    def speed(self) -> float:
        return self.steps / max(self.seconds, 1e-9)


class Trainer:
    """One training run (see the module docstring); :func:`train` is the public entry point.

    Construction takes the run folder's lock (rank 0), then checks and sets up everything (no process group
    exists yet, so a failing check leaves nothing behind: the lock is released and a run folder it created
    is removed); :meth:`run` joins the process group, trains, finishes and releases the lock."""

    def __init__(
        self,
        recipe: Recipe,
        out_dir: Path,
        data: Any,
        resume: bool,
        device: Any,
        progress: bool,
        allow_recipe_changes: bool = False,
    ):
        self.recipe, self.cfg = recipe, recipe.train
        self.out_dir, self.resume, self.progress = Path(out_dir), resume, progress
        self.bar = ProgressBar()  # the training loop's, while it runs
        self.latest, self.best_path = self.out_dir / LATEST_CHECKPOINT, self.out_dir / BEST_CHECKPOINT
        self._check_recipe()
        self.procs = Processes.from_env()
        self._lock_run_folder()
        try:
            self._refuse_trained_folder()
            check_run_folder(self.out_dir, self.recipe, resume)
            checkpoint = read_checkpoint(self.latest) if resume else None
            self.changes = check_changes(self.out_dir, self.recipe, checkpoint, allow_recipe_changes) if resume else {}
            self.device = resolve_device(device, self.procs.local_rank)
            self.log = RunLog(self.out_dir, self.procs.is_main)  # TensorBoard joins it when the run starts
            self._setup_model()
            self._setup_optimizer()
            self._setup_data(data)
            if resume:
                self.state.load(self.latest, checkpoint)
                apply_changes(self.state, self.changes, self.cfg)
                if self.changes and self.procs.is_main:
                    log.warning("resuming %s with recipe changes: %s", self.out_dir, describe(self.changes))
                log.info("resumed %s at iteration %d", self.latest, self.state.iteration)
        except BaseException:
            self._unlock(remove_if_created=True)
            raise

    # -- set-up ------------------------------------------------------------------------------------------
    def _check_recipe(self) -> None:
        for key in ("iterations", "log_every", "val_every", "checkpoint_every"):
            if self.cfg[key] < 0:
                raise RecipeError(f"train.{key}", self.cfg[key], "must not be negative")
        if self.recipe.data["batch_size"] < 1:
            raise RecipeError("data.batch_size", self.recipe.data["batch_size"], "must be at least 1")

    def _lock_run_folder(self) -> None:
        """Rank 0 (the one that writes) takes the run folder's lock, creating the folder if needed."""
        self.lock, self.created_dir = None, not self.out_dir.exists()
        if self.procs.is_main:
            self.lock = FolderLock(self.out_dir, "run folder").acquire()

    def _refuse_trained_folder(self) -> None:
        """A new run never starts in a folder holding a training's checkpoints, weights or result, whichever
        recipe it holds (a finished run whose ``latest.pth`` is gone would be trained again over them); and no
        run writes its files through a link (the logs are appended to, a link would take them elsewhere)."""
        for name in (CHECKPOINT_DIR, *RUN_FILES):
            refuse_link(self.out_dir / name, "the run's file")
        found = trained_files(self.out_dir) if not self.resume else []
        if found:
            shown = listed(found, 4)
            raise VSRError(
                f"{self.out_dir} already holds a run ({shown}), which a new run would replace; resume it "
                f"(--resume, needs {LATEST_CHECKPOINT}), or choose another out dir"
            )

    def _unlock(self, remove_if_created: bool = False) -> None:
        if self.lock is not None:
            self.lock.release()
            self.lock = None
        if remove_if_created and self.created_dir and self.procs.is_main:
            with contextlib.suppress(OSError):  # only if empty: a failed set-up leaves no new folder behind
                self.out_dir.rmdir()

    def _setup_model(self) -> None:
        """The objective's model, seeded by ``train.seed``, initialised from ``train.init``, on the device in
        the run's precision and memory format."""
        seed_everything(self.cfg["seed"])
        self.objective = build_entry("objective", "train.objective", self.cfg["objective"], recipe=self.recipe,
                                     device=self.device)  # fmt: skip
        self.model = self.objective.build_model()
        self.has_pretrained = has_pretrained(self.model)
        # train.init is read only when a run starts; its average waits here for the moving average's set-up
        self.init_average = None if self.resume else load_init(self.model, self.cfg)
        self.init_loaded = self.init_average is not None
        self.autocast = autocast_dtype(self.cfg["amp"], self.device)
        self.channels_last = use_channels_last(self.cfg["channels_last"], self.device)
        self.model.to(self.device, memory_format=torch.channels_last if self.channels_last else torch.preserve_format)
        self.frozen: bool | None = None
        self.net: nn.Module = self.model  # what the loop calls: the model, in DDP and compiled as asked
        self.nets: dict[str, nn.Module] | None = None  # the objective's other trained modules, likewise

    def _setup_optimizer(self) -> None:
        """The objective's optimisers, schedules and other trained modules, a grad scaler per optimiser, and the
        weights' moving average (``train.ema``; from ``train.init``'s average where it has one), held with the
        rest of the run's state."""
        parts = self.objective.training_parts(self.model)
        for module in parts.modules.values():
            module.to(self.device, memory_format=torch.channels_last if self.channels_last else torch.preserve_format)
        ema = WeightAverage(self.model, self.cfg["ema"]) if self.cfg["ema"] is not None else None
        if ema is not None and self.init_average is not None:
            self.init_average.load_into(ema.module)  # train.init's average, where its file holds one
        self.init_average = None  # its weights are not needed after this
        fp16 = self.autocast == torch.float16
        self.state = RunState(
            model=self.model,
            optimizers=parts.optimizers,
            schedulers=parts.schedulers,
            grad_scalers={name: torch.amp.GradScaler(self.device.type, enabled=fp16) for name in parts.optimizers},
            modules=parts.modules,
            objective=entry("train.objective", self.cfg["objective"])["name"],
            batch_size=self.recipe.data["batch_size"],
            world_size=self.procs.world_size,
            seed=self.cfg["seed"],
            ema=ema,
        )

    def _setup_data(self, data: Any) -> None:
        """The training and validation sets (:func:`vsr.data.specs.data_specs`), at the model's scale."""
        train_spec, val_spec = data_specs(self.recipe, data)
        self.train_source = open_dataset(train_spec, self.recipe.data["degradation"])
        self.objective.val_source = self.val_source = open_dataset(val_spec)
        self.test_sources = {  # opened now, and their folders checked, so that a wrong test set fails before training
            name: self.val_source if spec is None else open_dataset(spec)
            for name, spec in data_test_specs(self.recipe).items()
        }
        for name in self.test_sources:
            check_score_folder(self.out_dir / TEST_DIR / name)
        scale = self.recipe.model["scale"]
        for source in self.test_sources.values():
            if not source.has_gt:  # scored by no-reference metrics alone: the recipe must have one
                Protocol.from_recipe(self.recipe).without_gt(source.name)
        for source in (self.train_source, self.val_source, *self.test_sources.values()):
            if source.scale != scale:
                raise DataError(
                    f"data set {source.name} is ×{source.scale} but model.scale is {scale}; "
                    "set model.scale to the data set's scale (or choose data with the model's scale)"
                )

    def _loader(self) -> DataLoader:
        """The training batches of the remaining iterations, for this process."""
        d, total = self.recipe.data, self.cfg["iterations"]
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
        sampler = RunSampler(self.state.iteration, total, d["batch_size"], self.procs.rank, self.procs.world_size)
        return DataLoader(
            dataset,
            batch_size=d["batch_size"],
            sampler=sampler,
            num_workers=d["workers"],
            pin_memory=self.device.type == "cuda",
            drop_last=False,
        )

    def _set_frozen(self, frozen: bool) -> None:
        """Freeze/thaw the pretrained modules and wrap the model for this phase (DDP sees only the
        trainable parameters, so it never needs ``find_unused_parameters``; torch.compile the current
        requires_grad pattern)."""
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
        if self.nets is None:  # the objective's other modules: wrapped once, inside the process group
            self.nets = {name: self._wrap(module) for name, module in self.state.modules.items()}
        self.net = self._wrap(self.model)
        state = self.state
        self.step_context = StepContext(
            self.net, self.nets, state.optimizers, state.schedulers, state.grad_scalers, self.device.type,
            self.autocast, self.cfg["grad_clip"], self._check_loss,
        )  # fmt: skip

    def _wrap(self, module: nn.Module) -> nn.Module:
        """``module`` as the step calls it: in DDP under torchrun, compiled with ``train.compile``."""
        net = self.procs.wrap(module, self.device)
        return torch.compile(net) if self.cfg["compile"] else net

    # -- the run -----------------------------------------------------------------------------------------
    def run(self) -> RunResult:
        try:
            with self.procs.group(self.device):
                self._start()
                self._train()
                return self._finish()
        finally:
            if self.log.board is not None:
                self.log.board.close()
            self._unlock()

    def _start(self) -> None:
        if self.procs.is_main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            write_text(self.recipe.to_yaml(), self.out_dir / RECIPE_FILE)
            self.log.truncate(self.state.iteration)
            if self.cfg["tensorboard"]:
                # what was logged after the checkpoint is dropped, as from log.jsonl (a new run drops everything)
                purge = self.state.iteration + 1 if self.resume else 0
                self.log.board = TensorBoardLog(self.out_dir, purge_step=purge)
            if self.changes:
                changes = {key: {"old": old, "new": new} for key, (old, new) in self.changes.items()}
                self.log.write({"event": RECIPE_CHANGED, "iteration": self.state.iteration, "changes": changes})
            log.info(
                "training %s (%s objective, %d parameters) on %s, %d process(es), autocast %s, channels_last %s, "
                "compile %s; data %s, validation %s",
                self.recipe.name, self.cfg["objective"], _parameters(self.model), self.device,
                self.procs.world_size, self.autocast, self.channels_last, self.cfg["compile"],
                self.train_source.name, self.val_source.name,
            )  # fmt: skip
        if self.state.iteration == 0 and self.objective.validate_first:
            self.state.initial = self._validate()

    def _train(self) -> None:
        state, total = self.state, self.cfg["iterations"]
        self.model.train()
        start_time = time.perf_counter() - state.elapsed_s
        window = _LogWindow()
        enabled = self.progress and self.procs.is_main
        with progress_bar(
            total, f"training {self.recipe.name}", enabled=enabled, completed=state.iteration, line_every=0
        ) as bar:
            self.bar = bar  # plain lines are printed at log steps (_log_window)
            batches = iter(self._loader())
            while state.iteration < total:
                self._set_frozen(self.has_pretrained and state.iteration < self.cfg["fix_iterations"])
                lr = state.lr
                tic, cpu_tic = time.perf_counter(), time.process_time()
                values = self._step(next(batches))
                seconds = time.perf_counter() - tic  # data + step, without validation and checkpoints
                state.step_cpu_time_s += time.process_time() - cpu_tic
                state.step_time_s, state.steps_timed = state.step_time_s + seconds, state.steps_timed + 1
                state.iteration += 1
                state.elapsed_s = time.perf_counter() - start_time
                window.add(values, seconds)
                bar.advance(status=f"loss {values['loss']:.4g} · {window.speed:.2f} it/s")
                if self._log_due():
                    self._log_window(window, lr)
                    window = _LogWindow()
                if self._due("val_every"):
                    self._validate()
                if self._due("checkpoint_every"):
                    self._save()
        if state.last_val is None or state.last_val["iteration"] != state.iteration:
            self._validate()  # a run resumed at its end, or of zero iterations

    def _log_due(self) -> bool:
        every, at = self.cfg["log_every"], self.state.iteration
        return bool(every) and (at % every == 0 or at == self.cfg["iterations"])

    def _due(self, every_key: str) -> bool:
        """Whether ``train.<every_key>`` falls on this iteration; the last iteration always validates and saves."""
        every, at = self.cfg[every_key], self.state.iteration
        return bool(every and at % every == 0) or at == self.cfg["iterations"]

    def _step(self, batch: Mapping[str, Any]) -> dict[str, float]:
        """The objective's training step on ``batch``; returns its scalars (``loss`` first) averaged over the
        processes."""
        state = self.state
        scalars = self.objective.step(_to_device(batch, self.device), self.step_context)
        values = {key: self.procs.mean(value.detach().float()).item() for key, value in scalars.items()}
        if state.ema is not None:
            state.ema.update(self.model)
        return values

    def _check_loss(self, name: str, loss: Tensor) -> None:
        """Stop the run (every rank alike) if the loss of optimiser ``name``, averaged over the processes, is
        not finite; the step's backward has not run."""
        value = self.procs.mean(loss.detach().float()).item()
        if not math.isfinite(value):
            what = f"the loss is {value}" if name == MAIN else f"the loss of the {name} optimiser is {value}"
            raise self._diverged(what, self.state.iteration + 1)

    def _log_window(self, window: _LogWindow, lr: float) -> None:
        at, state = self.state.iteration, self.state
        entry = {
            "event": "train",
            "iteration": at,
            **window.means,
            "lr": lr,
            "it_per_s": window.speed,
            "time": round(state.elapsed_s, 3),
            "frozen": bool(self.frozen),
        }
        self.log.write(entry)
        log.info("iteration %d/%d: loss %.5g, lr %.3g, %.2f it/s", at, self.cfg["iterations"], entry["loss"], lr,
                 window.speed)  # fmt: skip
        self.bar.line(f"loss {entry['loss']:.5g} · lr {lr:.3g}", speed=window.speed)

    def _validate(self) -> dict[str, Any] | None:
        """Validate the current weights (their moving average with ``train.ema``) on rank 0 and return the
        record (the other ranks do not validate: None there); logs it, shows an example in TensorBoard and
        writes ``best.pth`` on a new best."""
        if not self.procs.is_main:
            return None
        state = self.state
        if state.baseline is None:
            state.baseline = self.objective.baseline()
        metrics = self.objective.validate(state.scored_model)
        if self.log.board is not None:
            example = self.objective.example(state.scored_model)
            if example is not None:
                self.log.board.image(f"val/{self.objective.example_name}", example, state.iteration)
        self.model.train()
        state.last_val = {"iteration": state.iteration, **metrics}
        entry = {"iteration": state.iteration, "time": round(state.elapsed_s, 3), **metrics}
        self.log.validation(entry | {f"baseline_{k}": v for k, v in state.baseline.items()})
        primary = metrics[self.objective.primary]
        if self.objective.better(primary, None if state.best is None else state.best["value"]):
            state.best = {"iteration": state.iteration, "metric": self.objective.primary, "value": primary}
            save_checkpoint(
                self.model, self.best_path, self.recipe.to_dict(), iteration=state.iteration, metrics=metrics,
                **state.ema_weights(),
            )  # fmt: skip
        shown = ", ".join(f"{k} {v:.4f}" for k, v in metrics.items())
        base = ", ".join(f"{k} {v:.4f}" for k, v in state.baseline.items())
        log.info("validation at iteration %d: %s (baseline %s)", state.iteration, shown, base)
        return dict(state.last_val)

    def _save(self) -> None:
        """Write ``latest.pth`` unless the weights are no longer finite (then the last good one stays). Every
        rank checks its (identical) weights, so that all stop together."""
        if not _finite(self.model):
            raise self._diverged("the weights became non-finite", self.state.iteration)
        if self.procs.is_main:
            self.state.save(self.latest, self.recipe.to_dict())

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

    # -- the end -----------------------------------------------------------------------------------------
    def _finish(self) -> RunResult:
        """Rank 0 writes the final weights and ``result.json``; every rank returns the same result."""
        result: dict[str, Any] = {}
        if self.procs.is_main:
            last = self.out_dir / LAST_CHECKPOINT
            metrics = {k: v for k, v in self.state.last_val.items() if k != "iteration"}
            save_checkpoint(self.model, last, self.recipe.to_dict(), iteration=self.state.iteration, metrics=metrics,
                            **self.state.ema_weights())  # fmt: skip
            weights = {k: v.detach().cpu().contiguous() for k, v in self.state.scored_model.state_dict().items()}
            write_with(lambda tmp: save_file(weights, str(tmp)), self.out_dir / WEIGHTS_FILE, ".safetensors")
            result = self._result(metrics, last)
            if self.test_sources:
                result["test"] = self._score_tests()
            write_json(result, self.out_dir / RESULT_FILE)
            log.info("run finished: %s", json.dumps({k: result[k] for k in ("iterations", "metrics", "baseline")}))
        return RunResult.from_result(self.out_dir, self.procs.share(result))

    def _score_tests(self) -> dict[str, dict[str, Any]]:
        """Score the final weights (their moving average with ``train.ema``) on each of ``data.test``'s sets,
        into ``test/<name>/``: the metrics and the bicubic baseline's, and the temporal gain."""
        model = self.state.scored_model
        scored = {}
        for name, source in self.test_sources.items():
            log.info("scoring the final weights on test set %s (%s)", name, source.name)
            scored[name] = score_set(model, source, recipe=self.recipe, out_dir=self.out_dir / TEST_DIR / name,
                                     device=self.device)  # fmt: skip
        return scored

    def _result(self, metrics: dict[str, float], last: Path) -> dict[str, Any]:
        """The content of ``result.json``."""
        state, baseline = self.state, self.state.baseline
        # <metric>_gain: the improvement over the baseline, positive when better whatever the metric's direction
        up = self.objective.directions
        margin = {
            f"{k}_gain": (metrics[k] - baseline[k]) * (1 if up.get(k, True) else -1) for k in metrics if k in baseline
        }
        return {
            "recipe": self.recipe.name,
            "objective": self.cfg["objective"],
            "iterations": state.iteration,
            "metrics": metrics,
            "baseline": {"name": self.objective.baseline_name, **baseline},
            **margin,
            "best": state.best,
            "initial": state.initial,
            "time_s": round(state.elapsed_s, 3),
            "seconds_per_iteration": state.step_time_s / max(state.steps_timed, 1),
            "cpu_seconds_per_iteration": state.step_cpu_time_s / max(state.steps_timed, 1),
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
            "best_checkpoint": str(self.best_path) if state.best else None,
        }


def _to_device(batch: Mapping[str, Any], device: torch.device) -> dict[str, Any]:
    return {k: v.to(device, non_blocking=True) if isinstance(v, Tensor) else v for k, v in batch.items()}


def _finite(model: nn.Module) -> bool:
    return all(bool(torch.isfinite(p).all()) for p in model.parameters())


def _parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def default_run_folder(recipe: Recipe) -> Path:
    """``runs/<recipe name>``: where a run goes when no folder is given. The name must name one folder (no
    path separators, not ``..``, not empty), so that a recipe never sends a run outside ``runs/``."""
    problem = name_problem(recipe.name)
    if problem is not None:
        raise RecipeError(
            "name", recipe.name, f"{problem}; it names the default run folder {RUNS_DIR}/<name> (or pass --out)"
        )
    return RUNS_DIR / recipe.name


def train(
    recipe: str | Path | dict | Recipe,
    out_dir: str | Path | None = None,
    *,
    data: str | Path | Mapping[str, Any] | None = None,
    resume: bool = False,
    device: str | torch.device | None = None,
    progress: bool = True,
    allow_recipe_changes: bool = False,
) -> RunResult:
    """Train ``recipe`` (a path, shipped name, dict or :class:`Recipe`, overrides already applied) into
    ``out_dir`` (default: :func:`default_run_folder`). ``data`` replaces ``data.train`` (a folder or a spec
    mapping; default: the embedded set); ``resume`` continues the run in ``out_dir`` from
    ``checkpoints/latest.pth``, with the recipe the run was started with unless ``allow_recipe_changes``
    (then the changes take effect and are logged; see :mod:`vsr.training.resume`); ``device`` defaults to
    CUDA when available. Under ``torchrun`` every process calls this and each trains on its shard."""
    recipe = load_recipe(recipe)
    out = Path(out_dir) if out_dir is not None else default_run_folder(recipe)
    return Trainer(recipe, out, data, resume, device, progress, allow_recipe_changes).run()


__all__ = ["RUNS_DIR", "RunResult", "Trainer", "default_run_folder", "train"]
