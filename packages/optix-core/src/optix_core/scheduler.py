"""BackoffScheduler: when to evaluate, and when learning has stopped.

Every evaluation either credits an improvement (the interval snaps back to
``base_interval``, state ACTIVE) or counts one more non-improvement (the
interval grows by ``backoff_factor`` up to ``max_interval_episodes``; COOLING
after ``plateau_threshold`` in a row, DORMANT after ``dormant_threshold``).

An improvement is a smoothed score (mean of the last ``score_smoothing`` raw
scores) above the best credited one by more than the effective margin::

    effective_margin = max(improvement_margin, noise_k * noise)

``noise`` is the standard deviation of the last ``score_window`` raw scores
around their least-squares line. tensor-optix took the plain standard
deviation, which counts a steadily rising score as noise and so refuses to
credit the fast learning it is meant to track; the residuals keep the noise
floor and drop the trend.

``relative_patience`` (optix's; its default 0 keeps tensor-optix's test)
makes DORMANT also wait until the windows since the smoothed score last set a
record number at least this fraction of the windows the run took to that
record. A record counts by any amount: within the noise margin, records keep
coming while a noisy curve creeps up a plateau, and ever more rarely once it
is flat. Confirmation then costs in proportion to the learning it confirms: a
run that peaked at window 20 is not held 70 windows more by a backed-off
evaluation count, and one still setting records at window 400 is not
stopped after 10 evaluations. ``record_gain`` sets how much a record must
add: more than that share of what the run has learned so far (the record
above the lowest smoothed score). Without it, a curve that has learned
LunarLander (from -170 to 270) but still creeps up by a point now and then
never converges.

``unsolved_patience`` (optix's; default 0, no change) is the relative
patience while the run has not solved its task, which ``record(...,
solved=False)`` says (``optix train`` judges that by the best checkpoint
against the environment's ``reward_threshold``). A score that has not reached
what the task defines as solved can sit flat for far longer than the
learning before it and still be climbing: TD3 on LunarLanderContinuous set
its last record 3,500 steps after its warm-up, stayed below it for the next
33,000 steps, then climbed to 260 (SAC: 10,000 steps of learning, 18,000
flat, then 270).

While the agent is still exploring on its schedule (``record(...,
exploring=True)``: DQN's ε on its way down), there is no DORMANT, and the
windows DORMANT waits for count from the last evaluation that explored
when it came after the last record. A plateau then is the schedule's, not
the learning's: DQN on MountainCar sits at −200 until exploration has
found the flag (rl-zoo's settings explore for 24,000 steps; the training
score passed -190 after 45,000 to 55,000 in SB3 and optix alike), and was
called converged after 8,000.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import Any

import numpy as np

from optix_core.types import LoopState


@dataclass
class ScheduleDecision:
    """What one evaluation meant."""

    improved: bool
    state: LoopState
    raw: float
    smoothed: float
    best_smoothed: float
    margin: float
    entered_cooling: bool
    entered_dormant: bool
    interval: int


class BackoffScheduler:
    def __init__(
        self,
        base_interval: int = 1,
        backoff_factor: float = 2.0,
        max_interval_episodes: int = 100,
        plateau_threshold: int = 5,
        dormant_threshold: int = 20,
        score_smoothing: int = 2,
        improvement_margin: float = 0.0,
        noise_k: float = 2.0,
        score_window: int = 20,
        min_episodes_before_dormant: int = 0,
        relative_patience: float = 0.0,
        record_gain: float = 0.0,
        unsolved_patience: float = 0.0,
    ) -> None:
        _check(base_interval >= 1, "base_interval must be >= 1", base_interval)
        _check(backoff_factor >= 1.0, "backoff_factor must be >= 1", backoff_factor)
        _check(
            max_interval_episodes >= base_interval,
            "max_interval_episodes must be >= base_interval",
            max_interval_episodes,
        )
        _check(plateau_threshold >= 1, "plateau_threshold must be >= 1", plateau_threshold)
        _check(
            dormant_threshold >= plateau_threshold,
            "dormant_threshold must be >= plateau_threshold",
            dormant_threshold,
        )
        _check(score_smoothing >= 1, "score_smoothing must be >= 1", score_smoothing)
        _check(improvement_margin >= 0, "improvement_margin must be >= 0", improvement_margin)
        _check(noise_k >= 0, "noise_k must be >= 0", noise_k)
        _check(score_window >= 2, "score_window must be >= 2", score_window)
        _check(relative_patience >= 0, "relative_patience must be >= 0", relative_patience)
        _check(record_gain >= 0, "record_gain must be >= 0", record_gain)
        _check(unsolved_patience >= 0, "unsolved_patience must be >= 0", unsolved_patience)
        self.base_interval = base_interval
        self.backoff_factor = backoff_factor
        self.max_interval_episodes = max_interval_episodes
        self.plateau_threshold = plateau_threshold
        self.dormant_threshold = dormant_threshold
        self.score_smoothing = score_smoothing
        self.improvement_margin = improvement_margin
        self.noise_k = noise_k
        self.score_window = score_window
        self.min_episodes_before_dormant = min_episodes_before_dormant
        self.relative_patience = relative_patience
        self.record_gain = record_gain
        self.unsolved_patience = unsolved_patience
        self.record_episode = 0  # when the smoothed score last set a record
        self.explored_episode = 0  # the last evaluation at which the agent was exploring
        self.record_smoothed = -np.inf
        self.lowest_smoothed = np.inf
        self.state = LoopState.ACTIVE
        self.interval = base_interval
        self.next_eval_episode = base_interval
        self.consecutive_no_improvement = 0
        self.n_evaluations = 0
        self.best_smoothed = -np.inf
        self._raw: deque[float] = deque(maxlen=score_window)

    def resume_after_dormant(self, episode: int) -> None:
        """Keep training after DORMANT: back to ACTIVE, evaluating densely again."""
        self.state = LoopState.ACTIVE
        self.consecutive_no_improvement = 0
        self.interval = self.base_interval
        self.next_eval_episode = episode + self.interval

    def should_evaluate(self, episode: int) -> bool:
        return episode >= self.next_eval_episode

    def noise(self) -> float:
        """Standard deviation of recent raw scores around their linear trend."""
        scores = np.asarray(self._raw, dtype=np.float64)
        if scores.size < 3:
            return 0.0
        t = np.arange(scores.size, dtype=np.float64)
        slope, intercept = np.polyfit(t, scores, 1)
        residuals = scores - (slope * t + intercept)
        return float(np.sqrt(np.sum(residuals**2) / (scores.size - 2)))

    @property
    def patience_from(self) -> int:
        """The window DORMANT's patience counts from: the last record, or the
        end of exploration where that came later."""
        return max(self.record_episode, self.explored_episode)

    def patience(self, solved: bool = True) -> float:
        """Windows since ``patience_from`` that DORMANT waits for."""
        factor = self.relative_patience
        if not solved:
            factor = max(factor, self.unsolved_patience)
        return factor * self.patience_from

    def converged(self, episode: int, solved: bool = True, exploring: bool = False) -> bool:
        """The DORMANT test, once the score has not improved at this evaluation."""
        return (
            not exploring
            and self.consecutive_no_improvement >= self.dormant_threshold
            and self.n_evaluations >= self.min_episodes_before_dormant
            and episode - self.patience_from >= self.patience(solved)
        )

    def _is_record(self, smoothed: float) -> bool:
        if not np.isfinite(self.record_smoothed):
            return True
        learned = self.record_smoothed - self.lowest_smoothed
        return smoothed > self.record_smoothed + self.record_gain * learned

    @property
    def learned_nothing(self) -> bool:
        """Whether the smoothed score never rose above its lowest: a sparse task
        whose reward exploration has not found (Acrobot's -500 on every window),
        or a learner that does not move."""
        return bool(np.isfinite(self.record_smoothed)) and (
            self.record_smoothed <= self.lowest_smoothed
        )

    def effective_margin(self) -> float:
        return max(self.improvement_margin, self.noise_k * self.noise())

    def record(
        self, episode: int, score: float, solved: bool = True, exploring: bool = False
    ) -> ScheduleDecision:
        """Take the score of the evaluation at ``episode`` and move the state machine;
        ``solved=False`` (the task is not solved yet) holds DORMANT for
        ``unsolved_patience``, ``exploring=True`` (the agent is still on its
        exploration schedule) holds it off.

        A score that is not finite counts as an evaluation without improvement
        but stays out of the noise window and the smoothing: one broken score
        must neither disable the noise margin nor poison the saved state.
        """
        margin = self.effective_margin()  # the noise floor before this score
        score = float(score)
        finite = math.isfinite(score)
        if finite:
            self._raw.append(score)
        self.n_evaluations += 1
        if exploring:
            self.explored_episode = episode
        recent = list(self._raw)[-self.score_smoothing :]
        smoothed = float(np.mean(recent)) if finite else math.nan
        improved = finite and smoothed > self.best_smoothed + margin
        if finite:
            self.lowest_smoothed = min(self.lowest_smoothed, smoothed)
            if self._is_record(smoothed):
                self.record_smoothed, self.record_episode = smoothed, episode
        before = self.state
        if improved:
            self.best_smoothed = smoothed
            self.consecutive_no_improvement = 0
            self.interval = self.base_interval
            self.state = LoopState.ACTIVE
        else:
            self.consecutive_no_improvement += 1
            # ceil, so that a factor below 1.5 still grows an interval of 1
            self.interval = min(
                math.ceil(self.interval * self.backoff_factor), self.max_interval_episodes
            )
            if self.converged(episode, solved, exploring):
                self.state = LoopState.DORMANT
            elif self.consecutive_no_improvement >= self.plateau_threshold:
                self.state = LoopState.COOLING
        self.next_eval_episode = episode + self.interval
        return ScheduleDecision(
            improved=improved,
            state=self.state,
            raw=score,
            smoothed=smoothed,
            best_smoothed=self.best_smoothed,
            margin=margin,
            entered_cooling=self.state is LoopState.COOLING and before is not LoopState.COOLING,
            entered_dormant=self.state is LoopState.DORMANT and before is not LoopState.DORMANT,
            interval=self.interval,
        )

    def state_dict(self) -> dict[str, Any]:
        return {
            "state": self.state.value,
            "interval": self.interval,
            "next_eval_episode": self.next_eval_episode,
            "consecutive_no_improvement": self.consecutive_no_improvement,
            "n_evaluations": self.n_evaluations,
            "record_episode": self.record_episode,
            "explored_episode": self.explored_episode,
            "record_smoothed": _finite_or_none(self.record_smoothed),
            "lowest_smoothed": _finite_or_none(self.lowest_smoothed),
            "best_smoothed": None if not np.isfinite(self.best_smoothed) else self.best_smoothed,
            "raw": list(self._raw),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.state = LoopState(state["state"])
        self.interval = int(state["interval"])
        self.next_eval_episode = int(state["next_eval_episode"])
        self.consecutive_no_improvement = int(state["consecutive_no_improvement"])
        self.n_evaluations = int(state["n_evaluations"])
        self.record_episode = int(state.get("record_episode", 0))
        self.explored_episode = int(state.get("explored_episode", 0))
        record = state.get("record_smoothed")
        self.record_smoothed = -np.inf if record is None else float(record)
        lowest = state.get("lowest_smoothed")
        self.lowest_smoothed = np.inf if lowest is None else float(lowest)
        best = state["best_smoothed"]
        self.best_smoothed = -np.inf if best is None else float(best)
        self._raw = deque(
            (float(x) for x in state["raw"] if x is not None), maxlen=self.score_window
        )


def _finite_or_none(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None


def _check(ok: bool, message: str, value: Any) -> None:
    if not ok:
        raise ValueError(f"{message}, got {value!r}")
