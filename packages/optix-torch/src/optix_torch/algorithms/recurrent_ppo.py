"""Recurrent PPO: PPO with an LSTM actor-critic, for partially observed tasks, on any action space.

Schulman et al. (2017), "Proximal Policy Optimization Algorithms", with the
policy and value function sharing one LSTM (Hochreiter & Schmidhuber 1997), so
that both condition on the history of observations rather than on the last
one alone. Per window, with h_t the LSTM state entering step t:

    Â_t    = GAE-λ(r, V)                                   (Schulman et al. 2016, eq. 16)
    R_t    = Â_t + V_old(o_t, h_t)
    r_t(θ) = π_θ(a_t|o_t, h_t) / π_old(a_t|o_t, h_t)       (eq. 6)
    L_clip = E[ min(r_t Â_t, clip(r_t, 1 − ε, 1 + ε) Â_t) ]  (eq. 7)
    L_VF   = E[ (V_θ(o_t, h_t) − R_t)² ]   (clipped with clip_range_vf, as in PPO)
    L      = −L_clip + c₁ L_VF − c₂ H[π_θ(·|o_t, h_t)]      (eq. 9)

minimised for ``n_epochs`` passes over minibatches of whole sequences, each
step's gradient clipped to a global norm of ``max_grad_norm``; ``target_kl``
stops a window's epochs early as in PPO. The loss and its diagnostics are
PPO's (``algorithms/ppo.py``); the window it reads (the recorded states
checked, the bootstrapped values, GAE, the loss table, seq_len) is
``optix_core.recurrent``'s, shared with optix-tf's recurrent PPO; the
network's features extractor and action distribution are the policy layer's.

The network: observations → features extractor (chosen from the observation
space, or the user's) → Linear + tanh → LSTM → a linear actor head (the
distribution's parameters) and a linear critic head (V).

Rewards are divided by the running standard deviation of the discounted
return before GAE (``normalize_reward``, optix-core's ``RewardNormalizer``).
Actor and critic share the LSTM, and with raw returns (CartPole's reach the
hundreds) the value loss's gradient in the trunk is a hundred times the
policy's: measured on CartPole without velocities, recurrent PPO learned
nothing in 50k steps without the normalizer and balanced the pole for ~460
steps in 40k with it.

The hidden state. ``act_info`` (what training pipelines call) carries (h, c)
per environment row across steps and windows, zeroes a row when
``episode_start`` says its episode begins, and records the state entering each
step in ``policy_info["h"]`` / ``["c"]`` with the step's log-probability and
value. ``learn`` cuts each column of the window into sequences of ``seq_len``
steps (``make_minibatches``' sequence mode), starts each sequence from the
state recorded at its first step and unrolls the LSTM through it, zeroing the
state again wherever an episode starts inside. So training replays exactly the
states that acted: cutting the window into sequences limits how far gradients
flow back in time, but never what the network saw (no zero-state artifacts
at sequence boundaries).

``act`` (evaluation, dashboards) keeps a memory of its own, one row per
observation row, that training never reads. It starts fresh when the batch
size changes, after ``learn`` or ``load_weights`` (the weights changed), on
``reset_state()``, and for the rows flagged by ``act(..., episode_start=...)``.
"""

from __future__ import annotations

from itertools import pairwise
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from optix_core.algorithms.config import recurrent_ppo as config
from optix_core.minibatch import make_minibatches
from optix_core.on_policy import ADVANTAGE
from optix_core.recurrent import (
    RecurrentPPOWindow,
    check_batch,
    check_sequence_network,
    fit_seq_len,
    flat_space,
    pick_space,
    start_flags,
)
from optix_core.types import EpisodeData, HyperparamSet
from optix_torch.accel.optim import Gradients, adam, optimizer_step
from optix_torch.algorithms.on_policy import explained_variance
from optix_torch.algorithms.ppo import approx_kl, loss_diagnostics, ppo_loss
from optix_torch.base import TorchAgentBase
from optix_torch.policies import observations as O
from optix_torch.policies.distributions import Distribution, distribution_for
from optix_torch.policies.extractors import default_extractor, features_dim, orthogonal_init
from optix_torch.policies.networks import seeded

