"""TrialOrchestrator: trial-level hyperparameter search over independent RLOptimizer runs.

tensor-optix 1.10's Layer 2, on Optuna: TPE proposes configurations, each
trial trains a fresh agent for ``trial_steps`` environment steps and is
scored by a deterministic evaluation of its best checkpoint (see
``optix_core.trials.rl_trial``), a MedianPruner stops clearly bad trials
after a warm-up counted in environment steps, and the best configuration is
handed back for the full-budget run::

    orchestrator = TrialOrchestrator(
        agent_factory=make_agent,            # make_agent(params[, seed=]) -> BaseAgent
        pipeline_factory=make_pipeline,      # make_pipeline([seed=]) -> BasePipeline
        param_space={"learning_rate": ("log_float", 1e-4, 3e-3)},
        n_trials=20,
        trial_steps=50_000,
    )
    best_params, best_score = orchestrator.run()
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Any

from optix_core.trials.rl_trial import Factory, RLTrial, call_factory
from optix_core.trials.sweep import Sweep, check_int


class TrialOrchestrator(Sweep):
    """Runs ``n_trials`` independent RLOptimizer trials and returns the best configuration.

    ``agent_factory(params)`` builds an agent from a sampled configuration and
    ``pipeline_factory()`` a fresh pipeline; either may take a ``seed``
    keyword, and gets the seed of the run. With ``n_workers > 1`` both travel
    to spawned worker processes: give module-level functions, instances of
    module-level classes, or ``"module:callable"`` strings.

    Each trial runs ``seeds_per_trial`` seeds, ``seed, seed + 1, ...`` (the
    same for every trial, so configurations meet the same luck; ``seed=None``
    draws one for the sweep, which also seeds the sampler), and scores the
    mean of their deterministic evaluations. ``eval_env_id`` is the
    environment scored on; by default the pipeline's own gymnasium
    environment (a pipeline whose environments carry extra wrappers must name
    it). ``pruner_warmup_steps`` defaults to a quarter of ``trial_steps``.
    ``loop_kwargs`` go to each trial's RLOptimizer.

    Every other keyword is a ``Sweep`` option: ``storage``, ``study_name``,
    ``run_dir`` (the root of the trials' checkpoint directories),
    ``n_workers``, ``direction``, ``sampler``, ``n_startup_trials``,
    ``pruner_startup_trials``, ``prune``, ``heartbeat_interval``,
    ``grace_period``, ``on_trial_end``. ``orchestrator.study`` is the Optuna
    study and ``orchestrator.env_steps`` counts every step of every trial.
    """

    def __init__(
        self,
        agent_factory: Factory,
        pipeline_factory: Factory,
        param_space: Mapping[str, Any],
        n_trials: int = 20,
        trial_steps: int = 50_000,
        *,
        eval_env_id: str | None = None,
        eval_episodes: int = 10,
        seeds_per_trial: int = 1,
        seed: int | None = None,
        pruner_warmup_steps: int | None = None,
        loop_kwargs: Mapping[str, Any] | None = None,
        **sweep_options: Any,
    ) -> None:
        check_int("trial_steps", trial_steps, 1)
        check_int("eval_episodes", eval_episodes, 1)
        check_int("seeds_per_trial", seeds_per_trial, 1)
        if seed is None:
            seed = random.SystemRandom().randrange(2**31)
        env_id, env_kwargs = (
            (eval_env_id, {}) if eval_env_id is not None else _pipeline_env(pipeline_factory)
        )
        objective = RLTrial(
            agent_factory=agent_factory,
            pipeline_factory=pipeline_factory,
            trial_steps=trial_steps,
            eval_env_id=env_id,
            eval_episodes=eval_episodes,
            seeds=tuple(seed + i for i in range(seeds_per_trial)),
            loop_kwargs=dict(loop_kwargs or {}),
            eval_env_kwargs=env_kwargs,
        )
        warmup = trial_steps // 4 if pruner_warmup_steps is None else pruner_warmup_steps
        super().__init__(
            objective,
            param_space,
            n_trials,
            seed=seed,
            pruner_warmup_steps=warmup,
            **sweep_options,
        )
        self.trial_steps = trial_steps
        self.seed = seed


def _pipeline_env(pipeline_factory: Factory) -> tuple[str, dict[str, Any]]:
    """The id and kwargs of the gymnasium environment the pipeline steps.

    Building one pipeline here also proves the factory works before any trial.
    """
    pipeline = call_factory(pipeline_factory, seed=None)
    try:
        envs = getattr(pipeline, "envs", None)
        spec = envs.get_attr("spec")[0] if envs is not None else None
    finally:
        pipeline.close()
    if spec is None or spec.additional_wrappers:
        why = "has no gymnasium environment" if spec is None else "wraps its environment"
        raise ValueError(
            f"the pipeline {why}, so TrialOrchestrator cannot tell which environment to score "
            "trials on: give eval_env_id='<gymnasium id>'"
        )
    return spec.id, dict(spec.kwargs)
