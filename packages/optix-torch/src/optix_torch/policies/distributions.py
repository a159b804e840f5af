"""Action distributions in torch: optix-core's, with learning's half added.

``optix_core.policies.distributions`` holds what every backend shares
(sampling and the mode in numpy, learn actions, the table of spaces and
distributions). Here each class gains ``log_prob`` and ``entropy`` in torch,
batched and differentiable, and ``torch_mode`` for exported models; sampling
draws from the agent's ``torch.Generator`` (``GeneratorNoise``), so a
checkpoint resumes the same stream.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F

from optix_core.policies import distributions as core
from optix_core.policies.distributions import (
    HALF_LOG_2PI,
    LOG_STD_MAX,
    LOG_STD_MIN,
    RAW,
    gaussian_action_space,
    sample_categorical,
    squash_correction,
)

__all__ = [
    "HALF_LOG_2PI",
    "LOG_STD_MAX",
    "LOG_STD_MIN",
    "RAW",
    "Bernoulli",
    "Categorical",
    "DiagGaussian",
    "Distribution",
    "MultiCategorical",
    "SquashedGaussian",
    "StateDependentGaussian",
    "distribution_for",
    "gaussian_action_space",
    "sample_categorical",
    "squash_correction",
]


class GeneratorNoise:
    """A ``torch.Generator`` as the ``Noise`` sampling draws from (float32 draws)."""

    def __init__(self, generator: torch.Generator) -> None:
        self.generator = generator

    def random(self, size: Any, dtype: Any = None) -> np.ndarray:
        return torch.rand(size, generator=self.generator).numpy()

    def standard_normal(self, size: Any, dtype: Any = None) -> np.ndarray:
        return torch.randn(size, generator=self.generator).numpy()


class Distribution(core.Distribution):
    """optix-core's interface, plus learning's half in torch."""

    def sample(self, params: np.ndarray, generator: torch.Generator) -> tuple[np.ndarray, dict]:
        return super().sample(params, GeneratorNoise(generator))

    def log_prob(self, params: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """log π(a|s) per row of learn actions ``[B, action_dim]``."""
        raise NotImplementedError

    def entropy(self, params: torch.Tensor) -> torch.Tensor:
        """H[π(·|s)] per row (for the Gaussians, of the Gaussian before clipping or squashing)."""
        raise NotImplementedError

    def torch_mode(self, params: torch.Tensor) -> torch.Tensor:
        """``mode`` in torch, for exported models."""
        raise NotImplementedError


class Categorical(Distribution, core.Categorical):
    def log_prob(self, params: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        return torch.log_softmax(params, -1).gather(1, actions.long()).squeeze(-1)

    def entropy(self, params: torch.Tensor) -> torch.Tensor:
        log_p = torch.log_softmax(params, -1)
        return -(log_p.exp() * log_p).sum(-1)

    def torch_mode(self, params: torch.Tensor) -> torch.Tensor:
        return params.argmax(-1) + self.start


class MultiCategorical(Distribution, core.MultiCategorical):
    def log_prob(self, params: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        index = actions.long()
        return sum(
            torch.log_softmax(b, -1).gather(1, index[:, i : i + 1]).squeeze(-1)
            for i, b in enumerate(self.blocks(params))
        )

    def entropy(self, params: torch.Tensor) -> torch.Tensor:
        total = 0.0
        for b in self.blocks(params):
            log_p = torch.log_softmax(b, -1)
            total = total - (log_p.exp() * log_p).sum(-1)
        return total

    def torch_mode(self, params: torch.Tensor) -> torch.Tensor:
        index = torch.stack([b.argmax(-1) for b in self.blocks(params)], dim=1)
        return (index + torch.as_tensor(self.start, device=params.device)).reshape(
            params.shape[0], *self.shape
        )


class Bernoulli(Distribution, core.Bernoulli):
    def log_prob(self, params: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        return -F.binary_cross_entropy_with_logits(params, actions, reduction="none").sum(-1)

    def entropy(self, params: torch.Tensor) -> torch.Tensor:
        p = torch.sigmoid(params)
        return F.binary_cross_entropy_with_logits(params, p, reduction="none").sum(-1)

    def torch_mode(self, params: torch.Tensor) -> torch.Tensor:
        return (params > 0).to(torch.int8).reshape(params.shape[0], *self.shape)


class _Gaussian(Distribution, core.Gaussian):
    def log_prob(self, params: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """The Gaussian log-density of the learn actions u."""
        mean, log_std = self.split(params, torch.clamp)
        z = (actions - mean) * torch.exp(-log_std)
        return -(0.5 * z.square() + log_std).sum(-1) - self.action_dim * HALF_LOG_2PI

    def entropy(self, params: torch.Tensor) -> torch.Tensor:
        log_std = self.split(params, torch.clamp)[1]
        return log_std.sum(-1) + self.action_dim * (0.5 + HALF_LOG_2PI)


class DiagGaussian(_Gaussian, core.DiagGaussian):
    def torch_mode(self, params: torch.Tensor) -> torch.Tensor:
        low = torch.as_tensor(self.low, dtype=params.dtype, device=params.device)
        high = torch.as_tensor(self.high, dtype=params.dtype, device=params.device)
        mean = params[:, : self.action_dim]
        return torch.maximum(torch.minimum(mean, high), low).reshape(params.shape[0], *self.shape)


class SquashedGaussian(_Gaussian, core.SquashedGaussian):
    def torch_mode(self, params: torch.Tensor) -> torch.Tensor:
        center = torch.as_tensor(self.center, dtype=params.dtype, device=params.device)
        scale = torch.as_tensor(self.scale, dtype=params.dtype, device=params.device)
        a = center + scale * torch.tanh(params[:, : self.action_dim])
        return a.reshape(params.shape[0], *self.shape)


class StateDependentGaussian(DiagGaussian, core.StateDependentGaussian):
    """gSDE's: ``DiagGaussian``'s log π and entropy on ``[μ ‖ log σ̃]``."""


FAMILY: dict[str, type[core.Distribution]] = {
    cls.name: cls
    for cls in (Categorical, MultiCategorical, Bernoulli, DiagGaussian, SquashedGaussian)
}


def distribution_for(
    space: gym.Space, continuous: str = "squashed_gaussian", owner: str = "the policy"
) -> Distribution:
    """The torch distribution over ``space``'s actions; ``continuous`` picks the Box one."""
    return core.distribution_for(space, continuous, owner, FAMILY)  # type: ignore[return-value]
