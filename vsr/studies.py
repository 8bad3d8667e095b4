"""Studies: train and evaluate every variant of an ablation, several seeds each, and report the comparison.

A study file (``studies/<name>.yaml``) names a base recipe per preset and the variants as lists of dotted
recipe overrides, e.g. the propagation ablation of BasicVSR (paper §3.1)::

    name: propagation
    base: bidirectional                  # differences are measured against this variant
    metrics: [psnr, ssim]
    presets:
      cpu:   {recipe: basicvsr_tiny, seeds: 3, overrides: [train.iterations=600, "train.periods=[600]"]}
      paper: {recipe: basicvsr, seeds: 1, needs_data: true,
              data: {train: {layout: reds, root: "{data}", split: train},
                     val: {layout: reds, root: "{data}", split: reds4}}}
    variants:
      local: [model.propagation=local]
      unidirectional: [model.propagation=unidirectional]
      bidirectional: []
    expect:                              # orderings the report checks (paper's numbers)
      - {better: bidirectional, worse: unidirectional, paper: 0.5, source: "BasicVSR §3.1, Fig. 4"}

Presets: ``cpu`` runs tiny recipes on the embedded synthetic set in about half an hour on two cores;
``paper`` runs the full recipes on REDS (``--data`` is the REDS root; ``{data}`` in the preset's ``data``
is replaced by it). A variant may also be a mapping ``{overrides: [...], label: "...", presets: {cpu:
[...]}}`` for preset-specific overrides.

:func:`run_study` runs each variant × seed into ``OUT/<study>/<variant>/seed<k>/``: ``train`` (``recipe.yaml``,
``log.jsonl``, ``checkpoints/``, ``result.json``), then ``evaluate`` on the validation set (``metrics.json``,
``per_frame.csv``), then (first seed of each variant) ``profile`` (``profile.json``), and last, written
atomically, ``run.json``: a run is finished exactly when ``run.json`` exists. Rerunning the same command
skips finished runs, evaluates runs whose training finished, and resumes interrupted training from
``checkpoints/latest.pth``; a run folder made with a different recipe is an error, never overwritten. A run
whose resolved recipe (up to its name) and seed equal those of a finished run of another study under ``OUT``
is not trained again: that run's weights and logs are copied (``reused.json`` names the source) and
evaluated, so BasicVSR, the base of the propagation, alignment and IconVSR studies, trains once.

Executors: ``local`` runs one run after another in this process (``jobs=N``: N at once in worker processes
that share the CPU threads); ``slurm`` submits one job per run through
``submitit`` (parameters from the preset's ``slurm`` mapping, e.g. ``{timeout_min: 4320, gpus_per_node: 1,
slurm_partition: gpu}``), waits for them and writes the report; ``submitit-local`` is the same through
submitit's local executor (a subprocess per run; for testing). Ctrl-C while waiting cancels the jobs
still running; rerunning resumes them from their checkpoints.

Several GPUs per run: set ``gpus_per_run: N`` in the preset. Each run then trains with
``torchrun --standalone --nproc-per-node N -m vsr train <run>/study_recipe.yaml --out <run> [--resume]``
(DDP, one process per GPU, see :mod:`vsr.train`) and is evaluated in the calling process; under Slurm the
job asks for ``gpus_per_node: N``. The study runs variants; each run is one (possibly multi-GPU) training.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from vsr.atomic import write_json, write_with
from vsr.errors import RecipeError, VSRError

#: Metrics a study can report: those of ``metrics.json`` (BasicSR's PSNR and SSIM).
METRICS = ("psnr", "ssim")
EXECUTORS = ("local", "slurm", "submitit-local")
RUN_FILE = "run.json"  # written last, atomically: its presence marks a finished run
SPEC_FILE = "run_spec.json"  # written first: what the run folder is for (checked on every rerun)
FAILED_FILE = "failed.json"  # the error of the last attempt, removed when the run finishes
REUSED_FILE = "reused.json"  # the run whose training this run copied (an identical recipe and seed)
STUDY_FILE = "study.json"  # the study definition as run, in OUT/<study>/

_STUDY_KEYS = ("name", "title", "description", "base", "metrics", "presets", "variants", "expect")
_PRESET_KEYS = ("recipe", "overrides", "seeds", "data", "needs_data", "slurm", "gpus_per_run", "profile", "description")
_PROFILE_KEYS = ("frames", "size", "repeats", "warmup")
#: The paper's runtime protocol (10-frame 180×320 LR clip); a preset's ``profile`` mapping changes it.
PROFILE_DEFAULTS = {"frames": 10, "size": [180, 320], "repeats": 3, "warmup": 1}
POLL_SECONDS = 5.0  # how often the submitit executors' jobs are checked
_VARIANT_KEYS = ("overrides", "label", "description", "presets")
_EXPECT_KEYS = ("better", "worse", "paper", "metric", "source")


class StudyError(VSRError):
    """A study file is malformed, or a study cannot run as asked. Names the file, the key and the fix."""


# --------------------------------------------------------------------------------------------------------
# Study files
# --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Preset:
    """How a study runs in one setting: base recipe and overrides, seeds, data, cluster resources."""

    name: str
    recipe: str
    overrides: tuple[str, ...] = ()
    seeds: tuple[int, ...] = (0,)
    data: Mapping[str, Any] | None = None
    needs_data: bool = False
    slurm: Mapping[str, Any] = field(default_factory=dict)
    gpus_per_run: int = 1
    profile: Mapping[str, Any] | None = field(default_factory=lambda: dict(PROFILE_DEFAULTS))
    description: str = ""


@dataclass(frozen=True)
class Variant:
    """One arm of the ablation: overrides on top of the preset's recipe (plus per-preset extras)."""

    name: str
    overrides: tuple[str, ...] = ()
    label: str = ""
    description: str = ""
    presets: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def overrides_for(self, preset: str) -> tuple[str, ...]:
        return (*self.overrides, *self.presets.get(preset, ()))


