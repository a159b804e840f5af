"""optix-distributed's plugin: registers ``impala`` (backend torch) with its own
pipeline, the actors. Imports no torch and no ray."""

from optix_core import AgentSpec, hookimpl
from optix_distributed import config


@hookimpl
def optix_register_agents(register):
    register(
        AgentSpec(
            name="impala",
            backend="torch",
            factory="optix_distributed.impala:make_impala",
            pipeline="optix_distributed.pipeline:ActorLearnerPipeline",
            action_spaces=("discrete", "continuous"),
            on_policy=True,
            defaults=dict(config.DEFAULTS),
            search_space=dict(config.SEARCH_SPACE),
            rollout=dict(config.ROLLOUT),
            summary="IMPALA: actors collecting at once, a V-trace learner (local or Ray)",
        )
    )
