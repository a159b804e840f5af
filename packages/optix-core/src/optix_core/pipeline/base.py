"""BasePipeline: where windows of experience come from."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from typing import Any

import numpy as np

from optix_core.agent import BaseAgent
from optix_core.pipeline.recorder import EpisodeStats
from optix_core.types import EpisodeData


class BasePipeline(ABC):
    """Yields ``EpisodeData`` windows collected by acting with ``agent``.

    A pipeline collects for learning through ``agent.act_info`` (which may
    advance the agent's rollout state and generators, and records
    ``policy_info``) unless it only acts: built with ``deterministic=True``,
    or bound with ``acting_only=True`` (the loop binds its validation pipeline
    so), it calls ``agent.act`` alone, which never changes what ``learn``
    does, and records no ``policy_info``.
    """

    agent: BaseAgent | None = None
    deterministic: bool = False
    acting_only: bool = False
    window_steps: int | None = None  # env steps in each window, where fixed (None: they vary)

    def bind(self, agent: BaseAgent, *, acting_only: bool = False) -> None:
        """Act with ``agent`` from the next step on (the loop calls this)."""
        self.agent = agent
        self.acting_only = acting_only

    def act(
        self, agent: BaseAgent, observation: Any, episode_start: np.ndarray
    ) -> tuple[Any, dict[str, np.ndarray]]:
        """One batch of actions, and what to record of them for ``learn``."""
        if self.deterministic or self.acting_only:
            if episode_start.any():
                agent.reset_state(episode_start)
            return agent.act(observation, deterministic=self.deterministic), {}
        return agent.act_info(observation, episode_start)

    @abstractmethod
    def episodes(self) -> Iterator[EpisodeData]:
        """Windows of experience, one per loop iteration, for as long as asked."""

    @property
    def env_steps(self) -> int:
        """Environment steps taken so far, over all environments."""
        return 0

    def close(self) -> None:
        """Release environments and connections."""

    def summary(self) -> dict[str, Any]:
        """What this pipeline adds to the run's report, JSON-ready (an actor-learner's
        actors and how many were replaced); nothing by default."""
        return {}

    def state_dict(self) -> dict[str, Any]:
        """JSON-ready counters, for an exact resume."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what ``state_dict`` returned."""

    def continue_episodes(self) -> bool:
        """After ``load_state_dict``: continue the episodes its checkpoint interrupted,
        if the pipeline can (True), or start new ones (False, the default)."""
        return False

    def restart_episodes(self) -> None:
        """Start new episodes after all, where ``continue_episodes`` continued them
        but the agent cannot (its acting state did not come back with the checkpoint)."""

    def _require_agent(self) -> BaseAgent:
        if self.agent is None:
            raise RuntimeError(
                f"{type(self).__name__} has no agent: pass agent=... or hand it to RLOptimizer"
            )
        return self.agent


class EnvPipeline(BasePipeline):
    """A pipeline that steps environments itself: it counts steps and windows,
    keeps episode statistics across windows, and yields ``collect()`` forever."""

    def __init__(self, n_envs: int, stats_window: int) -> None:
        self.stats = EpisodeStats(n_envs, stats_window)
        self._steps = 0
        self._windows = 0

    @abstractmethod
    def collect(self) -> EpisodeData:
        """Act until the window is complete and return it."""

    def episodes(self) -> Iterator[EpisodeData]:
        while True:
            yield self.collect()

    @property
    def env_steps(self) -> int:
        return self._steps

    def state_dict(self) -> dict[str, Any]:
        return {
            "env_steps": self._steps,
            "windows": self._windows,
            "stats": self.stats.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._steps = int(state["env_steps"])
        self._windows = int(state["windows"])
        self.stats.load_state_dict(state.get("stats", {}))
        self.stats.restart(self._steps)
