"""LoopReport: why a run stopped and what it achieved, as data and as a text block."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from optix_core.types import LoopState, PolicySnapshot, finite_or_none

RULE = "━" * 56


@dataclass
class LoopReport:
    stop_reason: str
    episodes: int
    env_steps: int
    wall_time: float
    final_state: LoopState
    best_score: float | None = None
    best_episode: int | None = None
    val_score: float | None = None
    generalization_gap: float | None = None
    best_snapshot: PolicySnapshot | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "stop_reason": self.stop_reason,
            "episodes": self.episodes,
            "env_steps": self.env_steps,
            "wall_time": round(self.wall_time, 3),
            "final_state": self.final_state.value,
            "best_score": finite_or_none(self.best_score),
            "best_episode": self.best_episode,
            "val_score": finite_or_none(self.val_score),
            "generalization_gap": finite_or_none(self.generalization_gap),
            "best_snapshot": self.best_snapshot.snapshot_id if self.best_snapshot else None,
        }

    def format(self, title: str = "Training Complete", extra: dict[str, str] | None = None) -> str:
        rows = {
            "Best score": _num(self.best_score)
            + (f"  (window {self.best_episode})" if self.best_episode else ""),
            "Val score": _num(self.val_score),
            "Generalization": _num(self.generalization_gap)
            + ("  (train − val)" if self.generalization_gap is not None else ""),
            "Windows": f"{self.episodes:,}",
            "Env steps": f"{self.env_steps:,}",
            "Wall time": f"{self.wall_time:.1f} s",
            **(extra or {}),
        }
        body = "\n".join(f"  {k:<17}: {v}" for k, v in rows.items())
        return f"{RULE}\n  {title}\n  {'Reason':<17}: {self.stop_reason}\n{RULE}\n{body}\n{RULE}"


def _num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4g}"
