"""PPO on Discrete actions (TorchPPOAgent), the "ppo" registration, and the shared PPO core."""

from __future__ import annotations

from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
import pytest
import torch

from optix_core import VectorBatchPipeline, agents, make_agent
from optix_core.algorithms.config import ppo as config
from optix_core.checkpoints import CheckpointRegistry
from optix_core.evaluation import evaluate_policy
from optix_core.evolution import PolicyManager
from optix_core.hyperparams import HyperparamError
from optix_core.normalizers import RewardNormalizer
from optix_core.optimizers import SPSAOptimizer
from optix_core.search_space import parse_search_space
from optix_core.testing import AgentConformance, toy_envs  # noqa: F401 - FarCartPole
from optix_core.testing.normalization import NormalizationConformance
from optix_core.testing.schedule import ScheduleConformance
from optix_core.types import EpisodeData, EvalMetrics, HyperparamSet
from optix_torch.accel.optim import LeanAdam
from optix_torch.algorithms.ppo import (
    TorchGaussianPPOAgent,
    TorchPPOAgent,
    make_ppo,
    normalize_per_minibatch,
)
from optix_torch.policies import TwinMLP, mlp
from optix_torch.policies.distributions import SquashedGaussian

torch.set_num_threads(1)

CARTPOLE = gym.make("CartPole-v1")
OBS, ACT = CARTPOLE.observation_space, CARTPOLE.action_space


class TestPPOConformance(AgentConformance):
    algo = "ppo"
    backend = "torch"
    env_ids = ("CartPole-v1",)


def window(agent, n_envs: int = 2, steps: int = 64, seed: int = 0) -> EpisodeData:
    pipeline = VectorBatchPipeline(
        env_id="CartPole-v1", n_envs=n_envs, window_size=steps, seed=seed, agent=agent
    )
    try:
        return pipeline.collect()
    finally:
        pipeline.close()


def user_agent(**kwargs) -> TorchPPOAgent:
    """tensor-optix's way: the user builds actor, critic and optimizer."""
    torch.manual_seed(0)
    actor, critic = mlp(4, 2, (32,)), mlp(4, 1, (32,))
    optimizer = torch.optim.Adam([*actor.parameters(), *critic.parameters()], lr=3e-4)
    hp = HyperparamSet(
        params={"learning_rate": 3e-4, "clip_ratio": 0.2, "n_epochs": 2, "minibatch_size": 32},
        episode_id=0,
    )
    return TorchPPOAgent(
        actor=actor, critic=critic, optimizer=optimizer, hyperparams=hp, device="cpu", **kwargs
    )


def weights(agent) -> list[torch.Tensor]:
    return [p.detach().clone() for m in agent.modules().values() for p in m.parameters()]


# ---- registration and the factory ---------------------------------------------


def test_one_registered_ppo_serves_every_action_space() -> None:
    spec = next(s for s in agents() if s.name == "ppo" and s.backend == "torch")
    assert set(spec.action_spaces) == {"discrete", "continuous", "multi_discrete", "multi_binary"}
    assert spec.on_policy
    assert spec.defaults == config.DEFAULTS
    assert spec.defaults["learning_rate"] == 3e-4 and spec.defaults["minibatch_size"] == 64
    assert spec.search_space["learning_rate"] == ("log_float", 1e-4, 3e-3)
    assert isinstance(make_agent("ppo", "CartPole-v1", device="cpu", seed=0), TorchPPOAgent)
    pendulum = make_agent("ppo", "Pendulum-v1", device="cpu", seed=0)
    assert isinstance(pendulum.distribution, SquashedGaussian)


