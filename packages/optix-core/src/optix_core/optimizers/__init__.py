"""Online hyperparameter optimizers: they tune an agent inside one run of the loop.

``SPSAOptimizer`` (the loop's default) moves every bounded hyperparameter on
one gradient estimate per three evaluations; ``MomentumOptimizer`` takes the
same estimate with a signed-momentum step; ``BackoffOptimizer`` probes one
hyperparameter at a time; ``PBTOptimizer`` runs exploit/explore over a
population of configurations taking turns on the agent. All search the box
``param_bounds`` in unit coordinates (log coordinates for scale parameters),
and all resume exactly from ``state_dict()``. ``param_bounds=None`` tunes
nothing and never probes; ``from_search_space(spec.search_space)`` tunes an
``AgentSpec``'s declared search space.
"""

from optix_core.optimizers.backoff import BackoffOptimizer
from optix_core.optimizers.bounds import (
    DEFAULT_LOG_SCALE,
    BoundedOptimizer,
    ParamSpace,
    bounds_from_search_space,
)
from optix_core.optimizers.momentum import MomentumOptimizer
from optix_core.optimizers.pbt import PBTOptimizer
from optix_core.optimizers.spsa import SPSAOptimizer

__all__ = [
    "DEFAULT_LOG_SCALE",
    "BackoffOptimizer",
    "BoundedOptimizer",
    "MomentumOptimizer",
    "PBTOptimizer",
    "ParamSpace",
    "SPSAOptimizer",
    "bounds_from_search_space",
]
