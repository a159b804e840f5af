"""The replay memory of the off-policy agents, in numpy: what a window stores and a step draws.

``Replay`` holds the agent's experience in optix-core's compact buffers and
hands out host arrays; a backend turns them into its tensors. It is one
class for every backend so that a checkpoint's ``replay.npz``, the random
stream of the draws and the rules of what a draw may see are the same on
torch, TensorFlow and JAX.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from optix_core.buffers import (
    CompactPrioritizedReplayBuffer,
    CompactReplayBuffer,
    FieldSpec,
    NStepWriter,
    PrioritizedReplayBuffer,
)
from optix_core.policies import observations as O
from optix_core.types import EpisodeData

REPLAY_FILE = "replay.npz"  # the memory's file in a checkpoint directory
# Beside it: the steps the n-step writer held, waiting for their spans (NStepWriter.state_arrays).
HELD_FILE = "replay-held.npz"
# Added to |δ| before it becomes a priority, so a transition fitted exactly can still be drawn.
PRIORITY_EPS = 1e-6


class Replay:
    """The agent's experience in optix-core's compact replay, each observation stored once.

    The buffer (``CompactReplayBuffer``, or ``CompactPrioritizedReplayBuffer``
    when ``per_alpha > 0``, with room for ``replay_capacity`` transitions) is
    built at the first window, which tells the observations' and actions'
    shapes and dtypes. It keeps observations in a ring of their own and each
    transition the ids of its two: consecutive steps share a frame, so 84×84
    uint8 frames cost one copy each, plus one per episode end (the final
    observation) and the ring's 5 % headroom. Pixels stay uint8, Discrete
    observations integers, float vectors become float32; a Dict observation
    is packed into one numpy record per step (a structured dtype, one field
    per key), so it is stored once too and unpacked by the backend on its
    way to the device (``observations.unpacked``). Actions are stored as
    int64 when they are integers, else float32.

    Windows go in as slices (``WindowFeed``): the buffer shares a frame
    across slices as it does across windows, so feeding a window in the
    pieces the update schedule asks for stores exactly what one write of the
    window would, and each update samples only what was stored by its step.

    Each transition carries its bootstrap discount γ^m, fixed when it is
    stored, so a change of ``gamma`` or ``n_step`` reaches the transitions
    stored after it (n > 1 goes through optix-core's ``NStepWriter``).
    Changing ``replay_capacity`` or ``per_alpha`` rebuilds the buffer,
    keeping the most recent transitions (and their priorities, re-raised to
    the new α).

    Every draw comes from ``rng``, the agent's own generator (the prioritized
    buffer is seeded with the same object), so a checkpoint that restores
    the generator's state resumes the same stream of minibatches.
    """

    def __init__(self, rng: np.random.Generator, owner: str) -> None:
        self.rng, self.owner = rng, owner
        self.buffer: CompactReplayBuffer | None = None
        self.writer: NStepWriter | None = None
        # the last load brought back held n-step steps that no one has yet said go on
        self.held_undecided = False
        self.capacity, self.alpha, self.gamma, self.n_step = 1, 0.0, 0.99, 1

    def __len__(self) -> int:
        return 0 if self.buffer is None else len(self.buffer)

    @property
    def prioritized(self) -> bool:
        return self.alpha > 0

    def configure(self, capacity: int, alpha: float, gamma: float, n_step: int) -> None:
        """Take the hyperparameters ``replay_capacity``, ``per_alpha``, ``gamma`` and ``n_step``."""
        structure = (self.capacity, self.alpha)
        self.capacity, self.alpha = int(capacity), float(alpha)
        if self.buffer is not None and structure != (self.capacity, self.alpha):
            self._rebuild()
        if (self.gamma, self.n_step) != (gamma, n_step):
            self.gamma, self.n_step = float(gamma), int(n_step)
            self.writer = None  # rebuilt at the next window: pending steps are dropped

    def feed(self, data: EpisodeData) -> WindowFeed:
        """The window, to be stored slice by slice (``WindowFeed.store_until``)."""
        if self.held_undecided:
            self._end_held_episodes()
        data = O.packed_window(data)
        obs, actions = np.asarray(data.observations), np.asarray(data.actions)
        specs = (
            FieldSpec(obs.shape[2:], O.storage_dtype(obs.dtype)),
            FieldSpec(actions.shape[2:], action_dtype(actions.dtype)),
        )
        if self.buffer is None:
            self.buffer = self._new_buffer(*specs)
        stored = (self.buffer.fields["observations"], self.buffer.fields["actions"])
        if specs != stored:
            raise ValueError(
                f"{self.owner}: the window's observations and actions are {specs}, "
                f"the replay stores {stored}"
            )
        n_envs = data.rewards.shape[1]
        if self.n_step > 1 and (self.writer is None or self.writer.n_envs != n_envs):
            self.writer = NStepWriter(self.buffer, self.n_step, self.gamma, n_envs)
        return WindowFeed(self, data)

    def write(self, part: EpisodeData) -> None:
        """Store a slice of a window (n-step transitions when n > 1)."""
        assert self.buffer is not None
        if self.n_step > 1:
            assert self.writer is not None
            self.writer.add_window(part)
            return
        steps = self.buffer.stored_window(part)  # stores its observations, returns their ids
        rows = part.n_steps
        flat = {
            k: v.reshape(rows, *v.shape[2:])
            for k, v in steps.items()
            if k in self.buffer.stored_fields
        }
        flat["discounts"] = np.full(rows, self.gamma, dtype=np.float32)
        capacity = self.buffer.capacity
        for first in range(0, rows, capacity):  # add_stored() takes a capacity at most
            self.buffer.add_stored(**{k: v[first : first + capacity] for k, v in flat.items()})

    def gather(self, rows: int) -> dict[str, np.ndarray]:
        """``rows`` transitions drawn uniformly (with replacement) from what is stored now,
        as ``learner_fields``."""
        assert self.buffer is not None
        return learner_fields(self.buffer.get(self.rng.integers(0, len(self.buffer), rows)))

    def sample_prioritized(
        self, batch_size: int, beta: float
    ) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """One minibatch drawn with probability P(i): ``learner_fields`` with the importance
        ``weights`` for ``beta``, and the slots drawn (for ``update_priorities``)."""
        assert isinstance(self.buffer, PrioritizedReplayBuffer)
        data = self.buffer.sample(batch_size, beta=beta)
        batch = learner_fields(data)
        batch["weights"] = data["weights"].astype(np.float32, copy=False)
        return batch, data["indices"]

    def update_priorities(self, indices: np.ndarray, errors: np.ndarray) -> None:
        """The drawn transitions' new priorities: their errors (|δ|, or a loss) + ``PRIORITY_EPS``."""
        assert isinstance(self.buffer, PrioritizedReplayBuffer)
        self.buffer.update_priorities(indices, errors + PRIORITY_EPS)

    def clear(self) -> None:
        self.buffer, self.writer = None, None
        self.held_undecided = False

    def continue_episodes(self) -> None:
        """The steps the n-step writer held at the checkpoint go on into the episodes
        the resumed run rebuilt, as if it had never stopped."""
        self.held_undecided = False

    def _end_held_episodes(self) -> None:
        """No one continued the episodes the checkpoint interrupted: the steps the
        writer held end as those episodes' truncation at the checkpoint."""
        self.held_undecided = False
        if self.writer is None:  # a new gamma or n_step dropped them already
            return
        assert self.buffer is not None
        self.buffer.add_stored(**self.writer.cut())
        self.writer.reset()

    # ---- persistence --------------------------------------------------------

    def save(self, path: Path) -> None:
        """Write the buffer to ``path`` (``replay.npz``: numpy arrays, no pickle); nothing when empty.

        Steps an n-step writer still holds go beside it (``HELD_FILE``), their
        observations as frames: a resumed run that continues their episodes
        (``continue_episodes``) completes their spans, one that starts new
        episodes ends them there as truncations.
        """
        if self.buffer is None:
            return
        self.buffer.save(path)
        if self.writer is not None and self.writer.pending.any():
            np.savez(path.with_name(HELD_FILE), **self.writer.state_arrays())

    def load(self, path: Path) -> None:
        """Restore a saved buffer and the steps the n-step writer held beside it; a
        checkpoint without one leaves the memory empty.

        The agent's hyperparameters were restored first, so a buffer already
        built has the file's capacity and kind and takes it in place;
        otherwise one is built for the saved observations and actions. The
        held steps wait for ``continue_episodes``; the first window stored
        without it ends their episodes at the checkpoint.
        """
        self.writer, self.held_undecided = None, False
        if not path.is_file():
            self.buffer = None
            return
        if self.buffer is None:
            self.buffer = self._new_buffer(
                saved_spec(path, "observations"), saved_spec(path, "field.actions")
            )
        self.buffer.load(path)
        held = path.with_name(HELD_FILE)
        if held.is_file():
            with np.load(held, allow_pickle=False) as f:
                arrays = {name: f[name] for name in f.files}
            n_envs, n = arrays["rewards"].shape
            self.writer = NStepWriter(self.buffer, n, self.gamma, n_envs)
            self.writer.restore(arrays)
            self.held_undecided = True

    # ---- helpers --------------------------------------------------------------

    def _new_buffer(self, observations: FieldSpec, actions: FieldSpec) -> CompactReplayBuffer:
        """An empty buffer for transitions of these observations and actions (the
        specs have the ``shape`` and ``dtype`` of a space)."""
        if self.prioritized:
            return CompactPrioritizedReplayBuffer.from_spaces(
                self.capacity,
                observations,
                actions,
                discounts=True,
                alpha=self.alpha,
                seed=self.rng,
            )
        return CompactReplayBuffer.from_spaces(
            self.capacity, observations, actions, discounts=True, seed=self.rng
        )

    def _rebuild(self) -> None:
        """Move the most recent transitions into a buffer of the new capacity and kind."""
        old = self.buffer
        assert old is not None
        new = self._new_buffer(old.fields["observations"], old.fields["actions"])
        size = len(old)
        order = (old.position + np.arange(size)) % size if old.full else np.arange(size)
        keep = order[-new.capacity :]
        if keep.size:
            slots = new.add_from(old, keep)  # each observation still stored once
            if isinstance(old, PrioritizedReplayBuffer) and isinstance(
                new, PrioritizedReplayBuffer
            ):
                raw = old.tree.get(keep).astype(np.float64) ** (1.0 / old.alpha)
                new.update_priorities(slots, np.maximum(raw, PRIORITY_EPS))
        self.buffer = new
        self.writer = None  # it wrote into the old buffer


