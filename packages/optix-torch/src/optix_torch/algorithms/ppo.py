"""PPO: proximal policy optimization, on any action space.

Schulman et al. (2017), "Proximal Policy Optimization Algorithms". For each
window of experience, with π_old the policy that acted (its log-probability
and V(s) recorded at act time in ``EpisodeData.policy_info``):

    Â_t    = GAE-λ(r, V)                                   (Schulman et al. 2016, eq. 16)
    R_t    = Â_t + V_old(s_t)                              (the critic's λ-return target)
    r_t(θ) = π_θ(a_t|s_t) / π_old(a_t|s_t)                 (eq. 6)
    L_clip = E[ min(r_t Â_t, clip(r_t, 1 − ε, 1 + ε) Â_t) ]  (eq. 7)
    L_VF   = E[ (V_θ(s_t) − R_t)² ]    or, with clip_range_vf c,
             E[ (V_old + clip(V_θ − V_old, −c, c) − R_t)² ]  (Stable-Baselines3's form)
    L      = −L_clip + c₁ L_VF − c₂ H[π_θ(·|s_t)]           (eq. 9)

minimised for ``n_epochs`` passes over the window in shuffled minibatches,
each step's gradient clipped to a global norm of ``max_grad_norm``. With
``target_kl`` > 0 the window's epochs stop at the first minibatch whose
approximate KL(π_old‖π_θ) exceeds 1.5 · target_kl, before its step (SB3).

The network is the policy layer's: ``ActorCritic`` (a features extractor
chosen from the observation space, then the actor's and critic's heads)
or the user's ``actor`` and ``critic``; the action distribution is chosen
from the action space (``policies.distributions``). Speed comes from the
shape of the update, not from a second copy of it: the window crosses to the
device once, every gather of shuffled minibatches is one indexing operation,
advantages are normalised per minibatch in one vectorised pass, losses stay
on the device until the window is done; where ``optix_torch.accel``
applies, the default MLP's backward and Adam's step are its accelerated ones.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from optix_core.algorithms.config import ppo as config
from optix_core.minibatch import make_minibatches
from optix_core.normalizers import ObsNormalizer, RewardNormalizer
from optix_core.on_policy import (
    ADVANTAGE,
    OLD_LOG_PROB,
    OLD_VALUE,
    RETURN,
    PPOWindow,
    minibatch_starts,
)
from optix_core.types import EpisodeData, HyperparamSet
from optix_torch.accel.optim import Gradients, adam, optimizer_step
from optix_torch.accel.ppo import FusedPPOStep
from optix_torch.algorithms.on_policy import OnPolicyValues, default_agent, explained_variance
from optix_torch.base import TorchAgentBase, set_learning_rate
from optix_torch.policies import observations as O
from optix_torch.policies.distributions import (
    Distribution,
    distribution_for,
    gaussian_action_space,
)
from optix_torch.policies.networks import (
    ActorCritic,
    TwinMLP,
    check_actor_critic,
    probe_input,
)
from optix_torch.policies.sde import StateDependentActorCritic

# Shuffled minibatches are gathered this many bytes at a time at most (all
# epochs at once for small windows, an epoch at a time for images).
GATHER_BYTES = 64 * 2**20


class TorchPPOAgent(PPOWindow, OnPolicyValues, TorchAgentBase):
    """PPO (tensor-optix's ``TorchPPOAgent``) on Discrete, MultiDiscrete,
    MultiBinary or Box actions.

    Args:
        actor: observations → the distribution's parameters ``[B, param_dim]``;
            or, with ``critic=None``, → ``(parameters, values [B])``, as
            ``ActorCritic`` (the default network) does.
        critic: observations → ``[B, 1]`` state values, or None (see ``actor``).
        optimizer: over both networks' parameters; default Adam (ε = 1e-5, as
            SB3's PPO). Its learning rate follows ``hyperparams``.
        hyperparams: keys of ``optix_core.algorithms.config.ppo.DEFAULTS``.
        reward_normalizer: an ``optix_core.normalizers.RewardNormalizer`` with
            one column per environment; rewards are divided by its running
            return std before GAE. ``normalize_reward`` makes one itself, and
            ``normalize_observations`` standardizes observations
            (``OnPolicyWindow.init_normalizers``).
        device: "auto", "cpu", "cuda" or "cuda:N".
        seed: seeds the agent's own generators (sampling, minibatch order).
        action_space: the actions' space; without it, Discrete with as many
            actions as the actor has outputs.
        observation_space: when given, the networks are checked against it.
        distribution: a ``Distribution``, or for Box actions its name:
            "squashed_gaussian" (default) or "gaussian".
    """

    algorithm = "ppo"
    DEFAULTS = config.DEFAULTS
    BOUNDS = config.BOUNDS
    ONLINE_SEARCH_SPACE = config.ONLINE_SEARCH_SPACE
    BUILT_WITH = config.BUILT_WITH

    def __init__(
        self,
        actor: nn.Module,
        critic: nn.Module | None = None,
        optimizer: torch.optim.Optimizer | None = None,
        hyperparams: HyperparamSet | dict[str, Any] | None = None,
        reward_normalizer: RewardNormalizer | None = None,
        device: str | torch.device = "auto",
        seed: int | None = None,
        *,
        action_space: gym.Space | None = None,
        observation_space: gym.Space | None = None,
        distribution: Distribution | str | None = None,
    ) -> None:
        super().__init__(hyperparams, device, seed)
        self.actor = actor.to(self.device)
        self.critic = critic.to(self.device) if critic is not None else None
        self.distribution = pick_distribution(
            self.actor, self.critic, action_space, observation_space, distribution, self.algorithm
        )
        check_actor_critic(
            self.actor,
            self.critic,
            observation_space,
            self.distribution.param_dim,
            self.algorithm,
        )
        self.check_exploration()
        self.init_normalizers(reward_normalizer, observation_space)
        self.env_steps = 0  # environment steps learned from: drives anneal_steps
        params = [p for m in self.modules().values() for p in m.parameters()]
        # The policy layer's networks are reached whole by every loss: their
        # gradients may live in one flat buffer.
        self.gradients = Gradients(params, flat=self.critic is None and is_layer_network(actor))
        self.optimizer = optimizer or adam(params, self.hp["learning_rate"], eps=1e-5)
        self.apply_hyperparams()

    # ---- networks -------------------------------------------------------

    def modules(self) -> dict[str, nn.Module]:
        if self.critic is None:
            return {"actor_critic": self.actor}
        return {"actor": self.actor, "critic": self.critic}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"main": self.optimizer}

    def forward(self, obs: O.ObsTensor, values: bool = True) -> tuple[torch.Tensor, Any]:
        """``(distribution parameters [B, param_dim], V(s) [B] or None)``."""
        if self.critic is None:
            return self.actor(obs)
        return self.actor(obs), self.critic(obs).squeeze(-1) if values else None

    def policy_module(self) -> nn.Module:
        """The deterministic policy as a plain module: observations → actions."""
        return DeterministicPolicy(
            self.actor, self.critic is None, self.distribution, self.obs_normalizer
        )

    # ---- acting -------------------------------------------------------------

    def _numpy_forward(self, observation: Any, values: bool) -> tuple[np.ndarray, Any]:
        # Acting works on a handful of rows: run the network (in numpy where the
        # accelerator serves it), and sample in numpy.
        if self.critic is None and isinstance(self.actor, ActorCritic):
            out = self.actor.numpy_forward(observation)
            if out is not None:
                return out
        return self._torch_forward(observation, values)

    @torch.inference_mode()
    def _torch_forward(self, observation: Any, values: bool) -> tuple[np.ndarray, Any]:
        params, value = self.forward(O.to_tensor(observation, self.device), values)
        value_np = value.float().cpu().numpy() if values else None
        return params.float().cpu().numpy(), value_np

    def act(self, observation: Any, deterministic: bool = False) -> np.ndarray:
        params = self._numpy_forward(self.observed(observation), values=False)[0]
        if deterministic:
            return self.distribution.mode(params)
        return self.distribution.sample(params, self.act_generator)[0]

    def act_info(
        self, observation: Any, episode_start: np.ndarray
    ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        params, values = self._numpy_forward(self.observed(observation), values=True)
        actions, info = self.explore(params, self.generator)
        return actions, {**info, "values": values}

    # ---- schedules ------------------------------------------------------

    def apply_hyperparams(self) -> None:
        set_learning_rate(self.optimizer, self.scheduled_learning_rate())

    # ---- learning -------------------------------------------------------

    def learn(self, episode_data: EpisodeData) -> dict[str, float]:
        hp = self.hp
        obs, table, values, returns, clip = self.window_table(episode_data)
        n = len(table)
        learning_rate = self.scheduled_learning_rate()  # set as the window was counted

        # The window goes to the device once: observations, and one float
        # matrix of [old log-prob, advantage, return, old value, actions...].
        obs_t = O.to_tensor(obs, self.device)
        table_t = torch.as_tensor(table, device=self.device)

        batch = min(int(hp["minibatch_size"]), n)
        epochs = int(hp["n_epochs"])
        row_bytes = table.itemsize * table.shape[1] + O.row_bytes(obs)
        per_gather = max(1, min(epochs, GATHER_BYTES // max(1, n * row_bytes)))
        normalize = bool(hp["normalize_advantage"]) and batch > 1
        target_kl = float(hp["target_kl"])
        step = optimizer_step(self.optimizer)
        fused = FusedPPOStep.of(self.actor, self.critic, self.gradients, self.distribution)
        stats: list[tuple[torch.Tensor, ...]] = []
        stopped = False
        for first in range(0, epochs, per_gather):
            count = min(per_gather, epochs - first)
            # Every epoch of this gather: a permutation cut into minibatches.
            order = np.concatenate(
                [np.concatenate(make_minibatches(n, batch, rng=self.rng)) for _ in range(count)]
            )
            index = torch.as_tensor(order, device=self.device)
            obs_g = O.index_select(obs_t, index)
            rows = table_t.index_select(0, index)
            adv_g = rows[:, ADVANTAGE].contiguous()
            if normalize:
                adv_g = normalize_per_minibatch(adv_g, count, n, batch)
            for start in minibatch_starts(count, n, batch):
                mb = slice(start, min(start + batch, (start // n + 1) * n))
                if fused is not None:  # the same gradients, written by hand (accel)
                    diagnostics = fused(
                        obs_g[mb],
                        rows[mb, OLD_VALUE + 1 :],
                        rows[mb, OLD_LOG_PROB],
                        adv_g[mb],
                        rows[mb, RETURN],
                        rows[mb, OLD_VALUE],
                        clip,
                        float(hp["clip_range_vf"]),
                        float(hp["vf_coef"]),
                        float(hp["entropy_coef"]),
                    )
                else:
                    loss, *diagnostics = self.loss(O.select(obs_g, mb), rows[mb], adv_g[mb], clip)
                if target_kl > 0 and float(approx_kl(diagnostics[-1])) > 1.5 * target_kl:
                    stopped = True
                    break
                if fused is None:
                    self.gradients.zero()
                    loss.backward()
                self.gradients.clip(float(hp["max_grad_norm"]))
                step()
                stats.append(tuple(diagnostics))
            if stopped:
                break
        return {
            **self.diagnostics(obs_t, stats, clip, values, returns),
            "learning_rate": learning_rate,
            "clip_ratio": clip,
            "updates": float(len(stats)),
            "stopped_early": float(stopped),
        }

    def loss(
        self, obs: O.ObsTensor, rows: torch.Tensor, advantages: torch.Tensor, clip: float
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """L (eq. 9) for one minibatch; also the per-row surrogate, value error and log r."""
        policy_out, value = self.forward(obs)
        return ppo_loss(self.distribution, policy_out, value, rows, advantages, clip, self.hp)

    @torch.no_grad()
    def diagnostics(
        self,
        obs_t: O.ObsTensor,
        stats: list[tuple[torch.Tensor, ...]],
        clip: float,
        values: np.ndarray,
        returns: np.ndarray,
    ) -> dict[str, float]:
        """Means over every sample of every step; entropy of the updated policy on the window."""
        if not stats:
            return {"explained_variance": explained_variance(values, returns)}
        entropy = self.distribution.entropy(self.forward(obs_t, values=False)[0]).mean()
        return {
            **loss_diagnostics(stats, entropy, clip),
            "explained_variance": explained_variance(values, returns),
        }

    # ---- checkpoint extras and teardown -------------------------------------

    def teardown(self) -> None:
        self.gradients.release()
        super().teardown()


class TorchGaussianPPOAgent(TorchPPOAgent):
    """tensor-optix's ``TorchGaussianPPOAgent``: PPO on Box actions, sized by ``action_dim``.

    Without ``action_space`` the actions lie in (−1, 1)^action_dim; with it,
    in the Box's bounds (``action_dim``, if given too, must agree).
    """

    def __init__(
        self,
        actor: nn.Module,
        critic: nn.Module | None = None,
        optimizer: torch.optim.Optimizer | None = None,
        action_dim: int | None = None,
        hyperparams: HyperparamSet | dict[str, Any] | None = None,
        reward_normalizer: RewardNormalizer | None = None,
        device: str | torch.device = "auto",
        seed: int | None = None,
        *,
        action_space: gym.Space | None = None,
        observation_space: gym.Space | None = None,
        distribution: Distribution | str | None = None,
    ) -> None:
        action_space = gaussian_action_space(action_dim, action_space, "TorchGaussianPPOAgent")
        super().__init__(
            actor,
            critic,
            optimizer,
            hyperparams,
            reward_normalizer,
            device,
            seed,
            action_space=action_space,
            observation_space=observation_space,
            distribution=distribution,
        )


class DeterministicPolicy(nn.Module):
    """Observations → the distribution's deterministic actions (what ``optix export``
    writes), standardized first by the observation statistics as they stand."""

    def __init__(
        self,
        actor: nn.Module,
        returns_values: bool,
        distribution: Distribution,
        obs_normalizer: ObsNormalizer | None = None,
    ) -> None:
        super().__init__()
        self.actor, self.returns_values, self.distribution = actor, returns_values, distribution
        self.standardize = obs_normalizer is not None
        if obs_normalizer is not None:
            scale = np.sqrt(obs_normalizer.var + obs_normalizer.epsilon)
            device = next(actor.parameters()).device
            self.register_buffer("obs_mean", torch.tensor(obs_normalizer.mean).float().to(device))
            self.register_buffer("obs_scale", torch.tensor(scale).float().to(device))
            self.obs_clip = obs_normalizer.clip

    def forward(self, obs: O.ObsTensor) -> torch.Tensor:
        if self.standardize:
            obs = ((obs - self.obs_mean) / self.obs_scale).clamp(-self.obs_clip, self.obs_clip)
        out = self.actor(obs)
        return self.distribution.torch_mode(out[0] if self.returns_values else out)


def ppo_loss(
    distribution: Distribution,
    policy_out: torch.Tensor,
    value: torch.Tensor,
    rows: torch.Tensor,
    advantages: torch.Tensor,
    clip: float,
    hp: dict[str, Any],
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """L (eq. 9) for one minibatch, from the networks' outputs on it ``[B, param_dim]``
    and ``[B]``, its rows of ``loss_table`` and its advantages; also the per-row
    surrogate, value error and log r (detached, for diagnostics)."""
    log_prob = distribution.log_prob(policy_out, rows[:, OLD_VALUE + 1 :])
    log_ratio = log_prob - rows[:, OLD_LOG_PROB]
    ratio = log_ratio.exp()  # r_t(θ), eq. 6
    # L_clip's samples, eq. 7: the pessimistic bound of the clipped surrogate.
    surrogate = torch.min(ratio * advantages, ratio.clamp(1.0 - clip, 1.0 + clip) * advantages)
    clip_vf = float(hp["clip_range_vf"])
    if clip_vf > 0:
        old = rows[:, OLD_VALUE]
        value = old + (value - old).clamp(-clip_vf, clip_vf)
    error = value - rows[:, RETURN]
    loss = hp["vf_coef"] * error.square().mean() - surrogate.mean()  # eq. 9
    if hp["entropy_coef"] > 0:
        loss = loss - hp["entropy_coef"] * distribution.entropy(policy_out).mean()
    return loss, surrogate.detach(), error.detach(), log_ratio.detach()


@torch.no_grad()
def loss_diagnostics(
    stats: list[tuple[torch.Tensor, ...]], entropy: torch.Tensor, clip: float
) -> dict[str, float]:
    """The means of ``ppo_loss``'s per-row outputs over every step taken, with
    the policy's ``entropy``, approximate KL and the fraction of clipped ratios."""
    surrogates, errors, log_ratios = (torch.cat(s) for s in zip(*stats, strict=True))
    ratio = log_ratios.exp()
    summary = torch.stack(
        [
            -surrogates.mean(),
            errors.square().mean(),
            entropy,
            approx_kl(log_ratios),
            ((ratio - 1.0).abs() > clip).float().mean(),
        ]
    ).tolist()
    keys = ("policy_loss", "value_loss", "entropy", "approx_kl", "clip_fraction")
    return dict(zip(keys, summary, strict=True))


