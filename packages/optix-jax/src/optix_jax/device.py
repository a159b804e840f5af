"""Device handling for JAX: which devices exist, what "auto" means, seeding."""

from __future__ import annotations

import random

import jax
import numpy as np


def list_devices() -> list[str]:
    return [f"{d.platform}:{d.id}" for d in jax.devices()] + (
        [] if jax.default_backend() == "cpu" else [f"cpu:{d.id}" for d in jax.devices("cpu")]
    )


def resolve_device(device: str = "auto") -> jax.Device:
    """``"auto"`` is JAX's default device; ``cpu``, ``gpu``/``cuda`` and ``gpu:N`` pick one."""
    name = device.lower().replace("cuda", "gpu")
    if name == "auto":
        return jax.devices()[0]
    kind, _, index = name.partition(":")
    if kind not in ("cpu", "gpu") or (index and not index.isdigit()):
        raise ValueError(f"unknown device {device!r}; use auto, cpu, gpu or gpu:N")
    try:
        devices = jax.devices(kind)
    except RuntimeError:
        raise ValueError(f"device {device!r} is not available: JAX sees no {kind}") from None
    n = int(index or 0)
    if n >= len(devices):
        raise ValueError(f"device {device!r} is not available: JAX sees {len(devices)} {kind}(s)")
    return devices[n]


def seed_everything(seed: int) -> jax.Array:
    """Seed Python and numpy, and return the root ``jax.random`` key for ``seed``."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    return jax.random.key(seed)
