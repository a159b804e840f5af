"""RLOptimizer: the autonomous loop.

One window is one pass through explicit stages, each a small method:

    learn → score → decide → select and checkpoint → guard → tune → notify

*learn* hands the window to the agent (NaN or inf in its diagnostics rolls
back to the best checkpoint); on the scheduler's evaluation windows *score*
asks the evaluator (and the validation pipeline, which only acts) for a
score, *decide* moves the BackoffScheduler, *select* lets the checkpoint
selection policy judge the policy and checkpoints it when it is the new best,
*guard* rolls back on degradation, and *notify* tells the callbacks what
happened, in that order. *tune* runs on every window: it asks the online
optimizer for the next hyperparameters as soon as the ones in force have
evidence of their own, experience collected entirely under them
(``optix_core.tuning``), independent of the evaluation schedule. The loop's
whole state is written as the ``latest`` snapshot (when it has a
``checkpoint_dir``) after every evaluated window and after any other once
``LATEST_SECONDS`` passed since the last, so a killed run resumes having
lost at most the window in progress and the second before it.

Before it stops on DORMANT the loop has the selection policy judge the
current policy, if this window did not: the training score can be flat while
the policy the run would hand back still improves (MountainCarContinuous's
deterministic policy reaches the flag thousands of steps after the exploring
one), and a policy that clearly beats the best checkpoint means training goes
on.

The loop stops on DORMANT (unless a callback carries on past it), at
``max_episodes`` windows or ``max_env_steps`` environment steps, on
``stop()``, or on an error; in every case the agent ends holding the best
checkpoint, the one the selection policy chose. When it stops on DORMANT or
its budget, the best checkpoint first meets the final policy in a runoff on
episodes that chose neither (``optix_core.selection.Runoff``), and the
winner is the best checkpoint.
"""

from __future__ import annotations

import logging
import math
import numbers
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

from optix_core.agent import BaseAgent
from optix_core.callbacks import CallbackList, Hook, LoopCallback
from optix_core.checkpoints import CheckpointError, CheckpointRegistry
from optix_core.evaluator import BaseEvaluator, EpisodeReturnEvaluator
from optix_core.optimizer import BaseOptimizer
from optix_core.optimizers import SPSAOptimizer
from optix_core.pipeline.base import BasePipeline
from optix_core.report import LoopReport, progress_line
from optix_core.scheduler import BackoffScheduler, ScheduleDecision
from optix_core.selection import (
    Candidate,
    CheckpointSelection,
    EvaluationSelection,
    Runoff,
    ScoreFunctionSelection,
    TrainingScoreSelection,
)
from optix_core.tuning import ProposalEvidence
from optix_core.types import EpisodeData, EvalMetrics, HyperparamSet, LoopState, PolicySnapshot

log = logging.getLogger("optix")

AgentFactory = Callable[[dict[str, Any]], BaseAgent]
Event = tuple[Hook, tuple[Any, ...]]
DURABLE_SECONDS = 30.0  # the longest a machine crash may set a run back
# The most training a killed process may lose besides the window it was in: windows
# shorter than this are saved together (an evaluated one always is).
LATEST_SECONDS = 1.0


class TrainingDivergedError(RuntimeError):
    """Training produced NaN or inf before any checkpoint could be rolled back to."""


