"""TFTD3Agent: twin delayed deep deterministic policy gradient, in TensorFlow.

Fujimoto et al. (2018), "Addressing Function Approximation Error in
Actor-Critic Methods", as Stable-Baselines3 runs it, and as optix-torch's
``algorithms/td3.py``. Per gradient step, on a minibatch from replay:

    ã = clip(π̄(s′) + clip(σ̃·ε, −c, c), −1, 1),  ε ~ N(0, I)   (target policy smoothing)
    y = r + γ(1 − d)·minⱼ Q̄ⱼ(s′, ã)                           (clipped double Q-learning)
    L_Q = Σⱼ E[(Qⱼ(s, a) − y)²]

and every ``policy_delay``-th step (delayed policy updates):

    L_π = −E[Q₁(s, π(s))]                                      (deterministic policy gradient)
    Q̄ ← τ·Q + (1 − τ)·Q̄,   π̄ ← τ·π + (1 − τ)·π̄                (Polyak)

each step one ``tf.function`` call (compiled twice: with and without the
actor's part). Exploration adds N(0, expl_noise²) to π(s), or with
``ou_noise`` an Ornstein-Uhlenbeck process (``optix_core.off_policy.exploration``),
and clips to (−1, 1). The actor outputs ``action_dim`` values in (−1, 1) (end it with a
tanh); actions are scaled to the Box bounds. ``TFTDDAgent`` is tensor-optix's
name for the same class.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import keras
import numpy as np
import tensorflow as tf

from optix_core.algorithms.config import td3 as config
from optix_core.off_policy import update_due
from optix_core.off_policy.exploration import TD3Exploration
from optix_core.types import HyperparamSet
from optix_tf.accel.adam import apply_gradients
from optix_tf.algorithms.off_policy import (
    OffPolicyAgent,
    TargetNetwork,
    default_agent,
    mlp,
    polyak,
    select,
)


class TFTD3Agent(TD3Exploration, OffPolicyAgent):
    """TD3 on a continuous (Box) action space.

    ``actor`` maps observations to actions in (−1, 1); ``critic1`` and
    ``critic2`` map ``[φ(s) ‖ action]`` to Q. The other arguments are
    ``OffPolicyAgent``'s.
    """

    algorithm = "td3"
    DEFAULTS = config.DEFAULTS
    BOUNDS = config.BOUNDS
    SEARCH_SPACE = config.SEARCH_SPACE

    def setup(self) -> None:
        self.actor_target = TargetNetwork(self.actor)
        # Both targets follow their networks in one Polyak pass.
        self.online_variables = self.actor_target.online + self.critic_target.online
        self.target_variables = self.actor_target.copies + self.critic_target.copies
        self._step = tf.function(self.gradient_step, reduce_retracing=True)

    def modules(self) -> dict[str, keras.layers.Layer]:
        return {
            "actor": self.actor,
            "actor_target": self.actor_target,
            "critic": self.critic,
            "critic_target": self.critic_target,
        }

    def optimizers(self) -> dict[str, keras.optimizers.Optimizer]:
        return {"actor": self.actor_optimizer, "critic": self.critic_optimizer}

    # ---- acting -------------------------------------------------------------

    def noise_shape(self, batch_size: int) -> tuple[int, ...]:
        return (batch_size, self.action_dim)  # ε of the target policy smoothing

    # ---- learning -----------------------------------------------------------

    def update_settings(self) -> tf.Tensor:
        hp = self.hp
        return tf.constant([hp["tau"], hp["target_noise"], hp["noise_clip"]], tf.float32)

    def update(self, tensors: dict[str, Any], j: tf.Tensor, settings: tf.Tensor) -> dict[str, Any]:
        actor_due = update_due(self.n_updates, self.hp["policy_delay"])
        losses = self._step(tensors, j, settings, actor_due)
        stats = {"critic_loss": losses[0]}
        if actor_due:
            stats["actor_loss"] = losses[1]
        return stats

    def gradient_step(
        self, tensors: dict[str, Any], j: tf.Tensor, settings: tf.Tensor, actor_due: bool
    ) -> tf.Tensor:
        """The critics' step on minibatch ``j`` and, when ``actor_due``, the actor's
        and the targets' (compiled once per value of ``actor_due``);
        ``[critic_loss, actor_loss]`` (actor_loss 0 when not due)."""
        batch = select(tensors, j)
        tau, sigma, clip = settings[0], settings[1], settings[2]
        # Target policy smoothing: ã = clip(π̄(s′) + clip(σ̃·ε, −c, c), −1, 1)
        smoothing = tf.clip_by_value(batch["noise"] * sigma, -clip, clip)
        a_next = tf.clip_by_value(self.actor_target(batch["next_observations"]) + smoothing, -1, 1)
        y = self.bootstrap(batch, a_next)  # r + γ(1 − d)·minⱼ Q̄ⱼ(s′, ã)
        critic_loss = self.critic_step(batch, y, 1.0)  # L_Q = Σⱼ E[(Qⱼ − y)²]
        actor_loss = tf.zeros(())
        if actor_due:
            # Delayed policy update: L_π = −E[Q₁(s, π(s))]; gradients for the actor only
            obs = batch["observations"]
            with tf.GradientTape() as tape:
                actor_loss = -tf.reduce_mean(self.critic.q1(obs, self.actor(obs)))
            grads = tape.gradient(actor_loss, self.actor_variables)
            apply_gradients(self.actor_optimizer, grads, self.actor_variables)
            polyak(self.target_variables, self.online_variables, tau)
        return tf.stack([critic_loss, actor_loss])


TFTDDAgent = TFTD3Agent  # tensor-optix 1.10's name


def make_td3(
    observation_space: gym.Space,
    action_space: gym.Space,
    *,
    hyperparams: HyperparamSet | None = None,
    device: str = "auto",
    seed: int | None = None,
    hidden: Sequence[int] = (256, 256),
    extractor: keras.layers.Layer | None = None,
) -> TFTD3Agent:
    """The AgentSpec factory: SB3's networks (features extractors chosen from the
    observation space, then ReLU MLPs of widths ``hidden``, a tanh actor), critics
    fused. ``extractor`` replaces the default features extractor (the critics get
    a copy)."""

    def head(features: int, act_dim: int, seeds: np.random.Generator) -> keras.layers.Layer:
        return mlp(features, act_dim, hidden, seeds, output_activation="tanh")

    return default_agent(
        TFTD3Agent,
        observation_space,
        action_space,
        head,
        hidden=hidden,
        extractor=extractor,
        hyperparams=hyperparams,
        device=device,
        seed=seed,
    )
