"""TorchRecurrentPPOAgent: PPO with an LSTM actor-critic, for partially observed tasks.

Schulman et al. (2017), "Proximal Policy Optimization Algorithms", with the
policy and value function sharing one LSTM (Hochreiter & Schmidhuber 1997), so
that both condition on the history of observations rather than on the last
one alone. Per window, with h_t the LSTM state entering step t:

    A_t   = GAE-λ(r, V)                          (Schulman et al. 2016)
    ρ_t   = π_θ(a_t | o_t, h_t) / π_old(a_t | o_t, h_t)
    L_π   = −E[ min(ρ_t A_t, clip(ρ_t, 1 − ε, 1 + ε) A_t) ]     (PPO eq. 7)
    L_V   = E[ (V_θ(o_t, h_t) − R_t)² ]                           (R_t = A_t + V_old)
    L     = L_π + vf_coef · L_V − entropy_coef · H[π_θ(· | o_t, h_t)]

minimised for ``n_epochs`` passes over minibatches of whole sequences, each
step's gradient clipped to a global norm of ``max_grad_norm``.

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
from torch.distributions import Categorical

from optix_core.minibatch import make_minibatches
from optix_core.normalizers import RewardNormalizer
from optix_core.returns import compute_gae
from optix_core.types import EpisodeData, HyperparamSet
from optix_torch.a2c import explained_variance
from optix_torch.base import TorchAgentBase
from optix_torch.config import recurrent_ppo as config
from optix_torch.networks import seeded

State = tuple[torch.Tensor, torch.Tensor]
INFO_KEYS = ("h", "c", "log_prob", "value")


class LSTMActorCritic(nn.Module):
    """observation → Linear + tanh → LSTM (shared trunk) → actor logits and critic value.

    ``forward`` runs time-major sequences ``[L, B, obs_dim]`` from a state
    ``(h, c)`` of shape ``[B, hidden_size]`` each; ``starts[t, b]`` zeroes row
    b's state before step t (an episode begins there).
    """

    def __init__(self, obs_dim: int, n_actions: int, hidden_size: int = 64) -> None:
        super().__init__()
        if obs_dim < 1 or n_actions < 1 or hidden_size < 1:
            raise ValueError(
                f"LSTMActorCritic needs positive sizes, got obs_dim={obs_dim}, "
                f"n_actions={n_actions}, hidden_size={hidden_size}"
            )
        self.obs_dim, self.n_actions, self.hidden_size = obs_dim, n_actions, hidden_size
        self.encoder = nn.Sequential(nn.Linear(obs_dim, hidden_size), nn.Tanh())
        self.lstm = nn.LSTM(hidden_size, hidden_size)
        self.actor = nn.Linear(hidden_size, n_actions)
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
        self, obs: torch.Tensor, state: State, starts: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, State]:
        """Logits ``[L, B, n_actions]``, values ``[L, B]`` and the state after step L − 1."""
        x = self.encoder(obs)
        h, c = state
        if starts is None:
            out, (h, c) = self.lstm(x, (h.unsqueeze(0), c.unsqueeze(0)))
            return self.actor(out), self.critic(out).squeeze(-1), (h[0], c[0])
        # The LSTM runs uninterrupted between the steps at which some row
        # starts an episode; at those steps the starting rows are zeroed.
        keep = (~starts).unsqueeze(-1).to(x.dtype)
        inner = torch.nonzero(starts[1:].any(dim=1)).flatten() + 1
        cuts = [0, *inner.tolist(), obs.shape[0]]
        outputs = []
        for begin, end in pairwise(cuts):
            h, c = h * keep[begin], c * keep[begin]
            out, (h_n, c_n) = self.lstm(x[begin:end], (h.unsqueeze(0), c.unsqueeze(0)))
            h, c = h_n[0], c_n[0]
            outputs.append(out)
        out = torch.cat(outputs)
        return self.actor(out), self.critic(out).squeeze(-1), (h, c)


class TorchRecurrentPPOAgent(TorchAgentBase):
    """Recurrent PPO on Discrete actions, with tensor-optix 1.10's constructor.

    ``network`` replaces the default ``LSTMActorCritic(obs_dim, n_actions,
    hidden_size)`` with one of your own (a subclass with the same ``forward``
    and ``initial_state``).
    """

    algorithm = "recurrent-ppo"
    DEFAULTS = config.DEFAULTS
    BOUNDS = config.BOUNDS

    def __init__(
        self,
        obs_dim: int,
        n_actions: int,
        hidden_size: int = 64,
        hyperparams: HyperparamSet | dict[str, Any] | None = None,
        device: str | torch.device = "auto",
        seed: int | None = None,
        network: LSTMActorCritic | None = None,
    ) -> None:
        super().__init__(hyperparams, device, seed)
        if network is None:
            with seeded(seed):
                network = LSTMActorCritic(int(obs_dim), int(n_actions), int(hidden_size))
        elif (network.obs_dim, network.n_actions) != (obs_dim, n_actions):
            raise ValueError(
                f"{self.algorithm}: the network maps {network.obs_dim} inputs to "
                f"{network.n_actions} actions, expected {obs_dim} and {n_actions}"
            )
        self.obs_dim, self.n_actions = int(obs_dim), int(n_actions)
        self.network = network.to(self.device)
        self.optimizer = torch.optim.Adam(
            self.network.parameters(), lr=self.hp["learning_rate"], eps=1e-5
        )
        self.apply_hyperparams()
        self._rollout_state: State | None = None  # rows stepped by act_info
        self._act_state: State | None = None  # act()'s own memory, never read by learn
        self.reward_normalizer: RewardNormalizer | None = None  # made by the first learn

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
        state = self._fit(self._act_state, len(obs))
        if episode_start is not None:
            state = _reset_rows(state, self._flags(episode_start, len(obs)))
        logits, _, self._act_state = self.network(obs.unsqueeze(0), state)
        if deterministic:
            return logits[0].argmax(dim=-1).cpu().numpy()
        probs = torch.softmax(logits[0], dim=-1).cpu()
        return torch.multinomial(probs, 1, generator=self.act_generator).squeeze(-1).numpy()

    def reset_state(self, mask: Any = None) -> None:
        """Forget ``act``'s memory: of every row, or of the rows where ``mask`` is True."""
        if mask is None or self._act_state is None:
            self._act_state = None
            return
        flags = np.asarray(mask, dtype=bool).reshape(-1)
        if len(flags) != self._act_state[0].shape[0]:
            self._act_state = None
            return
        self._act_state = _reset_rows(self._act_state, self._flags(flags, len(flags)))

    @torch.no_grad()
    def act_info(self, observation: Any, episode_start: np.ndarray) -> tuple[np.ndarray, dict]:
        obs = self._batch(observation)
        n = len(obs)
        # h_t: the state entering this step, zeroed where an episode starts.
        h, c = _reset_rows(self._fit(self._rollout_state, n), self._flags(episode_start, n))
        logits, values, self._rollout_state = self.network(obs.unsqueeze(0), (h, c))
        log_probs = torch.log_softmax(logits[0], dim=-1)
        actions = torch.multinomial(log_probs.exp().cpu(), 1, generator=self.generator)
        actions = actions.to(self.device)
        info = {
            "h": h.cpu().numpy(),
            "c": c.cpu().numpy(),
            "log_prob": log_probs.gather(-1, actions).squeeze(-1).cpu().numpy(),
            "value": values[0].cpu().numpy(),
        }
        return actions.squeeze(-1).cpu().numpy(), info

    # ---- learning -----------------------------------------------------------

    def learn(self, episode_data: EpisodeData) -> dict[str, float]:
        info = self._policy_info(episode_data)
        steps, envs = np.shape(episode_data.rewards)
        obs = self.to_tensor(episode_data.observations).reshape(steps, envs, -1)
        h0 = self.to_tensor(info["h"])
        c0 = self.to_tensor(info["c"])
        values = np.asarray(info["value"], dtype=np.float32).reshape(steps, envs)
        next_values, final_values = self._bootstrap_values(episode_data, obs, h0, c0)
        rewards = episode_data.rewards
        if self.hp["normalize_reward"]:
            rewards = self._normalizer(envs).normalize_window(rewards, episode_data.dones)
        advantages, returns = compute_gae(
            rewards,
            values,
            episode_data.terminated,
            episode_data.truncated,
            next_values,
            final_values,
            gamma=self.hp["gamma"],
            lam=self.hp["gae_lambda"],
        )
        # starts[t]: an episode begins at step t (the previous step ended one).
        # Step 0's state was recorded already reset, so its flag is not needed.
        dones = np.asarray(episode_data.dones, dtype=bool).reshape(steps, envs)
        starts = np.zeros_like(dones)
        starts[1:] = dones[:-1]

        # Flat [T * N, ...] tensors, indexed by make_minibatches' [L, B] sequences.
        n = steps * envs
        flat = {
            "obs": obs.reshape(n, -1),
            "h": h0.reshape(n, -1),
            "c": c0.reshape(n, -1),
            "starts": torch.as_tensor(starts.reshape(n), device=self.device),
            "actions": self.to_tensor(episode_data.actions, torch.int64).reshape(n),
            "log_prob": self.to_tensor(info["log_prob"]).reshape(n),
            "adv": self.to_tensor(advantages).reshape(n),
            "ret": self.to_tensor(returns).reshape(n),
        }
        seq_len = fit_seq_len(steps, self.hp["seq_len"])
        batch_size = max(self.hp["minibatch_size"], seq_len)
        clip, stats = self.hp["clip_ratio"], []
        minibatches = (
            idx
            for _ in range(self.hp["n_epochs"])
            for idx in make_minibatches(n, batch_size, rng=self.rng, seq_len=seq_len, n_envs=envs)
        )
        for idx in minibatches:
            idx = torch.as_tensor(idx, device=self.device)
            b = {k: v[idx] for k, v in flat.items() if k not in ("h", "c")}
            first = idx[0]  # each sequence starts from the state stored at its first step
            logits, new_values, _ = self.network(
                b["obs"], (flat["h"][first], flat["c"][first]), b["starts"]
            )
            dist = Categorical(logits=logits)
            log_ratio = dist.log_prob(b["actions"]) - b["log_prob"]
            ratio = log_ratio.exp()
            adv = b["adv"]
            if self.hp["normalize_advantage"] and adv.numel() > 1:
                adv = (adv - adv.mean()) / (adv.std() + 1e-8)
            policy_loss = -torch.min(ratio * adv, ratio.clamp(1 - clip, 1 + clip) * adv).mean()
            value_loss = ((new_values - b["ret"]) ** 2).mean()
            entropy = dist.entropy().mean()
            loss = policy_loss + self.hp["vf_coef"] * value_loss - self.hp["entropy_coef"] * entropy
            with torch.no_grad():
                approx_kl = ((ratio - 1) - log_ratio).mean()  # Schulman's k3 estimator
                clipped = ((ratio - 1).abs() > clip).float().mean()
            stats.append(torch.stack([policy_loss, value_loss, entropy, approx_kl, clipped]))
            if not torch.isfinite(loss):
                break  # never step on a broken loss: the loop sees it and rolls back
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(self.network.parameters(), self.hp["max_grad_norm"])
            self.optimizer.step()
        self._act_state = None  # act()'s memory was built by the old weights
        means = torch.stack(stats).detach().mean(dim=0).tolist()
        names = ("policy_loss", "value_loss", "entropy", "approx_kl", "clip_fraction")
        return {
            **dict(zip(names, means, strict=True)),
            "explained_variance": explained_variance(values.reshape(-1), returns.reshape(-1)),
            "seq_len": float(seq_len),
        }

    @torch.no_grad()
    def _bootstrap_values(
        self, data: EpisodeData, obs: torch.Tensor, h0: torch.Tensor, c0: torch.Tensor
    ) -> tuple[np.ndarray, np.ndarray]:
        """V of the observation after the window, and V of each truncated
        episode's final observation, each from the state its history left."""
        steps, envs = obs.shape[:2]
        if data.next_observations is None:
            raise ValueError(
                f"{self.algorithm} bootstraps from EpisodeData.next_observations, which is "
                "missing; collect windows with an optix pipeline"
            )
        terminated = np.asarray(data.terminated, dtype=bool).reshape(steps, envs)
        truncated = np.asarray(data.truncated, dtype=bool).reshape(steps, envs) & ~terminated
        # The steps whose following state is needed: every column's last step,
        # then each truncated step. One LSTM step from the stored state gives it.
        t_idx = np.concatenate([np.full(envs, steps - 1), np.nonzero(truncated)[0]])
        e_idx = np.concatenate([np.arange(envs), np.nonzero(truncated)[1]])
        _, _, (h1, c1) = self.network(
            obs[t_idx, e_idx].unsqueeze(0), (h0[t_idx, e_idx], c0[t_idx, e_idx])
        )
        follow = [self.to_tensor(data.next_observations).reshape(envs, -1)]
        if truncated.any():
            finals = np.asarray(data.final_observations)[truncated]
            follow.append(self.to_tensor(finals).reshape(len(finals), -1))
        # After the window, a column whose last step ended an episode starts a new one.
        ended = np.asarray(data.dones, dtype=bool).reshape(steps, envs)[-1]
        starts = np.concatenate([ended, np.zeros(int(truncated.sum()), dtype=bool)])
        state = _reset_rows((h1, c1), torch.as_tensor(starts, device=self.device))
        _, boot, _ = self.network(torch.cat(follow).unsqueeze(0), state)
        boot = boot[0].cpu().numpy()
        final_values = np.zeros((steps, envs), dtype=np.float32)
        final_values[truncated] = boot[envs:]
        return boot[:envs], final_values

    def _normalizer(self, envs: int) -> RewardNormalizer:
        """The reward normalizer, one running return per env column; its
        statistics survive a change in the number of columns."""
        old = self.reward_normalizer
        if old is None or old.returns.shape != (envs,):
            self.reward_normalizer = RewardNormalizer(self.hp["gamma"], n_envs=envs)
            if old is not None:
                self.reward_normalizer.rms = old.rms
        self.reward_normalizer.gamma = float(self.hp["gamma"])
        return self.reward_normalizer

    def extra_state(self) -> dict[str, Any]:
        if self.reward_normalizer is None:
            return {}
        state = self.reward_normalizer.state_dict()
        return {"reward_normalizer": {k: np.asarray(v).tolist() for k, v in state.items()}}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        saved = state.get("reward_normalizer")
        self.reward_normalizer = None
        if saved is not None:
            normalizer = RewardNormalizer(self.hp["gamma"], n_envs=len(saved["returns"]))
            normalizer.load_state_dict({k: np.asarray(v) for k, v in saved.items()})
            self.reward_normalizer = normalizer

    def load_weights(self, path: str) -> None:
        super().load_weights(path)
        self._rollout_state = self._act_state = None

    # ---- helpers ---------------------------------------------------------

    def _batch(self, observation: Any) -> torch.Tensor:
        shape = np.shape(observation)
        if len(shape) < 2 or int(np.prod(shape[1:])) != self.obs_dim:
            raise ValueError(
                f"{self.algorithm} acts on batched observations [N, {self.obs_dim}], "
                f"got shape {shape}"
            )
        return self.to_tensor(observation).reshape(shape[0], self.obs_dim)

    def _fit(self, state: State | None, n: int) -> State:
        """``state`` if it has ``n`` rows, else a fresh zero state (a new batch layout)."""
        if state is None or state[0].shape[0] != n:
            return self.network.initial_state(n, self.device)
        return state

    def _flags(self, flags: Any, n: int) -> torch.Tensor:
        flags = np.asarray(flags, dtype=bool).reshape(-1)
        if len(flags) != n:
            raise ValueError(f"{self.algorithm}: {len(flags)} episode-start flags for {n} rows")
        return torch.as_tensor(flags, device=self.device)

    def _policy_info(self, data: EpisodeData) -> dict[str, np.ndarray]:
        missing = [k for k in INFO_KEYS if k not in data.policy_info]
        if missing:
            raise ValueError(
                f"{self.algorithm} learns from the hidden states, log-probabilities and "
                f"values its act_info recorded, but policy_info lacks {missing}: collect "
                "its windows with a training pipeline (deterministic=False), which calls "
                "agent.act_info"
            )
        expected = (*np.shape(data.rewards), self.network.hidden_size)
        for key in ("h", "c"):
            if np.shape(data.policy_info[key]) != expected:
                raise ValueError(
                    f"{self.algorithm}: policy_info[{key!r}] has shape "
                    f"{np.shape(data.policy_info[key])}, expected {expected}"
                )
        return data.policy_info


