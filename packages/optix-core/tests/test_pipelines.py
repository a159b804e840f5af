"""BatchPipeline and VectorBatchPipeline on real gymnasium environments."""

from __future__ import annotations

import json
import logging
import math

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.vector import AutoresetMode, SyncVectorEnv

from optix_core.agent import BaseAgent
from optix_core.pipeline import BatchPipeline, VectorBatchPipeline, episode_replay
from optix_core.pipeline.episode_replay import EpisodeActions
from optix_core.registry import RegistryError
from optix_core.types import EpisodeData, HyperparamSet

SHORT = {"max_episode_steps": 40}  # the angle policy lasts 30-60 steps: both ends occur


class AnglePolicy(BaseAgent):
    """CartPole: push toward the side the pole leans to. Deterministic, so a
    manual rollout with the same seed reproduces the pipeline's."""

    def __init__(self) -> None:
        self.act_calls: list[bool] = []
        self.starts: list[np.ndarray] = []
        self.infos: list[dict[str, np.ndarray]] = []

    @staticmethod
    def policy(obs: np.ndarray) -> np.ndarray:
        return (obs[:, 2] > 0).astype(np.int64)

    def act(self, observation, deterministic=False):
        self.act_calls.append(deterministic)
        return self.policy(np.asarray(observation))

    def act_info(self, observation, episode_start):
        self.starts.append(np.array(episode_start, copy=True))
        obs = np.asarray(observation)
        info = {
            "logp": (obs[:, 0] * 2.0).astype(np.float32),
            "hidden": np.repeat(obs[:, 1:2], 3, axis=1),
        }
        self.infos.append(info)
        return self.policy(obs), info

    def learn(self, episode_data: EpisodeData) -> dict[str, float]:
        return {}

    def get_hyperparams(self) -> HyperparamSet:
        return HyperparamSet({})

    def set_hyperparams(self, hyperparams: HyperparamSet) -> None:
        pass

    def save_weights(self, path: str) -> None:
        pass

    def load_weights(self, path: str) -> None:
        pass


class ConstantAction(AnglePolicy):
    def __init__(self, value: float) -> None:
        super().__init__()
        self.value = value

    def policy(self, obs):
        return np.full((len(obs), 1), self.value, dtype=np.float32)


def manual_rollout(env_id, seed, policy, n_steps, env_kwargs=None, clip=None):
    """One environment stepped by hand, reset on every end like a SAME_STEP vector env."""
    env = gym.make(env_id, **(env_kwargs or {}))
    obs, _ = env.reset(seed=seed)
    out = {k: [] for k in ("obs", "actions", "rewards", "terminated", "truncated", "final")}
    returns, lengths, running, length = [], [], 0.0, 0
    for _ in range(n_steps):
        action = policy(obs[None])[0]
        env_action = np.clip(action, *clip) if clip else action
        nxt, reward, terminated, truncated, _ = env.step(env_action)
        out["obs"].append(obs)
        out["actions"].append(action)
        out["rewards"].append(reward)
        out["terminated"].append(terminated)
        out["truncated"].append(truncated)
        running += reward
        length += 1
        if terminated or truncated:
            out["final"].append(nxt)
            returns.append(running)
            lengths.append(length)
            running, length = 0.0, 0
            nxt, _ = env.reset()
        else:
            out["final"].append(np.zeros_like(nxt))
        obs = nxt
    env.close()
    arrays = {k: np.asarray(v) for k, v in out.items()}
    return arrays, returns, lengths, obs


def concat(windows: list[EpisodeData], name: str) -> np.ndarray:
    return np.concatenate([getattr(w, name) for w in windows])


# ---- shapes and dtypes ---------------------------------------------------------


