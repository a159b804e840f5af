"""Action distributions in TensorFlow: optix-core's, with learning's half added.

``optix_core.policies.distributions`` holds what every backend shares
(sampling and the mode in numpy from the agent's numpy generator, learn
actions, the table of spaces and distributions). Here each class gains
``log_prob`` and ``entropy`` in TensorFlow, batched and differentiable
inside the compiled update.
"""

from __future__ import annotations

import gymnasium as gym
import tensorflow as tf

from optix_core.policies import distributions as core
from optix_core.policies.distributions import HALF_LOG_2PI


class Distribution(core.Distribution):
    """optix-core's interface, plus learning's half in TensorFlow."""

    def log_prob(self, params: tf.Tensor, actions: tf.Tensor) -> tf.Tensor:
        """log π(a|s) per row of learn actions ``[B, action_dim]``."""
        raise NotImplementedError

    def entropy(self, params: tf.Tensor) -> tf.Tensor:
        """H[π(·|s)] per row (for the Gaussians, of the Gaussian before clipping or squashing)."""
        raise NotImplementedError


def _categorical_log_prob(logits: tf.Tensor, index: tf.Tensor) -> tf.Tensor:
    return tf.gather(tf.nn.log_softmax(logits), index, axis=1, batch_dims=1)


def _categorical_entropy(logits: tf.Tensor) -> tf.Tensor:
    log_p = tf.nn.log_softmax(logits)
    return -tf.reduce_sum(tf.exp(log_p) * log_p, axis=-1)


class Categorical(Distribution, core.Categorical):
    def log_prob(self, params: tf.Tensor, actions: tf.Tensor) -> tf.Tensor:
        return _categorical_log_prob(params, tf.cast(actions[:, 0], tf.int32))

    def entropy(self, params: tf.Tensor) -> tf.Tensor:
        return _categorical_entropy(params)


class MultiCategorical(Distribution, core.MultiCategorical):
    def log_prob(self, params: tf.Tensor, actions: tf.Tensor) -> tf.Tensor:
        index = tf.cast(actions, tf.int32)
        return tf.add_n(
            [_categorical_log_prob(b, index[:, i]) for i, b in enumerate(self.blocks(params))]
        )

    def entropy(self, params: tf.Tensor) -> tf.Tensor:
        return tf.add_n([_categorical_entropy(b) for b in self.blocks(params)])


class Bernoulli(Distribution, core.Bernoulli):
    def log_prob(self, params: tf.Tensor, actions: tf.Tensor) -> tf.Tensor:
        bce = tf.nn.sigmoid_cross_entropy_with_logits(labels=actions, logits=params)
        return -tf.reduce_sum(bce, axis=-1)

    def entropy(self, params: tf.Tensor) -> tf.Tensor:
        bce = tf.nn.sigmoid_cross_entropy_with_logits(labels=tf.sigmoid(params), logits=params)
        return tf.reduce_sum(bce, axis=-1)


class _Gaussian(Distribution, core.Gaussian):
    def log_prob(self, params: tf.Tensor, actions: tf.Tensor) -> tf.Tensor:
        """The Gaussian log-density of the learn actions u."""
        mean, log_std = self.split(params, tf.clip_by_value)
        z = (actions - mean) * tf.exp(-log_std)
        return (
            -tf.reduce_sum(0.5 * tf.square(z) + log_std, axis=-1) - self.action_dim * HALF_LOG_2PI
        )

    def entropy(self, params: tf.Tensor) -> tf.Tensor:
        log_std = self.split(params, tf.clip_by_value)[1]
        return tf.reduce_sum(log_std, axis=-1) + self.action_dim * (0.5 + HALF_LOG_2PI)


class DiagGaussian(_Gaussian, core.DiagGaussian):
    pass


class SquashedGaussian(_Gaussian, core.SquashedGaussian):
    pass


class StateDependentGaussian(DiagGaussian, core.StateDependentGaussian):
    """gSDE's: ``DiagGaussian``'s log π and entropy on ``[μ ‖ log σ̃]``."""


FAMILY: dict[str, type[core.Distribution]] = {
    cls.name: cls
    for cls in (Categorical, MultiCategorical, Bernoulli, DiagGaussian, SquashedGaussian)
}


def distribution_for(
    space: gym.Space, continuous: str = "squashed_gaussian", owner: str = "the policy"
) -> Distribution:
    """The TensorFlow distribution over ``space``'s actions; ``continuous`` picks the Box one."""
    return core.distribution_for(space, continuous, owner, FAMILY)  # type: ignore[return-value]
