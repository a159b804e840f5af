"""Hindsight Experience Replay (Andrychowicz et al. 2017) for goal-conditioned dict observations.

A failed episode still shows how to reach the goals it did achieve. HER stores
each episode once and, at sampling time, replaces the desired goal of a
fraction ``k / (k + 1)`` of the sampled transitions with a goal achieved in the
same episode, recomputing the reward for it (section 3.3, Algorithm 1). Goals
are chosen by one of the paper's strategies (section 4.5):

- ``future``: the goal achieved after a random step ``t' >= t`` of the episode;
- ``final``: the goal achieved at the episode's end;
- ``episode``: the goal achieved after a random step of the episode.

Relabelling at sampling time (rather than storing ``k`` copies) keeps memory
at one row per step and draws fresh goals every time a transition is replayed.

Observations follow gymnasium's GoalEnv convention: dicts with
``observation``, ``achieved_goal`` and ``desired_goal``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, DTypeLike

from optix_core.buffers.replay import (
    FieldSpec,
    NotEnoughTransitionsError,
    ReplayBuffer,
    ReplayBufferError,
    TransitionFieldsError,
    TransitionShapeError,
)

STRATEGIES = ("future", "final", "episode")
_OBS_KEYS = ("observation", "achieved_goal", "desired_goal")

GoalFn = Callable[[np.ndarray, np.ndarray], np.ndarray]


class HERStrategyError(ReplayBufferError):
    """An unknown relabelling strategy, or a negative ``k``."""


class EpisodeTooLongError(ReplayBufferError):
    """An episode did not end within ``max_episode_length`` steps, or does not fit the buffer."""


class HERReplayBuffer:
    """Whole episodes of goal-conditioned transitions, relabelled with achieved goals when sampled.

    ``compute_reward(achieved_goal, desired_goal)`` and the optional
    ``compute_terminated(achieved_goal, desired_goal)`` work on batches
    (``[B, *goal_shape]`` each) and return ``[B]`` arrays; with a
    gymnasium-robotics env pass ``lambda a, d: env.unwrapped.compute_reward(a, d, None)``.
    Without ``compute_terminated`` a relabelled transition keeps the
    ``terminated`` flag it was stored with.

    Steps arrive through ``add`` (one row per env column, ``n_envs`` columns)
    and are staged per column until the episode ends; only complete episodes
    are sampled. When new episodes overwrite the oldest, an episode whose
    beginning was overwritten stops being sampled. ``save`` keeps the
    complete episodes; steps of episodes still running are not saved.
    """

    def __init__(
        self,
        capacity: int,
        observation_shape: tuple[int, ...],
        goal_shape: tuple[int, ...],
        action_shape: tuple[int, ...] = (),
        *,
        compute_reward: GoalFn,
        compute_terminated: GoalFn | None = None,
        strategy: str = "future",
        k: int = 4,
        max_episode_length: int,
        n_envs: int = 1,
        observation_dtype: DTypeLike = np.float32,
        goal_dtype: DTypeLike = np.float32,
        action_dtype: DTypeLike = np.float32,
        seed: int | np.random.Generator | None = None,
    ) -> None:
        if strategy not in STRATEGIES:
            raise HERStrategyError(
                f"unknown HER strategy {strategy!r}; expected one of {list(STRATEGIES)}"
            )
        if int(k) < 0:
            raise HERStrategyError(f"k (relabelled goals per real one) must be >= 0, got {k}")
        if int(max_episode_length) < 1 or int(max_episode_length) > int(capacity):
            raise EpisodeTooLongError(
                f"max_episode_length must lie in [1, capacity={capacity}], got {max_episode_length}"
            )
        if int(n_envs) < 1:
            raise ReplayBufferError(f"n_envs must be at least 1, got {n_envs}")
        self.strategy = strategy
        self.k = int(k)
        self.relabel_fraction = self.k / (self.k + 1)
        self.compute_reward = compute_reward
        self.compute_terminated = compute_terminated
        self.max_episode_length = int(max_episode_length)
        self.n_envs = int(n_envs)
        obs = FieldSpec.of((observation_shape, observation_dtype))
        goal = FieldSpec.of((goal_shape, goal_dtype))
        self.fields: dict[str, FieldSpec] = {
            "observations": obs,
            "achieved_goals": goal,
            "desired_goals": goal,
            "actions": FieldSpec.of((action_shape, action_dtype)),
            "rewards": FieldSpec((), np.dtype(np.float32)),
            "next_observations": obs,
            "next_achieved_goals": goal,
            "terminated": FieldSpec((), np.dtype(np.bool_)),
        }
        # Each stored row also knows its episode: where it starts and how long
        # it is (0 once part of the episode has been overwritten).
        self._store = ReplayBuffer(
            capacity,
            {
                **self.fields,
                "episode_starts": FieldSpec((), np.dtype(np.int64)),
                "episode_lengths": FieldSpec((), np.dtype(np.int64)),
            },
            seed=seed,
        )
        self.rng = self._store.rng
        self._stage = {
            name: np.zeros((self.n_envs, self.max_episode_length, *s.shape), s.dtype)
            for name, s in self.fields.items()
        }
        self._stage_len = np.zeros(self.n_envs, dtype=np.int64)
        self._n_valid = 0

    @property
    def capacity(self) -> int:
        return self._store.capacity

    def __len__(self) -> int:
        """Transitions of complete episodes that can be sampled."""
        return self._n_valid

    @property
    def nbytes(self) -> int:
        return self._store.nbytes + sum(a.nbytes for a in self._stage.values())

    # -- writing -------------------------------------------------------------

    def _step_fields(
        self,
        observations: Mapping[str, ArrayLike],
        actions: ArrayLike,
        rewards: ArrayLike,
        next_observations: Mapping[str, ArrayLike],
        terminated: ArrayLike,
    ) -> dict[str, Any]:
        for name, d in (("observations", observations), ("next_observations", next_observations)):
            missing = [key for key in _OBS_KEYS if key not in d]
            if missing and not (name == "next_observations" and missing == ["desired_goal"]):
                raise TransitionFieldsError(
                    f"{name} lacks the keys {missing}; goal-conditioned observations are dicts "
                    f"with {list(_OBS_KEYS)}"
                )
        return {
            "observations": observations["observation"],
            "achieved_goals": observations["achieved_goal"],
            "desired_goals": observations["desired_goal"],
            "actions": actions,
            "rewards": rewards,
            "next_observations": next_observations["observation"],
            "next_achieved_goals": next_observations["achieved_goal"],
            "terminated": terminated,
        }

    def _validate(self, values: dict[str, Any]) -> tuple[dict[str, np.ndarray], int]:
        # The bookkeeping fields are the buffer's to fill: placeholders shaped like rewards.
        shape = np.shape(values["rewards"])
        bookkeeping = {
            "episode_starts": np.zeros(shape, np.int64),
            "episode_lengths": np.zeros(shape, np.int64),
        }
        batch, n = self._store._validate({**values, **bookkeeping})
        del batch["episode_starts"], batch["episode_lengths"]
        return batch, n

    def add(
        self,
        observations: Mapping[str, ArrayLike],
        actions: ArrayLike,
        rewards: ArrayLike,
        next_observations: Mapping[str, ArrayLike],
        terminated: ArrayLike,
        truncated: ArrayLike,
    ) -> None:
        """Take one step of every env column (``[n_envs, ...]`` arrays, or unbatched for one env).

        A column whose episode ends (terminated or truncated) has its episode
        written to the buffer; ``next_observations`` must then hold that
        episode's real final observation.
        """
        batch, n = self._validate(
            self._step_fields(observations, actions, rewards, next_observations, terminated)
        )
        if n != self.n_envs:
            raise TransitionShapeError(
                f"got {n} transitions, expected one per env column ({self.n_envs})"
            )
        trunc = np.asarray(truncated, dtype=bool).reshape(-1)
        if trunc.shape != (self.n_envs,):
            raise TransitionShapeError(
                f"truncated has {trunc.size} entries, expected one per env column ({self.n_envs})"
            )
        full = self._stage_len >= self.max_episode_length
        if full.any():
            raise EpisodeTooLongError(
                f"the episode in env column {int(np.flatnonzero(full)[0])} passed "
                f"max_episode_length={self.max_episode_length} without ending; raise max_episode_length"
            )
        cols = np.arange(self.n_envs)
        for name, arr in batch.items():
            self._stage[name][cols, self._stage_len] = arr
        self._stage_len += 1
        for c in np.flatnonzero(batch["terminated"].astype(bool) | trunc):
            length = int(self._stage_len[c])
            self._write_episode({name: a[c, :length] for name, a in self._stage.items()})
            self._stage_len[c] = 0

    def add_episode(
        self,
        observations: Mapping[str, ArrayLike],
        actions: ArrayLike,
        rewards: ArrayLike,
        next_observations: Mapping[str, ArrayLike],
        terminated: ArrayLike,
    ) -> None:
        """Store one complete episode at once: every array has one row per step (``[L, ...]``)."""
        batch, length = self._validate(
            self._step_fields(observations, actions, rewards, next_observations, terminated)
        )
        if length > self.capacity:
            raise EpisodeTooLongError(
                f"an episode of {length} steps does not fit a buffer of capacity {self.capacity}"
            )
        self._write_episode(batch)

    def reset(self) -> None:
        """Drop the steps of episodes still running (for example after resetting the envs by hand)."""
        self._stage_len[:] = 0

    def _write_episode(self, episode: dict[str, np.ndarray]) -> None:
        store = self._store
        length = len(episode["rewards"])
        cap, start = store.capacity, store.position
        lengths = store._data["episode_lengths"]
        slots = (start + np.arange(length)) % cap
        occupied = slots[slots < store.size]
        self._n_valid -= int(np.count_nonzero(lengths[occupied]))
        # The old episode running past the end of the new one loses its
        # beginning: stop sampling what remains of it.
        after = (start + length) % cap
        if after < store.size and lengths[after] > 0:
            old_start, old_len = int(store._data["episode_starts"][after]), int(lengths[after])
            if old_start != after:
                rest = (old_start + np.arange(old_len)) % cap
                rest = rest[lengths[rest] > 0]
                rest = rest[~np.isin(rest, slots)]
                self._n_valid -= rest.size
                lengths[rest] = 0
        store.add(
            **episode,
            episode_starts=np.full(length, start, dtype=np.int64),
            episode_lengths=np.full(length, length, dtype=np.int64),
        )
        self._n_valid += length

    # -- sampling ------------------------------------------------------------

    def _draw_valid(self, batch_size: int) -> np.ndarray:
        """Uniform over the rows of complete episodes (rejection from all stored rows)."""
        lengths = self._store._data["episode_lengths"]
        chosen: list[np.ndarray] = []
        need = batch_size
        while need:
            cand = self.rng.integers(0, self._store.size, size=2 * need)
            cand = cand[lengths[cand] > 0][:need]
            chosen.append(cand)
            need -= cand.size
        return np.concatenate(chosen)

    def sample(self, batch_size: int) -> dict[str, Any]:
        """Draw transitions uniformly and relabel a ``k / (k + 1)`` fraction of them.

        Returns ``observations`` and ``next_observations`` as dicts (with the
        possibly relabelled ``desired_goal``), ``actions``, ``rewards``,
        ``terminated``, the rows' ``indices`` and a ``relabelled`` mask.
        """
        if int(batch_size) < 1:
            raise NotEnoughTransitionsError(f"batch_size must be at least 1, got {batch_size}")
        if batch_size > self._n_valid:
            raise NotEnoughTransitionsError(
                f"cannot sample {batch_size} transitions: the buffer holds {self._n_valid} from "
                f"complete episodes; sample at most {self._n_valid} or add more episodes first"
            )
        idx = self._draw_valid(batch_size)
        t = self._store.get(idx)
        relabel = self.rng.random(batch_size) < self.relabel_fraction
        goals = t["desired_goals"].copy()
        rewards = t["rewards"].copy()
        terminated = t["terminated"].copy()
        if relabel.any():
            rows = np.flatnonzero(relabel)
            achieved = t["next_achieved_goals"][rows]
            new_goals = self._relabel_goals(
                idx[rows], t["episode_starts"][rows], t["episode_lengths"][rows]
            )
            goals[rows] = new_goals
            rewards[rows] = self.compute_reward(achieved, new_goals)
            if self.compute_terminated is not None:
                terminated[rows] = self.compute_terminated(achieved, new_goals)
        return {
            "observations": {
                "observation": t["observations"],
                "achieved_goal": t["achieved_goals"],
                "desired_goal": goals,
            },
            "actions": t["actions"],
            "rewards": rewards,
            "next_observations": {
                "observation": t["next_observations"],
                "achieved_goal": t["next_achieved_goals"],
                "desired_goal": goals,
            },
            "terminated": terminated,
            "indices": idx,
            "relabelled": relabel,
        }

    def _relabel_goals(
        self, idx: np.ndarray, starts: np.ndarray, lengths: np.ndarray
    ) -> np.ndarray:
        """Goals achieved in each row's episode, chosen by ``strategy`` (Andrychowicz et al. 2017, 4.5)."""
        cap = self._store.capacity
        step = (idx - starts) % cap  # position of the row within its episode
        if self.strategy == "future":
            offset = self.rng.integers(step, lengths)  # t' uniform in [t, L)
        elif self.strategy == "final":
            offset = lengths - 1
        else:  # "episode"
            offset = self.rng.integers(0, lengths)
        return self._store._data["next_achieved_goals"][(starts + offset) % cap]

    # -- persistence ---------------------------------------------------------

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the complete episodes to one ``.npz`` (no pickle); return the path."""
        return self._store.save(path)

    def load(self, path: str | os.PathLike[str]) -> None:
        """Restore episodes written by ``save``; pending steps are dropped."""
        self._store.load(path)
        self._stage_len[:] = 0
        self._n_valid = int(
            np.count_nonzero(self._store._data["episode_lengths"][: self._store.size])
        )
