"""The study driver: plan every run of a study and carry out the pending ones.

:func:`run_study` runs each variant × seed into ``OUT/<study>/<variant>/seed<k>/`` (see
:mod:`vsr.studies.runs`): :func:`run_one` trains, then builds and loads the trained model once to evaluate it
on the validation set, probe how much it draws from other frames (:mod:`vsr.probe`), evaluate and probe it
again on the real-video set (:mod:`vsr.data.real`, unless the preset's ``real_data`` is off) and profile it
(first seed of each variant), and last writes ``run.json``. Writing the report is :mod:`vsr.reports`' job
(:func:`vsr.reports.run_and_report` runs a study, then reports it): studies never import reports.

Rerunning the same command skips finished runs, evaluates runs whose training finished, and resumes
interrupted training from its latest checkpoint; a run folder made with a different recipe is an error,
never overwritten. A run whose resolved recipe (up to its name) and
seed equal those of a finished run of another study under ``OUT`` is not trained again: that run's weights
and logs are copied and evaluated, so BasicVSR, the base of the propagation, alignment and IconVSR studies,
trains once. A run with ``gpus_per_run: N`` trains under ``torchrun`` (DDP, one process per GPU, see
:mod:`vsr.training`) and is evaluated in the calling process.

A variant that ``evaluates`` another copies the training of that variant's run of the same seed in the same way
and is evaluated with its own recipe; one that ``starts_from`` another trains from that run's final weights.
These runs are carried out once the others have finished (a second round of the executor), and ``--variant``
naming one plans the variant it uses too.

A study holds the lock of its study folder while it runs, and each run the lock of its run folder
(:mod:`vsr.locks`; lent to ``torchrun``'s training processes): a second ``vsr study`` on the same study, or
anything else writing to a run folder in use, is refused naming the holder. Every file of a run folder is
written under its lock, by the process that carries the run out: a run done as a submitit job (Slurm,
``submitit-local``) writes its ``job.json`` itself, once it holds its folder.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import submitit
import torch
import yaml
from rich.console import Console

from vsr.atomic import listed
from vsr.data import real
from vsr.data.layouts import ClipSet, open_dataset
from vsr.data.specs import data_specs
from vsr.errors import VSRError, brief_repr
from vsr.evaluate import Protocol, evaluate
from vsr.locks import folder_lock, lent_to_child
from vsr.metrics import metric_class
from vsr.model import assemble
from vsr.probe import run_probe, score_set
from vsr.profile import profile
from vsr.recipe import Recipe, load_recipe
from vsr.registry import entry
from vsr.studies import runs
from vsr.studies.executors import EXECUTORS, run_all, torchrun_command
from vsr.studies.runs import RunSpec
from vsr.studies.schema import Study, StudyError, load_study, run_seeds
from vsr.training import train

log = logging.getLogger(__name__)


def plan_runs(
    study: Study,
    preset: str,
    out: str | Path,
    *,
    seeds: int | Sequence[int] | None = None,
    data: str | Path | None = None,
    device: str | None = None,
    variants: Sequence[str] | None = None,
) -> list[RunSpec]:
    """Every run of ``study`` under ``preset`` (or of the named ``variants`` only, with the variants whose
    weights they use), in order: variants as in the file, then seeds. Resolving every recipe here makes a typo
    fail before anything trains, and a test-time variant whose overrides change the network fail too."""
    p = study.preset(preset)
    unknown = sorted(set(variants or ()) - set(study.variants))
    if unknown:
        raise StudyError(
            f"study {study.name!r} has no variant {unknown[0]!r}; its variants: {', '.join(study.variants)}"
        )
    wanted = set(variants or ()) | set(added_sources(study, variants))
    specs = []
    for variant in study.variants.values():
        if variants and variant.name not in wanted:
            continue
        for i, seed in enumerate(run_seeds(p, seeds)):
            recipe = study.recipe(preset, variant.name, seed, data)
            if variant.starts_from:  # every parameter from the final weights of that variant's run of this seed
                trained = runs.run_folder(Path(out).absolute(), study.name, variant.starts_from, seed)
                init = [("train.init", str(runs.last_checkpoint(trained))), ("train.init_prefixes", None)]
                recipe = recipe.with_overrides(init)
            if variant.evaluates and i == 0:
                evaluated = study.recipe(preset, variant.evaluates, seed, data)
                _check_trains_nothing(study, variant.name, recipe, evaluated)
                _check_same_network(study, variant.name, recipe, evaluated)
            specs.append(
                RunSpec(
                    study=study.name,
                    preset=preset,
                    variant=variant.name,
                    seed=int(seed),
                    run_dir=str(runs.run_folder(out, study.name, variant.name, seed)),
                    recipe=recipe.to_dict(),
                    overrides=study.overrides(preset, variant.name),
                    profile=p.profile if i == 0 else None,  # one profile per variant
                    real=_located(p.real_data),
                    device=device,
                    gpus=p.gpus_per_run,
                    runs_root=str(out),
                    real_metrics=tuple(study.real_metrics),
                    evaluates=variant.evaluates,
                    starts_from=variant.starts_from,
                )
            )
    return specs


def added_sources(study: Study, variants: Sequence[str] | None) -> list[str]:
    """The variants that ``variants`` (``--variant``) leave out but whose weights one of them uses: planned too."""
    if not variants:
        return []
    used = [study.variants[v].source for v in variants if v in study.variants]
    return [v for v in study.variants if v in used and v not in variants]


#: The data keys that only evaluation reads: the validation and test sets and their protocol (``data.val_*``), and
#: the degradation that makes the LR frames of a set without them (the validation set's too). The rest of ``data``
#: and all of ``train`` say how a network is trained.
_EVALUATION_DATA_KEYS = ("val", "test", "degradation")


def _training_settings(recipe: Recipe) -> dict[str, Any]:
    """What a recipe says about training: every ``train`` key and the ``data`` keys evaluation does not read."""
    read = [k for k in recipe.data if k not in _EVALUATION_DATA_KEYS and not k.startswith("val_")]
    return {f"data.{k}": recipe.data[k] for k in read} | {f"train.{k}": v for k, v in recipe.train.items()}


def _check_trains_nothing(study: Study, variant: str, recipe: Recipe, evaluated: Recipe) -> None:
    """Refuse a test-time variant whose overrides change how a network is trained (``train.*``, the training set,
    its clips and batches): it trains nothing, so they would be recorded in its recipe and never used."""
    mine, theirs = _training_settings(recipe), _training_settings(evaluated)
    for key in dict.fromkeys([*theirs, *mine]):
        if mine.get(key) != theirs.get(key):
            source = study.variants[variant].evaluates
            raise StudyError(
                f"study {study.name!r}, variant {variant!r} evaluates the weights of {source!r} and trains nothing, "
                f"but its overrides change how a network is trained: {key} is {brief_repr(theirs.get(key))} there "
                f"and {brief_repr(mine.get(key))} here; a test-time variant takes only evaluation-time overrides "
                f"(model settings that keep the network, data.val_*, data.val, data.degradation): remove {key} from "
                f"variants.{variant} in {study.source or 'the study file'}, or train it from the weights of {source!r} "
                f"instead: starts_from: {source}"
            )


def _check_same_network(study: Study, variant: str, recipe: Recipe, evaluated: Recipe) -> None:
    """Refuse a test-time variant whose recipe builds another network than the variant whose weights it
    evaluates: both are built on the ``meta`` device (no memory, no time) and their parameters compared."""
    try:
        mine, theirs = _parameter_shapes(recipe), _parameter_shapes(evaluated)
    except VSRError:
        raise
    except Exception as err:  # a part (a plugin's) that does not build on the meta device: loading will tell
        log.debug("variant %s: the networks are not compared (they do not build on the meta device: %s)", variant, err)
        return
    source = study.variants[variant].evaluates
    for name in dict.fromkeys([*theirs, *mine]):
        if mine.get(name) != theirs.get(name):
            raise StudyError(
                f"study {study.name!r}, variant {variant!r} evaluates the weights of {source!r}, but its recipe builds "
                f"another network: parameter {name} is {_shape(theirs.get(name))} there and {_shape(mine.get(name))} "
                f"here; only evaluation-time overrides (refinement, chunking, ...) fit a test-time variant (check "
                f"variants.{variant}.overrides in {study.source or 'the study file'}, or train it: starts_from)"
            )


def _parameter_shapes(recipe: Recipe) -> dict[str, tuple[int, ...]]:
    """The shape of each entry of the state dict of the recipe's network, built on the ``meta`` device."""
    with torch.device("meta"):
        return {name: tuple(t.shape) for name, t in assemble(recipe.model).state_dict().items()}


