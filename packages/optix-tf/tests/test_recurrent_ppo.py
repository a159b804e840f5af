"""TFRecurrentPPOAgent: conformance, the hidden state, every space, checkpoints, learning."""

from __future__ import annotations

import gymnasium as gym
import keras
import numpy as np
import pytest
import tensorflow as tf

from optix_core import make_agent
from optix_core.evaluation import evaluate_policy
from optix_core.pipeline import VectorBatchPipeline
from optix_core.policies.observations import stack
from optix_core.recurrent import bootstrap_values, fit_seq_len
from optix_core.testing import AgentConformance
from optix_core.testing.toy_envs import masked_cartpole
from optix_core.types import EpisodeData, HyperparamSet
from optix_tf.algorithms.recurrent_ppo import (
    MAX_UNROLL,
    LSTMActorCritic,
    NumpyLSTMActorCritic,
    TFRecurrentPPOAgent,
    make_recurrent_ppo,
)
from optix_tf.policies.extractors import (
    CombinedExtractor,
    NatureCNN,
    OneHotExtractor,
    SmallCNN,
)


class TestRecurrentPPOConformance(AgentConformance):
    algo = "recurrent-ppo"
    backend = "tf"


def cartpole_agent(seed: int = 0, **hp) -> TFRecurrentPPOAgent:
    return make_agent(
        "recurrent-ppo",
        "CartPole-v1",
        backend="tf",
        hyperparams=hp or None,
        device="cpu",
        seed=seed,
    )


def collect(agent, n_envs: int = 3, window: int = 48, seed: int = 0, windows: int = 1):
    pipeline = VectorBatchPipeline(
        env_id="CartPole-v1", n_envs=n_envs, window_size=window, seed=seed, agent=agent
    )
    try:
        return [pipeline.collect() for _ in range(windows)]
    finally:
        pipeline.close()


def log_softmax_at(logits: tf.Tensor, actions: np.ndarray) -> np.ndarray:
    log_p = tf.nn.log_softmax(logits).numpy()
    return np.take_along_axis(log_p, np.asarray(actions)[..., None], axis=-1)[..., 0]


# ---- the hidden state --------------------------------------------------------


