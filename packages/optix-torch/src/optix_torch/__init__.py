"""optix-torch."""
