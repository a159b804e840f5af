"""IMPALA's learner: an actor-critic step on trajectories the actors collected
with older weights, corrected by V-trace.

Espeholt et al. (2018), "IMPALA: Scalable Distributed Deep-RL with Importance
Weighted Actor-Learner Architectures". Actors act with a behaviour policy μ
(the weights they last picked up); the learner's policy π has moved on since.
On each window, with V the learner's *current* critic:

    ρ_t  = min(ρ̄, π(a_t|s_t) / μ(a_t|s_t)),   c_t = min(c̄, π(a_t|s_t) / μ(a_t|s_t))
    v_s  = V(s) + Σ_t γ^{t−s} (Π_{i<t} c_i) ρ_t (r_t + γ V(s_{t+1}) − V(s_t))    (eq. 1)
    L_π  = −E[ ρ_s (r_s + γ v_{s+1} − V(s_s)) · log π(a_s|s_s) ]                 (section 4.2)
    L_V  = E[ (v_s − V(s_s))² ]
    L    = L_π + vf_coef · L_V − entropy_coef · H[π(·|s_s)]

One gradient step per batch: a window of ``ActorLearnerPipeline`` holds
several, one after the other in time (``infos["trajectory_len"]`` steps each).
Truncated episodes bootstrap from V of their final observation; terminated
ones from nothing. The networks, the action
distribution, acting and checkpoints are optix-torch's A2C agent's.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from optix_core.returns import compute_vtrace_targets
from optix_core.types import EpisodeData, HyperparamSet
from optix_distributed import config
from optix_torch.accel.optim import optimizer_step
from optix_torch.algorithms.a2c import ActorCriticAgent
from optix_torch.algorithms.on_policy import default_agent, explained_variance
from optix_torch.policies import observations as O


class ImpalaAgent(ActorCriticAgent):
    """IMPALA's learner (V-trace actor-critic) over any actor and critic.

    Args: as optix-torch's ``ActorCriticAgent`` (A2C's base): ``actor`` (observations → the
    distribution's parameters, or ``(parameters, values)`` with ``critic=None``),
    ``optimizer`` (default Adam), ``hyperparams`` (keys of
    ``optix_distributed.config.DEFAULTS``), ``critic``, ``device``, ``seed``,
    ``action_space``, ``observation_space``, ``distribution``. A critic is required:
    V-trace needs values.
    """

    algorithm = "impala"
    DEFAULTS = config.DEFAULTS
    BOUNDS = config.BOUNDS
    ONLINE_SEARCH_SPACE = config.ONLINE_SEARCH_SPACE

    def __init__(self, actor: nn.Module, *args: Any, **kwargs: Any) -> None:
        super().__init__(actor, *args, **kwargs)
        if not self.shared and self.critic is None:
            raise ValueError(
                "impala: V-trace needs values: pass critic= or an actor that returns "
                "(policy_output, value)"
            )

    def learn(self, episode_data: EpisodeData) -> dict[str, float]:
        """One V-trace step per batch of the window; the last step's statistics."""
        if "log_probs" not in episode_data.policy_info:
            raise ValueError(
                "impala: the window carries no behaviour log-probabilities (policy_info"
                "['log_probs']); collect it with ActorLearnerPipeline or act_info"
            )
        steps = len(episode_data.rewards)
        length = int(episode_data.infos.get("trajectory_len", steps))
        for start in range(0, steps, length):
            out = self._step(_time_slice(episode_data, start, start + length))
        return out

    def _step(self, data: EpisodeData) -> dict[str, float]:
        hp = self.hp
        steps, envs = np.shape(data.rewards)
        n = steps * envs
        obs = O.flatten_steps(data.observations, n)
        actions = self.distribution.learn_actions(data.actions, data.policy_info, n)
        behaviour = self.distribution.old_log_probs(
            np.asarray(data.policy_info["log_probs"], dtype=np.float32).reshape(n), actions
        )

        # π and V on the window, with gradients; V-trace reads them detached.
        params, value = self.forward(O.to_tensor(obs, self.device))
        log_prob = self.distribution.log_prob(params, torch.as_tensor(actions, device=self.device))
        next_values, final_values = self._bootstrap_values(data)
        vs, pg_advantages = compute_vtrace_targets(
            behaviour.reshape(steps, envs),
            log_prob.detach().float().cpu().numpy().reshape(steps, envs),
            data.rewards,
            value.detach().float().cpu().numpy().reshape(steps, envs),
            data.terminated,
            data.truncated,
            next_values,
            final_values,
            gamma=hp["gamma"],
            rho_bar=hp["rho_bar"],
            c_bar=hp["c_bar"],
        )
        vs_t = torch.as_tensor(vs.reshape(n), device=self.device)
        adv_t = torch.as_tensor(pg_advantages.reshape(n), device=self.device)

        policy_loss = -(log_prob * adv_t).mean()
        value_loss = (value - vs_t).square().mean()
        entropy = self.distribution.entropy(params).mean()
        loss = policy_loss + hp["vf_coef"] * value_loss - hp["entropy_coef"] * entropy
        self.gradients.zero()
        loss.backward()
        self.gradients.clip(hp["max_grad_norm"])
        optimizer_step(self.optimizer)()

        ratio = np.exp(log_prob.detach().cpu().numpy() - behaviour)
        losses = torch.stack([policy_loss, value_loss, entropy]).tolist()
        return {
            **dict(zip(("policy_loss", "value_loss", "entropy"), losses, strict=True)),
            "explained_variance": explained_variance(value.detach().cpu().numpy(), vs.reshape(n)),
            "mean_ratio": float(ratio.mean()),  # π/μ: how far the actors lag, as IMPALA sees it
        }

    @torch.inference_mode()
    def _bootstrap_values(self, data: EpisodeData) -> tuple[np.ndarray, np.ndarray]:
        """V of the observation after each column's last step ``[N]``, and V of each
        truncated episode's final observation ``[T, N]`` (0 elsewhere)."""
        truncated = np.asarray(data.truncated) & ~np.asarray(data.terminated)
        parts = [data.next_observations]
        if truncated.any():
            parts.append(O.select(data.final_observations, truncated))
        values = self.forward(O.to_tensor(O.concat(parts), self.device))[1]
        values = values.float().cpu().numpy()
        envs = truncated.shape[1]
        final_values = np.zeros(truncated.shape, dtype=np.float32)
        final_values[truncated] = values[envs:]
        return values[:envs], final_values


def _time_slice(data: EpisodeData, start: int, stop: int) -> EpisodeData:
    """Steps ``start:stop`` of a window; the observation after them is the next
    step's, or the window's ``next_observations`` at its end."""
    if start == 0 and stop >= len(data.rewards):
        return data

    def rows(x: Any, index: Any) -> Any:
        return O.map_obs(lambda a: a[index], x)

    after = data.next_observations if stop >= len(data.rewards) else rows(data.observations, stop)
    return EpisodeData(
        observations=rows(data.observations, slice(start, stop)),
        actions=data.actions[start:stop],
        rewards=data.rewards[start:stop],
        terminated=data.terminated[start:stop],
        truncated=data.truncated[start:stop],
        next_observations=after,
        final_observations=rows(data.final_observations, slice(start, stop)),
        policy_info={k: v[start:stop] for k, v in data.policy_info.items()},
    )


def make_impala(
    observation_space: gym.Space,
    action_space: gym.Space,
    *,
    hyperparams: HyperparamSet | None = None,
    device: str = "auto",
    seed: int | None = None,
) -> ImpalaAgent:
    """The AgentSpec factory: optix-torch's ``ActorCritic`` chosen from the spaces
    ([64, 64] tanh heads on flat features)."""
    return default_agent(
        ImpalaAgent, observation_space, action_space, hyperparams, device, seed, "impala"
    )
