"""Action distributions: what a policy network's output means for each action space.

A network outputs ``param_dim`` numbers per observation; the distribution
turns them into actions and log-probabilities. This module is the half every
backend shares, in numpy: acting works on a handful of rows, where a
framework call costs more in dispatch than in arithmetic, so ``sample`` and
``mode`` run on the network's output as a numpy array. Each backend
subclasses these classes with ``log_prob`` and ``entropy`` in its own
framework, batched and differentiable (``optix_torch.policies.distributions``).

Randomness comes from a ``Noise`` the agent owns and checkpoints: a numpy
``Generator`` is one; optix-torch wraps its ``torch.Generator``.

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
[−5, 2]). ``StateDependentGaussian`` is gSDE's (``DiagGaussian`` with
exploration held over many steps), for PPO and A2C with ``use_sde``.
"""

from __future__ import annotations

import itertools
import math
from typing import Any, Protocol

import gymnasium as gym
import numpy as np

LOG_STD_MIN, LOG_STD_MAX = -5.0, 2.0
HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)
LOG_2 = math.log(2.0)
RAW = "raw_actions"  # the policy_info key of learn actions


class Noise(Protocol):
    """Where sampling draws from: ``numpy.random.Generator`` fits."""

    def random(self, size: Any, dtype: Any = ...) -> np.ndarray:
        """U(0, 1) draws."""

    def standard_normal(self, size: Any, dtype: Any = ...) -> np.ndarray:
        """N(0, 1) draws."""


class Distribution:
    """The interface; see the module docstring."""

    param_dim: int  # network outputs per observation
    action_dim: int  # float columns of a learn action
    name: str

    def sample(self, params: np.ndarray, noise: Noise) -> tuple[np.ndarray, dict]:
        """Environment actions for a batch, and ``{"log_probs"}`` (and the
        Gaussians' ``"raw_actions"``) for ``policy_info``."""
        raise NotImplementedError

    def mode(self, params: np.ndarray) -> np.ndarray:
        """The deterministic environment actions."""
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

    def sample(self, params: np.ndarray, noise: Noise) -> tuple[np.ndarray, dict]:
        uniform = noise.random(len(params), dtype=np.float32)
        actions, log_probs = sample_categorical(params, uniform)
        return actions + self.start, {"log_probs": log_probs}

    def mode(self, params: np.ndarray) -> np.ndarray:
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

    def blocks(self, params: Any) -> list[Any]:
        """The logits of each categorical: ``params[:, block]`` per dimension."""
        bounds = list(itertools.accumulate(self.nvec, initial=0))
        return [params[:, lo:hi] for lo, hi in itertools.pairwise(bounds)]

    def sample(self, params: np.ndarray, noise: Noise) -> tuple[np.ndarray, dict]:
        uniform = noise.random((len(params), self.action_dim), dtype=np.float32)
        drawn = [sample_categorical(b, uniform[:, i]) for i, b in enumerate(self.blocks(params))]
        index = np.stack([a for a, _ in drawn], axis=1)
        log_probs = np.sum([lp for _, lp in drawn], axis=0).astype(np.float32)
        return self.to_env(index), {"log_probs": log_probs}

    def mode(self, params: np.ndarray) -> np.ndarray:
        return self.to_env(np.stack([b.argmax(-1) for b in self.blocks(params)], axis=1))

    def to_env(self, index: np.ndarray) -> np.ndarray:
        return (index + self.start).astype(self.dtype).reshape(len(index), *self.shape)

    def from_env(self, actions: np.ndarray) -> np.ndarray:
        return actions.reshape(len(actions), -1) - self.start


class Bernoulli(Distribution):
    """MultiBinary(n): independent bits, log π = Σ_i [a_i log σ(ℓ_i) + (1 − a_i) log σ(−ℓ_i)]."""

    name = "bernoulli"

    def __init__(self, space: gym.spaces.MultiBinary) -> None:
        self.shape = tuple(space.shape)
        self.param_dim = self.action_dim = int(np.prod(self.shape))

    def sample(self, params: np.ndarray, noise: Noise) -> tuple[np.ndarray, dict]:
        uniform = noise.random(params.shape, dtype=np.float32)
        bits = uniform < 1.0 / (1.0 + np.exp(-params))
        # log σ(ℓ) for a 1, log σ(−ℓ) for a 0: −softplus(∓ℓ)
        signed = np.where(bits, params, -params)
        log_probs = -np.logaddexp(0.0, -signed).sum(-1).astype(np.float32)
        return self.to_env(bits), {"log_probs": log_probs}

    def mode(self, params: np.ndarray) -> np.ndarray:
        return self.to_env(params > 0)

    def to_env(self, bits: np.ndarray) -> np.ndarray:
        return bits.astype(np.int8).reshape(len(bits), *self.shape)

    def from_env(self, actions: np.ndarray) -> np.ndarray:
        return actions.reshape(len(actions), -1)


