"""Features extractors: observations → one feature vector per observation (Flax NNX modules).

The default is chosen from the observation space, as in optix-torch and optix-tf:

- flat Box: ``FlattenExtractor`` (no weights: the MLP heads read the vector);
- image Box (uint8 or bool planes, ``[H, W, C]`` or ``[C, H, W]``):
  ``NatureCNN`` (Mnih et al. 2015) from 36 pixels a side up, ``SmallCNN``
  (Young & Tian 2019, MinAtar's network) below; both scale pixels to [0, 1]
  inside the network, so images travel and are stored in their own dtype;
- Discrete and MultiDiscrete: ``OneHotExtractor``; MultiBinary: ``FlattenExtractor``;
- Dict: ``CombinedExtractor``, each key's default extractor, concatenated.

Any ``nnx.Module`` that maps a batch of observations (as
``observations.to_jax`` makes them) to ``[B, features]`` serves as an extractor.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from optix_core.policies.observations import one_hot_layout
from optix_jax.policies.observations import check_observation_space, probe, probe_batch

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


# Initialisers are values (frozen dataclasses, one shared zeros function), not fresh
# closures: two networks built alike then have equal graphdefs, and agents share
# their compiled updates (``base.compiled``).


def host_generator(key: jax.Array) -> np.random.Generator:
    """A numpy generator seeded from a JAX key: initialisers draw on the host, because
    every eager JAX draw or QR compiles a program per layer shape (0.1–0.3 s each on
    a CPU), which made building a small network take seconds."""
    return np.random.default_rng(np.asarray(jax.random.key_data(key)).ravel())


@dataclasses.dataclass(frozen=True)
class OrthogonalInit:
    """Orthogonal weights scaled by ``gain`` (Stable-Baselines3's initialisation; Saxe
    et al. 2014): the Q of a Gaussian matrix's QR, its columns' signs fixed by R's diagonal."""

    gain: float

    def __call__(self, key: jax.Array, shape: Sequence[int], dtype: Any = jnp.float32) -> jax.Array:
        rows, cols = math.prod(shape[:-1]), shape[-1]
        gaussian = host_generator(key).standard_normal((max(rows, cols), min(rows, cols)))
        q, r = np.linalg.qr(gaussian)
        q *= np.sign(np.diag(r))
        q = q if rows >= cols else q.T
        return on_device(self.gain * q.reshape(shape), dtype)


@dataclasses.dataclass(frozen=True)
class UniformInit:
    """Uniform in ±``bound`` (torch's ``nn.Linear``: ±1/√fan_in for kernel and bias)."""

    bound: float

    def __call__(self, key: jax.Array, shape: Sequence[int], dtype: Any = jnp.float32) -> jax.Array:
        return on_device(host_generator(key).uniform(-self.bound, self.bound, shape), dtype)


def zeros(key: jax.Array, shape: Sequence[int], dtype: Any = jnp.float32) -> jax.Array:
    """Zeros (biases), made on the host for the same reason."""
    return on_device(np.zeros(shape), dtype)


def on_device(array: np.ndarray, dtype: Any) -> jax.Array:
    """Cast on the host, then transfer (``jnp.asarray`` would compile a program per shape)."""
    return jax.device_put(array.astype(np.dtype(dtype)))


def dense(in_dim: int, out_dim: int, gain: float, rngs: nnx.Rngs) -> nnx.Linear:
    """A linear layer with Stable-Baselines3's initialisation: orthogonal weights
    scaled by ``gain``, zero biases."""
    return nnx.Linear(in_dim, out_dim, kernel_init=OrthogonalInit(gain), bias_init=zeros, rngs=rngs)


def torch_linear(in_dim: int, out_dim: int, rngs: nnx.Rngs) -> nnx.Linear:
    """A linear layer initialised as torch's ``nn.Linear`` (kernel and bias uniform in
    ±1/√fan_in), so the off-policy algorithms' default networks start as optix-torch's,
    optix-tf's and SB3's do."""
    init = UniformInit(1.0 / math.sqrt(in_dim))
    return nnx.Linear(in_dim, out_dim, kernel_init=init, bias_init=init, rngs=rngs)


class FlattenExtractor(nnx.Module):
    """``[B, ...]`` → ``[B, prod(...)]`` as float32."""

    def __call__(self, obs: jax.Array) -> jax.Array:
        return obs.reshape(obs.shape[0], -1).astype(jnp.float32)


class OneHotExtractor(nnx.Module):
    """Discrete indices ``[B]`` → one-hot ``[B, n]``; MultiDiscrete ``[B, ...]`` →
    each component's one-hot, concatenated ``[B, sum(nvec)]``."""

    def __init__(self, space: gym.spaces.Discrete | gym.spaces.MultiDiscrete) -> None:
        nvec, start = one_hot_layout(space)
        self.width = int(nvec.sum())
        # where each component's one-hot begins, less its first value (static)
        self.offsets = tuple(int(o) for o in np.concatenate([[0], np.cumsum(nvec)[:-1]]) - start)

    def __call__(self, obs: jax.Array) -> jax.Array:
        index = obs.reshape(obs.shape[0], -1) + jnp.asarray(self.offsets)
        return jax.nn.one_hot(index, self.width, dtype=jnp.float32).sum(axis=1)


