"""TFSACAgent: conformance, bad input, one update against the losses written out eagerly,
checkpoints with replay, compiled steps that do not retrace, learning Pendulum."""

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
from optix_core.testing.gsde import GSDEConformance
from optix_core.types import EpisodeData
from optix_tf import TFSACAgent
from optix_tf.algorithms import sac
from optix_tf.algorithms.sac import make_sac

PENDULUM = gym.make("Pendulum-v1")
OBS, ACT = PENDULUM.observation_space, PENDULUM.action_space


class TestSACConformance(AgentConformance):
    """Windows of 2 × 64 steps: 128 transitions, past learning_starts (100)."""

    algo = "sac"
    backend = "tf"


class TestSACObservationSpacesConformance(PointerConformance):
    """Box actions read from images (SmallCNN), a Dict and a Discrete index."""

    algo = "sac"
    backend = "tf"


def small_agent(seed: int = 0, **hp) -> TFSACAgent:
    return make_sac(OBS, ACT, hyperparams=hp or None, device="cpu", seed=seed, hidden=(32, 32))


def windows(count: int, n_envs: int = 2, steps: int = 50, seed: int = 0) -> list[EpisodeData]:
    """``count`` consecutive Pendulum windows, collected by an agent of their own (so
    no agent under test has its generators moved)."""
    pipeline = VectorBatchPipeline(
        env_id="Pendulum-v1", n_envs=n_envs, window_size=steps, seed=seed, agent=small_agent(99)
    )
    try:
        return [pipeline.collect() for _ in range(count)]
    finally:
        pipeline.close()


def values(layer: keras.layers.Layer) -> list[np.ndarray]:
    return [v.numpy().copy() for v in layer.weights]


def assert_close(actual: list[np.ndarray], expected: list[np.ndarray], **tol) -> None:
    assert len(actual) == len(expected)
    for a, e in zip(actual, expected, strict=True):
        np.testing.assert_allclose(a, e, **tol)


# ---- bad input ----------------------------------------------------------------


def test_refuses_a_discrete_action_space() -> None:
    cartpole = gym.make("CartPole-v1")
    with pytest.raises(ValueError, match=r"sac acts on Box action spaces, got Discrete\(2\)"):
        make_sac(cartpole.observation_space, cartpole.action_space)
    with pytest.raises(RegistryError):
        make_agent("sac", "CartPole-v1", backend="tf", device="cpu")


def test_refuses_an_actor_whose_output_does_not_fit_the_action_space() -> None:
    def net(inputs: int, outputs: int) -> keras.Sequential:
        return keras.Sequential([keras.layers.Input((inputs,)), keras.layers.Dense(outputs)])

    # SAC's actor gives [mean || log_std]: 2 columns for Pendulum, not 1.
    with pytest.raises(ValueError, match=r"actor network outputs shape \(1,\).*expected \(2,\)"):
        TFSACAgent(net(3, 1), net(4, 1), net(4, 1), action_dim=1, device="cpu")
    with pytest.raises(ValueError, match=r"twin critic network outputs shape \(3,\)"):
        TFSACAgent(net(3, 2), net(4, 1), net(4, 2), action_dim=1, device="cpu")
    critic = net(4, 1)
    with pytest.raises(ValueError, match="two networks"):
        TFSACAgent(net(3, 2), critic, critic, action_dim=1, device="cpu")


# ---- tensor-optix's constructor -------------------------------------------------


