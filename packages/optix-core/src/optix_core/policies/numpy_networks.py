"""Snapshots of small dense networks that run their forward pass in numpy.

Acting works on a handful of rows, where a call into a framework (a
compiled function included) costs several times the arithmetic; numpy's
matrix products on copies of the weights cost a fraction of it. A backend
reads its network's dense layers into ``(kernel [in, out], bias [out],
activation)`` triples and acts through these; a snapshot is as old as its
weights, so the backend takes a new one after they change.
"""

from __future__ import annotations

from typing import Any

import numpy as np

NUMPY_ACTIVATIONS = {"tanh": np.tanh, "relu": lambda x: np.maximum(x, 0.0), "linear": lambda x: x}

Layer = tuple[np.ndarray, np.ndarray, str]  # kernel [in, out], bias [out], activation


def dense_forward(obs: Any, layers: list[Layer]) -> np.ndarray:
    """Flattened float32 observations through ``layers`` in turn."""
    x = np.asarray(obs, dtype=np.float32)
    x = x.reshape(len(x), -1)
    for kernel, bias, activation in layers:
        x = NUMPY_ACTIVATIONS[activation](x @ kernel + bias)
    return x


class NumpyActorCritic:
    """The default actor-critic on flat observations: ``(policy_output [B, P], value [B])``
    from the actor's and the critic's dense heads over the same flattened input."""

    def __init__(self, heads: list[list[Layer]]) -> None:
        self.heads = heads

    def __call__(self, obs: Any) -> tuple[np.ndarray, np.ndarray]:
        actor, critic = (dense_forward(obs, layers) for layers in self.heads)
        return actor, critic[:, 0]
