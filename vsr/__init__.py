"""vsr: video super-resolution research as composable parts (BasicVSR, IconVSR and their ablations).

The public names below are imported on first use (PEP 562), so that ``import vsr`` and the ``vsr`` command's
``--help`` load neither torch nor PyAV; ``vsr.build_model`` then imports :mod:`vsr.model` as usual.
"""

import os

# Spin-waiting OpenMP threads stall CPU training badly when another process shares the cores (a tiny
# model's forward pass took 36x longer on 2 busy cores). Must be set before torch loads its OpenMP runtime.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import importlib
import sys
import types

from vsr.errors import CheckpointError, DataError, RecipeError, VideoError, VSRError

__version__ = "0.1.0"

#: Public name -> the module that defines it.
_LAZY = {
    "build_model": "vsr.model",
    "VideoSRNet": "vsr.model",
    "load_checkpoint": "vsr.checkpoints",
    "save_checkpoint": "vsr.checkpoints",
    "Recipe": "vsr.recipe",
    "load_recipe": "vsr.recipe",
    "upscale": "vsr.upscale",
}


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module 'vsr' has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})


class _Package(types.ModuleType):
    """``vsr`` itself. Importing the submodule ``vsr.upscale`` would bind the package attribute ``upscale`` to
    that module; the public name is the function of the same name, so the binding is left to ``__getattr__``."""

    def __setattr__(self, name: str, value) -> None:
        if name in _LAZY and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package

__all__ = [
    "CheckpointError",
    "DataError",
    "Recipe",
    "RecipeError",
    "VSRError",
    "VideoError",
    "VideoSRNet",
    "__version__",
    "build_model",
    "load_checkpoint",
    "load_recipe",
    "save_checkpoint",
    "upscale",
]
