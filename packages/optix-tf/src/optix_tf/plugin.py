"""optix-tf's plugin: registers the TensorFlow backend and its agents. Imports no tensorflow.

The agents' defaults, presets and search spaces are the ones every backend
reads (``optix_core.algorithms.config``); this names the algorithms optix-tf
offers so far.
"""

from optix_core import BackendSpec, hookimpl
from optix_core.algorithms.config import agent_specs

ALGORITHMS = ("a2c", "dqn", "ppo", "rainbow", "recurrent-ppo", "sac", "td3")


@hookimpl
def optix_register_backends(register):
    register(
        BackendSpec(
            name="tf",
            distribution="optix-tf",
            list_devices="optix_tf.device:list_devices",
            resolve_device="optix_tf.device:resolve_device",
            seed="optix_tf.device:seed_everything",
            summary="TensorFlow 2, on the CPU or GPU",
        )
    )


@hookimpl
def optix_register_agents(register):
    for spec in agent_specs("tf", "optix_tf", ALGORITHMS):
        register(spec)
