"""Study files: a base recipe per preset plus named variants (dotted recipe overrides), validated.

A study file (``studies/<name>.yaml``) names a base recipe per preset and the variants as lists of dotted
recipe overrides, e.g. the propagation ablation of BasicVSR (paper §3.1)::

    name: propagation
    base: bidirectional                  # differences are measured against this variant
    metrics: [psnr, ssim]                # registered metrics (vsr list); the first is the figures' metric
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
      - {better: bidirectional, worse: unidirectional, at: first, source: "Fig. 4: largest at early frames"}

An ordering with ``at: first`` (or ``last``) compares where along the clip a variant does well rather
than its average: each run's metric at that frame minus its clip average, so that how good a run is as a
whole cancels out (the paper's per-frame figures). ``at: segment_ends`` with ``segment_length: L`` looks at
the two frames on either side of each cut between consecutive L-frame segments, where a local (segment-wise)
model is cut off from its neighbours and the others are not (BasicVSR Fig. 3).

Presets: ``cpu`` runs tiny recipes on the embedded synthetic set in about half an hour on two cores;
``paper`` runs the full recipes on REDS (``--data`` is the REDS root; ``{data}`` in the preset's ``data``
is replaced by it). A variant may also be a mapping ``{overrides: [...], label: "...", presets: {cpu:
[...]}}`` for preset-specific overrides. Several GPUs per run: ``gpus_per_run: N`` in the preset; Slurm
parameters: its ``slurm`` mapping (e.g. ``{timeout_min: 4320, gpus_per_node: 1, slurm_partition: gpu}``).

Every run is also evaluated on the real-video set (:mod:`vsr.data.real`, written on first use): the report's
real-content columns. A preset's ``real_data`` turns that off (``false``) or names another copy of the set (a
data set mapping, e.g. ``{layout: real, root: /data/real}``); by default it is :data:`REAL_DATA`.

``metrics`` names any registered metric (:class:`vsr.metrics.Metric`; default ``[psnr, ssim]``): every run
is evaluated with them (added to its recipe's ``data.val_metrics`` where missing), and the report's tables,
figures and orderings take their labels, units and directions from the registry. ``imports: [my.module]``
imports the user's modules that register them (or the recipe's parts) before the file is validated.
``real_metrics`` (default: ``metrics``) are what the real-video set is scored with, entries as
``data.val_metrics`` takes them (a name or ``{name: niqe, frames: [0, 15, 29]}``): its low-quality clips have no
ground truth, and NIQE needs larger frames than the validation clips may have. An ordering with ``on: real``
compares the runs' scores on the real-video set (its ``metric`` one of ``real_metrics``, by default the first;
no ``at``).

A variant may use the final weights (``checkpoints/last.pth``) of another variant's run of the same seed; its
recipe is that variant's (the preset's and that variant's overrides), then its own overrides::

    variants:
      cleaning: []
      refined:   {evaluates: cleaning, overrides: [model.cleaning.refine_threshold=1.5]}
      chunked:   {evaluates: cleaning, overrides: [data.val_chunk_frames=10]}
      gan:       {starts_from: cleaning, overrides: [train.objective=realbasicvsr_gan]}

``evaluates: V`` is a test-time variant: it trains nothing, its run copies the training of V's run (as a shared
run's is copied) and is evaluated with its own recipe, which must build the same network as V's (only
evaluation-time overrides: refinement, chunking, ...; one of ``train`` or of the training data is refused).
``starts_from: V`` trains, from V's final weights (``train.init``, every parameter). V must be a variant that is
neither of these itself; these runs start once the others have finished.

The report of the :data:`SHIPPED_PRESET` is shipped in ``reports/<study>/``; ``vsr study NAME`` writes it
there by default, and every other preset's to ``reports/<study>-<preset>/`` (:meth:`Study.report_folder`).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from vsr.data.layouts import SPEC_KEYS, check_spec
from vsr.errors import RecipeError, VSRError
from vsr.metrics import metric_class
from vsr.recipe import Recipe, load_recipe, load_yaml, yaml_problem
from vsr.registry import build_entry, choices, entry, import_plugins
from vsr.shipped import search_path, yaml_by_name

#: The metrics of a study file without ``metrics`` (BasicSR's PSNR and SSIM); any registered metric may be named.
DEFAULT_METRICS = ("psnr", "ssim")
#: The preset whose report is shipped, in ``reports/<study>/``: the one that runs anywhere (CPU, embedded set),
#: and the one ``vsr study NAME`` runs by default.
SHIPPED_PRESET = "cpu"
#: Where reports go by default (relative to the working folder, like the runs): ``reports/<study>/``.
REPORTS_ROOT = Path("reports")
#: The paper's runtime protocol (10-frame 180×320 LR clip); a preset's ``profile`` mapping changes it.
PROFILE_DEFAULTS = {"frames": 10, "size": [180, 320], "repeats": 3, "warmup": 1}

_STUDY_KEYS = ("name", "title", "description", "base", "metrics", "real_metrics", "imports", "presets", "variants",
               "expect")  # fmt: skip
_PRESET_KEYS = (
    "recipe",
    "overrides",
    "seeds",
    "data",
    "needs_data",
    "slurm",
    "gpus_per_run",
    "profile",
    "description",
    "real_data",
)
#: The real-video set every run is evaluated on besides its validation set, unless its preset says otherwise.
REAL_DATA = {"layout": "real", "split": "gt"}
_PROFILE_KEYS = ("frames", "size", "repeats", "warmup")
_VARIANT_KEYS = ("overrides", "label", "description", "presets", "evaluates", "starts_from")
#: How a variant may use another's run: evaluate its final weights (no training), or train on from them.
SOURCE_KEYS = ("evaluates", "starts_from")
_EXPECT_KEYS = ("better", "worse", "paper", "metric", "source", "at", "segment_length", "on")
#: An ordering's ``on`` that compares the runs' scores on the real-video set (``None``: on the validation set).
REAL_SET = "real"
#: Where along the clip an ``at`` ordering looks: the first or the last frame of each validation clip, or the
#: frames on either side of each cut between its ``segment_length``-frame segments.
FRAME_POSITIONS = ("first", "last", "segment_ends")


class StudyError(VSRError):
    """A study file is malformed, or a study cannot run as asked. Names the file, the key and the fix."""


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
    real_data: Mapping[str, Any] | None = field(default_factory=lambda: dict(REAL_DATA))  # None: not evaluated


@dataclass(frozen=True)
class Variant:
    """One arm of the ablation: overrides on top of the preset's recipe (plus per-preset extras)."""

    name: str
    overrides: tuple[str, ...] = ()
    label: str = ""
    description: str = ""
    presets: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    evaluates: str | None = None  # a test-time variant: evaluates this variant's final weights, trains nothing
    starts_from: str | None = None  # trains from this variant's final weights

    def overrides_for(self, preset: str) -> tuple[str, ...]:
        return (*self.overrides, *self.presets.get(preset, ()))

    @property
    def source(self) -> str | None:
        """The variant whose run (of the same seed) this one uses the weights of, or None."""
        return self.evaluates or self.starts_from