@pytest.mark.parametrize("env_id", ["CartPole-v1", "Pendulum-v1"])
def test_ppo_declares_what_the_loop_tunes_online_by_default(env_id: str) -> None:
    agent = make_agent("ppo", env_id, device="cpu", seed=0)
    space = agent.search_space
    assert space == config.ONLINE_SEARCH_SPACE
    # tensor-optix's most sensitive knobs, never the discount or GAE's λ
    assert set(space) == {"learning_rate", "entropy_coef", "clip_ratio"}
    parsed = parse_search_space(space)
    assert parsed["learning_rate"].log and parsed["entropy_coef"].log
    assert not parsed["clip_ratio"].log
    for name, p in parsed.items():
        assert config.BOUNDS[name].accepts(p.low) and config.BOUNDS[name].accepts(p.high), name
        assert p.low <= config.DEFAULTS[name] <= p.high, name
    assert agent.hyperparam_bounds == config.BOUNDS
    # The loop's default optimizer tunes exactly this space, and the agent takes its values.
    assert SPSAOptimizer.from_search_space(space).space.names == tuple(space)
    for end in ("low", "high"):
        agent.set_hyperparams(HyperparamSet({n: getattr(p, end) for n, p in parsed.items()}))


def test_policy_manager_spawns_of_ppo_stay_in_range(tmp_path) -> None:
    agent = make_agent("ppo", "CartPole-v1", device="cpu", seed=0)
    registry = CheckpointRegistry(tmp_path)
    registry.save(
        agent,
        kind="best",
        episode_id=1,
        eval_metrics=EvalMetrics(primary_score=10.0),
        score=10.0,
        hyperparams=agent.get_hyperparams(),
    )
    pm = PolicyManager(registry, max_spawns=None, seed=0)
    for _ in range(40):
        hp = pm.respawn(agent).params
        assert 0.0 < hp["gamma"] <= 1.0 and 0.0 < hp["gae_lambda"] <= 1.0
        assert agent.get_hyperparams().params == hp
    assert pm.spawns_used == 40 and pm.failed_spawns == 0


def test_the_default_network_is_seeded_and_leaves_the_global_generator_alone() -> None:
    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    a, b = make_ppo(OBS, ACT, device="cpu", seed=5), make_ppo(OBS, ACT, device="cpu", seed=5)
    assert torch.equal(torch.random.get_rng_state(), before)
    for x, y in zip(weights(a), weights(b), strict=True):
        assert torch.equal(x, y)


def test_factory_rejects_spaces_it_cannot_serve() -> None:
    pair = gym.spaces.Tuple((gym.spaces.Discrete(2), gym.spaces.Discrete(3)))
    with pytest.raises(
        ValueError, match=r"ppo acts on Discrete, MultiDiscrete, MultiBinary or Box"
    ):
        make_ppo(OBS, pair)
    with pytest.raises(
        ValueError, match="reads Box, Discrete, MultiDiscrete, MultiBinary or Dict observations"
    ):
        make_ppo(pair, ACT)
    with pytest.raises(ValueError, match="unbounded"):
        make_ppo(OBS, gym.spaces.Box(-np.inf, np.inf, (2,)))


def test_the_gaussian_agent_refuses_a_discrete_action_space() -> None:
    with pytest.raises(ValueError, match=r"acts on Box action spaces, got Discrete"):
        TorchGaussianPPOAgent(mlp(3, 2), mlp(3, 1), action_space=gym.spaces.Discrete(2))


def test_an_actor_whose_output_does_not_fit_the_action_space_is_refused() -> None:
    with pytest.raises(ValueError, match=r"actor outputs shape \(3,\).*expected \(2,\)"):
        TorchPPOAgent(mlp(4, 3), mlp(4, 1), action_space=ACT, device="cpu")
    with pytest.raises(ValueError, match=r"critic outputs shape \(2,\).*expected \(1,\)"):
        TorchPPOAgent(mlp(4, 2), mlp(4, 2), action_space=ACT, device="cpu")
    with pytest.raises(ValueError, match="must return \\(policy_output, value\\)"):
        TorchPPOAgent(mlp(4, 2), None, action_space=ACT, device="cpu")
    with pytest.raises(ValueError, match=r"actor outputs shape \(5,\)"):
        TorchPPOAgent(TwinMLP(4, 5), action_space=ACT, observation_space=OBS, device="cpu")


