"""Environments written in JAX, offered to optix as environment families.

``gymnax:Name`` ids (optix-jax[gymnax]) reach :mod:`optix_jax.envs.gymnax`
through optix-core's registry, so every command that takes an environment id
takes them; :mod:`optix_jax.pipelines` trains on them without leaving the device.
"""
