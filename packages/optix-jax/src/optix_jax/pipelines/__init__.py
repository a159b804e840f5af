"""Pipelines that keep collection on the device: windows of JAX environments
collected by compiled programs, driven by an agent's pure policy."""

from optix_jax.pipelines.compiled import CompiledPipeline, CompiledPolicy, make_pipeline

__all__ = ["CompiledPipeline", "CompiledPolicy", "make_pipeline"]
