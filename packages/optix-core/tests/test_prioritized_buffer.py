"""Prioritized replay: sampling proportional to p^α, importance weights, and the sum tree's consistency."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from optix_core.buffers import (
    NotEnoughTransitionsError,
    PrioritizedReplayBuffer,
    PriorityError,
    PriorityExponentError,
    SumTree,
    SumTreeError,
    transition_fields,
)
from optix_core.buffers.sum_tree import BLOCK

# Upper 0.1% points of the chi-square distribution, from the table "Critical Values of the
# Chi-Square Distribution" (NIST/SEMATECH e-Handbook of Statistical Methods, section
# 1.3.6.7.4), for the degrees of freedom used below.
CHI2_999 = {19: 43.820, 63: 103.442}


def chi_square(counts: np.ndarray, probs: np.ndarray) -> float:
    expected = counts.sum() * probs
    return float(((counts - expected) ** 2 / expected).sum())


def filled_buffer(n: int, capacity: int | None = None, **kwargs) -> PrioritizedReplayBuffer:
    rng = np.random.default_rng(0)
    buf = PrioritizedReplayBuffer(capacity or n, transition_fields((2,), ()), **kwargs)
    buf.add(
        observations=rng.normal(size=(n, 2)).astype(np.float32),
        actions=np.zeros(n, np.float32),
        rewards=np.zeros(n, np.float32),
        next_observations=np.zeros((n, 2), np.float32),
        terminated=np.zeros(n, bool),
    )
    return buf


def test_sampling_is_proportional_to_priority_to_the_alpha():
    rng = np.random.default_rng(1)
    buf = filled_buffer(20, capacity=32, alpha=0.6, seed=2)  # 12 empty slots must never be drawn
    priorities = rng.uniform(0.05, 5.0, size=20)
    buf.update_priorities(np.arange(20), priorities)
    draws = np.concatenate([buf.sample(20)["indices"] for _ in range(10_000)])
    counts = np.bincount(draws, minlength=32)
    assert counts[20:].sum() == 0
    probs = priorities**0.6 / (priorities**0.6).sum()
    assert chi_square(counts[:20], probs) < CHI2_999[19]


def test_sum_tree_sampling_across_many_blocks_is_proportional():
    rng = np.random.default_rng(3)
    tree = SumTree(10_000)
    leaves = rng.choice(10_000, size=64, replace=False)  # scattered over the tree, mostly empty
    weights = rng.uniform(0.01, 10.0, size=64)
    tree.update(leaves, weights)
    draws = np.concatenate([tree.sample(1000, rng) for _ in range(200)])
    assert np.isin(draws, leaves).all()
    counts = np.bincount(np.searchsorted(np.sort(leaves), draws), minlength=64)
    probs = weights[np.argsort(leaves)] / weights.sum()  # in the leaves' sorted order
    assert chi_square(counts, probs) < CHI2_999[63]


def test_importance_weights_follow_the_formula():
    rng = np.random.default_rng(4)
    buf = filled_buffer(50, capacity=64, alpha=0.7, beta=0.5, seed=5)
    p = rng.uniform(0.1, 3.0, size=50)
    buf.update_priorities(np.arange(50), p)
    prob = p**0.7 / (p**0.7).sum()
    for beta in (0.5, 1.0, 0.0, 0.3):
        s = buf.sample(32, beta=beta if beta != 0.5 else None)
        n = len(buf)
        w_all = (n * prob) ** -beta  # w_i = (N P(i))^-β, normalised by the max over stored j
        expected = w_all[s["indices"]] / w_all.max()
        np.testing.assert_allclose(s["weights"], expected, rtol=1e-5)
        assert s["weights"].dtype == np.float32
        assert np.all((s["weights"] > 0) & (s["weights"] <= 1))


def test_new_transitions_enter_at_the_highest_priority_seen():
    buf = filled_buffer(4, capacity=8, alpha=0.5)
    np.testing.assert_allclose(buf.tree.leaves[:4], 1.0)  # nothing seen yet: priority 1
    buf.update_priorities([0, 1], [9.0, 0.25])
    slot = buf.add(**buf.get(np.array([2])))  # any transition will do
    assert buf.tree.get(slot)[0] == pytest.approx(9.0**0.5)
    assert buf.max_priority == 9.0


def test_duplicate_indices_last_write_wins():
    buf = filled_buffer(8, alpha=1.0)
    buf.update_priorities([3, 5, 3, 3, 5], [1.0, 2.0, 3.0, 4.0, 0.5])
    np.testing.assert_allclose(buf.tree.get([3, 5]), [4.0, 0.5])
    assert buf.tree.total == pytest.approx(6 * 1.0 + 4.0 + 0.5)


def check_tree(tree: SumTree, reference: np.ndarray) -> None:
    """Leaves as written, every internal node the sum of its children, total and minimum exact."""
    np.testing.assert_array_equal(tree.leaves, reference)
    heap = tree.node_sums()
    n_nodes = len(heap) // 2
    internal = np.arange(1, n_nodes)
    np.testing.assert_array_equal(heap[internal], heap[2 * internal] + heap[2 * internal + 1])
    padded = np.zeros(n_nodes * BLOCK)
    padded[: len(reference)] = reference
    np.testing.assert_allclose(heap[n_nodes:], padded.reshape(-1, BLOCK).sum(axis=1), rtol=1e-12)
    assert tree.total == pytest.approx(reference.sum(dtype=np.float64), rel=1e-12, abs=1e-300)
    positive = reference[reference > 0]
    assert tree.min == (positive.min() if positive.size else np.inf)


@settings(max_examples=60, deadline=None)
@given(capacity=st.integers(1, 300), data=st.data())
def test_sum_tree_stays_consistent_under_random_batched_updates(capacity, data):
    tree = SumTree(capacity)
    reference = np.zeros(capacity, np.float32)
    for _ in range(data.draw(st.integers(1, 6))):
        m = data.draw(st.integers(1, 40))
        idx = data.draw(arrays(np.int64, m, elements=st.integers(0, capacity - 1)))
        pri = data.draw(arrays(np.float32, m, elements=st.floats(0, 1e4, width=32)))
        tree.update(idx, pri)
        for i, p in zip(idx, pri, strict=True):  # a loop of single writes: the last one wins
            reference[i] = p
        check_tree(tree, reference)


def test_sum_tree_stays_consistent_after_millions_of_writes():
    rng = np.random.default_rng(6)
    capacity = 1_000_000
    tree = SumTree(capacity)
    reference = np.zeros(capacity, np.float32)
    for _ in range(2_000):  # 2,000 batches of 1,024 distinct leaves: 2,048,000 writes
        idx = rng.choice(capacity, size=1024, replace=False)
        pri = rng.exponential(size=1024).astype(np.float32)
        pri[rng.random(1024) < 0.05] = 0  # some slots emptied again
        tree.update(idx, pri)
        reference[idx] = pri
    check_tree(tree, reference)
    rebuilt = SumTree(capacity)
    rebuilt.set_all(reference)
    np.testing.assert_allclose(rebuilt.node_sums(), tree.node_sums(), rtol=1e-9)


def test_exponents_outside_the_unit_interval_are_refused():
    with pytest.raises(PriorityExponentError, match=r"beta must lie in \[0, 1\], got 1.5"):
        filled_buffer(4, beta=1.5)
    with pytest.raises(PriorityExponentError, match=r"alpha must lie in \[0, 1\], got -0.1"):
        filled_buffer(4, alpha=-0.1)
    buf = filled_buffer(4)
    with pytest.raises(PriorityExponentError, match=r"beta must lie in \[0, 1\], got 2.0"):
        buf.sample(2, beta=2.0)
    with pytest.raises(PriorityExponentError, match="got -1.0"):
        buf.beta = -1.0
    assert issubclass(PriorityExponentError, ValueError)


def test_bad_priority_updates_and_samples_are_refused():
    buf = filled_buffer(4, capacity=8)
    with pytest.raises(PriorityError, match="positive and finite .* got 0.0"):
        buf.update_priorities([0], [0.0])
    with pytest.raises(PriorityError, match="got nan"):
        buf.update_priorities([0, 1], [1.0, np.nan])
    with pytest.raises(PriorityError, match=r"in \[0, 3\]; got values in \[2, 5\]"):
        buf.update_priorities([2, 5], [1.0, 1.0])
    with pytest.raises(PriorityError, match="2 indices and 1 priorities"):
        buf.update_priorities([0, 1], [1.0])
    with pytest.raises(
        NotEnoughTransitionsError, match="cannot sample 5 transitions: the buffer holds 4"
    ):
        buf.sample(5)
    with pytest.raises(SumTreeError, match="every priority is zero"):
        SumTree(4).sample(1, np.random.default_rng(0))
    with pytest.raises(
        SumTreeError, match=r"leaf index out of range: got \[0, 4\], expected \[0, 3\]"
    ):
        SumTree(4).update([0, 4], [1.0, 1.0])


def test_save_and_load_keep_priorities(tmp_path):
    buf = filled_buffer(30, capacity=40, alpha=0.6, seed=0)
    buf.update_priorities(np.arange(30), np.linspace(0.1, 3.0, 30))
    path = buf.save(tmp_path / "per")
    restored = PrioritizedReplayBuffer(40, transition_fields((2,), ()), alpha=0.6)
    restored.load(path)
    np.testing.assert_array_equal(restored.tree.leaves, buf.tree.leaves)
    assert restored.tree.total == pytest.approx(buf.tree.total)
    assert restored.tree.min == buf.tree.min
    assert restored.max_priority == buf.max_priority == 3.0
    other_alpha = PrioritizedReplayBuffer(40, transition_fields((2,), ()), alpha=0.5)
    with pytest.raises(ValueError, match="alpha=0.6, expected alpha=0.5"):
        other_alpha.load(path)
