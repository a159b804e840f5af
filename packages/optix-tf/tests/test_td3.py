"""TFTD3Agent (and tensor-optix's TFTDDAgent): conformance, bad input, one update against
the losses written out eagerly, the policy delay, checkpoints with replay, learning Pendulum."""

from __future__ import annotations

import math
import time

import gymnasium as gym
import keras
import numpy as np
import pytest
import tensorflow as tf

from optix_core import HyperparamSet, make_agent
from optix_core.evaluation import evaluate_policy
from optix_core.pipeline import VectorBatchPipeline
from optix_core.registry import RegistryError
from optix_core.testing import AgentConformance, toy_envs
from optix_core.testing.actor_critic import PointerConformance, learn_to_point
from optix_core.types import EpisodeData
from optix_tf import TFTD3Agent, TFTDDAgent
from optix_tf.algorithms.td3 import make_td3

PENDULUM = gym.make("Pendulum-v1")
OBS, ACT = PENDULUM.observation_space, PENDULUM.action_space


class TestTD3Conformance(AgentConformance):
    """Windows of 2 × 64 steps: 128 transitions, past learning_starts (100)."""

    algo = "td3"
    backend = "tf"


class TestTD3ObservationSpacesConformance(PointerConformance):
    """Box actions read from images (SmallCNN), a Dict and a Discrete index."""

    algo = "td3"
    backend = "tf"


def small_agent(seed: int = 0, **hp) -> TFTD3Agent:
    return make_td3(OBS, ACT, hyperparams=hp or None, device="cpu", seed=seed, hidden=(32, 32))


def windows(count: int, n_envs: int = 2, steps: int = 50, seed: int = 0) -> list[EpisodeData]:
    """``count`` consecutive Pendulum windows, collected by an agent of their own."""
    pipeline = VectorBatchPipeline(
        env_id="Pendulum-v1", n_envs=n_envs, window_size=steps, seed=seed, agent=small_agent(99)
    )
    try:
        return [pipeline.collect() for _ in range(count)]
    finally:
        pipeline.close()


def values(layer: keras.layers.Layer) -> list[np.ndarray]:
    return [v.numpy().copy() for v in layer.weights]


def changed(before: list[np.ndarray], layer: keras.layers.Layer) -> bool:
    return all(not np.array_equal(b, a) for b, a in zip(before, values(layer), strict=True))


def assert_close(actual: list[np.ndarray], expected: list[np.ndarray], **tol) -> None:
    assert len(actual) == len(expected)
    for a, e in zip(actual, expected, strict=True):
        np.testing.assert_allclose(a, e, **tol)


def test_tdd_is_tensor_optix_name_for_td3() -> None:
    assert TFTDDAgent is TFTD3Agent


def test_refuses_a_discrete_action_space() -> None:
    cartpole = gym.make("CartPole-v1")
    with pytest.raises(ValueError, match=r"td3 acts on Box action spaces, got Discrete\(2\)"):
        make_td3(cartpole.observation_space, cartpole.action_space)
    with pytest.raises(RegistryError):
        make_agent("td3", "CartPole-v1", backend="tf", device="cpu")


def test_exploration_noise_follows_expl_noise_and_actions_stay_in_bounds() -> None:
    agent = small_agent(expl_noise=0.0)
    obs = np.random.default_rng(0).normal(size=(8, 3)).astype(np.float32)
    np.testing.assert_allclose(agent.act(obs), agent.act(obs, deterministic=True))
    agent.set_hyperparams(HyperparamSet({"expl_noise": 5.0}))
    actions = agent.act(obs)
    assert actions.dtype == np.float32 and np.all(np.abs(actions) <= 2.0)
    assert not np.allclose(actions, agent.act(obs, deterministic=True))


def test_one_update_equals_the_losses_gradients_written_out() -> None:
    """One compiled step (critics, then with policy_delay 1 the actor and both Polyak
    targets) against the same minibatch and smoothing noise through the losses written
    out eagerly on a twin agent. Before the first step the targets equal the networks."""
    hp = {"learning_starts": 0, "train_freq": 8, "batch_size": 16, "tau": 0.05}
    hp |= {"policy_delay": 1, "target_noise": 0.3, "noise_clip": 0.4, "gamma": 0.98}
    window = windows(1, n_envs=1, steps=8)[0]
    compiled, eager = small_agent(**hp), small_agent(**hp)
    stats = compiled.learn(window)
    assert compiled.n_updates == 1

    block = next(eager.replay_minibatches(eager.scaler.unit_window(window)))
    batch = {k: v[0] for k, v in block.items()}
    noise = eager.rng.standard_normal((1, 16, 1), np.float32)[0]
    obs = batch["observations"]
    actor_before, critic_before = values(eager.actor), values(eager.critic)

    smoothing = tf.clip_by_value(0.3 * noise, -0.4, 0.4)
    a_next = tf.clip_by_value(eager.actor(batch["next_observations"]) + smoothing, -1.0, 1.0)
    q_next = tf.reduce_min(eager.critic(batch["next_observations"], a_next), axis=1)
    y = batch["rewards"] + batch["bootstrap"] * q_next
    with tf.GradientTape() as tape:
        q = eager.critic(obs, batch["actions"])
        critic_loss = tf.reduce_mean(tf.square(q[:, 0] - y)) + tf.reduce_mean(
            tf.square(q[:, 1] - y)
        )
    variables = eager.critic.trainable_variables
    eager.critic_optimizer.apply_gradients(
        zip(tape.gradient(critic_loss, variables), variables, strict=True)
    )
    with tf.GradientTape() as tape:
        actor_loss = -tf.reduce_mean(eager.critic(obs, eager.actor(obs))[:, 0])
    variables = eager.actor.trainable_variables
    eager.actor_optimizer.apply_gradients(
        zip(tape.gradient(actor_loss, variables), variables, strict=True)
    )

    def polyak(online, before):
        return [0.05 * o + 0.95 * b for o, b in zip(values(online), before, strict=True)]

    tol = {"rtol": 1e-4, "atol": 1e-6}
    assert stats["critic_loss"] == pytest.approx(float(critic_loss), rel=1e-4)
    assert stats["actor_loss"] == pytest.approx(float(actor_loss), rel=1e-4)
    assert_close(values(compiled.critic), values(eager.critic), **tol)
    assert_close(values(compiled.actor), values(eager.actor), **tol)
    assert_close(values(compiled.critic_target), polyak(eager.critic, critic_before), **tol)
    assert_close(values(compiled.actor_target), polyak(eager.actor, actor_before), **tol)


