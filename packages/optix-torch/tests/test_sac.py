import math

import gymnasium as gym
import numpy as np
import pytest
import torch
from torch import nn

from optix_core import HyperparamSet, LoopCallback, RLOptimizer, SPSAOptimizer, make_agent
from optix_core.evaluation import evaluate_policy
from optix_core.hyperparams import HyperparamError
from optix_core.pipeline import VectorBatchPipeline
from optix_core.registry import RegistryError
from optix_core.testing import AgentConformance
from optix_torch.networks import mlp
from optix_torch.offpolicy import ActionScaler, TwinQ
from optix_torch.sac import TorchSACAgent, make_sac

torch.set_num_threads(1)

PENDULUM = gym.make("Pendulum-v1")
OBS, ACT = PENDULUM.observation_space, PENDULUM.action_space


class TestSACConformance(AgentConformance):
    algo = "sac"
    backend = "torch"


def small_agent(seed: int = 0, **hp) -> TorchSACAgent:
    return make_sac(OBS, ACT, hyperparams=hp or None, device="cpu", seed=seed, hidden=(32, 32))


def collect(agent, window: int = 50, n_envs: int = 2, seed: int = 0, windows: int = 1):
    pipeline = VectorBatchPipeline(
        env_id="Pendulum-v1", n_envs=n_envs, window_size=window, seed=seed, agent=agent
    )
    try:
        return [pipeline.collect() for _ in range(windows)]
    finally:
        pipeline.close()


# ---- bad input --------------------------------------------------------------


def test_refuses_a_discrete_action_space() -> None:
    cartpole = gym.make("CartPole-v1")
    with pytest.raises(ValueError, match=r"sac acts on Box action spaces, got Discrete\(2\)"):
        make_sac(cartpole.observation_space, cartpole.action_space)
    with pytest.raises(RegistryError):
        make_agent("sac", "CartPole-v1", backend="torch", device="cpu")


def test_refuses_unbounded_actions() -> None:
    unbounded = gym.spaces.Box(-np.inf, np.inf, shape=(2,))
    with pytest.raises(ValueError, match="must be finite"):
        make_sac(OBS, unbounded)


def test_refuses_an_actor_whose_output_does_not_fit_the_action_space() -> None:
    # SAC's actor gives [mean || log_std]: 2 columns for Pendulum, not 1.
    with pytest.raises(ValueError, match=r"actor network outputs shape \(1,\).*expected \(2,\)"):
        TorchSACAgent(mlp(3, 1), mlp(4, 1), mlp(4, 1), action_dim=1, device="cpu")
    with pytest.raises(ValueError, match="actor network"):
        TorchSACAgent(mlp(3, 1), critics=TwinQ(4), observation_space=OBS, action_space=ACT)


def test_refuses_critics_whose_output_does_not_fit() -> None:
    with pytest.raises(ValueError, match=r"twin critic network outputs shape \(3,\)"):
        TorchSACAgent(mlp(3, 2), mlp(4, 1), mlp(4, 2), action_dim=1, device="cpu")
    with pytest.raises(ValueError, match="twin critic"):  # built for 2 actions, not 1
        TorchSACAgent(mlp(3, 2), critics=TwinQ(5), action_dim=1, device="cpu")


def test_refuses_inconsistent_critic_arguments() -> None:
    critic = mlp(4, 1)
    with pytest.raises(ValueError, match="two networks"):
        TorchSACAgent(mlp(3, 2), critic, critic, action_dim=1)
    with pytest.raises(ValueError, match="not both"):
        TorchSACAgent(mlp(3, 2), mlp(4, 1), mlp(4, 1), action_dim=1, critics=TwinQ(4))
    with pytest.raises(ValueError, match="give both critic1 and critic2"):
        TorchSACAgent(mlp(3, 2), mlp(4, 1), action_dim=1)
    with pytest.raises(ValueError, match="does not match the action space"):
        TorchSACAgent(mlp(3, 2), critics=TwinQ(4), action_dim=2, action_space=ACT)


def test_refuses_bad_hyperparameters() -> None:
    with pytest.raises(HyperparamError, match="tau"):
        small_agent(tau=0.0)
    with pytest.raises(HyperparamError, match="ent_coef"):
        small_agent(ent_coef=-0.1)
    with pytest.raises(HyperparamError, match="entropy_coef"):
        small_agent(entropy_coef=0.1)


# ---- tensor-optix's constructor ---------------------------------------------