@dataclass(frozen=True)
class Expectation:
    """An ordering the paper reports: ``better`` beats ``worse`` on ``metric`` (by ``paper`` if known)."""

    better: str
    worse: str
    paper: float | None = None
    metric: str = "psnr"
    source: str = ""


@dataclass(frozen=True)
class Study:
    """A validated study file (see the module docstring)."""

    name: str
    base: str
    presets: Mapping[str, Preset]
    variants: Mapping[str, Variant]
    metrics: tuple[str, ...] = METRICS
    expect: tuple[Expectation, ...] = ()
    title: str = ""
    description: str = ""
    source: Path | None = None

    def preset(self, name: str) -> Preset:
        if name not in self.presets:
            raise StudyError(
                f"study {self.name!r} has no preset {name!r}; its presets: {', '.join(self.presets)}"
                f" (add presets.{name} to {self.source or 'the study file'})"
            )
        return self.presets[name]

    def recipe(self, preset: str, variant: str, seed: int = 0, data: str | Path | None = None):
        """The resolved :class:`vsr.recipe.Recipe` of one run: the preset's recipe, its overrides, the
        variant's overrides, the data overrides of ``data`` and ``train.seed``."""
        from vsr.recipe import load_recipe

        p, v = self.preset(preset), self.variants[variant]
        overrides: list[str | tuple[str, Any]] = [*p.overrides, *v.overrides_for(preset)]
        overrides += data_overrides(self, p, data)
        overrides.append(("train.seed", int(seed)))
        try:
            recipe = load_recipe(p.recipe, *overrides)
        except RecipeError as err:
            raise StudyError(
                f"study {self.name!r}, preset {preset!r}, variant {variant!r}: {err} "
                f"(check presets.{preset}.overrides and variants.{variant} in {self.source or 'the study file'})"
            ) from None
        recipe.name = f"{p.recipe}:{self.name}/{variant}"
        return recipe

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "title": self.title,
            "description": self.description,
            "base": self.base,
            "metrics": list(self.metrics),
            "variants": {
                v.name: {
                    "overrides": list(v.overrides),
                    "label": v.label,
                    "presets": {k: list(o) for k, o in v.presets.items()},
                }
                for v in self.variants.values()
            },
            "expect": [e.__dict__ for e in self.expect],
            "source": None if self.source is None else str(self.source),
        }


def study_dirs() -> list[Path]:
    """Where study files are found by name: ``$VSR_STUDIES``, ``./studies``, then the source tree's."""
    dirs = [Path(p) for p in os.environ.get("VSR_STUDIES", "").split(os.pathsep) if p]
    return [*dirs, Path.cwd() / "studies", Path(__file__).resolve().parents[1] / "studies"]


def shipped_studies() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for d in reversed(study_dirs()):
        for path in sorted(d.glob("*.yaml")):
            found[path.stem] = path
    return found


def _fail(source: Any, key: str, value: Any, problem: str, choices: Sequence[Any] = ()) -> StudyError:
    message = f"study file {source}: key '{key}' = {value!r}: {problem}"
    if choices:
        message += f"; valid: {', '.join(map(str, choices))}"
    return StudyError(message)