@dataclass(frozen=True)
class Expectation:
    """An ordering the paper reports: ``better`` beats ``worse`` on ``metric`` (by ``paper`` if known); with
    ``at`` (``first``/``last``/``segment_ends``), ``better`` stands better against ``worse`` at those frames than
    over the clip."""

    better: str
    worse: str
    paper: float | None = None
    metric: str = "psnr"
    source: str = ""
    at: str | None = None
    segment_length: int | None = None  # with at: segment_ends
    on: str | None = None  # REAL_SET: compared on the real-video set; None: on the validation set


@dataclass(frozen=True)
class Study:
    """A validated study file (see the module docstring)."""

    name: str
    base: str
    presets: Mapping[str, Preset]
    variants: Mapping[str, Variant]
    metrics: tuple[str, ...] = DEFAULT_METRICS
    expect: tuple[Expectation, ...] = ()
    title: str = ""
    description: str = ""
    source: Path | None = None
    imports: tuple[str, ...] = ()
    real_metrics: tuple[str | Mapping[str, Any], ...] = DEFAULT_METRICS  # data.val_metrics entries, for real_data

    @property
    def real_metric_names(self) -> tuple[str, ...]:
        return tuple(entry("real_metrics", m)["name"] for m in self.real_metrics)

    def overrides(self, preset: str, variant: str) -> tuple[str, ...]:
        """The overrides of one variant's runs: the preset's, those of the variant it uses the weights of (if
        any), then its own."""
        v = self.variants[variant]
        used = self.variants[v.source].overrides_for(preset) if v.source else ()
        return (*self.preset(preset).overrides, *used, *v.overrides_for(preset))

    def report_folder(self, preset: str) -> Path:
        """Where ``vsr study`` writes the report of ``preset`` by default (:func:`report_folder`)."""
        return report_folder(self.name, preset)

    def preset(self, name: str) -> Preset:
        if name not in self.presets:
            raise StudyError(
                f"study {self.name!r} has no preset {name!r}; its presets: {', '.join(self.presets)}"
                f" (add presets.{name} to {self.source or 'the study file'})"
            )
        return self.presets[name]

    def recipe(self, preset: str, variant: str, seed: int = 0, data: str | Path | None = None) -> Recipe:
        """The resolved :class:`vsr.recipe.Recipe` of one run: the preset's recipe, its data sets (with ``data``
        for ``{data}``), :meth:`overrides` and ``train.seed``. (A ``starts_from`` variant's ``train.init``, a path in
        the runs folder, is set by :func:`vsr.studies.driver.plan_runs`.)"""
        p, v = self.preset(preset), self.variants[variant]
        # The preset's data sets first: a variant's override of one of their keys (data.train.degradation=bi)
        # changes the set the preset names, rather than being replaced by it.
        overrides: list[str | tuple[str, Any]] = list(data_overrides(self, p, data))
        overrides += self.overrides(preset, variant)
        overrides.append(("train.seed", int(seed)))
        overrides.append(("data.test", None))  # a study scores each run itself (vsr.studies.driver), on its own sets
        try:
            recipe = load_recipe(p.recipe, *overrides)
            if self.imports:  # the study's plugins travel with each run's recipe (to worker processes and jobs)
                raw = recipe.to_dict()
                raw["imports"] = list(dict.fromkeys([*raw.get("imports", []), *self.imports]))
                recipe = Recipe(raw, recipe.name, recipe.source)
            named = [entry("data.val_metrics", m)["name"] for m in recipe.data["val_metrics"]]
            missing = [m for m in self.metrics if m not in named]
            if missing:  # every run is evaluated with the study's metrics
                recipe = recipe.with_overrides([("data.val_metrics", [*recipe.data["val_metrics"], *missing])])
        except RecipeError as err:
            keys = ", ".join(f"variants.{name}" for name in dict.fromkeys([v.source or variant, variant]))
            raise StudyError(
                f"study {self.name!r}, preset {preset!r}, variant {variant!r}: {err} "
                f"(check presets.{preset}.overrides and {keys} in {self.source or 'the study file'})"
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
            "real_metrics": list(self.real_metric_names),
            "imports": list(self.imports),
            "variants": {
                v.name: {
                    "overrides": list(v.overrides),
                    "label": v.label,
                    "presets": {k: list(o) for k, o in v.presets.items()},
                    "evaluates": v.evaluates,
                    "starts_from": v.starts_from,
                }
                for v in self.variants.values()
            },
            "expect": [e.__dict__ for e in self.expect],
            "source": None if self.source is None else str(self.source),
        }


