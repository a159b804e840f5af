"""MomentumOptimizer: SPSA's probe pair, with a signed-momentum step.

The gradient estimate is SPSA's (Spall 1992), from the same three-evaluation
cycle and gains as ``SPSAOptimizer``; only the step differs. It follows
Signum (Bernstein et al. 2018, "signSGD: compressed optimisation for
non-convex problems"):

    m ← β·m + (1 − β)·ĝ
    x ← clip(x + a_k·sign(m), 0, 1)

The estimate, not successive score differences, feeds the momentum: in a
learning run the score rises from one window to the next whatever the
hyperparameters do, and a difference of successive scores would read that
trend as a gradient; SPSA's random probe signs cancel it. Every coordinate
moves by exactly ``a_k`` per step, whatever the scores' units, and one noisy
probe pair cannot turn the direction around, since ``m`` averages about
``1/(1 − β)`` estimates. That suits scores noisier than SPSA's step can take.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from optix_core.optimizers.bounds import Bounds, check_gain
from optix_core.optimizers.spsa import SPSAOptimizer


class MomentumOptimizer(SPSAOptimizer):
    """SPSA with a sign-of-momentum step; ``beta`` in [0, 1) weighs past estimates."""

    def __init__(
        self,
        param_bounds: Bounds | None = None,
        log_scale: Iterable[str] | None = None,
        *,
        a: float = 0.05,
        c: float = 0.1,
        A: float = 10.0,
        beta: float = 0.9,
        seed: int | None = None,
    ) -> None:
        super().__init__(param_bounds, log_scale, a=a, c=c, A=A, seed=seed)
        self.beta = check_gain("beta", beta)
        if self.beta >= 1.0:
            raise ValueError(f"beta must be < 1, got {beta}")
        self._m = np.zeros(len(self.space))

    def _step(self, g_hat: np.ndarray, diff: float) -> np.ndarray:
        assert self._x is not None
        a_k, _ = self.gains(self._k)
        self._m = self.beta * self._m + (1.0 - self.beta) * g_hat
        return self._x + a_k * np.sign(self._m)

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "m": self._m.tolist()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        super().load_state_dict(state)
        self._m = np.array(state["m"], dtype=np.float64)
