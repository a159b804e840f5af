"""Features extractors: observations → one feature vector per observation (Keras layers).

The default is chosen from the observation space, as in optix-torch:

- flat Box: ``FlattenExtractor`` (no weights: the MLP heads read the vector);
- image Box (uint8 or bool planes, ``[H, W, C]`` or ``[C, H, W]``):
  ``NatureCNN`` (Mnih et al. 2015) from 36 pixels a side up, ``SmallCNN``
  (Young & Tian 2019, MinAtar's network) below; both scale pixels to [0, 1]
  inside the network, so images travel and are stored in their own dtype;
- Discrete and MultiDiscrete: ``OneHotExtractor``; MultiBinary: ``FlattenExtractor``;
- Dict: ``CombinedExtractor``, each key's default extractor, concatenated.

Any Keras layer or model that maps a batch of observations (as
``observations.to_tensor`` makes them) to ``[B, features]`` serves as an extractor.
"""

from __future__ import annotations

import math

import gymnasium as gym
import keras
import numpy as np
import tensorflow as tf

from optix_core.policies.observations import one_hot_layout
from optix_tf.policies.observations import check_observation_space, probe_batch

NATURE_CNN_MIN_SIDE = 36  # NatureCNN's three convolutions need 36 pixels a side


def is_image_space(space: gym.Space) -> bool:
    """Planes of pixels: a uint8 or bool Box of rank 3. A float Box is a flat vector."""
    return (
        isinstance(space, gym.spaces.Box)
        and space.dtype in (np.uint8, np.bool_)
        and len(space.shape) == 3
    )


def channels_last(shape: tuple[int, ...]) -> bool:
    """``[H, W, C]`` (gymnasium's layout) unless the first axis is the smallest."""
    return not (shape[0] < shape[1] and shape[0] < shape[2] and shape[0] < shape[-1])


def orthogonal(gain: float, seeds: np.random.Generator) -> keras.initializers.Initializer:
    """Stable-Baselines3's initialisation, seeded from the network's own stream."""
    return keras.initializers.Orthogonal(gain=gain, seed=int(seeds.integers(2**31 - 1)))


class FlattenExtractor(keras.layers.Layer):
    """``[B, ...]`` → ``[B, prod(...)]`` as float32."""

    def call(self, obs: tf.Tensor) -> tf.Tensor:
        return tf.reshape(tf.cast(obs, tf.float32), [tf.shape(obs)[0], -1])


class OneHotExtractor(keras.layers.Layer):
    """Discrete indices ``[B]`` → one-hot ``[B, n]``; MultiDiscrete ``[B, ...]`` →
    each component's one-hot, concatenated ``[B, sum(nvec)]``."""

    def __init__(self, space: gym.spaces.Discrete | gym.spaces.MultiDiscrete, **kwargs) -> None:
        super().__init__(**kwargs)
        nvec, start = one_hot_layout(space)
        self.width = int(nvec.sum())
        # where each component's one-hot begins, less its first value
        self.offsets = tf.constant(np.concatenate([[0], np.cumsum(nvec)[:-1]]) - start, tf.int32)

    def call(self, obs: tf.Tensor) -> tf.Tensor:
        index = tf.cast(tf.reshape(obs, [tf.shape(obs)[0], -1]), tf.int32) + self.offsets
        return tf.reduce_sum(tf.one_hot(index, self.width, dtype=tf.float32), axis=1)


