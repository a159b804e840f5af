"""What recurrent (LSTM) PPO shares on every backend, in numpy.

A backend's recurrent PPO agent (optix-torch's ``TorchRecurrentPPOAgent``,
optix-tf's ``TFRecurrentPPOAgent``) owns its network and its compiled or
eager update; everything about the window that needs no framework lives
here once:

- the constructor's spaces (tensor-optix's ``obs_dim`` / ``n_actions`` or
  gymnasium spaces) and the checks on what the agent is handed (a batch of
  observations, one episode-start flag per row, the hidden states its
  ``act_info`` recorded);
- the hidden state's bookkeeping in numpy: zeroing the rows whose episode
  starts, and where episodes start inside a window (``episode_starts``);
- the window as PPO's loss reads it (``RecurrentPPOWindow``): the bootstrap
  values stepped on from the states each column's history left (never from a
  zero state), rewards scaled by the running return's std, GAE-λ, the loss
  table, and the sequence length fitted to the window;
- the minibatches of whole sequences (``sequence_minibatches``) over
  ``make_minibatches``' (env column, chunk) pairs, for an update that takes
  every epoch at once.

A backend supplies one function, ``step(obs, (h, c)) -> (parameters, values,
(h, c))``: its network one step on from given states, numpy in and out.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np

from optix_core.minibatch import make_minibatches
from optix_core.normalizers import RewardNormalizer
from optix_core.on_policy import gae, loss_table, rollout_values
from optix_core.policies import observations as O
from optix_core.policies.distributions import Distribution
from optix_core.types import EpisodeData

# What act_info records per step: the state entering it (h_t, c_t), log π_old, V_old.
INFO_KEYS = ("h", "c", "log_probs", "values")

State = tuple[np.ndarray, np.ndarray]
# (observations [R, ...], state ([R, hidden], [R, hidden])) → (parameters [R, param_dim],
# values [R], the state after the step), numpy in and out.
Step = Callable[[Any, State], tuple[np.ndarray, np.ndarray, State]]


# ---- spaces and what the agent is handed --------------------------------------


def flat_space(obs_dim: int) -> gym.spaces.Box:
    """tensor-optix's observations: flat vectors of ``obs_dim`` floats."""
    if int(obs_dim) < 1:
        raise ValueError(f"obs_dim must be at least 1, got {obs_dim}")
    return gym.spaces.Box(-np.inf, np.inf, (int(obs_dim),), np.float32)


def pick_space(
    size: int | None,
    space: gym.Space | None,
    name: str,
    make: Callable[[int], gym.Space],
    owner: str,
) -> gym.Space:
    """``space``, or the space tensor-optix's ``size`` stands for; exactly one of them."""
    if (size is None) == (space is None):
        kind = "observation" if name == "obs_dim" else "action"
        raise ValueError(
            f"{owner} needs {name} or {kind}_space (exactly one), "
            f"got {name}={size} and {kind}_space={space}"
        )
    return space if space is not None else make(int(size))


def is_batch(obs: Any, space: gym.Space) -> bool:
    """Whether ``obs`` is a batch ``[N, ...]`` of observations from ``space``."""
    if isinstance(space, gym.spaces.Dict):
        return isinstance(obs, dict) and all(
            key in obs and is_batch(obs[key], sub) for key, sub in space.spaces.items()
        )
    shape = np.shape(obs)
    return len(shape) == len(space.shape) + 1 and tuple(shape[1:]) == tuple(space.shape)


def batch_shape(space: gym.Space) -> Any:
    """How a batch from ``space`` is shaped, for error messages: ``[N, 4]``."""
    if isinstance(space, gym.spaces.Dict):
        return {key: batch_shape(sub) for key, sub in space.spaces.items()}
    return "[" + ", ".join(["N", *map(str, space.shape)]) + "]"


def check_batch(observation: Any, space: gym.Space, owner: str) -> None:
    """Refuse anything but a batch of observations: a recurrent policy keeps one
    state per row, so a lone observation has no row to remember it in."""
    if not is_batch(observation, space):
        raise ValueError(
            f"{owner} acts on batched observations {batch_shape(space)}, got shape "
            f"{O.map_obs(np.shape, observation)}"
        )


def start_flags(flags: Any, n: int, owner: str) -> np.ndarray:
    """One episode-start flag per row, as a bool array."""
    flags = np.asarray(flags, dtype=bool).reshape(-1)
    if len(flags) != n:
        raise ValueError(f"{owner}: {len(flags)} episode-start flags for {n} rows")
    return flags


