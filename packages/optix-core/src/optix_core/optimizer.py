"""BaseOptimizer: online hyperparameter search inside one run."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

from optix_core.types import EvalMetrics, HyperparamSet


class BaseOptimizer(ABC):
    """Proposes the next hyperparameters after each evaluation."""

    @abstractmethod
    def suggest(self, current: HyperparamSet, metrics: EvalMetrics) -> HyperparamSet:
        """Return the hyperparameters to use from now on (``current`` if unchanged)."""

    def on_improvement(self, metrics: EvalMetrics) -> None:
        """Called when the loop credits an improvement."""

    def on_plateau(self, metrics: EvalMetrics) -> None:
        """Called when the scheduler enters COOLING."""

    @property
    def is_probing(self) -> bool:
        """True while scores reflect the optimizer's own perturbation, not the policy.

        The loop skips degradation checks then: a drop it caused itself is no
        reason to roll back.
        """
        return False

    def state_dict(self) -> dict[str, Any]:
        """JSON-ready state, for an exact resume."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what ``state_dict`` returned."""
