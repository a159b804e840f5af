"""Evaluators turn a window of experience into a score."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import numpy as np

from optix_core.types import EpisodeData, EvalMetrics


class BaseEvaluator(ABC):
    """Scores windows; higher is better."""

    @abstractmethod
    def score(
        self, episode_data: EpisodeData, train_diagnostics: dict[str, Any]
    ) -> EvalMetrics | None:
        """Score one window of experience; None when it holds nothing to score yet.

        The loop skips an evaluation that returns None and tries again at the
        next window, so a score is never made up from incomplete evidence.
        """

    def combine(self, train: EvalMetrics, val: EvalMetrics) -> EvalMetrics:
        """Merge a training score with a validation score.

        The validation score becomes the primary score, so every decision the
        loop takes rests on out-of-sample performance; the gap is kept.
        """
        metrics = {f"train_{k}": v for k, v in train.metrics.items()}
        metrics.update({f"val_{k}": v for k, v in val.metrics.items()})
        metrics["train_score"] = train.primary_score
        metrics["val_score"] = val.primary_score
        return EvalMetrics(
            primary_score=val.primary_score,
            metrics=metrics,
            episode_id=train.episode_id,
            generalization_gap=train.primary_score - val.primary_score,
        )


class EpisodeReturnEvaluator(BaseEvaluator):
    """The default: the mean return of the most recent episodes.

    A window rarely holds whole episodes (a 256-step window of an environment
    whose episodes last 500 steps holds none), so the score is the mean of the
    last episodes completed by the window's end, as the pipeline reports them
    in ``infos["recent_returns"]``. A window that ended no episode has no
    score: before the first episode a partial reward sum is not a return (on
    Acrobot it would beat every real one), and after it the recent returns are
    the last window's, so scoring them again would count one piece of evidence
    as several evaluations without improvement (MountainCarContinuous's
    999-step episodes end in one 256-step window of four). A window from a
    source that reports no episodes at all scores its total reward per
    environment.
    """

    def score(
        self, episode_data: EpisodeData, train_diagnostics: dict[str, Any]
    ) -> EvalMetrics | None:
        window_return = float(np.sum(episode_data.rewards)) / max(1, _columns(episode_data))
        metrics = {"window_return": window_return}
        infos = episode_data.infos
        ended = np.asarray(infos.get("episode_returns", ()), dtype=np.float64)
        if "recent_returns" in infos:
            recent = np.asarray(infos["recent_returns"], dtype=np.float64)
            if not recent.size or ("episode_returns" in infos and not ended.size):
                return None
            score = float(recent.mean())
            metrics.update(mean_return=score, std_return=float(recent.std()))
        else:
            score = window_return
        metrics["episodes_ended"] = float(ended.size)
        for key, value in train_diagnostics.items():
            if isinstance(value, int | float | np.floating | np.integer):
                metrics[f"train/{key}"] = float(value)
        return EvalMetrics(primary_score=score, metrics=metrics, episode_id=episode_data.episode_id)


def _columns(episode_data: EpisodeData) -> int:
    rewards = np.asarray(episode_data.rewards)
    return int(rewards.shape[1]) if rewards.ndim > 1 else 1
