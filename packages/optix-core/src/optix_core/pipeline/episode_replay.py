"""Rebuilding a pipeline's environments mid-episode, so that a resumed run is the run never stopped.

A checkpoint cannot hold an environment's state (Box2D's cannot be saved at
all), but it can hold how the current episode began and every action taken
since: gymnasium environments draw all their randomness from
``env.unwrapped.np_random``, so resetting from the generator state the episode
began with and replaying its actions rebuilds the environment exactly. The
pipeline checks the rebuilt observation against the one it saved, and starts
new episodes where an environment draws randomness elsewhere (ALE's sticky
actions).
"""

from __future__ import annotations

import copy
import hashlib
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.vector.utils import iterate

RECORD_LIMIT = 30_000  # actions an episode may hold (Atari's longest: 27,000); past it, none


class EpisodeRecorder(gym.Wrapper):
    """Records how the current episode began and the actions taken since, and replays them.

    The start is the seed of a seeded ``reset``, or else the environment's
    generator state just before the reset drew from it (an autoreset). An
    episode longer than ``RECORD_LIMIT`` steps stops being recorded, and a
    resume starts a new one instead.
    """

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        self._start: dict[str, Any] | None = None
        self._actions: list[np.ndarray] = []
        self.pending_replay: dict[str, Any] | None = None  # set by the vector env, then replayed

    @property
    def spec(self) -> Any:
        """The environment's own: recording changes nothing of what it is."""
        return self.env.spec

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> Any:
        if options:
            self._start = None  # options may say anything: the episode cannot be replayed
        elif seed is None:
            self._start = {"rng": copy.deepcopy(self.env.unwrapped.np_random.bit_generator.state)}
        else:
            self._start = {"seed": int(seed)}
        self._actions = []
        return self.env.reset(seed=seed, options=options)

    def step(self, action: Any) -> Any:
        if self._start is not None:
            if len(self._actions) < RECORD_LIMIT:
                self._actions.append(np.array(action, copy=True))
            else:
                self._start, self._actions = None, []
        return self.env.step(action)

    @property
    def episode_record(self) -> dict[str, Any] | None:
        """JSON-ready: the episode's start and its actions; None when it cannot be replayed."""
        if self._start is None:
            return None
        return {**self._start, "actions": [action.tolist() for action in self._actions]}

    def replay_pending(self) -> Any:
        """Replay ``pending_replay`` (an ``episode_record``) and return the observation it ends at."""
        record, self.pending_replay = self.pending_replay, None
        if record is None:
            raise ValueError("no episode to replay: set pending_replay first")
        if "seed" in record:
            observation, _ = self.reset(seed=record["seed"])
        else:
            self.env.unwrapped.np_random.bit_generator.state = record["rng"]
            observation, _ = self.reset()
        dtype = self.action_space.dtype
        for action in record["actions"]:
            observation, *_ = self.step(np.asarray(action, dtype=dtype))
        return observation


def observation_digests(space: gym.Space, observations: Any) -> list[str]:
    """One digest per environment of a batch of observations: what a replay must rebuild."""
    return [_digest(observation) for observation in iterate(space, observations)]


def _digest(observation: Any) -> str:
    sha = hashlib.sha256()
    for part in _leaves(observation):
        array = np.ascontiguousarray(part)
        sha.update(str((array.dtype.str, array.shape)).encode())
        sha.update(array.tobytes())
    return sha.hexdigest()


def _leaves(observation: Any) -> list[Any]:
    if isinstance(observation, dict):
        return [leaf for key in sorted(observation) for leaf in _leaves(observation[key])]
    if isinstance(observation, tuple):
        return [leaf for item in observation for leaf in _leaves(item)]
    return [observation]
