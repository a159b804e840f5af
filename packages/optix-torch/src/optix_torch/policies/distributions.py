"""Action distributions: what a policy network's output means for each action space.

A network outputs ``param_dim`` numbers per observation; the distribution
turns them into actions and log-probabilities. Acting works on a handful of
rows, where a torch call costs more in dispatch than in arithmetic, so
``sample`` and ``mode`` run in numpy on the network's output (drawing their
randomness from the agent's torch generator, so a checkpoint resumes the
same stream); learning runs ``log_prob`` and ``entropy`` in torch, batched
and differentiable.

What learning differentiates is the *learn action*: the action as the
distribution sees it (an index, a vector of indices or bits, the Gaussian
draw before clipping or squashing), ``action_dim`` float columns per row. The
discrete ones are the environment's actions; the Gaussians' draw travels
from act time to learning in ``policy_info["raw_actions"]`` (a window without
it, another agent's data, gets it back from the environment actions).

==================  ===================  ============================================
space               distribution         π(a|s) from the output ℓ(s)
==================  ===================  ============================================
Discrete(n)         ``Categorical``      softmax(ℓ)_a
MultiDiscrete(nvec) ``MultiCategorical`` Π_i softmax(ℓ_i)_{a_i}, one block of logits per i
MultiBinary(n)      ``Bernoulli``        Π_i σ(ℓ_i)^{a_i} (1 − σ(ℓ_i))^{1 − a_i}
Box                 ``DiagGaussian``     N(u; μ, σ²), env action clip(u) to the bounds
Box                 ``SquashedGaussian`` u ~ N(μ, σ²), a = tanh(u) scaled to the bounds
==================  ===================  ============================================

The Gaussians' output is ``[μ ‖ log σ]`` (state-dependent σ, log σ clamped to
[−5, 2]).
"""

from __future__ import annotations

import itertools
import math
from typing import Any

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F

LOG_STD_MIN, LOG_STD_MAX = -5.0, 2.0
HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)
LOG_2 = math.log(2.0)
RAW = "raw_actions"  # the policy_info key of learn actions


