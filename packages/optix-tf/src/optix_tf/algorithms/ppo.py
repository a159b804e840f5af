"""PPO: proximal policy optimization, on any action space, in TensorFlow.

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

The same algorithm as optix-torch's ``algorithms/ppo.py``, over the same
shared pieces (``optix_core.on_policy``: values, GAE, the window table,
minibatch order; ``optix_core.algorithms.config.ppo``: hyperparameters).
The whole update of a window (every epoch and minibatch) is one
``tf.function``: Python hands it the window once and reads the diagnostics
back once. The networks, acting and the rollout's values are A2C's too
(``optix_tf.algorithms.on_policy``).
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import keras
import numpy as np
import tensorflow as tf

from optix_core import on_policy
from optix_core.algorithms.config import ppo as config
from optix_core.normalizers import RewardNormalizer
from optix_core.on_policy import ADVANTAGE, OLD_LOG_PROB, OLD_VALUE, RETURN, PPOWindow
from optix_core.policies.distributions import gaussian_action_space
from optix_core.types import EpisodeData, HyperparamSet
from optix_tf.accel.adam import apply_gradients
from optix_tf.algorithms.on_policy import OnPolicyNetworks, default_agent, normalized_advantages
from optix_tf.base import TFAgentBase, set_learning_rate
from optix_tf.policies import observations as O
from optix_tf.policies.distributions import Distribution, distribution_for
from optix_tf.policies.networks import check_actor_critic, probe_input
from optix_tf.policies.sde import StateDependentActorCritic

DIAGNOSTICS = ("policy_loss", "value_loss", "approx_kl", "clip_fraction")


class TFPPOAgent(PPOWindow, OnPolicyNetworks, TFAgentBase):
    """PPO (tensor-optix's ``TFPPOAgent``) on Discrete, MultiDiscrete, MultiBinary or Box actions.

    Args:
        actor: a Keras model, observations → the distribution's parameters
            ``[B, param_dim]``; or, with ``critic=None``, → ``(parameters,
            values [B])``, as ``ActorCritic`` (the default network) does.
        critic: observations → ``[B, 1]`` state values, or None (see ``actor``).
        optimizer: a Keras optimizer over both networks; default Adam
            (ε = 1e-5, as SB3's PPO). Its learning rate follows ``hyperparams``.
        hyperparams: keys of ``optix_core.algorithms.config.ppo.DEFAULTS``.
        reward_normalizer: an ``optix_core.normalizers.RewardNormalizer`` with
            one column per environment; rewards are divided by its running
            return std before GAE. ``normalize_reward`` makes one itself, and
            ``normalize_observations`` standardizes observations
            (``OnPolicyWindow.init_normalizers``).
        device: "auto", "cpu", "gpu", "gpu:N" ("cuda" and "cuda:N" alike).
        seed: seeds the agent's own generators (sampling, minibatch order).
        action_space: the actions' space; without it, Discrete with as many
            actions as the actor has outputs.
        observation_space: when given, the networks are checked against it.
        distribution: a ``Distribution``, or for Box actions its name:
            "squashed_gaussian" (default) or "gaussian"; a
            ``StateDependentActorCritic`` (``use_sde``) brings gSDE's.
    """

    algorithm = "ppo"
    DEFAULTS = config.DEFAULTS
    BOUNDS = config.BOUNDS
    ONLINE_SEARCH_SPACE = config.ONLINE_SEARCH_SPACE
    BUILT_WITH = config.BUILT_WITH

    def __init__(
        self,
        actor: keras.Model,
        critic: keras.Model | None = None,
        optimizer: keras.optimizers.Optimizer | None = None,
        hyperparams: HyperparamSet | dict[str, Any] | None = None,
        reward_normalizer: RewardNormalizer | None = None,
        device: str = "auto",
        seed: int | None = None,
        *,
        action_space: gym.Space | None = None,
        observation_space: gym.Space | None = None,
        distribution: Distribution | str | None = None,
    ) -> None:
        super().__init__(hyperparams, device, seed)
        self.actor, self.critic = actor, critic
        self.shared = critic is None  # the actor returns (parameters, values)
        with tf.device(self.device):
            self.distribution = pick_distribution(
                actor, critic, action_space, observation_space, distribution, self.algorithm
            )
            check_actor_critic(
                actor, critic, observation_space, self.distribution.param_dim, self.algorithm
            )
            self.check_exploration()
            self.optimizer = optimizer or keras.optimizers.Adam(
                learning_rate=self.hp["learning_rate"], epsilon=1e-5
            )
            self._build_optimizers()  # its slots exist before the first (compiled) step
        self.init_normalizers(reward_normalizer, observation_space)
        self.env_steps = 0  # environment steps learned from: drives anneal_steps
        # No autograph: the update's control flow is TensorFlow's own, and it traces faster.
        self._act = tf.function(self.forward, reduce_retracing=True, autograph=False)
        self._update = tf.function(self.update, reduce_retracing=True, autograph=False)
        self.apply_hyperparams()

    # ---- networks (the rest: OnPolicyNetworks) -------------------------------

    def optimizers(self) -> dict[str, keras.optimizers.Optimizer]:
        return {"main": self.optimizer}

    # ---- schedules ------------------------------------------------------

    def apply_hyperparams(self) -> None:
        set_learning_rate(self.optimizer, self.scheduled_learning_rate())

    # ---- learning -------------------------------------------------------

    def learn(self, episode_data: EpisodeData) -> dict[str, float]:
        hp = self.hp
        obs, table, values, returns, clip = self.window_table(episode_data)
        n = len(table)
        learning_rate = self.scheduled_learning_rate()  # set as the window was counted

        batch = min(int(hp["minibatch_size"]), n)
        epochs = int(hp["n_epochs"])
        starts = np.asarray(on_policy.minibatch_starts(epochs, n, batch), dtype=np.int32)
        ends = np.minimum(starts + batch, (starts // n + 1) * n).astype(np.int32)
        order = np.concatenate([self.rng.permutation(n) for _ in range(epochs)]).astype(np.int32)
        settings = [
            clip,
            hp["clip_range_vf"],
            hp["vf_coef"],
            hp["entropy_coef"],
            hp["max_grad_norm"],
            hp["target_kl"],
            float(bool(hp["normalize_advantage"]) and batch > 1),
        ]
        with tf.device(self.device):
            sums, taken = self._update(
                O.to_tensor(obs),
                tf.convert_to_tensor(table),
                tf.convert_to_tensor(order),
                tf.convert_to_tensor(starts),
                tf.convert_to_tensor(ends),
                tf.constant(settings, tf.float32),
            )
            taken = int(taken)
            self.weights_changed()
            stats = {"explained_variance": on_policy.explained_variance(values, returns)}
            if taken:
                rows = float(sums[-1])
                stats.update(
                    {k: float(s) / rows for k, s in zip(DIAGNOSTICS, sums[:-1], strict=False)}
                )
                params = self._act(O.to_tensor(obs))[0]
                stats["entropy"] = float(tf.reduce_mean(self.distribution.entropy(params)))
        return {
            **stats,
            "learning_rate": learning_rate,
            "clip_ratio": clip,
            "updates": float(taken),
            "stopped_early": float(taken < len(starts)),
        }

    def update(
        self,
        obs: Any,
        table: tf.Tensor,
        order: tf.Tensor,
        starts: tf.Tensor,
        ends: tf.Tensor,
        settings: tf.Tensor,
    ) -> tuple[tf.Tensor, tf.Tensor]:
        """Every minibatch step of a window (compiled by ``tf.function``): the sums
        of the diagnostics over the rows of the steps taken, their row count
        last, and the number of steps taken.

        The loop and the early stop are TensorFlow's own control flow, so the
        function compiles without autograph: its first call (the trace) takes
        about half the time, which on CartPole is ten windows' updates."""
        clip, clip_vf, vf_coef, entropy_coef, max_norm, target_kl, normalize = tf.unstack(settings)
        variables = self.variables

        def minibatch(
            i: tf.Tensor, sums: tf.Tensor, taken: tf.Tensor, stop: tf.Tensor
        ) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor]:
            index = order[starts[i] : ends[i]]
            rows = tf.gather(table, index)
            advantages = normalized_advantages(rows[:, ADVANTAGE], normalize)
            with tf.GradientTape() as tape:
                params, value = self.forward(O.gather(obs, index))
                loss, surrogate, error, log_ratio = ppo_loss(
                    self.distribution,
                    params,
                    value,
                    rows,
                    advantages,
                    clip,
                    clip_vf,
                    vf_coef,
                    entropy_coef,
                )
            kl = approx_kl(log_ratio)
            stop = tf.logical_and(target_kl > 0, kl > 1.5 * target_kl)
            grads = tape.gradient(loss, variables)
            grads, _ = tf.clip_by_global_norm(grads, max_norm)
            stats = diagnostic_sums(surrogate, error, kl, log_ratio, clip)

            def step() -> tuple[tf.Tensor, tf.Tensor]:
                apply_gradients(self.optimizer, grads, variables)
                return sums + stats, taken + 1

            sums, taken = tf.cond(stop, lambda: (sums, taken), step)
            return i + 1, sums, taken, stop

        _, sums, taken, _ = tf.while_loop(
            lambda i, sums, taken, stop: tf.logical_and(i < tf.shape(starts)[0], ~stop),
            minibatch,
            (tf.constant(0), tf.zeros(len(DIAGNOSTICS) + 1), tf.constant(0), tf.constant(False)),
        )
        return sums, taken


class TFGaussianPPOAgent(TFPPOAgent):
    """tensor-optix's ``TFGaussianPPOAgent``: PPO on Box actions, sized by ``action_dim``.

    Without ``action_space`` the actions lie in (−1, 1)^action_dim; with it,
    in the Box's bounds (``action_dim``, if given too, must agree).
    """

    def __init__(
        self,
        actor: keras.Model,
        critic: keras.Model | None = None,
        optimizer: keras.optimizers.Optimizer | None = None,
        action_dim: int | None = None,
        hyperparams: HyperparamSet | dict[str, Any] | None = None,
        reward_normalizer: RewardNormalizer | None = None,
        device: str = "auto",
        seed: int | None = None,
        *,
        action_space: gym.Space | None = None,
        observation_space: gym.Space | None = None,
        distribution: Distribution | str | None = None,
    ) -> None:
        action_space = gaussian_action_space(action_dim, action_space, "TFGaussianPPOAgent")
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


def ppo_loss(
    distribution: Distribution,
    params: tf.Tensor,
    value: tf.Tensor,
    rows: tf.Tensor,
    advantages: tf.Tensor,
    clip: tf.Tensor,
    clip_vf: tf.Tensor,
    vf_coef: tf.Tensor,
    entropy_coef: tf.Tensor,
) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor]:
    """L (eq. 9) for one minibatch, from the networks' outputs on it and its rows
    of the window table; also the per-row surrogate, value error and log r."""
    log_prob = distribution.log_prob(params, rows[:, OLD_VALUE + 1 :])
    log_ratio = log_prob - rows[:, OLD_LOG_PROB]
    ratio = tf.exp(log_ratio)  # r_t(θ), eq. 6
    # L_clip's samples, eq. 7: the pessimistic bound of the clipped surrogate.
    surrogate = tf.minimum(
        ratio * advantages, tf.clip_by_value(ratio, 1.0 - clip, 1.0 + clip) * advantages
    )
    old = rows[:, OLD_VALUE]
    clipped_value = old + tf.clip_by_value(value - old, -clip_vf, clip_vf)
    value = tf.where(clip_vf > 0, clipped_value, value)
    error = value - rows[:, RETURN]
    entropy = tf.reduce_mean(distribution.entropy(params))
    loss = vf_coef * tf.reduce_mean(tf.square(error)) - tf.reduce_mean(surrogate)  # eq. 9
    loss -= entropy_coef * entropy
    stop = tf.stop_gradient
    return loss, stop(surrogate), stop(error), stop(log_ratio)


