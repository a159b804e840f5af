"""Device handling for TensorFlow: which devices exist, what "auto" means, seeding."""

from __future__ import annotations

import tensorflow as tf


def list_devices() -> list[str]:
    gpus = tf.config.list_physical_devices("GPU")
    return ["cpu", *(f"gpu:{i}" for i in range(len(gpus)))]


def resolve_device(device: str = "auto") -> str:
    """A TensorFlow device string: ``"/GPU:0"`` for auto with a GPU, else ``"/CPU:0"``.

    ``cuda`` and ``cuda:N`` are accepted as synonyms of ``gpu`` and ``gpu:N``.
    """
    gpus = len(tf.config.list_physical_devices("GPU"))
    name = device.lower().replace("cuda", "gpu")
    if name == "auto":
        return "/GPU:0" if gpus else "/CPU:0"
    if name == "cpu":
        return "/CPU:0"
    kind, _, index = name.partition(":")
    if kind != "gpu" or (index and not index.isdigit()):
        raise ValueError(f"unknown device {device!r}; use auto, cpu, gpu or gpu:N")
    n = int(index or 0)
    if n >= gpus:
        raise ValueError(f"device {device!r} is not available: this machine has {gpus} GPU(s)")
    return f"/GPU:{n}"


def seed_everything(seed: int) -> None:
    """Seed Python, numpy and TensorFlow together."""
    tf.keras.utils.set_random_seed(seed)
