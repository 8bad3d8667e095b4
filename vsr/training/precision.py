"""Numerics of a run: the autocast dtype (``train.amp``) and the memory format (``train.channels_last``).
``auto`` means bf16 autocast and channels-last on CUDA, float32 and the default layout elsewhere."""

from __future__ import annotations

from typing import Any

import torch

from vsr.errors import RecipeError

_AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "bfloat16": torch.bfloat16, "fp16": torch.float16, "float16": torch.float16}


def parse_switch(value: Any, key: str) -> bool | None:
    """``auto`` -> None, else a bool from YAML booleans or on/off/true/false strings."""
    if isinstance(value, bool):
        return value
    text = str(value).lower()
    if text == "auto":
        return None
    if text in ("true", "on", "yes", "1"):
        return True
    if text in ("false", "off", "no", "0", "none"):
        return False
    raise RecipeError(key, value, "expected auto, true or false")


def autocast_dtype(amp: Any, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of ``train.amp``: ``auto`` is bf16 on CUDA and off elsewhere."""
    text = str(amp).lower() if not isinstance(amp, bool) else ("bf16" if amp else "off")
    if text == "auto":
        return torch.bfloat16 if device.type == "cuda" else None
    if text in ("off", "none", "false", "fp32"):
        return None
    if text not in _AUTOCAST_DTYPES:
        raise RecipeError("train.amp", amp, "unknown precision", ["auto", "bf16", "fp16", "off"])
    return _AUTOCAST_DTYPES[text]


def use_channels_last(channels_last: Any, device: torch.device) -> bool:
    """``train.channels_last``: ``auto`` is on for CUDA only."""
    choice = parse_switch(channels_last, "train.channels_last")
    return device.type == "cuda" if choice is None else choice


__all__ = ["autocast_dtype", "parse_switch", "use_channels_last"]
