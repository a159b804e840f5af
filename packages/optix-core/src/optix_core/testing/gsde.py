"""What SAC's ``use_sde`` (gSDE exploration) promises, on any backend.

Subclass ``GSDEConformance`` in a test module and set ``backend``; override
``actor_outputs`` where the agent has no numpy ``actor_outputs(obs)`` of its own.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from optix_core.registry import make_agent
from optix_core.testing.actor_critic import collect, resume


class GSDEConformance:
    """Acting with held matrices, and a checkpoint that keeps them."""

    backend: ClassVar[str]

    def agent(self, seed: int = 0, **hp: Any) -> Any:
        hp = {"use_sde": True, "log_std_init": -1.0, "learning_starts": 0, **hp}
        return make_agent(
            "sac", "Pendulum-v1", backend=self.backend, hyperparams=hp, device="cpu",
            seed=seed, network={"hidden": [32, 32]},
        )  # fmt: skip

    def actor_outputs(self, agent: Any, obs: np.ndarray) -> np.ndarray:
        """The actor's ``[mean ‖ z]`` rows for ``obs``, as numpy."""
        return np.asarray(agent.actor_outputs(obs))

    def test_the_noise_is_the_features_times_a_matrix_held_between_draws(self) -> None:
        """One θ_ε per environment, drawn at each train_freq boundary and every
        sde_sample_freq steps after it: in between, the same observation gets the same
        action, and the noise is z·θ_ε (state-dependent: zero where z is)."""
        agent = self.agent(train_freq=6, sde_sample_freq=3)
        obs = np.random.default_rng(0).normal(size=(2, 3)).astype(np.float32)
        starts = np.zeros(2, dtype=bool)
        actions = [agent.act_info(obs, starts)[0] for _ in range(7)]
        same = [np.array_equal(actions[i], actions[i + 1]) for i in range(6)]
        assert same == [True, True, False, True, True, False]  # new θ_ε at steps 3 and 6
        assert not np.array_equal(actions[0][0], actions[0][1])  # each environment its own
        out = self.actor_outputs(agent, obs)
        mean, z = out[:, :1], out[:, 1:]
        assert agent.actor_width() == 1 + z.shape[1] == 33
        noise = np.einsum("nl,nla->na", z, np.asarray(agent._sde_matrices))
        np.testing.assert_allclose(actions[-1], 2 * np.tanh(mean + noise), rtol=1e-5)
        deterministic = agent.act(obs, deterministic=True)
        np.testing.assert_allclose(deterministic, 2 * np.tanh(mean), rtol=1e-5)

    def test_a_resumed_agent_acts_and_learns_exactly_as_the_original(self, tmp_path: Path) -> None:
        first, second = collect(self.agent(seed=99), windows=2)
        agent = self.agent(train_freq=1000)  # θ_ε is held across the window boundary
        obs = np.random.default_rng(1).normal(size=(2, 3)).astype(np.float32)
        starts = np.zeros(2, dtype=bool)
        agent.learn(first)
        agent.act_info(obs, starts)
        resumed = resume(agent, self.agent(seed=7, train_freq=1000), tmp_path)
        np.testing.assert_array_equal(
            resumed.act_info(obs, starts)[0], agent.act_info(obs, starts)[0]
        )
        assert resumed.learn(second) == agent.learn(second)
