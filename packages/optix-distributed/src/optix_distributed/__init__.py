"""optix-distributed: IMPALA's actor-learner for the optix training loop, with
actors as local processes or Ray actors.

Importing this package imports neither torch nor ray: the plugin registers
``impala`` by name, and classes load on first access
(``from optix_distributed import AsyncActorLearner``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from optix_core.lazy import lazy_exports

_EXPORTS = {
    "AsyncActorLearner": ".learner",
    "ActorLearnerPipeline": ".pipeline",
    "ImpalaAgent": ".impala",
    "ActorFailed": ".actor",
    "LocalExecutor": ".executors.local",
    "compute_vtrace_targets": "optix_core.returns",  # tensor-optix exported it from here
}


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)


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