def check_sequence_network(
    run_probe: Callable[[], tuple[Any, Any]], space: gym.Space, policy_dim: int, owner: str
) -> None:
    """Insist that a network runs on a one-step sequence of two observations from
    ``space`` (``run_probe`` runs it and returns its parameters and values) and
    returns parameters ``(1, 2, policy_dim)`` and values ``(1, 2)``, before any
    work starts."""
    try:
        params, values = run_probe()
    except Exception as exc:
        raise ValueError(
            f"{owner}: the network fails on observations from {space} ({exc})"
        ) from None
    if tuple(params.shape) != (1, 2, policy_dim) or tuple(values.shape) != (1, 2):
        raise ValueError(
            f"{owner}: on a [1, 2] sequence of observations the network returns "
            f"parameters {tuple(params.shape)} and values {tuple(values.shape)}, expected "
            f"(1, 2, {policy_dim}) for this action space and (1, 2)"
        )


# ---- the hidden state ------------------------------------------------------------


def reset_rows(state: State, starts: np.ndarray) -> State:
    """``state`` with the rows where ``starts`` is True zeroed."""
    keep = ~np.asarray(starts, dtype=bool)[:, None]
    return state[0] * keep, state[1] * keep


def episode_starts(dones: np.ndarray) -> np.ndarray:
    """``starts[t, e]``: an episode begins at step t of column e (step t − 1 ended
    one). Step 0's state was recorded already reset by ``act_info``, so its
    flag stays False: the state a sequence starts from is the stored one."""
    dones = np.asarray(dones, dtype=bool)
    starts = np.zeros_like(dones)
    starts[1:] = dones[:-1]
    return starts


def fit_seq_len(n_steps: int, seq_len: int) -> int:
    """The longest sequence length ≤ ``seq_len`` that divides a window of ``n_steps``."""
    for length in range(min(int(seq_len), int(n_steps)), 0, -1):
        if n_steps % length == 0:
            return length
    return 1


# ---- the window ------------------------------------------------------------------


def bootstrap_values(
    data: EpisodeData, learn_actions: np.ndarray, distribution: Distribution, step: Step
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``on_policy.rollout_values`` with each observation it bootstraps from seen
    from the state its history left: one step from the recorded state of every
    column's last step (zeroed after it where that step ended an episode: the
    next observation starts a new one) and of each truncated step (whose final
    observation continues its episode)."""
    info = data.policy_info
    steps, envs = np.shape(data.rewards)
    truncated = np.asarray(data.truncated, bool) & ~np.asarray(data.terminated, bool)
    # The rows in rollout_values' order: next_observations, then the truncated steps.
    t_idx = np.concatenate([np.full(envs, steps - 1), np.nonzero(truncated)[0]])
    e_idx = np.concatenate([np.arange(envs), np.nonzero(truncated)[1]])
    obs = O.map_obs(lambda a: np.asarray(a)[t_idx, e_idx], data.observations)
    recorded = (np.asarray(info["h"])[t_idx, e_idx], np.asarray(info["c"])[t_idx, e_idx])
    _, _, after = step(obs, recorded)
    ended = np.zeros(len(t_idx), dtype=bool)
    ended[:envs] = np.asarray(data.dones, dtype=bool)[-1]
    after = reset_rows(after, ended)

    def forward(rows: Any) -> tuple[np.ndarray, np.ndarray]:
        params, values, _ = step(rows, after)
        return params, values

    def log_prob(params: np.ndarray, actions: np.ndarray) -> np.ndarray:
        raise AssertionError("recorded log-probabilities are never recomputed")

    # No window observations: only a window without recorded values would need
    # them, and recorded_policy_info refuses those.
    return rollout_values(data, None, learn_actions, distribution, forward, log_prob)


@dataclass
class RecurrentWindow:
    """A window as recurrent PPO's update reads it (``T`` steps of ``N`` columns)."""

    info: dict[str, np.ndarray]  # what act_info recorded: h, c [T, N, hidden], ...
    learn_actions: np.ndarray  # [T·N, action columns]
    values: np.ndarray  # V_old [T, N]
    returns: np.ndarray  # R = Â + V_old [T, N]
    table: np.ndarray  # on_policy.loss_table, [T·N, columns]
    starts: np.ndarray  # episode_starts, [T, N]
    seq_len: int  # hp["seq_len"] fitted to T


