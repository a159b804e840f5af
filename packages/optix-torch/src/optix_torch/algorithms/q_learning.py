"""What the value-based agents (DQN, Rainbow) share.

``QAgentBase``: an online Q-network and its target copy, their optimizer and
gradients, the replay memory, the update schedule (which minibatches a
window earns, and when), and their checkpoints (weights of both networks,
counters, the buffer as npz). ``Replay``: optix-core's compact replay
buffers, which store each observation once. ``check_q_network``: the one
check that a network fits the spaces. Each algorithm's file holds its
network, its acting and its loss.
"""

from __future__ import annotations

import copy
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from optix_core.buffers import (
    CompactPrioritizedReplayBuffer,
    CompactReplayBuffer,
    NStepWriter,
    PrioritizedReplayBuffer,
    transition_fields,
)
from optix_core.types import EpisodeData, HyperparamSet
from optix_torch.accel.optim import Gradients, adam, optimizer_step
from optix_torch.base import TorchAgentBase
from optix_torch.policies import observations as O
from optix_torch.policies.networks import probe_input

REPLAY_FILE = "replay.npz"
PRIORITY_EPS = 1e-6
PACK_BYTES = 32 << 20  # minibatch bytes gathered on the host before they go to the device


class QAgentBase(TorchAgentBase):
    """Online and target Q-networks, their optimizer, the replay memory and the update schedule.

    A subclass checks its network fits the spaces, calls this constructor
    (``flat_gradients``: whether every parameter is reached by every loss, so
    the gradients may live in one buffer), sets up what is its own, then
    calls ``apply_hyperparams()``. Its ``act_info`` counts the env steps it
    acts for (``_acting_steps``) and its ``learn`` takes one gradient step per
    minibatch that ``replay_minibatches`` yields.
    """

    adam_eps: ClassVar[float] = 1e-8  # ε of the default Adam (torch's default)

    def __init__(
        self,
        q_network: nn.Module,
        optimizer: torch.optim.Optimizer | None,
        hyperparams: HyperparamSet | dict[str, Any] | None,
        device: str | torch.device,
        seed: int | None,
        flat_gradients: bool,
    ) -> None:
        super().__init__(hyperparams, device, seed)
        self.q_network = q_network.to(self.device)
        self.target_network = copy.deepcopy(self.q_network).requires_grad_(False)
        params = list(self.q_network.parameters())
        self.gradients = Gradients(params, flat=flat_gradients)
        self.optimizer = optimizer or adam(params, self.hp["learning_rate"], eps=self.adam_eps)
        self.optimizer_step = optimizer_step(self.optimizer)
        self.replay = Replay(self.rng)
        self.env_steps = 0  # env steps learned from (SB3's num_timesteps)
        self.vector_steps = 0  # vector-env steps learned from: train_freq counts these
        self._acting_steps = 0  # env steps act_info acted for since the last learn()
        self.updates = 0  # gradient steps

    def modules(self) -> dict[str, nn.Module]:
        return {"q_network": self.q_network, "target_network": self.target_network}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"main": self.optimizer}

    def apply_hyperparams(self) -> None:
        super().apply_hyperparams()
        self.replay.configure(self.hp)

    @property
    def is_on_policy(self) -> bool:
        return False

    @torch.no_grad()
    def _sync_target(self) -> None:
        """θ_target ← θ (Mnih et al. 2015: every C updates)."""
        torch._foreach_copy_(
            list(self.target_network.state_dict().values()),
            list(self.q_network.state_dict().values()),
        )

    # ---- schedules ------------------------------------------------------------

    @property
    def steps_collected(self) -> int:
        """Env steps collected so far: those learned from and those acted for since."""
        return self.env_steps + self._acting_steps

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

    # ---- the update schedule ----------------------------------------------------

    def replay_minibatches(self, data: EpisodeData) -> Iterator[dict[str, Any]]:
        """Store the window and yield the minibatches of the updates it earns, in order.

        Stable-Baselines3's schedule, as SAC's and TD3's: after every
        ``train_freq``-th vector step, once more than ``learning_starts``
        transitions were seen (and at least ``batch_size`` are stored),
        ``gradient_steps`` updates. The window goes into the buffer slice by
        slice, as far as the step an update is due after, and that update's
        minibatch is drawn then: it holds only transitions stored up to that
        step (never one the buffer wrapped over later in the window), as if
        learning were interleaved with acting. So the update-to-data ratio is
        ``gradient_steps / (train_freq · n_envs)`` whatever the window size.

        Each yield is a block of minibatches on the device, tensors shaped
        ``[count, batch_size, ...]`` (observations a dict of them for Dict
        spaces; ``indices`` stays on the host). Uniform replay gathers each
        step's minibatches on the host as the step comes and moves all of
        them at once (up to ``PACK_BYTES``), so a window costs one
        host-to-device copy. Prioritized replay yields one minibatch per
        block, drawn with the priorities the caller's previous update left
        (the caller updates them before asking for the next), with β annealed
        per env step (``per_beta``).
        """
        hp = self.hp
        steps, batch_size = hp["gradient_steps"], hp["batch_size"]
        feed = self.replay.feed(data)
        t = np.arange(1, feed.length + 1)
        seen = self.env_steps + t * feed.n_envs  # env steps collected after vector step t
        due = ((self.vector_steps + t) % hp["train_freq"] == 0) & (seen > hp["learning_starts"])
        self.vector_steps += feed.length
        self.env_steps += data.n_steps
        self._acting_steps = 0
        pending: list[dict[str, np.ndarray]] = []
        for step in np.flatnonzero(due & (steps > 0)) + 1:
            feed.store_until(step)
            if len(self.replay) < batch_size:
                continue
            if self.replay.prioritized:
                beta = self.per_beta(int(seen[step - 1]))
                for _ in range(steps):
                    yield self.replay.sample_prioritized(batch_size, beta, self.device)
                continue
            pending.append(self.replay.gather(steps * batch_size))
            if sum(_nbytes(block) for block in pending) >= PACK_BYTES:
                yield self.replay.to_device(pending, batch_size, self.device)
                pending = []
        feed.store_until(feed.length)
        if pending:
            yield self.replay.to_device(pending, batch_size, self.device)

    def schedule_stats(self) -> dict[str, float]:
        """What every learn() reports besides its losses."""
        stats = {"buffer_size": float(len(self.replay)), "updates": float(self.updates)}
        if self.replay.prioritized:
            stats["per_beta"] = self.per_beta(self.env_steps)
        return stats

    # ---- checkpoints --------------------------------------------------------

    def extra_state(self) -> dict[str, Any]:
        return {
            "env_steps": self.env_steps,
            "vector_steps": self.vector_steps,
            "acting_steps": self._acting_steps,
            "updates": self.updates,
        }

    def load_extra_state(self, state: dict[str, Any]) -> None:
        self.env_steps = int(state.get("env_steps", 0))
        self.vector_steps = int(state.get("vector_steps", 0))
        self._acting_steps = int(state.get("acting_steps", 0))
        self.updates = int(state.get("updates", 0))

    def save_extra(self, path: Path) -> None:
        self.replay.save(path / REPLAY_FILE)

    def load_extra(self, path: Path) -> None:
        self.replay.load(path / REPLAY_FILE)

    def teardown(self) -> None:
        self.gradients.release()
        super().teardown()
        self.replay.clear()


