"""PPO: proximal policy optimization, on any action space, in JAX (Flax NNX + optax).

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

The same algorithm as optix-torch's and optix-tf's ``algorithms/ppo.py``,
over the same shared pieces (``optix_core.on_policy``: values, GAE, the
window table; ``optix_core.algorithms.config.ppo``: hyperparameters). The
whole update of a window (every epoch and minibatch) is one jitted
function, its minibatches a ``jax.lax.scan``. A window from a compiled
pipeline (JAX arrays that never left the device) has its values and GAE
computed in that same function, so it never crosses to the host.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from optix_core.algorithms.config import ppo as config
from optix_core.normalizers import RewardNormalizer
from optix_core.on_policy import (
    ADVANTAGE,
    OLD_LOG_PROB,
    OLD_VALUE,
    RETURN,
    PPOWindow,
    explained_variance,
)
from optix_core.policies.distributions import RAW, gaussian_action_space
from optix_core.types import EpisodeData, HyperparamSet
from optix_jax.algorithms import on_policy as P
from optix_jax.base import JaxAgentBase, compiled, default_adam, new_optimizer, set_learning_rate
from optix_jax.policies import observations as O
from optix_jax.policies.distributions import Distribution
from optix_jax.policies.networks import check_actor_critic

DIAGNOSTICS = ("policy_loss", "value_loss", "approx_kl", "clip_fraction")


class FlaxPPOAgent(PPOWindow, P.OnPolicyNetworks, JaxAgentBase):
    """PPO (tensor-optix's ``FlaxPPOAgent``) on Discrete, MultiDiscrete, MultiBinary or Box actions.

    Args:
        actor: an ``nnx.Module``, observations → the distribution's parameters
            ``[B, param_dim]``; or, with ``critic=None``, → ``(parameters,
            values [B])``, as ``ActorCritic`` (the default network) does, and
            with ``use_sde`` gSDE's ``StateDependentActorCritic``.
        critic: observations → ``[B, 1]`` state values, or None (see ``actor``).
        optimizer: an optax transformation with its learning rate injected
            (``optax.inject_hyperparams``); default Adam (ε = 1e-5, as SB3's
            PPO). Its learning rate follows ``hyperparams``.
        hyperparams: keys of ``optix_core.algorithms.config.ppo.DEFAULTS``.
        reward_normalizer: an ``optix_core.normalizers.RewardNormalizer`` with
            one column per environment. ``normalize_reward`` makes one itself,
            and ``normalize_observations`` standardizes observations
            (``OnPolicyWindow.init_normalizers``); Python pipelines only: a compiled
            pipeline's window stays on the device, and is refused with either.
        device: "auto", "cpu", "gpu", "gpu:N" ("cuda" and "cuda:N" alike).
        seed: seeds the agent's own generators (sampling, minibatch order).
        action_space: the actions' space; without it, Discrete with as many
            actions as the actor has outputs.
        observation_space: when given, the networks are checked against it.
        distribution: a ``Distribution``, or for Box actions its name:
            "squashed_gaussian" (default) or "gaussian".
    """

    algorithm = "ppo"
    DEFAULTS = config.DEFAULTS
    BOUNDS = config.BOUNDS
    ONLINE_SEARCH_SPACE = config.ONLINE_SEARCH_SPACE
    BUILT_WITH = config.BUILT_WITH

    def __init__(
        self,
        actor: nnx.Module,
        critic: nnx.Module | None = None,
        optimizer: Any = None,
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
        with self.on_device():
            self.distribution = P.pick_distribution(
                actor, action_space, observation_space, distribution, critic is None, self.algorithm
            )
            check_actor_critic(
                actor, critic, observation_space, self.distribution.param_dim, self.algorithm
            )
            self.networks = P.PolicyNetworks(actor, critic, shared=critic is None)
            tx = optimizer or default_adam(1e-5)
            self.optimizer = new_optimizer(self.networks, tx)
        self.check_exploration()
        self.init_normalizers(reward_normalizer, observation_space)
        self.env_steps = 0  # environment steps learned from: drives anneal_steps
        self.init_networks()
        self._build_updates()
        self.apply_hyperparams()

    def compiled_policy(self, deterministic: bool = False) -> tuple[Callable, Any]:
        P.refuse_host_normalizers(self)
        return super().compiled_policy(deterministic)

    def _build_updates(self) -> None:
        graphdef, _ = nnx.split((self.networks, self.optimizer))
        self._update = compiled(ppo_update, graphdef, self.distribution)
        self._device_update = compiled(device_window_update, graphdef, self.distribution)

    # ---- schedules ------------------------------------------------------

    def apply_hyperparams(self) -> None:
        set_learning_rate(self.optimizer, self.scheduled_learning_rate())

    # ---- learning -------------------------------------------------------

    def learn(self, episode_data: EpisodeData) -> dict[str, float]:
        # Either path counts the window's steps, then sets the schedule's learning
        # rate (window_table through OnPolicyWindow, or _learn_on_device itself).
        with self.on_device():
            if P.on_device(episode_data):
                stats, clip = self._learn_on_device(episode_data)
            else:
                stats, clip = self._learn_on_host(episode_data)
        self.weights_changed()
        return {**stats, "learning_rate": self.scheduled_learning_rate(), "clip_ratio": clip}

    def _settings(self, clip: float, batch: int) -> jax.Array:
        hp = self.hp
        return jnp.asarray(
            [
                clip,
                hp["clip_range_vf"],
                hp["vf_coef"],
                hp["entropy_coef"],
                hp["max_grad_norm"],
                hp["target_kl"],
                float(bool(hp["normalize_advantage"]) and batch > 1),
                hp["gamma"],
                hp["gae_lambda"],
            ],
            dtype=jnp.float32,
        )

    def _plan(self, n: int) -> tuple[int, jax.Array, jax.Array]:
        batch = min(int(self.hp["minibatch_size"]), n)
        index, mask = P.minibatch_plan(self.rng, int(self.hp["n_epochs"]), n, batch)
        return batch, jnp.asarray(index), jnp.asarray(mask)

    def _learn_on_host(self, data: EpisodeData) -> tuple[dict[str, float], float]:
        """A window from a Python pipeline: the table on the host (as every backend),
        the update jitted."""
        obs, table, values, returns, clip = self.window_table(data)
        n = len(table)
        batch, index, mask = self._plan(n)
        state = nnx.state((self.networks, self.optimizer))
        state, out = self._update(
            state, O.to_jax(obs), jnp.asarray(table), index, mask, self._settings(clip, batch)
        )
        nnx.update((self.networks, self.optimizer), state)
        stats = {"explained_variance": explained_variance(values, returns)}
        return {**stats, **diagnostics(out, len(index))}, clip

    def _learn_on_device(self, data: EpisodeData) -> tuple[dict[str, float], float]:
        """A compiled pipeline's window: values, GAE and the update in one jitted call."""
        P.refuse_host_normalizers(self)
        steps, envs = data.rewards.shape
        n = steps * envs
        self.env_steps += n
        self.apply_hyperparams()
        clip = self.hp["clip_ratio"] * self.schedule_fraction()
        batch, index, mask = self._plan(n)
        window = {
            "observations": data.observations,
            "actions": self.device_learn_actions(data, n),
            "rewards": data.rewards,
            "terminated": data.terminated,
            "truncated": data.truncated,
            "next_observations": data.next_observations,
            "final_observations": data.final_observations,
            "log_probs": data.policy_info["log_probs"],
            "values": data.policy_info["values"],
        }
        state = nnx.state((self.networks, self.optimizer))
        state, out = self._device_update(state, window, index, mask, self._settings(clip, batch))
        nnx.update((self.networks, self.optimizer), state)
        stats = {"explained_variance": float(out["explained_variance"])}
        return {**stats, **diagnostics(out, len(index))}, clip

    def device_learn_actions(self, data: EpisodeData, n: int) -> jax.Array:
        """Learn actions ``[n, action_dim]`` of a window on the device (``Distribution.learn_actions``)."""
        raw = data.policy_info.get(RAW)
        if raw is not None:
            return raw.reshape(n, self.distribution.action_dim).astype(jnp.float32)
        start = np.asarray(getattr(self.distribution, "start", 0), dtype=np.float32)
        return data.actions.reshape(n, -1).astype(jnp.float32) - start


class FlaxGaussianPPOAgent(FlaxPPOAgent):
    """PPO on Box actions, sized by ``action_dim`` (tensor-optix's Gaussian PPO form).

    Without ``action_space`` the actions lie in (−1, 1)^action_dim; with it,
    in the Box's bounds (``action_dim``, if given too, must agree).
    """

    def __init__(
        self,
        actor: nnx.Module,
        critic: nnx.Module | None = None,
        optimizer: Any = None,
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
        action_space = gaussian_action_space(action_dim, action_space, "FlaxGaussianPPOAgent")
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


# ---- the jitted update: pure functions of the networks' and optimizer's state ----


def ppo_update(
    graphdef: nnx.GraphDef,
    distribution: Distribution,
    state: nnx.State,
    obs: Any,
    table: jax.Array,
    index: jax.Array,
    mask: jax.Array,
    settings: jax.Array,
) -> tuple[nnx.State, dict[str, jax.Array]]:
    """Every minibatch step of a window, one ``jax.lax.scan`` over the rows of ``index``
    (masked where a pass's last minibatch is short). Returns the new state and the
    sums of ``DIAGNOSTICS`` over the rows of the steps taken, their row count, the
    number of steps taken, and the entropy of the updated policy on the window."""
    clip, clip_vf, vf_coef, entropy_coef, max_norm, target_kl, normalize = settings[:7]

    def minibatch(carry: tuple, step: tuple) -> tuple[tuple, None]:
        state, sums, taken, stopped = carry
        rows_index, rows_mask = step
        networks, optimizer = nnx.merge(graphdef, state)
        rows = table[rows_index]
        advantages = P.normalized_advantages(rows[:, ADVANTAGE], rows_mask, normalize)
        batch_obs = O.take(obs, rows_index)

        def loss_fn(networks: nnx.Module) -> tuple[jax.Array, tuple]:
            params, value = networks(batch_obs)
            return ppo_loss(
                distribution,
                params,
                value,
                rows,
                advantages,
                rows_mask,
                clip,
                clip_vf,
                vf_coef,
                entropy_coef,
            )

        (_, (surrogate, error, log_ratio)), grads = nnx.value_and_grad(loss_fn, has_aux=True)(
            networks
        )
        kl = P.masked_mean(jnp.exp(log_ratio) - 1.0 - log_ratio, rows_mask)  # Schulman's k3
        stop = stopped | ((target_kl > 0) & (kl > 1.5 * target_kl))
        optimizer.update(networks, P.clip_by_global_norm(grads, max_norm))
        _, stepped = nnx.split((networks, optimizer))
        state = jax.tree_util.tree_map(lambda old, new: jnp.where(stop, old, new), state, stepped)
        stats = diagnostic_sums(surrogate, error, kl, log_ratio, clip, rows_mask)
        return (state, sums + jnp.where(stop, 0.0, stats), taken + (~stop), stop), None

    start = (state, jnp.zeros(len(DIAGNOSTICS) + 1), jnp.int32(0), jnp.bool_(False))
    (state, sums, taken, _), _ = jax.lax.scan(minibatch, start, (index, mask))
    networks, _ = nnx.merge(graphdef, state)
    entropy = jnp.mean(distribution.entropy(networks(obs)[0]))
    return state, {"sums": sums, "taken": taken, "entropy": entropy}


def device_window_update(
    graphdef: nnx.GraphDef,
    distribution: Distribution,
    state: nnx.State,
    window: dict[str, Any],
    index: jax.Array,
    mask: jax.Array,
    settings: jax.Array,
) -> tuple[nnx.State, dict[str, jax.Array]]:
    """``ppo_update`` on a compiled pipeline's window, its table built on the device:
    V after the window and of each truncated episode's final observation from the
    current networks, GAE in JAX (``on_policy.gae``), then the same minibatch steps."""
    gamma, lam = settings[7], settings[8]
    steps, envs = window["rewards"].shape
    n = steps * envs
    networks, _ = nnx.merge(graphdef, state)
    _, next_values = networks(window["next_observations"])
    finals = jax.tree_util.tree_map(
        lambda a: a.reshape(n, *a.shape[2:]), window["final_observations"]
    )
    _, final_values = networks(finals)
    values = window["values"].reshape(steps, envs)
    advantages, returns = P.gae(
        window["rewards"].astype(jnp.float32),
        values,
        window["terminated"],
        window["truncated"] & ~window["terminated"],
        next_values,
        final_values.reshape(steps, envs),
        gamma,
        lam,
    )
    columns = [
        window["log_probs"].reshape(n),
        advantages.reshape(n),
        returns.reshape(n),
        values.reshape(n),
    ]
    table = jnp.concatenate([jnp.stack(columns, axis=1), window["actions"]], axis=1)
    obs = jax.tree_util.tree_map(lambda a: a.reshape(n, *a.shape[2:]), window["observations"])
    state, out = ppo_update(graphdef, distribution, state, obs, table, index, mask, settings)
    residual = jnp.var(returns - values) / jnp.maximum(jnp.var(returns), 1e-12)
    out["explained_variance"] = jnp.where(jnp.var(returns) > 0, 1.0 - residual, 0.0)
    return state, out


def ppo_loss(
    distribution: Distribution,
    params: jax.Array,
    value: jax.Array,
    rows: jax.Array,
    advantages: jax.Array,
    mask: jax.Array,
    clip: jax.Array,
    clip_vf: jax.Array,
    vf_coef: jax.Array,
    entropy_coef: jax.Array,
) -> tuple[jax.Array, tuple[jax.Array, jax.Array, jax.Array]]:
    """L (eq. 9) for one minibatch's rows of ``mask``, from the networks' outputs on it
    and its rows of the window table; also the per-row surrogate, value error and log r."""
    log_prob = distribution.log_prob(params, rows[:, OLD_VALUE + 1 :])
    log_ratio = log_prob - rows[:, OLD_LOG_PROB]
    ratio = jnp.exp(log_ratio)  # r_t(θ), eq. 6
    # L_clip's samples, eq. 7: the pessimistic bound of the clipped surrogate.
    surrogate = jnp.minimum(
        ratio * advantages, jnp.clip(ratio, 1.0 - clip, 1.0 + clip) * advantages
    )
    old = rows[:, OLD_VALUE]
    value = jnp.where(clip_vf > 0, old + jnp.clip(value - old, -clip_vf, clip_vf), value)
    error = value - rows[:, RETURN]
    entropy = P.masked_mean(distribution.entropy(params), mask)
    loss = vf_coef * P.masked_mean(jnp.square(error), mask) - P.masked_mean(
        surrogate, mask
    )  # eq. 9
    loss -= entropy_coef * entropy
    stop = jax.lax.stop_gradient
    return loss, (stop(surrogate), stop(error), stop(log_ratio))


def diagnostic_sums(
    surrogate: jax.Array,
    error: jax.Array,
    kl: jax.Array,
    log_ratio: jax.Array,
    clip: jax.Array,
    mask: jax.Array,
) -> jax.Array:
    """One minibatch's ``DIAGNOSTICS`` summed over its rows, its row count last."""
    n_rows = jnp.sum(mask)
    clipped = (jnp.abs(jnp.exp(log_ratio) - 1.0) > clip).astype(jnp.float32)
    return jnp.stack(
        [
            -jnp.sum(surrogate * mask),
            jnp.sum(jnp.square(error) * mask),
            kl * n_rows,
            jnp.sum(clipped * mask),
            n_rows,
        ]
    )


def diagnostics(out: dict[str, jax.Array], planned: int) -> dict[str, float]:
    """The update's diagnostics per row, as every backend's PPO reports them."""
    sums, taken = np.asarray(out["sums"]), int(out["taken"])
    stats = {"updates": float(taken), "stopped_early": float(taken < planned)}
    if taken:
        stats.update(
            {k: float(s) / float(sums[-1]) for k, s in zip(DIAGNOSTICS, sums, strict=False)}
        )
        stats["entropy"] = float(out["entropy"])
    return stats


def make_ppo(
    observation_space: gym.Space,
    action_space: gym.Space,
    *,
    hyperparams: HyperparamSet | None = None,
    device: str = "auto",
    seed: int | None = None,
    **network: Any,
) -> FlaxPPOAgent:
    """The AgentSpec factory for "ppo": ``ActorCritic`` chosen from the spaces
    (Stable-Baselines3's PPO networks: [64, 64] tanh heads on flat features,
    linear heads on NatureCNN's), with the action space's distribution, or
    with ``use_sde`` gSDE's ``StateDependentActorCritic``; ``network`` holds
    their options (a preset's ``network``: ``hidden``, ``ortho_init``)."""
    return P.default_agent(
        FlaxPPOAgent, observation_space, action_space, hyperparams, device, seed, "ppo", **network
    )
