"""TFEvaluator: tensor-optix's name for the default scorer, kept for users moving over."""

from optix_core.evaluator import EpisodeReturnEvaluator


class TFEvaluator(EpisodeReturnEvaluator):
    """Scores a window by the mean return of the most recent episodes.

    Scoring needs no framework, so this is optix-core's
    ``EpisodeReturnEvaluator`` under the name tensor-optix 1.10's TensorFlow
    users import (``from tensor_optix import TFEvaluator``); ``RLOptimizer``
    uses it by default whatever the backend. Importing it imports no tensorflow.
    """
