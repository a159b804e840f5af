"""BaseAgent: the six methods the loop calls, and nothing more."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import numpy as np

from optix_core.hyperparams import Bound
from optix_core.types import EpisodeData, HyperparamSet


class BaseAgent(ABC):
    """Anything that acts and learns from windows of experience.

    Pipelines call ``act`` with batched observations shaped
    ``[N, *observation_shape]`` (one row per environment) and expect one action
    per row back. ``act`` must not change what the next ``learn`` does: an
    evaluation or a dashboard may call it at any time. What learning needs from
    the rollout (log-probabilities, values, recurrent states, the parameters of
    a sampled candidate) is returned by ``act_info`` and reaches ``learn``
    through ``EpisodeData.policy_info``.
    """

    @abstractmethod
    def act(self, observation: Any, deterministic: bool = False) -> Any:
        """Choose actions for a batch of observations."""

    def act_info(
        self, observation: Any, episode_start: np.ndarray
    ) -> tuple[Any, dict[str, np.ndarray]]:
        """Choose training actions and return what ``learn`` will need of them.

        ``episode_start[i]`` is True when row ``i`` is the first step of an
        episode, so a stateful policy can reset that row. The returned dict's
        arrays have one leading row per observation; the pipeline stacks them
        into ``EpisodeData.policy_info``. The default records nothing.
        """
        return self.act(observation), {}

    def reset_state(self, mask: np.ndarray | None = None) -> None:
        """Forget what ``act`` remembers (a recurrent state) for the rows where
        ``mask`` is True, or for all rows. Evaluations call it at episode ends;
        a memoryless policy has nothing to forget."""

    def continue_episodes(self) -> bool:
        """A resumed run's pipeline rebuilt the episodes its checkpoint interrupted:
        return True to act on in them with the acting state ``load_weights``
        restored (what a stateful policy remembers, a candidate drawn per
        episode, steps held for n-step returns), or False, the default, for new
        episodes. Called once, after loading and before the first window."""
        return False

    @abstractmethod
    def learn(self, episode_data: EpisodeData) -> dict[str, float]:
        """Update from one window; return diagnostics (loss values and the like)."""

    @abstractmethod
    def get_hyperparams(self) -> HyperparamSet:
        """The hyperparameters in force now."""

    @abstractmethod
    def set_hyperparams(self, hyperparams: HyperparamSet) -> None:
        """Apply new hyperparameters; they take effect at the next ``learn``."""

    @abstractmethod
    def save_weights(self, path: str) -> None:
        """Write everything needed to resume into the directory ``path``."""

    @abstractmethod
    def load_weights(self, path: str) -> None:
        """Restore what ``save_weights`` wrote to ``path``."""

    @property
    def is_on_policy(self) -> bool:
        """Off-policy agents return False: the loop then never rolls their weights back."""
        return True

    @property
    def search_space(self) -> dict[str, tuple]:
        """Hyperparameters that are safe to tune while training, in
        TrialOrchestrator's format (``{"learning_rate": ("log_float", 1e-4, 3e-3)}``).

        The loop's default optimizer, SPSA, tunes exactly these, and
        ``PolicyManager`` perturbs them when it spawns a variant; the default
        is none, so an agent is only ever tuned online where it says it may be.
        """
        return {}

    @property
    def hyperparam_bounds(self) -> dict[str, Bound]:
        """The valid range of each hyperparameter, as ``set_hyperparams`` checks it
        (``optix_core.hyperparams.Bound``); none declared by default.

        ``PolicyManager`` clips a perturbed value into its bound, so that a
        variant never gets a discount factor above 1.
        """
        return {}

    @property
    def warming_up(self) -> bool:
        """Whether the agent still acts without learning (an off-policy learner's
        uniformly random start). The loop does not evaluate such windows: a
        random policy's flat score is no plateau, and TD3's 10,000-step
        warm-up on Pendulum was read as convergence before it learned."""
        return False

    @property
    def exploring(self) -> bool:
        """Whether the agent is still on its exploration schedule (DQN's ε on its
        way down to ``epsilon_min``). The loop does not call a plateau
        converged meanwhile: MountainCar's score sits at −200 until exploration
        has found the flag."""
        return self.warming_up

    @property
    def loop_hints(self) -> dict[str, Any]:
        """Loop settings this kind of agent needs where the user left them on auto.

        Off-policy learners need more evaluations before a plateau means
        anything, since their scores lag the replay buffer
        (``min_episodes_before_dormant``). An agent whose windows are too small
        to score one by one (A2C's 5 steps) asks for ``steps_per_evaluation``:
        the loop's evaluation intervals count in as many windows as hold about
        that many env steps (where the pipeline's windows are of a fixed size).
        """
        if self.is_on_policy:
            return {}
        return {"min_episodes_before_dormant": 30}

    def teardown(self) -> None:
        """Release accelerator memory and other resources; the agent is not used again."""
