"""Recipes: flat, self-contained YAML files that say what runs, validated on load.

A recipe has three sections. ``model`` names one component per kind (a name, or a mapping with ``name`` and
the component's arguments); ``data`` and ``train`` configure training and evaluation. Every key and its
default is written once, in :data:`DEFAULTS` below; a recipe states only what differs. Unknown keys,
components or arguments, and values out of range (:data:`RANGES`, and each component's own rules), fail
with a :class:`RecipeError` naming the key, the value and what is allowed.

Dotted overrides change one key: ``model.alignment=none`` (a new component, arguments reset),
``model.aggregation.num_blocks=10``, ``train.iterations=2000``; values are parsed as YAML (a number written
``5e-4`` is a float, as YAML 1.2 reads it, not the string PyYAML's YAML 1.1 makes of it). Recipe files and
values are read by :func:`load_yaml`, which refuses YAML aliases (a few hundred bytes of nested aliases
expand to billions of values) and files over :data:`MAX_YAML_BYTES`.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import yaml

from vsr.data.augmentation import MIRROR_CHOICES
from vsr.data.degradations import check_chain
from vsr.data.layouts import check_spec
from vsr.errors import RecipeError
from vsr.losses import check_losses
from vsr.registry import (
    COMPONENT_KINDS,
    REGISTRY,
    STRING,
    Allowed,
    check,
    check_entry,
    import_plugins,
    integer,
    list_of,
    number,
    optional,
    power_of_two,
    require_plugins,
)
from vsr.shipped import search_path, yaml_by_name

#: Every recipe key with its default. Component entries hold the reference choice.
DEFAULTS: dict[str, dict[str, Any]] = {
    "model": {
        "scale": 4,  # upsampling factor (a power of two)
        "channels": 64,  # width of the propagated features
        "flow": {"name": "spynet"},  # optical flow estimator (skipped when alignment needs no flow)
        "propagation": {"name": "bidirectional"},  # local | unidirectional | bidirectional | coupled | grid (++)
        "alignment": {"name": "feature"},  # none | image | feature | flow_guided_deformable (++)
        "aggregation": {"name": "residual", "num_blocks": 30},  # trunk of each branch
        "upsampling": {"name": "pixel_shuffle"},  # reconstruction of the HR frame
        "refill": {"name": "none"},  # none | edvr (IconVSR information-refill)
        "cleaning": {"name": "none"},  # none | residual (RealBasicVSR's cleaning module and dynamic refinement)
        "detect_mirror": True,  # reuse backward flows for mirror-extended clips (Vimeo-90K)
    },
    "data": {
        "train": None,  # training set: a path, or a mapping {layout, root, split, lr}; None = embedded set
        "val": None,  # validation set, same forms; None = the embedded set's validation split
        "test": None,  # sets the final weights are scored on too: {name: set (same forms), or null = the
        # validation set}; metrics and temporal gain into the run's test/<name>/ and its result.json
        "degradation": "bi",  # LR made on the fly for sets without an LR folder: a registered degradation or a
        # chain, e.g. [{name: bd, sigma: 0.8}, {name: gaussian_noise, sigma: 0.05}] (vsr.data.degradations)
        "num_frames": 15,  # frames per training clip
        "lr_patch": 64,  # LR crop size of training samples (GT crop = scale × this)
        "mirror": False,  # mirror-extend training clips: true (Vimeo-90K: 7 -> 14 frames, the degraded frames
        # repeated) | before_degradation (RealBasicVSR: the GT frames mirrored, then degraded) | false
        "hflip": True,
        "vflip": True,
        "transpose": True,
        "reverse": False,  # random temporal reversal
        "batch_size": 4,  # per process
        "workers": 2,  # DataLoader workers per process
        "val_max_frames": None,  # truncate validation clips (None = whole clips, as the papers do)
        "val_chunk_frames": None,  # restore validation clips in independent chunks of this many frames (None: whole)
        "val_y_channel": False,  # PSNR/SSIM on Y (Vimeo, Vid4, UDM10) or RGB (REDS4)
        "val_metrics": ["psnr", "ssim"],  # metrics of validation and vsr test: names or {name: ..., <args>}
        "val_crop_border": 0,
        "val_center_frame": False,  # Vimeo-90K-T protocol: metrics on the centre frame only
    },
    "train": {
        "iterations": 300000,
        "lr": 2.0e-4,
        "betas": [0.9, 0.99],
        "weight_decay": 0.0,
        "pretrained_lr_mult": 0.125,  # lr of the flow estimator and refill extractor, relative to lr
        "fix_iterations": 5000,  # pretrained modules (flow, refill extractor) frozen for this many steps
        "scheduler": "cosine_restart",  # cosine_restart | constant
        "periods": [300000],  # cosine restart periods (iterations)
        "restart_weights": [1.0],
        "eta_min": 1.0e-7,
        "losses": [{"name": "charbonnier", "weight": 1.0}],  # a weighted sum of registered losses (vsr list)
        "grad_clip": None,  # max gradient norm, None = off
        "amp": "auto",  # auto (bf16 on CUDA, off on CPU) | bf16 | fp16 | off
        "channels_last": "auto",  # auto (on CUDA) | true | false
        "compile": False,  # torch.compile the model
        "seed": 0,
        "log_every": 100,
        "val_every": 5000,
        "checkpoint_every": 5000,
        "init": None,  # a checkpoint (path or zoo name) to start from: weights only, non-strict by prefix
        "init_prefixes": None,  # only load these parameter prefixes from `init` (e.g. [flow.])
        "objective": "sr",  # a registered objective: sr (train the network) | flow (pretrain model.flow alone)
        "ema": None,  # decay of an exponential moving average of the weights (e.g. 0.999), used for validation
        # and saved as params_ema; None = off (as the reference recipes)
        "tensorboard": True,  # write TensorBoard event files (the log's numbers, validation images) in the run folder
    },
}

#: Keys with a fixed set of values: key -> (what the key chooses, the valid values). The code that
#: dispatches on each (scheduler, precision) is tested to accept exactly these.
CHOICES: dict[str, tuple[str, tuple[str, ...]]] = {
    "train.scheduler": ("scheduler", ("cosine_restart", "constant")),
    "train.amp": ("precision", ("auto", "bf16", "fp16", "off")),
    "train.channels_last": ("setting", ("auto", "true", "false")),
    "data.mirror": ("mirror", MIRROR_CHOICES),
}

#: The largest upscaling factor a recipe may ask for (``model.scale``).
MAX_SCALE = 16

#: The values each numeric (or list, or optional) key allows; a value outside fails naming the rule. A
#: component's arguments are checked by its own rules (``allowed_arguments``, see vsr.registry).
RANGES: dict[str, Allowed] = {
    # The upsampler doubles the size per stage; 16 (four stages, as far as published VSR goes) bounds the output:
    # a 180×320 frame at ×1024 would be 184320×327680 pixels, minutes of work before any memory fails.
    "model.scale": power_of_two(2, MAX_SCALE),
    "model.channels": integer(1),
    "data.train": Allowed(lambda v: v is None or isinstance(v, (str, dict)), "a path, a data set mapping or null"),
    "data.val": Allowed(lambda v: v is None or isinstance(v, (str, dict)), "a path, a data set mapping or null"),
    "data.num_frames": integer(1),
    "data.lr_patch": integer(1),
    "data.batch_size": integer(1),
    "data.workers": integer(0),
    "data.val_max_frames": optional(integer(1)),
    "data.val_chunk_frames": optional(integer(1)),
    "data.val_crop_border": integer(0),
    "train.iterations": integer(1),
    "train.lr": number(above=0),
    "train.betas": list_of(number(minimum=0, below=1), length=2),
    "train.weight_decay": number(minimum=0),
    "train.pretrained_lr_mult": number(minimum=0),
    "train.fix_iterations": integer(0),
    "train.periods": list_of(integer(1)),
    "train.restart_weights": list_of(number(minimum=0)),
    "train.eta_min": number(minimum=0),
    "train.grad_clip": optional(number(above=0)),
    "train.seed": integer(0, 2**32 - 1),  # numpy's seeds
    "train.log_every": integer(0),  # 0: off
    "train.val_every": integer(0),  # 0: only at the end
    "train.checkpoint_every": integer(0),  # 0: only at the end
    "train.init": optional(STRING),
    "train.init_prefixes": optional(list_of(STRING)),
    "train.ema": optional(number(minimum=0, below=1)),  # 0: the average is the latest weights
}

#: Keys of earlier versions, with the spelling that replaced them.
RENAMED: dict[str, str] = {
    "train.loss": "train.losses: [{name: <loss>, weight: 1.0}] (a weighted list of registered losses)",
    "train.charbonnier_eps": "train.losses: [{name: charbonnier, weight: 1.0, eps: <eps>}]",
}

#: Switches that YAML may also write as booleans (``amp: off`` parses as False).
BOOLEAN_SWITCHES = {"train.amp", "train.channels_last", "data.mirror"}

#: The largest recipe (or study) file read: a recipe is a page of YAML.
MAX_YAML_BYTES = 1 << 20

SECTIONS = tuple(DEFAULTS)
COMPONENT_KEYS = set(COMPONENT_KINDS)


def recipe_dirs() -> list[Path]:
    """Where shipped recipes are found by name: ``$VSR_RECIPES``, ``./recipes``, then the source tree's."""
    return search_path("VSR_RECIPES", "recipes")