def _check_keys(source, where: str, mapping: Any, allowed: Sequence[str]) -> dict[str, Any]:
    if not isinstance(mapping, Mapping):
        raise _fail(source, where, mapping, "expected a mapping", allowed)
    for key in mapping:
        if key not in allowed:
            raise _fail(source, f"{where}.{key}" if where else key, mapping[key], "unknown key", allowed)
    return dict(mapping)


def _overrides(source, key: str, value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(o, str) and "=" in o for o in value):
        raise _fail(source, key, value, "expected a list of dotted recipe overrides like 'model.alignment=none'")
    return tuple(value)


def _seeds(source, key: str, value: Any) -> tuple[int, ...]:
    if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
        return tuple(range(value))
    if (
        isinstance(value, list)
        and value
        and all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in value)
        and len(set(value)) == len(value)
    ):
        return tuple(value)
    raise _fail(source, key, value, "expected a number of seeds (>= 1) or a list of distinct seeds >= 0")


def _preset(source, name: str, raw: Any) -> Preset:
    where = f"presets.{name}"
    raw = _check_keys(source, where, raw, _PRESET_KEYS)
    if not isinstance(raw.get("recipe"), str):
        raise _fail(source, f"{where}.recipe", raw.get("recipe"), "expected a recipe name or path, e.g. basicvsr_tiny")
    data = raw.get("data")
    if data is not None:
        data = _check_keys(source, f"{where}.data", data, ("train", "val"))
    gpus = raw.get("gpus_per_run", 1)
    if not isinstance(gpus, int) or isinstance(gpus, bool) or gpus < 1:
        raise _fail(source, f"{where}.gpus_per_run", gpus, "expected a positive integer")
    slurm = raw.get("slurm") or {}
    if not isinstance(slurm, Mapping):
        raise _fail(source, f"{where}.slurm", slurm, "expected a mapping of submitit parameters (timeout_min, ...)")
    needs_data = raw.get("needs_data", False)
    if not isinstance(needs_data, bool):
        raise _fail(source, f"{where}.needs_data", needs_data, "expected true or false")
    profile = raw.get("profile", {})
    if profile is not False:
        profile = PROFILE_DEFAULTS | _check_keys(source, f"{where}.profile", profile or {}, _PROFILE_KEYS)
        size = profile["size"]
        if not (isinstance(size, list) and len(size) == 2 and all(isinstance(v, int) and v > 0 for v in size)):
            raise _fail(source, f"{where}.profile.size", size, "expected [height, width] of the LR clip")
        for key in ("frames", "repeats"):
            if not isinstance(profile[key], int) or profile[key] < 1:
                raise _fail(source, f"{where}.profile.{key}", profile[key], "expected a positive integer")
    return Preset(
        name=name,
        recipe=raw["recipe"],
        overrides=_overrides(source, f"{where}.overrides", raw.get("overrides")),
        seeds=_seeds(source, f"{where}.seeds", raw.get("seeds", 1)),
        data=data,
        needs_data=needs_data,
        slurm=dict(slurm),
        gpus_per_run=gpus,
        profile=None if profile is False else profile,
        description=str(raw.get("description", "")),
    )


def _variant(source, name: str, raw: Any, presets: Sequence[str]) -> Variant:
    where = f"variants.{name}"
    if raw is None or isinstance(raw, list):
        return Variant(name, _overrides(source, where, raw))
    if not isinstance(raw, Mapping):
        raise _fail(source, where, raw, "expected a list of dotted recipe overrides like 'model.alignment=none' "
                    "(or a mapping with 'overrides', 'label', 'presets')")  # fmt: skip
    raw = _check_keys(source, where, raw, _VARIANT_KEYS)
    extra = _check_keys(source, f"{where}.presets", raw.get("presets") or {}, presets)
    return Variant(
        name=name,
        overrides=_overrides(source, f"{where}.overrides", raw.get("overrides")),
        label=str(raw.get("label", "")),
        description=str(raw.get("description", "")),
        presets={k: _overrides(source, f"{where}.presets.{k}", v) for k, v in extra.items()},
    )


def _expectation(source, index: int, raw: Any, variants: Sequence[str], metrics: Sequence[str]) -> Expectation:
    where = f"expect[{index}]"
    raw = _check_keys(source, where, raw, _EXPECT_KEYS)
    for key in ("better", "worse"):
        if raw.get(key) not in variants:
            raise _fail(source, f"{where}.{key}", raw.get(key), "not a variant of this study", variants)
    if raw["better"] == raw["worse"]:
        raise _fail(source, f"{where}.worse", raw["worse"], "an ordering compares two different variants")
    metric = raw.get("metric", "psnr")
    if metric not in metrics:
        raise _fail(source, f"{where}.metric", metric, "not one of the study's metrics", metrics)
    paper = raw.get("paper")
    if paper is not None and (isinstance(paper, bool) or not isinstance(paper, int | float)):
        raise _fail(source, f"{where}.paper", paper, "expected the paper's difference as a number (dB for psnr)")
    return Expectation(raw["better"], raw["worse"], None if paper is None else float(paper), metric,
                       str(raw.get("source", "")))  # fmt: skip


