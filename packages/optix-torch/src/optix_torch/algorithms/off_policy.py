"""What SAC and TD3 share: their networks over the policy layer and the update loop.

``OffPolicyAgent`` is the plumbing of an off-policy actor-critic, in the
manner of Stable-Baselines3's ``OffPolicyAlgorithm``: it checks the networks
against the spaces, acts (uniformly at random until ``learning_starts``),
and hands the algorithm one minibatch per gradient step the window earned,
from ``replay.ReplayAgent``'s memory and schedule, which DQN and Rainbow
share. It also holds the two pieces both updates compute alike: the clipped
double-Q target from the target critics and the critics' regression step.
The algorithm (``sac.py``, ``td3.py``) writes its policy and the rest of its
update. What needs no torch (scaling actions to the Box, the checks of the
action space and of the two critics) is optix-core's
``off_policy.actor_critic``.

The networks read observations as the policy layer gives them
(``policies.observations``: uint8 images stay uint8, Discrete indices stay
integers, a Dict is a dict of tensors). As in SB3 (``share_features_extractor
=False``) the actor and the critics each have their own features extractor
φ: the actor is ``Actor`` (φ, then an MLP head), the critics ``Critic`` (φ,
then both Q-functions on ``[φ(s) ‖ a]``, fused in one ``TwinQ`` by default).
Flat vectors need no φ: there the actor is the MLP itself and the critics
read ``[s ‖ a]``, SB3's MLP-policy networks at no extra cost. Networks act in
(−1, 1); ``ActionScaler`` (optix-core's) maps that to the Box bounds for the
environment and recorded actions back for learning.
"""

from __future__ import annotations

import copy
import itertools
import math
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from typing import Any, ClassVar, NamedTuple, TypeVar

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from optix_core.off_policy import (
    ActionScaler,
    action_size,
    check_action_space,
    check_twin_critics,
)
from optix_core.types import EpisodeData, HyperparamSet
from optix_torch.accel.optim import adam, optimizer_step
from optix_torch.algorithms.replay import ReplayAgent
from optix_torch.policies import observations as O
from optix_torch.policies.extractors import default_extractor, features_dim
from optix_torch.policies.networks import parameters_of, probe_input, seeded


class TwinQ(nn.Module):
    """Two Q-networks ``[features ‖ action] → Q`` evaluated as one.

    Each layer holds both critics' weights stacked on a leading axis and runs
    as one batched matmul, so the pair costs the operations of a single
    network. ``forward`` returns ``[B, 2]`` (one column per critic); ``q1``
    runs the first critic alone. Initialised like ``nn.Linear``.
    """

    def __init__(
        self,
        in_dim: int,
        hidden: Sequence[int] = (256, 256),
        activation: type[nn.Module] = nn.ReLU,
        n_critics: int = 2,
    ) -> None:
        super().__init__()
        dims = [in_dim, *hidden, 1]
        self.n_critics = n_critics
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for fan_in, fan_out in itertools.pairwise(dims):
            bound = 1.0 / math.sqrt(fan_in)
            weight = torch.empty(n_critics, fan_in, fan_out).uniform_(-bound, bound)
            bias = torch.empty(n_critics, 1, fan_out).uniform_(-bound, bound)
            self.weights.append(nn.Parameter(weight))
            self.biases.append(nn.Parameter(bias))
        self.activation = activation()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.unsqueeze(0).expand(self.n_critics, *x.shape)
        weights, biases = parameters_of(self.weights), parameters_of(self.biases)
        for weight, bias in zip(weights[:-1], biases[:-1], strict=True):
            h = self.activation(torch.baddbmm(bias, h, weight))
        # The single-output layer as multiply-and-sum: a batched matrix-vector
        # product is several times slower than this on the CPU, both ways.
        weight, bias = weights[-1], biases[-1]
        return ((h * weight.transpose(1, 2)).sum(-1) + bias.squeeze(-1)).t()

    def q1(self, x: torch.Tensor) -> torch.Tensor:
        h = x
        last = len(self.weights) - 1
        for i, (weight, bias) in enumerate(zip(self.weights, self.biases, strict=True)):
            h = torch.addmm(bias[0], h, weight[0])
            if i < last:
                h = self.activation(h)
        return h


class CriticPair(nn.Module):
    """Two user-built critics (``[features ‖ action] → [B, 1]`` each) as one ``[B, 2]`` module."""

    def __init__(self, critic1: nn.Module, critic2: nn.Module) -> None:
        super().__init__()
        self.critic1 = critic1
        self.critic2 = critic2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.critic1(x), self.critic2(x)], dim=1)

    def q1(self, x: torch.Tensor) -> torch.Tensor:
        return self.critic1(x)


