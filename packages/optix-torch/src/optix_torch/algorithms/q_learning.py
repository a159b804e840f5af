"""What the value-based agents (DQN, Rainbow) share.

``QAgentBase``: an online Q-network and its target copy, their optimizer and
gradients, over ``replay.ReplayAgent`` (the replay memory, the update
schedule and the checkpoints of both). ``check_q_network``: the one check
that a network fits the spaces. What is not torch (ε-greedy exploration, when
the target is copied, the action-space checks) is optix-core's
``off_policy.q_learning`` and ``off_policy.schedule``. Each algorithm's file
holds its network, its acting and its loss.
"""

from __future__ import annotations

import copy
from typing import Any, ClassVar

import gymnasium as gym
import torch
from torch import nn

from optix_core.types import HyperparamSet
from optix_torch.accel.optim import Gradients, adam, optimizer_step
from optix_torch.algorithms.replay import ReplayAgent
from optix_torch.policies import observations as O
from optix_torch.policies.networks import probe_input


class QAgentBase(ReplayAgent):
    """Online and target Q-networks and their optimizer, over ``ReplayAgent``'s replay.

    A subclass checks its network fits the spaces, calls this constructor
    (``flat_gradients``: whether every parameter is reached by every loss, so
    the gradients may live in one buffer), sets up what is its own, then
    calls ``apply_hyperparams()``.
    """

    adam_eps: ClassVar[float] = 1e-8  # ε of the default Adam (torch's default)

    def __init__(
        self,
        q_network: nn.Module,
        optimizer: torch.optim.Optimizer | None,
        hyperparams: HyperparamSet | dict[str, Any] | None,
        device: str | torch.device,
        seed: int | None,
        flat_gradients: bool,
    ) -> None:
        super().__init__(hyperparams, device, seed)
        self.q_network = q_network.to(self.device)
        self.target_network = copy.deepcopy(self.q_network).requires_grad_(False)
        params = list(self.q_network.parameters())
        self.gradients = Gradients(params, flat=flat_gradients)
        self.optimizer = optimizer or adam(params, self.hp["learning_rate"], eps=self.adam_eps)
        self.optimizer_step = optimizer_step(self.optimizer)

    def modules(self) -> dict[str, nn.Module]:
        return {"q_network": self.q_network, "target_network": self.target_network}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"main": self.optimizer}

    @torch.no_grad()
    def _sync_target(self) -> None:
        """θ_target ← θ (Mnih et al. 2015: every C updates)."""
        torch._foreach_copy_(
            list(self.target_network.state_dict().values()),
            list(self.q_network.state_dict().values()),
        )

    def teardown(self) -> None:
        self.gradients.release()
        super().teardown()


# ---- checks -------------------------------------------------------------------------


def check_q_network(
    network: nn.Module,
    observation_space: gym.Space | None,
    expected: tuple[int, ...],
    owner: str,
) -> torch.Tensor | None:
    """Run two observations through ``network`` and insist on outputs shaped ``[2, *expected]``.

    The observations come from ``observation_space``, else from the space the
    network was built for (its ``observation_space`` attribute, as the
    default networks keep), else they are sized by its first linear layer
    (``policies.networks.probe_input``); without any of these the network is
    trusted and None returned. The network runs in eval mode (no noise, no
    dropout, no batch-norm update). Returns the probe's output.
    """
    space = observation_space
    if space is None:
        space = getattr(network, "observation_space", None)
    probe = probe_input(network, space)
    if probe is None:
        return None
    if space is not None:
        where, hint = f"from {space}", ""
    else:  # sized by its first linear layer: a guess
        where = f"shaped {tuple(probe.shape[1:])}"
        hint = "; give observation_space= if it reads other observations"
    was_training = network.training
    network.eval()
    try:
        with torch.no_grad():
            out = network(probe)
    except Exception as exc:
        raise ValueError(
            f"{owner}: the q_network fails on observations {where} ({exc}){hint}"
        ) from None
    finally:
        network.train(was_training)
    if tuple(out.shape[1:]) != expected:
        raise ValueError(
            f"{owner}: the q_network outputs shape {tuple(out.shape[1:])} per observation, "
            f"expected {expected} (n_actions={expected[0]}"
            + (f", n_atoms={expected[1]})" if len(expected) > 1 else ")")
        )
    return out


class GreedyPolicy(nn.Module):
    """Observations → argmax_a Q(s, a): a value-based agent's deterministic
    policy as a plain module (what ``optix export`` writes)."""

    def __init__(self, q_values: nn.Module) -> None:
        super().__init__()
        self.q_values = q_values

    def forward(self, obs: O.ObsTensor) -> torch.Tensor:
        return self.q_values(obs).argmax(dim=-1)
