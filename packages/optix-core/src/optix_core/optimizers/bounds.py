"""What the online optimizers share: the box they search, and how they map it to [0, 1].

Every optimizer here works on a normalised coordinate per tuned
hyperparameter, ``x = (θ − lo) / (hi − lo)``, or ``x = (log θ − log lo) /
(log hi − log lo)`` for a log-scale one. A fixed step in ``x`` then means the
same for a learning rate of 3e-4 and a clip ratio of 0.2, and a learning rate
moves by factors rather than by amounts, so ``[1e-5, 1e-2]`` is searched
evenly per decade instead of almost only in its top decade.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Mapping
from typing import Any, Self

import numpy as np

from optix_core.optimizer import BaseOptimizer
from optix_core.search_space import parse_search_space
from optix_core.types import HyperparamSet

Bounds = Mapping[str, tuple[float, float]]

# Scale parameters that are searched in log space unless ``log_scale`` says
# otherwise (tensor-optix's PBTOptimizer: learning_rate, epsilon, weight_decay).
DEFAULT_LOG_SCALE = frozenset({"learning_rate", "lr", "epsilon", "weight_decay"})

# Relative tolerance when checking that the agent still holds what an optimizer
# put in force: an agent may store a float32 copy of the value.
_MATCH_RTOL = 1e-6


def bounds_from_search_space(
    space: Mapping[str, tuple[Any, ...]],
) -> tuple[dict[str, tuple[float, float]], list[str]]:
    """``param_bounds`` and ``log_scale`` from a search space in TrialOrchestrator's format.

    ``{"learning_rate": ("log_float", 1e-4, 3e-3), "n_epochs": ("int", 3, 15)}``:
    ``log_float`` and ``log_int`` are searched in log space; ``categorical``
    entries have no order to step along and are left out. An empty space
    tunes nothing (an ``AgentSpec`` without a search space).
    """
    if not space:
        return {}, []
    parsed = parse_search_space(space).values()
    numeric = [p for p in parsed if p.kind != "categorical"]
    return {p.name: (p.low, p.high) for p in numeric}, [p.name for p in numeric if p.log]


class ParamSpace:
    """The tuned hyperparameters, their bounds, and the map to the unit cube.

    A hyperparameter whose value in force is an ``int`` is tuned on the
    integers: values are rounded after every step and stay inside
    ``[ceil(lo), floor(hi)]``.
    """

    def __init__(self, param_bounds: Bounds | None, log_scale: Iterable[str] | None) -> None:
        bounds = dict(param_bounds or {})
        for name, pair in bounds.items():
            if not isinstance(name, str):
                raise ValueError(f"param_bounds keys are hyperparameter names, got {name!r}")
            bounds[name] = _check_pair(name, pair)
        if isinstance(log_scale, str):
            raise ValueError(
                f"log_scale takes a list of names, got the string {log_scale!r}; "
                f"write log_scale=[{log_scale!r}]"
            )
        explicit = log_scale is not None
        logs = set(log_scale) if explicit else DEFAULT_LOG_SCALE & set(bounds)
        unknown = sorted(logs - set(bounds))
        if unknown:
            raise ValueError(
                f"log_scale names {unknown[0]!r}, which is not in param_bounds "
                f"({', '.join(bounds) or 'empty'})"
            )
        for name in sorted(logs):
            if bounds[name][0] <= 0:
                hint = (
                    ""
                    if explicit
                    else " (it is log-scale by default; to search it linearly, pass "
                    "log_scale=[] or a list without it)"
                )
                raise ValueError(
                    f"{name!r} is searched in log space, which needs a lower bound > 0, "
                    f"got {bounds[name]}{hint}"
                )
        self.names: tuple[str, ...] = tuple(bounds)
        self.low = np.array([bounds[n][0] for n in self.names], dtype=np.float64)
        self.high = np.array([bounds[n][1] for n in self.names], dtype=np.float64)
        self.log = np.array([n in logs for n in self.names], dtype=bool)
        # Work in log space for log-scale parameters: then both maps are affine.
        self._lo, self._hi = self.low.copy(), self.high.copy()
        self._lo[self.log] = np.log(self.low[self.log])
        self._hi[self.log] = np.log(self.high[self.log])

    def __len__(self) -> int:
        return len(self.names)

    def check(self, params: Mapping[str, Any], owner: str) -> None:
        """Raise unless every tuned name is in ``params`` with a real number."""
        for name in self.names:
            if name not in params:
                raise ValueError(
                    f"{owner} tunes {name!r}, but the agent has no such hyperparameter "
                    f"(it has: {', '.join(sorted(params)) or 'none'})"
                )
            value = params[name]
            if isinstance(value, bool) or not isinstance(value, numbers.Real):
                raise ValueError(f"{owner} tunes {name!r}, whose value {value!r} is not a number")

    def to_unit(self, params: Mapping[str, Any]) -> np.ndarray:
        """The unit-cube coordinates of ``params``; values outside the bounds clip to 0 or 1."""
        theta = np.array([float(params[n]) for n in self.names], dtype=np.float64)
        z = np.clip(theta, self.low, self.high)
        z[self.log] = np.log(z[self.log])
        return (z - self._lo) / (self._hi - self._lo)

    def from_unit(self, x: np.ndarray, template: Mapping[str, Any]) -> dict[str, Any]:
        """``template`` with the tuned names set to the point ``x`` of the unit cube."""
        theta = self._lo + np.clip(x, 0.0, 1.0) * (self._hi - self._lo)
        theta[self.log] = np.exp(theta[self.log])
        return self.place(dict(zip(self.names, theta.tolist(), strict=True)), template)

    def place(self, values: Mapping[str, float], template: Mapping[str, Any]) -> dict[str, Any]:
        """``template`` with ``values`` clipped into the bounds (and rounded for integers)."""
        params = dict(template)
        for i, name in enumerate(self.names):
            value = float(min(max(float(values[name]), self.low[i]), self.high[i]))
            if _is_integer(template[name]):
                low, high = math.ceil(self.low[i]), math.floor(self.high[i])
                if low > high:
                    raise ValueError(
                        f"{name!r} holds an integer, but its bounds "
                        f"({self.low[i]:g}, {self.high[i]:g}) contain none"
                    )
                params[name] = min(max(round(value), low), high)
            else:
                params[name] = value
        return params

    def values(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """The tuned names' values in ``params``."""
        return {name: params[name] for name in self.names}

    def matches(self, params: Mapping[str, Any], expected: Mapping[str, Any] | None) -> bool:
        """Whether ``params`` still holds the tuned values ``expected``."""
        if expected is None:
            return False
        return all(
            math.isclose(float(params[n]), float(expected[n]), rel_tol=_MATCH_RTOL, abs_tol=1e-12)
            for n in self.names
        )


