"""FlaxSACAgent: soft actor-critic with a learned temperature, in JAX (Flax NNX + optax).

Haarnoja et al. (2018), "Soft Actor-Critic Algorithms and Applications",
as Stable-Baselines3 runs it, and as optix-torch's and optix-tf's
``algorithms/sac.py``. Per gradient step, on a minibatch from replay:

    a = tanh(u),  u = μ_θ(s) + σ_θ(s)·ε,  ε ~ N(0, I)        (reparameterisation)
    log π(a|s) = log N(u; μ, σ) − Σᵢ log(1 − tanh²(uᵢ))       (change of variables, App. C)
    J(α) = E[−α·(log π(a|s) + H̄)],  H̄ = −dim(A)             (automatic temperature)
    y    = r + γ(1 − d)·(minⱼ Q̄ⱼ(s′, a′) − α log π(a′|s′))     (soft target, a′ ~ π(·|s′))
    J_Q  = ½ Σⱼ E[(Qⱼ(s, a) − y)²]                           (soft Bellman residual)
    J_π  = E[α log π(a|s) − minⱼ Qⱼ(s, a)],  a ~ π(·|s)      (through the updated critics)
    Q̄   ← τ·Q + (1 − τ)·Q̄                                    (Polyak)

A block of such steps (usually a whole window's) is one jitted call, a
``jax.lax.scan`` over its minibatches; ε comes from the agent's
``jax.random`` key, which a checkpoint keeps. The actor outputs ``[mean ‖
log_std]`` (``2·action_dim`` columns, log σ clamped to [−20, 2] as in SB3);
actions live in (−1, 1) and are scaled to the Box bounds. With ``use_sde``
the noise is gSDE's (Raffin et al. 2022), as optix-torch's SAC and SB3's draw
it: the actor outputs ``[mean ‖ z]``, z its last hidden features, and

    u = μ(s) + z(s)·θ_ε,  θ_ε ~ N(0, σ²) a [dim z, dim A] matrix, log σ learned
    log π(a|s) = log N(u; μ, √(z²·σ²)) − Σᵢ log(1 − tanh²(uᵢ))

acting holding one θ_ε per environment between draws, each gradient step
drawing one for its minibatch. Networks, the target ``y`` and the critics'
step are ``off_policy.py``'s; acting, replay and the update schedule
optix-core's ``off_policy``.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from functools import partial
from typing import Any

import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from optix_core.algorithms.config import sac as config
from optix_core.off_policy.acting import LOG_STD_MAX, LOG_STD_MIN
from optix_core.off_policy.gsde import SDE_EPSILON, SDE_MEAN_CLIP, GSDEActing
from optix_core.policies.distributions import HALF_LOG_2PI
from optix_core.types import EpisodeData, HyperparamSet
from optix_jax.algorithms.off_policy import (
    Head,
    OffPolicyAgent,
    bootstrap,
    critic_step,
    default_agent,
    polyak,
    scan_steps,
)
from optix_jax.base import default_adam, new_optimizer
from optix_jax.policies.distributions import squash_correction
from optix_jax.policies.extractors import torch_linear as linear


class StateDependentNoise(nnx.Module):
    """gSDE's actor head: features → z (a ReLU MLP of widths ``hidden``) → ``[mean ‖ z]``,
    the mean a linear map of z clipped to ±2; the noise's log σ, a [dim z, dim A]
    matrix starting at ``log_std_init``, is this module's parameter."""

    def __init__(
        self,
        features: int,
        action_dim: int,
        hidden: Sequence[int],
        log_std_init: float,
        rngs: nnx.Rngs,
    ) -> None:
        pairs = itertools.pairwise([features, *hidden])
        self.latent = nnx.List([linear(a, b, rngs) for a, b in pairs])
        self.mean = linear(hidden[-1], action_dim, rngs)
        self.log_std = nnx.Param(jnp.full((hidden[-1], action_dim), log_std_init, jnp.float32))

    def __call__(self, features: jax.Array) -> jax.Array:
        z = features
        for layer in self.latent:
            z = jax.nn.relu(layer(z))
        return jnp.concatenate([jnp.clip(self.mean(z), -SDE_MEAN_CLIP, SDE_MEAN_CLIP), z], -1)


def sde_head(actor: nnx.Module) -> StateDependentNoise | None:
    """The actor's gSDE head (the actor itself, or the factories' ``Actor``'s head)."""
    for module in (actor, getattr(actor, "head", None)):
        if isinstance(module, StateDependentNoise):
            return module
    return None


class Temperature(nnx.Module):
    """The entropy temperature α, learned as log α."""

    def __init__(self, initial: float) -> None:
        self.log_alpha = nnx.Param(jnp.full((1,), math.log(initial), jnp.float32))


