"""Recurrent PPO: PPO with an LSTM actor-critic, for partially observed tasks, on any action space, in TensorFlow.

Schulman et al. (2017), "Proximal Policy Optimization Algorithms", with the
policy and value function sharing one LSTM (Hochreiter & Schmidhuber 1997), so
that both condition on the history of observations rather than on the last
one alone. Per window, with h_t the LSTM state entering step t:

    Â_t    = GAE-λ(r, V)                                   (Schulman et al. 2016, eq. 16)
    R_t    = Â_t + V_old(o_t, h_t)
    r_t(θ) = π_θ(a_t|o_t, h_t) / π_old(a_t|o_t, h_t)       (eq. 6)
    L_clip = E[ min(r_t Â_t, clip(r_t, 1 − ε, 1 + ε) Â_t) ]  (eq. 7)
    L_VF   = E[ (V_θ(o_t, h_t) − R_t)² ]   (clipped with clip_range_vf, as in PPO)
    L      = −L_clip + c₁ L_VF − c₂ H[π_θ(·|o_t, h_t)]      (eq. 9)

minimised for ``n_epochs`` passes over minibatches of whole sequences, each
step's gradient clipped to a global norm of ``max_grad_norm``; ``target_kl``
stops a window's epochs early as in PPO.

The same algorithm as optix-torch's ``algorithms/recurrent_ppo.py``, over the
same shared pieces: ``optix_core.recurrent`` prepares the window (the
recorded states checked, bootstrap values stepped on from the states each
column's history left, rewards scaled by the running return's std, GAE, the
loss table, seq_len fitted to the window) and cuts it into minibatches of
sequences; ``optix_core.algorithms.config.recurrent_ppo`` holds the
hyperparameters; the loss is TF PPO's ``ppo_loss``. The whole update of a
window (every epoch and minibatch, and the updated policy's entropy) is one
``tf.function``: Python hands it the window once and reads the diagnostics
back once.

The network: observations → features extractor (chosen from the observation
space, or the user's) → Dense + tanh → LSTM (Keras' ``LSTMCell`` weights) → a
linear actor head (the distribution's parameters) and a linear critic head
(V). Measured on this project's 2-core CPU, 40 minibatch steps (forward and
backward through 16-step sequences of 16 rows, 64 units) in one
``tf.function``: calling ``LSTMCell`` per step took 47 ms, the gates written
out per step 50 ms, the input projection of a whole sequence hoisted into one
matmul 97 ms. So the weights are ``LSTMCell``'s and its step is written out on
them (``_cell_step``): as fast to run, and no Keras layer call per step when
the update is traced.

Truncated BPTT with state resets. ``act_info`` (what training pipelines call)
carries (h, c) per environment row across steps and windows, zeroes a row
when ``episode_start`` says its episode begins, and records the state entering
each step in ``policy_info["h"]`` / ``["c"]`` with the step's log-probability
and value. ``learn`` cuts each column of the window into sequences of
``seq_len`` steps, starts each sequence from the state recorded at its first
step and unrolls the LSTM through it, zeroing the state again wherever an
episode starts inside. So training replays exactly the states that acted:
cutting the window into sequences limits how far gradients flow back in
time, but never what the network saw.

``act`` (evaluation, dashboards) keeps a memory of its own, one row per
observation row, that training never reads. It starts fresh when the batch
size changes, after ``learn`` or ``load_weights`` (the weights changed), on
``reset_state()``, and for the rows flagged by ``act(..., episode_start=...)``.
Acting with the default network on flat observations on the CPU runs in
numpy on copies of the weights (a call into TensorFlow costs several times
the arithmetic of one step for a handful of rows); elsewhere it is a
``tf.function`` that does not retrace per call.
"""

from __future__ import annotations

import math
from typing import Any

import gymnasium as gym
import keras
import numpy as np
import tensorflow as tf

from optix_core.algorithms.config import recurrent_ppo as config
from optix_core.on_policy import ADVANTAGE, explained_variance
from optix_core.recurrent import (
    RecurrentPPOWindow,
    State,
    check_batch,
    check_sequence_network,
    flat_space,
    pick_space,
    reset_rows,
    sequence_minibatches,
    start_flags,
)
from optix_core.types import EpisodeData, HyperparamSet
from optix_tf.accel.adam import apply_gradients
from optix_tf.algorithms.on_policy import normalized_advantages
from optix_tf.algorithms.ppo import approx_kl, diagnostic_sums, ppo_loss
from optix_tf.base import TFAgentBase
from optix_tf.policies import observations as O
from optix_tf.policies.distributions import Distribution, distribution_for
from optix_tf.policies.extractors import (
    FlattenExtractor,
    default_extractor,
    features_dim,
    orthogonal,
)

