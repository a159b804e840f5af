"""What SAC and TD3 share in TensorFlow: their networks over the policy layer and the update loop.

The TensorFlow twin of optix-torch's ``algorithms/off_policy.py``.
``OffPolicyAgent`` is the plumbing of an off-policy actor-critic, in the
manner of Stable-Baselines3's ``OffPolicyAlgorithm``: it checks the networks
against the spaces, acts (uniformly at random until ``learning_starts``),
and hands the algorithm one minibatch per gradient step the window earned,
from ``replay.TFReplayAgent`` (optix-core's replay memory and SB3's
schedule, which DQN and Rainbow share). It also holds the pieces both
updates compute alike: the clipped double-Q target from the target
critics, the critics' regression step and Polyak averaging. The algorithm
(``sac.py``, ``td3.py``) writes its policy and the rest of its update, each
gradient step one ``tf.function``. What needs no TensorFlow (scaling actions
to the Box, the checks of the action space and of the two critics, turning
the actor's outputs into actions) is optix-core's ``off_policy.actor_critic``
and ``off_policy.acting``.

The networks read observations as the policy layer gives them
(``policies.observations``: uint8 images stay uint8, Discrete indices stay
integers, a Dict is a dict of tensors). As in SB3 (``share_features_extractor
=False``) the actor and the critics each have their own features extractor
φ: the actor is ``Actor`` (φ, then an MLP head), the critics ``Critic`` (φ,
then both Q-functions on ``[φ(s) ‖ a]``, fused in one ``TwinQ`` by default).
Flat vectors need no φ: there the actor is the MLP itself and the critics
read ``[s ‖ a]``. Networks act in (−1, 1); ``ActionScaler`` maps that to the
Box bounds for the environment and recorded actions back for learning.

Target networks are ``TargetNetwork``: frozen copies of a network's
variables, run through the network itself (Keras's ``stateless_call``), so
any Keras layer or model has a target without being cloned.
"""

from __future__ import annotations

import copy
import itertools
import math
from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Any, ClassVar, TypeVar

import gymnasium as gym
import keras
import numpy as np
import tensorflow as tf

from optix_core.off_policy import (
    ActionScaler,
    action_size,
    check_action_space,
    check_twin_critics,
)
from optix_core.off_policy.acting import uniform_actions
from optix_core.types import EpisodeData, HyperparamSet
from optix_tf.accel.adam import apply_gradients
from optix_tf.algorithms.replay import TFReplayAgent
from optix_tf.policies import observations as O
from optix_tf.policies.extractors import default_extractor, features_dim
from optix_tf.policies.networks import probe_input

# ---- networks ---------------------------------------------------------------


def linear_init(fan_in: int, seeds: np.random.Generator) -> tuple[Any, Any]:
    """torch's ``nn.Linear`` initialisation (kernel and bias uniform in ±1/√fan_in),
    so the default networks start as optix-torch's and SB3's do."""
    bound = 1.0 / math.sqrt(fan_in)
    kernel = keras.initializers.RandomUniform(-bound, bound, seed=int(seeds.integers(2**31 - 1)))
    bias = keras.initializers.RandomUniform(-bound, bound, seed=int(seeds.integers(2**31 - 1)))
    return kernel, bias


def mlp(
    in_dim: int,
    out_dim: int,
    hidden: Sequence[int],
    seeds: np.random.Generator,
    activation: str = "relu",
    output_activation: str | None = None,
) -> keras.Sequential:
    """Dense layers of widths ``hidden`` then ``out_dim`` outputs, built for ``in_dim`` inputs."""
    layers: list[Any] = [keras.layers.Input((in_dim,))]
    dims = [in_dim, *hidden, out_dim]
    for i, (fan_in, fan_out) in enumerate(itertools.pairwise(dims)):
        kernel, bias = linear_init(fan_in, seeds)
        last = i == len(dims) - 2
        layers.append(
            keras.layers.Dense(
                fan_out,
                activation=output_activation if last else activation,
                kernel_initializer=kernel,
                bias_initializer=bias,
            )
        )
    return keras.Sequential(layers)


