"""MetaController: what to do when the loop goes DORMANT.

The scheduler only says that the score stopped improving; this decides what
that means, from the last ``window`` evaluations and the spawn budget. The
rules, first match wins:

1. STOP   the spawn budget is spent (``spawns_left == 0``).
2. NO_OP  fewer than ``min_history`` evaluations: too little evidence to act on.
3. PRUNE  overfitting, and the ensemble has a member that may be pruned:
          the mean relative gap gapₜ = (trainₜ − valₜ) / |valₜ| is above
          ``gap_threshold``, or its least-squares slope is above
          ``gap_slope_threshold`` (the gap widens: overfitting in progress,
          caught before its level alone would trigger).
4. SPAWN  the primary score (validation when there is one) rises by less than
          ``improvement_threshold`` of its scale per evaluation: a real
          plateau, so branch a perturbed variant from the best checkpoint.
5. NO_OP  otherwise: the score still climbs, the plateau the scheduler saw is
          only apparent, and the lineage keeps training undisturbed.

The gap rules need a validation pipeline; without one only 1, 2, 4 and 5
apply. Overfitting with nothing to prune falls through to 4 and 5: the spawn's
noise is then raised by the gap penalty (see ``noise``).
"""

from __future__ import annotations

import enum
import logging
import math
from dataclasses import dataclass

from optix_core.evolution.history import ScoreHistory, relative_gaps, relative_slope, slope

log = logging.getLogger("optix")


class MetaAction(enum.StrEnum):
    """A decision on DORMANT."""

    SPAWN = "SPAWN"
    PRUNE = "PRUNE"
    STOP = "STOP"
    NO_OP = "NO_OP"


@dataclass(frozen=True)
class MetaSignals:
    """What a decision rests on; the gap signals are None without validation."""

    gap_level: float | None
    gap_slope: float | None
    improvement_rate: float


class MetaController:
    def __init__(
        self,
        gap_threshold: float = 0.3,
        gap_slope_threshold: float = 0.02,
        improvement_threshold: float = 0.05,
        window: int = 10,
        min_history: int = 3,
    ) -> None:
        for name, value in (
            ("gap_threshold", gap_threshold),
            ("gap_slope_threshold", gap_slope_threshold),
            ("improvement_threshold", improvement_threshold),
        ):
            if not math.isfinite(value):
                raise ValueError(f"{name} must be a finite number, got {value!r}")
        if min_history < 2:
            raise ValueError(
                f"min_history must be >= 2 (a slope needs two points), got {min_history}"
            )
        if window < min_history:
            raise ValueError(f"window must be >= min_history ({min_history}), got {window}")
        self.gap_threshold = gap_threshold
        self.gap_slope_threshold = gap_slope_threshold
        self.improvement_threshold = improvement_threshold
        self.window = window
        self.min_history = min_history

    def signals(self, history: ScoreHistory) -> MetaSignals:
        """The signals of the last ``window`` evaluations of ``history``."""
        recent = history.recent(self.window)
        val = recent.val
        if val is None:
            return MetaSignals(None, None, relative_slope(recent.train))
        gaps = relative_gaps(recent.train, val)
        return MetaSignals(float(gaps.mean()), slope(gaps), relative_slope(val))

    def decide(
        self,
        history: ScoreHistory,
        *,
        spawns_left: int | None = None,
        prunable: int | None = None,
    ) -> MetaAction:
        """Apply the module's rules.

        ``spawns_left`` is None for an unlimited budget; ``prunable`` is how
        many ensemble members may be pruned, None when unknown (PRUNE allowed).
        """
        if spawns_left is not None and spawns_left <= 0:
            return MetaAction.STOP
        if len(history) < self.min_history:
            return MetaAction.NO_OP
        s = self.signals(history)
        action = MetaAction.NO_OP
        if prunable != 0 and self._overfitting(s):
            action = MetaAction.PRUNE
        elif s.improvement_rate < self.improvement_threshold:
            action = MetaAction.SPAWN
        log.info(
            "meta-controller: gap=%s gap_slope=%s improvement=%.4g -> %s",
            _fmt(s.gap_level),
            _fmt(s.gap_slope),
            s.improvement_rate,
            action.value,
        )
        return action

    def _overfitting(self, s: MetaSignals) -> bool:
        if s.gap_level is None or s.gap_slope is None:
            return False
        return s.gap_level > self.gap_threshold or s.gap_slope > self.gap_slope_threshold


def _fmt(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.4g}"