class Gaussian(Distribution):
    """What both Gaussians share: the ``[μ ‖ log σ]`` output, the Box's shape and bounds."""

    def __init__(self, space: gym.spaces.Box) -> None:
        self.shape, self.dtype = tuple(space.shape), space.dtype
        self.action_dim = int(np.prod(self.shape))
        self.param_dim = 2 * self.action_dim
        self.low = np.asarray(space.low, dtype=np.float64).reshape(-1)
        self.high = np.asarray(space.high, dtype=np.float64).reshape(-1)

    def split(self, params: Any, clamp: Any) -> tuple[Any, Any]:
        """``(μ, log σ)``, log σ clamped to [LOG_STD_MIN, LOG_STD_MAX] by ``clamp``
        (``np.clip``, ``torch.clamp``, ``tf.clip_by_value``: the backend's)."""
        d = self.action_dim
        return params[:, :d], clamp(params[:, d:], LOG_STD_MIN, LOG_STD_MAX)

    def draw(self, params: np.ndarray, noise: Noise) -> tuple[np.ndarray, np.ndarray]:
        """u ~ N(μ, σ²) and log N(u; μ, σ)."""
        mean, log_std = self.split(params, np.clip)
        eps = noise.standard_normal(mean.shape, dtype=np.float32)
        u = mean + np.exp(log_std) * eps
        # log N(u; μ, σ), with (u − μ)/σ = ε
        log_prob = -(0.5 * eps * eps + log_std).sum(-1) - self.action_dim * HALF_LOG_2PI
        return u, log_prob

    def to_env(self, a: np.ndarray) -> np.ndarray:
        a = np.clip(a, self.low, self.high)  # rounding never leaves the Box
        return a.astype(self.dtype, copy=False).reshape(len(a), *self.shape)


class DiagGaussian(Gaussian):
    """Box: u ~ N(μ, σ²) and the environment gets u clipped to the bounds
    (Stable-Baselines3's PPO); learning sees the unclipped u."""

    name = "gaussian"

    def sample(self, params: np.ndarray, noise: Noise) -> tuple[np.ndarray, dict]:
        u, log_prob = self.draw(params, noise)
        return self.to_env(u), {"log_probs": log_prob.astype(np.float32), RAW: u}

    def mode(self, params: np.ndarray) -> np.ndarray:
        return self.to_env(params[:, : self.action_dim])

    def from_env(self, actions: np.ndarray) -> np.ndarray:
        return actions.reshape(len(actions), self.action_dim)


class SquashedGaussian(Gaussian):
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

    def sample(self, params: np.ndarray, noise: Noise) -> tuple[np.ndarray, dict]:
        u, log_prob = self.draw(params, noise)
        log_prob -= squash_correction(u).sum(-1)
        return self.squash(u), {"log_probs": log_prob.astype(np.float32), RAW: u}

    def mode(self, params: np.ndarray) -> np.ndarray:
        return self.squash(params[:, : self.action_dim])

    def squash(self, u: np.ndarray) -> np.ndarray:
        return self.to_env(self.center + self.scale * np.tanh(u))

    def from_env(self, actions: np.ndarray) -> np.ndarray:
        """atanh of the actions scaled back to (−1, 1)."""
        flat = np.asarray(actions, dtype=np.float64).reshape(len(actions), self.action_dim)
        squashed = np.clip((flat - self.center) / self.scale, -1 + 1e-6, 1 - 1e-6)
        return np.arctanh(squashed)

    def old_log_probs(self, recorded: np.ndarray, learn_actions: np.ndarray) -> np.ndarray:
        """log π_old(a|s) + Σ log(1 − tanh² u): π_old's Gaussian log-density of u."""
        correction = squash_correction(learn_actions.astype(np.float64)).sum(-1)
        return (recorded + correction).astype(np.float32)