class WindowFeed:
    """One window, stored into the replay as far as learning has reached.

    ``store_until(t)`` stores vector steps up to ``t`` (1-based, inclusive)
    as one slice, so that minibatches drawn then see the buffer as it was
    after step ``t``.
    """

    def __init__(self, replay: Replay, data: EpisodeData) -> None:
        self.replay, self.data = replay, data
        self.length, self.n_envs = data.rewards.shape[:2]
        self.stored = 0  # vector steps of the window stored so far

    def store_until(self, step: int) -> None:
        if step > self.stored:
            self.replay.write(window_slice(self.data, self.stored, step))
            self.stored = step


def window_slice(data: EpisodeData, start: int, stop: int) -> EpisodeData:
    """Vector steps ``[start, stop)`` of a window as a window of their own.

    The observation after the slice is ``observations[stop]``, or the
    window's ``next_observations`` after its last step; the next slice
    starts with it, which is how the buffer knows to share it.
    """
    last = stop == len(data.rewards)
    finals = data.final_observations
    return EpisodeData(
        observations=data.observations[start:stop],
        actions=data.actions[start:stop],
        rewards=data.rewards[start:stop],
        terminated=data.terminated[start:stop],
        truncated=data.truncated[start:stop],
        next_observations=data.next_observations if last else data.observations[stop],
        final_observations=None if finals is None else finals[start:stop],
    )


