"""The one check every backend makes that a user's actor-critic networks fit.

A backend runs two probe observations through the networks and hands the
output shapes here, before any work starts: found in the first update, a
mismatch is an obscure broadcasting error, or none at all.
"""

from __future__ import annotations

from typing import Any


def check_actor_critic_outputs(
    out: Any, value_shape: tuple[int, ...] | None, policy_dim: int, owner: str
) -> None:
    """``out``: the actor's output on a batch of 2 (a tuple ``(policy, value)`` when
    there is no critic); ``value_shape``: the critic's output shape, or None
    without a critic. Raises ValueError saying what was expected."""
    if value_shape is None:
        if not (isinstance(out, tuple | list) and len(out) == 2):
            raise ValueError(
                f"{owner}: without a critic the actor must return (policy_output, value), "
                f"got {type(out).__name__}; pass critic= or an actor-critic network"
            )
        out, value = out
        value_shape = tuple(value.shape)
    elif len(value_shape) != 2 or value_shape[1] != 1:
        raise ValueError(
            f"{owner}: the critic outputs shape {tuple(value_shape[1:])} per observation, "
            "expected (1,)"
        )
    else:
        value_shape = value_shape[:1]
    if tuple(value_shape) != (2,):
        raise ValueError(
            f"{owner}: the value output has shape {tuple(value_shape)} for a batch of 2, "
            "expected (2,)"
        )
    shape = tuple(out.shape)
    if len(shape) != 2 or shape[1] != policy_dim:
        raise ValueError(
            f"{owner}: the actor outputs shape {shape[1:]} per observation, "
            f"expected ({policy_dim},) for this action space"
        )
