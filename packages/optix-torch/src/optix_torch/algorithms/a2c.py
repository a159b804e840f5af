"""A2C: advantage actor-critic, or REINFORCE without a critic, on any action space.

Mnih et al. (2016), "Asynchronous Methods for Deep Reinforcement Learning",
in its synchronous form. One gradient step per window:

    A_t   = GAE-λ(r, V)              (λ = 1: the discounted return minus V(s_t))
    L_π   = −E[ log π(a_t|s_t) · A_t ]          (the policy gradient theorem)
    L_V   = E[ (V(s_t) − R_t)² ]                 (R_t = A_t + V(s_t))
    L     = L_π + vf_coef · L_V − entropy_coef · H[π(·|s_t)]

Without a critic the baseline is zero and this is REINFORCE on λ-returns.
The network and the action distribution are the policy layer's, as in PPO.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from optix_core.algorithms.config import a2c as config
from optix_core.normalizers import ObsNormalizer
from optix_core.on_policy import OnPolicyWindow
from optix_core.types import EpisodeData, HyperparamSet
from optix_torch.accel.optim import Gradients, adam, optimizer_step
from optix_torch.algorithms.on_policy import OnPolicyValues, default_agent, explained_variance
from optix_torch.algorithms.ppo import DeterministicPolicy, pick_distribution
from optix_torch.base import TorchAgentBase, set_learning_rate
from optix_torch.policies import observations as O
from optix_torch.policies.distributions import Distribution
from optix_torch.policies.networks import (
    check_actor_critic,
    returns_values,
)


def rms_prop(params: Any, learning_rate: float, eps: float) -> torch.optim.Optimizer:
    """Stable-Baselines3's A2C optimizer: RMSprop, smoothing 0.99, ε added after the root."""
    return torch.optim.RMSprop(params, lr=learning_rate, alpha=0.99, eps=eps, foreach=True)


class ActorCriticAgent(OnPolicyValues, TorchAgentBase):
    """An actor-critic's networks, acting and checkpoints, which A2C and
    optix-distributed's IMPALA learner share; each brings its own ``learn``.

    Args:
        actor: observations → the distribution's parameters; or, with
            ``critic=None``, ``(parameters, values)`` (``ActorCritic``). An
            actor that returns parameters alone and no critic is REINFORCE.
        optimizer: over every parameter; default ``default_optimizer``'s.
        hyperparams: keys of the algorithm's ``DEFAULTS``.
        critic: observations → ``[B, 1]`` values, or None.
        device, seed, action_space, observation_space, distribution: as
            ``TorchPPOAgent``'s.
    """

    def __init__(
        self,
        actor: nn.Module,
        optimizer: torch.optim.Optimizer | None = None,
        hyperparams: HyperparamSet | dict[str, Any] | None = None,
        critic: nn.Module | None = None,
        device: str | torch.device = "auto",
        seed: int | None = None,
        action_space: gym.Space | None = None,
        observation_space: gym.Space | None = None,
        distribution: Distribution | str | None = None,
    ) -> None:
        super().__init__(hyperparams, device, seed)
        self.actor = actor.to(self.device)
        self.critic = critic.to(self.device) if critic is not None else None
        # Whether the actor returns (parameters, values) itself.
        self.shared = critic is None and returns_values(self.actor, observation_space)
        self.distribution = pick_distribution(
            self.actor,
            self.critic if not self.shared else None,
            action_space,
            observation_space,
            distribution,
            self.algorithm,
        )
        if self.shared or self.critic is not None:
            check_actor_critic(
                self.actor,
                self.critic,
                observation_space,
                self.distribution.param_dim,
                self.algorithm,
            )
        params = [p for m in self.modules().values() for p in m.parameters()]
        self.gradients = Gradients(params, flat=self.shared)
        self.optimizer = optimizer or self.default_optimizer(params)
        self.setup_learning(observation_space)
        self.apply_hyperparams()

    def setup_learning(self, observation_space: gym.Space | None) -> None:
        """What the algorithm's learning holds beyond the networks (A2C's normalizers)."""

    def default_optimizer(self, params: list[nn.Parameter]) -> torch.optim.Optimizer:
        return adam(params, self.hp["learning_rate"])

    # Observations as the networks take them: as given (A2C's may standardize them).
    obs_normalizer: ObsNormalizer | None = None

    def observed(self, observation: Any) -> Any:
        return observation

    def modules(self) -> dict[str, nn.Module]:
        return {"actor": self.actor} | ({"critic": self.critic} if self.critic is not None else {})

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"main": self.optimizer}

    def forward(self, obs: O.ObsTensor, values: bool = True) -> tuple[torch.Tensor, Any]:
        """``(distribution parameters, V(s))``; V is 0 without a critic (REINFORCE)."""
        if self.shared:
            return self.actor(obs)
        params = self.actor(obs)
        if self.critic is None:
            return params, torch.zeros(params.shape[0], device=params.device)
        return params, self.critic(obs).squeeze(-1) if values else None

    def policy_module(self) -> nn.Module:
        """The deterministic policy as a plain module: observations → actions."""
        return DeterministicPolicy(self.actor, self.shared, self.distribution, self.obs_normalizer)

    # ---- acting -------------------------------------------------------------

    @torch.inference_mode()
    def _numpy_forward(self, observation: Any, values: bool) -> tuple[np.ndarray, Any]:
        obs = O.to_tensor(self.observed(observation), self.device)
        params, value = self.forward(obs, values)
        value_np = value.float().cpu().numpy() if values else None
        return params.float().cpu().numpy(), value_np

    def act(self, observation: Any, deterministic: bool = False) -> np.ndarray:
        params = self._numpy_forward(observation, values=False)[0]
        if deterministic:
            return self.distribution.mode(params)
        return self.distribution.sample(params, self.act_generator)[0]

    def act_info(self, observation: Any, episode_start: np.ndarray) -> tuple[np.ndarray, dict]:
        params, values = self._numpy_forward(observation, values=True)
        actions, info = self.explore(params, self.generator)
        return actions, {**info, "values": values}

    def explore(self, params: np.ndarray, noise: Any) -> tuple[np.ndarray, dict]:
        """Training's actions, sampled (A2C's ``OnPolicyWindow`` adds gSDE's)."""
        return self.distribution.sample(params, noise)

    def teardown(self) -> None:
        self.gradients.release()
        super().teardown()


