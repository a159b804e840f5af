"""Running statistics for observation and reward normalization.

Their state belongs in a checkpoint (a resumed run must normalize as the
saved one did), so each class has ``state_dict()`` and ``load_state_dict()``
with plain arrays and floats, ready for safetensors or JSON.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from numpy.typing import ArrayLike


class NormalizerError(ValueError):
    """Data or a saved state does not match the normalizer's shape."""


def _shape_of(shape: int | tuple[int, ...]) -> tuple[int, ...]:
    return (int(shape),) if np.isscalar(shape) else tuple(int(s) for s in shape)


class RunningMeanStd:
    """Mean and variance of everything seen so far, updated a batch at a time.

    Batches are merged with the parallel algorithm of Chan, Golub & LeVeque
    (1979): for two sets with counts ``n_a, n_b``, means ``μ_a, μ_b`` and
    variances ``σ²_a, σ²_b``, with ``δ = μ_b - μ_a`` and ``n = n_a + n_b``,

        μ = μ_a + δ n_b / n
        σ² = (n_a σ²_a + n_b σ²_b + δ² n_a n_b / n) / n

    which is exact, so statistics gathered by several workers and combined
    with ``merge`` equal those of all the data seen by one. The count starts
    at 0 (tensor-optix began at a pseudo-count of 1e-4, which made merged
    statistics differ from the whole's); before any data the mean is 0 and the
    variance 1.
    """

    def __init__(self, shape: int | tuple[int, ...] = ()) -> None:
        self.shape = _shape_of(shape)
        self.mean = np.zeros(self.shape, dtype=np.float64)
        self.var = np.ones(self.shape, dtype=np.float64)
        self.count = 0.0

    @property
    def std(self) -> np.ndarray:
        return np.sqrt(self.var)

    def update(self, x: ArrayLike) -> None:
        """Add a batch ``[B, *shape]`` (or one sample ``shape``)."""
        arr = np.asarray(x, dtype=np.float64)
        if arr.shape == self.shape:
            arr = arr[None]
        if arr.shape[1:] != self.shape:
            raise NormalizerError(
                f"got data of shape {arr.shape}, expected {self.shape} for one sample "
                f"or (B, {', '.join(map(str, self.shape))}) for a batch"
                if self.shape
                else f"got data of shape {arr.shape}, expected () or (B,)"
            )
        if arr.shape[0] == 0:
            return
        self.update_from_moments(arr.mean(axis=0), arr.var(axis=0), arr.shape[0])

    def update_from_moments(self, mean: ArrayLike, var: ArrayLike, count: float) -> None:
        """Merge in a set summarised by its mean, (population) variance and count."""
        mean = np.asarray(mean, dtype=np.float64)
        var = np.asarray(var, dtype=np.float64)
        if mean.shape != self.shape or var.shape != self.shape:
            raise NormalizerError(
                f"moments have shapes {mean.shape} and {var.shape}, expected {self.shape}"
            )
        count = float(count)
        if count < 0:
            raise NormalizerError(f"count must be >= 0, got {count}")
        if count == 0:
            return
        total = self.count + count
        delta = mean - self.mean
        m2 = self.var * self.count + var * count + delta**2 * self.count * count / total
        self.mean = self.mean + delta * count / total
        self.var = m2 / total
        self.count = total

    def merge(self, other: RunningMeanStd) -> None:
        """Fold in another instance's statistics (another worker's, say)."""
        if other.count:
            self.update_from_moments(other.mean, other.var, other.count)

    def normalize(self, x: ArrayLike, clip: float = 10.0, epsilon: float = 1e-8) -> np.ndarray:
        """``clip((x - mean) / sqrt(var + epsilon), -clip, clip)`` as float32 (no clipping if ``clip <= 0``)."""
        out = (np.asarray(x, dtype=np.float64) - self.mean) / np.sqrt(self.var + epsilon)
        if clip > 0:
            out = np.clip(out, -clip, clip)
        return out.astype(np.float32)

    def state_dict(self) -> dict[str, np.ndarray | float]:
        return {"mean": self.mean.copy(), "var": self.var.copy(), "count": float(self.count)}

    def load_state_dict(self, state: Mapping[str, np.ndarray | float]) -> None:
        mean = np.asarray(state["mean"], dtype=np.float64)
        var = np.asarray(state["var"], dtype=np.float64)
        if mean.shape != self.shape or var.shape != self.shape:
            raise NormalizerError(
                f"saved statistics have shapes {mean.shape} and {var.shape}, expected {self.shape}"
            )
        count = float(state["count"])
        if count < 0 or not np.isfinite(count):
            raise NormalizerError(f"saved count must be finite and >= 0, got {count}")
        self.mean, self.var, self.count = mean.copy(), var.copy(), count


