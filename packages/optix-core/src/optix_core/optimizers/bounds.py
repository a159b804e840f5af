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
from optix_core.search_space import (
    SearchSpace,
    SearchSpaceError,
    clip_value,
    parse_search_space,
)
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
    tunes nothing (an ``AgentSpec`` without a search space). The optimizers'
    ``from_search_space`` keeps more: the integer kinds.
    """
    numeric = _numeric(space)
    return {p.name: (p.low, p.high) for p in numeric.values()}, [
        p.name for p in numeric.values() if p.log
    ]


def search_space_from_bounds(
    param_bounds: Bounds | None, log_scale: Iterable[str] | None
) -> SearchSpace:
    """``param_bounds`` and ``log_scale`` written as a search space and parsed by
    ``parse_search_space``: ``("log_float", low, high)`` for the names searched
    in log space, ``("float", low, high)`` for the others.

    Only the shape of the two arguments is checked here; the ranges obey the
    parser's rules, the same as a trial's.
    """
    bounds = dict(param_bounds or {})
    for name, pair in bounds.items():
        if not isinstance(pair, tuple | list) or len(pair) != 2:
            raise ValueError(f"param_bounds[{name!r}] must be a (low, high) pair, got {pair!r}")
    if isinstance(log_scale, str):
        raise ValueError(
            f"log_scale takes a list of names, got the string {log_scale!r}; "
            f"write log_scale=[{log_scale!r}]"
        )
    explicit = log_scale is not None
    logs = set(log_scale) if explicit else DEFAULT_LOG_SCALE & set(bounds)
    unknown = sorted(logs - set(bounds), key=repr)
    if unknown:
        raise ValueError(
            f"log_scale names {unknown[0]!r}, which is not in param_bounds "
            f"({', '.join(map(str, bounds)) or 'empty'})"
        )
    if not bounds:
        return {}
    spec = {
        name: ("log_float" if name in logs else "float", *pair) for name, pair in bounds.items()
    }
    try:
        return parse_search_space(spec)
    except SearchSpaceError as exc:
        hint = (
            f" ({', '.join(sorted(DEFAULT_LOG_SCALE))} are searched in log space by "
            "default; to search one linearly, pass log_scale=[] or a list without it)"
            if not explicit and logs and "lo > 0" in str(exc)
            else ""
        )
        raise SearchSpaceError(f"param_bounds: {exc}{hint}") from None


class ParamSpace:
    """The tuned hyperparameters, their ranges, and the map to the unit cube.

    Built from ``param_bounds`` and ``log_scale`` (``search_space_from_bounds``)
    or from a search space (``ParamSpace.from_search_space``); either way the
    ranges are ``Param`` entries of ``parse_search_space``, the parser trials
    use. Categorical entries are left out. An online optimizer steps inside
    each range, so every one needs ``low < high`` (a trial takes a degenerate
    range as one fixed value). An integer kind, or a hyperparameter whose
    value in force is an ``int``, is tuned on the integers: values are rounded
    after every step and stay inside ``[ceil(lo), floor(hi)]``.
    """

    def __init__(self, param_bounds: Bounds | None = None, log_scale: Iterable[str] | None = None):
        self._set(search_space_from_bounds(param_bounds, log_scale))

    @classmethod
    def from_search_space(cls, space: Mapping[str, Any]) -> ParamSpace:
        """The numeric entries of a search space in TrialOrchestrator's format."""
        self = cls()
        self._set(_numeric(space))
        return self

    def _set(self, params: SearchSpace) -> None:
        for p in params.values():
            if not p.low < p.high:  # type: ignore[operator]
                raise SearchSpaceError(
                    f"{p.name!r}: an online optimizer needs low < high to search in, "
                    f"got ({p.low!r}, {p.high!r})"
                )
        self.params: SearchSpace = dict(params)
        self.names: tuple[str, ...] = tuple(params)
        self.low = np.array([params[n].low for n in self.names], dtype=np.float64)
        self.high = np.array([params[n].high for n in self.names], dtype=np.float64)
        self.log = np.array([params[n].log for n in self.names], dtype=bool)
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
        for name, param in self.params.items():
            params[name] = clip_value(param, values[name], integer=_is_integer(template[name]))
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
    (possibly empty) to choose. ``param_bounds`` may also be a ``ParamSpace``
    (what ``from_search_space`` passes).
    """

    def __init__(
        self,
        param_bounds: Bounds | ParamSpace | None = None,
        log_scale: Iterable[str] | None = None,
        seed: int | None = None,
    ) -> None:
        if isinstance(param_bounds, ParamSpace):
            if log_scale is not None:
                raise ValueError("log_scale is part of the ParamSpace given as param_bounds")
            self.space = param_bounds
        else:
            self.space = ParamSpace(param_bounds, log_scale)
        self._rng = np.random.default_rng(seed)

    @classmethod
    def from_search_space(cls, space: Mapping[str, tuple[Any, ...]], **kwargs: Any) -> Self:
        """Build from a search space in TrialOrchestrator's format (an agent's
        ``search_space``, an ``AgentSpec``'s): its numeric entries, log kinds in
        log space, integer kinds on the integers; categorical ones are left out."""
        return cls(ParamSpace.from_search_space(space), **kwargs)

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


def _numeric(space: Mapping[str, Any]) -> SearchSpace:
    """The parsed numeric entries of ``space``; an empty space is none."""
    if not space:
        return {}
    return {n: p for n, p in parse_search_space(space).items() if p.kind != "categorical"}


def _is_integer(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)
