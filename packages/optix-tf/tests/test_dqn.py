"""TFDQNAgent: conformance, the update against the TD loss written out eagerly, the update
schedule and target copies, exploration, checkpoints with the replay, bad input, compiled
steps that do not retrace, and learning CartPole-v1."""

from __future__ import annotations

import copy

import gymnasium as gym
import keras
import numpy as np
import pytest
import tensorflow as tf

from optix_core import HyperparamSet, make_agent
from optix_core.buffers import PrioritizedReplayBuffer, window_transitions
from optix_core.evaluation import evaluate_policy
from optix_core.hyperparams import HyperparamError
from optix_core.pipeline import VectorBatchPipeline
from optix_core.registry import RegistryError
from optix_core.testing import AgentConformance
from optix_core.testing.epsilon_greedy import EpsilonGreedyConformance
from optix_core.testing.learning_runs import FAST, learn_with_evaluations
from optix_core.testing.replay_checkpoints import ReplayCheckpointConformance
from optix_core.types import EpisodeData
from optix_tf.algorithms.dqn import QNetwork, TFDQNAgent, make_dqn
from optix_tf.policies.extractors import CombinedExtractor, OneHotExtractor, SmallCNN


class TestDQNConformance(AgentConformance):
    algo = "dqn"
    backend = "tf"
    env_ids = ("CartPole-v1", "FrozenLake-v1")  # flat vectors; Discrete observations
    # Updates come after every train_freq-th (256th) vector step once more than
    # learning_starts (1,000) env steps were seen: at vector step 512 of 2 envs.
    window_size = 512

    def test_the_suite_trains_with_gradient_steps(self, env_id: str) -> None:
        """test_learn_changes_the_policy sees learning, not just stored experience."""
        agent = self.make(env_id)
        self.train(agent, env_id)
        assert agent.n_updates == 128


def cartpole_agent(seed: int = 0, **hp) -> TFDQNAgent:
    return make_agent(
        "dqn", "CartPole-v1", backend="tf", hyperparams=HyperparamSet(hp), device="cpu", seed=seed
    )


def windows(
    agent, count: int, n_envs: int = 2, window: int = 64, env_id: str = "CartPole-v1"
) -> list[EpisodeData]:
    """``count`` consecutive windows of one pipeline (seed 0), ``agent`` acting, not learning."""
    pipeline = VectorBatchPipeline(
        env_id=env_id, n_envs=n_envs, window_size=window, seed=0, agent=agent
    )
    try:
        return [pipeline.collect() for _ in range(count)]
    finally:
        pipeline.close()


def assert_same_weights(a: keras.Model, b: keras.Model, **tolerance) -> None:
    for x, y in zip(a.weights, b.weights, strict=True):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), **tolerance)


# ---- bad input ---------------------------------------------------------------


def test_a_continuous_env_is_refused() -> None:
    with pytest.raises(RegistryError, match="dqn"):
        make_agent("dqn", "Pendulum-v1", backend="tf", device="cpu")
    pendulum = gym.make("Pendulum-v1")
    with pytest.raises(ValueError, match=r"dqn acts on Discrete action spaces, got Box"):
        make_dqn(pendulum.observation_space, pendulum.action_space, device="cpu")


def keras_q(in_dim: int, out_dim: int) -> keras.Sequential:
    return keras.Sequential(
        [
            keras.layers.Input((in_dim,)),
            keras.layers.Dense(16, activation="relu"),
            keras.layers.Dense(out_dim),
        ]
    )


def test_a_q_network_whose_outputs_do_not_match_n_actions_is_refused() -> None:
    three = keras_q(4, 3)
    with pytest.raises(ValueError, match=r"outputs shape \(3,\).*expected \(2,\)"):
        TFDQNAgent(three, n_actions=2, device="cpu")
    with pytest.raises(ValueError, match=r"fails on observations from Box"):
        TFDQNAgent(three, 3, device="cpu", observation_space=gym.spaces.Box(-1, 1, (5,)))
    with pytest.raises(ValueError, match="n_actions must be a positive integer"):
        TFDQNAgent(three, 0, device="cpu")


def test_hyperparameters_outside_their_range_are_refused() -> None:
    with pytest.raises(HyperparamError, match="per_alpha"):
        cartpole_agent(per_alpha=1.5)
    agent = cartpole_agent()
    with pytest.raises(HyperparamError, match="batch_size"):
        agent.set_hyperparams(HyperparamSet({"batch_size": 0}))


# ---- the tensor-optix constructor ------------------------------------------------


