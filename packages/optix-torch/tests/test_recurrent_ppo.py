import gymnasium as gym
import numpy as np
import pytest
import torch
from torch import nn

from optix_core import HyperparamSet, make_agent
from optix_core.evaluation import evaluate_policy
from optix_core.pipeline import VectorBatchPipeline
from optix_core.testing import AgentConformance
from optix_core.testing.toy_envs import SPACE_ENVS, masked_cartpole
from optix_torch.algorithms.recurrent_ppo import (
    LSTMActorCritic,
    TorchRecurrentPPOAgent,
    fit_seq_len,
    make_recurrent_ppo,
)
from optix_torch.policies import NatureCNN, SmallCNN

torch.set_num_threads(1)

# Every space the policy layer serves. CatchLarge is Catch's image again for
# NatureCNN, behind which one window does not move the LSTM policy's
# deterministic actions.
SPACES = ("CartPole-v1", *(e for e in SPACE_ENVS if e != "optix-tests/CatchLarge-v0"))


class TestRecurrentPPOConformance(AgentConformance):
    algo = "recurrent-ppo"
    backend = "torch"
    env_ids = SPACES


def cartpole_agent(seed: int = 0, **hp) -> TorchRecurrentPPOAgent:
    return make_agent(
        "recurrent-ppo", "CartPole-v1", hyperparams=hp or None, device="cpu", seed=seed
    )


def collect(agent, n_envs: int = 3, window: int = 48, seed: int = 0, windows: int = 1):
    pipeline = VectorBatchPipeline(
        env_id="CartPole-v1", n_envs=n_envs, window_size=window, seed=seed, agent=agent
    )
    try:
        return [pipeline.collect() for _ in range(windows)]
    finally:
        pipeline.close()


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
    with torch.no_grad():
        _, _, (h, c) = agent.network(
            torch.as_tensor(obs).unsqueeze(0),
            (torch.as_tensor(second["h"]), torch.as_tensor(second["c"])),
        )
    np.testing.assert_allclose(third["h"][[0, 2]], h.numpy()[[0, 2]], rtol=1e-6)
    np.testing.assert_allclose(third["c"][[0, 2]], c.numpy()[[0, 2]], rtol=1e-6)


def test_network_zeroes_the_state_where_an_episode_starts_inside_a_sequence() -> None:
    torch.manual_seed(0)
    net = LSTMActorCritic(4, 2, 8)
    obs = torch.randn(6, 2, 4)
    state = (torch.randn(2, 8), torch.randn(2, 8))
    starts = torch.zeros(6, 2, dtype=torch.bool)
    starts[3, 1] = True
    logits, values, _ = net(obs, state, starts)
    # row 1 from step 3 on is a fresh episode: the same as running it alone from zeros
    fresh_logits, fresh_values, _ = net(obs[3:, 1:], net.initial_state(1))
    torch.testing.assert_close(logits[3:, 1:], fresh_logits)
    torch.testing.assert_close(values[3:, 1:], fresh_values)
    # row 0 never restarted: one uninterrupted run
    run_logits, _, _ = net(obs[:, :1], (state[0][:1], state[1][:1]))
    torch.testing.assert_close(logits[:, :1], run_logits)


def test_training_replays_exactly_the_states_that_acted() -> None:
    """Unrolling every sequence from its stored first state reproduces the
    log-probabilities and values recorded at act time, at every step, whatever
    the sequence length: no zero-state artifacts at sequence cuts."""
    agent = cartpole_agent()
    (data,) = collect(agent, n_envs=3, window=48)
    assert data.dones.any()  # episodes end inside the window
    info = data.policy_info
    obs = torch.as_tensor(data.observations)
    starts = np.zeros_like(data.dones)
    starts[1:] = data.dones[:-1]
    for seq_len in (48, 16, 3):
        for begin in range(0, 48, seq_len):
            end = begin + seq_len
            with torch.no_grad():
                logits, values, _ = agent.network(
                    obs[begin:end],
                    (torch.as_tensor(info["h"][begin]), torch.as_tensor(info["c"][begin])),
                    torch.as_tensor(starts[begin:end]),
                )
            log_probs = torch.log_softmax(logits, -1).gather(
                -1, torch.as_tensor(data.actions[begin:end]).unsqueeze(-1)
            )
            np.testing.assert_allclose(
                log_probs.squeeze(-1), info["log_probs"][begin:end], atol=1e-5
            )
            np.testing.assert_allclose(values, info["values"][begin:end], atol=1e-5)


