"""One TrialOrchestrator trial: a real RLOptimizer run on a budget, then a clean score.

For each of the trial's seeds, the agent and pipeline factories build a fresh
agent and pipeline, and RLOptimizer trains until the pipeline has taken
``trial_steps`` environment steps (checked at each evaluation; trials
evaluate every window) or converges first, checkpointing into the trial's
own directory. At each evaluation the window's score goes to the pruner, at
the step "training env steps this trial has taken so far", so trials are
compared at equal experience. The best checkpoint is chosen as ``optix
train`` chooses it (``EvaluationSelection``: candidates judged on fresh
deterministic episodes), and the seed's score is the mean return of
``eval_episodes`` deterministic episodes of that checkpoint on environments
seeded apart from every training and selection seed. The trial's score is the mean over its seeds. Every
environment step, training and evaluation, is counted.
"""

from __future__ import annotations

import inspect
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import optuna

from optix_core.callbacks import LoopCallback
from optix_core.loop import RLOptimizer
from optix_core.selection import EvaluationSelection
from optix_core.specs import load_object
from optix_core.trials.context import TrialContext
from optix_core.types import EvalMetrics

EVAL_SEED = 3_000_000  # seeds of the scoring episodes: apart from training and `optix train`'s
SELECTION_EPISODES = 5  # deterministic episodes judging each checkpoint candidate
# A trial is a short run on a fixed budget: evaluate every window, so every trial
# reports at the same env steps, and keep only the best snapshot.
TRIAL_LOOP_DEFAULTS: dict[str, Any] = {
    "base_interval": 1,
    "backoff_factor": 1.0,
    "max_snapshots": 1,
}

Factory = Callable[..., Any] | str


def call_factory(factory: Factory, *args: Any, seed: int | None) -> Any:
    """Call a factory (or a ``"module:callable"`` string), passing ``seed=`` when it takes one.

    tensor-optix's factories are ``agent_factory(params)`` and
    ``pipeline_factory()``; optix's may add a ``seed`` keyword so that each of
    a trial's seeds really is a different run.
    """
    function = load_object(factory) if isinstance(factory, str) else factory
    if _accepts_seed(function):
        return function(*args, seed=seed)
    return function(*args)


def _accepts_seed(function: Callable[..., Any]) -> bool:
    try:
        parameters = inspect.signature(function).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(p.name == "seed" or p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters)


@dataclass(frozen=True)
class RLTrial:
    """The objective TrialOrchestrator hands to its Sweep; picklable when its factories are."""

    agent_factory: Factory
    pipeline_factory: Factory
    trial_steps: int
    eval_env_id: str
    eval_episodes: int
    seeds: tuple[int, ...]
    loop_kwargs: dict[str, Any] = field(default_factory=dict)
    eval_env_kwargs: dict[str, Any] = field(default_factory=dict)

    def __call__(self, context: TrialContext) -> float:
        context.set_attr("seeds", list(self.seeds))
        scores: list[float] = []
        trained = 0
        for index, seed in enumerate(self.seeds):
            score, steps = self._run(context, index, seed, trained)
            trained += steps
            scores.append(score)
            context.set_attr("seed_scores", scores)
        return statistics.fmean(scores)

    def _run(self, context: TrialContext, index: int, seed: int, trained: int) -> tuple[float, int]:
        agent = call_factory(self.agent_factory, dict(context.params), seed=seed)
        try:
            pipeline = call_factory(self.pipeline_factory, seed=seed)
            budget = _TrialBudget(context, self.trial_steps, offset=trained)
            selection = EvaluationSelection(
                self.eval_env_id,
                SELECTION_EPISODES,
                report_seed=EVAL_SEED + 1000 * index,
                env_kwargs=self.eval_env_kwargs,
            )
            loop = RLOptimizer(
                agent,
                pipeline,
                checkpoint_dir=context.directory / f"seed-{index}",
                selection=selection,
                callbacks=[budget],
                **{**TRIAL_LOOP_DEFAULTS, **self.loop_kwargs},
            )
            try:
                loop.run()
            finally:
                pipeline.close()
            budget.count(pipeline.env_steps)
            context.add_env_steps(selection.env_steps)
            if budget.pruned:
                raise optuna.TrialPruned(f"pruned at {budget.last_step:,} env steps")
            result = selection.report(agent, self.eval_episodes)
        finally:
            agent.teardown()
        context.add_env_steps(result.env_steps)
        return result.mean, pipeline.env_steps


class _TrialBudget(LoopCallback):
    """Stops the loop at the trial's step budget, or when the pruner says so."""

    def __init__(self, context: TrialContext, trial_steps: int, offset: int) -> None:
        self.context = context
        self.trial_steps = trial_steps
        self.offset = offset  # training steps of the trial's earlier seeds
        self.counted = 0
        self.last_step = offset
        self.pruned = False
        self.loop: RLOptimizer | None = None

    def on_loop_start(self, loop: RLOptimizer) -> None:
        self.loop = loop

    def on_episode_end(self, episode_id: int, metrics: EvalMetrics) -> None:
        assert self.loop is not None
        steps = int(metrics.metrics["env_steps"])
        self.count(steps)
        if steps >= self.trial_steps:
            self.loop.stop(f"trial budget of {self.trial_steps:,} env steps reached")
        self.last_step = self.offset + steps
        if self.context.report(metrics.primary_score, self.last_step):
            self.pruned = True
            self.loop.stop(f"pruned at {self.last_step:,} env steps")

    def count(self, steps: int) -> None:
        self.context.add_env_steps(steps - self.counted)
        self.counted = steps