def test_the_actor_and_the_targets_move_every_policy_delay_updates() -> None:
    agent = small_agent(learning_starts=0, batch_size=16, policy_delay=3)
    first, second = windows(2, n_envs=1, steps=2)
    actor, actor_target = values(agent.actor), values(agent.actor_target)
    critic, critic_target = values(agent.critic), values(agent.critic_target)
    stats = agent.learn(first)  # updates 1 and 2: critics only
    assert agent.n_updates == 2 and "actor_loss" not in stats
    assert changed(critic, agent.critic)
    assert not changed(actor, agent.actor) and not changed(actor_target, agent.actor_target)
    assert not changed(critic_target, agent.critic_target)
    agent.learn(second)  # updates 3 (actor, targets) and 4
    assert agent.n_updates == 4
    assert changed(actor, agent.actor) and changed(actor_target, agent.actor_target)
    assert changed(critic_target, agent.critic_target)
    # Two step functions (with and without the actor), each relaxed once at most.
    assert agent._step.experimental_get_tracing_count() <= 4


def test_resume_keeps_the_replay_buffer_and_continues_exactly(tmp_path) -> None:
    first, second = windows(2)
    agent = small_agent(learning_starts=50)
    agent.learn(first)
    agent.save_weights(str(tmp_path / "ckpt"))
    resumed = small_agent(seed=7, learning_starts=50)
    resumed.load_weights(str(tmp_path / "ckpt"))
    assert len(resumed.replay) == len(agent.replay) == 100
    assert resumed.n_updates == agent.n_updates  # keeps the policy_delay phase
    assert resumed.learn(second) == agent.learn(second)
    for name, module in agent.modules().items():
        assert_close(values(resumed.modules()[name]), values(module), rtol=0, atol=0)


@pytest.mark.slow
def test_learns_pendulum() -> None:
    """TD3, ReLU [64, 64], SB3 defaults with exploration noise 0.1 and lr 1e-3 (torch's
    test's settings): 12,000 steps from one environment in windows of 200 reach ≥ −250
    (deterministic, 20 episodes seeded from 10,000). torch's test stops at 8,000
    steps; with this seed the TF agent scores −434 there, so it gets 60 windows."""
    agent = make_td3(
        OBS, ACT, hyperparams={"learning_rate": 1e-3}, device="cpu", seed=0, hidden=(64, 64)
    )
    start = time.perf_counter()
    pipeline = VectorBatchPipeline(
        env_id="Pendulum-v1", n_envs=1, window_size=200, seed=0, agent=agent
    )
    try:
        for _ in range(60):
            stats = agent.learn(pipeline.collect())
            assert all(math.isfinite(v) for v in stats.values())
    finally:
        pipeline.close()
    result = evaluate_policy(agent, "Pendulum-v1", episodes=20, seed=10_000)
    print(f"TD3 Pendulum: {result.mean:.1f} in {time.perf_counter() - start:.0f} s")
    assert result.mean >= -250, str(result)


@pytest.mark.slow
@pytest.mark.parametrize("env_id", toy_envs.POINTER_ENVS)
def test_learns_to_point_at_a_target_shown_as_an_image_a_dict_or_an_index(env_id: str) -> None:
    """TD3, ReLU [64, 64] after the default extractor, lr 3e-4, batch 64: 1,920 steps
    in windows of 64 bring the return from about −6 (random; −4.8 for the best
    pointer blind to the target) to ≥ −1.5. (At lr 1e-3 the tanh actor saturates
    at a bound on the image within a window on two seeds of three, on either
    backend, and stays there: −8.4. At 3e-4, seeds 0–2 reach −0.2 to −1.0.)"""
    result = learn_to_point(make_td3, env_id, windows=30, learning_rate=3e-4)
    print(f"TD3 {env_id}: {result}")
    assert result.mean >= -1.5, str(result)
