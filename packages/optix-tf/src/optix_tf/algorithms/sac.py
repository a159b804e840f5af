"""TFSACAgent: soft actor-critic with a learned temperature, in TensorFlow.

Haarnoja et al. (2018), "Soft Actor-Critic Algorithms and Applications",
as Stable-Baselines3 runs it, and as optix-torch's ``algorithms/sac.py``.
Per gradient step, on a minibatch from replay:

    a = tanh(u),  u = μ_θ(s) + σ_θ(s)·ε,  ε ~ N(0, I)        (reparameterisation)
    log π(a|s) = log N(u; μ, σ) − Σᵢ log(1 − tanh²(uᵢ))       (change of variables, App. C)
    J(α) = E[−α·(log π(a|s) + H̄)],  H̄ = −dim(A)             (automatic temperature)
    y    = r + γ(1 − d)·(minⱼ Q̄ⱼ(s′, a′) − α log π(a′|s′))     (soft target, a′ ~ π(·|s′))
    J_Q  = ½ Σⱼ E[(Qⱼ(s, a) − y)²]                           (soft Bellman residual)
    J_π  = E[α log π(a|s) − minⱼ Qⱼ(s, a)],  a ~ π(·|s)      (through the updated critics)
    Q̄   ← τ·Q + (1 − τ)·Q̄                                    (Polyak)

all four one ``tf.function`` call. The actor outputs ``[mean ‖ log_std]``
(``2·action_dim`` columns, log σ clamped to [−20, 2] as in SB3); actions live
in (−1, 1) and are scaled to the Box bounds. With ``use_sde`` the noise is
gSDE's (Raffin et al. 2022), as optix-torch's SAC and SB3's draw it: the actor
outputs ``[mean ‖ z]``, z its last hidden features, and

    u = μ(s) + z(s)·θ_ε,  θ_ε ~ N(0, σ²) a [dim z, dim A] matrix, log σ learned
    log π(a|s) = log N(u; μ, √(z²·σ²)) − Σᵢ log(1 − tanh²(uᵢ))

acting holding one θ_ε per environment between draws, each gradient step
drawing one for its minibatch. Networks, the target ``y`` and the critics'
step are ``off_policy.py``'s; acting, replay and the update schedule
optix-core's ``off_policy``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import keras
import numpy as np
import tensorflow as tf

from optix_core.algorithms.config import sac as config
from optix_core.off_policy.acting import LOG_STD_MAX, LOG_STD_MIN, log_prob_constant
from optix_core.off_policy.gsde import SDE_EPSILON, SDE_MEAN_CLIP, GSDEActing
from optix_core.types import EpisodeData, HyperparamSet
from optix_tf.accel.adam import apply_gradients
from optix_tf.algorithms.off_policy import (
    OffPolicyAgent,
    adam,
    default_agent,
    linear_init,
    mlp,
    polyak,
    select,
)


class StateDependentNoise(keras.layers.Layer):
    """gSDE's actor head: features → z (a ReLU MLP of widths ``hidden``) → ``[mean ‖ z]``,
    the mean a linear map of z clipped to ±2; the noise's log σ, a [dim z, dim A]
    matrix starting at ``log_std_init``, is this layer's weight."""

    def __init__(
        self,
        features: int,
        action_dim: int,
        hidden: Sequence[int],
        log_std_init: float,
        seeds: np.random.Generator,
    ) -> None:
        super().__init__()
        self.latent = mlp(features, hidden[-1], hidden[:-1], seeds, output_activation="relu")
        kernel, bias = linear_init(hidden[-1], seeds)
        self.mean = keras.layers.Dense(action_dim, kernel_initializer=kernel, bias_initializer=bias)
        self.mean.build((None, hidden[-1]))
        self.log_std = self.add_weight(
            shape=(hidden[-1], action_dim),
            initializer=keras.initializers.Constant(log_std_init),
            name="log_std",
        )

    def call(self, features: tf.Tensor) -> tf.Tensor:
        z = self.latent(features)
        mean = tf.clip_by_value(self.mean(z), -SDE_MEAN_CLIP, SDE_MEAN_CLIP)
        return tf.concat([mean, z], axis=-1)


def sde_head(actor: keras.layers.Layer) -> StateDependentNoise | None:
    """The actor's gSDE head (the actor itself, or the factories' ``Actor``'s head)."""
    for layer in (actor, getattr(actor, "head", None)):
        if isinstance(layer, StateDependentNoise):
            return layer
    return None


class Temperature(keras.layers.Layer):
    """The entropy temperature α, learned as log α."""

    def __init__(self, initial: float) -> None:
        super().__init__()
        self.log_alpha = self.add_weight(
            shape=(1,), initializer=keras.initializers.Constant(math.log(initial)), name="log_alpha"
        )
        self.built = True


