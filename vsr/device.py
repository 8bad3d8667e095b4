"""Where models run when the caller does not say: CUDA when it is available, else the CPU."""

from __future__ import annotations

import torch

from vsr.errors import ArgumentError, brief_repr

EXAMPLES = "cpu, cuda, cuda:1, mps"


def default_device(device: str | torch.device | None = None) -> torch.device:
    """``device``, or by default ``cuda`` when CUDA is available, else ``cpu``.

    A name torch does not know (``banana``) and a CUDA device on a machine without CUDA (or without that
    GPU) fail with an :class:`~vsr.errors.ArgumentError` naming valid examples."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise ArgumentError(f"device {brief_repr(device)} is not a device; use e.g. {EXAMPLES}") from None
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise ArgumentError(f"device {resolved} was asked for but CUDA is not available here; use cpu")
        if resolved.index is not None and resolved.index >= torch.cuda.device_count():
            raise ArgumentError(
                f"device {resolved}: this machine has {torch.cuda.device_count()} GPU(s), "
                f"cuda:0 to cuda:{torch.cuda.device_count() - 1}"
            )
    return resolved


__all__ = ["default_device"]
