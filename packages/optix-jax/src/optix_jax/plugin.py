"""optix-jax's plugin: registers the JAX backend and its agents. Imports no jax.

The agents' defaults, presets and search spaces are the ones every backend
reads (``optix_core.algorithms.config``); this names the algorithms optix-jax
offers.
"""

from optix_core import BackendSpec, EnvironmentSpec, hookimpl
from optix_core.algorithms.config import agent_specs

ALGORITHMS = ("a2c", "dqn", "ppo", "sac", "td3")


@hookimpl
def optix_register_backends(register):
    register(
        BackendSpec(
            name="jax",
            distribution="optix-jax",
            list_devices="optix_jax.device:list_devices",
            resolve_device="optix_jax.device:resolve_device",
            seed="optix_jax.device:seed_everything",
            summary="JAX with Flax NNX and optax, on the CPU or GPU",
        )
    )


@hookimpl
def optix_register_agents(register):
    for spec in agent_specs("jax", "optix_jax", ALGORITHMS):
        register(spec)


@hookimpl
def optix_register_environments(register):
    register(
        EnvironmentSpec(
            prefix="gymnax",
            distribution="optix-jax",
            make="optix_jax.envs.gymnax:make_env",
            pipeline="optix_jax.pipelines.compiled:make_pipeline",
            evaluate="optix_jax.pipelines.evaluation:evaluate",
            extra="optix-jax[gymnax]",
            backend="jax",
            summary="JAX environments from gymnax (gymnax:CartPole-v1), collected by a compiled pipeline",
        )
    )