def test_tensor_optix_constructor_trains_the_users_networks() -> None:
    torch.manual_seed(0)
    actor = nn.Sequential(nn.Linear(3, 32), nn.ReLU(), nn.Linear(32, 2))
    critic1 = nn.Sequential(nn.Linear(4, 32), nn.ReLU(), nn.Linear(32, 1))
    critic2 = nn.Sequential(nn.Linear(4, 32), nn.ReLU(), nn.Linear(32, 1))
    log_alpha_stand_in = torch.zeros(1, requires_grad=True)
    agent = TorchSACAgent(
        actor=actor,
        critic1=critic1,
        critic2=critic2,
        action_dim=1,
        actor_optimizer=torch.optim.Adam(actor.parameters(), lr=3e-4),
        critic_optimizer=torch.optim.Adam([*critic1.parameters(), *critic2.parameters()], lr=3e-4),
        alpha_optimizer=torch.optim.Adam([log_alpha_stand_in], lr=3e-4),
        hyperparams=HyperparamSet(
            params={
                "learning_rate": 1e-3,
                "gamma": 0.99,
                "tau": 0.005,
                "batch_size": 64,
                "replay_capacity": 10_000,
            }
        ),
        device="cpu",
    )
    before = [p.detach().clone() for p in (*actor.parameters(), *critic2.parameters())]
    stats = agent.learn(collect(agent, window=100)[0])
    assert all(math.isfinite(v) for v in stats.values())
    after = [*actor.parameters(), *critic2.parameters()]
    assert all(not torch.equal(b, a) for b, a in zip(before, after, strict=True))
    # Without a Box the actions stay in (−1, 1), as in tensor-optix.
    actions = agent.act(np.zeros((4, 3), dtype=np.float32))
    assert actions.shape == (4, 1) and np.all(np.abs(actions) <= 1)
    # The alpha optimizer's kind and settings were reused for the agent's own log α.
    assert isinstance(agent.alpha_optimizer, torch.optim.Adam)
    assert agent.alpha_optimizer.param_groups[0]["params"] == [agent.temperature.log_alpha]


# ---- acting -------------------------------------------------------------------


def test_actions_are_scaled_to_the_bounds_and_back() -> None:
    low, high = np.array([0.0, -5.0], np.float32), np.array([10.0, 1.0], np.float32)
    space = gym.spaces.Box(low, high, dtype=np.float32)
    scaler = ActionScaler(2, space)
    unit = np.array([[-1.0, -1.0], [0.0, 0.0], [1.0, 1.0]], dtype=np.float32)
    np.testing.assert_allclose(scaler.to_env(unit), [[0, -5], [5, -2], [10, 1]])
    np.testing.assert_allclose(scaler.from_env(scaler.to_env(unit)), unit, atol=1e-6)
    assert np.all(scaler.from_env(np.array([[20.0, -9.0]])) == [[1.0, -1.0]])


def test_deterministic_actions_are_the_squashed_mean() -> None:
    agent = small_agent()
    obs = np.random.default_rng(0).normal(size=(5, 3)).astype(np.float32)
    with torch.no_grad():
        mean = agent.actor(torch.as_tensor(obs))[:, :1]
    np.testing.assert_allclose(agent.act(obs, deterministic=True), 2 * torch.tanh(mean), rtol=1e-5)
    assert not np.allclose(agent.act(obs), agent.act(obs, deterministic=True))


def test_warm_up_acts_uniformly_at_random_until_learning_starts() -> None:
    agent = small_agent(learning_starts=6)
    obs = np.zeros((2, 3), dtype=np.float32)
    warm = [agent.act_info(obs, np.zeros(2, dtype=bool))[0] for _ in range(3)]
    policy = agent.act_info(obs, np.zeros(2, dtype=bool))[0]
    # The policy at one observation is one narrow Gaussian; uniform draws are not.
    assert np.ptp(np.concatenate(warm)) > 1.0
    assert agent.num_timesteps == 0 and policy.shape == (2, 1)


def test_log_prob_matches_torch_distributions() -> None:
    agent = small_agent()
    out = torch.randn(64, 2) * 0.5
    eps = torch.randn(64, 1)
    action, log_prob = agent.squash(out, eps)
    mean, log_std = out.double().chunk(2, dim=-1)  # the textbook formula, in float64
    u = mean + log_std.exp() * eps.double()
    base = torch.distributions.Normal(mean, log_std.exp())
    expected = (base.log_prob(u) - torch.log1p(-(torch.tanh(u) ** 2))).sum(-1)
    torch.testing.assert_close(action, torch.tanh(u).float())
    torch.testing.assert_close(log_prob, expected.float(), rtol=1e-4, atol=1e-4)


# ---- the update schedule ------------------------------------------------------


def test_updates_follow_train_freq_gradient_steps_and_learning_starts() -> None:
    agent = small_agent(learning_starts=40, train_freq=3, gradient_steps=2, batch_size=16)
    window = collect(agent, window=30, n_envs=2)[0]  # 60 transitions
    agent.learn(window)
    # vector steps t = 1..30; due where t % 3 == 0 and 2t > 40: t = 21, 24, 27, 30
    assert agent.n_updates == 4 * 2
    assert agent.num_timesteps == 60 and agent.vector_steps == 30
    assert len(agent.replay) == 60


def test_no_update_before_learning_starts_reports_no_losses() -> None:
    agent = small_agent(learning_starts=1_000)
    stats = agent.learn(collect(agent)[0])
    assert agent.n_updates == 0
    assert "critic_loss" not in stats and stats["replay_size"] == 100


# ---- hyperparameters take effect at once ------------------------------------