class RecurrentPPOWindow:
    """Recurrent PPO's framework-free half, mixed into a backend's agent (ahead of
    its base): the window turned into its loss table, and the reward
    normalizer's checkpoint state.

    The agent has ``hp``, ``algorithm`` and ``distribution``, and passes its
    network's ``step`` (numpy in and out) and ``hidden_size``.
    """

    algorithm: str
    reward_normalizer: RewardNormalizer | None = None  # made by the first learn
    _interrupted_state: tuple[np.ndarray, np.ndarray] | None = None  # (h, c) a load brought

    def rollout_state(self) -> tuple[np.ndarray, np.ndarray] | None:
        """The backend's: the LSTM state (h, c) after the last step ``act_info`` took,
        as numpy ``[N, hidden]``; None before the first."""
        raise NotImplementedError

    def restore_rollout_state(self, state: tuple[np.ndarray, np.ndarray]) -> None:
        """The backend's: ``act_info`` steps on from ``state``."""
        raise NotImplementedError

    def continue_episodes(self) -> bool:
        """``act_info`` steps on from the state the checkpoint's last step left."""
        if self._interrupted_state is None:
            return False
        self.restore_rollout_state(self._interrupted_state)
        self._interrupted_state = None
        return True

    def recurrent_window(self, data: EpisodeData, hidden_size: int, step: Step) -> RecurrentWindow:
        """The recorded states checked, then V, Â (GAE-λ on rewards scaled by
        the running return's std when ``normalize_reward``), R and the loss table."""
        hp = self.hp
        info = self.recorded_policy_info(data, hidden_size)
        steps, envs = np.shape(data.rewards)
        actions = self.distribution.learn_actions(data.actions, info, steps * envs)
        values, next_values, final_values, old_log_probs = bootstrap_values(
            data, actions, self.distribution, step
        )
        rewards = data.rewards
        if hp["normalize_reward"]:
            rewards = self._normalizer(envs).normalize_window(rewards, data.dones)
        advantages, returns = gae(data, rewards, values, next_values, final_values, hp)
        return RecurrentWindow(
            info=info,
            learn_actions=actions,
            values=values,
            returns=returns,
            table=loss_table(old_log_probs, advantages, returns, values, actions),
            starts=episode_starts(data.dones),
            seq_len=fit_seq_len(steps, hp["seq_len"]),
        )

    def recorded_policy_info(self, data: EpisodeData, hidden_size: int) -> dict[str, np.ndarray]:
        """``data.policy_info``, insisting on the states, log-probabilities and
        values that ``act_info`` recorded, states of this network's width."""
        missing = [k for k in INFO_KEYS if k not in data.policy_info]
        if missing:
            raise ValueError(
                f"{self.algorithm} learns from the hidden states, log-probabilities and "
                f"values its act_info recorded, but policy_info lacks {missing}: collect "
                "its windows with a training pipeline (deterministic=False), which calls "
                "agent.act_info"
            )
        if data.next_observations is None:
            raise ValueError(
                f"{self.algorithm} bootstraps from EpisodeData.next_observations, which is "
                "missing; collect windows with an optix pipeline"
            )
        expected = (*np.shape(data.rewards), int(hidden_size))
        for key in ("h", "c"):
            if np.shape(data.policy_info[key]) != expected:
                raise ValueError(
                    f"{self.algorithm}: policy_info[{key!r}] has shape "
                    f"{np.shape(data.policy_info[key])}, expected {expected}"
                )
        return data.policy_info

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
        state: dict[str, Any] = {}
        if self.reward_normalizer is not None:
            saved = self.reward_normalizer.state_dict()
            state["reward_normalizer"] = {k: np.asarray(v).tolist() for k, v in saved.items()}
        rollout = self.rollout_state()
        if rollout is not None:  # the episodes under way, for continue_episodes
            state["rollout_state"] = [np.asarray(s).tolist() for s in rollout]
        return state

    def load_extra_state(self, state: dict[str, Any]) -> None:
        rollout = state.get("rollout_state")
        self._interrupted_state = (
            None if rollout is None else tuple(np.asarray(s, dtype=np.float32) for s in rollout)
        )
        saved = state.get("reward_normalizer")
        self.reward_normalizer = None
        if saved is not None:
            normalizer = RewardNormalizer(self.hp["gamma"], n_envs=len(saved["returns"]))
            normalizer.load_state_dict({k: np.asarray(v) for k, v in saved.items()})
            self.reward_normalizer = normalizer


def sequence_minibatches(
    steps: int, envs: int, seq_len: int, batch: int, epochs: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every epoch's minibatches of whole sequences at once, for an update that
    runs them in one call: ``make_minibatches``' ``[seq_len, B]`` index arrays
    side by side as ``[seq_len, S]`` (S sequences in all), and where each
    minibatch's sequences begin and end along S."""
    parts = [
        index
        for _ in range(int(epochs))
        for index in make_minibatches(steps * envs, batch, rng=rng, seq_len=seq_len, n_envs=envs)
    ]
    widths = np.array([p.shape[1] for p in parts])
    ends = np.cumsum(widths)
    return np.concatenate(parts, axis=1), ends - widths, ends
