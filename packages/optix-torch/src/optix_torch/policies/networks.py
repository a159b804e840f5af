"""Default networks, built from the spaces, and the one check that a user's network fits.

``ActorCritic`` is the on-policy algorithms' network: a features extractor
(``extractors.default_extractor`` unless the user gives one), shared by
actor and critic, then ``TwinMLP``: the actor's and the critic's MLP heads
side by side. On flat vectors the extractor has no parameters and the whole
network is the two MLPs Stable-Baselines3 builds for PPO ([64, 64] tanh),
which ``optix_torch.accel`` can update without autograd.
"""

from __future__ import annotations

import contextlib
import itertools
import math
from collections.abc import Iterator, Sequence
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from optix_core.policies.networks import check_actor_critic_outputs
from optix_torch.accel import mlp as accel_mlp
from optix_torch.policies.extractors import (
    FlattenExtractor,
    ImageCNN,
    default_extractor,
    features_dim,
    orthogonal_init,
)
from optix_torch.policies.observations import ObsTensor, probe_batch


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


def parameters_of(params: nn.ParameterList) -> list[nn.Parameter]:
    """``params``'s parameters in order, read from its registry: iterating an
    ``nn.ParameterList`` indexes it item by item, which on a small network
    costs as much as a layer's matrix product."""
    return list(params._parameters.values())