def learner_fields(data: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """What a TD update reads of stored transitions, with γ_m (1 − terminated) as ``bootstrap``.

    Folding the discount and the end of the episode into one number means
    the backend's target is r + bootstrap · V(s′) whatever n-step or γ the
    transition was stored under; only ``terminated`` stops the bootstrap.
    """
    bootstrap = data["discounts"] * ~data["terminated"]
    return {
        "observations": data["observations"],
        "actions": data["actions"],
        "rewards": data["rewards"],
        "next_observations": data["next_observations"],
        "bootstrap": bootstrap.astype(np.float32, copy=False),
    }


def action_dtype(dtype: np.dtype) -> np.dtype:
    """Integer actions (Discrete) as int64, the index type a gather of Q-values needs; others
    as float32."""
    return np.dtype(np.int64 if np.issubdtype(dtype, np.integer) else np.float32)


def saved_spec(path: Path, name: str) -> FieldSpec:
    """The shape and dtype of the rows of a saved compact buffer's array ``name``, read
    from the array's header alone (the frames may be most of the file)."""
    with zipfile.ZipFile(path) as archive, archive.open(f"{name}.npy") as member:
        major, _ = np.lib.format.read_magic(member)
        if major == 1:
            shape, _, dtype = np.lib.format.read_array_header_1_0(member)
        else:
            shape, _, dtype = np.lib.format.read_array_header_2_0(member)
    return FieldSpec(tuple(shape[1:]), dtype)