def diagnostic_sums(
    surrogate: tf.Tensor, error: tf.Tensor, kl: tf.Tensor, log_ratio: tf.Tensor, clip: tf.Tensor
) -> tf.Tensor:
    """One minibatch's ``DIAGNOSTICS`` summed over its rows, its row count last."""
    n_rows = tf.cast(tf.shape(surrogate)[0], tf.float32)
    clipped = tf.cast(tf.abs(tf.exp(log_ratio) - 1.0) > clip, tf.float32)
    return tf.stack(
        [
            -tf.reduce_sum(surrogate),
            tf.reduce_sum(tf.square(error)),
            kl * n_rows,
            tf.reduce_sum(clipped),
            n_rows,
        ]
    )


def approx_kl(log_ratio: tf.Tensor) -> tf.Tensor:
    """KL(π_old‖π_θ) ≈ E[(r − 1) − log r] (Schulman's k3 estimator: unbiased, never negative)."""
    return tf.reduce_mean(tf.exp(log_ratio) - 1.0 - log_ratio)


def pick_distribution(
    actor: keras.Model,
    critic: keras.Model | None,
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
) -> TFPPOAgent:
    """The AgentSpec factory for "ppo": ``ActorCritic`` chosen from the spaces
    (Stable-Baselines3's PPO networks: [64, 64] tanh heads on flat features,
    linear heads on NatureCNN's), with the action space's distribution, or
    with ``use_sde`` gSDE's ``StateDependentActorCritic``; ``network`` holds
    their options (a preset's ``network``: ``hidden``, ``ortho_init``)."""
    return default_agent(
        TFPPOAgent, observation_space, action_space, hyperparams, device, seed, "ppo", **network
    )
