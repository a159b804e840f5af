"""optix_core.off_policy: the off-policy agents' schedule, counters and replay, without a framework.

The schedule is checked against a step-by-step simulation of
Stable-Baselines3's loop (act one vector step, then train if due), whatever
the windows it is cut into; the replay agent runs here on a numpy "backend"
whose tensors are the host arrays themselves.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from optix_core.buffers import CompactPrioritizedReplayBuffer, FieldSpec
from optix_core.off_policy import (
    COUNTERS,
    PRIORITY_EPS,
    REPLAY_FILE,
    ActionScaler,
    HostMinibatches,
    Replay,
    ReplayAgentMixin,
    action_dtype,
    action_size,
    check_action_space,
    check_n_actions,
    check_twin_critics,
    due_steps,
    epsilon_greedy,
    epsilon_schedule,
    exploration_end,
    first_update,
    learner_fields,
    per_beta,
    require_discrete,
    saved_spec,
    sync_segments,
    update_due,
    window_slice,
)
from optix_core.types import EpisodeData

# ---- the schedule -------------------------------------------------------------------


def sb3_due_steps(
    windows: list[int], n_envs: int, train_freq: int, learning_starts: int, gradient_steps: int
) -> list[tuple[int, int]]:
    """SB3's loop, one vector step at a time: (global vector step, env steps seen) of each
    step after which it trains."""
    due = []
    for vector_steps in range(1, sum(windows) + 1):
        num_timesteps = vector_steps * n_envs
        trains = gradient_steps > 0 and vector_steps % train_freq == 0
        if trains and num_timesteps > learning_starts:
            due.append((vector_steps, num_timesteps))
    return due


def windowed_due_steps(
    windows: list[int], n_envs: int, train_freq: int, learning_starts: int, gradient_steps: int
) -> list[tuple[int, int]]:
    """``due_steps`` over consecutive windows of these lengths, in global vector steps."""
    due, vector_steps, num_timesteps = [], 0, 0
    for length in windows:
        steps, seen = due_steps(
            length, n_envs, vector_steps, num_timesteps, train_freq, learning_starts, gradient_steps
        )
        due += [(vector_steps + int(t), int(s)) for t, s in zip(steps, seen, strict=True)]
        vector_steps += length
        num_timesteps += length * n_envs
    return due


@settings(max_examples=200, deadline=None)
@given(
    windows=st.lists(st.integers(1, 40), min_size=1, max_size=8),
    n_envs=st.integers(1, 4),
    train_freq=st.integers(1, 9),
    learning_starts=st.integers(0, 100),
    gradient_steps=st.integers(0, 3),
)
def test_due_steps_are_sb3s_whatever_the_windows(
    windows: list[int], n_envs: int, train_freq: int, learning_starts: int, gradient_steps: int
) -> None:
    args = (n_envs, train_freq, learning_starts, gradient_steps)
    assert windowed_due_steps(windows, *args) == sb3_due_steps(windows, *args)


@settings(max_examples=200, deadline=None)
@given(
    n_envs=st.integers(1, 4),
    train_freq=st.integers(1, 9),
    learning_starts=st.integers(0, 100),
)
def test_first_update_is_when_sb3_first_trains(
    n_envs: int, train_freq: int, learning_starts: int
) -> None:
    """What ``optix train`` refuses a budget below: SB3's first training step."""
    horizon = [learning_starts + 2 * train_freq]  # one window, long enough to reach it
    (_, seen), *_ = sb3_due_steps(horizon, n_envs, train_freq, learning_starts, 1)
    assert first_update(learning_starts, train_freq, n_envs) == seen


@pytest.mark.parametrize(
    ("length", "n_envs", "train_freq", "learning_starts", "before", "expected"),
    [
        (8, 1, 1, 0, 0, [1, 2, 3, 4, 5, 6, 7, 8]),  # SAC's default: every env step
        (8, 2, 4, 0, 0, [4, 8]),  # train_freq counts vector steps
        (8, 2, 4, 0, 3, [1, 5]),  # ... carried over from the windows before
        (8, 1, 1, 5, 0, [6, 7, 8]),  # "more than learning_starts" env steps
        (6, 4, 1, 8, 0, [3, 4, 5, 6]),
        (3, 1, 256, 0, 0, []),  # DQN's 256: a window may earn nothing
    ],
)
def test_due_steps_examples(
    length: int, n_envs: int, train_freq: int, learning_starts: int, before: int, expected: list
) -> None:
    steps, seen = due_steps(length, n_envs, before, before * n_envs, train_freq, learning_starts, 1)
    assert steps.tolist() == expected
    assert seen.tolist() == [(before + t) * n_envs for t in expected]


