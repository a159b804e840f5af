"""NoisyLinear: a Keras dense layer with learned, factorised Gaussian weight noise.

Fortunato et al. (2018), "Noisy Networks for Exploration", section 3 (b):

    y   = x (μ_w + σ_w ⊙ ε_w) + μ_b + σ_b ⊙ ε_b        (Keras's kernel layout: [in, out])
    ε_w = f(ε_in) f(ε_out)ᵀ,   ε_b = f(ε_out),   f(x) = sgn(x) √|x|,   ε_in, ε_out ~ N(0, 1)
    μ ~ U(−1/√p, 1/√p),   σ = σ₀ / √p   (p inputs, σ₀ = 0.5)

Called with ``training=True`` the layer uses the noise it holds; otherwise
(Keras's default, and what a deterministic policy acts with) the mean
weights μ alone. The noise f(ε_in), f(ε_out) lives in two variables of the
layer that are not among its weights (neither saved in a checkpoint nor
copied to a target network, as torch's non-persistent buffers) and changes
only through ``set_noise``: whoever draws the numbers owns the randomness.
The agents draw them from their numpy generators (``draw_noise``), so noise
is reproducible and resumes exactly from a checkpoint, and no TensorFlow op
needs a seed. ``set_noise`` may run inside a ``tf.function``: a compiled
update assigns fresh noise before each gradient step.
"""

from __future__ import annotations

import math
from typing import Any

import keras
import numpy as np
import tensorflow as tf


@keras.saving.register_keras_serializable(package="optix_tf")
class NoisyLinear(keras.layers.Layer):
    """``keras.layers.Dense(units)`` (no activation) with factorised Gaussian noise on its
    kernel and bias; ``sigma_0`` is σ₀, ``seed`` seeds μ's initialisation."""

    def __init__(self, units: int, sigma_0: float = 0.5, seed: int | None = None, **kwargs: Any):
        super().__init__(**kwargs)
        self.units, self.sigma_0, self.seed = int(units), float(sigma_0), seed

    def build(self, input_shape: Any) -> None:
        fan_in = int(input_shape[-1])
        bound = 1.0 / math.sqrt(fan_in)
        seeds = np.random.default_rng(self.seed)

        def uniform() -> keras.initializers.Initializer:
            return keras.initializers.RandomUniform(
                -bound, bound, seed=int(seeds.integers(2**31 - 1))
            )

        sigma = keras.initializers.Constant(self.sigma_0 * bound)
        self.kernel_mu = self.add_weight(
            shape=(fan_in, self.units), initializer=uniform(), name="kernel_mu"
        )
        self.kernel_sigma = self.add_weight(
            shape=(fan_in, self.units), initializer=sigma, name="kernel_sigma"
        )
        self.bias_mu = self.add_weight(shape=(self.units,), initializer=uniform(), name="bias_mu")
        self.bias_sigma = self.add_weight(shape=(self.units,), initializer=sigma, name="bias_sigma")
        # f(ε_in) and f(ε_out), zero until the first set_noise; held outside Keras's
        # tracking so that they are not weights (not saved, not copied to a target).
        # Created eagerly (init_scope) even when Keras builds the layer in a symbolic trace.
        with tf.init_scope():
            self._noise = _Untracked(
                (
                    tf.Variable(tf.zeros([fan_in]), trainable=False, name="eps_in"),
                    tf.Variable(tf.zeros([self.units]), trainable=False, name="eps_out"),
                )
            )
        self.in_features = fan_in

    @property
    def eps_in(self) -> tf.Variable:
        """f(ε_in), ``[in_features]``."""
        return self._noise.value[0]

    @property
    def eps_out(self) -> tf.Variable:
        """f(ε_out), ``[units]``."""
        return self._noise.value[1]

    @property
    def noise_size(self) -> int:
        """How many standard normal draws one resampling takes: in_features + units."""
        return self.in_features + self.units

    def set_noise(self, scaled: tf.Tensor) -> None:
        """Take ``noise_size`` values of f(ε): f(ε_in) first, then f(ε_out)."""
        self.eps_in.assign(scaled[: self.in_features])
        self.eps_out.assign(scaled[self.in_features :])

    def call(self, x: tf.Tensor, training: bool | None = None) -> tf.Tensor:
        if not training:
            return tf.matmul(x, self.kernel_mu) + self.bias_mu
        # One matrix product on the noisy kernel: for a minibatch this costs less than the
        # factored form (x ⊙ f(ε_in)) σ_w ⊙ f(ε_out), which takes two, forward and backward.
        kernel = self.kernel_mu + self.kernel_sigma * (self.eps_in[:, None] * self.eps_out[None, :])
        bias = self.bias_mu + self.bias_sigma * self.eps_out
        return tf.matmul(x, kernel) + bias

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "units": self.units,
            "sigma_0": self.sigma_0,
            "seed": self.seed,
        }


class _Untracked:
    """A value a Keras layer holds without tracking it."""

    def __init__(self, value: Any) -> None:
        self.value = value


def noisy_layers(network: keras.layers.Layer) -> list[NoisyLinear]:
    """Every NoisyLinear inside ``network`` (built), in Keras's layer order."""
    return [
        layer
        for layer in network._flatten_layers(include_self=True, recursive=True)
        if isinstance(layer, NoisyLinear)
    ]


def noise_size(layers: list[NoisyLinear]) -> int:
    """How many standard normal draws resampling every layer of ``layers`` takes."""
    return sum(layer.noise_size for layer in layers)


def draw_noise(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """f(ε) = sgn(ε) √|ε| of standard normal draws ε from ``rng``, float32, ``shape``."""
    normal = rng.standard_normal(shape, dtype=np.float32)
    return np.sign(normal) * np.sqrt(np.abs(normal))


def set_noise(layers: list[NoisyLinear], scaled: tf.Tensor) -> None:
    """Give each layer its slice of ``scaled`` (``noise_size(layers)`` values of f(ε)), in
    order; usable inside a ``tf.function``."""
    start = 0
    for layer in layers:
        layer.set_noise(scaled[start : start + layer.noise_size])
        start += layer.noise_size
