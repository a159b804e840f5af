"""TorchDQNAgent: conformance, replay and resume, exploration, bad input, and learning CartPole."""

from __future__ import annotations

import copy

import gymnasium as gym
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from optix_core import HyperparamSet, make_agent
from optix_core.buffers import PrioritizedReplayBuffer, window_transitions
from optix_core.evaluation import evaluate_policy
from optix_core.hyperparams import HyperparamError
from optix_core.pipeline import VectorBatchPipeline
from optix_core.registry import RegistryError
from optix_core.testing import AgentConformance
from optix_torch.dqn import TorchDQNAgent, make_dqn

torch.set_num_threads(1)

CARTPOLE = gym.make("CartPole-v1")


class TestDQNConformance(AgentConformance):
    algo = "dqn"
    backend = "torch"
    # The first update waits for learning_starts (1,000) env steps: 2 x 512.
    window_size = 512


def cartpole_agent(seed: int = 0, **hp) -> TorchDQNAgent:
    return make_agent("dqn", "CartPole-v1", hyperparams=HyperparamSet(hp), device="cpu", seed=seed)


def windows(agent, count: int, n_envs: int = 2, window: int = 64, seed: int = 0) -> list:
    pipeline = VectorBatchPipeline(
        env_id="CartPole-v1", n_envs=n_envs, window_size=window, seed=seed, agent=agent
    )
    try:
        return [pipeline.collect() for _ in range(count)]
    finally:
        pipeline.close()


def buffer_arrays(agent: TorchDQNAgent) -> dict[str, np.ndarray]:
    buffer = agent.replay.buffer
    arrays = buffer.get(np.arange(len(buffer)))
    arrays["__position"] = np.asarray(buffer.position)
    if isinstance(buffer, PrioritizedReplayBuffer):
        arrays["__priorities"] = np.array(buffer.tree.leaves[: len(buffer)])
    return arrays


FAST = {"learning_starts": 64, "batch_size": 32, "gradient_steps": 8, "target_update_freq": 5}


# ---- bad input ---------------------------------------------------------------


def test_a_continuous_env_is_refused() -> None:
    with pytest.raises(RegistryError, match="dqn"):
        make_agent("dqn", "Pendulum-v1", device="cpu")
    pendulum = gym.make("Pendulum-v1")
    with pytest.raises(ValueError, match=r"dqn acts on Discrete action spaces, got Box"):
        make_dqn(pendulum.observation_space, pendulum.action_space, device="cpu")


def test_a_q_network_whose_outputs_do_not_match_n_actions_is_refused() -> None:
    three = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 3))
    with pytest.raises(ValueError, match=r"outputs shape \(3,\).*expected \(2,\)"):
        TorchDQNAgent(three, n_actions=2, device="cpu")
    with pytest.raises(ValueError, match="fails on observations shaped"):
        TorchDQNAgent(three, 3, device="cpu", observation_space=gym.spaces.Box(-1, 1, (5,)))
    with pytest.raises(ValueError, match="n_actions must be a positive integer"):
        TorchDQNAgent(three, 0, device="cpu")


def test_hyperparameters_outside_their_range_are_refused() -> None:
    with pytest.raises(HyperparamError, match="per_alpha"):
        cartpole_agent(per_alpha=1.5)
    with pytest.raises(HyperparamError, match="n_step"):
        cartpole_agent(n_step=0)
    agent = cartpole_agent()
    with pytest.raises(HyperparamError, match="batch_size"):
        agent.set_hyperparams(HyperparamSet({"batch_size": 0}))


# ---- the tensor-optix constructor ------------------------------------------------


def test_the_tensor_optix_constructor_with_a_user_network_and_optimizer() -> None:
    q_net = nn.Sequential(nn.Linear(4, 64), nn.ReLU(), nn.Linear(64, 2))
    optimizer = torch.optim.Adam(q_net.parameters(), lr=3e-4)
    agent = TorchDQNAgent(
        q_network=q_net,
        n_actions=2,
        optimizer=optimizer,
        hyperparams=HyperparamSet(
            params={
                "learning_rate": 3e-4,
                "gamma": 0.99,
                "epsilon": 1.0,
                "epsilon_min": 0.05,
                "epsilon_decay": 0.995,
                "batch_size": 64,
                "target_update_freq": 100,
                "replay_capacity": 100_000,
                "per_alpha": 0.0,
                "per_beta": 0.4,
                "n_step": 1,
            },
            episode_id=0,
        ),
        device="cpu",
    )
    assert agent.optimizer is optimizer and agent.is_on_policy is False
    agent.set_hyperparams(HyperparamSet({"learning_rate": 1e-3}))
    assert optimizer.param_groups[0]["lr"] == 1e-3
    actions = agent.act(np.zeros((5, 4), dtype=np.float32), deterministic=True)
    assert actions.shape == (5,)


