"""One registry for every kind of part vsr assembles from names: the model's components and the losses,
degradations, metrics and objectives of training and evaluation.

Each kind's interface (an abstract base: ``vsr/components/<kind>.py`` for the model's components,
:class:`vsr.losses.Loss`, :class:`vsr.data.degradations.Degradation`, :class:`vsr.metrics.Metric`,
:class:`vsr.training.objectives.Objective`) is declared with :func:`declare_kind`, which records the
constructor arguments the code that builds the kind wires in (never the recipe) and whether ``none`` is a
valid choice. A part joins its kind by decorating its class; recipes then name it, and nothing else changes::

    from vsr.registry import register
    from vsr.losses import Loss

    @register("loss", "log_cosh")
    class LogCosh(Loss): ...

The arguments a recipe may give a part are its constructor's, less the wired ones; the values each allows
are :class:`Allowed` rules (:func:`integer`, :func:`number`, :func:`one_of`, ...) in the class attribute
``allowed_arguments``, else the type of its default. Recipe validation asks :func:`check`; the code that
builds a part calls :func:`build`. Both fail with a :class:`RecipeError` naming the recipe key, the value and
the valid choices.

The kinds are fixed (:data:`KINDS`); their parts are not: a kind's home module, which registers the shipped
parts, is imported the first time the kind is asked for, and :func:`import_plugins` imports a user's modules
(a recipe's ``imports:``, the commands' ``--import``) so that what they register is there before a recipe is
validated.
"""

from __future__ import annotations

import importlib
import inspect
import math
import os
import re
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from vsr.errors import ArgumentError, RecipeError, VSRError, brief_repr

#: The recipe name of "nothing" in an optional kind (``refill: none``).
NONE = "none"


@dataclass(frozen=True)
class Allowed:
    """The values a recipe key or component argument allows: ``test(value)``, and ``text`` saying which
    (completes "must be ...", e.g. "an integer >= 1")."""

    test: Callable[[Any], bool]
    text: str

    def __call__(self, value: Any) -> bool:
        return self.test(value)

    def __str__(self) -> str:
        return self.text


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return (_is_int(value) or isinstance(value, float)) and math.isfinite(value)


def integer(minimum: int, maximum: int | None = None) -> Allowed:
    """An integer from ``minimum`` (to ``maximum``, inclusive)."""
    text = f"an integer >= {minimum}" if maximum is None else f"an integer from {minimum} to {maximum}"
    return Allowed(lambda v: _is_int(v) and v >= minimum and (maximum is None or v <= maximum), text)


def number(minimum: float | None = None, above: float | None = None, below: float | None = None) -> Allowed:
    """A finite number ``>= minimum`` or ``> above``, and ``< below``."""
    parts = [f">= {minimum}" if minimum is not None else "", f"> {above}" if above is not None else "",
             f"< {below}" if below is not None else ""]  # fmt: skip
    return Allowed(
        lambda v: (
            _is_number(v)
            and (minimum is None or v >= minimum)
            and (above is None or v > above)
            and (below is None or v < below)
        ),
        " ".join(["a number", " and ".join(p for p in parts if p)]).strip(),
    )


def one_of(*values: Any) -> Allowed:
    return Allowed(lambda v: not isinstance(v, bool) and v in values, f"one of {', '.join(map(str, values))}")


def power_of_two(minimum: int = 2, maximum: int | None = None) -> Allowed:
    """A power of two from ``minimum`` (to ``maximum``, inclusive)."""
    most = f" and <= {maximum}" if maximum is not None else ""
    return Allowed(
        lambda v: _is_int(v) and v >= minimum and v & (v - 1) == 0 and (maximum is None or v <= maximum),
        f"a power of two >= {minimum} ({minimum}, {2 * minimum}, {4 * minimum}, ...){most}",
    )


def odd(minimum: int = 1) -> Allowed:
    return Allowed(lambda v: _is_int(v) and v >= minimum and v % 2 == 1, f"an odd integer >= {minimum}")


def optional(rule: Allowed) -> Allowed:
    """``None`` (YAML ``null``) or what ``rule`` allows."""
    return Allowed(lambda v: v is None or rule(v), f"null or {rule}")


def list_of(rule: Allowed, length: int | None = None, empty: bool = False) -> Allowed:
    """A list (or tuple) whose items ``rule`` allows: of ``length`` items, or non-empty unless ``empty``."""
    size = f"{length} items" if length is not None else "items" if empty else "one or more items"
    return Allowed(
        lambda v: (
            isinstance(v, (list, tuple))
            and (len(v) == length if length is not None else empty or len(v) > 0)
            and all(rule(item) for item in v)
        ),
        f"a list of {size}, each {rule}",
    )


