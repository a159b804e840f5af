"""Replay that stores each observation once, for buffers where observations are most of the bytes.

A plain ``ReplayBuffer`` keeps ``observations`` and ``next_observations`` in
every transition, so a DQN replay of 84×84 frames holds each frame twice.
Along one env column the observation after step ``t`` is the observation of
step ``t + 1``; it differs only where the environment reset (an episode's
final observation) and after a window's last step. ``CompactReplayBuffer``
therefore keeps observations in a ring of their own and, per transition, the
ids of its observation and of its next one. Fed whole windows
(``add_window``, or ``NStepWriter.add_window``), consecutive steps share their
frame; extra frames are stored only for episode ends and, when a window does
not continue the previous one, for its first step. The window's
``next_observations`` are stored once and become the next window's first
observations, so a stream of windows costs one frame per step plus one per
episode end.

An id counts the observations ever written (int64, never wrapping) and lives
in slot ``id % observation_capacity`` of the ring. Before the ring is written,
the oldest id that a stored transition, the previous window's shared last
frame or an n-step writer's pending step still needs is looked up; if the
write would reach it, the ring grows (one copy) instead. So the observations
of every transition that can be sampled are always there, whatever the
stream. The writers feeding the buffer register with it (weakly), so their
pending steps keep their frames through every write, not only their own
windows: a direct ``add`` or ``add_from`` between two windows, or a ``load``
(which moves the pending frames into the loaded ring). The ring starts at ``capacity`` plus a headroom (5% by default): it
must cover the episode ends among the stored transitions and the window being
written, which conservatively still counts the transitions it will
overwrite: episodes of more than 30 steps and windows of up to 1% of the
capacity fit in 5%.
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, DTypeLike

from optix_core.buffers.prioritized import PrioritizedReplayBuffer
from optix_core.buffers.replay import (
    BufferFileError,
    FieldSpec,
    ReplayBuffer,
    ReplayBufferError,
    TransitionDtypeError,
    TransitionFieldsError,
    TransitionShapeError,
    after_window,
    final_observations,
)
from optix_core.types import EpisodeData

# Each observation field and the stored field holding its ids.
_IDS = {"observations": "observation_ids", "next_observations": "next_observation_ids"}
_ID_SPEC = FieldSpec((), np.dtype(np.int64))
# Observations moved per copy when the ring grows or another buffer is copied:
# bounds the temporary array to a few MB of frames.
_COPY_CHUNK = 1024


class CompactReplayBuffer(ReplayBuffer):
    """A ``ReplayBuffer`` whose observations are stored once, in a ring shared by consecutive steps.

    Same fields, ``get``, ``sample``, ``len``, ``position``, ``full`` and
    ``save``/``load`` as ``ReplayBuffer``: ``get`` returns ``observations`` and
    ``next_observations`` as full arrays. ``fields`` must hold
    ``observations`` and ``next_observations`` of one spec
    (``transition_fields`` builds them). Feed it windows: ``add_window(data)``
    for 1-step transitions, ``NStepWriter(buffer, n, gamma, n_envs).add_window(data)``
    for n-step ones (and for the ``discounts`` field at n = 1). ``add`` still
    takes full transitions but stores both of their observations, since a
    batch of them does not say which are shared; ``add_from`` copies another
    compact buffer's transitions with their sharing intact.

    ``observation_headroom`` sizes the ring: ``capacity * (1 + headroom)``
    observations to begin with, and the same margin again whenever it grows.
    """

    def __init__(
        self,
        capacity: int,
        fields: Mapping[str, FieldSpec | tuple[Any, DTypeLike]],
        *,
        observation_headroom: float = 0.05,
        **kwargs: Any,
    ) -> None:
        if not observation_headroom >= 0:
            raise ReplayBufferError(
                f"observation_headroom must be >= 0 (a fraction of capacity), "
                f"got {observation_headroom}"
            )
        super().__init__(capacity, fields, **kwargs)
        spec = self.fields["observations"]
        self._slack = max(1, math.ceil(observation_headroom * self.capacity))
        self._obs = np.zeros((self.capacity + self._slack, *spec.shape), dtype=spec.dtype)
        self._written = 0  # observations ever written: the next one gets this id
        # per env column, the id of the frame after the last window: the next one's first
        self._carry = np.empty(0, dtype=np.int64)
        # writers holding rows back (NStepWriter): their pending observation ids must stay
        self._holders: weakref.WeakSet[Any] = weakref.WeakSet()

    def _stored_layout(self, fields: dict[str, FieldSpec]) -> dict[str, FieldSpec]:
        obs, nxt = fields.get("observations"), fields.get("next_observations")
        if obs is None or obs != nxt:
            raise TransitionFieldsError(
                "a CompactReplayBuffer needs fields observations and next_observations of one "
                f"shape and dtype (transition_fields builds them); got {obs} and {nxt}"
            )
        taken = set(_IDS.values()) & set(fields)
        if taken:
            raise ReplayBufferError(
                f"field names {sorted(taken)} are reserved for the compact buffer's ids"
            )
        layout = {name: spec for name, spec in fields.items() if name not in _IDS}
        layout.update(dict.fromkeys(_IDS.values(), _ID_SPEC))
        return layout

    @property
    def observation_capacity(self) -> int:
        """Observations the ring holds (``capacity`` plus headroom, more if it had to grow)."""
        return len(self._obs)

    @property
    def observations_written(self) -> int:
        """Observations ever stored; against transitions added, what sharing saved."""
        return self._written

    @property
    def nbytes(self) -> int:
        return super().nbytes + self._obs.nbytes

    # -- reading -------------------------------------------------------------

    def decoded(self, rows: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Stored rows with their observation ids read back as observations."""
        out = dict(rows)
        for name, key in _IDS.items():
            out[name] = self._read(out.pop(key))
        return out

    def encoded(self, rows: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Rows of full observations stored as ids: their frames written to the ring
        (each one, shared or not), kept as long as the buffer keeps anything."""
        out = dict(rows)
        frames = [np.asarray(out[name], dtype=self._obs.dtype) for name in _IDS]
        self._reserve(sum(len(f) for f in frames))
        for (name, key), f in zip(_IDS.items(), frames, strict=True):
            del out[name]
            out[key] = self._put(f)
        return out

    def _read(self, ids: np.ndarray) -> np.ndarray:
        return self._obs.take(ids % len(self._obs), axis=0)

    # -- writing -------------------------------------------------------------

    def _track_holder(self, holder: Any) -> None:
        """Keep the frames of ``holder``'s pending rows (its ``_held()``) until it adds them."""
        self._holders.add(holder)

    def _held_ids(self) -> Iterator[np.ndarray]:
        """The observation ids the registered writers' pending rows hold."""
        for holder in list(self._holders):
            rows = holder._held()
            for key in _IDS.values():
                if key in rows and rows[key].size:
                    yield rows[key]

    def add(self, **values: Any) -> np.ndarray:
        """Store full transitions (see ``ReplayBuffer.add``): two observations each."""
        batch, n = self._validate(values)
        return self._write(self.encoded(batch), n)

    def stored_window(
        self, data: EpisodeData, held: Mapping[str, np.ndarray] | None = None
    ) -> dict[str, np.ndarray]:
        """Store the window's observations once each; return its steps with their ids, ``[T, N]``.

        Step ``t``'s next observation is step ``t + 1``'s, except at an
        episode end (its final observation, stored on its own) and after the
        last step (``data.next_observations``, stored and kept as the next
        window's first observation when that window starts with it).
        ``held`` ids (an n-step writer's pending steps) are kept in the ring.
        """
        t_len, n_envs = np.shape(data.rewards)
        obs = self._observation_rows("observations", data.observations, (t_len, n_envs))
        after = self._observation_rows("next_observations", after_window(data), (n_envs,))
        done = np.logical_or(data.terminated, data.truncated)
        finals = None
        if done.any():
            finals = final_observations(data)
            finals = self._observation_rows("final_observations", finals, (t_len, n_envs))[done]
        shared = self._continues(obs[0])
        held = held or {}
        kept = [self._carry[shared], *(held[k].ravel() for k in _IDS.values() if k in held)]
        new_frames = int(n_envs - shared.sum()) + t_len * n_envs + int(done.sum())
        self._reserve(new_frames, np.concatenate(kept))

        ids = np.empty((t_len, n_envs), dtype=np.int64)
        ids[0, shared] = self._carry[shared]
        ids[0, ~shared] = self._put(obs[0, ~shared])
        ids[1:] = self._put(obs[1:].reshape(-1, *obs.shape[2:])).reshape(t_len - 1, n_envs)
        next_ids = np.empty_like(ids)
        next_ids[:-1] = ids[1:]
        next_ids[-1] = self._carry = self._put(after)
        if finals is not None:
            next_ids[done] = self._put(finals)
        steps = {
            "observation_ids": ids,
            "actions": np.asarray(data.actions),
            "rewards": np.asarray(data.rewards),
            "next_observation_ids": next_ids,
            "terminated": np.asarray(data.terminated, dtype=bool),
            "truncated": np.asarray(data.truncated, dtype=bool),
        }
        steps.update(data.policy_info)
        return steps

    def add_from(self, source: CompactReplayBuffer, indices: ArrayLike) -> np.ndarray:
        """Copy ``source``'s transitions at ``indices``, each observation once; return the slots.

        What resizing a buffer needs: ``new.add(**old.get(keep))`` would store
        two observations per transition, this keeps them shared.
        """
        if source.fields != self.fields:
            raise TransitionFieldsError(
                f"add_from needs a buffer of the same fields; got {source.fields}, "
                f"this buffer has {self.fields}"
            )
        idx = np.asarray(indices, dtype=np.int64).ravel()
        rows = {name: arr.take(idx, axis=0) for name, arr in source._data.items()}
        batch, n = self._validate(rows, self.stored_fields)
        both = np.concatenate([batch[key] for key in _IDS.values()])
        ids, where = np.unique(both, return_inverse=True)
        self._reserve(len(ids))
        first = self._written
        for start in range(0, len(ids), _COPY_CHUNK):
            self._put(source._read(ids[start : start + _COPY_CHUNK]))
        for i, key in enumerate(_IDS.values()):
            batch[key] = first + where[i * n : (i + 1) * n]
        return self._write(batch, n)

    def _observation_rows(self, name: str, values: Any, batch: tuple[int, ...]) -> np.ndarray:
        """``values`` as ``[*batch, *observation shape]``, checked before anything is written."""
        arr = np.asarray(values)
        spec = self.fields["observations"]
        if arr.shape != (*batch, *spec.shape):
            raise TransitionShapeError(
                f"{name} has shape {arr.shape}, expected {(*batch, *spec.shape)} "
                "for a window of rewards shaped (T, N)"
            )
        if arr.dtype != spec.dtype and not np.can_cast(arr.dtype, spec.dtype, "same_kind"):
            raise TransitionDtypeError(
                f"{name} has dtype {arr.dtype}, expected {spec.dtype} "
                f"(or a dtype of the same kind that casts to it)"
            )
        return arr

    def _continues(self, first: np.ndarray) -> np.ndarray:
        """Columns whose first observation is the frame stored after the previous window."""
        if self._carry.shape != (len(first),):  # no previous window of this width: nothing to share
            self._carry = np.full(len(first), -1, dtype=np.int64)
        live = self._carry >= max(self._written - len(self._obs), 0)
        shared = np.zeros(len(first), dtype=bool)
        stored = self._read(self._carry[live])
        shared[live] = _same_bytes(stored, first[live].astype(self._obs.dtype, copy=False))
        return shared

    def _reserve(self, count: int, kept: np.ndarray | None = None) -> None:
        """Make room for ``count`` new observations without overwriting one still needed.

        Needed are those of the stored transitions (even the ones the coming
        write may overwrite, which keeps this exact for any caller), those
        the registered writers' pending rows hold, and ``kept`` ids. The ring
        grows when its headroom does not suffice.
        """
        oldest = self._oldest_needed()
        for ids in (kept, *self._held_ids()):
            if ids is not None and ids.size:
                oldest = min(oldest, int(ids.min()))
        needed = self._written + count - oldest
        if needed > len(self._obs):
            self._regrow(oldest, needed + self._slack)

    def _oldest_needed(self) -> int:
        """Smallest id a stored transition refers to (``observations_written`` when empty).

        A transition's observation is never written after its next
        observation, so the observation ids bound both.
        """
        ids = self._data["observation_ids"][: self._size]
        return int(ids.min()) if ids.size else self._written

    def _regrow(self, oldest: int, size: int) -> None:
        """Move the observations from id ``oldest`` on into a ring of ``size`` slots."""
        ring = np.zeros((size, *self._obs.shape[1:]), dtype=self._obs.dtype)
        for start in range(oldest, self._written, _COPY_CHUNK):
            ids = np.arange(start, min(start + _COPY_CHUNK, self._written))
            ring[ids % size] = self._read(ids)
        self._obs = ring

    def _put(self, rows: np.ndarray) -> np.ndarray:
        """Write ``rows`` at the next ids (``_reserve`` made room) and return those ids."""
        start = self._written % len(self._obs)
        head = min(len(rows), len(self._obs) - start)
        self._obs[start : start + head] = rows[:head]
        self._obs[: len(rows) - head] = rows[head:]
        ids = np.arange(self._written, self._written + len(rows))
        self._written += len(rows)
        return ids

    # -- persistence ---------------------------------------------------------

    def _state_arrays(self) -> dict[str, np.ndarray]:
        """The ids go with the fields; ``observations`` holds every frame from the oldest needed on."""
        arrays = super()._state_arrays()
        oldest = self._oldest_needed()
        arrays["observations"] = self._read(np.arange(oldest, self._written))
        arrays["__first_observation_id"] = np.asarray(oldest, dtype=np.int64)
        return arrays

    def _check_file(self, arrays: Mapping[str, np.ndarray], path: str) -> None:
        super()._check_file(arrays, path)
        obs, first = arrays.get("observations"), arrays.get("__first_observation_id")
        if obs is None or first is None or first.shape != () or int(first) < 0:
            raise BufferFileError(
                f"{path} lacks its observations: it was not saved from a CompactReplayBuffer"
            )
        spec = self.fields["observations"]
        if obs.shape[1:] != spec.shape or obs.dtype != spec.dtype:
            raise BufferFileError(
                f"{path}: observations have shape {obs.shape[1:]} and dtype {obs.dtype}, "
                f"expected {spec.shape} and {spec.dtype}"
            )
        if int(arrays["__size"]) == 0:
            return
        lo, hi = int(first), int(first) + len(obs)
        for key in _IDS.values():
            ids = arrays[f"field.{key}"]
            if ids.min() < lo or ids.max() >= hi:
                raise BufferFileError(
                    f"{path}: {key} name observations outside the saved ones ([{lo}, {hi}))"
                )

    def _restore(self, arrays: Mapping[str, np.ndarray]) -> None:
        """Load the file's transitions and frames; registered writers' pending frames come along.

        A writer's pending steps refer to frames of the ring being replaced
        (the plain buffer's writer holds the frames themselves and adds them
        to the loaded buffer later): they are stored after the file's frames
        and the writers' ids rewritten to match.
        """
        holders = [(h, h._held()) for h in list(self._holders)]
        holders = [(h, rows) for h, rows in holders if any(k in rows for k in _IDS.values())]
        pending = [rows[k] for _, rows in holders for k in _IDS.values() if k in rows]
        old = np.unique(np.concatenate(pending)) if pending else np.empty(0, dtype=np.int64)
        frames = self._read(old)  # before the ring is replaced
        super()._restore(arrays)
        obs = arrays["observations"]
        if len(obs) + len(old) > len(self._obs):
            size = len(obs) + len(old) + self._slack
            self._obs = np.zeros((size, *obs.shape[1:]), dtype=obs.dtype)
        self._written = int(arrays["__first_observation_id"])
        self._put(obs)
        new = self._put(frames)
        for holder, rows in holders:
            for key in _IDS.values():
                if key in rows:
                    rows[key] = new[np.searchsorted(old, rows[key])]
            holder._set_held(rows)
        self._carry = np.empty(0, dtype=np.int64)


class CompactPrioritizedReplayBuffer(CompactReplayBuffer, PrioritizedReplayBuffer):
    """A ``PrioritizedReplayBuffer`` whose observations are stored once (see ``CompactReplayBuffer``).

    Sampling, importance weights, ``update_priorities`` and the saved
    priorities are the prioritized buffer's; the storage is the compact one's.
    """

    def __init__(
        self,
        capacity: int,
        fields: Mapping[str, FieldSpec | tuple[Any, DTypeLike]],
        *,
        alpha: float = 0.6,
        beta: float = 0.4,
        seed: int | np.random.Generator | None = None,
        observation_headroom: float = 0.05,
    ) -> None:
        super().__init__(
            capacity,
            fields,
            observation_headroom=observation_headroom,
            alpha=alpha,
            beta=beta,
            seed=seed,
        )


def _same_bytes(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise bitwise equality: a shared frame must come back exactly as given (-0.0, NaN)."""
    width = a.itemsize * math.prod(a.shape[1:])
    a = np.ascontiguousarray(a).view(np.uint8).reshape(len(a), width)
    b = np.ascontiguousarray(b).view(np.uint8).reshape(len(b), width)
    return (a == b).all(axis=1)
