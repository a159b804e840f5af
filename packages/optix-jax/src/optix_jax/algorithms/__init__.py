"""optix-jax's algorithms, one file each, the same file names as optix-torch's and optix-tf's."""
