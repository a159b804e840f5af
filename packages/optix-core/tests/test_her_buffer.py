"""HER: relabelled goals and rewards per strategy, episode bookkeeping, and a Q-learner that uses it."""

from __future__ import annotations

import numpy as np
import pytest

from optix_core.buffers import (
    EpisodeTooLongError,
    HERReplayBuffer,
    HERStrategyError,
    NotEnoughTransitionsError,
)


def bit_reward(achieved: np.ndarray, desired: np.ndarray) -> np.ndarray:
    """Bit flipping (Andrychowicz et al. 2017, section 3.1): 0 at the goal, -1 elsewhere."""
    return -np.any(achieved != desired, axis=-1).astype(np.float32)


def bit_done(achieved: np.ndarray, desired: np.ndarray) -> np.ndarray:
    return np.all(achieved == desired, axis=-1)


def make_buffer(strategy: str = "future", k: int = 4, n_bits: int = 4, **kwargs) -> HERReplayBuffer:
    kwargs.setdefault("capacity", 1000)
    kwargs.setdefault("max_episode_length", n_bits)
    return HERReplayBuffer(
        observation_shape=(n_bits,),
        goal_shape=(n_bits,),
        action_shape=(),
        compute_reward=bit_reward,
        compute_terminated=bit_done,
        strategy=strategy,
        k=k,
        action_dtype=np.int64,
        **kwargs,
    )


FAR_GOAL = np.array([0, 1, 0, 1], np.float32)


def staircase_episode() -> dict:
    """From 0000 flip bits 0, 1, 2, 3 in turn, aiming at 0101 (never reached).

    The state after step t has its first t + 1 bits set, so a goal's bit count
    names the step that achieved it.
    """
    states = np.tril(np.ones((5, 4), np.float32), -1)  # row t: first t bits set
    goal = np.tile(FAR_GOAL, (4, 1))
    return {
        "observations": {
            "observation": states[:4],
            "achieved_goal": states[:4],
            "desired_goal": goal,
        },
        "actions": np.arange(4),
        "rewards": np.full(4, -1.0, np.float32),
        "next_observations": {"observation": states[1:], "achieved_goal": states[1:]},
        "terminated": np.zeros(4, bool),
    }


def sample_rows(buf: HERReplayBuffer, batches: int = 1000):
    """Many batches of 4 (all that one stored episode allows), concatenated."""
    draws = [buf.sample(4) for _ in range(batches)]

    def cat(get):
        return np.concatenate([get(d) for d in draws])

    s = {
        "desired_goal": cat(lambda d: d["observations"]["desired_goal"]),
        "next_desired_goal": cat(lambda d: d["next_observations"]["desired_goal"]),
        "observation": cat(lambda d: d["observations"]["observation"]),
        **{key: cat(lambda d, key=key: d[key]) for key in ("rewards", "terminated", "relabelled")},
    }
    step = s["observation"].sum(axis=1).astype(int)  # t of each row
    goal_step = s["desired_goal"].sum(axis=1).astype(int) - 1  # t' whose state is the goal
    return s, step, goal_step


@pytest.mark.parametrize("strategy", ["future", "final", "episode"])
def test_relabelled_goals_and_rewards_follow_the_strategy(strategy):
    buf = make_buffer(strategy, k=4, seed=0)
    buf.add_episode(**staircase_episode())
    s, step, goal_step = sample_rows(buf)
    rel = s["relabelled"]
    # Rows left alone keep the real goal and reward.
    assert np.all(s["desired_goal"][~rel] == FAR_GOAL)
    assert np.all(s["rewards"][~rel] == -1) and not s["terminated"][~rel].any()
    # Relabelled goals are achieved goals of the same episode (first bits set, no gaps).
    goals = s["desired_goal"][rel]
    assert np.array_equal(goals, np.tril(np.ones((4, 4)))[goal_step[rel]])
    np.testing.assert_array_equal(s["next_desired_goal"], s["desired_goal"])
    if strategy == "final":
        assert np.all(goal_step[rel] == 3)
    elif strategy == "future":
        assert np.all(goal_step[rel] >= step[rel])
        pairs = {(a, b) for a, b in zip(step[rel], goal_step[rel], strict=True)}
        assert pairs == {(t, g) for t in range(4) for g in range(t, 4)}  # every future step is used
    else:
        pairs = {(a, b) for a, b in zip(step[rel], goal_step[rel], strict=True)}
        assert pairs == {(t, g) for t in range(4) for g in range(4)}  # past steps too
    # The reward is recomputed for the new goal: 0 exactly where the step achieved it.
    hit = goal_step[rel] == step[rel]
    np.testing.assert_array_equal(s["rewards"][rel], np.where(hit, 0.0, -1.0))
    np.testing.assert_array_equal(s["terminated"][rel], hit)