def test_vector_window_shapes_and_dtypes():
    agent = AnglePolicy()
    pipeline = VectorBatchPipeline(
        env_id="CartPole-v1", n_envs=3, window_size=16, seed=0, agent=agent
    )
    data = pipeline.collect()
    pipeline.close()
    assert data.observations.shape == (16, 3, 4) and data.observations.dtype == np.float32
    assert data.actions.shape == (16, 3) and data.actions.dtype == np.int64
    assert data.rewards.shape == (16, 3) and data.rewards.dtype == np.float32
    assert data.terminated.shape == (16, 3) and data.terminated.dtype == bool
    assert data.truncated.shape == (16, 3) and data.truncated.dtype == bool
    assert data.next_observations.shape == (3, 4)
    assert data.final_observations.shape == (16, 3, 4)
    assert data.policy_info["logp"].shape == (16, 3)
    assert data.policy_info["logp"].dtype == np.float32
    assert data.policy_info["hidden"].shape == (16, 3, 3)
    assert data.n_steps == 48
    assert data.episode_id == 1
    np.testing.assert_array_equal(data.dones, data.terminated | data.truncated)


def test_batch_pipeline_keeps_a_column_axis_and_accepts_an_env():
    env = gym.make("Pendulum-v1")
    pipeline = BatchPipeline(env, agent=ConstantAction(0.5), n_steps=8, seed=0)
    data = pipeline.collect()
    assert data.observations.shape == (8, 1, 3)
    assert data.actions.shape == (8, 1, 1) and data.actions.dtype == np.float32
    assert data.rewards.shape == (8, 1)
    assert data.next_observations.shape == (1, 3)
    pipeline.close()


# ---- what is recorded --------------------------------------------------------------


