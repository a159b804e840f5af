"""RLOptimizer: the autonomous loop.

For each window the pipeline yields, the agent learns; on the scheduler's
evaluation windows the evaluator scores it (against a validation window when
there is one), the BackoffScheduler decides whether that is an improvement,
improvements are checkpointed, degradation may roll back, and the
hyperparameter optimizer proposes what to try next. The loop stops on
DORMANT (unless a callback carries on past it), at ``max_episodes``, on
``stop()``, or on an error; in every case the agent ends holding the best
weights the run found.
"""

from __future__ import annotations

import logging
import math
import numbers
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from optix_core.agent import BaseAgent
from optix_core.callbacks import CallbackList, LoopCallback
from optix_core.checkpoints import CheckpointRegistry
from optix_core.evaluator import BaseEvaluator, EpisodeReturnEvaluator
from optix_core.optimizer import BaseOptimizer
from optix_core.optimizers import SPSAOptimizer
from optix_core.pipeline.base import BasePipeline
from optix_core.report import LoopReport
from optix_core.scheduler import BackoffScheduler, ScheduleDecision
from optix_core.types import EpisodeData, EvalMetrics, HyperparamSet, LoopState, PolicySnapshot

log = logging.getLogger("optix")

AgentFactory = Callable[[dict[str, Any]], BaseAgent]


class TrainingDivergedError(RuntimeError):
    """Training produced NaN or inf before any checkpoint could be rolled back to."""


