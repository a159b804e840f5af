"""Action distributions in JAX: optix-core's, with learning's half added.

``optix_core.policies.distributions`` holds what every backend shares
(sampling and the mode in numpy from the agent's numpy generator, learn
actions, the table of spaces and distributions). Here each class gains, in
JAX, ``log_prob`` and ``entropy`` (batched and differentiable inside a
jitted update) and ``sample_jax`` / ``mode_jax``: the pure sampling a
compiled pipeline acts with, its randomness from a ``jax.random`` key.
"""

from __future__ import annotations

import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np

from optix_core.policies import distributions as core
from optix_core.policies.distributions import HALF_LOG_2PI, LOG_2, RAW


class Distribution(core.Distribution):
    """optix-core's interface, plus learning's half and pure sampling in JAX.

    Two distributions of the same class over equal spaces are equal (and hash
    alike): a distribution is a static argument of the jitted updates, so
    agents built alike share their compilations."""

    def _identity(self) -> tuple:
        def frozen(v: object) -> object:
            if isinstance(v, np.ndarray):
                return (v.dtype.str, v.shape, v.tobytes())
            return tuple(v) if isinstance(v, list) else v

        return tuple((k, frozen(v)) for k, v in sorted(vars(self).items()))

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and other._identity() == self._identity()

    def __hash__(self) -> int:
        return hash((type(self), self._identity()))

    def log_prob(self, params: jax.Array, actions: jax.Array) -> jax.Array:
        """log π(a|s) per row of learn actions ``[B, action_dim]``."""
        raise NotImplementedError

    def entropy(self, params: jax.Array) -> jax.Array:
        """H[π(·|s)] per row (for the Gaussians, of the Gaussian before clipping or squashing)."""
        raise NotImplementedError

    def sample_jax(self, params: jax.Array, key: jax.Array) -> tuple[jax.Array, dict]:
        """Environment actions and ``policy_info`` (``log_probs`` as ``log_prob`` reads
        them, and the learn actions where they differ from the env's), pure."""
        raise NotImplementedError

    def mode_jax(self, params: jax.Array) -> jax.Array:
        """The deterministic environment actions, pure."""
        raise NotImplementedError


def _categorical_log_prob(logits: jax.Array, index: jax.Array) -> jax.Array:
    log_p = jax.nn.log_softmax(logits)
    return jnp.take_along_axis(log_p, index[:, None], axis=1)[:, 0]


def _categorical_entropy(logits: jax.Array) -> jax.Array:
    log_p = jax.nn.log_softmax(logits)
    return -jnp.sum(jnp.exp(log_p) * log_p, axis=-1)


class Categorical(Distribution, core.Categorical):
    def log_prob(self, params: jax.Array, actions: jax.Array) -> jax.Array:
        return _categorical_log_prob(params, actions[:, 0].astype(jnp.int32))

    def entropy(self, params: jax.Array) -> jax.Array:
        return _categorical_entropy(params)

    def sample_jax(self, params: jax.Array, key: jax.Array) -> tuple[jax.Array, dict]:
        index = jax.random.categorical(key, params)
        log_probs = _categorical_log_prob(params, index)
        return index + self.start, {"log_probs": log_probs}

    def mode_jax(self, params: jax.Array) -> jax.Array:
        return jnp.argmax(params, axis=-1) + self.start


class MultiCategorical(Distribution, core.MultiCategorical):
    def log_prob(self, params: jax.Array, actions: jax.Array) -> jax.Array:
        index = actions.astype(jnp.int32)
        return sum(_categorical_log_prob(b, index[:, i]) for i, b in enumerate(self.blocks(params)))

    def entropy(self, params: jax.Array) -> jax.Array:
        return sum(_categorical_entropy(b) for b in self.blocks(params))

    def sample_jax(self, params: jax.Array, key: jax.Array) -> tuple[jax.Array, dict]:
        keys = jax.random.split(key, self.action_dim)
        index = jnp.stack(
            [jax.random.categorical(k, b) for k, b in zip(keys, self.blocks(params), strict=True)],
            axis=1,
        )
        log_probs = self.log_prob(params, index)
        start = jnp.asarray(self.start)
        return (index + start).reshape(len(index), *self.shape), {"log_probs": log_probs}

    def mode_jax(self, params: jax.Array) -> jax.Array:
        index = jnp.stack([jnp.argmax(b, axis=-1) for b in self.blocks(params)], axis=1)
        return (index + jnp.asarray(self.start)).reshape(len(index), *self.shape)