def shipped_recipes() -> dict[str, Path]:
    """The recipe files in :func:`recipe_dirs`, by name (an earlier folder's file wins)."""
    return yaml_by_name(recipe_dirs())


class _NoAliasLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses aliases (``*name``): nested aliases make a "billion laughs" document
    that expands to more values than memory holds, and vsr's files never need them."""

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.composer.ComposerError(
                None, None, f"found the alias *{event.anchor} (YAML aliases are not allowed here: write the value out)",
                event.start_mark,
            )  # fmt: skip
        return super().compose_node(parent, index)


# PyYAML reads YAML 1.1, whose floats need a dot and a signed exponent: `5e-4` and `1e3` would be strings, and a
# recipe's `lr: 5e-4` would be refused as "not a float". Read the numbers YAML 1.2, JSON and Python write as floats.
_NoAliasLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float", re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"), list("-+0123456789")
)


def load_yaml(text: str) -> Any:
    """YAML text as Python values, like ``yaml.safe_load`` but refusing aliases (see :class:`_NoAliasLoader`)."""
    return yaml.load(text, Loader=_NoAliasLoader)  # a SafeLoader subclass


def yaml_problem(err: yaml.YAMLError) -> str:
    """What is wrong in a YAML document, in one line (with the line and column where known)."""
    if isinstance(err, yaml.MarkedYAMLError) and err.problem:
        mark = err.problem_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        return f"{err.problem}{where}"
    return str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__


