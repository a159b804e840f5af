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

from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from optix_core.types import EpisodeData, HyperparamSet
from optix_torch.config import dqn as config
from optix_torch.networks import mlp, seeded
from optix_torch.q_learning import (
    QAgentBase,
    check_n_actions,
    check_network_output,
    flat_observation_dim,
    require_discrete,
)


class TorchDQNAgent(QAgentBase):
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
        self.n_actions = check_n_actions(n_actions, self.algorithm)
        check_network_output(q_network, observation_space, (self.n_actions,), self.algorithm)
        super().__init__(q_network, optimizer, hyperparams, device, seed)
        # A plain Linear/ReLU/Tanh stack gets its gradients by hand (SequentialMLP).
        self.mlp = SequentialMLP.of(self.q_network) if self.gradients.bind() else None
        self.windows = 0  # learn() calls
        self.apply_hyperparams()

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

    # ---- checkpoints --------------------------------------------------------

    def extra_state(self) -> dict[str, Any]:
        return {**super().extra_state(), "windows": self.windows}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        super().load_extra_state(state)
        self.windows = int(state.get("windows", 0))


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
