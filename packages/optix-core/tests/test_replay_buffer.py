"""Uniform replay: storage, dtypes, vector inserts, errors, save/load, windows and n-step transitions."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

from optix_core.buffers import (
    BufferFileError,
    NotEnoughTransitionsError,
    NStepWriter,
    PrioritizedReplayBuffer,
    ReplayBuffer,
    TransitionDtypeError,
    TransitionFieldsError,
    TransitionShapeError,
    transition_fields,
)
from optix_core.types import EpisodeData


def lunar_fields():
    return transition_fields((8,), (2,))


def batch(rng: np.random.Generator, n: int, start: int = 0) -> dict[str, np.ndarray]:
    """n transitions whose observations carry their serial number in column 0."""
    obs = rng.normal(size=(n, 8)).astype(np.float32)
    obs[:, 0] = np.arange(start, start + n)
    return {
        "observations": obs,
        "actions": rng.uniform(-1, 1, size=(n, 2)).astype(np.float32),
        "rewards": rng.normal(size=n).astype(np.float32),
        "next_observations": obs + 1,
        "terminated": rng.random(n) < 0.2,
    }


def test_single_and_vector_inserts_keep_dtypes():
    fields = {
        "observations": ((3,), np.float32),
        "actions": ((), np.int64),
        "rewards": ((), np.float32),
        "terminated": ((), bool),
    }
    buf = ReplayBuffer(10, fields, seed=0)
    # One transition, from Python and float64 values (float64 -> float32 is allowed).
    buf.add(observations=np.array([1.0, 2.0, 3.0]), actions=2, rewards=0.5, terminated=False)
    # A vector env's 4 columns at once.
    buf.add(
        observations=np.ones((4, 3), np.float32),
        actions=np.array([0, 1, 2, 3], np.int32),
        rewards=np.zeros(4),
        terminated=np.array([True, False, False, True]),
    )
    assert len(buf) == 5 and buf.position == 5
    out = buf.get(np.arange(5))
    assert out["observations"].dtype == np.float32
    assert out["actions"].dtype == np.int64
    assert out["terminated"].dtype == np.bool_
    np.testing.assert_array_equal(out["actions"], [2, 0, 1, 2, 3])
    np.testing.assert_array_equal(out["observations"][0], [1, 2, 3])
    s = buf.sample(5)
    assert s["observations"].shape == (5, 3) and s["actions"].shape == (5,)
    assert s["indices"].max() < 5


def test_circular_overwrite_keeps_the_newest():
    rng = np.random.default_rng(0)
    buf = ReplayBuffer(5, lunar_fields())
    buf.add(**batch(rng, 3, start=0))
    buf.add(**batch(rng, 4, start=3))  # wraps: 3, 4 at the end, then 5, 6 over 0, 1
    assert buf.full and buf.position == 2
    np.testing.assert_array_equal(buf.get(np.arange(5))["observations"][:, 0], [5, 6, 2, 3, 4])
    buf.add(**batch(rng, 5, start=7))  # exactly a capacity's worth
    assert buf.position == 2
    np.testing.assert_array_equal(buf.get(np.arange(5))["observations"][:, 0], [10, 11, 7, 8, 9])


def test_sampling_is_uniform_and_seeded():
    buf = ReplayBuffer(50, lunar_fields(), seed=3)
    buf.add(**batch(np.random.default_rng(1), 50))
    first = buf.sample(10)["indices"]
    np.testing.assert_array_equal(first, np.random.default_rng(3).integers(0, 50, 10))
    draws = np.concatenate([buf.sample(50)["indices"] for _ in range(400)])
    counts = np.bincount(draws, minlength=50)
    assert counts.min() > 300 and counts.max() < 500  # 400 expected each, sd 20


def test_bad_inserts_say_what_was_expected():
    rng = np.random.default_rng(0)
    buf = ReplayBuffer(4, lunar_fields())
    good = batch(rng, 2)
    with pytest.raises(
        TransitionShapeError, match=r"observations has shape \(3,\), expected \(8,\)"
    ):
        buf.add(**{**good, "observations": np.zeros(3, np.float32)})
    with pytest.raises(
        TransitionShapeError, match=r"expected \(2,\) for one transition or \(N, 2\)"
    ):
        buf.add(**{**good, "actions": np.zeros((2, 3), np.float32)})
    with pytest.raises(
        TransitionShapeError, match="rewards holds 3 transitions but earlier fields hold 2"
    ):
        buf.add(**{**good, "rewards": np.zeros(3, np.float32)})
    with pytest.raises(TransitionShapeError, match="more than the capacity 4"):
        buf.add(**batch(rng, 5))
    with pytest.raises(TransitionFieldsError, match=r"missing \['terminated'\]"):
        buf.add(**{k: v for k, v in good.items() if k != "terminated"})
    with pytest.raises(TransitionFieldsError, match=r"unknown \['info'\]"):
        buf.add(**good, info=np.zeros(2))
    int_actions = ReplayBuffer(4, transition_fields((8,), (), action_dtype=np.int64))
    with pytest.raises(TransitionDtypeError, match="actions has dtype float64, expected int64"):
        int_actions.add(**{**good, "actions": np.array([0.5, 1.5])})
    with pytest.raises(TransitionDtypeError, match="terminated has dtype float64, expected bool"):
        buf.add(**{**good, "terminated": np.array([0.0, 1.0])})
    assert len(buf) == 0  # nothing was written by the refused inserts
    for err in (TransitionShapeError, TransitionFieldsError, TransitionDtypeError):
        assert issubclass(err, ValueError)


def test_sampling_more_than_stored_is_an_error():
    buf = ReplayBuffer(10, lunar_fields())
    with pytest.raises(
        NotEnoughTransitionsError, match="cannot sample 1 transitions: the buffer holds 0"
    ):
        buf.sample(1)
    buf.add(**batch(np.random.default_rng(0), 3))
    with pytest.raises(NotEnoughTransitionsError, match="sample at most 3"):
        buf.sample(4)


@pytest.mark.parametrize("n_added", [3, 13])
def test_save_and_load_round_trip(tmp_path, n_added):
    rng = np.random.default_rng(0)
    buf = ReplayBuffer(10, lunar_fields())
    buf.add(**batch(rng, n_added if n_added <= 10 else 10))
    if n_added > 10:
        buf.add(**batch(rng, n_added - 10, start=10))
    path = buf.save(tmp_path / "replay")
    assert path.name == "replay.npz"
    with np.load(path, allow_pickle=False) as f:  # plain arrays only
        assert all(f[k].dtype != object for k in f.files)
    restored = ReplayBuffer(10, lunar_fields())
    restored.load(path)
    assert (len(restored), restored.position) == (len(buf), buf.position)
    everything = np.arange(len(buf))
    for name, arr in buf.get(everything).items():
        np.testing.assert_array_equal(restored.get(everything)[name], arr)
        assert restored.get(everything)[name].dtype == arr.dtype
    restored.add(**batch(rng, 1, start=99))  # and it carries on where it was
    assert restored.position == (buf.position + 1) % 10


def test_load_refuses_a_file_of_another_spec(tmp_path):
    buf = ReplayBuffer(10, lunar_fields())
    buf.add(**batch(np.random.default_rng(0), 4))
    path = buf.save(tmp_path / "replay.npz")
    with pytest.raises(
        BufferFileError,
        match=r"observations has shape \(4, 8\) and dtype float32, expected \(4, 6\)",
    ):
        ReplayBuffer(10, transition_fields((6,), (2,))).load(path)
    with pytest.raises(BufferFileError, match="capacity 10, expected 20"):
        ReplayBuffer(20, lunar_fields()).load(path)
    with pytest.raises(BufferFileError, match="expected"):
        ReplayBuffer(10, transition_fields((8,), (2,), discounts=True)).load(path)


def test_from_spaces_uses_the_spaces_shapes_and_dtypes():
    obs_space = gym.spaces.Box(-1, 1, shape=(4,), dtype=np.float32)
    buf = ReplayBuffer.from_spaces(100, obs_space, gym.spaces.Discrete(3))
    assert buf.fields["observations"].shape == (4,)
    assert buf.fields["actions"].shape == () and buf.fields["actions"].dtype == np.int64


def test_add_window_uses_final_observations_at_episode_ends():
    t, n = 3, 2
    obs = np.arange(t * n, dtype=np.float32).reshape(t, n, 1)  # step t, column c -> 2t + c
    terminated = np.zeros((t, n), bool)
    truncated = np.zeros((t, n), bool)
    terminated[0, 0] = True  # column 0 ends after step 0
    truncated[1, 1] = True  # column 1 is cut after step 1
    final = np.zeros((t, n, 1), np.float32)
    final[0, 0], final[1, 1] = 100.0, 101.0
    data = EpisodeData(
        observations=obs,
        actions=np.zeros((t, n), np.int64),
        rewards=np.ones((t, n), np.float32),
        terminated=terminated,
        truncated=truncated,
        next_observations=np.array([[50.0], [51.0]], np.float32),
        final_observations=final,
    )
    buf = ReplayBuffer(20, transition_fields((1,), (), action_dtype=np.int64))
    slots = buf.add_window(data)
    got = buf.get(slots)
    np.testing.assert_array_equal(got["observations"][:, 0], [0, 1, 2, 3, 4, 5])  # time-major
    np.testing.assert_array_equal(got["next_observations"][:, 0], [100, 3, 4, 101, 50, 51])
    np.testing.assert_array_equal(got["terminated"], [True, False, False, False, False, False])


# -- n-step ------------------------------------------------------------------------


def nstep_reference(stream, n, gamma):
    """Every complete n-step transition of per-column streams, computed from whole trajectories."""
    out = []
    for col in range(stream["rewards"].shape[1]):
        steps = len(stream["rewards"])
        for t in range(steps):
            ret, m = 0.0, 0
            while True:
                s = t + m
                if s >= steps:
                    break  # not yet complete when the stream stopped
                ret += gamma**m * stream["rewards"][s, col]
                m += 1
                ended = stream["terminated"][s, col] or stream["truncated"][s, col]
                if ended or m == n:
                    out.append(
                        (
                            float(stream["observations"][t, col, 0]),
                            round(ret, 4),
                            float(stream["next_observations"][s, col, 0]),
                            bool(stream["terminated"][s, col]),
                            round(gamma**m, 6),
                        )
                    )
                    break
    return sorted(out)


def random_stream(rng, steps, n_envs):
    obs = np.arange(steps * n_envs, dtype=np.float32).reshape(steps, n_envs, 1)
    ends = rng.random((steps, n_envs)) < 0.2
    term = ends & (rng.random((steps, n_envs)) < 0.5)
    return {
        "observations": obs,
        "actions": rng.uniform(-1, 1, (steps, n_envs, 1)).astype(np.float32),
        "rewards": rng.normal(size=(steps, n_envs)).astype(np.float32),
        "next_observations": obs + 1000,
        "terminated": term,
        "truncated": ends & ~term,
    }


@pytest.mark.parametrize("n", [1, 3, 5])
@pytest.mark.parametrize("buffer_cls", [ReplayBuffer, PrioritizedReplayBuffer])
def test_nstep_writer_matches_whole_trajectory_returns(n, buffer_cls):
    rng = np.random.default_rng(n)
    steps, n_envs, gamma = 60, 3, 0.9
    stream = random_stream(rng, steps, n_envs)
    buf = buffer_cls(1000, transition_fields((1,), (1,), discounts=True))
    writer = NStepWriter(buf, n=n, gamma=gamma, n_envs=n_envs)
    for t in range(steps):
        writer.add(**{k: v[t] for k, v in stream.items()})
    got = buf.get(np.arange(len(buf)))
    rows = sorted(
        (
            float(got["observations"][i, 0]),
            round(float(got["rewards"][i]), 4),
            float(got["next_observations"][i, 0]),
            bool(got["terminated"][i]),
            round(float(got["discounts"][i]), 6),
        )
        for i in range(len(buf))
    )
    assert rows == nstep_reference(stream, n, gamma)
    assert writer.pending.max() <= n - 1
    assert len(buf) + writer.pending.sum() == steps * n_envs


def test_nstep_writer_feeds_windows_and_checks_its_buffer():
    rng = np.random.default_rng(0)
    stream = random_stream(rng, 20, 2)
    data = EpisodeData(
        observations=stream["observations"],
        actions=stream["actions"],
        rewards=stream["rewards"],
        terminated=stream["terminated"],
        truncated=stream["truncated"],
        next_observations=stream["observations"][-1] + 1,
        final_observations=np.zeros_like(stream["observations"]),
    )
    buf = ReplayBuffer(100, transition_fields((1,), (1,), discounts=True))
    writer = NStepWriter(buf, n=3, gamma=0.5, n_envs=2)
    slots = writer.add_window(data)
    assert len(slots) == len(buf) == 40 - writer.pending.sum()
    with pytest.raises(TransitionFieldsError, match=r"missing \['discounts'\]"):
        NStepWriter(ReplayBuffer(10, transition_fields((1,), (1,))), n=3, gamma=0.9)
    with pytest.raises(TransitionShapeError, match=r"expected one per env column \(2\)"):
        writer.add(**{k: v[0, :1] for k, v in stream.items()})
