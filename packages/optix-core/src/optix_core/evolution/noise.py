"""How hard to perturb a spawned variant, and the perturbation itself.

The perturbation rule itself lives in ``optix_core.search_space``
(``perturb_params``), shared with ``PBTOptimizer``; here it is applied to a
whole ``HyperparamSet`` and kept inside the agent's valid ranges.

Exploit while the search pays, explore when it stalls: a variant spawned
while validation still rises gets a small mutation; one spawned on a plateau,
or while training runs away from validation, gets a large one.

With a validation pipeline three signals set the scale (tensor-optix's
"three-signal adaptive noise")::

    t            = clip(relative_slope(val) / max_slope, 0, 1)      improvement
    gap_penalty  = clip(mean(train − val) / |mean(val)|, 0, 1)      overfitting
    corr_penalty = clip(1 − Pearson(train, val), 0, 1)              divergence
    effective_t  = t × (1 − 0.5 gap_penalty) × (1 − 0.5 corr_penalty)
    noise_scale  = max_scale − effective_t × (max_scale − min_scale)

Without one, the training scores' improvement ratio alone sets it::

    σ = base_noise / (1 + improvement_ratio)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from optix_core.evolution.history import EPS, pearson, relative_slope
from optix_core.hyperparams import Bound
from optix_core.search_space import as_search_space, move, perturb_params
from optix_core.types import HyperparamSet


@dataclass(frozen=True)
class NoiseSignals:
    """The three signals, each in [0, 1]."""

    t: float
    gap_penalty: float
    corr_penalty: float

    @property
    def effective_t(self) -> float:
        return self.t * (1.0 - 0.5 * self.gap_penalty) * (1.0 - 0.5 * self.corr_penalty)

    def scale(self, min_scale: float, max_scale: float) -> float:
        return max_scale - self.effective_t * (max_scale - min_scale)


def noise_signals(train: np.ndarray, val: np.ndarray, max_slope: float) -> NoiseSignals:
    """The three signals of a train/val history (see the module docstring).

    ``max_slope`` is the relative rise per evaluation that counts as full
    improvement (t = 1); relative, so one setting fits any reward scale.
    """
    t = _clip01(relative_slope(val) / max_slope)
    gap = _clip01(float(np.mean(train - val)) / max(abs(float(np.mean(val))), EPS))
    corr = _clip01(1.0 - pearson(train, val))
    return NoiseSignals(t=t, gap_penalty=gap, corr_penalty=corr)


def improvement_ratio(scores: np.ndarray) -> float:
    """How much the scores' trend rose across the window, relative to their scale.

    ratio = max(0, relative_slope(scores) × (n − 1)): 0 on a plateau or a
    decline, 1 when the fitted line gained the scores' whole magnitude.
    """
    return max(0.0, relative_slope(scores) * (len(scores) - 1))


def single_signal_scale(scores: np.ndarray, base_noise: float) -> float:
    """σ = base_noise / (1 + improvement_ratio): the fallback without validation."""
    return base_noise / (1.0 + improvement_ratio(scores))


def perturb_hyperparams(
    hyperparams: HyperparamSet,
    scale: float,
    rng: np.random.Generator,
    search_space: Mapping[str, Any] | None = None,
    bounds: Mapping[str, Bound] | None = None,
) -> HyperparamSet:
    """A copy of ``hyperparams`` with Gaussian noise of relative size ``scale``.

    With a ``search_space`` (an agent's or an ``AgentSpec``'s, in
    TrialOrchestrator's format) only its keys move, each within its range, by
    the one rule shared with PBT (``optix_core.search_space.perturb_params``,
    ε ~ N(0, 1))::

        log_float, log_int:  θ' = clip(θ · exp(scale · ln(high/low) · ε), low, high)
        float, int:          θ' = clip(θ + scale · (high − low) · ε, low, high)

    integer kinds are rounded; categorical choices stay (a network kind or
    optimizer is structural, and the cloned weights may not fit another).
    Without one every float moves by a factor, ``θ' = θ · exp(scale · ε)``
    (the log rule with δ = scale), which keeps its sign and scales with its
    magnitude; integers stay, since they are usually sizes (layers, batches,
    populations) that a checkpoint's weights or buffers depend on.

    ``bounds`` (an agent's ``hyperparam_bounds``) are the valid ranges: every
    moved value is clipped into its ``Bound``, so that a discount factor of
    0.99 never becomes 1.03, which the agent would refuse.
    """
    bounds = bounds or {}
    if search_space is not None:
        params = perturb_params(
            hyperparams.params, as_search_space(search_space), scale, rng, noise="normal"
        )
    else:
        params = dict(hyperparams.params)
        for key, value in hyperparams.params.items():
            if isinstance(value, float):
                params[key] = move(value, scale, float(rng.standard_normal()), log=True)
    for key, value in params.items():
        bound = bounds.get(key)
        if (
            bound is not None
            and not bound.boolean
            and value != hyperparams.params[key]
            and isinstance(value, int | float)
        ):
            params[key] = bound.clip(value)
    return HyperparamSet(params=params, episode_id=hyperparams.episode_id)


def _clip01(x: float) -> float:
    return min(1.0, max(0.0, x))
