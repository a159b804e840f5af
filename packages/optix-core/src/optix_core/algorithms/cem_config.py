"""The cross-entropy method's hyperparameters: defaults, valid ranges, tuning ranges.

Kept apart from the agent so that listing it imports no numpy.
"""

from typing import Any

from optix_core.hyperparams import Bound

DEFAULTS: dict[str, Any] = {
    "population_size": 16,
    "elite_frac": 0.25,
    "init_std": 0.5,
    "noise_std": 0.05,
    "hidden_size": 0,
}
BOUNDS = {
    "population_size": Bound(2, 10_000, integer=True),
    "elite_frac": Bound(0.0, 1.0, open_low=True),
    "init_std": Bound(0.0, 100.0, open_low=True),
    "noise_std": Bound(0.0, 100.0),
    "hidden_size": Bound(0, 4096, integer=True),
}
# What SPSA may move while CEM trains (`optix train --tune`, RLOptimizer's default):
# the sampling noise, which sets how far the search reaches once the mean has settled.
ONLINE_SEARCH_SPACE = {"noise_std": ("log_float", 0.001, 0.3)}
SEARCH_SPACE = {
    "population_size": ("int", 8, 64),
    "elite_frac": ("float", 0.1, 0.5),
    "init_std": ("log_float", 0.1, 2.0),
    "noise_std": ("log_float", 0.001, 0.3),
}