def parse_study(raw: Any, source: str | Path = "<study>") -> Study:
    """Validate a study mapping (the content of a study file); errors name the file and the key."""
    raw = _check_keys(source, "", raw, _STUDY_KEYS)
    name = raw.get("name", Path(str(source)).stem)
    if not isinstance(name, str) or not name or "/" in name:
        raise _fail(source, "name", name, "expected a non-empty name without '/' (it names the run folder)")
    metrics = raw.get("metrics", list(METRICS))
    if not isinstance(metrics, list) or not metrics or any(m not in METRICS for m in metrics):
        raise _fail(source, "metrics", metrics, "expected a non-empty list of metrics", METRICS)
    presets_raw = raw.get("presets")
    if not isinstance(presets_raw, Mapping) or not presets_raw:
        raise _fail(source, "presets", presets_raw, "expected a mapping of preset names (cpu, paper) to presets")
    presets = {str(k): _preset(source, str(k), v) for k, v in presets_raw.items()}
    variants_raw = raw.get("variants")
    if not isinstance(variants_raw, Mapping) or len(variants_raw) < 2:
        raise _fail(source, "variants", variants_raw, "expected a mapping of at least two variants to overrides")
    for key in variants_raw:
        if not isinstance(key, str) or not key or "/" in key or key.startswith(("_", ".")):
            raise _fail(source, f"variants.{key}", key, "a variant name is a folder name: no '/', no leading '_'")
    variants = {k: _variant(source, k, v, list(presets)) for k, v in variants_raw.items()}
    base = raw.get("base")
    if base not in variants:
        raise _fail(source, "base", base, "the base must be one of the variants", list(variants))
    expect_raw = raw.get("expect") or []
    if not isinstance(expect_raw, list):
        raise _fail(source, "expect", expect_raw, "expected a list of {better, worse, paper, source}")
    expect = tuple(_expectation(source, i, e, list(variants), metrics) for i, e in enumerate(expect_raw))
    return Study(
        name=name,
        base=base,
        presets=presets,
        variants=variants,
        metrics=tuple(metrics),
        expect=expect,
        title=str(raw.get("title", "")),
        description=str(raw.get("description", "")).strip(),
        source=Path(source) if not str(source).startswith("<") else None,
    )


def load_study(name_or_path: str | Path) -> Study:
    """Load and validate a study file: a path, or a shipped study's name (``propagation``)."""
    path = Path(name_or_path)
    if not path.is_file():
        shipped = shipped_studies()
        if str(name_or_path) not in shipped:
            raise StudyError(
                f"no study file {name_or_path!r} and no shipped study of that name; shipped studies: "
                f"{', '.join(sorted(shipped)) or 'none'}"
            )
        path = shipped[str(name_or_path)]
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise StudyError(f"study file {path} is not valid YAML: {err}") from None
    return parse_study(raw, path)


def data_overrides(study: Study, preset: Preset, data: str | Path | None) -> list[tuple[str, Any]]:
    """The ``data.train`` / ``data.val`` overrides of ``--data``: the preset's ``data`` specs with ``{data}``
    replaced by the path. Without ``--data`` a preset that ``needs_data`` is an error; others keep the
    recipe's data (the embedded synthetic set for the tiny recipes)."""
    if data is None:
        if preset.needs_data:
            raise StudyError(
                f"study {study.name!r}, preset {preset.name!r} needs --data PATH (the data set root; "
                f"presets.{preset.name}.data in {study.source or 'the study file'} says how it is used)"
            )
        return []
    if not preset.data:
        raise StudyError(
            f"study {study.name!r}, preset {preset.name!r} takes no --data: add presets.{preset.name}.data "
            "(train/val data set specs with {data} for the path) to the study file"
        )
    root = str(Path(data).expanduser().absolute())

    def fill(value: Any) -> Any:
        if isinstance(value, str):
            return value.replace("{data}", root)
        if isinstance(value, Mapping):
            return {k: fill(v) for k, v in value.items()}
        if isinstance(value, list):
            return [fill(v) for v in value]
        return value

    return [(f"data.{split}", fill(copy.deepcopy(spec))) for split, spec in preset.data.items()]


