"""A2C: advantage actor-critic, or REINFORCE without a critic, on any action space, in TensorFlow.

Mnih et al. (2016), "Asynchronous Methods for Deep Reinforcement Learning",
in its synchronous form. One gradient step per window:

    A_t   = GAE-λ(r, V)              (λ = 1: the discounted return minus V(s_t))
    L_π   = −E[ log π(a_t|s_t) · A_t ]          (the policy gradient theorem)
    L_V   = E[ (V(s_t) − R_t)² ]                 (R_t = A_t + V(s_t))
    L     = L_π + vf_coef · L_V − entropy_coef · H[π(·|s_t)]

the gradient clipped to a global norm of ``max_grad_norm``. Without a critic
the baseline is zero and this is REINFORCE on λ-returns.

The same algorithm as optix-torch's ``algorithms/a2c.py``, over the same
shared pieces (``optix_core.on_policy``: values, GAE, explained variance;
``optix_core.algorithms.config.a2c``: hyperparameters), with PPO's networks,
acting and rollout values (``optix_tf.algorithms.on_policy``). The step is
one ``tf.function``: windows of one shape never retrace it, and
hyperparameters reach it as a tensor and the optimizer's learning-rate variable.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import keras
import tensorflow as tf

from optix_core.algorithms.config import a2c as config
from optix_core.on_policy import OnPolicyWindow, explained_variance
from optix_core.types import EpisodeData, HyperparamSet
from optix_tf.accel.adam import apply_gradients
from optix_tf.algorithms.on_policy import (
    OnPolicyNetworks,
    default_agent,
    normalized_advantages,
    returns_values,
)
from optix_tf.algorithms.ppo import pick_distribution
from optix_tf.base import TFAgentBase, set_learning_rate
from optix_tf.policies import observations as O
from optix_tf.policies.distributions import Distribution
from optix_tf.policies.networks import check_actor_critic

DIAGNOSTICS = ("policy_loss", "value_loss", "entropy")


class RMSprop(keras.optimizers.RMSprop):
    """Stable-Baselines3's A2C optimizer as torch computes it: smoothing 0.99 and
    ε added after the root, ``θ ← θ − lr·g / (√v + ε)``; Keras adds ε under the root."""

    def __init__(self, learning_rate: float, epsilon: float) -> None:
        super().__init__(learning_rate=learning_rate, rho=0.99, epsilon=epsilon)

    def update_step(self, gradient: Any, variable: Any, learning_rate: Any) -> None:
        lr = keras.ops.cast(learning_rate, variable.dtype)
        gradient = keras.ops.cast(gradient, variable.dtype)
        velocity = self._velocities[self._get_variable_index(variable)]
        self.assign(velocity, self.rho * velocity + (1 - self.rho) * keras.ops.square(gradient))
        self.assign_sub(variable, lr * gradient / (keras.ops.sqrt(velocity) + self.epsilon))


class TFAgent(OnPolicyWindow, OnPolicyNetworks, TFAgentBase):
    """A2C / REINFORCE (tensor-optix's ``TFAgent``) on Discrete, MultiDiscrete,
    MultiBinary or Box actions.

    Args:
        actor: a Keras model, observations → the distribution's parameters
            ``[B, param_dim]``; or, with ``critic=None``, → ``(parameters,
            values [B])`` (``ActorCritic``, the default network). An actor that
            returns parameters alone and no critic is REINFORCE.
        optimizer: a Keras optimizer over every network; default Adam
            (ε = 1e-8, as optix-torch's), or ``RMSprop`` with ``use_rms_prop``
            (Stable-Baselines3's A2C). Its learning rate follows ``hyperparams``
            (and ``anneal_steps``' schedule).
        hyperparams: keys of ``optix_core.algorithms.config.a2c.DEFAULTS``;
            ``normalize_observations`` and ``normalize_reward`` are SB3's
            VecNormalize (``OnPolicyWindow.init_normalizers``).
        critic: observations → ``[B, 1]`` values, or None.
        device, seed, action_space, observation_space, distribution: as
            ``TFPPOAgent``'s.
    """

    algorithm = "a2c"
    DEFAULTS = config.DEFAULTS
    BOUNDS = config.BOUNDS
    ONLINE_SEARCH_SPACE = config.ONLINE_SEARCH_SPACE
    BUILT_WITH = config.BUILT_WITH
    LOOP_HINTS = config.LOOP_HINTS

    def __init__(
        self,
        actor: keras.Model,
        optimizer: keras.optimizers.Optimizer | None = None,
        hyperparams: HyperparamSet | dict[str, Any] | None = None,
        critic: keras.Model | None = None,
        device: str = "auto",
        seed: int | None = None,
        *,
        action_space: gym.Space | None = None,
        observation_space: gym.Space | None = None,
        distribution: Distribution | str | None = None,
    ) -> None:
        super().__init__(hyperparams, device, seed)
        self.actor, self.critic = actor, critic
        with tf.device(self.device):
            # Whether the actor returns (parameters, values) itself.
            self.shared = critic is None and returns_values(actor, observation_space)
            self.distribution = pick_distribution(
                actor,
                None if self.shared else critic,
                action_space,
                observation_space,
                distribution,
                self.algorithm,
            )
            if self.shared or critic is not None:
                check_actor_critic(
                    actor, critic, observation_space, self.distribution.param_dim, self.algorithm
                )
            self.check_exploration()
            if optimizer is None and self.hp["use_rms_prop"]:
                optimizer = RMSprop(self.hp["learning_rate"], self.hp["rms_prop_eps"])
            self.optimizer = optimizer or keras.optimizers.Adam(
                learning_rate=self.hp["learning_rate"], epsilon=1e-8
            )
            self._build_optimizers()  # its slots exist before the first (compiled) step
        self.init_normalizers(None, observation_space)
        self.env_steps = 0  # environment steps learned from: drives anneal_steps
        # No autograph: nothing here branches on a tensor, and it traces faster.
        self._act = tf.function(self.forward, reduce_retracing=True, autograph=False)
        self._update = tf.function(self.update, reduce_retracing=True, autograph=False)
        self.apply_hyperparams()

    def optimizers(self) -> dict[str, keras.optimizers.Optimizer]:
        return {"main": self.optimizer}

    # ---- learning -----------------------------------------------------------

    def apply_hyperparams(self) -> None:
        set_learning_rate(self.optimizer, self.scheduled_learning_rate())

    def learn(self, episode_data: EpisodeData) -> dict[str, float]:
        hp = self.hp
        # V from the networks that learn, not from whoever collected the window.
        w = self.window_returns(episode_data, recorded=False)
        n = len(w.actions)
        learning_rate = self.scheduled_learning_rate()  # set as the window was counted
        settings = [
            hp["vf_coef"],
            hp["entropy_coef"],
            hp["max_grad_norm"],
            float(bool(hp["normalize_advantage"]) and n > 1),
        ]
        with tf.device(self.device):
            losses = self._update(
                O.to_tensor(w.obs),
                tf.convert_to_tensor(w.actions),
                tf.convert_to_tensor(w.advantages.reshape(n), tf.float32),
                tf.convert_to_tensor(w.returns.reshape(n), tf.float32),
                tf.constant(settings, tf.float32),
            ).numpy()
        self.weights_changed()
        return {
            **{k: float(v) for k, v in zip(DIAGNOSTICS, losses, strict=True)},
            "explained_variance": explained_variance(w.values.reshape(-1), w.returns.reshape(-1)),
            "learning_rate": learning_rate,
        }

    def update(
        self,
        obs: Any,
        actions: tf.Tensor,
        advantages: tf.Tensor,
        returns: tf.Tensor,
        settings: tf.Tensor,
    ) -> tf.Tensor:
        """One gradient step on the window (compiled by ``tf.function``); returns
        ``[policy_loss, value_loss, entropy]`` before the step."""
        vf_coef, entropy_coef, max_norm, normalize = tf.unstack(settings)
        advantages = normalized_advantages(advantages, normalize)
        variables = self.variables
        with tf.GradientTape() as tape:
            params, value = self.forward(obs)
            loss, policy_loss, value_loss, entropy = a2c_loss(
                self.distribution,
                params,
                value,
                actions,
                advantages,
                returns,
                vf_coef,
                entropy_coef,
            )
        grads = tape.gradient(loss, variables)
        grads, _ = tf.clip_by_global_norm(grads, max_norm)
        apply_gradients(self.optimizer, grads, variables)
        return tf.stack([policy_loss, value_loss, entropy])


def a2c_loss(
    distribution: Distribution,
    params: tf.Tensor,
    value: tf.Tensor,
    actions: tf.Tensor,
    advantages: tf.Tensor,
    returns: tf.Tensor,
    vf_coef: tf.Tensor,
    entropy_coef: tf.Tensor,
) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor]:
    """L for a window, from the networks' outputs on it, its learn actions,
    advantages and returns; also L_π, L_V and the mean entropy (detached)."""
    log_prob = distribution.log_prob(params, actions)
    policy_loss = -tf.reduce_mean(log_prob * advantages)  # the policy gradient theorem
    value_loss = tf.reduce_mean(tf.square(value - returns))
    entropy = tf.reduce_mean(distribution.entropy(params))
    loss = policy_loss + vf_coef * value_loss - entropy_coef * entropy
    stop = tf.stop_gradient
    return loss, stop(policy_loss), stop(value_loss), stop(entropy)


def make_a2c(
    observation_space: gym.Space,
    action_space: gym.Space,
    *,
    hyperparams: HyperparamSet | None = None,
    device: str = "auto",
    seed: int | None = None,
    **network: Any,
) -> TFAgent:
    """The AgentSpec factory for "a2c": ``ActorCritic`` chosen from the spaces
    ([64, 64] tanh heads on flat features, as Stable-Baselines3's A2C), or
    with ``use_sde`` gSDE's ``StateDependentActorCritic``; ``network`` holds
    their options, as ``make_ppo``'s."""
    return default_agent(
        TFAgent, observation_space, action_space, hyperparams, device, seed, "a2c", **network
    )
