"""Optimizer arithmetic in numpy, for backends to check their optimizers against."""

from __future__ import annotations

import numpy as np

# Gradients spanning four orders of magnitude: where ε sits (under the root or
# after it) changes the step of the small ones by a factor of ten or more.
GRADIENTS = np.random.default_rng(0).normal(size=(5, 4)) * np.array([1.0, 1e-3, 1e-2, 10.0])


def rms_prop_steps(
    x: np.ndarray, gradients: np.ndarray, learning_rate: float, eps: float, alpha: float = 0.99
) -> np.ndarray:
    """``x`` after one RMSprop step per row of ``gradients``, as torch (and so
    Stable-Baselines3's A2C) takes it: ``v ← αv + (1 − α)g²``, ``x ← x − lr·g / (√v + ε)``."""
    x = np.array(x, dtype=np.float64)
    v = np.zeros_like(x)
    for g in gradients:
        v = alpha * v + (1 - alpha) * g**2
        x = x - learning_rate * g / (np.sqrt(v) + eps)
    return x
