import math

import gymnasium as gym
import numpy as np
import pytest
import torch
from torch import nn

from optix_core import HyperparamSet, make_agent
from optix_core.evaluation import evaluate_policy
from optix_core.hyperparams import HyperparamError
from optix_core.pipeline import VectorBatchPipeline
from optix_core.registry import RegistryError
from optix_core.testing import AgentConformance
from optix_torch.networks import mlp
from optix_torch.offpolicy import TwinQ
from optix_torch.td3 import TorchTD3Agent, make_td3

torch.set_num_threads(1)

PENDULUM = gym.make("Pendulum-v1")
OBS, ACT = PENDULUM.observation_space, PENDULUM.action_space


class TestTD3Conformance(AgentConformance):
    algo = "td3"
    backend = "torch"


def small_agent(seed: int = 0, **hp) -> TorchTD3Agent:
    return make_td3(OBS, ACT, hyperparams=hp or None, device="cpu", seed=seed, hidden=(32, 32))


def collect(agent, window: int = 50, n_envs: int = 2, seed: int = 0, windows: int = 1):
    pipeline = VectorBatchPipeline(
        env_id="Pendulum-v1", n_envs=n_envs, window_size=window, seed=seed, agent=agent
    )
    try:
        return [pipeline.collect() for _ in range(windows)]
    finally:
        pipeline.close()


def params(module: nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in module.parameters()]


def changed(before: list[torch.Tensor], module: nn.Module) -> bool:
    return any(not torch.equal(b, p) for b, p in zip(before, module.parameters(), strict=True))


# ---- bad input --------------------------------------------------------------


def test_refuses_a_discrete_action_space() -> None:
    cartpole = gym.make("CartPole-v1")
    with pytest.raises(ValueError, match=r"td3 acts on Box action spaces, got Discrete\(2\)"):
        make_td3(cartpole.observation_space, cartpole.action_space)
    with pytest.raises(RegistryError):
        make_agent("td3", "CartPole-v1", backend="torch", device="cpu")
    with pytest.raises(ValueError, match="Box action spaces"):
        TorchTD3Agent(mlp(4, 1), critics=TwinQ(5), action_space=cartpole.action_space)


def test_refuses_networks_whose_output_does_not_fit() -> None:
    with pytest.raises(ValueError, match=r"actor network outputs shape \(2,\).*expected \(1,\)"):
        TorchTD3Agent(mlp(3, 2), mlp(4, 1), mlp(4, 1), action_dim=1, device="cpu")
    with pytest.raises(ValueError, match=r"twin critic network outputs shape \(4,\)"):
        TorchTD3Agent(mlp(3, 1), mlp(4, 2), mlp(4, 2), action_dim=1, device="cpu")
    with pytest.raises(ValueError, match="twin critic network does not take inputs of width 4"):
        TorchTD3Agent(mlp(3, 1), critics=TwinQ(6), observation_space=OBS, action_space=ACT)


def test_refuses_bad_hyperparameters() -> None:
    with pytest.raises(HyperparamError, match="policy_delay"):
        small_agent(policy_delay=0)
    with pytest.raises(HyperparamError, match="expl_noise"):
        small_agent(expl_noise=-0.1)
    with pytest.raises(HyperparamError, match="target_noise_clip"):
        small_agent(target_noise_clip=0.5)


# ---- tensor-optix's constructor ---------------------------------------------


def test_tensor_optix_constructor_trains_the_users_networks() -> None:
    torch.manual_seed(0)
    actor = nn.Sequential(nn.Linear(3, 32), nn.ReLU(), nn.Linear(32, 1), nn.Tanh())
    critic1 = nn.Sequential(nn.Linear(4, 32), nn.ReLU(), nn.Linear(32, 1))
    critic2 = nn.Sequential(nn.Linear(4, 32), nn.ReLU(), nn.Linear(32, 1))
    agent = TorchTD3Agent(
        actor=actor,
        critic1=critic1,
        critic2=critic2,
        action_dim=1,
        actor_optimizer=torch.optim.Adam(actor.parameters(), lr=3e-4),
        critic_optimizer=torch.optim.Adam([*critic1.parameters(), *critic2.parameters()], lr=3e-4),
        hyperparams=HyperparamSet(
            params={
                "learning_rate": 3e-4,
                "gamma": 0.99,
                "tau": 0.005,
                "batch_size": 64,
                "policy_delay": 2,
                "target_noise": 0.2,
                "noise_clip": 0.5,
                "expl_noise": 0.1,
                "replay_capacity": 10_000,
            }
        ),
        device="cpu",
    )
    before = params(actor), params(critic1), params(critic2)
    stats = agent.learn(collect(agent, window=100)[0])
    assert all(math.isfinite(v) for v in stats.values())
    assert all(changed(b, m) for b, m in zip(before, (actor, critic1, critic2), strict=True))


