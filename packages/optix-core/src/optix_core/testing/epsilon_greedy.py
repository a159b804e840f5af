"""What ε-greedy exploration promises, on any backend.

Subclass ``EpsilonGreedyConformance`` in a test module and set ``backend`` (and
``algo`` for an agent other than ``dqn``). ε follows the env steps collected so
far, as Stable-Baselines3's ``exploration_rate`` does: 1 until ``learning_starts``,
then linear from ``epsilon`` to ``epsilon_min`` over ``exploration_steps`` (or
multiplied by ``epsilon_decay`` per env step without them). Training actions
(``act_info``) move the clock; ``act`` explores at the current rate and moves
nothing; checkpoints carry the clock. The tests read the agent's public
surface: ``epsilon``, ``num_timesteps``, ``act``, ``act_info``, ``learn``'s
statistics and checkpoints, on CartPole (two actions).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest

from optix_core.registry import make_agent
from optix_core.testing.learning_runs import collect_windows

ENV_ID = "CartPole-v1"
N_ENVS = 2  # act_info's observations: one vector step of two environments


def _observations(n: int = N_ENVS) -> np.ndarray:
    return np.random.default_rng(0).normal(size=(n, 4)).astype(np.float32)


def _step(agent: Any, obs: np.ndarray) -> np.ndarray:
    """One training vector step: ``act_info`` as a pipeline calls it."""
    return agent.act_info(obs, np.zeros(len(obs), dtype=bool))[0]


class EpsilonGreedyConformance:
    """ε's schedule as the agent runs it."""

    algo: ClassVar[str] = "dqn"
    backend: ClassVar[str]

    def agent(self, seed: int = 0, **hp: Any) -> Any:
        return make_agent(
            self.algo, ENV_ID, backend=self.backend, hyperparams=hp, device="cpu", seed=seed
        )

    def test_epsilon_is_random_until_learning_starts_then_follows_the_linear_schedule(
        self,
    ) -> None:
        agent = self.agent(learning_starts=1000, exploration_steps=8000, epsilon_min=0.04)
        assert agent.epsilon == 1.0
        agent.num_timesteps = 4000
        assert agent.epsilon == pytest.approx(1.0 - 0.96 * 0.5)
        agent.num_timesteps = 20_000
        assert agent.epsilon == pytest.approx(0.04)

    def test_the_agent_explores_until_epsilon_reaches_its_floor(self) -> None:
        """``exploring``, which holds off the loop's DORMANT, ends with the schedule."""
        agent = self.agent(learning_starts=1000, exploration_steps=8000, epsilon_min=0.04)
        for steps, exploring in ((0, True), (7999, True), (8000, False), (20_000, False)):
            agent.num_timesteps = steps
            assert agent.exploring is exploring, steps
            assert (agent.epsilon > 0.04 + 1e-9) is exploring

    def test_epsilon_moves_at_every_training_action_within_a_window(self) -> None:
        """ε follows the env steps collected so far, not the windows learned from."""
        agent = self.agent(learning_starts=0, exploration_steps=100, epsilon_min=0.0)
        obs = _observations()
        greedy = agent.act(obs, deterministic=True)
        explored = []
        for call in range(60):
            assert agent.epsilon == pytest.approx(max(0.0, 1.0 - N_ENVS * call / 100))
            explored.append(np.any(_step(agent, obs) != greedy))
        assert agent.epsilon == 0.0 and not any(explored[50:])  # ε reached 0 at step 100
        assert sum(explored[:10]) >= 3  # ε near 1: about half the steps differ from greedy

    def test_learn_continues_the_clock_act_info_started(self) -> None:
        hp = dict(learning_starts=0, exploration_steps=1000, gradient_steps=0)
        agent = self.agent(**hp)
        (data,) = collect_windows(agent, ENV_ID, 1, N_ENVS, 64, seed=0)  # 128 env steps
        assert agent.epsilon == pytest.approx(1.0 - 0.96 * 128 / 1000)
        assert agent.learn(data)["epsilon"] == pytest.approx(1.0 - 0.96 * 128 / 1000)
        fresh = self.agent(**hp)
        fresh.learn(data)  # learning from a window it did not act for moves its clock too
        assert fresh.epsilon == agent.epsilon

    def test_epsilon_decays_multiplicatively_per_env_step_without_exploration_steps(
        self,
    ) -> None:
        agent = self.agent(
            exploration_steps=0, learning_starts=0, epsilon=0.5, epsilon_decay=0.99, epsilon_min=0.1
        )
        obs = np.zeros((N_ENVS, 4), dtype=np.float32)
        for call in range(3):
            assert agent.epsilon == pytest.approx(0.5 * 0.99 ** (N_ENVS * call))
            _step(agent, obs)
        agent.num_timesteps = 1000
        assert agent.epsilon == pytest.approx(0.1)

    def test_training_actions_are_random_until_learning_starts(self) -> None:
        agent = self.agent(learning_starts=10, exploration_steps=0, epsilon=0.0, epsilon_min=0.0)
        obs = np.zeros((N_ENVS, 4), dtype=np.float32)
        rates = []
        for _ in range(7):
            rates.append(agent.epsilon)
            _step(agent, obs)
        assert rates == [1.0] * 5 + [0.0] * 2  # steps 0-9 collected at random, then greedy

    def test_act_does_not_advance_epsilon_and_explores_at_its_rate(self) -> None:
        agent = self.agent(learning_starts=0, exploration_steps=0, epsilon=0.3)
        obs = _observations(4000)
        greedy = agent.act(obs, deterministic=True)
        training_stream = copy.deepcopy(agent.rng.bit_generator.state)
        for _ in range(3):
            actions = agent.act(obs)
        assert agent.epsilon == 0.3 and agent.rng.bit_generator.state == training_stream
        # a random action differs from the greedy one half the time with two actions
        assert np.mean(actions != greedy) == pytest.approx(0.15, abs=0.03)

    def test_a_checkpoint_taken_while_acting_keeps_epsilon_exact(self, tmp_path: Path) -> None:
        agent = self.agent(learning_starts=0, exploration_steps=100)
        obs = _observations()
        for _ in range(10):
            _step(agent, obs)
        agent.save_weights(str(tmp_path / "ckpt"))
        restored = self.agent(seed=9, learning_starts=0, exploration_steps=100)
        restored.load_weights(str(tmp_path / "ckpt"))
        assert restored.epsilon == agent.epsilon == pytest.approx(1.0 - 0.96 * 20 / 100)
        for _ in range(5):
            np.testing.assert_array_equal(_step(restored, obs), _step(agent, obs))
