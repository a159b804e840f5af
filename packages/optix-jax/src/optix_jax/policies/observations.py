"""Observations as JAX networks take them: one array, or a dict of arrays.

The numpy side is optix-core's ``optix_core.policies.observations``,
re-exported so an algorithm reads one module; this adds the crossing to JAX.
Floating observations become float32; uint8 images and integer indices cross
as they are (the network scales or one-hots them), bools as uint8.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

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
    "map_obs",
    "probe",
    "probe_batch",
    "select",
    "take",
    "to_jax",
]


def to_jax(obs: Any) -> Any:
    """One array per observation array: floating data as float32, integers as they are.

    JAX arrays (a compiled pipeline's window) stay where they are."""

    def convert(array: Any) -> jax.Array:
        if isinstance(array, jax.Array):
            return array if array.dtype != jnp.float64 else array.astype(jnp.float32)
        array = np.asarray(array)
        kind = array.dtype.kind
        if kind == "b":
            array = array.view(np.uint8)
        elif kind == "f":
            array = array.astype(np.float32, copy=False)
        elif array.dtype == np.int64:
            array = array.astype(np.int32)  # JAX's default integer width
        return jnp.asarray(array)

    return map_obs(convert, obs)


def take(obs: Any, index: jax.Array) -> Any:
    """Rows ``index`` of a batch of observation arrays (inside a jitted function)."""
    return jax.tree_util.tree_map(lambda a: a[index], obs)


def probe_batch(space: gym.Space, n: int = 2) -> Any:
    """``n`` observations from ``space`` (seeded, so probing is repeatable) as JAX arrays."""
    return to_jax(probe_samples(space, n))


def probe(module: Any, *inputs: Any) -> Any:
    """``module``'s outputs on ``inputs`` as shapes and dtypes (``jax.ShapeDtypeStruct``):
    checking a network's widths is an abstract evaluation and compiles nothing."""
    return nnx.eval_shape(lambda m, *xs: m(*xs), module, *inputs)