class ImageCNN(nnx.Module):
    """uint8 images → features: scale to [0, 1], channels last, convolutions, a dense layer."""

    def __init__(
        self,
        space: gym.spaces.Box,
        convs: list[tuple[int, int, int]],
        features_dim: int,
        rngs: nnx.Rngs,
    ) -> None:
        shape = tuple(space.shape)
        self.channels_last = channels_last(shape)
        high = float(np.max(space.high))
        self.scale = 1.0 / high if high > 0 else 1.0
        h, w, c = shape if self.channels_last else (shape[1], shape[2], shape[0])
        layers = []
        for filters, kernel, stride in convs:
            layers.append(
                nnx.Conv(
                    c,
                    filters,
                    (kernel, kernel),
                    strides=stride,
                    padding="VALID",
                    kernel_init=OrthogonalInit(math.sqrt(2)),
                    bias_init=zeros,
                    rngs=rngs,
                )
            )
            h, w, c = (h - kernel) // stride + 1, (w - kernel) // stride + 1, filters
        self.convs = nnx.List(layers)
        self.linear = dense(h * w * c, features_dim, math.sqrt(2), rngs)
        self.features_dim = features_dim

    def __call__(self, obs: jax.Array) -> jax.Array:
        x = obs.astype(jnp.float32) * (self.scale if obs.dtype == jnp.uint8 else 1.0)
        if not self.channels_last:
            x = jnp.transpose(x, (0, 2, 3, 1))
        for conv in self.convs:
            x = jax.nn.relu(conv(x))
        return jax.nn.relu(self.linear(x.reshape(x.shape[0], -1)))


class NatureCNN(ImageCNN):
    """Mnih et al. (2015): conv 32×8×8/4, 64×4×4/2, 64×3×3/1, dense ``features_dim`` (512), ReLUs."""

    def __init__(self, space: gym.spaces.Box, rngs: nnx.Rngs, features_dim: int = 512) -> None:
        super().__init__(space, [(32, 8, 4), (64, 4, 2), (64, 3, 1)], features_dim, rngs)


class SmallCNN(ImageCNN):
    """Young & Tian (2019), MinAtar's network: conv 16×3×3/1, dense ``features_dim`` (128), ReLUs."""

    def __init__(self, space: gym.spaces.Box, rngs: nnx.Rngs, features_dim: int = 128) -> None:
        super().__init__(space, [(16, 3, 1)], features_dim, rngs)


class CombinedExtractor(nnx.Module):
    """Dict observations: each key through its own extractor, features concatenated (sorted keys)."""

    def __init__(
        self,
        space: gym.spaces.Dict,
        rngs: nnx.Rngs,
        extractors: dict[str, nnx.Module] | None = None,
    ) -> None:
        self.keys = tuple(sorted(space.spaces))
        given = extractors or {}
        self.extractors = nnx.Dict(
            {k: given.get(k) or default_extractor(space.spaces[k], rngs) for k in self.keys}
        )

    def __call__(self, obs: dict[str, jax.Array]) -> jax.Array:
        return jnp.concatenate([self.extractors[k](obs[k]) for k in self.keys], axis=1)


def default_extractor(space: gym.Space, rngs: nnx.Rngs) -> nnx.Module:
    """The extractor optix builds for ``space`` when the user gives none."""
    check_observation_space(space, "the default network")
    if isinstance(space, gym.spaces.Dict):
        return CombinedExtractor(space, rngs)
    if isinstance(space, gym.spaces.Discrete | gym.spaces.MultiDiscrete):
        return OneHotExtractor(space)
    if is_image_space(space):
        side = min(space.shape[:2] if channels_last(tuple(space.shape)) else space.shape[1:])
        return NatureCNN(space, rngs) if side >= NATURE_CNN_MIN_SIDE else SmallCNN(space, rngs)
    return FlattenExtractor()


def features_dim(extractor: nnx.Module, space: gym.Space) -> int:
    """The width of ``extractor``'s output on observations from ``space`` (probed once)."""
    try:
        out = probe(extractor, probe_batch(space))
    except Exception as exc:
        raise ValueError(
            f"the features extractor {type(extractor).__name__} fails on observations "
            f"from {space} ({exc})"
        ) from None
    if out.ndim != 2:
        raise ValueError(
            f"the features extractor {type(extractor).__name__} must return [batch, features], "
            f"got shape {tuple(out.shape)}"
        )
    return int(out.shape[1])
