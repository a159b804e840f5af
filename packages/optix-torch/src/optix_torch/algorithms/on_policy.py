"""What the on-policy algorithms (PPO, A2C, recurrent PPO) share in torch.

The framework-free part (the values a window bootstraps from, GAE,
explained variance, PPO's window table and minibatch order) is optix-core's
``optix_core.on_policy``, which every backend reads; this supplies its
forward pass in torch and the default agent of a factory.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from optix_core import on_policy
from optix_core.on_policy import explained_variance, gae, gsde_log_std_init
from optix_core.types import EpisodeData, HyperparamSet
from optix_torch.policies import observations as O
from optix_torch.policies.distributions import distribution_for
from optix_torch.policies.networks import ActorCritic, seeded
from optix_torch.policies.sde import StateDependentActorCritic

__all__ = ["OnPolicyValues", "default_agent", "explained_variance", "gae"]


class OnPolicyValues:
    """Mixed into an agent with ``forward(obs) -> (params, values)``,
    ``distribution`` and ``device``."""

    def rollout_values(
        self, data: EpisodeData, obs: Any, learn_actions: np.ndarray, recorded: bool = True
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """``optix_core.on_policy.rollout_values`` through these networks."""
        return on_policy.rollout_values(
            data, obs, learn_actions, self.distribution, self._values, self._log_prob, recorded
        )

    def sde_log_std(self) -> np.ndarray:
        """gSDE's log σ, held by its network (``StateDependentActorCritic``)."""
        return self.actor.sde_log_std()

    @torch.inference_mode()
    def _values(self, obs: Any) -> tuple[torch.Tensor, np.ndarray]:
        params, value = self.forward(O.to_tensor(obs, self.device))
        return params, value.float().cpu().numpy()

    @torch.inference_mode()
    def _log_prob(self, params: torch.Tensor, learn_actions: np.ndarray) -> np.ndarray:
        actions = torch.as_tensor(learn_actions, device=self.device)
        return self.distribution.log_prob(params, actions).float().cpu().numpy()


def default_agent(
    agent_cls: type,
    observation_space: Any,
    action_space: Any,
    hyperparams: HyperparamSet | None,
    device: str,
    seed: int | None,
    owner: str,
    **options: Any,
) -> Any:
    """An AgentSpec factory's agent: ``ActorCritic`` chosen from the spaces
    (Stable-Baselines3's networks: [64, 64] tanh heads on flat features,
    linear heads on a CNN's), with the action space's distribution; with
    ``use_sde``, ``StateDependentActorCritic``. ``options`` are the network's
    (``hidden``, ``ortho_init``)."""
    log_std_init = gsde_log_std_init(agent_cls, hyperparams, action_space, owner)
    if log_std_init is not None:
        with seeded(seed):
            network = StateDependentActorCritic(
                observation_space, action_space, log_std_init=log_std_init, **options
            )
        distribution = network.distribution
    else:
        distribution = distribution_for(action_space, owner=owner)
        with seeded(seed):
            network = ActorCritic(observation_space, distribution.param_dim, **options)
    return agent_cls(
        network,
        hyperparams=hyperparams,
        device=device,
        seed=seed,
        action_space=action_space,
        observation_space=observation_space,
        distribution=distribution,
    )
