"""Trial-level hyperparameter search on Optuna: ``pip install 'optix-core[tune]'``.

``TrialOrchestrator`` tunes an agent over independent RLOptimizer trials;
``Sweep`` tunes any objective the same way. Importing this package imports
Optuna; ``import optix_core`` never does.
"""

try:
    import optuna  # noqa: F401
except ImportError as exc:  # the tune extra is missing
    raise ImportError("optix_core.trials needs Optuna: pip install 'optix-core[tune]'") from exc

from optix_core.search_space import SearchSpaceError
from optix_core.trials.context import TrialContext
from optix_core.trials.fixed import FixedHyperparams
from optix_core.trials.orchestrator import TrialOrchestrator
from optix_core.trials.pool import SweepError
from optix_core.trials.stopping import Interrupted
from optix_core.trials.storage import StorageError
from optix_core.trials.sweep import Sweep, SweepSettingsError

__all__ = [
    "FixedHyperparams",
    "Interrupted",
    "SearchSpaceError",
    "StorageError",
    "Sweep",
    "SweepError",
    "SweepSettingsError",
    "TrialContext",
    "TrialOrchestrator",
]