STRING = Allowed(lambda v: isinstance(v, str), "a string")


def _like_default(default: Any) -> Allowed | None:
    """The rule of an argument without a declared one: the type of its default (none for a ``None`` default)."""
    if isinstance(default, bool):
        return Allowed(lambda v: isinstance(v, bool), "true or false")
    if isinstance(default, int):
        return Allowed(_is_int, "an integer")
    if isinstance(default, float):
        return Allowed(_is_number, "a number")
    if isinstance(default, str):
        return STRING
    if isinstance(default, (list, tuple)):
        return Allowed(lambda v: isinstance(v, (list, tuple)), "a list")
    return None


#: The model's component kinds, in the order a recipe lists them.
COMPONENT_KINDS = ("flow", "propagation", "alignment", "aggregation", "upsampling", "refill", "cleaning")

#: Every kind, with the module that declares its interface and registers its shipped parts.
HOMES: dict[str, str] = {
    **{kind: "vsr.components" for kind in COMPONENT_KINDS},
    "loss": "vsr.losses",
    "degradation": "vsr.data.degradations",
    "metric": "vsr.metrics",
    "objective": "vsr.training.objectives",
}
KINDS = tuple(HOMES)

#: Where a recipe names each kind (in messages; a loss or degradation is one item of a list there).
KEYS: dict[str, str] = {
    **{kind: f"model.{kind}" for kind in COMPONENT_KINDS},
    "loss": "train.losses",
    "degradation": "degradation",
    "metric": "metrics",
    "objective": "train.objective",
}


@dataclass(frozen=True)
class KindSpec:
    """What recipes and the code that builds parts know about one kind."""

    name: str
    interface: type  # the abstract base every part of the kind subclasses
    wired: tuple[str, ...] = ()  # constructor arguments the builder supplies, never the recipe
    optional: bool = False  # ``none`` is a valid choice, and builds nothing


KIND_SPECS: dict[str, KindSpec] = {}

REGISTRY: dict[str, dict[str, type]] = {kind: {} for kind in KINDS}

T = TypeVar("T", bound=type)


def _known(kind: str) -> None:
    if kind not in HOMES:
        raise ValueError(f"unknown kind {kind!r}; kinds are {', '.join(KINDS)}")


def declare_kind(kind: str, wired: tuple[str, ...] = (), optional: bool = False) -> Callable[[T], T]:
    """Class decorator on a kind's interface: record it, the arguments the builder ``wired`` into the kind's
    parts, and whether the kind is ``optional`` (``none`` builds nothing)."""
    _known(kind)

    def decorator(cls: T) -> T:
        KIND_SPECS[kind] = KindSpec(kind, cls, tuple(wired), optional)
        return cls

    return decorator


def kind_spec(kind: str) -> KindSpec:
    """The kind's spec, importing its home module (which declares it) on first use."""
    _known(kind)
    if kind not in KIND_SPECS:
        importlib.import_module(HOMES[kind])
    return KIND_SPECS[kind]


def register(kind: str, name: str) -> Callable[[T], T]:
    """Class decorator: make ``cls`` (a subclass of the kind's interface) available to recipes by ``name``."""
    spec = kind_spec(kind)
    if spec.optional and name == NONE:
        raise ValueError(f"{kind!r} is optional: {NONE!r} already means no {kind}")

    reserved_prefix = any(name.startswith(prefix) for prefix in getattr(spec.interface, "reserved_prefixes", ()))
    if name in getattr(spec.interface, "reserved_names", ()) or reserved_prefix:
        raise ValueError(f"{name!r} is a reserved name for a {kind} (it names a column or key of vsr's files)")

    def decorator(cls: T) -> T:
        if not (isinstance(cls, type) and issubclass(cls, spec.interface)):
            what = getattr(cls, "__qualname__", repr(cls))
            raise TypeError(f"{what} must subclass {spec.interface.__qualname__} to be a {kind}")
        missing = [attr for attr in _declared_class_attributes(spec.interface) if not hasattr(cls, attr)]
        if missing:
            raise TypeError(
                f"{cls.__qualname__} must set {', '.join(missing)} to be a {kind} (see {spec.interface.__qualname__})"
            )
        existing = REGISTRY[kind].get(name)
        reloaded = existing is not None and (existing.__module__, existing.__qualname__) == (
            cls.__module__,
            cls.__qualname__,
        )
        if existing is not None and existing is not cls and not reloaded:
            raise ValueError(
                f"{kind} {name!r} is already registered to {existing.__module__}.{existing.__qualname__}; "
                "choose another name"
            )
        REGISTRY[kind][name] = cls
        return cls

    return decorator