class TFSACAgent(GSDEActing, OffPolicyAgent):
    """SAC on a continuous (Box) action space (tensor-optix's ``TFSACAgent``).

    ``actor`` maps observations to ``[mean ‖ log_std]``; ``critic1`` and
    ``critic2`` map ``[φ(s) ‖ action]`` to Q. ``alpha_optimizer`` gives the
    kind of optimizer for the temperature (its class and settings are reused
    for the agent's own log α, as tensor-optix did; Adam when left out);
    ``target_entropy`` defaults to −dim(A). The other arguments, keywords
    among them (``critics``, ``critic_extractor``, ``observation_space``,
    ``action_space``), are ``OffPolicyAgent``'s.
    """

    algorithm = "sac"
    DEFAULTS = config.DEFAULTS
    BOUNDS = config.BOUNDS
    SEARCH_SPACE = config.SEARCH_SPACE
    ACTOR_OUTPUTS = 2  # [mean ‖ log_std]

    def __init__(
        self,
        actor: keras.layers.Layer,
        critic1: keras.layers.Layer | None = None,
        critic2: keras.layers.Layer | None = None,
        action_dim: int | None = None,
        actor_optimizer: keras.optimizers.Optimizer | None = None,
        critic_optimizer: keras.optimizers.Optimizer | None = None,
        alpha_optimizer: keras.optimizers.Optimizer | None = None,
        hyperparams: HyperparamSet | dict[str, Any] | None = None,
        device: str = "auto",
        seed: int | None = None,
        *,
        target_entropy: float | None = None,
        **networks: Any,
    ) -> None:
        self._alpha_optimizer, self._target_entropy = alpha_optimizer, target_entropy
        super().__init__(
            actor,
            critic1,
            critic2,
            action_dim,
            actor_optimizer,
            critic_optimizer,
            hyperparams,
            device,
            seed,
            **networks,
        )

    def setup(self) -> None:
        self._sde = self.sde_head()
        self.temperature = Temperature(self.hp["ent_coef"])
        target_entropy = self._target_entropy
        self.target_entropy = -float(self.action_dim) if target_entropy is None else target_entropy
        self._log_prob_const = log_prob_constant(self.action_dim)
        given = self._alpha_optimizer
        if given is None:
            self.alpha_optimizer = adam(self.hp["learning_rate"], "alpha_adam")
        else:
            self.alpha_optimizer = type(given).from_config(given.get_config())
        del self._alpha_optimizer
        self._step = tf.function(self.gradient_step, reduce_retracing=True)

    def modules(self) -> dict[str, keras.layers.Layer]:
        return {
            "actor": self.actor,
            "critic": self.critic,
            "critic_target": self.critic_target,
            "temperature": self.temperature,
        }

    def optimizers(self) -> dict[str, keras.optimizers.Optimizer]:
        return {
            "actor": self.actor_optimizer,
            "critic": self.critic_optimizer,
            "alpha": self.alpha_optimizer,
        }

    def optimizer_variables(self, name: str) -> list[Any]:
        if name == "alpha":
            return [self.temperature.log_alpha]
        return super().optimizer_variables(name)

    # ---- acting: gSDE's head (GSDEActing acts) --------------------------------

    def find_sde_head(self) -> StateDependentNoise | None:
        return sde_head(self.actor)

    def sde_log_std(self) -> np.ndarray:
        return self._sde.log_std.numpy()

    # ---- the policy's density ------------------------------------------------

    def squash(self, out: tf.Tensor, eps: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """a = tanh(μ + σ·ε) and log π(a|s), from the actor's ``[mean ‖ log_std]``.

        log N(u; μ, σ) = Σᵢ −εᵢ²/2 − log σᵢ − log √(2π), and the squashing term
        log(1 − tanh²u) = 2(log 2 − u − softplus(−2u)) is the exact, stable form.
        """
        d = self.action_dim
        mean = out[:, :d]
        log_std = tf.clip_by_value(out[:, d:], LOG_STD_MIN, LOG_STD_MAX)
        u = mean + tf.exp(log_std) * eps
        terms = 2.0 * (u + tf.nn.softplus(-2.0 * u)) - log_std - 0.5 * tf.square(eps)
        return tf.tanh(u), tf.reduce_sum(terms, axis=-1) - self._log_prob_const

    def sde_squash(self, out: tf.Tensor, eps: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """gSDE's a = tanh(u) and log π(a|s) from the actor's ``[mean ‖ z]`` and a
        standard normal ``eps`` [dim z, dim A]: θ_ε = σ·eps, u = μ + z·θ_ε, and u's
        Gaussian has variance z²·σ²."""
        d = self.action_dim
        mean, z = out[:, :d], out[:, d:]
        std = tf.exp(self._sde.log_std)
        u = mean + z @ (std * eps)
        sigma = tf.sqrt(tf.square(z) @ tf.square(std) + SDE_EPSILON)
        gaussian = -0.5 * tf.square((u - mean) / sigma) - tf.math.log(sigma)
        terms = gaussian + 2.0 * (u + tf.nn.softplus(-2.0 * u))
        return tf.tanh(u), tf.reduce_sum(terms, axis=-1) - self._log_prob_const

    def noise_shape(self, batch_size: int) -> tuple[int, ...]:
        if self._sde is not None:  # one θ_ε for the step, a and a′ alike (SB3's reset_noise)
            return tuple(self._sde.log_std.shape)
        return (2, batch_size, self.action_dim)  # ε for a ~ π(·|s) and for a′ ~ π(·|s′)

    # ---- learning -----------------------------------------------------------

    def learn(self, episode_data: EpisodeData) -> dict[str, float]:
        log_alpha = self.temperature.log_alpha
        if not self.hp["auto_ent_coef"]:
            log_alpha.assign([math.log(self.hp["ent_coef"])])
        out = super().learn(episode_data)
        out["ent_coef"] = float(np.exp(log_alpha.numpy()[0]))
        return out

    def update(self, tensors: dict[str, Any], j: tf.Tensor, settings: tf.Tensor) -> dict[str, Any]:
        critic_loss, actor_loss, entropy = tf.unstack(
            self._step(tensors, j, settings, bool(self.hp["auto_ent_coef"]))
        )
        return {"critic_loss": critic_loss, "actor_loss": actor_loss, "entropy": entropy}

    def gradient_step(
        self, tensors: dict[str, Any], j: tf.Tensor, settings: tf.Tensor, auto_ent_coef: bool
    ) -> tf.Tensor:
        """Temperature, critics, actor and Polyak targets on minibatch ``j`` (compiled
        once per value of ``auto_ent_coef``); ``[critic_loss, actor_loss, entropy]``."""
        batch = select(tensors, j)
        obs, eps, tau = batch["observations"], batch["noise"], settings[0]
        squash = self.squash if self._sde is None else self.sde_squash
        eps_pi, eps_next = (eps[0], eps[1]) if self._sde is None else (eps, eps)
        with tf.GradientTape() as actor_tape:
            a_pi, log_pi = squash(self.actor(obs), eps_pi)
        log_alpha = self.temperature.log_alpha
        alpha = tf.exp(tf.identity(log_alpha))  # the α of this step's targets and J_π, as SB3

        if auto_ent_coef:
            # J(α) = E[−α·(log π(a|s) + H̄)], taken as SB3 does on log α: its gradient,
            # −E[log π(a|s) + H̄], is given directly.
            grad = -(tf.reduce_mean(tf.stop_gradient(log_pi)) + self.target_entropy)
            apply_gradients(self.alpha_optimizer, [tf.reshape(grad, [1])], [log_alpha])

        a_next, log_next = squash(self.actor(batch["next_observations"]), eps_next)
        # y = r + γ(1 − d)·(minⱼ Q̄ⱼ(s′, a′) − α log π(a′|s′))
        y = self.bootstrap(batch, a_next, -alpha * log_next)
        critic_loss = self.critic_step(batch, y, 0.5)  # J_Q = ½ Σⱼ E[(Qⱼ(s, a) − y)²]

        # J_π = E[α log π(a|s) − minⱼ Qⱼ(s, a)], through the updated critics; actor only
        with actor_tape:
            q_pi = tf.reduce_min(self.critic(obs, a_pi), axis=1)
            actor_loss = tf.reduce_mean(tf.stop_gradient(alpha) * log_pi - q_pi)
        grads = actor_tape.gradient(actor_loss, self.actor_variables)
        apply_gradients(self.actor_optimizer, grads, self.actor_variables)

        polyak(self.critic_target.copies, self.critic_target.online, tau)
        return tf.stack([critic_loss, actor_loss, -tf.reduce_mean(log_pi)])


def make_sac(
    observation_space: gym.Space,
    action_space: gym.Space,
    *,
    hyperparams: HyperparamSet | None = None,
    device: str = "auto",
    seed: int | None = None,
    hidden: Sequence[int] = (256, 256),
    extractor: keras.layers.Layer | None = None,
) -> TFSACAgent:
    """The AgentSpec factory: SB3's networks (features extractors chosen from the
    observation space, then ReLU MLPs of widths ``hidden``), twin critics fused;
    with ``use_sde`` the actor's head is ``StateDependentNoise``. ``extractor``
    replaces the default features extractor (the critics get a copy)."""
    given = hyperparams.params if isinstance(hyperparams, HyperparamSet) else hyperparams
    hp = {**config.DEFAULTS, **(given or {})}

    def head(features: int, act_dim: int, seeds: np.random.Generator) -> keras.layers.Layer:
        if hp["use_sde"]:
            return StateDependentNoise(features, act_dim, hidden, hp["log_std_init"], seeds)
        return mlp(features, 2 * act_dim, hidden, seeds)  # [mean ‖ log_std]

    return default_agent(
        TFSACAgent,
        observation_space,
        action_space,
        head,
        hidden=hidden,
        extractor=extractor,
        hyperparams=hyperparams,
        device=device,
        seed=seed,
    )