def report_folder(study: str, preset: str) -> Path:
    """The default report folder of a study's preset: ``reports/<study>`` for the :data:`SHIPPED_PRESET`
    (where its report is shipped, so that rerunning the study regenerates it in place), else
    ``reports/<study>-<preset>``."""
    return REPORTS_ROOT / (study if preset == SHIPPED_PRESET else f"{study}-{preset}")


def study_dirs() -> list[Path]:
    """Where study files are found by name: ``$VSR_STUDIES``, ``./studies``, then the source tree's."""
    return search_path("VSR_STUDIES", "studies")


def shipped_studies() -> dict[str, Path]:
    """The study files in :func:`study_dirs`, by name (an earlier folder's file wins)."""
    return yaml_by_name(study_dirs())


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


def run_seeds(preset: Preset, seeds: int | Sequence[int] | None) -> tuple[int, ...]:
    """The seeds to run: ``seeds`` (``--seeds``: a number n for seeds 0..n-1, or a list) or the preset's."""
    if seeds is None:
        return preset.seeds
    return _seeds("--seeds", "seeds", seeds if isinstance(seeds, int) else list(seeds))


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
    real_data = raw.get("real_data", True)
    if real_data is True:
        real_data = dict(REAL_DATA)
    elif real_data is not False:
        real_data = _check_keys(source, f"{where}.real_data", real_data, SPEC_KEYS)
        try:
            check_spec(real_data, f"{where}.real_data")
        except RecipeError as err:
            raise StudyError(f"study file {source}: {err}") from None
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
        real_data=real_data or None,
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
    used = {key: raw[key] for key in SOURCE_KEYS if raw.get(key) is not None}
    for key, value in used.items():
        if not isinstance(value, str) or not value:  # "" would read as no source: the variant would train
            raise _fail(source, f"{where}.{key}", value, "expected the name of another variant of this study")
    if len(used) > 1:
        raise _fail(source, f"{where}.starts_from", used["starts_from"], "a variant either evaluates another's "
                    "weights (no training) or trains from them: keep one of evaluates and starts_from")  # fmt: skip
    return Variant(
        name=name,
        overrides=_overrides(source, f"{where}.overrides", raw.get("overrides")),
        label=str(raw.get("label", "")),
        description=str(raw.get("description", "")),
        presets={k: _overrides(source, f"{where}.presets.{k}", v) for k, v in extra.items()},
        evaluates=used.get("evaluates"),
        starts_from=used.get("starts_from"),
    )


