"""gSDE's actor-critic for PPO and A2C (``use_sde``), in Flax NNX.

Stable-Baselines3's on-policy MLP policy with ``use_sde``, as optix-torch's
``StateDependentActorCritic``: a features extractor, then separate actor and
critic MLPs (the actor's last hidden features z are an output). The actor's
head is the mean μ = W z + b; the exploration's log σ is a ``[dim z, dim A]``
``nnx.Param`` starting at ``log_std_init``, so it trains and checkpoints with
the network. ``__call__`` returns ``([μ ‖ log σ̃ ‖ z], V)`` with
σ̃² = (z²)·(σ²) + ε, z's gradient stopped there as SB3 detaches it
(``learn_features=False``): what ``StateDependentGaussian`` reads.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from optix_core.off_policy.gsde import SDE_EPSILON
from optix_jax.policies.distributions import StateDependentGaussian
from optix_jax.policies.extractors import (
    default_extractor,
    dense,
    features_dim,
    on_device,
    torch_linear,
)


class StateDependentActorCritic(nnx.Module):
    """``extractor`` → actor MLP → z → ``[μ ‖ log σ̃ ‖ z]``, and → critic MLP → V.

    Args:
        observation_space: what the network reads.
        action_space: the Box it acts in.
        hidden: both MLPs' widths (SB3's [64, 64]), tanh.
        log_std_init: where log σ starts (every entry).
        ortho_init: SB3's orthogonal initialisation of the MLPs (gains √2
            hidden, 0.01 the mean, 1 the value, zero biases); False initialises
            them as PyTorch's ``nn.Linear`` (rl-zoo's MountainCarContinuous PPO).
            The extractor is ``default_extractor``'s either way.
        seed: seeds the initialisation.
    """

    def __init__(
        self,
        observation_space: gym.Space,
        action_space: gym.spaces.Box,
        hidden: Sequence[int] = (64, 64),
        log_std_init: float = 0.0,
        ortho_init: bool = True,
        seed: int | None = None,
    ) -> None:
        if not hidden:
            raise ValueError("gSDE reads the actor's last hidden features: give hidden widths")
        rngs = nnx.Rngs(0 if seed is None else seed)

        def linear(in_dim: int, out_dim: int, gain: float) -> nnx.Linear:
            if ortho_init:
                return dense(in_dim, out_dim, gain, rngs)
            return torch_linear(in_dim, out_dim, rngs)

        self.extractor = default_extractor(observation_space, rngs)
        features = features_dim(self.extractor, observation_space)
        widths = list(itertools.pairwise([features, *hidden]))
        action_dim = int(np.prod(action_space.shape))
        self.latent = nnx.List([linear(a, b, math.sqrt(2)) for a, b in widths])
        self.mean = linear(hidden[-1], action_dim, 0.01)
        self.critic = nnx.List([linear(a, b, math.sqrt(2)) for a, b in widths])
        self.value = linear(hidden[-1], 1, 1.0)
        self.log_std = nnx.Param(
            on_device(np.full((hidden[-1], action_dim), log_std_init), jnp.float32)
        )
        self.distribution = StateDependentGaussian(action_space, hidden[-1])

    def __call__(self, obs: Any) -> tuple[jax.Array, jax.Array]:
        features = self.extractor(obs)
        z = v = features
        for layer in self.latent:
            z = jnp.tanh(layer(z))
        for layer in self.critic:
            v = jnp.tanh(layer(v))
        free = jax.lax.stop_gradient(z)
        variance = jnp.square(free) @ jnp.square(jnp.exp(self.log_std[...]))
        log_std = 0.5 * jnp.log(variance + SDE_EPSILON)
        return jnp.concatenate([self.mean(z), log_std, free], axis=-1), self.value(v)[:, 0]

    def sde_log_std(self) -> np.ndarray:
        """log σ as numpy, for drawing the exploration matrices."""
        return np.asarray(self.log_std[...], dtype=np.float32)
