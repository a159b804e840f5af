"""The values that flow through the loop: experience, scores, hyperparameters, states."""

from __future__ import annotations

import copy
import enum
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class HyperparamSet:
    """An agent's hyperparameters, with the loop window they were set at."""

    params: dict[str, Any] = field(default_factory=dict)
    episode_id: int = 0

    def copy(self) -> HyperparamSet:
        return HyperparamSet(params=copy.deepcopy(self.params), episode_id=self.episode_id)

    def to_dict(self) -> dict[str, Any]:
        return {"params": _plain(self.params), "episode_id": self.episode_id}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> HyperparamSet:
        return cls(params=dict(data["params"]), episode_id=int(data.get("episode_id", 0)))


@dataclass
class EpisodeData:
    """One window of experience, time-major with one column per environment.

    Arrays are shaped ``[T, N, ...]`` for ``T`` steps of ``N`` environments
    (``N == 1`` for a single environment). ``terminated`` marks true ends (no
    bootstrap); ``truncated`` marks time limits and window-independent cut-offs,
    whose value is bootstrapped from ``final_observations``. ``policy_info``
    holds what the agent asked the pipeline to record at act time (its
    ``act_info``), shaped ``[T, N, ...]`` too.

    ``next_observations`` is the observation after the window's last step, per
    column, so a learner can bootstrap across the window boundary.
    ``final_observations`` holds, for each step that ended an episode, the
    episode's last observation (zeros elsewhere), since the observation the
    environment returns at such a step is the first of the next episode.

    ``infos`` is a dict: ``episode_returns`` and ``episode_lengths`` of the
    episodes that ended inside this window (counted across window boundaries),
    ``recent_returns`` of the last episodes ended by the window's end (the
    pipeline's ``stats_window``), plus whatever the pipeline adds.
    """

    observations: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray
    infos: dict[str, Any] = field(default_factory=dict)
    episode_id: int = 0
    next_observations: np.ndarray | None = None
    final_observations: np.ndarray | None = None
    policy_info: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def dones(self) -> np.ndarray:
        """Steps after which the environment was reset (terminated or truncated)."""
        return np.logical_or(self.terminated, self.truncated)

    @property
    def n_steps(self) -> int:
        """Environment steps in the window, over all columns."""
        return int(self.rewards.size)


@dataclass
class EvalMetrics:
    """A score for one window. Higher ``primary_score`` is better."""

    primary_score: float
    metrics: dict[str, float] = field(default_factory=dict)
    episode_id: int = 0
    generalization_gap: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "primary_score": finite_or_none(self.primary_score),
            "metrics": {k: _finite_plain(v) for k, v in self.metrics.items()},
            "episode_id": self.episode_id,
            "generalization_gap": finite_or_none(self.generalization_gap),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EvalMetrics:
        score = data["primary_score"]
        return cls(
            primary_score=float("nan") if score is None else float(score),
            metrics=dict(data.get("metrics", {})),
            episode_id=int(data.get("episode_id", 0)),
            generalization_gap=data.get("generalization_gap"),
        )


class LoopState(enum.StrEnum):
    """Where the scheduler stands: learning, backing off, or converged."""

    ACTIVE = "ACTIVE"
    COOLING = "COOLING"
    DORMANT = "DORMANT"


@dataclass
class PolicySnapshot:
    """A checkpoint on disk: which window it holds, its score, where it lives."""

    snapshot_id: str
    episode_id: int
    eval_metrics: EvalMetrics
    hyperparams: HyperparamSet
    path: str
    score: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "snapshot_id": self.snapshot_id,
            "episode_id": self.episode_id,
            "eval_metrics": self.eval_metrics.to_dict(),
            "hyperparams": self.hyperparams.to_dict(),
            "score": finite_or_none(self.score),
        }


def finite_or_none(x: float | None) -> float | None:
    """JSON has no inf or nan: store them as null."""
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def _finite_plain(value: Any) -> Any:
    value = _plain(value)
    return finite_or_none(value) if isinstance(value, float) else value


def _plain(value: Any) -> Any:
    """Turn numpy scalars and arrays into JSON-ready Python values."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value