def test_no_step_is_due_without_gradient_steps() -> None:
    assert due_steps(10, 2, 0, 0, 1, 0, gradient_steps=0).steps.size == 0


def test_per_beta_anneals_linearly_to_one_per_env_step() -> None:
    assert per_beta(0, 0.4, 1000) == 0.4
    assert per_beta(500, 0.4, 1000) == pytest.approx(0.7)
    assert per_beta(1000, 0.4, 1000) == per_beta(10**9, 0.4, 1000) == 1.0
    assert per_beta(10**9, 0.4, 0) == 0.4  # 0 steps: β stays where it starts


@pytest.mark.parametrize("period", [1, 3, 7, 128])
@pytest.mark.parametrize("n_updates", [0, 2, 6, 127])
@pytest.mark.parametrize("count", [0, 1, 5, 20, 300])
def test_sync_segments_copy_the_target_after_every_periodth_step(
    count: int, n_updates: int, period: int
) -> None:
    runs = sync_segments(count, n_updates, period)
    covered = [j for steps, _ in runs for j in range(steps.start, steps.stop)]
    assert covered == list(range(count))
    # One step at a time: copy after step j when the (n_updates + j + 1)-th is a multiple.
    copies = [j for j in range(count) if (n_updates + j + 1) % period == 0]
    assert [steps.stop - 1 for steps, sync in runs if sync] == copies
    # Runs are as long as they may be: each ends at a copy or at the end of the block.
    assert all(sync or steps.stop == count for steps, sync in runs)


def test_update_due_every_periodth() -> None:
    assert [n for n in range(1, 10) if update_due(n, 3)] == [3, 6, 9]
    assert all(update_due(n, 1) for n in range(5))


# ---- exploration ----------------------------------------------------------------------

EPS_HP = {
    "learning_starts": 100,
    "epsilon": 1.0,
    "epsilon_min": 0.05,
    "exploration_steps": 1000,
    "epsilon_decay": 0.99,
}


def test_epsilon_is_one_until_learning_starts_then_linear_to_its_floor() -> None:
    assert epsilon_schedule(0, EPS_HP) == epsilon_schedule(99, EPS_HP) == 1.0
    assert epsilon_schedule(500, EPS_HP) == pytest.approx(1.0 - 0.5 * 0.95)
    assert epsilon_schedule(1000, EPS_HP) == epsilon_schedule(10**7, EPS_HP)
    assert epsilon_schedule(10**7, EPS_HP) == pytest.approx(0.05)


def test_epsilon_decays_per_env_step_without_exploration_steps() -> None:
    hp = {**EPS_HP, "exploration_steps": 0, "learning_starts": 0}
    assert epsilon_schedule(10, hp) == pytest.approx(0.99**10)
    assert epsilon_schedule(10**6, hp) == 0.05


@pytest.mark.parametrize(
    "hp",
    [
        EPS_HP,  # linear: at exploration_steps
        {**EPS_HP, "exploration_steps": 50},  # ... or learning_starts, if later
        {**EPS_HP, "exploration_steps": 0},  # multiplicative
        {**EPS_HP, "exploration_steps": 0, "learning_starts": 500},
    ],
)
def test_exploration_ends_where_epsilon_reaches_its_floor(hp) -> None:
    """What the loop waits for before it may call a plateau converged."""
    end = exploration_end(hp)
    assert epsilon_schedule(end, hp) == pytest.approx(hp["epsilon_min"])
    assert epsilon_schedule(end - 1, hp) > hp["epsilon_min"] + 1e-9


def test_exploration_without_an_end_does_not_hold_the_loop() -> None:
    """ε constant, or decaying towards 0 for ever: nothing to wait for past the
    random start."""
    for changed in ({"epsilon_decay": 1.0}, {"epsilon_min": 0.0}, {"epsilon": 0.05}):
        assert exploration_end({**EPS_HP, "exploration_steps": 0, **changed}) == 100