DIAGNOSTICS = ("policy_loss", "value_loss", "approx_kl", "clip_fraction")
TFState = tuple[tf.Tensor, tf.Tensor]
MAX_UNROLL = 32  # longer sequences run in a tf.while_loop (see LSTMActorCritic._unroll)


class LSTMActorCritic(keras.Model):
    """observations → extractor → Dense + tanh → LSTM (shared trunk) → actor and critic heads.

    Args:
        observation_space: what the network reads; an int n stands for flat
            vectors of n floats (tensor-optix's ``obs_dim``).
        policy_dim: the action distribution's ``param_dim``.
        hidden_size: the width of the encoder and of the LSTM.
        extractor: any Keras layer mapping a batch of observations to ``[B,
            features]``; default ``default_extractor(observation_space)``.
        seed: seeds the initialisation (without touching global generators).

    ``call`` runs time-major sequences ``[L, B, ...]`` (a dict of them for
    Dict observations) from a state ``(h, c)`` of shape ``[B, hidden_size]``
    each; ``starts[t, b]`` zeroes row b's state before step t (an episode
    begins there). It returns parameters ``[L, B, policy_dim]``, values
    ``[L, B]`` and the state after step L − 1.
    """

    def __init__(
        self,
        observation_space: gym.Space | int,
        policy_dim: int,
        hidden_size: int = 64,
        extractor: keras.layers.Layer | None = None,
        seed: int | None = None,
    ) -> None:
        super().__init__()
        if isinstance(observation_space, int):
            observation_space = flat_space(observation_space)
        if policy_dim < 1 or hidden_size < 1:
            raise ValueError(
                f"LSTMActorCritic needs positive sizes, got policy_dim={policy_dim}, "
                f"hidden_size={hidden_size}"
            )
        seeds = np.random.default_rng(seed)
        self.extractor = extractor or default_extractor(observation_space, seeds)
        features_dim(self.extractor, observation_space)  # a clear error if it does not fit
        self.policy_dim, self.hidden_size = int(policy_dim), int(hidden_size)
        # Orthogonal initialisation, zero biases (no forget-gate bias, as torch's
        # nn.LSTM); a near-uniform first policy (gain 0.01), as in the PPO
        # implementation details of Huang et al. (2022).
        self.encoder = keras.layers.Dense(
            hidden_size, activation="tanh", kernel_initializer=orthogonal(math.sqrt(2), seeds)
        )
        self.cell = keras.layers.LSTMCell(
            hidden_size,
            kernel_initializer=orthogonal(1.0, seeds),
            recurrent_initializer=orthogonal(1.0, seeds),
            unit_forget_bias=False,
        )
        self.cell.build((None, hidden_size))  # _cell_step reads its weights, never calls it
        self.actor = keras.layers.Dense(policy_dim, kernel_initializer=orthogonal(0.01, seeds))
        self.critic = keras.layers.Dense(1, kernel_initializer=orthogonal(1.0, seeds))
        probe = O.map_obs(lambda t: t[None], O.probe_batch(observation_space))
        self(probe, self.initial_state(2))  # build every weight now

    def initial_state(self, batch_size: int) -> TFState:
        zeros = tf.zeros((batch_size, self.hidden_size))
        return zeros, tf.identity(zeros)

    def call(
        self, obs: Any, state: TFState, starts: tf.Tensor | None = None
    ) -> tuple[tf.Tensor, tf.Tensor, TFState]:
        first = tf.nest.flatten(obs)[0]
        steps, rows = tf.shape(first)[0], tf.shape(first)[1]
        # The extractor reads [L·B, ...] (a CNN needs its static trailing shape).
        flat = tf.nest.map_structure(lambda t: tf.reshape(t, [-1, *t.shape[2:]]), obs)
        x = tf.reshape(self.encoder(self.extractor(flat)), [steps, rows, self.hidden_size])
        keep = None if starts is None else 1.0 - tf.cast(starts, tf.float32)[..., None]
        out, state = self._unroll(x, state, keep, first.shape[0])
        return self.actor(out), self.critic(out)[..., 0], state

    def _unroll(
        self, x: tf.Tensor, state: TFState, keep: tf.Tensor | None, steps: int | None
    ) -> tuple[tf.Tensor, TFState]:
        """The LSTM through ``x`` ``[L, B, hidden]``, each row's state multiplied by
        ``keep[t]`` (0 where an episode starts) before step t: truncated BPTT
        with resets. Unrolled in Python where L is known when traced and short
        (a training sequence: the faster graph to run), else a ``tf.while_loop``
        (a whole window: tracing costs a fraction of a millisecond per op, and
        an unrolled window of 128 steps has thousands)."""
        h, c = state
        if steps is not None and steps <= MAX_UNROLL:
            outputs = []
            for t in range(steps):
                if keep is not None:
                    h, c = h * keep[t], c * keep[t]
                h, c = self._cell_step(x[t], h, c)
                outputs.append(h)
            return tf.stack(outputs), (h, c)

        def body(t: tf.Tensor, h: tf.Tensor, c: tf.Tensor, out: tf.TensorArray) -> tuple:
            if keep is not None:
                h, c = h * keep[t], c * keep[t]
            h, c = self._cell_step(x[t], h, c)
            return t + 1, h, c, out.write(t, h)

        n = tf.shape(x)[0]
        out = tf.TensorArray(x.dtype, size=n)
        _, h, c, out = tf.while_loop(lambda t, *_: t < n, body, (tf.constant(0), h, c, out))
        return out.stack(), (h, c)

    def _cell_step(self, x: tf.Tensor, h: tf.Tensor, c: tf.Tensor) -> TFState:
        """One step of the LSTM cell, written out on the cell's own weights
        (Keras' ``LSTMCell``: z = x K + h R + b, gates i, f, c̃, o): the same
        arithmetic as calling the cell, without Keras' call machinery per step
        when the update is traced."""
        z = tf.matmul(x, self.cell.kernel) + tf.matmul(h, self.cell.recurrent_kernel)
        i, f, g, o = tf.split(z + self.cell.bias, 4, axis=-1)
        c = tf.sigmoid(f) * c + tf.sigmoid(i) * tf.tanh(g)
        return tf.sigmoid(o) * tf.tanh(c), c