# ---- acting -------------------------------------------------------------------


def test_exploration_noise_follows_expl_noise() -> None:
    agent = small_agent(expl_noise=0.0)
    obs = np.random.default_rng(0).normal(size=(8, 3)).astype(np.float32)
    np.testing.assert_allclose(agent.act(obs), agent.act(obs, deterministic=True))
    agent.set_hyperparams(HyperparamSet({"expl_noise": 0.3}))
    spread = agent.act(obs) - agent.act(obs, deterministic=True)
    assert 0 < np.abs(spread).max() <= 2 * 4 * 0.3  # within 4σ, in units of the bounds ±2


def test_actions_stay_inside_the_bounds() -> None:
    agent = small_agent(expl_noise=5.0)
    obs = np.random.default_rng(0).normal(size=(256, 3)).astype(np.float32)
    for actions in (agent.act(obs), agent.act_info(obs, np.zeros(256, bool))[0]):
        assert actions.dtype == np.float32 and np.all(np.abs(actions) <= 2.0)


# ---- the update ---------------------------------------------------------------


def test_the_actor_and_the_targets_move_every_policy_delay_updates() -> None:
    agent = small_agent(learning_starts=0, batch_size=16, policy_delay=3)
    window = collect(agent, window=2, n_envs=1)[0]
    actor, actor_target, critic_target = (
        params(agent.actor),
        params(agent.actor_target),
        params(agent.critic_target),
    )
    critic = params(agent.critic)
    stats = agent.learn(window)  # updates 1 and 2: critics only
    assert agent.n_updates == 2 and "actor_loss" not in stats
    assert changed(critic, agent.critic)
    assert not changed(actor, agent.actor) and not changed(actor_target, agent.actor_target)
    assert not changed(critic_target, agent.critic_target)
    stats = agent.learn(collect(agent, window=1, n_envs=1, seed=1)[0])  # update 3
    assert agent.n_updates == 3 and math.isfinite(stats["actor_loss"])
    assert changed(actor, agent.actor) and changed(actor_target, agent.actor_target)
    assert changed(critic_target, agent.critic_target)


def test_learning_rate_reaches_every_optimizer() -> None:
    agent = small_agent()
    agent.set_hyperparams(HyperparamSet({"learning_rate": 2.5e-4}))
    for optimizer in agent.optimizers().values():
        assert all(group["lr"] == 2.5e-4 for group in optimizer.param_groups)


# ---- checkpoints ----------------------------------------------------------------


def test_resume_keeps_the_replay_buffer_and_continues_exactly(tmp_path) -> None:
    first, second = collect(small_agent(), windows=2)
    agent = small_agent(learning_starts=50)
    agent.learn(first)
    agent.save_weights(str(tmp_path / "ckpt"))

    resumed = small_agent(seed=7)
    resumed.load_weights(str(tmp_path / "ckpt"))
    assert len(resumed.replay) == len(agent.replay) == 100
    for key, value in agent.replay.get(np.arange(100)).items():
        np.testing.assert_array_equal(resumed.replay.get(np.arange(100))[key], value)
    assert resumed.n_updates == agent.n_updates  # keeps the policy_delay phase
    assert resumed.learn(second) == agent.learn(second)


# ---- learning -------------------------------------------------------------------


@pytest.mark.slow
def test_learns_pendulum() -> None:
    """TD3, ReLU [64, 64], SB3 defaults with exploration noise 0.1 and lr 1e-3:
    8,000 steps from one environment in windows of 200 reach ≥ −250."""
    agent = make_td3(
        OBS, ACT, hyperparams={"learning_rate": 1e-3}, device="cpu", seed=0, hidden=(64, 64)
    )
    pipeline = VectorBatchPipeline(
        env_id="Pendulum-v1", n_envs=1, window_size=200, seed=0, agent=agent
    )
    try:
        for _ in range(40):
            agent.learn(pipeline.collect())
    finally:
        pipeline.close()
    result = evaluate_policy(agent, "Pendulum-v1", episodes=20, seed=10_000)
    assert result.mean >= -250, str(result)