def test_epsilon_greedy_draws_the_same_stream_whatever_the_network_says() -> None:
    calls = []

    def greedy() -> np.ndarray:
        calls.append(1)
        return np.full(1000, 7)

    explored = epsilon_greedy(np.random.default_rng(0), 1.0, 1000, 3, greedy)
    assert not calls and set(explored.tolist()) == {0, 1, 2}
    assert (epsilon_greedy(np.random.default_rng(0), 0.0, 1000, 3, greedy) == 7).all()
    mixed = epsilon_greedy(np.random.default_rng(0), 0.25, 1000, 3, greedy)
    rng = np.random.default_rng(0)
    explore = rng.random(1000) < 0.25
    np.testing.assert_array_equal(mixed, np.where(explore, rng.integers(3, size=1000), 7))
    assert 150 < explore.sum() < 350


def test_q_learning_checks() -> None:
    assert check_n_actions(4.0, "dqn") == 4
    for bad in (0, 2.5, True):
        with pytest.raises(ValueError, match="n_actions must be a positive integer"):
            check_n_actions(bad, "dqn")
    assert require_discrete(gym.spaces.Discrete(3), "dqn") == 3
    with pytest.raises(ValueError, match="Discrete action spaces"):
        require_discrete(gym.spaces.Box(-1, 1, (2,)), "dqn")
    with pytest.raises(ValueError, match="numbered from 0"):
        require_discrete(gym.spaces.Discrete(3, start=1), "dqn")


# ---- actor-critic ------------------------------------------------------------------


def test_action_scaler_maps_unit_actions_to_the_bounds_and_back() -> None:
    space = gym.spaces.Box(np.array([-2, 0], np.float32), np.array([2, 10], np.float32))
    scaler = ActionScaler(2, space)
    unit = np.array([[-1.0, 1.0], [0.0, 0.0], [0.5, -3.0]])
    env = scaler.to_env(unit)
    np.testing.assert_allclose(env, [[-2.0, 10.0], [0.0, 5.0], [1.0, 0.0]])
    assert env.dtype == np.float32
    np.testing.assert_allclose(scaler.from_env(env), np.clip(unit, -1, 1), atol=1e-6)
    window = EpisodeData(
        observations=np.zeros((3, 1, 1), np.float32),
        actions=env[:, None],
        rewards=np.zeros((3, 1), np.float32),
        terminated=np.zeros((3, 1), bool),
        truncated=np.zeros((3, 1), bool),
        next_observations=np.zeros((1, 1), np.float32),
    )
    np.testing.assert_allclose(scaler.unit_window(window).actions[:, 0], np.clip(unit, -1, 1))


def test_actor_critic_checks() -> None:
    box = gym.spaces.Box(-1, 1, (2, 3))
    assert action_size(None, box, "sac") == 6
    with pytest.raises(ValueError, match="does not match"):
        action_size(5, box, "sac")
    with pytest.raises(ValueError, match="give action_dim"):
        action_size(None, None, "sac")
    with pytest.raises(ValueError, match="must be finite"):
        check_action_space("sac", gym.spaces.Box(-np.inf, np.inf, (1,)))
    with pytest.raises(ValueError, match="Box action spaces"):
        check_action_space("td3", gym.spaces.Discrete(2))
    one, two = object(), object()
    check_twin_critics(one, two, None, "td3")
    check_twin_critics(None, None, one, "td3")
    with pytest.raises(ValueError, match="not both"):
        check_twin_critics(one, None, two, "td3")
    with pytest.raises(ValueError, match="the same one"):
        check_twin_critics(one, one, None, "td3")
    with pytest.raises(ValueError, match="give both"):
        check_twin_critics(one, None, None, "td3")


# ---- the replay agent on a numpy backend ---------------------------------------------

HP = {
    "replay_capacity": 1000,
    "gamma": 0.9,
    "batch_size": 8,
    "train_freq": 2,
    "gradient_steps": 3,
    "learning_starts": 0,
    "n_step": 1,
    "per_alpha": 0.0,
    "per_beta": 0.4,
    "per_beta_steps": 100,
}


class NumpyAgentBase:
    """What a backend's agent base gives the mixin: hp, rng, algorithm and the hooks."""

    algorithm = "numpy-replay"

    def __init__(self, hyperparams: dict[str, Any], device: str, seed: int | None) -> None:
        self.hp = dict(hyperparams)
        self.rng = np.random.default_rng(seed)
        self.device = device
        self.calls: list[str] = []

    def apply_hyperparams(self) -> None:
        self.calls.append("apply_hyperparams")

    def extra_state(self) -> dict[str, Any]:
        return {"base": 1}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        self.calls.append("load_extra_state")

    def save_extra(self, path: Path) -> None:
        self.calls.append("save_extra")

    def load_extra(self, path: Path) -> None:
        self.calls.append("load_extra")

    def teardown(self) -> None:
        self.calls.append("teardown")

    @property
    def loop_hints(self) -> dict[str, Any]:
        return {"min_episodes_before_dormant": 30}  # BaseAgent's, for off-policy agents