class RLOptimizer:
    """Trains ``agent`` on ``pipeline`` until it converges, and keeps the best policy.

    Every option and default follows tensor-optix 1.10's ``RLOptimizer``.
    ``dormant_threshold=None`` means 20, or 15 for off-policy agents; a zero
    ``min_episodes_before_dormant`` takes the agent's ``loop_hints``. Give
    ``agent_factory`` (called with the ``hyperparams`` dict when ``run()``
    starts) instead of ``agent`` to build the agent late. ``optimizer=None`` is
    SPSA over the agent's ``search_space`` (none unless the agent declares
    one: pass ``SPSAOptimizer.from_search_space(...)`` to tune what you
    choose). ``checkpoint_dir=None``
    keeps snapshots in a temporary directory removed when ``run()`` returns;
    ``resume=True`` continues the run whose snapshots ``checkpoint_dir`` holds.
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
        checkpoint_dir: str | Path | None = None,
        max_snapshots: int = 10,
        checkpoint_score_fn: Callable[[BaseAgent], float] | None = None,
        max_episodes: int | None = None,
        base_interval: int = 1,
        backoff_factor: float = 2.0,
        max_interval_episodes: int = 100,
        plateau_threshold: int = 5,
        dormant_threshold: int | None = None,
        score_smoothing: int = 2,
        improvement_margin: float = 0.0,
        noise_k: float = 2.0,
        score_window: int = 20,
        rollback_on_degradation: bool = False,
        degradation_threshold: float = 0.95,
        min_episodes_before_dormant: int = 0,
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
        if max_episodes is not None and max_episodes < 1:
            raise ValueError(f"max_episodes must be >= 1 or None, got {max_episodes}")
        if not 0.0 < degradation_threshold <= 1.0:
            raise ValueError(
                f"degradation_threshold must be in (0, 1], got {degradation_threshold}"
            )
        if resume and checkpoint_dir is None:
            raise ValueError("resume=True needs the checkpoint_dir of the run to continue")
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
        self.checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir is not None else None
        self.max_snapshots = max_snapshots
        self.checkpoint_score_fn = checkpoint_score_fn
        self.max_episodes = max_episodes
        self.schedule_options = {
            "base_interval": base_interval,
            "backoff_factor": backoff_factor,
            "max_interval_episodes": max_interval_episodes,
            "plateau_threshold": plateau_threshold,
            "score_smoothing": score_smoothing,
            "improvement_margin": improvement_margin,
            "noise_k": noise_k,
            "score_window": score_window,
        }
        self.dormant_threshold = dormant_threshold
        self.min_episodes_before_dormant = min_episodes_before_dormant
        self.rollback_on_degradation = rollback_on_degradation
        self.degradation_threshold = degradation_threshold
        self.min_episodes_before_degradation = min_episodes_before_degradation
        self.callbacks = CallbackList(callbacks or [])
        self.verbose = verbose
        self.resume = resume
        self.checkpoint_extra = checkpoint_extra or {}
        self.episode = 0
        self.scheduler: BackoffScheduler | None = None
        self.registry: CheckpointRegistry | None = None
        self.best_snapshot: PolicySnapshot | None = None
        self.last_metrics: EvalMetrics | None = None
        self._best_external = -math.inf
        self._stop_reason: str | None = None
        self._elapsed_before = 0.0
        self._started = time.monotonic()
        self._temp_dir: Path | None = None

    # ---- public controls -------------------------------------------------

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
        temp_dir = self._temp_dir
        start = self._started = time.monotonic()
        windows = self.pipeline.episodes()
        val_windows = self.val_pipeline.episodes() if self.val_pipeline else None
        self.callbacks.fire("on_loop_start", self)
        try:
            while self._stop_reason is None:
                if self.max_episodes is not None and self.episode >= self.max_episodes:
                    self._stop_reason = f"max_episodes ({self.max_episodes}) reached"
                    break
                self._step(agent, next(windows), val_windows)
        except KeyboardInterrupt:
            self._stop_reason = "interrupted"
        except BaseException:
            self._restore_best(agent)
            self._cleanup(temp_dir)
            raise
        self._restore_best(agent)
        report = self._report(time.monotonic() - start)
        self.callbacks.fire("on_loop_stop", report)
        self._cleanup(temp_dir)
        return report

    # ---- one window -------------------------------------------------------

    def _step(
        self, agent: BaseAgent, data: EpisodeData, val_windows: Iterator[EpisodeData] | None
    ) -> None:
        self.episode += 1
        diagnostics = agent.learn(data) or {}
        broken = [k for k, v in diagnostics.items() if _is_number(v) and not math.isfinite(v)]
        if broken:
            self._recover_from_divergence(agent, broken)
            return
        assert self.scheduler is not None
        if not self.scheduler.should_evaluate(self.episode):
            return
        metrics = self.evaluator.score(data, diagnostics)
        if val_windows is not None:
            val = self.evaluator.score(next(val_windows), {})
            metrics = self.evaluator.combine(metrics, val)
        metrics.episode_id = self.episode
        metrics.metrics.setdefault("env_steps", float(self.pipeline.env_steps))
        self.last_metrics = metrics
        decision = self.scheduler.record(self.episode, metrics.primary_score)
        metrics.metrics.update(smoothed_score=decision.smoothed, interval=float(decision.interval))
        if self.verbose:
            print(_verbose_line(self.episode, metrics.primary_score, decision), flush=True)
        self.callbacks.fire("on_episode_end", self.episode, metrics)
        self._checkpoint_if_better(agent, metrics, decision)
        if not decision.improved:
            self._check_degradation(agent, metrics)
        self._tune(agent, metrics, decision)
        if decision.entered_cooling:
            self.callbacks.fire("on_plateau", self.episode, metrics)
        if decision.state is LoopState.DORMANT:
            self._on_dormant()
        self._save_latest(agent, metrics)

    def _checkpoint_if_better(
        self, agent: BaseAgent, metrics: EvalMetrics, decision: ScheduleDecision
    ) -> None:
        if self.checkpoint_score_fn is not None:
            score = float(self.checkpoint_score_fn(agent))
            metrics.metrics["checkpoint_score"] = score
            if not score > self._best_external:
                return
            self._best_external = score
        elif decision.improved:
            score = decision.smoothed
        else:
            return
        assert self.registry is not None
        self.best_snapshot = self.registry.save(
            agent,
            kind="best",
            episode_id=self.episode,
            eval_metrics=metrics,
            score=score,
            hyperparams=agent.get_hyperparams(),
            extra=self.checkpoint_extra,
        )
        if self.optimizer is not None:
            self.optimizer.on_improvement(metrics)
        self.callbacks.fire("on_improvement", self.best_snapshot)

    def _check_degradation(self, agent: BaseAgent, metrics: EvalMetrics) -> None:
        assert self.scheduler is not None
        if self.best_snapshot is None or (self.optimizer and self.optimizer.is_probing):
            return
        if self.scheduler.n_evaluations < self.min_episodes_before_degradation:
            return
        best = self.best_snapshot.eval_metrics.primary_score
        # A drop of (1 - threshold) of the best score's magnitude; tensor-optix's
        # best * threshold inverts for negative scores (−200 * 0.95 = −190 > −200).
        if not metrics.primary_score < best - (1.0 - self.degradation_threshold) * abs(best):
            return
        self.callbacks.fire("on_degradation", self.episode, metrics)
        if self.rollback_on_degradation and agent.is_on_policy:
            self._restore_best(agent)
            log.info(
                "window %d: degraded to %.4g; rolled back to %s",
                self.episode,
                metrics.primary_score,
                self.best_snapshot.snapshot_id,
            )

    def _tune(self, agent: BaseAgent, metrics: EvalMetrics, decision: ScheduleDecision) -> None:
        if self.optimizer is None:
            return
        if decision.entered_cooling:
            self.optimizer.on_plateau(metrics)
        current = agent.get_hyperparams()
        proposed = self.optimizer.suggest(current, metrics)
        if proposed.params != current.params:
            proposed.episode_id = self.episode
            agent.set_hyperparams(proposed)
            self.callbacks.fire("on_hyperparam_update", current, proposed)

    def _on_dormant(self) -> None:
        self.callbacks.fire("on_dormant", self.episode)
        if self._stop_reason is not None:
            return
        assert self.scheduler is not None
        if self.callbacks.handles_dormant:
            self.scheduler.resume_after_dormant(self.episode)
        else:
            self._stop_reason = (
                f"converged: DORMANT after {self.scheduler.consecutive_no_improvement} "
                "evaluations without improvement"
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
        self._restore_best(agent)
        if self.last_metrics is not None:
            self.callbacks.fire("on_degradation", self.episode, self.last_metrics)

    # ---- setup, resume, teardown ----------------------------------------

    def _build_agent(self) -> BaseAgent:
        if self.agent is None:
            assert self.agent_factory is not None
            params = dict(self.hyperparams.params) if self.hyperparams else {}
            self.agent = self.agent_factory(params)
        return self.agent

    def _prepare(self, agent: BaseAgent) -> Path | None:
        if self.optimizer is None:
            self.optimizer = SPSAOptimizer.from_search_space(agent.search_space)
        self.pipeline.bind(agent)
        if self.val_pipeline is not None:
            self.val_pipeline.bind(agent)
        hints = agent.loop_hints
        dormant = self.dormant_threshold
        if dormant is None:
            dormant = 20 if agent.is_on_policy else 15
        min_dormant = self.min_episodes_before_dormant or hints.get(
            "min_episodes_before_dormant", 0
        )
        self.scheduler = BackoffScheduler(
            **self.schedule_options,
            dormant_threshold=max(dormant, self.schedule_options["plateau_threshold"]),
            min_episodes_before_dormant=min_dormant,
        )
        temp_dir = None
        directory = self.checkpoint_dir
        if directory is None:
            directory = temp_dir = Path(tempfile.mkdtemp(prefix="optix-checkpoints-"))
        self.registry = CheckpointRegistry(directory, max_snapshots=self.max_snapshots)
        if self.resume:
            self._resume(agent)
        elif self.registry.has_snapshots():
            raise FileExistsError(
                f"checkpoint_dir {directory} holds snapshots of an earlier run; pass "
                "resume=True to continue it, or choose an empty directory"
            )
        return temp_dir

    def _resume(self, agent: BaseAgent) -> None:
        assert self.registry is not None and self.scheduler is not None
        manifest = self.registry.restore(agent, kind="latest")
        if manifest is None:
            raise FileNotFoundError(f"no usable snapshot to resume in {self.checkpoint_dir}")
        state = manifest["loop_state"]
        self.episode = int(state["episode"])
        self._elapsed_before = float(state.get("wall_time", 0.0))
        self._best_external = _float_or(state.get("best_external"), -math.inf)
        self.scheduler.load_state_dict(state["scheduler"])
        self.pipeline.load_state_dict(state.get("pipeline", {}))
        if self.optimizer is not None and state.get("optimizer"):
            self.optimizer.load_state_dict(state["optimizer"])
        bests = self.registry.snapshots("best")
        self.best_snapshot = bests[0] if bests else None
        log.info("resumed at window %d from %s", self.episode, manifest["snapshot_id"])

    def _save_latest(self, agent: BaseAgent, metrics: EvalMetrics) -> None:
        if self.checkpoint_dir is None:  # nothing to resume from a temporary directory
            return
        assert self.registry is not None and self.scheduler is not None
        self.registry.save(
            agent,
            kind="latest",
            episode_id=self.episode,
            eval_metrics=metrics,
            score=metrics.primary_score,
            hyperparams=agent.get_hyperparams(),
            loop_state=self.loop_state(),
            extra=self.checkpoint_extra,
        )

    def loop_state(self) -> dict[str, Any]:
        """Everything besides the agent that an exact resume needs."""
        assert self.scheduler is not None
        return {
            "episode": self.episode,
            "wall_time": self._elapsed_before + time.monotonic() - self._started,
            "best_external": None if math.isinf(self._best_external) else self._best_external,
            "scheduler": self.scheduler.state_dict(),
            "pipeline": self.pipeline.state_dict(),
            "optimizer": self.optimizer.state_dict() if self.optimizer else {},
        }

    def _restore_best(self, agent: BaseAgent) -> None:
        if self.registry is not None and self.best_snapshot is not None:
            manifest = self.registry.restore(agent, kind="best")
            if manifest is None:
                log.error("no best snapshot could be restored; the agent keeps its current weights")

    def _cleanup(self, temp_dir: Path | None) -> None:
        if temp_dir is not None:
            shutil.rmtree(temp_dir, ignore_errors=True)
            self.registry = None

    def _report(self, wall_time: float) -> LoopReport:
        assert self.scheduler is not None
        best = self.best_snapshot
        val_score = gap = None
        if best is not None and best.eval_metrics.generalization_gap is not None:
            val_score = best.eval_metrics.primary_score
            gap = best.eval_metrics.generalization_gap
        return LoopReport(
            stop_reason=self._stop_reason or "stopped",
            episodes=self.episode,
            env_steps=self.pipeline.env_steps,
            wall_time=self._elapsed_before + wall_time,
            final_state=self.scheduler.state,
            best_score=best.score if best else None,
            best_episode=best.episode_id if best else None,
            val_score=val_score,
            generalization_gap=gap,
            best_snapshot=best,
        )


def _verbose_line(episode: int, raw: float, decision: ScheduleDecision) -> str:
    return (
        f"[loop] ep={episode:>4}  raw={raw:>7.1f}  smoothed={decision.smoothed:>7.1f}  "
        f"state={decision.state.value}  interval={decision.interval}"
    )


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _float_or(value: Any, default: float) -> float:
    return default if value is None else float(value)