class Actor(nn.Module):
    """The factories' actor: observations → features φ(s) → MLP head → the algorithm's outputs."""

    def __init__(self, extractor: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.extractor = extractor
        self.head = head

    def forward(self, obs: O.ObsTensor) -> torch.Tensor:
        return self.head(self.extractor(obs))


class Critic(nn.Module):
    """Both Q-functions: Qⱼ(s, a) = headⱼ([φ(s) ‖ a]), φ the critics' features extractor.

    ``heads`` maps ``[B, features + A]`` to ``[B, 2]``: ``TwinQ`` by default,
    ``CriticPair`` for tensor-optix's two critics, or any such module.
    ``extractor`` None: flat vectors are their own features (``features_extractor``).
    """

    def __init__(self, extractor: nn.Module | None, heads: nn.Module) -> None:
        super().__init__()
        self.extractor = extractor
        self.heads = heads

    def inputs(self, obs: O.ObsTensor, actions: torch.Tensor) -> torch.Tensor:
        features = obs if self.extractor is None else self.extractor(obs)
        return torch.cat([features, actions], dim=1)

    def forward(self, obs: O.ObsTensor, actions: torch.Tensor) -> torch.Tensor:
        """``[B, 2]``: Q₁(s, a) and Q₂(s, a)."""
        return self.heads(self.inputs(obs, actions))

    def q1(self, obs: O.ObsTensor, actions: torch.Tensor) -> torch.Tensor:
        """``[B, 1]``: Q₁ alone, the heads' ``q1`` when they have one."""
        x = self.inputs(obs, actions)
        q1 = getattr(self.heads, "q1", None)
        return q1(x) if q1 is not None else self.heads(x)[:, :1]


def features_extractor(space: gym.Space | None) -> nn.Module | None:
    """The policy layer's default extractor for ``space``; None for flat vectors.

    Observations of a 1-D float Box arrive as the float32 ``[B, d]`` an MLP
    reads, so they are their own features: no extractor call on that path (nor
    without a space, where tensor-optix's networks read flat vectors).
    """
    if space is None or (
        isinstance(space, gym.spaces.Box)
        and len(space.shape) == 1
        and np.issubdtype(space.dtype, np.floating)
    ):
        return None
    return default_extractor(space)


def features_width(extractor: nn.Module | None, space: gym.Space) -> int:
    """How many features ``extractor`` (None: the flat vector itself) gives on ``space``."""
    return int(space.shape[0]) if extractor is None else features_dim(extractor, space)


@torch.no_grad()
def polyak(target: list[torch.Tensor], online: list[torch.Tensor], tau: float) -> None:
    """θ_tgt ← τ·θ + (1 − τ)·θ_tgt, one fused call over every tensor; outside
    autograd, or each target would become a node leading back to θ."""
    torch._foreach_lerp_(target, online, tau)


def target_copy(module: nn.Module) -> nn.Module:
    """A frozen copy of ``module`` to serve as its target network."""
    target = copy.deepcopy(module)
    target.requires_grad_(False)
    return target


class DeterministicActor(nn.Module):
    """An actor's deterministic actions, scaled to the Box's bounds (what ``optix export`` writes)."""

    def __init__(self, actor: nn.Module, scaler: ActionScaler, gaussian: bool) -> None:
        super().__init__()
        self.actor, self.gaussian, self.shape = actor, gaussian, scaler.shape
        for name, value in (
            ("center", scaler.center),
            ("scale", scaler.half),
            ("low", scaler.low),
            ("high", scaler.high),
        ):
            self.register_buffer(name, torch.as_tensor(value, dtype=torch.float32))

    def forward(self, obs: O.ObsTensor) -> torch.Tensor:
        out = self.actor(obs)
        d = self.center.shape[0]
        unit = torch.tanh(out[:, :d]) if self.gaussian else out.clamp(-1.0, 1.0)
        action = torch.maximum(torch.minimum(self.center + self.scale * unit, self.high), self.low)
        return action.reshape(out.shape[0], *self.shape)


class Batch(NamedTuple):
    """One minibatch of transitions on the device (views into the window's tensors)."""

    observations: O.ObsTensor  # [B, ...], a dict of them for Dict observations
    actions: torch.Tensor  # [B, A] in [−1, 1]
    rewards: torch.Tensor  # [B]
    next_observations: O.ObsTensor  # [B, ...]
    bootstrap: torch.Tensor  # [B]: γ·(1 − terminated)
    noise: torch.Tensor  # [*noise_shape]: the algorithm's noise for this step


def twin_critics(
    critic1: nn.Module | None, critic2: nn.Module | None, critics: nn.Module | None, owner: str
) -> nn.Module:
    """One ``[B, 2]`` module from tensor-optix's two critics, or a fused one as given."""
    check_twin_critics(critic1, critic2, critics, owner)
    return critics if critics is not None else CriticPair(critic1, critic2)


def check_optimizer(
    optimizer: torch.optim.Optimizer, module: nn.Module, role: str, owner: str
) -> None:
    """Insist that a user's optimizer holds every trainable parameter of the network it trains."""
    held = {id(p) for group in optimizer.param_groups for p in group["params"]}
    missing = sum(1 for p in module.parameters() if p.requires_grad and id(p) not in held)
    if missing:
        raise ValueError(
            f"{owner}: the {role} optimizer lacks {missing} of the {role}'s parameter tensors "
            f"(for the critics, the critic_extractor's count too); give it all of them"
        )


def gradient_step(
    optimizer: torch.optim.Optimizer,
    loss: torch.Tensor,
    inputs: Sequence[torch.Tensor] | None = None,
) -> None:
    """One step of ``optimizer`` down ``loss``, back-propagated into ``inputs`` only (if given).

    Naming the actor's parameters spares the critics' weight gradients under
    the actor's loss, which SB3 computes and throws away.
    """
    optimizer.zero_grad(set_to_none=True)
    loss.backward(inputs=inputs)
    optimizer_step(optimizer)()


AgentT = TypeVar("AgentT", bound="OffPolicyAgent")


def default_agent(
    agent_class: type[AgentT],
    observation_space: gym.Space,
    action_space: gym.Space,
    head: Callable[[int, int], nn.Module],
    *,
    hidden: Sequence[int],
    extractor: nn.Module | None,
    hyperparams: HyperparamSet | dict[str, Any] | None,
    device: str | torch.device,
    seed: int | None,
) -> AgentT:
    """The factories' agent, built as SB3 builds SAC's and TD3's policies.

    The actor is ``Actor(φ_π, head(features, action_dim))``; the critics are
    ``Critic(φ_Q, TwinQ)``, two ReLU MLPs of widths ``hidden`` on
    ``[φ_Q(s) ‖ a]``. φ_π and φ_Q are separate extractors (SB3's
    ``share_features_extractor=False``): ``extractor`` and a copy of it, or
    each the policy layer's default for the observation space (a CNN on
    images, one-hot on Discrete, combined on Dict). On flat vectors there is
    none: the actor is the head alone and the critics read ``[s ‖ a]``, the
    networks SB3 builds for an MLP policy. Every network is initialised from
    ``seed``.
    """
    check_action_space(agent_class.algorithm, action_space)
    O.check_observation_space(observation_space, agent_class.algorithm)
    act_dim = int(np.prod(action_space.shape))
    with seeded(seed):
        if extractor is None:
            actor_extractor = features_extractor(observation_space)
            critic_extractor = features_extractor(observation_space)
        else:
            actor_extractor, critic_extractor = extractor, copy.deepcopy(extractor)
        policy = head(features_width(actor_extractor, observation_space), act_dim)
        actor = policy if actor_extractor is None else Actor(actor_extractor, policy)
        critics = TwinQ(features_width(critic_extractor, observation_space) + act_dim, hidden)
    return agent_class(
        actor,
        critics=critics,
        critic_extractor=critic_extractor,
        hyperparams=hyperparams,
        device=device,
        seed=seed,
        observation_space=observation_space,
        action_space=action_space,
    )


class OffPolicyAgent(ReplayAgent):
    """Networks, acting and the update loop shared by SAC and TD3, over ``ReplayAgent``.

    The constructor takes tensor-optix's arguments: ``actor``, ``critic1``
    and ``critic2`` (or one fused ``critics`` module), ``action_dim`` and the
    actor's and critics' optimizers (Adam at ``learning_rate`` for each one
    left out; one given must hold all of its network's parameters); optix
    adds ``critic_extractor`` (the critics' φ; default the policy layer's for
    ``observation_space``, none on flat vectors or without a space, where
    φ(s) = s), ``observation_space`` and ``action_space`` (networks are then
    checked, and actions scaled to the bounds) and ``seed``. Subclasses set
    ``SEARCH_SPACE`` (from their config module) and ``ACTOR_OUTPUTS``, and
    write ``setup`` (what is their own: target networks, temperature),
    ``policy`` (observations → actions in [−1, 1]), ``noise_shape`` and
    ``update`` (one gradient step on one minibatch).
    """

    SEARCH_SPACE: ClassVar[dict[str, tuple]] = {}
    ACTOR_OUTPUTS: ClassVar[int] = 1  # the actor's outputs per action dimension

    def __init__(
        self,
        actor: nn.Module,
        critic1: nn.Module | None = None,
        critic2: nn.Module | None = None,
        action_dim: int | None = None,
        actor_optimizer: torch.optim.Optimizer | None = None,
        critic_optimizer: torch.optim.Optimizer | None = None,
        hyperparams: HyperparamSet | dict[str, Any] | None = None,
        device: str | torch.device = "auto",
        seed: int | None = None,
        *,
        critics: nn.Module | None = None,
        critic_extractor: nn.Module | None = None,
        observation_space: gym.Space | None = None,
        action_space: gym.Space | None = None,
    ) -> None:
        super().__init__(hyperparams, device, seed)
        if critic_extractor is None:
            critic_extractor = features_extractor(observation_space)
        critic = Critic(critic_extractor, twin_critics(critic1, critic2, critics, self.algorithm))
        self.action_dim = action_size(action_dim, action_space, self.algorithm)
        self.scaler = ActionScaler(self.action_dim, action_space)
        self.actor = actor.to(self.device)
        self.critic = critic.to(self.device)
        self.check_networks(observation_space)
        self.critic_target = target_copy(self.critic)
        self.actor_params = list(self.actor.parameters())
        self.critic_params = list(self.critic.parameters())
        lr = self.hp["learning_rate"]
        for optimizer, module, role in (
            (actor_optimizer, self.actor, "actor"),
            (critic_optimizer, self.critic, "critic"),
        ):
            if optimizer is not None:
                check_optimizer(optimizer, module, role, self.algorithm)
        self.actor_optimizer = actor_optimizer or adam(self.actor_params, lr)
        self.critic_optimizer = critic_optimizer or adam(self.critic_params, lr)
        self.setup()
        self.apply_hyperparams()

    def setup(self) -> None:
        """Build what is the algorithm's own, once the shared networks are in place."""

    def check_networks(self, observation_space: gym.Space | None) -> None:
        """Run two observations through the actor and the critics and insist on
        their output widths, before any work starts. The observations come
        from the space, or are zeros as wide as the actor's first linear layer;
        with neither the networks are trusted."""
        probe = probe_input(self.actor, observation_space)
        if probe is None:
            return
        given = (
            f"observations from {observation_space}"
            if observation_space is not None
            else f"inputs of width {probe.shape[1]}"
        )
        out = self._probe("actor", self.actor, probe, given)
        self._expect_width("actor", out, self.actor_width())
        features = probe
        if self.critic.extractor is not None:
            features = self._probe(
                "critics' features extractor", self.critic.extractor, probe, given
            )
        if features.ndim != 2:
            raise ValueError(
                f"{self.algorithm}: the critics' features extractor must return "
                f"[batch, features], got shape {tuple(features.shape)}"
            )
        width = features.shape[1] + self.action_dim
        inputs = torch.zeros(2, width, device=features.device)
        q = self._probe("twin critic", self.critic.heads, inputs, f"inputs of width {width}")
        self._expect_width("twin critic", q, 2)

    def actor_width(self) -> int:
        """The actor's outputs per observation."""
        return self.ACTOR_OUTPUTS * self.action_dim

    def _probe(self, role: str, network: nn.Module, inputs: Any, given: str) -> torch.Tensor:
        try:
            with torch.no_grad():
                return network(inputs)
        except Exception as exc:
            raise ValueError(
                f"{self.algorithm}: the {role} network does not take {given} "
                f"({str(exc).splitlines()[0]})"
            ) from None

    def _expect_width(self, role: str, out: torch.Tensor, expected: int) -> None:
        if out.ndim != 2 or out.shape[1] != expected:
            raise ValueError(
                f"{self.algorithm}: the {role} network outputs shape {tuple(out.shape[1:])} "
                f"per observation, expected ({expected},) for this action space"
            )

    @property
    def search_space(self) -> dict[str, tuple]:
        """What the loop may tune while training: the config module's ``SEARCH_SPACE``."""
        return dict(self.SEARCH_SPACE)

    # ---- acting ---------------------------------------------------------

    def policy(
        self, observations: O.ObsTensor, deterministic: bool, generator: torch.Generator
    ) -> torch.Tensor:
        """Actions in [−1, 1] for a batch of observations (on the CPU)."""
        raise NotImplementedError

    def policy_module(self) -> nn.Module:
        """The deterministic policy as a plain module: observations → actions in
        the Box's bounds (SAC: tanh of the Gaussian's mean; TD3: the actor's output)."""
        return DeterministicActor(self.actor, self.scaler, gaussian=self.ACTOR_OUTPUTS == 2)

    @torch.no_grad()
    def act(self, observation: Any, deterministic: bool = False) -> np.ndarray:
        obs = O.to_tensor(observation, self.device)
        unit = self.policy(obs, deterministic, self.act_generator)
        return self.scaler.to_env(unit.numpy())

    @torch.no_grad()
    def act_info(self, observation: Any, episode_start: np.ndarray) -> tuple[np.ndarray, dict]:
        obs = O.to_tensor(observation, self.device)
        n = O.batch_size(obs)
        if self.warming_up:
            # SB3's warm-up: uniform random actions until learning starts.
            unit = torch.rand(n, self.action_dim, generator=self.generator) * 2 - 1
        else:
            unit = self.policy(obs, False, self.generator)
        self._acting_steps += n
        return self.scaler.to_env(unit.numpy()), {}

    # ---- learning -------------------------------------------------------------

    def learn(self, episode_data: EpisodeData) -> dict[str, float]:
        """Store the window, take the gradient steps it earned, return their mean diagnostics."""
        stats: defaultdict[str, list[torch.Tensor]] = defaultdict(list)
        for batch in self.replay_batches(episode_data):
            self.n_updates += 1  # counted before the step, as SB3 does: TD3's delay reads it
            for key, value in self.update(batch).items():
                stats[key].append(value)
        # Means of the per-update diagnostics, read back from the device once.
        keys = [k for k, values in stats.items() if values]
        means = torch.stack([torch.stack(stats[k]).mean() for k in keys]).tolist() if keys else []
        return {**dict(zip(keys, means, strict=True)), **self.replay_stats()}

    def replay_batches(self, data: EpisodeData) -> Iterator[Batch]:
        """The window's minibatches (``replay_minibatches``), one ``Batch`` per gradient step.

        Replay keeps actions as the networks make them, in [−1, 1]. Each
        block of minibatches gets its updates' noise in one draw.
        """
        for block in self.replay_minibatches(self.scaler.unit_window(data)):
            count = len(block["rewards"])
            noise = self.draw_noise(count, self.hp["batch_size"]).to(self.device)
            for j in range(count):
                yield Batch(
                    O.select(block["observations"], j),
                    block["actions"][j],
                    block["rewards"][j],
                    O.select(block["next_observations"], j),
                    block["bootstrap"][j],
                    noise[j],
                )

    def update(self, batch: Batch) -> dict[str, torch.Tensor]:
        """One gradient step on ``batch`` (the ``n_updates``-th); its diagnostics, on the device."""
        raise NotImplementedError

    def noise_shape(self, batch_size: int) -> tuple[int, ...]:
        """Shape of the noise each update needs."""
        return (0,)

    def draw_noise(self, n_updates: int, batch_size: int) -> torch.Tensor:
        """Noise for ``n_updates`` updates from ``self.generator`` (standard normal)."""
        return torch.randn((n_updates, *self.noise_shape(batch_size)), generator=self.generator)

    @torch.no_grad()
    def bootstrap(
        self, batch: Batch, next_actions: torch.Tensor, bonus: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The clipped double-Q target y = r + γ(1 − d)·(minⱼ Q̄ⱼ(s′, a′) + bonus).

        Clipped double Q-learning (Fujimoto et al. 2018): the smaller of the
        two target critics' estimates, because the actor seeks out and feeds
        on any overestimate. SAC's ``bonus`` is the entropy term −α log π(a′|s′),
        which makes the bracket the soft state value V̄(s′) of Haarnoja et al.
        (2018). Only ``terminated`` stops bootstrapping (``bootstrap`` is
        γ(1 − terminated)): a time-limit truncation is bootstrapped.
        """
        q_next = self.critic_target(batch.next_observations, next_actions).amin(1)
        if bonus is not None:
            q_next = q_next + bonus
        return torch.addcmul(batch.rewards, batch.bootstrap, q_next)

    def critic_step(self, batch: Batch, target: torch.Tensor, scale: float) -> torch.Tensor:
        """One step on L_Q = scale·Σⱼ E[(Qⱼ(s, a) − y)²], both critics in one pass; the loss."""
        q = self.critic(batch.observations, batch.actions)  # [B, 2]
        # The sum over critics of their mean squared errors: the mean over [B, 2] times 2.
        loss = (q - target[:, None]).square().mean() * (scale * q.shape[1])
        gradient_step(self.critic_optimizer, loss)
        return loss.detach()