def _check_sources(source, variants: Mapping[str, Variant]) -> None:
    """Each ``evaluates`` / ``starts_from`` names another variant of the study, one that trains on its own."""
    for v in variants.values():
        if v.source is None:
            continue
        key = f"variants.{v.name}.{'evaluates' if v.evaluates else 'starts_from'}"
        if v.source == v.name:
            raise _fail(source, key, v.source, "a variant cannot use its own weights: name the variant whose final "
                        "weights it uses")  # fmt: skip
        if v.source not in variants:
            raise _fail(source, key, v.source, "not a variant of this study", list(variants))
        used = variants[v.source]
        if used.source is not None:
            how = "evaluates" if used.evaluates else "starts from"
            raise _fail(source, key, v.source, f"that variant itself {how} {used.source!r}: name a variant that "
                        "neither evaluates nor starts from another")  # fmt: skip


def _expectation(
    source, index: int, raw: Any, variants: Sequence[str], metrics: Sequence[str], real_metrics: Sequence[str]
) -> Expectation:
    where = f"expect[{index}]"
    if isinstance(raw, Mapping) and "on" not in raw:  # YAML 1.1 reads an unquoted key 'on' as true
        raw = {"on" if key is True else key: value for key, value in raw.items()}
    raw = _check_keys(source, where, raw, _EXPECT_KEYS)
    for key in ("better", "worse"):
        if raw.get(key) not in variants:
            raise _fail(source, f"{where}.{key}", raw.get(key), "not a variant of this study", variants)
    if raw["better"] == raw["worse"]:
        raise _fail(source, f"{where}.worse", raw["worse"], "an ordering compares two different variants")
    on = raw.get("on")
    if on not in (None, REAL_SET):
        raise _fail(source, f"{where}.on", on, "expected 'real' (compare on the real-video set) or no 'on' (on the "
                    "validation set)", [REAL_SET])  # fmt: skip
    if on == REAL_SET and raw.get("at") is not None:
        raise _fail(source, f"{where}.at", raw["at"], "an ordering on the real-video set compares clip averages: "
                    "remove 'at', or 'on: real'")  # fmt: skip
    named = real_metrics if on == REAL_SET else metrics
    metric = raw.get("metric", named[0])
    if metric not in named:
        which = "real_metrics (an ordering on: real)" if on == REAL_SET else "metrics"
        raise _fail(source, f"{where}.metric", metric, f"not one of the study's {which}", named)
    paper = raw.get("paper")
    if paper is not None and (isinstance(paper, bool) or not isinstance(paper, int | float)):
        raise _fail(
            source, f"{where}.paper", paper, "expected the paper's difference as a number, in the metric's unit"
        )
    at = raw.get("at")
    if at is not None and at not in FRAME_POSITIONS:
        raise _fail(source, f"{where}.at", at, "expected where along the clip the ordering holds", FRAME_POSITIONS)
    if at is not None and paper is not None:
        raise _fail(source, f"{where}.paper", paper, "the paper's number is a clip average: give it on an "
                    "ordering without 'at'")  # fmt: skip
    length = raw.get("segment_length")
    if at == "segment_ends" and (isinstance(length, bool) or not isinstance(length, int) or length < 2):
        raise _fail(source, f"{where}.segment_length", length, "at: segment_ends needs the segment length in "
                    "frames (an integer >= 2, e.g. the local variant's model.propagation.segment_length)")  # fmt: skip
    if at != "segment_ends" and length is not None:
        raise _fail(source, f"{where}.segment_length", length, "only an ordering at: segment_ends has segments; "
                    "remove segment_length or set at: segment_ends")  # fmt: skip
    return Expectation(raw["better"], raw["worse"], None if paper is None else float(paper), metric,
                       str(raw.get("source", "")), at, length, on)  # fmt: skip


