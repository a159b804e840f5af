"""Deterministic evaluation of a policy on fresh episodes."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode, SyncVectorEnv

from optix_core.agent import BaseAgent
from optix_core.registry import environment_family, make_env
from optix_core.specs import load_object

log = logging.getLogger("optix")

# Where an evaluation episode is cut when the environment has not ended it: past
# any time limit gymnasium registers (Atari's 108,000 frames are 27,000 steps),
# and a policy that never ends an episode (CliffWalking's, walking into a wall;
# it sets no limit) would otherwise hold evaluation forever.
EPISODE_STEP_LIMIT = 100_000


@dataclass
class PolicyEvaluation:
    returns: np.ndarray
    lengths: np.ndarray

    @property
    def mean(self) -> float:
        return float(self.returns.mean())

    @property
    def std(self) -> float:
        return float(self.returns.std())

    @property
    def env_steps(self) -> int:
        return int(self.lengths.sum())

    def concatenate(self, other: PolicyEvaluation) -> PolicyEvaluation:
        """This evaluation's episodes, then ``other``'s."""
        return PolicyEvaluation(
            np.concatenate([self.returns, other.returns]),
            np.concatenate([self.lengths, other.lengths]),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "mean": self.mean,
            "std": self.std,
            "episodes": len(self.returns),
            "env_steps": self.env_steps,
            "returns": self.returns.tolist(),
        }

    def __str__(self) -> str:
        return f"{self.mean:.1f} ± {self.std:.1f} over {len(self.returns)} episodes"


def evaluate_policy(
    agent: BaseAgent,
    env_id: str | Callable[[], gym.Env],
    episodes: int = 20,
    seed: int = 0,
    n_envs: int = 8,
    deterministic: bool = True,
    env_kwargs: dict[str, Any] | None = None,
    max_episode_steps: int = EPISODE_STEP_LIMIT,
) -> PolicyEvaluation:
    """Play ``episodes`` whole episodes, seeded from ``seed``, and return their returns.

    ``env_id`` is an environment id or a callable that builds the environment
    (for wrapped or unregistered ones). Each environment plays a fixed share of
    the episodes, so short episodes do not crowd out long ones (taking the first
    N to finish would bias the mean toward failures). The agent's
    ``reset_state`` is called at every episode end, so a recurrent policy starts
    each episode afresh.

    Returns are ordered by where the episodes were played (environment ``i``,
    seeded ``seed + i``, then its first, second... episode), not by when they
    ended: two policies evaluated with the same arguments face the same starts at
    the same index, so their returns can be compared pairwise.

    An episode the environment has not ended after ``max_episode_steps`` is cut
    there and counts with the return it gathered (a warning says so): an
    environment without a time limit would otherwise wait forever on a policy
    that never ends one.

    A ``prefix:Name`` id whose environment family offers its own ``evaluate``
    (``EnvironmentSpec.evaluate``; optix-jax's plays gymnax episodes in one
    compiled program) is played by it when no ``env_kwargs`` are given, and
    ``n_envs`` is then the family's business; where it returns None (an agent it
    cannot play) the environments are stepped from Python as for any other id.
    """
    if episodes < 1:
        raise ValueError(f"episodes must be >= 1, got {episodes}")
    if max_episode_steps < 1:
        raise ValueError(f"max_episode_steps must be >= 1, got {max_episode_steps}")
    if isinstance(env_id, str) and not env_kwargs:
        result = _family_evaluation(agent, env_id, episodes, seed, deterministic)
        if result is not None:
            return result
    if isinstance(env_id, str):
        make_env(env_id, **(env_kwargs or {})).close()  # a clear error for a bad id
        env_fn = lambda: make_env(env_id, **(env_kwargs or {}))  # noqa: E731
    else:
        env_fn = env_id
    n_envs = min(n_envs, episodes)
    targets = np.full(n_envs, episodes // n_envs) + (np.arange(n_envs) < episodes % n_envs)
    envs = SyncVectorEnv([env_fn] * n_envs, autoreset_mode=AutoresetMode.SAME_STEP)
    cuts = 0
    try:
        obs, _ = envs.reset(seed=seed)
        agent.reset_state()
        space = envs.single_action_space
        running = np.zeros(n_envs)
        steps = np.zeros(n_envs, dtype=np.int64)
        done_count = np.zeros(n_envs, dtype=np.int64)
        returns: list[list[float]] = [[] for _ in range(n_envs)]
        lengths: list[list[int]] = [[] for _ in range(n_envs)]
        while (done_count < targets).any():
            actions = np.asarray(agent.act(obs, deterministic=deterministic))
            if isinstance(space, gym.spaces.Box):
                actions = np.clip(actions, space.low, space.high)
            obs, rewards, terminated, truncated, _ = envs.step(actions)
            running += rewards
            steps += 1
            ended = np.logical_or(terminated, truncated)
            cut = ~ended & (steps >= max_episode_steps)
            dones = ended | cut
            if dones.any():
                agent.reset_state(dones)
            for i in np.flatnonzero(dones):
                if done_count[i] < targets[i]:
                    returns[i].append(float(running[i]))
                    lengths[i].append(int(steps[i]))
                    done_count[i] += 1
                running[i] = 0.0
                steps[i] = 0
            if cut.any():  # the vector env resets only the episodes it ended itself
                obs, _ = envs.reset(options={"reset_mask": cut})
                cuts += int(cut.sum())
    finally:
        envs.close()
    if cuts:
        log.warning(
            "evaluation cut %d episode(s) at %s steps: the environment had not ended "
            "them (it sets no time limit?); each counts with the return it gathered",
            cuts,
            f"{max_episode_steps:,}",
        )
    return PolicyEvaluation(
        np.asarray([r for env in returns for r in env]),
        np.asarray([n for env in lengths for n in env]),
    )


def _family_evaluation(
    agent: BaseAgent, env_id: str, episodes: int, seed: int, deterministic: bool
) -> PolicyEvaluation | None:
    """The episodes played by ``env_id``'s family's own ``evaluate``, or None where
    the family has none, its library is missing (``make_env`` then says what to
    install) or it cannot play this agent."""
    family = environment_family(env_id)
    if family is None or family.evaluate is None:
        return None
    try:
        evaluate = load_object(family.evaluate)
    except ModuleNotFoundError:
        return None
    return evaluate(agent, env_id, episodes, seed, deterministic)
