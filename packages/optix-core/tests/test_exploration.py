"""TD3's exploration noise: Gaussian draws, or with ``ou_noise`` an Ornstein-Uhlenbeck
process per environment, restarted where an episode starts and kept in checkpoints."""

from __future__ import annotations

import math

import numpy as np
import pytest

from optix_core.off_policy.exploration import OU_DT, OU_THETA, TD3Exploration

SIGMA = 0.5


class Acting:
    """What TD3Exploration sits on: a base whose act_info acts and whose extra state
    is empty."""

    def act_info(self, observation, episode_start):
        return observation, {}

    def extra_state(self) -> dict:
        return {}

    def load_extra_state(self, state: dict) -> None:
        pass


class Agent(TD3Exploration, Acting):
    def __init__(self, ou_noise: bool, seed: int = 0) -> None:
        self.hp = {"ou_noise": ou_noise, "expl_noise": SIGMA}
        self.rng = np.random.default_rng(seed)


def draws(*rows: float) -> np.ndarray:
    return np.array([[r] for r in rows], dtype=np.float32)


def test_without_ou_noise_every_draw_is_independent_gaussian_noise() -> None:
    agent = Agent(ou_noise=False)
    for eps in (draws(1.0, -2.0), draws(0.5, 0.5)):
        np.testing.assert_array_equal(agent.exploration_noise(eps, training=True), SIGMA * eps)


def test_ou_noise_steps_the_process_and_restarts_it_where_an_episode_starts() -> None:
    agent = Agent(ou_noise=True)
    x1 = agent.exploration_noise(draws(1.0, 2.0), training=True)
    np.testing.assert_allclose(x1, SIGMA * math.sqrt(OU_DT) * draws(1.0, 2.0), rtol=1e-6)
    e2 = draws(-1.0, 0.5)
    x2 = agent.exploration_noise(e2, training=True)
    expected = x1 - OU_THETA * x1 * OU_DT + SIGMA * math.sqrt(OU_DT) * e2
    np.testing.assert_allclose(x2, expected, rtol=1e-6)
    agent.act_info(None, np.array([True, False]))  # env 0 starts a new episode
    x3 = agent.exploration_noise(draws(0.0, 0.0), training=True)
    assert x3[0, 0] == 0.0
    assert x3[1, 0] == pytest.approx(x2[1, 0] * (1 - OU_THETA * OU_DT))


def test_acting_outside_training_adds_gaussian_noise_and_leaves_the_process_alone() -> None:
    agent = Agent(ou_noise=True)
    held = agent.exploration_noise(draws(1.0), training=True).copy()
    eps = draws(3.0)
    np.testing.assert_array_equal(agent.exploration_noise(eps, training=False), SIGMA * eps)
    out = np.zeros((1, 1), np.float32)
    agent.unit_actions(out, deterministic=False, rng=np.random.default_rng(5))  # not agent.rng
    np.testing.assert_array_equal(agent._ou_state, held)


def test_ou_noise_pushes_one_way_for_hundreds_of_steps_where_gaussian_noise_does_not() -> None:
    """The point of it: consecutive values correlate at 1 − θ·dt ≈ 0.9985."""
    out = np.zeros((1, 1), np.float32)

    def lag_one_correlation(agent: Agent) -> float:
        noise = [agent.unit_actions(out, False, agent.rng)[0, 0] for _ in range(4000)]
        return float(np.corrcoef(noise[:-1], noise[1:])[0, 1])

    assert lag_one_correlation(Agent(ou_noise=True)) > 0.99
    assert abs(lag_one_correlation(Agent(ou_noise=False))) < 0.1


def test_the_process_is_kept_in_checkpoints() -> None:
    agent = Agent(ou_noise=True)
    for _ in range(3):
        agent.exploration_noise(agent.rng.standard_normal((2, 1), dtype=np.float32), True)
    resumed = Agent(ou_noise=True, seed=9)
    resumed.load_extra_state(agent.extra_state())
    eps = draws(0.3, -0.7)
    np.testing.assert_array_equal(
        resumed.exploration_noise(eps, True), agent.exploration_noise(eps, True)
    )
    assert "ou_state" not in Agent(ou_noise=True).extra_state()  # nothing held yet