class ObsNormalizer:
    """Observations shifted and scaled by running statistics, then clipped.

    ``update`` with each collected batch (a rollout, a window), ``normalize``
    in ``act`` and ``learn`` alike; keep the statistics fixed while evaluating.
    """

    def __init__(
        self, obs_shape: int | tuple[int, ...], clip: float = 10.0, epsilon: float = 1e-8
    ) -> None:
        self.rms = RunningMeanStd(obs_shape)
        self.clip = float(clip)
        self.epsilon = float(epsilon)

    @property
    def mean(self) -> np.ndarray:
        return self.rms.mean

    @property
    def var(self) -> np.ndarray:
        return self.rms.var

    def update(self, obs: ArrayLike) -> None:
        """Add observations ``[B, *obs_shape]`` (or one) to the statistics."""
        self.rms.update(obs)

    def normalize(self, obs: ArrayLike) -> np.ndarray:
        """float32 observations of the same shape, ``(obs - mean) / std``, clipped to ``±clip``."""
        return self.rms.normalize(obs, clip=self.clip, epsilon=self.epsilon)

    def state_dict(self) -> dict[str, np.ndarray | float]:
        return self.rms.state_dict()

    def load_state_dict(self, state: Mapping[str, np.ndarray | float]) -> None:
        self.rms.load_state_dict(state)


class RewardNormalizer:
    """Rewards divided by the running standard deviation of the discounted return.

    The scale that matters to a value function is that of returns, not of
    single rewards, so this tracks ``G ← γ G + r`` per env column and divides
    rewards by ``std(G)``, without subtracting a mean (which would change the
    reward's sign and the problem). ``step(r)`` updates ``G`` and the
    statistics; ``reset()`` zeroes ``G`` at an episode end, so returns never
    run across episodes (which would inflate the variance). ``normalize_window``
    does both for a whole window, the way a learner uses it before GAE.
    """

    def __init__(
        self, gamma: float = 0.99, clip: float = 10.0, epsilon: float = 1e-8, n_envs: int = 1
    ) -> None:
        if not 0.0 <= gamma <= 1.0:
            raise NormalizerError(f"gamma must lie in [0, 1], got {gamma}")
        self.gamma = float(gamma)
        self.clip = float(clip)
        self.epsilon = float(epsilon)
        self.rms = RunningMeanStd(())
        self.returns = np.zeros(int(n_envs), dtype=np.float64)

    def _per_env(self, name: str, value: ArrayLike, dtype: type) -> np.ndarray:
        arr = np.asarray(value, dtype=dtype).reshape(-1)
        if arr.shape != self.returns.shape:
            raise NormalizerError(
                f"{name} has {arr.size} entries, expected one per env column ({self.returns.size})"
            )
        return arr

    def step(self, reward: ArrayLike) -> None:
        """Advance the running return by one step's rewards (one per env column)."""
        self.returns = self.gamma * self.returns + self._per_env("reward", reward, np.float64)
        self.rms.update(self.returns)

    def reset(self, done: ArrayLike | None = None) -> None:
        """Zero the running return of the columns whose episode ended (all when ``done`` is None)."""
        if done is None:
            self.returns[:] = 0.0
        else:
            self.returns[self._per_env("done", done, bool)] = 0.0

    def normalize(self, rewards: ArrayLike) -> np.ndarray:
        """float32 rewards divided by the return std, clipped to ``±clip`` (no clipping if ``clip <= 0``)."""
        out = np.asarray(rewards, dtype=np.float64) / np.sqrt(self.rms.var + self.epsilon)
        if self.clip > 0:
            out = np.clip(out, -self.clip, self.clip)
        return out.astype(np.float32)

    def normalize_window(self, rewards: ArrayLike, dones: ArrayLike) -> np.ndarray:
        """``step`` and ``reset`` through a ``[T, N]`` window, then ``normalize`` all of it."""
        r = np.asarray(rewards, dtype=np.float64)
        d = np.asarray(dones, dtype=bool)
        if r.shape != d.shape or r.ndim not in (1, 2):
            raise NormalizerError(
                f"rewards {r.shape} and dones {d.shape} must have the same (T, N) or (T,) shape"
            )
        for t in range(r.shape[0]):
            self.step(r[t])
            self.reset(d[t])
        return self.normalize(r)

    def state_dict(self) -> dict[str, np.ndarray | float]:
        return {**self.rms.state_dict(), "returns": self.returns.copy()}

    def load_state_dict(self, state: Mapping[str, np.ndarray | float]) -> None:
        returns = np.asarray(state["returns"], dtype=np.float64)
        if returns.shape != self.returns.shape:
            raise NormalizerError(
                f"saved running returns have shape {returns.shape}, expected {self.returns.shape}"
            )
        self.rms.load_state_dict(state)
        self.returns = returns.copy()
