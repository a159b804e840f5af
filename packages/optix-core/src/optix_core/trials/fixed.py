"""FixedHyperparams: the online optimizer that never changes anything.

``RLOptimizer(optimizer=None)`` runs SPSA over the agent's search space; a
trial must train exactly the configuration it sampled, so it hands the loop
this instead (see ``RLTrial.online_optimizer``).
"""

from __future__ import annotations

from optix_core.optimizer import BaseOptimizer
from optix_core.types import EvalMetrics, HyperparamSet


class FixedHyperparams(BaseOptimizer):
    """Keeps the hyperparameters the agent was built with, for the whole run."""

    def suggest(self, current: HyperparamSet, metrics: EvalMetrics) -> HyperparamSet:
        return current
