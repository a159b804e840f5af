"""What the on-policy algorithms (PPO, A2C/REINFORCE) share in JAX.

The framework-free part (the values a window bootstraps from, GAE on the
host, explained variance, PPO's window table and minibatch order) is
optix-core's ``optix_core.on_policy``, which every backend reads. This adds
the JAX half: ``PolicyNetworks`` (an actor and a critic, an actor-critic
returning both, or for REINFORCE an actor alone, as one NNX module the
optimizer steps), acting through a jitted forward pass with sampling in
numpy from the agent's generators (training's through ``OnPolicyWindow.explore``,
gSDE's held matrices with ``use_sde``), the pure policy a compiled pipeline
acts with (``compiled_policy``), GAE in JAX for windows that never leave the
device, and masked minibatch statistics for jitted updates of fixed shape.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from optix_core import on_policy
from optix_core.on_policy import gsde_log_std_init
from optix_core.policies.numpy_networks import NumpyActorCritic
from optix_core.types import EpisodeData, HyperparamSet
from optix_jax.base import compiled
from optix_jax.policies import observations as O
from optix_jax.policies.distributions import Distribution, distribution_for
from optix_jax.policies.extractors import FlattenExtractor
from optix_jax.policies.networks import ActorCritic
from optix_jax.policies.sde import StateDependentActorCritic


class PolicyNetworks(nnx.Module):
    """The networks an on-policy agent trains, as one module: ``(params [B, P], V [B])``.

    ``actor`` maps observations to the distribution's parameters; with
    ``critic`` None it returns ``(parameters, values)`` itself (``shared``),
    as ``ActorCritic`` does, or, for REINFORCE (``shared`` False), parameters
    alone, and V is 0.
    """

    def __init__(self, actor: nnx.Module, critic: nnx.Module | None, shared: bool) -> None:
        self.actor, self.critic, self.shared = actor, critic, shared

    def __call__(self, obs: Any) -> tuple[jax.Array, jax.Array]:
        if self.critic is not None:
            return self.actor(obs), self.critic(obs)[:, 0]
        if self.shared:
            params, value = self.actor(obs)
            return params, value.reshape(-1)
        params = self.actor(obs)
        return params, jnp.zeros(params.shape[:1], params.dtype)


def returns_values(actor: nnx.Module, observation_space: gym.Space | None) -> bool:
    """Whether ``actor`` returns ``(policy_output, value)`` rather than the policy output
    alone (probed on two observations; False when it cannot be probed)."""
    if isinstance(actor, ActorCritic | StateDependentActorCritic):
        return True
    if observation_space is None:
        return False
    return isinstance(O.probe(actor, O.probe_batch(observation_space)), tuple | list)


class OnPolicyNetworks:
    """Mixed into a ``JaxAgentBase``, behind ``OnPolicyWindow`` (whose ``explore``
    training acts by): call ``init_networks`` in the constructor, after
    ``self.distribution`` and ``self.optimizer`` (an ``nnx.Optimizer`` over
    ``self.networks``) are set."""

    networks: PolicyNetworks
    distribution: Distribution
    optimizer: nnx.Optimizer

    def init_networks(self) -> None:
        graphdef, self._state = nnx.split(self.networks)
        self._snapshot: NumpyActorCritic | None = None
        self._leaves, treedef = jax.tree_util.tree_flatten(self._state)
        self._forward = compiled(forward, graphdef)
        # Acting passes the state's leaves: flattening an nnx.State on every call costs
        # more than the arithmetic of a small network on a handful of rows.
        self._forward_leaves = compiled(forward_leaves, graphdef, treedef)
        # The same objects for every agent built alike: compiled pipelines cache on them.
        self._policy = pure_policy(graphdef, self.distribution, deterministic=False)
        self._mode = pure_policy(graphdef, self.distribution, deterministic=True)
        self.weights_changed()

    def modules(self) -> dict[str, nnx.Module]:
        return {"policy": self.networks}

    def optimizers(self) -> dict[str, nnx.Optimizer]:
        return {"main": self.optimizer}

    def weights_changed(self) -> None:
        """Take the networks' state again after it moved (``learn``, ``load_weights``),
        and with it the numpy snapshot acting on the CPU uses where it applies."""
        self._state = nnx.state(self.networks)
        self._leaves = jax.tree_util.tree_leaves(self._state)
        on_cpu = self.device.platform == "cpu"
        self._snapshot = numpy_snapshot(self.networks) if on_cpu else None

    def teardown(self) -> None:
        self._snapshot = None  # the numpy copy of the weights goes with them
        super().teardown()

    # ---- acting -------------------------------------------------------------

    def _numpy_forward(self, observation: Any) -> tuple[np.ndarray, np.ndarray]:
        if self._snapshot is not None:
            return self._snapshot(observation)
        with self.on_device():
            params, values = self._forward_leaves(self._leaves, O.to_jax(observation))
        return np.asarray(params), np.asarray(values)

    def act(self, observation: Any, deterministic: bool = False) -> np.ndarray:
        params = self._numpy_forward(self.observed(observation))[0]
        if deterministic:
            return self.distribution.mode(params)
        return self.distribution.sample(params, self.act_rng)[0]

    def act_info(
        self, observation: Any, episode_start: np.ndarray
    ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        params, values = self._numpy_forward(self.observed(observation))
        actions, info = self.explore(params, self.rng)
        return actions, {**info, "values": values}

    def sde_log_std(self) -> np.ndarray:
        """gSDE's log σ, held by its network (``StateDependentActorCritic``)."""
        return self.networks.actor.sde_log_std()

    def compiled_policy(self, deterministic: bool = False) -> tuple[Callable, Any]:
        """``(policy, state)`` for a compiled pipeline: ``policy(state, obs, key) ->
        (env_actions, {"log_probs", "values"[, "raw_actions"]})``, pure and jittable,
        with ``log_probs`` in the terms the update's ratio reads; ``deterministic``:
        the distribution's mode, and no info. Ask again after each ``learn`` (the
        state moves; the function stays the same object)."""
        return (self._mode if deterministic else self._policy), self._state

    def observed(self, observation: Any) -> Any:
        """Observations as the networks take them (PPO's and A2C's may standardize them)."""
        return observation

    # ---- learning -------------------------------------------------------

    def rollout_values(
        self, data: EpisodeData, obs: Any, learn_actions: np.ndarray, recorded: bool = True
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """``optix_core.on_policy.rollout_values`` through these networks."""
        return on_policy.rollout_values(
            data,
            obs,
            learn_actions,
            self.distribution,
            self._numpy_forward,
            self._numpy_log_prob,
            recorded,
        )

    def _numpy_log_prob(self, params: np.ndarray, actions: np.ndarray) -> np.ndarray:
        return np.asarray(self.distribution.log_prob(jnp.asarray(params), jnp.asarray(actions)))


def forward(graphdef: nnx.GraphDef, state: nnx.State, obs: Any) -> tuple[jax.Array, jax.Array]:
    """The networks' ``(distribution parameters, V)`` on a batch of observations."""
    return nnx.merge(graphdef, state)(obs)


def forward_leaves(
    graphdef: nnx.GraphDef, treedef: Any, leaves: list[jax.Array], obs: Any
) -> tuple[jax.Array, jax.Array]:
    """``forward`` from the state's leaves."""
    return forward(graphdef, jax.tree_util.tree_unflatten(treedef, leaves), obs)


def pure_policy(
    graphdef: nnx.GraphDef, distribution: Distribution, deterministic: bool
) -> Callable:
    """The policy a compiled pipeline acts with (``compiled_policy``), one function object
    for equal arguments: ``policy(state, obs, key) -> (env_actions, info)``."""
    try:
        return _pure_policy(graphdef, distribution, deterministic)
    except TypeError:  # a user's network with an attribute that cannot be hashed
        return _pure_policy.__wrapped__(graphdef, distribution, deterministic)


@functools.lru_cache(maxsize=64)
def _pure_policy(
    graphdef: nnx.GraphDef, distribution: Distribution, deterministic: bool
) -> Callable:
    def policy(state: Any, obs: Any, key: jax.Array) -> tuple[jax.Array, dict]:
        params, values = forward(graphdef, state, obs)
        actions, info = distribution.sample_jax(params, key)
        return actions, {**info, "values": values}

    def mode(state: Any, obs: Any, key: jax.Array) -> tuple[jax.Array, dict]:
        return distribution.mode_jax(forward(graphdef, state, obs)[0]), {}

    return mode if deterministic else policy


def numpy_snapshot(networks: PolicyNetworks) -> NumpyActorCritic | None:
    """The default network's weights in numpy (``ActorCritic`` on flat observations),
    for acting on the CPU: several times faster than a call into JAX on a handful
    of rows. None for any other network."""
    network = networks.actor
    if not (networks.shared and isinstance(network, ActorCritic)):
        return None
    if type(network.extractor) is not FlattenExtractor:
        return None
    heads = []
    for head in (network.actor_head, network.critic_head):
        layers = [
            (np.asarray(layer.kernel[...]), np.asarray(layer.bias[...]), head.activation)
            for layer in head.hidden
        ]
        layers.append((np.asarray(head.out.kernel[...]), np.asarray(head.out.bias[...]), "linear"))
        heads.append(layers)
    return NumpyActorCritic(heads)


def refuse_host_normalizers(agent: Any) -> None:
    """A compiled pipeline keeps its windows on the device, where an agent's
    normalizers (``OnPolicyWindow``'s), which work on the host's copy, cannot reach
    them; and it samples with ``sample_jax``, which cannot hold gSDE's matrices
    (``OnPolicyWindow.explore``, on the host) from step to step."""
    host = agent.reward_normalizer is not None or agent.obs_normalizer is not None
    if host or agent.hp["normalize_reward"]:
        raise ValueError(
            f"{agent.algorithm}: normalize_reward, normalize_observations and "
            "reward_normalizer work on windows on the host; a compiled pipeline's window "
            "stays on the device: build the agent without them, or train on a gymnasium "
            "environment"
        )
    if agent.hp["use_sde"]:
        raise ValueError(
            f"{agent.algorithm}: use_sde explores with matrices held on the host from step "
            "to step; a compiled pipeline samples each step on the device: build the agent "
            "without use_sde, or train on a gymnasium environment"
        )


def on_device(data: EpisodeData) -> bool:
    """Whether a window's arrays are JAX arrays (a compiled pipeline's), not numpy."""
    return isinstance(data.rewards, jax.Array)


def gae(
    rewards: jax.Array,
    values: jax.Array,
    terminated: jax.Array,
    truncated: jax.Array,
    next_values: jax.Array,
    final_values: jax.Array,
    gamma: jax.Array,
    lam: jax.Array,
) -> tuple[jax.Array, jax.Array]:
    """``optix_core.returns.compute_gae`` in JAX, for windows ``[T, N]`` that stay on the
    device: δ_t = r_t + γ V_{t+1} − V(s_t), A_t = δ_t + γλ A_{t+1} cut at episode ends
    (Schulman et al. 2016, eq. 16); V_{t+1} is 0 after a termination, the final
    observation's value after a truncation, ``next_values`` after the window."""
    done = terminated | truncated
    bootstrap = jnp.where(terminated, 0.0, final_values)
    following = jnp.concatenate([values[1:], next_values[None]], axis=0)
    last = jnp.arange(len(values)) == len(values) - 1
    next_v = jnp.where(done, bootstrap, following)
    next_v = jnp.where(last[:, None] & ~done, next_values[None], next_v)
    delta = rewards + gamma * next_v - values
    carry = gamma * lam * (~done) * (~last[:, None])

    def backward(advantage: jax.Array, step: tuple[jax.Array, jax.Array]) -> tuple:
        d, c = step
        advantage = d + c * advantage
        return advantage, advantage

    _, advantages = jax.lax.scan(
        backward, jnp.zeros_like(next_values), (delta, carry), reverse=True
    )
    return advantages, advantages + values


def minibatch_plan(
    rng: np.random.Generator, epochs: int, n: int, batch: int
) -> tuple[np.ndarray, np.ndarray]:
    """Row indices ``[M, batch]`` and a 0/1 mask of the same shape for ``epochs`` shuffled
    passes over ``n`` rows: Stable-Baselines3's minibatches (each pass ends in a shorter
    one when ``batch`` does not divide ``n``), padded to one shape for a jitted scan."""
    per_epoch = -(-n // batch)
    index = np.zeros((epochs, per_epoch * batch), dtype=np.int32)
    mask = np.zeros((epochs, per_epoch * batch), dtype=np.float32)
    for e in range(epochs):
        index[e, :n] = rng.permutation(n)
        mask[e, :n] = 1.0
    return index.reshape(-1, batch), mask.reshape(-1, batch)


def masked_mean(x: jax.Array, mask: jax.Array) -> jax.Array:
    return jnp.sum(x * mask) / jnp.maximum(jnp.sum(mask), 1.0)


def normalized_advantages(
    advantages: jax.Array, mask: jax.Array, normalize: jax.Array
) -> jax.Array:
    """(Â − mean Â) / (std Â + 1e-8) over the rows of ``mask`` where ``normalize`` > 0 and
    there is more than one row, else Â (std unbiased, as torch's)."""
    count = jnp.sum(mask)
    mean = jnp.sum(advantages * mask) / jnp.maximum(count, 1.0)
    var = jnp.sum(jnp.square(advantages - mean) * mask) / jnp.maximum(count - 1.0, 1.0)
    wanted = (normalize > 0) & (count > 1)
    return jnp.where(wanted, (advantages - mean) / (jnp.sqrt(var) + 1e-8), advantages)


def clip_by_global_norm(grads: Any, max_norm: jax.Array) -> Any:
    """Scale the gradients to a global norm of at most ``max_norm`` (torch's clip_grad_norm_)."""
    norm = jnp.sqrt(sum(jnp.sum(jnp.square(g)) for g in jax.tree_util.tree_leaves(grads)))
    scale = jnp.minimum(1.0, max_norm / (norm + 1e-6))
    return jax.tree_util.tree_map(lambda g: g * scale, grads)


def pick_distribution(
    actor: nnx.Module,
    action_space: gym.Space | None,
    observation_space: gym.Space | None,
    distribution: Distribution | str | None,
    shared: bool,
    owner: str,
) -> Distribution:
    """The distribution given, gSDE's for its network, or the one for
    ``action_space``; without a space, a categorical over as many actions as the
    actor outputs (tensor-optix's form)."""
    if isinstance(distribution, Distribution):
        return distribution
    if distribution is None and isinstance(actor, StateDependentActorCritic):
        return actor.distribution
    if action_space is None:
        if observation_space is None:
            raise ValueError(
                f"{owner}: give action_space (or observation_space to probe the actor)"
            )
        out = O.probe(actor, O.probe_batch(observation_space))
        out = out[0] if shared else out
        action_space = gym.spaces.Discrete(int(out.shape[-1]))
    return distribution_for(action_space, distribution or "squashed_gaussian", owner)


def default_agent(
    agent_cls: type,
    observation_space: gym.Space,
    action_space: gym.Space,
    hyperparams: HyperparamSet | None,
    device: str,
    seed: int | None,
    owner: str,
    **options: Any,
) -> Any:
    """An AgentSpec factory's agent: ``ActorCritic`` chosen from the spaces
    (Stable-Baselines3's networks: [64, 64] tanh heads on flat features,
    linear heads on NatureCNN's), with the action space's distribution; with
    ``use_sde``, ``StateDependentActorCritic``. ``options`` are the network's
    (``hidden``, ``ortho_init``)."""
    from optix_jax.device import resolve_device

    log_std_init = gsde_log_std_init(agent_cls, hyperparams, action_space, owner)
    with jax.default_device(resolve_device(device)):
        if log_std_init is not None:
            network = StateDependentActorCritic(
                observation_space, action_space, log_std_init=log_std_init, seed=seed, **options
            )
            distribution = network.distribution
        else:
            distribution = distribution_for(action_space, owner=owner)
            network = ActorCritic(observation_space, distribution.param_dim, seed=seed, **options)
    return agent_cls(
        network,
        hyperparams=hyperparams,
        device=device,
        seed=seed,
        action_space=action_space,
        observation_space=observation_space,
        distribution=distribution,
    )