def _declared_class_attributes(interface: type) -> list[str]:
    """The class attributes an interface declares without a value (``label: ClassVar[str]``): each part sets them."""
    annotations = inspect.get_annotations(interface)
    return [name for name, kind in annotations.items() if "ClassVar" in str(kind) and not hasattr(interface, name)]


def choices(kind: str) -> list[str]:
    """The names a recipe may give ``kind``: every registered part, and ``none`` if the kind is optional."""
    spec = kind_spec(kind)
    return sorted([*REGISTRY[kind], *([NONE] if spec.optional else [])])


def lookup(kind: str, name: str, key: str | None = None) -> type | None:
    """The class registered as ``name`` (``None`` for ``none`` in an optional kind)."""
    if kind_spec(kind).optional and name == NONE:
        return None
    if name not in REGISTRY[kind]:
        what = f"{kind} component" if kind in COMPONENT_KINDS else kind
        raise RecipeError(key or KEYS[kind], name, f"unknown {what}", choices(kind))
    return REGISTRY[kind][name]


def arguments(cls: type, wired: tuple[str, ...]) -> dict[str, inspect.Parameter]:
    """The constructor arguments a recipe may set: all but ``wired`` ones, which the builder supplies."""
    params = inspect.signature(cls.__init__).parameters
    return {
        name: p
        for name, p in params.items()
        if name != "self" and name not in wired and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    }


def with_defaults(cls: type, args: dict[str, Any]) -> dict[str, Any]:
    """A part's recipe ``args`` completed with its constructor's defaults (for a class method that must
    know an argument the recipe may leave out, e.g. the propagation's layout)."""
    defaults = {
        name: p.default
        for name, p in inspect.signature(cls.__init__).parameters.items()
        if p.default is not inspect.Parameter.empty
    }
    return {**defaults, **args}


def check(kind: str, name: str, args: Mapping[str, Any], key: str | None = None) -> type | None:
    """The class of ``name`` of ``kind`` (``None`` for ``none``), once ``args`` are known to be a recipe's to set.

    An unknown name, an unknown argument or one the builder wires fails with a :class:`RecipeError` naming
    the key (``key``, default the kind's :data:`KEYS` entry) and the valid choices; a value its rule (the
    class's ``allowed_arguments``, else the type of its default) does not allow fails naming what is allowed;
    an argument without a default that the recipe does not give fails naming it.
    """
    key = key or KEYS[kind]
    cls = lookup(kind, name, key)
    if cls is None:
        if args:
            raise RecipeError(key, name, f"'{name}' takes no arguments, got {sorted(args)}")
        return None
    wired = kind_spec(kind).wired
    accepted = arguments(cls, wired)
    rules: dict[str, Allowed] = getattr(cls, "allowed_arguments", {})
    for arg, value in args.items():
        if arg not in accepted:
            wired_by_builder = f"vsr sets this argument of {kind} '{name}', not the recipe"
            problem = wired_by_builder if arg in wired else f"not an argument of {kind} '{name}'"
            raise RecipeError(f"{key}.{arg}", value, problem, sorted(accepted))
        rule = rules.get(arg) or _like_default(accepted[arg].default)
        if rule is not None and not rule(value):
            raise RecipeError(f"{key}.{arg}", value, f"must be {rule}")
    missing = [arg for arg, p in accepted.items() if p.default is p.empty and arg not in args]
    if missing:
        example = ", ".join(f"{arg}: ..." for arg in missing)
        problem = f"{kind} '{name}' needs {', '.join(missing)}: write {{name: {name}, {example}}}"
        raise RecipeError(key, {"name": name, **args}, problem)
    return cls


def build(kind: str, name: str, args: Mapping[str, Any], key: str | None = None, **wired: Any) -> Any:
    """Instantiate ``name`` of ``kind`` with recipe ``args`` plus the builder's ``wired`` arguments (exactly
    the kind's :attr:`KindSpec.wired`; a part may leave some out of its signature). ``none`` of an optional
    kind builds ``None``."""
    expected = kind_spec(kind).wired
    if set(wired) != set(expected):
        raise TypeError(f"{kind} parts are wired with {', '.join(expected) or 'nothing'}, got {sorted(wired)}")
    cls = check(kind, name, args, key)
    if cls is None:
        return None
    accepted = inspect.signature(cls.__init__).parameters
    try:
        return cls(**args, **{k: v for k, v in wired.items() if k in accepted})
    except ValueError as err:  # a combination no single rule catches, e.g. channels not divisible by groups
        raise RecipeError(key or KEYS[kind], {"name": name, **args}, f"cannot be built: {err}") from None