class RLOptimizer:
    """Trains ``agent`` on ``pipeline`` until it converges, and keeps the best policy.

    Every option and default follows tensor-optix 1.10's ``RLOptimizer``
    (where it says "episode", read "window": one batch of experience the
    pipeline yields). ``dormant_threshold=None`` means 20, or 15 for
    off-policy agents; a zero ``min_episodes_before_dormant`` takes the
    agent's ``loop_hints``; so does ``windows_per_evaluation=None``: the
    windows that ``base_interval`` and ``max_interval_episodes`` count in (1,
    or for A2C, whose 5-step windows are too small to score one by one, as
    many as hold about 4,000 env steps: 100 windows of 8 x 5).
    ``relative_patience``, ``record_gain`` and ``unsolved_patience`` are
    optix's additions to the DORMANT test (``optix_core.scheduler``; 0,
    tensor-optix's test, by default); the last applies while the best
    checkpoint scores below ``solved_score`` (the task's ``reward_threshold``,
    say; None: never). ``stop_on_dormant=False`` trains through DORMANT (the
    scheduler starts over) until ``max_episodes`` or ``max_env_steps``: a
    fixed-budget run, as Stable-Baselines3 trains. Give ``agent_factory``
    (called with the ``hyperparams`` dict when ``run()`` starts) instead of
    ``agent`` to build the agent late. ``optimizer=None`` is SPSA over the
    agent's ``search_space`` (none unless the agent declares one), seeded
    with the pipeline's ``seed`` where it has one, so that a seeded run
    tunes, and so trains, the same each time.

    ``selection`` decides which policy is the best checkpoint (see
    ``optix_core.selection``): by default the best smoothed training score,
    or ``checkpoint_score_fn(agent)`` when that is given;
    ``EvaluationSelection(env_id)`` judges candidates on fresh deterministic
    episodes, and with ``final_eval_episodes`` the report ends with an
    evaluation of the chosen policy on episodes that did not choose it.

    ``max_env_steps`` stops after that many environment steps (checked after
    each window; SB3's ``total_timesteps``). ``tuning_episodes`` is how many
    episodes begun under the optimizer's proposal score it (default: one per
    environment column). ``checkpoint_dir=None`` keeps
    snapshots in a temporary directory removed when ``run()`` returns;
    ``resume=True`` continues the run whose snapshots ``checkpoint_dir``
    holds, or starts it when it holds none yet.
    """

    def __init__(
        self,
        agent: BaseAgent | None = None,
        pipeline: BasePipeline | None = None,
        *,
        agent_factory: AgentFactory | None = None,
        hyperparams: HyperparamSet | dict[str, Any] | None = None,
        val_pipeline: BasePipeline | None = None,
        evaluator: BaseEvaluator | None = None,
        optimizer: BaseOptimizer | None = None,
        selection: CheckpointSelection | None = None,
        checkpoint_dir: str | Path | None = None,
        max_snapshots: int = 10,
        checkpoint_score_fn: Callable[[BaseAgent], float] | None = None,
        max_episodes: int | None = None,
        max_env_steps: int | None = None,
        final_eval_episodes: int = 0,
        tuning_episodes: int | None = None,
        base_interval: int = 1,
        backoff_factor: float = 2.0,
        max_interval_episodes: int = 100,
        windows_per_evaluation: int | None = None,
        plateau_threshold: int = 5,
        dormant_threshold: int | None = None,
        score_smoothing: int = 2,
        improvement_margin: float = 0.0,
        noise_k: float = 2.0,
        score_window: int = 20,
        rollback_on_degradation: bool = False,
        degradation_threshold: float = 0.95,
        min_episodes_before_dormant: int = 0,
        relative_patience: float = 0.0,
        record_gain: float = 0.0,
        unsolved_patience: float = 0.0,
        solved_score: float | None = None,
        stop_on_dormant: bool = True,
        min_episodes_before_degradation: int = 5,
        callbacks: list[LoopCallback] | None = None,
        verbose: bool = False,
        resume: bool = False,
        checkpoint_extra: dict[str, Any] | None = None,
    ) -> None:
        if (agent is None) == (agent_factory is None):
            raise ValueError("give exactly one of agent= or agent_factory=")
        if pipeline is None:
            raise ValueError(
                "RLOptimizer needs a pipeline (BatchPipeline, VectorBatchPipeline, ...)"
            )
        for name, value in (("max_episodes", max_episodes), ("max_env_steps", max_env_steps)):
            if value is not None and value < 1:
                raise ValueError(f"{name} must be >= 1 or None, got {value}")
        if not 0.0 < degradation_threshold <= 1.0:
            raise ValueError(
                f"degradation_threshold must be in (0, 1], got {degradation_threshold}"
            )
        if not stop_on_dormant and max_episodes is None and max_env_steps is None:
            raise ValueError("stop_on_dormant=False needs max_episodes or max_env_steps")
        if resume and checkpoint_dir is None:
            raise ValueError("resume=True needs the checkpoint_dir of the run to continue")
        if selection is not None and checkpoint_score_fn is not None:
            raise ValueError("give selection= or checkpoint_score_fn=, not both")
        if windows_per_evaluation is not None and windows_per_evaluation < 1:
            raise ValueError(
                f"windows_per_evaluation must be >= 1 or None, got {windows_per_evaluation}"
            )
        if solved_score is not None and not math.isfinite(solved_score):
            raise ValueError(f"solved_score must be a finite number or None, got {solved_score}")
        if checkpoint_score_fn is not None:
            selection = ScoreFunctionSelection(checkpoint_score_fn)
        selection = selection or TrainingScoreSelection()
        if final_eval_episodes < 0:
            raise ValueError(f"final_eval_episodes must be >= 0, got {final_eval_episodes}")
        if final_eval_episodes and not isinstance(selection, EvaluationSelection):
            raise ValueError(
                "final_eval_episodes needs selection=EvaluationSelection(env): the final "
                "evaluation plays that environment"
            )
        self.agent = agent
        self.agent_factory = agent_factory
        self.hyperparams = (
            HyperparamSet(params=dict(hyperparams))
            if isinstance(hyperparams, dict)
            else hyperparams
        )
        self.pipeline = pipeline
        self.val_pipeline = val_pipeline
        self.evaluator = evaluator or EpisodeReturnEvaluator()
        self.optimizer = optimizer  # None: SPSA over the agent's search_space, set up in run()
        self.selection = selection
        self.evidence = ProposalEvidence(tuning_episodes)
        self.checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir is not None else None
        self.max_snapshots = max_snapshots
        self.max_episodes = max_episodes
        self.max_env_steps = max_env_steps
        self.final_eval_episodes = final_eval_episodes
        self.schedule_options = {
            "base_interval": base_interval,
            "backoff_factor": backoff_factor,
            "max_interval_episodes": max_interval_episodes,
            "plateau_threshold": plateau_threshold,
            "score_smoothing": score_smoothing,
            "improvement_margin": improvement_margin,
            "noise_k": noise_k,
            "score_window": score_window,
            "relative_patience": relative_patience,
            "record_gain": record_gain,
            "unsolved_patience": unsolved_patience,
        }
        self.windows_per_evaluation = windows_per_evaluation
        self.solved_score = solved_score
        self.dormant_threshold = dormant_threshold
        self.min_episodes_before_dormant = min_episodes_before_dormant
        self.stop_on_dormant = stop_on_dormant
        self.rollback_on_degradation = rollback_on_degradation
        self.degradation_threshold = degradation_threshold
        self.min_episodes_before_degradation = min_episodes_before_degradation
        self.callbacks = CallbackList(callbacks or [])
        self.verbose = verbose
        self.resume = resume
        self.checkpoint_extra = checkpoint_extra or {}
        self.episode = 0  # windows learned so far (tensor-optix's name)
        self.rollbacks = 0  # times the best checkpoint was restored mid-run
        self.continued_episodes = False  # a resume went on in the episodes it interrupted
        self.scheduler: BackoffScheduler | None = None
        self.registry: CheckpointRegistry | None = None
        self.best: Candidate | None = None
        self.best_snapshot: PolicySnapshot | None = None
        self.last_metrics: EvalMetrics | None = None
        self.runoff: Runoff | None = None
        self._stop_reason: str | None = None
        self._trained_out = False  # stopped on DORMANT or the budget, not on a request
        self._elapsed_before = 0.0
        self._started = time.monotonic()
        self._temp_dir: Path | None = None
        self._last_durable = -math.inf
        self._last_saved = -math.inf
        self._saved_window = 0  # the window the newest ``latest`` snapshot holds

    # ---- public controls -------------------------------------------------

    @property
    def window(self) -> int:
        """Windows learned so far."""
        return self.episode

    def stop(self, reason: str = "stopped by request") -> None:
        """Ask the loop to stop after the current window."""
        self._stop_reason = self._stop_reason or reason

    def add_callback(self, callback: LoopCallback) -> None:
        self.callbacks.add(callback)

    def setup(self) -> BaseAgent:
        """Build the agent, bind the pipelines, open the checkpoints and, when
        resuming, restore the loop's state. ``run()`` does this itself; call it
        first to inspect a resumed loop before it runs. Idempotent."""
        if self.scheduler is None:
            agent = self._build_agent()
            self._temp_dir = self._prepare(agent)
        assert self.agent is not None
        return self.agent

    def run(self) -> LoopReport:
        agent = self.setup()
        start = self._started = time.monotonic()
        windows = self.pipeline.episodes()
        val_windows = self.val_pipeline.episodes() if self.val_pipeline else None
        self.callbacks.fire(Hook.ON_LOOP_START, self)
        try:
            while self._stop_reason is None and not self._budget_spent():
                self._step(agent, next(windows), val_windows)
            if self._saved_window != self.episode:
                self._save_latest(agent)
            if self._trained_out:
                self.runoff = self._runoff(agent)
        except KeyboardInterrupt:
            self._stop_reason = "interrupted"
        except BaseException:
            self._restore_best(agent)
            self._close()
            raise
        try:
            self._restore_best(agent)
            report = self._report(agent, time.monotonic() - start)
            self.callbacks.fire(Hook.ON_LOOP_STOP, report)
        finally:  # a second Ctrl-C here still lets go of what the run holds
            self._close()
        return report

    def _budget_spent(self) -> bool:
        if self.max_episodes is not None and self.episode >= self.max_episodes:
            self._stop_reason = f"max_episodes ({self.max_episodes} windows) reached"
        elif self.max_env_steps is not None and self.pipeline.env_steps >= self.max_env_steps:
            self._stop_reason = f"max_env_steps ({self.max_env_steps:,}) reached"
        else:
            return self._stop_reason is not None
        self._trained_out = True
        return True

    # ---- one window: the stages -------------------------------------------

    def _step(
        self, agent: BaseAgent, data: EpisodeData, val_windows: Iterator[EpisodeData] | None
    ) -> None:
        self.episode += 1
        diagnostics = self._learn(agent, data)
        assert self.scheduler is not None
        metrics = None
        if diagnostics is not None:
            decision = None
            events: list[Event] = []
            if self.scheduler.should_evaluate(self.episode) and not agent.warming_up:
                metrics = self._score(data, diagnostics, val_windows)
            if metrics is not None:
                decision = self._decide(agent, metrics)
                events += self._select(agent, metrics, decision)
                events += self._guard(agent, metrics, decision)
            events += self._tune(agent, data, diagnostics)
            self._notify(metrics, decision, events)
        # An evaluated window is always saved: metrics.jsonl and the best
        # checkpoints never run ahead of the state a resume starts from.
        self._save_latest(agent, due=metrics is not None)

    def _learn(self, agent: BaseAgent, data: EpisodeData) -> dict[str, Any] | None:
        """The agent's update; None when it diverged and was rolled back."""
        diagnostics = agent.learn(data) or {}
        broken = [k for k, v in diagnostics.items() if _is_number(v) and not math.isfinite(v)]
        if broken:
            self._recover_from_divergence(agent, broken)
            return None
        return diagnostics

    def _score(
        self,
        data: EpisodeData,
        diagnostics: dict[str, Any],
        val_windows: Iterator[EpisodeData] | None,
    ) -> EvalMetrics | None:
        """The evaluator's score of this window; None while it has no evidence."""
        metrics = self.evaluator.score(data, diagnostics)
        if metrics is not None and val_windows is not None:
            val = self.evaluator.score(next(val_windows), {})
            metrics = None if val is None else self.evaluator.combine(metrics, val)
        if metrics is None:
            return None
        if not math.isfinite(metrics.primary_score):
            log.warning(
                "window %d: the evaluator returned %s; counted as no improvement",
                self.episode,
                metrics.primary_score,
            )
        metrics.episode_id = self.episode
        metrics.metrics.setdefault("env_steps", float(self.pipeline.env_steps))
        self.last_metrics = metrics
        return metrics

    def _decide(self, agent: BaseAgent, metrics: EvalMetrics) -> ScheduleDecision:
        assert self.scheduler is not None
        decision = self.scheduler.record(
            self.episode, metrics.primary_score, self.solved, agent.exploring
        )
        metrics.metrics.update(smoothed_score=decision.smoothed, interval=float(decision.interval))
        if self.optimizer is not None:  # is a probe of the optimizer in force?
            metrics.metrics["tuning_probe"] = float(self.optimizer.is_probing)
            if decision.entered_cooling:
                self.optimizer.on_plateau(metrics)
        return decision

    def _select(
        self, agent: BaseAgent, metrics: EvalMetrics, decision: ScheduleDecision
    ) -> list[Event]:
        """Judge the policy; checkpoint it when it becomes the best."""
        if decision.improved and self.optimizer is not None:
            self.optimizer.on_improvement(metrics)
        dormant = decision.state is LoopState.DORMANT
        candidate = self.selection.judge(agent, self.episode, metrics, decision)
        if candidate is None and dormant:
            candidate = self.selection.confirm(agent, self.episode, metrics, decision)
        if candidate is not None:
            metrics.metrics["selection_score"] = candidate.score
            if candidate.episodes:
                metrics.metrics["selection_episodes"] = float(candidate.episodes)
        events: list[Event] = []
        if dormant and candidate is not None and self.selection.clearly_beats(candidate, self.best):
            self._not_converged(decision, candidate)
        if candidate is not None and self.selection.beats(candidate, self.best):
            self.best = candidate
            self.best_snapshot = self._save_best(agent, metrics, candidate)
            events.append((Hook.ON_IMPROVEMENT, (self.best_snapshot,)))
        if self.best is not None:
            metrics.metrics.update(best_score=self.best.score, best_window=float(self.best.window))
        return events

    @property
    def solved(self) -> bool:
        """Whether the best checkpoint reaches ``solved_score`` (always, without one)."""
        if self.solved_score is None:
            return True
        return self.best is not None and self.best.score >= self.solved_score

    def _short_of_solved(self) -> str:
        below = f"below the solved score {self.solved_score:.4g}"
        if self.best is None:
            return below
        return f"the best checkpoint scores {self.best.score:.4g} {below}"

    def _not_converged(self, decision: ScheduleDecision, candidate: Candidate) -> None:
        """The training score has stopped, but the policy the run would hand back
        is still improving (on MountainCarContinuous the deterministic policy
        reaches the flag thousands of steps after the exploring one): not DORMANT."""
        assert self.scheduler is not None and self.best is not None
        self.scheduler.resume_after_dormant(self.episode)
        decision.state, decision.entered_dormant = self.scheduler.state, False
        log.info(
            "window %d: DORMANT not confirmed: the current policy scores %.4g, above "
            "the best checkpoint's %.4g; training goes on",
            self.episode,
            candidate.score,
            self.best.score,
        )

    def _guard(
        self, agent: BaseAgent, metrics: EvalMetrics, decision: ScheduleDecision
    ) -> list[Event]:
        """Degradation: the training score fell well below the best smoothed
        training score (the same scale, so a selection score on other episodes
        never stands in as the reference)."""
        assert self.scheduler is not None
        if decision.improved or self.best_snapshot is None:
            return []
        if self.optimizer is not None and self.optimizer.is_probing:
            return []  # a drop the optimizer's own probe caused is no reason to roll back
        if self.scheduler.n_evaluations < self.min_episodes_before_degradation:
            return []
        best = decision.best_smoothed
        # A drop of (1 - threshold) of the best score's magnitude; tensor-optix's
        # best * threshold inverts for negative scores (−200 * 0.95 = −190 > −200).
        if not decision.raw < best - (1.0 - self.degradation_threshold) * abs(best):
            return []
        if self.rollback_on_degradation and agent.is_on_policy:
            self._roll_back(agent)
            log.info(
                "window %d: degraded to %.4g (best %.4g); rolled back to %s",
                self.episode,
                decision.raw,
                best,
                self.best_snapshot.snapshot_id,
            )
        return [(Hook.ON_DEGRADATION, (self.episode, metrics))]

    def _tune(
        self, agent: BaseAgent, data: EpisodeData, diagnostics: dict[str, Any]
    ) -> list[Event]:
        """Ask the optimizer for the next hyperparameters, once the ones in force
        have evidence of their own (see ``optix_core.tuning``)."""
        if self.optimizer is None:
            return []
        evidence = self.evidence.observe(data, self.pipeline.env_steps)
        if evidence is None:
            return []
        metrics = self.evaluator.score(evidence, diagnostics)
        if metrics is None:
            return []
        metrics.episode_id = self.episode
        current = agent.get_hyperparams()
        proposed = self.optimizer.suggest(current, metrics)
        changed = proposed.params != current.params
        self.evidence.restart(changed)
        if not changed:
            return []
        proposed.episode_id = self.episode
        agent.set_hyperparams(proposed)
        return [(Hook.ON_HYPERPARAM_UPDATE, (current, proposed))]

    def _notify(
        self,
        metrics: EvalMetrics | None,
        decision: ScheduleDecision | None,
        events: list[Event],
    ) -> None:
        if metrics is None or decision is None:  # no evaluation this window
            for hook, args in events:
                self.callbacks.fire(hook, *args)
            return
        metrics.metrics["rollbacks"] = float(self.rollbacks)  # marked on plots
        if self.verbose:
            print(progress_line(metrics, decision.state), flush=True)
        self.callbacks.fire(Hook.ON_EPISODE_END, self.episode, metrics)
        for hook, args in events:
            self.callbacks.fire(hook, *args)
        if decision.entered_cooling:
            self.callbacks.fire(Hook.ON_PLATEAU, self.episode, metrics)
        if decision.state is LoopState.DORMANT:
            self._on_dormant()

    def _on_dormant(self) -> None:
        self.callbacks.fire(Hook.ON_DORMANT, self.episode)
        if self._stop_reason is not None:
            return
        assert self.scheduler is not None
        if self.callbacks.handles_dormant or not self.stop_on_dormant:
            self.scheduler.resume_after_dormant(self.episode)
        else:
            scheduler = self.scheduler
            self._trained_out = True
            self._stop_reason = (
                f"converged: DORMANT after {scheduler.consecutive_no_improvement} "
                "evaluations without improvement"
            )
            if scheduler.relative_patience:
                start = scheduler.patience_from
                since = (
                    "exploration ended" if start > scheduler.record_episode else "the last record"
                )
                self._stop_reason += (
                    f", {self.episode - start} windows since {since} (window {start})"
                )
            if not self.solved:
                self._stop_reason += f", unsolved: {self._short_of_solved()}"
            if scheduler.learned_nothing:
                self._stop_reason += (
                    f"; the training score never moved from {scheduler.record_smoothed:.4g}: "
                    "nothing was learned"
                )

    def _recover_from_divergence(self, agent: BaseAgent, keys: list[str]) -> None:
        if self.best_snapshot is None:
            raise TrainingDivergedError(
                f"window {self.episode}: {', '.join(keys)} became NaN/inf before the first "
                "checkpoint; lower the learning rate or check the reward scale"
            )
        log.warning(
            "window %d: %s became NaN/inf; rolled back to %s",
            self.episode,
            ", ".join(keys),
            self.best_snapshot.snapshot_id,
        )
        self._roll_back(agent)
        if self.last_metrics is not None:
            self.callbacks.fire(Hook.ON_DEGRADATION, self.episode, self.last_metrics)

    # ---- checkpoints -------------------------------------------------------

    def _save_best(
        self, agent: BaseAgent, metrics: EvalMetrics, candidate: Candidate
    ) -> PolicySnapshot:
        assert self.registry is not None
        return self.registry.save(
            agent,
            kind="best",
            episode_id=self.episode,
            eval_metrics=metrics,
            score=candidate.score,
            hyperparams=agent.get_hyperparams(),
            extra={**self.checkpoint_extra, "candidate": asdict(candidate)},
        )

    def _save_latest(self, agent: BaseAgent, due: bool = True) -> None:
        """Save the loop's state; a window that is not ``due`` only once
        LATEST_SECONDS passed since the last save, so that a checkpoint's cost
        (tens of milliseconds: weights, optimizer moments, hashes) stays small
        next to windows of a few env steps."""
        if self.checkpoint_dir is None:  # nothing to resume from a temporary directory
            return
        if not due and time.monotonic() - self._last_saved < LATEST_SECONDS:
            return
        assert self.registry is not None
        metrics = self.last_metrics or EvalMetrics(primary_score=math.nan)
        # A killed process loses at most LATEST_SECONDS besides its window; fsync
        # (what survives a lost machine) at most every DURABLE_SECONDS, or it
        # would cost small windows more than their learning.
        durable = time.monotonic() - self._last_durable >= DURABLE_SECONDS
        self.registry.save(
            agent,
            kind="latest",
            episode_id=self.episode,
            eval_metrics=metrics,
            score=metrics.primary_score,
            hyperparams=agent.get_hyperparams(),
            loop_state=self.loop_state(),
            extra=self.checkpoint_extra,
            durable=durable,
        )
        self._last_saved = time.monotonic()
        self._saved_window = self.episode
        if durable:
            self._last_durable = self._last_saved

    def loop_state(self) -> dict[str, Any]:
        """Everything besides the agent that an exact resume needs."""
        assert self.scheduler is not None
        return {
            "episode": self.episode,
            "rollbacks": self.rollbacks,
            "wall_time": self._elapsed_before + time.monotonic() - self._started,
            "best": None if self.best is None else asdict(self.best),
            "scheduler": self.scheduler.state_dict(),
            "pipeline": self.pipeline.state_dict(),
            "val_pipeline": self.val_pipeline.state_dict() if self.val_pipeline else {},
            "optimizer": self.optimizer.state_dict() if self.optimizer else {},
            "selection": self.selection.state_dict(),
            "tuning": self.evidence.state_dict(),
            "callbacks": self.callbacks.state_dict(),
        }

    def _runoff(self, agent: BaseAgent) -> Runoff | None:
        """The best checkpoint against the final policy on the runoff's episodes;
        the final policy becomes the best checkpoint when it scores higher."""
        best = self.best
        if best is None or best.window == self.episode or not self.selection.runoff_episodes:
            return None
        runoff = self._play_runoff(agent, best)
        if runoff is None:
            return None
        if runoff.final_wins:
            metrics = self.last_metrics or EvalMetrics(primary_score=math.nan)
            final = runoff.final
            self.best = Candidate(
                self.episode,
                final.mean,
                metrics.metrics.get("smoothed_score", math.nan),
                len(final.returns),
                final.std / math.sqrt(len(final.returns)),
                final.returns.tolist(),
            )
            self.best_snapshot = self._save_best(agent, metrics, self.best)
            self.callbacks.fire(Hook.ON_IMPROVEMENT, self.best_snapshot)
        log.info("runoff: %s", runoff)
        self._save_latest(agent)  # a resumed run knows the runoff's outcome
        return runoff

    def _play_runoff(self, agent: BaseAgent, best: Candidate) -> Runoff | None:
        """Play the runoff's rounds, the agent holding the final policy between
        them; None when the best checkpoint cannot be restored."""
        assert self.registry is not None
        runoff: Runoff | None = None
        with tempfile.TemporaryDirectory(prefix="optix-final-") as held:
            final_weights = str(Path(held) / "agent")
            agent.save_weights(final_weights)
            while runoff is None or self.selection.runoff_goes_on(runoff, self.pipeline.env_steps):
                number = 0 if runoff is None else runoff.rounds
                final = self.selection.runoff(agent, number)
                restored = self.registry.restore(agent, kind="best")
                best_play = None if restored is None else self.selection.runoff(agent, number)
                agent.load_weights(final_weights)
                if best_play is None:
                    return None
                if runoff is None:
                    runoff = Runoff(best.window, self.episode, best_play, final)
                else:
                    runoff = runoff.extend(best_play, final)
        return runoff

    def _restore_best(self, agent: BaseAgent) -> None:
        if self.registry is not None and self.best_snapshot is not None:
            manifest = self.registry.restore(agent, kind="best")
            if manifest is None:
                log.error("no best snapshot could be restored; the agent keeps its current weights")

    def _roll_back(self, agent: BaseAgent) -> None:
        self._restore_best(agent)
        self.rollbacks += 1
        self.evidence.restart()  # other weights, perhaps other hyperparameters

    # ---- setup, resume, teardown ----------------------------------------

    def _build_agent(self) -> BaseAgent:
        if self.agent is None:
            assert self.agent_factory is not None
            params = dict(self.hyperparams.params) if self.hyperparams else {}
            self.agent = self.agent_factory(params)
        return self.agent

    def _prepare(self, agent: BaseAgent) -> Path | None:
        if self.optimizer is None:
            seed = getattr(self.pipeline, "seed", None)
            self.optimizer = SPSAOptimizer.from_search_space(agent.search_space, seed=seed)
        self.pipeline.bind(agent)
        if self.val_pipeline is not None:
            self.val_pipeline.bind(agent, acting_only=True)
        self.scheduler = self._make_scheduler(agent)
        temp_dir = None
        directory = self.checkpoint_dir
        if directory is None:
            directory = temp_dir = Path(tempfile.mkdtemp(prefix="optix-checkpoints-"))
        self.registry = CheckpointRegistry(directory, max_snapshots=self.max_snapshots)
        if temp_dir is None:
            self.registry.acquire()
        try:
            if self.resume:
                self._resume(agent)
            elif self.registry.has_snapshots():
                raise FileExistsError(
                    f"checkpoint_dir {directory} holds snapshots of an earlier run; pass "
                    "resume=True to continue it, or choose an empty directory"
                )
        except BaseException:
            self.registry.release()
            raise
        return temp_dir

    def _make_scheduler(self, agent: BaseAgent) -> BackoffScheduler:
        dormant = self.dormant_threshold
        if dormant is None:
            dormant = 20 if agent.is_on_policy else 15
        min_dormant = self.min_episodes_before_dormant or agent.loop_hints.get(
            "min_episodes_before_dormant", 0
        )
        per_evaluation = self.windows_per_evaluation or self._hinted_windows_per_evaluation(agent)
        options = dict(self.schedule_options)
        for key in ("base_interval", "max_interval_episodes"):
            options[key] *= per_evaluation
        return BackoffScheduler(
            **options,
            dormant_threshold=max(dormant, options["plateau_threshold"]),
            min_episodes_before_dormant=min_dormant,
        )

    def _hinted_windows_per_evaluation(self, agent: BaseAgent) -> int:
        """The windows that hold about the env steps an agent with small windows
        asks an evaluation to span (``loop_hints["steps_per_evaluation"]``; A2C's
        8 x 5-step windows, scored one by one, end too few episodes); 1 without
        a hint, or where the pipeline's windows vary in size."""
        steps = agent.loop_hints.get("steps_per_evaluation")
        window = self.pipeline.window_steps
        if not steps or not window:
            return 1
        return max(1, round(steps / window))

    def _resume(self, agent: BaseAgent) -> None:
        assert self.registry is not None and self.scheduler is not None
        if not self.registry.snapshots("latest"):
            log.info("nothing to resume in %s yet; starting the run", self.checkpoint_dir)
            return
        manifest = self.registry.restore(agent, kind="latest")
        if manifest is None:
            raise CheckpointError(
                f"no usable snapshot to resume in {self.checkpoint_dir}: every latest-* "
                "snapshot is corrupt"
            )
        state = manifest["loop_state"]
        self.episode = self._saved_window = int(state["episode"])
        self.rollbacks = int(state.get("rollbacks", 0))
        self._elapsed_before = float(state.get("wall_time", 0.0))
        self.best = None if state.get("best") is None else Candidate(**state["best"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.pipeline.load_state_dict(state.get("pipeline", {}))
        continued = self.pipeline.continue_episodes()
        if continued and not _continues_episodes(agent):
            self.pipeline.restart_episodes()
            continued = False
        self.continued_episodes = continued
        if self.val_pipeline is not None:
            self.val_pipeline.load_state_dict(state.get("val_pipeline", {}))
        if self.optimizer is not None and state.get("optimizer"):
            self.optimizer.load_state_dict(state["optimizer"])
        self.selection.load_state_dict(state.get("selection", {}))
        self.evidence.load_state_dict(state.get("tuning", {}))
        self.callbacks.load_state_dict(state.get("callbacks", {}))
        bests = self.registry.snapshots("best")
        self.best_snapshot = bests[0] if bests else None
        log.info(
            "resumed at window %d from %s, %s",
            self.episode,
            manifest["snapshot_id"],
            "the interrupted episodes going on" if continued else "in new episodes",
        )

    def _close(self) -> None:
        if self.registry is None:
            return
        self.registry.release()
        if self._temp_dir is not None:
            shutil.rmtree(self._temp_dir, ignore_errors=True)
            self.registry = None

    def _report(self, agent: BaseAgent, wall_time: float) -> LoopReport:
        assert self.scheduler is not None
        best = self.best_snapshot
        val_score = gap = None
        if best is not None and best.eval_metrics.generalization_gap is not None:
            val_score = best.eval_metrics.primary_score
            gap = best.eval_metrics.generalization_gap
        final = None
        if self.final_eval_episodes and best is not None:
            assert isinstance(self.selection, EvaluationSelection)
            try:
                final = self.selection.report(agent, self.final_eval_episodes)
            except KeyboardInterrupt:
                # A second Ctrl-C (a shell or `uv run` often delivers two): the best
                # policy is restored and saved already; only this extra measurement is lost.
                self._stop_reason = f"{self._stop_reason or 'stopped'}; final evaluation skipped"
        return LoopReport(
            stop_reason=self._stop_reason or "stopped",
            episodes=self.episode,
            env_steps=self.pipeline.env_steps,
            wall_time=self._elapsed_before + wall_time,
            final_state=self.scheduler.state,
            best_score=self.best.score if self.best else None,
            best_episode=self.best.window if self.best else None,
            best_train_score=self.best.train_score if self.best else None,
            selection_episodes=self.best.episodes if self.best else 0,
            selection_env_steps=self.selection.env_steps,
            val_score=val_score,
            generalization_gap=gap,
            best_snapshot=best,
            final_eval=final,
            runoff=self.runoff,
            pipeline=self.pipeline.summary(),
            record_window=self.scheduler.record_episode or None,
        )


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _continues_episodes(agent: Any) -> bool:
    """Whether ``agent`` acts on in episodes a checkpoint interrupted (an agent that
    does not subclass BaseAgent says nothing, and starts new ones)."""
    continue_episodes = getattr(agent, "continue_episodes", None)
    return bool(continue_episodes()) if callable(continue_episodes) else False
