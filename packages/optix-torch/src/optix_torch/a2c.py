"""TorchAgent: advantage actor-critic (A2C), or REINFORCE without a critic.

Mnih et al. (2016), "Asynchronous Methods for Deep Reinforcement Learning",
in its synchronous form. One gradient step per window:

    A_t   = GAE-λ(r, V)              (λ = 1: the discounted return minus V(s_t))
    L_π   = −E[ log π(a_t|s_t) · A_t ]          (policy gradient theorem)
    L_V   = E[ (V(s_t) − R_t)² ]                 (R_t = A_t + V(s_t))
    L     = L_π + vf_coef · L_V − entropy_coef · H[π(·|s_t)]

Without a critic the baseline is zero and this is REINFORCE on λ-returns.
``explained_variance`` = 1 − Var[R − V] / Var[R] tells how much of the return
the critic explains: 1 is perfect, 0 is useless, below 0 is harmful.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import nn
from torch.distributions import Categorical

from optix_core.returns import compute_gae
from optix_core.types import EpisodeData, HyperparamSet
from optix_torch.base import TorchAgentBase
from optix_torch.config import a2c as config
from optix_torch.networks import check_output, mlp, seeded


class TorchAgent(TorchAgentBase):
    """A discrete-action actor (logits) with an optional critic, trained by A2C."""

    algorithm = "a2c"
    DEFAULTS = config.DEFAULTS
    BOUNDS = config.BOUNDS
    ONLINE_SEARCH_SPACE = config.ONLINE_SEARCH_SPACE

    def __init__(
        self,
        actor: nn.Module,
        optimizer: torch.optim.Optimizer | None = None,
        hyperparams: HyperparamSet | dict[str, Any] | None = None,
        critic: nn.Module | None = None,
        device: str | torch.device = "auto",
        seed: int | None = None,
        action_space: gym.Space | None = None,
    ) -> None:
        super().__init__(hyperparams, device, seed)
        if action_space is not None:
            in_dim = next(actor.parameters()).shape[-1]
            check_output(actor, in_dim, int(action_space.n), "actor", self.algorithm)
            if critic is not None:
                check_output(critic, in_dim, 1, "critic", self.algorithm)
        self.actor = actor.to(self.device)
        self.critic = critic.to(self.device) if critic is not None else None
        params = list(self.actor.parameters())
        if self.critic is not None:
            params += list(self.critic.parameters())
        self.optimizer = optimizer or torch.optim.Adam(params, lr=self.hp["learning_rate"])
        self.apply_hyperparams()

    def modules(self) -> dict[str, nn.Module]:
        return {"actor": self.actor} | ({"critic": self.critic} if self.critic is not None else {})

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"main": self.optimizer}

    # ---- acting -------------------------------------------------------------

    @torch.no_grad()
    def act(self, observation: Any, deterministic: bool = False) -> np.ndarray:
        logits = self.actor(self.to_tensor(observation))
        if deterministic:
            return logits.argmax(dim=-1).cpu().numpy()
        probs = torch.softmax(logits, dim=-1).cpu()
        return torch.multinomial(probs, 1, generator=self.act_generator).squeeze(-1).numpy()

    @torch.no_grad()
    def act_info(self, observation: Any, episode_start: np.ndarray) -> tuple[np.ndarray, dict]:
        logits = self.actor(self.to_tensor(observation))
        probs = torch.softmax(logits, dim=-1).cpu()
        return torch.multinomial(probs, 1, generator=self.generator).squeeze(-1).numpy(), {}

    # ---- learning -----------------------------------------------------------

    def learn(self, episode_data: EpisodeData) -> dict[str, float]:
        obs = self.to_tensor(episode_data.observations)
        steps, envs = obs.shape[:2]
        flat_obs = obs.reshape(steps * envs, -1)
        actions = self.to_tensor(episode_data.actions, torch.int64).reshape(-1)
        values, next_values, final_values = self._values(episode_data, flat_obs)
        advantages, returns = compute_gae(
            episode_data.rewards,
            values,
            episode_data.terminated,
            episode_data.truncated,
            next_values,
            final_values,
            gamma=self.hp["gamma"],
            lam=self.hp["gae_lambda"],
        )
        adv = self.to_tensor(advantages).reshape(-1)
        ret = self.to_tensor(returns).reshape(-1)
        if self.hp["normalize_advantage"] and adv.numel() > 1:
            adv = (adv - adv.mean()) / (adv.std() + 1e-8)

        dist = Categorical(logits=self.actor(flat_obs))
        policy_loss = -(dist.log_prob(actions) * adv).mean()
        entropy = dist.entropy().mean()
        loss = policy_loss - self.hp["entropy_coef"] * entropy
        value_loss = torch.zeros((), device=self.device)
        if self.critic is not None:
            value_loss = torch.mean((self.critic(flat_obs).squeeze(-1) - ret) ** 2)
            loss = loss + self.hp["vf_coef"] * value_loss
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        params = [p for m in self.modules().values() for p in m.parameters()]
        nn.utils.clip_grad_norm_(params, self.hp["max_grad_norm"])
        self.optimizer.step()
        return {
            "policy_loss": float(policy_loss.detach()),
            "value_loss": float(value_loss.detach()),
            "entropy": float(entropy.detach()),
            "explained_variance": explained_variance(values.reshape(-1), returns.reshape(-1)),
        }

    @torch.no_grad()
    def _values(
        self, data: EpisodeData, flat_obs: torch.Tensor
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """V(s_t), V of the observation after the window, and V of truncated
        episodes' final observations, in one forward pass."""
        steps, envs = data.rewards.shape
        if self.critic is None:
            zeros = np.zeros((steps, envs), dtype=np.float32)
            return zeros, np.zeros(envs, dtype=np.float32), zeros
        truncated = np.asarray(data.truncated) & ~np.asarray(data.terminated)
        batch = [flat_obs, self.to_tensor(data.next_observations).reshape(envs, -1)]
        if truncated.any():
            batch.append(
                self.to_tensor(np.asarray(data.final_observations)[truncated]).reshape(
                    -1, flat_obs.shape[1]
                )
            )
        out = self.critic(torch.cat(batch)).squeeze(-1).cpu().numpy()
        values = out[: steps * envs].reshape(steps, envs)
        next_values = out[steps * envs : steps * envs + envs]
        final_values = np.zeros((steps, envs), dtype=np.float32)
        final_values[truncated] = out[steps * envs + envs :]
        return values, next_values, final_values


def explained_variance(predicted: np.ndarray, target: np.ndarray) -> float:
    """1 − Var[target − predicted] / Var[target]; NaN-free (0 when the target is constant)."""
    var = float(np.var(target))
    if var == 0.0:
        return 0.0
    return float(1.0 - np.var(target - predicted) / var)


def make_a2c(
    observation_space: gym.Space,
    action_space: gym.Space,
    *,
    hyperparams: HyperparamSet | None = None,
    device: str = "auto",
    seed: int | None = None,
) -> TorchAgent:
    """The AgentSpec factory: tanh MLPs [64, 64] for actor and critic."""
    if not isinstance(action_space, gym.spaces.Discrete):
        raise ValueError(f"a2c acts on Discrete action spaces, got {action_space}")
    obs_dim = int(np.prod(observation_space.shape))
    with seeded(seed):
        actor, critic = mlp(obs_dim, int(action_space.n)), mlp(obs_dim, 1)
    return TorchAgent(
        actor,
        hyperparams=hyperparams,
        critic=critic,
        device=device,
        seed=seed,
        action_space=action_space,
    )
