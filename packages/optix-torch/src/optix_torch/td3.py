"""TorchTD3Agent: twin delayed deep deterministic policy gradient.

Fujimoto et al. (2018), "Addressing Function Approximation Error in
Actor-Critic Methods", as Stable-Baselines3 runs it. Per gradient step, on a
minibatch from replay:

    ã = clip(π̄(s′) + clip(ε, −c, c), −1, 1),  ε ~ N(0, σ̃²)   (target policy smoothing)
    y = r + γ(1 − d)·minⱼ Q̄ⱼ(s′, ã)                           (clipped double Q)
    L_Q = Σⱼ E[(Qⱼ(s, a) − y)²]

and every ``policy_delay``-th step (delayed policy updates):

    L_π = −E[Q₁(s, π(s))]
    Q̄ ← τ·Q + (1 − τ)·Q̄,   π̄ ← τ·π + (1 − τ)·π̄                (Polyak)

Exploration adds N(0, expl_noise²) to π(s) and clips to (−1, 1). The actor
outputs ``action_dim`` values in (−1, 1) (end it with ``nn.Tanh``); actions are
scaled to the Box bounds. The critics take ``[obs || action]``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from optix_core.types import EpisodeData, HyperparamSet
from optix_torch.config import td3 as config
from optix_torch.networks import mlp, seeded
from optix_torch.offpolicy import (
    OffPolicyAgent,
    TwinQ,
    action_size,
    check_box_spaces,
    first_critic,
    observation_size,
    polyak,
    target_copy,
    twin_critics,
)
from optix_torch.optim import default_optimizer, optimizer_step


class TorchTD3Agent(OffPolicyAgent):
    """TD3 on a continuous (Box) action space.

    tensor-optix's arguments: ``actor`` (obs → action in (−1, 1)),
    ``critic1`` and ``critic2`` (``[obs || action]`` → Q), ``action_dim`` and
    the two optimizers (a fused Adam for each one left out). optix adds
    ``critics`` (one module giving both Q columns, like ``TwinQ``, instead of
    ``critic1``/``critic2``), ``observation_space`` and ``action_space``
    (networks are then checked, and actions scaled to the bounds) and ``seed``.
    """

    algorithm = "td3"
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
        hyperparams: HyperparamSet | dict[str, Any] | None = None,
        device: str | torch.device = "auto",
        seed: int | None = None,
        *,
        critics: nn.Module | None = None,
        observation_space: gym.Space | None = None,
        action_space: gym.Space | None = None,
    ) -> None:
        super().__init__(hyperparams, device, seed)
        critic = twin_critics(critic1, critic2, critics, self.algorithm)
        self.setup_offpolicy(
            action_size(action_dim, action_space, self.algorithm), observation_space, action_space
        )
        self.actor = actor
        self.check_networks(observation_size(observation_space, actor), self.action_dim, critic)
        self.actor = actor.to(self.device)
        self.critic = critic.to(self.device)
        self.actor_target = target_copy(self.actor)
        self.critic_target = target_copy(self.critic)

        lr = self.hp["learning_rate"]
        self.actor_optimizer = actor_optimizer or default_optimizer(actor.parameters(), lr)
        self.critic_optimizer = critic_optimizer or default_optimizer(self.critic.parameters(), lr)
        self.actor_params = list(self.actor.parameters())
        self.online_params = self.actor_params + list(self.critic.parameters())
        self.target_params = list(self.actor_target.parameters()) + list(
            self.critic_target.parameters()
        )
        self.apply_hyperparams()

    def modules(self) -> dict[str, nn.Module]:
        return {
            "actor": self.actor,
            "actor_target": self.actor_target,
            "critic": self.critic,
            "critic_target": self.critic_target,
        }

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"actor": self.actor_optimizer, "critic": self.critic_optimizer}

    # ---- acting -------------------------------------------------------------

    def policy(
        self, observations: torch.Tensor, deterministic: bool, generator: torch.Generator
    ) -> torch.Tensor:
        action = self.actor(observations).cpu()
        if not deterministic:
            noise = torch.randn(action.shape, generator=generator)
            action = action + self.hp["expl_noise"] * noise
        return action.clamp(-1.0, 1.0)

    def noise_shape(self, batch_size: int) -> tuple[int, ...]:
        return (batch_size, self.action_dim)  # ε of the target policy smoothing

    # ---- learning -----------------------------------------------------------

    def learn(self, episode_data: EpisodeData) -> dict[str, float]:
        hp = self.hp
        tau, delay = hp["tau"], hp["policy_delay"]
        sigma, clip = hp["target_noise"], hp["noise_clip"]
        stats: dict[str, list[torch.Tensor]] = {"critic_loss": [], "actor_loss": []}
        for batch in self.replay_batches(episode_data):
            with torch.no_grad():
                next_obs = batch.next_observations
                # ã = clip(π̄(s′) + clip(σ̃·ε, −c, c), −1, 1)
                smoothing = (batch.noise * sigma).clamp_(-clip, clip)
                a_next = (self.actor_target(next_obs) + smoothing).clamp_(-1.0, 1.0)
                q_next = self.critic_target(torch.cat([next_obs, a_next], dim=1)).amin(dim=1)
                y = torch.addcmul(batch.rewards, batch.discounts, q_next)  # r + γ(1 − d)·min Q̄

            # L_Q = Σⱼ E[(Qⱼ(s, a) − y)²], both critics in one pass
            critic_loss = 2 * (self.critic(batch.observation_actions) - y[:, None]).square().mean()
            self.critic_optimizer.zero_grad(set_to_none=True)
            critic_loss.backward()
            optimizer_step(self.critic_optimizer)()
            stats["critic_loss"].append(critic_loss.detach())

            if self.n_updates % delay == 0:
                # L_π = −E[Q₁(s, π(s))]; gradients for the actor only
                obs = batch.observations
                actor_loss = -first_critic(self.critic, torch.cat([obs, self.actor(obs)], 1)).mean()
                self.actor_optimizer.zero_grad(set_to_none=True)
                actor_loss.backward(inputs=self.actor_params)
                optimizer_step(self.actor_optimizer)()
                polyak(self.target_params, self.online_params, tau)
                stats["actor_loss"].append(actor_loss.detach())
        return self.summary(stats)


def make_td3(
    observation_space: gym.Space,
    action_space: gym.Space,
    *,
    hyperparams: HyperparamSet | None = None,
    device: str = "auto",
    seed: int | None = None,
    hidden: Sequence[int] = (256, 256),
) -> TorchTD3Agent:
    """The AgentSpec factory: SB3's networks (ReLU MLPs, [256, 256], tanh actor), critics fused."""
    check_box_spaces("td3", observation_space, action_space)
    obs_dim = int(np.prod(observation_space.shape))
    act_dim = int(np.prod(action_space.shape))
    with seeded(seed):
        actor = nn.Sequential(*mlp(obs_dim, act_dim, hidden, nn.ReLU), nn.Tanh())
        critics = TwinQ(obs_dim + act_dim, hidden, nn.ReLU)
    return TorchTD3Agent(
        actor,
        critics=critics,
        hyperparams=hyperparams,
        device=device,
        seed=seed,
        observation_space=observation_space,
        action_space=action_space,
    )
