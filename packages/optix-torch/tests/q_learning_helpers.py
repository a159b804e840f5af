"""What test_dqn.py and test_rainbow.py share: the conformance suite's settings, test
windows and hyperparameters, and checks on the replay and the target network."""

from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch

from optix_core import make_agent
from optix_core.registry import RegistryError
from optix_core.testing import (
    AgentConformance,
    toy_envs,  # noqa: F401 - registers the optix-tests/ environments
)
from optix_core.testing.learning_runs import collect_windows
from optix_core.types import EpisodeData

CATCH, CATCH_LARGE, DICT_GOAL = (
    "optix-tests/Catch-v0",
    "optix-tests/CatchLarge-v0",
    "optix-tests/DictGoal-v0",
)


class QLearningConformance(AgentConformance):
    """The conformance suite for a Q-learning agent (its subclass names ``algo`` and
    ``backend``), on every kind of observation it reads, with windows long enough for
    its default schedule to make gradient steps."""

    # Flat vectors, uint8 images (SmallCNN, NatureCNN), Dict and Discrete observations.
    env_ids = ("CartPole-v1", CATCH, CATCH_LARGE, DICT_GOAL, "FrozenLake-v1")
    # Updates come after every train_freq-th (256th) vector step once more than
    # learning_starts (1,000) env steps were seen: at vector step 512 of 2 envs.
    window_size = 512

    def test_the_suite_trains_with_gradient_steps(self, env_id: str) -> None:
        """test_learn_changes_the_policy sees learning, not just stored experience."""
        agent = self.make(env_id)
        self.train(agent, env_id)
        vector_steps = self.window_size * self.learn_windows
        due = [v for v in range(256, vector_steps + 1, 256) if v * self.n_envs > 1000]
        assert due and agent.n_updates == 128 * len(due)  # 128 gradient steps at each


def assert_refuses_a_continuous_env(algo: str, make: Callable[..., Any]) -> None:
    """Neither the registry nor ``algo``'s factory ``make`` builds it for Pendulum's Box
    actions, and the factory says why."""
    with pytest.raises(RegistryError, match=algo):
        make_agent(algo, "Pendulum-v1", device="cpu")
    pendulum = gym.make("Pendulum-v1")
    with pytest.raises(ValueError, match=rf"{algo} acts on Discrete action spaces, got Box"):
        make(pendulum.observation_space, pendulum.action_space, device="cpu")


def windows(
    agent, count: int, n_envs: int = 2, window: int = 64, seed: int = 0, env_id: str = "CartPole-v1"
) -> list[EpisodeData]:
    """``count`` consecutive 64-step windows of 2 CartPoles (by default), ``agent``
    acting: ``collect_windows``."""
    return collect_windows(agent, env_id, count, n_envs, window, seed)


def numbered_window(length: int, n_envs: int = 2) -> EpisodeData:
    """A window whose observations say when they were made: obs[t, n] = (t, n, 0, 0)."""
    obs = np.zeros((length + 1, n_envs, 4), dtype=np.float32)
    obs[..., 0] = np.arange(length + 1)[:, None]
    obs[..., 1] = np.arange(n_envs)
    return EpisodeData(
        observations=obs[:-1],
        actions=np.random.default_rng(0).integers(2, size=(length, n_envs)),
        rewards=np.ones((length, n_envs), dtype=np.float32),
        terminated=np.zeros((length, n_envs), dtype=bool),
        truncated=np.zeros((length, n_envs), dtype=bool),
        next_observations=obs[-1],
    )


def record_minibatch_steps(agent) -> list[np.ndarray]:
    """Make every gradient step record the vector steps its minibatch's observations come
    from (the first number of a ``numbered_window`` observation)."""
    steps: list[np.ndarray] = []
    step = agent._gradient_step

    def recording(obs, *args):
        steps.append(obs[:, 0].cpu().numpy().astype(int))
        return step(obs, *args)

    agent._gradient_step = recording
    return steps


def atari_frames_window() -> EpisodeData:
    """Four steps of one environment on random 84×84 uint8 frames (seed 0), action 0 and
    reward 0 throughout: enough for a replay to allocate all its arrays."""
    frames = np.random.default_rng(0).integers(0, 256, (5, 1, 84, 84, 1), dtype=np.uint8)
    return EpisodeData(
        observations=frames[:4],
        actions=np.zeros((4, 1), dtype=np.int64),
        rewards=np.zeros((4, 1), dtype=np.float32),
        terminated=np.zeros((4, 1), dtype=bool),
        truncated=np.zeros((4, 1), dtype=bool),
        next_observations=frames[4],
    )


def assert_target_synced(agent) -> None:
    """The target network's parameters equal the online network's."""
    for online, target in zip(
        agent.q_network.parameters(), agent.target_network.parameters(), strict=True
    ):
        torch.testing.assert_close(online, target)