class ImageCNN(keras.layers.Layer):
    """uint8 images → features: scale to [0, 1], channels last, convolutions, a dense layer."""

    def __init__(
        self,
        space: gym.spaces.Box,
        convs: list[keras.layers.Layer],
        features_dim: int,
        seeds: np.random.Generator,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.channels_last = channels_last(tuple(space.shape))
        high = float(np.max(space.high))
        self.scale = 1.0 / high if high > 0 else 1.0
        self.convs = [*convs, keras.layers.Flatten()]
        self.linear = keras.layers.Dense(
            features_dim, activation="relu", kernel_initializer=orthogonal(math.sqrt(2), seeds)
        )
        self.features_dim = features_dim

    def call(self, obs: tf.Tensor) -> tf.Tensor:
        x = (
            tf.cast(obs, tf.float32) * self.scale
            if obs.dtype == tf.uint8
            else tf.cast(obs, tf.float32)
        )
        if not self.channels_last:
            x = tf.transpose(x, [0, 2, 3, 1])
        for layer in self.convs:
            x = layer(x)
        return self.linear(x)


def _conv(filters: int, kernel: int, stride: int, seeds: np.random.Generator) -> keras.layers.Layer:
    return keras.layers.Conv2D(
        filters,
        kernel,
        strides=stride,
        activation="relu",
        kernel_initializer=orthogonal(math.sqrt(2), seeds),
    )


class NatureCNN(ImageCNN):
    """Mnih et al. (2015): conv 32×8×8/4, 64×4×4/2, 64×3×3/1, dense ``features_dim`` (512), ReLUs."""

    def __init__(
        self, space: gym.spaces.Box, seeds: np.random.Generator, features_dim: int = 512, **kwargs
    ) -> None:
        convs = [_conv(32, 8, 4, seeds), _conv(64, 4, 2, seeds), _conv(64, 3, 1, seeds)]
        super().__init__(space, convs, features_dim, seeds, **kwargs)


class SmallCNN(ImageCNN):
    """Young & Tian (2019), MinAtar's network: conv 16×3×3/1, dense ``features_dim`` (128), ReLUs."""

    def __init__(
        self, space: gym.spaces.Box, seeds: np.random.Generator, features_dim: int = 128, **kwargs
    ) -> None:
        super().__init__(space, [_conv(16, 3, 1, seeds)], features_dim, seeds, **kwargs)


class CombinedExtractor(keras.layers.Layer):
    """Dict observations: each key through its own extractor, features concatenated (sorted keys)."""

    def __init__(
        self,
        space: gym.spaces.Dict,
        seeds: np.random.Generator,
        extractors: dict[str, keras.layers.Layer] | None = None,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.keys = sorted(space.spaces)
        given = extractors or {}
        self.extractors = {
            k: given.get(k) or default_extractor(space.spaces[k], seeds) for k in self.keys
        }

    def call(self, obs: dict[str, tf.Tensor]) -> tf.Tensor:
        return tf.concat([self.extractors[k](obs[k]) for k in self.keys], axis=1)


def default_extractor(space: gym.Space, seeds: np.random.Generator) -> keras.layers.Layer:
    """The extractor optix builds for ``space`` when the user gives none."""
    check_observation_space(space, "the default network")
    if isinstance(space, gym.spaces.Dict):
        return CombinedExtractor(space, seeds)
    if isinstance(space, gym.spaces.Discrete | gym.spaces.MultiDiscrete):
        return OneHotExtractor(space)
    if is_image_space(space):
        side = min(space.shape[:2] if channels_last(tuple(space.shape)) else space.shape[1:])
        return NatureCNN(space, seeds) if side >= NATURE_CNN_MIN_SIDE else SmallCNN(space, seeds)
    return FlattenExtractor()


def features_dim(extractor: keras.layers.Layer, space: gym.Space) -> int:
    """The width of ``extractor``'s output on observations from ``space`` (probed once)."""
    try:
        out = extractor(probe_batch(space))
    except Exception as exc:
        raise ValueError(
            f"the features extractor {type(extractor).__name__} fails on observations "
            f"from {space} ({exc})"
        ) from None
    if len(out.shape) != 2:
        raise ValueError(
            f"the features extractor {type(extractor).__name__} must return [batch, features], "
            f"got shape {tuple(out.shape)}"
        )
    return int(out.shape[1])