def test_bad_hyperparameters_are_refused_before_any_work() -> None:
    with pytest.raises(HyperparamError, match="clip_ratio"):
        make_ppo(OBS, ACT, hyperparams=HyperparamSet({"clip_ratio": 0.0}), device="cpu")
    with pytest.raises(HyperparamError, match="n_epochs"):
        make_ppo(OBS, ACT, hyperparams=HyperparamSet({"n_epochs": 2.5}), device="cpu")
    with pytest.raises(HyperparamError, match="batch_size"):
        make_ppo(OBS, ACT, hyperparams=HyperparamSet({"batch_size": 64}), device="cpu")


# ---- the tensor-optix constructor and hyperparameters -------------------------------


def test_user_built_networks_and_optimizer_learn() -> None:
    agent = user_agent(action_space=ACT, seed=0)
    assert not isinstance(agent.optimizer, LeanAdam)
    before = weights(agent)
    diagnostics = agent.learn(window(agent))
    assert set(diagnostics) >= {
        "policy_loss",
        "value_loss",
        "entropy",
        "approx_kl",
        "clip_fraction",
        "explained_variance",
    }
    assert all(isinstance(v, float) for v in diagnostics.values())
    assert any(not torch.equal(x, y) for x, y in zip(before, weights(agent), strict=True))


def test_set_hyperparams_takes_effect_at_once() -> None:
    agent = user_agent(seed=0)
    agent.set_hyperparams(HyperparamSet({"learning_rate": 1.23e-3, "clip_ratio": 0.05}))
    assert all(g["lr"] == pytest.approx(1.23e-3) for g in agent.optimizer.param_groups)
    assert agent.learn(window(agent))["clip_ratio"] == pytest.approx(0.05)
    # The entropy coefficient reaches the loss: same data, same seed, different update.
    data = window(agent)
    plain, bonus = user_agent(seed=1), user_agent(seed=1)
    bonus.set_hyperparams(HyperparamSet({"entropy_coef": 0.5}))
    plain.learn(data)
    bonus.learn(data)
    assert any(not torch.equal(x, y) for x, y in zip(weights(plain), weights(bonus), strict=True))


def test_linear_schedules_anneal_learning_rate_and_clip_ratio() -> None:
    agent = make_ppo(
        OBS,
        ACT,
        hyperparams=HyperparamSet({"learning_rate": 1e-3, "clip_ratio": 0.2, "anneal_steps": 512}),
        device="cpu",
        seed=0,
    )
    first = agent.learn(window(agent))  # 128 steps of 512
    assert first["learning_rate"] == pytest.approx(1e-3 * 0.75)
    assert first["clip_ratio"] == pytest.approx(0.2 * 0.75)
    assert agent.optimizer.param_groups[0]["lr"] == pytest.approx(1e-3 * 0.75)
    agent.set_hyperparams(HyperparamSet({"learning_rate": 2e-3}))  # the schedule still applies
    assert agent.optimizer.param_groups[0]["lr"] == pytest.approx(2e-3 * 0.75)


# ---- what act_info records and learn uses -------------------------------------------