class TwinMLP(nn.Module):
    """Actor and critic MLPs of the same widths, evaluated side by side.

    Mathematically two separate networks, ``in → hidden... → policy_dim`` and
    ``in → hidden... → 1``, with no shared weights; layer ``k`` of both is
    stored as one ``[2, fan_in, fan_out]`` tensor (tower 0 the actor, tower 1
    the critic), so one batched matrix product (``torch.baddbmm``) computes a
    layer of both. The critic's output layer is as wide as the actor's and
    only its column 0 is read (the others get no gradient and stay zero).
    ``forward`` returns ``(policy_output [B, policy_dim], value [B])``.

    Initialised as Stable-Baselines3 and CleanRL initialise PPO: orthogonal
    weights with gain √2 in hidden layers, 0.01 for the policy head and 1 for
    the value head, zero biases; with ``ortho_init=False`` (SB3's option) as
    PyTorch initialises ``nn.Linear``, weights and biases uniform in ±1/√fan_in.
    """

    def __init__(
        self,
        in_dim: int,
        policy_dim: int,
        hidden: Sequence[int] = (64, 64),
        activation: str = "tanh",
        ortho_init: bool = True,
    ) -> None:
        super().__init__()
        if activation not in ("tanh", "relu"):
            raise ValueError(f"activation must be 'tanh' or 'relu', got {activation!r}")
        self.in_dim, self.policy_dim = int(in_dim), int(policy_dim)
        self.hidden, self.activation = tuple(int(h) for h in hidden), activation
        self.ortho_init = ortho_init
        widths = [self.in_dim, *self.hidden, max(self.policy_dim, 1)]
        self.weights = nn.ParameterList(
            nn.Parameter(torch.empty(2, fan_in, fan_out))
            for fan_in, fan_out in itertools.pairwise(widths)
        )
        self.biases = nn.ParameterList(
            nn.Parameter(torch.zeros(2, 1, fan_out)) for fan_out in widths[1:]
        )
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        def orthogonal(fan_in: int, fan_out: int, gain: float) -> torch.Tensor:
            # nn.Linear's [out, in] orthogonal matrix, stored as [in, out].
            return nn.init.orthogonal_(torch.empty(fan_out, fan_in), gain=gain).T

        if not self.ortho_init:
            self._torch_default_init()
            return
        last = len(self.weights) - 1
        for k, w in enumerate(self.weights):
            fan_in, fan_out = w.shape[1:]
            if k < last:
                w[0] = orthogonal(fan_in, fan_out, math.sqrt(2.0))
                w[1] = orthogonal(fan_in, fan_out, math.sqrt(2.0))
            else:
                w[0] = orthogonal(fan_in, fan_out, 0.01)
                w[1].zero_()
                w[1, :, :1] = orthogonal(fan_in, 1, 1.0)
        for b in self.biases:
            b.zero_()

    def _torch_default_init(self) -> None:
        for w, b in zip(self.weights, self.biases, strict=True):
            bound = 1.0 / math.sqrt(w.shape[1])
            w.uniform_(-bound, bound)
            b.uniform_(-bound, bound)
        self.weights[-1][1, :, 1:] = 0.0  # the critic reads its column 0 alone
        self.biases[-1][1, :, 1:] = 0.0

    def towers(self, x: torch.Tensor) -> torch.Tensor:
        """Both towers' outputs ``[2, B, width]``."""
        weights, biases = parameters_of(self.weights), parameters_of(self.biases)
        if accel_mlp.applies(self, weights + biases):
            if torch.is_grad_enabled():
                return accel_mlp.stacked_mlp(x, weights, biases, self.activation)
            return accel_mlp.stacked_forward(x, weights, biases, self.activation)[0]
        h = x.unsqueeze(0).expand(2, -1, -1)  # both towers read the same input
        last = len(weights) - 1
        for k, (w, b) in enumerate(zip(weights, biases, strict=True)):
            h = torch.baddbmm(b, h, w)
            if k < last:
                h = torch.tanh(h) if self.activation == "tanh" else torch.relu(h)
        return h

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.towers(x)
        return out[0, :, : self.policy_dim], out[1, :, 0]

    def numpy_forward(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        """``forward`` on a float32 numpy batch through the accelerator, for acting;
        None where it does not apply (parameters off the CPU or not float32)."""
        weights, biases = parameters_of(self.weights), parameters_of(self.biases)
        if weights[0].device.type != "cpu" or weights[0].dtype != torch.float32:
            return None
        if not accel_mlp.applies(self, weights + biases):
            return None
        out = accel_mlp.numpy_forward(x, weights, biases, self.activation)
        return out[0, :, : self.policy_dim], out[1, :, 0]

    def extra_repr(self) -> str:
        return (
            f"in_dim={self.in_dim}, policy_dim={self.policy_dim}, hidden={self.hidden}, "
            f"activation={self.activation!r}, ortho_init={self.ortho_init}"
        )


class ActorCritic(nn.Module):
    """``extractor`` (shared) → ``TwinMLP`` heads: ``(policy_output [B, policy_dim], value [B])``.

    Args:
        observation_space: what the network reads (probes the extractor's width).
        policy_dim: the action distribution's ``param_dim``.
        extractor: any module mapping observations to ``[B, features]``;
            default ``extractors.default_extractor(observation_space)``,
            initialised orthogonally as Stable-Baselines3 does.
        hidden: the heads' hidden widths; default (64, 64) on features of
            flat vectors, none (linear heads) after a CNN, as SB3's policies.
        activation: "tanh" or "relu" in the heads.
        ortho_init: SB3's orthogonal initialisation (the default); False keeps
            PyTorch's, as SB3's ``ortho_init=False``.
    """

    def __init__(
        self,
        observation_space: gym.Space,
        policy_dim: int,
        extractor: nn.Module | None = None,
        hidden: Sequence[int] | None = None,
        activation: str = "tanh",
        ortho_init: bool = True,
    ) -> None:
        super().__init__()
        if extractor is None:
            extractor = default_extractor(observation_space)
            if ortho_init:
                orthogonal_init(extractor)
        self.extractor = extractor
        self.features_dim = features_dim(extractor, observation_space)
        if hidden is None:
            hidden = () if isinstance(extractor, ImageCNN) else (64, 64)
        self.heads = TwinMLP(self.features_dim, policy_dim, hidden, activation, ortho_init)

    @property
    def flat(self) -> bool:
        """Whether the extractor only flattens (the heads alone are the network)."""
        return type(self.extractor) is FlattenExtractor

    def forward(self, obs: ObsTensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.heads(self.extractor(obs))

    def numpy_forward(self, obs: Any) -> tuple[np.ndarray, np.ndarray] | None:
        """``forward`` on flat numpy observations without torch, where the MLP
        accelerator applies to the whole network; else None (act through torch)."""
        if not self.flat or self._forward_hooks or self._forward_pre_hooks:
            return None
        if self.extractor._forward_hooks or self.extractor._forward_pre_hooks:
            return None
        x = np.asarray(obs, dtype=np.float32)
        return self.heads.numpy_forward(x.reshape(len(x), -1))


def check_actor_critic(
    actor: nn.Module,
    critic: nn.Module | None,
    observation_space: gym.Space | None,
    policy_dim: int,
    owner: str,
) -> None:
    """Run two observations through the networks and insist on the shapes the
    distribution needs, before any work starts (found in the first update, a
    mismatch is an obscure broadcasting error, or none at all)."""
    probe = probe_input(actor, observation_space)
    if probe is None:
        return
    with torch.no_grad():
        try:
            out = actor(probe)
            value = None if critic is None else critic(probe)
        except Exception as exc:
            raise ValueError(
                f"{owner}: the networks fail on observations from {observation_space} ({exc})"
            ) from None
    check_actor_critic_outputs(
        out, None if value is None else tuple(value.shape), policy_dim, owner
    )


def returns_values(network: nn.Module, observation_space: gym.Space | None) -> bool:
    """Whether ``network`` returns ``(policy_output, value)`` rather than the policy output alone."""
    if isinstance(network, ActorCritic | TwinMLP):
        return True
    probe = probe_input(network, observation_space)
    if probe is None:
        return False
    with torch.no_grad():
        return isinstance(network(probe), tuple | list)


def probe_input(network: nn.Module, observation_space: gym.Space | None) -> ObsTensor | None:
    """Two observations to probe ``network`` with: from the space, else sized by
    its first linear layer; None when neither tells (the network is trusted)."""
    param = next(network.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    if observation_space is not None:
        return probe_batch(observation_space, device)
    linear = next((m for m in network.modules() if isinstance(m, nn.Linear)), None)
    in_dim = getattr(network, "in_dim", None) or (linear.in_features if linear else None)
    return None if in_dim is None else torch.zeros(2, int(in_dim), device=device)


@contextlib.contextmanager
def seeded(seed: int | None) -> Iterator[None]:
    """Initialise networks from ``seed`` without touching torch's global generator."""
    if seed is None:
        yield
        return
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield
