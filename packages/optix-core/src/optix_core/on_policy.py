"""What the on-policy algorithms (PPO, A2C, recurrent PPO) share on every backend.

GAE needs V(s_t) for every step, V of the observation after the window, and
V of each truncated episode's final observation (its value is bootstrapped,
not zeroed: only ``terminated`` ends the return). V(s_t) and log π_old were
recorded at act time in ``policy_info``; a window collected without them (a
deterministic pipeline, another agent's data) gets them from the current
networks. The rest takes one forward pass, which the backend supplies.
``OnPolicyWindow``, mixed into PPO's and A2C's agents, turns a window into
advantages and returns under the learning rate's schedule and SB3's
normalizers, and explores (gSDE's held matrices with ``use_sde``); PPO's
window then travels to the framework as one float32 table (``PPOWindow``,
``loss_table``) cut into minibatches (``minibatch_starts``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any, NamedTuple

import gymnasium as gym
import numpy as np

from optix_core.normalizers import ObsNormalizer, RewardNormalizer
from optix_core.policies import observations as O
from optix_core.policies.distributions import Distribution, StateDependentGaussian
from optix_core.returns import compute_gae
from optix_core.types import EpisodeData, HyperparamSet

# The columns of PPO's window table ahead of the learn actions.
OLD_LOG_PROB, ADVANTAGE, RETURN, OLD_VALUE = range(4)

# obs batch → (distribution parameters [B, param_dim], V(s) [B]), as numpy arrays
Forward = Callable[[Any], tuple[np.ndarray, np.ndarray]]
# (parameters, learn actions) → log π [B], as a numpy array
LogProb = Callable[[np.ndarray, np.ndarray], np.ndarray]


def rollout_values(
    data: EpisodeData,
    obs: Any,
    learn_actions: np.ndarray,
    distribution: Distribution,
    forward: Forward,
    log_prob: LogProb,
    recorded: bool = True,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """V(s_t) ``[T, N]``, V after the window ``[N]``, V of truncated episodes'
    final observations ``[T, N]`` (0 elsewhere), and log π_old ``[T·N]``, for
    the window ``data`` whose observations ``obs`` are flattened to ``[T·N, ...]``;
    ``recorded=False`` ignores what act time recorded."""
    steps, envs = np.shape(data.rewards)
    n = steps * envs
    info = data.policy_info
    recorded = recorded and "log_probs" in info and "values" in info
    truncated = np.asarray(data.truncated) & ~np.asarray(data.terminated)
    parts = [] if recorded else [obs]
    parts.append(data.next_observations)
    if truncated.any():
        parts.append(O.select(data.final_observations, truncated))
    params, out = forward(O.concat(parts))
    out = np.asarray(out, dtype=np.float32)
    if recorded:
        values = np.asarray(info["values"], dtype=np.float32).reshape(steps, envs)
        old = distribution.old_log_probs(
            np.asarray(info["log_probs"], dtype=np.float32).reshape(n), learn_actions
        )
    else:
        values = out[:n].reshape(steps, envs)
        old = np.asarray(log_prob(params[:n], learn_actions), dtype=np.float32)
        out = out[n:]
    final_values = np.zeros((steps, envs), dtype=np.float32)
    final_values[truncated] = out[envs:]
    return values, out[:envs], final_values, old


def gae(
    data: EpisodeData,
    rewards: np.ndarray,
    values: np.ndarray,
    next_values: np.ndarray,
    final_values: np.ndarray,
    hp: dict[str, Any],
) -> tuple[np.ndarray, np.ndarray]:
    """Advantages Â = GAE-λ(r, V) and λ-return targets R = Â + V, ``[T, N]``
    (Schulman et al. 2016, eq. 16), with ``hp``'s ``gamma`` and ``gae_lambda``;
    truncated episodes bootstrap from ``final_values``, terminated ones from nothing."""
    return compute_gae(
        rewards,
        values,
        data.terminated,
        data.truncated,
        next_values,
        final_values,
        gamma=hp["gamma"],
        lam=hp["gae_lambda"],
    )


def explained_variance(predicted: np.ndarray, target: np.ndarray) -> float:
    """1 − Var[target − predicted] / Var[target]: how much of the return the
    critic explains (1 perfect, 0 useless, below 0 harmful); 0 for a constant target."""
    var = float(np.var(target))
    if var == 0.0:
        return 0.0
    return float(1.0 - np.var(target - predicted) / var)


def loss_table(
    old_log_probs: np.ndarray,
    advantages: np.ndarray,
    returns: np.ndarray,
    values: np.ndarray,
    learn_actions: np.ndarray,
) -> np.ndarray:
    """The window as PPO's loss reads it: one float32 row per sample,
    ``[old log-prob, advantage, return, old value, learn actions...]``."""
    n = len(learn_actions)
    columns = [old_log_probs, advantages.reshape(n), returns.reshape(n), values.reshape(n)]
    return np.concatenate([np.stack(columns, axis=1), learn_actions], axis=1, dtype=np.float32)


def minibatch_starts(epochs: int, n: int, batch: int) -> list[int]:
    """Where each minibatch of ``epochs`` passes over ``n`` samples begins (each
    pass ends in a shorter minibatch when ``batch`` does not divide ``n``)."""
    return [lo + start for lo in range(0, epochs * n, n) for start in range(0, n, batch)]


class Window(NamedTuple):
    """A window as the losses read it (``OnPolicyWindow.window_returns``)."""

    obs: Any  # [T·N, ...], as the networks take them
    actions: np.ndarray  # the distribution's learn actions [T·N, ...]
    values: np.ndarray  # V(s_t) [T, N]
    old_log_probs: np.ndarray  # log π_old [T·N]
    advantages: np.ndarray  # Â [T, N]
    returns: np.ndarray  # R = Â + V [T, N]


def gsde_log_std_init(
    agent_cls: Any, hyperparams: Any, action_space: gym.Space, owner: str
) -> float | None:
    """Where a factory's gSDE network starts log σ when the hyperparameters ask
    for ``use_sde`` (over ``agent_cls.DEFAULTS``; an agent without the key, as
    IMPALA's learner, has no gSDE), else None; refuses gSDE on actions other
    than a Box."""
    given = hyperparams.params if isinstance(hyperparams, HyperparamSet) else hyperparams
    hp = {**agent_cls.DEFAULTS, **(given or {})}
    if not hp.get("use_sde", False):
        return None
    if not isinstance(action_space, gym.spaces.Box):
        raise ValueError(f"{owner}: use_sde explores Box actions, got {action_space}")
    return float(hp["log_std_init"])


class OnPolicyWindow:
    """The framework-free half of an on-policy agent (PPO, A2C), mixed into a
    backend's agent ahead of its base: the learning rate's linear schedule,
    the normalizers, a window turned into its advantages and returns, and
    training's exploration (gSDE's held matrices with ``use_sde``).

    The agent sets ``env_steps = 0``, calls ``init_normalizers`` and
    ``check_exploration``, and has ``hp``, ``rng``, ``distribution`` and
    ``rollout_values(data, obs, learn_actions, recorded)``; its ``act`` and
    ``act_info`` feed the networks ``observed(observation)``, and ``act_info``
    acts by ``explore``. With gSDE it supplies ``sde_log_std()``, log σ of the
    exploration matrices ``[dim z, dim A]`` as numpy.
    """

    env_steps: int
    reward_normalizer: RewardNormalizer | None
    obs_normalizer: ObsNormalizer | None
    # gSDE (use_sde): training's exploration matrices θ_ε, one per environment, and
    # the vector steps acted since the window began.
    _sde_matrices: np.ndarray | None = None
    _sde_step = 0

    def init_normalizers(
        self, reward_normalizer: RewardNormalizer | None, observation_space: Any
    ) -> None:
        """Stable-Baselines3's VecNormalize, as the hyperparameters ask.

        ``normalize_reward``: rewards divided by the running std of the discounted
        return before GAE (``reward_normalizer`` when given, else one made at the
        first window with a column per environment). ``normalize_observations``:
        observations standardized by running statistics, clipped to ±10. A
        window is acted on and learned from with the same statistics, those of
        the windows learned before it; it joins them after its update, so every
        step's action and its update see one observation. Evaluation uses them
        as they stand, and checkpoints carry them.
        """
        self.reward_normalizer = reward_normalizer
        self.obs_normalizer = None
        if not self.hp["normalize_observations"]:
            return
        box = isinstance(observation_space, gym.spaces.Box)
        if not box or not np.issubdtype(observation_space.dtype, np.floating):
            raise ValueError(
                f"{self.algorithm}: normalize_observations standardizes a Box of floats "
                f"(pass observation_space), got {observation_space!r}"
            )
        self.obs_normalizer = ObsNormalizer(observation_space.shape)

    def observed(self, observation: Any) -> Any:
        """Observations as the networks take them: standardized with
        ``normalize_observations``, else as given."""
        if self.obs_normalizer is None:
            return observation
        return self.obs_normalizer.normalize(observation)

    def check_exploration(self) -> None:
        """Insist that ``use_sde`` and the network agree: gSDE needs a network
        that outputs ``[μ ‖ log σ̃ ‖ z]`` (its ``StateDependentGaussian``)."""
        use_sde = bool(self.hp["use_sde"])
        if use_sde != isinstance(self.distribution, StateDependentGaussian):
            raise ValueError(
                f"{self.algorithm}: use_sde={use_sde}, but the network "
                f"{'does not output' if use_sde else 'outputs'} gSDE's [mean ‖ log std ‖ "
                f"features]: build it with make_{self.algorithm}, which follows use_sde"
            )

    def explore(self, params: np.ndarray, noise: Any) -> tuple[np.ndarray, dict[str, Any]]:
        """Training's actions and their ``policy_info`` from the distribution's
        parameters: drawn from ``noise``; with gSDE, from matrices θ_ε held
        per environment, drawn (from ``rng``) as a window begins and every
        ``sde_sample_freq`` steps within it (−1: only then), as SB3's
        on-policy gSDE draws them at each rollout's start."""
        distribution = self.distribution
        if not isinstance(distribution, StateDependentGaussian):
            return distribution.sample(params, noise)
        n, every = len(params), int(self.hp["sde_sample_freq"])
        held = self._sde_matrices
        if held is None or len(held) != n or (every > 0 and self._sde_step % every == 0):
            std = np.exp(self.sde_log_std()).astype(np.float32)
            held = self._sde_matrices = std * self.rng.standard_normal(
                (n, *std.shape), dtype=np.float32
            )
        self._sde_step += 1
        return distribution.sample_held(params, held)

    def schedule_fraction(self) -> float:
        """1 − steps/anneal_steps, floored at 0 (1 when annealing is off)."""
        anneal = self.hp["anneal_steps"]
        return max(0.0, 1.0 - self.env_steps / anneal) if anneal else 1.0

    def scheduled_learning_rate(self) -> float:
        """The learning rate at this point of the schedule (rl-zoo's ``lin_``)."""
        return self.hp["learning_rate"] * self.schedule_fraction()

    def window_returns(self, data: EpisodeData, recorded: bool = True) -> Window:
        """Count the window's steps (the schedule's learning rate follows), then
        its observations as the networks take them, its learn actions, V(s_t), log π_old, and GAE's advantages and
        returns, on normalized rewards where asked; ``recorded=False`` takes V
        and log π_old from the networks as they stand, not from act time."""
        steps, envs = np.shape(data.rewards)
        n = steps * envs
        self.env_steps += n
        self._sde_matrices, self._sde_step = None, 0  # the next window explores anew
        self.apply_hyperparams()  # the window learns at the rate of the steps that count it
        raw = data.observations
        if self.obs_normalizer is not None:
            data = replace(
                data,
                observations=self.observed(raw),
                next_observations=self.observed(data.next_observations),
                final_observations=_maybe(self.observed, data.final_observations),
            )
        obs = O.flatten_steps(data.observations, n)
        actions = self.distribution.learn_actions(data.actions, data.policy_info, n)
        values, next_values, final_values, old_log_probs = self.rollout_values(
            data, obs, actions, recorded
        )
        rewards = data.rewards
        if self.hp["normalize_reward"] or self.reward_normalizer is not None:
            rewards = self._reward_normalizer(envs).normalize_window(rewards, data.dones)
        advantages, returns = gae(data, rewards, values, next_values, final_values, self.hp)
        if self.obs_normalizer is not None:
            self.obs_normalizer.update(O.flatten_steps(raw, n))
        return Window(obs, actions, values, old_log_probs, advantages, returns)

    def _reward_normalizer(self, envs: int) -> RewardNormalizer:
        if self.reward_normalizer is None:
            self.reward_normalizer = RewardNormalizer(self.hp["gamma"], n_envs=envs)
        return self.reward_normalizer

    def continue_episodes(self) -> bool:
        """Windows hold all the rest: what acting carries across them (gSDE's
        matrices and their step, the normalizers) is in ``extra_state``."""
        return True

    def extra_state(self) -> dict[str, Any]:
        state: dict[str, Any] = {"env_steps": self.env_steps, "sde_step": self._sde_step}
        if self._sde_matrices is not None:
            state["sde_matrices"] = self._sde_matrices.tolist()
        for name in ("reward_normalizer", "obs_normalizer"):
            normalizer = getattr(self, name)
            if normalizer is not None:
                state[name] = {
                    k: np.asarray(v).tolist() for k, v in normalizer.state_dict().items()
                }
        return state

    def load_extra_state(self, state: dict[str, Any]) -> None:
        self.env_steps = int(state.get("env_steps", 0))
        self._sde_step = int(state.get("sde_step", 0))
        held = state.get("sde_matrices")
        self._sde_matrices = None if held is None else np.asarray(held, dtype=np.float32)
        saved = state.get("reward_normalizer")
        if saved is not None:
            self._reward_normalizer(len(saved["returns"])).load_state_dict(_arrays(saved))
        if self.obs_normalizer is not None:
            # BUILT_WITH refuses a checkpoint of the other kind that names the setting;
            # one written before A2C had it holds no statistics.
            saved = state.get("obs_normalizer")
            if saved is None:
                raise ValueError(
                    f"{self.algorithm}: the checkpoint holds no observation statistics, and "
                    "this agent has normalize_observations=True: build it without"
                )
            self.obs_normalizer.load_state_dict(_arrays(saved))
        self.apply_hyperparams()


class PPOWindow(OnPolicyWindow):
    """PPO's window: ``OnPolicyWindow``'s, as the loss table its minibatches cut,
    and the clip range's schedule."""

    def window_table(
        self, data: EpisodeData
    ) -> tuple[Any, np.ndarray, np.ndarray, np.ndarray, float]:
        """The window's observations ``[T·N, ...]`` as the networks take them, the
        loss table (``loss_table``), V(s_t) and the returns ``[T, N]``, and the
        clip range of this point of the schedule."""
        w = self.window_returns(data)
        table = loss_table(w.old_log_probs, w.advantages, w.returns, w.values, w.actions)
        return w.obs, table, w.values, w.returns, self.hp["clip_ratio"] * self.schedule_fraction()


def _arrays(saved: dict[str, Any]) -> dict[str, Any]:
    return {k: v if k == "count" else np.asarray(v) for k, v in saved.items()}


def _maybe(function: Callable[[Any], Any], value: Any) -> Any:
    return None if value is None else function(value)
