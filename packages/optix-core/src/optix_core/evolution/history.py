"""ScoreHistory: recent (train, val) scores, and the trend signals read from them.

The adaptive spawn noise and the MetaController decide from the same few
numbers: how fast a score rises, how far train runs ahead of validation and
whether the two move together. They live here so that both read them alike.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable

import numpy as np

from optix_core.types import EvalMetrics

EPS = 1e-8  # floor for divisors: a score scale of exactly zero


class ScoreHistory:
    """The scores of the most recent ``maxlen`` evaluations, oldest first.

    An evaluation scored against a validation window (``BaseEvaluator.combine``)
    has ``primary_score = val`` and ``generalization_gap = train − val``, so
    ``record`` keeps ``train = primary + gap`` and ``val = primary``. Without a
    validation pipeline only ``train`` is known; ``val`` is then ``None``.
    """

    def __init__(self, maxlen: int | None = None) -> None:
        if maxlen is not None and maxlen < 2:
            raise ValueError(f"a score history needs maxlen >= 2 (or None), got {maxlen}")
        self.maxlen = maxlen
        self._train: deque[float] = deque(maxlen=maxlen)
        self._val: deque[float | None] = deque(maxlen=maxlen)

    @classmethod
    def from_metrics(
        cls, metrics: Iterable[EvalMetrics], maxlen: int | None = None
    ) -> ScoreHistory:
        history = cls(maxlen)
        for m in metrics:
            history.record(m)
        return history

    def record(self, metrics: EvalMetrics) -> None:
        """Append one evaluation as the loop reports it."""
        if metrics.generalization_gap is None:
            self.append(metrics.primary_score)
        else:
            self.append(metrics.primary_score + metrics.generalization_gap, metrics.primary_score)

    def append(self, train: float, val: float | None = None) -> None:
        self._train.append(float(train))
        self._val.append(None if val is None else float(val))

    def recent(self, n: int) -> ScoreHistory:
        """The last ``n`` evaluations, as a history of their own."""
        tail = ScoreHistory()
        for train, val in list(zip(self._train, self._val, strict=True))[-n:]:
            tail.append(train, val)
        return tail

    def __len__(self) -> int:
        return len(self._train)

    @property
    def has_validation(self) -> bool:
        """True when every evaluation held carries a validation score."""
        return bool(self._val) and all(v is not None for v in self._val)

    @property
    def train(self) -> np.ndarray:
        return np.asarray(self._train, dtype=np.float64)

    @property
    def val(self) -> np.ndarray | None:
        return np.asarray(self._val, dtype=np.float64) if self.has_validation else None

    @property
    def primary(self) -> np.ndarray:
        """The scores decisions rest on: validation when there is one, else train."""
        val = self.val
        return self.train if val is None else val


def slope(y: np.ndarray) -> float:
    """Least-squares slope of ``y`` per evaluation; 0 for fewer than two points."""
    if len(y) < 2:
        return 0.0
    t = np.arange(len(y), dtype=np.float64)
    return float(np.polyfit(t, y, 1)[0])


def relative_slope(y: np.ndarray) -> float:
    """``slope(y) / mean(|y|)``: the rise per evaluation as a fraction of the score's scale.

    tensor-optix divided by ``|mean(y)|``, which explodes for scores that cross
    zero (a LunarLander run from −100 to +100); ``mean(|y|)`` equals it for
    one-signed scores and stays meaningful for the others.
    """
    if len(y) < 2:
        return 0.0
    return slope(y) / max(float(np.mean(np.abs(y))), EPS)


def relative_gaps(train: np.ndarray, val: np.ndarray) -> np.ndarray:
    """gapₜ = (trainₜ − valₜ) / |valₜ|: how far training runs ahead of validation."""
    return (train - val) / np.maximum(np.abs(val), EPS)


def pearson(x: np.ndarray, y: np.ndarray) -> float:
    """Pearson correlation of two score series.

    A constant series has no correlation defined. Two constant series move
    together trivially (1); one that moves while the other stands still is the
    divergence the signal exists to catch (0).
    """
    sx, sy = float(np.std(x)), float(np.std(y))
    if sx == 0.0 or sy == 0.0:
        return 1.0 if sx == sy else 0.0
    return float(np.corrcoef(x, y)[0, 1])