class Replay:
    """The agent's experience in optix-core's compact replay, each observation stored once.

    The buffer (``CompactReplayBuffer``, or ``CompactPrioritizedReplayBuffer``
    when ``per_alpha > 0``, with room for ``replay_capacity`` transitions) is
    built at the first window, which tells the observations' shape and
    dtype. It keeps observations in a ring of their own and each transition
    the ids of its two: consecutive steps share a frame, so 84×84 uint8
    frames cost one copy each, plus one per episode end (the final
    observation) and the ring's 5 % headroom. Pixels stay uint8, Discrete
    observations integers, float vectors become float32; a Dict observation
    is packed into one numpy record per step (a structured dtype, one field
    per key), so it is stored once too and unpacked on its way to the device.

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

    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng
        self.buffer: CompactReplayBuffer | None = None
        self.writer: NStepWriter | None = None
        self.capacity, self.alpha, self.gamma, self.n_step = 1, 0.0, 0.99, 1

    def __len__(self) -> int:
        return 0 if self.buffer is None else len(self.buffer)

    @property
    def prioritized(self) -> bool:
        return self.alpha > 0

    def configure(self, hp: dict[str, Any]) -> None:
        structure = (self.capacity, self.alpha)
        self.capacity, self.alpha = int(hp["replay_capacity"]), float(hp["per_alpha"])
        if self.buffer is not None and structure != (self.capacity, self.alpha):
            self._rebuild()
        if (self.gamma, self.n_step) != (hp["gamma"], hp["n_step"]):
            self.gamma, self.n_step = float(hp["gamma"]), int(hp["n_step"])
            self.writer = None  # rebuilt at the next window: pending steps are dropped

    def feed(self, data: EpisodeData) -> WindowFeed:
        """The window, to be stored slice by slice (``WindowFeed.store_until``)."""
        data = O.packed_window(data)
        if self.buffer is None:
            obs = np.asarray(data.observations)
            self.buffer = self._new_buffer(obs.shape[2:], O.storage_dtype(obs.dtype))
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
        batch["weights"] = data["weights"]
        tensors: dict[str, Any] = self.to_device([batch], batch_size, device)
        tensors["indices"] = data["indices"]  # stays on the host, for update_priorities
        return tensors

    @staticmethod
    def to_device(
        blocks: list[dict[str, np.ndarray]], batch_size: int, device: torch.device
    ) -> dict[str, O.ObsTensor]:
        """Host minibatches as tensors shaped ``[count, batch_size, ...]``: one copy per field.

        Observations keep their dtype (``observations.to_tensor``: uint8
        pixels stay uint8 and are scaled by the network); Dict ones are unpacked.
        """
        tensors = {}
        for key in blocks[0]:
            parts = [block[key] for block in blocks]
            array = parts[0] if len(parts) == 1 else np.concatenate(parts)
            tensor = O.to_tensor(O.unpacked(array), device)
            tensors[key] = O.map_obs(lambda t: t.view(-1, batch_size, *t.shape[1:]), tensor)
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
        otherwise one is built for the saved observations' shape and dtype.
        """
        self.writer = None
        if not path.is_file():
            self.buffer = None
            return
        if self.buffer is None:
            self.buffer = self._new_buffer(*_saved_observation_spec(path))
        self.buffer.load(path)

    # ---- helpers --------------------------------------------------------------

    def _new_buffer(self, obs_shape: tuple[int, ...], obs_dtype: np.dtype) -> CompactReplayBuffer:
        fields = transition_fields(
            obs_shape, (), observation_dtype=obs_dtype, action_dtype=np.int64, discounts=True
        )
        if self.prioritized:
            return CompactPrioritizedReplayBuffer(
                self.capacity, fields, alpha=self.alpha, seed=self.rng
            )
        return CompactReplayBuffer(self.capacity, fields, seed=self.rng)

    def _rebuild(self) -> None:
        """Move the most recent transitions into a buffer of the new capacity and kind."""
        old = self.buffer
        assert old is not None
        obs_spec = old.fields["observations"]
        new = self._new_buffer(obs_spec.shape, obs_spec.dtype)
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


