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
names a kind accepts (:func:`component_choices`), which arguments a recipe may give a component
(:func:`check_component`), and how to build one (:func:`build_component`).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from torch import nn

from vsr.errors import RecipeError

KINDS = ("flow", "propagation", "alignment", "aggregation", "upsampling", "refill")

#: The recipe name of "no component" in an optional kind (``refill: none``).
NONE = "none"


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


def check_component(kind: str, name: str, args: dict[str, Any]) -> type[nn.Module] | None:
    """The class of ``name`` of ``kind`` (``None`` for ``none``), once ``args`` are known to be a recipe's to set.

    An unknown name, an unknown argument or one the model wires fails with a :class:`RecipeError` naming the
    key and the valid choices.
    """
    cls = component_class(kind, name)
    if cls is None:
        if args:
            raise RecipeError(f"model.{kind}", name, f"'{name}' takes no arguments, got {sorted(args)}")
        return None
    wired = kind_spec(kind).wired
    allowed = sorted(component_arguments(cls, wired))
    for key, value in args.items():
        if key not in allowed:
            wired_by_model = f"the model sets this argument of {kind} '{name}', not the recipe"
            problem = wired_by_model if key in wired else f"not an argument of {kind} '{name}'"
            raise RecipeError(f"model.{kind}.{key}", value, problem, allowed)
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
    return cls(**args, **{k: v for k, v in wired.items() if k in accepted})
