"""optix-jax."""
