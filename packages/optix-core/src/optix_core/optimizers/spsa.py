"""SPSAOptimizer: every tuned hyperparameter moves on one gradient estimate from two probes.

Simultaneous perturbation stochastic approximation (Spall 1992). In the unit
cube of ``bounds.ParamSpace``, with ``x`` the centre and ``k`` the step count:

    Δ ~ Rademacher({−1, +1}ᴺ)
    probe +:  x⁺ = x̃ + c_k·Δ  → f⁺, the score of the evaluation that follows
    probe −:  x⁻ = x̃ − c_k·Δ  → f⁻
    ĝᵢ = (f⁺ − f⁻) / (2·c_k·Δᵢ)                       (unbiased: E[ĝ] = ∇f + O(c_k²))
    x ← clip(x + a_k·(2·c_k/σ)·ĝ, 0, 1)               (ascent: a higher score is better)

``x̃ = clip(x, c_k, 1 − c_k)`` keeps both probes inside the box: clipping a
probe instead would make the two sides unequal and bias the estimate.

Gains follow Spall (1998), "Implementation of the simultaneous perturbation
algorithm": ``c_k = c/(k+1)^0.101`` and ``a_k = a·((1+A)/(k+1+A))^0.602``,
written so that ``a`` is the size of the first step in unit coordinates.

``σ`` is a running RMS of past score differences ``f⁺ − f⁻`` (the current
one included), so the step is ``a_k·((f⁺ − f⁻)/σ)·Δ``: its size does not
depend on the score's units. Without it one gain cannot serve CartPole's
returns of 0–500 and a Sharpe ratio of 0–3 alike. The effective gain
``a_k·c_k/σ`` still meets Spall's conditions (Σ gain = ∞, Σ (gain/c_k)² < ∞)
once σ settles.

A cycle takes three evaluations: probe +, probe −, then one at the updated
centre. The centre's window is not needed for the estimate, but it gives the
loop an honest score for degradation checks and a checkpoint trained under
the hyperparameters SPSA believes best (``is_probing`` is False there).
Because Δ's signs are drawn afresh each cycle, a score that drifts while the
policy learns adds zero-mean noise to ĝ rather than a bias.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from optix_core.optimizers.bounds import BoundedOptimizer, Bounds, check_gain, score_or_nan
from optix_core.types import EvalMetrics, HyperparamSet, finite_or_none

# Spall's (1998) recommended decay exponents for a_k and c_k.
GAIN_DECAY = 0.602
PROBE_DECAY = 0.101
# Weight of the running mean square of score differences (about 10 cycles).
SCALE_BETA = 0.9

CENTRE, PLUS, MINUS = "centre", "plus", "minus"


class SPSAOptimizer(BoundedOptimizer):
    """Tunes all bounded hyperparameters at once, from a probe pair per step.

    ``a``: first step size, as a fraction of the unit range. ``c``: first probe
    half-width, in (0, 0.5]. ``A``: Spall's stability constant, delaying the
    decay of ``a_k``. A probe that the agent no longer holds when its score
    arrives (a rollback restored other hyperparameters, a callback changed
    them) is abandoned and the cycle restarts from what the agent holds; a
    cycle whose scores are not finite ends without a step. The gains alone set
    the probe and step sizes: improvements and plateaus leave them be (unlike
    tensor-optix, whose probes shrank on every improvement and doubled on a
    plateau, undoing the decay the convergence proof needs).
    """

    def __init__(
        self,
        param_bounds: Bounds | None = None,
        log_scale: Iterable[str] | None = None,
        *,
        a: float = 0.05,
        c: float = 0.1,
        A: float = 10.0,
        seed: int | None = None,
    ) -> None:
        super().__init__(param_bounds, log_scale, seed)
        self.a = check_gain("a", a)
        self.c = check_gain("c", c, positive=True, at_most=0.5)
        self.A = check_gain("A", A)
        self.last_gradient: dict[str, float] | None = None
        self._phase = CENTRE
        self._k = 0
        self._x: np.ndarray | None = None
        self._delta: np.ndarray | None = None
        self._f_plus = math.nan
        self._expected: dict[str, Any] | None = None
        self._diff_sq = 0.0
        self._n_diffs = 0

    @property
    def is_probing(self) -> bool:
        return self._phase != CENTRE

    def gains(self, k: int) -> tuple[float, float]:
        """``(a_k, c_k)`` at step ``k``."""
        a_k = self.a * ((1.0 + self.A) / (k + 1.0 + self.A)) ** GAIN_DECAY
        return a_k, self.c / (k + 1.0) ** PROBE_DECAY

    def suggest(self, current: HyperparamSet, metrics: EvalMetrics) -> HyperparamSet:
        if not len(self.space):
            return current.copy()
        self._check(current)
        held = self.space.matches(current.params, self._expected)
        if self._phase != CENTRE and not held:
            self._phase = CENTRE  # the probe was overridden: its score is not the probe's
        _, c_k = self.gains(self._k)
        if self._phase == CENTRE:
            if self._x is None or not held:
                self._x = self.space.to_unit(current.params)
            self._delta = self._rng.integers(0, 2, len(self.space)) * 2.0 - 1.0
            return self._put(current, self._probe_centre(c_k) + c_k * self._delta, PLUS)
        assert self._x is not None and self._delta is not None
        score = float(metrics.primary_score)
        if self._phase == PLUS:
            self._f_plus = score
            return self._put(current, self._probe_centre(c_k) - c_k * self._delta, MINUS)
        if math.isfinite(self._f_plus) and math.isfinite(score):
            g_hat = (self._f_plus - score) / (2.0 * c_k * self._delta)
            self.last_gradient = dict(zip(self.space.names, g_hat.tolist(), strict=True))
            self._x = np.clip(self._step(g_hat, self._f_plus - score), 0.0, 1.0)
            self._k += 1
        return self._put(current, self._x, CENTRE)

    def _step(self, g_hat: np.ndarray, diff: float) -> np.ndarray:
        """The centre after one ascent step on ``g_hat``; ``diff`` is f⁺ − f⁻."""
        assert self._x is not None
        a_k, c_k = self.gains(self._k)
        self._diff_sq = SCALE_BETA * self._diff_sq + (1.0 - SCALE_BETA) * diff * diff
        self._n_diffs += 1
        sigma = math.sqrt(self._diff_sq / (1.0 - SCALE_BETA**self._n_diffs))
        if sigma == 0.0:
            return self._x
        return self._x + a_k * (2.0 * c_k / sigma) * g_hat

    def _probe_centre(self, c_k: float) -> np.ndarray:
        assert self._x is not None
        return np.clip(self._x, c_k, 1.0 - c_k)

    def _put(self, current: HyperparamSet, x: np.ndarray, phase: str) -> HyperparamSet:
        params = self.space.from_unit(x, current.params)
        self._expected = self.space.values(params)
        self._phase = phase
        return HyperparamSet(params=params, episode_id=current.episode_id)

    def state_dict(self) -> dict[str, Any]:
        return {
            **self._base_state(),
            "phase": self._phase,
            "k": self._k,
            "x": None if self._x is None else self._x.tolist(),
            "delta": None if self._delta is None else self._delta.tolist(),
            "f_plus": finite_or_none(self._f_plus),
            "expected": self._expected,
            "diff_sq": self._diff_sq,
            "n_diffs": self._n_diffs,
            "last_gradient": self.last_gradient,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self._load_base_state(state)
        self._phase = state["phase"]
        self._k = int(state["k"])
        self._x = None if state["x"] is None else np.array(state["x"], dtype=np.float64)
        self._delta = None if state["delta"] is None else np.array(state["delta"], dtype=np.float64)
        self._f_plus = score_or_nan(state["f_plus"])
        self._expected = None if state["expected"] is None else dict(state["expected"])
        self._diff_sq = float(state["diff_sq"])
        self._n_diffs = int(state["n_diffs"])
        self.last_gradient = (
            None if state["last_gradient"] is None else dict(state["last_gradient"])
        )
