"""The conformance suite: what every registered agent must do.

Subclass ``AgentConformance`` in a test module and set ``algo`` and
``backend``; every test runs once per environment in ``env_ids`` whose
action space the agent declares.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
import pytest

from optix_core.agent import BaseAgent
from optix_core.hyperparams import HyperparamError
from optix_core.pipeline import VectorBatchPipeline
from optix_core.registry import action_space_kind, agents, make_agent
from optix_core.types import EpisodeData, HyperparamSet

CONTRACT = ("act", "learn", "get_hyperparams", "set_hyperparams", "save_weights", "load_weights")


class AgentConformance:
    algo: ClassVar[str]
    backend: ClassVar[str]
    env_ids: ClassVar[tuple[str, ...]] = ("CartPole-v1", "Pendulum-v1")
    n_envs: ClassVar[int] = 2
    window_size: ClassVar[int] = 64
    seed: ClassVar[int] = 0

    def pytest_generate_tests(self, metafunc: pytest.Metafunc) -> None:
        if "env_id" in metafunc.fixturenames:
            spec = self._spec()
            served = [e for e in self.env_ids if _kind(e) in spec.action_spaces]
            metafunc.parametrize("env_id", served)

    # ---- helpers ---------------------------------------------------------

    def _spec(self) -> Any:
        for spec in agents():
            if spec.name == self.algo and spec.backend == self.backend:
                return spec
        raise AssertionError(f"{self.algo!r} on {self.backend!r} is not registered")

    def make(
        self, env_id: str, hyperparams: dict[str, Any] | None = None, seed: int | None = None
    ) -> BaseAgent:
        hp = HyperparamSet(params=hyperparams) if hyperparams is not None else None
        return make_agent(
            self.algo,
            env_id,
            backend=self.backend,
            hyperparams=hp,
            device="cpu",
            seed=self.seed if seed is None else seed,
        )

    def window(self, agent: BaseAgent, env_id: str) -> EpisodeData:
        pipeline = VectorBatchPipeline(
            env_id=env_id,
            n_envs=self.n_envs,
            window_size=self.window_size,
            seed=self.seed,
            agent=agent,
        )
        try:
            return pipeline.collect()
        finally:
            pipeline.close()

    def probe_observations(self, env_id: str, n: int = 16) -> np.ndarray:
        env = gym.make(env_id)
        env.observation_space.seed(self.seed)
        obs = np.stack([env.observation_space.sample() for _ in range(n)])
        env.close()
        bounded = np.isfinite(env.observation_space.low) & np.isfinite(env.observation_space.high)
        return np.where(bounded, obs, np.clip(obs, -3, 3)).astype(env.observation_space.dtype)

    # ---- the contract ------------------------------------------------------

    def test_is_a_base_agent_with_the_six_methods(self, env_id: str) -> None:
        agent = self.make(env_id)
        assert isinstance(agent, BaseAgent)
        for name in CONTRACT:
            assert callable(getattr(agent, name)), name
        assert agent.is_on_policy == self._spec().on_policy

    def test_acts_on_its_declared_spaces(self, env_id: str) -> None:
        agent = self.make(env_id)
        space = gym.make(env_id).action_space
        obs = self.probe_observations(env_id)
        for deterministic in (False, True):
            actions = np.asarray(agent.act(obs, deterministic=deterministic))
            assert len(actions) == len(obs)
            assert all(space.contains(np.asarray(a, dtype=space.dtype)) for a in actions)
        agent.reset_state()
        again = np.asarray(agent.act(obs, deterministic=True))
        agent.reset_state()
        np.testing.assert_array_equal(again, agent.act(obs, deterministic=True))

    def test_hyperparameters_round_trip(self, env_id: str) -> None:
        agent = self.make(env_id)
        before = agent.get_hyperparams()
        assert set(self._spec().defaults) <= set(before.params)
        changed = dict(before.params)
        for key, spec in self._spec().search_space.items():
            changed[key] = _inside(spec)
        agent.set_hyperparams(HyperparamSet(params=changed))
        after = agent.get_hyperparams().params
        for key in self._spec().search_space:
            assert after[key] == pytest.approx(changed[key]), key

    def test_rejects_unknown_hyperparameters(self, env_id: str) -> None:
        with pytest.raises((HyperparamError, ValueError)):
            self.make(env_id, hyperparams={"no_such_hyperparameter": 1.0})

    def test_save_load_round_trip(self, env_id: str, tmp_path: Path) -> None:
        agent = self.make(env_id)
        agent.learn(self.window(agent, env_id))
        agent.save_weights(str(tmp_path / "agent"))
        restored = self.make(env_id, seed=self.seed + 1)
        restored.load_weights(str(tmp_path / "agent"))
        obs = self.probe_observations(env_id)
        agent.reset_state()
        restored.reset_state()
        np.testing.assert_allclose(
            np.asarray(restored.act(obs, deterministic=True), dtype=np.float64),
            np.asarray(agent.act(obs, deterministic=True), dtype=np.float64),
            rtol=1e-6,
        )
        assert restored.get_hyperparams().params == agent.get_hyperparams().params
        for file in (tmp_path / "agent").rglob("*"):
            if file.is_file():
                assert file.read_bytes()[:1] != b"\x80", f"{file.name} looks like a pickle"

    def test_learns_from_a_short_window(self, env_id: str) -> None:
        agent = self.make(env_id)
        diagnostics = agent.learn(self.window(agent, env_id))
        assert isinstance(diagnostics, dict)
        for key, value in diagnostics.items():
            assert isinstance(value, int | float | np.number), key
            assert math.isfinite(float(value)), key

    def test_act_does_not_change_what_learn_does(self, env_id: str) -> None:
        """Acting between a rollout and learn() (an evaluation, a dashboard)
        changes nothing about the update."""
        window = self.window(self.make(env_id), env_id)
        quiet, busy = self.make(env_id), self.make(env_id)
        obs = self.probe_observations(env_id)
        for _ in range(5):
            busy.act(obs, deterministic=False)
            busy.act(obs, deterministic=True)
        quiet_diag, busy_diag = quiet.learn(window), busy.learn(window)
        assert quiet_diag.keys() == busy_diag.keys()
        for key in quiet_diag:
            assert busy_diag[key] == pytest.approx(quiet_diag[key], rel=1e-6, abs=1e-9), key
        busy.reset_state()
        quiet.reset_state()
        np.testing.assert_allclose(
            np.asarray(busy.act(obs, deterministic=True), dtype=np.float64),
            np.asarray(quiet.act(obs, deterministic=True), dtype=np.float64),
            rtol=1e-6,
        )


def _kind(env_id: str) -> str:
    env = gym.make(env_id)
    try:
        return action_space_kind(env.action_space)
    finally:
        env.close()


def _inside(spec: tuple) -> Any:
    """A value strictly inside a search-space entry, away from the default."""
    kind, *values = spec
    if kind == "categorical":
        return values[-1]
    low, high = values
    if kind in ("log_float", "log_int"):
        value = math.exp(0.3 * math.log(low) + 0.7 * math.log(high))
    else:
        value = low + 0.7 * (high - low)
    return round(value) if kind.endswith("int") else value