class TwinQ(keras.layers.Layer):
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
        seed: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        seeds = np.random.default_rng(seed)
        self.n_critics = n_critics
        self.activation = keras.activations.get(activation)
        self.kernels, self.biases = [], []
        for i, (fan_in, fan_out) in enumerate(itertools.pairwise([in_dim, *hidden, 1])):
            kernel, bias = linear_init(fan_in, seeds)
            self.kernels.append(
                self.add_weight(
                    shape=(n_critics, fan_in, fan_out), initializer=kernel, name=f"kernel_{i}"
                )
            )
            self.biases.append(
                self.add_weight(shape=(n_critics, 1, fan_out), initializer=bias, name=f"bias_{i}")
            )
        self.built = True

    def call(self, x: tf.Tensor) -> tf.Tensor:
        h = tf.broadcast_to(x[None], [self.n_critics, tf.shape(x)[0], tf.shape(x)[1]])
        last = len(self.kernels) - 1
        for i, (kernel, bias) in enumerate(zip(self.kernels, self.biases, strict=True)):
            h = tf.matmul(h, kernel) + bias
            if i < last:
                h = self.activation(h)
        return tf.transpose(h[..., 0])

    def q1(self, x: tf.Tensor) -> tf.Tensor:
        h = x
        last = len(self.kernels) - 1
        for i, (kernel, bias) in enumerate(zip(self.kernels, self.biases, strict=True)):
            h = tf.matmul(h, kernel[0]) + bias[0]
            if i < last:
                h = self.activation(h)
        return h


class CriticPair(keras.layers.Layer):
    """Two user-built critics (``[features ‖ action] → [B, 1]`` each) as one ``[B, 2]`` layer."""

    def __init__(self, critic1: keras.layers.Layer, critic2: keras.layers.Layer) -> None:
        super().__init__()
        self.critic1, self.critic2 = critic1, critic2

    def call(self, x: tf.Tensor) -> tf.Tensor:
        return tf.concat([self.critic1(x), self.critic2(x)], axis=1)

    def q1(self, x: tf.Tensor) -> tf.Tensor:
        return self.critic1(x)


class Actor(keras.layers.Layer):
    """The factories' actor: observations → features φ(s) → MLP head → the algorithm's outputs."""

    def __init__(self, extractor: keras.layers.Layer, head: keras.layers.Layer) -> None:
        super().__init__()
        self.extractor, self.head = extractor, head

    def call(self, obs: Any) -> tf.Tensor:
        return self.head(self.extractor(obs))


class Critic(keras.layers.Layer):
    """Both Q-functions: Qⱼ(s, a) = headⱼ([φ(s) ‖ a]), φ the critics' features extractor.

    ``heads`` maps ``[B, features + A]`` to ``[B, 2]``: ``TwinQ`` by default,
    ``CriticPair`` for tensor-optix's two critics, or any such layer.
    ``extractor`` None: flat vectors are their own features.
    """

    def __init__(self, extractor: keras.layers.Layer | None, heads: keras.layers.Layer) -> None:
        super().__init__()
        self.extractor, self.heads = extractor, heads

    def inputs(self, obs: Any, actions: tf.Tensor) -> tf.Tensor:
        features = tf.cast(obs, tf.float32) if self.extractor is None else self.extractor(obs)
        return tf.concat([features, actions], axis=1)

    def call(self, obs: Any, actions: tf.Tensor) -> tf.Tensor:
        """``[B, 2]``: Q₁(s, a) and Q₂(s, a)."""
        return self.heads(self.inputs(obs, actions))

    def q1(self, obs: Any, actions: tf.Tensor) -> tf.Tensor:
        """``[B, 1]``: Q₁ alone, the heads' ``q1`` when they have one."""
        x = self.inputs(obs, actions)
        q1 = getattr(self.heads, "q1", None)
        return q1(x) if q1 is not None else self.heads(x)[:, :1]


