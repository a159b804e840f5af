"""Online hyperparameter optimizers: they tune an agent inside one run of the loop.

``SPSAOptimizer`` (the loop's default) moves every bounded hyperparameter on
one gradient estimate per three evaluations; ``MomentumOptimizer`` takes the
same estimate with a signed-momentum step; ``BackoffOptimizer`` probes one
hyperparameter at a time; ``PBTOptimizer`` runs exploit/explore over a
population of configurations taking turns on the agent (one set of shared
weights; ``evolution.PolicyManager`` is the population with real weight
copies). All search the box ``param_bounds`` in unit coordinates (log
coordinates for scale parameters), and all resume exactly from
``state_dict()``. ``param_bounds=None`` tunes nothing and never probes;
``from_search_space(agent.search_space)`` tunes a declared search space. Both
forms are read by ``optix_core.search_space.parse_search_space``, the parser
trials use, and PBT explores with its ``perturb_params``.
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