def _shape(shape: tuple[int, ...] | None) -> str:
    return "absent" if shape is None else f"of shape {shape}"


def _located(spec: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The real-video set's mapping with its root made absolute (the default set's folder, relative to where the
    study was started), so that worker processes and jobs started elsewhere find the same set."""
    if spec is None:
        return None
    root = spec.get("root")
    return dict(spec) | {"root": str(Path(root).expanduser().absolute() if root else real.default_root())}


# ------------------------------------------------------------------------------------------ one run


def run_one(spec: RunSpec, progress: bool = True) -> dict[str, Any]:
    """Train (or resume), evaluate and profile one run; write ``run.json`` last. Returns its content.

    A finished run (``run.json`` present) is returned as is; a run whose training finished is only
    evaluated; an interrupted training resumes from its latest checkpoint. An error is also written to
    ``failed.json`` (with its traceback) before it propagates.
    """
    run_dir = Path(spec.run_dir)
    if runs.run_finished(run_dir):
        return runs.read_run(run_dir)
    with folder_lock(run_dir, "run folder"):
        if runs.run_finished(run_dir):  # finished by another process while this one waited for the study
            return runs.read_run(run_dir)
        runs.check_run_folder(spec, create=True)
        _record_job(run_dir)
        try:
            record = _train_evaluate_profile(spec, progress)
        except Exception as err:
            runs.record_failure(run_dir, err)
            raise
        runs.finish_run(run_dir, record)
    return record


def _record_job(run_dir: Path) -> None:
    """Inside a submitit job, write ``job.json`` (the job's id, executor and log) into the run folder, whose
    lock the caller holds; elsewhere, nothing."""
    if not os.environ.get("SUBMITIT_EXECUTOR"):  # submitit sets it in the jobs it runs
        return
    job = submitit.JobEnvironment()
    executor = "slurm" if job.cluster == "slurm" else f"submitit-{job.cluster}"
    runs.record_job(run_dir, {"job_id": str(job.job_id), "executor": executor, "stderr": str(job.paths.stderr)})


def _train(spec: RunSpec, progress: bool) -> None:
    """Train one run here, or under ``torchrun`` on ``spec.gpus`` GPUs; resume an interrupted training."""
    resume = runs.can_resume(spec.run_dir)
    if spec.gpus > 1:
        from vsr.atomic import write_text  # atomic, and never through a link at the recipe file's path

        write_text(yaml.safe_dump(spec.recipe, sort_keys=False), runs.torchrun_recipe_file(spec.run_dir))
        done = subprocess.run(torchrun_command(spec, resume), check=False, env=lent_to_child([spec.run_dir]))
        if done.returncode != 0:
            raise VSRError(f"{spec.key}: torchrun training exited with status {done.returncode}")
        return
    train(load_recipe(spec.recipe), Path(spec.run_dir), resume=resume, device=spec.device, progress=progress)


def _trained_source(spec: RunSpec) -> Path:
    """The run folder whose final weights ``spec`` evaluates or starts from, once its training has finished."""
    folder = spec.source_folder()
    if runs.training_finished(folder) and runs.last_checkpoint(folder).is_file():
        return folder
    how = "evaluates" if spec.evaluates else "starts from"
    if (folder / runs.FAILED_FILE).is_file():
        state = f"whose last attempt failed (see its {runs.FAILED_FILE}): fix that run, then rerun the same command"
    elif folder.is_dir():
        state = "whose training has not finished: rerun the same command, which finishes it first"
    else:
        state = f"which does not exist: run variant {spec.source!r} (seed {spec.seed}) first"
    raise StudyError(f"{spec.key} {how} the final weights of run folder {folder}, {state}")


def _train_evaluate_profile(spec: RunSpec, progress: bool) -> dict[str, Any]:
    run_dir = Path(spec.run_dir)
    started = time.time()
    if not runs.training_finished(run_dir):
        resume = runs.can_resume(run_dir)
        if spec.starts_from and not resume:
            _trained_source(spec)  # the weights it starts from are there
        twin = None if resume or spec.evaluates else runs.find_twin_run(spec)
        if spec.evaluates:  # a test-time variant: its source's weights, evaluated below with its own recipe
            runs.reuse_training(_trained_source(spec), run_dir)
        elif twin is not None:  # the same training was done for another study: evaluate its weights again
            runs.reuse_training(twin, run_dir)
        else:
            _train(spec, progress)
    trained = runs.read_training_result(run_dir)
    recipe = load_recipe(spec.recipe)
    checkpoint = runs.last_checkpoint(run_dir)
    model = assemble(recipe.model)  # built once, its weights loaded once (by evaluate), then probed and profiled
    metrics = evaluate(model, checkpoint, recipe=recipe, out_dir=run_dir, device=spec.device, progress=progress)
    temporal = run_probe(model, recipe=recipe, out_dir=runs.temporal_folder(run_dir), device=spec.device)
    on_real = None if spec.real is None else _evaluate_real(model, recipe, spec)
    if spec.profile is not None:
        device = spec.device or trained.get("device", "cpu")
        args = dict(spec.profile) | {"size": tuple(spec.profile["size"])}
        runs.write_profile(run_dir, profile(model, name=recipe.name, device=device, **args))
    return {
        **spec.identity(),
        "preset": spec.preset,
        "overrides": list(spec.overrides),
        "evaluates": spec.evaluates,
        "starts_from": spec.starts_from,
        "metrics": {k: metrics[k] for k in Protocol.from_recipe(recipe).names},
        "bicubic": metrics.get("bicubic"),
        "temporal_gain": temporal.mean_gain,
        "real": on_real,
        "iterations": trained.get("iterations"),
        "train_time_s": trained.get("time_s"),
        "seconds_per_iteration": trained.get("seconds_per_iteration"),
        "parameters": trained.get("parameters"),
        "device": trained.get("device"),
        "checkpoint": runs.LAST_CHECKPOINT,
        "trained_in": runs.trained_in(run_dir),
        "data": metrics.get("data"),
        "wall_time_s": round(time.time() - started, 3),
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def _evaluate_real(model, recipe: Recipe, spec: RunSpec) -> dict[str, Any]:
    """Score the loaded model on the real-video set with the recipe's protocol and the study's ``real_metrics``,
    and its temporal gain there, into the run's ``real/`` folder."""
    if spec.real_metrics:
        recipe = recipe.with_overrides([("data.val_metrics", list(spec.real_metrics))])
    return score_set(model, spec.real, recipe=recipe, out_dir=runs.real_folder(spec.run_dir), device=spec.device)


# ------------------------------------------------------------------------------------------ the study


def _check_data(study: Study, specs: Sequence[RunSpec]) -> None:
    """Open every distinct training, validation and real-video set once (writing the embedded sets if needed),
    so that a wrong path fails now, not in the middle of the study; and a real-video set without ground truth
    must have a no-reference metric to be scored with, or every run would fail after its training. A variant whose
    chunks (``data.val_chunk_frames``) are no shorter than the clips it is evaluated on is told so."""
    opened: dict[str, ClipSet] = {}

    def open_once(data: Any, real_set: bool = False) -> ClipSet:
        key = json.dumps(data, sort_keys=True, default=str)
        if key not in opened:
            if real_set and Path(data["root"]) == real.default_root():
                real.ensure_default()  # the default real-video set, written on first use
            opened[key] = open_dataset(data)
        return opened[key]

    chunks: dict[str, tuple[int, int]] = {}  # variant -> its chunk length, the longest clip it is evaluated on
    for spec in specs:
        recipe = load_recipe(spec.recipe)
        train_set, val_set = data_specs(recipe)
        open_once(train_set)
        evaluated = [open_once(val_set)]
        if spec.real:
            evaluated.append(open_once(spec.real, real_set=True))
            if not evaluated[-1].has_gt:
                _check_no_reference_metric(study, spec, evaluated[-1].name)
        chunk, cut = recipe.data["val_chunk_frames"], recipe.data["val_max_frames"]
        if chunk:
            longest = max((min(len(clip), cut or len(clip)) for clips in evaluated for clip in clips), default=0)
            chunks[spec.variant] = (chunk, max(longest, chunks.get(spec.variant, (0, 0))[1]))
    for variant, (chunk, longest) in chunks.items():
        if 0 < longest <= chunk:
            log.warning(
                "study %s, variant %s: data.val_chunk_frames=%d is no shorter than the clips it is evaluated on (%d "
                "frames at most): each clip is restored whole, as without chunks",
                *(study.name, variant, chunk, longest),
            )


def _check_no_reference_metric(study: Study, spec: RunSpec, data: str) -> None:
    """Refuse a real-video set without ground truth that none of the metrics it is scored with (``real_metrics``)
    can score: each needs ground truth (PSNR, SSIM)."""
    entries = spec.real_metrics or load_recipe(spec.recipe).data["val_metrics"]
    names = [entry("real_metrics", item)["name"] for item in entries]
    if all(metric_class(name).needs_gt for name in names):
        raise StudyError(
            f"study {study.name!r}, preset {spec.preset!r}: the real-video set {data} has no ground truth, and every "
            f"metric it is scored with ({', '.join(names)}) needs it: name a no-reference metric in real_metrics "
            f"(e.g. real_metrics: [niqe]) in {study.source or 'the study file'}, or score a set with ground truth "
            f"(presets.{spec.preset}.real_data: {{layout: real, split: gt}})"
        )


def _check_options(executor: str, jobs: Any) -> None:
    if executor not in EXECUTORS:
        raise StudyError(f"unknown executor {executor!r}; choose one of {', '.join(EXECUTORS)}")
    if not isinstance(jobs, int) or jobs < 1 or (jobs > 1 and executor != "local"):
        raise StudyError(
            f"jobs={jobs!r}: runs at once must be a whole number >= 1, and > 1 only with the local executor "
            "(Slurm and submitit run every run as its own job already)"
        )


@dataclass(frozen=True)
class StudyRun:
    """What :func:`run_study` did: the study, the preset, the study folder (``OUT/<study>``, what a report
    reads) and the planned runs."""

    study: Study
    preset: str
    folder: Path
    specs: tuple[RunSpec, ...]

    @property
    def any_finished(self) -> bool:
        return any(runs.run_finished(s.run_dir) for s in self.specs)


class RunsFailed(StudyError):
    """Some runs of a study failed (the others finished); ``study_run`` says which study and where."""

    def __init__(self, message: str, study_run: StudyRun):
        super().__init__(message)
        self.study_run = study_run


def run_study(
    name_or_path: str | Path,
    *,
    preset: str = "cpu",
    seeds: int | Sequence[int] | None = None,
    data: str | Path | None = None,
    out: str | Path | None = None,
    executor: str = "local",
    progress: bool = True,
    device: str | None = None,
    slurm: Mapping[str, Any] | None = None,
    variants: Sequence[str] | None = None,
    jobs: int = 1,
    imports: Sequence[str] = (),
) -> StudyRun:
    """Run every variant × seed of a study, skipping finished runs and resuming interrupted ones.

    ``seeds``: a number (seeds 0..n-1) or a list, instead of the preset's; ``data``: the data set root for
    presets that take one; ``out``: the runs root (default ``runs/studies/<preset>``), runs go to
    ``OUT/<study>/<variant>/seed<k>/``; ``executor``: ``local``, ``slurm`` or ``submitit-local``;
    ``slurm``: submitit parameters added to the preset's; ``variants``: run only these; ``jobs``: with the
    local executor, how many runs train at once (worker processes sharing the CPU threads, or the one GPU);
    ``imports``: plugin modules (``--import``) added to the study file's ``imports``, which travel with every
    run's recipe.

    A failing run never stops the others; once all are done, failures raise :class:`RunsFailed` (a
    :class:`StudyError` naming each), which carries the :class:`StudyRun` so that the finished runs can still
    be reported.
    """
    _check_options(executor, jobs)
    study = load_study(name_or_path)
    if imports:
        study = dataclasses.replace(study, imports=tuple(dict.fromkeys([*study.imports, *imports])))
    out = Path(out) if out is not None else Path("runs") / "studies" / preset
    study_dir = runs.study_folder(out, study.name)
    specs = plan_runs(study, preset, out, seeds=seeds, data=data, device=device, variants=variants)
    added = added_sources(study, variants)
    with folder_lock(study_dir, "study folder"):
        failures = _run_planned(study, preset, specs, study_dir, executor, jobs, progress, slurm, added)
    done = StudyRun(study, preset, study_dir, tuple(specs))
    if failures:
        raise RunsFailed(
            f"{len(failures)} run(s) of study {study.name!r} failed; fix the cause and rerun the same command to "
            "resume them:\n  " + "\n  ".join(failures),
            done,
        )
    return done


def _run_planned(
    study: Study,
    preset: str,
    specs: Sequence[RunSpec],
    study_dir: Path,
    executor: str,
    jobs: int,
    progress: bool,
    slurm: Mapping[str, Any] | None,
    added: Sequence[str] = (),
) -> list[str]:
    """Carry out :func:`run_study` for the planned ``specs``, under the study folder's lock; the failed runs.
    Everything that can refuse the study (a run folder made for another recipe, a data set that does not
    open) is checked before its ``study.json`` is written: a refused study leaves its folder as it was. The
    runs that use another's weights go in a second round, once the others have finished; ``added`` are the
    variants planned only because such a run uses their weights."""
    p = study.preset(preset)
    for spec in specs:
        runs.check_run_folder(spec)
    pending = [s for s in specs if not runs.run_finished(s.run_dir)]
    if pending:
        _check_data(study, pending)
    runs.write_study_record(
        study_dir,
        study.to_dict() | {"preset": preset, "seeds": sorted({s.seed for s in specs}), "runs": [s.key for s in specs]},
    )
    console = Console(stderr=True)
    if progress:
        count = len({s.variant for s in specs})
        also = ""
        for source in added:  # a variant --variant left out, whose weights one it names uses (maybe finished)
            users = list(dict.fromkeys(s.variant for s in specs if s.source == source))
            also += f"; {source} included, since {listed(users)} {'uses' if len(users) == 1 else 'use'} its weights"
        console.print(
            f"study [bold]{study.name}[/] ({preset}): {count} variants × {len(specs) // count} seeds = "
            f"{len(specs)} runs, {len(specs) - len(pending)} finished{also}"
        )
    if not pending:
        return []
    params = {"name": f"vsr-{study.name}", **p.slurm, **(slurm or {})}
    if p.gpus_per_run > 1:
        params.setdefault("gpus_per_node", p.gpus_per_run)
    first = [s for s in pending if s.source is None]
    then = [s for s in pending if s.source is not None]  # they need the final weights of runs of the first round
    failures = []
    for batch, total in ((first, len(specs) - len(then)), (then, len(specs))):
        if not batch:
            continue
        if progress and batch is then and first:
            console.print(f"then {len(then)} run(s) that evaluate or start from the weights of those")
        failures += run_all(run_one, batch, total, executor=executor, jobs=jobs, progress=progress,
                            submitit_folder=study_dir / "_submitit", submitit_params=params)  # fmt: skip
    return failures