class TargetNetwork(keras.layers.Layer):
    """A network's target: frozen copies of its variables, run through the network.

    ``target(*args)`` is ``network(*args)`` computed with the copies in place of
    the network's own variables (Keras's ``stateless_call``), so any Keras
    layer or model (a user's subclassed one too) has a target without being
    cloned. ``online`` and ``copies`` pair each trainable variable with its
    copy, for Polyak averaging. The network must be built.
    """

    def __init__(self, network: keras.layers.Layer) -> None:
        super().__init__(trainable=False)
        self._stateless_call = network.stateless_call  # a bound method: not tracked as a layer
        self.n_trainable = len(network.trainable_variables)
        for variable in [*network.trainable_variables, *network.non_trainable_variables]:
            copy_ = self.add_weight(
                shape=variable.shape,
                dtype=variable.dtype,
                initializer="zeros",
                trainable=False,
                name=variable.name,
            )
            copy_.assign(variable)
        # Held outside Keras's tracking, so the network's variables are not this layer's.
        self._online = _Untracked(list(network.trainable_variables))
        self.built = True

    @property
    def online(self) -> list[Any]:
        """The network's trainable variables, in order."""
        return self._online.value

    @property
    def copies(self) -> list[Any]:
        """The copies of the network's trainable variables, in the network's order."""
        return self.weights[: self.n_trainable]

    def call(self, *args: Any) -> Any:
        values = [v.value for v in self.weights]
        out, _ = self._stateless_call(values[: self.n_trainable], values[self.n_trainable :], *args)
        return out


class _Untracked:
    """A value a Keras layer holds without tracking it."""

    def __init__(self, value: Any) -> None:
        self.value = value


def polyak(target: Sequence[Any], online: Sequence[Any], tau: tf.Tensor) -> None:
    """θ_tgt ← τ·θ + (1 − τ)·θ_tgt, for each pair of variables."""
    for t, o in zip(target, online, strict=True):
        t.assign_add(tau * (o - t))


def features_extractor(
    space: gym.Space | None, seeds: np.random.Generator
) -> keras.layers.Layer | None:
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
    return default_extractor(space, seeds)


def features_width(extractor: keras.layers.Layer | None, space: gym.Space) -> int:
    """How many features ``extractor`` (None: the flat vector itself) gives on ``space``."""
    return int(space.shape[0]) if extractor is None else features_dim(extractor, space)


def twin_critics(
    critic1: keras.layers.Layer | None,
    critic2: keras.layers.Layer | None,
    critics: keras.layers.Layer | None,
    owner: str,
) -> keras.layers.Layer:
    """One ``[B, 2]`` layer from tensor-optix's two critics, or a fused one as given."""
    check_twin_critics(critic1, critic2, critics, owner)
    return critics if critics is not None else CriticPair(critic1, critic2)


def check_optimizer(
    optimizer: keras.optimizers.Optimizer, variables: list[Any], role: str, owner: str
) -> None:
    """Insist that a user's optimizer, if already built, holds every variable of the
    network it trains (an unbuilt one is built on them)."""
    if not optimizer.built:
        return
    held = {id(v) for v in optimizer._trainable_variables}
    missing = sum(1 for v in variables if id(v) not in held)
    if missing:
        raise ValueError(
            f"{owner}: the {role} optimizer lacks {missing} of the {role}'s variables "
            f"(for the critics, the critic_extractor's count too); give it all of them"
        )


AgentT = TypeVar("AgentT", bound="OffPolicyAgent")


