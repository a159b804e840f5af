"""Policy evolution: spawning, pruning and ensembles of policies, framework-free.

``PolicyManager`` keeps a weighted ensemble and evolves it from the best
checkpoint; ``as_callback`` runs it on the loop's DORMANT events, deciding
with a ``MetaController`` when given one; ``EnsembleAgent`` acts with the
whole ensemble. Its members hold real copies of the weights, unlike
``optimizers.PBTOptimizer``, whose population is hyperparameter
configurations sharing the one agent's weights.
"""

from optix_core.evolution.callback import MetaDecider, PolicyManagerCallback
from optix_core.evolution.ensemble import EnsembleAgent
from optix_core.evolution.history import ScoreHistory
from optix_core.evolution.meta_controller import MetaAction, MetaController, MetaSignals
from optix_core.evolution.noise import NoiseSignals, perturb_hyperparams
from optix_core.evolution.policy_manager import EnsembleMember, PolicyManager

__all__ = [
    "EnsembleAgent",
    "EnsembleMember",
    "MetaAction",
    "MetaController",
    "MetaDecider",
    "MetaSignals",
    "NoiseSignals",
    "PolicyManager",
    "PolicyManagerCallback",
    "ScoreHistory",
    "perturb_hyperparams",
]
