"""Features extractors: observations → one feature vector per observation.

The default is chosen from the observation space (``default_extractor``):

- flat Box: ``FlattenExtractor`` (no parameters: the MLP heads read the vector);
- image Box (uint8 or bool planes, ``[H, W, C]`` or ``[C, H, W]``):
  ``NatureCNN`` (Mnih et al. 2015) from 36 pixels a side up, ``SmallCNN``
  (Young & Tian 2019, MinAtar's network) below; both scale pixels to [0, 1]
  inside the network (by the Box's high), so images travel and are stored
  in their own dtype;
- Discrete and MultiDiscrete: ``OneHotExtractor``; MultiBinary: ``FlattenExtractor``;
- Dict: ``CombinedExtractor``, each key's default extractor, concatenated.

Any ``nn.Module`` that maps a batch of observations (as ``observations.to_tensor``
makes them) to ``[B, features]`` serves as an extractor.
"""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from optix_core.policies.observations import one_hot_layout
from optix_torch.policies.observations import check_observation_space, probe_batch

NATURE_CNN_MIN_SIDE = 36  # NatureCNN's three convolutions need 36 pixels a side


def is_image_space(space: gym.Space) -> bool:
    """Planes of pixels: a uint8 or bool Box of rank 3 (Atari frames, MinAtar's
    boolean channels). A float Box of any rank is read as a flat vector."""
    return (
        isinstance(space, gym.spaces.Box)
        and space.dtype in (np.uint8, np.bool_)
        and len(space.shape) == 3
    )


def channels_last(shape: tuple[int, ...]) -> bool:
    """Whether an image is ``[H, W, C]`` (gymnasium's layout) rather than
    ``[C, H, W]``: channels first only where the first axis is the smallest."""
    return not (shape[0] < shape[1] and shape[0] < shape[2] and shape[0] < shape[-1])


class FlattenExtractor(nn.Module):
    """``[B, ...]`` → ``[B, prod(...)]`` as float32."""

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return obs.reshape(obs.shape[0], -1).float()


class OneHotExtractor(nn.Module):
    """Discrete indices ``[B]`` → one-hot ``[B, n]``; MultiDiscrete ``[B, ...]`` →
    each component's one-hot, concatenated ``[B, sum(nvec)]``."""

    def __init__(self, space: gym.spaces.Discrete | gym.spaces.MultiDiscrete) -> None:
        super().__init__()
        nvec, start = one_hot_layout(space)
        self.width = int(nvec.sum())
        # where each component's one-hot begins, less its first value
        offsets = np.concatenate([[0], np.cumsum(nvec)[:-1]]) - start
        self.register_buffer("offsets", torch.as_tensor(offsets, dtype=torch.long), False)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        index = obs.reshape(obs.shape[0], -1).long() + self.offsets
        hot = torch.zeros(obs.shape[0], self.width, device=obs.device)
        return hot.scatter_(1, index, 1.0)


class ImageCNN(nn.Module):
    """uint8 images → features: scale to [0, 1], channels first, convolutions, a linear layer."""

    def __init__(self, space: gym.spaces.Box, convs: nn.Sequential, features_dim: int) -> None:
        super().__init__()
        self.channels_last = channels_last(tuple(space.shape))
        self.scale = 1.0 / float(np.max(space.high)) if np.max(space.high) > 0 else 1.0
        self.convs = convs
        with torch.no_grad():
            flat = self.convs(self._prepare(torch.zeros(1, *space.shape))).shape[1]
        self.linear = nn.Sequential(nn.Linear(flat, features_dim), nn.ReLU())
        self.features_dim = features_dim

    def _prepare(self, obs: torch.Tensor) -> torch.Tensor:
        x = obs.float().mul_(self.scale) if obs.dtype == torch.uint8 else obs.float()
        return x.permute(0, 3, 1, 2) if self.channels_last else x

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.linear(self.convs(self._prepare(obs)))


class NatureCNN(ImageCNN):
    """Mnih et al. (2015): conv 32×8×8/4, 64×4×4/2, 64×3×3/1, linear ``features_dim`` (512), ReLUs."""

    def __init__(self, space: gym.spaces.Box, features_dim: int = 512) -> None:
        channels = space.shape[-1] if channels_last(tuple(space.shape)) else space.shape[0]
        convs = nn.Sequential(
            nn.Conv2d(channels, 32, 8, stride=4),
            nn.ReLU(),
            nn.Conv2d(32, 64, 4, stride=2),
            nn.ReLU(),
            nn.Conv2d(64, 64, 3, stride=1),
            nn.ReLU(),
            nn.Flatten(),
        )
        super().__init__(space, convs, features_dim)


class SmallCNN(ImageCNN):
    """Young & Tian (2019), MinAtar's network: conv 16×3×3/1, linear ``features_dim`` (128), ReLUs."""

    def __init__(self, space: gym.spaces.Box, features_dim: int = 128) -> None:
        channels = space.shape[-1] if channels_last(tuple(space.shape)) else space.shape[0]
        convs = nn.Sequential(nn.Conv2d(channels, 16, 3, stride=1), nn.ReLU(), nn.Flatten())
        super().__init__(space, convs, features_dim)


class CombinedExtractor(nn.Module):
    """Dict observations: each key through its own extractor, features concatenated (sorted keys)."""

    def __init__(
        self, space: gym.spaces.Dict, extractors: dict[str, nn.Module] | None = None
    ) -> None:
        super().__init__()
        self.keys = sorted(space.spaces)
        given = extractors or {}
        self.extractors = nn.ModuleDict(
            {k: given.get(k) or default_extractor(space.spaces[k]) for k in self.keys}
        )

    def forward(self, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        return torch.cat([self.extractors[k](obs[k]) for k in self.keys], dim=1)


def default_extractor(space: gym.Space) -> nn.Module:
    """The extractor optix builds for ``space`` when the user gives none."""
    check_observation_space(space, "the default network")
    if isinstance(space, gym.spaces.Dict):
        return CombinedExtractor(space)
    if isinstance(space, gym.spaces.Discrete | gym.spaces.MultiDiscrete):
        return OneHotExtractor(space)
    if is_image_space(space):
        side = min(space.shape[:2] if channels_last(tuple(space.shape)) else space.shape[1:])
        return NatureCNN(space) if side >= NATURE_CNN_MIN_SIDE else SmallCNN(space)
    return FlattenExtractor()


def features_dim(extractor: nn.Module, space: gym.Space) -> int:
    """The width of ``extractor``'s output on observations from ``space`` (probed once)."""
    param = next(extractor.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    try:
        with torch.no_grad():
            out = extractor(probe_batch(space, device))
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


@torch.no_grad()
def orthogonal_init(module: nn.Module, gain: float = math.sqrt(2.0)) -> None:
    """Stable-Baselines3's extractor initialisation: orthogonal weights, zero biases."""
    for layer in module.modules():
        if isinstance(layer, nn.Linear | nn.Conv2d):
            nn.init.orthogonal_(layer.weight, gain=gain)
            if layer.bias is not None:
                layer.bias.zero_()
