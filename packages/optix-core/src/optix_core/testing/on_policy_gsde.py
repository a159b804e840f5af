"""What PPO's and A2C's ``use_sde`` (on-policy gSDE) promises, on any backend.

Subclass ``OnPolicyGSDEConformance`` in a test module, set ``algo`` and
``backend``, and supply ``policy_params(agent, obs)``: the distribution's
parameters ``[μ ‖ log σ̃ ‖ z]`` for ``obs`` as numpy (each backend reaches its
forward pass its own way). As Stable-Baselines3's on-policy gSDE, training
explores with u = μ + z·θ_ε, one θ_ε per environment drawn as each window
begins and every ``sde_sample_freq`` steps within it; log π is the Gaussian's
with σ̃² = (z²)·(σ²); checkpoints keep the held matrices.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest

from optix_core.registry import make_agent
from optix_core.testing.learning_runs import collect_windows
from optix_core.types import EpisodeData, HyperparamSet

ENV_ID = "Pendulum-v1"  # 3 observations, 1 action in [-2, 2]
HIDDEN = 16
GSDE = {"use_sde": True, "log_std_init": -1.0}


class OnPolicyGSDEConformance:
    """Acting with held matrices, its log-probability, and checkpoints that keep them."""

    algo: ClassVar[str]
    backend: ClassVar[str]

    def agent(self, seed: int = 0, **hp: Any) -> Any:
        return make_agent(
            self.algo, ENV_ID, backend=self.backend, hyperparams={**GSDE, **hp},
            device="cpu", seed=seed, network={"hidden": [HIDDEN, HIDDEN]},
        )  # fmt: skip

    def policy_params(self, agent: Any, obs: np.ndarray) -> np.ndarray:
        """The distribution's parameters ``[μ ‖ log σ̃ ‖ z]`` for ``obs``, as numpy."""
        raise NotImplementedError

    def test_training_explores_with_matrices_held_per_environment(self) -> None:
        """Between draws the same observation gets the same action; new matrices
        come every sde_sample_freq steps and with every window; the noise is
        z·θ_ε, and the deterministic action the mean."""
        agent = self.agent(sde_sample_freq=3)
        obs = np.random.default_rng(0).normal(size=(2, 3)).astype(np.float32)
        starts = np.zeros(2, dtype=bool)
        acted = [agent.act_info(obs, starts) for _ in range(7)]
        raw = [info["raw_actions"] for _, info in acted]
        same = [np.array_equal(raw[i], raw[i + 1]) for i in range(6)]
        assert same == [True, True, False, True, True, False]  # new θ_ε at steps 3 and 6
        assert not np.array_equal(raw[0][0], raw[0][1])  # each environment its own
        params = self.policy_params(agent, obs)
        mean, latent = params[:, :1], params[:, 2:]
        assert latent.shape == (2, HIDDEN)
        noise = np.einsum("nl,nla->na", latent, np.asarray(agent._sde_matrices))
        np.testing.assert_allclose(raw[-1], mean + noise, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(acted[-1][0], np.clip(mean + noise, -2, 2), rtol=1e-5)
        np.testing.assert_allclose(agent.act(obs, deterministic=True), np.clip(mean, -2, 2))

    def test_each_window_explores_with_matrices_of_its_own(self) -> None:
        agent = self.agent()  # sde_sample_freq -1: drawn only as a window begins
        obs = np.random.default_rng(3).normal(size=(2, 3)).astype(np.float32)
        starts = np.zeros(2, dtype=bool)
        agent.act_info(obs, starts)
        held = np.array(agent._sde_matrices)
        for _ in range(20):
            agent.act_info(obs, starts)
        np.testing.assert_array_equal(agent._sde_matrices, held)
        agent.learn(_window(self.agent(seed=1)))
        agent.act_info(obs, starts)
        assert not np.array_equal(agent._sde_matrices, held)
        std = np.exp(GSDE["log_std_init"])
        assert 0.5 * std < np.std(held) < 1.5 * std  # entries N(0, σ²)

    def test_the_recorded_log_probability_is_the_gaussian_of_the_state_dependent_std(
        self,
    ) -> None:
        """σ̃² = (z²)·(σ²) + ε, σ = exp(log_std_init) at first: what the update's
        ratio divides by is the density the action was drawn from."""
        agent = self.agent()
        obs = np.random.default_rng(1).normal(size=(4, 3)).astype(np.float32)
        _, info = agent.act_info(obs, np.zeros(4, dtype=bool))
        params = self.policy_params(agent, obs)
        mean, log_std, latent = params[:, :1], params[:, 1:2], params[:, 2:]
        sigma = math.exp(GSDE["log_std_init"])
        np.testing.assert_allclose(
            log_std, 0.5 * np.log(np.square(latent).sum(1, keepdims=True) * sigma**2 + 1e-6),
            rtol=1e-5,
        )  # fmt: skip
        u = info["raw_actions"]
        expected = (
            -0.5 * ((u - mean) / np.exp(log_std)) ** 2 - log_std - 0.5 * math.log(2 * math.pi)
        )
        np.testing.assert_allclose(info["log_probs"], expected.sum(1), rtol=1e-4, atol=1e-5)

    def test_a_resumed_agent_explores_with_the_matrices_it_held(self, tmp_path: Path) -> None:
        agent = self.agent()
        obs = np.random.default_rng(2).normal(size=(2, 3)).astype(np.float32)
        starts = np.zeros(2, dtype=bool)
        agent.act_info(obs, starts)
        agent.save_weights(str(tmp_path / "ckpt"))
        resumed = self.agent(seed=7)
        resumed.load_weights(str(tmp_path / "ckpt"))
        np.testing.assert_array_equal(
            resumed.act_info(obs, starts)[1]["raw_actions"],
            agent.act_info(obs, starts)[1]["raw_actions"],
        )

    def test_gsde_is_fixed_when_the_agent_is_built_and_needs_box_actions(self) -> None:
        agent = self.agent()
        with pytest.raises(ValueError, match="use_sde"):
            agent.set_hyperparams(
                HyperparamSet({**agent.get_hyperparams().params, "use_sde": False})
            )
        with pytest.raises(ValueError, match="use_sde"):
            make_agent(self.algo, "CartPole-v1", backend=self.backend, hyperparams=GSDE)


def _window(agent: Any) -> EpisodeData:
    (window,) = collect_windows(agent, ENV_ID, 1, n_envs=2, window=16, seed=0)
    return window
