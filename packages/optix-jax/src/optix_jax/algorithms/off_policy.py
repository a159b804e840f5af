"""What SAC and TD3 share in JAX: their networks over the policy layer and the update loop.

The JAX twin of optix-torch's and optix-tf's ``algorithms/off_policy.py``.
``OffPolicyAgent`` is the plumbing of an off-policy actor-critic, in the
manner of Stable-Baselines3's ``OffPolicyAlgorithm``: it checks the networks
against the spaces, acts (uniformly at random until ``learning_starts``),
and hands the algorithm the blocks of minibatches each window earned, from
``replay.JaxReplayAgent`` (optix-core's replay memory and SB3's schedule,
which DQN shares). It also holds the pieces both updates compute alike: the
clipped double-Q target from the target critics, the critics' regression
step and Polyak averaging. The algorithm (``sac.py``, ``td3.py``) writes its
policy and its gradient step as a pure function of the networks' and
optimizers' state; a whole block of minibatches is one jitted call, a
``jax.lax.scan`` of that step. What needs no JAX (scaling actions to the
Box, the checks of the action space and of the two critics, turning the
actor's outputs into actions with the agent's numpy generators) is
optix-core's ``off_policy.actor_critic`` and ``off_policy.acting``.

The networks read observations as the policy layer gives them
(``policies.observations``: uint8 images stay uint8, Discrete indices stay
integers, a Dict is a dict of arrays). As in SB3 (``share_features_extractor
=False``) the actor and the critics each have their own features extractor
φ: the actor is ``Actor`` (φ, then an MLP head), the critics ``Critic`` (φ,
then both Q-functions on ``[φ(s) ‖ a]``, fused in one ``TwinQ`` by default).
Flat vectors need no φ: there the actor is the MLP itself and the critics
read ``[s ‖ a]``. Networks act in (−1, 1); ``ActionScaler`` maps that to the
Box bounds for the environment and recorded actions back for learning.

Target networks are clones of the networks (``nnx.clone``): separate NNX
state, saved with the checkpoint, moved towards the networks by Polyak
averaging of their ``nnx.Param``s inside the jitted step.

Randomness inside the update (SAC's reparameterised samples, TD3's target
smoothing noise) comes from a ``jax.random`` key the agent owns: each block
call splits it and returns the next one, and a checkpoint keeps it (as two
integers in ``state.json``), so a resumed run draws the same noise.
Exploration noise is drawn on the host from the agent's numpy generators,
as every backend draws it.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Callable, Sequence
from typing import Any, ClassVar, TypeVar

import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from optix_core.off_policy import (
    ActionScaler,
    action_size,
    check_action_space,
    check_twin_critics,
)
from optix_core.off_policy.acting import uniform_actions
from optix_core.types import EpisodeData, HyperparamSet
from optix_jax.algorithms.replay import JaxReplayAgent
from optix_jax.base import default_adam, new_optimizer
from optix_jax.device import resolve_device
from optix_jax.policies import observations as O
from optix_jax.policies.extractors import UniformInit, default_extractor, features_dim
from optix_jax.policies.extractors import torch_linear as linear
from optix_jax.policies.networks import ACTIVATIONS

# ---- networks ---------------------------------------------------------------


class Head(nnx.Module):
    """Dense layers of widths ``hidden`` with ``activation``, then ``out_dim`` outputs
    (through ``output_activation`` if given), initialised as torch's ``nn.Linear``."""

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        hidden: Sequence[int],
        rngs: nnx.Rngs,
        activation: str = "relu",
        output_activation: str | None = None,
    ) -> None:
        for name in (activation, output_activation):
            if name is not None and name not in ACTIVATIONS:
                raise ValueError(f"unknown activation {name!r}; use one of {sorted(ACTIVATIONS)}")
        dims = [in_dim, *hidden, out_dim]
        self.layers = nnx.List([linear(a, b, rngs) for a, b in itertools.pairwise(dims)])
        self.activation, self.output_activation = activation, output_activation

    def __call__(self, x: jax.Array) -> jax.Array:
        act = ACTIVATIONS[self.activation]
        for layer in self.layers[:-1]:
            x = act(layer(x))
        x = self.layers[-1](x)
        return x if self.output_activation is None else ACTIVATIONS[self.output_activation](x)


