"""vsr: video super-resolution research as composable parts (BasicVSR, IconVSR and their ablations)."""

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
