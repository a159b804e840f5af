"""Proportional prioritized experience replay (Schaul et al. 2016).

Transition ``i`` is sampled with probability ``P(i) = p_i^α / Σ_k p_k^α``
(eq. 1), and its update is scaled by the importance-sampling weight
``w_i = (N · P(i))^-β / max_j w_j`` (section 3.4), which undoes the bias that
non-uniform sampling puts on the expected update when β = 1. The maximum is
over all stored transitions, so ``w_i = (p_min^α / p_i^α)^β`` and every weight
lies in (0, 1]. New transitions enter at the largest priority seen so far, so
each is replayed at least once soon after it arrives (Algorithm 1, line 6).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, DTypeLike

from optix_core.buffers.replay import (
    BufferFileError,
    FieldSpec,
    ReplayBuffer,
    ReplayBufferError,
)
from optix_core.buffers.sum_tree import SumTree


class PriorityExponentError(ReplayBufferError):
    """α or β is outside its valid range."""


class PriorityError(ReplayBufferError):
    """A priority update names an empty slot or gives a priority that is not positive and finite."""


def _check_unit_interval(name: str, value: float) -> float:
    value = float(value)
    if not 0.0 <= value <= 1.0:
        raise PriorityExponentError(f"{name} must lie in [0, 1], got {value}")
    return value


class PrioritizedReplayBuffer(ReplayBuffer):
    """A ``ReplayBuffer`` sampled in proportion to ``priority ** alpha``.

    ``sample`` adds ``weights`` (float32, the importance weights for the
    current ``beta``) and ``indices`` to the batch; after computing the new TD
    errors, call ``update_priorities(indices, abs(td_error) + eps)``. A small
    ``eps`` keeps transitions with zero error sampleable (Schaul et al. 2016,
    section 3.3); priorities must be positive.
    """

    def __init__(
        self,
        capacity: int,
        fields: Mapping[str, FieldSpec | tuple[Any, DTypeLike]],
        *,
        alpha: float = 0.6,
        beta: float = 0.4,
        seed: int | np.random.Generator | None = None,
    ) -> None:
        super().__init__(capacity, fields, seed=seed)
        self.alpha = _check_unit_interval("alpha", alpha)
        self.beta = beta
        self.max_priority = 1.0
        self.tree = SumTree(self.capacity)

    @property
    def beta(self) -> float:
        """Importance-sampling exponent: 0 applies no correction, 1 corrects fully."""
        return self._beta

    @beta.setter
    def beta(self, value: float) -> None:
        self._beta = _check_unit_interval("beta", value)

    @property
    def nbytes(self) -> int:
        return super().nbytes + self.tree.nbytes

    def _write(self, batch: dict[str, np.ndarray], n: int) -> np.ndarray:
        """Every way in (``add``, ``add_window``, ``add_stored``) enters at the highest priority seen."""
        idx = super()._write(batch, n)
        self.tree.update(idx, self.max_priority**self.alpha)
        return idx

    def sample(self, batch_size: int, beta: float | None = None) -> dict[str, np.ndarray]:
        """Draw ``batch_size`` transitions with probability ``P(i)``, with ``weights`` and ``indices``.

        ``beta`` overrides the buffer's exponent for this call (an annealing
        schedule can pass it each time instead).
        """
        beta = self._beta if beta is None else _check_unit_interval("beta", beta)
        self._check_batch_size(batch_size)
        idx = self.tree.sample(batch_size, self.rng)
        out = self.get(idx)
        # w_i / max_j w_j = ((N P(i)) / (N P_min))^-β = (p_min^α / p_i^α)^β
        ratio = self.tree.min / self.tree.get(idx).astype(np.float64)
        out["weights"] = np.power(ratio, beta).astype(np.float32)
        out["indices"] = idx
        return out

    def update_priorities(self, indices: ArrayLike, priorities: ArrayLike) -> None:
        """Set the priorities of sampled transitions (``|δ| + ε``); repeated indices: last wins."""
        idx = np.asarray(indices, dtype=np.int64).ravel()
        pri = np.asarray(priorities, dtype=np.float64).ravel()
        if idx.shape != pri.shape:
            raise PriorityError(
                f"got {idx.size} indices and {pri.size} priorities; give one priority per index"
            )
        if idx.size == 0:
            return
        if idx.min() < 0 or idx.max() >= self._size:
            raise PriorityError(
                f"indices must name stored transitions, in [0, {self._size - 1}]; "
                f"got values in [{idx.min()}, {idx.max()}]"
            )
        if not (np.isfinite(pri).all() and pri.min() > 0):
            bad = pri[~(np.isfinite(pri) & (pri > 0))][0]
            raise PriorityError(
                f"priorities must be positive and finite (use |td_error| + eps), got {bad}"
            )
        self.tree.update(idx, pri**self.alpha)
        self.max_priority = max(self.max_priority, float(pri.max()))

    def _state_arrays(self) -> dict[str, np.ndarray]:
        arrays = super()._state_arrays()
        arrays["__priorities"] = np.array(self.tree.leaves[: self._size])
        arrays["__max_priority"] = np.asarray(self.max_priority, dtype=np.float64)
        arrays["__alpha"] = np.asarray(self.alpha, dtype=np.float64)
        return arrays

    def _check_file(self, arrays: Mapping[str, np.ndarray], path: str) -> None:
        super()._check_file(arrays, path)
        for key in ("__priorities", "__max_priority", "__alpha"):
            if key not in arrays:
                raise BufferFileError(
                    f"{path} lacks {key!r}: it was not saved from a PrioritizedReplayBuffer"
                )
        if float(arrays["__alpha"]) != self.alpha:
            raise BufferFileError(
                f"{path} holds priorities raised to alpha={float(arrays['__alpha'])}, "
                f"expected alpha={self.alpha} as this buffer uses"
            )
        size = int(arrays["__size"])
        priorities = arrays["__priorities"]
        if priorities.shape != (size,):
            raise BufferFileError(f"{path} holds {priorities.shape} priorities, expected ({size},)")
        if size and not (np.isfinite(priorities).all() and priorities.min() > 0):
            raise BufferFileError(f"{path} holds priorities that are not positive and finite")

    def _restore(self, arrays: Mapping[str, np.ndarray]) -> None:
        super()._restore(arrays)
        self.tree.set_all(arrays["__priorities"])
        self.max_priority = float(arrays["__max_priority"])
