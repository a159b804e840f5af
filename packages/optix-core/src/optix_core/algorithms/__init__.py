"""Framework-free agents that optix-core registers itself."""
