"""How the off-policy actor-critics (SAC, TD3) turn their actor's outputs into actions, in numpy.

A backend runs the actor and hands its outputs here as a numpy array; the
noise comes from the agent's own numpy generator, so every backend acts
alike and a checkpoint resumes the same stream. Actions are in (−1, 1);
``ActionScaler`` maps them to the Box.

- SAC's actor gives ``[mean ‖ log_std]``: a = tanh(μ + σ·ε), log σ clamped to
  [``LOG_STD_MIN``, ``LOG_STD_MAX``] as in Stable-Baselines3; deterministic
  actions are tanh(μ).
- TD3's actor gives the action: exploration adds noise (``exploration.py``)
  and clips to [−1, 1].
- SAC with gSDE (``use_sde``) gives ``[mean ‖ z]``: ``gsde.py``.
- Until ``learning_starts`` both act uniformly at random (SB3's warm-up).
"""

from __future__ import annotations

import math

import numpy as np

LOG_STD_MIN, LOG_STD_MAX = -20.0, 2.0  # SAC's log σ bounds (SB3's)


def uniform_actions(rng: np.random.Generator, n: int, action_dim: int) -> np.ndarray:
    """``[n, action_dim]`` actions uniform in [−1, 1): the warm-up's."""
    return rng.uniform(-1.0, 1.0, (n, action_dim)).astype(np.float32)


def squashed_gaussian_actions(
    out: np.ndarray, deterministic: bool, rng: np.random.Generator
) -> np.ndarray:
    """SAC's actions from its actor's ``[mean ‖ log_std]`` rows: tanh(μ + σ·ε), or tanh(μ)."""
    d = out.shape[-1] // 2
    mean = out[:, :d]
    if deterministic:
        return np.tanh(mean)
    log_std = np.clip(out[:, d:], LOG_STD_MIN, LOG_STD_MAX)
    eps = rng.standard_normal(mean.shape, dtype=np.float32)
    return np.tanh(mean + np.exp(log_std) * eps)


def log_prob_constant(action_dim: int) -> float:
    """The constant of SAC's squashed log-density, Σᵢ (log √(2π) + 2 log 2):

    log π(a|s) = Σᵢ [2(uᵢ + softplus(−2uᵢ)) − log σᵢ − εᵢ²/2] − this,
    with log(1 − tanh²u) = 2(log 2 − u − softplus(−2u)), the exact, stable form.
    """
    return action_dim * (0.5 * math.log(2 * math.pi) + 2 * math.log(2))