class TwinQ(nnx.Module):
    """Two Q-networks ``[features ‖ action] → Q`` evaluated as one.

    Each layer holds both critics' weights stacked on a leading axis and runs
    as one batched matmul, so the pair costs the operations of a single
    network. Calling it returns ``[B, 2]`` (one column per critic); ``q1``
    runs the first critic alone. Initialised like torch's ``nn.Linear``.
    """

    def __init__(
        self,
        in_dim: int,
        hidden: Sequence[int] = (256, 256),
        activation: str = "relu",
        n_critics: int = 2,
        rngs: nnx.Rngs | None = None,
    ) -> None:
        if activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}; use one of {sorted(ACTIVATIONS)}")
        rngs = rngs or nnx.Rngs(0)
        self.in_dim, self.n_critics, self.activation = in_dim, n_critics, activation
        dims = [in_dim, *hidden, 1]
        kernels, biases = [], []
        for fan_in, fan_out in itertools.pairwise(dims):
            init = UniformInit(1.0 / math.sqrt(fan_in))
            kernels.append(nnx.Param(init(rngs.params(), (n_critics, fan_in, fan_out))))
            biases.append(nnx.Param(init(rngs.params(), (n_critics, 1, fan_out))))
        self.kernels, self.biases = nnx.List(kernels), nnx.List(biases)

    def __call__(self, x: jax.Array) -> jax.Array:
        h = jnp.broadcast_to(x[None], (self.n_critics, *x.shape))
        for i, (kernel, bias) in enumerate(zip(self.kernels, self.biases, strict=True)):
            h = jnp.matmul(h, kernel[...]) + bias[...]
            if i < len(self.kernels) - 1:
                h = ACTIVATIONS[self.activation](h)
        return h[..., 0].T  # [B, n_critics]

    def q1(self, x: jax.Array) -> jax.Array:
        h = x
        for i, (kernel, bias) in enumerate(zip(self.kernels, self.biases, strict=True)):
            h = h @ kernel[0] + bias[0]
            if i < len(self.kernels) - 1:
                h = ACTIVATIONS[self.activation](h)
        return h  # [B, 1]


class CriticPair(nnx.Module):
    """Two user-built critics (``[features ‖ action] → [B, 1]`` each) as one ``[B, 2]`` module."""

    def __init__(self, critic1: nnx.Module, critic2: nnx.Module) -> None:
        self.critic1, self.critic2 = critic1, critic2

    def __call__(self, x: jax.Array) -> jax.Array:
        return jnp.concatenate([self.critic1(x), self.critic2(x)], axis=1)

    def q1(self, x: jax.Array) -> jax.Array:
        return self.critic1(x)


class Actor(nnx.Module):
    """The factories' actor: observations → features φ(s) → MLP head → the algorithm's outputs."""

    def __init__(self, extractor: nnx.Module, head: nnx.Module) -> None:
        self.extractor, self.head = extractor, head

    def __call__(self, obs: Any) -> jax.Array:
        return self.head(self.extractor(obs))


class Critic(nnx.Module):
    """Both Q-functions: Qⱼ(s, a) = headⱼ([φ(s) ‖ a]), φ the critics' features extractor.

    ``heads`` maps ``[B, features + A]`` to ``[B, 2]``: ``TwinQ`` by default,
    ``CriticPair`` for tensor-optix's two critics, or any such module.
    ``extractor`` None: flat vectors are their own features.
    """

    def __init__(self, extractor: nnx.Module | None, heads: nnx.Module) -> None:
        self.extractor, self.heads = extractor, heads

    def inputs(self, obs: Any, actions: jax.Array) -> jax.Array:
        if self.extractor is None:
            features = obs.reshape(obs.shape[0], -1).astype(jnp.float32)
        else:
            features = self.extractor(obs)
        return jnp.concatenate([features, actions], axis=1)

    def __call__(self, obs: Any, actions: jax.Array) -> jax.Array:
        """``[B, 2]``: Q₁(s, a) and Q₂(s, a)."""
        return self.heads(self.inputs(obs, actions))

    def q1(self, obs: Any, actions: jax.Array) -> jax.Array:
        """``[B, 1]``: Q₁ alone, the heads' ``q1`` when they have one."""
        x = self.inputs(obs, actions)
        q1 = getattr(self.heads, "q1", None)
        return q1(x) if q1 is not None else self.heads(x)[:, :1]


