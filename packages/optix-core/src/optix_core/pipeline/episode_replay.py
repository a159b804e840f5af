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
TRIM_EVERY = 1024  # steps no episode needs any more, dropped together


class ReplayableEnv(gym.Wrapper):
    """Records how the current episode began, and replays an episode from there.

    The start is the seed of a seeded ``reset``, or else the environment's
    generator state just before the reset drew from it (an autoreset). The
    actions are the pipeline's to keep (``EpisodeActions``, a batch at a
    time); ``replay_pending`` takes both.
    """

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        self.episode_began: dict[str, Any] | None = None
        self.pending_replay: dict[str, Any] | None = None  # set by the vector env, then replayed

    @property
    def spec(self) -> Any:
        """The environment's own: recording changes nothing of what it is."""
        return self.env.spec

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> Any:
        if options:
            self.episode_began = None  # options may say anything: the episode cannot be replayed
        elif seed is None:
            state = self.env.unwrapped.np_random.bit_generator.state
            self.episode_began = {"rng": copy.deepcopy(state)}
        else:
            self.episode_began = {"seed": int(seed)}
        return self.env.reset(seed=seed, options=options)

    def replay_pending(self) -> Any:
        """Replay ``pending_replay`` (how an episode began, and its ``actions``) and
        return the observation it ends at."""
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
            # [()] makes a Discrete action the numpy scalar the vector env steps
            # with, not a 0-d array (FrozenLake looks it up in a dict)
            observation, *_ = self.env.step(np.asarray(action, dtype=dtype)[()])
        return observation


class EpisodeActions:
    """The actions of each environment's current episode, kept one batch per step
    (a copy per vector step, none per environment)."""

    def __init__(self, n_envs: int) -> None:
        self.steps: list[np.ndarray] = []
        self.first = np.zeros(n_envs, dtype=np.int64)  # where each episode's actions begin
        self.dropped = np.zeros(n_envs, dtype=bool)  # episodes past RECORD_LIMIT

    def add(self, actions: np.ndarray, dones: np.ndarray) -> None:
        """One step's actions; ``dones`` ended those environments' episodes."""
        self.steps.append(np.array(actions, copy=True))
        kept = len(self.steps)
        too_long = kept - self.first > RECORD_LIMIT
        self.dropped |= too_long
        self.first[too_long | dones] = kept
        self.dropped[dones] = False
        head = int(self.first.min())
        if head >= TRIM_EVERY:
            del self.steps[:head]
            self.first -= head

    def restart(self) -> None:
        """Every environment begins a new episode."""
        self.steps.clear()
        self.first[:] = 0
        self.dropped[:] = False

    def per_env(self) -> list[list[Any] | None]:
        """JSON-ready: each environment's actions this episode; None past RECORD_LIMIT."""
        kept = np.stack(self.steps) if self.steps else None
        return [
            None if dropped else ([] if kept is None else kept[first:, env].tolist())
            for env, (first, dropped) in enumerate(zip(self.first, self.dropped, strict=True))
        ]

    def load(self, actions: list[list[Any]], dtype: np.dtype) -> None:
        """Hold the replayed episodes' ``actions`` (one list per environment) as if
        they had been taken here."""
        self.restart()
        longest = max((len(a) for a in actions), default=0)
        filler = next((a[0] for a in actions if a), None)  # where an episode had not begun
        self.first[:] = [longest - len(a) for a in actions]
        for t in range(longest):
            step = [
                a[t - f] if t >= f else filler for a, f in zip(actions, self.first, strict=True)
            ]
            self.steps.append(np.asarray(step, dtype=dtype))


def observation_digests(batch_space: gym.Space, observations: Any) -> list[str]:
    """One digest per environment of a batch of observations: what a replay must rebuild.

    ``batch_space`` is the vector environment's ``observation_space``, the batch's
    own: a single ``Discrete`` space cannot split a batch of its integers."""
    return [_digest(observation) for observation in iterate(batch_space, observations)]


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
