"""Replay and the update schedule every off-policy agent shares: DQN, Rainbow, SAC, TD3.

``ReplayAgent`` stores each loop window in the replay memory and hands its
algorithm the minibatches of the gradient steps the window earned, on
Stable-Baselines3's schedule (``train_freq``, ``gradient_steps``,
``learning_starts``), each drawn from exactly what the buffer held after the
step its update was due at. It also keeps the counters that schedule reads
and checkpoints the memory with the weights. ``Replay`` is the memory itself:
optix-core's compact replay buffers, which store each observation once.
"""

from __future__ import annotations

import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from optix_core.buffers import (
    CompactPrioritizedReplayBuffer,
    CompactReplayBuffer,
    FieldSpec,
    NStepWriter,
    PrioritizedReplayBuffer,
)
from optix_core.types import EpisodeData, HyperparamSet
from optix_torch.base import TorchAgentBase
from optix_torch.policies import observations as O

REPLAY_FILE = "replay.npz"
PRIORITY_EPS = 1e-6
PACK_BYTES = 32 << 20  # minibatch bytes gathered on the host before they go to the device


class ReplayAgent(TorchAgentBase):
    """The replay memory, the update schedule and their counters.

    A subclass calls this constructor, sets up its networks, then calls
    ``apply_hyperparams()``. Its ``act_info`` counts the env steps it acts
    for (``_acting_steps``); its ``learn`` takes one gradient step per
    minibatch ``replay_minibatches`` yields and counts them in ``n_updates``.
    The hyperparameters read: ``replay_capacity``, ``gamma``, ``batch_size``,
    ``train_freq``, ``gradient_steps``, ``learning_starts``, and where the
    algorithm has them ``n_step``, ``per_alpha``, ``per_beta`` and
    ``per_beta_steps``.
    """

    def __init__(
        self,
        hyperparams: HyperparamSet | dict[str, Any] | None,
        device: str | torch.device,
        seed: int | None,
    ) -> None:
        super().__init__(hyperparams, device, seed)
        self.replay = Replay(self.rng, self.algorithm)
        self.num_timesteps = 0  # env steps learned from (SB3's num_timesteps)
        self.vector_steps = 0  # vector-env steps learned from: train_freq counts these
        self.n_updates = 0  # gradient steps taken
        self._acting_steps = 0  # env steps act_info acted for since the last learn()

    @property
    def is_on_policy(self) -> bool:
        return False

    def apply_hyperparams(self) -> None:
        super().apply_hyperparams()
        hp = self.hp
        self.replay.configure(
            hp["replay_capacity"], hp.get("per_alpha", 0.0), hp["gamma"], hp.get("n_step", 1)
        )

    @property
    def steps_collected(self) -> int:
        """Env steps collected so far: those learned from and those acted for since."""
        return self.num_timesteps + self._acting_steps

    def per_beta(self, env_steps: int) -> float:
        """β of prioritized replay once ``env_steps`` env steps were collected.

        Linear from ``per_beta`` to 1 over ``per_beta_steps`` env steps: the
        importance weights (N·P(i))^−β undo the sampling bias fully only at
        β = 1, which matters most as training converges (Schaul et al. 2016,
        section 3.4; Hessel et al. 2018 anneal 0.4 → 1 the same way).
        ``per_beta_steps = 0`` keeps β at ``per_beta``.
        """
        start, steps = self.hp["per_beta"], self.hp["per_beta_steps"]
        if steps == 0:
            return start
        return start + min(1.0, env_steps / steps) * (1.0 - start)

    def replay_minibatches(self, data: EpisodeData) -> Iterator[dict[str, Any]]:
        """Store the window and yield the minibatches of the updates it earns, in order.

        Stable-Baselines3's schedule: after every ``train_freq``-th vector
        step, once more than ``learning_starts`` transitions were seen,
        ``gradient_steps`` updates, on minibatches drawn with replacement
        (prioritized ones once ``batch_size`` transitions are stored). The
        window goes into the buffer slice by slice, as far as the step an
        update is due after, and that update's minibatch is drawn then: it
        holds only transitions stored up to that step (never one the buffer
        wrapped over later in the window), as if learning were interleaved
        with acting. So the update-to-data ratio is ``gradient_steps /
        (train_freq · n_envs)`` whatever the window size.

        Each yield is a block of minibatches on the device, tensors shaped
        ``[count, batch_size, ...]``: ``observations``, ``actions`` (as the
        window gave them, integers as int64, floats as float32), ``rewards``,
        ``next_observations`` and ``bootstrap``, the discount γ_m(1 −
        terminated) of the target (observations a dict of tensors for Dict
        spaces). Uniform replay gathers each step's minibatches on the host as
        the step comes and moves them at once (up to ``PACK_BYTES``), so a
        window costs one host-to-device copy per dtype. Prioritized replay
        yields one minibatch per block, with ``weights`` and the host-side
        ``indices``, drawn with the priorities the caller's previous update
        left (the caller updates them before asking for the next), β annealed
        per env step (``per_beta``).
        """
        hp = self.hp
        steps, batch_size = hp["gradient_steps"], hp["batch_size"]
        feed = self.replay.feed(data)
        t = np.arange(1, feed.length + 1)
        seen = self.num_timesteps + t * feed.n_envs  # env steps collected after vector step t
        due = ((self.vector_steps + t) % hp["train_freq"] == 0) & (seen > hp["learning_starts"])
        self.vector_steps += feed.length
        self.num_timesteps += data.n_steps
        self._acting_steps = 0
        pending: list[dict[str, np.ndarray]] = []
        for step in np.flatnonzero(due & (steps > 0)) + 1:
            feed.store_until(step)
            # Uniform draws need one transition stored (n-step ones may still be
            # pending); prioritized ones draw batch_size distinct strata.
            if len(self.replay) < (batch_size if self.replay.prioritized else 1):
                continue
            if self.replay.prioritized:
                beta = self.per_beta(int(seen[step - 1]))
                for _ in range(steps):
                    yield self.replay.sample_prioritized(batch_size, beta, self.device)
                continue
            pending.append(self.replay.gather(steps * batch_size))
            if sum(_nbytes(block) for block in pending) >= PACK_BYTES:
                yield to_device(pending, batch_size, self.device)
                pending = []
        feed.store_until(feed.length)
        if pending:
            yield to_device(pending, batch_size, self.device)

    def replay_stats(self) -> dict[str, float]:
        """What every learn() reports besides its losses."""
        stats = {
            "replay_size": float(len(self.replay)),
            "n_updates": float(self.n_updates),
            "num_timesteps": float(self.num_timesteps),
        }
        if self.replay.prioritized:
            stats["per_beta"] = self.per_beta(self.num_timesteps)
        return stats

    # ---- checkpoints: the counters in the state, the memory beside the weights ----

    def extra_state(self) -> dict[str, Any]:
        return {
            "num_timesteps": self.num_timesteps,
            "vector_steps": self.vector_steps,
            "n_updates": self.n_updates,
            "acting_steps": self._acting_steps,
        }

    def load_extra_state(self, state: dict[str, Any]) -> None:
        self.num_timesteps = int(state.get("num_timesteps", 0))
        self.vector_steps = int(state.get("vector_steps", 0))
        self.n_updates = int(state.get("n_updates", 0))
        self._acting_steps = int(state.get("acting_steps", 0))

    def save_extra(self, path: Path) -> None:
        self.replay.save(path / REPLAY_FILE)

    def load_extra(self, path: Path) -> None:
        self.replay.load(path / REPLAY_FILE)

    def teardown(self) -> None:
        super().teardown()
        self.replay.clear()


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
    per key), so it is stored once too and unpacked on its way to the device.
    Actions are stored as int64 when they are integers, else float32.

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
    """

    def __init__(self, rng: np.random.Generator, owner: str) -> None:
        self.rng, self.owner = rng, owner
        self.buffer: CompactReplayBuffer | None = None
        self.writer: NStepWriter | None = None
        self.capacity, self.alpha, self.gamma, self.n_step = 1, 0.0, 0.99, 1

    def __len__(self) -> int:
        return 0 if self.buffer is None else len(self.buffer)

    @property
    def prioritized(self) -> bool:
        return self.alpha > 0

    def configure(self, capacity: int, alpha: float, gamma: float, n_step: int) -> None:
        structure = (self.capacity, self.alpha)
        self.capacity, self.alpha = int(capacity), float(alpha)
        if self.buffer is not None and structure != (self.capacity, self.alpha):
            self._rebuild()
        if (self.gamma, self.n_step) != (gamma, n_step):
            self.gamma, self.n_step = float(gamma), int(n_step)
            self.writer = None  # rebuilt at the next window: pending steps are dropped

    def feed(self, data: EpisodeData) -> WindowFeed:
        """The window, to be stored slice by slice (``WindowFeed.store_until``)."""
        data = O.packed_window(data)
        obs, actions = np.asarray(data.observations), np.asarray(data.actions)
        specs = (
            FieldSpec(obs.shape[2:], O.storage_dtype(obs.dtype)),
            FieldSpec(actions.shape[2:], _action_dtype(actions.dtype)),
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
        """``rows`` transitions drawn uniformly (with replacement) from what is stored now."""
        assert self.buffer is not None
        return _learner_fields(self.buffer.get(self.rng.integers(0, len(self.buffer), rows)))

    def sample_prioritized(
        self, batch_size: int, beta: float, device: torch.device
    ) -> dict[str, Any]:
        """One minibatch drawn with probability P(i), with its importance weights for ``beta``."""
        assert isinstance(self.buffer, PrioritizedReplayBuffer)
        data = self.buffer.sample(batch_size, beta=beta)
        batch = _learner_fields(data)
        batch["weights"] = data["weights"].astype(np.float32, copy=False)
        tensors: dict[str, Any] = to_device([batch], batch_size, device)
        tensors["indices"] = data["indices"]  # stays on the host, for update_priorities
        return tensors

    def update_priorities(self, indices: np.ndarray, errors: np.ndarray) -> None:
        assert isinstance(self.buffer, PrioritizedReplayBuffer)
        self.buffer.update_priorities(indices, errors + PRIORITY_EPS)

    def clear(self) -> None:
        self.buffer, self.writer = None, None

    # ---- persistence --------------------------------------------------------

    def save(self, path: Path) -> None:
        if self.buffer is not None:
            self.buffer.save(path)

    def load(self, path: Path) -> None:
        """Restore a saved buffer; a checkpoint without one leaves the memory empty.

        The agent's hyperparameters were restored first, so a buffer already
        built has the file's capacity and kind and takes it in place;
        otherwise one is built for the saved observations and actions.
        """
        self.writer = None
        if not path.is_file():
            self.buffer = None
            return
        if self.buffer is None:
            self.buffer = self._new_buffer(
                _saved_spec(path, "observations"), _saved_spec(path, "field.actions")
            )
        self.buffer.load(path)

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


def to_device(
    blocks: list[dict[str, np.ndarray]], batch_size: int, device: torch.device
) -> dict[str, O.ObsTensor]:
    """Host minibatches as tensors shaped ``[count, batch_size, ...]`` on ``device``.

    The float32 fields cross in one block (one copy); the others (uint8
    pixels, integer indices and actions, Dict records, unpacked on the way)
    in their own dtype, one copy each. Observations are scaled by the network.
    """
    fields = {key: [block[key] for block in blocks] for key in blocks[0]}
    floats = {k: parts for k, parts in fields.items() if parts[0].dtype == np.float32}
    moved = pack_to_device(floats, device)
    tensors = {}
    for key, parts in fields.items():
        if key in moved:
            tensors[key] = moved[key].view(-1, batch_size, *parts[0].shape[1:])
            continue
        array = parts[0] if len(parts) == 1 else np.concatenate(parts)
        tensor = O.to_tensor(O.unpacked(array), device)
        tensors[key] = O.map_obs(lambda t: t.view(-1, batch_size, *t.shape[1:]), tensor)
    return tensors


def pack_to_device(
    parts: dict[str, list[np.ndarray]], device: torch.device
) -> dict[str, torch.Tensor]:
    """Copy float32 arrays into one block and move it to ``device`` in one transfer.

    ``parts`` names, for each field, the arrays to concatenate; returns flat
    views of the block, one per name.
    """
    sizes = {name: sum(int(a.size) for a in arrays) for name, arrays in parts.items()}
    block = np.empty(sum(sizes.values()), dtype=np.float32)
    offset = 0
    for arrays in parts.values():
        for array in arrays:
            block[offset : offset + array.size] = array.reshape(-1)
            offset += array.size
    tensor = torch.from_numpy(block).to(device)
    views, offset = {}, 0
    for name, size in sizes.items():
        views[name] = tensor[offset : offset + size]
        offset += size
    return views


def _learner_fields(data: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """What a TD update reads of stored transitions, with γ_m (1 − terminated) as ``bootstrap``."""
    bootstrap = data["discounts"] * ~data["terminated"]
    return {
        "observations": data["observations"],
        "actions": data["actions"],
        "rewards": data["rewards"],
        "next_observations": data["next_observations"],
        "bootstrap": bootstrap.astype(np.float32, copy=False),
    }


def _action_dtype(dtype: np.dtype) -> np.dtype:
    """Integer actions (Discrete) as int64, the index type gather() needs; others as float32."""
    return np.dtype(np.int64 if np.issubdtype(dtype, np.integer) else np.float32)


def _saved_spec(path: Path, name: str) -> FieldSpec:
    """The shape and dtype of the rows of a saved compact buffer's array ``name``, read
    from the array's header alone (the frames may be most of the file)."""
    with zipfile.ZipFile(path) as archive, archive.open(f"{name}.npy") as member:
        major, _ = np.lib.format.read_magic(member)
        if major == 1:
            shape, _, dtype = np.lib.format.read_array_header_1_0(member)
        else:
            shape, _, dtype = np.lib.format.read_array_header_2_0(member)
    return FieldSpec(tuple(shape[1:]), dtype)


def _nbytes(block: dict[str, np.ndarray]) -> int:
    return sum(array.nbytes for array in block.values())
