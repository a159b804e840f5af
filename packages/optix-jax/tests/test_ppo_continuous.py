"""FlaxPPOAgent on Box actions (tanh-squashed and plain Gaussian): conformance and learning."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from flax import nnx

from optix_core.evaluation import evaluate_policy
from optix_core.pipeline import VectorBatchPipeline
from optix_core.registry import find_agent
from optix_core.testing import AgentConformance
from optix_core.types import HyperparamSet
from optix_jax.algorithms.ppo import FlaxGaussianPPOAgent, FlaxPPOAgent, make_ppo
from optix_jax.policies.distributions import DiagGaussian, SquashedGaussian
from optix_jax.policies.networks import MLP

PENDULUM = gym.make("Pendulum-v1")
OBS, ACT = PENDULUM.observation_space, PENDULUM.action_space  # Box(3,), Box(-2, 2, (1,))


class TestGaussianPPOConformance(AgentConformance):
    algo = "ppo"
    backend = "jax"
    env_ids = ("Pendulum-v1",)


def test_tensor_optix_form_takes_action_dim_and_squashes_into_the_bounds() -> None:
    actor = MLP(3, (16,), 2, 1.0, "tanh", nnx.Rngs(0))
    critic = MLP(3, (), 1, 1.0, "tanh", nnx.Rngs(1))
    agent = FlaxGaussianPPOAgent(actor, critic, action_dim=1, seed=0, device="cpu")
    assert isinstance(agent.distribution, SquashedGaussian)
    actions = agent.act(np.random.default_rng(0).normal(size=(64, 3)).astype(np.float32))
    assert actions.shape == (64, 1) and np.all(np.abs(actions) < 1)
    with pytest.raises(ValueError, match="needs action_dim"):
        FlaxGaussianPPOAgent(actor, critic)
    with pytest.raises(ValueError, match="does not match"):
        FlaxGaussianPPOAgent(actor, critic, action_dim=2, action_space=ACT)


def test_the_plain_gaussian_clips_to_the_bounds_and_learns_from_the_raw_draw() -> None:
    base = make_ppo(OBS, ACT, device="cpu", seed=0)
    agent = FlaxPPOAgent(
        base.networks.actor, action_space=ACT, distribution="gaussian", device="cpu", seed=0
    )
    assert isinstance(agent.distribution, DiagGaussian)
    obs = np.zeros((256, 3), np.float32)
    actions, info = agent.act_info(obs, np.zeros(256, bool))
    assert np.all(np.abs(actions) <= 2.0) and info["raw_actions"].shape == (256, 1)


@pytest.mark.slow
def test_learns_pendulum_with_its_preset() -> None:
    """The registered Pendulum-v1 preset (rl-zoo's PPO settings without gSDE:
    4 envs × 1024 steps, λ 0.95, γ 0.9, 10 epochs of minibatches of 64, lr 1e-3,
    clip 0.2, no entropy bonus): a deterministic mean of at least −250 after
    57,344 steps, as optix-torch's and optix-tf's PPO."""
    hyperparams, rollout = find_agent("ppo", "continuous", "jax").settings("Pendulum-v1")
    agent = make_ppo(OBS, ACT, hyperparams=HyperparamSet(hyperparams), device="cpu", seed=0)
    pipeline = VectorBatchPipeline(env_id="Pendulum-v1", **rollout, seed=0, agent=agent)
    try:
        for _ in range(14):
            agent.learn(pipeline.collect())
    finally:
        pipeline.close()
    result = evaluate_policy(agent, "Pendulum-v1", episodes=20, seed=10_000)
    assert result.mean >= -250, str(result)
