"""LivePipeline: windows from a live source, cut by steps or time, that survive outages."""

from __future__ import annotations

import json
import time

import gymnasium as gym
import numpy as np
import pytest

from optix_core.agent import BaseAgent
from optix_core.loop import RLOptimizer
from optix_core.pipeline import LivePipeline
from optix_core.registry import make_agent
from optix_core.types import EpisodeData, HyperparamSet


class CounterSource:
    """Episodes of ``length`` steps; observation ``[episode, step]``, reward ``step``.

    ``fail_on`` holds the (1-based) ``step`` calls that raise; ``connect``
    raises for its first ``connect_failures`` calls.
    """

    def __init__(self, length=5, fail_on=(), connect_failures=0, step_seconds=0.0):
        self.length = length
        self.fail_on = set(fail_on)
        self.connect_failures = connect_failures
        self.step_seconds = step_seconds
        self.episode = -1
        self.t = 0
        self.step_calls = 0
        self.resets = 0
        self.calls: list[str] = []
        self.actions: list = []

    def _obs(self):
        return np.array([self.episode, self.t], dtype=np.float32)

    def reset(self):
        self.resets += 1
        self.episode += 1
        self.t = 0
        return self._obs(), {}

    def step(self, action):
        self.step_calls += 1
        if self.step_seconds:
            time.sleep(self.step_seconds)
        if self.step_calls in self.fail_on:
            raise OSError(f"connection lost at call {self.step_calls}")
        self.actions.append(action)
        self.t += 1
        return self._obs(), float(self.t), self.t >= self.length, False, {}

    def connect(self):
        self.calls.append("connect")
        if self.connect_failures:
            self.connect_failures -= 1
            raise OSError("refused")

    def close(self):
        self.calls.append("close")


class Recorder(BaseAgent):
    def __init__(self):
        self.starts: list[bool] = []
        self.act_calls: list[bool] = []

    def act(self, observation, deterministic=False):
        self.act_calls.append(deterministic)
        return np.zeros(len(observation), dtype=np.int64)

    def act_info(self, observation, episode_start):
        assert np.asarray(observation).shape[0] == 1
        self.starts.append(bool(episode_start[0]))
        obs = np.asarray(observation)
        return np.zeros(1, dtype=np.int64), {"t": obs[:, 1].copy()}

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


class Sleeps:
    """An injected ``sleep`` that records delays; refuses to spin forever."""

    def __init__(self, limit=100):
        self.delays: list[float] = []
        self.limit = limit

    def __call__(self, seconds):
        self.delays.append(seconds)
        if len(self.delays) > self.limit:
            raise AssertionError(
                f"reconnected {len(self.delays)} times without giving up: {self.delays[:12]} ..."
            )


def live(source, n=7, **kwargs):
    kwargs.setdefault("sleep", Sleeps())
    return LivePipeline(
        source,
        agent=kwargs.pop("agent", Recorder()),
        episode_boundary_fn=LivePipeline.every_n_steps(n),
        **kwargs,
    )


# ---- windows ---------------------------------------------------------------------


def test_windows_cut_every_n_steps():
    source = CounterSource(length=5)
    pipeline = live(source, n=7)
    windows = pipeline.episodes()
    data = [next(windows) for _ in range(3)]
    assert [w.episode_id for w in data] == [1, 2, 3]
    assert all(w.observations.shape == (7, 1, 2) for w in data)
    assert all(w.rewards.shape == (7, 1) for w in data)
    assert pipeline.env_steps == 21

    terminated = np.concatenate([w.terminated for w in data])[:, 0]
    assert np.flatnonzero(terminated).tolist() == [4, 9, 14, 19]
    assert not np.concatenate([w.truncated for w in data]).any()
    # Episodes straddle windows; returns are whole-episode returns.
    returns = np.concatenate([w.infos["episode_returns"] for w in data])
    np.testing.assert_array_equal(returns, [15.0] * 4)
    lengths = np.concatenate([w.infos["episode_lengths"] for w in data])
    np.testing.assert_array_equal(lengths, [5] * 4)
    assert [len(w.infos["episode_returns"]) for w in data] == [1, 1, 2]
    # The final observation of an ended episode, and the next window's first one.
    np.testing.assert_array_equal(data[0].final_observations[4, 0], [0, 5])
    np.testing.assert_array_equal(data[0].observations[5, 0], [1, 0])
    np.testing.assert_array_equal(data[0].next_observations, data[1].observations[0])


