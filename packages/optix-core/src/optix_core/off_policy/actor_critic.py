"""What the off-policy actor-critics (SAC, TD3) decide in numpy: action scaling and their checks.

Their networks act in (−1, 1); ``ActionScaler`` maps that to a Box's bounds
for the environment and recorded actions back for learning, in numpy, so
every backend stores and replays the same numbers.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import gymnasium as gym
import numpy as np

from optix_core.types import EpisodeData


class ActionScaler:
    """Maps the networks' (−1, 1) to a Box's bounds and back.

    Without a Box the actions stay in (−1, 1), as tensor-optix's agents did.
    """

    def __init__(self, action_dim: int, action_space: gym.Space | None = None) -> None:
        self.action_dim = action_dim
        self.shape: tuple[int, ...] = (action_dim,)
        self.dtype = np.dtype(np.float32)
        low = -np.ones(action_dim, dtype=np.float64)
        high = np.ones(action_dim, dtype=np.float64)
        if action_space is not None:
            low = np.asarray(action_space.low, dtype=np.float64).reshape(-1)
            high = np.asarray(action_space.high, dtype=np.float64).reshape(-1)
            self.shape = tuple(action_space.shape)
            self.dtype = np.dtype(action_space.dtype)
        self.low, self.high = low, high
        self.center = (high + low) / 2
        self.half = (high - low) / 2

    def to_env(self, unit: np.ndarray) -> np.ndarray:
        """``[N, A]`` actions in [−1, 1] → ``[N, *shape]`` actions inside the bounds."""
        actions = np.clip(self.center + self.half * unit, self.low, self.high)
        return actions.astype(self.dtype, copy=False).reshape(len(unit), *self.shape)

    def from_env(self, actions: np.ndarray) -> np.ndarray:
        """Recorded actions ``[..., *shape]`` → float32 ``[..., A]`` in [−1, 1]."""
        lead = actions.shape[: actions.ndim - len(self.shape)]
        flat = np.asarray(actions, dtype=np.float64).reshape(*lead, self.action_dim)
        return np.clip((flat - self.center) / self.half, -1.0, 1.0).astype(np.float32)

    def unit_window(self, data: EpisodeData) -> EpisodeData:
        """The window with its actions as the networks make them (``from_env``): replay
        keeps them so, and the critics learn on them."""
        return dataclasses.replace(data, actions=self.from_env(np.asarray(data.actions)))


def check_action_space(algorithm: str, action_space: gym.Space) -> None:
    """Refuse an action space the (−1, 1) actions cannot be scaled to."""
    if not isinstance(action_space, gym.spaces.Box):
        raise ValueError(f"{algorithm} acts on Box action spaces, got {action_space}")
    if not (np.all(np.isfinite(action_space.low)) and np.all(np.isfinite(action_space.high))):
        raise ValueError(
            f"{algorithm} scales its (−1, 1) actions to the Box bounds, which must be finite; "
            f"got {action_space} (wrap the environment with gymnasium's RescaleAction)"
        )


def action_size(action_dim: int | None, action_space: gym.Space | None, owner: str) -> int:
    """The action dimension, from ``action_dim`` or the Box; they must agree when both are given."""
    if action_space is not None:
        check_action_space(owner, action_space)
        size = int(np.prod(action_space.shape))
        if action_dim is not None and int(action_dim) != size:
            raise ValueError(
                f"{owner}: action_dim={action_dim} does not match the action space {action_space}"
            )
        return size
    if action_dim is None or int(action_dim) < 1:
        raise ValueError(f"{owner}: give action_dim (>= 1) or action_space")
    return int(action_dim)


def check_twin_critics(critic1: Any, critic2: Any, critics: Any, owner: str) -> None:
    """Insist on tensor-optix's two critics or one fused ``critics`` network, not both.

    Two critics must be two networks: one given twice would make the clipped
    double-Q target min(Q, Q) = Q, the overestimation it exists to curb.
    """
    if critics is not None:
        if critic1 is not None or critic2 is not None:
            raise ValueError(f"{owner}: give critic1 and critic2, or critics, not both")
        return
    if critic1 is None or critic2 is None:
        raise ValueError(f"{owner}: give both critic1 and critic2 (or one fused critics module)")
    if critic1 is critic2:
        raise ValueError(f"{owner}: critic1 and critic2 must be two networks, got the same one")