def parse_value(text: str) -> Any:
    """A CLI value as YAML (``30`` -> int, ``true`` -> bool, ``[1, 2]`` -> list, ``none`` stays a string)."""
    return load_yaml(text) if text.strip() else ""


def _component_entry(key: str, value: Any) -> dict[str, Any]:
    if isinstance(value, str):
        return {"name": value}
    if isinstance(value, dict) and isinstance(value.get("name"), str):
        return dict(value)
    raise RecipeError(key, value, "a component is a name or a mapping with 'name' and its arguments")


class Recipe:
    """A validated recipe: ``model``, ``data`` and ``train`` sections with every default filled in.

    ``stored`` names the file a recipe was read back from (a checkpoint, a run folder): its ``imports`` are
    then not imported but must be already (:func:`vsr.registry.require_plugins`), since a file from elsewhere
    must not run code (see :func:`stored_recipe`)."""

    def __init__(
        self, raw: dict[str, Any], name: str = "recipe", source: Path | None = None, stored: str | None = None
    ):
        self.name, self.source, self.stored = name, source, stored
        self.imports = _import_plugins(raw, stored)
        self.sections = _validate(raw)

    @property
    def model(self) -> dict[str, Any]:
        return self.sections["model"]

    @property
    def data(self) -> dict[str, Any]:
        return self.sections["data"]

    @property
    def train(self) -> dict[str, Any]:
        return self.sections["train"]

    def to_dict(self) -> dict[str, Any]:
        imports = {"imports": list(self.imports)} if self.imports else {}
        return {"name": self.name, **imports, **copy.deepcopy(self.sections)}

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def with_imports(self, modules: Iterable[str]) -> Recipe:
        """This recipe with ``modules`` added to its ``imports`` (``--import``), so that its run records them."""
        raw = self.to_dict()
        raw["imports"] = list(dict.fromkeys([*self.imports, *modules]))
        return Recipe(raw, self.name, self.source, self.stored) if raw["imports"] else self

    def with_overrides(self, overrides: Iterable[str | tuple[str, Any]]) -> Recipe:
        raw = self.to_dict()
        for item in overrides:
            if isinstance(item, str):
                if "=" not in item:
                    raise RecipeError(item, None, "an override is written key=value, e.g. model.alignment=none")
                key, text = item.split("=", 1)
                key = key.strip()
                try:
                    value = parse_value(text)
                except yaml.YAMLError as err:
                    problem = f"not a valid YAML value ({yaml_problem(err)}); write e.g. 30, [1, 2] or '\"some text\"'"
                    raise RecipeError(key, text, problem) from None
            else:
                key, value = item
            _set_dotted(raw, key, value)
        return Recipe(raw, self.name, self.source, self.stored)

    def __repr__(self) -> str:
        return f"Recipe({self.name!r})"


