"""FlaxEvaluator: tensor-optix's name for the default scorer, kept for users moving over."""

from optix_core.evaluator import EpisodeReturnEvaluator


class FlaxEvaluator(EpisodeReturnEvaluator):
    """Scores a window by the mean return of the most recent episodes.

    Scoring needs no framework, so this is optix-core's
    ``EpisodeReturnEvaluator`` under the name tensor-optix 1.10's JAX users
    import; ``RLOptimizer`` uses it by default whatever the backend.
    Importing it imports no jax.
    """
