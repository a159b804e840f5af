"""Search spaces: one parser for trials, online optimizers and PolicyManager; one perturbation.

A search space maps each hyperparameter to one of

    ("float", lo, hi)              uniform float in [lo, hi]
    ("log_float", lo, hi)          log-uniform float, 0 < lo ≤ hi (learning rates)
    ("int", lo, hi)                uniform integer in [lo, hi]
    ("log_int", lo, hi)            log-uniform integer, 1 ≤ lo ≤ hi (batch, buffer sizes)
    ("categorical", v1, v2, ...)   one of the listed values (None, bool, int, float, str)

the format of tensor-optix 1.10, of ``AgentSpec.search_space`` and of an
agent's ``search_space``. A sweep that would fail on its tenth trial because
of a typo in the spec fails here, on the whole spec at once, with the entry
and the rule it broke. Parsing needs no Optuna; sampling takes an Optuna
trial (anything with its ``suggest_*`` methods).

This module is the one place that reads a search space and the one place
that perturbs a value inside it: trials sample with ``sample_params``, the
online optimizers (``optix_core.optimizers``) search the parsed ranges, and
``PBTOptimizer`` and ``PolicyManager`` explore with ``perturb_params``::

    log_float, log_int:  δ = scale·ln(high/low),  θ' = clip(θ·exp(δ·ε), low, high)
    float, int:          δ = scale·(high − low),  θ' = clip(θ + δ·ε, low, high)

θ is clipped into the range first; integer kinds (and a value held as an
integer) are rounded to the nearest integer in the range; categorical
entries are not moved (a network kind or an optimizer is structural, and the
weights a variant inherits may not fit another). ε is ``N(0, 1)``
(``noise="normal"``, PolicyManager) or ``U(−1, 1)`` (``noise="uniform"``,
PBT after Jaderberg et al. 2017: a log-scale step is then uniform in log θ,
equal mass per decade).
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

NUMERIC = ("float", "log_float", "int", "log_int")
NOISES = ("normal", "uniform")


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


def as_search_space(space: Mapping[str, Any]) -> SearchSpace:
    """``space`` parsed, or as it is when it already is (a dict of ``Param``);
    an empty space is an empty dict here (nothing to move), not an error."""
    if not space:
        return {}
    if isinstance(space, Mapping) and all(isinstance(p, Param) for p in space.values()):
        return dict(space)
    return parse_search_space(space)


def clip_value(param: Param, value: float, *, integer: bool = False) -> float | int:
    """``value`` clipped into ``param``'s range; rounded to the nearest integer
    inside it for an integer kind, or when ``integer`` (the value is held as one)."""
    if param.kind not in NUMERIC:
        raise ValueError(f"{param.name!r} is {param.kind}: it has no range to clip into")
    assert param.low is not None and param.high is not None
    value = min(max(float(value), param.low), param.high)
    if not (integer or param.kind in ("int", "log_int")):
        return value
    low, high = math.ceil(param.low), math.floor(param.high)
    if low > high:
        raise ValueError(
            f"{param.name!r} holds an integer, but its range "
            f"({param.low:g}, {param.high:g}) contains none"
        )
    return min(max(round(value), low), high)


def move(value: float, delta: float, eps: float, *, log: bool) -> float:
    """One step of the perturbation: ``θ·exp(δ·ε)`` on a log scale (a factor, which
    keeps the sign), ``θ + δ·ε`` on a linear one."""
    return value * math.exp(delta * eps) if log else value + delta * eps


def perturb_value(param: Param, value: Any, scale: float, eps: float) -> Any:
    """``value`` moved by the draw ``eps`` on ``param``'s scale (see the module
    doc), clipped into its range and, for integers, rounded."""
    if param.kind == "categorical":
        return value
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(
            f"hyperparameter {param.name}={value!r} is not a number, but the search space "
            f"gives it the numeric range ({param.kind!r}, {param.low!r}, {param.high!r})"
        )
    assert param.low is not None and param.high is not None
    integer = isinstance(value, numbers.Integral)
    theta = clip_value(param, value)
    if param.log:
        delta = scale * math.log(param.high / param.low)
    else:
        delta = scale * (param.high - param.low)
    return clip_value(param, move(theta, delta, eps, log=param.log), integer=integer)


def perturb_params(
    params: Mapping[str, Any],
    space: Mapping[str, Any],
    scale: float,
    rng: Any,
    *,
    noise: str = "normal",
) -> dict[str, Any]:
    """A copy of ``params`` with every numeric entry of ``space`` that it holds
    perturbed by ``perturb_value``, one draw of ``rng`` each (a numpy
    ``Generator``), in the space's order; other keys are left as they are.
    ``scale`` is the step as a fraction of each range (of its log range for
    a log kind); ``noise`` draws ε from ``"normal"`` N(0, 1) or ``"uniform"`` U(−1, 1)."""
    if noise not in NOISES:
        raise ValueError(f"noise must be one of {NOISES}, got {noise!r}")
    out = dict(params)
    for name, param in as_search_space(space).items():
        if name not in params or param.kind == "categorical":
            continue
        eps = rng.standard_normal() if noise == "normal" else rng.uniform(-1.0, 1.0)
        out[name] = perturb_value(param, params[name], scale, float(eps))
    return out


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
