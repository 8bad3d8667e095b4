"""vsr: video super-resolution research as composable parts (BasicVSR, IconVSR and their ablations)."""

import os

# Spin-waiting OpenMP threads stall CPU training badly when another process shares the cores (a tiny
# model's forward pass took 36x longer on 2 busy cores). Must be set before torch loads its OpenMP runtime.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


from vsr.checkpoints import load_checkpoint, save_checkpoint
from vsr.errors import CheckpointError, DataError, RecipeError, VideoError, VSRError
from vsr.model import VideoSRNet, build_model
from vsr.recipe import Recipe, load_recipe
from vsr.upscale import upscale

__version__ = "0.1.0"

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
