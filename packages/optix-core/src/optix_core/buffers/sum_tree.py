"""A batched sum tree (with a running minimum) for prioritized replay.

Prioritized replay (Schaul et al. 2016, section 3.3) samples transition ``i``
with probability ``P(i) = p_i / sum_k p_k``. A sum tree makes that O(log n):
each internal node holds the sum of its children, and a draw
``u in [0, total)`` descends from the root to the leaf whose prefix-sum
interval contains ``u``.

Everything is batched: a sample of 256 descends the tree level by level
together, and an update of 256 priorities repairs their ancestors level by
level together, so the cost is a few numpy calls per level, whatever the
batch size.

Layout, chosen for memory: the priorities are one float32 array. The tree is
one flat float64 array in heap order (root at 1, children of ``j`` at ``2j``
and ``2j + 1``) whose bottom nodes are blocks of ``BLOCK`` = 8 leaves, not
single leaves; the last three levels of the descent are computed from the
block's leaves on the fly. A binary tree over single leaves would add 2 float64
per transition (16 MB for a million, a fifth of a LunarLander-sized buffer);
over blocks of 8 it adds 2 MB. Sums are recomputed from children on every
update (never incremented), so rounding cannot drift however many updates
run.

The minimum positive priority, which the importance weights need, is kept per
``MIN_BLOCK`` = 256 leaves and rescanned only for blocks whose minimum leaf
was overwritten.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

BLOCK = 8
MIN_BLOCK = 256


class SumTreeError(ValueError):
    """A priority or index given to the tree is out of range."""


class SumTree:
    """Leaf priorities with their total, their positive minimum, and batched sampling.

    Zero leaves mark empty slots: they are never sampled and the minimum
    ignores them.
    """

    def __init__(self, capacity: int) -> None:
        if int(capacity) < 1:
            raise SumTreeError(f"capacity must be at least 1, got {capacity}")
        self.capacity = int(capacity)
        n_min = -(-self.capacity // MIN_BLOCK)
        self._leaves = np.zeros(n_min * MIN_BLOCK, dtype=np.float32)
        self._blocks = self._leaves.reshape(-1, BLOCK)
        self._min_chunks = self._leaves.reshape(-1, MIN_BLOCK)
        self._block_min = np.full(n_min, np.inf, dtype=np.float32)
        n_blocks = self._blocks.shape[0]
        self._n_nodes = 1 << max(n_blocks - 1, 0).bit_length()  # blocks, rounded up to 2**depth
        self.depth = self._n_nodes.bit_length() - 1
        self._tree = np.zeros(2 * self._n_nodes, dtype=np.float64)
        self._pairs = self._tree.reshape(-1, 2)  # row j holds nodes 2j and 2j + 1
        self._ones = np.ones(BLOCK, dtype=np.float64)

    @property
    def total(self) -> float:
        """Sum of all leaves."""
        return float(self._tree[1])

    @property
    def min(self) -> float:
        """Smallest positive leaf, or ``inf`` when every leaf is zero."""
        return float(self._block_min.min())

    @property
    def nbytes(self) -> int:
        """Bytes of every array the tree allocated."""
        return self._leaves.nbytes + self._tree.nbytes + self._block_min.nbytes

    @property
    def leaves(self) -> np.ndarray:
        """Read-only view of the ``capacity`` leaf priorities."""
        view = self._leaves[: self.capacity]
        view.flags.writeable = False
        return view

    def node_sums(self) -> np.ndarray:
        """Read-only view of the heap (index 0 unused, 1 the root), for consistency checks."""
        view = self._tree.view()
        view.flags.writeable = False
        return view

    def get(self, indices: ArrayLike) -> np.ndarray:
        """Priorities of the given leaves."""
        return self._leaves.take(np.asarray(indices, dtype=np.int64))

    def update(self, indices: ArrayLike, priorities: ArrayLike) -> None:
        """Set leaves ``indices`` to ``priorities`` and repair their ancestors.

        Duplicate indices are allowed: the last priority given for an index
        wins, as in a loop of single writes.
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
        if not (np.isfinite(pri).all() and pri.min() >= 0):
            raise SumTreeError("priorities must be finite and >= 0")
        if idx.size > 1:
            # Keep the last write of each index: a stable sort keeps the caller's
            # order among equal indices, then take the last of each run.
            order = np.argsort(idx, kind="stable")
            idx = idx[order]
            last = np.empty(idx.size, dtype=bool)
            np.not_equal(idx[1:], idx[:-1], out=last[:-1])
            last[-1] = True
            idx = idx[last]
            pri = pri[order][last]
        old = self._leaves.take(idx)
        self._leaves[idx] = pri
        self._update_min(idx, old, pri)
        self._propagate(idx // BLOCK)

    def _propagate(self, blocks: np.ndarray) -> None:
        """Recompute the sums of ``blocks`` and of all their ancestors, level by level."""
        node = blocks + self._n_nodes
        self._tree[node] = self._blocks.take(blocks, axis=0) @ self._ones
        tree, pairs = self._tree, self._pairs
        for _ in range(self.depth):
            node >>= 1
            children = pairs.take(node, axis=0)
            tree[node] = children[:, 0] + children[:, 1]

    def _update_min(self, idx: np.ndarray, old: np.ndarray, new: np.ndarray) -> None:
        """Keep each block's positive minimum exact after leaves ``idx`` changed from ``old`` to ``new``."""
        blk = idx // MIN_BLOCK
        # A block whose minimum leaf changed must be rescanned; elsewhere the
        # minimum can only fall, to the new value.
        rescan = blk[old == self._block_min[blk]]
        positive = new > 0
        np.minimum.at(self._block_min, blk[positive], new[positive])
        if rescan.size:
            self._block_min[rescan] = self._positive_min(self._min_chunks[rescan])

    @staticmethod
    def _positive_min(chunks: np.ndarray) -> np.ndarray:
        """Row-wise minimum over the positive entries (``inf`` for a row with none)."""
        return np.where(chunks > 0, chunks, np.float32(np.inf)).min(axis=1)

    def set_all(self, priorities: ArrayLike) -> None:
        """Replace every leaf at once (the first ``len(priorities)``; the rest become empty)."""
        pri = np.asarray(priorities, dtype=np.float32).ravel()
        if pri.size > self.capacity:
            raise SumTreeError(f"got {pri.size} priorities for a tree of capacity {self.capacity}")
        if pri.size and not (np.isfinite(pri).all() and pri.min() >= 0):
            raise SumTreeError("priorities must be finite and >= 0")
        self._leaves[:] = 0
        self._leaves[: pri.size] = pri
        n_blocks = self._blocks.shape[0]
        self._tree[:] = 0
        self._tree[self._n_nodes : self._n_nodes + n_blocks] = self._blocks.sum(
            axis=1, dtype=np.float64
        )
        for level in range(self.depth - 1, -1, -1):
            lo = 1 << level
            self._tree[lo : 2 * lo] = self._pairs[lo : 2 * lo, 0] + self._pairs[lo : 2 * lo, 1]
        self._block_min[:] = self._positive_min(self._min_chunks)

    def find(self, prefix_sums: ArrayLike) -> np.ndarray:
        """Leaves whose prefix-sum interval holds each value of ``prefix_sums``.

        Values must lie in ``[0, total)``. All values descend together, one
        level per step. A value within rounding of a boundary next to empty
        leaves can land on an empty leaf; ``sample`` redraws those.
        """
        u = np.array(prefix_sums, dtype=np.float64).ravel()
        total = self._tree[1]
        if u.size and (u.min() < 0 or u.max() >= total):
            raise SumTreeError(f"prefix sums must lie in [0, {total}), got [{u.min()}, {u.max()}]")
        tree = self._tree
        node = np.ones(u.size, dtype=np.int64)
        for _ in range(self.depth):
            node += node  # left child
            left = tree.take(node)
            right = u >= left
            u -= left * right
            node += right
        block = node - self._n_nodes
        # The last three levels, inside the block of 8 leaves.
        g = self._blocks.take(block, axis=0).astype(np.float64)
        half = g[:, 0] + g[:, 1] + g[:, 2] + g[:, 3]
        right = u >= half
        u -= half * right
        flat = g.ravel()
        pos = np.arange(u.size) * BLOCK + 4 * right
        pair = flat[pos] + flat[pos + 1]
        right = u >= pair
        u -= pair * right
        pos += 2 * right
        pos += u >= flat[pos]
        return block * BLOCK + pos % BLOCK

    def sample(self, batch_size: int, rng: np.random.Generator) -> np.ndarray:
        """Draw ``batch_size`` leaves, leaf ``i`` with probability ``leaf_i / total``, i.i.d."""
        total = self._tree[1]
        if not total > 0:
            raise SumTreeError("cannot sample: every priority is zero")
        u = rng.random(batch_size) * total
        leaves = self.find(np.minimum(u, np.nextafter(total, 0)))
        empty = self._leaves.take(leaves) == 0
        while empty.any():  # rounding at a boundary next to empty slots: redraw those
            redraw = np.minimum(rng.random(int(empty.sum())) * total, np.nextafter(total, 0))
            leaves[empty] = self.find(redraw)
            empty = self._leaves.take(leaves) == 0
        return leaves