State = tuple[torch.Tensor, torch.Tensor]
__all__ = ["LSTMActorCritic", "TorchRecurrentPPOAgent", "fit_seq_len", "make_recurrent_ppo"]


class LSTMActorCritic(nn.Module):
    """observations → extractor → Linear + tanh → LSTM (shared trunk) → actor and critic heads.

    Args:
        observation_space: what the network reads; an int n stands for flat
            vectors of n floats (tensor-optix's ``obs_dim``).
        policy_dim: the action distribution's ``param_dim`` (the logits of a
            Discrete space, tensor-optix's ``n_actions``).
        hidden_size: the width of the encoder and of the LSTM.
        extractor: any module mapping a batch of observations to ``[B,
            features]``; default ``default_extractor(observation_space)``
            (flatten, one-hot, CNN for images, combined for Dict),
            initialised orthogonally.

    ``forward`` runs time-major sequences ``[L, B, ...]`` (a dict of them for
    Dict observations) from a state ``(h, c)`` of shape ``[B, hidden_size]``
    each; ``starts[t, b]`` zeroes row b's state before step t (an episode
    begins there).
    """

    def __init__(
        self,
        observation_space: gym.Space | int,
        policy_dim: int,
        hidden_size: int = 64,
        extractor: nn.Module | None = None,
    ) -> None:
        super().__init__()
        if isinstance(observation_space, int):
            observation_space = flat_space(observation_space)
        if policy_dim < 1 or hidden_size < 1:
            raise ValueError(
                f"LSTMActorCritic needs positive sizes, got policy_dim={policy_dim}, "
                f"hidden_size={hidden_size}"
            )
        if extractor is None:
            extractor = default_extractor(observation_space)
            orthogonal_init(extractor)
        self.extractor = extractor
        self.policy_dim, self.hidden_size = int(policy_dim), int(hidden_size)
        self.encoder = nn.Sequential(
            nn.Linear(features_dim(extractor, observation_space), hidden_size), nn.Tanh()
        )
        self.lstm = nn.LSTM(hidden_size, hidden_size)
        self.actor = nn.Linear(hidden_size, policy_dim)
        self.critic = nn.Linear(hidden_size, 1)
        # Orthogonal initialisation; a near-uniform first policy (gain 0.01),
        # as in the PPO implementation details of Huang et al. (2022).
        for layer, gain in ((self.encoder[0], 2**0.5), (self.actor, 0.01), (self.critic, 1.0)):
            nn.init.orthogonal_(layer.weight, gain)
            nn.init.zeros_(layer.bias)
        for name, param in self.lstm.named_parameters():
            if name.startswith("weight"):
                nn.init.orthogonal_(param)
            else:
                nn.init.zeros_(param)

    def initial_state(self, batch_size: int, device: torch.device | str = "cpu") -> State:
        zeros = torch.zeros(batch_size, self.hidden_size, device=device)
        return zeros, zeros.clone()

    def forward(
        self, obs: O.ObsTensor, state: State, starts: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, State]:
        """Parameters ``[L, B, policy_dim]``, values ``[L, B]`` and the state after step L − 1."""
        steps, rows = (next(iter(obs.values())) if isinstance(obs, dict) else obs).shape[:2]
        flat = O.map_obs(lambda t: t.reshape(steps * rows, *t.shape[2:]), obs)
        x = self.encoder(self.extractor(flat)).reshape(steps, rows, self.hidden_size)
        h, c = state
        if starts is None:
            out, (h, c) = self.lstm(x, (h.unsqueeze(0), c.unsqueeze(0)))
            return self.actor(out), self.critic(out).squeeze(-1), (h[0], c[0])
        # The LSTM runs uninterrupted between the steps at which some row
        # starts an episode; at those steps the starting rows are zeroed.
        inner = torch.nonzero(starts[1:].any(dim=1)).flatten() + 1
        outputs = []
        for begin, end in pairwise([0, *inner.tolist(), steps]):
            h, c = reset_rows((h, c), starts[begin])
            out, (h_n, c_n) = self.lstm(x[begin:end], (h.unsqueeze(0), c.unsqueeze(0)))
            h, c = h_n[0], c_n[0]
            outputs.append(out)
        out = torch.cat(outputs)
        return self.actor(out), self.critic(out).squeeze(-1), (h, c)


