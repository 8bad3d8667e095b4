"""Where models run when the caller does not say: CUDA when it is available, else the CPU."""

from __future__ import annotations

import torch


def default_device(device: str | torch.device | None = None) -> torch.device:
    """``device``, or by default ``cuda`` when CUDA is available, else ``cpu``."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


__all__ = ["default_device"]
