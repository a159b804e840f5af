"""EnsembleAgent: one BaseAgent that acts with every member of a PolicyManager.

Continuous actions are the weighted mean, a = Σ wᵢ aᵢ / Σ wᵢ. Discrete
actions (integer or boolean arrays) are a weighted vote, element by element:
the value whose members' weights sum highest wins, a tie going to the
earliest member. Averaging discrete actions would invent actions that no
member chose (the mean of actions 0 and 2 is 1).

Only ``act`` is the ensemble's. ``act_info``, which training pipelines call,
is the primary's: an on-policy learner must learn from the actions it sampled
itself, with its own log-probabilities, not from a mixture it cannot score.
Validation, evaluation and deployment call ``act`` and see the ensemble.
``learn``, the hyperparameters (with the ``search_space`` the loop tunes
online and the ``hyperparam_bounds``) and ``save_weights``/``load_weights``
are the primary's too, so a loop trains, tunes and checkpoints the primary
while the ensemble's validation score decides which checkpoints are best.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from optix_core.agent import BaseAgent
from optix_core.evolution.policy_manager import PolicyManager
from optix_core.hyperparams import Bound
from optix_core.types import EpisodeData, HyperparamSet


class EnsembleAgent(BaseAgent):
    """``primary_agent`` joins ``policy_manager``'s ensemble (weight 1) if it is
    not a member yet, and is pinned so that pruning never removes it.
    ``discrete`` forces voting (True) or averaging (False); by default the
    members' action dtype decides."""

    def __init__(
        self,
        policy_manager: PolicyManager,
        primary_agent: BaseAgent,
        *,
        discrete: bool | None = None,
    ) -> None:
        self.policy_manager = policy_manager
        self.primary = primary_agent
        self.discrete = discrete
        policy_manager.pin(primary_agent)

    def act(self, observation: Any, deterministic: bool = False) -> np.ndarray:
        members = [m for m in self.policy_manager.members if m.weight > 0.0]
        if not members:
            raise ValueError(
                "every ensemble weight is 0: boost() a member or rebalance() the manager"
            )
        actions = [np.asarray(m.agent.act(observation, deterministic)) for m in members]
        shapes = {a.shape for a in actions}
        if len(shapes) > 1:
            raise ValueError(f"ensemble members returned actions of different shapes: {shapes}")
        stacked = np.stack(actions)  # [M, N, ...]
        weights = np.array([m.weight for m in members], dtype=np.float64)
        discrete = self.discrete
        if discrete is None:
            discrete = stacked.dtype.kind in "biu"
        if discrete:
            return weighted_vote(stacked, weights)
        return weighted_mean(stacked, weights)

    def act_info(
        self, observation: Any, episode_start: np.ndarray
    ) -> tuple[Any, dict[str, np.ndarray]]:
        return self.primary.act_info(observation, episode_start)

    def learn(self, episode_data: EpisodeData) -> dict[str, float]:
        return self.primary.learn(episode_data)

    def get_hyperparams(self) -> HyperparamSet:
        return self.primary.get_hyperparams()

    def set_hyperparams(self, hyperparams: HyperparamSet) -> None:
        self.primary.set_hyperparams(hyperparams)

    def save_weights(self, path: str) -> None:
        self.primary.save_weights(path)

    def load_weights(self, path: str) -> None:
        self.primary.load_weights(path)

    @property
    def is_on_policy(self) -> bool:
        return self.primary.is_on_policy

    @property
    def loop_hints(self) -> dict[str, Any]:
        return self.primary.loop_hints

    @property
    def search_space(self) -> dict[str, tuple]:
        """The primary's: the loop tunes the agent it trains."""
        return self.primary.search_space

    @property
    def hyperparam_bounds(self) -> dict[str, Bound]:
        return self.primary.hyperparam_bounds

    def reset_state(self, mask: np.ndarray | None = None) -> None:
        for agent in self.policy_manager.agents:
            agent.reset_state(mask)

    def teardown(self) -> None:
        """Remove every member from the manager, tearing each down: the ensemble
        is not used again, and its members' accelerator memory is released."""
        for agent in self.policy_manager.agents:
            self.policy_manager.remove_agent(agent)


def weighted_mean(actions: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """a = Σ wᵢ aᵢ / Σ wᵢ over the leading (member) axis, in the members' dtype."""
    mean = np.tensordot(weights, actions.astype(np.float64), axes=1) / weights.sum()
    return mean.astype(actions.dtype)


def weighted_vote(actions: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Per element, the action whose supporters' weights sum highest.

    support[i] = Σⱼ wⱼ [aⱼ = aᵢ] for each member i's choice; the choice of the
    first member with the most support wins.
    """
    agree = actions[:, None] == actions[None, :]  # [M, M, N, ...]: aᵢ = aⱼ
    support = np.tensordot(agree.astype(np.float64), weights, axes=([1], [0]))  # [M, N, ...]
    winner = np.argmax(support, axis=0)
    return np.take_along_axis(actions, winner[None], axis=0)[0]
