"""Checking hyperparameters against their valid ranges, before any work starts."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


class HyperparamError(ValueError):
    """A hyperparameter that is unknown, of the wrong type or out of range."""


@dataclass(frozen=True)
class Bound:
    """The valid range of one hyperparameter: ``low <= value <= high``.

    ``open_low`` makes the lower end exclusive (a learning rate must be > 0).
    ``integer`` requires a whole number; ``boolean`` a flag (True or False).
    """

    low: float = -math.inf
    high: float = math.inf
    integer: bool = False
    open_low: bool = False
    boolean: bool = False

    @classmethod
    def flag(cls) -> Bound:
        return cls(0, 1, boolean=True)

    def describe(self) -> str:
        if self.boolean:
            return "{True, False}"
        left = "(" if self.open_low or math.isinf(self.low) else "["
        right = ")" if math.isinf(self.high) else "]"
        return f"{left}{_fmt(self.low)}, {_fmt(self.high)}{right}" + (
            " (integer)" if self.integer else ""
        )

    def accepts(self, value: Any) -> bool:
        if self.boolean:
            return isinstance(value, bool)
        if isinstance(value, bool) or not isinstance(value, int | float):
            return False
        if self.integer and not float(value).is_integer():
            return False
        if math.isnan(value):
            return False
        above = value > self.low if self.open_low else value >= self.low
        return above and value <= self.high

    def clip(self, value: float) -> float | int:
        """The accepted value nearest to the real number ``value``.

        An open lower end gives the next float above it; an ``integer`` bound
        rounds to the nearest whole number inside. What ``PolicyManager`` uses
        to keep a perturbed hyperparameter valid. Not for ``boolean`` bounds.
        """
        if self.boolean:
            raise ValueError("a flag has no range to clip into")
        low = math.nextafter(self.low, math.inf) if self.open_low else self.low
        if self.integer:
            low = math.ceil(low) if math.isfinite(low) else low
            high = math.floor(self.high) if math.isfinite(self.high) else self.high
            if low > high:
                raise ValueError(f"{self.describe()} holds no integer")
            return int(min(max(round(value), low), high))
        return min(max(value, low), self.high)


def check_hyperparams(
    params: Mapping[str, Any], bounds: Mapping[str, Bound], owner: str
) -> dict[str, Any]:
    """Return ``params`` as a dict if every key is known and every value in range."""
    unknown = sorted(set(params) - set(bounds))
    if unknown:
        raise HyperparamError(
            f"{owner}: unknown hyperparameter {unknown[0]!r}; known: {', '.join(sorted(bounds))}"
        )
    for key, value in params.items():
        bound = bounds[key]
        if not bound.accepts(value):
            raise HyperparamError(f"{owner}: {key}={value!r} {_refusal(bound, value)}")
    return {k: (int(v) if bounds[k].integer else v) for k, v in params.items()}


def _refusal(bound: Bound, value: Any) -> str:
    """Why ``bound`` refuses ``value``, in words a user can act on."""
    if bound.boolean:
        return "is not True or False"
    if isinstance(value, bool) or not isinstance(value, int | float):
        return f"is not a number; its valid range is {bound.describe()}"
    if bound.integer and not float(value).is_integer():
        return f"is not a whole number; its valid range is {bound.describe()}"
    return f"is outside its valid range {bound.describe()}"


def _fmt(x: float) -> str:
    if math.isinf(x):
        return "∞" if x > 0 else "-∞"
    return f"{x:g}"
