"""What ``normalize_observations`` and ``normalize_reward`` promise, on any backend.

Subclass ``NormalizationConformance`` in a test module and set ``backend``
(and ``algo`` for an agent built on ``optix_core.on_policy.OnPolicyWindow``
other than "ppo", with ``hyperparams`` it learns with quickly). The tests
use the agent's public surface only: ``act``, ``act_info``, ``learn``,
``window_returns``, the normalizers, ``set_hyperparams`` and checkpoints.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest

from optix_core.pipeline import VectorBatchPipeline
from optix_core.registry import make_agent
from optix_core.types import EpisodeData, HyperparamSet

ENV_ID = "CartPole-v1"
FLAGS = {"normalize_observations": True, "normalize_reward": True}


class NormalizationConformance:
    """Observation and reward normalization (SB3's VecNormalize) as the agent does it."""

    algo: ClassVar[str] = "ppo"
    backend: ClassVar[str]
    hyperparams: ClassVar[dict[str, Any]] = {"n_epochs": 2}

    def agent(self, normalize: bool = True) -> Any:
        hp = {**self.hyperparams, **(FLAGS if normalize else {})}
        return make_agent(
            self.algo, ENV_ID, backend=self.backend, hyperparams=hp, device="cpu", seed=0
        )

    def test_a_window_is_acted_on_and_learned_with_one_set_of_statistics_then_joins_them(
        self,
    ) -> None:
        agent = self.agent()
        first = _window(agent, seed=0)
        agent.learn(first)
        before = agent.obs_normalizer.state_dict()
        second = _window(agent, seed=1)
        raw = second.observations.reshape(-1, 4)
        obs = agent.window_returns(second).obs
        np.testing.assert_allclose(obs, _standardized(raw, before), rtol=1e-6)
        # Then the window joined the statistics, as one batch of both windows would.
        both = np.concatenate([first.observations.reshape(-1, 4), raw])
        assert agent.obs_normalizer.rms.count == len(both)
        np.testing.assert_allclose(agent.obs_normalizer.mean, both.mean(0), rtol=1e-6)
        np.testing.assert_allclose(agent.obs_normalizer.var, both.var(0), rtol=1e-6)
        # Rewards: one running return per environment column, made at the first window.
        assert agent.reward_normalizer.returns.shape == (2,)

    def test_acting_reads_the_standardized_observation(self) -> None:
        agent = self.agent()
        agent.learn(_window(agent, seed=0))
        obs = _window(agent, seed=3).observations.reshape(-1, 4)[:16]
        state = agent.obs_normalizer.state_dict()
        actions = agent.act(obs, deterministic=True)
        values = agent.act_info(obs, np.zeros(len(obs), bool))[1]["values"]
        normalizer, agent.obs_normalizer = agent.obs_normalizer, None  # the networks, bare
        try:
            bare = _standardized(obs, state)
            np.testing.assert_array_equal(actions, agent.act(bare, deterministic=True))
            bare_values = agent.act_info(bare, np.zeros(len(obs), bool))[1]["values"]
            np.testing.assert_allclose(values, bare_values, rtol=1e-5, atol=1e-6)
        finally:
            agent.obs_normalizer = normalizer

    def test_a_resumed_agent_acts_and_learns_exactly_as_the_original(self, tmp_path: Path) -> None:
        original = self.agent()
        original.learn(_window(original, seed=0))
        original.save_weights(str(tmp_path / "ckpt"))
        resumed = self.agent()
        resumed.load_weights(str(tmp_path / "ckpt"))
        # Acting may draw from the stream that orders minibatches: a third agent collects.
        collector = self.agent(normalize=False)
        probes = _window(collector, seed=5).observations.reshape(-1, 4)
        np.testing.assert_array_equal(resumed.act(probes, True), original.act(probes, True))
        second = _window(collector, seed=1)
        assert original.learn(second) == resumed.learn(second)
        np.testing.assert_array_equal(resumed.act(probes, True), original.act(probes, True))
        for name in ("obs_normalizer", "reward_normalizer"):
            want, got = getattr(original, name).state_dict(), getattr(resumed, name).state_dict()
            for key in want:
                np.testing.assert_array_equal(got[key], want[key])

    def test_weights_learned_on_one_kind_of_input_do_not_load_into_the_other(
        self, tmp_path: Path
    ) -> None:
        self.agent().save_weights(str(tmp_path / "normalized"))
        self.agent(normalize=False).save_weights(str(tmp_path / "raw"))
        with pytest.raises(ValueError, match="has normalize_observations=True, but this agent"):
            self.agent(normalize=False).load_weights(str(tmp_path / "normalized"))
        with pytest.raises(ValueError, match="has normalize_observations=False, but this agent"):
            self.agent().load_weights(str(tmp_path / "raw"))

    def test_a_checkpoint_without_the_setting_or_statistics_does_not_load_normalized(
        self, tmp_path: Path
    ) -> None:
        """As one written before the agent had normalize_observations: its state.json
        names no such hyperparameter and holds no statistics."""
        self.agent(normalize=False).save_weights(str(tmp_path / "old"))
        state_file = tmp_path / "old" / "state.json"
        state = json.loads(state_file.read_text())
        del state["hyperparams"]["params"]["normalize_observations"]
        state_file.write_text(json.dumps(state))
        with pytest.raises(ValueError, match="holds no observation statistics"):
            self.agent().load_weights(str(tmp_path / "old"))

    def test_normalizing_observations_is_chosen_when_the_agent_is_built(self) -> None:
        agent = self.agent(normalize=False)
        with pytest.raises(ValueError, match="built with normalize_observations=False"):
            agent.set_hyperparams(HyperparamSet({"normalize_observations": True}))
        agent.set_hyperparams(HyperparamSet({"normalize_reward": True}))  # a running statistic
        agent.learn(_window(agent, seed=0))
        assert agent.reward_normalizer is not None and agent.obs_normalizer is None


def _window(agent: Any, seed: int) -> EpisodeData:
    pipeline = VectorBatchPipeline(env_id=ENV_ID, n_envs=2, window_size=64, seed=seed, agent=agent)
    try:
        return pipeline.collect()
    finally:
        pipeline.close()


def _standardized(obs: np.ndarray, state: dict[str, Any]) -> np.ndarray:
    scaled = (obs - state["mean"]) / np.sqrt(state["var"] + 1e-8)
    return np.clip(scaled, -10, 10).astype(np.float32)
