"""Shuffled minibatch indices for epochs of on-policy updates.

PPO-style learners pass over one window several times in shuffled
minibatches. These helpers return index arrays only, so the caller slices
whatever arrays it holds (numpy or a framework's tensors) with the same
indices, and the window is moved to the framework once.

Recurrent policies need their minibatches in whole time-ordered sequences, so
that the hidden state can be unrolled from a known start: with ``seq_len``,
each env column of the time-major window is cut into consecutive chunks of
``seq_len`` steps, and chunks (not steps) are shuffled.
"""

from __future__ import annotations

import numpy as np


class MinibatchError(ValueError):
    """Minibatch sizes or the window layout do not fit together."""


def make_minibatches(
    n_samples: int,
    batch_size: int,
    *,
    rng: np.random.Generator | int | None = None,
    drop_last: bool = False,
    seq_len: int | None = None,
    n_envs: int = 1,
) -> list[np.ndarray]:
    """Indices of one epoch's minibatches over ``n_samples`` samples, shuffled.

    Without ``seq_len``: 1-D index arrays of ``batch_size`` (the last one
    shorter unless ``drop_last``), a permutation of ``range(n_samples)``
    between them.

    With ``seq_len``: the samples are a time-major window ``[T, n_envs]``
    flattened row-major (sample ``t * n_envs + e`` is step ``t`` of column
    ``e``; ``T = n_samples / n_envs`` must be a multiple of ``seq_len``). Each
    minibatch is an index array ``[seq_len, B]`` with
    ``B = batch_size // seq_len`` sequences, so ``x.reshape(T * n_envs, ...)[idx]``
    is a time-major ``[seq_len, B, ...]`` batch. Sequences restart at chunk
    boundaries, never mid-chunk; the episode starts inside a chunk are the
    caller's to mask with the window's done flags.
    """
    if int(n_samples) < 1:
        raise MinibatchError(f"n_samples must be at least 1, got {n_samples}")
    if int(batch_size) < 1:
        raise MinibatchError(f"batch_size must be at least 1, got {batch_size}")
    gen = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    if seq_len is None:
        order = gen.permutation(int(n_samples))
        return _cut(order, int(batch_size), drop_last)

    seq_len, n_envs = int(seq_len), int(n_envs)
    if seq_len < 1 or n_envs < 1:
        raise MinibatchError(f"seq_len and n_envs must be at least 1, got {seq_len} and {n_envs}")
    if n_samples % n_envs:
        raise MinibatchError(
            f"n_samples={n_samples} is not a whole number of steps of n_envs={n_envs} columns"
        )
    n_steps = n_samples // n_envs
    if n_steps % seq_len:
        raise MinibatchError(
            f"the window has {n_steps} steps per column, not a multiple of seq_len={seq_len}; "
            f"pick a seq_len that divides {n_steps}"
        )
    per_batch = batch_size // seq_len
    if per_batch < 1:
        raise MinibatchError(
            f"batch_size={batch_size} is smaller than one sequence (seq_len={seq_len}); "
            f"use batch_size >= {seq_len}"
        )
    # Chunk c of column e starts at step c * seq_len; its step s has flat index
    # (c * seq_len + s) * n_envs + e.
    n_chunks = n_steps // seq_len
    starts = (np.arange(n_chunks)[:, None] * seq_len * n_envs + np.arange(n_envs)[None, :]).ravel()
    offsets = np.arange(seq_len)[:, None] * n_envs
    return [
        offsets + chunk[None, :] for chunk in _cut(gen.permutation(starts), per_batch, drop_last)
    ]


def _cut(order: np.ndarray, size: int, drop_last: bool) -> list[np.ndarray]:
    stop = len(order) - len(order) % size if drop_last else len(order)
    return [order[i : i + size] for i in range(0, stop, size)]
