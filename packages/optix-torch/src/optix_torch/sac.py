"""TorchSACAgent: soft actor-critic with a learned temperature.

Haarnoja et al. (2018), "Soft Actor-Critic Algorithms and Applications",
as Stable-Baselines3 runs it. Per gradient step, on a minibatch from replay:

    a = tanh(u),  u = μ_θ(s) + σ_θ(s)·ε,  ε ~ N(0, I)        (reparameterised)
    log π(a|s) = log N(u; μ, σ) − Σᵢ log(1 − tanh²(uᵢ))       (squashing correction)
    L_α = −log α · E[log π(a|s) + H̄],   H̄ = −dim(A)           (automatic temperature)
    y   = r + γ(1 − d)·(minⱼ Q̄ⱼ(s′, a′) − α log π(a′|s′)),  a′ ~ π(·|s′)
    L_Q = ½ Σⱼ E[(Qⱼ(s, a) − y)²]                            (twin critics)
    L_π = E[α log π(a|s) − minⱼ Qⱼ(s, a)],  a ~ π(·|s)       (through the updated critics)
    Q̄  ← τ·Q + (1 − τ)·Q̄                                     (Polyak)

The actor outputs ``[mean || log_std]`` (``2·action_dim`` columns, log σ
clamped to [−20, 2] as in SB3); actions live in (−1, 1) and are scaled to the
Box bounds. The critics take ``[obs || action]``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from optix_core.types import EpisodeData, HyperparamSet
from optix_torch.config import sac as config
from optix_torch.networks import mlp, seeded
from optix_torch.offpolicy import (
    OffPolicyAgent,
    TwinQ,
    action_size,
    check_box_spaces,
    observation_size,
    polyak,
    target_copy,
    twin_critics,
)
from optix_torch.optim import default_optimizer, optimizer_step

LOG_STD_MIN, LOG_STD_MAX = -20.0, 2.0


class Temperature(nn.Module):
    """The entropy temperature α, learned as log α."""

    def __init__(self, initial: float) -> None:
        super().__init__()
        self.log_alpha = nn.Parameter(torch.full((1,), math.log(initial)))


class TorchSACAgent(OffPolicyAgent):
    """SAC on a continuous (Box) action space.

    tensor-optix's arguments: ``actor`` (obs → ``[mean || log_std]``),
    ``critic1`` and ``critic2`` (``[obs || action]`` → Q), ``action_dim`` and
    the three optimizers. ``alpha_optimizer`` gives the kind of optimizer for
    the temperature (its class and settings are reused for the agent's own
    log α, as tensor-optix did); every optimizer left out is a fused Adam.
    optix adds ``critics`` (one module giving both Q columns, like ``TwinQ``,
    instead of ``critic1``/``critic2``), ``observation_space`` and
    ``action_space`` (networks are then checked, and actions scaled to the
    bounds), ``target_entropy`` (default −dim(A)) and ``seed``.
    """

    algorithm = "sac"
    DEFAULTS = config.DEFAULTS
    BOUNDS = config.BOUNDS
    SEARCH_SPACE = config.SEARCH_SPACE

    def __init__(
        self,
        actor: nn.Module,
        critic1: nn.Module | None = None,
        critic2: nn.Module | None = None,
        action_dim: int | None = None,
        actor_optimizer: torch.optim.Optimizer | None = None,
        critic_optimizer: torch.optim.Optimizer | None = None,
        alpha_optimizer: torch.optim.Optimizer | None = None,
        hyperparams: HyperparamSet | dict[str, Any] | None = None,
        device: str | torch.device = "auto",
        seed: int | None = None,
        *,
        critics: nn.Module | None = None,
        observation_space: gym.Space | None = None,
        action_space: gym.Space | None = None,
        target_entropy: float | None = None,
    ) -> None:
        super().__init__(hyperparams, device, seed)
        critic = twin_critics(critic1, critic2, critics, self.algorithm)
        self.setup_offpolicy(
            action_size(action_dim, action_space, self.algorithm), observation_space, action_space
        )
        self.actor = actor
        self.check_networks(observation_size(observation_space, actor), 2 * self.action_dim, critic)
        self.actor = actor.to(self.device)
        self.critic = critic.to(self.device)
        self.critic_target = target_copy(self.critic)
        self.temperature = Temperature(self.hp["ent_coef"]).to(self.device)
        self.target_entropy = -float(self.action_dim) if target_entropy is None else target_entropy
        # log π's constant: Σᵢ (log √(2π) + 2 log 2), see squash()
        self._log_prob_const = self.action_dim * (0.5 * math.log(2 * math.pi) + 2 * math.log(2))

        lr = self.hp["learning_rate"]
        self.actor_optimizer = actor_optimizer or default_optimizer(actor.parameters(), lr)
        self.critic_optimizer = critic_optimizer or default_optimizer(self.critic.parameters(), lr)
        log_alpha = [self.temperature.log_alpha]
        if alpha_optimizer is None:
            self.alpha_optimizer = default_optimizer(log_alpha, lr)
        else:
            self.alpha_optimizer = type(alpha_optimizer)(log_alpha, **alpha_optimizer.defaults)
        self.actor_params = list(self.actor.parameters())
        self.critic_params = list(self.critic.parameters())
        self.target_params = list(self.critic_target.parameters())
        self.apply_hyperparams()

    def modules(self) -> dict[str, nn.Module]:
        return {
            "actor": self.actor,
            "critic": self.critic,
            "critic_target": self.critic_target,
            "temperature": self.temperature,
        }

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {
            "actor": self.actor_optimizer,
            "critic": self.critic_optimizer,
            "alpha": self.alpha_optimizer,
        }

    # ---- acting -------------------------------------------------------------

    def policy(
        self, observations: torch.Tensor, deterministic: bool, generator: torch.Generator
    ) -> torch.Tensor:
        mean, log_std = self.actor(observations).cpu().chunk(2, dim=-1)
        if deterministic:
            return torch.tanh(mean)
        eps = torch.randn(mean.shape, generator=generator)
        return torch.tanh(mean + log_std.clamp(LOG_STD_MIN, LOG_STD_MAX).exp() * eps)

    def squash(self, out: torch.Tensor, eps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """a = tanh(μ + σ·ε) and log π(a|s), from the actor's ``[mean || log_std]``.

        log N(u; μ, σ) = Σᵢ −εᵢ²/2 − log σᵢ − log √(2π), and the squashing term
        log(1 − tanh²u) = 2(log 2 − u − softplus(−2u)) is the exact, stable form.
        """
        mean, log_std = out.chunk(2, dim=-1)
        log_std = log_std.clamp(LOG_STD_MIN, LOG_STD_MAX)
        u = torch.addcmul(mean, log_std.exp(), eps)
        log_prob = (2 * (u + F.softplus(-2 * u)) - log_std - 0.5 * eps.square()).sum(-1)
        return torch.tanh(u), log_prob - self._log_prob_const

    def noise_shape(self, batch_size: int) -> tuple[int, ...]:
        return (2, batch_size, self.action_dim)  # ε for a ~ π(·|s) and for a′ ~ π(·|s′)

    # ---- learning -----------------------------------------------------------

    def learn(self, episode_data: EpisodeData) -> dict[str, float]:
        auto, tau = self.hp["auto_ent_coef"], self.hp["tau"]
        log_alpha = self.temperature.log_alpha
        if not auto:
            with torch.no_grad():
                log_alpha.fill_(math.log(self.hp["ent_coef"]))
        stats: dict[str, list[torch.Tensor]] = {"critic_loss": [], "actor_loss": [], "entropy": []}
        for batch in self.replay_batches(episode_data):
            obs, eps = batch.observations, batch.noise
            a_pi, log_pi = self.squash(self.actor(obs), eps[0])
            alpha = log_alpha.detach().exp()

            if auto:
                # L_α = −log α · E[log π(a|s) + H̄]: its gradient, set directly.
                log_alpha.grad = -(log_pi.detach().mean() + self.target_entropy).reshape(1)
                optimizer_step(self.alpha_optimizer)()

            with torch.no_grad():
                next_obs = batch.next_observations
                a_next, log_next = self.squash(self.actor(next_obs), eps[1])
                q_next = self.critic_target(torch.cat([next_obs, a_next], dim=1)).amin(dim=1)
                # y = r + γ(1 − d)·(min Q̄(s′, a′) − α log π(a′|s′))
                y = torch.addcmul(batch.rewards, batch.discounts, q_next - alpha * log_next)

            # L_Q = ½ Σⱼ E[(Qⱼ(s, a) − y)²], both critics in one pass
            critic_loss = (self.critic(batch.observation_actions) - y[:, None]).square().mean()
            self.critic_optimizer.zero_grad(set_to_none=True)
            critic_loss.backward()
            optimizer_step(self.critic_optimizer)()

            # L_π = E[α log π(a|s) − min Q(s, a)]; gradients for the actor only
            q_pi = self.critic(torch.cat([obs, a_pi], dim=1)).amin(dim=1)
            actor_loss = (alpha * log_pi - q_pi).mean()
            self.actor_optimizer.zero_grad(set_to_none=True)
            actor_loss.backward(inputs=self.actor_params)
            optimizer_step(self.actor_optimizer)()

            polyak(self.target_params, self.critic_params, tau)
            stats["critic_loss"].append(critic_loss.detach())
            stats["actor_loss"].append(actor_loss.detach())
            stats["entropy"].append(-log_pi.detach().mean())
        out = self.summary(stats)
        out["ent_coef"] = float(log_alpha.detach().exp())
        return out


def make_sac(
    observation_space: gym.Space,
    action_space: gym.Space,
    *,
    hyperparams: HyperparamSet | None = None,
    device: str = "auto",
    seed: int | None = None,
    hidden: Sequence[int] = (256, 256),
) -> TorchSACAgent:
    """The AgentSpec factory: SB3's networks (ReLU MLPs, [256, 256]), twin critics fused."""
    check_box_spaces("sac", observation_space, action_space)
    obs_dim = int(np.prod(observation_space.shape))
    act_dim = int(np.prod(action_space.shape))
    with seeded(seed):
        actor = mlp(obs_dim, 2 * act_dim, hidden, nn.ReLU)
        critics = TwinQ(obs_dim + act_dim, hidden, nn.ReLU)
    return TorchSACAgent(
        actor,
        critics=critics,
        hyperparams=hyperparams,
        device=device,
        seed=seed,
        observation_space=observation_space,
        action_space=action_space,
    )
