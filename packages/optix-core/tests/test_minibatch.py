"""Shuffled flat minibatches and sequence-preserving minibatches for recurrent policies."""

from __future__ import annotations

import numpy as np
import pytest

from optix_core.minibatch import MinibatchError, make_minibatches


def test_flat_batches_partition_the_samples():
    batches = make_minibatches(100, 32, rng=0)
    assert [len(b) for b in batches] == [32, 32, 32, 4]
    assert sorted(np.concatenate(batches).tolist()) == list(range(100))
    assert not np.array_equal(np.concatenate(batches), np.arange(100))  # shuffled


def test_flat_batches_drop_last_and_are_reproducible():
    batches = make_minibatches(100, 32, rng=1, drop_last=True)
    assert [len(b) for b in batches] == [32, 32, 32]
    assert len(set(np.concatenate(batches).tolist())) == 96
    again = make_minibatches(100, 32, rng=1, drop_last=True)
    assert all(np.array_equal(a, b) for a, b in zip(batches, again, strict=True))


def test_sequence_batches_keep_time_order_within_a_column():
    t, n, seq_len = 16, 3, 4  # 4 chunks per column, 12 in all: 6 batches of 2
    # Each sample's value encodes (step, column) so the batch can be decoded.
    steps, cols = np.meshgrid(np.arange(t), np.arange(n), indexing="ij")
    flat_steps, flat_cols = steps.reshape(-1), cols.reshape(-1)
    batches = make_minibatches(t * n, 8, rng=2, seq_len=seq_len, n_envs=n)
    assert all(b.shape == (seq_len, 2) for b in batches)  # 8 // 4 = 2 sequences per batch
    assert len(batches) == (t // seq_len) * n // 2
    seen = []
    for idx in batches:
        for j in range(idx.shape[1]):
            col = flat_cols[idx[:, j]]
            step = flat_steps[idx[:, j]]
            assert np.all(col == col[0])  # one column per sequence
            assert np.array_equal(step, np.arange(step[0], step[0] + seq_len))  # consecutive
            assert step[0] % seq_len == 0  # starts on a chunk boundary
            seen.append((int(step[0]), int(col[0])))
    assert sorted(seen) == sorted((s, c) for s in range(0, t, seq_len) for c in range(n))


def test_sequence_batches_slice_time_major_arrays():
    t, n = 8, 2
    x = np.arange(t * n * 3).reshape(t, n, 3)
    (idx, *_) = make_minibatches(t * n, 4, rng=0, seq_len=4, n_envs=n)
    batch = x.reshape(t * n, 3)[idx]
    assert batch.shape == (4, 1, 3)  # [seq_len, B, features]
    col = idx[0, 0] % n
    start = idx[0, 0] // n
    np.testing.assert_array_equal(batch[:, 0], x[start : start + 4, col])


def test_minibatch_errors():
    with pytest.raises(MinibatchError, match="batch_size must be at least 1"):
        make_minibatches(10, 0)
    with pytest.raises(
        MinibatchError, match=r"not a multiple of seq_len=4; pick a seq_len that divides 10"
    ):
        make_minibatches(20, 8, seq_len=4, n_envs=2)
    with pytest.raises(MinibatchError, match="smaller than one sequence"):
        make_minibatches(16, 2, seq_len=4, n_envs=2)
    with pytest.raises(MinibatchError, match="not a whole number of steps"):
        make_minibatches(15, 4, seq_len=2, n_envs=2)
