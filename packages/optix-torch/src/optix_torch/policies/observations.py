"""Observations as torch networks take them: one tensor, or a dict of tensors.

The numpy side (windows, Dict records, checks) is optix-core's
``optix_core.policies.observations``, re-exported here so an algorithm
reads one module; this adds the crossing to torch. Floating observations
become float32 tensors; uint8 images and integer indices cross as they are
(the network scales or one-hots them), which saves bytes on the way.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import torch

from optix_core.policies.observations import (
    Obs,
    batch_size,
    check_observation_space,
    concat,
    flatten_steps,
    map_obs,
    pack,
    packed_window,
    probe_samples,
    row_bytes,
    select,
    stack,
    storage_dtype,
    unpacked,
)

__all__ = [
    "Obs",
    "ObsTensor",
    "batch_size",
    "check_observation_space",
    "concat",
    "flatten_steps",
    "index_select",
    "map_obs",
    "pack",
    "packed_window",
    "probe_batch",
    "row_bytes",
    "select",
    "stack",
    "storage_dtype",
    "to_tensor",
    "unpacked",
]

ObsTensor = torch.Tensor | dict[str, torch.Tensor]


def to_tensor(obs: Any, device: torch.device) -> ObsTensor:
    """One host-to-device copy per array; floating data as float32, integers as they are."""

    def convert(array: Any) -> torch.Tensor:
        array = np.asarray(array)
        kind = array.dtype.kind
        if kind == "b":
            array = array.view(np.uint8)
        return torch.as_tensor(array, dtype=torch.float32 if kind == "f" else None, device=device)

    return map_obs(convert, obs)


def index_select(obs: ObsTensor, index: torch.Tensor) -> ObsTensor:
    return map_obs(lambda t: t.index_select(0, index), obs)


def probe_batch(space: gym.Space, device: torch.device, n: int = 2) -> ObsTensor:
    """``n`` observations from ``space`` (seeded, so probing is repeatable) as tensors."""
    return to_tensor(probe_samples(space, n), device)
