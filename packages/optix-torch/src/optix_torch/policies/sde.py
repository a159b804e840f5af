"""gSDE's actor-critic for PPO and A2C (``use_sde``).

Stable-Baselines3's on-policy MLP policy with ``use_sde``: a features
extractor, then separate actor and critic MLPs (no accelerated twin towers:
the actor's last hidden features z are an output). The actor's head is the
mean μ = W z + b; the exploration's log σ is a ``[dim z, dim A]`` parameter
starting at ``log_std_init``. ``forward`` returns ``([μ ‖ log σ̃ ‖ z], V)``
with σ̃² = (z²)·(σ²) + ε, z detached there as SB3 detaches it
(``learn_features=False``): what ``StateDependentGaussian`` reads.
"""

from __future__ import annotations

from collections.abc import Sequence

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from optix_core.off_policy.gsde import SDE_EPSILON
from optix_torch.policies.distributions import StateDependentGaussian
from optix_torch.policies.extractors import default_extractor, features_dim, orthogonal_init
from optix_torch.policies.networks import mlp
from optix_torch.policies.observations import ObsTensor


class StateDependentActorCritic(nn.Module):
    """``extractor`` → actor MLP → z → ``[μ ‖ log σ̃ ‖ z]``, and → critic MLP → V.

    Args:
        observation_space: what the network reads.
        action_space: the Box it acts in.
        hidden: both MLPs' widths (SB3's [64, 64]), tanh.
        log_std_init: where log σ starts (every entry).
        ortho_init: SB3's orthogonal initialisation (gains √2 hidden, 0.01
            the mean, 1 the value); False keeps PyTorch's default (rl-zoo's
            MountainCarContinuous PPO).
    """

    def __init__(
        self,
        observation_space: gym.Space,
        action_space: gym.spaces.Box,
        hidden: Sequence[int] = (64, 64),
        log_std_init: float = 0.0,
        ortho_init: bool = True,
    ) -> None:
        super().__init__()
        if not hidden:
            raise ValueError("gSDE reads the actor's last hidden features: give hidden widths")
        self.extractor = default_extractor(observation_space)
        features = features_dim(self.extractor, observation_space)
        action_dim = int(np.prod(action_space.shape))
        self.latent = mlp(features, hidden[-1], hidden[:-1], nn.Tanh)
        self.latent.append(nn.Tanh())
        self.mean = nn.Linear(hidden[-1], action_dim)
        self.critic = mlp(features, 1, hidden, nn.Tanh)
        self.log_std = nn.Parameter(torch.full((hidden[-1], action_dim), float(log_std_init)))
        self.distribution = StateDependentGaussian(action_space, hidden[-1])
        if ortho_init:
            orthogonal_init(self.extractor)
            orthogonal_init(self.latent)
            orthogonal_init(self.critic)
            orthogonal_init(self.mean, gain=0.01)
            orthogonal_init(self.critic[-1], gain=1.0)

    def forward(self, obs: ObsTensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.extractor(obs)
        z = self.latent(features)
        free = z.detach()
        variance = free.square() @ self.log_std.exp().square()
        log_std = 0.5 * torch.log(variance + SDE_EPSILON)
        return torch.cat([self.mean(z), log_std, free], dim=-1), self.critic(features).squeeze(-1)

    def sde_log_std(self) -> np.ndarray:
        """log σ as numpy, for drawing the exploration matrices."""
        return self.log_std.detach().float().cpu().numpy()
