"""optix-callbacks."""