class Distribution:
    """The interface; see the module docstring."""

    param_dim: int  # network outputs per observation
    action_dim: int  # float columns of a learn action
    name: str

    def sample(self, params: np.ndarray, generator: torch.Generator) -> tuple[np.ndarray, dict]:
        """Environment actions for a batch, and ``{"log_probs"}`` (and the
        Gaussians' ``"raw_actions"``) for ``policy_info``."""
        raise NotImplementedError

    def mode(self, params: np.ndarray) -> np.ndarray:
        """The deterministic environment actions."""
        raise NotImplementedError

    def log_prob(self, params: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """log π(a|s) per row of learn actions ``[B, action_dim]``."""
        raise NotImplementedError

    def entropy(self, params: torch.Tensor) -> torch.Tensor:
        """H[π(·|s)] per row (for the Gaussians, of the Gaussian before clipping or squashing)."""
        raise NotImplementedError

    def torch_mode(self, params: torch.Tensor) -> torch.Tensor:
        """``mode`` in torch, for exported models."""
        raise NotImplementedError

    def learn_actions(self, actions: np.ndarray, info: dict[str, Any], n: int) -> np.ndarray:
        """``[n, action_dim]`` float32 learn actions of a window."""
        raw = info.get(RAW)
        if raw is not None:
            return np.asarray(raw, dtype=np.float32).reshape(n, self.action_dim)
        return self.from_env(np.asarray(actions).reshape(n, -1)).astype(np.float32)

    def from_env(self, actions: np.ndarray) -> np.ndarray:
        """Environment actions ``[n, ...]`` → learn actions ``[n, action_dim]``."""
        raise NotImplementedError

    def old_log_probs(self, recorded: np.ndarray, learn_actions: np.ndarray) -> np.ndarray:
        """π_old's log-probabilities as recorded at act time, in ``log_prob``'s terms."""
        return recorded


class Categorical(Distribution):
    """Discrete(n): log π(a|s) = ℓ_a − logsumexp(ℓ)."""

    name = "categorical"

    def __init__(self, space: gym.spaces.Discrete) -> None:
        self.n, self.start = int(space.n), int(space.start)
        self.param_dim, self.action_dim = self.n, 1

    def sample(self, params: np.ndarray, generator: torch.Generator) -> tuple[np.ndarray, dict]:
        uniform = torch.rand(len(params), generator=generator).numpy()
        actions, log_probs = sample_categorical(params, uniform)
        return actions + self.start, {"log_probs": log_probs}

    def mode(self, params: np.ndarray) -> np.ndarray:
        return params.argmax(-1) + self.start

    def log_prob(self, params: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        return torch.log_softmax(params, -1).gather(1, actions.long()).squeeze(-1)

    def entropy(self, params: torch.Tensor) -> torch.Tensor:
        log_p = torch.log_softmax(params, -1)
        return -(log_p.exp() * log_p).sum(-1)

    def torch_mode(self, params: torch.Tensor) -> torch.Tensor:
        return params.argmax(-1) + self.start

    def from_env(self, actions: np.ndarray) -> np.ndarray:
        return actions.reshape(len(actions), 1) - self.start


class MultiCategorical(Distribution):
    """MultiDiscrete(nvec): independent categoricals, log π = Σ_i log softmax(ℓ_i)_{a_i}."""

    name = "multi_categorical"

    def __init__(self, space: gym.spaces.MultiDiscrete) -> None:
        self.shape = tuple(space.shape)
        self.nvec = [int(n) for n in np.asarray(space.nvec).reshape(-1)]
        self.start = np.asarray(space.start, dtype=np.int64).reshape(-1)
        self.dtype = space.dtype
        self.param_dim, self.action_dim = sum(self.nvec), len(self.nvec)

    def _blocks(self, params: Any) -> list[Any]:
        bounds = list(itertools.accumulate(self.nvec, initial=0))
        return [params[:, lo:hi] for lo, hi in itertools.pairwise(bounds)]

    def sample(self, params: np.ndarray, generator: torch.Generator) -> tuple[np.ndarray, dict]:
        uniform = torch.rand(len(params), self.action_dim, generator=generator).numpy()
        drawn = [sample_categorical(b, uniform[:, i]) for i, b in enumerate(self._blocks(params))]
        index = np.stack([a for a, _ in drawn], axis=1)
        log_probs = np.sum([lp for _, lp in drawn], axis=0).astype(np.float32)
        return self._to_env(index), {"log_probs": log_probs}

    def mode(self, params: np.ndarray) -> np.ndarray:
        return self._to_env(np.stack([b.argmax(-1) for b in self._blocks(params)], axis=1))

    def _to_env(self, index: np.ndarray) -> np.ndarray:
        return (index + self.start).astype(self.dtype).reshape(len(index), *self.shape)

    def log_prob(self, params: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        index = actions.long()
        return sum(
            torch.log_softmax(b, -1).gather(1, index[:, i : i + 1]).squeeze(-1)
            for i, b in enumerate(self._blocks(params))
        )

    def entropy(self, params: torch.Tensor) -> torch.Tensor:
        total = 0.0
        for b in self._blocks(params):
            log_p = torch.log_softmax(b, -1)
            total = total - (log_p.exp() * log_p).sum(-1)
        return total

    def torch_mode(self, params: torch.Tensor) -> torch.Tensor:
        index = torch.stack([b.argmax(-1) for b in self._blocks(params)], dim=1)
        return (index + torch.as_tensor(self.start, device=params.device)).reshape(
            params.shape[0], *self.shape
        )

    def from_env(self, actions: np.ndarray) -> np.ndarray:
        return actions.reshape(len(actions), -1) - self.start


class Bernoulli(Distribution):
    """MultiBinary(n): independent bits, log π = Σ_i [a_i log σ(ℓ_i) + (1 − a_i) log σ(−ℓ_i)]."""

    name = "bernoulli"

    def __init__(self, space: gym.spaces.MultiBinary) -> None:
        self.shape = tuple(space.shape)
        self.param_dim = self.action_dim = int(np.prod(self.shape))

    def sample(self, params: np.ndarray, generator: torch.Generator) -> tuple[np.ndarray, dict]:
        uniform = torch.rand(params.shape, generator=generator).numpy()
        bits = uniform < 1.0 / (1.0 + np.exp(-params))
        # log σ(ℓ) for a 1, log σ(−ℓ) for a 0: −softplus(∓ℓ)
        signed = np.where(bits, params, -params)
        log_probs = -np.logaddexp(0.0, -signed).sum(-1).astype(np.float32)
        return self._to_env(bits), {"log_probs": log_probs}

    def mode(self, params: np.ndarray) -> np.ndarray:
        return self._to_env(params > 0)

    def _to_env(self, bits: np.ndarray) -> np.ndarray:
        return bits.astype(np.int8).reshape(len(bits), *self.shape)

    def log_prob(self, params: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        return -F.binary_cross_entropy_with_logits(params, actions, reduction="none").sum(-1)

    def entropy(self, params: torch.Tensor) -> torch.Tensor:
        p = torch.sigmoid(params)
        return F.binary_cross_entropy_with_logits(params, p, reduction="none").sum(-1)

    def torch_mode(self, params: torch.Tensor) -> torch.Tensor:
        return (params > 0).to(torch.int8).reshape(params.shape[0], *self.shape)

    def from_env(self, actions: np.ndarray) -> np.ndarray:
        return actions.reshape(len(actions), -1)


class _Gaussian(Distribution):
    """What both Gaussians share: the ``[μ ‖ log σ]`` output, the Box's shape and bounds."""

    def __init__(self, space: gym.spaces.Box) -> None:
        self.shape, self.dtype = tuple(space.shape), space.dtype
        self.action_dim = int(np.prod(self.shape))
        self.param_dim = 2 * self.action_dim
        self.low = np.asarray(space.low, dtype=np.float64).reshape(-1)
        self.high = np.asarray(space.high, dtype=np.float64).reshape(-1)

    def _split(self, params: Any, clamp: Any) -> tuple[Any, Any]:
        d = self.action_dim
        return params[:, :d], clamp(params[:, d:], LOG_STD_MIN, LOG_STD_MAX)

    def _draw(self, params: np.ndarray, generator: torch.Generator) -> tuple[np.ndarray, ...]:
        mean, log_std = self._split(params, np.clip)
        noise = torch.randn(mean.shape, generator=generator).numpy()
        u = mean + np.exp(log_std) * noise
        # log N(u; μ, σ), with (u − μ)/σ = noise
        log_prob = -(0.5 * noise * noise + log_std).sum(-1) - self.action_dim * HALF_LOG_2PI
        return u, log_prob

    def log_prob(self, params: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """The Gaussian log-density of the learn actions u."""
        mean, log_std = self._split(params, torch.clamp)
        z = (actions - mean) * torch.exp(-log_std)
        return -(0.5 * z.square() + log_std).sum(-1) - self.action_dim * HALF_LOG_2PI

    def entropy(self, params: torch.Tensor) -> torch.Tensor:
        log_std = self._split(params, torch.clamp)[1]
        return log_std.sum(-1) + self.action_dim * (0.5 + HALF_LOG_2PI)

    def _to_env(self, a: np.ndarray) -> np.ndarray:
        a = np.clip(a, self.low, self.high)  # rounding never leaves the Box
        return a.astype(self.dtype, copy=False).reshape(len(a), *self.shape)


class DiagGaussian(_Gaussian):
    """Box: u ~ N(μ, σ²) and the environment gets u clipped to the bounds
    (Stable-Baselines3's PPO); learning sees the unclipped u."""

    name = "gaussian"

    def sample(self, params: np.ndarray, generator: torch.Generator) -> tuple[np.ndarray, dict]:
        u, log_prob = self._draw(params, generator)
        return self._to_env(u), {"log_probs": log_prob.astype(np.float32), RAW: u}

    def mode(self, params: np.ndarray) -> np.ndarray:
        return self._to_env(params[:, : self.action_dim])

    def torch_mode(self, params: torch.Tensor) -> torch.Tensor:
        low = torch.as_tensor(self.low, dtype=params.dtype, device=params.device)
        high = torch.as_tensor(self.high, dtype=params.dtype, device=params.device)
        mean = params[:, : self.action_dim]
        return torch.maximum(torch.minimum(mean, high), low).reshape(params.shape[0], *self.shape)

    def from_env(self, actions: np.ndarray) -> np.ndarray:
        return actions.reshape(len(actions), self.action_dim)


class SquashedGaussian(_Gaussian):
    """Box with finite bounds: u ~ N(μ, σ²), a = tanh(u), env action = center + scale · a.

    By the change of variables (Haarnoja et al. 2018, eq. 21)
    log π(a|s) = Σᵢ [log N(uᵢ; μᵢ, σᵢ) − log(1 − tanh²(uᵢ))], with
    log(1 − tanh² u) = 2 (log 2 − u − softplus(−2u)), stable for large |u|.
    The tanh term depends on u alone, so it cancels in a ratio π_θ/π_old and
    ``log_prob`` is the Gaussian density of the recorded u; ``sample`` records
    the full log-probability, ``old_log_probs`` adds the term back. The affine
    map to the bounds is a constant Jacobian, left out of both.
    """

    name = "squashed_gaussian"

    def __init__(self, space: gym.spaces.Box) -> None:
        if not (np.isfinite(space.low).all() and np.isfinite(space.high).all()):
            raise ValueError(
                f"a tanh-squashed Gaussian maps actions into the Box's bounds, but {space} is "
                "unbounded; give the Box finite low and high (gymnasium's RescaleAction)"
            )
        super().__init__(space)
        self.center, self.scale = (self.high + self.low) / 2, (self.high - self.low) / 2

    def sample(self, params: np.ndarray, generator: torch.Generator) -> tuple[np.ndarray, dict]:
        u, log_prob = self._draw(params, generator)
        log_prob -= squash_correction(u).sum(-1)
        return self._squash(u), {"log_probs": log_prob.astype(np.float32), RAW: u}

    def mode(self, params: np.ndarray) -> np.ndarray:
        return self._squash(params[:, : self.action_dim])

    def _squash(self, u: np.ndarray) -> np.ndarray:
        return self._to_env(self.center + self.scale * np.tanh(u))

    def torch_mode(self, params: torch.Tensor) -> torch.Tensor:
        center = torch.as_tensor(self.center, dtype=params.dtype, device=params.device)
        scale = torch.as_tensor(self.scale, dtype=params.dtype, device=params.device)
        a = center + scale * torch.tanh(params[:, : self.action_dim])
        return a.reshape(params.shape[0], *self.shape)

    def from_env(self, actions: np.ndarray) -> np.ndarray:
        """atanh of the actions scaled back to (−1, 1)."""
        flat = np.asarray(actions, dtype=np.float64).reshape(len(actions), self.action_dim)
        squashed = np.clip((flat - self.center) / self.scale, -1 + 1e-6, 1 - 1e-6)
        return np.arctanh(squashed)

    def old_log_probs(self, recorded: np.ndarray, learn_actions: np.ndarray) -> np.ndarray:
        """log π_old(a|s) + Σ log(1 − tanh² u): π_old's Gaussian log-density of u."""
        correction = squash_correction(learn_actions.astype(np.float64)).sum(-1)
        return (recorded + correction).astype(np.float32)


def squash_correction(u: np.ndarray) -> np.ndarray:
    """log(1 − tanh²(u)) = 2 (log 2 − u − softplus(−2u)), per element."""
    return 2.0 * (LOG_2 - u - np.logaddexp(0.0, -2.0 * u))


def sample_categorical(logits: np.ndarray, uniform: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Actions a ~ softmax(logits) by inverting the CDF at ``uniform`` (one U(0, 1)
    per row), and log π(a) = ℓ_a − logsumexp(ℓ)."""
    shifted = logits - logits.max(axis=-1, keepdims=True)
    cdf = np.exp(shifted).cumsum(axis=-1)
    total = cdf[:, -1]
    actions = (cdf < (uniform * total)[:, None]).sum(axis=-1)
    np.minimum(actions, logits.shape[-1] - 1, out=actions)  # rounding at u → 1
    chosen = shifted[np.arange(len(actions)), actions]
    return actions, (chosen - np.log(total)).astype(np.float32)


CONTINUOUS = {"squashed_gaussian": SquashedGaussian, "gaussian": DiagGaussian}


def distribution_for(
    space: gym.Space, continuous: str = "squashed_gaussian", owner: str = "the policy"
) -> Distribution:
    """The distribution over ``space``'s actions; ``continuous`` picks the Box one."""
    if isinstance(space, gym.spaces.Discrete):
        return Categorical(space)
    if isinstance(space, gym.spaces.MultiDiscrete):
        return MultiCategorical(space)
    if isinstance(space, gym.spaces.MultiBinary):
        return Bernoulli(space)
    if isinstance(space, gym.spaces.Box):
        if continuous not in CONTINUOUS:
            raise ValueError(
                f"{owner}: unknown continuous distribution {continuous!r}; "
                f"choose one of {sorted(CONTINUOUS)}"
            )
        return CONTINUOUS[continuous](space)
    raise ValueError(
        f"{owner} acts on Discrete, MultiDiscrete, MultiBinary or Box action spaces, got {space}"
    )
