"""TFRainbowDQNAgent: Rainbow DQN in TensorFlow, and its network RainbowQNetwork.

Hessel et al. (2018), "Rainbow: Combining Improvements in Deep Reinforcement
Learning": six extensions of DQN in one agent, the same algorithm as
optix-torch's ``TorchRainbowDQNAgent`` over the same shared pieces.

- Distributional (C51; Bellemare et al. 2017): the network gives, per action,
  a categorical distribution p_i(s, a) over the atoms z_i = v_min + i·Δz,
  Δz = (v_max − v_min)/(N − 1) (optix-core's ``off_policy.distributional``);
  Q(s, a) = Σ_i z_i p_i(s, a).
- Double Q (van Hasselt et al. 2016): a* = argmax_a Q_online(s', a); its
  distribution comes from the target network.
- n-step returns: R = Σ_{k<m} γ^k r_{t+k}, bootstrap discount γ^m (optix-core's
  NStepWriter builds the transitions).
- The target (``categorical_projection``): each atom moves to
  T z_i = clip(R + γ^m (1 − terminated) z_i, v_min, v_max) and its
  probability p_i(s', a*) is split between the two neighbouring atoms
  (Bellemare et al. 2017, Algorithm 1), giving m.
- The loss is the cross-entropy L = −Σ_i m_i log p_i(s, a), weighted by the
  importance weights (N·P(i))^−β / max_j w_j of prioritized replay (Schaul et
  al. 2016), whose new priorities are the per-sample losses; β goes linearly
  from ``per_beta`` to 1 over ``per_beta_steps`` env steps.
- Dueling (Wang et al. 2016): logits(s, a) = V(s) + A(s, a) − mean_a A(s, a),
  per atom, before the softmax over atoms.
- Noisy nets (Fortunato et al. 2018, ``noisy.NoisyLinear``) explore instead
  of ε-greedy. The online network's noise is redrawn before every gradient
  step (one draw serves both s and s') and every training action, the target
  network's before every gradient step, all from the agent's ``rng``; act()
  draws from ``act_rng``, and act(deterministic=True) uses the mean weights
  alone. Until ``learning_starts`` env steps have been stored the training
  actions are uniformly random (as Stable-Baselines3's off-policy agents
  do): without that start the noisy network's first, nearly deterministic
  policy fills the buffer with one kind of experience.
- The default optimizer is Adam with ε = 1.5e-4 (Hessel et al. 2018, Table
  1) rather than 1e-8: Adam's step is lr · m̂ / (√v̂ + ε), and the larger ε
  damps the steps of parameters whose gradients are tiny instead of scaling
  them up to the learning rate.

Updates follow DQN's schedule (``gradient_steps`` after every
``train_freq``-th vector step, each minibatch drawn from what was stored by
then), and every ``target_update_freq`` gradient steps the target network
becomes a copy of the online one. The networks' bookkeeping is TF DQN's
(``algorithms.q_learning``); the replay memory, the schedule, checkpointing
and the n-step writer are optix-core's ``off_policy`` (through
``algorithms.replay``). Compiled as DQN is: a block of minibatches (prioritized
replay: one, whose priorities must be updated before the next is drawn) is
one ``tf.function`` call, the noise of each of its gradient steps drawn on
the host in one go. On the CPU the default network on flat vectors acts from
a numpy snapshot of its weights (``NumpyRainbow``), noise included. The
default network (``make_rainbow``) puts the dueling, noisy, distributional
head on the policy layer's features extractor for the observation space:
flattened vectors, NatureCNN or SmallCNN for uint8 images, one-hot for
Discrete, combined for Dict.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import keras
import numpy as np
import tensorflow as tf

from optix_core.algorithms.config import rainbow as config
from optix_core.off_policy import (
    atom_support,
    check_atoms,
    check_n_actions,
    choose_atoms,
    require_discrete,
    returns_log_probs,
    warn_without_noisy_layers,
)
from optix_core.policies.numpy_networks import NUMPY_ACTIVATIONS
from optix_core.types import EpisodeData, HyperparamSet
from optix_tf.accel.adam import apply_gradients
from optix_tf.algorithms.dqn import torch_dense
from optix_tf.algorithms.noisy import NoisyLinear, draw_noise, noise_size, noisy_layers, set_noise
from optix_tf.algorithms.q_learning import QAgentBase, check_q_network, clone_network
from optix_tf.policies import observations as O
from optix_tf.policies.extractors import FlattenExtractor, default_extractor, features_dim
from optix_tf.policies.observations import probe_batch


class RainbowQNetwork(keras.Model):
    """Dueling, noisy, distributional Q-network: observations → log-probabilities [B, A, N].

    A features extractor (``extractor``, default ``FlattenExtractor``: the
    observation as a vector of ``obs_dim`` numbers), a dense ReLU trunk of
    ``hidden_size`` units reading its ``obs_dim`` features, then a value
    stream and an advantage stream, each NoisyLinear(hidden) → ReLU →
    NoisyLinear, combined per atom as V + A − mean_a A and normalised over the
    ``n_atoms`` atoms. Noise is on with ``training=True``; otherwise the noisy
    layers use their mean weights. ``q_values(x)`` gives the expected values
    Σ_i z_i p_i. ``for_space`` builds one on the policy layer's extractor for a
    space. ``seed`` seeds the initialisation (dense layers as torch's
    ``nn.Linear``, as optix-torch's network starts).
    """

    def __init__(
        self,
        obs_dim: int,
        n_actions: int,
        hidden_size: int = 128,
        n_atoms: int = 51,
        v_min: float = -10.0,
        v_max: float = 10.0,
        sigma_0: float = 0.5,
        extractor: keras.layers.Layer | None = None,
        seed: int | None = None,
    ) -> None:
        super().__init__()
        self.n_atoms, self.v_min, self.v_max = check_atoms(n_atoms, v_min, v_max, "RainbowQNetwork")
        self.obs_dim, self.n_actions, self.hidden_size = int(obs_dim), int(n_actions), hidden_size
        self.sigma_0, self.seed = float(sigma_0), seed
        self.default_extractor = extractor is None
        self.extractor = FlattenExtractor() if extractor is None else extractor
        # What it reads, to be probed with: vectors of obs_dim numbers, or for_space's space.
        self.observation_space: gym.Space | None = None
        if extractor is None:
            self.observation_space = gym.spaces.Box(-np.inf, np.inf, (self.obs_dim,), np.float32)
        self.from_space = False  # built by for_space (its seed rebuilds the extractor)
        self.space_seed: int | None = None
        seeds = np.random.default_rng(seed)
        self.features = torch_dense(hidden_size, self.obs_dim, seeds, activation="relu")
        self.value = self._stream(self.n_atoms, seeds)
        self.advantage = self._stream(self.n_actions * self.n_atoms, seeds)
        self.support = tf.constant(atom_support(self.n_atoms, self.v_min, self.v_max))
        if extractor is None:  # flat vectors of obs_dim: every weight is built now
            self(tf.zeros((2, self.obs_dim)))

    def _stream(self, units: int, seeds: np.random.Generator) -> keras.Sequential:
        """NoisyLinear(hidden) → ReLU → NoisyLinear(units)."""
        return keras.Sequential(
            [
                NoisyLinear(self.hidden_size, self.sigma_0, seed=int(seeds.integers(2**31 - 1))),
                keras.layers.ReLU(),
                NoisyLinear(units, self.sigma_0, seed=int(seeds.integers(2**31 - 1))),
            ]
        )

    @classmethod
    def for_space(
        cls,
        observation_space: gym.Space,
        n_actions: int,
        extractor: keras.layers.Layer | None = None,
        seed: int | None = None,
        **kwargs: Any,
    ) -> RainbowQNetwork:
        """The network on ``extractor`` (default: ``default_extractor(observation_space)``,
        initialised from ``seed``); ``kwargs`` as the constructor's. It keeps
        ``observation_space`` to be probed with, and is built on it."""
        seeds = np.random.default_rng(seed)
        given = extractor is not None
        if extractor is None:
            extractor = default_extractor(observation_space, seeds)
        width = features_dim(extractor, observation_space)
        head_seed = int(seeds.integers(2**31 - 1))
        network = cls(width, n_actions, extractor=extractor, seed=head_seed, **kwargs)
        network.observation_space, network.space_seed = observation_space, seed
        network.default_extractor, network.from_space = not given, True
        network(probe_batch(observation_space))  # build every weight now
        return network

    def call(self, obs: Any, training: bool | None = None) -> tf.Tensor:
        h = self.features(self.extractor(obs))
        value = tf.reshape(self.value(h, training=training), [-1, 1, self.n_atoms])
        advantage = tf.reshape(
            self.advantage(h, training=training), [-1, self.n_actions, self.n_atoms]
        )
        logits = value + advantage - tf.reduce_mean(advantage, axis=1, keepdims=True)
        return tf.nn.log_softmax(logits, axis=-1)

    def q_values(self, obs: Any, training: bool | None = None) -> tf.Tensor:
        """Q(s, a) = Σ_i z_i p_i(s, a), ``[B, n_actions]``."""
        return tf.reduce_sum(tf.exp(self(obs, training=training)) * self.support, axis=-1)

    def clone_architecture(self) -> RainbowQNetwork:
        """A new network of this one's architecture (the target network)."""
        extractor = None if self.default_extractor else clone_network(self.extractor, "rainbow")
        head = {
            "hidden_size": self.hidden_size,
            "n_atoms": self.n_atoms,
            "v_min": self.v_min,
            "v_max": self.v_max,
            "sigma_0": self.sigma_0,
        }
        if self.from_space:
            return type(self).for_space(
                self.observation_space, self.n_actions, extractor, self.space_seed, **head
            )
        return type(self)(self.obs_dim, self.n_actions, extractor=extractor, seed=self.seed, **head)


class TFRainbowDQNAgent(QAgentBase):
    """Rainbow (tensor-optix's ``TFRainbowDQNAgent``) on a distributional Keras Q-network
    (observations → ``[B, n_actions, n_atoms]``).

    Args:
        q_network: any Keras model mapping a batch of observations to, per
            action, log-probabilities (as ``RainbowQNetwork``) or probabilities
            over the atoms; which one is found by probing it. Its
            ``NoisyLinear`` layers explore: noisy with ``training=True``, their
            mean weights otherwise.
        n_actions: the size of the Discrete action space.
        optimizer: a Keras optimizer over the network's variables; default
            Adam (ε = 1.5e-4). Its learning rate follows ``hyperparams``.
        hyperparams: keys of ``optix_core.algorithms.config.rainbow.DEFAULTS``.
        device: "auto", "cpu", "gpu", "gpu:N" ("cuda" and "cuda:N" alike).
        n_atoms, v_min, v_max: the atoms; default the network's own when it is
            (or holds) a ``RainbowQNetwork``, else 51, −10 and 10; given values
            must agree with the network's.
        seed: seeds the agent's own generators (actions, noise, minibatches).
        observation_space: when given, the network is probed with observations
            from it (else from the space it was built for, or its ``Input``).
        target_network: a second instance of the q_network's architecture, for
            subclassed models Keras cannot clone; its weights are overwritten.
    """

    algorithm = "rainbow"
    DEFAULTS = config.DEFAULTS
    BOUNDS = config.BOUNDS
    adam_eps = 1.5e-4  # Hessel et al. (2018), Table 1

    def __init__(
        self,
        q_network: keras.Model,
        n_actions: int,
        optimizer: keras.optimizers.Optimizer | None = None,
        hyperparams: HyperparamSet | dict[str, Any] | None = None,
        device: str = "auto",
        n_atoms: int | None = None,
        v_min: float | None = None,
        v_max: float | None = None,
        seed: int | None = None,
        observation_space: gym.Space | None = None,
        target_network: keras.Model | None = None,
    ) -> None:
        self.n_actions = check_n_actions(n_actions, self.algorithm)
        self.n_atoms, self.v_min, self.v_max = _support(q_network, n_atoms, v_min, v_max)
        expected = (self.n_actions, self.n_atoms)
        probe = check_q_network(q_network, observation_space, expected, self.algorithm)
        outputs = None if probe is None else q_network(probe, training=False).numpy()
        self.log_output = returns_log_probs(outputs, self.algorithm)
        super().__init__(q_network, optimizer, hyperparams, device, seed, probe, target_network)
        self.noisy = noisy_layers(self.q_network)
        self.target_noisy = noisy_layers(self.target_network)
        self.noise_sizes = (noise_size(self.noisy), noise_size(self.target_noisy))
        if self.noise_sizes[0] != self.noise_sizes[1]:
            raise ValueError(
                f"rainbow: the target_network's noisy layers take {self.noise_sizes[1]} noise "
                f"values, the q_network's {self.noise_sizes[0]}; give the same architecture"
            )
        if not self.noisy:
            warn_without_noisy_layers(self.algorithm)
        with tf.device(self.device):
            self.support = tf.constant(atom_support(self.n_atoms, self.v_min, self.v_max))
        self._snapshot: NumpyRainbow | None = None
        self._train = tf.function(self.train_block, reduce_retracing=True)
        self._noisy_greedy = tf.function(self.noisy_greedy_graph, reduce_retracing=True)
        self.apply_hyperparams()

    # ---- the network's distributions ------------------------------------------

    def log_probs(self, network: keras.Model, obs: Any, training: bool) -> tf.Tensor:
        """log p_i(s, a), ``[B, n_actions, n_atoms]``, whichever the network returns."""
        out = network(obs, training=training)
        return out if self.log_output else tf.math.log(tf.maximum(out, 1e-8))

    def q_values(self, network: keras.Model, obs: Any, training: bool) -> tf.Tensor:
        """Q(s, a) = Σ_i z_i p_i(s, a)."""
        return tf.reduce_sum(tf.exp(self.log_probs(network, obs, training)) * self.support, -1)

    # ---- acting -------------------------------------------------------------

    def greedy_graph(self, obs: Any) -> tf.Tensor:
        """argmax_a Q(s, a) on the mean weights (compiled as ``_greedy``)."""
        return tf.argmax(self.q_values(self.q_network, obs, training=False), axis=-1)

    def noisy_greedy_graph(self, obs: Any, noise: tf.Tensor) -> tf.Tensor:
        """argmax_a Q(s, a) under the online network's noise ``noise`` (compiled as
        ``_noisy_greedy``)."""
        set_noise(self.noisy, noise)
        return tf.argmax(self.q_values(self.q_network, obs, training=True), axis=-1)

    def acting_snapshot(self) -> NumpyRainbow | None:
        """The numpy copy of the default network's weights that acts on the CPU (retaken
        after every ``learn`` and ``load_weights``); None for any other network or device."""
        if self._numpy_q_stale:  # QAgentBase's flag, raised by weights_changed()
            on_cpu = "CPU" in str(self.device).upper()
            self._snapshot = NumpyRainbow.of(self.q_network) if on_cpu else None
            self._numpy_q_stale = False
        return self._snapshot

    def greedy_actions(self, observation: Any) -> np.ndarray:
        """argmax_a Q(s, a) on the mean weights, for a batch of observations."""
        snapshot = self.acting_snapshot()
        if snapshot is not None:
            return snapshot(observation).argmax(axis=-1)
        with tf.device(self.device):
            return self._greedy(O.to_tensor(observation)).numpy()

    def noisy_actions(self, observation: Any, rng: np.random.Generator) -> np.ndarray:
        """argmax_a Q(s, a) under fresh noise from ``rng`` (one draw for the batch)."""
        noise = draw_noise(rng, (self.noise_sizes[0],))
        snapshot = self.acting_snapshot()
        if snapshot is not None:
            return snapshot(observation, noise).argmax(axis=-1)
        with tf.device(self.device):
            return self._noisy_greedy(O.to_tensor(observation), tf.constant(noise)).numpy()

    def act(self, observation: Any, deterministic: bool = False) -> np.ndarray:
        """Greedy actions on the mean weights, or under noise from ``act_rng``."""
        if deterministic:
            return self.greedy_actions(observation)
        return self.noisy_actions(observation, self.act_rng)

    def act_info(self, observation: Any, episode_start: np.ndarray) -> tuple[np.ndarray, dict]:
        n = O.batch_size(observation)
        if self.warming_up:  # a uniformly random start
            actions = self.rng.integers(self.n_actions, size=n)
        else:
            actions = self.noisy_actions(observation, self.rng)
        self._acting_steps += n
        return actions, {}

    # ---- learning -----------------------------------------------------------

    def learn(self, episode_data: EpisodeData) -> dict[str, float]:
        """Store the window and take the gradient steps it earned; the mean loss, with
        ``replay_stats()``."""
        settings = tf.constant([self.hp["max_grad_norm"]], tf.float32)
        loss_sum, steps = 0.0, 0
        for batch in self.replay_minibatches(episode_data):
            count = int(batch["rewards"].shape[0])
            # Every gradient step's noise, online then target, in one draw from the agent's rng.
            noise = draw_noise(self.rng, (count, sum(self.noise_sizes)))
            weights = batch.get("weights")
            with tf.device(self.device):
                if weights is None:
                    weights = tf.ones_like(batch["rewards"])
                losses, per_sample = self._train(
                    batch["observations"],
                    batch["actions"],
                    batch["rewards"],
                    batch["next_observations"],
                    batch["bootstrap"],
                    weights,
                    tf.constant(noise),
                    tf.constant(self.n_updates, tf.int64),
                    tf.constant(self.hp["target_update_freq"], tf.int64),
                    settings,
                )
            self.n_updates += count
            steps += count
            loss_sum += losses  # a tensor: read back once, after the window's updates
            if "indices" in batch:  # prioritized: one minibatch per block, its loss the priority
                self.replay.update_priorities(batch["indices"], per_sample.numpy())
        if steps:
            self.weights_changed()
        stats = self.replay_stats()
        if steps:
            stats["loss"] = float(loss_sum) / steps
        return stats

    def train_block(
        self,
        obs: Any,
        actions: tf.Tensor,
        rewards: tf.Tensor,
        next_obs: Any,
        bootstrap: tf.Tensor,
        weights: tf.Tensor,
        noise: tf.Tensor,
        n_updates: tf.Tensor,
        sync_every: tf.Tensor,
        settings: tf.Tensor,
    ) -> tuple[tf.Tensor, tf.Tensor]:
        """Every gradient step of a block of minibatches ``[count, B, ...]`` (compiled as
        ``_train``), step j under the noise ``noise[j]``; the hard target copy after every
        ``sync_every``-th step counted from ``n_updates``. Returns the sum of the losses
        and the last minibatch's per-sample losses (its new priorities)."""
        online_size = self.noise_sizes[0]
        variables = self.q_network.trainable_variables
        loss_sum = tf.constant(0.0)
        per_sample = tf.zeros_like(rewards[0])
        for j in tf.range(tf.shape(rewards)[0]):
            step = tf.nest.map_structure(lambda t: t[j], obs)  # noqa: B023 - used at once
            after = tf.nest.map_structure(lambda t: t[j], next_obs)  # noqa: B023
            set_noise(self.noisy, noise[j, :online_size])
            set_noise(self.target_noisy, noise[j, online_size:])
            target = self.target_distribution(after, rewards[j], bootstrap[j])
            with tf.GradientTape() as tape:
                log_p = tf.gather(
                    self.log_probs(self.q_network, step, training=True),
                    tf.cast(actions[j], tf.int32),
                    batch_dims=1,
                )
                per_sample = -tf.reduce_sum(target * log_p, axis=-1)  # −Σ_i m_i log p_i(s, a)
                loss = tf.reduce_mean(weights[j] * per_sample)
            grads = tape.gradient(loss, variables)
            grads, _ = tf.clip_by_global_norm(grads, settings[0])
            apply_gradients(self.optimizer, grads, variables)
            if (n_updates + tf.cast(j, tf.int64) + 1) % sync_every == 0:
                self._sync_target()
            loss_sum += loss
        return loss_sum, tf.stop_gradient(per_sample)

    def target_distribution(
        self, next_obs: Any, rewards: tf.Tensor, bootstrap: tf.Tensor
    ) -> tf.Tensor:
        """m: the target network's p(s', a*) projected onto the support, with double Q's
        a* = argmax_a Q_online(s', a) (the online network under the same noise as for s)."""
        best = tf.argmax(self.q_values(self.q_network, next_obs, training=True), axis=-1)
        next_log_p = self.log_probs(self.target_network, next_obs, training=True)
        next_probs = tf.exp(tf.gather(next_log_p, best, batch_dims=1))
        return tf.stop_gradient(
            categorical_projection(next_probs, rewards, bootstrap, self.support)
        )

    def teardown(self) -> None:
        self.noisy, self.target_noisy, self._snapshot = [], [], None  # layers held in lists
        super().teardown()


def categorical_projection(
    next_probs: tf.Tensor, rewards: tf.Tensor, bootstrap: tf.Tensor, support: tf.Tensor
) -> tf.Tensor:
    """Project the distribution of R + γ^m (1 − terminated) z onto the support z.

    Bellemare et al. (2017), Algorithm 1: atom z_j moves to
    T z_j = clip(R + bootstrap · z_j, v_min, v_max), at fractional index
    b_j = (T z_j − v_min)/Δz, and its probability is split between atoms
    l = ⌊b_j⌋ and u = ⌈b_j⌉ in proportion to closeness, m_l += p_j (u − b_j),
    m_u += p_j (b_j − l) (all of it to b_j when b_j is a whole number). The
    scatter-adds are one segment sum over the B·N atoms of the minibatch.
    """
    n_atoms = tf.shape(support)[0]
    v_min, v_max = support[0], support[-1]
    delta = (v_max - v_min) / tf.cast(n_atoms - 1, support.dtype)
    moved = tf.clip_by_value(rewards[:, None] + bootstrap[:, None] * support[None, :], v_min, v_max)
    b = tf.clip_by_value((moved - v_min) / delta, 0.0, tf.cast(n_atoms - 1, support.dtype))
    lower, upper = tf.floor(b), tf.math.ceil(b)
    whole = tf.cast(tf.equal(lower, upper), b.dtype)
    lower_mass = next_probs * (upper + whole - b)
    upper_mass = next_probs * (b - lower)
    rows = tf.range(tf.shape(next_probs)[0])[:, None] * n_atoms
    index = tf.concat([rows + tf.cast(lower, tf.int32), rows + tf.cast(upper, tf.int32)], axis=1)
    mass = tf.concat([lower_mass, upper_mass], axis=1)
    flat = tf.math.unsorted_segment_sum(
        tf.reshape(mass, [-1]), tf.reshape(index, [-1]), tf.size(next_probs)
    )
    return tf.reshape(flat, tf.shape(next_probs))


# ---- acting in numpy -------------------------------------------------------------


class NumpyRainbow:
    """A snapshot of a ``RainbowQNetwork``'s weights on flat vectors that computes Q(s, a) in
    numpy, with the noise of a given draw or on the mean weights.

    A noisy layer applies its noise in factored form, x μ + μ_b + ((x ⊙ f(ε_in)) σ + σ_b)
    ⊙ f(ε_out): on the few rows an action takes, cheaper than building the noisy kernel.
    """

    def __init__(
        self,
        features: tuple[np.ndarray, np.ndarray],
        streams: list[list[tuple[np.ndarray, ...]]],
        offsets: list[list[int]],
        shape: tuple[int, int],
        support: np.ndarray,
    ) -> None:
        self.features, self.streams, self.offsets = features, streams, offsets
        self.shape, self.support = shape, support

    @classmethod
    def of(cls, network: keras.Model) -> NumpyRainbow | None:
        """The snapshot, where ``network`` is exactly a ``RainbowQNetwork`` on flat vectors;
        else None."""
        if type(network) is not RainbowQNetwork or type(network.extractor) is not FlattenExtractor:
            return None
        start, offsets_of = 0, {}
        for layer in noisy_layers(network):  # where each layer's noise sits in a draw
            offsets_of[id(layer)] = start
            start += layer.noise_size
        streams, offsets = [], []
        for stream in (network.value, network.advantage):
            noisy = [layer for layer in stream.layers if isinstance(layer, NoisyLinear)]
            streams.append(
                [
                    tuple(
                        np.asarray(v)
                        for v in (n.kernel_mu, n.bias_mu, n.kernel_sigma, n.bias_sigma)
                    )
                    for n in noisy
                ]
            )
            offsets.append([offsets_of[id(n)] for n in noisy])
        dense = network.features
        return cls(
            (np.asarray(dense.kernel), np.asarray(dense.bias)),
            streams,
            offsets,
            (network.n_actions, network.n_atoms),
            np.asarray(network.support),
        )

    def __call__(self, obs: Any, noise: np.ndarray | None = None) -> np.ndarray:
        """Q(s, a), ``[B, n_actions]``; ``noise`` is a draw of f(ε) for every noisy layer
        (the mean weights without one)."""
        x = np.asarray(obs, dtype=np.float32)
        h = NUMPY_ACTIVATIONS["relu"](x.reshape(len(x), -1) @ self.features[0] + self.features[1])
        value, advantage = (
            self._stream(h, layers, offsets, noise)
            for layers, offsets in zip(self.streams, self.offsets, strict=True)
        )
        n_actions, n_atoms = self.shape
        value = value.reshape(-1, 1, n_atoms)
        advantage = advantage.reshape(-1, n_actions, n_atoms)
        logits = value + advantage - advantage.mean(axis=1, keepdims=True)
        logits -= logits.max(axis=-1, keepdims=True)
        probs = np.exp(logits)
        probs /= probs.sum(axis=-1, keepdims=True)
        return probs @ self.support

    @staticmethod
    def _stream(
        h: np.ndarray,
        layers: list[tuple[np.ndarray, ...]],
        offsets: list[int],
        noise: np.ndarray | None,
    ) -> np.ndarray:
        for i, ((kernel, bias, kernel_sigma, bias_sigma), start) in enumerate(
            zip(layers, offsets, strict=True)
        ):
            y = h @ kernel + bias
            if noise is not None:
                fan_in = kernel.shape[0]
                eps_in = noise[start : start + fan_in]
                eps_out = noise[start + fan_in : start + fan_in + kernel.shape[1]]
                y += ((h * eps_in) @ kernel_sigma + bias_sigma) * eps_out
            h = NUMPY_ACTIVATIONS["relu"](y) if i < len(layers) - 1 else y
        return h


# ---- the atoms and the factory ------------------------------------------------------


def _support(
    network: keras.Model, n_atoms: int | None, v_min: float | None, v_max: float | None
) -> tuple[int, float, float]:
    """The atoms: the network's when it is (or holds) a RainbowQNetwork, else the arguments
    or 51, −10, 10 (optix-core's ``choose_atoms``)."""
    inner = next(
        (
            layer
            for layer in network._flatten_layers(include_self=True, recursive=True)
            if isinstance(layer, RainbowQNetwork)
        ),
        None,
    )
    own = None if inner is None else (inner.n_atoms, inner.v_min, inner.v_max)
    return choose_atoms((n_atoms, v_min, v_max), own, "rainbow")


def make_rainbow(
    observation_space: gym.Space,
    action_space: gym.Space,
    *,
    hyperparams: HyperparamSet | dict[str, Any] | None = None,
    device: str = "auto",
    seed: int | None = None,
) -> TFRainbowDQNAgent:
    """The AgentSpec factory: a RainbowQNetwork of 128 units, 51 atoms on [−100, 100],
    on the default features extractor for the observation space."""
    n_actions = require_discrete(action_space, "rainbow")
    q_network = RainbowQNetwork.for_space(
        observation_space,
        n_actions,
        seed=seed,
        hidden_size=128,
        n_atoms=51,
        v_min=-100.0,
        v_max=100.0,
    )
    return TFRainbowDQNAgent(
        q_network,
        n_actions,
        hyperparams=hyperparams,
        device=device,
        seed=seed,
        observation_space=observation_space,
    )