# --------------------------------------------------------------------------------------------------------
# One run
# --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunSpec:
    """Everything one run needs (picklable: it travels to Slurm jobs)."""

    study: str
    preset: str
    variant: str
    seed: int
    run_dir: str
    recipe: dict[str, Any]  # resolved recipe (Recipe.to_dict())
    overrides: tuple[str, ...] = ()
    profile: Mapping[str, Any] | None = None  # profile() arguments, or None: not profiled
    device: str | None = None
    gpus: int = 1
    runs_root: str | None = None  # where finished runs of other studies may hold this run's training

    @property
    def key(self) -> str:
        return f"{self.study}/{self.variant}/seed{self.seed}"

    def identity(self) -> dict[str, Any]:
        return {"study": self.study, "variant": self.variant, "seed": self.seed, "recipe": self.recipe}


def _flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(d, Mapping):
        return {prefix: d}
    out: dict[str, Any] = {}
    for k, v in d.items():
        out |= _flatten(v, f"{prefix}.{k}" if prefix else str(k))
    return out


def check_run_folder(spec: RunSpec, create: bool = False) -> None:
    """A run folder belongs to one (study, variant, seed, recipe): a changed study file or other options
    (``--data``, ``--seeds``) must never mix runs. Raises :class:`StudyError` if ``run_spec.json`` disagrees;
    ``create`` writes it when missing."""
    run_dir = Path(spec.run_dir)
    path = run_dir / SPEC_FILE
    if not path.is_file():
        if create:
            write_json(spec.identity(), path)
        return
    stored = json.loads(path.read_text())
    if stored == json.loads(json.dumps(spec.identity())):
        return
    before, now = _flatten(stored), _flatten(json.loads(json.dumps(spec.identity())))
    changed = sorted(k for k in before.keys() | now.keys() if before.get(k) != now.get(k))
    shown = "; ".join(f"{k}: {before.get(k)!r} -> {now.get(k)!r}" for k in changed[:5])
    raise StudyError(
        f"run folder {run_dir} was made for another recipe ({shown}); the study file or its options changed. "
        "Use another --out, or delete that folder to rerun it"
    )


def run_finished(run_dir: str | Path) -> bool:
    return (Path(run_dir) / RUN_FILE).is_file()


#: What a run's training wrote; copied from a twin run, ``result.json`` last (it marks training as done).
_TRAINING_FILES = (
    "recipe.yaml", "log.jsonl", "metrics.csv", "model.safetensors", "checkpoints/last.pth", "result.json"
)  # fmt: skip


def _same_training(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    """Two resolved recipes train the same network the same way (the recipe's name is only a label)."""
    return {k: v for k, v in a.items() if k != "name"} == {k: v for k, v in b.items() if k != "name"}


def find_twin_run(spec: RunSpec) -> Path | None:
    """A finished run under ``spec.runs_root`` (any study) with the same seed and the same resolved recipe,
    up to its name: e.g. BasicVSR is the base of the propagation, alignment and IconVSR studies alike."""
    if spec.runs_root is None:
        return None
    recipe = json.loads(json.dumps(spec.recipe))
    for path in sorted(Path(spec.runs_root).glob(f"*/*/seed*/{RUN_FILE}")):
        if path.parent.resolve() == Path(spec.run_dir).resolve():
            continue
        try:
            other = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        same = other.get("seed") == spec.seed and _same_training(other.get("recipe", {}), recipe)
        if same and all((path.parent / f).is_file() for f in _TRAINING_FILES):
            return path.parent
    return None


def _copy_training(source: Path, run_dir: Path) -> None:
    import shutil

    for name in _TRAINING_FILES:
        write_with(lambda tmp, name=name: shutil.copyfile(source / name, tmp), run_dir / name)


def torchrun_command(spec: RunSpec, resume: bool) -> list[str]:
    """``torchrun`` command line that trains one run on ``spec.gpus`` GPUs of this node (DDP)."""
    run_dir = Path(spec.run_dir)
    return [
        sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={spec.gpus}",
        "-m", "vsr", "train", str(run_dir / "study_recipe.yaml"), "--out", str(run_dir),
        *(["--resume"] if resume else []),
    ]  # fmt: skip


def _train(spec: RunSpec, progress: bool) -> None:
    from vsr.recipe import load_recipe
    from vsr.train import train

    run_dir = Path(spec.run_dir)
    resume = (run_dir / "checkpoints" / "latest.pth").is_file()
    if spec.gpus > 1:
        (run_dir / "study_recipe.yaml").write_text(yaml.safe_dump(spec.recipe, sort_keys=False))
        done = subprocess.run(torchrun_command(spec, resume), check=False)
        if done.returncode != 0:
            raise VSRError(f"{spec.key}: torchrun training exited with status {done.returncode}")
        return
    train(load_recipe(spec.recipe), run_dir, resume=resume, device=spec.device, progress=progress)


def run_one(spec: RunSpec, progress: bool = True) -> dict[str, Any]:
    """Train (or resume), evaluate and profile one run; write ``run.json`` last. Returns its content.

    A finished run (``run.json`` present) is returned as is; a run whose training finished is only
    evaluated; an interrupted training resumes from ``checkpoints/latest.pth``. An error is also written to
    ``failed.json`` (with its traceback) before it propagates.
    """
    run_dir = Path(spec.run_dir)
    if run_finished(run_dir):
        return json.loads((run_dir / RUN_FILE).read_text())
    run_dir.mkdir(parents=True, exist_ok=True)
    check_run_folder(spec, create=True)
    try:
        record = _train_evaluate_profile(spec, progress)
    except Exception as err:
        import traceback

        failure = {"error": f"{type(err).__name__}: {err}", "traceback": traceback.format_exc(),
                   "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")}  # fmt: skip
        write_json(failure, run_dir / FAILED_FILE)
        raise
    write_json(record, run_dir / RUN_FILE)
    (run_dir / FAILED_FILE).unlink(missing_ok=True)
    return record


