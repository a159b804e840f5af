"""CompactReplayBuffer: the plain buffer's contents from one stored copy of each observation.

Every test feeds the same stream to a plain buffer and a compact one and asks
for equal contents. The streams' observations are all distinct, so a frame
overwritten while a stored transition still needed it would show up as a
difference.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from optix_core.buffers import (
    BufferFileError,
    CompactPrioritizedReplayBuffer,
    CompactReplayBuffer,
    NStepWriter,
    PrioritizedReplayBuffer,
    ReplayBuffer,
    ReplayBufferError,
    TransitionFieldsError,
    TransitionShapeError,
    transition_fields,
)
from optix_core.types import EpisodeData

OBS_SHAPE = (2,)


class VectorStream:
    """Windows of ``n_envs`` columns whose observations are all distinct, as a vector env yields them.

    A window's first observations are the previous window's
    ``next_observations`` unless ``restart`` (a pipeline rebuilt its envs).
    """

    def __init__(self, rng: np.random.Generator, n_envs: int, p_end: float) -> None:
        self.rng, self.n_envs, self.p_end = rng, n_envs, p_end
        self.frames = 0
        self.current = self.fresh(n_envs)

    def fresh(self, count: int) -> np.ndarray:
        ids = np.arange(self.frames, self.frames + count, dtype=np.float32)
        self.frames += count
        return np.stack([ids, -ids - 0.5], axis=-1)

    def window(self, steps: int, restart: bool = False) -> EpisodeData:
        n = self.n_envs
        if restart:
            self.current = self.fresh(n)
        obs = np.empty((steps, n, *OBS_SHAPE), np.float32)
        final = np.zeros_like(obs)
        ends = self.rng.random((steps, n)) < self.p_end
        terminated = ends & (self.rng.random((steps, n)) < 0.5)
        for t in range(steps):
            obs[t] = self.current
            following = self.fresh(n)
            final[t, ends[t]] = following[ends[t]]  # the episode's last observation
            following[ends[t]] = self.fresh(int(ends[t].sum()))  # the next episode's first
            self.current = following
        return EpisodeData(
            observations=obs,
            actions=self.rng.integers(0, 4, (steps, n)),
            rewards=self.rng.normal(size=(steps, n)).astype(np.float32),
            terminated=terminated,
            truncated=ends & ~terminated,
            next_observations=self.current.copy(),
            final_observations=final,
        )


def fields(discounts: bool = False):
    return transition_fields(OBS_SHAPE, (), action_dtype=np.int64, discounts=discounts)


def assert_same(plain: ReplayBuffer, compact: CompactReplayBuffer) -> None:
    assert (len(compact), compact.position, compact.full) == (
        len(plain),
        plain.position,
        plain.full,
    )
    every = np.arange(len(plain))
    want, got = plain.get(every), compact.get(every)
    assert got.keys() == want.keys()
    for name, arr in want.items():
        assert got[name].dtype == arr.dtype, name
        np.testing.assert_array_equal(got[name], arr, err_msg=name)
    if isinstance(plain, PrioritizedReplayBuffer):
        np.testing.assert_array_equal(compact.tree.get(every), plain.tree.get(every))


def assert_observations_kept(buf: CompactReplayBuffer) -> None:
    """No stored transition refers to an observation the ring has overwritten (ids below this bound)."""
    evicted_below = buf.observations_written - buf.observation_capacity
    for key in ("observation_ids", "next_observation_ids"):
        ids = buf._data[key][: len(buf)]  # the ids themselves are internal
        assert (ids >= evicted_below).all() and (ids < buf.observations_written).all()


# -- equal contents ----------------------------------------------------------------


@pytest.mark.parametrize("n_envs", [1, 3])
@pytest.mark.parametrize("capacity", [5, 40, 1000])
@pytest.mark.parametrize("p_end", [0.0, 0.3])
def test_windows_give_the_plain_buffers_contents(n_envs, capacity, p_end):
    stream = VectorStream(np.random.default_rng(capacity + n_envs), n_envs, p_end)
    plain, compact = ReplayBuffer(capacity, fields()), CompactReplayBuffer(capacity, fields())
    for w in range(25):
        data = stream.window(steps=1 + w % 6, restart=w % 9 == 8)
        np.testing.assert_array_equal(compact.add_window(data), plain.add_window(data))
        assert_same(plain, compact)
        assert_observations_kept(compact)


def test_consecutive_steps_and_windows_share_their_observations():
    rng = np.random.default_rng(0)
    stream = VectorStream(rng, n_envs=4, p_end=0.1)
    buf = CompactReplayBuffer(10_000, fields())
    windows = [stream.window(steps=16) for _ in range(10)]
    for data in windows:
        buf.add_window(data)
    episode_ends = sum(int(d.dones.sum()) for d in windows)
    # one frame per step, one per episode end, and the first window's first frames
    assert buf.observations_written == len(buf) + episode_ends + 4


def test_a_window_larger_than_the_capacity_keeps_its_last_transitions():
    stream = VectorStream(np.random.default_rng(1), n_envs=2, p_end=0.2)
    plain, compact = ReplayBuffer(7, fields()), CompactReplayBuffer(7, fields())
    for _ in range(3):
        data = stream.window(steps=10)
        np.testing.assert_array_equal(compact.add_window(data), plain.add_window(data))
        assert_same(plain, compact)


@pytest.mark.parametrize("n", [1, 3, 5])
@pytest.mark.parametrize(
    ("plain_cls", "compact_cls"),
    [
        (ReplayBuffer, CompactReplayBuffer),
        (PrioritizedReplayBuffer, CompactPrioritizedReplayBuffer),
    ],
)
def test_nstep_writer_gives_the_plain_buffers_transitions(n, plain_cls, compact_cls):
    stream = VectorStream(np.random.default_rng(n), n_envs=3, p_end=0.15)
    plain, compact = plain_cls(60, fields(True)), compact_cls(60, fields(True))
    writers = [NStepWriter(buf, n=n, gamma=0.9, n_envs=3) for buf in (plain, compact)]
    for w in range(30):
        data = stream.window(steps=1 + w % 4)  # windows shorter than n: spans cross them
        slots = [writer.add_window(data) for writer in writers]
        np.testing.assert_array_equal(slots[1], slots[0])
        np.testing.assert_array_equal(writers[1].pending, writers[0].pending)
        assert_same(plain, compact)
        assert_observations_kept(compact)


def test_full_transitions_and_copies_between_buffers():
    stream = VectorStream(np.random.default_rng(2), n_envs=2, p_end=0.2)
    plain, compact = ReplayBuffer(30, fields()), CompactReplayBuffer(30, fields())
    for _ in range(4):
        data = stream.window(steps=5)
        plain.add_window(data)
        compact.add_window(data)
    extra = plain.get(np.arange(3))  # full transitions go in with both observations
    np.testing.assert_array_equal(compact.add(**extra), plain.add(**extra))
    assert_same(plain, compact)

    keep = (plain.position + np.arange(len(plain))) % plain.capacity  # oldest first
    resized_plain, resized = ReplayBuffer(20, fields()), CompactReplayBuffer(20, fields())
    resized_plain.add(**plain.get(keep[-20:]))
    written = resized.add_from(compact, keep[-20:])
    np.testing.assert_array_equal(written, np.arange(20))
    assert_same(resized_plain, resized)
    shared = np.unique(
        np.concatenate(
            [compact._data[k][keep[-20:]] for k in ("observation_ids", "next_observation_ids")]
        )
    )
    assert resized.observations_written == len(shared) < 40


# -- prioritized ---------------------------------------------------------------------


def test_prioritized_sampling_is_the_plain_buffers():
    stream = VectorStream(np.random.default_rng(3), n_envs=2, p_end=0.1)
    plain = PrioritizedReplayBuffer(50, fields(), alpha=0.7, seed=11)
    compact = CompactPrioritizedReplayBuffer(50, fields(), alpha=0.7, seed=11)
    for _ in range(8):
        data = stream.window(steps=4)
        plain.add_window(data)
        compact.add_window(data)
    rng = np.random.default_rng(4)
    for beta in (0.4, 1.0):
        want, got = plain.sample(32, beta=beta), compact.sample(32, beta=beta)
        assert got.keys() == want.keys()
        for name, arr in want.items():
            np.testing.assert_array_equal(got[name], arr, err_msg=name)
        priorities = rng.random(32) + 0.01
        plain.update_priorities(want["indices"], priorities)
        compact.update_priorities(got["indices"], priorities)
    assert compact.max_priority == plain.max_priority


# -- save / load -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("plain_cls", "compact_cls"),
    [
        (ReplayBuffer, CompactReplayBuffer),
        (PrioritizedReplayBuffer, CompactPrioritizedReplayBuffer),
    ],
)
def test_save_load_round_trip_and_continue(tmp_path, plain_cls, compact_cls):
    stream = VectorStream(np.random.default_rng(5), n_envs=2, p_end=0.2)
    plain, compact = plain_cls(25, fields()), compact_cls(25, fields())
    for _ in range(9):  # wraps around
        data = stream.window(steps=3)
        plain.add_window(data)
        compact.add_window(data)
    if isinstance(plain, PrioritizedReplayBuffer):
        pri = np.linspace(0.1, 3.0, len(plain))
        plain.update_priorities(np.arange(len(plain)), pri)
        compact.update_priorities(np.arange(len(compact)), pri)
    path = compact.save(tmp_path / "replay")
    with np.load(path, allow_pickle=False) as f:
        assert f["observations"].shape[1:] == OBS_SHAPE
    loaded = compact_cls(25, fields(), observation_headroom=0.0)  # a smaller ring: it grows to fit
    loaded.load(path)
    assert_same(plain, loaded)
    for _ in range(4):
        data = stream.window(steps=3)
        plain.add_window(data)
        loaded.add_window(data)
        assert_same(plain, loaded)
        assert_observations_kept(loaded)


def test_files_of_the_other_layout_are_refused(tmp_path):
    stream = VectorStream(np.random.default_rng(6), n_envs=1, p_end=0.0)
    plain, compact = ReplayBuffer(10, fields()), CompactReplayBuffer(10, fields())
    data = stream.window(steps=4)
    plain.add_window(data)
    compact.add_window(data)
    plain_file, compact_file = plain.save(tmp_path / "plain"), compact.save(tmp_path / "compact")
    with pytest.raises(BufferFileError, match="observation_ids"):
        CompactReplayBuffer(10, fields()).load(plain_file)
    with pytest.raises(BufferFileError, match="holds fields"):
        ReplayBuffer(10, fields()).load(compact_file)
    with np.load(compact_file, allow_pickle=False) as f:
        arrays = {k: f[k] for k in f.files}
    arrays["field.next_observation_ids"] = arrays["field.next_observation_ids"] + 100
    np.savez(tmp_path / "broken.npz", **arrays)
    with pytest.raises(BufferFileError, match="outside the saved ones"):
        compact.load(tmp_path / "broken.npz")
    assert len(compact) == 4  # a refused file changes nothing


# -- observations are never evicted early ------------------------------------------


@settings(max_examples=150, deadline=None)
@given(
    capacity=st.integers(1, 12),
    headroom=st.sampled_from([0.0, 0.05, 0.5]),
    n_envs=st.integers(1, 3),
    n=st.sampled_from([None, 1, 2, 3]),
    p_end=st.sampled_from([0.0, 0.3, 1.0]),
    ops=st.lists(
        st.sampled_from(["window", "window", "restart", "add", "reload", "load"]), max_size=14
    ),
    seed=st.integers(0, 2**16),
)
def test_stored_transitions_never_lose_their_observations(
    tmp_path_factory, capacity, headroom, n_envs, n, p_end, ops, seed
):
    rng = np.random.default_rng(seed)
    stream = VectorStream(rng, n_envs, p_end)
    spec = fields(discounts=n is not None)
    if n:  # an episode end emits up to n transitions per column at once, which must fit
        capacity = max(capacity, n * n_envs)
    plain = ReplayBuffer(capacity, spec)
    compact = CompactReplayBuffer(capacity, spec, observation_headroom=headroom)
    writers = [NStepWriter(b, n, 0.9, n_envs) for b in (plain, compact)] if n else None
    for op in ops:
        if op == "add" and len(plain):
            extra = plain.get(rng.integers(0, len(plain), min(3, capacity)))
            plain.add(**extra)
            compact.add(**extra)
        elif op == "reload":
            path = compact.save(tmp_path_factory.mktemp("replay") / "buf")
            compact = CompactReplayBuffer(capacity, spec, observation_headroom=headroom)
            compact.load(path)
            if writers:  # a reloaded buffer needs a fresh writer, as an agent builds one
                writers = [NStepWriter(b, n, 0.9, n_envs) for b in (plain, compact)]
        elif op == "load":  # into the same buffer: its writer's pending steps carry on
            compact.load(compact.save(tmp_path_factory.mktemp("replay") / "buf"))
        elif op in ("window", "restart"):
            data = stream.window(int(rng.integers(1, 6)), restart=op == "restart")
            for buf, writer in zip((plain, compact), writers or (None, None), strict=True):
                (writer or buf).add_window(data)
        assert_same(plain, compact)
        assert_observations_kept(compact)


def test_an_nstep_writers_pending_steps_keep_their_observations():
    """Before its first span completes, only the writer's pending steps need their frames."""
    stream = VectorStream(np.random.default_rng(10), n_envs=1, p_end=0.0)
    plain = ReplayBuffer(10, fields(True))
    compact = CompactReplayBuffer(10, fields(True), observation_headroom=0.0)
    writers = [NStepWriter(buf, n=3, gamma=0.9) for buf in (plain, compact)]
    for steps in (2, 10):  # 10 new frames in a ring of 11 would reach the pending steps' two
        data = stream.window(steps)
        for writer in writers:
            writer.add_window(data)
    assert_same(plain, compact)