def default_agent(
    agent_class: type[AgentT],
    observation_space: gym.Space,
    action_space: gym.Space,
    head: Callable[[int, int, np.random.Generator], keras.layers.Layer],
    *,
    hidden: Sequence[int],
    extractor: keras.layers.Layer | None,
    hyperparams: HyperparamSet | dict[str, Any] | None,
    device: str,
    seed: int | None,
) -> AgentT:
    """The factories' agent, built as SB3 builds SAC's and TD3's policies.

    The actor is ``Actor(φ_π, head(features, action_dim, seeds))``; the critics
    are ``Critic(φ_Q, TwinQ)``, two ReLU MLPs of widths ``hidden`` on
    ``[φ_Q(s) ‖ a]``. φ_π and φ_Q are separate extractors: ``extractor`` and a
    copy of it (``copy.deepcopy``: a Keras-serializable layer), or each the
    policy layer's default for the observation space. On flat vectors there
    is none: the actor is the head alone and the critics read ``[s ‖ a]``.
    Every network is initialised from ``seed``.
    """
    check_action_space(agent_class.algorithm, action_space)
    O.check_observation_space(observation_space, agent_class.algorithm)
    act_dim = int(np.prod(action_space.shape))
    seeds = np.random.default_rng(seed)
    if extractor is None:
        actor_extractor = features_extractor(observation_space, seeds)
        critic_extractor = features_extractor(observation_space, seeds)
    else:
        try:
            actor_extractor, critic_extractor = extractor, copy.deepcopy(extractor)
        except Exception as exc:
            raise ValueError(
                f"{agent_class.algorithm}: the critics need their own copy of the features "
                f"extractor, and {type(extractor).__name__} cannot be copied ({exc}); make it "
                "Keras-serializable, or build the agent with your own networks"
            ) from None
    policy = head(features_width(actor_extractor, observation_space), act_dim, seeds)
    actor = policy if actor_extractor is None else Actor(actor_extractor, policy)
    width = features_width(critic_extractor, observation_space) + act_dim
    critics = TwinQ(width, hidden, seed=int(seeds.integers(2**31 - 1)))
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