def _train_evaluate_profile(spec: RunSpec, progress: bool) -> dict[str, Any]:
    from vsr.evaluate import evaluate
    from vsr.profile import profile
    from vsr.recipe import load_recipe

    run_dir = Path(spec.run_dir)
    started = time.time()
    reused = run_dir / REUSED_FILE
    if not (run_dir / "result.json").is_file():
        twin = None if (run_dir / "checkpoints" / "latest.pth").is_file() else find_twin_run(spec)
        if twin is not None:  # the same training was done for another study: evaluate its weights again
            write_json({"trained_in": str(twin)}, reused)
            _copy_training(twin, run_dir)
        else:
            _train(spec, progress)
    trained = json.loads((run_dir / "result.json").read_text())
    recipe = load_recipe(spec.recipe)
    checkpoint = run_dir / "checkpoints" / "last.pth"
    metrics = evaluate(recipe, checkpoint, None, out_dir=run_dir, device=spec.device, progress=progress)
    if spec.profile is not None:
        device = spec.device or trained.get("device", "cpu")
        args = dict(spec.profile) | {"size": tuple(spec.profile["size"])}
        write_json(profile(recipe, device=device, **args), run_dir / "profile.json")
    return {
        **spec.identity(),
        "preset": spec.preset,
        "overrides": list(spec.overrides),
        "metrics": {k: metrics[k] for k in METRICS},
        "bicubic": metrics.get("bicubic"),
        "iterations": trained.get("iterations"),
        "train_time_s": trained.get("time_s"),
        "seconds_per_iteration": trained.get("seconds_per_iteration"),
        "parameters": trained.get("parameters"),
        "device": trained.get("device"),
        "checkpoint": "checkpoints/last.pth",
        "trained_in": json.loads(reused.read_text())["trained_in"] if reused.is_file() else None,
        "data": metrics.get("data"),
        "wall_time_s": round(time.time() - started, 3),
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


# --------------------------------------------------------------------------------------------------------
# The study
# --------------------------------------------------------------------------------------------------------


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
    """Every run of ``study`` under ``preset`` (or of the named ``variants`` only), in order: variants as in
    the file, then seeds. Resolving every recipe here makes a typo fail before anything trains."""
    p = study.preset(preset)
    unknown = sorted(set(variants or ()) - set(study.variants))
    if unknown:
        raise StudyError(
            f"study {study.name!r} has no variant {unknown[0]!r}; its variants: {', '.join(study.variants)}"
        )
    if seeds is None:
        seed_list = p.seeds
    else:
        seed_list = _seeds("--seeds", "seeds", seeds if isinstance(seeds, int) else list(seeds))
    study_dir = Path(out) / study.name
    specs = []
    for variant in study.variants.values():
        if variants and variant.name not in variants:
            continue
        for i, seed in enumerate(seed_list):
            recipe = study.recipe(preset, variant.name, seed, data)
            specs.append(
                RunSpec(
                    study=study.name,
                    preset=preset,
                    variant=variant.name,
                    seed=int(seed),
                    run_dir=str(study_dir / variant.name / f"seed{seed}"),
                    recipe=recipe.to_dict(),
                    overrides=(*p.overrides, *variant.overrides_for(preset)),
                    profile=p.profile if i == 0 else None,  # one profile per variant
                    device=device,
                    gpus=p.gpus_per_run,
                    runs_root=str(out),
                )
            )
    return specs


def _check_data(specs: Sequence[RunSpec]) -> None:
    """Open every distinct training/validation set once (generating the embedded set if needed), so that a
    wrong path fails now, not in the middle of the study."""
    from vsr.data.datasets import open_dataset
    from vsr.recipe import load_recipe
    from vsr.train import data_specs

    seen: set[str] = set()
    for spec in specs:
        for data in data_specs(load_recipe(spec.recipe)):
            key = json.dumps(data, sort_keys=True, default=str)
            if key not in seen:
                seen.add(key)
                open_dataset(data)


def _console():
    from rich.console import Console

    return Console(stderr=True)


def _outcome(spec: RunSpec, result, console, progress: bool, failures: list[str], prefix: str = "") -> None:
    """Print one run's result, or record its error (``result`` is the run record or the exception; the
    error is also in the run's failed.json, with its traceback)."""
    if isinstance(result, Exception):
        failures.append(f"{spec.key}: {type(result).__name__}: {result} (see {Path(spec.run_dir) / FAILED_FILE})")
        console.print(f"{prefix}[bold red]{spec.key} failed:[/] {result}", highlight=False)
    elif progress:
        metrics = result["metrics"]
        console.print(f"{prefix}{spec.key}: PSNR {metrics['psnr']:.3f} dB, SSIM {metrics['ssim']:.4f}")


def _run_local(specs: Sequence[RunSpec], total: int, progress: bool) -> list[str]:
    """Run one after another in this process; a failing run is recorded and the others still run.
    Returns the failures (``key: error`` lines); Ctrl-C stops everything."""
    console = _console()
    failures: list[str] = []
    start = time.time()
    for done_here, spec in enumerate(specs):
        finished = total - len(specs) + done_here
        eta = ""
        if done_here:
            per_run = (time.time() - start) / done_here
            eta = f" · about {per_run * (len(specs) - done_here) / 60:.0f} min left"
        if progress:
            console.rule(f"[bold]run {finished + 1}/{total}[/] · {spec.key}{eta}")
        try:
            result = run_one(spec, progress=progress)
        except Exception as err:  # the study goes on
            result = err
        _outcome(spec, result, console, progress, failures)
    return failures


def _init_worker(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


def _run_parallel(specs: Sequence[RunSpec], total: int, progress: bool, jobs: int) -> list[str]:
    """Run ``jobs`` runs at once in worker processes, each with an equal share of the CPU threads: small
    models on a CPU use one thread poorly, so two one-thread runs on two cores finish in about the time of
    one two-thread run. A failing run is recorded and the others still run; Ctrl-C stops them all (each
    resumes from its last checkpoint on the next call)."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    console = _console()
    threads = max(1, (os.cpu_count() or 1) // jobs)
    failures: list[str] = []
    if progress:
        console.rule(f"[bold]{len(specs)} runs, {jobs} at a time ({threads} thread(s) each)[/]")
    pool = ProcessPoolExecutor(jobs, multiprocessing.get_context("spawn"), _init_worker, (threads,))
    try:
        futures = {pool.submit(run_one, spec, False): spec for spec in specs}
        for done_here, future in enumerate(as_completed(futures), 1):
            spec = futures[future]
            try:
                result = future.result()
            except Exception as err:  # the study goes on
                result = err
            _outcome(spec, result, console, progress, failures, f"[{total - len(specs) + done_here}/{total}] ")
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown()
    return failures


def _make_executor(kind: str, folder: Path, params: Mapping[str, Any]):
    try:
        import submitit
    except ImportError as err:  # pragma: no cover - submitit is a dependency
        raise StudyError(f"executor {kind!r} needs submitit ({err}); pip install submitit") from None
    cluster = "slurm" if kind == "slurm" else "local"
    try:
        executor = submitit.AutoExecutor(folder=folder, cluster=cluster)
        executor.update_parameters(**params)
    except (RuntimeError, NameError, ValueError, AssertionError) as err:
        raise StudyError(f"cannot set up the {kind} executor with parameters {dict(params)}: {err}") from None
    return executor


def _run_submitit(
    specs: Sequence[RunSpec], total: int, kind: str, folder: Path, params: Mapping[str, Any], progress: bool
) -> list[str]:
    """Submit one job per run, wait for all, return the failures (``key: error`` lines)."""
    executor = _make_executor(kind, folder, params)
    jobs = [(spec, executor.submit(run_one, spec, False)) for spec in specs]
    for spec, job in jobs:  # for the user: which job (and log) belongs to which run folder
        Path(spec.run_dir).mkdir(parents=True, exist_ok=True)
        write_json({"job_id": str(job.job_id), "executor": kind, "stderr": str(job.paths.stderr)},
                   Path(spec.run_dir) / "job.json")  # fmt: skip
    console = _console()
    console.print(f"submitted {len(jobs)} {kind} job(s); logs in {folder}")
    failures: list[str] = []
    pending = list(jobs)
    try:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
        with Progress(*columns, console=console, disable=not progress) as bar:
            task = bar.add_task("study runs", total=total, completed=total - len(specs))
            while pending:
                for spec, job in list(pending):
                    if not job.done():
                        continue
                    pending.remove((spec, job))
                    try:
                        job.result()
                    except Exception as err:  # the job's traceback is in its log files
                        failures.append(f"{spec.key}: {type(err).__name__}: {str(err).strip().splitlines()[-1]} "
                                        f"(log: {job.paths.stderr})")  # fmt: skip
                    bar.advance(task)
                if pending:
                    time.sleep(POLL_SECONDS)
    except KeyboardInterrupt:
        for _, job in pending:
            job.cancel(check=False)
        raise
    return failures


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
    report: str | Path | None = None,
    variants: Sequence[str] | None = None,
    jobs: int = 1,
) -> Path:
    """Run every variant × seed of a study (skipping finished runs, resuming interrupted ones) and write
    its report. Returns the report folder (``index.md`` inside).

    ``seeds``: a number (seeds 0..n-1) or a list, instead of the preset's; ``data``: the data set root for
    presets that take one; ``out``: the runs root (default ``runs/studies/<preset>``), runs go to
    ``OUT/<study>/<variant>/seed<k>/``; ``executor``: ``local``, ``slurm`` or ``submitit-local``;
    ``slurm``: submitit parameters added to the preset's; ``report``: the report folder (default
    ``reports/<study>-<preset>``); ``variants``: run only these (the report covers every finished run);
    ``jobs``: with the local executor, how many runs train at once (worker processes sharing the CPU
    threads, or the one GPU).
    """
    from vsr.reports import write_report

    if executor not in EXECUTORS:
        raise StudyError(f"unknown executor {executor!r}; choose one of {', '.join(EXECUTORS)}")
    if not isinstance(jobs, int) or jobs < 1 or (jobs > 1 and executor != "local"):
        raise StudyError(
            f"jobs={jobs!r}: runs at once must be a whole number >= 1, and > 1 only with the local executor "
            "(Slurm and submitit run every run as its own job already)"
        )
    study = load_study(name_or_path)
    p = study.preset(preset)
    out = Path(out) if out is not None else Path("runs") / "studies" / preset
    study_dir = out / study.name
    specs = plan_runs(study, preset, out, seeds=seeds, data=data, device=device, variants=variants)
    study_dir.mkdir(parents=True, exist_ok=True)
    write_json(
        study.to_dict() | {"preset": preset, "seeds": sorted({s.seed for s in specs}), "runs": [s.key for s in specs]},
        study_dir / STUDY_FILE,
    )
    for spec in specs:
        check_run_folder(spec)
    pending = [s for s in specs if not run_finished(s.run_dir)]
    console = _console()
    if progress:
        count = len({s.variant for s in specs})
        console.print(
            f"study [bold]{study.name}[/] ({preset}): {count} variants × {len(specs) // count} seeds = "
            f"{len(specs)} runs, {len(specs) - len(pending)} finished"
        )
    failures: list[str] = []
    if pending:
        _check_data(pending)
        if executor == "local" and jobs > 1 and len(pending) > 1:
            failures = _run_parallel(pending, len(specs), progress, min(jobs, len(pending)))
        elif executor == "local":
            failures = _run_local(pending, len(specs), progress)
        else:
            params = {"name": f"vsr-{study.name}", **p.slurm, **(slurm or {})}
            if p.gpus_per_run > 1:
                params.setdefault("gpus_per_node", p.gpus_per_run)
            failures = _run_submitit(pending, len(specs), executor, study_dir / "_submitit", params, progress)
    report_dir = Path(report) if report is not None else Path("reports") / f"{study.name}-{preset}"
    if any(run_finished(s.run_dir) for s in specs):
        write_report([study_dir], report_dir, title=study.title or None)
        if progress:
            console.print(f"report: [bold]{report_dir / 'index.md'}[/]")
    if failures:
        raise StudyError(
            f"{len(failures)} run(s) of study {study.name!r} failed (the report covers the finished ones); "
            "fix the cause and rerun the same command to resume them:\n  " + "\n  ".join(failures)
        )
    return report_dir


__all__ = [
    "EXECUTORS",
    "METRICS",
    "Expectation",
    "Preset",
    "RunSpec",
    "Study",
    "StudyError",
    "Variant",
    "data_overrides",
    "load_study",
    "parse_study",
    "plan_runs",
    "run_one",
    "run_study",
    "shipped_studies",
    "torchrun_command",
]
