"""Checkpoint selection: which of a run's policies is "the best".

The training score is the right signal for *whether learning goes on* (the
scheduler), but a poor one for *which policy to keep*: it mixes exploration
noise, episodes begun under older weights, and in a window that ended no
episode it is no return at all. So the loop asks a selection policy, at each
evaluation, whether this window's policy is a candidate and what it scores;
the best candidate is the best checkpoint, the one ``run()`` hands back, the
report names and rollback restores. There is one notion of best.

Three policies:

- ``TrainingScoreSelection`` (the library's default when it knows no
  environment): a candidate at every credited improvement, scored by the
  smoothed training score. Costs nothing.
- ``EvaluationSelection`` (``optix train``, trials): candidates are the
  evaluations whose training score is within the scheduler's noise margin of
  the best so far; each is scored on the same deterministic episodes, seeded
  apart from training and from the report. A candidate replaces the best when
  it scores higher, or ties (within one standard error of the difference from
  the highest score seen): a tie goes to the later policy, which has more
  training behind it (the first policy to reach CartPole's 500 on five
  episodes is rarely the one that holds it). When the run ends, the best
  checkpoint meets the run's final policy in a *runoff* (``Runoff``).
- ``ScoreFunctionSelection``: tensor-optix's ``checkpoint_score_fn``, called
  at every evaluation.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np

from optix_core.agent import BaseAgent
from optix_core.evaluation import PolicyEvaluation, evaluate_policy
from optix_core.scheduler import ScheduleDecision
from optix_core.types import EvalMetrics

SELECTION_SEED = 1_000_000  # selection episodes never share seeds with training ...
REPORT_SEED = 2_000_000  # ... nor with the episodes that report the chosen policy
RUNOFF_SEED = 3_000_000  # ... nor with the runoff's, which chose neither of its two policies
ROUND_SEEDS = 10_000  # seeds between one runoff round's episodes and the next's
RUNOFF_ROUNDS = 4  # the most rounds a runoff plays ...
RUNOFF_SHARE = 0.1  # ... and it starts another only while it cost at most this share of training


@dataclass
class Candidate:
    """A policy judged for the best checkpoint."""

    window: int
    score: float  # what "best" compares: the selection score
    train_score: float  # the smoothed training score at that window
    episodes: int = 0  # evaluation episodes behind ``score`` (0: the training score)
    sem: float = 0.0  # standard error of ``score`` (0 when it is exact)
    # Each episode's return, in ``evaluate_policy``'s order, when every candidate
    # of the run plays the same episodes: then two candidates compare pairwise.
    returns: list[float] = field(default_factory=list)


@dataclass
class Runoff:
    """The best checkpoint against the policy the run ended with, when the run ends.

    The best checkpoint won its place on a few episodes against many rivals,
    so its selection score is the maximum of many noisy judgments and
    overstates it (the winner's curse): an Acrobot A2C run kept a checkpoint
    judged −67 on five episodes that scores −128 on fifty, while its final
    policy scores −83. Neither policy was chosen on the runoff's episodes, so
    both means are fair, and the higher one is handed back (a tie keeps the
    best checkpoint); both play the same episodes, so they differ by their
    policies, not by their starts. The runoff is played in rounds, and goes on
    while the two are within noise of each other: a policy that fails one
    start in ten scores like its rival on ten episodes and shows on thirty.
    """

    best_window: int
    final_window: int
    best: PolicyEvaluation
    final: PolicyEvaluation
    rounds: int = 1

    def extend(self, best: PolicyEvaluation, final: PolicyEvaluation) -> Runoff:
        """The runoff with one more round played."""
        return replace(
            self,
            best=self.best.concatenate(best),
            final=self.final.concatenate(final),
            rounds=self.rounds + 1,
        )

    @property
    def final_wins(self) -> bool:
        return self.final.mean > self.best.mean

    @property
    def decided(self) -> bool:
        """Whether the two played alike, or differ by more than twice the
        standard error of their paired difference."""
        differences = self.final.returns - self.best.returns
        if not differences.any():
            return True
        sem = differences.std() / math.sqrt(differences.size)
        return bool(abs(differences.mean()) > 2 * sem)

    @property
    def env_steps(self) -> int:
        return self.best.env_steps + self.final.env_steps

    def to_dict(self) -> dict[str, Any]:
        return {
            "best_window": self.best_window,
            "final_window": self.final_window,
            "rounds": self.rounds,
            "best": self.best.to_dict(),
            "final": self.final.to_dict(),
            "winner": "final" if self.final_wins else "best",
        }

    def __str__(self) -> str:
        winner = "final policy handed back" if self.final_wins else "best checkpoint kept"
        return (
            f"{winner}: final (window {self.final_window}) {self.final.mean:.4g} against "
            f"best (window {self.best_window}) {self.best.mean:.4g}, "
            f"{len(self.best.returns)} shared episodes"
        )


class CheckpointSelection(ABC):
    """Decides which evaluations' policies are candidates, scores them, ranks them."""

    env_steps: int = 0  # environment steps spent judging candidates
    peak: Candidate | None = None  # the highest-scoring candidate so far

    @abstractmethod
    def judge(
        self, agent: BaseAgent, window: int, metrics: EvalMetrics, decision: ScheduleDecision
    ) -> Candidate | None:
        """Score the agent's current policy if this evaluation makes it a
        candidate; None when it does not (at no cost)."""

    def confirm(
        self, agent: BaseAgent, window: int, metrics: EvalMetrics, decision: ScheduleDecision
    ) -> Candidate | None:
        """Score the current policy before the run is declared converged, when
        ``judge`` passed it over; None where that would add nothing."""
        return None

    runoff_episodes: int = 0  # episodes of each policy in each runoff round; 0: no runoff

    def runoff(self, agent: BaseAgent, number: int = 0) -> PolicyEvaluation:
        """Play the agent's policy on the episodes of the runoff's round ``number``."""
        raise NotImplementedError(f"{type(self).__name__} holds no runoff")

    def runoff_goes_on(self, runoff: Runoff, training_env_steps: int) -> bool:
        """Whether the runoff plays another round: it is undecided, and has cost
        at most ``RUNOFF_SHARE`` of the training env steps in fewer than
        ``RUNOFF_ROUNDS`` rounds."""
        return (
            not runoff.decided
            and runoff.rounds < RUNOFF_ROUNDS
            and runoff.env_steps <= RUNOFF_SHARE * training_env_steps
        )

    def clearly_beats(self, candidate: Candidate, best: Candidate | None) -> bool:
        """Whether ``candidate`` scores above ``best`` by more than one standard
        error of the difference: the policy is still improving."""
        if best is None or not math.isfinite(candidate.score):
            return False
        return candidate.score > best.score + difference_sem(candidate, best)

    def beats(self, candidate: Candidate, best: Candidate | None) -> bool:
        """Whether ``candidate`` becomes the best.

        It does when it scores higher than the best, or ties: it scores within
        one standard error (of the difference) of the highest score seen so
        far. A tie goes to the later policy, which has more training behind it;
        measuring ties against the peak, not the current best, keeps a run of
        ties from drifting downwards.
        """
        if not math.isfinite(candidate.score):
            return False
        peak = self.peak
        if peak is None or candidate.score > peak.score:
            self.peak = candidate
        if best is None or not math.isfinite(best.score) or candidate.score > best.score:
            return True
        assert peak is not None
        tolerance = difference_sem(candidate, peak)
        return candidate.score >= peak.score - tolerance or math.isclose(
            candidate.score, peak.score, rel_tol=1e-9, abs_tol=1e-9
        )

    def state_dict(self) -> dict[str, Any]:
        return {
            "env_steps": self.env_steps,
            "peak": None if self.peak is None else asdict(self.peak),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.env_steps = int(state.get("env_steps", 0))
        peak = state.get("peak")
        self.peak = None if peak is None else Candidate(**peak)


class TrainingScoreSelection(CheckpointSelection):
    """The best policy is the one at the best credited smoothed training score."""

    def judge(
        self, agent: BaseAgent, window: int, metrics: EvalMetrics, decision: ScheduleDecision
    ) -> Candidate | None:
        if not decision.improved:
            return None
        return Candidate(window, decision.smoothed, decision.smoothed)

    def beats(self, candidate: Candidate, best: Candidate | None) -> bool:
        return best is None or candidate.score > best.score


class ScoreFunctionSelection(CheckpointSelection):
    """tensor-optix's ``checkpoint_score_fn``: ``score_fn(agent)`` at every evaluation."""

    def __init__(self, score_fn: Callable[[BaseAgent], float]) -> None:
        self.score_fn = score_fn

    def judge(
        self, agent: BaseAgent, window: int, metrics: EvalMetrics, decision: ScheduleDecision
    ) -> Candidate | None:
        return Candidate(window, float(self.score_fn(agent)), decision.smoothed)


class EvaluationSelection(CheckpointSelection):
    """Candidates near the best training score, judged on fresh deterministic episodes.

    ``env`` is an environment id or a callable that builds one. A window is a
    candidate when its training score is at least the best smoothed training
    score minus the scheduler's noise margin, so policies that hold a plateau
    are judged too, not only the first to reach it; far-below windows cost
    nothing. Every candidate plays the same episodes, seeded from ``seed``
    (common random numbers, as PEGASUS evaluates policies on fixed scenarios):
    two candidates' scores then differ by their policies, not by their starts,
    and are compared by the standard error of their paired differences. On
    Pendulum the start alone spreads a good policy's return by ±80, so five
    episodes on fresh seeds could not tell −150 from −160. ``report`` plays the
    chosen policy on episodes seeded from ``report_seed``, which never chose it.

    ``max_share`` caps what judging costs: a candidate is judged only while the
    env steps judging took so far are at most this share of the env steps
    training took (the evaluation's ``env_steps``), so candidates are spread
    over the run instead of spent at every window of a plateau. On CartPole,
    where every window of the 500-plateau is a candidate, judging them all
    cost more env steps than training did. None judges every candidate.

    ``runoff_episodes`` (default: twice ``episodes``; 0: no runoff) is how
    many episodes, seeded from ``runoff_seed``, the best checkpoint and the
    final policy each play in each round of their runoff (``Runoff``).
    """

    def __init__(
        self,
        env: str | Callable[[], Any],
        episodes: int = 5,
        *,
        seed: int = SELECTION_SEED,
        report_seed: int = REPORT_SEED,
        n_envs: int = 8,
        env_kwargs: dict[str, Any] | None = None,
        max_share: float | None = None,
        runoff_episodes: int | None = None,
        runoff_seed: int = RUNOFF_SEED,
    ) -> None:
        if episodes < 1:
            raise ValueError(f"episodes must be >= 1, got {episodes}")
        if runoff_episodes is not None and runoff_episodes < 0:
            raise ValueError(f"runoff_episodes must be >= 0 or None, got {runoff_episodes}")
        if max_share is not None and not max_share > 0:
            raise ValueError(f"max_share must be > 0 or None, got {max_share}")
        self.env = env
        self.episodes = episodes
        self.seed = seed
        self.report_seed = report_seed
        self.n_envs = n_envs
        self.env_kwargs = env_kwargs
        self.max_share = max_share
        self.runoff_episodes = 2 * episodes if runoff_episodes is None else runoff_episodes
        self.runoff_seed = runoff_seed

    def is_candidate(self, decision: ScheduleDecision) -> bool:
        if decision.improved:
            return True
        if not math.isfinite(decision.raw):
            return False
        return decision.raw >= decision.best_smoothed - decision.margin

    def judge(
        self, agent: BaseAgent, window: int, metrics: EvalMetrics, decision: ScheduleDecision
    ) -> Candidate | None:
        if not self.is_candidate(decision) or not self.affordable(metrics):
            return None
        return self._play(agent, window, decision)

    def confirm(
        self, agent: BaseAgent, window: int, metrics: EvalMetrics, decision: ScheduleDecision
    ) -> Candidate | None:
        """Judged whatever the budget: once per DORMANT, and the budget may have
        gone on the first, random policy (MountainCarContinuous's five
        999-step episodes at window 4 left nothing to judge until 20k steps)."""
        return self._play(agent, window, decision)

    def _play(self, agent: BaseAgent, window: int, decision: ScheduleDecision) -> Candidate:
        result = self._evaluate(agent, self.episodes, self.seed)
        self.env_steps += result.env_steps
        sem = result.std / math.sqrt(self.episodes)
        return Candidate(
            window, result.mean, decision.smoothed, self.episodes, sem, result.returns.tolist()
        )

    def affordable(self, metrics: EvalMetrics) -> bool:
        """Whether judging is within ``max_share`` of the training env steps."""
        if self.max_share is None:
            return True
        return self.env_steps <= self.max_share * metrics.metrics.get("env_steps", 0.0)

    def runoff(self, agent: BaseAgent, number: int = 0) -> PolicyEvaluation:
        seed = self.runoff_seed + number * ROUND_SEEDS
        result = self._evaluate(agent, self.runoff_episodes, seed)
        self.env_steps += result.env_steps
        return result

    def report(self, agent: BaseAgent, episodes: int = 20) -> PolicyEvaluation:
        """The chosen policy on ``episodes`` deterministic episodes that chose nothing."""
        return self._evaluate(agent, episodes, self.report_seed)

    def _evaluate(self, agent: BaseAgent, episodes: int, seed: int) -> PolicyEvaluation:
        return evaluate_policy(
            agent, self.env, episodes, seed=seed, n_envs=self.n_envs, env_kwargs=self.env_kwargs
        )


def difference_sem(a: Candidate, b: Candidate) -> float:
    """The standard error of ``a.score - b.score``: from the paired differences
    when both played the same episodes, else from the two standard errors."""
    if a.returns and len(a.returns) == len(b.returns):
        differences = np.subtract(a.returns, b.returns)
        return float(differences.std() / math.sqrt(differences.size))
    return math.hypot(a.sem, b.sem)