@pytest.mark.parametrize(("k", "fraction"), [(4, 0.8), (1, 0.5), (0, 0.0)])
def test_relabelled_fraction_is_k_over_k_plus_one(k, fraction):
    buf = make_buffer(k=k, seed=1)
    buf.add_episode(**staircase_episode())
    assert buf.sample(4)["relabelled"].dtype == bool
    share = np.mean([buf.sample(4)["relabelled"].mean() for _ in range(2500)])
    assert share == pytest.approx(fraction, abs=0.02)


def test_vector_env_steps_form_episodes_per_column():
    # Goals are (column, steps taken): a relabelled goal must come from the row's own column.
    buf = HERReplayBuffer(
        100,
        (2,),
        (2,),
        compute_reward=bit_reward,
        max_episode_length=5,
        n_envs=2,
        seed=2,
    )
    lengths = (3, 5)
    for t in range(5):
        obs = np.array([[c, t] for c in range(2)], np.float32)
        nxt = obs + np.array([0, 1], np.float32)
        ends = np.array([t == length - 1 for length in lengths])
        buf.add(
            {
                "observation": obs,
                "achieved_goal": obs,
                "desired_goal": np.full((2, 2), -1.0, np.float32),
            },
            np.zeros((2,), np.float32),
            np.full(2, -1.0),
            {"observation": nxt, "achieved_goal": nxt},
            terminated=np.array([ends[0], False]),
            truncated=np.array([False, ends[1]]),
        )
        assert len(buf) == (3 if t >= 2 else 0) + (5 if t == 4 else 0)
    s = buf.sample(8)
    rel = s["relabelled"]
    obs, goal = s["observations"]["observation"][rel], s["observations"]["desired_goal"][rel]
    assert np.all(goal[:, 0] == obs[:, 0])  # same column
    assert np.all(goal[:, 1] >= obs[:, 1] + 1)  # a future achieved goal
    assert np.all(goal[:, 1] <= np.where(obs[:, 0] == 0, 3, 5))  # within that column's episode


def test_overwritten_episodes_stop_being_sampled():
    buf = make_buffer(capacity=10, seed=3)
    for _ in range(3):  # 12 rows into 10 slots: the third episode takes 8, 9, 0, 1
        buf.add_episode(**staircase_episode())
    assert len(buf) == 8  # the first episode lost its start; its slots 2, 3 are dropped
    idx = np.concatenate([buf.sample(8)["indices"] for _ in range(200)])
    assert not np.isin(idx, [2, 3]).any()
    with pytest.raises(NotEnoughTransitionsError, match="holds 8 from complete episodes"):
        buf.sample(9)


def test_save_and_load_keep_complete_episodes(tmp_path):
    buf = make_buffer(seed=4)
    buf.add_episode(**staircase_episode())
    ep = staircase_episode()
    # One step of an unfinished episode: not saved.
    buf.add(
        {k: v[0] for k, v in ep["observations"].items()},
        0,
        -1.0,
        {k: v[0] for k, v in ep["next_observations"].items()},
        False,
        False,
    )
    path = buf.save(tmp_path / "her")
    restored = make_buffer(seed=4)
    restored.load(path)
    assert len(restored) == len(buf) == 4
    s = restored.sample(4)
    assert s["observations"]["observation"].shape == (4, 4)


