"""gSDE's actor-critic for PPO and A2C (``use_sde``), as optix-torch's.

Stable-Baselines3's on-policy MLP policy with ``use_sde``: a features
extractor, then separate actor and critic MLPs (the actor's last hidden
features z are an output). The actor's head is the mean μ = W z + b; the
exploration's log σ is a ``[dim z, dim A]`` weight starting at
``log_std_init``. Calling the network returns ``([μ ‖ log σ̃ ‖ z], V)`` with
σ̃² = (z²)·(σ²) + ε, z behind ``stop_gradient`` there as SB3 detaches it
(``learn_features=False``): what ``StateDependentGaussian`` reads.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import keras
import numpy as np
import tensorflow as tf

from optix_core.off_policy.gsde import SDE_EPSILON
from optix_tf.policies.distributions import StateDependentGaussian
from optix_tf.policies.extractors import default_extractor, orthogonal
from optix_tf.policies.networks import mlp_head, torch_default_init
from optix_tf.policies.observations import probe_batch


class StateDependentActorCritic(keras.Model):
    """``extractor`` → actor MLP → z → ``[μ ‖ log σ̃ ‖ z]``, and → critic MLP → V.

    Args:
        observation_space: what the network reads (builds every weight).
        action_space: the Box it acts in.
        hidden: both MLPs' widths (SB3's [64, 64]), tanh.
        log_std_init: where log σ starts (every entry).
        ortho_init: SB3's orthogonal initialisation (gains √2 hidden, 0.01
            the mean, 1 the value, zero biases); False gives every layer
            PyTorch's default instead, as optix-torch's network keeps it
            (rl-zoo's MountainCarContinuous PPO).
        seed: seeds the initialisation (without touching global generators).
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
        super().__init__()
        if not hidden:
            raise ValueError("gSDE reads the actor's last hidden features: give hidden widths")
        seeds = np.random.default_rng(seed)
        action_dim = int(np.prod(action_space.shape))
        self.extractor = default_extractor(observation_space, seeds)
        self.latent = keras.Sequential(
            [
                keras.layers.Dense(
                    h, activation="tanh", kernel_initializer=orthogonal(math.sqrt(2), seeds)
                )
                for h in hidden
            ]
        )
        self.mean = keras.layers.Dense(action_dim, kernel_initializer=orthogonal(0.01, seeds))
        self.critic = mlp_head(hidden, 1, 1.0, "tanh", seeds)
        self.log_std = self.add_weight(
            shape=(hidden[-1], action_dim),
            initializer=keras.initializers.Constant(log_std_init),
            name="log_std",
        )
        self.distribution = StateDependentGaussian(action_space, hidden[-1])
        self(probe_batch(observation_space))  # build every weight now
        if not ortho_init:
            torch_default_init(self, seeds)

    def call(self, obs: Any) -> tuple[tf.Tensor, tf.Tensor]:
        features = self.extractor(obs)
        z = self.latent(features)
        free = tf.stop_gradient(z)
        variance = tf.square(free) @ tf.square(tf.exp(self.log_std))
        log_std = 0.5 * tf.math.log(variance + SDE_EPSILON)
        return tf.concat([self.mean(z), log_std, free], axis=-1), self.critic(features)[:, 0]

    def sde_log_std(self) -> np.ndarray:
        """log σ as numpy, for drawing the exploration matrices."""
        return np.asarray(self.log_std.numpy(), dtype=np.float32)
