"""What the on-policy algorithms (PPO, A2C, recurrent PPO) share: the values a
window bootstraps from, its GAE, and the default agent of a factory.

GAE needs V(s_t) for every step, V of the observation after the window, and
V of each truncated episode's final observation (its value is bootstrapped,
not zeroed: only ``terminated`` ends the return). V(s_t) and log π_old were
recorded at act time in ``policy_info``; a window collected without them (a
deterministic pipeline, another agent's data) gets them from the current
networks. The rest takes one forward pass.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from optix_core.returns import compute_gae
from optix_core.types import EpisodeData, HyperparamSet
from optix_torch.policies import observations as O
from optix_torch.policies.distributions import distribution_for
from optix_torch.policies.networks import ActorCritic, seeded


class OnPolicyValues:
    """Mixed into an agent with ``forward(obs) -> (params, values)``,
    ``distribution`` and ``device``."""

    @torch.inference_mode()
    def rollout_values(
        self, data: EpisodeData, obs: Any, learn_actions: np.ndarray, recorded: bool = True
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """V(s_t) ``[T, N]``, V after the window ``[N]``, V of truncated episodes'
        final observations ``[T, N]`` (0 elsewhere), and log π_old ``[T·N]``;
        ``recorded=False`` ignores what act time recorded."""
        steps, envs = np.shape(data.rewards)
        n = steps * envs
        info = data.policy_info
        recorded = recorded and "log_probs" in info and "values" in info
        truncated = np.asarray(data.truncated) & ~np.asarray(data.terminated)
        parts = [] if recorded else [obs]
        parts.append(data.next_observations)
        if truncated.any():
            parts.append(O.select(data.final_observations, truncated))
        params, value = self.forward(O.to_tensor(O.concat(parts), self.device))
        out = value.float().cpu().numpy()
        if recorded:
            values = np.asarray(info["values"], dtype=np.float32).reshape(steps, envs)
            old = self.distribution.old_log_probs(
                np.asarray(info["log_probs"], dtype=np.float32).reshape(n), learn_actions
            )
        else:
            values = out[:n].reshape(steps, envs)
            actions = torch.as_tensor(learn_actions, device=self.device)
            old = self.distribution.log_prob(params[:n], actions).float().cpu().numpy()
            out = out[n:]
        final_values = np.zeros((steps, envs), dtype=np.float32)
        final_values[truncated] = out[envs:]
        return values, out[:envs], final_values, old


def gae(
    data: EpisodeData,
    rewards: np.ndarray,
    values: np.ndarray,
    next_values: np.ndarray,
    final_values: np.ndarray,
    hp: dict[str, Any],
) -> tuple[np.ndarray, np.ndarray]:
    """Advantages Â = GAE-λ(r, V) and λ-return targets R = Â + V, ``[T, N]``
    (Schulman et al. 2016, eq. 16), with ``hp``'s ``gamma`` and ``gae_lambda``;
    truncated episodes bootstrap from ``final_values``, terminated ones from nothing."""
    return compute_gae(
        rewards,
        values,
        data.terminated,
        data.truncated,
        next_values,
        final_values,
        gamma=hp["gamma"],
        lam=hp["gae_lambda"],
    )


def explained_variance(predicted: np.ndarray, target: np.ndarray) -> float:
    """1 − Var[target − predicted] / Var[target]: how much of the return the
    critic explains (1 perfect, 0 useless, below 0 harmful); 0 for a constant target."""
    var = float(np.var(target))
    if var == 0.0:
        return 0.0
    return float(1.0 - np.var(target - predicted) / var)


def default_agent(
    agent_cls: type,
    observation_space: Any,
    action_space: Any,
    hyperparams: HyperparamSet | None,
    device: str,
    seed: int | None,
    owner: str,
) -> Any:
    """An AgentSpec factory's agent: ``ActorCritic`` chosen from the spaces
    (Stable-Baselines3's networks: [64, 64] tanh heads on flat features,
    linear heads on a CNN's), with the action space's distribution."""
    distribution = distribution_for(action_space, owner=owner)
    with seeded(seed):
        network = ActorCritic(observation_space, distribution.param_dim)
    return agent_cls(
        network,
        hyperparams=hyperparams,
        device=device,
        seed=seed,
        action_space=action_space,
        observation_space=observation_space,
        distribution=distribution,
    )