def test_direct_adds_keep_an_nstep_writers_pending_observations():
    """Full transitions added between windows must not evict the frames the writer still holds."""
    stream = VectorStream(np.random.default_rng(1), n_envs=1, p_end=0.0)
    plain = ReplayBuffer(3, fields(True))
    compact = CompactReplayBuffer(3, fields(True), observation_headroom=0.0)
    writers = [NStepWriter(buf, n=3, gamma=0.9) for buf in (plain, compact)]
    data = stream.window(steps=3)  # one transition out, two pending
    for writer in writers:
        writer.add_window(data)
    for _ in range(2):  # 12 frames through the ring: past the pending steps' two
        extra = plain.get(np.zeros(3, dtype=np.int64))
        plain.add(**extra)
        compact.add(**extra)
    data = stream.window(steps=2)  # completes the pending spans
    for writer in writers:
        writer.add_window(data)
    assert_same(plain, compact)
    assert_observations_kept(compact)


def test_loading_into_a_buffer_keeps_its_writers_pending_observations(tmp_path):
    """The plain writer keeps its pending frames through a load; the compact one's ids follow them."""
    stream = VectorStream(np.random.default_rng(11), n_envs=2, p_end=0.0)
    plain = ReplayBuffer(8, fields(True))
    compact = CompactReplayBuffer(8, fields(True), observation_headroom=0.0)
    writers = [NStepWriter(buf, n=3, gamma=0.9, n_envs=2) for buf in (plain, compact)]

    def feed(*windows):
        for steps in windows:
            data = stream.window(steps)
            for writer in writers:
                writer.add_window(data)

    feed(5, 1)
    files = [buf.save(tmp_path / name) for buf, name in ((plain, "plain"), (compact, "compact"))]
    feed(4, 3)  # the pending steps' frames are newer than every frame in the file
    assert writers[1].pending.tolist() == [2, 2]
    for buf, path in zip((plain, compact), files, strict=True):
        buf.load(path)
    assert_same(plain, compact)
    assert_observations_kept(compact)
    for steps in (2, 4):  # completes the pending spans, then wraps around
        feed(steps)
        assert_same(plain, compact)
        assert_observations_kept(compact)


