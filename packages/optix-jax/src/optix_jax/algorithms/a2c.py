"""A2C: advantage actor-critic, or REINFORCE without a critic, on any action space, in JAX.

Mnih et al. (2016), "Asynchronous Methods for Deep Reinforcement Learning",
in its synchronous form. One gradient step per window:

    A_t   = GAE-λ(r, V)              (λ = 1: the discounted return minus V(s_t))
    L_π   = −E[ log π(a_t|s_t) · A_t ]          (the policy gradient theorem)
    L_V   = E[ (V(s_t) − R_t)² ]                 (R_t = A_t + V(s_t))
    L     = L_π + vf_coef · L_V − entropy_coef · H[π(·|s_t)]

the gradient clipped to a global norm of ``max_grad_norm``. Without a critic
the baseline is zero and this is REINFORCE on λ-returns: ``FlaxAgent``,
tensor-optix's base for any ``flax.nnx.Module`` policy.

The same algorithm as optix-torch's and optix-tf's ``algorithms/a2c.py``,
over the same shared pieces (``optix_core.on_policy``: values, GAE,
explained variance; ``optix_core.algorithms.config.a2c``: hyperparameters),
with PPO's networks and acting (``optix_jax.algorithms.on_policy``). The
step is one jitted function: windows of one shape never retrace it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from optix_core.algorithms.config import a2c as config
from optix_core.on_policy import OnPolicyWindow, explained_variance
from optix_core.types import EpisodeData, HyperparamSet
from optix_jax.algorithms import on_policy as P
from optix_jax.base import JaxAgentBase, compiled, default_adam, new_optimizer, set_learning_rate
from optix_jax.policies import observations as O
from optix_jax.policies.distributions import Distribution
from optix_jax.policies.networks import check_actor_critic

DIAGNOSTICS = ("policy_loss", "value_loss", "entropy")


@functools.lru_cache(maxsize=8)
def rms_prop(eps: float) -> optax.GradientTransformation:
    """Stable-Baselines3's A2C optimizer as torch computes it: smoothing 0.99, ε
    added after the root. One object per ε, as ``default_adam``, so that agents
    built alike share their compiled updates; the learning rate is set later."""
    return optax.inject_hyperparams(optax.rmsprop, static_args=("eps_in_sqrt",))(
        learning_rate=1e-3, decay=0.99, eps=eps, eps_in_sqrt=False
    )


class FlaxAgent(OnPolicyWindow, P.OnPolicyNetworks, JaxAgentBase):
    """A2C / REINFORCE (tensor-optix's ``FlaxAgent``) on Discrete, MultiDiscrete,
    MultiBinary or Box actions, over any ``flax.nnx.Module``.

    Args:
        actor: an ``nnx.Module``, observations → the distribution's parameters
            ``[B, param_dim]``, or → ``(parameters, values [B])`` (an
            actor-critic, as ``ActorCritic``, and with ``use_sde`` gSDE's
            ``StateDependentActorCritic``). Parameters alone and no critic
            is REINFORCE.
        optimizer: an optax transformation with its learning rate injected
            (``optax.inject_hyperparams``); default Adam (ε = 1e-8), or
            ``rms_prop`` with ``use_rms_prop`` (Stable-Baselines3's A2C). Stepped
            through an ``nnx.Optimizer`` over the parameters (``nnx.Param``); its
            learning rate follows ``hyperparams`` (and ``anneal_steps``' schedule).
        hyperparams: keys of ``optix_core.algorithms.config.a2c.DEFAULTS``;
            ``normalize_observations`` and ``normalize_reward`` are SB3's
            VecNormalize (``OnPolicyWindow.init_normalizers``).
        device: "auto", "cpu", "gpu", "gpu:N" ("cuda" and "cuda:N" alike).
        seed: seeds the agent's own generators (sampling).
        critic: observations → ``[B, 1]`` state values, or None.
        action_space: the actions' space; without it, Discrete with as many
            actions as the actor has outputs.
        observation_space: when given, the networks are checked against it.
        distribution: a ``Distribution``, or for Box actions its name.
    """

    algorithm = "a2c"
    DEFAULTS = config.DEFAULTS
    BOUNDS = config.BOUNDS
    ONLINE_SEARCH_SPACE = config.ONLINE_SEARCH_SPACE
    BUILT_WITH = config.BUILT_WITH
    LOOP_HINTS = config.LOOP_HINTS

    def __init__(
        self,
        actor: nnx.Module,
        optimizer: Any = None,
        hyperparams: HyperparamSet | dict[str, Any] | None = None,
        device: str = "auto",
        seed: int | None = None,
        *,
        critic: nnx.Module | None = None,
        action_space: gym.Space | None = None,
        observation_space: gym.Space | None = None,
        distribution: Distribution | str | None = None,
    ) -> None:
        super().__init__(hyperparams, device, seed)
        shared = critic is None and P.returns_values(actor, observation_space)
        with self.on_device():
            self.distribution = P.pick_distribution(
                actor, action_space, observation_space, distribution, shared, self.algorithm
            )
            if shared or critic is not None:
                check_actor_critic(
                    actor, critic, observation_space, self.distribution.param_dim, self.algorithm
                )
            self.networks = P.PolicyNetworks(actor, critic, shared=shared)
            if optimizer is None and self.hp["use_rms_prop"]:
                optimizer = rms_prop(self.hp["rms_prop_eps"])
            tx = optimizer or default_adam(1e-8)
            self.optimizer = new_optimizer(self.networks, tx)
        self.check_exploration()
        self.init_networks()
        self.init_normalizers(None, observation_space)
        self.env_steps = 0  # environment steps learned from: drives anneal_steps
        graphdef, _ = nnx.split((self.networks, self.optimizer))
        self._update = compiled(a2c_update, graphdef, self.distribution)
        self.apply_hyperparams()

    def apply_hyperparams(self) -> None:
        set_learning_rate(self.optimizer, self.scheduled_learning_rate())

    def compiled_policy(self, deterministic: bool = False) -> tuple[Callable, Any]:
        P.refuse_host_normalizers(self)
        return super().compiled_policy(deterministic)

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
        with self.on_device():
            state = nnx.state((self.networks, self.optimizer))
            state, losses = self._update(
                state,
                O.to_jax(w.obs),
                jnp.asarray(w.actions),
                jnp.asarray(w.advantages.reshape(n), jnp.float32),
                jnp.asarray(w.returns.reshape(n), jnp.float32),
                jnp.asarray(settings, jnp.float32),
            )
            nnx.update((self.networks, self.optimizer), state)
        self.weights_changed()
        return {
            **{k: float(v) for k, v in zip(DIAGNOSTICS, np.asarray(losses), strict=True)},
            "explained_variance": explained_variance(w.values.reshape(-1), w.returns.reshape(-1)),
            "learning_rate": learning_rate,
        }


def a2c_update(
    graphdef: nnx.GraphDef,
    distribution: Distribution,
    state: nnx.State,
    obs: Any,
    actions: jax.Array,
    advantages: jax.Array,
    returns: jax.Array,
    settings: jax.Array,
) -> tuple[nnx.State, jax.Array]:
    """One gradient step on the window; returns the new state and
    ``[policy_loss, value_loss, entropy]`` before the step."""
    vf_coef, entropy_coef, max_norm, normalize = settings
    networks, optimizer = nnx.merge(graphdef, state)
    advantages = P.normalized_advantages(advantages, jnp.ones_like(advantages), normalize)

    def loss_fn(networks: nnx.Module) -> tuple[jax.Array, jax.Array]:
        params, value = networks(obs)
        log_prob = distribution.log_prob(params, actions)
        policy_loss = -jnp.mean(log_prob * advantages)  # the policy gradient theorem
        value_loss = jnp.mean(jnp.square(value - returns))
        entropy = jnp.mean(distribution.entropy(params))
        loss = policy_loss + vf_coef * value_loss - entropy_coef * entropy
        return loss, jax.lax.stop_gradient(jnp.stack([policy_loss, value_loss, entropy]))

    (_, losses), grads = nnx.value_and_grad(loss_fn, has_aux=True)(networks)
    optimizer.update(networks, P.clip_by_global_norm(grads, max_norm))
    return nnx.state((networks, optimizer)), losses


def make_a2c(
    observation_space: gym.Space,
    action_space: gym.Space,
    *,
    hyperparams: HyperparamSet | None = None,
    device: str = "auto",
    seed: int | None = None,
    **network: Any,
) -> FlaxAgent:
    """The AgentSpec factory for "a2c": ``ActorCritic`` chosen from the spaces
    ([64, 64] tanh heads on flat features, as Stable-Baselines3's A2C), or with
    ``use_sde`` gSDE's ``StateDependentActorCritic``; ``network`` holds their
    options, as ``make_ppo``'s."""
    return P.default_agent(
        FlaxAgent, observation_space, action_space, hyperparams, device, seed, "a2c", **network
    )