@pytest.mark.parametrize("env_id", SPACES)
def test_first_epoch_starts_on_policy(env_id: str) -> None:
    """With one minibatch and one epoch, the first ratio is exactly 1 on every
    space: nothing clipped, KL 0 (the recorded log-probabilities and states are
    the ones learning recomputes)."""
    hp = {"n_epochs": 1, "minibatch_size": 4096, "seq_len": 16}
    agent = make_agent("recurrent-ppo", env_id, hyperparams=hp, device="cpu", seed=0)
    pipeline = VectorBatchPipeline(env_id=env_id, n_envs=2, window_size=64, seed=0, agent=agent)
    diag = agent.learn(pipeline.collect())
    pipeline.close()
    assert diag["approx_kl"] == pytest.approx(0.0, abs=1e-6)
    assert diag["clip_fraction"] == 0.0
    assert diag["updates"] == 1.0


def test_target_kl_stops_the_epochs_early() -> None:
    agent = cartpole_agent(n_epochs=50, learning_rate=1e-2, target_kl=0.01)
    (data,) = collect(agent, n_envs=2, window=64)
    diag = agent.learn(data)
    assert diag["stopped_early"] == 1.0
    assert diag["updates"] < 50 * 2  # two minibatches an epoch


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
    remembered = agent._act_state[0].clone()
    assert remembered.abs().sum() > 0
    # act_info's rollout memory is separate
    _, info = agent.act_info(obs, np.zeros(2, dtype=bool))
    assert np.all(info["h"] == 0)
    agent.reset_state(np.array([True, False]))
    assert torch.all(agent._act_state[0][0] == 0)
    torch.testing.assert_close(agent._act_state[0][1], remembered[1])
    agent.act(obs, deterministic=True, episode_start=np.array([False, True]))
    agent.reset_state()
    assert agent._act_state is None
    # a new batch size starts fresh rather than failing
    assert agent.act(np.zeros((5, 4), dtype=np.float32)).shape == (5,)


def test_set_hyperparams_takes_effect_at_once() -> None:
    agent = cartpole_agent()
    params = agent.get_hyperparams().params | {"learning_rate": 1e-3, "clip_ratio": 0.1}
    agent.set_hyperparams(HyperparamSet(params=params))
    assert all(g["lr"] == 1e-3 for g in agent.optimizer.param_groups)
    assert agent.hp["clip_ratio"] == 0.1


def test_fit_seq_len_divides_the_window() -> None:
    assert fit_seq_len(128, 16) == 16
    assert fit_seq_len(100, 16) == 10
    assert fit_seq_len(8, 16) == 8
    assert fit_seq_len(13, 4) == 1


# ---- the policy layer: networks from the spaces, users' extractors ---------------------


def test_the_default_network_follows_the_observation_space() -> None:
    assert isinstance(
        make_agent("recurrent-ppo", "optix-tests/Catch-v0", device="cpu").network.extractor,
        SmallCNN,
    )
    assert isinstance(
        make_agent("recurrent-ppo", "optix-tests/CatchLarge-v0", device="cpu").network.extractor,
        NatureCNN,
    )
    agent = make_agent("recurrent-ppo", "optix-tests/MultiDiscreteMatch-v0", device="cpu")
    assert agent.network.actor.out_features == 6  # two blocks of three logits


class Pixels(nn.Module):
    """A user's extractor for Catch's 10×5 frames."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(50, 32)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.linear(obs.flatten(1).float() / 255.0))


def test_a_users_extractor_trains() -> None:
    """Any module from observations to features serves, given as extractor= or
    inside a network of the user's; its weights learn."""
    space = gym.make("optix-tests/Catch-v0").observation_space
    for given in ("extractor", "network"):
        extractor = Pixels()
        kwargs = (
            {"extractor": extractor}
            if given == "extractor"
            else {"network": LSTMActorCritic(space, 3, 32, extractor=extractor)}
        )
        agent = TorchRecurrentPPOAgent(
            observation_space=space,
            action_space=gym.spaces.Discrete(3),
            device="cpu",
            seed=0,
            **kwargs,
        )
        assert agent.network.extractor is extractor
        before = extractor.linear.weight.detach().clone()
        pipeline = VectorBatchPipeline(
            env_id="optix-tests/Catch-v0", n_envs=2, window_size=32, seed=0, agent=agent
        )
        agent.learn(pipeline.collect())
        pipeline.close()
        assert not torch.equal(extractor.linear.weight, before), given