@pytest.mark.parametrize("buffer_cls", [ReplayBuffer, CompactReplayBuffer])
def test_a_writers_pending_steps_saved_and_restored_go_on_as_never_saved(tmp_path, buffer_cls):
    """``state_arrays`` → a new buffer loaded from the file → ``restore``: the spans
    the saved writer held complete with the next windows' steps as the original's do,
    though the restored buffer gave their frames other ids."""
    stream = VectorStream(np.random.default_rng(12), n_envs=2, p_end=0.1)
    tight = {} if buffer_cls is ReplayBuffer else {"observation_headroom": 0.0}
    original = buffer_cls(8, fields(True), **tight)
    writer = NStepWriter(original, n=4, gamma=0.9, n_envs=2)
    writer.add_window(stream.window(7))
    assert writer.pending.any()
    path = original.save(tmp_path / "buffer")
    held = writer.state_arrays()

    restored = buffer_cls(8, fields(True), **tight)
    restored.load(path)
    twin = NStepWriter(restored, n=4, gamma=0.9, n_envs=2)
    twin.restore(held)
    np.testing.assert_array_equal(twin.pending, writer.pending)
    for steps in (1, 3, 6):  # completes the held spans, then wraps the buffer
        data = stream.window(steps)
        writer.add_window(data)
        twin.add_window(data)
        assert_same(original, restored)
    with pytest.raises(ReplayBufferError, match="pending steps"):
        NStepWriter(restored, n=3, gamma=0.9, n_envs=2).restore(held)