class BoundedOptimizer(BaseOptimizer):
    """Base of the online optimizers: a ``ParamSpace`` and a seeded generator.

    ``param_bounds=None`` (or empty) tunes nothing: ``suggest`` hands back the
    hyperparameters in force and the optimizer never probes, so a loop whose
    agent declares no bounds trains exactly as it would without an optimizer.
    ``log_scale=None`` searches the conventional scale parameters
    (``DEFAULT_LOG_SCALE``) among the bounded names in log space; give a list
    (possibly empty) to choose.
    """

    def __init__(
        self,
        param_bounds: Bounds | None = None,
        log_scale: Iterable[str] | None = None,
        seed: int | None = None,
    ) -> None:
        self.space = ParamSpace(param_bounds, log_scale)
        self._rng = np.random.default_rng(seed)

    @classmethod
    def from_search_space(cls, space: Mapping[str, tuple[Any, ...]], **kwargs: Any) -> Self:
        """Build from an ``AgentSpec.search_space`` (TrialOrchestrator's format)."""
        param_bounds, log_scale = bounds_from_search_space(space)
        return cls(param_bounds=param_bounds, log_scale=log_scale, **kwargs)

    def _check(self, current: HyperparamSet) -> None:
        self.space.check(current.params, type(self).__name__)

    def _base_state(self) -> dict[str, Any]:
        return {"params": list(self.space.names), "rng": self._rng.bit_generator.state}

    def _load_base_state(self, state: Mapping[str, Any]) -> None:
        if list(state["params"]) != list(self.space.names):
            raise ValueError(
                f"{type(self).__name__}: this state tunes {list(state['params'])}, "
                f"this optimizer tunes {list(self.space.names)}"
            )
        self._rng.bit_generator.state = state["rng"]


def check_gain(
    name: str, value: float, *, positive: bool = False, at_most: float | None = None
) -> float:
    """A finite, non-negative (or positive) number no larger than ``at_most``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    if value < 0 or (positive and value == 0):
        raise ValueError(f"{name} must be {'> 0' if positive else '>= 0'}, got {value}")
    if at_most is not None and value > at_most:
        raise ValueError(f"{name} must be <= {at_most}, got {value}")
    return float(value)


def score_or_nan(value: float | None) -> float:
    """A score read back from a state dict, where JSON stored nan and inf as null."""
    return math.nan if value is None else float(value)


def _check_pair(name: str, pair: Any) -> tuple[float, float]:
    if not isinstance(pair, tuple | list) or len(pair) != 2:
        raise ValueError(f"param_bounds[{name!r}] must be a (low, high) pair, got {pair!r}")
    low, high = pair
    for end in (low, high):
        if isinstance(end, bool) or not isinstance(end, numbers.Real) or not math.isfinite(end):
            raise ValueError(f"param_bounds[{name!r}] must be two finite numbers, got {pair!r}")
    if not low < high:
        raise ValueError(f"param_bounds[{name!r}] needs low < high, got {pair!r}")
    return float(low), float(high)


def _is_integer(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)
