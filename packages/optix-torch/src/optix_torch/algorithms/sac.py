"""TorchSACAgent: soft actor-critic with a learned temperature.

Haarnoja et al. (2018), "Soft Actor-Critic Algorithms and Applications",
as Stable-Baselines3 runs it. Per gradient step, on a minibatch from replay:

    a = tanh(u),  u = μ_θ(s) + σ_θ(s)·ε,  ε ~ N(0, I)        (reparameterisation)
    log π(a|s) = log N(u; μ, σ) − Σᵢ log(1 − tanh²(uᵢ))       (change of variables, App. C)
    J(α) = E[−α·(log π(a|s) + H̄)],  H̄ = −dim(A)             (automatic temperature)
    y    = r + γ(1 − d)·(minⱼ Q̄ⱼ(s′, a′) − α log π(a′|s′))     (soft target, a′ ~ π(·|s′))
    J_Q  = ½ Σⱼ E[(Qⱼ(s, a) − y)²]                           (soft Bellman residual)
    J_π  = E[α log π(a|s) − minⱼ Qⱼ(s, a)],  a ~ π(·|s)      (through the updated critics)
    Q̄   ← τ·Q + (1 − τ)·Q̄                                    (Polyak)

The actor outputs ``[mean ‖ log_std]`` (``2·action_dim`` columns, log σ
clamped to [−20, 2] as in SB3); actions live in (−1, 1) and are scaled to the
Box bounds. With ``use_sde`` the noise is gSDE's (Raffin et al. 2022,
"Smooth Exploration for Robotic Reinforcement Learning", eq. 5–6), as SB3's SAC
draws it: the actor outputs ``[mean ‖ z]``, z its last hidden features, and

    u = μ(s) + z(s)·θ_ε,  θ_ε ~ N(0, σ²) a [dim z, dim A] matrix, log σ learned
    log π(a|s) = log N(u; μ, √(z²·σ²)) − Σᵢ log(1 − tanh²(uᵢ))

(z learning through both, as SB3's SAC has it: ``learn_features=True``):
acting holds one θ_ε per environment for ``sde_sample_freq`` steps, each
gradient step draws one for its whole minibatch.

The actor and the critics each read the observations (Box, image,
Discrete or Dict) through their own features extractor φ; the critics take
``[φ(s) ‖ a]``. Networks, the target ``y`` and the critics' step are
``off_policy.py``'s; replay and the update schedule optix-core's
``off_policy`` (through ``replay.py``).
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

from optix_core.algorithms.config import sac as config
from optix_core.off_policy.gsde import SDE_EPSILON, SDE_MEAN_CLIP, GSDEActing
from optix_core.types import EpisodeData, HyperparamSet
from optix_torch.accel.optim import adam, optimizer_step
from optix_torch.algorithms.off_policy import (
    Batch,
    OffPolicyAgent,
    default_agent,
    gradient_step,
    polyak,
)
from optix_torch.policies import observations as O
from optix_torch.policies.networks import mlp

LOG_STD_MIN, LOG_STD_MAX = -20.0, 2.0


class StateDependentNoise(nn.Module):
    """gSDE's actor head: features → z (a ReLU MLP of widths ``hidden``) → ``[mean ‖ z]``,
    the mean a linear map of z clipped to ±2; the noise's log σ, a [dim z, dim A]
    matrix starting at ``log_std_init``, is this module's parameter."""

    def __init__(
        self, features: int, action_dim: int, hidden: Sequence[int], log_std_init: float
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for width_in, width in zip([features, *hidden[:-1]], hidden, strict=True):
            layers += [nn.Linear(width_in, width), nn.ReLU()]
        self.latent = nn.Sequential(*layers)
        self.mean = nn.Linear(hidden[-1], action_dim)
        self.log_std = nn.Parameter(torch.full((hidden[-1], action_dim), float(log_std_init)))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        z = self.latent(features)
        return torch.cat([self.mean(z).clamp(-SDE_MEAN_CLIP, SDE_MEAN_CLIP), z], dim=-1)


class Temperature(nn.Module):
    """The entropy temperature α, learned as log α."""

    def __init__(self, initial: float) -> None:
        super().__init__()
        self.log_alpha = nn.Parameter(torch.full((1,), math.log(initial)))


class TorchSACAgent(GSDEActing, OffPolicyAgent):
    """SAC on a continuous (Box) action space.

    ``actor`` maps observations to ``[mean ‖ log_std]``; ``critic1`` and
    ``critic2`` map ``[φ(s) ‖ action]`` to Q. ``alpha_optimizer`` gives the
    kind of optimizer for the temperature (its class and settings are reused
    for the agent's own log α, as tensor-optix did; Adam when left out);
    ``target_entropy`` defaults to −dim(A). The other arguments, keywords
    among them (``critics``, ``critic_extractor``, ``observation_space``,
    ``action_space``), are ``OffPolicyAgent``'s.
    """

    algorithm = "sac"
    DEFAULTS = config.DEFAULTS
    BOUNDS = config.BOUNDS
    SEARCH_SPACE = config.SEARCH_SPACE
    ACTOR_OUTPUTS = 2  # [mean ‖ log_std]

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
        target_entropy: float | None = None,
        **networks: Any,
    ) -> None:
        self._alpha_optimizer, self._target_entropy = alpha_optimizer, target_entropy
        super().__init__(
            actor,
            critic1,
            critic2,
            action_dim,
            actor_optimizer,
            critic_optimizer,
            hyperparams,
            device,
            seed,
            **networks,
        )

    def find_sde_head(self) -> StateDependentNoise | None:
        heads = [m for m in self.actor.modules() if isinstance(m, StateDependentNoise)]
        return heads[0] if heads else None

    def setup(self) -> None:
        self._sde = self.sde_head()
        self.target_params = list(self.critic_target.parameters())
        self.temperature = Temperature(self.hp["ent_coef"]).to(self.device)
        target_entropy = self._target_entropy
        self.target_entropy = -float(self.action_dim) if target_entropy is None else target_entropy
        # log π's constant: Σᵢ (log √(2π) + 2 log 2), see squash()
        self._log_prob_const = self.action_dim * (0.5 * math.log(2 * math.pi) + 2 * math.log(2))
        log_alpha = [self.temperature.log_alpha]
        given = self._alpha_optimizer
        if given is None:
            self.alpha_optimizer = adam(log_alpha, self.hp["learning_rate"])
        else:
            self.alpha_optimizer = type(given)(log_alpha, **given.defaults)

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
        self, observations: O.ObsTensor, deterministic: bool, generator: torch.Generator
    ) -> torch.Tensor:
        out = self.actor(observations).cpu()
        mean, rest = out[:, : self.action_dim], out[:, self.action_dim :]
        if deterministic:
            return torch.tanh(mean)
        if self._sde is not None:
            matrices = torch.from_numpy(self.exploration_matrices(len(out), generator))
            return torch.tanh(mean + torch.bmm(rest.unsqueeze(1), matrices).squeeze(1))
        eps = torch.randn(mean.shape, generator=generator)
        return torch.tanh(mean + rest.clamp(LOG_STD_MIN, LOG_STD_MAX).exp() * eps)

    def held_stream(self) -> torch.Generator:
        return self.generator  # training acts with it; act() with act_generator

    def draw_matrices(self, n: int, stream: torch.Generator) -> np.ndarray:
        std = self._sde.log_std.detach().exp().cpu()
        return (std * torch.randn((n, *std.shape), generator=stream)).numpy()

    def squash(self, out: torch.Tensor, eps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """a = tanh(μ + σ·ε) and log π(a|s), from the actor's ``[mean ‖ log_std]``.

        log N(u; μ, σ) = Σᵢ −εᵢ²/2 − log σᵢ − log √(2π), and the squashing term
        log(1 − tanh²u) = 2(log 2 − u − softplus(−2u)) is the exact, stable form.
        """
        mean, log_std = out.chunk(2, dim=-1)
        log_std = log_std.clamp(LOG_STD_MIN, LOG_STD_MAX)
        u = torch.addcmul(mean, log_std.exp(), eps)
        log_prob = (2 * (u + F.softplus(-2 * u)) - log_std - 0.5 * eps.square()).sum(-1)
        return torch.tanh(u), log_prob - self._log_prob_const

    def sde_squash(self, out: torch.Tensor, eps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """gSDE's a = tanh(u) and log π(a|s) from the actor's ``[mean ‖ z]`` and a
        standard normal ``eps`` [dim z, dim A]: θ_ε = σ·eps, u = μ + z·θ_ε, and u's
        Gaussian has variance z²·σ²."""
        mean, z = out[:, : self.action_dim], out[:, self.action_dim :]
        std = self._sde.log_std.exp()
        u = mean + z @ (std * eps)
        sigma = torch.sqrt(z.square() @ std.square() + SDE_EPSILON)
        gaussian = -0.5 * ((u - mean) / sigma).square() - sigma.log()
        log_prob = (gaussian + 2 * (u + F.softplus(-2 * u))).sum(-1)
        return torch.tanh(u), log_prob - self._log_prob_const

    def noise_shape(self, batch_size: int) -> tuple[int, ...]:
        if self._sde is not None:  # one θ_ε for the step, a and a′ alike (SB3's reset_noise)
            return tuple(self._sde.log_std.shape)
        return (2, batch_size, self.action_dim)  # ε for a ~ π(·|s) and for a′ ~ π(·|s′)

    # ---- learning -----------------------------------------------------------

    def learn(self, episode_data: EpisodeData) -> dict[str, float]:
        log_alpha = self.temperature.log_alpha
        if not self.hp["auto_ent_coef"]:
            with torch.no_grad():
                log_alpha.fill_(math.log(self.hp["ent_coef"]))
        out = super().learn(episode_data)
        out["ent_coef"] = float(log_alpha.detach().exp())
        return out

    def update(self, batch: Batch) -> dict[str, torch.Tensor]:
        obs, eps = batch.observations, batch.noise
        squash = self.squash if self._sde is None else self.sde_squash
        eps_pi, eps_next = (eps[0], eps[1]) if self._sde is None else (eps, eps)
        a_pi, log_pi = squash(self.actor(obs), eps_pi)
        log_alpha = self.temperature.log_alpha
        alpha = log_alpha.detach().exp()  # the α of this step's targets and J_π, as in SB3

        if self.hp["auto_ent_coef"]:
            # J(α) = E[−α·(log π(a|s) + H̄)], taken as SB3 does on log α: its gradient,
            # −E[log π(a|s) + H̄], is set directly (no graph needed).
            log_alpha.grad = -(log_pi.detach().mean() + self.target_entropy).reshape(1)
            optimizer_step(self.alpha_optimizer)()

        with torch.no_grad():
            a_next, log_next = squash(self.actor(batch.next_observations), eps_next)
            # y = r + γ(1 − d)·(minⱼ Q̄ⱼ(s′, a′) − α log π(a′|s′))
            y = self.bootstrap(batch, a_next, -alpha * log_next)
        critic_loss = self.critic_step(batch, y, 0.5)  # J_Q = ½ Σⱼ E[(Qⱼ(s, a) − y)²]

        # J_π = E[α log π(a|s) − minⱼ Qⱼ(s, a)]; gradients for the actor only
        q_pi = self.critic(obs, a_pi).amin(dim=1)
        actor_loss = (alpha * log_pi - q_pi).mean()
        gradient_step(self.actor_optimizer, actor_loss, self.actor_params)

        polyak(self.target_params, self.critic_params, self.hp["tau"])
        return {
            "critic_loss": critic_loss,
            "actor_loss": actor_loss.detach(),
            "entropy": -log_pi.detach().mean(),
        }


def make_sac(
    observation_space: gym.Space,
    action_space: gym.Space,
    *,
    hyperparams: HyperparamSet | None = None,
    device: str = "auto",
    seed: int | None = None,
    hidden: Sequence[int] = (256, 256),
    extractor: nn.Module | None = None,
) -> TorchSACAgent:
    """The AgentSpec factory: SB3's networks (features extractors chosen from the
    observation space, then ReLU MLPs of widths ``hidden``), twin critics fused;
    with ``use_sde`` the actor's head is ``StateDependentNoise``. ``extractor``
    replaces the default features extractor (the critics get a copy)."""
    given = hyperparams.params if isinstance(hyperparams, HyperparamSet) else hyperparams
    hp = {**config.DEFAULTS, **(given or {})}

    def head(features: int, act_dim: int) -> nn.Module:
        if hp["use_sde"]:
            return StateDependentNoise(features, act_dim, hidden, hp["log_std_init"])
        return mlp(features, 2 * act_dim, hidden, nn.ReLU)  # [mean ‖ log_std]

    return default_agent(
        TorchSACAgent,
        observation_space,
        action_space,
        head,
        hidden=hidden,
        extractor=extractor,
        hyperparams=hyperparams,
        device=device,
        seed=seed,
    )
