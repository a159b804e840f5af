"""Reading a run's signals: the regime of its scores and the trend of its training diagnostics.

``RegimeDetector`` labels the recent scores trending, ranging or volatile, for
callers that weigh ensemble members or pick a policy by regime.
``DiagnosticController`` aggregates the diagnostics that ``learn()`` returns,
window by window, and applies tensor-optix's immediate corrections (halve the
learning rate on a loss spike or an oversized KL step, double the entropy
bonus on entropy collapse, re-open exploration when ε sits at its floor
without progress).
"""

from __future__ import annotations

import logging
import math
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from optix_core.types import EvalMetrics, HyperparamSet

logger = logging.getLogger(__name__)

REGIMES = ("trending", "ranging", "volatile")


class AnalysisConfigError(ValueError):
    """A detector or controller was configured with an out-of-range setting."""


@dataclass(frozen=True)
class RegimeReport:
    """The regime and the numbers it was read from."""

    regime: str
    slope: float  # least-squares score change per evaluation
    normalized_slope: float  # slope / (|mean| + eps)
    detrended_cv: float  # std(residuals) / (|mean| + eps)
    n: int  # scores used


class RegimeDetector:
    """Classifies recent scores as ``trending``, ``ranging`` or ``volatile``.

    Volatility is measured on the residuals of a least-squares line through
    the last ``window`` scores, not on the raw scores::

        residuals = scores - linear_fit(scores)
        cv        = std(residuals) / (|mean(scores)| + eps)

    so a score climbing steadily is not mistaken for a noisy one. ``cv`` above
    ``volatility_threshold`` is volatile; otherwise a fitted slope whose size
    relative to the mean exceeds ``trend_threshold`` per evaluation is
    trending (up or down: the report's ``slope`` has the sign); otherwise
    ranging. Fewer than 3 scores are ranging. Both measures are relative to
    the mean, so the thresholds do not depend on the score's units.
    """

    def __init__(
        self,
        volatility_threshold: float = 0.2,
        trend_threshold: float = 0.05,
        window: int = 10,
        eps: float = 1e-8,
    ) -> None:
        if volatility_threshold <= 0 or trend_threshold <= 0:
            raise AnalysisConfigError(
                f"thresholds must be positive, got volatility_threshold={volatility_threshold} "
                f"and trend_threshold={trend_threshold}"
            )
        if int(window) < 3:
            raise AnalysisConfigError(f"window must be at least 3 scores, got {window}")
        self.volatility_threshold = float(volatility_threshold)
        self.trend_threshold = float(trend_threshold)
        self.window = int(window)
        self.eps = float(eps)

    def analyze(self, history: Sequence[EvalMetrics | float]) -> RegimeReport:
        """The regime of the last ``window`` scores, with its slope and detrended volatility."""
        scores = np.array(
            [
                h.primary_score if isinstance(h, EvalMetrics) else float(h)
                for h in history[-self.window :]
            ],
            dtype=np.float64,
        )
        scores = scores[np.isfinite(scores)]
        if scores.size < 3:
            return RegimeReport("ranging", 0.0, 0.0, 0.0, int(scores.size))
        x = np.arange(scores.size, dtype=np.float64)
        slope, intercept = np.polyfit(x, scores, 1)
        residuals = scores - (slope * x + intercept)
        scale = abs(float(scores.mean())) + self.eps
        cv = float(residuals.std()) / scale
        normalized = float(slope) / scale
        if cv > self.volatility_threshold:
            regime = "volatile"
        elif abs(normalized) > self.trend_threshold:
            regime = "trending"
        else:
            regime = "ranging"
        return RegimeReport(regime, float(slope), normalized, cv, int(scores.size))

    def detect(self, history: Sequence[EvalMetrics | float]) -> str:
        """``"trending"``, ``"ranging"`` or ``"volatile"`` (tensor-optix's call)."""
        return self.analyze(history).regime


@dataclass(frozen=True)
class MetricSummary:
    """One diagnostic over the controller's recent windows (non-finite values excluded)."""

    mean: float
    std: float
    min: float
    max: float
    last: float
    slope: float  # least-squares change per window, 0 with fewer than 2 values
    count: int  # finite values in the summary
    nonfinite: int  # NaN or inf values seen in those windows


