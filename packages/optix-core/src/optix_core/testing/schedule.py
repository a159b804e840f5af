"""What ``anneal_steps`` (rl-zoo's linear learning-rate schedule) promises, on any backend.

Subclass ``ScheduleConformance`` in a test module and set ``algo`` and
``backend`` (and ``hyperparams`` the agent learns with quickly). As
Stable-Baselines3's ``lin_`` schedules, a window's update runs at
``learning_rate · (1 − steps/anneal_steps)``, the steps counting that window;
checkpoints carry the count. The tests read the agent's public surface only:
``learn``'s statistics, ``act_info``'s values, ``set_hyperparams`` and checkpoints.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from optix_core.registry import make_agent
from optix_core.testing.learning_runs import collect_windows
from optix_core.types import EpisodeData, HyperparamSet

ENV_ID = "CartPole-v1"
SCHEDULE = {"learning_rate": 1e-3, "anneal_steps": 1000}
WINDOW_STEPS = 200  # 2 environments x 100 steps


class ScheduleConformance:
    """The learning rate's linear schedule as the agent runs it."""

    algo: ClassVar[str]
    backend: ClassVar[str]
    hyperparams: ClassVar[dict[str, Any]] = {}

    def agent(self, seed: int = 0) -> Any:
        hp = {**self.hyperparams, **SCHEDULE}
        return make_agent(
            self.algo, ENV_ID, backend=self.backend, hyperparams=hp, device="cpu", seed=seed
        )

    def test_each_window_learns_at_the_rate_of_the_steps_so_far_including_its_own(self) -> None:
        agent = self.agent()
        data = _window(agent)
        rates = [agent.learn(data)["learning_rate"] for _ in range(4)]
        np.testing.assert_allclose(rates, [8e-4, 6e-4, 4e-4, 2e-4], rtol=1e-6)
        agent.set_hyperparams(HyperparamSet({"learning_rate": 2e-3}))  # the same point, rescaled
        assert agent.learn(data)["learning_rate"] == 0.0

    def test_past_the_schedule_learning_stands_still(self) -> None:
        agent = self.agent()
        data = _window(agent)
        for _ in range(5):
            agent.learn(data)
        probe = data.observations[0]
        before = agent.act_info(probe, np.zeros(len(probe), bool))[1]["values"]
        assert agent.learn(data)["learning_rate"] == 0.0
        after = agent.act_info(probe, np.zeros(len(probe), bool))[1]["values"]
        np.testing.assert_array_equal(after, before)

    def test_a_resumed_agent_goes_on_from_where_the_schedule_was(self, tmp_path: Path) -> None:
        original = self.agent()
        data = _window(original)
        original.learn(data)
        original.learn(data)
        original.save_weights(str(tmp_path / "ckpt"))
        resumed = self.agent(seed=7)
        resumed.load_weights(str(tmp_path / "ckpt"))
        assert resumed.learn(data)["learning_rate"] == original.learn(data)["learning_rate"]
        np.testing.assert_allclose(resumed.learn(data)["learning_rate"], 2e-4, rtol=1e-6)


def _window(agent: Any) -> EpisodeData:
    (window,) = collect_windows(agent, ENV_ID, 1, n_envs=2, window=100, seed=0)
    return window
