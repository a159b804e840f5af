"""A batched k-ary sum tree (with a running minimum) for prioritized replay.

Prioritized replay (Schaul et al. 2016, section 3.3) samples transition ``i``
with probability ``P(i) = p_i / sum_k p_k``. A sum tree makes that O(log n):
each internal node holds the sum of its children, and a uniform draw
``u in [0, total)`` descends from the root to the leaf whose prefix-sum
interval contains ``u``.

Why k-ary and not binary: numpy pays a fixed cost per call, so the time of a
batched descent or update is set by the number of tree levels, not by the
256 lookups that move through each level together. A fan-out of 16 gives
5 levels for a million leaves instead of 20, and the internal nodes take
1/15 of the leaves' memory instead of as much again, which keeps a
prioritized buffer within 10% of the bytes of its transitions.

Layout: the leaves are one float32 array; the internal levels are views into
one flat float64 array (sums, so rounding does not drift) and one flat
float32 array (minima). Each level's length is a multiple of the fan-out so
that it reshapes to ``[parents, fanout]`` and a batch of parents gathers its
children in one indexing call. Every internal sum is recomputed from its
children (never incremented), with the same ``cumsum`` the descent uses, so
the descent's comparisons agree bit for bit with the stored sums and a draw
never lands on an empty leaf.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike


class SumTreeError(ValueError):
    """A priority or index given to the tree is out of range."""


class SumTree:
    """Leaf priorities with their total, their positive minimum, and batched sampling.

    ``update`` writes a batch of leaves and repairs their ancestors level by
    level; ``find`` maps a batch of prefix sums to leaves level by level. The
    minimum ignores zero leaves, which mark empty slots, because prioritized
    replay normalises its importance weights by the smallest stored priority.
    """

    def __init__(self, capacity: int, fanout: int = 16) -> None:
        if int(capacity) < 1:
            raise SumTreeError(f"capacity must be at least 1, got {capacity}")
        if int(fanout) < 2:
            raise SumTreeError(f"fanout must be at least 2, got {fanout}")
        self.capacity = int(capacity)
        self.fanout = k = int(fanout)

        # Level sizes from the leaves up, each padded to a multiple of k.
        sizes = [-(-self.capacity // k) * k]
        while sizes[-1] > k:
            parents = sizes[-1] // k
            sizes.append(-(-parents // k) * k)
        sizes.append(1)  # the root, parent of the top padded level

        self._leaves = np.zeros(sizes[0], dtype=np.float32)
        internal = sizes[1:]
        self._sum_flat = np.zeros(sum(internal), dtype=np.float64)
        self._min_flat = np.full(sum(internal), np.inf, dtype=np.float32)
        self._sums: list[np.ndarray] = []
        self._mins: list[np.ndarray] = []
        offset = 0
        for size in internal:
            self._sums.append(self._sum_flat[offset : offset + size])
            self._mins.append(self._min_flat[offset : offset + size])
            offset += size
        # Children of parent j at each level, as [parents, k] views: level 0 is
        # the leaves, level i >= 1 is the i-th internal level.
        self._child_sums = [self._leaves.reshape(-1, k)] + [s.reshape(-1, k) for s in self._sums[:-1]]
        self._child_mins = [None] + [m.reshape(-1, k) for m in self._mins[:-1]]

    @property
    def total(self) -> float:
        """Sum of all leaves."""
        return float(self._sums[-1][0])

    @property
    def min(self) -> float:
        """Smallest positive leaf, or ``inf`` when every leaf is zero."""
        return float(self._mins[-1][0])

    @property
    def depth(self) -> int:
        """Internal levels a lookup descends through."""
        return len(self._sums)

    @property
    def nbytes(self) -> int:
        """Bytes of every array the tree allocated."""
        return self._leaves.nbytes + self._sum_flat.nbytes + self._min_flat.nbytes

    @property
    def leaves(self) -> np.ndarray:
        """Read-only view of the leaf priorities (``capacity`` of them)."""
        view = self._leaves[: self.capacity]
        view.flags.writeable = False
        return view

    def get(self, indices: ArrayLike) -> np.ndarray:
        """Priorities of the given leaves."""
        return self._leaves[np.asarray(indices, dtype=np.int64)]

    def update(self, indices: ArrayLike, priorities: ArrayLike) -> None:
        """Set leaves ``indices`` to ``priorities`` and repair their ancestors.

        Duplicate indices are allowed; the last priority given for an index wins,
        as it would in a loop of single writes.
        """
        idx = np.asarray(indices, dtype=np.int64).ravel()
        pri = np.asarray(priorities, dtype=np.float32).ravel()
        if pri.size == 1 and idx.size != 1:
            pri = np.broadcast_to(pri, idx.shape)
        if idx.shape != pri.shape:
            raise SumTreeError(
                f"got {idx.size} indices and {pri.size} priorities; give one priority per index"
            )
        if idx.size == 0:
            return
        if idx.min() < 0 or idx.max() >= self.capacity:
            raise SumTreeError(
                f"leaf index out of range: got [{idx.min()}, {idx.max()}], "
                f"expected [0, {self.capacity - 1}]"
            )
        if not np.all(np.isfinite(pri)) or pri.min() < 0:
            raise SumTreeError("priorities must be finite and >= 0")
        if idx.size > 1:
            # Sort, then keep the last write of each index (stable sort keeps
            # the caller's order among equal indices).
            order = np.argsort(idx, kind="stable")
            idx = idx[order]
            keep = np.empty(idx.size, dtype=bool)
            np.not_equal(idx[1:], idx[:-1], out=keep[:-1])
            keep[-1] = True
            idx = idx[keep]
            pri = pri[order][keep]
        self._leaves[idx] = pri
        self._propagate(idx)

    def _propagate(self, idx: np.ndarray) -> None:
        """Recompute the ancestors of the sorted, unique leaves ``idx``, level by level."""
        k = self.fanout
        node = idx // k
        children = self._child_sums[0][node]
        self._sums[0][node] = np.cumsum(children, axis=1, dtype=np.float64)[:, -1]
        self._mins[0][node] = np.where(children > 0, children, np.float32(np.inf)).min(axis=1)
        for level in range(1, len(self._sums)):
            node //= k
            self._sums[level][node] = np.cumsum(self._child_sums[level][node], axis=1)[:, -1]
            self._mins[level][node] = self._child_mins[level][node].min(axis=1)

    def set_all(self, priorities: ArrayLike) -> None:
        """Replace every leaf at once (used when a saved buffer is loaded)."""
        pri = np.asarray(priorities, dtype=np.float32).ravel()
        if pri.size > self.capacity:
            raise SumTreeError(f"got {pri.size} priorities for a tree of capacity {self.capacity}")
        if pri.size and (not np.all(np.isfinite(pri)) or pri.min() < 0):
            raise SumTreeError("priorities must be finite and >= 0")
        self._leaves[:] = 0
        self._leaves[: pri.size] = pri
        children = self._child_sums[0]
        self._sums[0][: children.shape[0]] = np.cumsum(children, axis=1, dtype=np.float64)[:, -1]
        self._mins[0][: children.shape[0]] = np.where(children > 0, children, np.float32(np.inf)).min(axis=1)
        for level in range(1, len(self._sums)):
            children = self._child_sums[level]
            self._sums[level][: children.shape[0]] = np.cumsum(children, axis=1)[:, -1]
            self._mins[level][: children.shape[0]] = self._child_mins[level].min(axis=1)

    def find(self, prefix_sums: ArrayLike) -> np.ndarray:
        """Leaves whose prefix-sum interval holds each value in ``prefix_sums``.

        Values must lie in ``[0, total)``; with draws ``u = U(0, 1) * total`` the
        result is leaf ``i`` with probability ``leaf_i / total``. All values
        descend together, one level per step.
        """
        u = np.array(prefix_sums, dtype=np.float64).ravel()
        total = self._sums[-1][0]
        if total <= 0:
            raise SumTreeError("cannot sample from a tree whose priorities are all zero")
        if u.size and (u.min() < 0 or u.max() >= total):
            raise SumTreeError(f"prefix sums must lie in [0, {total}), got [{u.min()}, {u.max()}]")
        rows = np.arange(u.size)
        node = np.zeros(u.size, dtype=np.int64)
        cums = np.zeros((u.size, self.fanout + 1), dtype=np.float64)
        for level in range(len(self._sums) - 1, -1, -1):
            children = self._child_sums[level][node]
            np.cumsum(children, axis=1, dtype=np.float64, out=cums[:, 1:])
            # choice = first child whose running sum exceeds u; it has positive mass.
            choice = (cums[:, 1:] <= u[:, None]).sum(axis=1)
            # Clamp below the chosen child's own sum so rounding in the
            # subtraction cannot carry u past it at the next level.
            u = np.minimum(u - cums[rows, choice], np.nextafter(children[rows, choice], 0))
            node = node * self.fanout + choice
        return node
