"""n-step transitions for any replay buffer (Sutton & Barto 2018, eq. 7.1; Rainbow's multi-step target).

An n-step transition from step ``t`` carries the start of the window
``(s_t, a_t)``, the discounted reward sum ``R = Σ_{k<m} γ^k r_{t+k}``, the
observation ``s_{t+m}`` after it, whether the episode terminated there, and
the bootstrap discount ``γ^m``, where ``m = n`` normally and ``m < n`` when
the episode ended sooner. The learner's target is then the same for every
transition::

    y = R + discounts * (1 - terminated) * max_a Q(next_observations, a)

The writer works on the buffer's stored layout (``buffer.stored_fields``,
written through ``buffer.add_stored``), so it feeds a uniform
``ReplayBuffer``, a ``PrioritizedReplayBuffer`` (new n-step transitions enter
at maximum priority, as any do) and a ``CompactReplayBuffer``, whose rows hold
observation ids: there the pending steps hold ids, not frames.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from optix_core.buffers.replay import (
    ReplayBuffer,
    ReplayBufferError,
    TransitionFieldsError,
    TransitionShapeError,
)
from optix_core.types import EpisodeData

_END_FIELDS = ("rewards", "next_observations", "terminated", "discounts")


def _from_span_end(name: str) -> bool:
    """Whether a stored field describes where an n-step span ends rather than where it starts.

    Every ``next_*`` field does (``next_observations``, or the
    ``next_observation_ids`` of a compact buffer), besides the summed reward,
    the end flag and the discount.
    """
    return name in ("rewards", "terminated", "discounts") or name.startswith("next_")


class NStepWriter:
    """Turns each env column's stream of 1-step transitions into n-step ones and adds them to ``buffer``.

    The buffer needs the fields ``rewards``, ``next_observations``,
    ``terminated`` and ``discounts`` (``transition_fields(..., discounts=True)``).
    ``next_*`` fields are taken from the last step of each n-step span, every
    other field (``observations``, ``actions``, anything extra) from its
    first. Per column, the writer holds at most ``n - 1`` steps not yet
    emitted; an episode end (terminated or truncated) emits all of that
    column's pending steps with shorter spans. For a truncated end,
    ``next_observations`` must be the episode's real final observation so the
    target bootstraps from it.
    """

    def __init__(self, buffer: ReplayBuffer, n: int, gamma: float, n_envs: int = 1) -> None:
        missing = [f for f in _END_FIELDS if f not in buffer.fields]
        if missing:
            raise TransitionFieldsError(
                f"an n-step buffer needs the fields {list(_END_FIELDS)}; missing {missing} "
                "(build it with transition_fields(..., discounts=True))"
            )
        if int(n) < 1:
            raise ReplayBufferError(f"n must be at least 1, got {n}")
        if not 0.0 <= gamma <= 1.0:
            raise ReplayBufferError(f"gamma must lie in [0, 1], got {gamma}")
        if int(n_envs) < 1:
            raise ReplayBufferError(f"n_envs must be at least 1, got {n_envs}")
        self.buffer = buffer
        self.n, self.gamma, self.n_envs = int(n), float(gamma), int(n_envs)
        stored = buffer.stored_fields
        self._carried = [name for name in stored if not _from_span_end(name)]
        self._next = [name for name in stored if name.startswith("next_")]
        self._pending = {
            name: np.zeros((self.n_envs, self.n, *stored[name].shape), stored[name].dtype)
            for name in self._carried
        }
        self._rewards = np.zeros((self.n_envs, self.n), dtype=np.float64)
        self._count = np.zeros(self.n_envs, dtype=np.int64)
        # each column's last next_* fields: where a cut (``cut``) bootstraps from
        self._last_next = {
            name: np.zeros((self.n_envs, *stored[name].shape), stored[name].dtype)
            for name in self._next
        }
        self._powers = self.gamma ** np.arange(self.n + 1)
        # a compact buffer's pending rows hold observation ids: it keeps their frames
        buffer._track_holder(self)

    @property
    def pending(self) -> np.ndarray:
        """Steps per column waiting for their n-step span to complete."""
        return self._count.copy()

    def _held(self) -> dict[str, np.ndarray]:
        """The pending steps' carried fields and their columns' last ``next_*`` fields,
        which the buffer must keep valid until they are added."""
        waiting = np.arange(self.n) < self._count[:, None]
        held = {name: self._pending[name][waiting] for name in self._carried}
        return {**held, **{name: self._last_next[name][self._count > 0] for name in self._next}}

    def _set_held(self, rows: dict[str, np.ndarray]) -> None:
        """Rewrite what ``_held`` gave, in its order (ids the buffer moved)."""
        waiting = np.arange(self.n) < self._count[:, None]
        for name, values in rows.items():
            if name in self._last_next:
                self._last_next[name][self._count > 0] = values
            else:
                self._pending[name][waiting] = values

    def state_arrays(self) -> dict[str, np.ndarray]:
        """The pending steps, observations as frames, for a checkpoint (``restore``)."""
        held = self.buffer.decoded(self._held())
        return {
            "count": self._count.copy(),
            "rewards": self._rewards.copy(),
            **{f"held.{name}": values for name, values in held.items()},
        }

    def restore(self, arrays: Mapping[str, np.ndarray]) -> None:
        """Hold the steps ``state_arrays`` gave as if this writer had taken them: the
        episodes they belong to go on from here."""
        count, rewards = np.asarray(arrays["count"]), np.asarray(arrays["rewards"])
        if count.shape != self._count.shape or rewards.shape != self._rewards.shape:
            raise ReplayBufferError(
                f"the saved pending steps are for {rewards.shape} (columns, n); this writer "
                f"holds {self._rewards.shape}"
            )
        held = {name[5:]: arrays[name] for name in arrays if name.startswith("held.")}
        rows = self.buffer.encoded(held)
        self._count[:] = count
        self._rewards[:] = rewards
        self._set_held(rows)

    def reset(self) -> None:
        """Drop every pending step (for example after the environments were reset by hand)."""
        self._count[:] = 0

    def add(self, *, truncated: ArrayLike, **step: Any) -> np.ndarray:
        """Take one step of every column; add the n-step transitions it completes; return their slots.

        ``step`` holds every stored field except ``discounts``, shaped
        ``[n_envs, ...]`` (or unbatched when ``n_envs == 1``), and
        ``truncated`` the time-limit flags. Stored fields are the buffer's
        fields, except for a ``CompactReplayBuffer``, whose steps hold
        observation ids: feed that one windows, through ``add_window``.
        """
        # discounts are the writer's to fill: give the check a placeholder shaped like rewards.
        placeholder = np.zeros(np.shape(step.get("rewards")), np.float32)
        batch, n = self.buffer._validate(
            {**step, "discounts": placeholder}, self.buffer.stored_fields
        )
        if n != self.n_envs:
            raise TransitionShapeError(
                f"got {n} transitions, expected one per env column ({self.n_envs})"
            )
        trunc = np.asarray(truncated, dtype=bool).reshape(-1)
        if trunc.shape != (self.n_envs,):
            raise TransitionShapeError(
                f"truncated has {trunc.size} entries, expected one per env column ({self.n_envs})"
            )
        terminated = batch["terminated"].astype(bool)
        cols = np.arange(self.n_envs)
        slot = self._count
        for name in self._carried:
            self._pending[name][cols, slot] = batch[name]
        self._rewards[cols, slot] = batch["rewards"]
        self._count += 1

        done = terminated | trunc
        out: list[dict[str, np.ndarray]] = []
        full = np.flatnonzero((self._count == self.n) & ~done)
        if full.size:
            out.append(
                {
                    **{name: self._pending[name][full, 0] for name in self._carried},
                    **{name: batch[name][full] for name in self._next},
                    "rewards": self._rewards[full] @ self._powers[: self.n],
                    "terminated": np.zeros(full.size, dtype=bool),
                    "discounts": np.full(full.size, self._powers[self.n]),
                }
            )
            for name in self._carried:
                self._pending[name][full, :-1] = self._pending[name][full, 1:]
            self._rewards[full, :-1] = self._rewards[full, 1:]
            self._count[full] -= 1
        for c in np.flatnonzero(done):
            out.append(self._ended(c, {name: batch[name][c] for name in self._next}, terminated[c]))
            self._count[c] = 0
        for name in self._next:
            self._last_next[name][cols] = batch[name]
        if not out:
            return np.empty(0, dtype=np.int64)
        return self.buffer.add_stored(**_merged(out))

    def cut(self) -> dict[str, np.ndarray]:
        """The pending steps as the transitions their episodes' truncation after the
        last step would add, in the buffer's stored layout; the writer is left as it is.

        What a resumed run makes of the steps when it starts new episodes: the
        ones in progress end where the checkpoint was taken, bootstrapping from
        the observation after their last step.
        """
        ended = [
            self._ended(c, {name: self._last_next[name][c] for name in self._next}, False)
            for c in np.flatnonzero(self._count)
        ]
        if ended:
            return _merged(ended)
        stored = self.buffer.stored_fields
        return {name: np.zeros((0, *spec.shape), spec.dtype) for name, spec in stored.items()}

    def _ended(self, c: int, after: dict[str, np.ndarray], terminated: bool) -> dict[str, Any]:
        """Column ``c``'s pending steps as transitions ending at its episode's end, whose
        ``next_*`` fields are ``after``."""
        m = int(self._count[c])
        # R_j = r_j + γ R_{j+1}: every pending start gets the rest of the episode.
        returns = np.empty(m)
        acc = 0.0
        for j in range(m - 1, -1, -1):
            acc = self._rewards[c, j] + self.gamma * acc
            returns[j] = acc
        return {
            **{name: self._pending[name][c, :m] for name in self._carried},
            **{name: np.repeat(after[name][None], m, axis=0) for name in self._next},
            "rewards": returns,
            "terminated": np.full(m, terminated),
            "discounts": self._powers[m - np.arange(m)],
        }

    def add_window(self, data: EpisodeData) -> np.ndarray:
        """Feed a loop window step by step (columns must match ``n_envs``); return the slots written.

        Buffer fields beyond the standard ones are taken from ``data.policy_info``.
        """
        steps = self.buffer.stored_window(data, held=self._held())
        names = [name for name in self.buffer.stored_fields if name != "discounts"]
        written = [
            self.add(truncated=steps["truncated"][t], **{k: steps[k][t] for k in names})
            for t in range(steps["rewards"].shape[0])
        ]
        return np.concatenate(written)


def _merged(parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    return {key: np.concatenate([part[key] for part in parts]) for key in parts[0]}
