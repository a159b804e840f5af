"""The policy layer every optix-torch algorithm shares.

``extractors``: observations → features (MLP input, NatureCNN, one-hot,
Dict); ``distributions``: what a network's output means for each action
space; ``networks``: the default networks, chosen from the spaces, and the
check that a user's network fits; ``observations``: batches as tensors.
"""

from optix_torch.policies.distributions import Distribution, distribution_for
from optix_torch.policies.extractors import (
    CombinedExtractor,
    FlattenExtractor,
    NatureCNN,
    OneHotExtractor,
    SmallCNN,
    default_extractor,
)
from optix_torch.policies.networks import ActorCritic, TwinMLP, mlp, seeded

__all__ = [
    "ActorCritic",
    "CombinedExtractor",
    "Distribution",
    "FlattenExtractor",
    "NatureCNN",
    "OneHotExtractor",
    "SmallCNN",
    "TwinMLP",
    "default_extractor",
    "distribution_for",
    "mlp",
    "seeded",
]
