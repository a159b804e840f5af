"""Framework-free algorithms that optix-core registers itself."""
