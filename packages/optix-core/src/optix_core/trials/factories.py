"""Picklable factories for tuning a registered agent on a gymnasium environment.

What ``optix tune`` hands to TrialOrchestrator; they travel to spawned
workers as plain data and build the agent and pipeline there.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from optix_core.agent import BaseAgent
from optix_core.pipeline import BasePipeline
from optix_core.registry import make_agent, window_pipeline
from optix_core.types import HyperparamSet


@dataclass(frozen=True)
class RegisteredAgentFactory:
    """``make_agent(algo, env_id, backend, ...)`` with ``fixed`` under the sampled params,
    the factory's ``network`` options (a preset's) and the spaces of ``env_id`` built
    with ``env_kwargs``."""

    algo: str
    env_id: str
    backend: str | None = None
    device: str = "auto"
    fixed: dict[str, Any] = field(default_factory=dict)
    network: dict[str, Any] = field(default_factory=dict)
    env_kwargs: dict[str, Any] = field(default_factory=dict)

    def __call__(self, params: dict[str, Any], seed: int | None = None) -> BaseAgent:
        return make_agent(
            self.algo,
            self.env_id,
            backend=self.backend,
            hyperparams=HyperparamSet(params={**self.fixed, **params}),
            device=self.device,
            seed=seed,
            network=self.network,
            env_kwargs=self.env_kwargs,
        )


@dataclass(frozen=True)
class VectorPipelineFactory:
    """The training pipeline of ``n_envs`` copies of ``env_id`` (``registry.window_pipeline``:
    a ``VectorBatchPipeline``, or the environment family's own, compiled one), each
    environment built with ``env_kwargs``."""

    env_id: str
    n_envs: int
    window_size: int
    pipeline: str | None = None  # the algorithm's own (AgentSpec.pipeline), with its options
    options: dict[str, Any] = field(default_factory=dict)
    env_kwargs: dict[str, Any] = field(default_factory=dict)

    def __call__(self, seed: int | None = None) -> BasePipeline:
        return window_pipeline(
            self.env_id,
            self.n_envs,
            self.window_size,
            seed,
            self.pipeline,
            self.options,
            self.env_kwargs,
        )
