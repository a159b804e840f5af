"""One TrialOrchestrator trial: a real RLOptimizer run on a budget, then a clean score.

For each of the trial's seeds, the agent and pipeline factories build a fresh
agent and pipeline, and RLOptimizer trains until the pipeline has taken
``trial_steps`` environment steps (``max_env_steps``: the run stops after
the first window that reaches them, whatever the evaluation schedule) or
converges first, checkpointing into the trial's own directory. The trial
trains the configuration it sampled: no online optimizer changes it unless
``online_optimizer`` asks for one.

The best checkpoint is chosen as ``optix train`` chooses it
(``EvaluationSelection``: candidates judged on fresh deterministic
episodes). At each evaluation the pruner gets an evaluation score, never a
training return: the selection score of the trial's best checkpoint so far,
the policy the trial would be scored by if it stopped there, at the step
"training env steps this trial has taken so far", so trials are compared at
equal experience. The seed's score is the mean return of ``eval_episodes``
deterministic episodes of the chosen checkpoint on environments seeded apart
from every training and selection seed. The trial's score is the mean over
its seeds. Every environment step, training and evaluation, is counted.
"""

from __future__ import annotations

import inspect
import math
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import optuna

from optix_core.agent import BaseAgent
from optix_core.callbacks import LoopCallback
from optix_core.loop import RLOptimizer
from optix_core.optimizer import BaseOptimizer
from optix_core.selection import EvaluationSelection
from optix_core.specs import load_object
from optix_core.trials.context import TrialContext
from optix_core.trials.fixed import FixedHyperparams
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

# Set by the trial itself: a trial's budget and its (absent) online optimizer.
TRIAL_OWNED = ("max_env_steps", "optimizer")
TRAIN_STEPS = "train_env_steps"  # user attribute: training steps, scoring episodes not included

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
    online_optimizer: Factory | None = None

    def __post_init__(self) -> None:
        owned = sorted(set(TRIAL_OWNED) & set(self.loop_kwargs))
        if owned:
            raise ValueError(
                f"loop_kwargs may not set {', '.join(owned)}: a trial runs trial_steps env steps "
                "and tunes online only through online_optimizer="
            )

    def __call__(self, context: TrialContext) -> float:
        context.set_attr("seeds", list(self.seeds))
        context.total_steps = self.trial_steps * len(self.seeds)
        scores: list[float] = []
        trained = 0
        for index, seed in enumerate(self.seeds):
            score, steps = self._run(context, index, seed, trained)
            trained += steps
            scores.append(score)
            context.set_attr("seed_scores", scores)
        return statistics.fmean(scores)

    def make_optimizer(self, agent: BaseAgent, seed: int) -> BaseOptimizer:
        """The trial's online optimizer: none (the sampled values, kept) unless asked."""
        if self.online_optimizer is None:
            return FixedHyperparams()
        optimizer = call_factory(self.online_optimizer, agent, seed=seed)
        if not isinstance(optimizer, BaseOptimizer):
            raise TypeError(
                f"online_optimizer returned {type(optimizer).__name__}, not a BaseOptimizer"
            )
        return optimizer

    def _run(self, context: TrialContext, index: int, seed: int, trained: int) -> tuple[float, int]:
        agent = call_factory(self.agent_factory, dict(context.params), seed=seed)
        try:
            pipeline = call_factory(self.pipeline_factory, seed=seed)
            budget = _TrialBudget(context, offset=trained)
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
                optimizer=self.make_optimizer(agent, seed),
                max_env_steps=self.trial_steps,
                callbacks=[budget],
                **{**TRIAL_LOOP_DEFAULTS, **self.loop_kwargs},
            )
            try:
                report = loop.run()
            finally:
                pipeline.close()
            budget.count(pipeline.env_steps)
            context.add_env_steps(selection.env_steps)
            context.set_attr(TRAIN_STEPS, trained + pipeline.env_steps)
            if report.stop_reason == "interrupted":  # RLOptimizer ends a run on Ctrl-C ...
                raise KeyboardInterrupt  # ... but a trial cut short has no score
            if budget.pruned:
                raise optuna.TrialPruned(f"pruned at {budget.last_step:,} env steps")
            result = selection.report(agent, self.eval_episodes)
        finally:
            agent.teardown()
        context.add_env_steps(result.env_steps)
        return result.mean, pipeline.env_steps


class _TrialBudget(LoopCallback):
    """Reports each evaluation's score to the pruner, and stops the loop when it prunes.

    The score is the selection score of the loop's best checkpoint: an
    evaluation on deterministic episodes, and what the trial would be scored
    by if it stopped now. Before any policy has been judged there is none.
    """

    def __init__(self, context: TrialContext, offset: int) -> None:
        self.context = context
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
        self.last_step = self.offset + steps
        best = self.loop.best
        score = best.score if best is not None else math.nan
        if self.context.report(score, self.last_step):
            self.pruned = True
            self.loop.stop(f"pruned at {self.last_step:,} env steps")

    def count(self, steps: int) -> None:
        self.context.add_env_steps(steps - self.counted)
        self.counted = steps


def spsa_over_search_space(agent: BaseAgent, seed: int | None = None) -> BaseOptimizer:
    """``online_optimizer`` for SPSA over the agent's own search space, what
    ``RLOptimizer`` runs by default outside trials."""
    from optix_core.optimizers import SPSAOptimizer

    return SPSAOptimizer.from_search_space(agent.search_space, seed=seed)
