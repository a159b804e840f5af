"""optix-core: the autonomous training loop, framework-free.

Importing this package imports no ML framework and loads no plugin; plugins
load the first time the registry is used (``agents()``, ``make_agent()``).
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING

from optix_core.lazy import lazy_exports

# Public names and the modules that define them. Attributes load on first
# access, so ``import optix_core`` (and ``optix list``) stays cheap: numpy and
# gymnasium are imported only by what needs them.
_EXPORTS = {
    "BaseAgent": ".agent",
    "LoopCallback": ".callbacks",
    "CheckpointError": ".checkpoints",
    "CheckpointLockedError": ".checkpoints",
    "CheckpointRegistry": ".checkpoints",
    "CorruptCheckpointError": ".checkpoints",
    "BaseEvaluator": ".evaluator",
    "EpisodeReturnEvaluator": ".evaluator",
    "hookimpl": ".hookspecs",
    "Bound": ".hyperparams",
    "HyperparamError": ".hyperparams",
    "check_hyperparams": ".hyperparams",
    "RLOptimizer": ".loop",
    "TrainingDivergedError": ".loop",
    "BaseOptimizer": ".optimizer",
    "BasePipeline": ".pipeline",
    "BatchPipeline": ".pipeline",
    "LivePipeline": ".pipeline",
    "VectorBatchPipeline": ".pipeline",
    "RegistryError": ".registry",
    "agents": ".registry",
    "backends": ".registry",
    "environments": ".registry",
    "make_agent": ".registry",
    "LoopReport": ".report",
    "BackoffScheduler": ".scheduler",
    "CheckpointSelection": ".selection",
    "EvaluationSelection": ".selection",
    "ScoreFunctionSelection": ".selection",
    "TrainingScoreSelection": ".selection",
    "evaluate_policy": ".evaluation",
    "Hook": ".callbacks",
    "AgentSpec": ".specs",
    "BackendSpec": ".specs",
    "CallbackSpec": ".specs",
    "EnvironmentSpec": ".specs",
    "EvaluatorSpec": ".specs",
    "EpisodeData": ".types",
    "EvalMetrics": ".types",
    "HyperparamSet": ".types",
    "LoopState": ".types",
    "PolicySnapshot": ".types",
    "PolicyManager": ".evolution",
    "PolicyManagerCallback": ".evolution",
    "MetaController": ".evolution",
    "MetaAction": ".evolution",
    "EnsembleAgent": ".evolution",
    "SPSAOptimizer": ".optimizers",
    "BackoffOptimizer": ".optimizers",
    "MomentumOptimizer": ".optimizers",
    "PBTOptimizer": ".optimizers",
    "compute_gae": ".returns",
    "compute_vtrace_targets": ".returns",
    "discounted_returns": ".returns",
    "nstep_returns": ".returns",
    "make_minibatches": ".minibatch",
    "HERReplayBuffer": ".buffers",
    "NStepWriter": ".buffers",
    "PrioritizedReplayBuffer": ".buffers",
    "ReplayBuffer": ".buffers",
    "SumTree": ".buffers",
    "transition_fields": ".buffers",
    "window_transitions": ".buffers",
    "ObsNormalizer": ".normalizers",
    "RewardNormalizer": ".normalizers",
    "RunningMeanStd": ".normalizers",
    "DiagnosticController": ".analysis",
    "RegimeDetector": ".analysis",
    "TrialOrchestrator": ".trials",
    "Sweep": ".trials",
    "TrialContext": ".trials",
    "SweepError": ".trials",
    "StorageError": ".trials",
    "SearchSpaceError": ".search_space",
    "parse_search_space": ".search_space",
}

try:
    __version__ = version("optix-core")
except PackageNotFoundError:  # running from a source tree
    __version__ = "0.0.0"


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)


if TYPE_CHECKING:
    from optix_core.agent import BaseAgent
    from optix_core.analysis import DiagnosticController, RegimeDetector
    from optix_core.buffers import (
        HERReplayBuffer,
        NStepWriter,
        PrioritizedReplayBuffer,
        ReplayBuffer,
        SumTree,
        transition_fields,
        window_transitions,
    )
    from optix_core.callbacks import Hook, LoopCallback
    from optix_core.checkpoints import (
        CheckpointError,
        CheckpointLockedError,
        CheckpointRegistry,
        CorruptCheckpointError,
    )
    from optix_core.evaluation import evaluate_policy
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
    from optix_core.minibatch import make_minibatches
    from optix_core.normalizers import ObsNormalizer, RewardNormalizer, RunningMeanStd
    from optix_core.optimizer import BaseOptimizer
    from optix_core.optimizers import (
        BackoffOptimizer,
        MomentumOptimizer,
        PBTOptimizer,
        SPSAOptimizer,
    )
    from optix_core.pipeline import BasePipeline, BatchPipeline, LivePipeline, VectorBatchPipeline
    from optix_core.registry import RegistryError, agents, backends, environments, make_agent
    from optix_core.report import LoopReport
    from optix_core.returns import (
        compute_gae,
        compute_vtrace_targets,
        discounted_returns,
        nstep_returns,
    )
    from optix_core.scheduler import BackoffScheduler
    from optix_core.search_space import SearchSpaceError, parse_search_space
    from optix_core.selection import (
        CheckpointSelection,
        EvaluationSelection,
        ScoreFunctionSelection,
        TrainingScoreSelection,
    )
    from optix_core.specs import (
        AgentSpec,
        BackendSpec,
        CallbackSpec,
        EnvironmentSpec,
        EvaluatorSpec,
    )
    from optix_core.trials import (
        StorageError,
        Sweep,
        SweepError,
        TrialContext,
        TrialOrchestrator,
    )
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
    "CheckpointLockedError",
    "CheckpointRegistry",
    "CheckpointSelection",
    "CorruptCheckpointError",
    "DiagnosticController",
    "EnsembleAgent",
    "EnvironmentSpec",
    "EpisodeData",
    "EpisodeReturnEvaluator",
    "EvalMetrics",
    "EvaluationSelection",
    "EvaluatorSpec",
    "HERReplayBuffer",
    "Hook",
    "HyperparamError",
    "HyperparamSet",
    "LivePipeline",
    "LoopCallback",
    "LoopReport",
    "LoopState",
    "MetaAction",
    "MetaController",
    "MomentumOptimizer",
    "NStepWriter",
    "ObsNormalizer",
    "PBTOptimizer",
    "PolicyManager",
    "PolicyManagerCallback",
    "PolicySnapshot",
    "PrioritizedReplayBuffer",
    "RLOptimizer",
    "RegimeDetector",
    "RegistryError",
    "ReplayBuffer",
    "RewardNormalizer",
    "RunningMeanStd",
    "SPSAOptimizer",
    "ScoreFunctionSelection",
    "SearchSpaceError",
    "StorageError",
    "SumTree",
    "Sweep",
    "SweepError",
    "TrainingDivergedError",
    "TrainingScoreSelection",
    "TrialContext",
    "TrialOrchestrator",
    "VectorBatchPipeline",
    "agents",
    "backends",
    "check_hyperparams",
    "compute_gae",
    "compute_vtrace_targets",
    "discounted_returns",
    "environments",
    "evaluate_policy",
    "hookimpl",
    "make_agent",
    "make_minibatches",
    "nstep_returns",
    "parse_search_space",
    "transition_fields",
    "window_transitions",
]
