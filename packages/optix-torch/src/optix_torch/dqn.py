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
back from the device until the window's updates are done. Gradients live in
one flat tensor (``FlatGradients``: zeroing and norm clipping are one op
each), Adam runs on its fused kernel without ``Optimizer.step``'s wrapper
(``LeanAdam``), and a plain Linear/ReLU/Tanh Q-network gets its gradients by
hand instead of through an autograd graph (``SequentialMLP``).
"""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any, ClassVar

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
from optix_torch.optim import FlatGradients, default_optimizer, optimizer_step

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
        self.optimizer_step = optimizer_step(self.optimizer)
        # A plain Linear/ReLU/Tanh stack gets its gradients by hand (SequentialMLP).
        self.mlp = SequentialMLP.of(self.q_network) if self.gradients.bind() else None
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

    def q_values(self, obs: torch.Tensor) -> torch.Tensor:
        return self.mlp.q_values(obs) if self.mlp is not None else self.q_network(obs)

    @torch.no_grad()
    def act(self, observation: Any, deterministic: bool = False) -> np.ndarray:
        greedy = self.q_values(self.to_tensor(observation)).argmax(dim=-1).cpu().numpy()
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
            greedy = self.q_values(self.to_tensor(observation)).argmax(dim=-1).cpu().numpy()
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
        if self.mlp is not None:
            self.gradients.bind()  # SequentialMLP writes into the flat gradients' views
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
        if self.mlp is not None:
            loss, td = self.mlp.td_step(
                obs, actions, target, weights, self.hp["huber_loss"], self.gradients.views
            )
        else:
            q = self.q_network(obs).gather(1, actions.unsqueeze(1)).squeeze(1)
            error = F.smooth_l1_loss if self.hp["huber_loss"] else F.mse_loss
            if weights is None:
                loss = error(q, target)
            else:
                loss = (weights * error(q, target, reduction="none")).mean()
            self.gradients.zero()
            loss.backward()
            loss, td = loss.detach(), (q - target).detach()
        self.gradients.clip(self.hp["max_grad_norm"])
        self.optimizer_step()
        return loss, td

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


class SequentialMLP:
    """Forward and backward passes of an ``nn.Sequential`` MLP written out by hand.

    For a network of the form Linear (ReLU|Tanh Linear)* (the default
    Q-network, and many users'), the TD loss's gradient is a handful of
    matrix products written straight into the flat gradient tensor, without
    building an autograd graph: for a small network on a CPU the graph's
    bookkeeping costs more than its arithmetic. With z_0 = x,
    h_i = z_i W_iᵀ + b_i and z_{i+1} = σ(h_i),

        ∂L/∂W_i = g_iᵀ z_i,   ∂L/∂b_i = Σ_rows g_i,   g_{i−1} = (g_i W_i) ⊙ σ'(h_{i−1})

    starting from g_last = ∂L/∂q, which is nonzero only in the taken action's
    column: w · clip(q − y, −1, 1)/B for the Huber loss, w · 2(q − y)/B for
    the squared error. The result equals autograd's (tested). ``of`` returns
    None for any other network (or one with hooks), which then goes through
    autograd as usual.
    """

    ACTIVATIONS: ClassVar[dict[type[nn.Module], str]] = {nn.ReLU: "relu", nn.Tanh: "tanh"}

    def __init__(self, linears: list[nn.Linear], activations: list[str]) -> None:
        self.linears, self.activations = linears, activations

    @classmethod
    def of(cls, network: nn.Module) -> SequentialMLP | None:
        if type(network) is not nn.Sequential or len(network) % 2 == 0:
            return None
        layers = list(network)
        linears = layers[0::2]
        activations = [cls.ACTIVATIONS.get(type(m)) for m in layers[1::2]]
        if any(type(m) is not nn.Linear for m in linears) or None in activations:
            return None
        if any(m._forward_hooks or m._forward_pre_hooks or m._backward_hooks for m in layers):
            return None
        if network._forward_hooks or network._forward_pre_hooks:
            return None
        if any(not p.requires_grad for p in network.parameters()):
            return None
        return cls(linears, activations)  # type: ignore[arg-type]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Every layer's input, then the output: [z_0, z_1, ..., q]."""
        values = [x]
        for i, layer in enumerate(self.linears):
            if layer.bias is None:
                h = torch.mm(values[-1], layer.weight.t())
            else:
                h = torch.addmm(layer.bias, values[-1], layer.weight.t())
            if i < len(self.activations):
                h = h.relu() if self.activations[i] == "relu" else h.tanh()
            values.append(h)
        return values

    def q_values(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward(x)[-1]

    @torch.no_grad()
    def td_step(
        self,
        obs: torch.Tensor,
        actions: torch.Tensor,
        target: torch.Tensor,
        weights: torch.Tensor | None,
        huber: bool,
        grads: list[torch.Tensor],
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Write ∂L/∂θ into ``grads`` (the parameters' order); return the loss and q − y."""
        values = self.forward(obs)
        q = values[-1]
        index = actions.unsqueeze(1)
        q_taken = q.gather(1, index).squeeze(1)
        error = q_taken - target
        batch = float(len(error))
        if huber:
            per_sample = F.smooth_l1_loss(q_taken, target, reduction="none")
            slope = error.clamp(-1.0, 1.0)
        else:
            per_sample = error.square()
            slope = error * 2.0
        if weights is not None:
            per_sample, slope = per_sample * weights, slope * weights
        loss = per_sample.mean()
        g = torch.zeros_like(q).scatter_(1, index, slope.div_(batch).unsqueeze(1))
        slot = len(grads)
        for i in range(len(self.linears) - 1, -1, -1):
            layer = self.linears[i]
            if layer.bias is not None:
                slot -= 1
                torch.sum(g, 0, out=grads[slot])
            slot -= 1
            torch.mm(g.t(), values[i], out=grads[slot])
            if i:
                g = torch.mm(g, layer.weight)
                if self.activations[i - 1] == "relu":
                    g = torch.ops.aten.threshold_backward(g, values[i], 0.0)
                else:
                    g = torch.ops.aten.tanh_backward(g, values[i])
        return loss, error


# ---- construction helpers (shared with Rainbow) ------------------------------------


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