class NumpyLSTMActorCritic:
    """A snapshot of ``LSTMActorCritic``'s weights that runs one step in numpy
    (acting and bootstrapping on a handful of rows). As old as its weights:
    take a new one after they change."""

    def __init__(self, network: LSTMActorCritic) -> None:
        def numpy(layer: keras.layers.Layer) -> list[np.ndarray]:
            return [np.asarray(w.numpy()) for w in layer.weights]

        self.encoder, self.cell = numpy(network.encoder), numpy(network.cell)
        self.actor, self.critic = numpy(network.actor), numpy(network.critic)

    @classmethod
    def of(cls, network: keras.Model) -> NumpyLSTMActorCritic | None:
        """The snapshot, where ``network`` is the default network on flat observations; else None."""
        if type(network) is not LSTMActorCritic or type(network.extractor) is not FlattenExtractor:
            return None
        return cls(network)

    def __call__(self, obs: Any, state: State) -> tuple[np.ndarray, np.ndarray, State]:
        x = np.asarray(obs, dtype=np.float32)
        x = np.tanh(x.reshape(len(x), -1) @ self.encoder[0] + self.encoder[1])
        kernel, recurrent, bias = self.cell
        # Keras' LSTMCell: z = x K + h R + b, gates in the order i, f, c̃, o.
        i, f, g, o = np.split(x @ kernel + state[0] @ recurrent + bias, 4, axis=-1)
        c = _sigmoid(f) * state[1] + _sigmoid(i) * np.tanh(g)
        h = _sigmoid(o) * np.tanh(c)
        params = h @ self.actor[0] + self.actor[1]
        values = (h @ self.critic[0] + self.critic[1])[:, 0]
        return params, values, (h, c)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (np.tanh(0.5 * x) + 1.0)  # overflow-free σ(x)


