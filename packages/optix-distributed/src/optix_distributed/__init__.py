"""optix-distributed: IMPALA's actor-learner for the optix training loop, with
actors as local processes or Ray actors.

Importing this package imports neither torch nor ray: the plugin registers
``impala`` by name, and classes load on first access
(``from optix_distributed import AsyncActorLearner``).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "AsyncActorLearner": "learner",
    "ActorLearnerPipeline": "pipeline",
    "ImpalaAgent": "impala",
    "ActorFailed": "actor",
    "LocalExecutor": "executors.local",
}


def __getattr__(name: str) -> Any:
    if name == "compute_vtrace_targets":  # tensor-optix exported it from here
        from optix_core.returns import compute_vtrace_targets

        return compute_vtrace_targets
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'optix_distributed' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"optix_distributed.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS, "compute_vtrace_targets"])


if TYPE_CHECKING:
    from optix_core.returns import compute_vtrace_targets
    from optix_distributed.actor import ActorFailed
    from optix_distributed.executors.local import LocalExecutor
    from optix_distributed.impala import ImpalaAgent
    from optix_distributed.learner import AsyncActorLearner
    from optix_distributed.pipeline import ActorLearnerPipeline

__all__ = [
    "ActorFailed",
    "ActorLearnerPipeline",
    "AsyncActorLearner",
    "ImpalaAgent",
    "LocalExecutor",
    "compute_vtrace_targets",
]
