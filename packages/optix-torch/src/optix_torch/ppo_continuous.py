"""TorchGaussianPPOAgent: proximal policy optimization with a tanh-squashed Gaussian.

Schulman et al. (2017) on continuous actions. The actor outputs
``[μ(s) ‖ log σ(s)]``, ``2 · action_dim`` numbers per observation; actions are

    u ~ N(μ(s), σ(s)²)                       (σ = exp(clamp(log σ, −5, 2)))
    a = tanh(u) ∈ (−1, 1)ᵈ,   env action = center + scale · a   (the Box's bounds)

and, by the change of variables a = tanh(u) (Haarnoja et al. 2018, eq. 21),

    log π(a|s) = Σᵢ [ log N(uᵢ; μᵢ, σᵢ) − log(1 − tanh²(uᵢ)) ]

with log(1 − tanh² u) = 2 (log 2 − u − softplus(−2u)), stable for large |u|.
``act_info`` records u (``pre_tanh``) with log π_old(a|s) and V(s). In the
ratio π_θ(a|s) / π_old(a|s) the tanh term, which depends on u alone, cancels,
so ``learn`` compares Gaussian log-densities of the recorded u. The entropy
bonus and diagnostic use the Gaussian's entropy Σᵢ (log σᵢ + ½ log 2πe), as
the squashed distribution's has no closed form.

The affine map to the Box's bounds is a constant Jacobian and is left out of
the recorded log-probabilities (they are densities of a in (−1, 1)ᵈ).
"""

from __future__ import annotations

import math
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from optix_core.normalizers import RewardNormalizer
from optix_core.types import EpisodeData, HyperparamSet
from optix_torch.ppo_core import PPOBase, surrogate_gradient

LOG_STD_MIN, LOG_STD_MAX = -5.0, 2.0
HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)
LOG_2 = math.log(2.0)