def test_act_info_resets_the_rows_whose_episode_starts() -> None:
    agent = cartpole_agent()
    obs = np.random.default_rng(0).normal(size=(3, 4)).astype(np.float32)
    _, first = agent.act_info(obs, np.ones(3, dtype=bool))
    assert np.all(first["h"] == 0) and np.all(first["c"] == 0)
    _, second = agent.act_info(obs, np.zeros(3, dtype=bool))
    assert np.all(np.abs(second["h"]).sum(axis=1) > 0)  # carried from step one
    _, third = agent.act_info(obs, np.array([False, True, False]))
    assert np.all(third["h"][1] == 0) and np.all(third["c"][1] == 0)
    assert np.all(np.abs(third["h"][[0, 2]]).sum(axis=1) > 0)
    # the rows that carried on hold the state their own history left
    _, _, (h, c) = agent.network(obs[None], (tf.constant(second["h"]), tf.constant(second["c"])))
    np.testing.assert_allclose(third["h"][[0, 2]], h.numpy()[[0, 2]], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(third["c"][[0, 2]], c.numpy()[[0, 2]], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("steps", [6, MAX_UNROLL + 8])
def test_network_zeroes_the_state_where_an_episode_starts_inside_a_sequence(steps: int) -> None:
    """Both ways of unrolling (in Python for short sequences, a while loop for
    long ones or an unknown length) reset where an episode starts."""
    net = LSTMActorCritic(4, 2, 8, seed=0)
    rng = np.random.default_rng(0)
    obs = tf.constant(rng.normal(size=(steps, 2, 4)), tf.float32)
    state = tuple(tf.constant(rng.normal(size=(2, 8)), tf.float32) for _ in range(2))
    starts = np.zeros((steps, 2), dtype=bool)
    starts[3, 1] = True
    starts = tf.constant(starts)
    unknown_length = tf.function(
        lambda o, h, c, s: net(o, (h, c), s)[:2],
        input_signature=[
            tf.TensorSpec([None, None, 4]),
            tf.TensorSpec([None, 8]),
            tf.TensorSpec([None, 8]),
            tf.TensorSpec([None, None], tf.bool),
        ],
    )
    for logits, values in (net(obs, state, starts)[:2], unknown_length(obs, *state, starts)):
        # row 1 from step 3 on is a fresh episode: the same as running it alone from zeros
        fresh_logits, fresh_values, _ = net(obs[3:, 1:], net.initial_state(1))
        np.testing.assert_allclose(logits[3:, 1:], fresh_logits, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(values[3:, 1:], fresh_values, rtol=1e-5, atol=1e-6)
        # row 0 never restarted: one uninterrupted run
        run_logits, _, _ = net(obs[:, :1], (state[0][:1], state[1][:1]))
        np.testing.assert_allclose(logits[:, :1], run_logits, rtol=1e-5, atol=1e-6)
        # without the reset, row 1 runs on from its history: not the fresh run
        carried_on = net(obs, state)[1]
        assert not np.allclose(carried_on[3:, 1:], fresh_values, atol=1e-3)


def test_training_replays_exactly_the_states_that_acted() -> None:
    """Unrolling every sequence from its stored first state reproduces the
    log-probabilities and values recorded at act time (in numpy), at every
    step, whatever the sequence length: no zero-state artifacts at sequence cuts."""
    agent = cartpole_agent()
    (data,) = collect(agent, n_envs=3, window=48)
    assert data.dones.any()  # episodes end inside the window
    info = data.policy_info
    starts = np.zeros_like(data.dones)
    starts[1:] = data.dones[:-1]
    for seq_len in (48, 16, 3):
        for begin in range(0, 48, seq_len):
            end = begin + seq_len
            logits, values, _ = agent.network(
                tf.constant(data.observations[begin:end], tf.float32),
                (tf.constant(info["h"][begin]), tf.constant(info["c"][begin])),
                tf.constant(starts[begin:end]),
            )
            np.testing.assert_allclose(
                log_softmax_at(logits, data.actions[begin:end]),
                info["log_probs"][begin:end],
                atol=1e-5,
            )
            np.testing.assert_allclose(values, info["values"][begin:end], atol=1e-5)


SPACES = {
    "discrete": gym.spaces.Discrete(3),
    "multi_discrete": gym.spaces.MultiDiscrete([2, 3]),
    "multi_binary": gym.spaces.MultiBinary(3),
    "box": gym.spaces.Box(-2.0, 2.0, (2,), np.float32),
}
OBSERVATIONS = {
    "flat": gym.spaces.Box(-1.0, 1.0, (4,), np.float32),
    "image": gym.spaces.Box(0, 255, (10, 10, 2), np.uint8),
    "discrete": gym.spaces.Discrete(5),
    "dict": gym.spaces.Dict(
        {"pos": gym.spaces.Box(-1.0, 1.0, (3,), np.float32), "cell": gym.spaces.Discrete(4)}
    ),
}
# Every observation space with Discrete actions, every action space on flat observations.
SPACE_PAIRS = [(o, "discrete") for o in OBSERVATIONS] + [
    ("flat", a) for a in SPACES if a != "discrete"
]


def random_window(
    observation_space: gym.Space, agent, steps: int = 32, envs: int = 2
) -> EpisodeData:
    """A window ``agent`` acts in on random observations, as a pipeline records it,
    with episodes that end inside it (terminated and truncated) and rewards
    that favour no action."""
    observation_space.seed(0)
    obs = [stack([observation_space.sample() for _ in range(envs)]) for _ in range(steps + 1)]
    terminated = np.zeros((steps, envs), bool)
    truncated = np.zeros((steps, envs), bool)
    terminated[steps // 3, 0] = terminated[2 * steps // 3, 1] = True
    truncated[steps // 2, 1] = True
    dones = terminated | truncated
    actions, infos = [], []
    for t in range(steps):
        start = np.ones(envs, bool) if t == 0 else dones[t - 1]
        a, info = agent.act_info(obs[t], start)
        actions.append(a)
        infos.append(info)
    data = EpisodeData(
        observations=stack(obs[:-1]),
        actions=np.stack(actions),
        rewards=np.random.default_rng(1).normal(size=(steps, envs)).astype(np.float32),
        terminated=terminated,
        truncated=truncated,
        next_observations=obs[-1],
        final_observations=stack(obs[1:]),
    )
    data.policy_info = {k: np.stack([i[k] for i in infos]) for k in infos[0]}
    return data


@pytest.mark.parametrize(("obs_kind", "act_kind"), SPACE_PAIRS)
def test_first_epoch_starts_on_policy_and_learns_on_every_space(obs_kind, act_kind) -> None:
    """With one minibatch and one epoch, the first ratio is exactly 1 on every
    space: nothing clipped, KL 0 (the recorded log-probabilities and states are
    the ones learning recomputes, resets inside sequences included); and the
    step changes the weights."""
    hp = {"n_epochs": 1, "minibatch_size": 4096, "seq_len": 8}
    agent = make_recurrent_ppo(
        OBSERVATIONS[obs_kind], SPACES[act_kind], hyperparams=HyperparamSet(hp), device="cpu"
    )
    # A decided policy (the default actor starts near-uniform, gain 0.01), so
    # that the log-probabilities depend on every state that acted.
    agent.network.actor.kernel.assign(agent.network.actor.kernel * 300.0)
    agent._snapshot = None
    data = random_window(OBSERVATIONS[obs_kind], agent)
    assert all(SPACES[act_kind].contains(a) for a in data.actions[0])
    before = [v.numpy().copy() for v in agent.network.trainable_variables]
    diag = agent.learn(data)
    assert diag["approx_kl"] == pytest.approx(0.0, abs=1e-6)
    assert diag["clip_fraction"] == 0.0
    assert diag["updates"] == 1.0 and diag["seq_len"] == 8.0
    after = agent.network.trainable_variables
    assert any(not np.allclose(a, v.numpy()) for a, v in zip(before, after, strict=True))


def test_bootstrap_values_step_on_from_the_states_the_history_left() -> None:
    """V after the window is the critic one step on from the state each column's
    last step left, or from a fresh state where that step ended an episode; a
    truncated step's final observation continues its own episode's state."""
    space = OBSERVATIONS["flat"]
    agent = make_recurrent_ppo(space, SPACES["discrete"], device="cpu", seed=0)
    data = random_window(space, agent, steps=12)  # truncated at step 6 of column 1
    data.terminated[-1, 1] = True  # column 1's last step ends its episode
    info = data.policy_info
    actions = agent.distribution.learn_actions(data.actions, info, 24)
    values, next_values, final_values, _ = bootstrap_values(
        data, actions, agent.distribution, agent._step
    )

    def value_after(t: int, e: int, then: np.ndarray, fresh: bool = False) -> float:
        state = (info["h"][t, e][None], info["c"][t, e][None])
        _, _, state = agent._step(data.observations[t, e][None], state)
        if fresh:
            state = tuple(np.zeros_like(s) for s in state)
        return float(agent._step(then[None], state)[1][0])

    np.testing.assert_array_equal(values, info["values"])
    nxt = data.next_observations
    assert next_values[0] == pytest.approx(value_after(-1, 0, nxt[0]), abs=1e-6)
    assert next_values[1] == pytest.approx(value_after(-1, 1, nxt[1], fresh=True), abs=1e-6)
    assert abs(value_after(-1, 1, nxt[1]) - next_values[1]) > 1e-3  # the reset matters
    final = value_after(6, 1, data.final_observations[6, 1])
    assert final_values[6, 1] == pytest.approx(final, abs=1e-6)
    assert np.count_nonzero(final_values) == 1


def test_target_kl_stops_the_epochs_early() -> None:
    agent = cartpole_agent(n_epochs=50, learning_rate=1e-2, target_kl=0.01)
    (data,) = collect(agent, n_envs=2, window=64)
    diag = agent.learn(data)
    assert diag["stopped_early"] == 1.0
    assert 0 < diag["updates"] < 50 * 2  # two minibatches an epoch
    free = cartpole_agent(n_epochs=3)
    assert free.learn(data)["stopped_early"] == 0.0


def test_the_sequence_length_is_fitted_to_the_window() -> None:
    assert fit_seq_len(100, 16) == 10
    agent = cartpole_agent(n_epochs=1)
    (data,) = collect(agent, n_envs=2, window=40)
    assert agent.learn(data)["seq_len"] == 10.0


def test_hidden_state_carries_across_windows() -> None:
    agent = cartpole_agent()
    first, second = collect(agent, n_envs=2, window=32, windows=2)
    carried = ~first.dones[-1]
    assert carried.any()
    assert np.all(np.abs(second.policy_info["h"][0][carried]).sum(axis=-1) > 0)


def test_act_keeps_its_own_memory_and_forgets_it_on_request() -> None:
    agent = cartpole_agent()
    obs = np.random.default_rng(1).normal(size=(2, 4)).astype(np.float32)
    agent.act(obs, deterministic=True)
    remembered = agent._act_state[0].copy()
    assert np.abs(remembered).sum() > 0
    # act_info's rollout memory is separate
    _, info = agent.act_info(obs, np.zeros(2, dtype=bool))
    assert np.all(info["h"] == 0)
    agent.reset_state(np.array([True, False]))
    assert np.all(agent._act_state[0][0] == 0)
    np.testing.assert_array_equal(agent._act_state[0][1], remembered[1])
    agent.act(obs, deterministic=True, episode_start=np.array([False, True]))
    assert np.all(agent._act_state[0][1] != 0)
    agent.reset_state()
    assert agent._act_state is None
    # a new batch size starts fresh rather than failing
    assert agent.act(np.zeros((5, 4), dtype=np.float32)).shape == (5,)


def test_set_hyperparams_takes_effect_at_once() -> None:
    agent = cartpole_agent()
    params = agent.get_hyperparams().params | {"learning_rate": 1e-3, "clip_ratio": 0.1}
    agent.set_hyperparams(HyperparamSet(params=params))
    assert float(agent.optimizer.learning_rate.numpy()) == pytest.approx(1e-3)
    assert agent.hp["clip_ratio"] == 0.1
    (data,) = collect(agent, n_envs=2, window=32)
    agent.learn(data)  # the compiled update reads the new rate without retracing
    assert float(agent.optimizer.learning_rate.numpy()) == pytest.approx(1e-3)


# ---- acting: numpy on the CPU, a tf.function elsewhere ---------------------------


def test_acting_in_numpy_gives_the_networks_outputs_and_follows_every_weight_change(
    tmp_path,
) -> None:
    agent = cartpole_agent()
    rng = np.random.default_rng(0)
    obs = rng.normal(size=(16, 4)).astype(np.float32)
    state = tuple(rng.normal(size=(16, 64)).astype(np.float32) for _ in range(2))

    def check() -> None:
        assert agent._numpy_snapshot() is not None  # the default network on the CPU
        fast = agent._step(obs, state)
        plain = agent._act(tf.constant(obs), tf.constant(state[0]), tf.constant(state[1]))
        for a, b in zip((*fast[:2], *fast[2]), plain, strict=True):
            np.testing.assert_allclose(a, b.numpy(), rtol=1e-5, atol=1e-5)

    check()
    agent.save_weights(str(tmp_path / "start"))
    (data,) = collect(agent, n_envs=2, window=32)
    agent.learn(data)  # the weights move: acting must see them
    check()
    agent.load_weights(str(tmp_path / "start"))  # and move back
    check()


def test_acting_through_tensorflow_does_not_retrace_per_call() -> None:
    space = OBSERVATIONS["image"]  # a CNN: acting runs the tf.function
    agent = make_recurrent_ppo(space, gym.spaces.Discrete(3), device="cpu", seed=0)
    assert NumpyLSTMActorCritic.of(agent.network) is None
    for rows in (1, 3, 8, 5, 8):
        obs = np.zeros((rows, *space.shape), np.uint8)
        agent.act(obs)
        agent.act_info(obs, np.zeros(rows, bool))
    assert agent._act.experimental_get_tracing_count() <= 2  # one shape, then a dynamic batch


# ---- the policy layer: networks from the spaces, users' extractors ---------------------


def test_the_default_network_follows_the_observation_space() -> None:
    def network(space: gym.Space, actions: gym.Space = SPACES["discrete"]) -> LSTMActorCritic:
        return make_recurrent_ppo(space, actions, device="cpu").network

    assert isinstance(network(OBSERVATIONS["image"]).extractor, SmallCNN)
    large = gym.spaces.Box(0, 255, (40, 40, 1), np.uint8)
    assert isinstance(network(large).extractor, NatureCNN)
    assert isinstance(network(OBSERVATIONS["discrete"]).extractor, OneHotExtractor)
    assert isinstance(network(OBSERVATIONS["dict"]).extractor, CombinedExtractor)
    assert network(OBSERVATIONS["flat"], SPACES["multi_discrete"]).actor.units == 5  # 2 + 3 logits


class Pixels(keras.layers.Layer):
    """A user's extractor for 10×10×2 frames."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = keras.layers.Dense(32, activation="relu")

    def call(self, obs: tf.Tensor) -> tf.Tensor:
        return self.linear(tf.reshape(tf.cast(obs, tf.float32) / 255.0, [tf.shape(obs)[0], 200]))


def test_a_users_extractor_trains() -> None:
    """Any Keras layer from observations to features serves, given as extractor=
    or inside a network of the user's; its weights learn."""
    space = OBSERVATIONS["image"]
    for given in ("extractor", "network"):
        extractor = Pixels()
        kwargs = (
            {"extractor": extractor}
            if given == "extractor"
            else {"network": LSTMActorCritic(space, 3, 32, extractor=extractor)}
        )
        agent = TFRecurrentPPOAgent(
            observation_space=space,
            action_space=gym.spaces.Discrete(3),
            hyperparams={"n_epochs": 1},
            device="cpu",
            seed=0,
            **kwargs,
        )
        assert agent.network.extractor is extractor
        before = extractor.linear.kernel.numpy().copy()
        agent.learn(random_window(space, agent, steps=16))
        assert not np.allclose(extractor.linear.kernel.numpy(), before), given


# ---- bad input ------------------------------------------------------------------


def test_spaces_no_distribution_or_extractor_serves_are_refused() -> None:
    box = gym.spaces.Box(-1, 1, (3,), np.float32)
    with pytest.raises(ValueError, match="Discrete, MultiDiscrete, MultiBinary or Box action"):
        make_recurrent_ppo(box, gym.spaces.Tuple((gym.spaces.Discrete(2),)), device="cpu")
    with pytest.raises(
        ValueError,
        match="recurrent-ppo reads Box, Discrete, MultiDiscrete, MultiBinary or Dict observations",
    ):
        make_recurrent_ppo(gym.spaces.Tuple((box,)), gym.spaces.Discrete(2), device="cpu")


def test_a_network_that_does_not_fit_the_spaces_is_refused() -> None:
    with pytest.raises(ValueError, match=r"expected \(1, 2, 3\) for this action space"):
        TFRecurrentPPOAgent(4, 3, network=LSTMActorCritic(4, 2), device="cpu")
    with pytest.raises(ValueError, match="the network fails on observations"):
        TFRecurrentPPOAgent(5, 2, network=LSTMActorCritic(4, 2), device="cpu")
    with pytest.raises(ValueError, match="obs_dim or observation_space"):
        TFRecurrentPPOAgent(n_actions=2, device="cpu")
    with pytest.raises(ValueError, match="give it or network=, not both"):
        TFRecurrentPPOAgent(4, 2, network=LSTMActorCritic(4, 2), extractor=Pixels())


def test_learn_without_recorded_states_is_a_clear_error() -> None:
    agent = cartpole_agent()
    pipeline = VectorBatchPipeline(
        env_id="CartPole-v1", n_envs=2, window_size=16, seed=0, agent=agent, deterministic=True
    )
    data = pipeline.collect()
    pipeline.close()
    with pytest.raises(ValueError, match="act_info"):
        agent.learn(data)
    (good,) = collect(agent, n_envs=2, window=16)
    good.policy_info["h"] = good.policy_info["h"][..., :8]
    with pytest.raises(ValueError, match=r"policy_info\['h'\] has shape \(16, 2, 8\)"):
        agent.learn(good)


def test_unbatched_observation_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match=r"batched observations \[N, 4\]"):
        cartpole_agent().act(np.zeros(4, dtype=np.float32))
    with pytest.raises(ValueError, match="3 episode-start flags for 2 rows"):
        cartpole_agent().act_info(np.zeros((2, 4), np.float32), np.zeros(3, bool))


# ---- checkpoints -----------------------------------------------------------------


def test_save_load_round_trip_restores_weights_optimizer_and_generators(tmp_path) -> None:
    agent = cartpole_agent(seed=3)
    (data,) = collect(agent, n_envs=2, window=32)
    agent.learn(data)
    agent.save_weights(str(tmp_path / "ckpt"))
    restored = cartpole_agent(seed=99)
    restored.load_weights(str(tmp_path / "ckpt"))
    for a, b in zip(agent.network.weights, restored.network.weights, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=a.path)
    assert restored.reward_normalizer is not None
    # the next update is identical: optimizer moments, reward statistics and
    # minibatch order came back too
    (more,) = collect(cartpole_agent(seed=5), n_envs=2, window=32, seed=5)
    assert agent.learn(more) == restored.learn(more)
    for a, b in zip(agent.network.weights, restored.network.weights, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=a.path)


def test_loading_into_a_different_hidden_size_is_refused(tmp_path) -> None:
    agent = TFRecurrentPPOAgent(4, 2, hidden_size=16, device="cpu", seed=0)
    agent.save_weights(str(tmp_path / "ckpt"))
    with pytest.raises(ValueError, match="same architecture"):
        TFRecurrentPPOAgent(4, 2, hidden_size=32, device="cpu").load_weights(str(tmp_path / "ckpt"))


# ---- partial observability ---------------------------------------------------------


@pytest.mark.slow
def test_recurrent_ppo_beats_feed_forward_ppo_without_velocities() -> None:
    """Same hyperparameters, seed and budget (40 windows of 8 x 128 steps):
    remembering the last observations recovers the velocities; a memoryless
    policy cannot."""
    hp = {
        "learning_rate": 1e-3,
        "n_epochs": 10,
        "minibatch_size": 256,
        "entropy_coef": 0.0,
        "gamma": 0.98,
    }
    scores = {}
    for algo in ("recurrent-ppo", "ppo"):
        agent = make_agent(
            algo, masked_cartpole(), backend="tf", hyperparams=hp, device="cpu", seed=0
        )
        pipeline = VectorBatchPipeline(
            env_fns=[masked_cartpole] * 8, window_size=128, seed=0, agent=agent
        )
        try:
            for _ in range(40):
                agent.learn(pipeline.collect())
        finally:
            pipeline.close()
        scores[algo] = evaluate_policy(agent, masked_cartpole, episodes=16, seed=1000).mean
    print(f"masked CartPole-v1, deterministic mean return over 16 episodes: {scores}")
    assert scores["recurrent-ppo"] >= 150, scores
    assert scores["recurrent-ppo"] >= 3 * scores["ppo"], scores
