"""TorchDQNAgent: deep Q-learning with experience replay and a target network.

Mnih et al. (2015), "Human-level control through deep reinforcement
learning", with the prioritized replay of Schaul et al. (2016) and the n-step
targets of Sutton & Barto (2018, eq. 7.1) as options. Each learn() call stores
the window's transitions (each with its real next observation) and then takes
``gradient_steps`` steps on

    y_i = R_i + γ_i · (1 − terminated_i) · max_a' Q_target(s'_i, a')
    L   = Σ_i w_i · Huber(Q(s_i, a_i) − y_i) / B        (squared error with huber_loss False)

where an n-step transition carries R = Σ_{k<m} γ^k r_{t+k} and γ_i = γ^m
(m = n unless the episode ended sooner; m = 1, γ_i = γ for plain DQN), and
w_i = 1 for uniform replay or the importance weight (N·P(i))^−β / max_j w_j
of prioritized replay, whose priorities become |Q(s_i, a_i) − y_i| + 1e-6.
Every ``target_update_freq`` gradient steps the target network becomes a copy
of the online one (a hard update). Truncated episodes bootstrap from their
final observation; only ``terminated`` stops the bootstrap.

Exploration is ε-greedy. ε is a function of learning progress alone (never of
act()): linear from ``epsilon`` to ``epsilon_min`` over ``exploration_steps``
env steps (Stable-Baselines3's schedule), or, with ``exploration_steps = 0``,
``max(epsilon_min, epsilon · epsilon_decay^k)`` after k learn() calls
(tensor-optix's). Until ``learning_starts`` env steps have been learned from,
training actions are uniformly random.

Speed: between two target updates the target network does not change, so the
targets of all those gradient steps come from one batched forward pass, and
with uniform replay all their minibatches are drawn with one random call and
one gather per field, i.e. one host-to-device copy per window. Nothing is read
back from the device until the window's updates are done.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F
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
from optix_torch.config import dqn as config
from optix_torch.networks import mlp, seeded

REPLAY_FILE = "replay.npz"
PRIORITY_EPS = 1e-6


class TorchDQNAgent(TorchAgentBase):
    """DQN on a user's Q-network (observations → one Q-value per action)."""

    algorithm = "dqn"
    DEFAULTS = config.DEFAULTS
    BOUNDS = config.BOUNDS

    def __init__(
        self,
        q_network: nn.Module,
        n_actions: int,
        optimizer: torch.optim.Optimizer | None = None,
        hyperparams: HyperparamSet | dict[str, Any] | None = None,
        device: str | torch.device = "auto",
        seed: int | None = None,
        observation_space: gym.Space | None = None,
    ) -> None:
        super().__init__(hyperparams, device, seed)
        self.n_actions = check_n_actions(n_actions, self.algorithm)
        check_network_output(q_network, observation_space, (self.n_actions,), self.algorithm)
        self.q_network = q_network.to(self.device)
        self.target_network = copy.deepcopy(self.q_network).requires_grad_(False)
        self.optimizer = optimizer or default_optimizer(
            self.q_network.parameters(), self.hp["learning_rate"]
        )
        self.gradients = FlatGradients(self.q_network.parameters())
        self.replay = Replay(self.rng, self.algorithm)
        self.env_steps = 0  # env steps learned from
        self.windows = 0  # learn() calls
        self.updates = 0  # gradient steps
        self.apply_hyperparams()

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

    @property
    def epsilon(self) -> float:
        """The exploration rate of the next training rollout."""
        hp = self.hp
        if self.env_steps < hp["learning_starts"]:
            return 1.0
        if hp["exploration_steps"] > 0:
            progress = min(1.0, self.env_steps / hp["exploration_steps"])
            return hp["epsilon"] + progress * (hp["epsilon_min"] - hp["epsilon"])
        return max(hp["epsilon_min"], hp["epsilon"] * hp["epsilon_decay"] ** self.windows)

    # ---- acting -------------------------------------------------------------

    @torch.no_grad()
    def act(self, observation: Any, deterministic: bool = False) -> np.ndarray:
        greedy = self.q_network(self.to_tensor(observation)).argmax(dim=-1).cpu().numpy()
        if deterministic:
            return greedy
        n = len(greedy)
        explore = torch.rand(n, generator=self.act_generator).numpy() < self.epsilon
        random = torch.randint(self.n_actions, (n,), generator=self.act_generator).numpy()
        return np.where(explore, random, greedy)

    @torch.no_grad()
    def act_info(self, observation: Any, episode_start: np.ndarray) -> tuple[np.ndarray, dict]:
        n = len(observation)
        explore = self.rng.random(n) < self.epsilon
        actions = self.rng.integers(self.n_actions, size=n)
        if not explore.all():  # the network is only needed where a row exploits
            greedy = self.q_network(self.to_tensor(observation)).argmax(dim=-1).cpu().numpy()
            actions = np.where(explore, actions, greedy)
        return actions, {}

    # ---- learning -----------------------------------------------------------

    def learn(self, episode_data: EpisodeData) -> dict[str, float]:
        hp = self.hp
        self.replay.store(episode_data)
        self.env_steps += episode_data.n_steps
        self.windows += 1
        stats = {"epsilon": self.epsilon, "buffer_size": float(len(self.replay))}
        steps = hp["gradient_steps"]
        if (
            self.env_steps < hp["learning_starts"]
            or len(self.replay) < hp["batch_size"]
            or not steps
        ):
            return stats

        batch_size, sync_every = hp["batch_size"], hp["target_update_freq"]
        losses, targets = [], []
        done = 0
        while done < steps:
            # Gradient steps until the next target update share one target network.
            segment = min(steps - done, sync_every - self.updates % sync_every)
            if self.replay.prioritized:
                segment = 1  # each minibatch is drawn with the priorities the last step left
            batch = self.replay.sample(segment, batch_size, hp["per_beta"], self.device)
            with torch.no_grad():
                next_q = self.target_network(batch["next_observations"].flatten(0, 1))
                # y = R + γ_m (1 − terminated) max_a' Q_target(s', a')
                y = batch["rewards"] + batch["bootstrap"] * next_q.max(dim=-1).values.view(
                    segment, batch_size
                )
            for j in range(segment):
                weights = batch["weights"][j] if "weights" in batch else None
                loss, td = self._gradient_step(
                    batch["observations"][j], batch["actions"][j], y[j], weights
                )
                losses.append(loss)
            if self.replay.prioritized:
                self.replay.update_priorities(batch["indices"], td.abs().cpu().numpy())
            targets.append(y.mean())
            self.updates += segment
            done += segment
            if self.updates % sync_every == 0:
                self._sync_target()
        stats["loss"] = float(torch.stack(losses).mean())
        stats["target_q"] = float(torch.stack(targets).mean())
        stats["updates"] = float(self.updates)
        return stats

    def _gradient_step(
        self,
        obs: torch.Tensor,
        actions: torch.Tensor,
        target: torch.Tensor,
        weights: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        q = self.q_network(obs).gather(1, actions.unsqueeze(1)).squeeze(1)
        error = F.smooth_l1_loss if self.hp["huber_loss"] else F.mse_loss
        if weights is None:
            loss = error(q, target)
        else:
            loss = (weights * error(q, target, reduction="none")).mean()
        self.gradients.zero()
        loss.backward()
        self.gradients.clip(self.hp["max_grad_norm"])
        self.optimizer.step()
        return loss.detach(), (q - target).detach()

    @torch.no_grad()
    def _sync_target(self) -> None:
        """θ_target ← θ (Mnih et al. 2015: every C updates)."""
        torch._foreach_copy_(
            list(self.target_network.state_dict().values()),
            list(self.q_network.state_dict().values()),
        )

    # ---- checkpoints --------------------------------------------------------

    def extra_state(self) -> dict[str, Any]:
        return {"env_steps": self.env_steps, "windows": self.windows, "updates": self.updates}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        self.env_steps = int(state.get("env_steps", 0))
        self.windows = int(state.get("windows", 0))
        self.updates = int(state.get("updates", 0))

    def save_extra(self, path: Path) -> None:
        self.replay.save(path / REPLAY_FILE)

    def load_extra(self, path: Path) -> None:
        self.replay.load(path / REPLAY_FILE)

    def teardown(self) -> None:
        super().teardown()
        self.replay.clear()


# ---- replay memory -------------------------------------------------------------


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


# ---- construction helpers (shared with Rainbow) ------------------------------------


class FlatGradients:
    """Every parameter's ``.grad`` as a view into one flat tensor.

    Backward accumulates into existing gradients in place, so the views stay
    put; zeroing them, their global norm and the clipping are then one op each
    instead of one per parameter. Equivalent to ``optimizer.zero_grad()`` and
    ``nn.utils.clip_grad_norm_`` (coefficient max_norm / (‖g‖ + 1e-6), capped
    at 1). Parameters of mixed devices or dtypes fall back to those calls.
    """

    def __init__(self, params: Any) -> None:
        self.params = [p for p in params if p.requires_grad]
        kinds = {(p.device, p.dtype) for p in self.params}
        self.flat: torch.Tensor | None = None
        if len(kinds) == 1:
            device, dtype = kinds.pop()
            self.flat = torch.zeros(sum(p.numel() for p in self.params), device=device, dtype=dtype)
            self._bind()

    def _bind(self) -> None:
        assert self.flat is not None
        offset = 0
        for p in self.params:
            p.grad = self.flat[offset : offset + p.numel()].view_as(p)
            offset += p.numel()

    def zero(self) -> None:
        if self.flat is None:
            for p in self.params:
                p.grad = None
            return
        first = self.params[0].grad
        if first is None or first.data_ptr() != self.flat.data_ptr():
            self._bind()  # someone set the gradients to None (optimizer.zero_grad())
        self.flat.zero_()

    def clip(self, max_norm: float) -> torch.Tensor:
        """Scale the gradients to a global norm of at most ``max_norm``; return the norm before."""
        if self.flat is None:
            return nn.utils.clip_grad_norm_(self.params, max_norm)
        norm = torch.linalg.vector_norm(self.flat)
        self.flat.mul_(torch.clamp(max_norm / (norm + 1e-6), max=1.0))
        return norm


class LeanAdam(torch.optim.Adam):
    """``torch.optim.Adam(fused=True)`` whose step goes straight to the fused kernel.

    The same update, state and state dict as Adam's (a checkpoint loads into
    either), without the per-step Python bookkeeping of ``Optimizer.step``
    (grouping tensors by device, hooks, profiling labels), which costs more
    than the kernel for a small network. Hyperparameters are read from the
    param group at every step, so a new learning rate applies at once. Anything
    the shortcut does not cover (several groups, amsgrad, maximize, a missing
    gradient, a closure) goes through Adam's own step.
    """

    def __init__(self, params: Any, lr: float) -> None:
        super().__init__(params, lr=lr, fused=True)
        self._tensors: tuple[list[torch.Tensor], ...] | None = None

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        self._tensors = None

    def _lists(self) -> tuple[list[torch.Tensor], ...] | None:
        params = self.param_groups[0]["params"]
        tensors = self._tensors
        if tensors is not None and self.state.get(params[0], {}).get("exp_avg") is tensors[2][0]:
            return tensors
        if any(p.grad is None for p in params):
            return None
        for p in params:
            state = self.state[p]
            if not state:  # as Adam initialises it for the fused kernel
                state["step"] = torch.zeros((), dtype=torch.float32, device=p.device)
                state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        states = [self.state[p] for p in params]
        self._tensors = (
            list(params),
            [p.grad for p in params],
            [s["exp_avg"] for s in states],
            [s["exp_avg_sq"] for s in states],
            [s["step"] for s in states],
        )
        return self._tensors

    @torch.no_grad()
    def step(self, closure: Any = None) -> Any:
        group = self.param_groups[0]
        plain = (
            closure is not None
            or len(self.param_groups) != 1
            or group["amsgrad"]
            or group["maximize"]
            or group.get("decoupled_weight_decay", False)
        )
        tensors = None if plain else self._lists()
        if tensors is None:
            self._tensors = None
            return super().step(closure)
        params, grads, exp_avgs, exp_avg_sqs, steps = tensors
        if grads[0] is not params[0].grad:  # gradients were replaced: refresh the lists
            grads[:] = [p.grad for p in params]
            if any(g is None for g in grads):
                self._tensors = None
                return super().step(closure)
        beta1, beta2 = group["betas"]
        torch._foreach_add_(steps, 1)
        torch._fused_adam_(
            params,
            grads,
            exp_avgs,
            exp_avg_sqs,
            [],
            steps,
            lr=group["lr"],
            beta1=beta1,
            beta2=beta2,
            weight_decay=group["weight_decay"],
            eps=group["eps"],
            amsgrad=False,
            maximize=False,
        )
        return None


def default_optimizer(params: Any, learning_rate: float) -> torch.optim.Optimizer:
    """Adam on the fused kernel (``LeanAdam``), else Adam's foreach implementation."""
    params = list(params)
    try:
        return LeanAdam(params, lr=learning_rate)
    except (RuntimeError, ValueError):
        return torch.optim.Adam(params, lr=learning_rate, foreach=True)


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


def make_dqn(
    observation_space: gym.Space,
    action_space: gym.Space,
    *,
    hyperparams: HyperparamSet | dict[str, Any] | None = None,
    device: str = "auto",
    seed: int | None = None,
) -> TorchDQNAgent:
    """The AgentSpec factory: a ReLU MLP [256, 256] Q-network (rl-zoo's CartPole network)."""
    n_actions = require_discrete(action_space, "dqn")
    obs_dim = flat_observation_dim(observation_space, "dqn")
    with seeded(seed):
        q_network = mlp(obs_dim, n_actions, (256, 256), nn.ReLU)
    if len(observation_space.shape) != 1:
        q_network = nn.Sequential(nn.Flatten(), q_network)
    return TorchDQNAgent(
        q_network,
        n_actions,
        hyperparams=hyperparams,
        device=device,
        seed=seed,
        observation_space=observation_space,
    )