def test_act_info_records_the_log_probability_and_value_of_the_sampled_action() -> None:
    agent = make_ppo(OBS, ACT, device="cpu", seed=0)
    obs = np.random.default_rng(0).normal(size=(16, 4)).astype(np.float32)
    actions, info = agent.act_info(obs, np.ones(16, dtype=bool))
    assert actions.shape == (16,) and set(info) == {"log_probs", "values"}
    with torch.no_grad():
        logits, values = agent.actor(torch.as_tensor(obs))
        expected = torch.log_softmax(logits, -1)[torch.arange(16), torch.as_tensor(actions)]
    np.testing.assert_allclose(info["log_probs"], expected.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(info["values"], values.numpy(), rtol=1e-5, atol=1e-6)


def test_the_ratio_uses_the_recorded_old_log_probability() -> None:
    data = window(make_ppo(OBS, ACT, device="cpu", seed=0))
    shifted = EpisodeData(**{**data.__dict__})
    shifted.policy_info = {**data.policy_info, "log_probs": data.policy_info["log_probs"] - 0.3}
    a, b = make_ppo(OBS, ACT, device="cpu", seed=0), make_ppo(OBS, ACT, device="cpu", seed=0)
    assert a.learn(data)["approx_kl"] != pytest.approx(b.learn(shifted)["approx_kl"])
    # Without recorded log-probabilities and values they come from the current networks.
    bare = EpisodeData(**{**data.__dict__})
    bare.policy_info = {}
    c, d = make_ppo(OBS, ACT, device="cpu", seed=0), make_ppo(OBS, ACT, device="cpu", seed=0)
    recorded, recomputed = c.learn(data), d.learn(bare)
    for key in recorded:
        assert recomputed[key] == pytest.approx(recorded[key], rel=1e-4, abs=1e-6), key


def test_truncated_steps_bootstrap_from_the_final_observations_value() -> None:
    agent = make_ppo(OBS, ACT, device="cpu", seed=0)
    rng = np.random.default_rng(0)
    steps, envs = 5, 2
    obs = rng.normal(size=(steps, envs, 4)).astype(np.float32)
    final = np.zeros_like(obs)
    truncated = np.zeros((steps, envs), dtype=bool)
    terminated = np.zeros((steps, envs), dtype=bool)
    truncated[2, 1], terminated[3, 0] = True, True
    final[2, 1], final[3, 0] = rng.normal(size=4), rng.normal(size=4)
    data = EpisodeData(
        observations=obs,
        actions=np.zeros((steps, envs), dtype=np.int64),
        rewards=np.ones((steps, envs), dtype=np.float32),
        terminated=terminated,
        truncated=truncated,
        next_observations=rng.normal(size=(envs, 4)).astype(np.float32),
        final_observations=final,
    )
    flat = obs.reshape(steps * envs, 4)
    values, next_values, final_values, _ = agent.rollout_values(data, flat, np.zeros((10, 1)))

    def critic(x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return agent.actor(torch.as_tensor(x))[1].numpy()

    np.testing.assert_allclose(values, critic(flat).reshape(steps, envs), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(next_values, critic(data.next_observations), rtol=1e-5, atol=1e-6)
    assert final_values[2, 1] == pytest.approx(float(critic(final[2, 1][None])[0]), rel=1e-5)
    assert final_values[3, 0] == 0.0  # a termination does not bootstrap


# ---- checkpoints ---------------------------------------------------------------


def test_a_resumed_agent_continues_exactly_as_the_original(tmp_path) -> None:
    hp = HyperparamSet({"anneal_steps": 10_000, "n_epochs": 2})
    original = TorchPPOAgent(
        TwinMLP(4, 2),
        hyperparams=hp,
        reward_normalizer=RewardNormalizer(gamma=0.99, n_envs=2),
        device="cpu",
        seed=0,
    )
    first, second = window(original, seed=0), window(original, seed=1)
    original.learn(first)
    original.save_weights(str(tmp_path / "ckpt"))
    resumed = TorchPPOAgent(
        TwinMLP(4, 2),
        hyperparams=hp,
        reward_normalizer=RewardNormalizer(gamma=0.99, n_envs=2),
        device="cpu",
        seed=7,
    )
    resumed.load_weights(str(tmp_path / "ckpt"))
    assert resumed.env_steps == original.env_steps == 128
    np.testing.assert_array_equal(
        resumed.reward_normalizer.returns, original.reward_normalizer.returns
    )
    assert original.learn(second) == resumed.learn(second)
    for x, y in zip(weights(original), weights(resumed), strict=True):
        assert torch.equal(x, y)


def test_a_discrete_checkpoint_does_not_load_into_a_gaussian_agent(tmp_path) -> None:
    make_ppo(OBS, ACT, device="cpu", seed=0).save_weights(str(tmp_path / "ckpt"))
    gaussian = make_agent("ppo", "Pendulum-v1", device="cpu", seed=0)
    with pytest.raises(ValueError, match="does not match this agent's"):
        gaussian.load_weights(str(tmp_path / "ckpt"))


# ---- normalization (rl-zoo's normalize: true) ----------------------------------------


class TestPPONormalization(NormalizationConformance):
    backend = "torch"


class TestPPOSchedule(ScheduleConformance):
    algo = "ppo"
    backend = "torch"
    hyperparams: ClassVar[dict[str, Any]] = {"n_epochs": 2}


@pytest.mark.parametrize("env_id", [None, "optix-tests/Catch-v0", "optix-tests/DictGoal-v0"])
def test_normalizing_observations_needs_a_box_of_floats(env_id) -> None:
    hp = {"normalize_observations": True}
    with pytest.raises(ValueError, match="normalize_observations standardizes a Box of floats"):
        if env_id is None:  # no space given
            TorchPPOAgent(TwinMLP(4, 2), hyperparams=hp, device="cpu")
        else:  # uint8 images, Dict
            make_agent("ppo", env_id, backend="torch", hyperparams=hp, device="cpu")


@pytest.mark.slow
def test_standardized_observations_learn_what_raw_ones_cannot() -> None:
    """CartPole seen from far off (observations x50, +1000; toy_envs' FarCartPole):
    the default network learns it with observations normalized, and not without."""
    scores = {}
    for normalize in (True, False):
        env_id = "optix-tests/FarCartPole-v0"
        hp = {"normalize_observations": normalize, "entropy_coef": 0.0}
        agent = make_agent("ppo", env_id, backend="torch", hyperparams=hp, device="cpu", seed=0)
        pipeline = VectorBatchPipeline(
            env_id=env_id, n_envs=8, window_size=256, seed=0, agent=agent
        )
        try:
            for _ in range(40_960 // 2048):
                agent.learn(pipeline.collect())
        finally:
            pipeline.close()
        scores[normalize] = evaluate_policy(agent, env_id, episodes=20, seed=10_000).mean
    assert scores[True] >= 400 and scores[False] <= 100, scores


# ---- the shared machinery ---------------------------------------------------------


def test_twin_mlp_is_two_separate_mlps() -> None:
    twin = TwinMLP(3, 5, hidden=(8, 6))
    actor, critic = mlp(3, 5, (8, 6)), mlp(3, 1, (8, 6))
    with torch.no_grad():
        for tower, net in ((0, actor), (1, critic)):
            for k, linear in enumerate((net[0], net[2], net[4])):
                out = linear.weight.shape[0]
                linear.weight.copy_(twin.weights[k][tower, :, :out].T)
                linear.bias.copy_(twin.biases[k][tower, 0, :out])
        x = torch.randn(300, 3)  # large enough for the in-place tanh of inference
        policy, value = twin(x)
        torch.testing.assert_close(policy, actor(x))
        torch.testing.assert_close(value, critic(x).squeeze(-1))
    policy, value = twin(x)  # with autograd
    torch.testing.assert_close(policy, actor(x))
    assert policy.requires_grad and value.requires_grad


def test_user_networks_and_the_twin_learn_the_same_from_the_same_weights() -> None:
    """The autograd path (separate actor and critic) and the hand-written one
    (TwinMLP) give the same update from the same start."""
    twin = TwinMLP(4, 2, hidden=(16, 16))
    actor, critic = mlp(4, 2, (16, 16)), mlp(4, 1, (16, 16))
    with torch.no_grad():
        for tower, net in ((0, actor), (1, critic)):
            for k, linear in enumerate((net[0], net[2], net[4])):
                out = linear.weight.shape[0]
                linear.weight.copy_(twin.weights[k][tower, :, :out].T)
                linear.bias.copy_(twin.biases[k][tower, 0, :out])
    hp = {"n_epochs": 3, "minibatch_size": 50, "entropy_coef": 0.01}
    fused = TorchPPOAgent(TwinMLP(4, 2, (16, 16)), hyperparams=hp, device="cpu", seed=0)
    fused.actor.load_state_dict(twin.state_dict())
    separate = TorchPPOAgent(actor, critic, hyperparams=hp, device="cpu", seed=0)
    data = window(fused)
    a, b = fused.learn(data), separate.learn(data)
    for key in a:
        assert a[key] == pytest.approx(b[key], rel=1e-3, abs=1e-5), key
    with torch.no_grad():
        x = torch.as_tensor(data.observations.reshape(-1, 4))
        torch.testing.assert_close(fused.actor(x)[0], actor(x), rtol=1e-4, atol=1e-5)


@torch.no_grad()
def test_twin_mlp_initialises_like_stable_baselines3() -> None:
    twin = TwinMLP(4, 2)
    w_actor_head = twin.weights[-1][0]  # [64, 2], orthogonal with gain 0.01
    torch.testing.assert_close(w_actor_head.T @ w_actor_head, 1e-4 * torch.eye(2))
    w_value_head = twin.weights[-1][1]
    assert float(w_value_head[:, 0].norm()) == pytest.approx(1.0, rel=1e-5)
    assert not w_value_head[:, 1:].any()
    hidden = twin.weights[1][1]
    torch.testing.assert_close(hidden.T @ hidden, 2.0 * torch.eye(64), atol=1e-5, rtol=0)


def test_advantages_are_normalised_within_each_minibatch() -> None:
    epochs, n, batch = 3, 10, 4  # minibatches of 4, 4 and 2 per epoch
    adv = torch.randn(epochs * n) * 3 + 1
    out = normalize_per_minibatch(adv, epochs, n, batch)
    for e in range(epochs):
        for start in range(0, n, batch):
            part = adv[e * n + start : e * n + min(start + batch, n)]
            expected = (part - part.mean()) / (part.std() + 1e-8)
            torch.testing.assert_close(out[e * n + start : e * n + start + len(part)], expected)
    ones = normalize_per_minibatch(adv[:9], 1, 9, 4)  # a last minibatch of one sample
    assert ones[8] == adv[8]


def test_nan_in_a_loss_shows_instead_of_being_masked() -> None:
    agent = make_ppo(OBS, ACT, device="cpu", seed=0)
    data = window(agent)
    data.rewards[3, 0] = np.nan
    assert np.isnan(agent.learn(data)["value_loss"])


# ---- learning ---------------------------------------------------------------------


@pytest.mark.slow
def test_learns_cartpole() -> None:
    """rl-zoo's CartPole-v1 settings (8 envs × 32 steps, minibatch 256, 20 epochs,
    λ 0.8, γ 0.98, no entropy bonus, lr and clip linear from 1e-3 and 0.2):
    a deterministic mean of at least 475 within 40,960 steps."""
    agent = make_ppo(
        OBS,
        ACT,
        hyperparams=HyperparamSet(
            {
                "learning_rate": 1e-3,
                "clip_ratio": 0.2,
                "entropy_coef": 0.0,
                "gamma": 0.98,
                "gae_lambda": 0.8,
                "n_epochs": 20,
                "minibatch_size": 256,
                "anneal_steps": 100_000,
            }
        ),
        device="cpu",
        seed=1,
    )
    pipeline = VectorBatchPipeline(
        env_id="CartPole-v1", n_envs=8, window_size=32, seed=1, agent=agent
    )
    try:
        for _ in range(40_960 // 256):
            agent.learn(pipeline.collect())
    finally:
        pipeline.close()
    result = evaluate_policy(agent, "CartPole-v1", episodes=20, seed=10_000)
    assert result.mean >= 475, str(result)


@pytest.mark.parametrize("algo", ["ppo", "a2c", "dqn", "sac"])
def test_an_agent_that_never_learned_tears_down(algo):
    """optix tune builds the starting agent to check --hp, then tears it down."""
    env_id = "Pendulum-v1" if algo == "sac" else "CartPole-v1"
    make_agent(algo, env_id, seed=0, device="cpu").teardown()
