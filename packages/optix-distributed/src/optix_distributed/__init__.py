"""optix-distributed."""