class TorchRecurrentPPOAgent(RecurrentPPOWindow, TorchAgentBase):
    """Recurrent PPO on Discrete, MultiDiscrete, MultiBinary or Box actions,
    with tensor-optix 1.10's constructor.

    Args:
        obs_dim: tensor-optix's flat observations of ``obs_dim`` floats; or
            give ``observation_space`` (Box, Discrete, Dict, images).
        n_actions: tensor-optix's ``Discrete(n_actions)``; or give ``action_space``.
        hidden_size: the default network's LSTM width.
        hyperparams: keys of ``optix_core.algorithms.config.recurrent_ppo.DEFAULTS``.
        device: "auto", "cpu", "cuda" or "cuda:N".
        seed: seeds the default network and the agent's own generators.
        network: replaces the default ``LSTMActorCritic``: any module with its
            ``forward``, ``initial_state`` and ``hidden_size``, checked against
            the spaces before any work starts.
        extractor: the default network's features extractor (any module from
            a batch of observations to ``[B, features]``).
        distribution: a ``Distribution``, or for Box actions its name:
            "squashed_gaussian" (default) or "gaussian".
    """

    algorithm = "recurrent-ppo"
    DEFAULTS = config.DEFAULTS
    BOUNDS = config.BOUNDS

    def __init__(
        self,
        obs_dim: int | None = None,
        n_actions: int | None = None,
        hidden_size: int = 64,
        hyperparams: HyperparamSet | dict[str, Any] | None = None,
        device: str | torch.device = "auto",
        seed: int | None = None,
        network: nn.Module | None = None,
        *,
        observation_space: gym.Space | None = None,
        action_space: gym.Space | None = None,
        extractor: nn.Module | None = None,
        distribution: Distribution | str | None = None,
    ) -> None:
        super().__init__(hyperparams, device, seed)
        owner = type(self).__name__
        self.observation_space = pick_space(
            obs_dim, observation_space, "obs_dim", flat_space, owner
        )
        self.action_space = pick_space(
            n_actions, action_space, "n_actions", gym.spaces.Discrete, owner
        )
        if isinstance(distribution, Distribution):
            self.distribution = distribution
        else:
            self.distribution = distribution_for(
                self.action_space, distribution or "squashed_gaussian", self.algorithm
            )
        if network is None:
            with seeded(seed):
                network = LSTMActorCritic(
                    self.observation_space, self.distribution.param_dim, hidden_size, extractor
                )
        elif extractor is not None:
            raise ValueError(
                f"{self.algorithm}: extractor= builds the default network; give it or "
                "network=, not both"
            )
        self.network = network.to(self.device)
        check_network(
            self.network,
            self.observation_space,
            self.distribution.param_dim,
            self.device,
            self.algorithm,
        )
        params = list(self.network.parameters())
        self.gradients = Gradients(params)
        self.optimizer = adam(params, self.hp["learning_rate"], eps=1e-5)
        self.apply_hyperparams()
        self._rollout_state: State | None = None  # rows stepped by act_info
        self._act_state: State | None = None  # act()'s own memory, never read by learn

    def modules(self) -> dict[str, nn.Module]:
        return {"network": self.network}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"main": self.optimizer}

    # ---- acting -------------------------------------------------------------

    @torch.no_grad()
    def act(
        self, observation: Any, deterministic: bool = False, episode_start: Any = None
    ) -> np.ndarray:
        """Actions for a batch, remembering each row's history between calls.

        ``episode_start`` (one flag per row) forgets the flagged rows' history
        first; without it a row's memory runs on until ``reset_state``.
        """
        obs = self._batch(observation)
        n = O.batch_size(obs)
        state = self._fit(self._act_state, n)
        if episode_start is not None:
            state = reset_rows(state, self._flags(episode_start, n))
        params, _, self._act_state = self._step(obs, state)
        if deterministic:
            return self.distribution.mode(params)
        return self.distribution.sample(params, self.act_generator)[0]

    def reset_state(self, mask: Any = None) -> None:
        """Forget ``act``'s memory: of every row, or of the rows where ``mask`` is True."""
        if mask is None or self._act_state is None:
            self._act_state = None
            return
        flags = np.asarray(mask, dtype=bool).reshape(-1)
        if len(flags) != self._act_state[0].shape[0]:
            self._act_state = None
            return
        self._act_state = reset_rows(self._act_state, self._flags(flags, len(flags)))

    @torch.no_grad()
    def act_info(
        self, observation: Any, episode_start: np.ndarray
    ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        obs = self._batch(observation)
        n = O.batch_size(obs)
        # h_t: the state entering this step, zeroed where an episode starts.
        h, c = reset_rows(self._fit(self._rollout_state, n), self._flags(episode_start, n))
        params, values, self._rollout_state = self._step(obs, (h, c))
        actions, info = self.distribution.sample(params, self.generator)
        return actions, {**info, "values": values, "h": h.cpu().numpy(), "c": c.cpu().numpy()}

    def _step(self, obs: O.ObsTensor, state: State) -> tuple[np.ndarray, np.ndarray, State]:
        """One step of the network for a batch: parameters and values (numpy,
        where the distribution samples) and the state after it."""
        params, values, state = self.network(O.map_obs(lambda t: t.unsqueeze(0), obs), state)
        return params[0].float().cpu().numpy(), values[0].float().cpu().numpy(), state

    # ---- learning -----------------------------------------------------------

    def learn(self, episode_data: EpisodeData) -> dict[str, float]:
        data, hp = episode_data, self.hp
        # The recorded states checked, V, Â, R and the loss table (optix_core.recurrent).
        window = self.recurrent_window(data, self.network.hidden_size, self._numpy_step)
        steps, envs = np.shape(data.rewards)
        n = steps * envs
        obs = O.to_tensor(data.observations, self.device)  # [T, N, ...]
        h, c = self.to_tensor(window.info["h"]), self.to_tensor(window.info["c"])  # [T, N, hidden]

        # Flat [T·N, ...] rows, indexed by make_minibatches' [L, B] sequences;
        # the window crosses to the device once.
        flat_obs = O.map_obs(lambda t: t.reshape(n, *t.shape[2:]), obs)
        flat_h, flat_c = h.reshape(n, -1), c.reshape(n, -1)
        starts_t = torch.as_tensor(window.starts, device=self.device)
        flat_starts = starts_t.reshape(n)
        table_t = torch.as_tensor(window.table, device=self.device)

        seq_len = window.seq_len
        batch = max(int(hp["minibatch_size"]), seq_len)
        clip, target_kl = float(hp["clip_ratio"]), float(hp["target_kl"])
        step = optimizer_step(self.optimizer)
        minibatches = (
            index
            for _ in range(int(hp["n_epochs"]))
            for index in make_minibatches(n, batch, rng=self.rng, seq_len=seq_len, n_envs=envs)
        )
        stats: list[tuple[torch.Tensor, ...]] = []
        stopped = False
        for index in minibatches:
            index = torch.as_tensor(index, device=self.device)  # [L, B]
            first = index[0]  # each sequence starts from the state stored at its first step
            params, value, _ = self.network(
                O.map_obs(lambda t, i=index: t[i], flat_obs),
                (flat_h[first], flat_c[first]),
                flat_starts[index],
            )
            rows = table_t[index].reshape(index.numel(), -1)
            adv = rows[:, ADVANTAGE]
            if hp["normalize_advantage"] and adv.numel() > 1:
                adv = (adv - adv.mean()) / (adv.std() + 1e-8)
            loss, *diagnostics = ppo_loss(
                self.distribution,
                params.reshape(index.numel(), -1),
                value.reshape(-1),
                rows,
                adv,
                clip,
                hp,
            )
            if target_kl > 0 and float(approx_kl(diagnostics[-1])) > 1.5 * target_kl:
                stopped = True
                break
            stats.append(tuple(diagnostics))
            if not torch.isfinite(loss):
                break  # never step on a broken loss: the loop sees it and rolls back
            self.gradients.zero()
            loss.backward()
            self.gradients.clip(float(hp["max_grad_norm"]))
            step()
        self._act_state = None  # act()'s memory was built by the old weights

        summary = {"explained_variance": explained_variance(window.values, window.returns)}
        if stats:
            with torch.no_grad():  # the updated policy's entropy on the window's histories
                params, _, _ = self.network(obs, (h[0], c[0]), starts_t)
                entropy = self.distribution.entropy(params.reshape(n, -1)).mean()
            summary |= loss_diagnostics(stats, entropy, clip)
        return {
            **summary,
            "seq_len": float(seq_len),
            "updates": float(len(stats)),
            "stopped_early": float(stopped),
        }

    @torch.no_grad()
    def _numpy_step(
        self, obs: Any, state: tuple[np.ndarray, np.ndarray]
    ) -> tuple[np.ndarray, np.ndarray, tuple[np.ndarray, np.ndarray]]:
        """``_step`` numpy in and out: ``optix_core.recurrent``'s ``Step``, which
        steps the observations the window bootstraps from."""
        h, c = (self.to_tensor(s) for s in state)
        params, values, (h, c) = self._step(O.to_tensor(obs, self.device), (h, c))
        return params, values, (h.cpu().numpy(), c.cpu().numpy())

    # ---- checkpoints ------------------------------------------------------

    def load_weights(self, path: str) -> None:
        super().load_weights(path)
        self._rollout_state = self._act_state = None

    def rollout_state(self) -> tuple[np.ndarray, np.ndarray] | None:
        if self._rollout_state is None:
            return None
        h, c = self._rollout_state
        return h.cpu().numpy(), c.cpu().numpy()

    def restore_rollout_state(self, state: tuple[np.ndarray, np.ndarray]) -> None:
        h, c = state
        self._rollout_state = (self.to_tensor(h), self.to_tensor(c))

    # ---- helpers ---------------------------------------------------------

    def _batch(self, observation: Any) -> O.ObsTensor:
        check_batch(observation, self.observation_space, self.algorithm)
        return O.to_tensor(observation, self.device)

    def _fit(self, state: State | None, n: int) -> State:
        """``state`` if it has ``n`` rows, else a fresh zero state (a new batch layout)."""
        if state is None or state[0].shape[0] != n:
            return self.network.initial_state(n, self.device)
        return state

    def _flags(self, flags: Any, n: int) -> torch.Tensor:
        return torch.as_tensor(start_flags(flags, n, self.algorithm), device=self.device)


def reset_rows(state: State, starts: torch.Tensor) -> State:
    """``state`` with the rows where ``starts`` is True zeroed."""
    keep = (~starts).unsqueeze(-1).to(state[0].dtype)
    return state[0] * keep, state[1] * keep


def check_network(
    network: nn.Module, space: gym.Space, policy_dim: int, device: torch.device, owner: str
) -> None:
    """Run a one-step sequence of two observations from ``space`` through the
    network and insist on the shapes the distribution needs, before any work starts."""
    probe = O.map_obs(lambda t: t.unsqueeze(0), O.probe_batch(space, device))
    with torch.no_grad():
        check_sequence_network(
            lambda: network(probe, network.initial_state(2, device))[:2], space, policy_dim, owner
        )


def make_recurrent_ppo(
    observation_space: gym.Space,
    action_space: gym.Space,
    *,
    hyperparams: HyperparamSet | None = None,
    device: str = "auto",
    seed: int | None = None,
    hidden_size: int = 64,
) -> TorchRecurrentPPOAgent:
    """The AgentSpec factory: the default ``LSTMActorCritic`` (64 LSTM units)
    for the spaces, with the action space's distribution."""
    O.check_observation_space(observation_space, "recurrent-ppo")
    return TorchRecurrentPPOAgent(
        hidden_size=hidden_size,
        hyperparams=hyperparams,
        device=device,
        seed=seed,
        observation_space=observation_space,
        action_space=action_space,
    )