def approx_kl(log_ratio: torch.Tensor) -> torch.Tensor:
    """KL(π_old‖π_θ) ≈ E[(r − 1) − log r] (Schulman's k3 estimator: unbiased, never negative)."""
    return (log_ratio.exp() - 1.0 - log_ratio).mean()


def normalize_per_minibatch(adv: torch.Tensor, epochs: int, n: int, batch: int) -> torch.Tensor:
    """(Â − mean) / (std + 1e-8) within each minibatch of each epoch, vectorised.

    ``adv`` holds ``epochs`` shuffled passes of ``n`` samples, each cut into
    minibatches of ``batch`` with a shorter last one; a last minibatch of one
    sample is left as it is (its std is undefined).
    """
    rows = adv.view(epochs, n)
    full = n - n % batch
    out = torch.empty_like(rows)
    if full:
        blocks = rows[:, :full].reshape(epochs, full // batch, batch)
        mean, std = blocks.mean(-1, keepdim=True), blocks.std(-1, keepdim=True)
        out[:, :full] = ((blocks - mean) / (std + 1e-8)).reshape(epochs, full)
    if n - full > 1:
        tail = rows[:, full:]
        out[:, full:] = (tail - tail.mean(-1, keepdim=True)) / (tail.std(-1, keepdim=True) + 1e-8)
    elif n - full == 1:
        out[:, full:] = rows[:, full:]
    return out.view(-1)


def is_layer_network(network: nn.Module) -> bool:
    """The policy layer's own actor-critic networks."""
    return isinstance(network, ActorCritic | TwinMLP)


def pick_distribution(
    actor: nn.Module,
    critic: nn.Module | None,
    action_space: gym.Space | None,
    observation_space: gym.Space | None,
    distribution: Distribution | str | None,
    owner: str,
) -> Distribution:
    """The distribution given, gSDE's for its network, or the one for
    ``action_space``; without a space, a categorical over as many actions as
    the actor outputs (tensor-optix's form)."""
    if isinstance(distribution, Distribution):
        return distribution
    if distribution is None and isinstance(actor, StateDependentActorCritic):
        return actor.distribution
    if action_space is None:
        probe = probe_input(actor, observation_space)
        if probe is None:
            raise ValueError(
                f"{owner}: give action_space (the actor's output size cannot be probed)"
            )
        with torch.no_grad():
            out = actor(probe)
        out = out[0] if critic is None and isinstance(out, tuple | list) else out
        action_space = gym.spaces.Discrete(int(out.shape[-1]))
    return distribution_for(action_space, distribution or "squashed_gaussian", owner)


def make_ppo(
    observation_space: gym.Space,
    action_space: gym.Space,
    *,
    hyperparams: HyperparamSet | None = None,
    device: str = "auto",
    seed: int | None = None,
    **network: Any,
) -> TorchPPOAgent:
    """The AgentSpec factory for "ppo": ``ActorCritic`` chosen from the spaces
    (Stable-Baselines3's PPO networks: [64, 64] tanh heads on flat features,
    linear heads on NatureCNN's), with the action space's distribution, or
    with ``use_sde`` gSDE's ``StateDependentActorCritic``; ``network`` holds
    their options (a preset's ``network``: ``hidden``, ``ortho_init``)."""
    return default_agent(
        TorchPPOAgent, observation_space, action_space, hyperparams, device, seed, "ppo", **network
    )
