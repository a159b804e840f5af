"""FlaxAgent (A2C, and REINFORCE over any nnx.Module): conformance, the update, learning."""

from __future__ import annotations

from typing import Any, ClassVar

import gymnasium as gym
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from optix_core import make_agent
from optix_core.testing import AgentConformance
from optix_core.testing.learning_runs import learn_with_evaluations
from optix_core.testing.normalization import NormalizationConformance
from optix_core.testing.optimizers import GRADIENTS, rms_prop_steps
from optix_core.testing.schedule import ScheduleConformance
from optix_core.types import HyperparamSet
from optix_jax import FlaxAgent
from optix_jax.algorithms.a2c import make_a2c, rms_prop
from optix_jax.policies.networks import MLP

CARTPOLE = gym.make("CartPole-v1")
OBS, ACT = CARTPOLE.observation_space, CARTPOLE.action_space


class TestA2CConformance(AgentConformance):
    algo = "a2c"
    backend = "jax"


class TestA2CWithRMSpropConformance(AgentConformance):
    algo = "a2c"
    backend = "jax"
    learn_hyperparams: ClassVar[dict[str, Any]] = {"use_rms_prop": True}


class TestA2CNormalization(NormalizationConformance):
    algo = "a2c"
    backend = "jax"
    hyperparams: ClassVar[dict[str, Any]] = {}


class TestA2CSchedule(ScheduleConformance):
    algo = "a2c"
    backend = "jax"


def test_use_rms_prop_steps_as_torch_and_stable_baselines3_do() -> None:
    agent = make_agent(
        "a2c", "CartPole-v1", backend="jax", device="cpu", hyperparams={"use_rms_prop": True}
    )
    assert agent.optimizer.tx is rms_prop(1e-5)
    tx = rms_prop(1e-5)
    x = jnp.ones(4)
    state = tx.init(x)
    state.hyperparams["learning_rate"] = jnp.asarray(7e-4)
    for g in GRADIENTS:
        updates, state = tx.update(jnp.asarray(g, dtype=jnp.float32), state, x)
        x = optax.apply_updates(x, updates)
    np.testing.assert_allclose(x, rms_prop_steps(np.ones(4), GRADIENTS, 7e-4, 1e-5), rtol=1e-5)


def test_a_plain_module_without_a_critic_is_reinforce() -> None:
    policy = MLP(4, (32,), 2, 0.01, "tanh", nnx.Rngs(0))
    agent = FlaxAgent(policy, observation_space=OBS, seed=0, device="cpu")
    assert not agent.networks.shared and agent.networks.critic is None
    assert agent.distribution.n == 2
    _, values = agent._numpy_forward(np.zeros((3, 4), np.float32))
    np.testing.assert_array_equal(values, 0.0)  # no baseline: REINFORCE


@pytest.mark.slow
def test_reinforce_learns_cartpole() -> None:
    """REINFORCE (no critic) on whole-episode returns, lr 1e-2, 4 envs × 500 steps,
    seed 0: a deterministic 20-episode evaluation reaches 200 within 80,000 steps
    (random play scores about 22)."""
    policy = MLP(4, (64,), 2, 0.01, "tanh", nnx.Rngs(0))
    agent = FlaxAgent(
        policy,
        hyperparams=HyperparamSet({"learning_rate": 1e-2, "normalize_advantage": True}),
        observation_space=OBS,
        seed=0,
        device="cpu",
    )
    scores = learn_with_evaluations(
        agent, "CartPole-v1", 80_000, stop_at=200, n_envs=4, window_size=500, every=10_000
    )
    assert scores[-1] >= 200, scores


def test_a2c_default_network_learns_a_window() -> None:
    agent = make_a2c(OBS, ACT, device="cpu", seed=0)
    assert agent.networks.shared
    from optix_core.pipeline import VectorBatchPipeline

    pipeline = VectorBatchPipeline(
        env_id="CartPole-v1", n_envs=2, window_size=5, seed=0, agent=agent
    )
    stats = agent.learn(pipeline.collect())
    pipeline.close()
    assert np.isfinite(stats["policy_loss"]) and np.isfinite(stats["value_loss"])
