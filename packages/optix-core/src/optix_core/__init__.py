"""optix-core: the autonomous training loop, framework-free.

Importing this package imports no ML framework and loads no plugin; plugins
load the first time the registry is used (``agents()``, ``make_agent()``).
"""

from __future__ import annotations

import importlib
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

# Public names and the modules that define them. Attributes load on first
# access, so ``import optix_core`` (and ``optix list``) stays cheap: numpy and
# gymnasium are imported only by what needs them.
_EXPORTS = {
    "BaseAgent": "agent",
    "LoopCallback": "callbacks",
    "CheckpointError": "checkpoints",
    "CheckpointRegistry": "checkpoints",
    "CorruptCheckpointError": "checkpoints",
    "BaseEvaluator": "evaluator",
    "EpisodeReturnEvaluator": "evaluator",
    "hookimpl": "hookspecs",
    "Bound": "hyperparams",
    "HyperparamError": "hyperparams",
    "check_hyperparams": "hyperparams",
    "RLOptimizer": "loop",
    "TrainingDivergedError": "loop",
    "BaseOptimizer": "optimizer",
    "BasePipeline": "pipeline",
    "BatchPipeline": "pipeline",
    "LivePipeline": "pipeline",
    "VectorBatchPipeline": "pipeline",
    "RegistryError": "registry",
    "agents": "registry",
    "backends": "registry",
    "make_agent": "registry",
    "LoopReport": "report",
    "BackoffScheduler": "scheduler",
    "AgentSpec": "specs",
    "BackendSpec": "specs",
    "CallbackSpec": "specs",
    "EvaluatorSpec": "specs",
    "EpisodeData": "types",
    "EvalMetrics": "types",
    "HyperparamSet": "types",
    "LoopState": "types",
    "PolicySnapshot": "types",
    "PolicyManager": "evolution",
    "PolicyManagerCallback": "evolution",
    "MetaController": "evolution",
    "MetaAction": "evolution",
    "EnsembleAgent": "evolution",
    "SPSAOptimizer": "optimizers",
    "BackoffOptimizer": "optimizers",
    "MomentumOptimizer": "optimizers",
    "PBTOptimizer": "optimizers",
}

try:
    __version__ = version("optix-core")
except PackageNotFoundError:  # running from a source tree
    __version__ = "0.0.0"


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'optix_core' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"optix_core.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])


if TYPE_CHECKING:
    from optix_core.agent import BaseAgent
    from optix_core.callbacks import LoopCallback
    from optix_core.checkpoints import CheckpointError, CheckpointRegistry, CorruptCheckpointError
    from optix_core.evaluator import BaseEvaluator, EpisodeReturnEvaluator
    from optix_core.evolution import (
        EnsembleAgent,
        MetaAction,
        MetaController,
        PolicyManager,
        PolicyManagerCallback,
    )
    from optix_core.hookspecs import hookimpl
    from optix_core.hyperparams import Bound, HyperparamError, check_hyperparams
    from optix_core.loop import RLOptimizer, TrainingDivergedError
    from optix_core.optimizer import BaseOptimizer
    from optix_core.optimizers import (
        BackoffOptimizer,
        MomentumOptimizer,
        PBTOptimizer,
        SPSAOptimizer,
    )
    from optix_core.pipeline import BasePipeline, BatchPipeline, LivePipeline, VectorBatchPipeline
    from optix_core.registry import RegistryError, agents, backends, make_agent
    from optix_core.report import LoopReport
    from optix_core.scheduler import BackoffScheduler
    from optix_core.specs import AgentSpec, BackendSpec, CallbackSpec, EvaluatorSpec
    from optix_core.types import EpisodeData, EvalMetrics, HyperparamSet, LoopState, PolicySnapshot

__all__ = [
    "AgentSpec",
    "BackendSpec",
    "BackoffOptimizer",
    "BackoffScheduler",
    "BaseAgent",
    "BaseEvaluator",
    "BaseOptimizer",
    "BasePipeline",
    "BatchPipeline",
    "Bound",
    "CallbackSpec",
    "CheckpointError",
    "CheckpointRegistry",
    "CorruptCheckpointError",
    "EnsembleAgent",
    "EpisodeData",
    "EpisodeReturnEvaluator",
    "EvalMetrics",
    "EvaluatorSpec",
    "HyperparamError",
    "HyperparamSet",
    "LivePipeline",
    "LoopCallback",
    "LoopReport",
    "LoopState",
    "MetaAction",
    "MetaController",
    "MomentumOptimizer",
    "PBTOptimizer",
    "PolicyManager",
    "PolicyManagerCallback",
    "PolicySnapshot",
    "RLOptimizer",
    "RegistryError",
    "SPSAOptimizer",
    "TrainingDivergedError",
    "VectorBatchPipeline",
    "agents",
    "backends",
    "check_hyperparams",
    "hookimpl",
    "make_agent",
]
