"""optix-jax's plugin: registers the JAX backend. Imports no jax."""

from optix_core import BackendSpec, hookimpl


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
