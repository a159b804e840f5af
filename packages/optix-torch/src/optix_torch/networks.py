"""Default networks, and the checks that a user's network fits the spaces."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import torch
from torch import nn


def mlp(
    in_dim: int,
    out_dim: int,
    hidden: Sequence[int] = (64, 64),
    activation: type[nn.Module] = nn.Tanh,
) -> nn.Sequential:
    """A fully connected network: ``in_dim → hidden... → out_dim``."""
    layers: list[nn.Module] = []
    for width in hidden:
        layers += [nn.Linear(in_dim, width), activation()]
        in_dim = width
    layers.append(nn.Linear(in_dim, out_dim))
    return nn.Sequential(*layers)


def check_output(network: nn.Module, in_dim: int, expected: int, role: str, owner: str) -> None:
    """Run one dummy batch through ``network`` and insist on ``expected`` outputs.

    A mismatch found at construction is a clear error; found in the first
    update it is an obscure broadcasting failure, or worse, none at all.
    """
    device = next(network.parameters()).device
    with torch.no_grad():
        out = network(torch.zeros(2, in_dim, device=device))
    if out.ndim != 2 or out.shape[1] != expected:
        raise ValueError(
            f"{owner}: the {role} network outputs shape {tuple(out.shape[1:])} per observation, "
            f"expected ({expected},) for this action space"
        )


@contextlib.contextmanager
def seeded(seed: int | None) -> Iterator[None]:
    """Initialise networks from ``seed`` without touching torch's global generator."""
    if seed is None:
        yield
        return
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield
