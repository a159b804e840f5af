"""BackoffOptimizer: one hyperparameter at a time, by a two-sided finite difference.

For the hyperparameter ``i`` whose turn it is, with centre ``x`` in the unit
cube of ``bounds.ParamSpace`` and its own step ``sᵢ``:

    f₀  the score of the window at the centre (the one before the probes)
    f⁺  the score with xᵢ + sᵢ,   f⁻  the score with xᵢ − sᵢ   (each clipped to [0, 1])
    xᵢ ← the better probe, if it beats f₀;  otherwise sᵢ ← max(sᵢ·shrink, min_step)

then the turn passes to the next hyperparameter. The first probe's side is
drawn at random each time: in a learning run the later window tends to score
higher whatever the hyperparameters do, and a fixed order would make that
trend push every parameter the same way. Steps only shrink, so under noise
the search settles instead of wandering; ``min_step`` keeps it able to follow
an optimum that moves.

A cycle takes three evaluations per hyperparameter (centre, probe, probe), so
N hyperparameters take 3N; ``SPSAOptimizer`` moves all of them in three. Its
strength is that it needs no gain tuned to the score and cannot overshoot.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from optix_core.optimizers.bounds import BoundedOptimizer, Bounds, check_gain
from optix_core.types import EvalMetrics, HyperparamSet, finite_or_none

CENTRE, FIRST, SECOND = "centre", "first", "second"


class BackoffOptimizer(BoundedOptimizer):
    """Cycles through the bounded hyperparameters, probing each up and down.

    ``step``: first probe distance, as a fraction of the unit range, in
    (0, 1]; ``shrink`` in (0, 1) multiplies it when neither probe helps;
    ``min_step`` in (0, step] is its floor; ``seed`` draws which side is
    probed first. A probe the agent no longer holds
    when its score arrives (a rollback, a callback) ends the turn without a
    move; the optimizer then scores the hyperparameters the agent holds for
    one window before probing again.
    """

    def __init__(
        self,
        param_bounds: Bounds | None = None,
        log_scale: Iterable[str] | None = None,
        *,
        step: float = 0.1,
        shrink: float = 0.5,
        min_step: float = 0.01,
        seed: int | None = None,
    ) -> None:
        super().__init__(param_bounds, log_scale, seed)
        self.step = check_gain("step", step, positive=True, at_most=1.0)
        self.shrink = check_gain("shrink", shrink, positive=True)
        if self.shrink >= 1.0:
            raise ValueError(f"shrink must be < 1, got {shrink}")
        self.min_step = check_gain("min_step", min_step, positive=True, at_most=self.step)
        self._steps = np.full(len(self.space), self.step)
        self._index = 0
        self._phase = CENTRE
        self._side = 1.0  # the side (+1 up, −1 down) of the first probe
        self._x: np.ndarray | None = None
        self._f0 = -math.inf
        self._f1 = -math.inf
        self._expected: dict[str, Any] | None = None

    @property
    def is_probing(self) -> bool:
        return self._phase != CENTRE

    @property
    def steps(self) -> dict[str, float]:
        """Each hyperparameter's probe distance, in unit coordinates."""
        return dict(zip(self.space.names, self._steps.tolist(), strict=True))

    def suggest(self, current: HyperparamSet, metrics: EvalMetrics) -> HyperparamSet:
        if not len(self.space):
            return current.copy()
        self._check(current)
        score = _score(metrics)
        if self._x is None:
            self._x = self.space.to_unit(current.params)
        elif not self.space.matches(current.params, self._expected):
            # The window just scored did not run what this optimizer set: take
            # what the agent holds as the centre and score it before probing.
            if self._phase != CENTRE:
                self._index = (self._index + 1) % len(self.space)
            self._x = self.space.to_unit(current.params)
            self._expected = self.space.values(current.params)
            self._phase = CENTRE
            return current.copy()
        if self._phase == CENTRE:
            self._f0 = score
            self._side = float(self._rng.choice((-1.0, 1.0)))
            return self._put(current, self._probe(self._side), FIRST)
        if self._phase == FIRST:
            self._f1 = score
            return self._put(current, self._probe(-self._side), SECOND)
        i = self._index
        f_first, f_second = self._f1, score
        best_side, best = (self._side, f_first) if f_first >= f_second else (-self._side, f_second)
        if best > self._f0:
            self._x = self._probe(best_side)
        else:
            self._steps[i] = max(self._steps[i] * self.shrink, self.min_step)
        self._index = (i + 1) % len(self.space)
        return self._put(current, self._x, CENTRE)

    def _probe(self, side: float) -> np.ndarray:
        assert self._x is not None
        x = self._x.copy()
        x[self._index] = min(max(x[self._index] + side * self._steps[self._index], 0.0), 1.0)
        return x

    def _put(self, current: HyperparamSet, x: np.ndarray, phase: str) -> HyperparamSet:
        params = self.space.from_unit(x, current.params)
        self._expected = self.space.values(params)
        self._phase = phase
        return HyperparamSet(params=params, episode_id=current.episode_id)

    def state_dict(self) -> dict[str, Any]:
        return {
            **self._base_state(),
            "steps": self._steps.tolist(),
            "index": self._index,
            "phase": self._phase,
            "side": self._side,
            "x": None if self._x is None else self._x.tolist(),
            "f0": finite_or_none(self._f0),
            "f1": finite_or_none(self._f1),
            "expected": self._expected,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self._load_base_state(state)
        self._steps = np.array(state["steps"], dtype=np.float64)
        self._index = int(state["index"])
        self._phase = state["phase"]
        self._side = float(state["side"])
        self._x = None if state["x"] is None else np.array(state["x"], dtype=np.float64)
        self._f0 = _load_score(state["f0"])
        self._f1 = _load_score(state["f1"])
        self._expected = None if state["expected"] is None else dict(state["expected"])


def _score(metrics: EvalMetrics) -> float:
    """The score, with nan and inf ranked below every real score."""
    score = float(metrics.primary_score)
    return score if math.isfinite(score) else -math.inf


def _load_score(value: float | None) -> float:
    """A score read back from a state dict, where JSON stored -inf as null."""
    return -math.inf if value is None else float(value)