class TorchAgent(OnPolicyWindow, ActorCriticAgent):
    """A2C (tensor-optix's ``TorchAgent``).

    Args:
        actor: observations → the distribution's parameters; or, with
            ``critic=None``, ``(parameters, values)`` (``ActorCritic``). An
            actor that returns parameters alone and no critic is REINFORCE.
        optimizer: default Adam over every parameter, or RMSprop with
            ``use_rms_prop`` (Stable-Baselines3's A2C). Its learning rate
            follows ``hyperparams`` (and ``anneal_steps``' schedule).
        hyperparams: keys of ``optix_core.algorithms.config.a2c.DEFAULTS``;
            ``normalize_observations`` and ``normalize_reward`` are SB3's
            VecNormalize (``OnPolicyWindow.init_normalizers``).
        critic: observations → ``[B, 1]`` values, or None.
        device, seed, action_space, observation_space, distribution: as
            ``TorchPPOAgent``'s.
    """

    algorithm = "a2c"
    DEFAULTS = config.DEFAULTS
    BOUNDS = config.BOUNDS
    ONLINE_SEARCH_SPACE = config.ONLINE_SEARCH_SPACE
    BUILT_WITH = config.BUILT_WITH
    LOOP_HINTS = config.LOOP_HINTS

    def setup_learning(self, observation_space: gym.Space | None) -> None:
        self.env_steps = 0  # environment steps learned from: drives anneal_steps
        self.check_exploration()
        self.init_normalizers(None, observation_space)

    def default_optimizer(self, params: list[nn.Parameter]) -> torch.optim.Optimizer:
        if self.hp["use_rms_prop"]:
            return rms_prop(params, self.hp["learning_rate"], self.hp["rms_prop_eps"])
        return adam(params, self.hp["learning_rate"])

    def apply_hyperparams(self) -> None:
        set_learning_rate(self.optimizer, self.scheduled_learning_rate())

    # ---- learning -----------------------------------------------------------

    def learn(self, episode_data: EpisodeData) -> dict[str, float]:
        hp = self.hp
        # V from the networks that learn, not from whoever collected the window.
        w = self.window_returns(episode_data, recorded=False)
        n = len(w.actions)
        learning_rate = self.scheduled_learning_rate()  # set as the window was counted
        adv = torch.as_tensor(w.advantages.reshape(n), device=self.device)
        ret = torch.as_tensor(w.returns.reshape(n), device=self.device)
        if hp["normalize_advantage"] and n > 1:
            adv = (adv - adv.mean()) / (adv.std() + 1e-8)

        params, value = self.forward(O.to_tensor(w.obs, self.device))
        log_prob = self.distribution.log_prob(
            params, torch.as_tensor(w.actions, device=self.device)
        )
        policy_loss = -(log_prob * adv).mean()  # the policy gradient theorem
        entropy = self.distribution.entropy(params).mean()
        value_loss = (value - ret).square().mean()
        loss = policy_loss + hp["vf_coef"] * value_loss - hp["entropy_coef"] * entropy
        self.gradients.zero()
        loss.backward()
        self.gradients.clip(hp["max_grad_norm"])
        optimizer_step(self.optimizer)()
        losses = torch.stack([policy_loss, value_loss, entropy]).tolist()
        return {
            **dict(zip(("policy_loss", "value_loss", "entropy"), losses, strict=True)),
            "explained_variance": explained_variance(w.values.reshape(-1), w.returns.reshape(-1)),
            "learning_rate": learning_rate,
        }


def make_a2c(
    observation_space: gym.Space,
    action_space: gym.Space,
    *,
    hyperparams: HyperparamSet | None = None,
    device: str = "auto",
    seed: int | None = None,
    **network: Any,
) -> TorchAgent:
    """The AgentSpec factory: ``ActorCritic`` chosen from the spaces ([64, 64]
    tanh heads on flat features, as Stable-Baselines3's A2C), or with
    ``use_sde`` gSDE's ``StateDependentActorCritic``; ``network`` holds their
    options, as ``make_ppo``'s."""
    return default_agent(
        TorchAgent, observation_space, action_space, hyperparams, device, seed, "a2c", **network
    )
