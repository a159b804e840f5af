"""What SAC and TD3 share: twin critics, Polyak averaging, action scaling and replay.

``OffPolicyAgent`` is the plumbing of an off-policy actor-critic, in the
manner of Stable-Baselines3's ``OffPolicyAlgorithm``: it turns each loop
window into replay transitions, decides how many gradient steps the window
earns (``train_freq``, ``gradient_steps``, ``learning_starts``) and hands the
algorithm one minibatch per step, all sampled and moved to the device at
once. The algorithm (``sac.py``, ``td3.py``) writes the policy and the update.

Networks act in (−1, 1); ``ActionScaler`` maps that to the Box bounds for the
environment and recorded actions back for learning.
"""

from __future__ import annotations

import copy
import itertools
import math
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar, NamedTuple

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from optix_core.buffers import ReplayBuffer, transition_fields, window_transitions
from optix_core.types import EpisodeData
from optix_torch.base import TorchAgentBase
from optix_torch.networks import check_output

REPLAY = "replay.npz"
PACK_FLOATS = 1 << 23  # floats per device move (32 MiB); larger windows go in chunks


class TwinQ(nn.Module):
    """Two Q-networks ``[obs || action] → Q`` evaluated as one.

    Each layer holds both critics' weights stacked on a leading axis and runs
    as one batched matmul, so the pair costs the operations of a single
    network. ``forward`` returns ``[B, 2]`` (one column per critic); ``q1``
    runs the first critic alone. Initialised like ``nn.Linear``.
    """

    def __init__(
        self,
        in_dim: int,
        hidden: Sequence[int] = (256, 256),
        activation: type[nn.Module] = nn.ReLU,
        n_critics: int = 2,
    ) -> None:
        super().__init__()
        dims = [in_dim, *hidden, 1]
        self.n_critics = n_critics
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for fan_in, fan_out in itertools.pairwise(dims):
            bound = 1.0 / math.sqrt(fan_in)
            weight = torch.empty(n_critics, fan_in, fan_out).uniform_(-bound, bound)
            bias = torch.empty(n_critics, 1, fan_out).uniform_(-bound, bound)
            self.weights.append(nn.Parameter(weight))
            self.biases.append(nn.Parameter(bias))
        self.activation = activation()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.unsqueeze(0).expand(self.n_critics, *x.shape)
        weights, biases = list(self.weights), list(self.biases)
        for weight, bias in zip(weights[:-1], biases[:-1], strict=True):
            h = self.activation(torch.baddbmm(bias, h, weight))
        # The single-output layer as multiply-and-sum: a batched matrix-vector
        # product is several times slower than this on the CPU, both ways.
        weight, bias = weights[-1], biases[-1]
        return ((h * weight.transpose(1, 2)).sum(-1) + bias.squeeze(-1)).t()

    def q1(self, x: torch.Tensor) -> torch.Tensor:
        h = x
        last = len(self.weights) - 1
        for i, (weight, bias) in enumerate(zip(self.weights, self.biases, strict=True)):
            h = torch.addmm(bias[0], h, weight[0])
            if i < last:
                h = self.activation(h)
        return h


class CriticPair(nn.Module):
    """Two user-built critics (``[obs || action] → [B, 1]`` each) as one ``[B, 2]`` module."""

    def __init__(self, critic1: nn.Module, critic2: nn.Module) -> None:
        super().__init__()
        self.critic1 = critic1
        self.critic2 = critic2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.critic1(x), self.critic2(x)], dim=1)

    def q1(self, x: torch.Tensor) -> torch.Tensor:
        return self.critic1(x)


