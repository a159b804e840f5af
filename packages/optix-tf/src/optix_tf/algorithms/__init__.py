"""optix-tf's algorithms, one readable file each over the policy layer."""