class GoalOnly(nn.Module):
    """A user's extractor for DictGoal: reads the goal, ignores the noise."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(3, 16)

    def forward(self, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        return torch.relu(self.linear(nn.functional.one_hot(obs["goal"].long(), 3).float()))


def train(agent: TorchRecurrentPPOAgent, env_id: str, windows: int) -> float:
    """``windows`` windows of 8 × 64 steps; then the deterministic return on fresh episodes."""
    pipeline = VectorBatchPipeline(env_id=env_id, n_envs=8, window_size=64, seed=0, agent=agent)
    try:
        for _ in range(windows):
            agent.learn(pipeline.collect())
    finally:
        pipeline.close()
    return evaluate_policy(agent, env_id, episodes=30, seed=10_000).mean


@pytest.mark.slow
def test_a_users_extractor_learns_dict_goal() -> None:
    space = gym.make("optix-tests/DictGoal-v0").observation_space
    agent = TorchRecurrentPPOAgent(
        observation_space=space,
        action_space=gym.spaces.Discrete(3),
        extractor=GoalOnly(),
        hyperparams={"learning_rate": 1e-3},
        device="cpu",
        seed=0,
    )
    assert train(agent, "optix-tests/DictGoal-v0", windows=20) >= 7.5  # random: 8/3


@pytest.mark.slow
@pytest.mark.parametrize("env_id", ["optix-tests/MultiDiscreteMatch-v0", "optix-tests/DictGoal-v0"])
def test_learns_multidiscrete_actions_and_dict_observations(env_id: str) -> None:
    agent = make_agent(
        "recurrent-ppo", env_id, hyperparams={"learning_rate": 1e-3}, device="cpu", seed=0
    )
    assert train(agent, env_id, windows=20) >= 7.5  # random: 8/3


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
        TorchRecurrentPPOAgent(4, 3, network=LSTMActorCritic(4, 2), device="cpu")
    with pytest.raises(ValueError, match="the network fails on observations"):
        TorchRecurrentPPOAgent(5, 2, network=LSTMActorCritic(4, 2), device="cpu")
    with pytest.raises(ValueError, match="obs_dim or observation_space"):
        TorchRecurrentPPOAgent(n_actions=2, device="cpu")


def test_learn_without_recorded_states_is_a_clear_error() -> None:
    agent = cartpole_agent()
    pipeline = VectorBatchPipeline(
        env_id="CartPole-v1", n_envs=2, window_size=16, seed=0, agent=agent, deterministic=True
    )
    data = pipeline.collect()
    pipeline.close()
    with pytest.raises(ValueError, match="act_info"):
        agent.learn(data)


def test_unbatched_observation_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match=r"batched observations \[N, 4\]"):
        cartpole_agent().act(np.zeros(4, dtype=np.float32))


# ---- checkpoints -----------------------------------------------------------------


def test_save_load_round_trip_restores_weights_optimizer_and_generators(tmp_path) -> None:
    agent = cartpole_agent(seed=3)
    (data,) = collect(agent, n_envs=2, window=32)
    agent.learn(data)
    agent.save_weights(str(tmp_path / "ckpt"))
    restored = cartpole_agent(seed=99)
    restored.load_weights(str(tmp_path / "ckpt"))
    for (name, a), b in zip(
        agent.network.state_dict().items(), restored.network.state_dict().values(), strict=True
    ):
        torch.testing.assert_close(a, b, msg=name)
    # the next update is identical: optimizer moments and minibatch order came back too
    (more,) = collect(agent, n_envs=2, window=32, seed=5)
    assert agent.learn(more) == restored.learn(more)
    for a, b in zip(agent.network.parameters(), restored.network.parameters(), strict=True):
        torch.testing.assert_close(a, b)


def test_loading_into_a_different_hidden_size_is_refused(tmp_path) -> None:
    agent = TorchRecurrentPPOAgent(4, 2, hidden_size=16, device="cpu", seed=0)
    agent.save_weights(str(tmp_path / "ckpt"))
    with pytest.raises(ValueError, match="same architecture"):
        TorchRecurrentPPOAgent(4, 2, hidden_size=32, device="cpu").load_weights(
            str(tmp_path / "ckpt")
        )


# ---- partial observability ---------------------------------------------------------


@pytest.mark.slow
def test_recurrent_ppo_beats_feed_forward_ppo_without_velocities() -> None:
    """Same hyperparameters, seed and budget (40 windows of 8 x 128 steps):
    remembering the last observations recovers the velocities; a memoryless
    policy cannot. Measured: recurrent about 460, feed-forward about 45."""
    hp = {
        "learning_rate": 1e-3,
        "n_epochs": 10,
        "minibatch_size": 256,
        "entropy_coef": 0.0,
        "gamma": 0.98,
    }
    scores = {}
    for algo in ("recurrent-ppo", "ppo"):
        agent = make_agent(algo, masked_cartpole(), hyperparams=hp, device="cpu", seed=0)
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