class NumpyReplayAgent(ReplayAgentMixin, NumpyAgentBase):
    def __init__(self, seed: int = 0, **hp: Any) -> None:
        super().__init__({**HP, **hp}, "cpu", seed)
        self.apply_hyperparams()

    def learn(self, data: EpisodeData, pack_bytes: int = 1 << 30) -> list[HostMinibatches]:
        """Every block of the window, each minibatch a gradient step (counted)."""
        blocks = []
        for block in self.replay_draws(data, pack_bytes):
            self.n_updates += block.count
            if block.indices is not None:
                self.replay.update_priorities(block.indices, np.ones(len(block.indices)))
            blocks.append(block)
        return blocks


def numbered_window(first: int, steps: int, n_envs: int) -> EpisodeData:
    """Transition k (counted over the stream, env-major within a step) has observation k,
    reward k and next observation k + n_envs."""
    k = (first + np.arange(steps * n_envs)).reshape(steps, n_envs)
    return EpisodeData(
        observations=k[..., None].astype(np.float32),
        actions=(k % 3).astype(np.int32),
        rewards=k.astype(np.float32),
        terminated=np.zeros((steps, n_envs), bool),
        truncated=np.zeros((steps, n_envs), bool),
        next_observations=(k[-1] + n_envs)[:, None].astype(np.float32),
    )


@pytest.mark.parametrize(
    ("n_envs", "train_freq", "gradient_steps", "windows"),
    [(1, 1, 1, [10, 10]), (2, 2, 3, [6, 5, 20]), (3, 4, 2, [1, 7, 9, 2]), (1, 5, 0, [12])],
)
@pytest.mark.parametrize("pack_bytes", [1, 1 << 30])
def test_each_update_draws_only_what_was_stored_by_its_step(
    n_envs: int, train_freq: int, gradient_steps: int, windows: list[int], pack_bytes: int
) -> None:
    """16 slots: later windows wrap round the buffer, the last ones are larger than it."""
    capacity, batch = 16, 64
    agent = NumpyReplayAgent(
        replay_capacity=capacity,
        batch_size=batch,
        train_freq=train_freq,
        gradient_steps=gradient_steps,
    )
    written = 0
    for length in windows:
        before = agent.vector_steps
        due = [t for t in range(1, length + 1) if (before + t) % train_freq == 0]
        blocks = agent.learn(numbered_window(written, length, n_envs), pack_bytes)
        parts = [part for block in blocks for part in block.parts]
        if gradient_steps == 0:
            assert parts == []
        else:
            assert len(parts) == len(due)  # one part per due step, in order
            # pack_bytes 1: one block per due step; otherwise the window's in one.
            assert len(blocks) == (len(due) if pack_bytes == 1 else min(1, len(due)))
        for t, part in zip(due, parts, strict=False):
            end = written + t * n_envs  # transitions written by the end of step t
            drawn = part["rewards"]
            assert drawn.shape == (gradient_steps * batch,)
            assert set(drawn.tolist()) <= set(range(max(0, end - capacity), end)), t
            np.testing.assert_array_equal(part["observations"][:, 0], drawn)
            np.testing.assert_array_equal(part["next_observations"][:, 0], drawn + n_envs)
            np.testing.assert_allclose(part["bootstrap"], 0.9)
            assert part["actions"].dtype == np.int64
        written += length * n_envs
        assert (agent.vector_steps, agent.num_timesteps) == (before + length, written)
    assert agent.n_updates == gradient_steps * sum(
        1 for v in range(1, sum(windows) + 1) if v % train_freq == 0
    )


def test_the_counters_and_acting_steps() -> None:
    agent = NumpyReplayAgent(learning_starts=10)
    agent._acting_steps = 8  # act_info acted for 8 env steps
    assert agent.steps_collected == 8 and agent.warming_up
    agent.learn(numbered_window(0, 4, 2))
    assert (agent.num_timesteps, agent.vector_steps, agent._acting_steps) == (8, 4, 0)
    agent._acting_steps = 2
    assert agent.steps_collected == 10 and not agent.warming_up
    stats = agent.replay_stats()
    assert stats == {"replay_size": 8.0, "n_updates": 0.0, "num_timesteps": 8.0}
    assert not agent.is_on_policy


