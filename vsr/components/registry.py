"""The component registry: one plain dict of classes per kind, filled by a decorator.

Recipes name components (``alignment: feature``), never import paths. A new component joins by decorating
its class; ``vsr.model`` then builds it from a recipe without knowing it exists::

    from vsr.components import register

    @register("alignment", "my_alignment")
    class MyAlignment(FeatureAlignment): ...
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, TypeVar

from torch import nn

from vsr.errors import RecipeError

KINDS = ("flow", "propagation", "alignment", "aggregation", "upsampling", "refill")

REGISTRY: dict[str, dict[str, type[nn.Module] | None]] = {kind: {} for kind in KINDS}

T = TypeVar("T", bound=type)


def register(kind: str, name: str) -> Callable[[T], T]:
    """Class decorator: make ``cls`` available to recipes as ``<kind>: <name>``."""
    if kind not in REGISTRY:
        raise ValueError(f"unknown component kind {kind!r}; kinds are {', '.join(KINDS)}")

    def decorator(cls: T) -> T:
        existing = REGISTRY[kind].get(name)
        if existing is not None and existing is not cls:
            raise ValueError(f"{kind} component {name!r} is already registered to {existing.__qualname__}")
        REGISTRY[kind][name] = cls
        return cls

    return decorator


def component_class(kind: str, name: str) -> type[nn.Module] | None:
    """The class registered as ``name`` (``None`` for the registered 'none' choice of optional kinds)."""
    choices = REGISTRY[kind]
    if name not in choices:
        raise RecipeError(f"model.{kind}", name, f"unknown {kind} component", sorted(choices))
    return choices[name]


def component_arguments(cls: type, wired: set[str]) -> dict[str, inspect.Parameter]:
    """The constructor arguments a recipe may set: all but ``wired`` ones, which the model supplies."""
    params = inspect.signature(cls.__init__).parameters
    return {
        name: p
        for name, p in params.items()
        if name != "self" and name not in wired and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    }


def build_component(kind: str, name: str, args: dict[str, Any], **wired: Any) -> nn.Module | None:
    """Instantiate ``name`` of ``kind`` with recipe ``args`` plus the model-wired arguments ``wired``.

    Unknown or model-owned arguments fail with a :class:`RecipeError` naming the key and the valid choices.
    """
    cls = component_class(kind, name)
    if cls is None:
        if args:
            raise RecipeError(f"model.{kind}", name, f"'{name}' takes no arguments, got {sorted(args)}", [])
        return None
    allowed = component_arguments(cls, set(wired))
    for key in args:
        if key in wired:
            raise RecipeError(
                f"model.{kind}.{key}",
                args[key],
                "this argument is set by the model, not the recipe",
                sorted(allowed),
            )
        if key not in allowed:
            raise RecipeError(f"model.{kind}.{key}", args[key], f"not an argument of {kind} '{name}'", sorted(allowed))
    accepted = inspect.signature(cls.__init__).parameters
    return cls(**args, **{k: v for k, v in wired.items() if k in accepted})
