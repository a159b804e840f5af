"""What the value-based agents (DQN, Rainbow) decide in numpy: exploration and their checks.

The backend computes Q-values; when a training action explores, which
random action it takes and how ε falls with experience are decided here,
from the agent's numpy generator, so every backend explores alike.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import gymnasium as gym
import numpy as np


def epsilon_schedule(env_steps: int, hp: Mapping[str, Any]) -> float:
    """ε of a training action after ``env_steps`` env steps were collected.

    1 until ``learning_starts`` (SB3's uniformly random start), then linear
    from ``epsilon`` to ``epsilon_min`` over ``exploration_steps`` env steps
    (SB3's schedule, counted from the first step), or, with
    ``exploration_steps = 0``, ``max(epsilon_min, epsilon · epsilon_decay^t)``
    (tensor-optix's multiplicative decay, per env step rather than per
    window, so it does not depend on the window's size).
    """
    if env_steps < hp["learning_starts"]:
        return 1.0
    if hp["exploration_steps"] > 0:
        progress = min(1.0, env_steps / hp["exploration_steps"])
        return hp["epsilon"] + progress * (hp["epsilon_min"] - hp["epsilon"])
    return max(hp["epsilon_min"], hp["epsilon"] * hp["epsilon_decay"] ** env_steps)


def exploration_end(hp: Mapping[str, Any]) -> int:
    """Env steps after which ``epsilon_schedule`` stays at ``epsilon_min``: the
    end of the agent's exploration schedule."""
    starts = int(hp["learning_starts"])
    if hp["exploration_steps"] > 0:
        return max(starts, int(hp["exploration_steps"]))
    epsilon, floor, decay = hp["epsilon"], hp["epsilon_min"], hp["epsilon_decay"]
    if epsilon <= floor or floor <= 0.0 or decay >= 1.0:
        return starts  # constant, or decaying towards 0 without an end to wait for
    return max(starts, math.ceil(math.log(floor / epsilon) / math.log(decay)))


def epsilon_greedy(
    rng: np.random.Generator,
    epsilon: float,
    n: int,
    n_actions: int,
    greedy: Callable[[], np.ndarray],
) -> np.ndarray:
    """One vector step's actions: each of ``n`` rows uniform over ``n_actions`` with
    probability ``epsilon``, else the greedy action.

    Both draws are made for every row, whatever it does, so the generator's
    stream does not depend on the network; ``greedy()`` (argmax_a Q(s, a) per
    row, from the backend) runs only when some row exploits.
    """
    explore = rng.random(n) < epsilon
    actions = rng.integers(n_actions, size=n)
    if explore.all():
        return actions
    return np.where(explore, actions, greedy())


def check_n_actions(n_actions: Any, owner: str) -> int:
    """``n_actions`` as an int, refused unless a positive whole number."""
    if isinstance(n_actions, bool) or not float(n_actions).is_integer() or int(n_actions) < 1:
        raise ValueError(f"{owner}: n_actions must be a positive integer, got {n_actions!r}")
    return int(n_actions)


def require_discrete(action_space: gym.Space, owner: str) -> int:
    """The number of actions of a Discrete space numbered from 0 (a Q-network's output
    index is the action); any other space is refused."""
    if not isinstance(action_space, gym.spaces.Discrete):
        raise ValueError(f"{owner} acts on Discrete action spaces, got {action_space}")
    if int(action_space.start) != 0:
        raise ValueError(
            f"{owner} needs actions numbered from 0, got {action_space} (start={action_space.start})"
        )
    return int(action_space.n)
