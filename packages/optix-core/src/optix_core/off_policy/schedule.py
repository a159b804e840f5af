"""When the off-policy agents take their gradient steps, and on what: Stable-Baselines3's schedule.

SB3 interleaves acting and learning: after every ``train_freq``-th step of
its vector env, once more than ``learning_starts`` env steps were
collected, it takes ``gradient_steps`` updates on minibatches drawn from the
buffer as it is then. optix collects a whole window first; these functions
say which of the window's steps updates were due after, so that each
update can be drawn from exactly what the buffer held at that step and the
update-to-data ratio is ``gradient_steps / (train_freq · n_envs)`` whatever
the window's size. They read and return plain numbers, so every backend
takes its steps at the same times.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

# Minibatch bytes a backend gathers on the host before moving them to the device in one copy.
PACK_BYTES = 32 << 20


class DueSteps(NamedTuple):
    """The vector steps of a window after which updates are due."""

    steps: np.ndarray  # 1-based vector steps of the window, ascending
    env_steps: np.ndarray  # env steps collected by the end of each of them (what β reads)


def due_steps(
    length: int,
    n_envs: int,
    vector_steps: int,
    num_timesteps: int,
    train_freq: int,
    learning_starts: int,
    gradient_steps: int,
) -> DueSteps:
    """The steps of a window of ``length`` vector steps of ``n_envs`` envs that earn updates.

    ``vector_steps`` and ``num_timesteps`` count what came before the window
    (vector-env steps and env steps). Step t (1-based) is due when the vector
    step it completes is a multiple of ``train_freq`` and more than
    ``learning_starts`` env steps were collected by its end; with
    ``gradient_steps = 0`` no step is. ``train_freq`` counts vector steps, as
    SB3's does, so it spans ``train_freq · n_envs`` env steps.
    """
    t = np.arange(1, length + 1)
    seen = num_timesteps + t * n_envs  # env steps collected after vector step t
    due = ((vector_steps + t) % train_freq == 0) & (seen > learning_starts)
    if gradient_steps <= 0:
        due[:] = False
    return DueSteps(t[due], seen[due])


def first_update(learning_starts: int, train_freq: int, n_envs: int) -> int:
    """Env steps collected when the first updates fall due (``due_steps``' first).

    The first vector step that is a multiple of ``train_freq`` and ends with
    more than ``learning_starts`` env steps collected; a budget that ends
    sooner trains nothing.
    """
    after = learning_starts // n_envs + 1  # the first vector step past learning_starts
    return -(-after // train_freq) * train_freq * n_envs


def per_beta(env_steps: int, start: float, anneal_steps: int) -> float:
    """β of prioritized replay once ``env_steps`` env steps were collected.

    Linear from ``start`` (``per_beta``) to 1 over ``anneal_steps``
    (``per_beta_steps``) env steps: the importance weights (N·P(i))^−β undo
    the sampling bias fully only at β = 1, which matters most as training
    converges (Schaul et al. 2016, section 3.4; Hessel et al. 2018 anneal
    0.4 → 1 the same way). ``anneal_steps = 0`` keeps β at ``start``.
    """
    if anneal_steps == 0:
        return start
    return start + min(1.0, env_steps / anneal_steps) * (1.0 - start)


def update_due(n_updates: int, period: int) -> bool:
    """Whether the ``n_updates``-th gradient step is one of every ``period``-th.

    Target networks and delayed updates are timed in gradient steps: DQN's
    hard copy after every ``target_update_freq``-th step (``n_updates``
    counted after it), TD3's actor and Polyak step on every
    ``policy_delay``-th (counted before it, as SB3 counts).
    """
    return n_updates % period == 0


def sync_segments(count: int, n_updates: int, period: int) -> list[tuple[slice, bool]]:
    """Cut ``count`` consecutive gradient steps into runs that share one target network.

    ``n_updates`` steps were taken before them; a hard target copy follows
    every ``period``-th step. Each run is ``(slice of the count, copy after
    it)``: between two copies the target does not change, so a backend may
    compute all of a run's targets in one batched pass.
    """
    runs, done = [], 0
    while done < count:
        size = min(count - done, period - (n_updates + done) % period)
        runs.append((slice(done, done + size), update_due(n_updates + done + size, period)))
        done += size
    return runs


@dataclass
class HostMinibatches:
    """Minibatches drawn on the host, for the backend to move to its device as one block.

    ``parts`` are dicts of ``learner_fields`` (``observations``, ``actions``,
    ``rewards``, ``next_observations``, ``bootstrap`` and, prioritized,
    ``weights``) whose rows are ``count · batch_size`` transitions in all:
    the backend concatenates each field over the parts and views it as
    ``[count, batch_size, ...]``, one minibatch per gradient step.
    Prioritized replay gives one minibatch with its drawn slots in
    ``indices``, for the backend to pass its new priorities back.
    """

    parts: list[dict[str, np.ndarray]]
    batch_size: int
    indices: np.ndarray | None = None

    @property
    def count(self) -> int:
        """How many minibatches (gradient steps) the block holds."""
        return sum(len(part["rewards"]) for part in self.parts) // self.batch_size

    @property
    def nbytes(self) -> int:
        return sum(array.nbytes for part in self.parts for array in part.values())
