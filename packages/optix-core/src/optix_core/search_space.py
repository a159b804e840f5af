"""TrialOrchestrator's parameter-space spec: parsed and checked before any trial starts.

A search space maps each hyperparameter to one of

    ("float", lo, hi)              uniform float in [lo, hi]
    ("log_float", lo, hi)          log-uniform float, 0 < lo ≤ hi (learning rates)
    ("int", lo, hi)                uniform integer in [lo, hi]
    ("log_int", lo, hi)            log-uniform integer, 1 ≤ lo ≤ hi (batch, buffer sizes)
    ("categorical", v1, v2, ...)   one of the listed values (None, bool, int, float, str)

the format of tensor-optix 1.10 and of ``AgentSpec.search_space``. A sweep
that would fail on its tenth trial because of a typo in the spec fails here,
on the whole spec at once, with the entry and the rule it broke. Parsing
needs no Optuna; sampling takes an Optuna trial (anything with its
``suggest_*`` methods).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

KINDS = ("float", "log_float", "int", "log_int", "categorical")
FORMATS = (
    "('float', lo, hi), ('log_float', lo, hi), ('int', lo, hi), ('log_int', lo, hi) "
    "or ('categorical', v1, v2, ...)"
)


class SearchSpaceError(ValueError):
    """A search space that cannot be sampled: a malformed entry or an empty range."""


@dataclass(frozen=True)
class Param:
    """One parsed entry: a numeric range (``low``, ``high``) or ``choices``."""

    name: str
    kind: str
    low: float | int | None = None
    high: float | int | None = None
    choices: tuple[Any, ...] = ()

    @property
    def log(self) -> bool:
        return self.kind.startswith("log_")


SearchSpace = dict[str, Param]


def parse_search_space(space: Mapping[str, Any]) -> SearchSpace:
    """Check every entry of ``space`` and return them parsed, in order.

    Raises ``SearchSpaceError`` naming the entry, what was wrong and the
    accepted formats.
    """
    if not isinstance(space, Mapping):
        raise SearchSpaceError(
            f"a search space is a dict of name -> spec, got {type(space).__name__}"
        )
    if not space:
        raise SearchSpaceError("the search space is empty: there is nothing to tune")
    return {_name(name): _parse(name, spec) for name, spec in space.items()}


def sample_params(trial: Any, space: SearchSpace) -> dict[str, Any]:
    """Draw one configuration through an Optuna trial's ``suggest_*`` methods."""
    params: dict[str, Any] = {}
    for name, p in space.items():
        if p.kind == "categorical":
            params[name] = trial.suggest_categorical(name, list(p.choices))
        elif p.kind in ("int", "log_int"):
            params[name] = trial.suggest_int(name, p.low, p.high, log=p.log)
        else:
            params[name] = trial.suggest_float(name, p.low, p.high, log=p.log)
    return params


def _name(name: Any) -> str:
    if not isinstance(name, str) or not name:
        raise SearchSpaceError(f"search space keys are hyperparameter names, got {name!r}")
    return name


def _parse(name: str, spec: Any) -> Param:
    def fail(problem: str) -> SearchSpaceError:
        return SearchSpaceError(f"search space entry {name!r}: {problem}; expected {FORMATS}")

    if not isinstance(spec, tuple | list) or not spec:
        raise fail(f"{spec!r} is not a (kind, ...) tuple")
    kind, *args = spec
    if kind not in KINDS:
        raise fail(f"unknown kind {kind!r}")
    if kind == "categorical":
        return _categorical(name, args, fail)
    if len(args) != 2:
        raise fail(f"{kind!r} takes two bounds (lo, hi), got {len(args)} value(s)")
    low, high = args
    for bound in (low, high):
        if not _is_real(bound) or not math.isfinite(bound):
            raise fail(f"bound {bound!r} is not a finite number")
    if kind in ("int", "log_int"):
        for bound in (low, high):
            if bound != int(bound):
                raise fail(f"{kind!r} bounds must be integers, got {bound!r}")
        low, high = int(low), int(high)
    else:
        low, high = float(low), float(high)
    if low > high:
        raise fail(f"lo {low!r} is greater than hi {high!r}")
    if kind == "log_float" and low <= 0:
        raise fail(f"a log range needs lo > 0, got lo={low!r} (log of zero or below)")
    if kind == "log_int" and low < 1:
        raise fail(f"a log_int range needs lo >= 1, got lo={low!r} (log of zero or below)")
    return Param(name, kind, low, high)


def _categorical(name: str, choices: list[Any], fail: Callable[[str], SearchSpaceError]) -> Param:
    if not choices:
        raise fail("'categorical' needs at least one value")
    for choice in choices:
        if choice is not None and not isinstance(choice, bool | numbers.Real | str):
            raise fail(
                f"choice {choice!r} is a {type(choice).__name__}; categorical values are "
                "None, bool, int, float or str (they are stored in the study)"
            )
    if len(set(map(repr, choices))) != len(choices):
        raise fail(f"choices {tuple(choices)!r} repeat a value")
    return Param(name, "categorical", choices=tuple(choices))


def _is_real(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)