class _Tunable(Protocol):
    def get_hyperparams(self) -> HyperparamSet: ...
    def set_hyperparams(self, hyperparams: HyperparamSet) -> None: ...


class DiagnosticController:
    """Per-window aggregation of ``learn()`` diagnostics, with immediate corrective rules.

    ``record`` keeps the last ``window`` values of every numeric diagnostic;
    ``summary`` reduces them (mean, std, min, max, last, slope, NaN count).
    ``step`` records a window and then applies tensor-optix's rules through the
    agent's ``get_hyperparams``/``set_hyperparams``, once ``min_episodes``
    windows have been seen, returning what fired as ``(rule, action)`` pairs:

    - ``LOSS_SPIKE``: ``loss`` (or ``actor_loss``) above ``loss_spike_factor``
      times its recent mean: halve ``learning_rate``.
    - ``ENTROPY_COLLAPSE``: ``entropy`` below ``entropy_floor``: double
      ``entropy_coef`` (at most 0.5).
    - ``KL_TOO_HIGH``: ``approx_kl`` (or ``kl_div``) above twice ``target_kl``:
      halve ``learning_rate``.
    - ``EPSILON_RESET``: ``epsilon`` at ``epsilon_min`` for
      ``epsilon_patience`` windows while ``score`` (or ``episode_reward``) is
      below ``epsilon_score_threshold``: set ``epsilon`` to
      ``epsilon_reset_value``.
    """

    def __init__(
        self,
        window: int = 10,
        loss_spike_factor: float = 5.0,
        entropy_floor: float | None = 0.05,
        target_kl: float | None = 0.02,
        epsilon_patience: int = 20,
        epsilon_reset_value: float = 0.3,
        epsilon_score_threshold: float = 20.0,
        min_episodes: int = 5,
        verbose: bool = False,
    ) -> None:
        if int(window) < 2:
            raise AnalysisConfigError(f"window must be at least 2, got {window}")
        if loss_spike_factor <= 1:
            raise AnalysisConfigError(f"loss_spike_factor must exceed 1, got {loss_spike_factor}")
        self.window = int(window)
        self.loss_spike_factor = float(loss_spike_factor)
        self.entropy_floor = entropy_floor
        self.target_kl = target_kl
        self.epsilon_patience = int(epsilon_patience)
        self.epsilon_reset_value = float(epsilon_reset_value)
        self.epsilon_score_threshold = float(epsilon_score_threshold)
        self.min_episodes = int(min_episodes)
        self.verbose = verbose
        self._history: dict[str, deque[float]] = {}
        self._windows = 0
        self._eps_at_floor = 0
        self.firings: list[tuple[int, str, str]] = []

    @property
    def windows_seen(self) -> int:
        return self._windows

    def record(self, diagnostics: Mapping[str, Any]) -> None:
        """Add one window's diagnostics; non-numeric entries are ignored."""
        self._windows += 1
        for name, value in diagnostics.items():
            if isinstance(value, bool) or not isinstance(value, int | float | np.number):
                continue
            self._history.setdefault(name, deque(maxlen=self.window)).append(float(value))

    def summary(self) -> dict[str, MetricSummary]:
        """Each diagnostic over the recent windows."""
        out = {}
        for name, values in self._history.items():
            arr = np.array(values, dtype=np.float64)
            finite = arr[np.isfinite(arr)]
            nonfinite = int(arr.size - finite.size)
            if finite.size == 0:
                nan = float("nan")
                out[name] = MetricSummary(nan, nan, nan, nan, float(arr[-1]), 0.0, 0, nonfinite)
                continue
            slope = 0.0
            if finite.size >= 2:
                slope = float(np.polyfit(np.arange(finite.size, dtype=np.float64), finite, 1)[0])
            out[name] = MetricSummary(
                mean=float(finite.mean()),
                std=float(finite.std()),
                min=float(finite.min()),
                max=float(finite.max()),
                last=float(arr[-1]),
                slope=slope,
                count=int(finite.size),
                nonfinite=nonfinite,
            )
        return out

    def step(
        self, episode_id: int, agent: _Tunable, train_diagnostics: Mapping[str, Any]
    ) -> list[tuple[str, str]]:
        """Record a window's diagnostics and apply the rules that fire; return ``(rule, action)`` pairs."""
        previous_losses = list(
            self._history.get(_first_key(train_diagnostics, "loss", "actor_loss") or "", ())
        )
        self.record(train_diagnostics)
        if self._windows < self.min_episodes:
            return []
        hp = agent.get_hyperparams()
        params = dict(hp.params)
        fired: list[tuple[str, str]] = []

        loss = _number(train_diagnostics, "loss", "actor_loss")
        recent = [x for x in previous_losses if math.isfinite(x)]
        if loss is not None and loss > 0 and len(recent) >= 2:
            mean_loss = float(np.mean(recent))
            lr = float(params.get("learning_rate", 0.0))
            if mean_loss > 0 and loss > self.loss_spike_factor * mean_loss and lr > 0:
                params["learning_rate"] = lr * 0.5
                fired.append(
                    (
                        "LOSS_SPIKE",
                        f"learning_rate {lr:.5g} -> {lr * 0.5:.5g} "
                        f"[loss {loss:.3g} > {self.loss_spike_factor:g} x mean {mean_loss:.3g}]",
                    )
                )

        entropy = _number(train_diagnostics, "entropy")
        if entropy is not None and self.entropy_floor is not None and entropy < self.entropy_floor:
            coef = float(params.get("entropy_coef", 0.0))
            if coef > 0:
                params["entropy_coef"] = min(coef * 2.0, 0.5)
                fired.append(
                    (
                        "ENTROPY_COLLAPSE",
                        f"entropy_coef {coef:.5g} -> {params['entropy_coef']:.5g} "
                        f"[entropy {entropy:.4f} < floor {self.entropy_floor}]",
                    )
                )

        kl = _number(train_diagnostics, "approx_kl", "kl_div")
        if kl is not None and self.target_kl is not None and kl > 2.0 * self.target_kl:
            lr = float(params.get("learning_rate", 0.0))
            if lr > 0:
                params["learning_rate"] = lr * 0.5
                fired.append(
                    (
                        "KL_TOO_HIGH",
                        f"learning_rate {lr:.5g} -> {lr * 0.5:.5g} "
                        f"[KL {kl:.4f} > 2 x target {self.target_kl}]",
                    )
                )

        epsilon = _number(train_diagnostics, "epsilon")
        if epsilon is not None:
            floor = float(params.get("epsilon_min", 0.05))
            self._eps_at_floor = self._eps_at_floor + 1 if abs(epsilon - floor) < 1e-6 else 0
            score = _number(train_diagnostics, "score", "episode_reward")
            stuck = score is None or score < self.epsilon_score_threshold
            if self.epsilon_patience > 0 and self._eps_at_floor >= self.epsilon_patience:
                if stuck:
                    params["epsilon"] = self.epsilon_reset_value
                    fired.append(
                        (
                            "EPSILON_RESET",
                            f"epsilon {epsilon:.4f} -> {self.epsilon_reset_value:.4f} "
                            f"[at its floor for {self._eps_at_floor} windows, score low]",
                        )
                    )
                self._eps_at_floor = 0

        if fired:
            hp.params.update(params)
            agent.set_hyperparams(hp)
            for rule, action in fired:
                logger.info("diagnostics [%s] %s", rule, action)
                if self.verbose:
                    print(f"  DIAG     [{rule}] {action}", flush=True)
        self.firings.extend((episode_id, rule, action) for rule, action in fired)
        return fired


def _first_key(d: Mapping[str, Any], *keys: str) -> str | None:
    return next((k for k in keys if d.get(k) is not None), None)


def _number(d: Mapping[str, Any], *keys: str) -> float | None:
    """The first of ``keys`` present with a finite numeric value."""
    key = _first_key(d, *keys)
    if key is None:
        return None
    try:
        value = float(d[key])
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None