def _real_metrics(source, value: Any, metrics: Sequence[str]) -> tuple[str | Mapping[str, Any], ...]:
    """``real_metrics``: entries as ``data.val_metrics`` takes them, each built once to check its arguments."""
    if value is None:
        return tuple(metrics)
    if not isinstance(value, list) or not value:
        raise _fail(source, "real_metrics", value, "expected a non-empty list of metrics, each a name or "
                    "{name: ..., <argument>: ...} as data.val_metrics takes them", choices("metric"))  # fmt: skip
    for i, item in enumerate(value):
        key = f"real_metrics[{i}]"
        try:
            name = entry(key, item)["name"]
        except RecipeError as err:
            raise _fail(source, key, item, err.problem) from None
        try:
            metric_class(name)
        except RecipeError:
            raise _fail(source, key, name, "not a registered metric", choices("metric")) from None
        try:
            build_entry("metric", key, item, crop_border=0, y_channel=False)
        except RecipeError as err:
            raise _fail(source, err.key, err.value, err.problem, err.choices) from None
    names = [entry("real_metrics", item)["name"] for item in value]
    if len(set(names)) < len(names):
        raise _fail(source, "real_metrics", names, "name each metric once")
    return tuple(value)


def parse_study(raw: Any, source: str | Path = "<study>") -> Study:
    """Validate a study mapping (the content of a study file); errors name the file and the key."""
    raw = _check_keys(source, "", raw, _STUDY_KEYS)
    name = raw.get("name", Path(str(source)).stem)
    if not isinstance(name, str) or not name or "/" in name:
        raise _fail(source, "name", name, "expected a non-empty name without '/' (it names the run folder)")
    imports = raw.get("imports") or []
    if not isinstance(imports, list):
        raise _fail(source, "imports", imports, "expected a list of module names, e.g. [my_package.my_parts]")
    try:
        import_plugins(imports)
    except RecipeError as err:
        raise StudyError(f"study file {source}: {err}") from None
    metrics = raw.get("metrics", list(DEFAULT_METRICS))
    if not isinstance(metrics, list) or not metrics or not all(isinstance(m, str) for m in metrics):
        raise _fail(source, "metrics", metrics, "expected a non-empty list of metric names", choices("metric"))
    for i, metric in enumerate(metrics):
        try:
            metric_class(metric)
        except RecipeError:
            raise _fail(source, f"metrics[{i}]", metric, "not a registered metric", choices("metric")) from None
    if len(set(metrics)) < len(metrics):
        raise _fail(source, "metrics", metrics, "name each metric once")
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
    _check_sources(source, variants)
    real_metrics = _real_metrics(source, raw.get("real_metrics"), metrics)
    real_names = [entry("real_metrics", item)["name"] for item in real_metrics]
    base = raw.get("base")
    if base not in variants:
        raise _fail(source, "base", base, "the base must be one of the variants", list(variants))
    expect_raw = raw.get("expect") or []
    if not isinstance(expect_raw, list):
        raise _fail(source, "expect", expect_raw, "expected a list of {better, worse, paper, source}")
    expect = tuple(_expectation(source, i, e, list(variants), metrics, real_names) for i, e in enumerate(expect_raw))
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
        imports=tuple(imports),
        real_metrics=real_metrics,
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
        raw = load_yaml(path.read_bytes().decode("utf-8"))  # refuses YAML aliases ("billion laughs")
    except UnicodeDecodeError:
        raise StudyError(f"study file {path} is not a text file (not UTF-8); a study is a YAML file") from None
    except yaml.YAMLError as err:
        raise StudyError(f"study file {path} is not valid YAML: {yaml_problem(err)}") from None
    return parse_study(raw, path)