def test_the_ring_grows_rather_than_drop_an_observation_in_use():
    stream = VectorStream(np.random.default_rng(7), n_envs=2, p_end=1.0)  # every step ends
    plain, compact = ReplayBuffer(40, fields()), CompactReplayBuffer(40, fields())
    start = compact.observation_capacity
    for _ in range(10):
        data = stream.window(steps=6)
        plain.add_window(data)
        compact.add_window(data)
    assert compact.observation_capacity > start  # two frames per transition did not fit
    assert_same(plain, compact)
    assert_observations_kept(compact)


# -- memory ----------------------------------------------------------------------------


def test_a_pixel_replay_takes_at_most_1_1_times_one_copy_of_its_observations():
    capacity, frame = 100_000, (84, 84)
    spec = transition_fields(
        frame, (), observation_dtype=np.uint8, action_dtype=np.int64, discounts=True
    )
    one_copy = capacity * 84 * 84  # uint8
    # np.zeros maps the pages lazily: nothing here touches 700 MB
    assert CompactReplayBuffer(capacity, spec).nbytes <= 1.1 * one_copy
    assert CompactPrioritizedReplayBuffer(capacity, spec).nbytes <= 1.1 * one_copy
    assert ReplayBuffer(capacity, spec).nbytes > 2 * one_copy


