"""The default actor-critic, built from the spaces, and the check that a user's networks fit.

``ActorCritic`` is the on-policy algorithms' network: a features extractor
(``extractors.default_extractor`` unless the user gives one), shared by
actor and critic, then the actor's and the critic's MLP heads. On flat
vectors it is the two MLPs Stable-Baselines3 builds for PPO ([64, 64] tanh,
orthogonal initialisation: gain √2 in hidden layers, 0.01 for the policy
head, 1 for the value head, zero biases); after a CNN the heads are linear.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import keras
import numpy as np
import tensorflow as tf

from optix_core.policies import numpy_networks
from optix_core.policies.networks import check_actor_critic_outputs
from optix_core.policies.numpy_networks import NUMPY_ACTIVATIONS
from optix_tf.policies.extractors import (
    FlattenExtractor,
    ImageCNN,
    default_extractor,
    features_dim,
    orthogonal,
)
from optix_tf.policies.observations import probe_batch


def mlp_head(
    hidden: Sequence[int],
    out_dim: int,
    out_gain: float,
    activation: str,
    seeds: np.random.Generator,
) -> keras.Sequential:
    """``hidden`` dense layers then a linear output, initialised orthogonally."""
    layers = [
        keras.layers.Dense(
            h, activation=activation, kernel_initializer=orthogonal(math.sqrt(2), seeds)
        )
        for h in hidden
    ]
    layers.append(keras.layers.Dense(out_dim, kernel_initializer=orthogonal(out_gain, seeds)))
    return keras.Sequential(layers)


class ActorCritic(keras.Model):
    """``extractor`` (shared) → actor and critic heads: ``(policy_output [B, policy_dim], value [B])``.

    Args:
        observation_space: what the network reads (probes the extractor's width
            and builds every weight).
        policy_dim: the action distribution's ``param_dim``.
        extractor: any Keras layer mapping observations to ``[B, features]``;
            default ``extractors.default_extractor(observation_space)``.
        hidden: the heads' hidden widths; default (64, 64) on features of
            flat vectors, none (linear heads) after a CNN, as SB3's policies.
        activation: the heads' activation ("tanh" or "relu").
        seed: seeds the initialisation (without touching global generators).
        ortho_init: SB3's orthogonal initialisation (the default); False gives
            every layer PyTorch's default, as SB3's ``ortho_init=False``.
    """

    def __init__(
        self,
        observation_space: gym.Space,
        policy_dim: int,
        extractor: keras.layers.Layer | None = None,
        hidden: Sequence[int] | None = None,
        activation: str = "tanh",
        seed: int | None = None,
        ortho_init: bool = True,
    ) -> None:
        super().__init__()
        seeds = np.random.default_rng(seed)
        self.extractor = extractor or default_extractor(observation_space, seeds)
        self.features_dim = features_dim(self.extractor, observation_space)
        if hidden is None:
            hidden = () if isinstance(self.extractor, ImageCNN) else (64, 64)
        self.actor_head = mlp_head(hidden, policy_dim, 0.01, activation, seeds)
        self.critic_head = mlp_head(hidden, 1, 1.0, activation, seeds)
        self(probe_batch(observation_space))  # build every weight now
        if not ortho_init:
            torch_default_init(self, seeds)

    def call(self, obs: Any) -> tuple[tf.Tensor, tf.Tensor]:
        features = self.extractor(obs)
        return self.actor_head(features), self.critic_head(features)[:, 0]


class NumpyActorCritic(numpy_networks.NumpyActorCritic):
    """A snapshot of ``ActorCritic``'s weights that runs its forward pass in numpy
    (``optix_core.policies.numpy_networks``): take a new one after the weights change."""

    @classmethod
    def of(cls, network: keras.Model) -> NumpyActorCritic | None:
        """The snapshot, where ``network`` is an ``ActorCritic`` on flat observations
        whose heads are dense layers with tanh, relu or no activation; else None."""
        if not isinstance(network, ActorCritic) or type(network.extractor) is not FlattenExtractor:
            return None
        heads = []
        for head in (network.actor_head, network.critic_head):
            layers = []
            for layer in head.layers:
                name = getattr(layer.activation, "__name__", "")
                if type(layer) is not keras.layers.Dense or name not in NUMPY_ACTIVATIONS:
                    return None
                layers.append((layer.kernel.numpy(), layer.bias.numpy(), name))
            heads.append(layers)
        return cls(heads)


def probe_input(network: keras.Model, observation_space: gym.Space | None) -> Any:
    """Two observations to probe ``network`` with: from the space, else shaped by
    its declared input; None when neither tells (the network is trusted)."""
    if observation_space is not None:
        return probe_batch(observation_space)
    try:
        shape = network.inputs[0].shape
    except (AttributeError, IndexError, ValueError, TypeError):
        return None
    if shape is None or any(d is None for d in shape[1:]):
        return None
    return tf.zeros((2, *shape[1:]), tf.float32)


def check_actor_critic(
    actor: keras.Model,
    critic: keras.Model | None,
    observation_space: gym.Space | None,
    policy_dim: int,
    owner: str,
) -> None:
    """Run two observations through the networks and insist on the shapes the
    distribution needs, before any work starts."""
    probe = probe_input(actor, observation_space)
    if probe is None:
        return
    try:
        out = actor(probe)
        value = None if critic is None else critic(probe)
    except Exception as exc:
        raise ValueError(
            f"{owner}: the networks fail on observations from {observation_space} ({exc})"
        ) from None
    check_actor_critic_outputs(
        out, None if value is None else tuple(value.shape), policy_dim, owner
    )


def torch_default_init(network: keras.layers.Layer, seeds: np.random.Generator) -> None:
    """PyTorch's default ``nn.Linear`` and ``nn.Conv2d`` initialisation on every
    dense and convolutional layer of ``network`` (built): kernel and bias
    uniform in ±1/√fan_in, drawn from ``seeds``."""
    for layer in network._flatten_layers(include_self=False, recursive=True):
        if isinstance(layer, keras.layers.Dense | keras.layers.Conv2D):
            bound = 1.0 / math.sqrt(math.prod(layer.kernel.shape[:-1]))
            for variable in (layer.kernel, layer.bias):
                variable.assign(seeds.uniform(-bound, bound, variable.shape).astype(np.float32))
