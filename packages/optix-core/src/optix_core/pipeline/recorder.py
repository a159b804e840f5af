"""Recording a window into preallocated arrays, and episode statistics across windows."""

from __future__ import annotations

from collections import deque
from typing import Any

import numpy as np

from optix_core.types import EpisodeData

Tree = np.ndarray | dict[str, Any]


class EpisodeStats:
    """Running returns per environment column, and the episodes that ended.

    Episodes straddle windows, so their returns are accumulated here, in the
    pipeline that owns the environments, not in the window.
    """

    def __init__(self, n_envs: int, stats_window: int) -> None:
        if stats_window < 1:
            raise ValueError(f"stats_window must be >= 1, got {stats_window}")
        self.n_envs = n_envs
        self.steps = 0  # env steps counted so far, over all columns
        self.running_return = np.zeros(n_envs, dtype=np.float64)
        self.running_length = np.zeros(n_envs, dtype=np.int64)
        self.running_start = np.zeros(n_envs, dtype=np.int64)
        self.recent: deque[float] = deque(maxlen=stats_window)
        self.ended_returns: list[float] = []
        self.ended_lengths: list[int] = []
        self.ended_starts: list[int] = []

    def step(self, rewards: np.ndarray, dones: np.ndarray) -> None:
        self.running_return += rewards
        self.running_length += 1
        ended = np.flatnonzero(dones)
        if ended.size:
            self.add_ended(
                self.running_return[ended], self.running_length[ended], self.running_start[ended]
            )
        self.steps += self.n_envs
        self.running_return[dones] = 0.0
        self.running_length[dones] = 0
        self.running_start[dones] = self.steps

    def add_ended(self, returns: np.ndarray, lengths: np.ndarray, starts: np.ndarray) -> None:
        """Episodes that ended, in the order they ended. A pipeline that follows its
        episodes itself (on an accelerator, not step by step here) reports them so."""
        self.ended_returns.extend(np.asarray(returns, dtype=np.float64).tolist())
        self.ended_lengths.extend(np.asarray(lengths, dtype=np.int64).tolist())
        self.ended_starts.extend(np.asarray(starts, dtype=np.int64).tolist())
        self.recent.extend(np.asarray(returns, dtype=np.float64).tolist())

    def cut(self, column: int) -> None:
        """An episode interrupted without an end from the environment (a reconnect)."""
        self.running_return[column] = 0.0
        self.running_length[column] = 0
        self.running_start[column] = self.steps

    def running_state(self) -> dict[str, Any]:
        """JSON-ready: the episodes under way, for ``continue_running``."""
        return {
            "returns": self.running_return.tolist(),
            "lengths": self.running_length.tolist(),
            "starts": self.running_start.tolist(),
        }

    def continue_running(self, state: dict[str, Any]) -> None:
        """The episodes under way go on as ``running_state`` saved them (a resumed run
        that rebuilt its environments)."""
        self.running_return[:] = state["returns"]
        self.running_length[:] = state["lengths"]
        self.running_start[:] = state["starts"]

    def restart(self, steps: int) -> None:
        """Every environment starts a new episode at ``steps`` (a resumed run)."""
        self.steps = steps
        self.running_return[:] = 0.0
        self.running_length[:] = 0
        self.running_start[:] = steps

    def window_infos(self) -> dict[str, Any]:
        """The statistics for the window that just ended; starts the next one.

        ``episode_start_steps`` says when each ended episode began (the env
        step count at its first step), so experience can be told apart by the
        hyperparameters it was collected under.
        """
        infos = {
            "episode_returns": np.asarray(self.ended_returns, dtype=np.float64),
            "episode_lengths": np.asarray(self.ended_lengths, dtype=np.int64),
            "episode_start_steps": np.asarray(self.ended_starts, dtype=np.int64),
            "recent_returns": np.asarray(self.recent, dtype=np.float64),
        }
        self.ended_returns, self.ended_lengths, self.ended_starts = [], [], []
        return infos

    def state_dict(self) -> dict[str, Any]:
        return {"recent": list(self.recent)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.recent.extend(float(x) for x in state.get("recent", ()))


class WindowRecorder:
    """Fills ``[T, N, ...]`` arrays step by step; grows only for open-ended windows."""

    def __init__(self, n_envs: int, capacity: int) -> None:
        self.n_envs = n_envs
        self.capacity = max(1, capacity)
        self.size = 0
        self._fields: dict[str, Tree] = {}
        self._policy_info: dict[str, np.ndarray] = {}
        self._final_obs: Tree | None = None

    def add(
        self,
        observations: Tree,
        actions: np.ndarray,
        rewards: np.ndarray,
        terminated: np.ndarray,
        truncated: np.ndarray,
        policy_info: dict[str, np.ndarray],
        final_observations: dict[int, Any],
    ) -> None:
        """Record one step of every column; ``final_observations`` maps a column
        that ended an episode to that episode's last observation."""
        if self.size == self.capacity:
            self._grow()
        t = self.size
        step = {
            "observations": observations,
            "actions": actions,
            "rewards": np.asarray(rewards, dtype=np.float32),
            "terminated": np.asarray(terminated, dtype=bool),
            "truncated": np.asarray(truncated, dtype=bool),
        }
        for name, value in step.items():
            if name not in self._fields:
                self._fields[name] = _alloc(value, self.capacity)
            _put(self._fields[name], t, value)
        for name, value in policy_info.items():
            value = np.asarray(value)
            if name not in self._policy_info:
                self._policy_info[name] = _alloc(value, self.capacity)
            self._policy_info[name][t] = value
        if self._final_obs is None:
            self._final_obs = _zeros_like(self._fields["observations"])
        for column, final in final_observations.items():
            _put_column(self._final_obs, t, column, final)
        self.size += 1

    def mark_cut(self, column: int, final_observation: Tree) -> None:
        """End ``column``'s episode at the last recorded step, as truncated: the
        source failed, so the episode's value is bootstrapped, not zeroed."""
        t = self.size - 1
        self._fields["truncated"][t, column] = True
        _put_column(self._final_obs, t, column, final_observation)

    def finish(
        self, next_observations: Tree, infos: dict[str, Any], episode_id: int
    ) -> EpisodeData:
        n = self.size
        if n == 0:
            raise RuntimeError("an empty window cannot be finished")
        fields = {k: _trim(v, n) for k, v in self._fields.items()}
        return EpisodeData(
            observations=fields["observations"],
            actions=fields["actions"],
            rewards=fields["rewards"],
            terminated=fields["terminated"],
            truncated=fields["truncated"],
            infos=infos,
            episode_id=episode_id,
            next_observations=_copy(next_observations),
            final_observations=_trim(self._final_obs, n),
            policy_info={k: v[:n] for k, v in self._policy_info.items()},
        )

    def _grow(self) -> None:
        self.capacity *= 2
        self._fields = {k: _resize(v, self.capacity) for k, v in self._fields.items()}
        self._policy_info = {k: _resize(v, self.capacity) for k, v in self._policy_info.items()}
        if self._final_obs is not None:
            self._final_obs = _resize(self._final_obs, self.capacity)


def _alloc(sample: Tree, length: int) -> Tree:
    if isinstance(sample, dict):
        return {k: _alloc(v, length) for k, v in sample.items()}
    sample = np.asarray(sample)
    return np.empty((length, *sample.shape), dtype=sample.dtype)


def _zeros_like(tree: Tree) -> Tree:
    if isinstance(tree, dict):
        return {k: _zeros_like(v) for k, v in tree.items()}
    return np.zeros_like(tree)


def _put(buffer: Tree, t: int, value: Tree) -> None:
    if isinstance(buffer, dict):
        for k, v in buffer.items():
            _put(v, t, value[k])
    else:
        buffer[t] = value


def _put_column(buffer: Tree, t: int, column: int, value: Tree) -> None:
    if isinstance(buffer, dict):
        for k, v in buffer.items():
            _put_column(v, t, column, value[k])
    else:
        buffer[t, column] = value


def _trim(buffer: Tree, n: int) -> Tree:
    if isinstance(buffer, dict):
        return {k: _trim(v, n) for k, v in buffer.items()}
    return buffer[:n]


def _resize(buffer: Tree, length: int) -> Tree:
    if isinstance(buffer, dict):
        return {k: _resize(v, length) for k, v in buffer.items()}
    grown = np.empty((length, *buffer.shape[1:]), dtype=buffer.dtype)
    grown[: buffer.shape[0]] = buffer
    return grown


def _copy(tree: Tree) -> Tree:
    if isinstance(tree, dict):
        return {k: _copy(v) for k, v in tree.items()}
    return np.array(tree, copy=True)
