"""Picklable factories for tuning a registered agent on a gymnasium environment.

What ``optix tune`` hands to TrialOrchestrator; they travel to spawned
workers as plain data and build the agent and pipeline there.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from optix_core.agent import BaseAgent
from optix_core.pipeline import VectorBatchPipeline
from optix_core.registry import make_agent
from optix_core.types import HyperparamSet


@dataclass(frozen=True)
class RegisteredAgentFactory:
    """``make_agent(algo, env_id, backend, ...)`` with ``fixed`` under the sampled params."""

    algo: str
    env_id: str
    backend: str | None = None
    device: str = "auto"
    fixed: dict[str, Any] = field(default_factory=dict)

    def __call__(self, params: dict[str, Any], seed: int | None = None) -> BaseAgent:
        return make_agent(
            self.algo,
            self.env_id,
            backend=self.backend,
            hyperparams=HyperparamSet(params={**self.fixed, **params}),
            device=self.device,
            seed=seed,
        )


@dataclass(frozen=True)
class VectorPipelineFactory:
    """A ``VectorBatchPipeline`` of ``n_envs`` copies of ``env_id``."""

    env_id: str
    n_envs: int
    window_size: int

    def __call__(self, seed: int | None = None) -> VectorBatchPipeline:
        return VectorBatchPipeline(
            env_id=self.env_id, n_envs=self.n_envs, window_size=self.window_size, seed=seed
        )
