"""Applying a step's gradients: the agent's Keras optimizer, Adam's step fused per variable.

Keras 3 writes Adam's step as about a dozen small ops per variable (casts,
powers, two ``assign_add``, a square root, a division, an ``assign_sub``); in
the compiled update of a small network they cost as much as the forward and
backward passes together (TF PPO on CartPole, rl-zoo settings, measured in
one process turn by turn: 38.3 ms a window through Keras's Adam, 30.1 ms
fused). TensorFlow's ``ResourceApplyAdam`` kernel does the same arithmetic
as one op per variable (Kingma & Ba 2015, Algorithm 1, in the form Keras
writes it):

    m ← m + (1 − β₁)(g − m),   v ← v + (1 − β₂)(g² − v),
    θ ← θ − α·m / (√v + ε),    α = lr·√(1 − β₂ᵗ) / (1 − β₁ᵗ),  t = iterations + 1

on the optimizer's own slots, learning rate and iteration count, so its
state, its checkpoint and ``set_learning_rate`` are what they were. Any other
optimizer, or an Adam with an option the kernel does not have (AMSGrad,
weight decay, gradient clipping, EMA, loss scaling, accumulation), one not
built yet, variables not float32, or a Keras without the internals read here
(``KERAS_INTERNALS``) step through ``optimizer.apply_gradients``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras
import tensorflow as tf

# What of Keras 3's Adam the fused step reads beyond its public API: where a Keras
# release lacks one, every step goes through ``apply_gradients``.
KERAS_INTERNALS = ("_get_variable_index", "_momentums", "_velocities")


def apply_gradients(
    optimizer: keras.optimizers.Optimizer, grads: Sequence[Any], variables: Sequence[Any]
) -> None:
    """One step of ``optimizer`` on ``variables`` (usable inside a ``tf.function``)."""
    if not fusable(optimizer, variables):
        optimizer.apply_gradients(zip(grads, variables, strict=True))
        return
    dtype = tf.float32
    step = tf.cast(optimizer.iterations + 1, dtype)
    beta_1, beta_2 = tf.constant(optimizer.beta_1, dtype), tf.constant(optimizer.beta_2, dtype)
    settings = {
        "beta1_power": tf.pow(beta_1, step),
        "beta2_power": tf.pow(beta_2, step),
        "lr": tf.cast(optimizer.learning_rate, dtype),
        "beta1": beta_1,
        "beta2": beta_2,
        "epsilon": tf.constant(optimizer.epsilon, dtype),
    }
    for grad, variable in zip(grads, variables, strict=True):
        index = optimizer._get_variable_index(variable)
        tf.raw_ops.ResourceApplyAdam(
            var=_handle(variable),
            m=_handle(optimizer._momentums[index]),
            v=_handle(optimizer._velocities[index]),
            grad=tf.cast(grad, dtype),
            **settings,
        )
    optimizer.iterations.assign_add(1)


def fusable(optimizer: keras.optimizers.Optimizer, variables: Sequence[Any]) -> bool:
    """Whether ``ResourceApplyAdam`` takes ``optimizer``'s step on ``variables`` exactly."""
    return (
        type(optimizer) is keras.optimizers.Adam
        and all(hasattr(optimizer, name) for name in KERAS_INTERNALS)
        and all(tf.as_dtype(variable.dtype) == tf.float32 for variable in variables)
        and optimizer.built
        and not optimizer.amsgrad
        and optimizer.weight_decay is None
        and optimizer.clipnorm is None
        and optimizer.clipvalue is None
        and optimizer.global_clipnorm is None
        and not optimizer.use_ema
        and optimizer.loss_scale_factor is None
        and optimizer.gradient_accumulation_steps is None
    )


def _handle(variable: Any) -> tf.Tensor:
    """The resource handle of a Keras (or TensorFlow) variable."""
    return getattr(variable, "value", variable).handle
