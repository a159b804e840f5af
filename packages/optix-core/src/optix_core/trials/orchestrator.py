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

import dataclasses
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
    ``loop_kwargs`` go to each trial's RLOptimizer (except ``max_env_steps``,
    which is ``trial_steps``, and ``optimizer``). A trial trains what it
    sampled: ``online_optimizer=None`` (the default) runs no online optimizer
    inside it; give a factory ``online_optimizer(agent[, seed=])`` returning a
    ``BaseOptimizer`` to tune online too (``"optix_core.trials.rl_trial:
    spsa_over_search_space"``: SPSA over the agent's search space).

    The sweep's seed and settings (``trial_steps``, ``eval_episodes``,
    ``seeds_per_trial``, the space, the sampler, ... and ``settings``, a dict
    of the caller's own) are stored with the study; continuing a study with
    other settings raises ``SweepSettingsError``, and ``seed=None`` continues
    one with its stored seed.

    Every other keyword is a ``Sweep`` option: ``storage``, ``study_name``,
    ``run_dir`` (the root of the trials' checkpoint directories),
    ``n_workers``, ``direction``, ``sampler``, ``n_startup_trials``,
    ``pruner_startup_trials``, ``prune``, ``heartbeat_interval``,
    ``grace_period``, ``on_trial_end``, ``baseline``, ``timeout``,
    ``threads_per_worker``, ``progress_interval``, ``settings``. ``orchestrator.study`` is the Optuna
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
        eval_env_kwargs: Mapping[str, Any] | None = None,
        eval_episodes: int = 10,
        seeds_per_trial: int = 1,
        seed: int | None = None,
        pruner_warmup_steps: int | None = None,
        loop_kwargs: Mapping[str, Any] | None = None,
        online_optimizer: Factory | None = None,
        settings: Mapping[str, Any] | None = None,
        **sweep_options: Any,
    ) -> None:
        check_int("trial_steps", trial_steps, 1)
        check_int("eval_episodes", eval_episodes, 1)
        check_int("seeds_per_trial", seeds_per_trial, 1)
        seed_given = seed is not None
        if seed is None:
            seed = random.SystemRandom().randrange(2**31)
        env_id, env_kwargs = (
            (eval_env_id, dict(eval_env_kwargs or {}))
            if eval_env_id is not None
            else _pipeline_env(pipeline_factory)
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
            online_optimizer=online_optimizer,
        )
        warmup = trial_steps // 4 if pruner_warmup_steps is None else pruner_warmup_steps
        trial_settings = {
            "trial_steps": trial_steps,
            "eval_env_id": env_id,
            "eval_env_kwargs": env_kwargs,
            "eval_episodes": eval_episodes,
            "seeds_per_trial": seeds_per_trial,
            "loop_kwargs": dict(loop_kwargs or {}),
            "online_optimizer": _describe(online_optimizer),
        }
        super().__init__(
            objective,
            param_space,
            n_trials,
            seed=seed,
            pruner_warmup_steps=warmup,
            settings={**trial_settings, **(settings or {})},
            **sweep_options,
        )
        self.seed_given = seed_given  # False: a continued study keeps its stored seed
        self.trial_steps = trial_steps

    def adopt_seed(self, seed: int) -> None:
        super().adopt_seed(seed)
        n = len(self.objective.seeds)
        self.objective = dataclasses.replace(
            self.objective, seeds=tuple(seed + i for i in range(n))
        )


def _describe(factory: Factory | None) -> str | None:
    """A factory as stored with the study: its ``module:name`` (or repr)."""
    if factory is None or isinstance(factory, str):
        return factory
    module, name = getattr(factory, "__module__", None), getattr(factory, "__qualname__", None)
    return f"{module}:{name}" if module and name else repr(factory)


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
