"""Observations as TensorFlow networks take them: one tensor, or a dict of tensors.

The numpy side is optix-core's ``optix_core.policies.observations``,
re-exported so an algorithm reads one module; this adds the crossing to
TensorFlow. Floating observations become float32; uint8 images and integer
indices cross as they are (the network scales or one-hots them).
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import tensorflow as tf

from optix_core.policies.observations import (
    batch_size,
    check_observation_space,
    concat,
    flatten_steps,
    map_obs,
    probe_samples,
    select,
)

__all__ = [
    "batch_size",
    "check_observation_space",
    "concat",
    "flatten_steps",
    "gather",
    "map_obs",
    "probe_batch",
    "select",
    "to_tensor",
]


def to_tensor(obs: Any) -> Any:
    """One tensor per array: floating data as float32, integers as they are (bools as uint8)."""

    def convert(array: Any) -> tf.Tensor:
        array = np.asarray(array)
        kind = array.dtype.kind
        if kind == "b":
            array = array.view(np.uint8)
        return tf.convert_to_tensor(array, dtype=tf.float32 if kind == "f" else None)

    return map_obs(convert, obs)


def gather(obs: Any, index: tf.Tensor) -> Any:
    """Rows ``index`` of a batch of observation tensors."""
    return tf.nest.map_structure(lambda t: tf.gather(t, index), obs)


def probe_batch(space: gym.Space, n: int = 2) -> Any:
    """``n`` observations from ``space`` (seeded, so probing is repeatable) as tensors."""
    return to_tensor(probe_samples(space, n))