def _reset_rows(state: State, starts: torch.Tensor) -> State:
    keep = (~starts).unsqueeze(-1).to(state[0].dtype)
    return state[0] * keep, state[1] * keep


def fit_seq_len(n_steps: int, seq_len: int) -> int:
    """The longest sequence length ≤ ``seq_len`` that divides a window of ``n_steps``."""
    for length in range(min(int(seq_len), int(n_steps)), 0, -1):
        if n_steps % length == 0:
            return length
    return 1


def make_recurrent_ppo(
    observation_space: gym.Space,
    action_space: gym.Space,
    *,
    hyperparams: HyperparamSet | None = None,
    device: str = "auto",
    seed: int | None = None,
    hidden_size: int = 64,
) -> TorchRecurrentPPOAgent:
    """The AgentSpec factory: an ``LSTMActorCritic`` with 64 hidden units."""
    if not isinstance(action_space, gym.spaces.Discrete):
        raise ValueError(
            f"recurrent-ppo acts on Discrete action spaces, got {action_space}; "
            "for continuous actions choose an algorithm that supports them (`optix list`)"
        )
    if not isinstance(observation_space, gym.spaces.Box):
        raise ValueError(
            f"recurrent-ppo reads Box observations (vectors or arrays), got {observation_space}"
        )
    return TorchRecurrentPPOAgent(
        obs_dim=int(np.prod(observation_space.shape)),
        n_actions=int(action_space.n),
        hidden_size=hidden_size,
        hyperparams=hyperparams,
        device=device,
        seed=seed,
    )