def entry(key: str, value: Any, extra: tuple[str, ...] = ()) -> dict[str, Any]:
    """A recipe's entry for a part, ``name`` or ``{name: ..., <argument>: ...}``, as a mapping with ``name``.
    ``extra`` are keys of the entry that are not the part's arguments (a loss's ``weight``)."""
    if isinstance(value, str):
        return {"name": value}
    if isinstance(value, Mapping) and isinstance(value.get("name"), str):
        return dict(value)
    shape = f"'name', {', '.join(repr(k) for k in extra)} and its arguments" if extra else "'name' and its arguments"
    raise RecipeError(key, value, f"write a name or a mapping with {shape}")


def split_entry(value: Mapping[str, Any], extra: tuple[str, ...] = ()) -> tuple[str, dict[str, Any]]:
    """``(name, arguments)`` of an :func:`entry`, leaving out its ``extra`` keys."""
    return value["name"], {k: v for k, v in value.items() if k != "name" and k not in extra}


def check_entry(kind: str, key: str, value: Any, extra: tuple[str, ...] = ()) -> dict[str, Any]:
    """A recipe entry of ``kind`` at ``key`` as an :func:`entry` mapping, its part and arguments checked."""
    item = entry(key, value, extra)
    check(kind, *split_entry(item, extra), key=key)
    return item


def build_entry(kind: str, key: str, value: Any, extra: tuple[str, ...] = (), **wired: Any) -> Any:
    """The part a recipe entry (:func:`entry`) names, built with the builder's ``wired`` arguments."""
    return build(kind, *split_entry(entry(key, value, extra), extra), key=key, **wired)


# --------------------------------------------------------------------------------------------------------
# Plugins: the user's modules, imported before a recipe is validated


def import_plugins(modules: Iterable[str], key: str = "imports") -> list[str]:
    """Import each dotted module name in ``modules`` (what it registers joins its kind) and return the names.

    The current folder is searched first, as ``python -m`` does, so a ``my_parts.py`` beside the recipe
    needs no installing. Processes that vsr starts (study jobs, spawned workers) import them again from the
    recipe they are given, which records its ``imports``. A name that is not a module name, or a module that
    fails to import, is one :class:`RecipeError` naming it (an :class:`ArgumentError` for ``--import``)."""
    names = list(modules)
    for name in names:
        if not isinstance(name, str) or not _MODULE_NAME.fullmatch(name):
            raise _plugin_error(key, name, "a plugin is a dotted module name, e.g. my_package.my_parts")
    if names and "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    for name in names:
        try:
            importlib.import_module(name)
        except Exception as err:  # any error of the user's module: one line, not its traceback
            problem = f"cannot import the plugin module: {type(err).__name__}: {err}"
            if isinstance(err, ModuleNotFoundError) and err.name is not None and name.startswith(err.name):
                problem += "; check that it is on PYTHONPATH (or in this folder)"
            raise _plugin_error(key, name, problem) from None
    return names


def require_plugins(modules: Iterable[str], what: str) -> list[str]:
    """The plugin modules named in a file vsr reads back (a checkpoint's recipe, a study's record), which must
    be imported already: vsr never imports a module because a file names it (a checkpoint from elsewhere
    would run code on loading, defeating its safe unpickling). Fails naming the ``--import`` to pass."""
    names = [str(name) for name in modules]
    missing = [name for name in names if name not in sys.modules]
    if missing:
        raise VSRError(
            f"{what} uses parts of the plugin module(s) {', '.join(missing)}, which vsr does not import for a file "
            f"it reads back: pass --import {missing[0]} (or name it in your recipe's imports:)"
        )
    return names


def _plugin_error(key: str, name: Any, problem: str) -> VSRError:
    """A recipe's ``imports`` item names its key; a command's ``--import`` its option."""
    if key.startswith("-"):
        return ArgumentError(f"{key} {brief_repr(name) if not isinstance(name, str) else name}: {problem}")
    return RecipeError(key, name, problem)


def registered() -> dict[str, list[str]]:
    """Every kind with the names a recipe may give it (plugins included): what ``vsr list`` prints."""
    return {kind: choices(kind) for kind in KINDS}


_MODULE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")
