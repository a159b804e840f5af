"""The example plugin's registrations: one framework-free agent."""

from optix_core import AgentSpec, hookimpl


@hookimpl
def optix_register_agents(register):
    register(
        AgentSpec(
            name="hill-climb",
            backend="example",
            factory="optix_example_plugin.agent:make_agent",
            action_spaces=("discrete",),
            defaults={"step_size": 0.5},
            search_space={"step_size": ("log_float", 0.05, 2.0)},
            summary="Random-restart hill climbing on a linear policy (example plugin)",
            rollout={"n_envs": 4, "window_size": 500},
        )
    )
