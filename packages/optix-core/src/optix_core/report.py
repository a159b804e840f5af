"""LoopReport: why a run stopped and what it achieved, as data and as a text block."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from optix_core.types import EvalMetrics, LoopState, PolicySnapshot, finite_or_none

if TYPE_CHECKING:
    from optix_core.evaluation import PolicyEvaluation
    from optix_core.selection import Runoff

RULE = "━" * 56


def progress_line(metrics: EvalMetrics, state: LoopState) -> str:
    """The one line a verbose loop prints per evaluation, from the evaluation's
    metrics as the loop completes them (env steps, smoothed, selection and best)."""
    numbers = metrics.metrics
    selection = numbers.get("selection_score")
    best = numbers.get("best_score")
    best_text = "" if best is None else f"{best:.1f} (window {int(numbers['best_window'])})"
    env_steps = int(numbers.get("env_steps", 0))
    smoothed = numbers.get("smoothed_score", math.nan)
    return (
        f"[loop] window={metrics.episode_id:>5}  env_steps={env_steps:>10,}  "
        f"train={metrics.primary_score:>8.1f}  smoothed={smoothed:>8.1f}  "
        f"selection={'-' if selection is None else f'{selection:.1f}':>7}  "
        f"best={best_text}  state={state.value}  interval={int(numbers.get('interval', 0))}"
    )


@dataclass
class LoopReport:
    """The run's outcome. ``best_score`` is the selection score of the best
    checkpoint (the policy the agent holds now), ``best_episode`` its window;
    ``record_window`` is the window of the training score's last record (what
    DORMANT's patience counts from: the run was still improving there);
    ``runoff`` is the best checkpoint's runoff against the final policy, where
    there was one; ``final_eval`` plays the policy handed back on episodes that
    did not choose it."""

    stop_reason: str
    episodes: int
    env_steps: int
    wall_time: float
    final_state: LoopState
    best_score: float | None = None
    best_episode: int | None = None
    best_train_score: float | None = None
    selection_episodes: int = 0
    selection_env_steps: int = 0
    val_score: float | None = None
    generalization_gap: float | None = None
    best_snapshot: PolicySnapshot | None = None
    final_eval: PolicyEvaluation | None = None
    runoff: Runoff | None = None
    pipeline: dict[str, Any] = field(default_factory=dict)  # the pipeline's summary()
    record_window: int | None = None

    def to_dict(self) -> dict[str, Any]:
        final = self.final_eval
        return {
            "stop_reason": self.stop_reason,
            "windows": self.episodes,
            "env_steps": self.env_steps,
            "selection_env_steps": self.selection_env_steps,
            "wall_time": round(self.wall_time, 3),
            "final_state": self.final_state.value,
            "best_score": finite_or_none(self.best_score),
            "best_window": self.best_episode,
            "record_window": self.record_window,
            "best_train_score": finite_or_none(self.best_train_score),
            "selection_episodes": self.selection_episodes,
            "val_score": finite_or_none(self.val_score),
            "generalization_gap": finite_or_none(self.generalization_gap),
            "best_snapshot": self.best_snapshot.snapshot_id if self.best_snapshot else None,
            "final_eval": None if final is None else final.to_dict(),
            "runoff": None if self.runoff is None else self.runoff.to_dict(),
            **({"pipeline": self.pipeline} if self.pipeline else {}),
        }

    def format(self, title: str = "Training Complete", extra: dict[str, str] | None = None) -> str:
        rows = {
            "Best score": self._best(),
            "Val score": _num(self.val_score),
            "Generalization": _num(self.generalization_gap)
            + ("  (train − val)" if self.generalization_gap is not None else ""),
            "Windows": f"{self.episodes:,}",
            "Env steps": f"{self.env_steps:,} training"
            + (
                f" + {self.selection_env_steps:,} choosing checkpoints"
                if self.selection_env_steps
                else ""
            ),
            "Wall time": f"{self.wall_time:.1f} s",
            **{k.replace("_", " ").capitalize(): str(v) for k, v in self.pipeline.items()},
            **(extra or {}),
        }
        if self.runoff is not None:
            rows["Runoff"] = str(self.runoff)
        if self.final_eval is not None:
            rows["Final eval"] = f"{self.final_eval} (deterministic, fresh seeds, best checkpoint)"
        body = "\n".join(f"  {k:<17}: {v}" for k, v in rows.items())
        return f"{RULE}\n  {title}\n  {'Reason':<17}: {self.stop_reason}\n{RULE}\n{body}\n{RULE}"

    def _best(self) -> str:
        if self.best_score is None:
            return "n/a: no window was scored (none ended an episode once the agent learned)"
        where = [f"window {self.best_episode}"]
        if self.selection_episodes:
            where.append(f"mean of {self.selection_episodes} deterministic episodes")
            where.append(f"training score {_num(self.best_train_score)}")
        return f"{_num(self.best_score)}  ({', '.join(where)})"


def _num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4g}"
