"""Pipelines: where the loop's windows of experience come from."""

from optix_core.pipeline.base import BasePipeline
from optix_core.pipeline.live import LivePipeline
from optix_core.pipeline.vector import BatchPipeline, VectorBatchPipeline

__all__ = ["BasePipeline", "BatchPipeline", "LivePipeline", "VectorBatchPipeline"]