def test_policy_info_and_episode_starts_are_recorded():
    agent = Recorder()
    data = live(CounterSource(length=3), n=7, agent=agent).collect()
    assert agent.starts == [True, False, False, True, False, False, True]
    np.testing.assert_array_equal(data.policy_info["t"][:, 0], [0, 1, 2, 0, 1, 2, 0])
    assert agent.act_calls == []


def test_deterministic_live_pipeline_records_no_policy_info():
    agent = Recorder()
    data = live(CounterSource(), n=4, agent=agent, deterministic=True).collect()
    assert agent.act_calls == [True] * 4
    assert data.policy_info == {}


def test_windows_cut_every_n_seconds():
    source = CounterSource(length=1000, step_seconds=0.005)
    pipeline = LivePipeline(
        source, agent=Recorder(), episode_boundary_fn=LivePipeline.every_n_seconds(0.05)
    )
    start = time.monotonic()
    data = pipeline.collect()
    elapsed = time.monotonic() - start
    assert elapsed >= 0.05
    # Each step takes at least 5 ms, and the window ends at the first step past 50 ms.
    assert 1 <= data.observations.shape[0] <= 11
    assert pipeline.env_steps == data.observations.shape[0]


def test_boundary_fn_sees_steps_and_seconds():
    seen = []

    def boundary(steps, seconds):
        seen.append((steps, seconds))
        return steps >= 3

    LivePipeline(CounterSource(), agent=Recorder(), episode_boundary_fn=boundary).collect()
    assert [s for s, _ in seen] == [1, 2, 3]
    seconds = [s for _, s in seen]
    assert seconds == sorted(seconds) and all(s >= 0 for s in seconds)


def test_invalid_boundaries():
    with pytest.raises(ValueError, match="n >= 1"):
        LivePipeline.every_n_steps(0)
    with pytest.raises(ValueError, match="seconds > 0"):
        LivePipeline.every_n_seconds(0)


def test_state_dict_round_trip():
    pipeline = live(CounterSource(length=2), n=5)
    pipeline.collect()
    pipeline.collect()
    state = json.loads(json.dumps(pipeline.state_dict()))
    resumed = live(CounterSource(length=2), n=5)
    resumed.load_state_dict(state)
    assert resumed.env_steps == 10
    data = resumed.collect()
    assert data.episode_id == 3
    assert resumed.env_steps == 15
    assert len(data.infos["recent_returns"]) == 5 + 2  # 5 earlier episodes, 2 new ones


# ---- outages ---------------------------------------------------------------------------


def test_failed_step_reconnects_and_cuts_the_episode_as_truncated():
    source = CounterSource(length=5, fail_on={8})  # the 3rd step of the 2nd episode
    sleeps = Sleeps()
    agent = Recorder()
    pipeline = live(source, n=12, sleep=sleeps, agent=agent, reconnect_delay=0.5)
    data = pipeline.collect()

    assert sleeps.delays == [0.5]
    assert pipeline.reconnects == 1
    assert source.calls == ["close", "connect"]
    assert data.observations.shape[0] == 12  # the window carried on
    assert pipeline.env_steps == 12
    # Steps 0-4: episode 0; 5-6: episode 1, cut after its 2nd step; 7-: episode 2.
    truncated = data.truncated[:, 0]
    terminated = data.terminated[:, 0]
    assert np.flatnonzero(truncated).tolist() == [6]
    assert np.flatnonzero(terminated).tolist() == [4, 11]
    # The cut episode's final observation is the last one it reached.
    np.testing.assert_array_equal(data.final_observations[6, 0], [1, 2])
    np.testing.assert_array_equal(data.observations[7, 0], [2, 0])  # a fresh episode
    # act_info was asked for 13 actions: the failed step's one was never recorded,
    # and the step after the reconnect starts an episode.
    assert len(agent.starts) == 13
    assert agent.starts[8] is True
    np.testing.assert_array_equal(data.policy_info["t"][5:9, 0], [0, 1, 0, 1])
    # The cut episode is not reported as an ended episode, and its return does
    # not leak into the next.
    np.testing.assert_array_equal(data.infos["episode_returns"], [15.0, 15.0])