def test_her_errors():
    with pytest.raises(
        HERStrategyError,
        match=r"unknown HER strategy 'random'; expected one of \['future', 'final', 'episode'\]",
    ):
        make_buffer("random")
    with pytest.raises(HERStrategyError, match="k .* must be >= 0, got -1"):
        make_buffer(k=-1)
    buf = make_buffer(max_episode_length=2)
    step = (
        {"observation": np.zeros(4), "achieved_goal": np.zeros(4), "desired_goal": np.ones(4)},
        0,
        -1.0,
    )
    nxt = {"observation": np.zeros(4), "achieved_goal": np.zeros(4)}
    buf.add(*step, nxt, False, False)
    buf.add(*step, nxt, False, False)
    with pytest.raises(EpisodeTooLongError, match="passed max_episode_length=2 without ending"):
        buf.add(*step, nxt, False, False)
    with pytest.raises(ValueError, match=r"observations lacks the keys \['desired_goal'\]"):
        buf.add(
            {"observation": np.zeros(4), "achieved_goal": np.zeros(4)}, 0, -1.0, nxt, False, False
        )
    with pytest.raises(
        ValueError,
        match=r"observation has shape \(3,\), expected \(4,\)|observations has shape \(3,\), expected \(4,\)",
    ):
        buf.add({**step[0], "observation": np.zeros(3)}, 0, -1.0, nxt, False, False)
    with pytest.raises(NotEnoughTransitionsError, match="holds 0 from complete episodes"):
        make_buffer().sample(1)


# -- a learner that uses it -----------------------------------------------------------


def test_q_learning_with_her_solves_bit_flipping():
    """Tabular DQN-style learner on 5-bit flipping: minibatch TD updates from the HER buffer.

    With the reward only at the exact goal (1 in 32 states), HER's relabelled
    goals supply the successes the learner needs.
    """
    n, gamma, lr = 5, 0.9, 0.5
    rng = np.random.default_rng(0)
    powers = 1 << np.arange(n)

    def code(bits: np.ndarray) -> np.ndarray:
        return (bits.astype(np.int64) * powers).sum(-1)

    q = np.zeros((1 << n, 1 << n, n))
    buf = make_buffer("future", k=4, n_bits=n, capacity=20_000, seed=0)
    for _ in range(2500):
        s = rng.integers(0, 2, n).astype(np.float32)
        g = rng.integers(0, 2, n).astype(np.float32)
        for t in range(n):
            explore = rng.random() < 0.2
            a = (
                int(rng.integers(n))
                if explore
                else int(np.argmax(q[code(s), code(g)] + 1e-6 * rng.random(n)))
            )
            s2 = s.copy()
            s2[a] = 1 - s2[a]
            reached = bool(np.all(s2 == g))
            buf.add(
                {"observation": s, "achieved_goal": s, "desired_goal": g},
                a,
                0.0 if reached else -1.0,
                {"observation": s2, "achieved_goal": s2},
                reached,
                t == n - 1 and not reached,
            )
            s = s2
            if reached:
                break
        if len(buf) >= 128:
            for _ in range(4):
                b = buf.sample(128)
                si = code(b["observations"]["observation"])
                gi = code(b["observations"]["desired_goal"])
                s2i = code(b["next_observations"]["observation"])
                target = b["rewards"] + gamma * (1 - b["terminated"]) * q[s2i, gi].max(axis=1)
                q[si, gi, b["actions"]] += lr * (target - q[si, gi, b["actions"]])

    successes = 0
    for _ in range(200):
        s = rng.integers(0, 2, n)
        g = rng.integers(0, 2, n)
        for _ in range(n):
            if np.array_equal(s, g):
                break
            s[int(np.argmax(q[code(s), code(g)]))] ^= 1
        successes += np.array_equal(s, g)
    assert successes / 200 >= 0.9
