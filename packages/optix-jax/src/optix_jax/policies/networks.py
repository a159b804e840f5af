"""The default actor-critic, built from the spaces, and the check that a user's networks fit.

``ActorCritic`` is the on-policy algorithms' network: a features extractor
(``extractors.default_extractor`` unless the user gives one), shared by
actor and critic, then the actor's and the critic's MLP heads. On flat
vectors it is the two MLPs Stable-Baselines3 builds for PPO ([64, 64] tanh,
orthogonal initialisation: gain √2 in hidden layers, 0.01 for the policy
head, 1 for the value head, zero biases); after a CNN the heads are linear.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import jax
from flax import nnx

from optix_core.policies.networks import check_actor_critic_outputs
from optix_jax.policies.extractors import (
    ImageCNN,
    default_extractor,
    dense,
    features_dim,
    torch_linear,
)
from optix_jax.policies.observations import probe, probe_batch

ACTIVATIONS = {"tanh": jax.nn.tanh, "relu": jax.nn.relu}


class MLP(nnx.Module):
    """``hidden`` dense layers with ``activation``, then a linear output of ``out_dim``,
    initialised orthogonally (gain √2 inside, ``out_gain`` at the output), or with
    ``ortho_init=False`` as PyTorch initialises ``nn.Linear``."""

    def __init__(
        self,
        in_dim: int,
        hidden: Sequence[int],
        out_dim: int,
        out_gain: float,
        activation: str,
        rngs: nnx.Rngs,
        ortho_init: bool = True,
    ) -> None:
        if activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}; use one of {sorted(ACTIVATIONS)}")

        def linear(a: int, b: int, gain: float) -> nnx.Linear:
            return dense(a, b, gain, rngs) if ortho_init else torch_linear(a, b, rngs)

        dims = [in_dim, *hidden]
        self.hidden = nnx.List([linear(a, b, math.sqrt(2)) for a, b in itertools.pairwise(dims)])
        self.out = linear(dims[-1], out_dim, out_gain)
        self.activation = activation

    def __call__(self, x: jax.Array) -> jax.Array:
        act = ACTIVATIONS[self.activation]
        for layer in self.hidden:
            x = act(layer(x))
        return self.out(x)


class ActorCritic(nnx.Module):
    """``extractor`` (shared) → actor and critic heads: ``(policy_output [B, policy_dim], value [B])``.

    Args:
        observation_space: what the network reads (probes the extractor's width).
        policy_dim: the action distribution's ``param_dim``.
        extractor: any ``nnx.Module`` mapping observations to ``[B, features]``;
            default ``extractors.default_extractor(observation_space)``.
        hidden: the heads' hidden widths; default (64, 64) on features of
            flat vectors, none (linear heads) after a CNN, as SB3's policies.
        activation: the heads' activation ("tanh" or "relu").
        seed: seeds the initialisation.
        ortho_init: SB3's orthogonal initialisation of the heads (the default);
            False initialises them as PyTorch's ``nn.Linear``, as SB3's
            ``ortho_init=False``.
    """

    def __init__(
        self,
        observation_space: gym.Space,
        policy_dim: int,
        extractor: nnx.Module | None = None,
        hidden: Sequence[int] | None = None,
        activation: str = "tanh",
        seed: int | None = None,
        ortho_init: bool = True,
    ) -> None:
        rngs = nnx.Rngs(0 if seed is None else seed)
        self.extractor = extractor or default_extractor(observation_space, rngs)
        width = features_dim(self.extractor, observation_space)
        if hidden is None:
            hidden = () if isinstance(self.extractor, ImageCNN) else (64, 64)
        self.actor_head = MLP(width, hidden, policy_dim, 0.01, activation, rngs, ortho_init)
        self.critic_head = MLP(width, hidden, 1, 1.0, activation, rngs, ortho_init)

    def __call__(self, obs: Any) -> tuple[jax.Array, jax.Array]:
        features = self.extractor(obs)
        return self.actor_head(features), self.critic_head(features)[:, 0]


def check_actor_critic(
    actor: nnx.Module,
    critic: nnx.Module | None,
    observation_space: gym.Space | None,
    policy_dim: int,
    owner: str,
) -> None:
    """Run two observations through the networks and insist on the shapes the
    distribution needs, before any work starts (without a space the networks are trusted)."""
    if observation_space is None:
        return
    batch = probe_batch(observation_space)
    try:
        out = probe(actor, batch)
        value = None if critic is None else probe(critic, batch)
    except Exception as exc:
        raise ValueError(
            f"{owner}: the networks fail on observations from {observation_space} ({exc})"
        ) from None
    check_actor_critic_outputs(
        out, None if value is None else tuple(value.shape), policy_dim, owner
    )
