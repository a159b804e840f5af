"""A policy's weights as one float32 vector, and a shared-memory slot that
broadcasts its newest version to actor processes.

The slot is a seqlock with a single writer: the learner makes the version odd,
copies, makes it even; a reader copies and keeps the copy only if it saw the
same even version before and after. No lock is taken, so an actor killed
mid-read can never block the learner or another actor.
"""

from __future__ import annotations

import multiprocessing as mp
from multiprocessing.context import BaseContext
from typing import Any

import numpy as np
import torch
from torch import nn


def float_state(module: nn.Module) -> dict[str, torch.Tensor]:
    """The floating-point entries of ``module``'s state dict: what acting depends on
    (weights, and buffers such as normalisation statistics)."""
    return {k: v for k, v in module.state_dict().items() if v.is_floating_point()}


def weights_size(module: nn.Module) -> int:
    return sum(v.numel() for v in float_state(module).values())


def flatten(module: nn.Module) -> np.ndarray:
    """``module``'s floating-point state as one float32 vector."""
    state = float_state(module)
    if not state:
        return np.zeros(0, dtype=np.float32)
    return torch.cat([v.detach().reshape(-1).float().cpu() for v in state.values()]).numpy()


@torch.no_grad()
def load_flat(module: nn.Module, vector: np.ndarray) -> None:
    """Copy a vector made by ``flatten`` on a module built alike into ``module``."""
    offset = 0
    vector = np.asarray(vector, dtype=np.float32)
    for tensor in float_state(module).values():
        size = tensor.numel()
        chunk = torch.tensor(vector[offset : offset + size]).view_as(tensor)
        tensor.copy_(chunk.to(tensor.dtype))
        offset += size
    if offset != len(vector):
        raise ValueError(f"weights of size {len(vector)} for a module of size {offset}")


class SharedWeights:
    """The newest weights and their version, in shared memory (see the module's note)."""

    def __init__(self, size: int, context: BaseContext | None = None) -> None:
        ctx = context or mp.get_context()
        self._buffer = ctx.RawArray("f", max(size, 1))
        self._version = ctx.RawValue("q", 0)
        self.size = size

    def __getstate__(self) -> dict[str, Any]:  # passed to a spawned process at its start
        return {"_buffer": self._buffer, "_version": self._version, "size": self.size}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)

    def _array(self) -> np.ndarray:
        return np.frombuffer(self._buffer, dtype=np.float32, count=self.size)

    @property
    def version(self) -> int:
        """Published versions so far (0: nothing yet)."""
        return self._version.value // 2

    def publish(self, vector: np.ndarray) -> int:
        """Make ``vector`` the newest weights; returns its version (learner side only)."""
        self._version.value += 1  # odd: being written
        self._array()[:] = vector
        self._version.value += 1
        return self.version

    def read(self, newer_than: int) -> tuple[int, np.ndarray] | None:
        """``(version, weights)`` when a version newer than ``newer_than`` is complete."""
        while True:
            before = self._version.value
            if before % 2 or before // 2 <= newer_than:
                if before % 2 == 0:
                    return None
                continue  # the learner is writing: a copy takes microseconds
            vector = self._array().copy()
            if self._version.value == before:
                return before // 2, vector