def test_the_tensor_optix_constructor_with_a_user_network_and_optimizer() -> None:
    q_net = keras_q(4, 2)
    optimizer = keras.optimizers.Adam(3e-4)
    agent = TFDQNAgent(
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
    assert agent.target_network is not q_net
    assert_same_weights(agent.target_network, q_net)
    agent.set_hyperparams(HyperparamSet({"learning_rate": 1e-3}))
    assert float(optimizer.learning_rate) == pytest.approx(1e-3)
    actions = agent.act(np.zeros((5, 4), dtype=np.float32), deterministic=True)
    assert actions.shape == (5,)


# ---- the update ----------------------------------------------------------------


@pytest.mark.parametrize("huber", [True, False], ids=["huber", "mse"])
def test_a_window_of_updates_equals_the_td_loss_written_out_eagerly(huber) -> None:
    """Stable-Baselines3's DQN loop written out eagerly: after every train_freq-th
    vector step, once more than learning_starts transitions were seen,
    gradient_steps updates, each on a fresh minibatch of what was stored by
    then, the target from the target network, Huber (or squared) loss, the
    gradient of a GradientTape, clipping, Keras's Adam, a hard target copy
    every target_update_freq steps."""
    agent = cartpole_agent(
        learning_starts=40,
        batch_size=32,
        train_freq=16,
        gradient_steps=3,
        target_update_freq=4,
        learning_rate=1e-3,
        max_grad_norm=0.5,
        huber_loss=huber,
    )
    net = keras.models.clone_model(agent.q_network)
    net.set_weights(agent.q_network.get_weights())
    target_net = keras.models.clone_model(agent.q_network)
    target_net.set_weights(agent.target_network.get_weights())
    adam = keras.optimizers.Adam(1e-3, epsilon=1e-8)
    data = windows(cartpole_agent(seed=7), 1)[0]  # 64 vector steps of 2 envs
    rng = copy.deepcopy(agent.rng)
    stats = agent.learn(data)

    steps = window_transitions(data)
    flat = {k: v.reshape(-1, *v.shape[2:]) for k, v in steps.items()}
    updates, losses = 0, []
    for t in range(1, 65):
        stored = 2 * t
        if t % 16 or stored <= 40:
            continue
        for rows in rng.integers(0, stored, 3 * 32).reshape(3, 32):
            next_q = target_net(flat["next_observations"][rows]).numpy().max(axis=-1)
            y = flat["rewards"][rows] + 0.99 * (~flat["terminated"][rows]) * next_q
            with tf.GradientTape() as tape:
                q = tf.gather(net(flat["observations"][rows]), flat["actions"][rows], batch_dims=1)
                error = q - y.astype(np.float32)
                if huber:
                    loss = tf.reduce_mean(keras.losses.huber(error[:, None] * 0, error[:, None]))
                else:
                    loss = tf.reduce_mean(tf.square(error))
            grads = tape.gradient(loss, net.trainable_variables)
            grads, _ = tf.clip_by_global_norm(grads, 0.5)
            adam.apply_gradients(zip(grads, net.trainable_variables, strict=True))
            losses.append(float(loss))
            updates += 1
            if updates % 4 == 0:
                target_net.set_weights(net.get_weights())
    assert agent.n_updates == updates == 9  # after vector steps 32, 48 and 64
    assert stats["loss"] == pytest.approx(np.mean(losses), rel=1e-4)
    assert_same_weights(agent.q_network, net, rtol=1e-4, atol=1e-6)
    assert_same_weights(agent.target_network, target_net, rtol=1e-4, atol=1e-6)


def test_gradient_steps_come_after_every_train_freq_th_vector_step() -> None:
    agent = cartpole_agent(learning_starts=40, batch_size=16, train_freq=24, gradient_steps=3)
    first, second = windows(cartpole_agent(seed=7), 2)
    assert agent.learn(first)["n_updates"] == 2 * 3  # after vector steps 24 and 48
    assert agent.learn(second)["n_updates"] == 5 * 3  # then 72, 96 and 120
    assert agent.vector_steps == 128 and agent.num_timesteps == 256


def test_target_network_is_copied_every_target_update_freq_gradient_steps() -> None:
    agent = cartpole_agent(
        learning_starts=0, batch_size=16, train_freq=64, gradient_steps=4, target_update_freq=2
    )
    data = windows(cartpole_agent(seed=7), 1)[0]
    agent.learn(data)
    assert agent.n_updates == 4
    assert_same_weights(agent.q_network, agent.target_network)  # copied after update 4
    agent.set_hyperparams(HyperparamSet({"gradient_steps": 3}))
    agent.learn(data)  # updates 5, 6 (copy), 7
    assert agent.n_updates == 7
    assert any(
        not np.array_equal(np.asarray(a), np.asarray(b))
        for a, b in zip(agent.q_network.weights, agent.target_network.weights, strict=True)
    )


def test_prioritized_n_step_replay_updates_the_priorities() -> None:
    agent = cartpole_agent(per_alpha=0.6, per_beta=0.4, n_step=3, **FAST)
    data = windows(cartpole_agent(seed=7), 2)
    agent.learn(data[0])
    stats = agent.learn(data[1])
    assert np.isfinite(stats["loss"]) and stats["n_updates"] == 16
    assert stats["per_beta"] == pytest.approx(0.4 + 0.6 * 256 / 50_000)
    buffer = agent.replay.buffer
    assert isinstance(buffer, PrioritizedReplayBuffer)
    leaves = np.array(buffer.tree.leaves[: len(buffer)])
    assert leaves.min() > 0 and len(np.unique(leaves)) > 10  # updated from TD errors


def test_the_compiled_update_and_acting_do_not_retrace() -> None:
    """Blocks of any count share one trace after the second; acting on batches of any
    size through a network that is not a plain MLP shares one trace after the second."""
    agent = cartpole_agent(**{**FAST, "train_freq": 16})
    for gradient_steps, data in zip((8, 2, 5, 3), windows(cartpole_agent(seed=7), 4), strict=True):
        agent.set_hyperparams(HyperparamSet({"gradient_steps": gradient_steps}))
        agent.learn(data)
    assert agent._train.experimental_get_tracing_count() <= 2
    space = gym.spaces.Box(0, 255, (10, 5, 1), np.uint8)
    pixels = make_dqn(space, gym.spaces.Discrete(3), device="cpu", seed=0)
    for n in (1, 2, 3, 5, 1, 8):
        assert pixels.act(np.zeros((n, 10, 5, 1), np.uint8), deterministic=True).shape == (n,)
    assert pixels._greedy.experimental_get_tracing_count() <= 2


# ---- networks and observation spaces --------------------------------------------------


@pytest.mark.parametrize(
    ("space", "extractor"),
    [
        (gym.spaces.Box(0, 255, (10, 5, 1), np.uint8), SmallCNN),
        (
            gym.spaces.Dict(
                {"goal": gym.spaces.Discrete(3), "noise": gym.spaces.Box(-1, 1, (2,), np.float32)}
            ),
            CombinedExtractor,
        ),
        (gym.spaces.Discrete(16), OneHotExtractor),
        (gym.spaces.Box(-1, 1, (6,), np.float32), None),
    ],
    ids=["image", "dict", "discrete", "flat"],
)
def test_the_default_q_network_is_chosen_from_the_observation_space(space, extractor) -> None:
    agent = make_dqn(space, gym.spaces.Discrete(3), device="cpu", seed=0)
    if extractor is None:
        assert type(agent.q_network) is keras.Sequential
    else:
        assert isinstance(agent.q_network, QNetwork)
        assert type(agent.q_network.extractor) is extractor
        assert isinstance(agent.target_network, QNetwork)
    assert_same_weights(agent.q_network, agent.target_network)
    obs = space.seed(0) or None
    batch = [space.sample() for _ in range(5)]
    if isinstance(space, gym.spaces.Dict):
        obs = {k: np.stack([b[k] for b in batch]) for k in space.spaces}
    else:
        obs = np.stack(batch)
    assert agent.act(obs, deterministic=True).shape == (5,)
    assert agent.act(obs).shape == (5,)


def test_the_same_seed_builds_the_same_network() -> None:
    a, b = cartpole_agent(seed=3), cartpole_agent(seed=3)
    assert_same_weights(a.q_network, b.q_network)
    c = cartpole_agent(seed=4)
    assert not np.array_equal(a.q_network.weights[0].numpy(), c.q_network.weights[0].numpy())


# ---- exploration -------------------------------------------------------------------


class TestEpsilonGreedy(EpsilonGreedyConformance):
    """ε's schedule, training actions and checkpoints (optix-core's conformance)."""

    backend = "tf"


# ---- checkpoints ------------------------------------------------------------------


class TestReplayCheckpoints(ReplayCheckpointConformance):
    """Replay, counters and the next update across a checkpoint (optix-core's conformance)."""

    backend = "tf"


# ---- learning -------------------------------------------------------------------


@pytest.mark.slow
def test_dqn_learns_cartpole_to_475() -> None:
    """optix-torch's learning test on TensorFlow: rl-zoo's settings (the factory's
    defaults), seed 0, windows of 256 steps of one CartPole (seed 0); every 2,560 env
    steps a deterministic 20-episode evaluation (the i-th seeded from 10,000 + i),
    the first to reach 475 within 51,200 env steps ending the run; then 475 again on
    the 20 episodes seeded from 10,000 and on 20 other episodes. Measured: 500 after
    30,720 env steps, about 30 s of one shared CPU core."""
    agent = make_agent("dqn", "CartPole-v1", backend="tf", device="cpu", seed=0)
    scores = learn_with_evaluations(agent, "CartPole-v1", 51_200, stop_at=475)
    assert scores[-1] >= 475, scores
    assert evaluate_policy(agent, "CartPole-v1", episodes=20, seed=10_000).mean >= 475
    fresh = evaluate_policy(agent, "CartPole-v1", episodes=20, seed=999_999)
    assert fresh.mean >= 475, (scores, str(fresh))