def test_a_replay_agent_is_scored_every_256_env_steps_whatever_its_windows() -> None:
    # A preset's small windows (acting with a fresher policy) are scored as often
    # as the default 256-step windows; the off-policy base's hints stay.
    hints = NumpyReplayAgent().loop_hints
    assert hints == {"steps_per_evaluation": 256, "min_episodes_before_dormant": 30}


def test_prioritized_draws_one_minibatch_at_a_time_with_the_beta_of_its_step() -> None:
    agent = NumpyReplayAgent(per_alpha=0.6, batch_size=4, train_freq=3, gradient_steps=2)
    assert agent.replay.buffer is None and agent.replay.prioritized
    betas = []
    sample = agent.replay.sample_prioritized

    def recording(batch_size: int, beta: float) -> tuple[dict[str, np.ndarray], np.ndarray]:
        betas.append(beta)
        return sample(batch_size, beta)

    agent.replay.sample_prioritized = recording  # type: ignore[method-assign]
    blocks = agent.learn(numbered_window(0, 9, 2))
    assert isinstance(agent.replay.buffer, CompactPrioritizedReplayBuffer)
    # Steps 3, 6, 9 are due; step 3 has only 6 ≥ 4 transitions, so all three draw.
    assert [block.count for block in blocks] == [1] * 6
    assert all(block.indices is not None and "weights" in block.parts[0] for block in blocks)
    assert betas == [per_beta(s, 0.4, 100) for s in (6, 6, 12, 12, 18, 18)]
    assert agent.replay_stats()["per_beta"] == per_beta(18, 0.4, 100)


def test_prioritized_draws_wait_for_a_batch() -> None:
    agent = NumpyReplayAgent(per_alpha=0.6, batch_size=8, train_freq=1, gradient_steps=1)
    blocks = agent.learn(numbered_window(0, 6, 1))
    assert blocks == []  # 6 < 8 stored
    assert len(agent.learn(numbered_window(6, 4, 1))) == 3  # after steps 8, 9, 10


def test_the_counters_and_the_memory_survive_a_checkpoint(tmp_path: Path) -> None:
    agent = NumpyReplayAgent(per_alpha=0.5, batch_size=4)
    agent.learn(numbered_window(0, 10, 2))
    agent._acting_steps = 3
    state = agent.extra_state()
    assert state == {
        "base": 1,
        "num_timesteps": 20,
        "vector_steps": 10,
        "n_updates": agent.n_updates,
        "acting_steps": 3,
    }
    assert set(COUNTERS) <= set(state)
    agent.save_extra(tmp_path)
    assert (tmp_path / REPLAY_FILE).is_file() and "save_extra" in agent.calls
    rng_state = agent.rng.bit_generator.state

    restored = NumpyReplayAgent(seed=99, per_alpha=0.5, batch_size=4)
    restored.rng.bit_generator.state = rng_state  # as the base restores it
    restored.load_extra_state(state)
    restored.load_extra(tmp_path)
    assert (restored.num_timesteps, restored.vector_steps, restored._acting_steps) == (20, 10, 3)
    assert restored.n_updates == agent.n_updates
    every = np.arange(len(agent.replay))
    for name, values in agent.replay.buffer.get(every).items():
        np.testing.assert_array_equal(restored.replay.buffer.get(every)[name], values)
    # The same generator state, the same memory: the same draws from here on.
    follow = numbered_window(20, 6, 2)
    got, want = restored.learn(follow), agent.learn(follow)
    assert len(got) == len(want) > 0
    for a, b in zip(got, want, strict=True):
        np.testing.assert_array_equal(a.indices, b.indices)
        for key in ("rewards", "bootstrap", "weights"):
            np.testing.assert_array_equal(a.parts[0][key], b.parts[0][key])


def by_first_observation(replay: Replay) -> dict[str, np.ndarray]:
    """The stored transitions ordered by their first observation (a numbered stream's
    own order, whatever slots and frame ids they got)."""
    stored = replay.buffer.get(np.arange(len(replay)))
    order = np.argsort(stored["observations"][:, 0], kind="stable")
    return {name: values[order] for name, values in stored.items()}