class FlaxSACAgent(GSDEActing, OffPolicyAgent):
    """SAC on a continuous (Box) action space.

    ``actor`` maps observations to ``[mean ‖ log_std]``; ``critic1`` and
    ``critic2`` map ``[φ(s) ‖ action]`` to Q (or one fused ``critics``).
    ``alpha_optimizer`` is the optax transformation for log α (Adam at
    ``learning_rate`` when left out); ``target_entropy`` defaults to −dim(A).
    The other arguments, keywords among them (``critics``,
    ``critic_extractor``, ``observation_space``, ``action_space``), are
    ``OffPolicyAgent``'s.
    """

    algorithm = "sac"
    DEFAULTS = config.DEFAULTS
    BOUNDS = config.BOUNDS
    ONLINE_SEARCH_SPACE = config.SEARCH_SPACE
    ACTOR_OUTPUTS = 2  # [mean ‖ log_std]

    def __init__(
        self,
        actor: nnx.Module,
        critic1: nnx.Module | None = None,
        critic2: nnx.Module | None = None,
        action_dim: int | None = None,
        actor_optimizer: Any = None,
        critic_optimizer: Any = None,
        alpha_optimizer: Any = None,
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
        given = self._target_entropy
        self.target_entropy = -float(self.action_dim) if given is None else float(given)
        tx = self._alpha_optimizer or default_adam(1e-8)
        self.alpha_optimizer = new_optimizer(self.temperature, tx)
        del self._alpha_optimizer, self._target_entropy
        graphdef = nnx.graphdef(self.trained())
        self._steps = partial(SAC_STEPS, graphdef, self.action_dim, self._sde is not None)

    def modules(self) -> dict[str, nnx.Module]:
        return {
            "actor": self.actor,
            "critic": self.critic,
            "critic_target": self.critic_target,
            "temperature": self.temperature,
        }

    def optimizers(self) -> dict[str, nnx.Optimizer]:
        return {
            "actor": self.actor_optimizer,
            "critic": self.critic_optimizer,
            "alpha": self.alpha_optimizer,
        }

    # ---- acting: gSDE's head (GSDEActing acts) --------------------------------

    def find_sde_head(self) -> StateDependentNoise | None:
        return sde_head(self.actor)

    def sde_log_std(self) -> np.ndarray:
        return np.asarray(self._sde.log_std[...], dtype=np.float32)

    # ---- learning -----------------------------------------------------------

    def learn(self, episode_data: EpisodeData) -> dict[str, float]:
        log_alpha = self.temperature.log_alpha
        if not self.hp["auto_ent_coef"]:
            log_alpha.set_value(jnp.full((1,), math.log(self.hp["ent_coef"]), jnp.float32))
        out = super().learn(episode_data)
        out["ent_coef"] = float(np.exp(np.asarray(log_alpha.get_value())[0]))
        return out

    def update_block(
        self, state: nnx.State, key: jax.Array, block: dict[str, Any], n_updates: int
    ) -> tuple[nnx.State, jax.Array, dict[str, jax.Array]]:
        settings = jnp.asarray([self.hp["tau"], self.target_entropy], jnp.float32)
        return self._steps(
            state, key, block, settings, auto_ent_coef=bool(self.hp["auto_ent_coef"])
        )


def squash(out: jax.Array, eps: jax.Array, action_dim: int) -> tuple[jax.Array, jax.Array]:
    """a = tanh(μ + σ·ε) and log π(a|s), from the actor's ``[mean ‖ log_std]``:
    log N(u; μ, σ) = Σᵢ −εᵢ²/2 − log σᵢ − log √(2π), less Σᵢ log(1 − tanh²uᵢ)
    (``squash_correction``, the exact, stable form)."""
    mean = out[:, :action_dim]
    log_std = jnp.clip(out[:, action_dim:], LOG_STD_MIN, LOG_STD_MAX)
    u = mean + jnp.exp(log_std) * eps
    terms = -0.5 * jnp.square(eps) - log_std - HALF_LOG_2PI - squash_correction(u)
    return jnp.tanh(u), jnp.sum(terms, axis=-1)


def sde_squash(
    out: jax.Array, log_std: jax.Array, eps: jax.Array, action_dim: int
) -> tuple[jax.Array, jax.Array]:
    """gSDE's a = tanh(u) and log π(a|s), from the actor's ``[mean ‖ z]``, log σ and a
    standard normal ``eps`` [dim z, dim A]: θ_ε = σ·eps, u = μ + z·θ_ε, and u's
    Gaussian has variance z²·σ²."""
    mean, z = out[:, :action_dim], out[:, action_dim:]
    std = jnp.exp(log_std)
    u = mean + z @ (std * eps)
    sigma = jnp.sqrt(jnp.square(z) @ jnp.square(std) + SDE_EPSILON)
    terms = -0.5 * jnp.square((u - mean) / sigma) - jnp.log(sigma) - HALF_LOG_2PI
    return jnp.tanh(u), jnp.sum(terms - squash_correction(u), axis=-1)


def sac_steps(
    graphdef: nnx.GraphDef,
    action_dim: int,
    sde: bool,
    state: nnx.State,
    key: jax.Array,
    block: dict[str, Any],
    settings: jax.Array,
    auto_ent_coef: bool,
) -> tuple[nnx.State, jax.Array, dict[str, jax.Array]]:
    """SAC's gradient steps on a block of minibatches, one ``jax.lax.scan``; per step
    ``critic_loss``, ``actor_loss`` and ``entropy`` (−E[log π(a|s)]). With ``sde``
    one θ_ε serves a step's a and a′ alike (SB3's reset_noise)."""
    tau, target_entropy = settings[0], settings[1]

    def policy(actor: nnx.Module, obs: Any, eps: jax.Array) -> tuple[jax.Array, jax.Array]:
        if sde:
            return sde_squash(actor(obs), sde_head(actor).log_std[...], eps, action_dim)
        return squash(actor(obs), eps, action_dim)

    def step(m: dict[str, Any], batch: dict[str, Any], _: Any, key: jax.Array) -> dict:
        obs = batch["observations"]
        actor, critic, temperature = m["actor"], m["critic"], m["temperature"]
        if sde:
            eps_pi = eps_next = jax.random.normal(key, sde_head(actor).log_std.shape)
        else:
            eps_pi, eps_next = jax.random.normal(key, (2, *batch["actions"].shape), jnp.float32)
        _, log_pi = policy(actor, obs, eps_pi)
        log_pi = jax.lax.stop_gradient(log_pi)
        # The α of this step's target and J_π: before its own update, as SB3.
        alpha = jnp.exp(temperature.log_alpha[...][0])

        if auto_ent_coef:
            # J(α) = E[−α·(log π(a|s) + H̄)], taken as SB3 does on log α.
            def alpha_loss(temperature: Temperature) -> jax.Array:
                return -temperature.log_alpha[...][0] * (jnp.mean(log_pi) + target_entropy)

            m["alpha_optimizer"].update(temperature, nnx.grad(alpha_loss)(temperature))

        a_next, log_next = policy(actor, batch["next_observations"], eps_next)
        # y = r + γ(1 − d)·(minⱼ Q̄ⱼ(s′, a′) − α log π(a′|s′))
        y = bootstrap(m["critic_target"], batch, a_next, -alpha * log_next)
        # J_Q = ½ Σⱼ E[(Qⱼ(s, a) − y)²]
        critic_loss = critic_step(critic, m["critic_optimizer"], batch, y, 0.5)

        # J_π = E[α log π(a|s) − minⱼ Qⱼ(s, a)], through the updated critics; actor only
        def actor_loss(actor: nnx.Module, critic: nnx.Module) -> jax.Array:
            a_pi, log_prob = policy(actor, obs, eps_pi)
            q_pi = jnp.min(critic(obs, a_pi), axis=1)
            return jnp.mean(alpha * log_prob - q_pi)

        loss, grads = nnx.value_and_grad(actor_loss)(actor, critic)
        m["actor_optimizer"].update(actor, grads)

        polyak(m["critic_target"], critic, tau)
        return {"critic_loss": critic_loss, "actor_loss": loss, "entropy": -jnp.mean(log_pi)}

    return scan_steps(graphdef, step, state, key, (block, None))


# Jitted once for every agent, keyed on the graphdef of what it trains: agents built
# alike share their compilations (one per block size and value of auto_ent_coef).
SAC_STEPS = jax.jit(sac_steps, static_argnums=(0, 1, 2), static_argnames="auto_ent_coef")


def make_sac(
    observation_space: gym.Space,
    action_space: gym.Space,
    *,
    hyperparams: HyperparamSet | None = None,
    device: str = "auto",
    seed: int | None = None,
    hidden: Sequence[int] = (256, 256),
    extractor: nnx.Module | None = None,
) -> FlaxSACAgent:
    """The AgentSpec factory: SB3's networks (features extractors chosen from the
    observation space, then ReLU MLPs of widths ``hidden``), twin critics fused;
    with ``use_sde`` the actor's head is ``StateDependentNoise``. ``extractor``
    replaces the default features extractor (the critics get a clone)."""
    given = hyperparams.params if isinstance(hyperparams, HyperparamSet) else hyperparams
    hp = {**config.DEFAULTS, **(given or {})}

    def head(features: int, act_dim: int, rngs: nnx.Rngs) -> nnx.Module:
        if hp["use_sde"]:
            return StateDependentNoise(features, act_dim, hidden, hp["log_std_init"], rngs)
        return Head(features, 2 * act_dim, hidden, rngs)  # [mean ‖ log_std]

    return default_agent(
        FlaxSACAgent,
        observation_space,
        action_space,
        head,
        hidden=hidden,
        extractor=extractor,
        hyperparams=hyperparams,
        device=device,
        seed=seed,
    )