def data_overrides(study: Study, preset: Preset, data: str | Path | None) -> list[tuple[str, Any]]:
    """The ``data.train`` / ``data.val`` overrides: the preset's ``data`` specs with ``{data}`` replaced by
    the ``--data`` path. Without ``--data`` a preset that ``needs_data`` is an error; the specs of the others
    apply to the embedded synthetic set (a ``root`` naming ``{data}`` is dropped), so that what they set
    besides the path (``degradation``, for example) holds for the plain ``vsr study NAME`` too."""
    if data is None:
        if preset.needs_data:
            raise StudyError(
                f"study {study.name!r}, preset {preset.name!r} needs --data PATH (the data set root; "
                f"presets.{preset.name}.data in {study.source or 'the study file'} says how it is used)"
            )
        if not preset.data:
            return []
    elif not preset.data:
        raise StudyError(
            f"study {study.name!r}, preset {preset.name!r} takes no --data: add presets.{preset.name}.data "
            "(train/val data set specs with {data} for the path) to the study file"
        )
    root = None if data is None else str(Path(data).expanduser().absolute())

    def fill(value: Any) -> Any:
        if isinstance(value, str):
            return value if root is None else value.replace("{data}", root)
        if isinstance(value, Mapping):
            embedded = root is None and "{data}" in str(value.get("root", ""))
            return {k: fill(v) for k, v in value.items() if not (embedded and k == "root")}
        if isinstance(value, list):
            return [fill(v) for v in value]
        return value

    return [(f"data.{split}", fill(copy.deepcopy(spec))) for split, spec in preset.data.items()]