def test_tensor_optix_constructor_trains_the_users_networks() -> None:
    def net(inputs: int, outputs: int) -> keras.Sequential:
        return keras.Sequential(
            [
                keras.layers.Input((inputs,)),
                keras.layers.Dense(32, activation="relu"),
                keras.layers.Dense(outputs),
            ]
        )

    actor, critic1, critic2 = net(3, 2), net(4, 1), net(4, 1)
    agent = TFSACAgent(
        actor=actor,
        critic1=critic1,
        critic2=critic2,
        action_dim=1,
        actor_optimizer=keras.optimizers.Adam(3e-4),
        critic_optimizer=keras.optimizers.Adam(3e-4),
        alpha_optimizer=keras.optimizers.Adam(3e-4),
        hyperparams=HyperparamSet(
            params={"learning_rate": 1e-3, "gamma": 0.99, "tau": 0.005, "batch_size": 64}
        ),
        device="cpu",
    )
    before = values(actor) + values(critic2)
    stats = agent.learn(windows(1, steps=100)[0])
    assert agent.n_updates > 0 and all(math.isfinite(v) for v in stats.values())
    assert all(
        not np.array_equal(b, a)
        for b, a in zip(before, values(actor) + values(critic2), strict=True)
    )
    # Without a Box the actions stay in (−1, 1), as in tensor-optix.
    actions = agent.act(np.zeros((4, 3), dtype=np.float32))
    assert actions.shape == (4, 1) and np.all(np.abs(actions) <= 1)
    assert isinstance(agent.alpha_optimizer, keras.optimizers.Adam)
    assert agent.alpha_optimizer.learning_rate.numpy() == pytest.approx(1e-3)


# ---- acting ---------------------------------------------------------------------


def test_deterministic_actions_are_the_squashed_mean_and_acting_does_not_retrace() -> None:
    agent = small_agent()
    for n in (5, 1, 7, 3):
        obs = np.random.default_rng(n).normal(size=(n, 3)).astype(np.float32)
        mean = agent.actor(obs).numpy()[:, :1]
        np.testing.assert_allclose(agent.act(obs, deterministic=True), 2 * np.tanh(mean), rtol=1e-5)
        assert not np.allclose(agent.act(obs), agent.act(obs, deterministic=True))
    assert agent._act.experimental_get_tracing_count() <= 2  # shapes relaxed after the second


# ---- gSDE (use_sde) ----------------------------------------------------------------


class TestSACGSDEConformance(GSDEConformance):
    backend = "tf"


def test_sde_refuses_an_actor_without_its_head() -> None:
    def net(inputs: int, outputs: int) -> keras.Sequential:
        return keras.Sequential([keras.layers.Input((inputs,)), keras.layers.Dense(outputs)])

    with pytest.raises(ValueError, match="use_sde=True, but the actor has no StateDependentNoise"):
        TFSACAgent(net(3, 2), net(4, 1), net(4, 1), action_space=ACT,
                   hyperparams={"use_sde": True}, device="cpu")  # fmt: skip


# ---- the update -------------------------------------------------------------------


def textbook_sample(actor, obs, eps):
    """a = tanh(u), u = μ + σε, and log π(a|s) = log N(u; μ, σ) − Σ log(1 − tanh²u), in
    float64; with gSDE u = μ + z·(σ ⊙ ε), ε a [dim z, 1] matrix, and u's variance z²·σ²."""
    out = tf.cast(actor(obs), tf.float64)
    eps = tf.cast(eps, tf.float64)
    if isinstance(actor, sac.StateDependentNoise):
        mean, z = out[:, :1], out[:, 1:]
        std = tf.exp(tf.cast(actor.log_std, tf.float64))
        u = mean + z @ (std * eps)
        scale = tf.sqrt(tf.square(z) @ tf.square(std) + 1e-6)
    else:
        mean, log_std = out[:, :1], tf.clip_by_value(out[:, 1:], -20.0, 2.0)
        u = mean + tf.exp(log_std) * eps
        scale = tf.exp(log_std)
    normal = -0.5 * tf.square((u - mean) / scale) - tf.math.log(scale) - 0.5 * math.log(2 * math.pi)
    log_prob = tf.reduce_sum(normal - tf.math.log(1.0 - tf.square(tf.tanh(u))), axis=-1)
    return tf.cast(tf.tanh(u), tf.float32), tf.cast(log_prob, tf.float32)


