"""The component registry: what each kind is, and one plain dict of classes per kind, filled by a decorator.

Each kind's interface (the abstract base in ``vsr/components/<kind>.py``) is declared with
:func:`declare_kind`, which records the constructor arguments the model wires into the kind's components and
whether ``none`` (no component at all) is a valid choice. Recipes name components (``alignment: feature``),
never import paths. A new component joins by decorating its class; ``vsr.model`` then builds it from a
recipe without knowing it exists::

    from vsr.components import register

    @register("alignment", "my_alignment")
    class MyAlignment(FeatureAlignment): ...

Recipe validation (:mod:`vsr.recipe`) and model assembly (:mod:`vsr.model`) both ask this module: which
names a kind accepts (:func:`component_choices`), which arguments a recipe may give a component and which
values (:func:`check_component`), and how to build one (:func:`build_component`).

The values an argument allows are :class:`Allowed` rules (:func:`integer`, :func:`number`, :func:`one_of`,
...): a component declares them in its class attribute ``allowed_arguments``; an argument without a rule
must have the type of its default. :mod:`vsr.recipe` states its own keys' rules with the same helpers.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from torch import nn

from vsr.errors import RecipeError

KINDS = ("flow", "propagation", "alignment", "aggregation", "upsampling", "refill")

#: The recipe name of "no component" in an optional kind (``refill: none``).
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


def power_of_two(minimum: int = 2) -> Allowed:
    return Allowed(
        lambda v: _is_int(v) and v >= minimum and v & (v - 1) == 0,
        f"a power of two >= {minimum} ({minimum}, {2 * minimum}, {4 * minimum}, ...)",
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


@dataclass(frozen=True)
class KindSpec:
    """What the recipe and the model know about one kind of component."""

    name: str
    interface: type[nn.Module]  # the abstract base every component of the kind subclasses
    wired: tuple[str, ...] = ()  # constructor arguments the model supplies, never the recipe
    optional: bool = False  # ``none`` is a valid choice, and builds no module


KIND_SPECS: dict[str, KindSpec] = {}

REGISTRY: dict[str, dict[str, type[nn.Module]]] = {kind: {} for kind in KINDS}

T = TypeVar("T", bound=type)


def declare_kind(kind: str, wired: tuple[str, ...] = (), optional: bool = False) -> Callable[[T], T]:
    """Class decorator on a kind's interface: record it, the arguments the model ``wired`` into the kind's
    components, and whether the kind is ``optional`` (``none`` builds nothing)."""
    if kind not in KINDS:
        raise ValueError(f"unknown component kind {kind!r}; kinds are {', '.join(KINDS)}")

    def decorator(cls: T) -> T:
        KIND_SPECS[kind] = KindSpec(kind, cls, tuple(wired), optional)
        return cls

    return decorator


def kind_spec(kind: str) -> KindSpec:
    if kind not in KIND_SPECS:
        raise ValueError(f"unknown component kind {kind!r}; kinds are {', '.join(KINDS)}")
    return KIND_SPECS[kind]


def register(kind: str, name: str) -> Callable[[T], T]:
    """Class decorator: make ``cls`` (a subclass of the kind's interface) available to recipes as
    ``<kind>: <name>``."""
    spec = kind_spec(kind)
    if spec.optional and name == NONE:
        raise ValueError(f"{kind!r} is optional: {NONE!r} already means no {kind} component")

    def decorator(cls: T) -> T:
        if not issubclass(cls, spec.interface):
            raise TypeError(f"{cls.__qualname__} must subclass {spec.interface.__qualname__} to be a {kind} component")
        existing = REGISTRY[kind].get(name)
        if existing is not None and existing is not cls:
            raise ValueError(f"{kind} component {name!r} is already registered to {existing.__qualname__}")
        REGISTRY[kind][name] = cls
        return cls

    return decorator


def component_choices(kind: str) -> list[str]:
    """The names a recipe may give ``kind``: every registered component, and ``none`` if the kind is optional."""
    return sorted([*REGISTRY[kind], *([NONE] if kind_spec(kind).optional else [])])


def component_class(kind: str, name: str) -> type[nn.Module] | None:
    """The class registered as ``name`` (``None`` for ``none`` in an optional kind)."""
    if kind_spec(kind).optional and name == NONE:
        return None
    if name not in REGISTRY[kind]:
        raise RecipeError(f"model.{kind}", name, f"unknown {kind} component", component_choices(kind))
    return REGISTRY[kind][name]


def component_arguments(cls: type, wired: tuple[str, ...]) -> dict[str, inspect.Parameter]:
    """The constructor arguments a recipe may set: all but ``wired`` ones, which the model supplies."""
    params = inspect.signature(cls.__init__).parameters
    return {
        name: p
        for name, p in params.items()
        if name != "self" and name not in wired and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    }


def with_defaults(cls: type, args: dict[str, Any]) -> dict[str, Any]:
    """A component's recipe ``args`` completed with its constructor's defaults (for a class method that must
    know an argument the recipe may leave out, e.g. the propagation's layout)."""
    defaults = {
        name: p.default
        for name, p in inspect.signature(cls.__init__).parameters.items()
        if p.default is not inspect.Parameter.empty
    }
    return {**defaults, **args}


def check_component(kind: str, name: str, args: dict[str, Any]) -> type[nn.Module] | None:
    """The class of ``name`` of ``kind`` (``None`` for ``none``), once ``args`` are known to be a recipe's to set.

    An unknown name, an unknown argument or one the model wires fails with a :class:`RecipeError` naming the
    key and the valid choices; a value its rule (the class's ``allowed_arguments``, else the type of its
    default) does not allow fails naming what is allowed.
    """
    cls = component_class(kind, name)
    if cls is None:
        if args:
            raise RecipeError(f"model.{kind}", name, f"'{name}' takes no arguments, got {sorted(args)}")
        return None
    wired = kind_spec(kind).wired
    arguments = component_arguments(cls, wired)
    rules: dict[str, Allowed] = getattr(cls, "allowed_arguments", {})
    for key, value in args.items():
        if key not in arguments:
            wired_by_model = f"the model sets this argument of {kind} '{name}', not the recipe"
            problem = wired_by_model if key in wired else f"not an argument of {kind} '{name}'"
            raise RecipeError(f"model.{kind}.{key}", value, problem, sorted(arguments))
        rule = rules.get(key) or _like_default(arguments[key].default)
        if rule is not None and not rule(value):
            raise RecipeError(f"model.{kind}.{key}", value, f"must be {rule}")
    return cls


def build_component(kind: str, name: str, args: dict[str, Any], **wired: Any) -> nn.Module | None:
    """Instantiate ``name`` of ``kind`` with recipe ``args`` plus the model-wired arguments ``wired`` (exactly
    the kind's :attr:`KindSpec.wired`; a component may leave some out of its signature). ``none`` of an
    optional kind builds ``None``."""
    expected = kind_spec(kind).wired
    if set(wired) != set(expected):
        raise TypeError(f"{kind} components are wired with {', '.join(expected) or 'nothing'}, got {sorted(wired)}")
    cls = check_component(kind, name, args)
    if cls is None:
        return None
    accepted = inspect.signature(cls.__init__).parameters
    try:
        return cls(**args, **{k: v for k, v in wired.items() if k in accepted})
    except ValueError as err:  # a combination no single rule catches, e.g. channels not divisible by groups
        raise RecipeError(f"model.{kind}", {"name": name, **args}, f"cannot be built: {err}") from None