class TFRecurrentPPOAgent(RecurrentPPOWindow, TFAgentBase):
    """Recurrent PPO on Discrete, MultiDiscrete, MultiBinary or Box actions,
    with tensor-optix 1.10's constructor (optix-torch's ``TorchRecurrentPPOAgent``'s).

    Args:
        obs_dim: tensor-optix's flat observations of ``obs_dim`` floats; or
            give ``observation_space`` (Box, Discrete, Dict, images).
        n_actions: tensor-optix's ``Discrete(n_actions)``; or give ``action_space``.
        hidden_size: the default network's LSTM width.
        hyperparams: keys of ``optix_core.algorithms.config.recurrent_ppo.DEFAULTS``.
        device: "auto", "cpu", "gpu", "gpu:N" ("cuda" and "cuda:N" alike).
        seed: seeds the default network and the agent's own generators.
        network: replaces the default ``LSTMActorCritic``: any Keras model with
            its ``call(obs, state, starts=None)``, ``initial_state`` and
            ``hidden_size``, checked against the spaces before any work starts.
        extractor: the default network's features extractor (any Keras layer
            from a batch of observations to ``[B, features]``).
        distribution: a ``Distribution``, or for Box actions its name:
            "squashed_gaussian" (default) or "gaussian".
    """

    algorithm = "recurrent-ppo"
    DEFAULTS = config.DEFAULTS
    BOUNDS = config.BOUNDS

    def __init__(
        self,
        obs_dim: int | None = None,
        n_actions: int | None = None,
        hidden_size: int = 64,
        hyperparams: HyperparamSet | dict[str, Any] | None = None,
        device: str = "auto",
        seed: int | None = None,
        network: keras.Model | None = None,
        *,
        observation_space: gym.Space | None = None,
        action_space: gym.Space | None = None,
        extractor: keras.layers.Layer | None = None,
        distribution: Distribution | str | None = None,
    ) -> None:
        super().__init__(hyperparams, device, seed)
        owner = type(self).__name__
        self.observation_space = pick_space(
            obs_dim, observation_space, "obs_dim", flat_space, owner
        )
        self.action_space = pick_space(
            n_actions, action_space, "n_actions", gym.spaces.Discrete, owner
        )
        if isinstance(distribution, Distribution):
            self.distribution = distribution
        else:
            self.distribution = distribution_for(
                self.action_space, distribution or "squashed_gaussian", self.algorithm
            )
        if network is not None and extractor is not None:
            raise ValueError(
                f"{self.algorithm}: extractor= builds the default network; give it or "
                "network=, not both"
            )
        with self.device_scope():
            self.network = network or LSTMActorCritic(
                self.observation_space, self.distribution.param_dim, hidden_size, extractor, seed
            )
            check_network(
                self.network, self.observation_space, self.distribution.param_dim, self.algorithm
            )
            self.optimizer = keras.optimizers.Adam(
                learning_rate=self.hp["learning_rate"], epsilon=1e-5
            )
            self._build_optimizers()  # its slots exist before the first (compiled) step
        self._act = tf.function(self._tf_step, reduce_retracing=True)
        self._update = tf.function(self.update, reduce_retracing=True)
        self._snapshot: NumpyLSTMActorCritic | bool | None = None
        self._rollout_state: State | None = None  # rows stepped by act_info
        self._act_state: State | None = None  # act()'s own memory, never read by learn
        self.apply_hyperparams()

    def modules(self) -> dict[str, keras.Model]:
        return {"network": self.network}

    def load_weights(self, path: str) -> None:
        super().load_weights(path)
        # New weights: a new acting snapshot, and no memory built by the old ones.
        self._snapshot = None
        self._rollout_state = self._act_state = None

    def rollout_state(self) -> tuple[np.ndarray, np.ndarray] | None:
        return self._rollout_state

    def restore_rollout_state(self, state: tuple[np.ndarray, np.ndarray]) -> None:
        h, c = state
        self._rollout_state = (h.copy(), c.copy())

    def optimizers(self) -> dict[str, keras.optimizers.Optimizer]:
        return {"main": self.optimizer}

    # ---- acting -------------------------------------------------------------

    def act(
        self, observation: Any, deterministic: bool = False, episode_start: Any = None
    ) -> np.ndarray:
        """Actions for a batch, remembering each row's history between calls.

        ``episode_start`` (one flag per row) forgets the flagged rows' history
        first; without it a row's memory runs on until ``reset_state``.
        """
        check_batch(observation, self.observation_space, self.algorithm)
        n = O.batch_size(observation)
        state = self._fit(self._act_state, n)
        if episode_start is not None:
            state = reset_rows(state, start_flags(episode_start, n, self.algorithm))
        params, _, self._act_state = self._step(observation, state)
        if deterministic:
            return self.distribution.mode(params)
        return self.distribution.sample(params, self.act_rng)[0]

    def reset_state(self, mask: Any = None) -> None:
        """Forget ``act``'s memory: of every row, or of the rows where ``mask`` is True."""
        if mask is None or self._act_state is None:
            self._act_state = None
            return
        flags = np.asarray(mask, dtype=bool).reshape(-1)
        if len(flags) != len(self._act_state[0]):
            self._act_state = None
            return
        self._act_state = reset_rows(self._act_state, flags)

    def act_info(
        self, observation: Any, episode_start: np.ndarray
    ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        check_batch(observation, self.observation_space, self.algorithm)
        n = O.batch_size(observation)
        # h_t: the state entering this step, zeroed where an episode starts.
        h, c = reset_rows(
            self._fit(self._rollout_state, n), start_flags(episode_start, n, self.algorithm)
        )
        params, values, self._rollout_state = self._step(observation, (h, c))
        actions, info = self.distribution.sample(params, self.rng)
        return actions, {**info, "values": values, "h": h, "c": c}

    def _step(self, obs: Any, state: State) -> tuple[np.ndarray, np.ndarray, State]:
        """One step of the network for a batch, numpy in and out: parameters,
        values and the state after it (``optix_core.recurrent``'s ``Step``)."""
        snapshot = self._numpy_snapshot()
        if snapshot is not None:
            return snapshot(obs, state)
        with self.device_scope():
            params, values, h, c = self._act(
                O.to_tensor(obs), tf.constant(state[0]), tf.constant(state[1])
            )
        return params.numpy(), values.numpy(), (h.numpy(), c.numpy())

    def _tf_step(self, obs: Any, h: tf.Tensor, c: tf.Tensor) -> tuple[tf.Tensor, ...]:
        params, values, (h, c) = self.network(O.map_obs(lambda t: t[None], obs), (h, c))
        return params[0], values[0], h, c

    def _numpy_snapshot(self) -> NumpyLSTMActorCritic | None:
        """The default network's weights in numpy for acting on the CPU; None
        where it does not apply. Taken once per change of the weights."""
        if self._snapshot is None:
            on_cpu = "CPU" in str(self.device).upper()
            self._snapshot = (NumpyLSTMActorCritic.of(self.network) if on_cpu else None) or False
        return self._snapshot or None

    def _fit(self, state: State | None, n: int) -> State:
        """``state`` if it has ``n`` rows, else a fresh zero state (a new batch layout)."""
        if state is None or len(state[0]) != n:
            zeros = np.zeros((n, self.network.hidden_size), np.float32)
            return zeros, zeros.copy()
        return state

    # ---- learning -----------------------------------------------------------

    def learn(self, episode_data: EpisodeData) -> dict[str, float]:
        data, hp = episode_data, self.hp
        window = self.recurrent_window(data, self.network.hidden_size, self._step)
        steps, envs = np.shape(data.rewards)
        seq_len = window.seq_len
        batch = max(int(hp["minibatch_size"]), seq_len)
        index, lo, hi = sequence_minibatches(
            steps, envs, seq_len, batch, int(hp["n_epochs"]), self.rng
        )
        clip = float(hp["clip_ratio"])
        settings = [
            clip,
            hp["clip_range_vf"],
            hp["vf_coef"],
            hp["entropy_coef"],
            hp["max_grad_norm"],
            hp["target_kl"],
            float(bool(hp["normalize_advantage"])),
        ]
        with self.device_scope():
            sums, taken, stopped, entropy = self._update(
                O.to_tensor(data.observations),
                tf.convert_to_tensor(window.info["h"], tf.float32),
                tf.convert_to_tensor(window.info["c"], tf.float32),
                tf.convert_to_tensor(window.starts),
                tf.convert_to_tensor(window.table),
                tf.convert_to_tensor(index, tf.int32),
                tf.convert_to_tensor(lo, tf.int32),
                tf.convert_to_tensor(hi, tf.int32),
                tf.constant(settings, tf.float32),
            )
        taken = int(taken)
        self._snapshot = None  # the weights moved: acting takes a new snapshot
        self._act_state = None  # act()'s memory was built by the old weights
        stats = {"explained_variance": explained_variance(window.values, window.returns)}
        if taken:
            rows = float(sums[-1])
            stats |= {k: float(s) / rows for k, s in zip(DIAGNOSTICS, sums[:-1], strict=False)}
            stats["entropy"] = float(entropy)
        return {
            **stats,
            "seq_len": float(seq_len),
            "updates": float(taken),
            "stopped_early": float(stopped),
        }

    def update(
        self,
        obs: Any,
        h: tf.Tensor,
        c: tf.Tensor,
        starts: tf.Tensor,
        table: tf.Tensor,
        index: tf.Tensor,
        lo: tf.Tensor,
        hi: tf.Tensor,
        settings: tf.Tensor,
    ) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor]:
        """Every minibatch step of a window (compiled by ``tf.function``).

        ``obs``, ``h``, ``c``, ``starts`` are the window's ``[T, N, ...]``;
        ``table`` its loss table ``[T·N, ...]``; minibatch i is the sequences
        ``index[:, lo[i]:hi[i]]`` (``[L, B]`` flat step indices). Returns the
        sums of the diagnostics over the rows of the steps taken (their row
        count last), the number of steps taken, whether ``target_kl`` stopped
        the epochs, and the updated policy's entropy over the window's histories.
        """
        clip, clip_vf, vf_coef, entropy_coef, max_norm, target_kl, normalize = tf.unstack(settings)
        flat_obs = O.map_obs(lambda t: tf.reshape(t, [-1, *t.shape[2:]]), obs)
        flat_h, flat_c = (tf.reshape(s, [-1, s.shape[-1]]) for s in (h, c))
        flat_starts = tf.reshape(starts, [-1])
        sums = tf.zeros(len(DIAGNOSTICS) + 1)
        taken, stopped = tf.constant(0), tf.constant(False)
        variables = self.network.trainable_variables
        for i in tf.range(tf.shape(lo)[0]):
            sequences = index[:, lo[i] : hi[i]]  # [L, B]
            rows = tf.gather(table, tf.reshape(sequences, [-1]))
            advantages = normalized_advantages(rows[:, ADVANTAGE], normalize)
            first = sequences[0]  # each sequence starts from the state stored at its first step
            with tf.GradientTape() as tape:
                params, value, _ = self.network(
                    O.gather(flat_obs, sequences),
                    (tf.gather(flat_h, first), tf.gather(flat_c, first)),
                    tf.gather(flat_starts, sequences),
                )
                loss, surrogate, error, log_ratio = ppo_loss(
                    self.distribution,
                    tf.reshape(params, [-1, self.distribution.param_dim]),
                    tf.reshape(value, [-1]),
                    rows,
                    advantages,
                    clip,
                    clip_vf,
                    vf_coef,
                    entropy_coef,
                )
            kl = approx_kl(log_ratio)
            if target_kl > 0 and kl > 1.5 * target_kl:
                stopped = tf.constant(True)
                break
            sums += diagnostic_sums(surrogate, error, kl, log_ratio, clip)
            taken += 1
            if not tf.math.is_finite(loss):
                break  # never step on a broken loss: the loop sees it and rolls back
            grads = tape.gradient(loss, variables)
            grads, _ = tf.clip_by_global_norm(grads, max_norm)
            apply_gradients(self.optimizer, grads, variables)
        # The updated policy's entropy on the window's histories, from its first states.
        params, _, _ = self.network(obs, (h[0], c[0]), starts)
        entropy = self.distribution.entropy(tf.reshape(params, [-1, self.distribution.param_dim]))
        return sums, taken, stopped, tf.reduce_mean(entropy)


def check_network(network: keras.Model, space: gym.Space, policy_dim: int, owner: str) -> None:
    """Run a one-step sequence of two observations from ``space`` through the
    network and insist on the shapes the distribution needs, before any work starts."""
    probe = O.map_obs(lambda t: t[None], O.probe_batch(space))
    check_sequence_network(
        lambda: network(probe, network.initial_state(2))[:2], space, policy_dim, owner
    )


def make_recurrent_ppo(
    observation_space: gym.Space,
    action_space: gym.Space,
    *,
    hyperparams: HyperparamSet | None = None,
    device: str = "auto",
    seed: int | None = None,
    hidden_size: int = 64,
) -> TFRecurrentPPOAgent:
    """The AgentSpec factory: the default ``LSTMActorCritic`` (64 LSTM units)
    for the spaces, with the action space's distribution."""
    O.check_observation_space(observation_space, "recurrent-ppo")
    return TFRecurrentPPOAgent(
        hidden_size=hidden_size,
        hyperparams=hyperparams,
        device=device,
        seed=seed,
        observation_space=observation_space,
        action_space=action_space,
    )
