"""What the distributional (C51) Q-learners decide without a framework: the atoms and the checks.

Bellemare et al. (2017), "A Distributional Perspective on Reinforcement
Learning": the return of (s, a) is a categorical distribution p_i(s, a) on N
fixed atoms

    z_i = v_min + i·Δz,   Δz = (v_max − v_min)/(N − 1),   i = 0 … N − 1,

and Q(s, a) = Σ_i z_i p_i(s, a). Here, in numpy: which atoms an agent uses
(its arguments, or the network's own), their support, whether a network's
outputs are log-probabilities or probabilities over them, and the warning for
a Rainbow network that cannot explore. Each backend computes the
distributions, the projection of the target onto the support (Algorithm 1)
and the loss in its framework.
"""

from __future__ import annotations

import math
import warnings

import numpy as np

# n_atoms, v_min, v_max of an agent whose network does not say (Bellemare et al. 2017: C51).
DEFAULT_ATOMS: tuple[int, float, float] = (51, -10.0, 10.0)


def check_atoms(n_atoms: int, v_min: float, v_max: float, owner: str) -> tuple[int, float, float]:
    """``(n_atoms, v_min, v_max)`` as (int, float, float), refused unless N ≥ 2 whole atoms
    on a finite interval v_min < v_max (else Δz is zero, negative or undefined)."""
    atoms, low, high = n_atoms, float(v_min), float(v_max)
    whole = not isinstance(atoms, bool) and float(atoms).is_integer()
    if (
        not whole
        or int(atoms) < 2
        or not (math.isfinite(low) and math.isfinite(high) and low < high)
    ):
        raise ValueError(
            f"{owner} needs n_atoms >= 2 (a whole number) and finite v_min < v_max, "
            f"got n_atoms={n_atoms!r}, v_min={v_min!r}, v_max={v_max!r}"
        )
    return int(atoms), low, high


def choose_atoms(
    given: tuple[int | None, float | None, float | None],
    own: tuple[int, float, float] | None,
    owner: str,
) -> tuple[int, float, float]:
    """The atoms an agent uses: each of ``given`` (n_atoms, v_min, v_max; None where left
    out), else the network's ``own`` (a RainbowQNetwork's), else ``DEFAULT_ATOMS``.

    A given value that contradicts the network's own is refused: the network
    would be trained against a support it does not compute Q on.
    """
    fallback = own if own is not None else DEFAULT_ATOMS
    chosen = tuple(g if g is not None else o for g, o in zip(given, fallback, strict=True))
    atoms = check_atoms(*chosen, owner)
    if own is not None and atoms != check_atoms(*own, owner):
        raise ValueError(
            f"{owner}: n_atoms, v_min, v_max = {atoms} disagree with the RainbowQNetwork's "
            f"{tuple(own)}; leave them out to use the network's"
        )
    return atoms


def atom_support(n_atoms: int, v_min: float, v_max: float) -> np.ndarray:
    """The atoms z_i = v_min + i·Δz as float32, ``[n_atoms]``."""
    return np.linspace(v_min, v_max, n_atoms, dtype=np.float32)


def returns_log_probs(probe: np.ndarray | None, owner: str) -> bool:
    """Whether a network's outputs ``[B, n_actions, n_atoms]`` on probe observations are
    log-probabilities (True) or probabilities (False) over the atoms; anything else
    (raw logits) is refused. Without a probe, log-probabilities (RainbowQNetwork's
    convention) are assumed."""
    if probe is None:
        return True
    out = np.asarray(probe, dtype=np.float64)
    if np.allclose(np.exp(out).sum(-1), 1.0, atol=1e-4):
        return True
    if out.min() >= 0 and np.allclose(out.sum(-1), 1.0, atol=1e-4):
        return False
    raise ValueError(
        f"{owner}: the q_network must return, per action, log-probabilities (or probabilities) "
        "over the atoms; end it with a log_softmax of the logits over the last axis"
    )


def warn_without_noisy_layers(owner: str) -> None:
    """Rainbow explores through its noisy layers alone (no ε-greedy): without any,
    every training action after ``learning_starts`` is greedy. Allowed, with a warning."""
    warnings.warn(
        f"{owner}: the q_network has no NoisyLinear layer, so training actions are "
        "greedy and nothing explores; use RainbowQNetwork or add NoisyLinear layers",
        stacklevel=3,
    )
