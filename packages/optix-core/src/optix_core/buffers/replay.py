"""Uniform experience replay in preallocated numpy arrays.

One array per field, allocated once at full capacity, written circularly: a
vector environment's ``N`` transitions go in with one slice assignment per
field, and a sample is one gather per field. Each field keeps the dtype it was
declared with (float32 observations stay float32, discrete actions stay
integers), so the bytes in memory are the bytes of the data and backends can
hand batches to their framework without conversion.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import DTypeLike

from optix_core.types import EpisodeData


class ReplayBufferError(ValueError):
    """Base class of the replay buffers' input errors."""


class TransitionShapeError(ReplayBufferError):
    """A field given to ``add`` has the wrong shape, or fields disagree on the batch size."""


class TransitionDtypeError(ReplayBufferError):
    """A field given to ``add`` has a dtype that cannot be stored without loss."""


class TransitionFieldsError(ReplayBufferError):
    """``add`` got a field the buffer does not have, or lacks one it has."""


class NotEnoughTransitionsError(ReplayBufferError):
    """A sample asked for more transitions than are stored."""


class BufferFileError(ReplayBufferError):
    """A saved buffer does not match the buffer it is loaded into."""


@dataclass(frozen=True)
class FieldSpec:
    """Shape of one transition's entry (without the batch axis) and its dtype."""

    shape: tuple[int, ...]
    dtype: np.dtype

    @classmethod
    def of(cls, spec: FieldSpec | tuple[Any, DTypeLike]) -> FieldSpec:
        if isinstance(spec, FieldSpec):
            return spec
        shape, dtype = spec
        shape = (int(shape),) if np.isscalar(shape) else tuple(int(s) for s in shape)
        return cls(shape, np.dtype(dtype))


def transition_fields(
    observation_shape: tuple[int, ...],
    action_shape: tuple[int, ...] = (),
    *,
    observation_dtype: DTypeLike = np.float32,
    action_dtype: DTypeLike = np.float32,
    discounts: bool = False,
) -> dict[str, FieldSpec]:
    """The standard off-policy transition: ``(s, a, r, s', terminated)``.

    ``terminated`` alone decides whether the target bootstraps; a truncated
    step bootstraps from ``next_observations`` (its real final observation),
    so truncation needs no field. ``discounts=True`` adds the per-transition
    bootstrap discount that n-step transitions carry (see ``NStepWriter``).
    """
    obs = FieldSpec.of((observation_shape, observation_dtype))
    fields = {
        "observations": obs,
        "actions": FieldSpec.of((action_shape, action_dtype)),
        "rewards": FieldSpec((), np.dtype(np.float32)),
        "next_observations": obs,
        "terminated": FieldSpec((), np.dtype(np.bool_)),
    }
    if discounts:
        fields["discounts"] = FieldSpec((), np.dtype(np.float32))
    return fields


def window_transitions(data: EpisodeData) -> dict[str, np.ndarray]:
    """The ``[T, N, ...]`` transitions of one loop window, each with its real next observation.

    The observation after step ``t`` is ``observations[t + 1]``, except after
    the window's last step (``data.next_observations``) and after a step that
    ended an episode (``data.final_observations[t]``: the environment has
    already reset, so ``observations[t + 1]`` belongs to the next episode).
    """
    obs = np.asarray(data.observations)
    next_obs = np.concatenate([obs[1:], after_window(data)[None]], axis=0)
    done = np.logical_or(data.terminated, data.truncated)
    if done.any():
        next_obs[done] = final_observations(data)[done]
    return {
        "observations": obs,
        "actions": np.asarray(data.actions),
        "rewards": np.asarray(data.rewards),
        "next_observations": next_obs,
        "terminated": np.asarray(data.terminated, dtype=bool),
        "truncated": np.asarray(data.truncated, dtype=bool),
    }


def after_window(data: EpisodeData) -> np.ndarray:
    """``data.next_observations``, which replay cannot do without: the window's last steps need it."""
    if data.next_observations is None:
        raise TransitionFieldsError(
            "EpisodeData.next_observations is None; replay needs the observation after the window"
        )
    return np.asarray(data.next_observations)


