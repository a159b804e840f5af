"""FlaxTD3Agent: twin delayed deep deterministic policy gradient, in JAX (Flax NNX + optax).

Fujimoto et al. (2018), "Addressing Function Approximation Error in
Actor-Critic Methods", as Stable-Baselines3 runs it, and as optix-torch's
and optix-tf's ``algorithms/td3.py``. Per gradient step, on a minibatch
from replay:

    ã = clip(π̄(s′) + clip(σ̃·ε, −c, c), −1, 1),  ε ~ N(0, I)   (target policy smoothing)
    y = r + γ(1 − d)·minⱼ Q̄ⱼ(s′, ã)                           (clipped double Q-learning)
    L_Q = Σⱼ E[(Qⱼ(s, a) − y)²]

and every ``policy_delay``-th step (delayed policy updates):

    L_π = −E[Q₁(s, π(s))]                                      (deterministic policy gradient)
    Q̄ ← τ·Q + (1 − τ)·Q̄,   π̄ ← τ·π + (1 − τ)·π̄                (Polyak)

A block of such steps is one jitted call, a ``jax.lax.scan`` over its
minibatches; the delayed part is a ``jax.lax.cond`` on each step's place in
the count of updates (``n_updates`` counted before the step, as SB3), so it
runs only when due. ε comes from the agent's ``jax.random`` key, which a
checkpoint keeps. Exploration adds N(0, expl_noise²) to π(s), or with
``ou_noise`` an Ornstein-Uhlenbeck process (``optix_core.off_policy.exploration``),
drawn from the agent's numpy generator, and clips to (−1, 1). The actor outputs
``action_dim`` values in (−1, 1) (end it with a tanh); actions are scaled to
the Box bounds.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from typing import Any

import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from optix_core.algorithms.config import td3 as config
from optix_core.off_policy.exploration import TD3Exploration
from optix_core.types import HyperparamSet
from optix_jax.algorithms.off_policy import (
    Head,
    OffPolicyAgent,
    bootstrap,
    critic_step,
    default_agent,
    polyak,
    scan_steps,
)


class FlaxTD3Agent(TD3Exploration, OffPolicyAgent):
    """TD3 on a continuous (Box) action space.

    ``actor`` maps observations to actions in (−1, 1); ``critic1`` and
    ``critic2`` map ``[φ(s) ‖ action]`` to Q (or one fused ``critics``). The
    other arguments are ``OffPolicyAgent``'s.
    """

    algorithm = "td3"
    DEFAULTS = config.DEFAULTS
    BOUNDS = config.BOUNDS
    ONLINE_SEARCH_SPACE = config.SEARCH_SPACE

    def setup(self) -> None:
        self.actor_target = nnx.clone(self.actor)
        self._steps = partial(TD3_STEPS, nnx.graphdef(self.trained()))

    def modules(self) -> dict[str, nnx.Module]:
        return {
            "actor": self.actor,
            "actor_target": self.actor_target,
            "critic": self.critic,
            "critic_target": self.critic_target,
        }

    def optimizers(self) -> dict[str, nnx.Optimizer]:
        return {"actor": self.actor_optimizer, "critic": self.critic_optimizer}

    # ---- acting -------------------------------------------------------------

    # ---- learning -----------------------------------------------------------

    def update_block(
        self, state: nnx.State, key: jax.Array, block: dict[str, Any], n_updates: int
    ) -> tuple[nnx.State, jax.Array, dict[str, jax.Array]]:
        hp = self.hp
        count = int(block["rewards"].shape[0])
        # Step k of the block is update n_updates + k + 1 (counted before it, as SB3).
        number = n_updates + 1 + np.arange(count)
        due = jnp.asarray(number % int(hp["policy_delay"]) == 0)
        settings = jnp.asarray([hp["tau"], hp["target_noise"], hp["noise_clip"]], jnp.float32)
        return self._steps(state, key, block, due, settings)

    def summarize(self, stats: list[dict[str, np.ndarray]]) -> dict[str, float]:
        """The critics' loss over every step; the actor's over the steps it was due."""
        if not stats:
            return {}
        critic_loss = np.concatenate([s["critic_loss"] for s in stats])
        out = {"critic_loss": float(np.mean(critic_loss))}
        due = np.concatenate([s["actor_due"] for s in stats])
        if due.any():
            out["actor_loss"] = float(
                np.mean(np.concatenate([s["actor_loss"] for s in stats])[due])
            )
        return out


def td3_steps(
    graphdef: nnx.GraphDef,
    state: nnx.State,
    key: jax.Array,
    block: dict[str, Any],
    due: jax.Array,
    settings: jax.Array,
) -> tuple[nnx.State, jax.Array, dict[str, jax.Array]]:
    """TD3's gradient steps on a block of minibatches, one ``jax.lax.scan``; the actor's
    and the targets' part on the steps ``due`` marks. Per step ``critic_loss``,
    ``actor_loss`` (0 when not due) and ``actor_due``."""
    tau, sigma, clip = settings[0], settings[1], settings[2]

    def step(m: dict[str, Any], batch: dict[str, Any], due: jax.Array, key: jax.Array) -> dict:
        # Target policy smoothing: ã = clip(π̄(s′) + clip(σ̃·ε, −c, c), −1, 1)
        noise = jax.random.normal(key, batch["actions"].shape, jnp.float32)
        smoothing = jnp.clip(noise * sigma, -clip, clip)
        next_obs = batch["next_observations"]
        a_next = jnp.clip(m["actor_target"](next_obs) + smoothing, -1.0, 1.0)
        y = bootstrap(m["critic_target"], batch, a_next)  # r + γ(1 − d)·minⱼ Q̄ⱼ(s′, ã)
        critic_loss = critic_step(m["critic"], m["critic_optimizer"], batch, y, 1.0)

        def delayed(m: dict[str, Any]) -> jax.Array:
            """L_π = −E[Q₁(s, π(s))], a step of the actor only, then both targets' Polyak."""
            obs = batch["observations"]

            def actor_loss(actor: nnx.Module, critic: nnx.Module) -> jax.Array:
                return -jnp.mean(critic.q1(obs, actor(obs)))

            loss, grads = nnx.value_and_grad(actor_loss)(m["actor"], m["critic"])
            m["actor_optimizer"].update(m["actor"], grads)
            polyak(m["critic_target"], m["critic"], tau)
            polyak(m["actor_target"], m["actor"], tau)
            return loss

        def skipped(m: dict[str, Any]) -> jax.Array:
            return jnp.zeros((), jnp.float32)

        actor_loss = nnx.cond(due, delayed, skipped, m)
        return {"critic_loss": critic_loss, "actor_loss": actor_loss, "actor_due": due}

    return scan_steps(graphdef, step, state, key, (block, due))


# Jitted once for every agent, keyed on the graphdef of what it trains: agents built
# alike share their compilations (one per block size).
TD3_STEPS = jax.jit(td3_steps, static_argnums=0)


def make_td3(
    observation_space: gym.Space,
    action_space: gym.Space,
    *,
    hyperparams: HyperparamSet | None = None,
    device: str = "auto",
    seed: int | None = None,
    hidden: Sequence[int] = (256, 256),
    extractor: nnx.Module | None = None,
) -> FlaxTD3Agent:
    """The AgentSpec factory: SB3's networks (features extractors chosen from the
    observation space, then ReLU MLPs of widths ``hidden``, a tanh actor), critics
    fused. ``extractor`` replaces the default features extractor (the critics get
    a clone)."""

    def head(features: int, act_dim: int, rngs: nnx.Rngs) -> nnx.Module:
        return Head(features, act_dim, hidden, rngs, output_activation="tanh")

    return default_agent(
        FlaxTD3Agent,
        observation_space,
        action_space,
        head,
        hidden=hidden,
        extractor=extractor,
        hyperparams=hyperparams,
        device=device,
        seed=seed,
    )
