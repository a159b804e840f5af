"""optix-tf."""