def polyak(target: nnx.Module, online: nnx.Module, tau: jax.Array) -> None:
    """θ_tgt ← τ·θ + (1 − τ)·θ_tgt, for each ``nnx.Param`` of the target (inside a jitted step)."""
    moved = jax.tree_util.tree_map(
        lambda t, o: t + tau * (o - t),
        nnx.state(target, nnx.Param),
        nnx.state(online, nnx.Param),
    )
    nnx.update(target, moved)


def features_extractor(space: gym.Space | None, rngs: nnx.Rngs) -> nnx.Module | None:
    """The policy layer's default extractor for ``space``; None for flat vectors.

    Observations of a 1-D float Box arrive as the float32 ``[B, d]`` an MLP
    reads, so they are their own features (nor is there an extractor without
    a space, where tensor-optix's networks read flat vectors).
    """
    if space is None or (
        isinstance(space, gym.spaces.Box)
        and len(space.shape) == 1
        and np.issubdtype(space.dtype, np.floating)
    ):
        return None
    return default_extractor(space, rngs)


def features_width(extractor: nnx.Module | None, space: gym.Space) -> int:
    """How many features ``extractor`` (None: the flat vector itself) gives on ``space``."""
    return int(np.prod(space.shape)) if extractor is None else features_dim(extractor, space)


def twin_critics(
    critic1: nnx.Module | None,
    critic2: nnx.Module | None,
    critics: nnx.Module | None,
    owner: str,
) -> nnx.Module:
    """One ``[B, 2]`` module from tensor-optix's two critics, or a fused one as given."""
    check_twin_critics(critic1, critic2, critics, owner)
    return critics if critics is not None else CriticPair(critic1, critic2)


def input_width(network: nnx.Module) -> int | None:
    """The input width of a network that starts with a dense layer (its first
    ``nnx.Linear`` in graph order, or a ``TwinQ``); None when that cannot be told."""
    if isinstance(network, TwinQ):
        return network.in_dim
    for _, node in nnx.iter_graph(network):
        if isinstance(node, nnx.Linear):
            return int(node.in_features)
        if isinstance(node, nnx.Conv | TwinQ):
            return None
    return None


def seeded_rngs(seeds: np.random.Generator) -> nnx.Rngs:
    """``nnx.Rngs`` for one network, seeded from ``seeds``."""
    return nnx.Rngs(int(seeds.integers(2**31 - 1)))


AgentT = TypeVar("AgentT", bound="OffPolicyAgent")


def default_agent(
    agent_class: type[AgentT],
    observation_space: gym.Space,
    action_space: gym.Space,
    head: Callable[[int, int, nnx.Rngs], nnx.Module],
    *,
    hidden: Sequence[int],
    extractor: nnx.Module | None,
    hyperparams: HyperparamSet | dict[str, Any] | None,
    device: str,
    seed: int | None,
) -> AgentT:
    """The factories' agent, built as SB3 builds SAC's and TD3's policies.

    The actor is ``Actor(φ_π, head(features, action_dim, rngs))``; the critics
    are ``Critic(φ_Q, TwinQ)``, two ReLU MLPs of widths ``hidden`` on
    ``[φ_Q(s) ‖ a]``. φ_π and φ_Q are separate extractors: ``extractor`` and a
    clone of it (``nnx.clone``), or each the policy layer's default for the
    observation space. On flat vectors there is none: the actor is the head
    alone and the critics read ``[s ‖ a]``. Every network is initialised
    from ``seed`` (randomly without one).
    """
    check_action_space(agent_class.algorithm, action_space)
    O.check_observation_space(observation_space, agent_class.algorithm)
    act_dim = int(np.prod(action_space.shape))
    seeds = np.random.default_rng(seed)
    with jax.default_device(resolve_device(device)):
        if extractor is None:
            actor_extractor = features_extractor(observation_space, seeded_rngs(seeds))
            critic_extractor = features_extractor(observation_space, seeded_rngs(seeds))
        else:
            actor_extractor, critic_extractor = extractor, nnx.clone(extractor)
        policy = head(
            features_width(actor_extractor, observation_space), act_dim, seeded_rngs(seeds)
        )
        actor = policy if actor_extractor is None else Actor(actor_extractor, policy)
        width = features_width(critic_extractor, observation_space) + act_dim
        critics = TwinQ(width, hidden, rngs=seeded_rngs(seeds))
    return agent_class(
        actor,
        critics=critics,
        critic_extractor=critic_extractor,
        hyperparams=hyperparams,
        device=device,
        seed=seed,
        observation_space=observation_space,
        action_space=action_space,
    )


