"""Device handling for PyTorch: which devices exist, what "auto" means, seeding."""

from __future__ import annotations

import random

import numpy as np
import torch


def list_devices() -> list[str]:
    return ["cpu", *(f"cuda:{i}" for i in range(torch.cuda.device_count()))]


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` is the first CUDA device when there is one, else the CPU.

    A CUDA device that is not there is an error, not a silent fall back to the
    CPU: a run that asked for a GPU and trains on the CPU wastes hours.
    """
    if isinstance(device, torch.device):
        device = str(device)
    if device == "auto":
        return torch.device("cuda:0" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError:
        raise ValueError(f"unknown device {device!r}; use auto, cpu, cuda or cuda:N") from None
    if resolved.type == "cuda":
        count = torch.cuda.device_count()
        index = 0 if resolved.index is None else resolved.index
        if index >= count:
            raise ValueError(
                f"device {device!r} is not available: this machine has {count} CUDA device(s)"
            )
        return torch.device("cuda", index)
    if resolved.type != "cpu":
        raise ValueError(f"device {device!r} is not supported; use auto, cpu, cuda or cuda:N")
    return resolved


def seed_everything(seed: int) -> None:
    """Seed Python, numpy and torch (every CUDA device included)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