def final_observations(data: EpisodeData) -> np.ndarray:
    """``data.final_observations``, needed as soon as an episode ended inside the window."""
    if data.final_observations is None:
        raise TransitionFieldsError(
            "EpisodeData.final_observations is None but episodes ended in the window; "
            "replay needs each episode's last observation"
        )
    return np.asarray(data.final_observations)


def _batched(shape: tuple[int, ...]) -> str:
    """How a batch of ``N`` entries of ``shape`` is written in error messages: ``(N, 8)``."""
    return "(" + ", ".join(["N", *map(str, shape)]) + (",)" if not shape else ")")


class ReplayBuffer:
    """A circular buffer of transitions, sampled uniformly with replacement.

    ``fields`` maps each name to ``(shape, dtype)`` (or a ``FieldSpec``);
    ``transition_fields`` builds the usual set. ``add`` takes every field,
    either one transition (``shape``) or ``N`` at once (``[N, *shape]``);
    values are cast to the field's dtype when that loses nothing of their kind
    (float64 to float32, int64 to int32) and refused otherwise (floats into an
    integer action field).
    """

    def __init__(
        self,
        capacity: int,
        fields: Mapping[str, FieldSpec | tuple[Any, DTypeLike]],
        *,
        seed: int | np.random.Generator | None = None,
    ) -> None:
        if int(capacity) < 1:
            raise ReplayBufferError(f"capacity must be at least 1, got {capacity}")
        if not fields:
            raise ReplayBufferError("a replay buffer needs at least one field")
        reserved = {"indices", "weights"} & set(fields)
        if reserved:
            raise ReplayBufferError(
                f"field names {sorted(reserved)} are reserved for sample output"
            )
        self.capacity = int(capacity)
        self.fields: dict[str, FieldSpec] = {name: FieldSpec.of(s) for name, s in fields.items()}
        self.stored_fields = self._stored_layout(self.fields)
        self._data = {
            name: np.zeros((self.capacity, *spec.shape), dtype=spec.dtype)
            for name, spec in self.stored_fields.items()
        }
        self._pos = 0
        self._size = 0
        self.rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)

    @classmethod
    def from_spaces(
        cls,
        capacity: int,
        observation_space: Any,
        action_space: Any,
        *,
        discounts: bool = False,
        **kwargs: Any,
    ) -> ReplayBuffer:
        """A buffer of standard transitions for gymnasium ``Box``/``Discrete`` spaces.

        Further keyword arguments go to the constructor (``seed``, and ``alpha``
        and ``beta`` for the prioritized buffer).
        """
        fields = transition_fields(
            observation_space.shape,
            action_space.shape,
            observation_dtype=observation_space.dtype,
            action_dtype=action_space.dtype,
            discounts=discounts,
        )
        return cls(capacity, fields, **kwargs)

    def _stored_layout(self, fields: dict[str, FieldSpec]) -> dict[str, FieldSpec]:
        """The arrays the buffer keeps, one row per transition: here exactly its fields.

        A subclass that stores a field elsewhere (``CompactReplayBuffer`` keeps
        observation ids in place of the observations) returns its own layout.
        """
        return dict(fields)

    def __len__(self) -> int:
        return self._size

    @property
    def size(self) -> int:
        """Transitions stored (at most ``capacity``)."""
        return self._size

    @property
    def position(self) -> int:
        """Slot the next transition goes to."""
        return self._pos

    @property
    def full(self) -> bool:
        return self._size == self.capacity

    @property
    def nbytes(self) -> int:
        """Bytes of every array the buffer allocated."""
        return sum(a.nbytes for a in self._data.values())

    def _validate(
        self, values: Mapping[str, Any], fields: Mapping[str, FieldSpec] | None = None
    ) -> tuple[dict[str, np.ndarray], int]:
        """Check names, shapes and dtypes against ``fields`` (default: the buffer's).

        Returns the values as ``[N, *shape]`` arrays and ``N``.
        """
        fields = self.fields if fields is None else fields
        missing = fields.keys() - values.keys()
        unknown = values.keys() - fields.keys()
        if missing or unknown:
            parts = []
            if missing:
                parts.append(f"missing {sorted(missing)}")
            if unknown:
                parts.append(f"unknown {sorted(unknown)}")
            raise TransitionFieldsError(
                f"add() got the wrong fields ({'; '.join(parts)}); expected {sorted(fields)}"
            )
        batch: dict[str, np.ndarray] = {}
        n = None
        for name, spec in fields.items():
            arr = np.asarray(values[name])
            if arr.shape == spec.shape:
                arr = arr[None]
            elif arr.shape[1:] != spec.shape:
                raise TransitionShapeError(
                    f"{name} has shape {arr.shape}, expected {spec.shape} for one transition "
                    f"or {_batched(spec.shape)} for N of them"
                )
            if arr.dtype != spec.dtype and not np.can_cast(arr.dtype, spec.dtype, "same_kind"):
                raise TransitionDtypeError(
                    f"{name} has dtype {arr.dtype}, expected {spec.dtype} "
                    f"(or a dtype of the same kind that casts to it)"
                )
            if n is None:
                n = arr.shape[0]
            elif arr.shape[0] != n:
                raise TransitionShapeError(
                    f"{name} holds {arr.shape[0]} transitions but earlier fields hold {n}; "
                    "every field needs the same leading size"
                )
            batch[name] = arr
        assert n is not None
        if n > self.capacity:
            raise TransitionShapeError(
                f"add() got {n} transitions at once, more than the capacity {self.capacity}; "
                f"add at most {self.capacity} at a time"
            )
        return batch, n

    def add(self, **values: Any) -> np.ndarray:
        """Store one transition or a batch of ``N``; return the slots written.

        When the buffer is full the oldest transitions are overwritten.
        """
        return self._write(*self._validate(values))

    def add_stored(self, **rows: Any) -> np.ndarray:
        """Store rows given in the buffer's own layout (``stored_fields``); return the slots written.

        For this buffer the layout is its fields, so this is ``add``.
        ``NStepWriter`` writes through it, which lets it feed any layout.
        """
        return self._write(*self._validate(rows, self.stored_fields))

    def _write(self, batch: dict[str, np.ndarray], n: int) -> np.ndarray:
        """Write ``n`` checked rows of the stored layout at the write position; return their slots."""
        idx = (self._pos + np.arange(n)) % self.capacity
        first = min(n, self.capacity - self._pos)
        for name, arr in batch.items():
            dest = self._data[name]
            dest[self._pos : self._pos + first] = arr[:first]
            if first < n:
                dest[: n - first] = arr[first:]
        self._pos = (self._pos + n) % self.capacity
        self._size = min(self._size + n, self.capacity)
        return idx

    def _track_holder(self, holder: Any) -> None:
        """Note a writer that holds stored rows back to add later (an ``NStepWriter``).

        A layout whose rows point into other storage (``CompactReplayBuffer``'s
        observation ids) keeps the holder's pending rows' targets, whatever
        else is written meanwhile (``add``, windows, ``load``); this buffer's
        rows hold their values, so it keeps nothing.
        """

    def stored_window(
        self, data: EpisodeData, held: Mapping[str, np.ndarray] | None = None
    ) -> dict[str, np.ndarray]:
        """The window's steps in the stored layout, ``[T, N, ...]``, plus ``truncated``.

        Fields beyond the standard ones come from ``data.policy_info``. A
        layout whose rows point into other storage (``CompactReplayBuffer``'s
        observation ids) writes that storage here. ``held`` names stored rows
        a caller keeps back to add later (``NStepWriter``'s pending steps),
        whose targets such a layout must keep; this buffer's rows hold their
        values, so it keeps nothing.
        """
        steps = window_transitions(data)
        steps.update(data.policy_info)
        return steps

    def add_window(self, data: EpisodeData) -> np.ndarray:
        """Store every transition of a loop window (time-major order); return the slots written.

        Fields of the buffer beyond the standard ones are taken from
        ``data.policy_info`` by name. A window of more than ``capacity``
        transitions goes in as consecutive adds, so its last ones stay.
        """
        steps = self.stored_window(data)
        rows = steps["rewards"].size
        flat = {
            k: v.reshape(rows, *v.shape[2:]) for k, v in steps.items() if k in self.stored_fields
        }
        return np.concatenate(
            [
                self.add_stored(**{k: v[start : start + self.capacity] for k, v in flat.items()})
                for start in range(0, rows, self.capacity)
            ]
        )

    def get(self, indices: np.ndarray) -> dict[str, np.ndarray]:
        """The stored transitions at ``indices``, one array per field."""
        # take() is several times faster than fancy indexing for row gathers.
        idx = np.asarray(indices, dtype=np.int64)
        return self.decoded({name: arr.take(idx, axis=0) for name, arr in self._data.items()})

    def decoded(self, rows: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Rows in the stored layout (``stored_fields``) as transitions of ``fields``,
        which ``add`` takes; here the two layouts are one."""
        return rows

    def encoded(self, rows: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The inverse of ``decoded``: rows of ``fields`` in the stored layout, with
        whatever storage they point into written; here the two layouts are one."""
        return rows

    def _check_batch_size(self, batch_size: int) -> None:
        if int(batch_size) < 1:
            raise NotEnoughTransitionsError(f"batch_size must be at least 1, got {batch_size}")
        if batch_size > self._size:
            raise NotEnoughTransitionsError(
                f"cannot sample {batch_size} transitions: the buffer holds {self._size}; "
                f"sample at most {self._size} or add more first"
            )

    def sample(self, batch_size: int) -> dict[str, np.ndarray]:
        """``batch_size`` transitions drawn uniformly with replacement, plus their ``indices``."""
        self._check_batch_size(batch_size)
        idx = self.rng.integers(0, self._size, size=batch_size)
        out = self.get(idx)
        out["indices"] = idx
        return out

    # -- persistence ---------------------------------------------------------

    def _state_arrays(self) -> dict[str, np.ndarray]:
        """Everything ``save`` writes besides the fields (subclasses add theirs)."""
        return {
            "__position": np.asarray(self._pos, dtype=np.int64),
            "__size": np.asarray(self._size, dtype=np.int64),
            "__capacity": np.asarray(self.capacity, dtype=np.int64),
        }

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the stored transitions and the write position to one ``.npz`` (no pickle).

        Returns the path written (``.npz`` is appended when missing, as numpy does).
        """
        path = Path(path)
        if path.suffix != ".npz":
            path = path.with_name(path.name + ".npz")
        arrays = {f"field.{name}": arr[: self._size] for name, arr in self._data.items()}
        arrays.update(self._state_arrays())
        np.savez(path, **arrays)
        return path

    def load(self, path: str | os.PathLike[str]) -> None:
        """Restore a buffer written by ``save``; its fields must match this buffer's spec.

        Everything is checked before anything is changed, so a refused file
        leaves the buffer as it was.
        """
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
        self._check_file(arrays, str(path))
        self._restore(arrays)

    def _check_file(self, arrays: Mapping[str, np.ndarray], path: str) -> None:
        """Raise ``BufferFileError`` unless ``arrays`` is a saved buffer of this spec."""
        names = {k.removeprefix("field.") for k in arrays if k.startswith("field.")}
        if names != set(self.stored_fields):
            raise BufferFileError(
                f"{path} holds fields {sorted(names)}, expected {sorted(self.stored_fields)}"
            )
        for key in ("__position", "__size", "__capacity"):
            if key not in arrays or arrays[key].shape != ():
                raise BufferFileError(f"{path} lacks the scalar {key!r}; was it written by save()?")
        size, pos = int(arrays["__size"]), int(arrays["__position"])
        if int(arrays["__capacity"]) != self.capacity:
            raise BufferFileError(
                f"{path} was saved from a buffer of capacity {int(arrays['__capacity'])}, "
                f"expected {self.capacity}"
            )
        if not 0 <= size <= self.capacity or not 0 <= pos < self.capacity:
            raise BufferFileError(
                f"{path} holds {size} transitions at position {pos}; expected "
                f"0 <= size <= {self.capacity} and 0 <= position < {self.capacity}"
            )
        for name, spec in self.stored_fields.items():
            arr = arrays[f"field.{name}"]
            if arr.shape != (size, *spec.shape) or arr.dtype != spec.dtype:
                raise BufferFileError(
                    f"{path}: field {name} has shape {arr.shape} and dtype {arr.dtype}, "
                    f"expected {(size, *spec.shape)} and {spec.dtype}"
                )

    def _restore(self, arrays: Mapping[str, np.ndarray]) -> None:
        """Copy checked ``arrays`` into the buffer."""
        size = int(arrays["__size"])
        for name in self.stored_fields:
            self._data[name][:size] = arrays[f"field.{name}"]
        self._size, self._pos = size, int(arrays["__position"])