def _set_dotted(raw: dict[str, Any], key: str, value: Any) -> None:
    parts = key.split(".")
    if parts[0] not in SECTIONS:
        raise RecipeError(key, value, "unknown section", SECTIONS)
    if len(parts) < 2:
        raise RecipeError(key, value, "name a key inside the section, e.g. model.alignment")
    node = raw.setdefault(parts[0], {})
    if parts[0] == "model" and parts[1] in COMPONENT_KEYS:
        if len(parts) == 2:  # a new component: its arguments start from its defaults
            node[parts[1]] = value if isinstance(value, dict) else {"name": value}
            return
        entry = node.setdefault(parts[1], dict(DEFAULTS["model"][parts[1]]))
        node[parts[1]] = entry = _component_entry(f"model.{parts[1]}", entry)
        node, parts = entry, parts[1:]
    for part in parts[1:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise RecipeError(key, value, f"'{part}' is not a mapping")
    node[parts[-1]] = value


def _import_plugins(raw: Any, stored: str | None) -> list[str]:
    """Import the recipe's ``imports`` (the user's modules that register parts) before it is validated; for a
    recipe read back from a file, check that they are imported already."""
    imports = raw.get("imports") if isinstance(raw, dict) else None
    if imports is None:
        return []
    if not isinstance(imports, list):
        raise RecipeError("imports", imports, "a list of module names, e.g. [my_package.my_parts]")
    return import_plugins(imports) if stored is None else require_plugins(imports, f"the recipe in {stored}")


def stored_recipe(raw: dict[str, Any], stored: str) -> Recipe:
    """A recipe that vsr wrote into a file (``stored`` names it: a checkpoint, a run folder) read back: spellings
    of earlier versions are translated (:data:`RENAMED`) and its plugins must be imported already."""
    raw = copy.deepcopy(raw)
    train = raw.get("train") if isinstance(raw.get("train"), dict) else {}
    if "loss" in train or "charbonnier_eps" in train:
        name, eps = train.pop("loss", "charbonnier"), train.pop("charbonnier_eps", 1e-12)
        term = {"name": name, "weight": 1.0} | ({"eps": eps} if name == "charbonnier" and eps != 1e-12 else {})
        train.setdefault("losses", [term])
    return Recipe(raw, str(raw.get("name", "recipe")), stored=stored)


def _validate(raw: dict[str, Any]) -> dict[str, dict[str, Any]]:
    if not isinstance(raw, dict):
        raise RecipeError("<recipe>", raw, "a recipe is a mapping with sections", SECTIONS)
    extra = set(raw) - set(SECTIONS) - {"name", "description", "imports"}
    if extra:
        raise RecipeError(sorted(extra)[0], raw[sorted(extra)[0]], "unknown section", SECTIONS)
    sections = copy.deepcopy(DEFAULTS)
    for section, defaults in DEFAULTS.items():
        given = raw.get(section) or {}
        if not isinstance(given, dict):
            raise RecipeError(section, given, "a section is a mapping of keys to values", sorted(defaults))
        for key, value in given.items():
            if f"{section}.{key}" in RENAMED:
                raise RecipeError(f"{section}.{key}", value, f"no longer a key; write {RENAMED[f'{section}.{key}']}")
            if key not in defaults:
                raise RecipeError(f"{section}.{key}", value, f"unknown key in '{section}'", sorted(defaults))
            if section == "model" and key in COMPONENT_KEYS:
                sections[section][key] = _validate_component(key, value)
            elif f"{section}.{key}" in PARTS:
                sections[section][key] = PARTS[f"{section}.{key}"](value, f"{section}.{key}")
            elif section == "data" and key in ("train", "val") and isinstance(value, dict):
                check_spec(value, f"data.{key}")
                sections[section][key] = value
            else:
                sections[section][key] = _validate_value(f"{section}.{key}", value, defaults[key])
    return sections


def _validate_metrics(value: Any, key: str) -> list[Any]:
    """``data.val_metrics``: a non-empty list of metric entries (registered names), each name once."""
    if not isinstance(value, list) or not value:
        raise RecipeError(key, value, "expected a non-empty list of metrics, e.g. [psnr, ssim]")
    names = [check_entry("metric", f"{key}[{i}]", item)["name"] for i, item in enumerate(value)]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise RecipeError(key, value, f"metric {repeated[0]!r} is named twice; name each metric once")
    return list(value)


def _validate_tests(value: Any, key: str) -> dict[str, Any] | None:
    """``data.test``: null, or a mapping of names (each names a folder) to data sets (a path, a data set mapping,
    or null: the validation set)."""
    from vsr.training.files import name_problem  # vsr.training imports this module

    if value is None:
        return None
    if not isinstance(value, dict) or not value:
        raise RecipeError(key, value, "expected a mapping of names to data sets, e.g. {real: {layout: real}}")
    for name, spec in value.items():
        problem = name_problem(name)
        if problem:
            raise RecipeError(f"{key}.{name}", spec, f"{problem}; each test set's name names its folder")
        if isinstance(spec, dict):
            check_spec(spec, f"{key}.{name}")
        elif spec is not None and not isinstance(spec, str):
            raise RecipeError(
                f"{key}.{name}", spec, "expected a path, a data set mapping, or null (the validation set)"
            )
    return dict(value)


def _validate_objective(value: Any, key: str) -> Any:
    check_entry("objective", key, value)
    return value


#: Keys whose values name registered parts, each with its check (``(value, key) -> value as stored``).
PARTS: dict[str, Callable[[Any, str], Any]] = {
    "data.degradation": check_chain,
    "data.test": _validate_tests,
    "data.val_metrics": _validate_metrics,
    "train.losses": check_losses,
    "train.objective": _validate_objective,
}


def _validate_value(key: str, value: Any, default: Any) -> Any:
    if default is None:
        _check_range(key, value, RANGES)
        return value
    if key in BOOLEAN_SWITCHES and isinstance(value, bool):
        return value
    if key in CHOICES and isinstance(value, str):  # also a switch whose default is a boolean (data.mirror)
        _check_choice(key, value, *CHOICES[key])
        return value
    expected = type(default)
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
        raise RecipeError(key, value, f"expected a {expected.__name__} like the default {default!r}")
    if key in CHOICES:
        _check_choice(key, value, *CHOICES[key])
    _check_range(key, value, RANGES)
    return value


def _check_range(key: str, value: Any, ranges: dict[str, Allowed], name: str | None = None) -> None:
    rule = ranges.get(name or key)
    if rule is not None and not rule(value):
        raise RecipeError(key, value, f"must be {rule}")


def _check_choice(key: str, value: Any, what: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise RecipeError(key, value, f"unknown {what}", sorted(choices))


def _validate_component(kind: str, value: Any) -> dict[str, Any]:
    entry = _component_entry(f"model.{kind}", value)
    check(kind, entry["name"], {k: v for k, v in entry.items() if k != "name"})
    return entry


def load_recipe(source: str | Path | dict | Recipe, *overrides: str | tuple[str, Any]) -> Recipe:
    """Load and validate a recipe from a path, a shipped recipe's name, a dict or a Recipe."""
    if isinstance(source, Recipe):
        recipe = source
    elif isinstance(source, dict):
        recipe = Recipe(source, str(source.get("name", "recipe")))
    else:
        path = Path(source)
        if not path.is_file():
            shipped = shipped_recipes()
            if str(source) not in shipped:
                raise RecipeError("<recipe>", str(source), "no such recipe file or shipped recipe", sorted(shipped))
            path = shipped[str(source)]
        raw = read_yaml_file(path, "recipe") or {}
        recipe = Recipe(raw, str(raw.get("name", path.stem)) if isinstance(raw, dict) else path.stem, path)
    return recipe.with_overrides(overrides) if overrides else recipe


def read_yaml_file(path: Path, what: str = "recipe") -> Any:
    """A YAML file's content; a file too large, not UTF-8 text or not valid YAML (or using aliases) fails with
    a :class:`RecipeError` naming it. ``what`` names the kind of file in the message."""
    size = path.stat().st_size
    if size > MAX_YAML_BYTES:
        problem = f"{size:,} bytes is too large for a {what} file (at most {MAX_YAML_BYTES:,}); is it the right file?"
        raise RecipeError(f"<{what}>", str(path), problem)
    try:
        return load_yaml(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as err:
        problem = (f"not a text file (byte {err.object[err.start]:#04x} at position {err.start} is not UTF-8); "
                   f"a {what} is a YAML text file")  # fmt: skip
        raise RecipeError(f"<{what}>", str(path), problem) from None
    except yaml.YAMLError as err:
        raise RecipeError(f"<{what}>", str(path), f"not valid YAML: {yaml_problem(err)}") from None


__all__ = [
    "DEFAULTS",
    "RANGES",
    "REGISTRY",
    "Recipe",
    "RecipeError",
    "load_recipe",
    "load_yaml",
    "parse_value",
    "read_yaml_file",
    "shipped_recipes",
]