@pytest.mark.parametrize(("n_envs", "steps"), [(1, 256), (8, 128)])
def test_a_dqn_stream_fits_the_ring_without_growing_it(n_envs, steps):
    """100k transitions (frames of one byte, same counts as 84x84 ones): the headroom suffices."""
    rng = np.random.default_rng(8)
    capacity = 100_000
    spec = transition_fields((1,), (), observation_dtype=np.uint8, action_dtype=np.int64)
    buf = CompactReplayBuffer(capacity, spec)
    start = buf.observation_capacity
    frames = np.zeros((steps, n_envs, 1), np.uint8)
    for _ in range(capacity * 6 // 5 // (steps * n_envs)):  # fills it and wraps around
        ends = rng.random((steps, n_envs)) < 1 / 50  # episodes of 50 steps on average
        buf.add_window(
            EpisodeData(
                observations=frames,
                actions=np.zeros((steps, n_envs), np.int64),
                rewards=np.zeros((steps, n_envs), np.float32),
                terminated=ends,
                truncated=np.zeros_like(ends),
                next_observations=frames[0],
                final_observations=frames,
            )
        )
    assert buf.full and buf.observation_capacity == start


# -- errors ----------------------------------------------------------------------------


def test_bad_construction_and_windows_are_refused_clearly():
    with pytest.raises(TransitionFieldsError, match="observations and next_observations"):
        CompactReplayBuffer(10, {"observations": ((2,), np.float32), "rewards": ((), np.float32)})
    with pytest.raises(ReplayBufferError, match="observation_headroom"):
        CompactReplayBuffer(10, fields(), observation_headroom=-0.1)
    data = VectorStream(np.random.default_rng(9), n_envs=2, p_end=0.0).window(steps=3)
    data.next_observations = data.next_observations[:1]
    buf = CompactReplayBuffer(10, fields())
    with pytest.raises(TransitionShapeError, match=r"next_observations has shape \(1, 2\)"):
        buf.add_window(data)
    assert len(buf) == 0 and buf.observations_written == 0