def assert_same_transitions(got: Replay, want: Replay) -> None:
    assert len(got) == len(want)
    got_rows, want_rows = by_first_observation(got), by_first_observation(want)
    for name in want_rows:
        np.testing.assert_array_equal(got_rows[name], want_rows[name], err_msg=name)


@pytest.mark.parametrize("per_alpha", [0.0, 0.5])
def test_a_checkpoint_keeps_the_steps_the_n_step_writer_held_for_the_episodes_going_on(
    tmp_path: Path, per_alpha: float
) -> None:
    """Two steps per column wait for their 3-step spans at the checkpoint: a resumed
    agent that continues the episodes completes them with the next window's steps,
    as the agent never saved does."""
    agent = NumpyReplayAgent(n_step=3, gradient_steps=0, per_alpha=per_alpha)
    agent.learn(numbered_window(0, 5, 2))
    assert list(agent.replay.writer.pending) == [2, 2]
    agent.save_extra(tmp_path)
    restored = NumpyReplayAgent(n_step=3, gradient_steps=0, per_alpha=per_alpha)
    restored.load_extra(tmp_path)
    assert restored.continue_episodes()

    following = numbered_window(10, 4, 2)
    agent.learn(following)
    restored.learn(following)
    assert list(restored.replay.writer.pending) == list(agent.replay.writer.pending)
    assert_same_transitions(restored.replay, agent.replay)
    spans = by_first_observation(restored.replay)
    eight = spans["observations"][:, 0] == 8  # column 0's last step before the checkpoint
    np.testing.assert_allclose(spans["rewards"][eight], 8 + 0.9 * 10 + 0.81 * 12)
    np.testing.assert_allclose(spans["next_observations"][eight, 0], 14.0)


@pytest.mark.parametrize("per_alpha", [0.0, 0.5])
def test_steps_the_n_step_writer_held_end_as_a_truncation_when_new_episodes_start(
    tmp_path: Path, per_alpha: float
) -> None:
    """A resumed run that starts new episodes (the agent was not asked to continue
    them): the steps the writer held come back as the transitions a truncation after
    the checkpoint's last step adds, bootstrapping from the observation after it,
    and the new episodes' steps do not join their spans."""
    agent = NumpyReplayAgent(n_step=3, gradient_steps=0, per_alpha=per_alpha)
    agent.learn(numbered_window(0, 5, 2))
    agent.save_extra(tmp_path)
    restored = NumpyReplayAgent(n_step=3, gradient_steps=0, per_alpha=per_alpha)
    restored.load_extra(tmp_path)

    truncated = numbered_window(0, 5, 2)
    truncated.truncated[-1] = True
    truncated = dataclasses.replace(truncated, final_observations=truncated.observations + 2)
    cut_there = NumpyReplayAgent(n_step=3, gradient_steps=0, per_alpha=per_alpha)
    cut_there.learn(truncated)
    new_episodes = numbered_window(100, 4, 2)
    restored.learn(new_episodes)
    cut_there.learn(new_episodes)

    assert len(restored.replay) == len(agent.replay) + 4 + 4
    assert_same_transitions(restored.replay, cut_there.replay)
    spans = by_first_observation(restored.replay)
    last = spans["observations"][:, 0] == 8  # column 0's last step: R = r, bootstraps from 10
    np.testing.assert_allclose(spans["rewards"][last], 8.0)
    np.testing.assert_allclose(spans["next_observations"][last, 0], 10.0)
    np.testing.assert_allclose(spans["discounts"][last], 0.9)


def test_a_checkpoint_without_counters_or_memory_starts_empty(tmp_path: Path) -> None:
    agent = NumpyReplayAgent()
    agent.learn(numbered_window(0, 4, 1))
    agent.load_extra_state({})
    agent.load_extra(tmp_path)
    assert (agent.num_timesteps, agent.vector_steps, agent.n_updates) == (0, 0, 0)
    assert agent.replay.buffer is None and len(agent.replay) == 0


def test_teardown_empties_the_memory_after_the_base() -> None:
    agent = NumpyReplayAgent()
    agent.learn(numbered_window(0, 4, 1))
    agent.teardown()
    assert agent.calls[-1] == "teardown" and len(agent.replay) == 0


# ---- the memory ------------------------------------------------------------------------