def test_learning_rate_reaches_every_optimizer() -> None:
    agent = small_agent()
    agent.set_hyperparams(HyperparamSet({"learning_rate": 2.5e-4}))
    for optimizer in agent.optimizers().values():
        assert all(group["lr"] == 2.5e-4 for group in optimizer.param_groups)


def test_a_fixed_entropy_coefficient_is_used_as_given() -> None:
    agent = small_agent(learning_starts=0)
    agent.set_hyperparams(HyperparamSet({"auto_ent_coef": False, "ent_coef": 0.05}))
    stats = agent.learn(collect(agent)[0])
    assert stats["ent_coef"] == pytest.approx(0.05)
    agent.set_hyperparams(HyperparamSet({"auto_ent_coef": True}))
    stats = agent.learn(collect(agent, seed=1)[0])
    assert stats["ent_coef"] != pytest.approx(0.05)  # learned from 0.05 on


def test_automatic_temperature_falls_when_entropy_is_above_target() -> None:
    # A fresh policy (σ ≈ 1) has entropy far above −dim(A) = −1: α must shrink.
    agent = small_agent(learning_starts=0, learning_rate=1e-2)
    stats = agent.learn(collect(agent)[0])
    assert stats["ent_coef"] < 1.0


def test_replay_capacity_change_keeps_the_newest_transitions() -> None:
    agent = small_agent(learning_starts=10_000)
    agent.learn(collect(agent)[0])
    newest = agent.replay.get(np.arange(60, 100))["observations"]
    agent.set_hyperparams(HyperparamSet({"replay_capacity": 40}))
    assert agent.replay.capacity == 40 and len(agent.replay) == 40
    np.testing.assert_array_equal(agent.replay.get(np.arange(40))["observations"], newest)


# ---- checkpoints ----------------------------------------------------------------


def test_resume_keeps_the_replay_buffer_and_continues_exactly(tmp_path) -> None:
    first, second = collect(small_agent(), windows=2)
    agent = small_agent(learning_starts=50)
    agent.learn(first)
    agent.save_weights(str(tmp_path / "ckpt"))
    assert (tmp_path / "ckpt" / "replay.npz").is_file()

    resumed = small_agent(seed=7)
    resumed.load_weights(str(tmp_path / "ckpt"))
    assert len(resumed.replay) == len(agent.replay) == 100
    for key, value in agent.replay.get(np.arange(100)).items():
        np.testing.assert_array_equal(resumed.replay.get(np.arange(100))[key], value)
    assert resumed.num_timesteps == agent.num_timesteps
    # Same weights, targets, optimizer moments, temperature and random streams:
    # the next update is the same update.
    assert resumed.learn(second) == agent.learn(second)


def test_load_refuses_another_architecture(tmp_path) -> None:
    small_agent().save_weights(str(tmp_path / "ckpt"))
    other = make_sac(OBS, ACT, device="cpu", seed=0, hidden=(16, 16))
    with pytest.raises(ValueError, match="does not match"):
        other.load_weights(str(tmp_path / "ckpt"))


# ---- in the loop -----------------------------------------------------------------


def test_runs_in_the_loop_with_online_tuning_and_checkpoints(tmp_path) -> None:
    agent = small_agent(learning_starts=32, batch_size=32)
    seen: list[tuple[float, set[float]]] = []

    class WatchLearningRate(LoopCallback):
        def on_hyperparam_update(self, old, new):
            in_torch = {g["lr"] for o in agent.optimizers().values() for g in o.param_groups}
            seen.append((new.params["learning_rate"], in_torch))

    pipeline = VectorBatchPipeline(env_id="Pendulum-v1", n_envs=2, window_size=32, seed=0)
    RLOptimizer(
        agent,
        pipeline,
        optimizer=SPSAOptimizer(param_bounds={"learning_rate": (1e-4, 1e-2)}, seed=0),
        checkpoint_dir=tmp_path / "checkpoints",
        rollback_on_degradation=True,
        max_episodes=16,  # Pendulum's first episodes end in window 7: scores start there
        callbacks=[WatchLearningRate()],
    ).run()
    assert seen
    for proposed, in_torch in seen:
        assert len(in_torch) == 1 and in_torch.pop() == pytest.approx(proposed)
    assert list((tmp_path / "checkpoints").rglob("replay.npz"))
    assert agent.replay is not None and len(agent.replay) > 0


# ---- learning -------------------------------------------------------------------


@pytest.mark.slow
def test_learns_pendulum() -> None:
    """SAC, ReLU [64, 64], SB3 defaults with lr 1e-3 (rl-zoo's Pendulum setting):
    6,000 steps from one environment in windows of 200 reach ≥ −250."""
    agent = make_sac(
        OBS, ACT, hyperparams={"learning_rate": 1e-3}, device="cpu", seed=0, hidden=(64, 64)
    )
    pipeline = VectorBatchPipeline(
        env_id="Pendulum-v1", n_envs=1, window_size=200, seed=0, agent=agent
    )
    try:
        for _ in range(30):
            agent.learn(pipeline.collect())
    finally:
        pipeline.close()
    result = evaluate_policy(agent, "Pendulum-v1", episodes=20, seed=10_000)
    assert result.mean >= -250, str(result)