class StateDependentGaussian(DiagGaussian):
    """gSDE for PPO and A2C (Raffin et al. 2022, "Smooth Exploration for Robotic
    Reinforcement Learning", eq. 5–6), as Stable-Baselines3 runs it on-policy:
    full std, unsquashed (the environment gets u clipped to the bounds), the
    features detached in the variance.

    Exploration is u = μ(s) + z(s)·θ_ε, z the actor's last hidden features and
    θ_ε a ``[dim z, dim A]`` matrix with entries N(0, σ²), σ a learned matrix
    (``log_std`` of the backend's network). Over θ_ε, u is Gaussian with
    variance σ̃² = (z²)·(σ²) per action dimension, so the network outputs
    ``[μ ‖ log σ̃ ‖ z]`` (σ̃² + ``SDE_EPSILON`` inside the log) and log π and
    the entropy are the diagonal Gaussian's of ``[μ ‖ log σ̃]``. Only training's
    acting differs: it holds θ_ε for many steps (``sample_held``), which makes
    exploration smooth in time; ``sample`` (a stochastic ``act``) draws as if
    θ_ε were fresh.
    """

    name = "state_dependent_gaussian"

    def __init__(self, space: gym.spaces.Box, latent_dim: int) -> None:
        super().__init__(space)
        self.latent_dim = int(latent_dim)
        self.param_dim = 2 * self.action_dim + self.latent_dim

    def split(self, params: Any, clamp: Any) -> tuple[Any, Any]:
        """``(μ, log σ̃)``; σ̃ is kept from 0 by SDE_EPSILON, not clamped."""
        d = self.action_dim
        return params[:, :d], params[:, d : 2 * d]

    def latent(self, params: np.ndarray) -> np.ndarray:
        """The features z of each row."""
        return params[:, 2 * self.action_dim :]

    def sample_held(self, params: np.ndarray, matrices: np.ndarray) -> tuple[np.ndarray, dict]:
        """Actions u = μ + z·θ_ε with one held θ_ε per row, and log N(u; μ, σ̃²)."""
        mean, log_std = self.split(params, None)
        u = mean + np.einsum("nl,nla->na", self.latent(params), matrices)
        scaled = (u - mean) * np.exp(-log_std)
        log_prob = -(0.5 * scaled * scaled + log_std).sum(-1) - self.action_dim * HALF_LOG_2PI
        u = u.astype(np.float32)
        return self.to_env(u), {"log_probs": log_prob.astype(np.float32), RAW: u}


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


def distribution_for(
    space: gym.Space,
    continuous: str = "squashed_gaussian",
    owner: str = "the policy",
    family: dict[str, type[Distribution]] | None = None,
) -> Distribution:
    """The distribution over ``space``'s actions; ``continuous`` ("squashed_gaussian"
    or "gaussian") picks the Box one. ``family`` maps each ``name`` to the class a
    backend builds (its subclasses of these); default, these numpy ones."""
    family = family or FAMILY
    if isinstance(space, gym.spaces.Discrete):
        return family["categorical"](space)
    if isinstance(space, gym.spaces.MultiDiscrete):
        return family["multi_categorical"](space)
    if isinstance(space, gym.spaces.MultiBinary):
        return family["bernoulli"](space)
    if isinstance(space, gym.spaces.Box):
        if continuous not in ("squashed_gaussian", "gaussian"):
            raise ValueError(
                f"{owner}: unknown continuous distribution {continuous!r}; "
                "choose one of ['gaussian', 'squashed_gaussian']"
            )
        return family[continuous](space)
    raise ValueError(
        f"{owner} acts on Discrete, MultiDiscrete, MultiBinary or Box action spaces, got {space}"
    )


def gaussian_action_space(
    action_dim: int | None, action_space: gym.Space | None, owner: str
) -> gym.spaces.Box:
    """tensor-optix's Gaussian PPO form: actions in (−1, 1)^action_dim without
    ``action_space``; with it, its Box (``action_dim``, if given too, must agree)."""
    if action_space is None:
        if action_dim is None or int(action_dim) < 1:
            raise ValueError(f"{owner} needs action_dim (>= 1) or action_space")
        return gym.spaces.Box(-1.0, 1.0, (int(action_dim),), np.float32)
    if not isinstance(action_space, gym.spaces.Box):
        raise ValueError(
            f"{owner} acts on Box action spaces, got {action_space}; "
            "the plain PPO agent takes the others"
        )
    if action_dim is not None and int(action_dim) != int(np.prod(action_space.shape)):
        raise ValueError(f"action_dim={action_dim} does not match the action space {action_space}")
    return action_space


FAMILY: dict[str, type[Distribution]] = {
    cls.name: cls
    for cls in (Categorical, MultiCategorical, Bernoulli, DiagGaussian, SquashedGaussian)
}