def test_batch_pipeline_records_what_a_manual_rollout_sees():
    agent = AnglePolicy()
    pipeline = BatchPipeline(
        env_id="CartPole-v1", env_kwargs=SHORT, window_size=50, seed=3, agent=agent, stats_window=4
    )
    windows = [pipeline.collect() for _ in range(5)]
    pipeline.close()
    expected, returns, lengths, last_obs = manual_rollout(
        "CartPole-v1", 3, AnglePolicy.policy, 250, SHORT
    )

    np.testing.assert_array_equal(concat(windows, "observations")[:, 0], expected["obs"])
    np.testing.assert_array_equal(concat(windows, "actions")[:, 0], expected["actions"])
    np.testing.assert_array_equal(concat(windows, "rewards")[:, 0], expected["rewards"])
    terminated = concat(windows, "terminated")[:, 0]
    truncated = concat(windows, "truncated")[:, 0]
    np.testing.assert_array_equal(terminated, expected["terminated"])
    np.testing.assert_array_equal(truncated, expected["truncated"])
    assert terminated.any() and truncated.any()  # both kinds of end occurred
    assert not (terminated & truncated).any()
    # Truncation is the time limit: exactly 40 steps into an episode.
    ends = np.flatnonzero(terminated | truncated)
    episode_lengths = np.diff(ends, prepend=-1)
    assert (episode_lengths[truncated[ends]] == 40).all()
    assert (episode_lengths[terminated[ends]] < 40).all()
    np.testing.assert_array_equal(windows[-1].next_observations[0], last_obs)

    # Episode statistics span window boundaries.
    ended = np.concatenate([w.infos["episode_returns"] for w in windows])
    np.testing.assert_array_equal(ended, returns)
    np.testing.assert_array_equal(
        np.concatenate([w.infos["episode_lengths"] for w in windows]), lengths
    )
    assert sum(lengths) < 250 and max(lengths) <= 40
    assert any(  # some episode straddled a window boundary
        (start // 50) != ((start + n - 1) // 50)
        for start, n in zip(np.cumsum([0, *lengths[:-1]]), lengths, strict=True)
    )
    np.testing.assert_array_equal(windows[-1].infos["recent_returns"], returns[-4:])


def test_final_observations_hold_the_last_observation_of_ended_episodes():
    pipeline = BatchPipeline(
        env_id="CartPole-v1", env_kwargs=SHORT, window_size=120, seed=5, agent=AnglePolicy()
    )
    data = pipeline.collect()
    pipeline.close()
    expected, *_ = manual_rollout("CartPole-v1", 5, AnglePolicy.policy, 120, SHORT)
    finals = data.final_observations[:, 0]
    np.testing.assert_array_equal(finals, expected["final"])
    dones = data.dones[:, 0]
    assert dones.sum() >= 2
    assert not finals[~dones].any()  # zeros where no episode ended
    for t in np.flatnonzero(dones):
        assert finals[t].any()
        if t + 1 < len(dones):
            # The observation after an end is the reset one, not the final one.
            assert not np.array_equal(finals[t], data.observations[t + 1, 0])
            assert np.abs(data.observations[t + 1, 0]).max() <= 0.05  # CartPole's reset range
    # A terminal CartPole observation is out of bounds (pole beyond 12°, or cart beyond 2.4).
    for t in np.flatnonzero(data.terminated[:, 0]):
        assert abs(finals[t, 2]) > 12 * 2 * math.pi / 360 or abs(finals[t, 0]) > 2.4


def test_vector_columns_match_manual_rollouts_seeded_apart():
    pipeline = VectorBatchPipeline(
        env_id="CartPole-v1",
        n_envs=2,
        window_size=60,
        seed=10,
        env_kwargs=SHORT,
        agent=AnglePolicy(),
    )
    windows = [pipeline.collect() for _ in range(2)]
    pipeline.close()
    for column in range(2):
        expected, *_ = manual_rollout("CartPole-v1", 10 + column, AnglePolicy.policy, 120, SHORT)
        observations = concat(windows, "observations")[:, column]
        np.testing.assert_array_equal(observations, expected["obs"])
        np.testing.assert_array_equal(
            concat(windows, "terminated")[:, column], expected["terminated"]
        )
        np.testing.assert_array_equal(
            concat(windows, "truncated")[:, column], expected["truncated"]
        )
        np.testing.assert_array_equal(
            concat(windows, "final_observations")[:, column], expected["final"]
        )
    all_returns = np.concatenate([w.infos["episode_returns"] for w in windows])
    assert len(all_returns) == sum(
        len(manual_rollout("CartPole-v1", 10 + c, AnglePolicy.policy, 120, SHORT)[1])
        for c in range(2)
    )


def test_next_observations_continue_into_the_next_window():
    pipeline = VectorBatchPipeline(
        env_id="CartPole-v1", n_envs=2, window_size=7, seed=0, agent=AnglePolicy()
    )
    first, second = pipeline.collect(), pipeline.collect()
    pipeline.close()
    np.testing.assert_array_equal(first.next_observations, second.observations[0])
    assert first.next_observations is not second.observations  # a copy, not a view


def test_policy_info_from_act_info_is_recorded_with_episode_starts():
    agent = AnglePolicy()
    pipeline = VectorBatchPipeline(
        env_id="CartPole-v1", n_envs=2, window_size=80, seed=1, env_kwargs=SHORT, agent=agent
    )
    data = pipeline.collect()
    pipeline.close()
    assert agent.act_calls == []  # training acts only through act_info
    np.testing.assert_array_equal(
        data.policy_info["logp"], (data.observations[..., 0] * 2.0).astype(np.float32)
    )
    np.testing.assert_array_equal(
        np.stack([i["hidden"] for i in agent.infos]), data.policy_info["hidden"]
    )
    starts = np.stack(agent.starts)
    assert starts[0].all()
    np.testing.assert_array_equal(starts[1:], data.dones[:-1])
    assert data.dones.any()


def test_deterministic_pipeline_uses_act_and_records_no_policy_info():
    agent = AnglePolicy()
    pipeline = VectorBatchPipeline(
        env_id="CartPole-v1", n_envs=2, window_size=10, seed=0, deterministic=True, agent=agent
    )
    data = pipeline.collect()
    pipeline.close()
    assert agent.act_calls == [True] * 10
    assert agent.infos == []
    assert data.policy_info == {}


def test_box_actions_are_clipped_for_the_env_but_recorded_as_chosen():
    agent = ConstantAction(5.0)  # Pendulum's torque is limited to [-2, 2]
    pipeline = BatchPipeline(env_id="Pendulum-v1", window_size=20, seed=0, agent=agent)
    data = pipeline.collect()
    pipeline.close()
    assert (data.actions == 5.0).all()
    expected, *_ = manual_rollout("Pendulum-v1", 0, agent.policy, 20, clip=(-2.0, 2.0))
    np.testing.assert_allclose(data.rewards[:, 0], expected["rewards"], rtol=1e-6)


def test_async_envs_give_the_same_windows_as_sync():
    windows = {}
    for async_envs in (False, True):
        pipeline = VectorBatchPipeline(
            env_id="CartPole-v1",
            n_envs=2,
            window_size=50,
            seed=4,
            async_envs=async_envs,
            env_kwargs=SHORT,
            agent=AnglePolicy(),
        )
        try:
            windows[async_envs] = pipeline.collect()
            assert type(pipeline.envs).__name__ == (
                "AsyncVectorEnv" if async_envs else "SyncVectorEnv"
            )
        finally:
            pipeline.close()
    sync, parallel = windows[False], windows[True]
    for name in (
        "observations",
        "actions",
        "rewards",
        "terminated",
        "truncated",
        "final_observations",
        "next_observations",
    ):
        np.testing.assert_array_equal(getattr(parallel, name), getattr(sync, name))
    np.testing.assert_array_equal(parallel.infos["episode_returns"], sync.infos["episode_returns"])


# ---- vector environments built by the user ------------------------------------------------


def test_next_step_autoreset_is_refused():
    envs = SyncVectorEnv(
        [lambda: gym.make("CartPole-v1")] * 2, autoreset_mode=AutoresetMode.NEXT_STEP
    )
    with pytest.raises(ValueError, match="SAME_STEP"):
        VectorBatchPipeline(envs=envs)
    envs.close()
    default = gym.make_vec("CartPole-v1", num_envs=2)  # NEXT_STEP is gymnasium's default
    with pytest.raises(ValueError, match="autoreset_mode"):
        VectorBatchPipeline(envs=default)
    default.close()


def test_same_step_vector_env_is_accepted():
    envs = SyncVectorEnv(
        [lambda: gym.make("CartPole-v1")] * 2, autoreset_mode=AutoresetMode.SAME_STEP
    )
    pipeline = VectorBatchPipeline(envs=envs, window_size=5, agent=AnglePolicy(), seed=0)
    assert pipeline.n_envs == 2
    assert pipeline.collect().observations.shape == (5, 2, 4)
    pipeline.close()


# ---- counters and resume --------------------------------------------------------------------


def test_env_steps_count_every_environment_step():
    pipeline = VectorBatchPipeline(
        env_id="CartPole-v1", n_envs=3, window_size=5, seed=0, agent=AnglePolicy()
    )
    assert pipeline.env_steps == 0
    windows = pipeline.episodes()
    ids = [next(windows).episode_id for _ in range(4)]
    pipeline.close()
    assert ids == [1, 2, 3, 4]
    assert pipeline.env_steps == 4 * 5 * 3


def test_state_dict_round_trip():
    first = BatchPipeline(
        env_id="CartPole-v1", window_size=100, seed=2, agent=AnglePolicy(), stats_window=50
    )
    earlier = [first.collect() for _ in range(3)]
    first.close()
    before = np.concatenate([w.infos["episode_returns"] for w in earlier])
    assert len(before) >= 3
    state = json.loads(json.dumps(first.state_dict()))
    assert state["env_steps"] == 300 and state["windows"] == 3

    second = BatchPipeline(
        env_id="CartPole-v1", window_size=100, seed=2, agent=AnglePolicy(), stats_window=50
    )
    second.load_state_dict(state)
    assert second.env_steps == 300
    data = second.collect()
    second.close()
    assert data.episode_id == 4
    assert second.env_steps == 400
    # The running statistics carry over: recent returns start with the earlier ones.
    recent = data.infos["recent_returns"]
    np.testing.assert_array_equal(recent[: len(before)], before)
    assert len(recent) == len(before) + len(data.infos["episode_returns"])
    # Without continue_episodes() it starts new episodes, seeded apart from the first ones.
    reset_obs, _ = gym.make("CartPole-v1").reset(seed=2 + 7919 * 3)
    np.testing.assert_array_equal(data.observations[0, 0], reset_obs)
    assert not np.array_equal(data.observations[0, 0], earlier[0].observations[0, 0])


class LinearPolicy(AnglePolicy):
    """Continuous actions from a fixed linear map: deterministic, and crashing
    LunarLanderContinuous within about a hundred steps, so windows hold resets."""

    def __init__(self, obs_dim: int, act_dim: int) -> None:
        super().__init__()
        self.weights = np.random.default_rng(0).normal(size=(obs_dim, act_dim))

    def policy(self, obs: np.ndarray) -> np.ndarray:
        return np.tanh(obs @ self.weights).astype(np.float32)


class CellPolicy(AnglePolicy):
    """Discrete observations (FrozenLake's cell number): an action from the cell."""

    @staticmethod
    def policy(obs: np.ndarray) -> np.ndarray:
        return (obs * 3 + 1) % 4

    def act_info(self, observation, episode_start):
        return self.policy(np.asarray(observation)), {}


def assert_same_windows(got: list[EpisodeData], want: list[EpisodeData]) -> None:
    assert len(got) == len(want)
    for a, b in zip(got, want, strict=True):
        assert a.episode_id == b.episode_id
        for field in ("observations", "actions", "rewards", "terminated", "truncated"):
            np.testing.assert_array_equal(getattr(a, field), getattr(b, field), err_msg=field)
        for key in ("episode_returns", "episode_lengths", "episode_start_steps"):
            np.testing.assert_array_equal(a.infos[key], b.infos[key], err_msg=key)


RESUMABLE = [
    ("CartPole-v1", AnglePolicy, 40, False),
    ("CartPole-v1", AnglePolicy, 40, True),  # environments in subprocesses
    ("LunarLanderContinuous-v3", lambda: LinearPolicy(8, 2), 60, False),
    ("FrozenLake-v1", CellPolicy, 20, False),  # Discrete observations
]


@pytest.mark.parametrize(("env_id", "policy", "window_size", "async_envs"), RESUMABLE)
def test_a_resumed_pipeline_continues_the_interrupted_episodes_exactly(
    env_id, policy, window_size, async_envs
):
    """Stopped after two windows mid-episode, saved through JSON and resumed, the
    pipeline collects the windows the unstopped one did, bit for bit, episode
    ends and returns included (Box2D's state is rebuilt, not saved)."""

    def pipeline() -> VectorBatchPipeline:
        return VectorBatchPipeline(
            env_id=env_id,
            n_envs=3,
            window_size=window_size,
            seed=5,
            agent=policy(),
            async_envs=async_envs,
        )

    unstopped = pipeline()
    want = [unstopped.collect() for _ in range(6)]
    unstopped.close()
    first = pipeline()
    for _ in range(2):
        first.collect()
    state = json.loads(json.dumps(first.state_dict()))
    first.close()
    assert any(r["actions"] for r in state["episodes"]["records"]), "stopped mid-episode"
    assert any("rng" in r for r in state["episodes"]["records"]), "after an autoreset too"

    resumed = pipeline()
    resumed.load_state_dict(state)
    assert resumed.continue_episodes()
    got = [resumed.collect() for _ in range(4)]
    resumed.close()
    assert sum(len(w.infos["episode_returns"]) for w in got) >= 3
    assert_same_windows(got, want[2:])


class OutsideRandomness(gym.Wrapper):
    """Randomness that ``np_random`` does not hold (ALE's sticky actions, say)."""

    draws = np.random.default_rng()

    def reset(self, **kwargs):
        _, info = self.env.reset(**kwargs)
        cartpole = self.env.unwrapped
        cartpole.state = cartpole.state + self.draws.normal(scale=0.01, size=4)
        return np.array(cartpole.state, dtype=np.float32), info


def test_an_environment_that_does_not_replay_gets_new_episodes(caplog):
    def pipeline() -> VectorBatchPipeline:
        make = lambda: OutsideRandomness(gym.make("CartPole-v1"))  # noqa: E731
        return VectorBatchPipeline(
            env_fns=[make, make], window_size=30, seed=2, agent=AnglePolicy()
        )

    first = pipeline()
    first.collect()
    state = json.loads(json.dumps(first.state_dict()))
    first.close()
    resumed = pipeline()
    resumed.load_state_dict(state)
    assert not resumed.continue_episodes()
    assert "starts new episodes" in caplog.text
    data = [resumed.collect() for _ in range(3)]
    resumed.close()
    starts = np.concatenate([w.infos["episode_start_steps"] for w in data])
    assert starts.size and (starts >= 60).all(), "every episode ended began after the resume"


def test_a_given_vector_env_cannot_be_rebuilt_and_gets_new_episodes():
    def pipeline() -> VectorBatchPipeline:
        envs = SyncVectorEnv(
            [lambda: gym.make("CartPole-v1")], autoreset_mode=AutoresetMode.SAME_STEP
        )
        return VectorBatchPipeline(envs=envs, window_size=20, seed=1, agent=AnglePolicy())

    first = pipeline()
    first.collect()
    state = first.state_dict()
    first.close()
    assert "episodes" not in state
    resumed = pipeline()
    resumed.load_state_dict(state)
    assert not resumed.continue_episodes()
    resumed.close()


def test_a_given_vector_env_gets_new_episodes_from_a_state_that_holds_some(caplog):
    """A checkpoint of a pipeline that built its environments, loaded into one given a
    ready vector environment (which records no episode starts), starts new episodes
    quietly: nothing to replay them with."""
    built = VectorBatchPipeline(
        env_id="CartPole-v1", n_envs=1, window_size=20, seed=1, agent=AnglePolicy()
    )
    built.collect()
    state = json.loads(json.dumps(built.state_dict()))
    built.close()
    assert state["episodes"]["records"][0] is not None
    envs = SyncVectorEnv([lambda: gym.make("CartPole-v1")], autoreset_mode=AutoresetMode.SAME_STEP)
    given = VectorBatchPipeline(envs=envs, window_size=20, seed=1, agent=AnglePolicy())
    given.load_state_dict(state)
    with caplog.at_level(logging.WARNING):
        assert not given.continue_episodes()
    assert not caplog.records, "nothing failed: there was nothing to replay with"
    given.restart_episodes()
    assert given.collect().observations.shape == (20, 1, 4)
    given.close()


# ---- errors ---------------------------------------------------------------------------------


def test_invalid_construction():
    with pytest.raises(ValueError, match="window_size"):
        VectorBatchPipeline(env_id="CartPole-v1", window_size=0)
    with pytest.raises(ValueError, match="exactly one"):
        VectorBatchPipeline(env_id="CartPole-v1", env_fns=[lambda: gym.make("CartPole-v1")])
    with pytest.raises(ValueError, match="exactly one"):
        VectorBatchPipeline()
    with pytest.raises(ValueError, match="empty"):
        VectorBatchPipeline(env_fns=[])
    with pytest.raises(ValueError, match="exactly one of env= or env_id="):
        BatchPipeline()
    with pytest.raises(ValueError, match="exactly one of env= or env_id="):
        BatchPipeline(gym.make("CartPole-v1"), env_id="CartPole-v1")
    with pytest.raises(RegistryError, match="unknown environment 'NoSuchEnv-v0'"):
        VectorBatchPipeline(env_id="NoSuchEnv-v0", n_envs=2)


def test_collect_without_an_agent_says_how_to_give_one():
    pipeline = BatchPipeline(env_id="CartPole-v1", window_size=4)
    with pytest.raises(RuntimeError, match="agent="):
        pipeline.collect()
    pipeline.close()


def test_episode_actions_keep_each_current_episode_and_no_more(monkeypatch):
    """What a checkpoint holds of each episode under way: its actions since it began,
    none of an episode past RECORD_LIMIT, and nothing of the episodes that ended."""
    monkeypatch.setattr(episode_replay, "TRIM_EVERY", 4)
    monkeypatch.setattr(episode_replay, "RECORD_LIMIT", 6)
    kept = EpisodeActions(2)
    for t in range(10):
        kept.add(np.array([t, 100 + t]), dones=np.array([t == 3, False]))
    assert kept.per_env() == [[4, 5, 6, 7, 8, 9], None], (
        "the first episode began after step 3; the second's ten actions are past the limit"
    )
    assert len(kept.steps) < 10, "the steps no episode needs are dropped"
    kept.add(np.array([10, 110]), dones=np.array([True, True]))
    kept.add(np.array([11, 111]), dones=np.array([False, False]))
    assert kept.per_env() == [[11], [111]]

    resumed = EpisodeActions(2)
    resumed.load([[4, 5, 6], [111]], np.dtype(np.int64))
    resumed.add(np.array([7, 112]), dones=np.array([False, False]))
    assert resumed.per_env() == [[4, 5, 6, 7], [111, 112]]
    resumed.restart()
    assert resumed.per_env() == [[], []]
