"""TFDQNAgent: deep Q-learning with experience replay and a target network, in TensorFlow.

Mnih et al. (2015), "Human-level control through deep reinforcement
learning", with the prioritized replay of Schaul et al. (2016) and the n-step
targets of Sutton & Barto (2018, eq. 7.1) as options: the same algorithm as
optix-torch's ``TorchDQNAgent``, over the same shared pieces. Each learn()
call stores the window's transitions and takes the gradient steps they earn
on Stable-Baselines3's schedule (optix-core's ``ReplayAgentMixin``), each on

    y_i = R_i + γ_i · (1 − terminated_i) · max_a' Q_target(s'_i, a')
    L   = Σ_i w_i · Huber(Q(s_i, a_i) − y_i) / B        (squared error with huber_loss False)

where an n-step transition carries R = Σ_{k<m} γ^k r_{t+k} and γ_i = γ^m,
and w_i = 1 for uniform replay or the importance weight of prioritized
replay (β annealed from ``per_beta`` to 1 over ``per_beta_steps`` env steps),
whose priorities become |Q(s_i, a_i) − y_i| (+ the memory's ε). The gradient
is clipped to a global norm of ``max_grad_norm``. Every
``target_update_freq`` gradient steps the target network becomes a copy of
the online one. Truncated episodes bootstrap from their final observation;
only ``terminated`` stops the bootstrap.

Exploration is ε-greedy with ε a function of the env steps collected so far
(optix-core's ``off_policy.epsilon_schedule``, evaluated at every training
action; uniformly random until ``learning_starts``); the random draws are
the agent's numpy generators' (``epsilon_greedy``), so the exploration
stream is the same as optix-torch's for the same seed.

Compiled: a block of minibatches (with uniform replay, every update a window
earns) is one call of a ``tf.function`` that loops over its minibatches in
the graph, target copies included, and returns the loss sums once. The block
count is the only shape that changes, so after the second block size the
function is traced with an unknown count and never again (``reduce_retracing``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import keras
import numpy as np
import tensorflow as tf

from optix_core.algorithms.config import dqn as config
from optix_core.off_policy import (
    check_n_actions,
    epsilon_greedy,
    epsilon_schedule,
    require_discrete,
)
from optix_core.types import EpisodeData, HyperparamSet
from optix_tf.accel.adam import apply_gradients
from optix_tf.algorithms.q_learning import QAgentBase, check_q_network, clone_network
from optix_tf.policies import observations as O
from optix_tf.policies.extractors import ImageCNN, default_extractor, features_dim
from optix_tf.policies.observations import probe_batch


class TFDQNAgent(QAgentBase):
    """DQN (tensor-optix's ``TFDQNAgent``) on a user's Keras Q-network (observations →
    one Q-value per action).

    Args:
        q_network: any Keras model mapping a batch of observations (as
            ``policies.observations.to_tensor`` makes them: uint8 images stay
            uint8, Dict observations are dicts of tensors) to ``[B, n_actions]``.
        n_actions: the size of the Discrete action space.
        optimizer: a Keras optimizer over the network's variables; default
            Adam (ε = 1e-8). Its learning rate follows ``hyperparams``.
        hyperparams: keys of ``optix_core.algorithms.config.dqn.DEFAULTS``.
        device: "auto", "cpu", "gpu", "gpu:N" ("cuda" and "cuda:N" alike).
        seed: seeds the agent's own generators (exploration, minibatches).
        observation_space: when given, the network is probed with observations
            from it (else from the space it was built for, or its ``Input``).
        target_network: a second instance of the q_network's architecture, for
            subclassed models Keras cannot clone; its weights are overwritten.
    """

    algorithm = "dqn"
    DEFAULTS = config.DEFAULTS
    BOUNDS = config.BOUNDS

    def __init__(
        self,
        q_network: keras.Model,
        n_actions: int,
        optimizer: keras.optimizers.Optimizer | None = None,
        hyperparams: HyperparamSet | dict[str, Any] | None = None,
        device: str = "auto",
        seed: int | None = None,
        observation_space: gym.Space | None = None,
        target_network: keras.Model | None = None,
    ) -> None:
        self.n_actions = check_n_actions(n_actions, self.algorithm)
        probe = check_q_network(q_network, observation_space, (self.n_actions,), self.algorithm)
        super().__init__(q_network, optimizer, hyperparams, device, seed, probe, target_network)
        self._train = tf.function(self.train_block, reduce_retracing=True)
        self.apply_hyperparams()

    @property
    def epsilon(self) -> float:
        """The exploration rate of the next training action."""
        return self.epsilon_at(self.steps_collected)

    def epsilon_at(self, env_steps: int) -> float:
        """ε after ``env_steps`` env steps: 1 until ``learning_starts``, then the schedule
        (optix-core's ``off_policy.epsilon_schedule``)."""
        return epsilon_schedule(env_steps, self.hp)

    # ---- acting -------------------------------------------------------------

    def act(self, observation: Any, deterministic: bool = False) -> np.ndarray:
        """Greedy actions, or ε-greedy at the current ε from ``act_rng`` (never moves ε)."""
        if deterministic:
            return self.greedy_actions(observation)
        n = O.batch_size(observation)
        return epsilon_greedy(
            self.act_rng, self.epsilon, n, self.n_actions, lambda: self.greedy_actions(observation)
        )

    def act_info(self, observation: Any, episode_start: np.ndarray) -> tuple[np.ndarray, dict]:
        n = O.batch_size(observation)
        # One vector step: every environment at the ε of the steps collected before it (SB3).
        actions = epsilon_greedy(
            self.rng, self.epsilon, n, self.n_actions, lambda: self.greedy_actions(observation)
        )
        self._acting_steps += n
        return actions, {}

    # ---- learning -----------------------------------------------------------

    def learn(self, episode_data: EpisodeData) -> dict[str, float]:
        hp = self.hp
        settings = None
        loss_sum, target_sum, steps = 0.0, 0.0, 0
        for batch in self.replay_minibatches(episode_data):
            count = int(batch["rewards"].shape[0])
            if settings is None:
                settings = tf.constant(
                    [hp["max_grad_norm"], float(bool(hp["huber_loss"]))], tf.float32
                )
            weights = batch.get("weights")
            if weights is None:
                weights = tf.ones_like(batch["rewards"])
            with tf.device(self.device):
                losses, targets, td = self._train(
                    batch["observations"],
                    batch["actions"],
                    batch["rewards"],
                    batch["next_observations"],
                    batch["bootstrap"],
                    weights,
                    tf.constant(self.n_updates, tf.int64),
                    tf.constant(hp["target_update_freq"], tf.int64),
                    settings,
                )
            self.n_updates += count
            steps += count
            loss_sum += losses  # tensors: read back once, after the window's updates
            target_sum += targets
            if "indices" in batch:  # prioritized: one minibatch per block, |δ| its new priority
                self.replay.update_priorities(batch["indices"], np.abs(td.numpy()))
        if steps:
            self.weights_changed()
        stats = {"epsilon": self.epsilon, **self.replay_stats()}
        if steps:
            stats["loss"] = float(loss_sum) / steps
            stats["target_q"] = float(target_sum) / steps
        return stats

    def train_block(
        self,
        obs: Any,
        actions: tf.Tensor,
        rewards: tf.Tensor,
        next_obs: Any,
        bootstrap: tf.Tensor,
        weights: tf.Tensor,
        n_updates: tf.Tensor,
        sync_every: tf.Tensor,
        settings: tf.Tensor,
    ) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        """Every gradient step of a block of minibatches ``[count, B, ...]`` (compiled as
        ``_train``): the hard target copy after every ``sync_every``-th step counted
        from ``n_updates``. Returns the sum of the losses, the sum of the minibatches'
        mean targets, and the last minibatch's TD errors."""
        max_norm, huber = settings[0], settings[1] > 0
        variables = self.q_network.trainable_variables
        loss_sum = tf.constant(0.0)
        target_sum = tf.constant(0.0)
        td = tf.zeros_like(rewards[0])
        for j in tf.range(tf.shape(rewards)[0]):
            step = tf.nest.map_structure(lambda t: t[j], obs)  # noqa: B023 - used at once
            after = tf.nest.map_structure(lambda t: t[j], next_obs)  # noqa: B023
            # y = R + γ_m (1 − terminated) max_a' Q_target(s', a')
            next_q = tf.reduce_max(self.target_network(after), axis=-1)
            y = tf.stop_gradient(rewards[j] + bootstrap[j] * next_q)
            with tf.GradientTape() as tape:
                loss, td = td_loss(self.q_network(step), actions[j], y, weights[j], huber)
            grads = tape.gradient(loss, variables)
            grads, _ = tf.clip_by_global_norm(grads, max_norm)
            apply_gradients(self.optimizer, grads, variables)
            if (n_updates + tf.cast(j, tf.int64) + 1) % sync_every == 0:
                self._sync_target()
            loss_sum += loss
            target_sum += tf.reduce_mean(y)
        return loss_sum, target_sum, td


def td_loss(
    q_values: tf.Tensor, actions: tf.Tensor, y: tf.Tensor, weights: tf.Tensor, huber: Any
) -> tuple[tf.Tensor, tf.Tensor]:
    """L = Σ_i w_i ℓ(Q(s_i, a_i) − y_i) / B, ℓ Huber (δ = 1, torch's smooth_l1) or the
    squared error; also the TD errors Q(s_i, a_i) − y_i (no gradient)."""
    q = tf.gather(q_values, tf.reshape(tf.cast(actions, tf.int32), [-1, 1]), batch_dims=1)[:, 0]
    error = q - y
    absolute = tf.abs(error)
    huber_terms = tf.where(absolute < 1.0, 0.5 * tf.square(error), absolute - 0.5)
    terms = tf.where(huber, huber_terms, tf.square(error))
    return tf.reduce_mean(weights * terms), tf.stop_gradient(error)


# ---- networks ---------------------------------------------------------------------


def torch_dense(
    units: int, fan_in: int, seeds: np.random.Generator, **kwargs
) -> keras.layers.Dense:
    """A Dense layer initialised as torch's ``nn.Linear`` (optix-torch's default Q-networks):
    kernel and bias uniform in ±1/√fan_in, seeded from ``seeds``."""
    bound = 1.0 / math.sqrt(fan_in)
    return keras.layers.Dense(
        units,
        kernel_initializer=keras.initializers.VarianceScaling(
            1.0 / 3.0, "fan_in", "uniform", seed=int(seeds.integers(2**31 - 1))
        ),
        bias_initializer=keras.initializers.RandomUniform(
            -bound, bound, seed=int(seeds.integers(2**31 - 1))
        ),
        **kwargs,
    )


def mlp_layers(
    in_dim: int, out_dim: int, hidden: Sequence[int], seeds: np.random.Generator
) -> list[keras.layers.Layer]:
    """ReLU Dense layers of widths ``hidden``, then a linear output of ``out_dim``."""
    layers, width = [], in_dim
    for units in hidden:
        layers.append(torch_dense(units, width, seeds, activation="relu"))
        width = units
    layers.append(torch_dense(out_dim, width, seeds))
    return layers


class QNetwork(keras.Model):
    """Observations → features extractor → ReLU MLP → one Q-value per action.

    The default DQN network for every observation space but flat float
    vectors (``make_dqn`` gives those a plain ``keras.Sequential`` MLP, which
    acts from a numpy snapshot). ``extractor`` defaults to the policy layer's
    ``default_extractor(observation_space)``: NatureCNN (≥ 36 pixels a side)
    or SmallCNN for uint8 images, one-hot for Discrete, combined for Dict,
    initialised orthogonally; any Keras layer mapping observations to
    ``[B, features]`` serves. ``hidden`` defaults to none after a CNN (Mnih
    et al. 2015) and (256, 256) otherwise.
    """

    def __init__(
        self,
        observation_space: gym.Space,
        n_actions: int,
        extractor: keras.layers.Layer | None = None,
        hidden: Sequence[int] | None = None,
        seed: int | None = None,
    ) -> None:
        super().__init__()
        self.observation_space = observation_space
        self.n_actions, self.seed = int(n_actions), seed
        self.default_extractor = extractor is None
        seeds = np.random.default_rng(seed)
        self.extractor = extractor or default_extractor(observation_space, seeds)
        width = features_dim(self.extractor, observation_space)
        if hidden is None:
            hidden = () if isinstance(self.extractor, ImageCNN) else (256, 256)
        self.hidden = tuple(hidden)
        self.head = keras.Sequential(mlp_layers(width, self.n_actions, self.hidden, seeds))
        self(probe_batch(observation_space))  # build every weight now

    def call(self, obs: Any) -> tf.Tensor:
        return self.head(self.extractor(obs))

    def clone_architecture(self) -> QNetwork:
        """A new QNetwork of this one's architecture (the target network)."""
        extractor = None
        if not self.default_extractor:
            extractor = clone_network(self.extractor, "QNetwork")
        return QNetwork(self.observation_space, self.n_actions, extractor, self.hidden, self.seed)


def default_q_network(
    observation_space: gym.Space, n_actions: int, seed: int | None = None
) -> keras.Model:
    """A ReLU MLP [256, 256] (rl-zoo's CartPole network) on flat float vectors, else
    ``QNetwork``; initialised as optix-torch's."""
    space = observation_space
    if (
        isinstance(space, gym.spaces.Box)
        and len(space.shape) == 1
        and np.issubdtype(space.dtype, np.floating)
    ):
        seeds = np.random.default_rng(seed)
        inputs = [keras.layers.Input((space.shape[0],))]
        return keras.Sequential(inputs + mlp_layers(space.shape[0], n_actions, (256, 256), seeds))
    return QNetwork(space, n_actions, seed=seed)


def make_dqn(
    observation_space: gym.Space,
    action_space: gym.Space,
    *,
    hyperparams: HyperparamSet | dict[str, Any] | None = None,
    device: str = "auto",
    seed: int | None = None,
) -> TFDQNAgent:
    """The AgentSpec factory: ``default_q_network`` for the observation space."""
    n_actions = require_discrete(action_space, "dqn")
    q_network = default_q_network(observation_space, n_actions, seed)
    return TFDQNAgent(
        q_network,
        n_actions,
        hyperparams=hyperparams,
        device=device,
        seed=seed,
        observation_space=observation_space,
    )