class OffPolicyAgent(TFReplayAgent):
    """Networks, acting and the update loop shared by SAC and TD3.

    The constructor takes tensor-optix's arguments: ``actor``, ``critic1``
    and ``critic2`` (Keras models on ``[φ(s) ‖ a]``, or one fused ``critics``
    layer giving ``[B, 2]``), ``action_dim`` and the actor's and critics'
    Keras optimizers (Adam at ``learning_rate`` for each one left out); optix
    adds ``critic_extractor`` (the critics' φ; default the policy layer's for
    ``observation_space``, none on flat vectors or without a space, where
    φ(s) = s), ``observation_space`` and ``action_space`` (networks are then
    checked, and actions scaled to the bounds) and ``seed``. Networks must be
    built (``keras.Input``) or be given an ``observation_space`` to be probed on.

    Subclasses set ``SEARCH_SPACE`` and ``ACTOR_OUTPUTS``, and write ``setup``
    (what is their own: targets, temperature), ``unit_actions`` (the actor's
    outputs → actions in [−1, 1], in numpy), ``noise_shape`` and ``update``
    (one gradient step, one ``tf.function`` call).
    """

    SEARCH_SPACE: ClassVar[dict[str, tuple]] = {}
    ACTOR_OUTPUTS: ClassVar[int] = 1  # the actor's outputs per action dimension

    def __init__(
        self,
        actor: keras.layers.Layer,
        critic1: keras.layers.Layer | None = None,
        critic2: keras.layers.Layer | None = None,
        action_dim: int | None = None,
        actor_optimizer: keras.optimizers.Optimizer | None = None,
        critic_optimizer: keras.optimizers.Optimizer | None = None,
        hyperparams: HyperparamSet | dict[str, Any] | None = None,
        device: str = "auto",
        seed: int | None = None,
        *,
        critics: keras.layers.Layer | None = None,
        critic_extractor: keras.layers.Layer | None = None,
        observation_space: gym.Space | None = None,
        action_space: gym.Space | None = None,
    ) -> None:
        super().__init__(hyperparams, device, seed)
        heads = twin_critics(critic1, critic2, critics, self.algorithm)
        self.action_dim = action_size(action_dim, action_space, self.algorithm)
        self.scaler = ActionScaler(self.action_dim, action_space)
        with self.device_scope():
            if critic_extractor is None:
                critic_extractor = features_extractor(
                    observation_space, np.random.default_rng(seed)
                )
            self.actor = actor
            self.critic = Critic(critic_extractor, heads)
            self.check_networks(observation_space)
            self.critic_target = TargetNetwork(self.critic)
            self.actor_variables = list(self.actor.trainable_variables)
            self.critic_variables = list(self.critic.trainable_variables)
            lr = self.hp["learning_rate"]
            for optimizer, variables, role in (
                (actor_optimizer, self.actor_variables, "actor"),
                (critic_optimizer, self.critic_variables, "critic"),
            ):
                if optimizer is not None:
                    check_optimizer(optimizer, variables, role, self.algorithm)
            self.actor_optimizer = actor_optimizer or adam(lr, "actor_adam")
            self.critic_optimizer = critic_optimizer or adam(lr, "critic_adam")
            self.setup()
            self._build_optimizers()  # slots exist before the first (compiled) step
        self._act = tf.function(self.actor_outputs, reduce_retracing=True)
        self.apply_hyperparams()

    def setup(self) -> None:
        """Build what is the algorithm's own, once the shared networks are in place."""

    def actor_width(self) -> int:
        """The actor's outputs per observation."""
        return self.ACTOR_OUTPUTS * self.action_dim

    def check_networks(self, observation_space: gym.Space | None) -> None:
        """Run two observations through the actor and the critics and insist on
        their output widths, before any work starts (this also builds them).
        The observations come from the space, or are zeros shaped by the actor's
        declared input; with neither the networks must be built already."""
        probe = probe_input(self.actor, observation_space)
        if probe is None:
            if not self.actor.built or not self.actor.trainable_variables:
                raise ValueError(
                    f"{self.algorithm}: cannot tell what the actor reads: give "
                    "observation_space, or build the networks (keras.Input)"
                )
            return
        given = (
            f"observations from {observation_space}"
            if observation_space is not None
            else f"inputs of shape {tuple(probe.shape[1:])}"
        )
        out = self._probe("actor", self.actor, (probe,), given)
        self._expect_width("actor", out, self.actor_width())
        features = probe
        if self.critic.extractor is not None:
            features = self._probe(
                "critics' features extractor", self.critic.extractor, (probe,), given
            )
        if len(features.shape) != 2:
            raise ValueError(
                f"{self.algorithm}: the critics' features extractor must return "
                f"[batch, features], got shape {tuple(features.shape)}"
            )
        width = int(features.shape[1]) + self.action_dim
        inputs = tf.zeros((2, width))
        q = self._probe("twin critic", self.critic.heads, (inputs,), f"inputs of width {width}")
        self._expect_width("twin critic", q, 2)
        self.critic(probe, tf.zeros((2, self.action_dim)))  # builds the wrapper

    def _probe(self, role: str, network: Any, inputs: tuple, given: str) -> tf.Tensor:
        try:
            return network(*inputs)
        except Exception as exc:
            raise ValueError(
                f"{self.algorithm}: the {role} network does not take {given} "
                f"({str(exc).strip().splitlines()[0]})"
            ) from None

    def _expect_width(self, role: str, out: Any, expected: int) -> None:
        if len(out.shape) != 2 or out.shape[1] != expected:
            raise ValueError(
                f"{self.algorithm}: the {role} network outputs shape {tuple(out.shape[1:])} "
                f"per observation, expected ({expected},) for this action space"
            )

    @property
    def search_space(self) -> dict[str, tuple]:
        """What the loop may tune while training: the config module's ``SEARCH_SPACE``."""
        return dict(self.SEARCH_SPACE)

    # ---- acting ---------------------------------------------------------

    def actor_outputs(self, obs: Any) -> tf.Tensor:
        """The actor on a batch of observations (``self._act`` compiles it once per
        input signature, with shapes relaxed: no retracing per call)."""
        return self.actor(obs)

    def unit_actions(
        self, out: np.ndarray, deterministic: bool, rng: np.random.Generator
    ) -> np.ndarray:
        """Actions in [−1, 1] from the actor's outputs (numpy)."""
        raise NotImplementedError

    def _outputs(self, observation: Any) -> np.ndarray:
        with self.device_scope():
            return self._act(O.to_tensor(observation)).numpy()

    def act(self, observation: Any, deterministic: bool = False) -> np.ndarray:
        unit = self.unit_actions(self._outputs(observation), deterministic, self.act_rng)
        return self.scaler.to_env(unit)

    def act_info(self, observation: Any, episode_start: np.ndarray) -> tuple[np.ndarray, dict]:
        n = O.batch_size(observation)
        if self.warming_up:
            # SB3's warm-up: uniform random actions until learning starts.
            unit = uniform_actions(self.rng, n, self.action_dim)
        else:
            unit = self.unit_actions(self._outputs(observation), False, self.rng)
        self._acting_steps += n
        return self.scaler.to_env(unit), {}

    # ---- learning -------------------------------------------------------------

    def learn(self, episode_data: EpisodeData) -> dict[str, float]:
        """Store the window, take the gradient steps it earned, return their mean diagnostics."""
        stats: defaultdict[str, list[tf.Tensor]] = defaultdict(list)
        settings = self.update_settings()
        batch_size = self.hp["batch_size"]
        # Replay keeps actions as the networks make them, in [−1, 1].
        for tensors in self.replay_minibatches(self.scaler.unit_window(episode_data)):
            count = int(tensors["rewards"].shape[0])
            # Each block's noise in one draw from the agent's generator.
            noise = self.rng.standard_normal((count, *self.noise_shape(batch_size)), np.float32)
            with self.device_scope():
                tensors["noise"] = tf.convert_to_tensor(noise)
                for j in range(count):
                    self.n_updates += 1  # counted before the step, as SB3: TD3's delay reads it
                    for key, value in self.update(tensors, tf.constant(j), settings).items():
                        stats[key].append(value)
        keys = [k for k, values in stats.items() if values]
        means = tf.stack([tf.reduce_mean(tf.stack(stats[k])) for k in keys]).numpy() if keys else []
        return {**{k: float(m) for k, m in zip(keys, means, strict=True)}, **self.replay_stats()}

    def update_settings(self) -> tf.Tensor:
        """The hyperparameters the compiled step reads, as one float32 tensor (new values
        take effect without retracing)."""
        return tf.constant([self.hp["tau"]], tf.float32)

    def update(self, tensors: dict[str, Any], j: tf.Tensor, settings: tf.Tensor) -> dict[str, Any]:
        """One gradient step on minibatch ``j`` of the block (the ``n_updates``-th); its
        diagnostics as scalar tensors."""
        raise NotImplementedError

    def noise_shape(self, batch_size: int) -> tuple[int, ...]:
        """Shape of the noise each update needs (standard normal, from ``self.rng``)."""
        return (0,)

    def bootstrap(
        self, batch: dict[str, Any], next_actions: tf.Tensor, bonus: tf.Tensor | None = None
    ) -> tf.Tensor:
        """The clipped double-Q target y = r + γ(1 − d)·(minⱼ Q̄ⱼ(s′, a′) + bonus).

        Clipped double Q-learning (Fujimoto et al. 2018): the smaller of the two
        target critics' estimates. SAC's ``bonus`` is −α log π(a′|s′), making the
        bracket the soft state value. Only ``terminated`` stops bootstrapping
        (``bootstrap`` is γ(1 − terminated)): a time-limit truncation is bootstrapped.
        """
        q_next = tf.reduce_min(self.critic_target(batch["next_observations"], next_actions), 1)
        if bonus is not None:
            q_next = q_next + bonus
        return tf.stop_gradient(batch["rewards"] + batch["bootstrap"] * q_next)

    def critic_step(self, batch: dict[str, Any], target: tf.Tensor, scale: float) -> tf.Tensor:
        """One step on L_Q = scale·Σⱼ E[(Qⱼ(s, a) − y)²], both critics in one pass; the loss."""
        with tf.GradientTape() as tape:
            q = self.critic(batch["observations"], batch["actions"])  # [B, 2]
            loss = tf.reduce_mean(tf.square(q - target[:, None])) * (scale * 2.0)
        grads = tape.gradient(loss, self.critic_variables)
        apply_gradients(self.critic_optimizer, grads, self.critic_variables)
        return loss


def select(tensors: dict[str, Any], j: tf.Tensor) -> dict[str, Any]:
    """Minibatch ``j`` of a block of ``[count, batch_size, ...]`` tensors."""
    return {
        key: tf.nest.map_structure(lambda t: t[j], value)
        for key, value in tensors.items()
        if key != "indices"
    }


def adam(learning_rate: float, name: str) -> keras.optimizers.Adam:
    """Adam as torch's and SB3's (ε = 1e-8), named so that its variables' paths (which a
    checkpoint records) are the same in every process."""
    return keras.optimizers.Adam(learning_rate=learning_rate, epsilon=1e-8, name=name)
