"""TorchEvaluator: tensor-optix's name for the default scorer, kept for users moving over."""

from optix_core.evaluator import EpisodeReturnEvaluator


class TorchEvaluator(EpisodeReturnEvaluator):
    """Scores a window by the mean return of the most recent episodes.

    Scoring needs no framework, so this is optix-core's
    ``EpisodeReturnEvaluator`` under the name tensor-optix's PyTorch users
    import; ``RLOptimizer`` uses it by default whatever the backend.
    """
