"""PPO on Box actions: TorchGaussianPPOAgent, the tanh-squashed Gaussian policy."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from torch.distributions import Normal

from optix_core import VectorBatchPipeline
from optix_core.evaluation import evaluate_policy
from optix_core.registry import find_agent
from optix_core.testing import AgentConformance
from optix_core.types import EpisodeData, HyperparamSet
from optix_torch.algorithms.ppo import (
    TorchGaussianPPOAgent,
    TorchPPOAgent,
    make_ppo,
)
from optix_torch.policies import TwinMLP, mlp
from optix_torch.policies.distributions import SquashedGaussian

torch.set_num_threads(1)

PENDULUM = gym.make("Pendulum-v1")
OBS, ACT = PENDULUM.observation_space, PENDULUM.action_space  # Box(3,), Box(-2, 2, (1,))


class TestGaussianPPOConformance(AgentConformance):
    algo = "ppo"
    backend = "torch"
    env_ids = ("Pendulum-v1", "MountainCarContinuous-v0")


def window(agent, env_id: str = "Pendulum-v1", steps: int = 64, seed: int = 0) -> EpisodeData:
    pipeline = VectorBatchPipeline(
        env_id=env_id, n_envs=2, window_size=steps, seed=seed, agent=agent
    )
    try:
        return pipeline.collect()
    finally:
        pipeline.close()


def test_the_factory_builds_a_squashed_gaussian_policy_for_box_actions() -> None:
    agent = make_ppo(OBS, ACT, device="cpu", seed=0)
    assert isinstance(agent.distribution, SquashedGaussian)
    assert agent.distribution.action_dim == 1 and agent.distribution.param_dim == 2


def test_tensor_optix_constructor_with_action_dim() -> None:
    torch.manual_seed(0)
    actor, critic = mlp(8, 4, (32,)), mlp(8, 1, (32,))
    optimizer = torch.optim.Adam([*actor.parameters(), *critic.parameters()], lr=3e-4)
    agent = TorchGaussianPPOAgent(
        actor=actor,
        critic=critic,
        optimizer=optimizer,
        action_dim=2,
        hyperparams=HyperparamSet(params={"learning_rate": 3e-4, "n_epochs": 2}, episode_id=0),
        device="cpu",
    )
    actions = agent.act(np.zeros((5, 8), dtype=np.float32))
    assert actions.shape == (5, 2) and np.all(np.abs(actions) < 1)  # no bounds: (−1, 1)


def test_a_mismatched_action_dim_or_actor_output_is_refused() -> None:
    with pytest.raises(ValueError, match=r"actor outputs shape \(2,\).*expected \(4,\)"):
        TorchGaussianPPOAgent(mlp(3, 2), mlp(3, 1), action_dim=2, device="cpu")
    with pytest.raises(ValueError, match=r"action_dim=2 does not match the action space"):
        TorchGaussianPPOAgent(mlp(3, 4), mlp(3, 1), action_dim=2, action_space=ACT, device="cpu")
    with pytest.raises(ValueError, match=r"actor outputs shape \(4,\).*expected \(2,\)"):
        TorchGaussianPPOAgent(TwinMLP(3, 4), action_space=ACT, observation_space=OBS)
    with pytest.raises(ValueError, match="needs action_dim"):
        TorchGaussianPPOAgent(mlp(3, 2), mlp(3, 1), device="cpu")


def test_a_continuous_agent_on_a_discrete_space_and_the_reverse_are_refused() -> None:
    with pytest.raises(ValueError, match=r"acts on Box action spaces, got Discrete\(2\)"):
        TorchGaussianPPOAgent(mlp(4, 2), mlp(4, 1), action_space=gym.spaces.Discrete(2))
    with pytest.raises(ValueError, match=r"actor outputs shape \(2,\).*expected \(3,\)"):
        TorchPPOAgent(mlp(3, 2), mlp(3, 1), action_space=gym.spaces.Discrete(3))
    unbounded = gym.spaces.Box(-np.inf, np.inf, (1,))
    with pytest.raises(ValueError, match="unbounded"):
        TorchGaussianPPOAgent(mlp(3, 2), mlp(3, 1), action_space=unbounded)


def test_actions_are_squashed_into_the_box_bounds() -> None:
    space = gym.spaces.Box(np.array([-2.0, 0.0], np.float32), np.array([2.0, 10.0], np.float32))
    agent = make_ppo(gym.spaces.Box(-1, 1, (3,)), space, device="cpu", seed=0)
    obs = np.random.default_rng(0).normal(size=(256, 3)).astype(np.float32)
    with torch.no_grad():  # a wide policy, so that samples reach the bounds
        agent.actor.heads.biases[-1][0, 0, 2:] = 2.0
    for actions in (agent.act(obs), agent.act_info(obs, np.ones(256, bool))[0]):
        assert actions.dtype == np.float32 and actions.shape == (256, 2)
        assert all(space.contains(a) for a in actions)
        assert actions[:, 1].min() < 1.0 and actions[:, 1].max() > 9.0
    with torch.no_grad():
        mean = agent.actor(torch.as_tensor(obs))[0][:, :2]
    expected = torch.tensor([0.0, 5.0]) + torch.tensor([2.0, 5.0]) * torch.tanh(mean)
    np.testing.assert_allclose(agent.act(obs, deterministic=True), expected.numpy(), atol=1e-5)


def test_act_info_records_the_squashed_gaussian_log_probability() -> None:
    agent = make_ppo(OBS, ACT, device="cpu", seed=0)
    obs = np.random.default_rng(1).normal(size=(32, 3)).astype(np.float32)
    actions, info = agent.act_info(obs, np.ones(32, bool))
    assert set(info) == {"log_probs", "values", "raw_actions"}
    u = torch.as_tensor(info["raw_actions"])
    with torch.no_grad():
        out, values = agent.actor(torch.as_tensor(obs))
    mean, log_std = out[:, :1], out[:, 1:].clamp(-5, 2)
    reference = Normal(mean, log_std.exp()).log_prob(u) - torch.log1p(-(torch.tanh(u) ** 2) + 1e-12)
    np.testing.assert_allclose(info["log_probs"], reference.sum(-1).numpy(), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(info["values"], values.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(actions, 2.0 * np.tanh(info["raw_actions"]), rtol=1e-5, atol=1e-6)


def test_the_first_update_starts_from_a_ratio_of_one() -> None:
    """One epoch of one minibatch: the ratio is computed before any step, so the
    recorded log-probabilities must equal the learner's to within rounding."""
    agent = make_ppo(OBS, ACT, device="cpu", seed=0)
    agent.set_hyperparams(HyperparamSet({"n_epochs": 1, "minibatch_size": 128}))
    diagnostics = agent.learn(window(agent))
    assert abs(diagnostics["approx_kl"]) < 1e-6
    assert diagnostics["clip_fraction"] == 0.0


