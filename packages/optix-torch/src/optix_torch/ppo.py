"""TorchPPOAgent: proximal policy optimization with a categorical policy.

Schulman et al. (2017). The actor outputs logits ℓ(s) over the Discrete
actions; the policy is π(a|s) = softmax(ℓ(s))_a, so

    log π(a|s) = ℓ_a − logsumexp(ℓ)          (log-softmax, gathered at a)
    H[π(·|s)]  = −Σ_a π(a|s) log π(a|s)

Training actions are sampled in ``act_info`` (inverting the categorical CDF
at a uniform draw from the agent's training generator), which also records
log π_old(a|s) and V(s) for ``learn``; ``act`` draws from a separate
generator (or takes the argmax) and changes nothing that ``learn`` sees. The
update itself (GAE-λ, clipped surrogate, value loss, entropy bonus, epochs of
minibatches, global gradient clipping) is ``ppo_core.PPOBase.learn``;
``policy_gradient`` below is the categorical part of its hand-written
gradient for ``TwinMLP``.

``make_ppo`` is the registered factory for the name "ppo": this agent for
Discrete action spaces, ``TorchGaussianPPOAgent`` for Box.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from optix_core.normalizers import RewardNormalizer
from optix_core.types import EpisodeData, HyperparamSet
from optix_torch.networks import seeded
from optix_torch.ppo_continuous import TorchGaussianPPOAgent
from optix_torch.ppo_core import PPOBase, TwinMLP, box_observations, surrogate_gradient


class TorchPPOAgent(PPOBase):
    """PPO for Discrete action spaces (tensor-optix's ``TorchPPOAgent``).

    Args:
        actor: observations ``[B, ...]`` → logits ``[B, n_actions]``; or, with
            ``critic=None``, → ``(logits, values [B])`` (e.g. ``TwinMLP``).
        critic: observations → ``[B, 1]`` state values, or None (see ``actor``).
        optimizer: over both networks' parameters; default Adam (ε = 1e-5).
            Its learning rate is set from ``hyperparams["learning_rate"]``.
        hyperparams: keys of ``optix_torch.config.ppo.DEFAULTS``.
        reward_normalizer: an ``optix_core.normalizers.RewardNormalizer`` with
            one column per environment; rewards are divided by its running
            return std before GAE.
        device: "auto", "cpu", "cuda" or "cuda:N".
        seed: seeds the agent's own generators (sampling, minibatch order).
        action_space, observation_space: when given, the networks' output
            sizes are checked against them at construction.
    """

    algorithm = "ppo"
    POLICY_OUTPUT = "one logit per action"

    def __init__(
        self,
        actor: nn.Module,
        critic: nn.Module | None = None,
        optimizer: torch.optim.Optimizer | None = None,
        hyperparams: HyperparamSet | dict[str, Any] | None = None,
        reward_normalizer: RewardNormalizer | None = None,
        device: str | torch.device = "auto",
        seed: int | None = None,
        *,
        action_space: gym.Space | None = None,
        observation_space: gym.Space | None = None,
    ) -> None:
        n_actions = None
        if action_space is not None:
            if not isinstance(action_space, gym.spaces.Discrete):
                raise ValueError(
                    f"TorchPPOAgent acts on Discrete action spaces, got {action_space}; "
                    "use TorchGaussianPPOAgent for Box"
                )
            n_actions = int(action_space.n)
        self.action_start = int(action_space.start) if action_space is not None else 0
        super().__init__(
            actor,
            critic,
            optimizer,
            hyperparams,
            reward_normalizer,
            device,
            seed,
            n_actions,
            observation_space,
        )

    # ---- acting -------------------------------------------------------------

    def act(self, observation: Any, deterministic: bool = False) -> np.ndarray:
        logits = self.numpy_forward(observation, values=False)[0]
        if deterministic:
            actions = logits.argmax(axis=-1)
        else:
            uniform = torch.rand(len(logits), generator=self.act_generator).numpy()
            actions = sample_categorical(logits, uniform)[0]
        return actions + self.action_start if self.action_start else actions

    def act_info(
        self, observation: Any, episode_start: np.ndarray
    ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        logits, values = self.numpy_forward(observation)
        uniform = torch.rand(len(logits), generator=self.generator).numpy()
        actions, log_probs = sample_categorical(logits, uniform)
        if self.action_start:
            actions = actions + self.action_start
        return actions, {"log_probs": log_probs, "values": values}

    # ---- the distribution ---------------------------------------------------

    def log_prob(
        self, policy_out: torch.Tensor, actions: torch.Tensor, entropy: bool
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        log_probs = torch.log_softmax(policy_out, dim=-1)
        chosen = log_probs.gather(1, actions.unsqueeze(-1)).squeeze(-1)
        if not entropy:
            return chosen, None
        return chosen, -(log_probs.exp() * log_probs).sum(-1)

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
        log_probs = torch.log_softmax(policy_out, dim=-1)
        chosen = log_probs.gather(1, actions.unsqueeze(-1)).squeeze(-1)
        log_ratio, surrogate, grad = surrogate_gradient(chosen, old_log_probs, advantages, clip)
        probs = log_probs.exp()
        # ∂ log π(a|s)/∂ℓ_j = [j = a] − π_j
        torch.mul(probs, grad.unsqueeze(-1), out=grad_out).neg_()
        grad_out.scatter_add_(1, actions.unsqueeze(-1), grad.unsqueeze(-1))
        if entropy_coef > 0:
            # ∂(−c₂ H)/∂ℓ_j = c₂ π_j (log π_j + H), averaged over the rows
            entropy = -(probs * log_probs).sum(-1, keepdim=True)
            grad_out.add_(probs * (log_probs + entropy), alpha=entropy_coef / len(probs))
        return log_ratio, surrogate

    def mean_entropy(self, policy_out: torch.Tensor) -> torch.Tensor:
        log_probs = torch.log_softmax(policy_out, dim=-1)
        return -(log_probs.exp() * log_probs).sum(-1).mean()

    def learn_actions(self, data: EpisodeData, n: int) -> np.ndarray:
        return np.asarray(data.actions).reshape(n) - self.action_start

    def action_tensor(self, columns: torch.Tensor) -> torch.Tensor:
        return columns[:, 0].long()


def sample_categorical(logits: np.ndarray, uniform: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Actions a ~ softmax(logits) by inverting the CDF at ``uniform`` (one U(0, 1)
    per row), and log π(a) = ℓ_a − logsumexp(ℓ)."""
    shifted = logits - logits.max(axis=-1, keepdims=True)
    weights = np.exp(shifted)
    cdf = np.cumsum(weights, axis=-1)
    actions = (cdf < uniform[:, None] * cdf[:, -1:]).sum(axis=-1)
    np.minimum(actions, logits.shape[-1] - 1, out=actions)  # rounding at u → 1
    chosen = np.take_along_axis(shifted, actions[:, None], axis=-1)[:, 0]
    return actions, chosen - np.log(cdf[:, -1])


def make_ppo(
    observation_space: gym.Space,
    action_space: gym.Space,
    *,
    hyperparams: HyperparamSet | None = None,
    device: str = "auto",
    seed: int | None = None,
) -> TorchPPOAgent | TorchGaussianPPOAgent:
    """The AgentSpec factory for "ppo": a ``TwinMLP`` actor-critic, [64, 64] tanh
    (Stable-Baselines3's PPO network), categorical on Discrete actions and a
    tanh-squashed Gaussian on Box actions."""
    if isinstance(action_space, gym.spaces.Discrete):
        obs_dim = box_observations(observation_space, "ppo")
        with seeded(seed):
            net = TwinMLP(obs_dim, int(action_space.n))
        return TorchPPOAgent(
            net,
            hyperparams=hyperparams,
            device=device,
            seed=seed,
            action_space=action_space,
            observation_space=observation_space,
        )
    if isinstance(action_space, gym.spaces.Box):
        obs_dim = box_observations(observation_space, "ppo")
        action_dim = int(np.prod(action_space.shape))
        with seeded(seed):
            net = TwinMLP(obs_dim, 2 * action_dim)
        return TorchGaussianPPOAgent(
            net,
            hyperparams=hyperparams,
            device=device,
            seed=seed,
            action_space=action_space,
            observation_space=observation_space,
        )
    raise ValueError(f"ppo acts on Discrete or Box action spaces, got {action_space}")