def test_n_step_transitions_carry_their_discount() -> None:
    agent = NumpyReplayAgent(n_step=3, gradient_steps=0)
    data = numbered_window(0, 6, 1)
    data.terminated[4, 0] = True
    agent.learn(dataclasses.replace(data, final_observations=data.observations + 0.5))
    stored = agent.replay.buffer.get(np.arange(len(agent.replay)))
    # R_t = r_t + γ r_t+1 + γ² r_t+2 with γ^3 as its discount; the episode end cuts it short.
    np.testing.assert_allclose(stored["rewards"][0], 0 + 0.9 * 1 + 0.81 * 2)
    np.testing.assert_allclose(stored["discounts"][0], 0.9**3)
    fields = learner_fields(stored)
    np.testing.assert_allclose(fields["bootstrap"][stored["terminated"]], 0.0)


def test_a_window_stored_in_slices_is_the_window_stored_at_once() -> None:
    whole, sliced = Replay(np.random.default_rng(0), "x"), Replay(np.random.default_rng(0), "x")
    for replay in (whole, sliced):
        replay.configure(12, 0.0, 0.99, 1)
    for first in (0, 14, 28):
        data = numbered_window(first, 7, 2)
        data.truncated[3, 1] = True
        data = dataclasses.replace(data, final_observations=data.observations + 0.5)
        whole.feed(data).store_until(7)
        feed = sliced.feed(data)
        for stop in (2, 3, 7):
            feed.store_until(stop)
    every = np.arange(12)
    for name, values in whole.buffer.get(every).items():
        np.testing.assert_array_equal(sliced.buffer.get(every)[name], values, err_msg=name)
    assert sliced.buffer.observations_written == whole.buffer.observations_written


def test_window_slice_ends_with_the_next_slices_first_observation() -> None:
    data = numbered_window(0, 5, 2)
    part = window_slice(data, 1, 3)
    np.testing.assert_array_equal(part.rewards, data.rewards[1:3])
    np.testing.assert_array_equal(part.next_observations, data.observations[3])
    np.testing.assert_array_equal(
        window_slice(data, 3, 5).next_observations, data.next_observations
    )


def test_a_new_capacity_keeps_the_newest_transitions_and_their_priorities() -> None:
    agent = NumpyReplayAgent(per_alpha=0.5, replay_capacity=50, gradient_steps=0)
    agent.learn(numbered_window(0, 40, 1))
    agent.replay.update_priorities(np.arange(40), np.arange(40, dtype=np.float64))
    agent.hp["replay_capacity"] = 10
    agent.apply_hyperparams()
    buffer = agent.replay.buffer
    assert buffer.capacity == 10
    kept = buffer.get(np.arange(10))["rewards"]
    np.testing.assert_array_equal(np.sort(kept), np.arange(30, 40))
    np.testing.assert_allclose(buffer.tree.get(np.arange(10)) ** 2, kept + PRIORITY_EPS, rtol=1e-5)


def test_a_window_of_other_spaces_is_refused() -> None:
    agent = NumpyReplayAgent()
    agent.learn(numbered_window(0, 3, 1))
    other = numbered_window(3, 3, 1)
    other = dataclasses.replace(other, actions=other.actions.astype(np.float32))
    with pytest.raises(ValueError, match="numpy-replay: the window's observations and actions"):
        agent.learn(other)


def test_saved_spec_reads_a_saved_buffers_rows_from_the_headers(tmp_path: Path) -> None:
    replay = Replay(np.random.default_rng(0), "x")
    replay.configure(8, 0.0, 0.99, 1)
    data = numbered_window(0, 3, 1)
    data = dataclasses.replace(data, observations=np.zeros((3, 1, 4, 4), np.uint8))
    data = dataclasses.replace(data, next_observations=np.ones((1, 4, 4), np.uint8))
    replay.feed(data).store_until(3)
    replay.save(tmp_path / REPLAY_FILE)
    assert saved_spec(tmp_path / REPLAY_FILE, "observations") == FieldSpec((4, 4), np.uint8)
    assert saved_spec(tmp_path / REPLAY_FILE, "field.actions") == FieldSpec((), np.int64)
    fresh = Replay(np.random.default_rng(0), "x")
    fresh.configure(8, 0.0, 0.99, 1)
    fresh.load(tmp_path / REPLAY_FILE)
    assert len(fresh) == 3 and fresh.buffer.fields["observations"].dtype == np.uint8


def test_action_dtype() -> None:
    assert action_dtype(np.dtype(np.int32)) == np.int64
    assert action_dtype(np.dtype(np.float64)) == np.float32
