"""TorchTD3Agent: twin delayed deep deterministic policy gradient.

Fujimoto et al. (2018), "Addressing Function Approximation Error in
Actor-Critic Methods", as Stable-Baselines3 runs it. Per gradient step, on a
minibatch from replay:

    ã = clip(π̄(s′) + clip(σ̃·ε, −c, c), −1, 1),  ε ~ N(0, I)   (target policy smoothing)
    y = r + γ(1 − d)·minⱼ Q̄ⱼ(s′, ã)                           (clipped double Q-learning)
    L_Q = Σⱼ E[(Qⱼ(s, a) − y)²]

and every ``policy_delay``-th step (delayed policy updates):

    L_π = −E[Q₁(s, π(s))]                                      (deterministic policy gradient)
    Q̄ ← τ·Q + (1 − τ)·Q̄,   π̄ ← τ·π + (1 − τ)·π̄                (Polyak)

Exploration adds N(0, expl_noise²) to π(s), or with ``ou_noise`` an
Ornstein-Uhlenbeck process (``optix_core.off_policy.exploration``), and clips
to (−1, 1). The actor
outputs ``action_dim`` values in (−1, 1) (end it with ``nn.Tanh``); actions are
scaled to the Box bounds. The actor and the critics each read the
observations (Box, image, Discrete or Dict) through their own features
extractor φ; the critics take ``[φ(s) ‖ a]``. Networks, the target ``y``
and the critics' step are ``off_policy.py``'s; replay and the update schedule
optix-core's ``off_policy`` (through ``replay.py``).
"""

from __future__ import annotations

from collections.abc import Sequence

import gymnasium as gym
import torch
from torch import nn

from optix_core.algorithms.config import td3 as config
from optix_core.off_policy import update_due
from optix_core.off_policy.exploration import TD3Exploration
from optix_core.types import HyperparamSet
from optix_torch.algorithms.off_policy import (
    Batch,
    OffPolicyAgent,
    default_agent,
    gradient_step,
    polyak,
    target_copy,
)
from optix_torch.policies import observations as O
from optix_torch.policies.networks import mlp


class TorchTD3Agent(TD3Exploration, OffPolicyAgent):
    """TD3 on a continuous (Box) action space.

    ``actor`` maps observations to actions in (−1, 1); ``critic1`` and
    ``critic2`` map ``[φ(s) ‖ action]`` to Q. The other arguments are
    ``OffPolicyAgent``'s.
    """

    algorithm = "td3"
    DEFAULTS = config.DEFAULTS
    BOUNDS = config.BOUNDS
    SEARCH_SPACE = config.SEARCH_SPACE

    def setup(self) -> None:
        self.actor_target = target_copy(self.actor)
        # Both targets follow their networks in one Polyak call.
        self.online_params = self.actor_params + self.critic_params
        self.target_params = list(self.actor_target.parameters()) + list(
            self.critic_target.parameters()
        )

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
        self, observations: O.ObsTensor, deterministic: bool, generator: torch.Generator
    ) -> torch.Tensor:
        action = self.actor(observations).cpu()
        if not deterministic:
            eps = torch.randn(action.shape, generator=generator).numpy()
            noise = self.exploration_noise(eps, training=generator is self.generator)
            action = action + torch.from_numpy(noise)
        return action.clamp(-1.0, 1.0)

    def noise_shape(self, batch_size: int) -> tuple[int, ...]:
        return (batch_size, self.action_dim)  # ε of the target policy smoothing

    # ---- learning -----------------------------------------------------------

    def update(self, batch: Batch) -> dict[str, torch.Tensor]:
        hp = self.hp
        clip = hp["noise_clip"]
        with torch.no_grad():
            # Target policy smoothing: ã = clip(π̄(s′) + clip(σ̃·ε, −c, c), −1, 1)
            smoothing = (batch.noise * hp["target_noise"]).clamp_(-clip, clip)
            a_next = (self.actor_target(batch.next_observations) + smoothing).clamp_(-1.0, 1.0)
            y = self.bootstrap(batch, a_next)  # r + γ(1 − d)·minⱼ Q̄ⱼ(s′, ã)
        stats = {"critic_loss": self.critic_step(batch, y, 1.0)}  # L_Q = Σⱼ E[(Qⱼ − y)²]

        if update_due(self.n_updates, hp["policy_delay"]):
            # Delayed policy update: L_π = −E[Q₁(s, π(s))]; gradients for the actor only
            obs = batch.observations
            actor_loss = -self.critic.q1(obs, self.actor(obs)).mean()
            gradient_step(self.actor_optimizer, actor_loss, self.actor_params)
            polyak(self.target_params, self.online_params, hp["tau"])
            stats["actor_loss"] = actor_loss.detach()
        return stats


def make_td3(
    observation_space: gym.Space,
    action_space: gym.Space,
    *,
    hyperparams: HyperparamSet | None = None,
    device: str = "auto",
    seed: int | None = None,
    hidden: Sequence[int] = (256, 256),
    extractor: nn.Module | None = None,
) -> TorchTD3Agent:
    """The AgentSpec factory: SB3's networks (features extractors chosen from the
    observation space, then ReLU MLPs of widths ``hidden``, a tanh actor), critics
    fused. ``extractor`` replaces the default features extractor (the critics get
    a copy)."""

    def head(features: int, act_dim: int) -> nn.Module:
        return nn.Sequential(*mlp(features, act_dim, hidden, nn.ReLU), nn.Tanh())

    return default_agent(
        TorchTD3Agent,
        observation_space,
        action_space,
        head,
        hidden=hidden,
        extractor=extractor,
        hyperparams=hyperparams,
        device=device,
        seed=seed,
    )