def first_critic(critics: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Q₁ alone: the module's ``q1`` when it has one, else column 0 of both."""
    q1 = getattr(critics, "q1", None)
    return q1(x) if q1 is not None else critics(x)[:, :1]


def polyak(target: list[torch.Tensor], online: list[torch.Tensor], tau: float) -> None:
    """θ_tgt ← τ·θ + (1 − τ)·θ_tgt, one fused call over every tensor."""
    torch._foreach_lerp_(target, online, tau)


def target_copy(module: nn.Module) -> nn.Module:
    """A frozen copy of ``module`` to serve as its target network."""
    target = copy.deepcopy(module)
    target.requires_grad_(False)
    return target


class ActionScaler:
    """Maps the networks' (−1, 1) to a Box's bounds and back.

    Without a Box the actions stay in (−1, 1), as tensor-optix's agents did.
    """

    def __init__(self, action_dim: int, action_space: gym.Space | None = None) -> None:
        self.action_dim = action_dim
        self.shape: tuple[int, ...] = (action_dim,)
        self.dtype = np.dtype(np.float32)
        low = -np.ones(action_dim, dtype=np.float64)
        high = np.ones(action_dim, dtype=np.float64)
        if action_space is not None:
            low = np.asarray(action_space.low, dtype=np.float64).reshape(-1)
            high = np.asarray(action_space.high, dtype=np.float64).reshape(-1)
            self.shape = tuple(action_space.shape)
            self.dtype = np.dtype(action_space.dtype)
        self.low, self.high = low, high
        self.center = (high + low) / 2
        self.half = (high - low) / 2

    def to_env(self, unit: np.ndarray) -> np.ndarray:
        """``[N, A]`` actions in [−1, 1] → ``[N, *shape]`` actions inside the bounds."""
        actions = np.clip(self.center + self.half * unit, self.low, self.high)
        return actions.astype(self.dtype, copy=False).reshape(len(unit), *self.shape)

    def from_env(self, actions: np.ndarray) -> np.ndarray:
        """Recorded actions ``[..., *shape]`` → float32 ``[..., A]`` in [−1, 1]."""
        lead = actions.shape[: actions.ndim - len(self.shape)]
        flat = np.asarray(actions, dtype=np.float64).reshape(*lead, self.action_dim)
        return np.clip((flat - self.center) / self.half, -1.0, 1.0).astype(np.float32)


class Batch(NamedTuple):
    """One minibatch of transitions on the device (views into one window-wide block)."""

    observations: torch.Tensor  # [B, obs_dim]
    observation_actions: torch.Tensor  # [B, obs_dim + A]: the critic's input for (s, a)
    rewards: torch.Tensor  # [B]
    next_observations: torch.Tensor  # [B, obs_dim]
    discounts: torch.Tensor  # [B]: γ·(1 − terminated)
    noise: torch.Tensor  # [*noise_shape]: the algorithm's noise for this step


def check_box_spaces(algorithm: str, observation_space: gym.Space, action_space: gym.Space) -> None:
    """Refuse, before any work starts, spaces a continuous actor-critic cannot serve."""
    if not isinstance(action_space, gym.spaces.Box):
        raise ValueError(f"{algorithm} acts on Box action spaces, got {action_space}")
    if not (np.all(np.isfinite(action_space.low)) and np.all(np.isfinite(action_space.high))):
        raise ValueError(
            f"{algorithm} scales its (−1, 1) actions to the Box bounds, which must be finite; "
            f"got {action_space} (wrap the environment with gymnasium's RescaleAction)"
        )
    if not isinstance(observation_space, gym.spaces.Box):
        raise ValueError(f"{algorithm} needs Box observations, got {observation_space}")


def input_dim(module: nn.Module) -> int | None:
    """The input width of a network whose first layer is an ``nn.Linear`` (else None)."""
    for layer in module.modules():
        if isinstance(layer, nn.Linear):
            return layer.in_features
        if isinstance(layer, TwinQ):
            return layer.weights[0].shape[1]
    return None


def twin_critics(
    critic1: nn.Module | None, critic2: nn.Module | None, critics: nn.Module | None, owner: str
) -> nn.Module:
    """One ``[B, 2]`` module from tensor-optix's two critics, or a fused one as given."""
    if critics is not None:
        if critic1 is not None or critic2 is not None:
            raise ValueError(f"{owner}: give critic1 and critic2, or critics, not both")
        return critics
    if critic1 is None or critic2 is None:
        raise ValueError(f"{owner}: give both critic1 and critic2 (or one fused critics module)")
    if critic1 is critic2:
        raise ValueError(f"{owner}: critic1 and critic2 must be two networks, got the same one")
    return CriticPair(critic1, critic2)


def action_size(action_dim: int | None, action_space: gym.Space | None, owner: str) -> int:
    """The action dimension, from ``action_dim`` or the Box; they must agree when both are given."""
    if action_space is not None:
        if not isinstance(action_space, gym.spaces.Box):
            raise ValueError(f"{owner} acts on Box action spaces, got {action_space}")
        size = int(np.prod(action_space.shape))
        if action_dim is not None and int(action_dim) != size:
            raise ValueError(
                f"{owner}: action_dim={action_dim} does not match the action space {action_space}"
            )
        return size
    if action_dim is None or int(action_dim) < 1:
        raise ValueError(f"{owner}: give action_dim (>= 1) or action_space")
    return int(action_dim)


def observation_size(observation_space: gym.Space | None, actor: nn.Module) -> int | None:
    """The flat observation width, from the space or the actor's first layer (None if unknown)."""
    if observation_space is not None:
        return int(np.prod(observation_space.shape))
    return input_dim(actor)


class OffPolicyAgent(TorchAgentBase):
    """Replay, update scheduling, acting and checkpoints shared by SAC and TD3.

    Subclasses set ``SEARCH_SPACE`` (from their config module), ``self.actor``
    and ``self.critic`` (a module giving ``[B, 2]``), write ``policy``
    (observations → actions in [−1, 1]), ``noise_shape`` and ``learn``, and
    call ``setup_offpolicy`` in their constructor.
    """

    SEARCH_SPACE: ClassVar[dict[str, tuple]] = {}

    def setup_offpolicy(
        self,
        action_dim: int,
        observation_space: gym.Space | None,
        action_space: gym.Space | None,
    ) -> None:
        self.action_dim = int(action_dim)
        self.scaler = ActionScaler(self.action_dim, action_space)
        self.observation_shape: tuple[int, ...] | None = (
            tuple(observation_space.shape) if observation_space is not None else None
        )
        self.replay: ReplayBuffer | None = None
        self.num_timesteps = 0  # environment transitions learned from (SB3's num_timesteps)
        self.vector_steps = 0  # vector-environment steps: train_freq counts these
        self.n_updates = 0  # gradient steps taken
        self._acting_steps = 0  # act_info calls since the last learn(), for the warm-up

    def check_networks(self, obs_dim: int | None, actor_out: int, critics: nn.Module) -> None:
        """Insist that the actor and the critics fit the spaces, before any work starts."""
        if obs_dim is None:
            return
        for network, width, out, role in (
            (self.actor, obs_dim, actor_out, "actor"),
            (critics, obs_dim + self.action_dim, 2, "twin critic"),
        ):
            try:
                check_output(network, width, out, role, self.algorithm)
            except RuntimeError as exc:
                raise ValueError(
                    f"{self.algorithm}: the {role} network does not take inputs of width "
                    f"{width} ({str(exc).splitlines()[0]})"
                ) from None

    @property
    def is_on_policy(self) -> bool:
        return False

    @property
    def search_space(self) -> dict[str, tuple]:
        """What the loop may tune while training: the config module's ``SEARCH_SPACE``."""
        return dict(self.SEARCH_SPACE)

    # ---- acting ---------------------------------------------------------

    def policy(
        self, observations: torch.Tensor, deterministic: bool, generator: torch.Generator
    ) -> torch.Tensor:
        """Actions in [−1, 1] for a batch of flat observations (on the CPU)."""
        raise NotImplementedError

    @torch.no_grad()
    def act(self, observation: Any, deterministic: bool = False) -> np.ndarray:
        obs = self.flat_observations(observation)
        unit = self.policy(obs, deterministic, self.act_generator)
        return self.scaler.to_env(unit.numpy())

    @torch.no_grad()
    def act_info(self, observation: Any, episode_start: np.ndarray) -> tuple[np.ndarray, dict]:
        obs = self.flat_observations(observation)
        n = obs.shape[0]
        if self.num_timesteps + self._acting_steps < self.hp["learning_starts"]:
            # SB3's warm-up: uniform random actions until learning starts.
            unit = torch.rand(n, self.action_dim, generator=self.generator) * 2 - 1
        else:
            unit = self.policy(obs, False, self.generator)
        self._acting_steps += n
        return self.scaler.to_env(unit.numpy()), {}

    def flat_observations(self, observation: Any) -> torch.Tensor:
        obs = self.to_tensor(observation)
        return obs.reshape(obs.shape[0], -1)

    # ---- replay ---------------------------------------------------------------

    def replay_batches(self, data: EpisodeData) -> Iterator[Batch]:
        """Store the window's transitions, then yield one minibatch per gradient step.

        SB3's schedule: after every ``train_freq``-th vector step, once more
        than ``learning_starts`` transitions were seen, ``gradient_steps``
        updates. The minibatch of an update due after step ``t`` is drawn
        uniformly from the transitions stored up to step ``t``, as if learning
        had been interleaved with acting. All batches of the window are drawn
        at once and reach the device in one move.
        """
        steps = window_transitions(data)
        t_len, n_envs = steps["rewards"].shape[:2]
        obs = np.asarray(steps["observations"], dtype=np.float32)
        next_obs = np.asarray(steps["next_observations"], dtype=np.float32)
        self._ensure_replay(obs.shape[2:])
        assert self.replay is not None
        before = len(self.replay)
        self.replay.add(
            observations=obs.reshape(t_len * n_envs, *obs.shape[2:]),
            actions=self.scaler.from_env(np.asarray(steps["actions"])).reshape(t_len * n_envs, -1),
            rewards=np.asarray(steps["rewards"], dtype=np.float32).reshape(-1),
            next_observations=next_obs.reshape(t_len * n_envs, *obs.shape[2:]),
            terminated=steps["terminated"].reshape(-1),
        )
        t = np.arange(1, t_len + 1)
        due = ((self.vector_steps + t) % self.hp["train_freq"] == 0) & (
            self.num_timesteps + t * n_envs > self.hp["learning_starts"]
        )
        self.vector_steps += t_len
        self.num_timesteps += t_len * n_envs
        self._acting_steps = 0
        stored = np.minimum(before + t[due] * n_envs, self.replay.capacity)
        stored = np.repeat(stored, self.hp["gradient_steps"])
        if stored.size == 0:
            return
        batch_size = self.hp["batch_size"]
        indices = self.rng.integers(0, stored[:, None], size=(stored.size, batch_size))
        obs_dim = int(np.prod(obs.shape[2:]))
        row = 2 * obs_dim + self.action_dim + 2 + int(np.prod(self.noise_shape(batch_size)))
        chunk = max(1, PACK_FLOATS // (batch_size * row))
        for start in range(0, len(indices), chunk):
            yield from self._device_batches(indices[start : start + chunk], obs_dim)

    def noise_shape(self, batch_size: int) -> tuple[int, ...]:
        """Shape of the noise each update needs (drawn for the whole window at once)."""
        return (0,)

    def draw_noise(self, n_updates: int, batch_size: int) -> np.ndarray:
        """Noise for ``n_updates`` updates from ``self.generator`` (standard normal)."""
        shape = (n_updates, *self.noise_shape(batch_size))
        return torch.randn(shape, generator=self.generator).numpy()

    def _device_batches(self, indices: np.ndarray, obs_dim: int) -> Iterator[Batch]:
        n_updates, batch_size = indices.shape
        assert self.replay is not None
        sample = self.replay.get(indices.reshape(-1))
        gamma = self.hp["gamma"]
        parts = {
            "observation_actions": np.concatenate(
                [sample["observations"].reshape(-1, obs_dim), sample["actions"]], axis=1
            ),
            "rewards": sample["rewards"],
            "next_observations": sample["next_observations"].reshape(-1, obs_dim),
            "discounts": gamma * (1.0 - sample["terminated"].astype(np.float32)),
            "noise": self.draw_noise(n_updates, batch_size),
        }
        tensors = pack_to_device(parts, self.device)
        obs_act = tensors["observation_actions"].view(n_updates, batch_size, -1)
        rewards = tensors["rewards"].view(n_updates, batch_size)
        next_obs = tensors["next_observations"].view(n_updates, batch_size, obs_dim)
        discounts = tensors["discounts"].view(n_updates, batch_size)
        noise = tensors["noise"].view(n_updates, *self.noise_shape(batch_size))
        for j in range(n_updates):
            self.n_updates += 1
            yield Batch(
                obs_act[j, :, :obs_dim],
                obs_act[j],
                rewards[j],
                next_obs[j],
                discounts[j],
                noise[j],
            )

    def _ensure_replay(self, observation_shape: tuple[int, ...]) -> None:
        if self.observation_shape is None:
            self.observation_shape = tuple(observation_shape)
        if tuple(observation_shape) != self.observation_shape:
            raise ValueError(
                f"{self.algorithm}: the window's observations have shape {observation_shape}, "
                f"this agent was built for {self.observation_shape}"
            )
        if self.replay is None:
            self.replay = self._new_replay(self.hp["replay_capacity"])

    def _new_replay(self, capacity: int) -> ReplayBuffer:
        assert self.observation_shape is not None
        fields = transition_fields(self.observation_shape, (self.action_dim,))
        return ReplayBuffer(capacity, fields, seed=self.rng)

    def apply_hyperparams(self) -> None:
        super().apply_hyperparams()
        replay = getattr(self, "replay", None)
        if replay is not None and replay.capacity != self.hp["replay_capacity"]:
            # Resize at once, keeping the most recent transitions in their order.
            keep = min(len(replay), self.hp["replay_capacity"])
            oldest = replay.position - keep if replay.full else len(replay) - keep
            resized = self._new_replay(self.hp["replay_capacity"])
            if keep:
                resized.add(**replay.get((oldest + np.arange(keep)) % replay.capacity))
            self.replay = resized

    # ---- diagnostics ------------------------------------------------------

    def summary(self, stats: dict[str, list[torch.Tensor]]) -> dict[str, float]:
        """Means of the per-update diagnostics, read back from the device once."""
        keys = [k for k, values in stats.items() if values]
        means = torch.stack([torch.stack(stats[k]).mean() for k in keys]).tolist() if keys else []
        out = dict(zip(keys, means, strict=True))
        out["replay_size"] = float(len(self.replay) if self.replay is not None else 0)
        out["num_timesteps"] = float(self.num_timesteps)
        return out

    # ---- checkpoints ----------------------------------------------------

    def extra_state(self) -> dict[str, Any]:
        return {
            "num_timesteps": self.num_timesteps,
            "vector_steps": self.vector_steps,
            "n_updates": self.n_updates,
            "observation_shape": (
                list(self.observation_shape) if self.observation_shape is not None else None
            ),
        }

    def load_extra_state(self, state: dict[str, Any]) -> None:
        self.num_timesteps = int(state.get("num_timesteps", 0))
        self.vector_steps = int(state.get("vector_steps", 0))
        self.n_updates = int(state.get("n_updates", 0))
        self._acting_steps = 0
        shape = state.get("observation_shape")
        self.observation_shape = tuple(shape) if shape is not None else self.observation_shape

    def save_extra(self, path: Path) -> None:
        """The replay buffer goes with the weights, so a resumed run keeps its experience."""
        if self.replay is not None:
            self.replay.save(path / REPLAY)

    def load_extra(self, path: Path) -> None:
        self.replay = None
        if (path / REPLAY).is_file():
            if self.observation_shape is None:
                raise ValueError(f"{path} holds a replay buffer but no observation shape")
            self.replay = self._new_replay(self.hp["replay_capacity"])
            self.replay.load(path / REPLAY)


def pack_to_device(parts: dict[str, np.ndarray], device: torch.device) -> dict[str, torch.Tensor]:
    """Copy float arrays into one block and move it to ``device`` in one transfer.

    Returns flat views of the block, one per name.
    """
    sizes = [int(a.size) for a in parts.values()]
    block = np.empty(sum(sizes), dtype=np.float32)
    offset = 0
    for array, size in zip(parts.values(), sizes, strict=True):
        block[offset : offset + size] = array.reshape(-1)
        offset += size
    tensor = torch.from_numpy(block).to(device)
    views, offset = {}, 0
    for name, size in zip(parts, sizes, strict=True):
        views[name] = tensor[offset : offset + size]
        offset += size
    return views
