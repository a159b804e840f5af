"""Observation batches in numpy: one array, or a dict of arrays for Dict spaces.

Windows hold observations as ``[T, N, ...]`` arrays (or dicts of them);
these helpers apply one operation to a plain array and a dict alike, and
every backend turns the result into its own tensors. Observations keep
their own dtype where that saves bytes: uint8 images stay uint8 (the
network scales them), Discrete and MultiDiscrete indices and MultiBinary
bits stay integers (the network one-hots the indices); floating
observations become float32. Replay buffers store a Dict observation as one
numpy record (``packed_window``, ``unpacked``), so it is stored once like
any other.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np

from optix_core.types import EpisodeData

Obs = np.ndarray | dict[str, np.ndarray]


def map_obs(fn: Callable[[Any], Any], obs: Any) -> Any:
    """``fn`` applied to every array of a (possibly Dict) observation batch."""
    if isinstance(obs, dict):
        return {k: fn(v) for k, v in obs.items()}
    return fn(obs)


def batch_size(obs: Any) -> int:
    """Rows in a batch of observations."""
    first = next(iter(obs.values())) if isinstance(obs, dict) else obs
    return int(first.shape[0])


def flatten_steps(obs: Any, n: int) -> Any:
    """``[T, N, ...]`` → ``[T·N, ...]``."""
    return map_obs(lambda a: np.asarray(a).reshape(n, *np.shape(a)[2:]), obs)


def concat(parts: list[Any]) -> Any:
    """Batches of observations, one after another."""
    if isinstance(parts[0], dict):
        return {k: np.concatenate([np.asarray(p[k]) for p in parts]) for k in parts[0]}
    return np.concatenate([np.asarray(p) for p in parts])


def select(obs: Any, index: Any) -> Any:
    """Rows ``index`` (a boolean mask, an index array or a slice) of a batch."""
    return map_obs(lambda a: a[index], obs)


def row_bytes(obs: Any) -> int:
    """Bytes of one observation."""
    arrays = obs.values() if isinstance(obs, dict) else [obs]
    return sum(int(np.asarray(a)[0].nbytes) for a in arrays)


def stack(samples: list[Any]) -> Any:
    if isinstance(samples[0], dict):
        return {k: np.stack([s[k] for s in samples]) for k in samples[0]}
    return np.stack(samples)


def seeded_copy(space: gym.Space) -> gym.Space:
    space = copy.deepcopy(space)
    space.seed(0)
    return space


# What every backend's default network reads (Dict: of these): Box as it is
# (pixels through a CNN), Discrete and MultiDiscrete one-hot, MultiBinary as floats.
READABLE = (gym.spaces.Box, gym.spaces.Discrete, gym.spaces.MultiDiscrete, gym.spaces.MultiBinary)


def one_hot_layout(space: gym.Space) -> tuple[np.ndarray, np.ndarray]:
    """For a Discrete or MultiDiscrete space: each component's number of values and
    its first value, flattened. One-hot features concatenate the components'
    one-hots, as Stable-Baselines3's ``preprocess_obs`` does."""
    if isinstance(space, gym.spaces.Discrete):
        return np.array([int(space.n)]), np.array([int(space.start)])
    return np.asarray(space.nvec).reshape(-1), np.asarray(space.start).reshape(-1)


def check_observation_space(space: gym.Space, owner: str) -> None:
    """Refuse observation spaces no default network reads, before any work starts."""
    if isinstance(space, gym.spaces.Dict):
        for key, sub in space.spaces.items():
            if isinstance(sub, gym.spaces.Dict):
                raise ValueError(f"{owner}: nested Dict observations are not supported ({key!r})")
            check_observation_space(sub, owner)
        return
    if not isinstance(space, READABLE):
        raise ValueError(
            f"{owner} reads Box, Discrete, MultiDiscrete, MultiBinary or Dict observations, "
            f"got {space}; wrap the environment to one of those (gymnasium.wrappers."
            "FlattenObservation makes a Box of a Tuple, one-hot for its Discrete parts), "
            "or build the agent with your own network"
        )


def packed_window(data: EpisodeData) -> EpisodeData:
    """The window with Dict observations packed into records (``pack``); others as they are."""
    if not isinstance(data.observations, dict):
        return data
    steps = data.rewards.shape  # [T, N]
    finals, after = data.final_observations, data.next_observations
    return EpisodeData(
        observations=pack(data.observations, steps),
        actions=data.actions,
        rewards=data.rewards,
        terminated=data.terminated,
        truncated=data.truncated,
        next_observations=None if after is None else pack(after, steps[1:]),
        final_observations=None if finals is None else pack(finals, steps),
    )


def pack(obs: dict[str, np.ndarray], batch: tuple[int, ...]) -> np.ndarray:
    """Dict observations with batch axes ``batch`` as one structured array shaped
    ``batch``: a record per observation, a field per key (sorted), each field in
    its storage dtype."""
    arrays = {k: np.asarray(obs[k]) for k in sorted(obs)}
    rank = len(batch)
    dtype = np.dtype([(k, storage_dtype(a.dtype), a.shape[rank:]) for k, a in arrays.items()])
    records = np.empty(batch, dtype=dtype)
    for key, array in arrays.items():
        records[key] = array
    return records


def unpacked(array: np.ndarray) -> Obs:
    """A structured array of ``pack`` back as a dict of arrays; any other array as it is."""
    if array.dtype.names is None:
        return array
    return {k: np.ascontiguousarray(array[k]) for k in array.dtype.names}


def storage_dtype(dtype: np.dtype) -> np.dtype:
    """Float observations are stored as float32; integer ones (pixels, indices) as they are."""
    return np.dtype(np.float32) if np.issubdtype(dtype, np.floating) else np.dtype(dtype)


def probe_samples(space: gym.Space, n: int = 2) -> Any:
    """``n`` observations from ``space`` as one batch, the same every call (seeded),
    so probing a network's shapes is repeatable."""
    space = seeded_copy(space)
    return stack([space.sample() for _ in range(n)])