# ---- the agent ----------------------------------------------------------------


def actor_forward(graphdef: nnx.GraphDef, state: nnx.State, obs: Any) -> jax.Array:
    """The actor's outputs on a batch of observations."""
    return nnx.merge(graphdef, state)(obs)


# Jitted once for every agent, keyed on the actor's graphdef: compiled once per
# architecture and batch shape.
ACT = jax.jit(actor_forward, static_argnums=0)


class OffPolicyAgent(JaxReplayAgent):
    """Networks, acting and the update loop shared by SAC and TD3.

    The constructor takes tensor-optix's arguments: ``actor``, ``critic1``
    and ``critic2`` (NNX modules on ``[φ(s) ‖ a]`` giving ``[B, 1]``, or one
    fused ``critics`` module giving ``[B, 2]``), ``action_dim`` and the
    actor's and critics' optax transformations (their learning rate injected
    with ``optax.inject_hyperparams``, so that it follows ``learning_rate``;
    Adam for each one left out); optix adds ``critic_extractor`` (the
    critics' φ; default the policy layer's for ``observation_space``, none on
    flat vectors or without a space, where φ(s) = s), ``observation_space``
    and ``action_space`` (networks are then checked, and actions scaled to
    the bounds) and ``seed`` (the agent's generators and its update key).
    Without an ``observation_space`` the networks are probed on flat vectors
    as wide as the actor's first dense layer, when it has one.

    Subclasses set ``ONLINE_SEARCH_SPACE`` (their config's ``SEARCH_SPACE``)
    and ``ACTOR_OUTPUTS``, and write ``setup`` (what is their own: targets,
    temperature), ``trained`` (every NNX object the update changes, by name),
    ``unit_actions`` (the actor's outputs → actions in [−1, 1], in numpy) and
    ``update_block`` (one block of gradient steps, one jitted call).
    """

    ACTOR_OUTPUTS: ClassVar[int] = 1  # the actor's outputs per action dimension

    def __init__(
        self,
        actor: nnx.Module,
        critic1: nnx.Module | None = None,
        critic2: nnx.Module | None = None,
        action_dim: int | None = None,
        actor_optimizer: Any = None,
        critic_optimizer: Any = None,
        hyperparams: HyperparamSet | dict[str, Any] | None = None,
        device: str = "auto",
        seed: int | None = None,
        *,
        critics: nnx.Module | None = None,
        critic_extractor: nnx.Module | None = None,
        observation_space: gym.Space | None = None,
        action_space: gym.Space | None = None,
    ) -> None:
        super().__init__(hyperparams, device, seed)
        heads = twin_critics(critic1, critic2, critics, self.algorithm)
        self.action_dim = action_size(action_dim, action_space, self.algorithm)
        self.scaler = ActionScaler(self.action_dim, action_space)
        with self.on_device():
            if critic_extractor is None:
                critic_extractor = features_extractor(
                    observation_space, seeded_rngs(np.random.default_rng(seed))
                )
            self.actor = actor
            self.critic = Critic(critic_extractor, heads)
            self.check_networks(observation_space)
            self.critic_target = nnx.clone(self.critic)
            self.actor_optimizer = new_optimizer(self.actor, actor_optimizer or default_adam(1e-8))
            self.critic_optimizer = new_optimizer(
                self.critic, critic_optimizer or default_adam(1e-8)
            )
            # The update's own randomness: a raw jax.random key (uint32[2]) from the seed.
            entropy = np.random.SeedSequence(seed, spawn_key=(0x0FF,))
            self.update_key = jnp.asarray(entropy.generate_state(2, np.uint32))
            self.setup()
        self._act = functools.partial(ACT, nnx.graphdef(self.actor))
        self._actor_state = nnx.state(self.actor)
        self.apply_hyperparams()

    def setup(self) -> None:
        """Build what is the algorithm's own, once the shared networks are in place."""

    def trained(self) -> dict[str, Any]:
        """Every NNX object the update changes, by name: ``modules()`` (networks,
        targets), then each of ``optimizers()`` as ``NAME_optimizer``."""
        optimizers = {f"{name}_optimizer": o for name, o in self.optimizers().items()}
        return {**self.modules(), **optimizers}

    def weights_changed(self) -> None:
        self._actor_state = nnx.state(self.actor)

    def teardown(self) -> None:
        self._actor_state = None  # the actor's buffers, freed with it
        super().teardown()

    # ---- the networks' checks ----------------------------------------------------

    def check_networks(self, observation_space: gym.Space | None) -> None:
        """Run two observations through the actor and the critics and insist on
        their output widths, before any work starts. The observations come
        from the space or, without one, are zero vectors as wide as the actor's
        first dense layer; where neither tells what the actor reads, the
        networks are trusted."""
        if observation_space is not None:
            probe = O.probe_batch(observation_space)
            given = f"observations from {observation_space}"
        else:
            width = input_width(self.actor)
            if width is None:
                return
            probe = jnp.zeros((2, width), jnp.float32)
            given = f"inputs of shape ({width},)"
        out = self._probe("actor", self.actor, (probe,), given)
        self._expect_width("actor", out, self.actor_width())
        features = probe
        if self.critic.extractor is not None:
            features = self._probe(
                "critics' features extractor", self.critic.extractor, (probe,), given
            )
            if features.ndim != 2:
                raise ValueError(
                    f"{self.algorithm}: the critics' features extractor must return "
                    f"[batch, features], got shape {tuple(features.shape)}"
                )
        else:
            features = features.reshape(2, -1)
        width = int(features.shape[1]) + self.action_dim
        inputs = jnp.zeros((2, width), jnp.float32)
        q = self._probe("twin critic", self.critic.heads, (inputs,), f"inputs of width {width}")
        self._expect_width("twin critic", q, 2)

    def actor_width(self) -> int:
        """The actor's outputs per observation."""
        return self.ACTOR_OUTPUTS * self.action_dim

    def _probe(self, role: str, network: Any, inputs: tuple, given: str) -> Any:
        try:
            return O.probe(network, *inputs)
        except Exception as exc:
            message = str(exc).strip().splitlines()
            raise ValueError(
                f"{self.algorithm}: the {role} network does not take {given} "
                f"({message[0] if message else type(exc).__name__})"
            ) from None

    def _expect_width(self, role: str, out: Any, expected: int) -> None:
        shape = tuple(getattr(out, "shape", ()))
        if len(shape) != 2 or shape[1] != expected:
            raise ValueError(
                f"{self.algorithm}: the {role} network outputs shape {shape[1:]} "
                f"per observation, expected ({expected},) for this action space"
            )

    # ---- acting ---------------------------------------------------------

    def unit_actions(
        self, out: np.ndarray, deterministic: bool, rng: np.random.Generator
    ) -> np.ndarray:
        """Actions in [−1, 1] from the actor's outputs (numpy)."""
        raise NotImplementedError

    def actor_outputs(self, observation: Any) -> np.ndarray:
        """The actor on a batch of observations, jitted (compiled once per batch shape)."""
        if self._actor_state is None:  # torn down: the released actor raises a clear error
            self.actor(observation)
        with self.on_device():
            return np.asarray(self._act(self._actor_state, O.to_jax(observation)))

    def act(self, observation: Any, deterministic: bool = False) -> np.ndarray:
        unit = self.unit_actions(self.actor_outputs(observation), deterministic, self.act_rng)
        return self.scaler.to_env(unit)

    def act_info(self, observation: Any, episode_start: np.ndarray) -> tuple[np.ndarray, dict]:
        n = O.batch_size(observation)
        if self.warming_up:
            # SB3's warm-up: uniform random actions until learning starts.
            unit = uniform_actions(self.rng, n, self.action_dim)
        else:
            unit = self.unit_actions(self.actor_outputs(observation), False, self.rng)
        self._acting_steps += n
        return self.scaler.to_env(unit), {}

    # ---- learning -------------------------------------------------------------

    def learn(self, episode_data: EpisodeData) -> dict[str, float]:
        """Store the window, take the gradient steps it earned (one jitted call per block
        of minibatches), return their mean diagnostics."""
        stats: list[dict[str, np.ndarray]] = []
        # Replay keeps actions as the networks make them, in [−1, 1].
        for block in self.replay_minibatches(self.scaler.unit_window(episode_data)):
            block.pop("indices", None)
            count = int(block["rewards"].shape[0])
            trained = self.trained()
            with self.on_device():
                state, self.update_key, out = self.update_block(
                    nnx.state(trained), self.update_key, block, self.n_updates
                )
            nnx.update(trained, state)
            self.n_updates += count
            stats.append(jax.device_get(out))
        self.weights_changed()
        return {**self.summarize(stats), **self.replay_stats()}

    def update_block(
        self, state: nnx.State, key: jax.Array, block: dict[str, Any], n_updates: int
    ) -> tuple[nnx.State, jax.Array, dict[str, jax.Array]]:
        """The gradient steps ``n_updates + 1`` … ``n_updates + count`` on a block of
        minibatches ``[count, batch_size, ...]``, from the state of ``trained()``;
        the new state, the next key and per-step diagnostics ``[count]``."""
        raise NotImplementedError

    def summarize(self, stats: list[dict[str, np.ndarray]]) -> dict[str, float]:
        """The window's diagnostics: each one's mean over the steps taken."""
        if not stats:
            return {}
        return {key: float(np.mean(np.concatenate([s[key] for s in stats]))) for key in stats[0]}

    def extra_state(self) -> dict[str, Any]:
        key = np.asarray(jax.device_get(self.update_key)).reshape(-1)
        return {**super().extra_state(), "update_key": [int(k) for k in key]}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        super().load_extra_state(state)
        key = state.get("update_key")
        if key is not None:
            with self.on_device():
                self.update_key = jnp.asarray(np.asarray(key, dtype=np.uint32))