@pytest.mark.parametrize(
    ("auto_ent_coef", "use_sde"), [(True, False), (False, False), (True, True)]
)
def test_one_update_equals_the_losses_gradients_written_out(auto_ent_coef, use_sde) -> None:
    """Two agents alike: one takes its compiled step; on the other the same minibatch and
    noise (drawn from its generator in the same order; with gSDE one θ_ε's for a and
    a′) go through the losses written out eagerly, their gradients applied by its own
    optimizers. Before the first step the target critics equal the critics, so Q̄ is
    the critics' Q here."""
    hp = {"learning_starts": 0, "train_freq": 8, "batch_size": 16, "tau": 0.05}
    hp |= {"auto_ent_coef": auto_ent_coef, "ent_coef": 0.5, "gamma": 0.98}
    hp |= {"use_sde": use_sde, "log_std_init": -1.0}
    window = windows(1, n_envs=1, steps=8)[0]
    compiled, eager = small_agent(**hp), small_agent(**hp)
    stats = compiled.learn(window)
    assert compiled.n_updates == 1

    # The same draws, from the twin's generator.
    block = next(eager.replay_minibatches(eager.scaler.unit_window(window)))
    batch = {k: v[0] for k, v in block.items()}
    if use_sde:
        noise = [eager.rng.standard_normal((1, 32, 1), np.float32)[0]] * 2
    else:
        noise = eager.rng.standard_normal((1, 2, 16, 1), np.float32)[0]
    obs, next_obs = batch["observations"], batch["next_observations"]
    critic_before = values(eager.critic)
    log_alpha = eager.temperature.log_alpha
    if not auto_ent_coef:
        log_alpha.assign([math.log(0.5)])
    alpha = float(tf.exp(log_alpha)[0])

    a_pi, log_pi = textbook_sample(eager.actor, obs, noise[0])
    if auto_ent_coef:  # J(α) = −α(log π + H̄): d/d(log α) = −α(log π + H̄)·... as SB3, −(log π + H̄)
        grad = -(tf.reduce_mean(log_pi) + (-1.0))
        eager.alpha_optimizer.apply_gradients([(tf.reshape(grad, [1]), log_alpha)])
    a_next, log_next = textbook_sample(eager.actor, next_obs, noise[1])
    q_next = tf.reduce_min(eager.critic(next_obs, a_next), axis=1)
    y = batch["rewards"] + batch["bootstrap"] * (q_next - alpha * log_next)
    with tf.GradientTape() as tape:
        q = eager.critic(obs, batch["actions"])
        critic_loss = 0.5 * (
            tf.reduce_mean(tf.square(q[:, 0] - y)) + tf.reduce_mean(tf.square(q[:, 1] - y))
        )
    variables = eager.critic.trainable_variables
    eager.critic_optimizer.apply_gradients(
        zip(tape.gradient(critic_loss, variables), variables, strict=True)
    )
    with tf.GradientTape() as tape:
        a_pi, log_pi = textbook_sample(eager.actor, obs, noise[0])
        q_pi = tf.reduce_min(eager.critic(obs, a_pi), axis=1)
        actor_loss = tf.reduce_mean(alpha * log_pi - q_pi)
    variables = eager.actor.trainable_variables
    eager.actor_optimizer.apply_gradients(
        zip(tape.gradient(actor_loss, variables), variables, strict=True)
    )
    target = [0.05 * c + 0.95 * b for c, b in zip(values(eager.critic), critic_before, strict=True)]

    tol = {"rtol": 1e-4, "atol": 1e-6}
    assert stats["critic_loss"] == pytest.approx(float(critic_loss), rel=1e-4)
    assert stats["actor_loss"] == pytest.approx(float(actor_loss), rel=1e-4, abs=1e-5)
    assert_close(values(compiled.actor), values(eager.actor), **tol)
    assert_close(values(compiled.critic), values(eager.critic), **tol)
    assert_close(values(compiled.critic_target), target, **tol)
    assert_close(values(compiled.temperature), values(eager.temperature), **tol)
    assert not np.allclose(values(compiled.critic)[0], critic_before[0])  # it moved