class Bernoulli(Distribution, core.Bernoulli):
    def log_prob(self, params: jax.Array, actions: jax.Array) -> jax.Array:
        # log σ(ℓ) for a 1, log σ(−ℓ) for a 0
        signed = jnp.where(actions > 0.5, params, -params)
        return jnp.sum(jax.nn.log_sigmoid(signed), axis=-1)

    def entropy(self, params: jax.Array) -> jax.Array:
        p = jax.nn.sigmoid(params)
        return -jnp.sum(p * jax.nn.log_sigmoid(params) + (1 - p) * jax.nn.log_sigmoid(-params), -1)

    def sample_jax(self, params: jax.Array, key: jax.Array) -> tuple[jax.Array, dict]:
        bits = jax.random.bernoulli(key, jax.nn.sigmoid(params))
        log_probs = self.log_prob(params, bits.astype(jnp.float32))
        return bits.astype(jnp.int8).reshape(len(bits), *self.shape), {"log_probs": log_probs}

    def mode_jax(self, params: jax.Array) -> jax.Array:
        return (params > 0).astype(jnp.int8).reshape(len(params), *self.shape)


class _Gaussian(Distribution, core.Gaussian):
    def log_prob(self, params: jax.Array, actions: jax.Array) -> jax.Array:
        """The Gaussian log-density of the learn actions u."""
        mean, log_std = self.split(params, jnp.clip)
        z = (actions - mean) * jnp.exp(-log_std)
        return -jnp.sum(0.5 * z * z + log_std, axis=-1) - self.action_dim * HALF_LOG_2PI

    def entropy(self, params: jax.Array) -> jax.Array:
        log_std = self.split(params, jnp.clip)[1]
        return jnp.sum(log_std, axis=-1) + self.action_dim * (0.5 + HALF_LOG_2PI)

    def sample_jax(self, params: jax.Array, key: jax.Array) -> tuple[jax.Array, dict]:
        """u ~ N(μ, σ²); ``log_probs`` is the Gaussian density of u, the term the
        update's ratio reads (the squashing's Jacobian cancels in it)."""
        mean, log_std = self.split(params, jnp.clip)
        u = mean + jnp.exp(log_std) * jax.random.normal(key, mean.shape)
        return self.env_actions(u), {"log_probs": self.log_prob(params, u), RAW: u}

    def mode_jax(self, params: jax.Array) -> jax.Array:
        return self.env_actions(params[:, : self.action_dim])

    def env_actions(self, u: jax.Array) -> jax.Array:
        raise NotImplementedError


class DiagGaussian(_Gaussian, core.DiagGaussian):
    def env_actions(self, u: jax.Array) -> jax.Array:
        return jnp.clip(u, self.low, self.high).reshape(len(u), *self.shape)


class SquashedGaussian(_Gaussian, core.SquashedGaussian):
    def env_actions(self, u: jax.Array) -> jax.Array:
        a = self.center + self.scale * jnp.tanh(u)
        return jnp.clip(a, self.low, self.high).astype(jnp.float32).reshape(len(u), *self.shape)


class StateDependentGaussian(DiagGaussian, core.StateDependentGaussian):
    """gSDE's: ``DiagGaussian``'s log π and entropy on ``[μ ‖ log σ̃]`` (unclamped).
    ``sample_jax`` draws as if θ_ε were fresh; held matrices are acting's, on the host."""


def squash_correction(u: jax.Array) -> jax.Array:
    """log(1 − tanh²(u)) = 2 (log 2 − u − softplus(−2u)), per element (SAC's eq. 21 term)."""
    return 2.0 * (LOG_2 - u - jax.nn.softplus(-2.0 * u))


FAMILY: dict[str, type[core.Distribution]] = {
    cls.name: cls
    for cls in (Categorical, MultiCategorical, Bernoulli, DiagGaussian, SquashedGaussian)
}


def distribution_for(
    space: gym.Space, continuous: str = "squashed_gaussian", owner: str = "the policy"
) -> Distribution:
    """The JAX distribution over ``space``'s actions; ``continuous`` picks the Box one."""
    return core.distribution_for(space, continuous, owner, FAMILY)  # type: ignore[return-value]
