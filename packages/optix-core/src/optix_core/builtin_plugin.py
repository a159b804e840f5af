"""optix-core's own plugin: the framework-free agents and the default evaluator."""

from optix_core.algorithms.cem_config import DEFAULTS, SEARCH_SPACE
from optix_core.hookspecs import hookimpl
from optix_core.specs import AgentSpec, EvaluatorSpec


@hookimpl
def optix_register_agents(register):
    register(
        AgentSpec(
            name="cem",
            backend="numpy",
            factory="optix_core.algorithms.cem:make_cem",
            action_spaces=("discrete", "continuous"),
            on_policy=True,
            defaults=dict(DEFAULTS),
            search_space=dict(SEARCH_SPACE),
            summary="Noisy cross-entropy method on a linear or one-layer numpy policy",
            rollout={"n_envs": 8, "window_size": 500},
        )
    )


@hookimpl
def optix_register_evaluators(register):
    register(
        EvaluatorSpec(
            name="episode-return",
            factory="optix_core.evaluator:EpisodeReturnEvaluator",
            summary="Mean return of the most recent episodes (the default)",
        )
    )