def test_the_default_optimizer_is_adam_and_a_new_learning_rate_reaches_it() -> None:
    agent = cartpole_agent(**FAST)
    assert isinstance(agent.optimizer, torch.optim.Adam)
    agent.set_hyperparams(HyperparamSet({"learning_rate": 1e-4}))
    assert agent.optimizer.param_groups[0]["lr"] == 1e-4


@pytest.mark.parametrize(
    "hp",
    [{}, {"huber_loss": False}, {"per_alpha": 0.6}, {"huber_loss": False, "per_alpha": 0.6}],
    ids=["huber", "mse", "huber-per", "mse-per"],
)
def test_the_hand_written_mlp_gradients_equal_autograd(hp) -> None:
    fast, reference = cartpole_agent(**FAST, **hp), cartpole_agent(**FAST, **hp)
    assert fast.mlp is not None
    reference.mlp = None  # autograd
    for data in windows(cartpole_agent(), 3):
        fast_stats, reference_stats = fast.learn(data), reference.learn(data)
        assert fast_stats.keys() == reference_stats.keys()
        for key in fast_stats:
            assert fast_stats[key] == pytest.approx(reference_stats[key], rel=1e-5), key
    for a, b in zip(fast.q_network.parameters(), reference.q_network.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_a_window_of_updates_equals_the_textbook_loop() -> None:
    """Stable-Baselines3's DQN.train, written out: per step a fresh minibatch, the
    target from the target network, Huber loss, clipping, torch's Adam."""
    agent = cartpole_agent(
        learning_starts=0,
        batch_size=32,
        gradient_steps=10,
        target_update_freq=4,
        learning_rate=1e-3,
    )
    net = copy.deepcopy(agent.q_network)
    target_net = copy.deepcopy(agent.target_network)
    adam = torch.optim.Adam(net.parameters(), lr=1e-3)
    data = windows(cartpole_agent(), 1)[0]
    rng = copy.deepcopy(agent.rng)
    agent.learn(data)

    steps = window_transitions(data)
    flat = {k: torch.as_tensor(v.reshape(-1, *v.shape[2:])) for k, v in steps.items()}
    index = torch.as_tensor(rng.integers(0, len(flat["rewards"]), 10 * 32)).view(10, 32)
    for step in range(10):
        rows = index[step]
        with torch.no_grad():
            next_q = target_net(flat["next_observations"][rows].float()).max(-1).values
            y = flat["rewards"][rows] + 0.99 * (~flat["terminated"][rows]) * next_q
        q = net(flat["observations"][rows].float()).gather(1, flat["actions"][rows].view(-1, 1))
        loss = F.smooth_l1_loss(q.squeeze(1), y)
        adam.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(net.parameters(), 10.0)
        adam.step()
        if (step + 1) % 4 == 0:
            target_net.load_state_dict(net.state_dict())
    for a, b in zip(agent.q_network.parameters(), net.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    for a, b in zip(agent.target_network.parameters(), target_net.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_networks_other_than_a_plain_mlp_go_through_autograd() -> None:
    q_net = nn.Sequential(nn.Linear(4, 16), nn.LayerNorm(16), nn.ReLU(), nn.Linear(16, 2))
    agent = TorchDQNAgent(q_net, 2, hyperparams=FAST, device="cpu")
    assert agent.mlp is None
    for data in windows(agent, 2):
        stats = agent.learn(data)
    assert np.isfinite(stats["loss"])


# ---- exploration -------------------------------------------------------------------


def test_epsilon_is_random_until_learning_starts_then_follows_the_linear_schedule() -> None:
    agent = cartpole_agent(learning_starts=1000, exploration_steps=8000, epsilon_min=0.04)
    assert agent.epsilon == 1.0
    agent.env_steps = 4000
    assert agent.epsilon == pytest.approx(1.0 - 0.96 * 0.5)
    agent.env_steps = 20_000
    assert agent.epsilon == pytest.approx(0.04)


def test_epsilon_decays_multiplicatively_per_learn_call_without_exploration_steps() -> None:
    agent = cartpole_agent(
        exploration_steps=0,
        learning_starts=0,
        epsilon=0.5,
        epsilon_decay=0.9,
        epsilon_min=0.1,
        gradient_steps=0,
    )
    data = windows(agent, 1)[0]
    assert agent.learn(data)["epsilon"] == pytest.approx(0.45)
    agent.learn(data)
    assert agent.epsilon == pytest.approx(0.405)
    for _ in range(30):
        agent.learn(data)
    assert agent.epsilon == pytest.approx(0.1)


def test_act_does_not_advance_epsilon_and_explores_at_its_rate() -> None:
    agent = cartpole_agent(learning_starts=0, exploration_steps=0, epsilon=0.3)
    obs = np.random.default_rng(0).normal(size=(4000, 4)).astype(np.float32)
    greedy = agent.act(obs, deterministic=True)
    for _ in range(3):
        actions = agent.act(obs)
    assert agent.epsilon == 0.3
    # a random action differs from the greedy one half the time with two actions
    assert np.mean(actions != greedy) == pytest.approx(0.15, abs=0.03)


# ---- replay -------------------------------------------------------------------


def test_learn_stores_every_transition_with_its_real_next_observation() -> None:
    agent = cartpole_agent(learning_starts=10_000)
    data = windows(agent, 1, n_envs=2, window=200)[0]
    stats = agent.learn(data)
    assert stats["buffer_size"] == 400 and "loss" not in stats
    stored = agent.replay.buffer.get(np.arange(400))
    t, n = 7, 1  # time-major order: row t * n_envs + n
    np.testing.assert_array_equal(stored["observations"][t * 2 + n], data.observations[t, n])
    ends = np.flatnonzero(data.dones.reshape(-1))
    assert ends.size  # 200 random CartPole steps end episodes
    first = ends[0]
    np.testing.assert_array_equal(
        stored["next_observations"][first], data.final_observations.reshape(-1, 4)[first]
    )
    np.testing.assert_array_equal(stored["terminated"], data.terminated.reshape(-1))
    np.testing.assert_allclose(stored["discounts"], 0.99)


def test_n_step_transitions_carry_discounted_sums_and_gamma_to_the_m() -> None:
    agent = cartpole_agent(learning_starts=10_000, n_step=3, gamma=0.9)
    data = windows(agent, 1, n_envs=1, window=100)[0]
    agent.learn(data)
    stored = agent.replay.buffer.get(np.arange(len(agent.replay)))
    # CartPole pays 1 per step: a full span sums 1 + 0.9 + 0.81 and bootstraps with 0.9^3
    full = np.isclose(stored["discounts"], 0.9**3)
    assert full.any()
    np.testing.assert_allclose(stored["rewards"][full], 2.71, rtol=1e-6)
    shorter = ~full
    assert shorter.any()  # spans cut by an episode's end
    cut = stored["discounts"][shorter]
    assert np.all(np.isclose(cut, 0.9) | np.isclose(cut, 0.81))


def test_target_network_is_copied_every_target_update_freq_gradient_steps() -> None:
    agent = cartpole_agent(learning_starts=0, batch_size=16, gradient_steps=4, target_update_freq=2)
    data = windows(agent, 1)[0]
    agent.learn(data)
    assert agent.updates == 4
    for online, target in zip(
        agent.q_network.parameters(), agent.target_network.parameters(), strict=True
    ):
        torch.testing.assert_close(online, target)  # copied after update 4
    agent.set_hyperparams(HyperparamSet({"gradient_steps": 3}))
    agent.learn(data)  # updates 5, 6 (copy), 7
    assert agent.updates == 7
    assert any(
        not torch.equal(online, target)
        for online, target in zip(
            agent.q_network.parameters(), agent.target_network.parameters(), strict=True
        )
    )


def test_prioritized_replay_samples_by_priority_and_updates_them() -> None:
    agent = cartpole_agent(per_alpha=0.6, per_beta=0.4, **FAST)
    assert agent.replay.prioritized
    data = windows(agent, 2)
    agent.learn(data[0])
    stats = agent.learn(data[1])
    assert np.isfinite(stats["loss"])
    buffer = agent.replay.buffer
    assert isinstance(buffer, PrioritizedReplayBuffer)
    leaves = np.array(buffer.tree.leaves[: len(buffer)])
    assert leaves.min() > 0 and len(np.unique(leaves)) > 10  # updated from TD errors


def test_changing_capacity_or_alpha_keeps_the_most_recent_transitions() -> None:
    agent = cartpole_agent(learning_starts=10_000, replay_capacity=300)
    data = windows(agent, 2, n_envs=2, window=100)
    agent.learn(data[0])
    agent.learn(data[1])  # 400 transitions into 300 slots
    before = agent.replay.buffer.get(
        (agent.replay.buffer.position + np.arange(300)) % 300
    )  # oldest first
    agent.set_hyperparams(HyperparamSet({"replay_capacity": 200, "per_alpha": 0.5}))
    buffer = agent.replay.buffer
    assert isinstance(buffer, PrioritizedReplayBuffer) and len(buffer) == 200
    after = buffer.get(np.arange(200))
    for key in before:
        np.testing.assert_array_equal(after[key], before[key][100:])
    agent.set_hyperparams(HyperparamSet({"per_alpha": 0.0}))
    assert not agent.replay.prioritized and len(agent.replay) == 200


# ---- checkpoints ------------------------------------------------------------------


def test_resume_keeps_the_replay_buffer_and_continues_exactly(tmp_path) -> None:
    agent = cartpole_agent(**FAST)
    data = windows(agent, 3)
    agent.learn(data[0])
    agent.learn(data[1])
    agent.save_weights(str(tmp_path / "ckpt"))
    assert (tmp_path / "ckpt" / "replay.npz").is_file()

    restored = cartpole_agent(seed=123, **FAST)
    restored.load_weights(str(tmp_path / "ckpt"))
    expected, got = buffer_arrays(agent), buffer_arrays(restored)
    assert expected.keys() == got.keys()
    for key in expected:
        np.testing.assert_array_equal(got[key], expected[key], err_msg=key)
    assert (restored.env_steps, restored.windows, restored.updates) == (
        agent.env_steps,
        agent.windows,
        agent.updates,
    )
    # the same next update: same minibatches, same weights, same optimizer moments
    assert restored.learn(data[2]) == agent.learn(data[2])
    obs = data[2].observations.reshape(-1, 4)
    np.testing.assert_array_equal(restored.act(obs, True), agent.act(obs, True))


def test_resume_keeps_a_prioritized_n_step_buffer(tmp_path) -> None:
    agent = cartpole_agent(per_alpha=0.6, n_step=3, **FAST)
    for data in windows(agent, 2):
        agent.learn(data)
    agent.save_weights(str(tmp_path / "ckpt"))
    restored = cartpole_agent(seed=5, per_alpha=0.6, n_step=3, **FAST)
    restored.load_weights(str(tmp_path / "ckpt"))
    expected, got = buffer_arrays(agent), buffer_arrays(restored)
    for key in expected:
        np.testing.assert_array_equal(got[key], expected[key], err_msg=key)
    assert restored.replay.buffer.max_priority == agent.replay.buffer.max_priority


def test_a_checkpoint_saved_before_any_experience_loads_with_an_empty_buffer(tmp_path) -> None:
    empty = cartpole_agent()
    empty.save_weights(str(tmp_path / "ckpt"))
    busy = cartpole_agent(learning_starts=10_000)
    busy.learn(windows(busy, 1)[0])
    busy.load_weights(str(tmp_path / "ckpt"))
    assert len(busy.replay) == 0 and busy.env_steps == 0


# ---- learning -------------------------------------------------------------------


@pytest.mark.slow
def test_dqn_learns_cartpole_to_475() -> None:
    """rl-zoo's settings (the factory's defaults), seed 0: the first deterministic
    20-episode evaluation (every 2,560 steps) to reach 475 comes within 51,200 env
    steps, and the policy holds it on 20 other episodes."""
    agent = make_agent("dqn", "CartPole-v1", device="cpu", seed=0)
    pipeline = VectorBatchPipeline(
        env_id="CartPole-v1", n_envs=1, window_size=256, seed=0, agent=agent
    )
    scores = []
    try:
        while pipeline.env_steps < 51_200:
            stats = agent.learn(pipeline.collect())
            assert all(np.isfinite(v) for v in stats.values())
            if pipeline.env_steps % 2560 == 0:
                scores.append(
                    evaluate_policy(agent, "CartPole-v1", 20, seed=10_000 + len(scores)).mean
                )
                if scores[-1] >= 475:
                    break
    finally:
        pipeline.close()
    assert scores[-1] >= 475, scores
    fresh = evaluate_policy(agent, "CartPole-v1", episodes=20, seed=999_999)
    assert fresh.mean >= 475, (scores, str(fresh))