# ---- what both updates compute alike (inside their jitted steps) -------------------


def bootstrap(
    critic_target: nnx.Module,
    batch: dict[str, Any],
    next_actions: jax.Array,
    bonus: jax.Array | None = None,
) -> jax.Array:
    """The clipped double-Q target y = r + γ(1 − d)·(minⱼ Q̄ⱼ(s′, a′) + bonus).

    Clipped double Q-learning (Fujimoto et al. 2018): the smaller of the two
    target critics' estimates. SAC's ``bonus`` is −α log π(a′|s′), making the
    bracket the soft state value. Only ``terminated`` stops bootstrapping
    (``bootstrap`` is γ(1 − terminated)): a time-limit truncation is bootstrapped.
    """
    q_next = jnp.min(critic_target(batch["next_observations"], next_actions), axis=1)
    if bonus is not None:
        q_next = q_next + bonus
    return jax.lax.stop_gradient(batch["rewards"] + batch["bootstrap"] * q_next)


def critic_step(
    critic: nnx.Module,
    optimizer: nnx.Optimizer,
    batch: dict[str, Any],
    target: jax.Array,
    scale: float,
) -> jax.Array:
    """One step on L_Q = scale·Σⱼ E[(Qⱼ(s, a) − y)²], both critics in one pass; the loss."""

    def loss_fn(critic: nnx.Module) -> jax.Array:
        q = critic(batch["observations"], batch["actions"])  # [B, 2]
        return jnp.mean(jnp.square(q - target[:, None])) * (scale * 2.0)

    loss, grads = nnx.value_and_grad(loss_fn)(critic)
    optimizer.update(critic, grads)
    return loss


def scan_steps(
    graphdef: nnx.GraphDef,
    step: Callable[[dict[str, Any], dict[str, Any], Any, jax.Array], dict[str, jax.Array]],
    state: nnx.State,
    key: jax.Array,
    xs: Any,
) -> tuple[nnx.State, jax.Array, dict[str, jax.Array]]:
    """``step(objects, batch, x, key)`` over the block's minibatches in one ``jax.lax.scan``:
    each step merges the state into the trained objects, changes them, and carries their
    new state and the next key. ``xs`` is ``(batches, per-step extras)``."""

    def body(carry: tuple, x: tuple) -> tuple[tuple, dict[str, jax.Array]]:
        state, key = carry
        key, step_key = jax.random.split(key)
        objects = nnx.merge(graphdef, state)
        batch, extra = x
        out = step(objects, batch, extra, step_key)
        return (nnx.state(objects), key), out

    (state, key), out = jax.lax.scan(body, (state, key), xs)
    return state, key, out