def test_failed_reset_is_retried():
    class FlakyReset(CounterSource):
        def reset(self):
            if self.resets == 0:
                self.resets += 1
                raise OSError("not ready")
            return super().reset()

    sleeps = Sleeps()
    source = FlakyReset()
    data = live(source, n=3, sleep=sleeps).collect()
    assert sleeps.delays == [1.0]
    assert data.observations.shape[0] == 3


def test_reconnect_backs_off_exponentially():
    sleeps = Sleeps()
    source = CounterSource(fail_on={2}, connect_failures=3)
    pipeline = live(source, n=4, sleep=sleeps, reconnect_delay=1.0)
    pipeline.collect()
    assert sleeps.delays == [1.0, 2.0, 4.0, 8.0]
    assert source.calls.count("connect") == 4
    assert pipeline.reconnects == 1


def test_backoff_is_capped_by_max_reconnect_delay():
    sleeps = Sleeps()
    source = CounterSource(fail_on={1}, connect_failures=5)
    live(source, n=2, sleep=sleeps, reconnect_delay=1.0, max_reconnect_delay=3.0).collect()
    assert sleeps.delays == [1.0, 2.0, 3.0, 3.0, 3.0, 3.0]


def test_connection_error_after_max_reconnects_failed_connects():
    sleeps = Sleeps()
    source = CounterSource(fail_on={1}, connect_failures=10**6)
    pipeline = live(source, n=2, sleep=sleeps, max_reconnects=4)
    with pytest.raises(ConnectionError, match="4 reconnect attempts"):
        pipeline.collect()
    assert sleeps.delays == [1.0, 2.0, 4.0, 8.0]


def test_connection_error_when_the_source_keeps_failing_after_reconnecting():
    """A source that reconnects fine but fails on every step (or has no
    ``connect`` at all) is failing in a row too: the delay grows and, after
    ``max_reconnects`` failures, ConnectionError is raised."""

    class DeadUpstream:
        def reset(self):
            return np.zeros(2, dtype=np.float32), {}

        def step(self, action):
            raise OSError("upstream down")

    sleeps = Sleeps(limit=50)
    pipeline = live(DeadUpstream(), n=2, sleep=sleeps, max_reconnects=3)
    with pytest.raises(ConnectionError):
        pipeline.collect()
    assert sleeps.delays == [1.0, 2.0, 4.0]


# ---- in the loop ---------------------------------------------------------------------------


class FlakyCartPole:
    """CartPole as a live source whose connection drops every ``every`` steps."""

    def __init__(self, every=37):
        self.env = gym.make("CartPole-v1")
        self.every = every
        self.calls = 0
        self.seeded = False

    def reset(self):
        obs, info = self.env.reset(seed=None if self.seeded else 0)
        self.seeded = True
        return obs, info

    def step(self, action):
        self.calls += 1
        if self.calls % self.every == 0:
            raise ConnectionResetError("dropped")
        return self.env.step(int(action))

    def close(self):
        pass


def test_loop_carries_on_through_outages():
    source = FlakyCartPole()
    sleeps = Sleeps(limit=1000)
    pipeline = LivePipeline(
        source, episode_boundary_fn=LivePipeline.every_n_steps(100), sleep=sleeps
    )
    agent = make_agent("cem", "CartPole-v1", seed=0)
    report = RLOptimizer(agent, pipeline, max_episodes=10).run()
    assert report.episodes == 10
    assert report.env_steps == 1000
    assert pipeline.reconnects >= 25
    assert len(sleeps.delays) == pipeline.reconnects
    assert agent.generation >= 1  # it learned from the windows it got