def test_updates_follow_the_schedule_and_steps_compile_once() -> None:
    agent = small_agent(learning_starts=40, train_freq=3, gradient_steps=2, batch_size=16)
    first, second, third = windows(3, n_envs=2, steps=30)
    agent.learn(first)  # vector steps t = 1..30; due where t % 3 == 0 and 2t > 40: 21..30
    assert agent.n_updates == 4 * 2 and agent.num_timesteps == 60
    agent.learn(second)
    agent.learn(third)
    assert agent.n_updates == 8 + 20 + 20
    assert agent._step.experimental_get_tracing_count() <= 2  # block sizes 8, then 20


def test_learning_rate_reaches_every_optimizer_and_fixed_temperature_holds() -> None:
    agent = small_agent(learning_starts=0)
    agent.set_hyperparams(HyperparamSet({"learning_rate": 2.5e-4}))
    for optimizer in agent.optimizers().values():
        assert optimizer.learning_rate.numpy() == pytest.approx(2.5e-4)
    agent.set_hyperparams(HyperparamSet({"auto_ent_coef": False, "ent_coef": 0.05}))
    first, second = windows(2)
    assert agent.learn(first)["ent_coef"] == pytest.approx(0.05)
    agent.set_hyperparams(HyperparamSet({"auto_ent_coef": True}))
    assert agent.learn(second)["ent_coef"] != pytest.approx(0.05)


# ---- checkpoints ----------------------------------------------------------------


def test_resume_keeps_the_replay_buffer_and_continues_exactly(tmp_path) -> None:
    first, second = windows(2)
    agent = small_agent(learning_starts=50)
    agent.learn(first)
    agent.save_weights(str(tmp_path / "ckpt"))
    resumed = small_agent(seed=7, learning_starts=50)
    resumed.load_weights(str(tmp_path / "ckpt"))
    rows = np.arange(len(agent.replay))
    assert len(resumed.replay) == len(agent.replay) == 100
    for key, value in agent.replay.buffer.get(rows).items():
        np.testing.assert_array_equal(resumed.replay.buffer.get(rows)[key], value, err_msg=key)
    assert resumed.learn(second) == agent.learn(second)
    for name, module in agent.modules().items():
        assert_close(values(resumed.modules()[name]), values(module), rtol=0, atol=0)


# ---- learning ---------------------------------------------------------------------


@pytest.mark.slow
def test_learns_pendulum() -> None:
    """SAC, ReLU [64, 64], SB3 defaults with lr 1e-3 (torch's test): 6,000 steps from
    one environment in windows of 200 reach ≥ −250 (deterministic, 20 episodes
    seeded from 10,000)."""
    agent = make_sac(
        OBS, ACT, hyperparams={"learning_rate": 1e-3}, device="cpu", seed=0, hidden=(64, 64)
    )
    start = time.perf_counter()
    pipeline = VectorBatchPipeline(
        env_id="Pendulum-v1", n_envs=1, window_size=200, seed=0, agent=agent
    )
    try:
        for _ in range(30):
            agent.learn(pipeline.collect())
    finally:
        pipeline.close()
    result = evaluate_policy(agent, "Pendulum-v1", episodes=20, seed=10_000)
    print(f"SAC Pendulum: {result.mean:.1f} in {time.perf_counter() - start:.0f} s")
    assert result.mean >= -250, str(result)


@pytest.mark.slow
@pytest.mark.parametrize("env_id", toy_envs.POINTER_ENVS)
def test_learns_to_point_at_a_target_shown_as_an_image_a_dict_or_an_index(env_id: str) -> None:
    """SAC, ReLU [64, 64] after the default extractor (SmallCNN on the image, one-hot
    on the index), lr 1e-3, batch 64 (torch's test): 1,920 steps in windows of 64
    bring the return from about −6 (random; −4.8 for the best pointer blind to the
    target) to ≥ −1.5."""
    result = learn_to_point(make_sac, env_id, windows=30)
    print(f"SAC {env_id}: {result}")
    assert result.mean >= -1.5, str(result)
