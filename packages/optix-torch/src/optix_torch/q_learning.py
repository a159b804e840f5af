"""What the value-based agents (DQN, Rainbow) share.

``QAgentBase``: an online Q-network and its target copy, one optimizer over
flat gradients, the replay memory, and their checkpoints (weights of both
networks, counters, the buffer as npz). ``Replay``: optix-core's replay
buffers fed through its ``NStepWriter``. And the checks that a network fits
a discrete action space. Each algorithm's file holds its acting and its loss.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from optix_core.buffers import (
    NStepWriter,
    PrioritizedReplayBuffer,
    ReplayBuffer,
    transition_fields,
    window_transitions,
)
from optix_core.types import EpisodeData, HyperparamSet
from optix_torch.base import TorchAgentBase
from optix_torch.optim import FlatGradients, default_optimizer, optimizer_step

REPLAY_FILE = "replay.npz"
PRIORITY_EPS = 1e-6


class QAgentBase(TorchAgentBase):
    """Online and target Q-networks, their optimizer and the replay memory.

    A subclass checks its network fits the action space, calls this
    constructor, sets up what is its own, then calls ``apply_hyperparams()``.
    """

    def __init__(
        self,
        q_network: nn.Module,
        optimizer: torch.optim.Optimizer | None,
        hyperparams: HyperparamSet | dict[str, Any] | None,
        device: str | torch.device,
        seed: int | None,
    ) -> None:
        super().__init__(hyperparams, device, seed)
        self.q_network = q_network.to(self.device)
        self.target_network = copy.deepcopy(self.q_network).requires_grad_(False)
        self.optimizer = optimizer or default_optimizer(
            self.q_network.parameters(), self.hp["learning_rate"]
        )
        self.gradients = FlatGradients(self.q_network.parameters())
        self.optimizer_step = optimizer_step(self.optimizer)
        self.replay = Replay(self.rng, self.algorithm)
        self.env_steps = 0  # env steps learned from
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

    # ---- checkpoints --------------------------------------------------------

    def extra_state(self) -> dict[str, Any]:
        return {"env_steps": self.env_steps, "updates": self.updates}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        self.env_steps = int(state.get("env_steps", 0))
        self.updates = int(state.get("updates", 0))

    def save_extra(self, path: Path) -> None:
        self.replay.save(path / REPLAY_FILE)

    def load_extra(self, path: Path) -> None:
        self.replay.load(path / REPLAY_FILE)

    def teardown(self) -> None:
        super().teardown()
        self.replay.clear()


class Replay:
    """The agent's experience: an optix-core replay buffer, fed through an NStepWriter when n > 1.

    The buffer is built at the first window (which tells the observation
    shape) as uniform (``per_alpha = 0``) or prioritized, with room for
    ``replay_capacity`` transitions. Each transition carries its bootstrap
    discount γ^m, fixed when it is stored, so a change of ``gamma`` or
    ``n_step`` reaches the transitions stored after it. Changing
    ``replay_capacity`` or ``per_alpha`` rebuilds the buffer, keeping the most
    recent transitions (and their priorities, re-raised to the new α).
    """

    def __init__(self, rng: np.random.Generator, owner: str) -> None:
        self.rng, self.owner = rng, owner
        self.buffer: ReplayBuffer | None = None
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

    def store(self, data: EpisodeData) -> None:
        """Add every transition of the window (n-step ones when n > 1)."""
        if self.buffer is None:
            obs = np.asarray(data.observations)
            self.buffer = self._new_buffer(obs.shape[2:], _storage_dtype(obs.dtype))
        n_envs = data.rewards.shape[1]
        if self.n_step > 1:
            if self.writer is None or self.writer.n_envs != n_envs:
                self.writer = NStepWriter(self.buffer, self.n_step, self.gamma, n_envs)
            self.writer.add_window(data)
            return
        steps = window_transitions(data)
        flat = {k: v.reshape(-1, *v.shape[2:]) for k, v in steps.items() if k != "truncated"}
        flat["discounts"] = np.full(len(flat["rewards"]), self.gamma, dtype=np.float32)
        for start in range(0, len(flat["rewards"]), self.buffer.capacity):
            self.buffer.add(**{k: v[start : start + self.buffer.capacity] for k, v in flat.items()})

    def sample(
        self, count: int, batch_size: int, beta: float, device: torch.device
    ) -> dict[str, torch.Tensor]:
        """``count`` minibatches as tensors shaped ``[count, batch_size, ...]``: one draw, one copy."""
        assert self.buffer is not None
        if self.prioritized:
            assert isinstance(self.buffer, PrioritizedReplayBuffer)
            data = self.buffer.sample(count * batch_size, beta=beta)
        else:
            data = self.buffer.get(self.rng.integers(0, len(self.buffer), count * batch_size))
        bootstrap = data["discounts"] * ~data["terminated"]
        out = {
            "observations": data["observations"],
            "actions": data["actions"].astype(np.int64, copy=False),
            "rewards": data["rewards"],
            "next_observations": data["next_observations"],
            "bootstrap": bootstrap.astype(np.float32, copy=False),
        }
        if self.prioritized:
            out["weights"] = data["weights"]
        tensors = {
            k: torch.as_tensor(v, device=device).view(count, batch_size, *v.shape[1:])
            for k, v in out.items()
        }
        for key in ("observations", "next_observations"):
            tensors[key] = tensors[key].float()
        if self.prioritized:
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
        """Restore a saved buffer; a checkpoint without one leaves the memory empty."""
        self.writer = None
        if not path.is_file():
            self.buffer = None
            return
        with np.load(path, allow_pickle=False) as f:
            obs = f["field.observations"]
            shape, dtype = obs.shape[1:], obs.dtype
        buffer = self._new_buffer(shape, dtype)
        buffer.load(path)
        self.buffer = buffer

    # ---- helpers --------------------------------------------------------------

    def _new_buffer(self, obs_shape: tuple[int, ...], obs_dtype: np.dtype) -> ReplayBuffer:
        fields = transition_fields(
            obs_shape, (), observation_dtype=obs_dtype, action_dtype=np.int64, discounts=True
        )
        if self.prioritized:
            return PrioritizedReplayBuffer(self.capacity, fields, alpha=self.alpha, seed=self.rng)
        return ReplayBuffer(self.capacity, fields, seed=self.rng)

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
            slots = new.add(**old.get(keep))
            if isinstance(old, PrioritizedReplayBuffer) and isinstance(
                new, PrioritizedReplayBuffer
            ):
                raw = old.tree.get(keep).astype(np.float64) ** (1.0 / old.alpha)
                new.update_priorities(slots, np.maximum(raw, PRIORITY_EPS))
        self.buffer = new
        self.writer = None  # it wrote into the old buffer


def _storage_dtype(dtype: np.dtype) -> np.dtype:
    """Float observations are stored as float32; integer ones (pixels) as they are."""
    return np.dtype(np.float32) if np.issubdtype(dtype, np.floating) else np.dtype(dtype)


def check_n_actions(n_actions: Any, owner: str) -> int:
    if isinstance(n_actions, bool) or not float(n_actions).is_integer() or int(n_actions) < 1:
        raise ValueError(f"{owner}: n_actions must be a positive integer, got {n_actions!r}")
    return int(n_actions)


def check_network_output(
    network: nn.Module,
    observation_space: gym.Space | None,
    expected: tuple[int, ...],
    owner: str,
) -> torch.Tensor | None:
    """Run a dummy batch through ``network`` and insist on outputs shaped ``[B, *expected]``.

    The input shape comes from ``observation_space`` when given, else from the
    network's first ``nn.Linear``; without either there is nothing to probe
    with, the check is skipped and None returned. Returns the probe's output.
    """
    if observation_space is not None:
        shape = tuple(observation_space.shape)
    else:
        first = next((m for m in network.modules() if isinstance(m, nn.Linear)), None)
        if first is None:
            return None
        shape = (first.in_features,)
    param = next(network.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    was_training = network.training
    network.eval()  # no batch-norm statistics change, no dropout, no noise
    try:
        with torch.no_grad():
            out = network(torch.zeros(2, *shape, device=device))
    except Exception as exc:
        raise ValueError(
            f"{owner}: the q_network fails on observations shaped {shape} ({exc})"
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


def flat_observation_dim(observation_space: gym.Space, owner: str) -> int:
    if not isinstance(observation_space, gym.spaces.Box):
        raise ValueError(
            f"{owner}'s default network reads Box observations, got {observation_space}; "
            "build the agent with your own q_network for other observation spaces"
        )
    return math.prod(observation_space.shape)


def require_discrete(action_space: gym.Space, owner: str) -> int:
    if not isinstance(action_space, gym.spaces.Discrete):
        raise ValueError(f"{owner} acts on Discrete action spaces, got {action_space}")
    if int(action_space.start) != 0:
        raise ValueError(
            f"{owner} needs actions numbered from 0, got {action_space} (start={action_space.start})"
        )
    return int(action_space.n)