def test_a_window_without_pre_tanh_actions_recovers_them_from_the_actions() -> None:
    agent = make_ppo(OBS, ACT, device="cpu", seed=0)
    data = window(agent)
    u = data.policy_info["raw_actions"].reshape(-1, 1)
    recovered = agent.distribution.learn_actions(data.actions, {}, u.shape[0])
    inside = np.abs(u) < 5  # tanh saturates in float32 beyond that
    np.testing.assert_allclose(recovered[inside], u[inside], rtol=1e-3, atol=1e-3)


def test_the_discrete_agents_first_update_starts_from_a_ratio_of_one() -> None:
    cart = gym.make("CartPole-v1")
    agent = make_ppo(cart.observation_space, cart.action_space, device="cpu", seed=0)
    agent.set_hyperparams(HyperparamSet({"n_epochs": 1, "minibatch_size": 128}))
    diagnostics = agent.learn(window(agent, "CartPole-v1"))
    assert abs(diagnostics["approx_kl"]) < 1e-6 and diagnostics["clip_fraction"] == 0.0


# ---- learning ---------------------------------------------------------------------


@pytest.mark.slow
def test_learns_pendulum_with_its_preset() -> None:
    """The registered Pendulum-v1 preset (rl-zoo's PPO settings without gSDE:
    4 envs × 1024 steps, λ 0.95, γ 0.9, 10 epochs of minibatches of 64, lr 1e-3,
    clip 0.2, no entropy bonus): a deterministic mean of at least −250 after
    57,344 steps (seeds 0–2 reach about −160 there; about 20 s of CPU)."""
    hyperparams, rollout = find_agent("ppo", "continuous", "torch").settings("Pendulum-v1")
    agent = make_ppo(OBS, ACT, hyperparams=HyperparamSet(hyperparams), device="cpu", seed=0)
    pipeline = VectorBatchPipeline(env_id="Pendulum-v1", **rollout, seed=0, agent=agent)
    try:
        for _ in range(14):
            agent.learn(pipeline.collect())
    finally:
        pipeline.close()
    result = evaluate_policy(agent, "Pendulum-v1", episodes=20, seed=10_000)
    assert result.mean >= -250, str(result)