class TorchGaussianPPOAgent(PPOBase):
    """PPO for Box action spaces (tensor-optix's ``TorchGaussianPPOAgent``).

    Args:
        actor: observations ``[B, ...]`` → ``[B, 2 · action_dim]`` (mean ‖ log-std);
            or, with ``critic=None``, → ``(that, values [B])`` (e.g. ``TwinMLP``).
        critic: observations → ``[B, 1]`` state values, or None (see ``actor``).
        optimizer: over both networks' parameters; default Adam (ε = 1e-5).
        action_dim: the number of action dimensions (required unless
            ``action_space`` is given; must match it if both are).
        hyperparams: keys of ``optix_torch.config.ppo.DEFAULTS``.
        reward_normalizer: an ``optix_core.normalizers.RewardNormalizer`` with
            one column per environment.
        device: "auto", "cpu", "cuda" or "cuda:N".
        seed: seeds the agent's own generators.
        action_space: a bounded Box; actions are scaled to its bounds.
            Without it actions lie in (−1, 1).
        observation_space: when given, the networks are checked against it.
    """

    algorithm = "ppo-gaussian"
    POLICY_OUTPUT = "mean and log-std per action dimension"

    def __init__(
        self,
        actor: nn.Module,
        critic: nn.Module | None = None,
        optimizer: torch.optim.Optimizer | None = None,
        action_dim: int | None = None,
        hyperparams: HyperparamSet | dict[str, Any] | None = None,
        reward_normalizer: RewardNormalizer | None = None,
        device: str | torch.device = "auto",
        seed: int | None = None,
        *,
        action_space: gym.Space | None = None,
        observation_space: gym.Space | None = None,
    ) -> None:
        if action_space is not None:
            if not isinstance(action_space, gym.spaces.Box):
                raise ValueError(
                    f"TorchGaussianPPOAgent acts on Box action spaces, got {action_space}; "
                    "use TorchPPOAgent for Discrete"
                )
            if not (np.isfinite(action_space.low).all() and np.isfinite(action_space.high).all()):
                raise ValueError(
                    f"TorchGaussianPPOAgent squashes actions into the Box's bounds, but {action_space} "
                    "is unbounded; give the Box finite low and high"
                )
            space_dim = int(np.prod(action_space.shape))
            if action_dim is not None and int(action_dim) != space_dim:
                raise ValueError(
                    f"action_dim={action_dim} does not match the action space {action_space} "
                    f"({space_dim} dimensions)"
                )
            action_dim = space_dim
            self.action_shape = tuple(action_space.shape)
            low = np.asarray(action_space.low, dtype=np.float32).reshape(-1)
            high = np.asarray(action_space.high, dtype=np.float32).reshape(-1)
        elif action_dim is None:
            raise ValueError("TorchGaussianPPOAgent needs action_dim (or action_space)")
        else:
            if int(action_dim) < 1:
                raise ValueError(f"action_dim must be >= 1, got {action_dim}")
            self.action_shape = (int(action_dim),)
            low, high = -np.ones(int(action_dim), np.float32), np.ones(int(action_dim), np.float32)
        self.action_dim = int(action_dim)
        self._scale_np, self._center_np = (high - low) / 2, (high + low) / 2
        self._low_np, self._high_np = low, high
        super().__init__(
            actor,
            critic,
            optimizer,
            hyperparams,
            reward_normalizer,
            device,
            seed,
            2 * self.action_dim,
            observation_space,
        )

    # ---- acting -------------------------------------------------------------

    def _env_actions(self, u: np.ndarray) -> np.ndarray:
        a = self._center_np + self._scale_np * np.tanh(u)
        a = np.clip(a, self._low_np, self._high_np)  # rounding never leaves the Box
        return a.astype(np.float32, copy=False).reshape(len(a), *self.action_shape)

    def act(self, observation: Any, deterministic: bool = False) -> np.ndarray:
        policy_out = self.numpy_forward(observation, values=False)[0]
        mean = policy_out[:, : self.action_dim]
        if deterministic:
            return self._env_actions(mean)
        log_std = np.clip(policy_out[:, self.action_dim :], LOG_STD_MIN, LOG_STD_MAX)
        noise = torch.randn(mean.shape, generator=self.act_generator).numpy()
        return self._env_actions(mean + np.exp(log_std) * noise)

    def act_info(
        self, observation: Any, episode_start: np.ndarray
    ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        policy_out, values = self.numpy_forward(observation)
        d = self.action_dim
        mean, log_std = policy_out[:, :d], np.clip(policy_out[:, d:], LOG_STD_MIN, LOG_STD_MAX)
        noise = torch.randn(mean.shape, generator=self.generator).numpy()
        u = mean + np.exp(log_std) * noise
        # log N(u; μ, σ) with (u − μ)/σ = noise, minus the tanh correction.
        log_prob = -(0.5 * noise * noise + log_std).sum(-1) - d * HALF_LOG_2PI
        log_prob -= squash_correction(u).sum(-1)
        info = {"log_probs": log_prob.astype(np.float32), "values": values, "pre_tanh": u}
        return self._env_actions(u), info

    # ---- the distribution ---------------------------------------------------

    def _split(self, policy_out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        d = self.action_dim
        return policy_out[:, :d], policy_out[:, d:].clamp(LOG_STD_MIN, LOG_STD_MAX)

    def log_prob(
        self, policy_out: torch.Tensor, actions: torch.Tensor, entropy: bool
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Gaussian log-density of the recorded pre-tanh actions u."""
        mean, log_std = self._split(policy_out)
        z = (actions - mean) * torch.exp(-log_std)
        log_prob = -(0.5 * z.square() + log_std).sum(-1) - self.action_dim * HALF_LOG_2PI
        if not entropy:
            return log_prob, None
        return log_prob, log_std.sum(-1) + self.action_dim * (0.5 + HALF_LOG_2PI)

    def policy_gradient(
        self,
        policy_out: torch.Tensor,
        actions: torch.Tensor,
        old_log_probs: torch.Tensor,
        advantages: torch.Tensor,
        clip: float,
        entropy_coef: float,
        grad_out: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        d = self.action_dim
        mean, raw_log_std = policy_out[:, :d], policy_out[:, d:]
        log_std = raw_log_std.clamp(LOG_STD_MIN, LOG_STD_MAX)
        inv_std = torch.exp(-log_std)
        z = (actions - mean).mul_(inv_std)  # (u − μ)/σ
        z_sq = z.square()
        log_prob = (z_sq * -0.5 - log_std).sum(-1) - d * HALF_LOG_2PI
        log_ratio, surrogate, grad = surrogate_gradient(log_prob, old_log_probs, advantages, clip)
        grad = grad.unsqueeze(-1)
        # ∂ log N(u; μ, σ)/∂μ = z/σ,  ∂ log N/∂ log σ = z² − 1,  ∂H/∂ log σ = 1
        torch.mul(z.mul_(inv_std), grad, out=grad_out[:, :d])
        grad_log_std = z_sq.sub_(1.0).mul_(grad)
        if entropy_coef > 0:
            grad_log_std.sub_(entropy_coef / len(policy_out))
        # clamp passes the gradient only inside [LOG_STD_MIN, LOG_STD_MAX]
        inside = (raw_log_std >= LOG_STD_MIN) & (raw_log_std <= LOG_STD_MAX)
        torch.mul(grad_log_std, inside, out=grad_out[:, d:])
        return log_ratio, surrogate

    def mean_entropy(self, policy_out: torch.Tensor) -> torch.Tensor:
        log_std = self._split(policy_out)[1]
        return log_std.sum(-1).mean() + self.action_dim * (0.5 + HALF_LOG_2PI)

    def learn_actions(self, data: EpisodeData, n: int) -> np.ndarray:
        """The recorded u; or, for a window without it, atanh of the scaled-back actions."""
        pre_tanh = data.policy_info.get("pre_tanh")
        if pre_tanh is not None:
            return np.asarray(pre_tanh, dtype=np.float32).reshape(n, self.action_dim)
        actions = np.asarray(data.actions, dtype=np.float64).reshape(n, self.action_dim)
        squashed = np.clip((actions - self._center_np) / self._scale_np, -1 + 1e-6, 1 - 1e-6)
        return np.arctanh(squashed).astype(np.float32)

    def ratio_old_log_probs(self, recorded: np.ndarray, actions: np.ndarray) -> np.ndarray:
        """log π_old(a|s) + Σ log(1 − tanh² u): π_old's Gaussian log-density of u."""
        correction = squash_correction(actions.astype(np.float64)).sum(-1)
        return (recorded + correction).astype(np.float32)

    def action_tensor(self, columns: torch.Tensor) -> torch.Tensor:
        return columns.contiguous()


def squash_correction(u: np.ndarray) -> np.ndarray:
    """log(1 − tanh²(u)) = 2 (log 2 − u − softplus(−2u)), per element."""
    return 2.0 * (LOG_2 - u - np.logaddexp(0.0, -2.0 * u))