def _saved_observation_spec(path: Path) -> tuple[tuple[int, ...], np.dtype]:
    """The shape and dtype of a saved compact buffer's observations, read from the
    array's header alone (the frames may be most of the file)."""
    with zipfile.ZipFile(path) as archive, archive.open("observations.npy") as member:
        major, _ = np.lib.format.read_magic(member)
        if major == 1:
            shape, _, dtype = np.lib.format.read_array_header_1_0(member)
        else:
            shape, _, dtype = np.lib.format.read_array_header_2_0(member)
    return tuple(shape[1:]), dtype


def _learner_fields(data: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """What a TD update reads of stored transitions, with γ_m (1 − terminated) as ``bootstrap``."""
    bootstrap = data["discounts"] * ~data["terminated"]
    return {
        "observations": data["observations"],
        "actions": data["actions"].astype(np.int64, copy=False),
        "rewards": data["rewards"],
        "next_observations": data["next_observations"],
        "bootstrap": bootstrap.astype(np.float32, copy=False),
    }


def _nbytes(block: dict[str, np.ndarray]) -> int:
    return sum(array.nbytes for array in block.values())


# ---- checks -------------------------------------------------------------------------


def check_q_network(
    network: nn.Module,
    observation_space: gym.Space | None,
    expected: tuple[int, ...],
    owner: str,
) -> torch.Tensor | None:
    """Run two observations through ``network`` and insist on outputs shaped ``[2, *expected]``.

    The observations come from ``observation_space``, else from the space the
    network was built for (its ``observation_space`` attribute, as the
    default networks keep), else they are sized by its first linear layer
    (``policies.networks.probe_input``); without any of these the network is
    trusted and None returned. The network runs in eval mode (no noise, no
    dropout, no batch-norm update). Returns the probe's output.
    """
    space = observation_space
    if space is None:
        space = getattr(network, "observation_space", None)
    probe = probe_input(network, space)
    if probe is None:
        return None
    if space is not None:
        where, hint = f"from {space}", ""
    else:  # sized by its first linear layer: a guess
        where = f"shaped {tuple(probe.shape[1:])}"
        hint = "; give observation_space= if it reads other observations"
    was_training = network.training
    network.eval()
    try:
        with torch.no_grad():
            out = network(probe)
    except Exception as exc:
        raise ValueError(
            f"{owner}: the q_network fails on observations {where} ({exc}){hint}"
        ) from None
    finally:
        network.train(was_training)
    if tuple(out.shape[1:]) != expected:
        raise ValueError(
            f"{owner}: the q_network outputs shape {tuple(out.shape[1:])} per observation, "
            f"expected {expected} (n_actions={expected[0]}"
            + (f", n_atoms={expected[1]})" if len(expected) > 1 else ")")
        )
    return out


def check_n_actions(n_actions: Any, owner: str) -> int:
    if isinstance(n_actions, bool) or not float(n_actions).is_integer() or int(n_actions) < 1:
        raise ValueError(f"{owner}: n_actions must be a positive integer, got {n_actions!r}")
    return int(n_actions)


def require_discrete(action_space: gym.Space, owner: str) -> int:
    if not isinstance(action_space, gym.spaces.Discrete):
        raise ValueError(f"{owner} acts on Discrete action spaces, got {action_space}")
    if int(action_space.start) != 0:
        raise ValueError(
            f"{owner} needs actions numbered from 0, got {action_space} (start={action_space.start})"
        )
    return int(action_space.n)


class GreedyPolicy(nn.Module):
    """Observations → argmax_a Q(s, a): a value-based agent's deterministic
    policy as a plain module (what ``optix export`` writes)."""

    def __init__(self, q_values: nn.Module) -> None:
        super().__init__()
        self.q_values = q_values

    def forward(self, obs: O.ObsTensor) -> torch.Tensor:
        return self.q_values(obs).argmax(dim=-1)
